/* OTLP wire scanner: one C pass over an Export{Trace,Logs,Metrics}ServiceRequest's bytes.
 *
 * For each ResourceSpans / ResourceLogs / ResourceMetrics it reports the byte range, the range of
 * its Resource, the item count, time bounds and rejected items (the rules of otel_bridge/_blocks.py)
 * without building any Python object. It vouches for a request only when every resource message is
 * *canonical* - byte for byte what upb's SerializeToString writes after parsing it (ascending field
 * numbers, no implicit-presence defaults, packed repeated scalars, minimal varints, known fields
 * only, at most one member per oneof, valid UTF-8 strings) - so that the range can be stored as the
 * block payload and hashed for its id exactly as the upb path would. Anything else answers -1 and
 * the caller falls back to upb, which either accepts it (and re-encodes) or refuses it with its
 * own error: the scanner never decides that a request is invalid.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "otlp_scan.h"

enum { K_NONE = 0, K_INT32, K_UINT32, K_SINT32, K_VARINT64, K_BOOL, K_FIXED64, K_FIXED32, K_STRING, K_BYTES, K_MESSAGE };
enum { F_REPEATED = 1, F_PACKED = 2, F_PRESENCE = 4, F_RESOURCE = 8 };
enum {
    ROLE_NONE = 0,
    ROLE_RESOURCE,
    ROLE_SPAN,
    ROLE_LOG_RECORD,
    ROLE_NUMBER_POINT,
    ROLE_POINT,
    ROLE_SUMMARY_POINT,
    ROLE_EXEMPLAR
};

#define FIELD_SLOTS 32 /* field numbers a table can hold; OTLP_MAX_FIELD must stay below */

typedef struct {
    uint8_t kind;
    uint8_t wire1; /* expected wire type + 1; 0 (no field) matches no tag */
    uint8_t flags;
    uint8_t oneof;
    int8_t child;
} otlp_field;

typedef struct {
    uint8_t role;
    otlp_field fields[FIELD_SLOTS];
} otlp_message;

#include "otlp_schema.h"

_Static_assert(OTLP_MAX_FIELD < FIELD_SLOTS, "field numbers must fit the table");

#define MAX_DEPTH 64 /* upb allows 100 from Python; deeper requests take the upb path */

typedef struct {
    const uint8_t *base;
    sirius_otlp_resource *cur;
    int has_begin;
    int has_end;
    int reorder; /* a metric needs prost's oneof reordering: leave it to the Python path */
} scan_ctx;

/* A minimal (canonical) varint; 0 on truncation, overlong or non-minimal encodings. */
static inline int read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    if (p < end && *p < 0x80) {
        *out = *p;
        *pp = p + 1;
        return 1;
    }
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (p >= end)
            return 0;
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if (b < 0x80) {
            if (b == 0 || (i == 9 && b > 1))
                return 0;
            *out = v;
            *pp = p;
            return 1;
        }
    }
    return 0;
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), as upb checks strings. */
static int valid_utf8(const uint8_t *p, const uint8_t *end)
{
    while (p < end) {
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (w & 0x8080808080808080ULL)
                break;
            p += 8;
        }
        if (p >= end)
            break;
        uint8_t c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        ptrdiff_t left = end - p;
        if (c >= 0xC2 && c <= 0xDF) {
            if (left < 2 || (p[1] & 0xC0) != 0x80)
                return 0;
            p += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (left < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F))
                return 0;
            p += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (left < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))
                return 0;
            p += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* Whether a varint value is what upb writes back for a field of this kind. */
static inline int canonical_value(uint8_t kind, uint64_t v)
{
    switch (kind) {
    case K_INT32:
        return v == (uint64_t)(int64_t)(int32_t)(uint32_t)v;
    case K_UINT32:
    case K_SINT32:
        return v <= 0xFFFFFFFFULL;
    case K_BOOL:
        return v <= 1;
    default:
        return 1;
    }
}

static inline int is_varint_kind(uint8_t kind)
{
    return kind == K_INT32 || kind == K_UINT32 || kind == K_SINT32 || kind == K_VARINT64 || kind == K_BOOL;
}

static int packed_ok(uint8_t kind, const uint8_t *p, const uint8_t *end)
{
    size_t n = (size_t)(end - p);
    if (n == 0)
        return 0; /* upb writes nothing for an empty repeated field */
    if (kind == K_FIXED64)
        return n % 8 == 0;
    if (kind == K_FIXED32)
        return n % 4 == 0;
    while (p < end) {
        uint64_t v;
        if (!read_varint(&p, end, &v) || !canonical_value(kind, v))
            return 0;
    }
    return 1;
}

static inline int64_t as_i64(uint64_t v)
{
    return (int64_t)v; /* fixed64 times are i64 in Rust (`as i64` wraps) */
}

static inline void add_time(scan_ctx *c, uint64_t t)
{
    int64_t v = as_i64(t);
    sirius_otlp_resource *r = c->cur;
    if (!c->has_begin || v < r->begin_ns)
        r->begin_ns = v;
    if (!c->has_end || v > r->end_ns)
        r->end_ns = v;
    c->has_begin = c->has_end = 1;
}

/* Statistics of one finished record; val[n] = value or length of field n, seen = fields present. */
static void record(scan_ctx *c, uint8_t role, const uint64_t *val, uint32_t seen)
{
    sirius_otlp_resource *r = c->cur;
    switch (role) {
    case ROLE_SPAN: {
        uint64_t start = val[7], end = val[8];
        r->items++;
        r->nb_objects++;
        if (start) {
            int64_t v = as_i64(start);
            if (!c->has_begin || v < r->begin_ns)
                r->begin_ns = v;
            c->has_begin = 1;
        }
        if (end) {
            int64_t v = as_i64(end);
            if (!c->has_end || v > r->end_ns)
                r->end_ns = v;
            c->has_end = 1;
        }
        if (val[1] != 16 || val[2] != 8 || (val[4] != 0 && val[4] != 8)) {
            r->rejected++;
            r->reasons |= SIRIUS_OTLP_REASON_SPAN_IDS;
        } else if (!start || !end) {
            r->rejected++;
            r->reasons |= SIRIUS_OTLP_REASON_SPAN_TIMES;
        }
        break;
    }
    case ROLE_LOG_RECORD: {
        uint64_t t = val[1] ? val[1] : val[11];
        r->items++;
        r->nb_objects++;
        if (t)
            add_time(c, t);
        if ((val[9] != 0 && val[9] != 16) || (val[10] != 0 && val[10] != 8)) {
            r->rejected++;
            r->reasons |= SIRIUS_OTLP_REASON_LOG_IDS;
        }
        break;
    }
    case ROLE_NUMBER_POINT:
    case ROLE_POINT:
    case ROLE_SUMMARY_POINT:
        r->items++;
        r->nb_objects += role == ROLE_SUMMARY_POINT ? 4 : 1;
        if (val[3]) {
            add_time(c, val[3]);
        } else {
            r->rejected++;
            r->reasons |= SIRIUS_OTLP_REASON_POINT_TIME;
        }
        /* prost writes NumberDataPoint.as_int (6) before exemplars (5) */
        if (role == ROLE_NUMBER_POINT && (seen & (1u << 6)) && (seen & (1u << 5)))
            c->reorder = 1;
        break;
    case ROLE_EXEMPLAR:
        /* prost writes Exemplar.as_int (6) before span_id (4) and trace_id (5) */
        if ((seen & (1u << 6)) && (seen & ((1u << 4) | (1u << 5))))
            c->reorder = 1;
        break;
    default:
        break;
    }
}

static int scan_message(scan_ctx *c, const uint8_t *p, const uint8_t *end, int msg, int depth)
{
    if (depth > MAX_DEPTH)
        return 0;
    const otlp_message *m = &OTLP_MESSAGES[msg];
    uint64_t val[OTLP_MAX_FIELD + 1];
    uint32_t seen = 0, oneofs = 0, prev = 0;
    if (m->role != ROLE_NONE)
        memset(val, 0, sizeof val);
    while (p < end) {
        uint64_t tag;
        if (!read_varint(&p, end, &tag))
            return 0;
        uint64_t number = tag >> 3;
        if (number > OTLP_MAX_FIELD)
            return 0;
        const otlp_field *f = &m->fields[number]; /* number 0 has no field */
        if ((tag & 7) + 1 != f->wire1)
            return 0; /* unknown field, or not the wire type upb writes */
        if (number <= prev && (number < prev || (f->flags & (F_REPEATED | F_PACKED)) != F_REPEATED))
            return 0; /* out of order, or a second occurrence of a field written once */
        prev = (uint32_t)number;
        if (f->oneof) {
            if (oneofs & (1u << f->oneof))
                return 0;
            oneofs |= 1u << f->oneof;
        }
        seen |= 1u << number;
        uint64_t v;
        switch (f->kind) {
        case K_FIXED64:
            if (f->flags & F_PACKED)
                goto packed;
            if (end - p < 8)
                return 0;
            memcpy(&v, p, 8);
            p += 8;
            goto scalar;
        case K_FIXED32: {
            uint32_t v32;
            if (f->flags & F_PACKED)
                goto packed;
            if (end - p < 4)
                return 0;
            memcpy(&v32, p, 4);
            v = v32;
            p += 4;
            goto scalar;
        }
        case K_STRING:
        case K_BYTES:
        case K_MESSAGE:
            if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return 0;
            if (f->kind == K_MESSAGE) {
                if (f->flags & F_RESOURCE) {
                    c->cur->resource_offset = (uint64_t)(p - c->base);
                    c->cur->resource_length = v;
                    c->cur->has_resource = 1;
                }
                if (!scan_message(c, p, p + v, f->child, depth + 1))
                    return 0;
            } else {
                if (v == 0 && !(f->flags & (F_PRESENCE | F_REPEATED)))
                    return 0; /* an empty implicit-presence string is not written back */
                if (f->kind == K_STRING && !valid_utf8(p, p + v))
                    return 0;
            }
            p += v;
            break;
        default: /* varint kinds */
            if (f->flags & F_PACKED)
                goto packed;
            if (!read_varint(&p, end, &v) || !canonical_value(f->kind, v))
                return 0;
            goto scalar;
        }
        val[number] = v;
        continue;
    scalar:
        if (v == 0 && !(f->flags & F_PRESENCE))
            return 0; /* an implicit-presence zero is not written back */
        val[number] = v;
        continue;
    packed: {
        uint64_t len;
        if (!read_varint(&p, end, &len) || len > (uint64_t)(end - p) || !packed_ok(f->kind, p, p + len))
            return 0;
        p += len;
        continue;
    }
    }
    if (m->role != ROLE_NONE)
        record(c, m->role, val, seen);
    return 1;
}

int64_t sirius_otlp_scan(const uint8_t *data, size_t size, int32_t signal, sirius_otlp_resource *out,
                         int64_t capacity)
{
    int root;
    switch (signal) {
    case 0:
        root = OTLP_MSG_RESOURCESPANS;
        break;
    case 1:
        root = OTLP_MSG_RESOURCELOGS;
        break;
    case 2:
        root = OTLP_MSG_RESOURCEMETRICS;
        break;
    default:
        return -1;
    }
    const uint8_t *p = data, *end = data + size;
    scan_ctx c = {.base = data};
    int64_t n = 0;
    while (p < end) {
        uint64_t tag, len;
        /* the request has one field: repeated Resource* = 1; anything else goes to upb */
        if (!read_varint(&p, end, &tag) || tag != ((1u << 3) | 2) || !read_varint(&p, end, &len) ||
            len > (uint64_t)(end - p))
            return -1;
        sirius_otlp_resource scratch;
        sirius_otlp_resource *r = n < capacity ? &out[n] : &scratch;
        memset(r, 0, sizeof *r);
        r->offset = (uint64_t)(p - data);
        r->length = len;
        c.cur = r;
        c.has_begin = c.has_end = 0;
        if (!scan_message(&c, p, p + len, root, 1))
            return -1;
        if (!c.has_begin || !c.has_end)
            r->begin_ns = r->end_ns = 0;
        p += len;
        n++;
    }
    return c.reorder ? -1 : n;
}
