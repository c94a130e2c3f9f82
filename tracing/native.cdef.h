int sirius_native_abi_version(void);
