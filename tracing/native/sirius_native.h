/* Internal declarations shared by the native sources of sirius.tracing._native. */
#ifndef SIRIUS_NATIVE_H
#define SIRIUS_NATIVE_H
int sirius_native_abi_version(void);
#endif
