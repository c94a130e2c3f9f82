/* LZ4 frame writer (lz4 frame format 1.6.x, block format 1.x), written for the sink thread.
 *
 * Why our own: the `lz4` PyPI package exposes no C API, vendoring liblz4 is not possible offline
 * and a system liblz4-dev would be one more thing every machine must install. The sink thread
 * compresses (the app threads never do), so a simple greedy compressor is enough; the format is
 * the standard one, decoded by any LZ4 implementation (tests round-trip through python-lz4).
 *
 * Frame: magic 04 22 4D 18, FLG 0x60 (version 01, independent blocks, no checksums), BD 0x40
 * (64 KiB max block), header checksum 0x82 (xxh32 of FLG,BD >> 8); then blocks, each
 * [u32 size | 0x80000000 when stored uncompressed][data]; then the end mark u32 0.
 * Each 64 KiB input block is compressed alone (offsets never exceed 65535 by construction).
 */
#include <string.h>

#include "sirius_internal.h"

#define SR_LZ4_BLOCK (64 * 1024)
#define SR_LZ4_HASH_LOG 14 /* 16384 u32 positions = 64 KiB table */
#define SR_LZ4_MINMATCH 4
#define SR_LZ4_LASTLITERALS 5 /* the last 5 bytes are always literals */
#define SR_LZ4_MFLIMIT 12     /* a match may not start in the last 12 bytes */

static inline uint32_t sr_read32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint32_t sr_hash(uint32_t v) { return (v * 2654435761u) >> (32 - SR_LZ4_HASH_LOG); }

static uint8_t *sr_put_len(uint8_t *op, size_t len) {
    while (len >= 255) {
        *op++ = 255;
        len -= 255;
    }
    *op++ = (uint8_t)len;
    return op;
}

static uint8_t *sr_sequence(uint8_t *op, const uint8_t *lit, size_t nlit, size_t offset, size_t mlen) {
    uint8_t *token = op++;
    *token = (uint8_t)((nlit >= 15 ? 15 : nlit) << 4);
    if (nlit >= 15) op = sr_put_len(op, nlit - 15);
    memcpy(op, lit, nlit);
    op += nlit;
    if (mlen) {
        *op++ = (uint8_t)offset;
        *op++ = (uint8_t)(offset >> 8);
        size_t m = mlen - SR_LZ4_MINMATCH;
        *token |= (uint8_t)(m >= 15 ? 15 : m);
        if (m >= 15) op = sr_put_len(op, m - 15);
    }
    return op;
}

/* One block (n <= 64 KiB) into dst (capacity >= n + n/255 + 16). Returns the compressed size. */
static size_t sr_lz4_block(const uint8_t *src, size_t n, uint8_t *dst, uint32_t *table) {
    uint8_t *op = dst;
    const uint8_t *anchor = src, *ip = src;
    if (n >= SR_LZ4_MFLIMIT + 1) {
        const uint8_t *mflimit = src + n - SR_LZ4_MFLIMIT;
        const uint8_t *matchlimit = src + n - SR_LZ4_LASTLITERALS;
        memset(table, 0xff, sizeof(uint32_t) << SR_LZ4_HASH_LOG);
        unsigned misses = 0;
        while (ip < mflimit) {
            uint32_t seq = sr_read32(ip);
            uint32_t h = sr_hash(seq);
            uint32_t ref_pos = table[h];
            table[h] = (uint32_t)(ip - src);
            if (ref_pos != 0xffffffffu && sr_read32(src + ref_pos) == seq) {
                const uint8_t *ref = src + ref_pos;
                /* extend backwards over pending literals, then forwards */
                while (ip > anchor && ref > src && ip[-1] == ref[-1]) {
                    ip--;
                    ref--;
                }
                const uint8_t *p = ip + SR_LZ4_MINMATCH, *r = ref + SR_LZ4_MINMATCH;
                while (p < matchlimit && *p == *r) {
                    p++;
                    r++;
                }
                op = sr_sequence(op, anchor, (size_t)(ip - anchor), (size_t)(ip - ref), (size_t)(p - ip));
                ip = anchor = p;
                misses = 0;
                if (ip < mflimit) table[sr_hash(sr_read32(ip - 2))] = (uint32_t)(ip - 2 - src);
            } else {
                /* skip faster through incompressible data, as LZ4's acceleration does */
                ip += 1 + (misses++ >> 6);
            }
        }
    }
    return (size_t)(sr_sequence(op, anchor, (size_t)(src + n - anchor), 0, 0) - dst);
}

size_t sr_lz4_frame_bound(size_t n) {
    size_t blocks = n / SR_LZ4_BLOCK + 1;
    return 7 + blocks * (4 + SR_LZ4_BLOCK + SR_LZ4_BLOCK / 255 + 16) + 4;
}

size_t sr_lz4_frame_compress(const uint8_t *src, size_t n, uint8_t *dst, void *table) {
    static const uint8_t header[7] = {0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82};
    uint8_t *op = dst;
    memcpy(op, header, sizeof header);
    op += sizeof header;
    for (size_t pos = 0; pos < n; pos += SR_LZ4_BLOCK) {
        size_t len = n - pos < SR_LZ4_BLOCK ? n - pos : SR_LZ4_BLOCK;
        size_t c = sr_lz4_block(src + pos, len, op + 4, table);
        uint32_t word;
        if (c >= len) { /* incompressible: store it (high bit set) */
            memcpy(op + 4, src + pos, len);
            word = (uint32_t)len | 0x80000000u;
            c = len;
        } else {
            word = (uint32_t)c;
        }
        for (int i = 0; i < 4; i++) op[i] = (uint8_t)(word >> (8 * i));
        op += 4 + c;
    }
    memset(op, 0, 4); /* end mark */
    return (size_t)(op + 4 - dst);
}

/* Test hook (declared in native.cdef.h only): compress src into dst, -1 if cap is too small. */
int64_t sirius_test_lz4_frame(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);
int64_t sirius_test_lz4_frame(const uint8_t *src, size_t n, uint8_t *dst, size_t cap) {
    static uint32_t table[1 << SR_LZ4_HASH_LOG];
    if (cap < sr_lz4_frame_bound(n)) return -1;
    return (int64_t)sr_lz4_frame_compress(src, n, dst, table);
}
