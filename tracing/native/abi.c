/* ABI version of the native extension, checked by the Python binding at import. */
#include "sirius_native.h"
/* 2: transit scanner and gather helpers; 3: native tracer (sirius_tracing.h) and sirius.tracing._fast;
 * 4: event accounting in sirius_stats, _fast.span; 5: named async spans (sirius_async_begin_named) */
int sirius_native_abi_version(void) { return 5; }
