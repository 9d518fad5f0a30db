/* libjanus internals shared by the source files (not installed). */
#ifndef JANUS_INTERNAL_H
#define JANUS_INTERNAL_H

#include "janus.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define JANUS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define JANUS_PRINTF(a, b)
#endif

/* ---- file format constants (docs/decision-table.md) */
#define JT_MAGIC "\x89JDT\r\n\x1a\n"
#define JT_HEADER_BYTES 64u
#define JT_SECTION_BYTES 24u
#define JT_CRC_OFFSET 24u
#define JT_NONE 0xFFFFFFFFu
#define JT_INFO_BYTES 80u
#define JT_CTRL_BYTES 112u
#define JT_LEVEL_BYTES 32u
#define JT_CODEC_BYTES 8u
#define JT_PAYLOAD_BYTES 24u
#define JT_FLAG_NAMES 1u
#define JT_CODEC_LOSSLESS 1u
#define JT_CODEC_ZSTD 2u
#define JT_CODEC_FRAME 4u /* a frame codec: a payload at split 0 only */
#define JT_CODEC_TOKENS 8u /* a known token codec (its split-0 payload is the raw frame) */

/* ---- errors */
int jn_fail(janus_error *err, int code, const char *fmt, ...) JANUS_PRINTF(3, 4);
void jn_ok(janus_error *err);
uint32_t jn_crc32(uint32_t crc, const unsigned char *p, size_t n);

/* ---- the loaded table (immutable after load) */
typedef struct jt_payload {
    uint64_t bytes;
    double encode_ms;
    double decode_ms;
} jt_payload;

typedef struct jt_level {
    int policy;
    int plan_level;
    double alpha;
    double accuracy; /* NaN: none */
    const char *label;
    const uint32_t *tokens;
    const char **engines; /* num_segments engine names (NULL entries without a plan) */
} jt_level;

struct janus_table {
    int n;          /* num_blocks */
    int dim;
    int num_tokens, num_prefix, img_h, img_w;
    int L, C, K, S; /* levels, candidates, codecs, segments */
    int default_codec, baseline_level, has_names, accuracy_metric;
    const char *model_name, *plan_hash, *edge_device, *cloud_device;
    int *cands;
    int *eseg;             /* edge segment count per candidate */
    jt_level *levels;
    uint32_t *tokens;      /* L × (N+1) */
    double *head, *tail;   /* L × C */
    const char **codec_names;
    unsigned *codec_flags;
    jt_payload *payload;   /* K × L × C */
    int *cset;             /* the scheduler's codec set (CSET; NULL: the default codec alone) */
    int ncset;
    double *acell;         /* K × L × C accuracy with each codec's loss (ACEL; NaN: the level's; NULL: none) */
    const char **models;   /* L × C (NULL: none) */
    const char **engine_ptrs; /* L × S */
    char *strings;         /* the string table (owned) */
    janus_config config;   /* stored settings (codec NULL = default) */
};

/* ---- scheduler: cost rows of every level in both modes */
typedef struct js_mode_table {
    double *fixed;   /* L × C: ((head + enc) + dec) + tail */
    double *enc, *dec;
    double *kbits;   /* L × C: what the latency model charges */
    uint64_t *sent;  /* L × C: bytes actually sent */
} js_mode_table;

struct janus_scheduler {
    const janus_table *t;
    int codec, wire_codec_paper;
    int64_t frame_bytes;
    js_mode_table mode[2]; /* JANUS_MODE_DEPLOY, JANUS_MODE_PAPER */
    double *sends;         /* per candidate: 1.0 when anything crosses the network (s <= N) */
    int E;                 /* exponential levels (Janus's rows) */
    int *rows;             /* their level indices by increasing α */
    double *rank_offset;   /* per row: rank · 1e9 */
    int *order;            /* rows by (rank, row) */
    int *group_end;        /* order position where a run of equal ranks ends (exclusive) */
    int ngroups;
    /* the codec dimension (Scheduler's (split, codec) columns): used when the table has a codec set
     * of more than one codec or accuracy cells; else NULL and the per-candidate tables above decide */
    struct js_columns *cols;
};

typedef struct js_columns {
    int n;              /* columns */
    int *j;             /* candidate index of each column */
    int *codec;         /* codec index, -1: device only */
    double *fixed, *enc, *dec, *kbits, *sends, *rank_off; /* E × n (sends, per column: n) */
    uint64_t *sent;
    double *acc;        /* E × n: the option's accuracy (NaN: none) */
} js_columns;

int js_check_inputs(double bw, double rtt, double sla, janus_error *err);
void js_fill(const janus_scheduler *s, int mode, int level, int j, double comm, double rtt_charged, double sla,
             janus_decision *out);

#endif
