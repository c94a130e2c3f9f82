/* One pass over an OTLP Export*ServiceRequest's protobuf bytes: per-resource ranges and statistics.
 * Declarations shared by otlp_scan.c and the cffi builder (otel_bridge/_wire_native_build.py). */

typedef struct {
    uint64_t offset;          /* the Resource{Spans,Logs,Metrics} message body within the request */
    uint64_t length;
    uint64_t resource_offset; /* its `resource` field (a Resource message), when has_resource */
    uint64_t resource_length;
    int64_t items;            /* spans, log records or data points */
    int64_t nb_objects;       /* items, a summary point counting 4 */
    int64_t begin_ns;         /* 0 and 0 when no record carries a usable time */
    int64_t end_ns;
    int64_t rejected;         /* items a view will drop */
    uint32_t reasons;         /* SIRIUS_OTLP_REASON_* bits of the rejected items */
    int32_t has_resource;
} sirius_otlp_resource;

#define SIRIUS_OTLP_REASON_SPAN_IDS 1
#define SIRIUS_OTLP_REASON_SPAN_TIMES 2
#define SIRIUS_OTLP_REASON_LOG_IDS 4
#define SIRIUS_OTLP_REASON_POINT_TIME 8

/* signal: 0 traces, 1 logs, 2 metrics. Returns the number of resources (fills out[0..capacity);
 * call again with a larger array when it exceeds capacity), or -1 when the request is not one
 * the scanner vouches for (malformed, unknown fields, not canonical): parse it with upb instead. */
int64_t sirius_otlp_scan(const uint8_t *data, size_t size, int32_t signal,
                         sirius_otlp_resource *out, int64_t capacity);
