/* The decision-table loader (format: docs/decision-table.md).
 *
 * Every count, offset and string reference is checked against the buffer before it is used, and
 * every value the scheduler relies on (finite, non-negative latencies, indices in range) is
 * validated, so a corrupted or hostile file gives an error code, never an out-of-bounds access.
 * The loaded table copies what it needs: the input buffer may be freed after loading. */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* sanity bounds: far beyond any real plan, small enough that products never overflow */
#define JT_MAX_BLOCKS 65535u
#define JT_MAX_LEVELS 65535u
#define JT_MAX_CODECS 256u
#define JT_MAX_DIM (1u << 24)
#define JT_MAX_WINDOW (1u << 20)
#define JT_MAX_FILE ((uint64_t)1 << 30)
#define JT_MAX_EXACT ((uint64_t)1 << 53)

static uint32_t rd_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd_u64(const unsigned char *p) { return (uint64_t)rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32; }

static int32_t rd_i32(const unsigned char *p) {
    uint32_t u = rd_u32(p);
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static int64_t rd_i64(const unsigned char *p) {
    uint64_t u = rd_u64(p);
    int64_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static double rd_f64(const unsigned char *p) {
    uint64_t u = rd_u64(p);
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* CSET and ACEL (the codec dimension) are optional: tables without them decide with one codec */
enum { S_INFO, S_CTRL, S_CAND, S_ESEG, S_LEVL, S_TOKN, S_HEAD, S_TAIL, S_CODC, S_PAYL, S_MODL, S_ENGS, S_STRS,
       S_CSET, S_ACEL, S_COUNT };
#define S_REQUIRED S_CSET
static const char *const SECTION_TAGS[S_COUNT] = {"INFO", "CTRL", "CAND", "ESEG", "LEVL", "TOKN", "HEAD",
                                                   "TAIL", "CODC", "PAYL", "MODL", "ENGS", "STRS", "CSET", "ACEL"};
static const uint32_t SECTION_ELEM[S_COUNT] = {JT_INFO_BYTES, JT_CTRL_BYTES, 4, 4, JT_LEVEL_BYTES, 4, 8, 8,
                                               JT_CODEC_BYTES, JT_PAYLOAD_BYTES, 4, 4, 1, 4, 8};

typedef struct section {
    const unsigned char *p;
    uint64_t count;
    int present;
} section;

typedef struct loader {
    const unsigned char *buf;
    size_t size;
    section sec[S_COUNT];
    janus_table *t;
    size_t strs_len;
    janus_error *err;
} loader;

static int corrupt(loader *ld, const char *fmt, ...) JANUS_PRINTF(2, 3);
static int corrupt(loader *ld, const char *fmt, ...) {
    if (ld->err) {
        char msg[400];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        jn_fail(ld->err, JANUS_E_CORRUPT, "decision table is inconsistent: %s", msg);
    }
    return JANUS_E_CORRUPT;
}

/* A string reference: NONE (when allowed) -> *out = NULL; else an offset into the string table. */
static int get_str(loader *ld, uint32_t off, int allow_none, const char **out, const char *what) {
    if (off == JT_NONE) {
        if (!allow_none) return corrupt(ld, "%s has no string", what);
        *out = NULL;
        return JANUS_OK;
    }
    if ((size_t)off >= ld->strs_len) return corrupt(ld, "%s points outside the string table", what);
    *out = ld->t->strings + off;
    return JANUS_OK;
}

void janus_table_free(janus_table *t) {
    if (!t) return;
    if (t->levels) {
        for (int i = 0; i < t->L; i++) free((void *)t->levels[i].engines);
    }
    free(t->levels);
    free(t->cands);
    free(t->eseg);
    free(t->tokens);
    free(t->head);
    free(t->tail);
    free((void *)t->codec_names);
    free(t->codec_flags);
    free(t->cset);
    free(t->acell);
    free(t->payload);
    free((void *)t->models);
    free((void *)t->engine_ptrs);
    free(t->strings);
    free(t);
}

static int parse_sections(loader *ld) {
    const unsigned char *b = ld->buf;
    uint32_t nsec = rd_u32(b + 28);
    uint64_t sec_off = rd_u64(b + 32);
    if (sec_off < JT_HEADER_BYTES || sec_off % 8 || sec_off > ld->size ||
        (uint64_t)nsec > (ld->size - sec_off) / JT_SECTION_BYTES)
        return jn_fail(ld->err, JANUS_E_FORMAT, "decision table: the section directory (%u entries at offset %llu) "
                       "does not fit in the file (%zu bytes)", nsec, (unsigned long long)sec_off, ld->size);
    uint64_t data_start = sec_off + (uint64_t)nsec * JT_SECTION_BYTES;
    for (uint32_t i = 0; i < nsec; i++) {
        const unsigned char *e = b + sec_off + (uint64_t)i * JT_SECTION_BYTES;
        uint32_t elem = rd_u32(e + 4);
        uint64_t off = rd_u64(e + 8), count = rd_u64(e + 16);
        int idx = -1;
        for (int k = 0; k < S_COUNT; k++)
            if (memcmp(e, SECTION_TAGS[k], 4) == 0) idx = k;
        if (idx < 0) continue; /* a section this version does not know: skipped */
        if (ld->sec[idx].present) return corrupt(ld, "section %s appears twice", SECTION_TAGS[idx]);
        if (elem != SECTION_ELEM[idx])
            return corrupt(ld, "section %s has %u-byte entries, expected %u", SECTION_TAGS[idx], elem,
                           SECTION_ELEM[idx]);
        if (off % 8 || off < data_start || off > ld->size || count > (ld->size - off) / elem)
            return jn_fail(ld->err, JANUS_E_FORMAT, "decision table: section %s (%llu entries at offset %llu) "
                           "does not fit in the file (%zu bytes)", SECTION_TAGS[idx], (unsigned long long)count,
                           (unsigned long long)off, ld->size);
        ld->sec[idx].p = b + off;
        ld->sec[idx].count = count;
        ld->sec[idx].present = 1;
    }
    for (int k = 0; k < S_REQUIRED; k++)
        if (!ld->sec[k].present) return corrupt(ld, "section %s is missing", SECTION_TAGS[k]);
    return JANUS_OK;
}

static int expect_count(loader *ld, int k, uint64_t want) {
    if (ld->sec[k].count != want)
        return corrupt(ld, "section %s has %llu entries, expected %llu", SECTION_TAGS[k],
                       (unsigned long long)ld->sec[k].count, (unsigned long long)want);
    return JANUS_OK;
}

static int finite_ge0(double v) { return isfinite(v) && v >= 0.0; }

static int parse_info(loader *ld) {
    janus_table *t = ld->t;
    const unsigned char *p = ld->sec[S_INFO].p;
    int rc;
    if ((rc = expect_count(ld, S_INFO, 1))) return rc;
    uint32_t n = rd_u32(p), dim = rd_u32(p + 4), x0 = rd_u32(p + 8), prefix = rd_u32(p + 12);
    uint32_t h = rd_u32(p + 16), w = rd_u32(p + 20), L = rd_u32(p + 24), C = rd_u32(p + 28), K = rd_u32(p + 32);
    int32_t defc = rd_i32(p + 36), base = rd_i32(p + 40);
    uint32_t flags = rd_u32(p + 44), metric = rd_u32(p + 48);
    if (n < 1 || n > JT_MAX_BLOCKS) return corrupt(ld, "num_blocks %u is out of range", n);
    if (dim < 1 || dim > JT_MAX_DIM) return corrupt(ld, "embed_dim %u is out of range", dim);
    if (x0 < 1 || x0 > JT_MAX_DIM || prefix >= x0) return corrupt(ld, "num_tokens %u / prefix %u are invalid", x0, prefix);
    if (h < 1 || w < 1 || h > 1u << 16 || w > 1u << 16) return corrupt(ld, "image size %ux%u is invalid", h, w);
    if (L < 1 || L > JT_MAX_LEVELS) return corrupt(ld, "num_levels %u is out of range", L);
    if (C < 2 || C > n + 2) return corrupt(ld, "num_candidates %u is out of range (2..N+2)", C);
    if (K < 1 || K > JT_MAX_CODECS) return corrupt(ld, "num_codecs %u is out of range", K);
    if (defc < 0 || (uint32_t)defc >= K) return corrupt(ld, "default codec %d is not a codec index", defc);
    if (base < -1 || (base >= 0 && (uint32_t)base >= L)) return corrupt(ld, "baseline level %d is not a level", base);
    if (metric > 2) return corrupt(ld, "accuracy metric %u is unknown", metric);
    t->n = (int)n;
    t->dim = (int)dim;
    t->num_tokens = (int)x0;
    t->num_prefix = (int)prefix;
    t->img_h = (int)h;
    t->img_w = (int)w;
    t->L = (int)L;
    t->C = (int)C;
    t->K = (int)K;
    t->S = (int)C - 1;
    t->default_codec = defc;
    t->baseline_level = base;
    t->has_names = (flags & JT_FLAG_NAMES) != 0;
    t->accuracy_metric = (int)metric;
    uint64_t l = L, c = C, k = K;
    if ((rc = expect_count(ld, S_CAND, c)) || (rc = expect_count(ld, S_ESEG, c)) ||
        (rc = expect_count(ld, S_LEVL, l)) || (rc = expect_count(ld, S_TOKN, l * (n + 1u))) ||
        (rc = expect_count(ld, S_HEAD, l * c)) || (rc = expect_count(ld, S_TAIL, l * c)) ||
        (rc = expect_count(ld, S_CODC, k)) || (rc = expect_count(ld, S_PAYL, k * l * c)) ||
        (rc = expect_count(ld, S_MODL, l * c)) || (rc = expect_count(ld, S_ENGS, l * (c - 1))) ||
        (rc = expect_count(ld, S_CTRL, 1)))
        return rc;
    if (ld->sec[S_STRS].count < 1 || ld->sec[S_STRS].p[ld->sec[S_STRS].count - 1] != '\0')
        return corrupt(ld, "the string table does not end with a NUL byte");
    ld->strs_len = (size_t)ld->sec[S_STRS].count;
    t->strings = malloc(ld->strs_len);
    if (!t->strings) return jn_fail(ld->err, JANUS_E_NOMEM, "out of memory");
    memcpy(t->strings, ld->sec[S_STRS].p, ld->strs_len);
    if ((rc = get_str(ld, rd_u32(p + 52), 0, &t->model_name, "model name")) ||
        (rc = get_str(ld, rd_u32(p + 56), 1, &t->plan_hash, "plan hash")) ||
        (rc = get_str(ld, rd_u32(p + 60), 0, &t->edge_device, "edge device")) ||
        (rc = get_str(ld, rd_u32(p + 64), 0, &t->cloud_device, "cloud device")))
        return rc;
    return JANUS_OK;
}

static int parse_ctrl(loader *ld) {
    const unsigned char *p = ld->sec[S_CTRL].p;
    janus_config *c = &ld->t->config;
    c->sla_ms = rd_f64(p);
    c->cold_start_mbps = rd_f64(p + 8);
    c->ewma_alpha = rd_f64(p + 16);
    c->margin = rd_f64(p + 24);
    c->rtt_cold_ms = rd_f64(p + 32);
    c->probe_interval_s = rd_f64(p + 40);
    c->breaker_open_s = rd_f64(p + 48);
    c->breaker_max_open_s = rd_f64(p + 56);
    c->frame_bytes = rd_i64(p + 64);
    uint32_t system = rd_u32(p + 72), est = rd_u32(p + 76), window = rd_u32(p + 80), deflate = rd_u32(p + 84);
    uint32_t fixed = rd_u32(p + 88), rwin = rd_u32(p + 92), rest = rd_u32(p + 96), bf = rd_u32(p + 100);
    if (system > JANUS_SYSTEM_JANUS_DEPLOY || est > JANUS_ESTIMATOR_ROBUSTMPC || rest > JANUS_RTT_MEDIAN ||
        deflate > 1 || fixed > 1)
        return corrupt(ld, "controller settings hold an unknown system, estimator or flag");
    if (window < 1 || window > JT_MAX_WINDOW || rwin < 1 || rwin > JT_MAX_WINDOW || bf > JT_MAX_WINDOW)
        return corrupt(ld, "controller windows are out of range");
    c->system = (int)system;
    c->estimator = (int)est;
    c->window = (int)window;
    c->deflate = (int)deflate;
    c->rtt_fixed = (int)fixed;
    c->rtt_window = (int)rwin;
    c->rtt_estimate = (int)rest;
    c->breaker_failures = (int)bf;
    c->codec = NULL;
    c->cloud_load = JANUS_CLOUD_LOAD_FACTOR; /* not stored: ControllerConfig's defaults */
    c->cloud_window = 5;
    c->cloud_half_life_s = 4.0;
    if (!(isfinite(c->sla_ms) && c->sla_ms > 0) || !(isfinite(c->cold_start_mbps) && c->cold_start_mbps > 0) ||
        !(c->ewma_alpha > 0 && c->ewma_alpha <= 1) || !(c->margin >= 0 && c->margin < 1) ||
        !finite_ge0(c->rtt_cold_ms) || !finite_ge0(c->probe_interval_s) ||
        !(isfinite(c->breaker_max_open_s) && c->breaker_open_s > 0 && c->breaker_open_s <= c->breaker_max_open_s) ||
        c->frame_bytes < -1 || c->frame_bytes > (int64_t)JT_MAX_EXACT)
        return corrupt(ld, "controller settings are out of range");
    return JANUS_OK;
}

static int parse_levels(loader *ld) {
    janus_table *t = ld->t;
    int L = t->L, C = t->C, K = t->K, S = t->S, n = t->n, rc;
    size_t LC = (size_t)L * (size_t)C;
    t->cands = malloc(sizeof(int) * (size_t)C);
    t->eseg = malloc(sizeof(int) * (size_t)C);
    t->levels = calloc((size_t)L, sizeof *t->levels);
    t->tokens = malloc(sizeof(uint32_t) * (size_t)L * (size_t)(n + 1));
    t->head = malloc(sizeof(double) * LC);
    t->tail = malloc(sizeof(double) * LC);
    t->codec_names = calloc((size_t)K, sizeof(char *));
    t->codec_flags = calloc((size_t)K, sizeof(unsigned));
    t->payload = malloc(sizeof(jt_payload) * LC * (size_t)K);
    t->models = calloc(LC, sizeof(char *));
    t->engine_ptrs = calloc((size_t)L * (size_t)S, sizeof(char *));
    if (!t->cands || !t->eseg || !t->levels || !t->tokens || !t->head || !t->tail || !t->codec_names ||
        !t->codec_flags || !t->payload || !t->models || !t->engine_ptrs)
        return jn_fail(ld->err, JANUS_E_NOMEM, "out of memory");
    /* candidates and edge segment counts */
    const unsigned char *cp = ld->sec[S_CAND].p, *ep = ld->sec[S_ESEG].p;
    for (int j = 0; j < C; j++) {
        uint32_t s = rd_u32(cp + 4 * j), e = rd_u32(ep + 4 * j);
        if ((j == 0 && s != 0) || (j > 0 && s <= (uint32_t)t->cands[j - 1]) || s > (uint32_t)n + 1)
            return corrupt(ld, "candidate split points must increase from 0 to N+1");
        if (e > (uint32_t)S || (j == 0 && e != 0) || (j > 0 && e < (uint32_t)t->eseg[j - 1]))
            return corrupt(ld, "edge segment counts must grow from 0 to the number of segments");
        t->cands[j] = (int)s;
        t->eseg[j] = (int)e;
    }
    if (t->cands[C - 1] != n + 1 || t->eseg[C - 1] != S)
        return corrupt(ld, "the last candidate must be N+1 (device only), running every segment");
    /* levels and token schedules */
    const unsigned char *lp = ld->sec[S_LEVL].p, *tp = ld->sec[S_TOKN].p;
    int exponential = 0;
    for (int i = 0; i < L; i++) {
        const unsigned char *e = lp + (size_t)i * JT_LEVEL_BYTES;
        jt_level *lv = &t->levels[i];
        uint32_t pol = rd_u32(e);
        lv->plan_level = rd_i32(e + 4);
        lv->alpha = rd_f64(e + 8);
        lv->accuracy = rd_f64(e + 16);
        if (pol > JANUS_POLICY_CONSTANT) return corrupt(ld, "level %d has an unknown policy %u", i, pol);
        lv->policy = (int)pol;
        exponential += pol == JANUS_POLICY_EXPONENTIAL;
        if (!finite_ge0(lv->alpha)) return corrupt(ld, "level %d has an invalid level value", i);
        if (!(isnan(lv->accuracy) || isfinite(lv->accuracy))) return corrupt(ld, "level %d has an infinite accuracy", i);
        if (lv->plan_level < -1) return corrupt(ld, "level %d has an invalid plan level", i);
        if ((rc = get_str(ld, rd_u32(e + 24), 0, &lv->label, "level label"))) return rc;
        uint32_t *tok = t->tokens + (size_t)i * (size_t)(n + 1);
        for (int b = 0; b <= n; b++) {
            tok[b] = rd_u32(tp + 4 * ((size_t)i * (size_t)(n + 1) + (size_t)b));
            if ((b == 0 && tok[b] != (uint32_t)t->num_tokens) || (b > 0 && tok[b] > tok[b - 1]) || tok[b] < 1)
                return corrupt(ld, "level %d: token counts must start at num_tokens and never grow", i);
        }
        lv->tokens = tok;
        lv->engines = calloc((size_t)S, sizeof(char *));
        if (!lv->engines) return jn_fail(ld->err, JANUS_E_NOMEM, "out of memory");
    }
    if (!exponential) return corrupt(ld, "there is no exponential-policy level");
    if (t->baseline_level >= 0 && t->levels[t->baseline_level].policy != JANUS_POLICY_CONSTANT)
        return corrupt(ld, "the baseline level is not a constant-policy level");
    /* latencies */
    const unsigned char *hp = ld->sec[S_HEAD].p, *tl = ld->sec[S_TAIL].p;
    for (size_t q = 0; q < LC; q++) {
        t->head[q] = rd_f64(hp + 8 * q);
        t->tail[q] = rd_f64(tl + 8 * q);
        if (!finite_ge0(t->head[q]) || !finite_ge0(t->tail[q]))
            return corrupt(ld, "latencies must be finite and >= 0");
    }
    /* codecs and payloads */
    const unsigned char *kp = ld->sec[S_CODC].p, *pp = ld->sec[S_PAYL].p;
    for (int k = 0; k < K; k++) {
        if ((rc = get_str(ld, rd_u32(kp + 8 * (size_t)k), 0, &t->codec_names[k], "codec name"))) return rc;
        t->codec_flags[k] = rd_u32(kp + 8 * (size_t)k + 4);
        if (!t->codec_names[k][0]) return corrupt(ld, "a codec has an empty name");
        for (int q = 0; q < k; q++)
            if (strcmp(t->codec_names[q], t->codec_names[k]) == 0)
                return corrupt(ld, "codec %s appears twice", t->codec_names[k]);
    }
    for (size_t q = 0; q < LC * (size_t)K; q++) {
        const unsigned char *e = pp + q * JT_PAYLOAD_BYTES;
        jt_payload *pl = &t->payload[q];
        pl->bytes = rd_u64(e);
        pl->encode_ms = rd_f64(e + 8);
        pl->decode_ms = rd_f64(e + 16);
        if (pl->bytes > JT_MAX_EXACT || !finite_ge0(pl->encode_ms) || !finite_ge0(pl->decode_ms))
            return corrupt(ld, "payload sizes and codec times must be finite and >= 0");
        if ((int)(q % (size_t)C) == C - 1 && pl->bytes != 0)
            return corrupt(ld, "device only (s = N+1) must send 0 bytes");
    }
    /* the codec dimension (optional): the scheduler's codec set, accuracy per (codec, level, split) */
    if (ld->sec[S_CSET].present) {
        uint64_t nset = ld->sec[S_CSET].count;
        if (nset < 1 || nset > (uint64_t)K) return corrupt(ld, "the codec set has %llu codecs", (unsigned long long)nset);
        t->cset = malloc(sizeof(int) * (size_t)nset);
        if (!t->cset) return JANUS_E_NOMEM;
        t->ncset = (int)nset;
        for (uint64_t q = 0; q < nset; q++) {
            uint32_t v = rd_u32(ld->sec[S_CSET].p + 4 * q);
            if (v >= (uint32_t)K) return corrupt(ld, "the codec set names codec %u", v);
            t->cset[q] = (int)v;
        }
    }
    if (ld->sec[S_ACEL].present) {
        if ((rc = expect_count(ld, S_ACEL, (uint64_t)LC * (uint64_t)K))) return rc;
        t->acell = malloc(sizeof(double) * LC * (size_t)K);
        if (!t->acell) return JANUS_E_NOMEM;
        for (size_t q = 0; q < LC * (size_t)K; q++) t->acell[q] = rd_f64(ld->sec[S_ACEL].p + 8 * q);
    }
    /* V2 model names and engine files */
    const unsigned char *mp = ld->sec[S_MODL].p, *gp = ld->sec[S_ENGS].p;
    for (size_t q = 0; q < LC; q++)
        if ((rc = get_str(ld, rd_u32(mp + 4 * q), 1, &t->models[q], "model name"))) return rc;
    for (int i = 0; i < L; i++)
        for (int s = 0; s < S; s++) {
            size_t q = (size_t)i * (size_t)S + (size_t)s;
            if ((rc = get_str(ld, rd_u32(gp + 4 * q), 1, &t->engine_ptrs[q], "engine file"))) return rc;
            t->levels[i].engines[s] = t->engine_ptrs[q];
        }
    /* names: all of them (a plan level, every engine, a model for every split that sends) or none */
    for (int i = 0; i < L; i++) {
        jt_level *lv = &t->levels[i];
        for (int j = 0; j < C; j++) {
            const char **m = &t->models[(size_t)i * (size_t)C + (size_t)j];
            if (!t->has_names || t->cands[j] > n) *m = NULL;
            else if (!*m) return corrupt(ld, "level %d, split %d has no V2 model name", i, t->cands[j]);
        }
        for (int s = 0; s < S; s++) {
            if (!t->has_names) lv->engines[s] = NULL;
            else if (!lv->engines[s]) return corrupt(ld, "level %d, segment %d has no engine file", i, s);
        }
        if (t->has_names && lv->plan_level < 0) return corrupt(ld, "level %d has no plan level", i);
        if (!t->has_names) lv->plan_level = -1;
    }
    return JANUS_OK;
}

int janus_table_load_memory(const void *data, size_t size, janus_table **out, janus_error *err) {
    if (!out) return jn_fail(err, JANUS_E_INVALID, "janus_table_load_memory: out is NULL");
    *out = NULL;
    if (!data && size) return jn_fail(err, JANUS_E_INVALID, "janus_table_load_memory: data is NULL");
    const unsigned char *b = data;
    if (size < JT_HEADER_BYTES)
        return jn_fail(err, JANUS_E_FORMAT, "not a janus decision table: %zu bytes, the header alone has %u", size,
                       JT_HEADER_BYTES);
    if (memcmp(b, JT_MAGIC, 8) != 0)
        return jn_fail(err, JANUS_E_FORMAT, "not a janus decision table (bad magic number); write one with "
                       "`janus-deploy export-table`");
    uint32_t version = rd_u32(b + 8);
    if (version != JANUS_TABLE_VERSION)
        return jn_fail(err, JANUS_E_VERSION, "decision table format version %u; this libjanus reads version %d "
                       "(re-export the table with a matching janus-deploy)", version, JANUS_TABLE_VERSION);
    uint64_t file_bytes = rd_u64(b + 16);
    if (rd_u32(b + 12) != JT_HEADER_BYTES)
        return jn_fail(err, JANUS_E_FORMAT, "decision table: header size %u, expected %u", rd_u32(b + 12),
                       JT_HEADER_BYTES);
    if (file_bytes != size)
        return jn_fail(err, JANUS_E_FORMAT, "decision table is %s: the header says %llu bytes, there are %zu",
                       file_bytes > size ? "truncated" : "followed by extra bytes", (unsigned long long)file_bytes,
                       size);
    static const unsigned char zero[4] = {0, 0, 0, 0};
    uint32_t crc = jn_crc32(0, b, JT_CRC_OFFSET);
    crc = jn_crc32(crc, zero, 4);
    crc = jn_crc32(crc, b + JT_CRC_OFFSET + 4, size - JT_CRC_OFFSET - 4);
    if (crc != rd_u32(b + JT_CRC_OFFSET))
        return jn_fail(err, JANUS_E_CHECKSUM, "decision table checksum mismatch (CRC-32 %08x, file says %08x): "
                       "the file is corrupted", crc, rd_u32(b + JT_CRC_OFFSET));
    loader ld;
    memset(&ld, 0, sizeof ld);
    ld.buf = b;
    ld.size = size;
    ld.err = err;
    ld.t = calloc(1, sizeof *ld.t);
    if (!ld.t) return jn_fail(err, JANUS_E_NOMEM, "out of memory");
    int rc = parse_sections(&ld);
    if (!rc) rc = parse_info(&ld);
    if (!rc) rc = parse_ctrl(&ld);
    if (!rc) rc = parse_levels(&ld);
    if (rc) {
        janus_table_free(ld.t);
        return rc;
    }
    *out = ld.t;
    jn_ok(err);
    return JANUS_OK;
}

int janus_table_load(const char *path, janus_table **out, janus_error *err) {
    if (!out || !path) return jn_fail(err, JANUS_E_INVALID, "janus_table_load: path and out must not be NULL");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return jn_fail(err, JANUS_E_IO, "cannot open decision table %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return jn_fail(err, JANUS_E_NOMEM, "out of memory");
    }
    for (;;) {
        if (len == cap) {
            if (cap >= JT_MAX_FILE) {
                free(buf);
                fclose(f);
                return jn_fail(err, JANUS_E_FORMAT, "%s is larger than 1 GiB: not a decision table", path);
            }
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return jn_fail(err, JANUS_E_NOMEM, "out of memory");
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return jn_fail(err, JANUS_E_IO, "cannot read decision table %s", path);
    }
    int rc = janus_table_load_memory(buf, len, out, err);
    free(buf);
    if (rc && err) {
        char msg[sizeof err->message];
        snprintf(msg, sizeof msg, "%.200s: %.300s", path, err->message);
        memcpy(err->message, msg, sizeof msg);
    }
    return rc;
}

/* ------------------------------------------------------------------------------ accessors */

void janus_table_get_info(const janus_table *t, janus_table_info *o) {
    static const char *const metrics[] = {"none", "accuracy", "agreement"};
    memset(o, 0, sizeof *o);
    if (!t) return;
    o->model_name = t->model_name;
    o->plan_hash = t->plan_hash;
    o->edge_device = t->edge_device;
    o->cloud_device = t->cloud_device;
    o->accuracy_metric = metrics[t->accuracy_metric];
    o->num_blocks = t->n;
    o->embed_dim = t->dim;
    o->num_tokens = t->num_tokens;
    o->num_prefix_tokens = t->num_prefix;
    o->img_height = t->img_h;
    o->img_width = t->img_w;
    o->num_levels = t->L;
    o->num_candidates = t->C;
    o->candidates = t->cands;
    o->num_segments = t->S;
    o->num_codecs = t->K;
    o->default_codec = t->default_codec;
    o->baseline_level = t->baseline_level;
    o->has_names = t->has_names;
}

int janus_table_level(const janus_table *t, int index, janus_level_info *o, janus_error *err) {
    if (!t || !o) return jn_fail(err, JANUS_E_INVALID, "janus_table_level: NULL argument");
    if (index < 0 || index >= t->L)
        return jn_fail(err, JANUS_E_INVALID, "level index %d out of range (0..%d)", index, t->L - 1);
    const jt_level *lv = &t->levels[index];
    o->policy = lv->policy;
    o->alpha = lv->alpha;
    o->accuracy = lv->accuracy;
    o->plan_level = lv->plan_level;
    o->label = lv->label;
    o->tokens = lv->tokens;
    jn_ok(err);
    return JANUS_OK;
}

const char *janus_table_codec(const janus_table *t, int index) {
    return (t && index >= 0 && index < t->K) ? t->codec_names[index] : NULL;
}

int janus_table_codec_index(const janus_table *t, const char *name) {
    if (!t || !name) return -1;
    for (int k = 0; k < t->K; k++)
        if (strcmp(t->codec_names[k], name) == 0) return k;
    return -1;
}

void janus_table_config(const janus_table *t, janus_config *out) {
    if (t && out) *out = t->config;
}
