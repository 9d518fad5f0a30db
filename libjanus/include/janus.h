/*
 * libjanus: Janus's decision core for C and C-adjacent apps, without a Python interpreter.
 *
 *   decision table  (janus_table_*)      a file written by `janus-deploy export-table`
 *   scheduler       (janus_scheduler_*)  one decision from a bandwidth / RTT / SLA (paper and
 *                                        janus-deploy modes, the baselines)
 *   controller      (janus_controller_*) the control loop: bandwidth estimators, RTT tracker,
 *                                        deflation, margin, circuit breaker, probing, fed with
 *                                        observations after each request
 *   wire            (janus_v2_*)         KServe V2 binary request bodies for the boundary
 *                                        tensors, response decoding (bring your own HTTP client)
 *
 * It mirrors janus_deploy.schedule (scheduler.py, controller.py, estimators.py) and
 * janus_deploy.wire (v2.py, codecs.py) operation for operation: the same inputs give the same
 * decisions, the same floating-point results and the same bytes. docs/c-api.md is the manual.
 *
 * C11, no dependency beyond libc and libm. All errors are reported through a janus_error the
 * caller passes (may be NULL); the library keeps no global state.
 *
 * Thread safety: a loaded janus_table and a janus_scheduler are immutable, so any number of
 * threads may use them at once (janus_decide, janus_baseline, janus_evaluate and
 * janus_controller_decide are read-only). A janus_controller is mutated by
 * janus_controller_observe*: one thread at a time per controller (or a lock of the caller's).
 * The wire functions are reentrant. The table must outlive every scheduler and controller
 * made from it (decisions point at its strings).
 */
#ifndef JANUS_H
#define JANUS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define JANUS_API __declspec(dllexport)
#elif defined(__GNUC__)
#define JANUS_API __attribute__((visibility("default")))
#else
#define JANUS_API
#endif

#define JANUS_VERSION_MAJOR 1
#define JANUS_VERSION_MINOR 1
#define JANUS_VERSION_PATCH 0
/** The decision-table format version this library reads (docs/decision-table.md). */
#define JANUS_TABLE_VERSION 1

/* ------------------------------------------------------------------------------ errors */

typedef enum janus_status {
    JANUS_OK = 0,
    JANUS_E_IO = 1,       /* the file cannot be opened or read */
    JANUS_E_FORMAT = 2,   /* not a decision table: bad magic, truncated, sections that do not fit */
    JANUS_E_VERSION = 3,  /* a table format version this library does not read */
    JANUS_E_CHECKSUM = 4, /* the checksum does not match (a corrupted or edited file) */
    JANUS_E_CORRUPT = 5,  /* the checksum matches but the content is inconsistent */
    JANUS_E_NOMEM = 6,    /* out of memory */
    JANUS_E_INVALID = 7,  /* a bad argument (out of range, NaN, unknown name, ...) */
    JANUS_E_NOSPACE = 8,  /* an output buffer is too small; the size needed was reported */
    JANUS_E_WIRE = 9,     /* a V2 body that does not decode */
    JANUS_E_PYTHON = 10   /* embedded runtime (janus_embed.h): the Python side failed */
} janus_status;

/** What went wrong: ``code`` (a janus_status) and a one-line message. */
typedef struct janus_error {
    int code;
    char message[512];
} janus_error;

/** "JANUS_OK", "JANUS_E_FORMAT", ... ("JANUS_E_UNKNOWN" for other values). */
JANUS_API const char *janus_status_name(int code);
/** The library version, "1.1.0". */
JANUS_API const char *janus_version(void);

/* ------------------------------------------------------------------------------ enums */

typedef enum janus_policy {
    JANUS_POLICY_EXPONENTIAL = 0, /* Janus's levels: α */
    JANUS_POLICY_LINEAR = 1,
    JANUS_POLICY_CONSTANT = 2     /* ToMe's constant r: the baselines' level */
} janus_policy;

/** Scheduler modes (janus_decide). */
typedef enum janus_mode {
    JANUS_MODE_DEPLOY = 0, /* janus-deploy: real payload bytes, codec time, RTT, margin, accuracy */
    JANUS_MODE_PAPER = 1   /* the Janus paper's Algorithm 1 */
} janus_mode;

/** Systems a controller runs (ControllerConfig.system). */
typedef enum janus_system {
    JANUS_SYSTEM_DEVICE_ONLY = 0,
    JANUS_SYSTEM_CLOUD_ONLY = 1,
    JANUS_SYSTEM_MIXED = 2,
    JANUS_SYSTEM_JANUS_PAPER = 3,
    JANUS_SYSTEM_JANUS_DEPLOY = 4
} janus_system;

typedef enum janus_estimator {
    JANUS_ESTIMATOR_HARMONIC = 0, /* harmonic mean of the last `window` samples (FESTIVE) */
    JANUS_ESTIMATOR_EWMA = 1,     /* alpha·sample + (1 − alpha)·estimate */
    JANUS_ESTIMATOR_ROBUSTMPC = 2 /* harmonic mean / (1 + max recent error) */
} janus_estimator;

typedef enum janus_rtt_estimate {
    JANUS_RTT_MAX = 0,   /* max of the last `rtt_window` RTT samples */
    JANUS_RTT_MEDIAN = 1
} janus_rtt_estimate;

/** How the controller learns the server's load (ControllerConfig.cloud_load, schedule/cloud_load.py). */
typedef enum janus_cloud_load {
    JANUS_CLOUD_LOAD_EXTRA = 0,  /* an additive wait: server_ms - expected_ms */
    JANUS_CLOUD_LOAD_FACTOR = 1, /* a ratio over the profile (of the compute, the rest additive, when reported) */
    JANUS_CLOUD_LOAD_OFF = 2     /* the profile's idle costs (load-unaware) */
} janus_cloud_load;

/* ------------------------------------------------------------------------------ table */

typedef struct janus_table janus_table;

/** Load a decision table file. On success *out owns the table (janus_table_free). */
JANUS_API int janus_table_load(const char *path, janus_table **out, janus_error *err);
/** Load a table from memory (copied: ``data`` may be freed afterwards). */
JANUS_API int janus_table_load_memory(const void *data, size_t size, janus_table **out, janus_error *err);
/** Free a table (NULL is fine). Free its schedulers and controllers first. */
JANUS_API void janus_table_free(janus_table *table);

typedef struct janus_table_info {
    const char *model_name;    /* timm name of the plan's model */
    const char *plan_hash;     /* NULL when the profiles carry none */
    const char *edge_device;   /* device names of the two profiles */
    const char *cloud_device;
    const char *accuracy_metric; /* "accuracy", "agreement" or "none" */
    int num_blocks;            /* N */
    int embed_dim;             /* D */
    int num_tokens;            /* x_0 */
    int num_prefix_tokens;
    int img_height, img_width;
    int num_levels;
    int num_candidates;
    const int *candidates;     /* split points, 0 (cloud only) .. N+1 (device only) */
    int num_segments;          /* segments per level (num_candidates − 1) */
    int num_codecs;
    int default_codec;         /* index (janus_table_codec) */
    int baseline_level;        /* the constant-policy level of the baselines, −1: none */
    int has_names;             /* 1: V2 model names and engine files are in the table (--plan) */
} janus_table_info;

JANUS_API void janus_table_get_info(const janus_table *table, janus_table_info *out);

typedef struct janus_level_info {
    int policy;           /* janus_policy */
    double alpha;         /* α, or r for the constant policy */
    double accuracy;      /* NaN: the table has no value for this level */
    int plan_level;       /* level index in the plan, −1 without a plan */
    const char *label;    /* "0.24", "r23" */
    const uint32_t *tokens; /* x_0 .. x_N (num_blocks + 1 counts) */
} janus_level_info;

/** Level ``index`` (0 .. num_levels − 1, the edge profile's order = Decision.level_index). */
JANUS_API int janus_table_level(const janus_table *table, int index, janus_level_info *out, janus_error *err);
/** Name of codec ``index`` ("fp16", ...), NULL when out of range. */
JANUS_API const char *janus_table_codec(const janus_table *table, int index);
/** Index of codec ``name``, −1 when the table has no such codec. */
JANUS_API int janus_table_codec_index(const janus_table *table, const char *name);

/* ------------------------------------------------------------------------------ settings */

/** Scheduler and controller settings; janus_table_config() fills in what the table stores
 * (the values `export-table` was given, ControllerConfig's defaults otherwise). */
typedef struct janus_config {
    /* scheduler */
    double sla_ms;           /* latency SLA (ms, > 0) */
    const char *codec;       /* payload codec; NULL: the table's default */
    int64_t frame_bytes;     /* bytes sent at s = 0; −1: the profile's (the uint8 frame) */
    /* controller (janus_deploy.schedule.controller.ControllerConfig) */
    int system;              /* janus_system */
    int estimator;           /* janus_estimator */
    int window;              /* estimator window (samples, >= 1) */
    double cold_start_mbps;  /* the estimate before any sample (> 0) */
    double ewma_alpha;       /* EWMA weight of the newest sample, (0, 1] */
    double margin;           /* fraction of the SLA held back (janus-deploy), [0, 1) */
    int deflate;             /* divide the estimate by 1 + the recent overshoot of estimates from samples (janus-deploy) */
    double rtt_cold_ms;      /* RTT before any sample (>= 0) */
    int rtt_fixed;           /* keep rtt_cold_ms whatever is observed */
    int rtt_window;          /* RTT samples kept (>= 1) */
    int rtt_estimate;        /* janus_rtt_estimate */
    double probe_interval_s; /* probe after this long without a link sample; 0: never */
    int breaker_failures;    /* consecutive server failures that open the breaker; 0: off */
    double breaker_open_s;   /* first open period */
    double breaker_max_open_s; /* cap of the doubling open period */
    /* the server's load (appended in 1.1; the table does not store them: janus_table_config gives
     * ControllerConfig's defaults, factor / 5 / 4 s) */
    int cloud_load;            /* janus_cloud_load */
    int cloud_window;          /* samples kept (>= 1) */
    double cloud_half_life_s;  /* each sample decays towards no load with this half-life (> 0) */
} janus_config;

JANUS_API void janus_table_config(const janus_table *table, janus_config *out);

/* ------------------------------------------------------------------------------ decisions */

/** One decision and its predicted latency breakdown (ms), as janus_deploy's Decision. */
typedef struct janus_decision {
    int level_index;         /* index of the level in the table (the edge profile's order) */
    int policy;              /* janus_policy */
    double alpha;
    int split;               /* 0 = cloud only (the frame is sent), N+1 = device only */
    double predicted_ms;
    int meets_sla;           /* predicted_ms <= SLA */
    double edge_ms, encode_ms, comm_ms, rtt_ms, decode_ms, cloud_ms; /* the breakdown */
    uint64_t bytes;          /* what is sent: the codec's payload, the frame at s = 0, 0 at N+1 */
    double accuracy;         /* NaN: none */
    int plan_level;          /* level in the plan, −1 without a plan */
    const char *model;       /* V2 model to call in the cloud (janus_L{level}_S{split});
                                NULL at device only or without a plan */
    int num_engines;         /* segments the edge runs: 0 at s = 0, all at N+1 */
    const char *const *engines; /* their engine files (num_engines); NULL without a plan */
    const char *codec;       /* the payload codec sent (Decision.codec); NULL at device only */
} janus_decision;

/* ------------------------------------------------------------------------------ scheduler */

typedef struct janus_scheduler janus_scheduler;

/** A scheduler over ``table`` with payload ``codec`` (NULL: the table's default) and
 * ``frame_bytes`` sent at s = 0 (−1: the profile's). Holds both modes' cost tables. */
JANUS_API int janus_scheduler_new(const janus_table *table, const char *codec, int64_t frame_bytes,
                                  janus_scheduler **out, janus_error *err);
JANUS_API void janus_scheduler_free(janus_scheduler *sched);
/** The scheduler's codec name. */
JANUS_API const char *janus_scheduler_codec(const janus_scheduler *sched);

/** Choose (α, split) for an uplink of ``bandwidth_mbps`` (>= 0, may be +inf): Scheduler.decide.
 * ``rtt_ms`` (finite, >= 0) and ``margin`` ([0, 1)) count in JANUS_MODE_DEPLOY only. */
JANUS_API int janus_decide(const janus_scheduler *sched, int mode, double bandwidth_mbps, double rtt_ms,
                           double margin, double sla_ms, janus_decision *out, janus_error *err);
/** janus_decide with the server's load: every option that sends is predicted to spend
 * ``cloud_factor`` × (decode + tail) + ``cloud_extra_ms`` on the server (Scheduler.decide's
 * cloud_factor / cloud_extra_ms; JANUS_MODE_DEPLOY only; 1 and 0: janus_decide, bit for bit). */
JANUS_API int janus_decide_loaded(const janus_scheduler *sched, int mode, double bandwidth_mbps, double rtt_ms,
                                  double margin, double sla_ms, double cloud_factor, double cloud_extra_ms,
                                  janus_decision *out, janus_error *err);
/** What the profile expects the server to spend on option (level_index, split) idle: decode +
 * tail, 0 at device only (Scheduler.server_ms; an observation's expected_ms). */
JANUS_API int janus_server_ms_expected(const janus_scheduler *sched, int level_index, int split, double *out,
                                       janus_error *err);
/** A baseline (JANUS_SYSTEM_DEVICE_ONLY, _CLOUD_ONLY or _MIXED) at the table's constant level. */
JANUS_API int janus_baseline(const janus_scheduler *sched, int system, double bandwidth_mbps, double rtt_ms,
                             double sla_ms, janus_decision *out, janus_error *err);
/** janus_baseline with the server's load (as janus_decide_loaded; mixed compares the loaded costs). */
JANUS_API int janus_baseline_loaded(const janus_scheduler *sched, int system, double bandwidth_mbps, double rtt_ms,
                                    double sla_ms, double cloud_factor, double cloud_extra_ms, janus_decision *out,
                                    janus_error *err);
/** The predicted latency of one given option (level_index, split): Scheduler.evaluate. */
JANUS_API int janus_evaluate(const janus_scheduler *sched, int mode, int level_index, int split,
                             double bandwidth_mbps, double rtt_ms, double sla_ms, janus_decision *out,
                             janus_error *err);

/* ------------------------------------------------------------------------------ controller */

typedef enum janus_observation_kind {
    JANUS_OBS_TRANSFER = 0,    /* nbytes crossed the uplink in seconds (a link sample) */
    JANUS_OBS_RATE = 1,        /* a directly observed throughput mbps */
    JANUS_OBS_OUTAGE = 2,      /* nothing got through */
    JANUS_OBS_SERVER = 3,      /* the link worked, the server did not answer usably */
    JANUS_OBS_UNAUTHORIZED = 4 /* 401/403: offloading stops for good */
} janus_observation_kind;

/** What one exchange taught the controller (janus_deploy Observation). */
typedef struct janus_observation {
    double t;          /* seconds on the caller's clock */
    int kind;          /* janus_observation_kind */
    double nbytes;     /* JANUS_OBS_TRANSFER */
    double seconds;    /* JANUS_OBS_TRANSFER */
    double mbps;       /* JANUS_OBS_RATE */
    double rtt_ms;     /* an RTT sample; NaN: none */
    int server_ok;     /* 1: answered usably, 0: failed after the upload, −1: says nothing */
    int probe;         /* 1 for a probe */
    /* the server's time (appended in 1.1; NaN: unknown): what it reported for this request, what
     * the profile expects it to spend idle (janus_server_ms_expected), and of server_ms its decode +
     * compute when it says (the built-in server's janus_decode_ms + janus_compute_ms) */
    double server_ms, expected_ms, server_compute_ms;
} janus_observation;

/** An observation of ``kind`` at ``t`` with every other field "none". */
JANUS_API void janus_observation_init(janus_observation *obs, double t, int kind);

typedef enum janus_reason {
    JANUS_REASON_SCHEDULER = 0,
    JANUS_REASON_BREAKER_OPEN = 1,
    JANUS_REASON_UNAUTHORIZED = 2
} janus_reason;

/** A decision and the controller state it was made from (janus_deploy Choice). */
typedef struct janus_choice {
    janus_decision decision;
    double estimate_mbps;  /* the estimator's raw estimate */
    double bandwidth_mbps; /* what the scheduler was given (deflated; 0 while offloading is off) */
    double rtt_ms;
    double recent_error;   /* the deflation divided by 1 + this (the recent overshoot; robustmpc: its own error) */
    int reason;            /* janus_reason */
    double cloud_factor;   /* the server's load the decision was made with (appended in 1.1) */
    double cloud_extra_ms;
} janus_choice;

typedef struct janus_controller_state {
    int breaker_open;
    int consecutive_failures;
    int breaker_opened;     /* times it opened */
    int config_error;       /* 1 after a 401/403 */
    double estimate_mbps;
    double rtt_ms;
    long long observations;
} janus_controller_state;

typedef struct janus_controller janus_controller;

/** A controller over ``table`` with ``config`` (NULL: janus_table_config's). */
JANUS_API int janus_controller_new(const janus_table *table, const janus_config *config,
                                   janus_controller **out, janus_error *err);
JANUS_API void janus_controller_free(janus_controller *ctl);
/** The controller's scheduler (for janus_evaluate of a forced option). */
JANUS_API const janus_scheduler *janus_controller_scheduler(const janus_controller *ctl);
/** The decision for a request starting at ``t`` (read-only). */
JANUS_API int janus_controller_decide(const janus_controller *ctl, double t, janus_choice *out, janus_error *err);
/** Learn from one observation; *sample_mbps (may be NULL) gets the link sample it gave, NaN if none. */
JANUS_API int janus_controller_observe(janus_controller *ctl, const janus_observation *obs, double *sample_mbps,
                                       janus_error *err);
/** Should the caller probe the server after the request at ``t``? (Controller.probe_due: before
 * the first link sample, during which janus-deploy runs on the device when that alone meets the
 * budget; at once after a probe that found the link up while the estimate or the deflated
 * bandwidth is under half its sample, at most `window` times in a row; 0.25 s after a surprise (an
 * outage, or a sample the estimate missed by half of it or more), doubling per further one up to probe_interval_s; else
 * after probe_interval_s without a link sample.) */
JANUS_API int janus_controller_probe_due(const janus_controller *ctl, double t);
JANUS_API void janus_controller_get_state(const janus_controller *ctl, janus_controller_state *out);

/** How one HTTP exchange with the V2 server ended (what janus_deploy's Transport reports). */
typedef enum janus_exchange_kind {
    JANUS_EXCHANGE_OK = 0,
    JANUS_EXCHANGE_TIMEOUT = 1,      /* no answer before the deadline */
    JANUS_EXCHANGE_UNREACHABLE = 2,  /* no connection */
    JANUS_EXCHANGE_DROPPED = 3,      /* connection lost mid-exchange */
    JANUS_EXCHANGE_SERVER_ERROR = 4, /* a non-200 answer (not 401/403) */
    JANUS_EXCHANGE_PROTOCOL = 5,     /* an unreadable answer or unusable logits */
    JANUS_EXCHANGE_UNAUTHORIZED = 6  /* 401/403 */
} janus_exchange_kind;

typedef struct janus_exchange {
    int kind;          /* janus_exchange_kind */
    double sent;       /* bytes handed to the socket */
    double unacked;    /* of those, bytes the server had not acknowledged (0 when unknown) */
    double body_bytes; /* bytes of the body */
    double upload_s;   /* first to last byte handed to the socket */
    double network_s;  /* send to answer minus the server's own time (JANUS_EXCHANGE_OK) */
    double elapsed_s;  /* send to answer or failure */
    double server_receive_ms; /* the server's janus_receive_ms (headers to the body's last byte), 0: none */
    int probe;
} janus_exchange;

/** Turn an exchange into observations exactly as EdgeRuntime.observations_of does, and observe
 * them at ``t``. *sample_mbps as janus_controller_observe. */
JANUS_API int janus_controller_observe_exchange(janus_controller *ctl, double t, const janus_exchange *ex,
                                                double *sample_mbps, janus_error *err);

/* ------------------------------------------------------------------------------ wire (KServe V2) */

typedef enum janus_dtype {
    JANUS_DT_BOOL = 0, JANUS_DT_UINT8, JANUS_DT_UINT16, JANUS_DT_UINT32, JANUS_DT_UINT64,
    JANUS_DT_INT8, JANUS_DT_INT16, JANUS_DT_INT32, JANUS_DT_INT64,
    JANUS_DT_FP16, JANUS_DT_FP32, JANUS_DT_FP64
} janus_dtype;

#define JANUS_MAX_DIMS 8
/** The header that carries the JSON header's length of a binary-tensor body. */
#define JANUS_HEADER_LENGTH "Inference-Header-Content-Length"

/** "FP32", ... (NULL for an unknown value). */
JANUS_API const char *janus_dtype_name(int dtype);
/** Bytes per element, 0 for an unknown value. */
JANUS_API size_t janus_dtype_size(int dtype);

/** One named tensor: little-endian, row-major ``data`` of ``nbytes`` bytes. */
typedef struct janus_tensor {
    const char *name;
    int dtype;               /* janus_dtype */
    int ndim;
    const int64_t *shape;
    const void *data;
    size_t nbytes;
} janus_tensor;

/** Encode a V2 inference request with binary tensors (v2.encode_request with binary=True):
 * the JSON header, then every tensor's bytes. ``request_id`` may be NULL; ``outputs`` names the
 * outputs asked for (binary when ``binary_output``). *body_len always gets the size needed and
 * *header_len the JSON header's length (the Inference-Header-Content-Length value);
 * JANUS_E_NOSPACE when ``capacity`` is smaller (``buf`` may be NULL to ask for the size). */
JANUS_API int janus_v2_encode_request(const janus_tensor *inputs, size_t num_inputs, const char *request_id,
                                      const char *const *outputs, size_t num_outputs, int binary_output,
                                      void *buf, size_t capacity, size_t *body_len, size_t *header_len,
                                      janus_error *err);

/** The body EdgeRuntime sends at split 0: input "frame", UINT8 [1, height, width, 3], asking for
 * binary "logits". */
JANUS_API int janus_v2_encode_frame(const uint8_t *rgb, int height, int width, const char *request_id,
                                    void *buf, size_t capacity, size_t *body_len, size_t *header_len,
                                    janus_error *err);

/** The body EdgeRuntime sends at 1 <= split <= N: the boundary tensors (tokens [1, x, dim] and
 * size [1, x, 1], float32 as the head segment returns them) encoded with ``codec`` ("fp32",
 * "fp16", "fp16-zstd" or "int8": wire/codecs.py, bit for bit). For a codec that compresses
 * (fp16-zstd) the caller zstd-compresses the body and sends Content-Encoding: zstd. */
JANUS_API int janus_v2_encode_tokens(const char *codec, const float *tokens, const float *size, int x, int dim,
                                     const char *request_id, void *buf, size_t capacity, size_t *body_len,
                                     size_t *header_len, janus_error *err);

/** 1 when ``codec`` compresses the body with zstd (fp16-zstd), 0 when not, −1 when unknown. */
JANUS_API int janus_codec_compresses(const char *codec);

typedef struct janus_v2_output {
    const char *name;
    int dtype;               /* janus_dtype */
    int ndim;
    int64_t shape[JANUS_MAX_DIMS];
    const void *data;        /* little-endian, row-major; owned by the response, aligned for dtype */
    size_t nbytes;
} janus_v2_output;

typedef struct janus_v2_response janus_v2_response;

/** Decode a V2 response body (v2.parse_response): ``header_len`` is the
 * Inference-Header-Content-Length value, −1 when the answer had none (all JSON). Binary and
 * JSON ("data") outputs both decode; the response owns copies of everything. */
JANUS_API int janus_v2_decode_response(const void *body, size_t len, int64_t header_len,
                                       janus_v2_response **out, janus_error *err);
JANUS_API void janus_v2_response_free(janus_v2_response *resp);
JANUS_API size_t janus_v2_response_num_outputs(const janus_v2_response *resp);
JANUS_API const janus_v2_output *janus_v2_response_output(const janus_v2_response *resp, size_t index);
/** The output called ``name``, NULL when absent. */
JANUS_API const janus_v2_output *janus_v2_response_find(const janus_v2_response *resp, const char *name);
/** The response's "id" and "model_name" (NULL when absent or not strings). */
JANUS_API const char *janus_v2_response_id(const janus_v2_response *resp);
JANUS_API const char *janus_v2_response_model(const janus_v2_response *resp);
/** A numeric response parameter (e.g. "janus_server_ms"): 1 and *value when present, else 0. */
JANUS_API int janus_v2_response_parameter(const janus_v2_response *resp, const char *name, double *value);

/** IEEE binary16 <-> float32 (round to nearest even, as numpy's astype). */
JANUS_API uint16_t janus_fp16_from_float(float value);
JANUS_API float janus_fp16_to_float(uint16_t bits);


/* ------------------------------------------------------------------------------ simulation */

/** A piecewise-constant trace: ``samples`` (Mbit/s, or ms for a ping trace) of ``interval_s``
 * each, looping; ``cum`` (n + 1 values, bandwidth traces only, NULL for a ping trace) the bits
 * delivered by the start of each sample, as janus_deploy's Trace holds them (passed in, not
 * recomputed, so the sums are the same bits). */
typedef struct janus_sim_trace {
    const double *samples;
    size_t n;
    double interval_s;
    const double *cum;
} janus_sim_trace;

/** janus_deploy.sim.simulator.SimConfig, the parts the loop reads. */
typedef struct janus_sim_options {
    double sla_ms;
    int paper_mode;             /* 1: one trace sample = one request (SimConfig.paper_mode) */
    int64_t requests;           /* −1: one pass through the trace */
    double fps;                 /* 0: back to back */
    double rtt_ms;              /* the RTT when no ping trace is given */
    double exchange_ms;         /* fixed cost of one exchange beyond link and RTT */
    int deadline;               /* 1: the exchange policy applies (timeout_factor given) */
    double timeout_factor, min_timeout_ms;
    double probe_bytes;         /* 0: a probe costs no time */
    double probe_exchange_ms;   /* a probe's exchange cost */
    const double *local_ms;     /* levels × candidates: edge total − head (the deadline's fallback) */
} janus_sim_options;

/** One system's per-request records (janus_deploy RequestLog's numeric columns), owned by the
 * result (janus_sim_result_free). */
typedef struct janus_sim_result {
    size_t n;
    double *start_s, *bw_mbps, *est_mbps, *latency_ms, *predicted_ms;
    int32_t *level_index, *split;
    uint64_t *bytes;
    double elapsed_s;           /* simulated time from the first start to the last completion */
} janus_sim_result;

/** Run the simulator's whole per-request loop (time-driven or paper mode) over ``bw`` with the
 * controller ``ctl`` (fresh: janus_controller_new with the run's system and settings) and the
 * optional ``ping`` trace: the same operations as janus_deploy.sim.simulator, so the same
 * decisions, latencies and times to the last bit. On success ``out`` owns the records. */
JANUS_API int janus_simulate(janus_controller *ctl, const janus_sim_trace *bw, const janus_sim_trace *ping,
                             const janus_sim_options *opt, janus_sim_result *out, janus_error *err);
JANUS_API void janus_sim_result_free(janus_sim_result *res);

#ifdef __cplusplus
}
#endif
#endif /* JANUS_H */
