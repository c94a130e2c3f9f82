/* ABI version of the native extension, checked by the Python binding at import. */
#include "sirius_native.h"
int sirius_native_abi_version(void) { return 2; } /* 2: transit scanner and gather helpers */
