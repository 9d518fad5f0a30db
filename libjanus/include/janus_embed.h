/*
 * libjanus_embed: the whole Python edge runtime (janus_deploy.runtime.edge.EdgeRuntime) behind a
 * C entry point, for apps that can host libpython: open with a plan, engines, profiles and a
 * server URL; infer on a uint8 RGB frame; get the logits and the decision taken; close.
 *
 * Links libpython3 and libjanus (for janus_error). The first janus_rt_open starts an embedded
 * interpreter (unless the process already runs one) whose environment must have janus-deploy
 * installed; see docs/c-api.md for what that costs (start-up time, memory, the GIL).
 *
 * Threads: the interpreter's GIL is released between calls, so any thread may call these
 * functions; one janus_rt serves one request at a time (calls on one handle are serialised);
 * several handles may be used from several threads (they share the GIL; inference itself runs in
 * ONNX Runtime / TensorRT with the GIL released). The interpreter is never finalised (numpy and
 * ONNX Runtime cannot be re-initialised in one process); janus_rt_close frees the handle.
 */
#ifndef JANUS_EMBED_H
#define JANUS_EMBED_H

#include "janus.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct janus_rt janus_rt;

typedef struct janus_rt_options {
    const char *plan;           /* plan directory (required) */
    const char *engines;        /* engine directory of this device (required) */
    const char *edge_profile;   /* edge profile file or preset name (required) */
    const char *cloud_profile;  /* cloud profile file or preset name (required) */
    const char *server_url;     /* the V2 server, http://host:port (required) */
    double sla_ms;              /* latency SLA (required, > 0) */
    const char *accuracy;       /* accuracy table file, or NULL */
    const char *codec;          /* payload codec, or NULL for the profile's */
    const char *log_path;       /* JSON-lines request log (`janus-deploy replay` reads it), or NULL */
    const char *options_json;   /* NULL or a JSON object of more settings, as `janus-deploy run` takes them:
                                   {"controller": {ControllerConfig fields}, "transport": {TransportOptions
                                   fields}, "threads": 0, "edge_slowdown": 1.0} */
    const char *python;         /* NULL, or the python executable whose environment has janus-deploy
                                   (default: $JANUS_PYTHON, else the one this library was built with) */
} janus_rt_options;

/** The answer to one frame; pointers stay valid until the next call on the same handle. */
typedef struct janus_rt_result {
    int id;                     /* request number */
    int top1;                   /* argmax of the logits; −1 when the request failed */
    int num_classes;
    const float *logits;        /* num_classes values; NULL when the request failed */
    int level;                  /* plan level and split point taken */
    int split;
    double alpha;
    const char *label;          /* "0.24@5" */
    const char *model;          /* V2 model called, NULL at device only */
    double predicted_ms;
    double total_ms;            /* measured */
    int fallback;               /* 1: the cloud part ran locally (server unreachable, slow, ...) */
    const char *fallback_kind;  /* "unreachable", "timeout", ... or NULL */
    const char *error;          /* a per-request error, NULL when answered */
    const char *record_json;    /* the request's log record (docs/runtime.md) */
} janus_rt_result;

JANUS_API int janus_rt_open(const janus_rt_options *options, janus_rt **out, janus_error *err);
/** Answer one frame: ``rgb`` is uint8 [height, width, 3], row-major (the plan's input size). A
 * request that fails on the way (a per-request error) still returns JANUS_OK with result->error
 * set; errors of the call itself (bad arguments, Python failures) return an error code. */
JANUS_API int janus_rt_infer(janus_rt *rt, const uint8_t *rgb, int height, int width, janus_rt_result *result,
                             janus_error *err);
/** The run report so far as JSON (janus_deploy.report: latency percentiles, violations, choices);
 * valid until the next call on the handle; NULL on error. */
JANUS_API const char *janus_rt_summary(janus_rt *rt, janus_error *err);
/** Close the runtime (transport, log) and free the handle (NULL is fine). */
JANUS_API void janus_rt_close(janus_rt *rt);

#ifdef __cplusplus
}
#endif
#endif /* JANUS_EMBED_H */
