/* The scheduler: janus_deploy.schedule.scheduler.Scheduler, operation for operation.
 *
 * Cost rows of every level are precomputed in both modes with the same floating-point
 * expressions as the numpy code (fixed = ((head + enc) + dec) + tail, kbits = bytes·8/1e3,
 * comm = kbits / bandwidth, lat = (fixed + comm) + rtt·sends, score = lat + rank·1e9), so
 * decisions and predicted latencies are bit-identical to Python's.
 *
 * janus-deploy mode visits the rows by preference rank (accuracy, else α) and stops after the
 * first rank that has a feasible option: every later rank scores at least (rank + 1)·1e9 while
 * this one scores below rank·1e9 + budget, so the result is the numpy argmin over all options
 * whenever the budget is below 5e8 ms (otherwise every option is visited). */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RANK_OFFSET 1e9
#define EARLY_EXIT_BUDGET 5e8

static inline double comm_of(double kb, double bw);

static void free_columns(js_columns *c) {
    if (!c) return;
    free(c->j);
    free(c->codec);
    free(c->fixed);
    free(c->enc);
    free(c->dec);
    free(c->kbits);
    free(c->sends);
    free(c->rank_off);
    free(c->sent);
    free(c->acc);
    free(c);
}

void janus_scheduler_free(janus_scheduler *s) {
    if (!s) return;
    free_columns(s->cols);
    for (int m = 0; m < 2; m++) {
        free(s->mode[m].fixed);
        free(s->mode[m].enc);
        free(s->mode[m].dec);
        free(s->mode[m].kbits);
        free(s->mode[m].sent);
    }
    free(s->sends);
    free(s->rows);
    free(s->rank_offset);
    free(s->order);
    free(s->group_end);
    free(s);
}

static const jt_payload *payload_at(const janus_table *t, int codec, int level, int j) {
    return &t->payload[((size_t)codec * (size_t)t->L + (size_t)level) * (size_t)t->C + (size_t)j];
}

static int build_mode(janus_scheduler *s, int mode) {
    const janus_table *t = s->t;
    size_t LC = (size_t)t->L * (size_t)t->C;
    js_mode_table *m = &s->mode[mode];
    m->fixed = malloc(sizeof(double) * LC);
    m->enc = malloc(sizeof(double) * LC);
    m->dec = malloc(sizeof(double) * LC);
    m->kbits = malloc(sizeof(double) * LC);
    m->sent = malloc(sizeof(uint64_t) * LC);
    if (!m->fixed || !m->enc || !m->dec || !m->kbits || !m->sent) return JANUS_E_NOMEM;
    int wire = mode == JANUS_MODE_PAPER ? s->wire_codec_paper : s->codec;
    for (int i = 0; i < t->L; i++) {
        for (int j = 0; j < t->C; j++) {
            size_t q = (size_t)i * (size_t)t->C + (size_t)j;
            int split = t->cands[j];
            const jt_payload *pw = payload_at(t, wire, i, j);
            uint64_t sent = (split == 0 && s->frame_bytes >= 0) ? (uint64_t)s->frame_bytes : pw->bytes;
            double enc = 0.0, dec = 0.0, kb;
            if (mode == JANUS_MODE_PAPER) {
                /* Algorithm 1: x_s · D_M with D_M = 4·D (x_0 at s = 0), nothing at N+1 */
                kb = split > t->n ? 0.0
                                  : (double)((uint64_t)t->levels[i].tokens[split] * (uint64_t)t->dim * 4u * 8u) / 1e3;
            } else {
                enc = pw->encode_ms;
                dec = payload_at(t, s->codec, i, j)->decode_ms;
                kb = (double)sent * 8.0 / 1e3;
            }
            m->enc[q] = enc;
            m->dec[q] = dec;
            m->kbits[q] = kb;
            m->sent[q] = sent;
            m->fixed[q] = ((t->head[q] + enc) + dec) + t->tail[q];
        }
    }
    return JANUS_OK;
}

/* Preference ranks of the exponential rows (Scheduler._ranks): by accuracy (equal accuracies
 * share a rank), rows without one after all others; without any accuracy, by increasing α. */
static int build_ranks(janus_scheduler *s) {
    const janus_table *t = s->t;
    int E = s->E;
    double *known = malloc(sizeof(double) * (size_t)E);
    double *rank = malloc(sizeof(double) * (size_t)E);
    if (!known || !rank) {
        free(known);
        free(rank);
        return JANUS_E_NOMEM;
    }
    int nk = 0;
    for (int r = 0; r < E; r++) {
        double a = t->levels[s->rows[r]].accuracy;
        if (isnan(a)) continue;
        int dup = 0;
        for (int q = 0; q < nk; q++) dup |= known[q] == a;
        if (!dup) known[nk++] = a;
    }
    for (int q = 1; q < nk; q++) { /* descending */
        double v = known[q];
        int p = q - 1;
        while (p >= 0 && known[p] < v) {
            known[p + 1] = known[p];
            p--;
        }
        known[p + 1] = v;
    }
    for (int r = 0; r < E; r++) {
        double a = t->levels[s->rows[r]].accuracy;
        if (nk == 0) {
            rank[r] = (double)r;
        } else if (isnan(a)) {
            rank[r] = (double)(nk + r);
        } else {
            int pos = 0;
            while (known[pos] != a) pos++;
            rank[r] = (double)pos;
        }
        s->rank_offset[r] = rank[r] * RANK_OFFSET;
        s->order[r] = r;
    }
    for (int q = 1; q < E; q++) { /* stable: by (rank, row) */
        int v = s->order[q], p = q - 1;
        while (p >= 0 && rank[s->order[p]] > rank[v]) {
            s->order[p + 1] = s->order[p];
            p--;
        }
        s->order[p + 1] = v;
    }
    s->ngroups = 0;
    for (int q = 0; q < E; q++)
        if (q == E - 1 || rank[s->order[q + 1]] != rank[s->order[q]]) s->group_end[s->ngroups++] = q + 1;
    free(known);
    free(rank);
    return JANUS_OK;
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The codec dimension (Scheduler._columns, _table, _ranks): the options (split, codec) in split
 * order, the set's codecs in its order where they have a payload (frame codecs at s = 0 only;
 * at s = 0 token codecs with the same compressor share the first one's column), one device-only
 * column; the accuracy of an option is its (codec, level, split) cell, else the level's. */
static int build_columns(janus_scheduler *s) {
    const janus_table *t = s->t;
    int one = s->codec;
    const int *set = t->cset ? t->cset : &one;
    int nset = t->cset ? t->ncset : 1;
    js_columns *c = calloc(1, sizeof *c);
    if (!c) return JANUS_E_NOMEM;
    s->cols = c;
    size_t maxc = (size_t)t->C * (size_t)nset + 1;
    c->j = malloc(sizeof(int) * maxc);
    c->codec = malloc(sizeof(int) * maxc);
    if (!c->j || !c->codec) return JANUS_E_NOMEM;
    for (int j = 0; j < t->C; j++) {
        int split = t->cands[j];
        if (split > t->n) {
            c->j[c->n] = j;
            c->codec[c->n++] = -1;
            continue;
        }
        unsigned seen = 0;
        for (int q = 0; q < nset; q++) {
            int k = set[q];
            unsigned f = t->codec_flags[k];
            if ((f & JT_CODEC_FRAME) && split != 0) continue;
            if (split == 0 && (f & JT_CODEC_TOKENS)) { /* the raw frame */
                unsigned key = (f & JT_CODEC_ZSTD) ? 2u : 1u;
                if (seen & key) continue;
                seen |= key;
            }
            c->j[c->n] = j;
            c->codec[c->n++] = k;
        }
    }
    size_t EN = (size_t)s->E * (size_t)c->n;
    c->fixed = malloc(sizeof(double) * EN);
    c->enc = malloc(sizeof(double) * EN);
    c->dec = malloc(sizeof(double) * EN);
    c->kbits = malloc(sizeof(double) * EN);
    c->rank_off = malloc(sizeof(double) * EN);
    c->acc = malloc(sizeof(double) * EN);
    c->sent = malloc(sizeof(uint64_t) * EN);
    c->sends = malloc(sizeof(double) * (size_t)c->n);
    double *known = malloc(sizeof(double) * (EN ? EN : 1));
    if (!c->fixed || !c->enc || !c->dec || !c->kbits || !c->rank_off || !c->acc || !c->sent || !c->sends || !known) {
        free(known);
        return JANUS_E_NOMEM;
    }
    for (int col = 0; col < c->n; col++) c->sends[col] = c->codec[col] >= 0 ? 1.0 : 0.0;
    size_t nk = 0;
    for (int r = 0; r < s->E; r++) {
        int li = s->rows[r];
        for (int col = 0; col < c->n; col++) {
            size_t e = (size_t)r * (size_t)c->n + (size_t)col;
            int j = c->j[col], split = t->cands[j], k = c->codec[col] >= 0 ? c->codec[col] : s->codec;
            size_t q = (size_t)li * (size_t)t->C + (size_t)j;
            const jt_payload *pw = payload_at(t, k, li, j);
            int override = split == 0 && s->frame_bytes >= 0 && !(t->codec_flags[k] & JT_CODEC_FRAME);
            uint64_t sent = override ? (uint64_t)s->frame_bytes : pw->bytes;
            c->enc[e] = pw->encode_ms;
            c->dec[e] = pw->decode_ms;
            c->sent[e] = sent;
            c->kbits[e] = (double)sent * 8.0 / 1e3;
            c->fixed[e] = ((t->head[q] + c->enc[e]) + c->dec[e]) + t->tail[q];
            double a = t->levels[li].accuracy;
            if (t->acell && c->codec[col] >= 0) {
                double v = t->acell[((size_t)c->codec[col] * (size_t)t->L + (size_t)li) * (size_t)t->C + (size_t)j];
                if (!isnan(v)) a = (isnan(a) || v <= a) ? v : a; /* at most the level's own (Scheduler._cell_acc) */
            }
            c->acc[e] = a;
            if (!isnan(a)) known[nk++] = a;
        }
    }
    qsort(known, nk, sizeof(double), cmp_desc);
    size_t nd = 0;
    for (size_t q = 0; q < nk; q++)
        if (nd == 0 || known[nd - 1] != known[q]) known[nd++] = known[q];
    for (int r = 0; r < s->E; r++) {
        for (int col = 0; col < c->n; col++) {
            size_t e = (size_t)r * (size_t)c->n + (size_t)col;
            double rank;
            if (nd == 0) {
                rank = (double)r;
            } else if (isnan(c->acc[e])) {
                rank = (double)(nd + (size_t)r);
            } else {
                size_t lo = 0, hi = nd; /* known is descending: the position of acc */
                while (lo < hi) {
                    size_t mid = (lo + hi) / 2;
                    if (known[mid] > c->acc[e]) lo = mid + 1;
                    else hi = mid;
                }
                rank = (double)lo;
            }
            c->rank_off[e] = rank * RANK_OFFSET;
        }
    }
    free(known);
    return JANUS_OK;
}

static void fill_column(const janus_scheduler *s, int r, int col, double comm, double rtt_charged, double sla,
                        janus_decision *o) {
    const janus_table *t = s->t;
    const js_columns *c = s->cols;
    size_t e = (size_t)r * (size_t)c->n + (size_t)col;
    int li = s->rows[r], j = c->j[col];
    js_fill(s, JANUS_MODE_DEPLOY, li, j, comm, rtt_charged, sla, o);
    o->encode_ms = c->enc[e];
    o->decode_ms = c->dec[e];
    o->predicted_ms = (c->fixed[e] + comm) + rtt_charged;
    o->meets_sla = o->predicted_ms <= sla;
    o->bytes = c->sent[e];
    o->accuracy = c->acc[e];
    o->codec = c->codec[col] >= 0 ? t->codec_names[c->codec[col]] : NULL;
}

/* One option of a full scan: the best (lowest latency + rank offset) within the budget, and the
 * fastest overall for when nothing fits; the first in scan order wins ties. */
static inline void consider(long e, double lat, double rank_off, double budget, long *best, double *best_score,
                            long *fast, double *fast_lat) {
    if (lat <= budget) {
        double score = lat + rank_off;
        if (*best < 0 || score < *best_score) {
            *best = e;
            *best_score = score;
        }
    }
    if (*fast < 0 || lat < *fast_lat) {
        *fast = e;
        *fast_lat = lat;
    }
}

/* janus-deploy over the (split, codec) columns: the first option in row-major order with the
 * least (rank·1e9 + latency) among those within the budget; none: the first fastest. */
static void decide_columns(const janus_scheduler *s, double bw, double rtt, double margin, double sla,
                           janus_decision *o) {
    const js_columns *c = s->cols;
    const double budget = sla * (1.0 - margin);
    long best = -1, fast = -1;
    double best_score = INFINITY, fast_lat = INFINITY;
    for (int r = 0; r < s->E; r++) {
        for (int col = 0; col < c->n; col++) {
            size_t e = (size_t)r * (size_t)c->n + (size_t)col;
            double lat = (c->fixed[e] + comm_of(c->kbits[e], bw)) + rtt * c->sends[col];
            consider((long)e, lat, c->rank_off[e], budget, &best, &best_score, &fast, &fast_lat);
        }
    }
    long k = best >= 0 ? best : fast;
    int r = (int)(k / c->n), col = (int)(k % c->n);
    fill_column(s, r, col, comm_of(c->kbits[k], bw), c->sends[col] != 0.0 ? rtt : 0.0, sla, o);
}

int janus_scheduler_new(const janus_table *t, const char *codec, int64_t frame_bytes, janus_scheduler **out,
                        janus_error *err) {
    if (!out) return jn_fail(err, JANUS_E_INVALID, "janus_scheduler_new: out is NULL");
    *out = NULL;
    if (!t) return jn_fail(err, JANUS_E_INVALID, "janus_scheduler_new: table is NULL");
    int k = codec ? janus_table_codec_index(t, codec) : t->default_codec;
    if (k < 0) {
        char have[256] = "";
        size_t used = 0;
        for (int q = 0; q < t->K && used + 2 < sizeof have; q++) {
            int w = snprintf(have + used, sizeof have - used, "%s%s", q ? ", " : "", t->codec_names[q]);
            if (w < 0) break;
            used += (size_t)w;
        }
        return jn_fail(err, JANUS_E_INVALID, "codec '%s' is not in the table (available: %s)", codec, have);
    }
    if (frame_bytes < -1 || frame_bytes > ((int64_t)1 << 53))
        return jn_fail(err, JANUS_E_INVALID, "frame_bytes must be -1 (the profile's) or in 0..2^53, got %lld",
                       (long long)frame_bytes);
    janus_scheduler *s = calloc(1, sizeof *s);
    if (!s) return jn_fail(err, JANUS_E_NOMEM, "out of memory");
    s->t = t;
    s->codec = k;
    int fp32 = janus_table_codec_index(t, "fp32");
    s->wire_codec_paper = fp32 >= 0 ? fp32 : k; /* the paper's deployment sends fp32 tokens */
    s->frame_bytes = frame_bytes;
    s->sends = malloc(sizeof(double) * (size_t)t->C);
    s->rows = malloc(sizeof(int) * (size_t)t->L);
    s->rank_offset = malloc(sizeof(double) * (size_t)t->L);
    s->order = malloc(sizeof(int) * (size_t)t->L);
    s->group_end = malloc(sizeof(int) * (size_t)t->L);
    if (!s->sends || !s->rows || !s->rank_offset || !s->order || !s->group_end) goto nomem;
    for (int j = 0; j < t->C; j++) s->sends[j] = t->cands[j] <= t->n ? 1.0 : 0.0;
    /* exponential levels by increasing α (Profile.levels_of: a stable sort) */
    s->E = 0;
    for (int i = 0; i < t->L; i++) {
        if (t->levels[i].policy != JANUS_POLICY_EXPONENTIAL) continue;
        int p = s->E - 1;
        while (p >= 0 && t->levels[s->rows[p]].alpha > t->levels[i].alpha) {
            s->rows[p + 1] = s->rows[p];
            p--;
        }
        s->rows[p + 1] = i;
        s->E++;
    }
    if (build_mode(s, JANUS_MODE_DEPLOY) || build_mode(s, JANUS_MODE_PAPER) || build_ranks(s)) goto nomem;
    if (((t->cset && t->ncset > 1) || t->acell) && build_columns(s)) goto nomem;
    *out = s;
    jn_ok(err);
    return JANUS_OK;
nomem:
    janus_scheduler_free(s);
    return jn_fail(err, JANUS_E_NOMEM, "out of memory");
}

const char *janus_scheduler_codec(const janus_scheduler *s) { return s ? s->t->codec_names[s->codec] : NULL; }

int js_check_inputs(double bw, double rtt, double sla, janus_error *err) {
    if (!(bw >= 0)) return jn_fail(err, JANUS_E_INVALID, "bandwidth must be >= 0 Mbit/s, got %g", bw);
    if (!(isfinite(rtt) && rtt >= 0)) return jn_fail(err, JANUS_E_INVALID, "the RTT must be a finite number of ms >= 0, got %g", rtt);
    if (!(isfinite(sla) && sla > 0)) return jn_fail(err, JANUS_E_INVALID, "the SLA must be a positive number of ms, got %g", sla);
    return JANUS_OK;
}

/* Transfer ms of one option at bw Mbit/s (Scheduler._comm): an outage costs inf wherever bytes are sent. */
static inline double comm_of(double kb, double bw) {
    if (bw > 0) return isinf(bw) ? 0.0 : kb / bw;
    return kb > 0 ? INFINITY : 0.0;
}

void js_fill(const janus_scheduler *s, int mode, int level, int j, double comm, double rtt_charged, double sla,
             janus_decision *o) {
    const janus_table *t = s->t;
    const js_mode_table *m = &s->mode[mode];
    const jt_level *lv = &t->levels[level];
    size_t q = (size_t)level * (size_t)t->C + (size_t)j;
    int split = t->cands[j];
    o->level_index = level;
    o->policy = lv->policy;
    o->alpha = lv->alpha;
    o->split = split;
    o->edge_ms = t->head[q];
    o->encode_ms = m->enc[q];
    o->comm_ms = comm;
    o->rtt_ms = rtt_charged;
    o->decode_ms = m->dec[q];
    o->cloud_ms = t->tail[q];
    o->predicted_ms = (m->fixed[q] + comm) + rtt_charged;
    o->meets_sla = o->predicted_ms <= sla;
    o->bytes = m->sent[q];
    o->accuracy = lv->accuracy;
    o->plan_level = lv->plan_level;
    o->model = split <= t->n ? t->models[q] : NULL;
    o->num_engines = t->eseg[j];
    o->engines = (t->has_names && t->eseg[j] > 0) ? (const char *const *)lv->engines : NULL;
    o->codec = split <= t->n ? t->codec_names[s->codec] : NULL;
}

/* Screening with a multiplication. A division costs ~5x a multiplication, and most options of a
 * decision are far from the budget (or from a row's minimum). For a bandwidth in [1e-6, 1e15]
 * Mbit/s, a = (fixed + kbits·(1/bw)) + rtt·sends is within a few ulps (relative 1e-15) of the
 * latency the exact expression (fixed + kbits/bw) + rtt·sends gives, so an option whose screen
 * value exceeds a threshold by a relative 1e-12 cannot be the one chosen; every other option is
 * computed exactly. The choice and its latency are the exact ones, bit for bit. */
#define SLACK 1e-12
static int screens(double bw) { return bw >= 1e-6 && bw <= 1e15; }

static double exact_lat(double fx, double kb, double bw, double rs) { return (fx + comm_of(kb, bw)) + rs; }

/* The first index of the exact minimum of a row, among the options that screen close to it; -1
 * (without exact work) when the row's screened minimum already exceeds ``cap`` by the slack. */
static int row_argmin(const double *fx, const double *kb, const double *rs, int C, double bw, double cap,
                      double *best_out) {
    int bj = 0;
    double best = 0.0;
    if (screens(bw)) {
        const double inv = 1.0 / bw;
        double am = INFINITY;
        for (int j = 0; j < C; j++) {
            double a = (fx[j] + kb[j] * inv) + (rs ? rs[j] : 0.0);
            if (a < am) am = a;
        }
        if (am > cap * (1.0 + SLACK)) return -1;
        const double th = am * (1.0 + SLACK);
        int found = 0;
        for (int j = 0; j < C; j++) {
            if ((fx[j] + kb[j] * inv) + (rs ? rs[j] : 0.0) > th) continue;
            double v = rs ? exact_lat(fx[j], kb[j], bw, rs[j]) : fx[j] + comm_of(kb[j], bw);
            if (!found || v < best) {
                best = v;
                bj = j;
                found = 1;
            }
        }
    } else {
        for (int j = 0; j < C; j++) {
            double v = rs ? exact_lat(fx[j], kb[j], bw, rs[j]) : fx[j] + comm_of(kb[j], bw);
            if (j == 0 || v < best) {
                best = v;
                bj = j;
            }
        }
    }
    *best_out = best;
    return bj;
}

static int decide_paper(const janus_scheduler *s, double bw, double sla, janus_decision *o) {
    const janus_table *t = s->t;
    const js_mode_table *m = &s->mode[JANUS_MODE_PAPER];
    const int C = t->C;
    int li = 0, bj = 0;
    for (int r = 0; r < s->E; r++) {
        li = s->rows[r];
        double best;
        int last = r == s->E - 1; /* if no α meets the SLA: αmax at its fastest split */
        bj = row_argmin(m->fixed + (size_t)li * (size_t)C, m->kbits + (size_t)li * (size_t)C, NULL, C, bw,
                        last ? INFINITY : sla, &best);
        if (bj >= 0 && (best <= sla || last)) break; /* the first α whose best split meets the SLA */
    }
    js_fill(s, JANUS_MODE_PAPER, li, bj, comm_of(m->kbits[(size_t)li * (size_t)C + (size_t)bj], bw), 0.0, sla, o);
    return JANUS_OK;
}

static int decide_deploy(const janus_scheduler *s, double bw, double rtt, double margin, double sla,
                         janus_decision *o) {
    const janus_table *t = s->t;
    const js_mode_table *m = &s->mode[JANUS_MODE_DEPLOY];
    const int C = t->C, scr = screens(bw);
    const double budget = sla * (1.0 - margin), inv = scr ? 1.0 / bw : 0.0, thresh = budget * (1.0 + SLACK);
    const int early = budget < EARLY_EXIT_BUDGET;
    double small[64], *rs = C <= 64 ? small : malloc(sizeof(double) * (size_t)C);
    if (!rs) return JANUS_E_NOMEM;
    for (int j = 0; j < C; j++) rs[j] = rtt * s->sends[j];
    /* pass 1: the best feasible option by (rank·1e9 + latency), rows by preference rank */
    double best_score = INFINITY, am = INFINITY, amth = INFINITY;
    long best_k = -1, cand[64]; /* options screening near the minimum so far: pass 2's candidates */
    int nc = 0, overflow = 0, q = 0;
    for (int g = 0; g < s->ngroups; g++) {
        for (; q < s->group_end[g]; q++) {
            int r = s->order[q], li = s->rows[r];
            const double *fx = m->fixed + (size_t)li * (size_t)C, *kb = m->kbits + (size_t)li * (size_t)C;
            const double off = s->rank_offset[r];
            for (int j = 0; j < C; j++) {
                if (scr) {
                    double a = (fx[j] + kb[j] * inv) + rs[j];
                    if (a < am) {
                        am = a;
                        amth = am * (1.0 + SLACK);
                    }
                    if (a <= amth) { /* the minimum only falls: every final candidate passes here */
                        if (nc < 64) cand[nc++] = (long)r * C + j;
                        else overflow = 1;
                    }
                    if (a > thresh) continue;
                }
                double lat = exact_lat(fx[j], kb[j], bw, rs[j]);
                if (!(lat <= budget)) continue;
                double score = lat + off;
                long k = (long)r * C + j;
                if (best_k < 0 || score < best_score || (score == best_score && k < best_k)) {
                    best_score = score;
                    best_k = k;
                }
            }
        }
        if (best_k >= 0 && early) break;
    }
    long k = best_k;
    if (k < 0) { /* pass 2, nothing fits: the fastest option overall (the first in row-major order) */
        /* pass 1 screened every option (it stops early only after a feasible one) */
        double min_lat = INFINITY, th = scr ? am * (1.0 + SLACK) : INFINITY;
        for (int c = 0; scr && !overflow && c < nc; c++) {
            long kc = cand[c];
            int r = (int)(kc / C), j = (int)(kc % C);
            const double *fx = m->fixed + (size_t)s->rows[r] * (size_t)C, *kb = m->kbits + (size_t)s->rows[r] * (size_t)C;
            if ((fx[j] + kb[j] * inv) + rs[j] > th) continue;
            double lat = exact_lat(fx[j], kb[j], bw, rs[j]);
            if (k < 0 || lat < min_lat || (lat == min_lat && kc < k)) {
                min_lat = lat;
                k = kc;
            }
        }
        for (int r = 0; (!scr || overflow) && r < s->E; r++) {
            const double *fx = m->fixed + (size_t)s->rows[r] * (size_t)C, *kb = m->kbits + (size_t)s->rows[r] * (size_t)C;
            for (int j = 0; j < C; j++) {
                if (scr && (fx[j] + kb[j] * inv) + rs[j] > th) continue;
                double lat = exact_lat(fx[j], kb[j], bw, rs[j]);
                if (k < 0 || lat < min_lat) {
                    min_lat = lat;
                    k = (long)r * C + j;
                }
            }
        }
    }
    if (rs != small) free(rs);
    int r = (int)(k / C), j = (int)(k % C), li = s->rows[r];
    double comm = comm_of(m->kbits[(size_t)li * (size_t)C + (size_t)j], bw);
    js_fill(s, JANUS_MODE_DEPLOY, li, j, comm, s->sends[j] != 0.0 ? rtt : 0.0, sla, o);
    return JANUS_OK;
}

/* The server's load per option (Scheduler._load): ((factor - 1)·(tail + dec) + extra)·sends. */
static inline double load_of(double factor, double extra, double tail, double dec, double sends) {
    return ((factor - 1.0) * (tail + dec) + extra) * sends;
}

/* Add the load to a filled decision (Scheduler._decision): cloud_ms and the total, where it sends. */
static void add_load(janus_decision *o, double factor, double extra, double tail, double dec, double sends,
                     double sla) {
    if (sends == 0.0) return;
    double x = (factor - 1.0) * (tail + dec) + extra;
    o->cloud_ms += x;
    o->predicted_ms += x;
    o->meets_sla = o->predicted_ms <= sla;
}

/* janus-deploy under load: the numpy argmin over every option of lat + load (no screening). */
static void decide_loaded(const janus_scheduler *s, double bw, double rtt, double margin, double sla,
                          double factor, double extra, janus_decision *o) {
    const janus_table *t = s->t;
    const js_columns *cc = s->cols;
    const js_mode_table *m = &s->mode[JANUS_MODE_DEPLOY];
    const int E = s->E, n = cc ? cc->n : t->C;
    const double budget = sla * (1.0 - margin);
    long best = -1, fast = -1;
    double best_score = INFINITY, fast_lat = INFINITY;
    for (int r = 0; r < E; r++) {
        int li = s->rows[r];
        for (int col = 0; col < n; col++) {
            int j = cc ? cc->j[col] : col;
            size_t q = (size_t)li * (size_t)t->C + (size_t)j, e = (size_t)r * (size_t)n + (size_t)col;
            double fx = cc ? cc->fixed[e] : m->fixed[q], kb = cc ? cc->kbits[e] : m->kbits[q];
            double dec = cc ? cc->dec[e] : m->dec[q], snd = cc ? cc->sends[col] : s->sends[j];
            double lat = ((fx + comm_of(kb, bw)) + rtt * snd) + load_of(factor, extra, t->tail[q], dec, snd);
            consider((long)e, lat, cc ? cc->rank_off[e] : s->rank_offset[r], budget, &best, &best_score, &fast, &fast_lat);
        }
    }
    long k = best >= 0 ? best : fast;
    int r = (int)(k / n), col = (int)(k % n), li = s->rows[r];
    int j = cc ? cc->j[col] : col;
    size_t q = (size_t)li * (size_t)t->C + (size_t)j;
    double snd = cc ? cc->sends[col] : s->sends[j];
    if (cc) {
        fill_column(s, r, col, comm_of(cc->kbits[k], bw), snd != 0.0 ? rtt : 0.0, sla, o);
        add_load(o, factor, extra, t->tail[q], cc->dec[k], snd, sla);
    } else {
        js_fill(s, JANUS_MODE_DEPLOY, li, j, comm_of(m->kbits[q], bw), snd != 0.0 ? rtt : 0.0, sla, o);
        add_load(o, factor, extra, t->tail[q], m->dec[q], snd, sla);
    }
}

static int check_load(double factor, double extra, janus_error *err) {
    if (!(isfinite(factor) && factor > 0 && isfinite(extra)))
        return jn_fail(err, JANUS_E_INVALID, "the cloud load must be a finite factor > 0 and a finite extra, got "
                       "factor %g, extra %g ms", factor, extra);
    return JANUS_OK;
}

int janus_decide_loaded(const janus_scheduler *s, int mode, double bw, double rtt, double margin, double sla,
                        double factor, double extra, janus_decision *out, janus_error *err) {
    if (factor == 1.0 && extra == 0.0) return janus_decide(s, mode, bw, rtt, margin, sla, out, err);
    if (!s || !out) return jn_fail(err, JANUS_E_INVALID, "janus_decide_loaded: NULL argument");
    int rc = js_check_inputs(bw, mode == JANUS_MODE_PAPER ? 0.0 : rtt, sla, err);
    if (rc) return rc;
    if (mode == JANUS_MODE_PAPER) return janus_decide(s, mode, bw, rtt, margin, sla, out, err); /* no load */
    if (mode != JANUS_MODE_DEPLOY) return jn_fail(err, JANUS_E_INVALID, "unknown scheduler mode %d", mode);
    if (!(margin >= 0.0 && margin < 1.0))
        return jn_fail(err, JANUS_E_INVALID, "the SLA margin must be in [0, 1), got %g", margin);
    rc = check_load(factor, extra, err);
    if (rc) return rc;
    decide_loaded(s, bw, rtt, margin, sla, factor, extra, out);
    jn_ok(err);
    return JANUS_OK;
}

int janus_server_ms_expected(const janus_scheduler *s, int level, int split, double *out, janus_error *err) {
    if (!s || !out) return jn_fail(err, JANUS_E_INVALID, "janus_server_ms_expected: NULL argument");
    const janus_table *t = s->t;
    if (level < 0 || level >= t->L)
        return jn_fail(err, JANUS_E_INVALID, "level index %d out of range (0..%d)", level, t->L - 1);
    int j = -1;
    for (int q = 0; q < t->C; q++)
        if (t->cands[q] == split) j = q;
    if (j < 0) return jn_fail(err, JANUS_E_INVALID, "split %d is not a candidate split point", split);
    size_t q = (size_t)level * (size_t)t->C + (size_t)j;
    *out = split > t->n ? 0.0 : s->mode[JANUS_MODE_DEPLOY].dec[q] + t->tail[q];
    jn_ok(err);
    return JANUS_OK;
}

int janus_decide(const janus_scheduler *s, int mode, double bw, double rtt, double margin, double sla,
                 janus_decision *out, janus_error *err) {
    if (!s || !out) return jn_fail(err, JANUS_E_INVALID, "janus_decide: NULL argument");
    int rc = js_check_inputs(bw, mode == JANUS_MODE_PAPER ? 0.0 : rtt, sla, err);
    if (rc) return rc;
    if (mode == JANUS_MODE_PAPER) {
        decide_paper(s, bw, sla, out);
    } else if (mode == JANUS_MODE_DEPLOY) {
        if (!(margin >= 0.0 && margin < 1.0))
            return jn_fail(err, JANUS_E_INVALID, "the SLA margin must be in [0, 1), got %g", margin);
        if (s->cols) decide_columns(s, bw, rtt, margin, sla, out);
        else if (decide_deploy(s, bw, rtt, margin, sla, out)) return jn_fail(err, JANUS_E_NOMEM, "out of memory");
    } else {
        return jn_fail(err, JANUS_E_INVALID, "unknown scheduler mode %d", mode);
    }
    jn_ok(err);
    return JANUS_OK;
}

int janus_baseline(const janus_scheduler *s, int system, double bw, double rtt, double sla, janus_decision *out,
                   janus_error *err) {
    return janus_baseline_loaded(s, system, bw, rtt, sla, 1.0, 0.0, out, err);
}

int janus_baseline_loaded(const janus_scheduler *s, int system, double bw, double rtt, double sla, double factor,
                          double extra, janus_decision *out, janus_error *err) {
    if (!s || !out) return jn_fail(err, JANUS_E_INVALID, "janus_baseline: NULL argument");
    const janus_table *t = s->t;
    if (t->baseline_level < 0)
        return jn_fail(err, JANUS_E_INVALID, "baselines need exactly one constant-policy (ToMe r) level; the table "
                       "has none chosen (export it with --baseline-level)");
    if (system != JANUS_SYSTEM_DEVICE_ONLY && system != JANUS_SYSTEM_CLOUD_ONLY && system != JANUS_SYSTEM_MIXED)
        return jn_fail(err, JANUS_E_INVALID, "unknown baseline %d; choose device-only, cloud-only or mixed", system);
    int rc = js_check_inputs(bw, rtt, sla, err);
    if (rc) return rc;
    int loaded = !(factor == 1.0 && extra == 0.0);
    if (loaded && (rc = check_load(factor, extra, err))) return rc;
    const js_mode_table *m = &s->mode[JANUS_MODE_DEPLOY];
    int li = t->baseline_level, C = t->C, dev = C - 1, cloud = 0, j;
    const double *fx = m->fixed + (size_t)li * (size_t)C, *kb = m->kbits + (size_t)li * (size_t)C;
    if (system == JANUS_SYSTEM_DEVICE_ONLY) {
        j = dev;
    } else if (system == JANUS_SYSTEM_CLOUD_ONLY) {
        j = cloud;
    } else {
        size_t qc = (size_t)li * (size_t)C + (size_t)cloud, qd = (size_t)li * (size_t)C + (size_t)dev;
        double lc = (fx[cloud] + comm_of(kb[cloud], bw)) + rtt * s->sends[cloud];
        double ld = (fx[dev] + comm_of(kb[dev], bw)) + rtt * s->sends[dev];
        if (loaded) {
            lc = lc + load_of(factor, extra, t->tail[qc], m->dec[qc], s->sends[cloud]);
            ld = ld + load_of(factor, extra, t->tail[qd], m->dec[qd], s->sends[dev]);
        }
        j = lc < ld ? cloud : dev;
    }
    js_fill(s, JANUS_MODE_DEPLOY, li, j, comm_of(kb[j], bw), s->sends[j] != 0.0 ? rtt : 0.0, sla, out);
    if (loaded) {
        size_t q = (size_t)li * (size_t)C + (size_t)j;
        add_load(out, factor, extra, t->tail[q], m->dec[q], s->sends[j], sla);
    }
    jn_ok(err);
    return JANUS_OK;
}

int janus_evaluate(const janus_scheduler *s, int mode, int level, int split, double bw, double rtt, double sla,
                   janus_decision *out, janus_error *err) {
    if (!s || !out) return jn_fail(err, JANUS_E_INVALID, "janus_evaluate: NULL argument");
    const janus_table *t = s->t;
    if (mode != JANUS_MODE_DEPLOY && mode != JANUS_MODE_PAPER)
        return jn_fail(err, JANUS_E_INVALID, "unknown scheduler mode %d", mode);
    if (level < 0 || level >= t->L)
        return jn_fail(err, JANUS_E_INVALID, "level index %d out of range (0..%d)", level, t->L - 1);
    int j = -1;
    for (int q = 0; q < t->C; q++)
        if (t->cands[q] == split) j = q;
    if (j < 0) return jn_fail(err, JANUS_E_INVALID, "split %d is not a candidate split point", split);
    int rc = js_check_inputs(bw, rtt, sla, err);
    if (rc) return rc;
    double comm = comm_of(s->mode[mode].kbits[(size_t)level * (size_t)t->C + (size_t)j], bw);
    double charged = (mode == JANUS_MODE_DEPLOY && s->sends[j] != 0.0) ? rtt : 0.0;
    js_fill(s, mode, level, j, comm, charged, sla, out);
    jn_ok(err);
    return JANUS_OK;
}
