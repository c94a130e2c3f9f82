/* Internal declarations shared by the native sources of sirius.tracing._native. */
#ifndef SIRIUS_NATIVE_H
#define SIRIUS_NATIVE_H

#include <stdint.h>

int sirius_native_abi_version(void);

/* Error codes of the transit scanner and gather helpers (negative return values). */
#define SIRIUS_SCAN_E_UNKNOWN_TYPE (-1)     /* type index >= n_types or its size is -1 */
#define SIRIUS_SCAN_E_TRUNCATED_HEADER (-2) /* a dynamic record's u32 size runs past the buffer */
#define SIRIUS_SCAN_E_TRUNCATED_BODY (-3)   /* a body (or gathered window) runs past the buffer */
#define SIRIUS_SCAN_E_CAPACITY (-4)         /* the caller's arrays are too small */
#define SIRIUS_SCAN_E_TOO_LARGE (-5)        /* buffer longer than u32 offsets can address */

/* Walk a transit queue. type_sizes[i] is the body size of type i (0 = dynamic, -1 = unknown).
 * With types == NULL only counts; otherwise fills types/offsets/sizes (at most capacity
 * entries). Returns the record count or a negative SIRIUS_SCAN_E_* code; *error_offset gets the
 * offset of the offending record (-1 when none). */
int64_t sirius_transit_scan(const uint8_t *buf, uint64_t len, const int64_t *type_sizes, uint32_t n_types,
                            uint8_t *types, uint32_t *offsets, uint32_t *sizes, int64_t capacity,
                            int64_t *error_offset);

/* Concatenate n windows buf[starts[i] : starts[i] + lengths[i]] into out. Returns the byte count
 * written or a negative SIRIUS_SCAN_E_* code (a window past len, or out too small). */
int64_t sirius_transit_gather(const uint8_t *buf, uint64_t len, const uint32_t *starts, const uint32_t *lengths,
                              uint64_t n, uint8_t *out, uint64_t out_capacity);

/* Same with one width for every window: out becomes an n x width row-major byte matrix. */
int64_t sirius_transit_gather_fixed(const uint8_t *buf, uint64_t len, const uint32_t *starts, uint64_t n,
                                    uint32_t width, uint8_t *out, uint64_t out_capacity);

#endif
