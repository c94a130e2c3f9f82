/* Transit queue scanner and gather helpers (micromegas-wire.md §5.1).
 *
 * A queue is [u8 type_index][u32 size, only for dynamic types][body]... with no padding. The
 * scanner walks it once and records each record's type index, body offset and body size so the
 * Python reader can gather fields with numpy instead of looping per event. Every read is bounds
 * checked against the buffer, every write against the caller's capacity, and each iteration
 * advances by at least one byte, so any input terminates.
 */
#include <string.h>

#include "sirius_native.h"

int64_t sirius_transit_scan(const uint8_t *buf, uint64_t len, const int64_t *type_sizes, uint32_t n_types,
                            uint8_t *types, uint32_t *offsets, uint32_t *sizes, int64_t capacity,
                            int64_t *error_offset) {
    uint64_t pos = 0;
    int64_t count = 0;
    *error_offset = -1;
    /* Offsets are stored as u32: refuse buffers they cannot address (no real block is that big). */
    if (len > (uint64_t)UINT32_MAX) {
        *error_offset = 0;
        return SIRIUS_SCAN_E_TOO_LARGE;
    }
    while (pos < len) {
        uint64_t start = pos;
        uint8_t type_index = buf[pos];
        int64_t size;
        uint64_t body_size;
        pos += 1;
        if (type_index >= n_types || type_sizes[type_index] < 0) {
            *error_offset = (int64_t)start;
            return SIRIUS_SCAN_E_UNKNOWN_TYPE;
        }
        size = type_sizes[type_index];
        if (size == 0) {
            uint32_t dyn_size;
            if (len - pos < 4) {
                *error_offset = (int64_t)start;
                return SIRIUS_SCAN_E_TRUNCATED_HEADER;
            }
            memcpy(&dyn_size, buf + pos, 4); /* little-endian hosts only (x86-64, aarch64) */
            pos += 4;
            body_size = dyn_size;
        } else {
            body_size = (uint64_t)size;
        }
        if (body_size > len - pos) {
            *error_offset = (int64_t)start;
            return SIRIUS_SCAN_E_TRUNCATED_BODY;
        }
        if (types != NULL) {
            if (count >= capacity) {
                *error_offset = (int64_t)start;
                return SIRIUS_SCAN_E_CAPACITY;
            }
            types[count] = type_index;
            offsets[count] = (uint32_t)pos;
            sizes[count] = (uint32_t)body_size;
        }
        count += 1;
        pos += body_size;
    }
    return count;
}

int64_t sirius_transit_gather(const uint8_t *buf, uint64_t len, const uint32_t *starts, const uint32_t *lengths,
                              uint64_t n, uint8_t *out, uint64_t out_capacity) {
    uint64_t written = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t start = starts[i];
        uint64_t length = lengths[i];
        if (start > len || length > len - start) {
            return SIRIUS_SCAN_E_TRUNCATED_BODY;
        }
        if (length > out_capacity - written) {
            return SIRIUS_SCAN_E_CAPACITY;
        }
        memcpy(out + written, buf + start, length);
        written += length;
    }
    return (int64_t)written;
}

int64_t sirius_transit_gather_fixed(const uint8_t *buf, uint64_t len, const uint32_t *starts, uint64_t n,
                                    uint32_t width, uint8_t *out, uint64_t out_capacity) {
    if (width != 0 && n > out_capacity / width) {
        return SIRIUS_SCAN_E_CAPACITY;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t start = starts[i];
        if (start > len || width > len - start) {
            return SIRIUS_SCAN_E_TRUNCATED_BODY;
        }
        memcpy(out + i * width, buf + start, width);
    }
    return (int64_t)(n * width);
}
