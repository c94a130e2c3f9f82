int sirius_native_abi_version(void);

#define SIRIUS_SCAN_E_UNKNOWN_TYPE ...
#define SIRIUS_SCAN_E_TRUNCATED_HEADER ...
#define SIRIUS_SCAN_E_TRUNCATED_BODY ...
#define SIRIUS_SCAN_E_CAPACITY ...
#define SIRIUS_SCAN_E_TOO_LARGE ...

int64_t sirius_transit_scan(const uint8_t *buf, uint64_t len, const int64_t *type_sizes, uint32_t n_types,
                            uint8_t *types, uint32_t *offsets, uint32_t *sizes, int64_t capacity,
                            int64_t *error_offset);
int64_t sirius_transit_gather(const uint8_t *buf, uint64_t len, const uint32_t *starts, const uint32_t *lengths,
                              uint64_t n, uint8_t *out, uint64_t out_capacity);
int64_t sirius_transit_gather_fixed(const uint8_t *buf, uint64_t len, const uint32_t *starts, uint64_t n,
                                    uint32_t width, uint8_t *out, uint64_t out_capacity);

/* ---- native tracer control plane (tracing/native/include/sirius_tracing.h) ---- */
typedef struct sirius_desc sirius_desc;
typedef uint64_t sirius_string;

typedef struct {
    size_t chunk_size;
    uint32_t chunks_per_thread;
    uint32_t max_threads;
    size_t block_size;
    uint32_t flush_period_ms;
    size_t max_queue_bytes;
    int clock;
    int install_atexit;
    const uint8_t *process_id;
    const uint8_t *parent_process_id;
    const char *exe, *username, *realname, *computer, *distro, *cpu_brand;
    const char *const *properties;
    ...;
} sirius_config;

typedef struct {
    int kind;
    uint32_t nb_objects;
    size_t size;
} sirius_item_info;

typedef struct {
    uint64_t events_recorded;
    uint64_t events_dropped;
    uint64_t blocks_produced;
    uint64_t blocks_dropped;
    uint64_t bytes_produced;
    uint64_t threads_attached;
    uint64_t threads_refused;
    uint64_t queued_items;
    uint64_t queued_bytes;
    uint64_t strings_interned;
    uint64_t intern_overflows;
    uint64_t sink_passes;
    uint64_t items_total;
    uint64_t events_lost;
    uint64_t events_internal;
    uint64_t events_queue_dropped;
    uint64_t events_queued;
    uint64_t events_popped;
} sirius_stats;

#define SIRIUS_CLOCK_AUTO ...
#define SIRIUS_CLOCK_TSC ...
#define SIRIUS_CLOCK_MONOTONIC ...
#define SIRIUS_ITEM_PROCESS ...
#define SIRIUS_ITEM_STREAM ...
#define SIRIUS_ITEM_BLOCK ...
#define SIRIUS_E_CLOSED ...
#define SIRIUS_E_TOO_SMALL ...
#define SIRIUS_E_STATE ...
#define SIRIUS_E_INVALID ...
#define SIRIUS_E_NOMEM ...
#define SIRIUS_E_TIMEOUT ...
#define SIRIUS_DESC_SPAN ...
#define SIRIUS_DESC_LOCATION ...
#define SIRIUS_DESC_LOG ...
#define SIRIUS_DESC_METRIC ...

void sirius_config_default(sirius_config *cfg);
int sirius_init(const sirius_config *cfg);
int sirius_flush(int timeout_ms);
int sirius_shutdown(int timeout_ms);
int sirius_is_running(void);
int64_t sirius_next_item(void *buf, size_t cap, int timeout_ms, sirius_item_info *info);
void sirius_get_stats(sirius_stats *out);
int sirius_process_id(uint8_t out[16]);
int64_t sirius_process_info(void *buf, size_t cap);
uint64_t sirius_tick_frequency(void);
void sirius_set_thread_untraced(int untraced);
uint64_t sirius_now(void);
int sirius_py_fast_init(void);

/* hot calls through plain cffi: only for the benchmark's comparison (they release the GIL) */
void sirius_span_begin(const sirius_desc *desc);
void sirius_span_end(const sirius_desc *desc);
size_t sr_lz4_frame_bound(size_t n);
int64_t sirius_test_lz4_frame(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);
