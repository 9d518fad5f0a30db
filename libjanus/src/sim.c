/* The simulator's per-request loop: janus_deploy.sim.simulator's _run_time_driven (with the
 * exchange policy's deadline, _cancelled and _probe) and _run_paper, with janus_deploy.net.traces'
 * Trace arithmetic, operation for operation (the same sums in the same order, int × float where
 * Python multiplies an int by a float), so the same trace gives the same decisions, latencies and
 * times to the last bit. The controller is the library's own (controller.c), fed the observations
 * the Python loop makes. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------ Trace */

static size_t index_at(const janus_sim_trace *tr, double t) {
    /* int(math.floor(t / interval_s)) % len(samples); t >= 0 here */
    double k = floor(t / tr->interval_s);
    long long q = (long long)k % (long long)tr->n;
    if (q < 0) q += (long long)tr->n;
    return (size_t)q;
}

static double value_at(const janus_sim_trace *tr, double t) { return tr->samples[index_at(tr, t)]; }

static double delivered_bits(const janus_sim_trace *tr, double t) {
    const size_t n = tr->n;
    const double dt = tr->interval_s, period = (double)n * dt;
    double k = floor(t / period);
    double rem = t - k * period;
    double fi = rem / dt;
    size_t i = fi >= (double)(n - 1) ? n - 1 : (size_t)fi; /* min(int(rem / dt), n - 1) */
    return (k * tr->cum[n] + tr->cum[i]) + (tr->samples[i] * 1e6) * (rem - (double)i * dt);
}

static double time_reaching(const janus_sim_trace *tr, double bits) {
    const size_t n = tr->n;
    const double total = tr->cum[n], dt = tr->interval_s;
    long long k = (long long)floor(bits / total);
    double r = bits - (double)k * total;
    if (r <= 0 && k > 0) {
        k = k - 1;
        r = total;
    }
    size_t lo = 0, hi = n + 1; /* bisect_left(cum, r) */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tr->cum[mid] < r) lo = mid + 1;
        else hi = mid;
    }
    double base = (double)(k * (long long)n) * dt;
    if (lo == 0) return base;
    size_t seg = lo - 1;
    return (base + (double)seg * dt) + (r - tr->cum[seg]) / (tr->samples[seg] * 1e6);
}

static double transfer_time(const janus_sim_trace *tr, double start, double nbytes) {
    if (nbytes <= 0) return 0.0;
    double end = time_reaching(tr, delivered_bits(tr, start) + nbytes * 8.0);
    double d = end - start;
    return d >= 1e-12 ? d : 1e-12;
}

static double mean_rate(const janus_sim_trace *tr, double t0, double t1) {
    if (t1 <= t0) return value_at(tr, t0);
    return (delivered_bits(tr, t1) - delivered_bits(tr, t0)) / (t1 - t0) / 1e6;
}

static double pymax(double a, double b) { return a >= b ? a : b; }
static double pymin(double a, double b) { return a <= b ? a : b; }

/* ExchangePolicy.timeout_ms */
static double timeout_ms(const janus_sim_options *o, double elapsed) {
    return pymax(o->sla_ms * o->timeout_factor - elapsed, o->min_timeout_ms);
}

/* ------------------------------------------------------------------------------ records */

static int grow(janus_sim_result *r, size_t *cap) {
    size_t c = *cap ? *cap * 2 : 4096;
#define GROW(f)                                                   \
    do {                                                          \
        void *p = realloc(r->f, c * sizeof *r->f);                \
        if (!p) return JANUS_E_NOMEM;                             \
        r->f = p;                                                 \
    } while (0)
    GROW(start_s);
    GROW(bw_mbps);
    GROW(est_mbps);
    GROW(latency_ms);
    GROW(predicted_ms);
    GROW(level_index);
    GROW(split);
    GROW(bytes);
#undef GROW
    *cap = c;
    return JANUS_OK;
}

static int record(janus_sim_result *r, size_t *cap, double start, double bw, const janus_choice *ch, double lat) {
    if (r->n == *cap && grow(r, cap)) return JANUS_E_NOMEM;
    size_t i = r->n++;
    r->start_s[i] = start;
    r->bw_mbps[i] = bw;
    r->est_mbps[i] = ch->bandwidth_mbps;
    r->latency_ms[i] = lat;
    r->predicted_ms[i] = ch->decision.predicted_ms;
    r->level_index[i] = ch->decision.level_index;
    r->split[i] = ch->decision.split;
    r->bytes[i] = ch->decision.bytes;
    return JANUS_OK;
}

void janus_sim_result_free(janus_sim_result *r) {
    if (!r) return;
    free(r->start_s);
    free(r->bw_mbps);
    free(r->est_mbps);
    free(r->latency_ms);
    free(r->predicted_ms);
    free(r->level_index);
    free(r->split);
    free(r->bytes);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------------------ loops */

static int cand_index(const janus_table *t, int split) {
    for (int j = 0; j < t->C; j++)
        if (t->cands[j] == split) return j;
    return 0;
}

static int run_time_driven(janus_controller *ctl, const janus_sim_trace *tr, const janus_sim_trace *ping,
                           const janus_sim_options *o, janus_sim_result *res, janus_error *err) {
    const janus_table *t = janus_controller_scheduler(ctl)->t;
    size_t cap = 0;
    double now = 0.0, probe_s = 0.0;
    const double end = (double)tr->n * tr->interval_s;
    int64_t i = 0;
    janus_choice ch;
    janus_observation ob;
    int rc;
    while (o->requests >= 0 ? i < o->requests : now < end) {
        if (o->fps > 0) now = ceil(now * o->fps - 1e-9) / o->fps;
        if ((rc = janus_controller_decide(ctl, now, &ch, err))) return rc;
        const janus_decision *d = &ch.decision;
        double compute_edge = d->edge_ms + d->encode_ms;
        double send_t = now + compute_edge / 1e3;
        double rtt = (ping ? value_at(ping, send_t) : o->rtt_ms) + o->exchange_ms;
        double lat;
        if (d->bytes > 0) {
            double tx = transfer_time(tr, send_t, (double)d->bytes);
            lat = (((compute_edge + tx * 1e3) + rtt) + d->decode_ms) + d->cloud_ms;
            double deadline = o->deadline ? compute_edge + timeout_ms(o, compute_edge) : 0.0;
            if (o->deadline && lat > deadline) { /* _cancelled */
                double window_s = (deadline - compute_edge) / 1e3;
                double crossed = pymin((double)d->bytes,
                                       (delivered_bits(tr, send_t + window_s) - delivered_bits(tr, send_t)) / 8.0);
                double local = o->local_ms[(size_t)d->level_index * (size_t)t->C + (size_t)cand_index(t, d->split)];
                double done = now + deadline / 1e3;
                if (crossed >= (double)d->bytes) {
                    janus_observation_init(&ob, done, JANUS_OBS_SERVER);
                    ob.server_ok = 0;
                } else if (crossed > 0) {
                    janus_observation_init(&ob, done, JANUS_OBS_TRANSFER);
                    ob.nbytes = crossed;
                    ob.seconds = window_s;
                } else {
                    janus_observation_init(&ob, done, JANUS_OBS_OUTAGE);
                }
                lat = deadline + local;
            } else {
                janus_observation_init(&ob, now + lat / 1e3, JANUS_OBS_TRANSFER);
                ob.nbytes = (double)d->bytes;
                ob.seconds = tx;
                ob.rtt_ms = rtt;
                ob.server_ok = 1;
            }
            if ((rc = janus_controller_observe(ctl, &ob, NULL, err))) return rc;
        } else {
            lat = (compute_edge + d->decode_ms) + d->cloud_ms;
            double done = now + lat / 1e3;
            if (janus_controller_probe_due(ctl, done) && o->probe_bytes > 0) { /* _probe */
                double prtt = (rtt - o->exchange_ms) + o->probe_exchange_ms;
                double nb = o->probe_bytes, tx = transfer_time(tr, done, nb), took = tx + prtt / 1e3;
                int cut = 0;
                if (o->deadline) {
                    double limit = timeout_ms(o, 0.0) / 1e3;
                    if (took > limit) {
                        double crossed = pymin(nb, (delivered_bits(tr, done + limit) - delivered_bits(tr, done)) / 8.0);
                        if (crossed >= nb) {
                            janus_observation_init(&ob, done + limit, JANUS_OBS_SERVER);
                            ob.server_ok = 0;
                        } else if (crossed > 0) {
                            janus_observation_init(&ob, done + limit, JANUS_OBS_TRANSFER);
                            ob.nbytes = crossed;
                            ob.seconds = limit;
                        } else {
                            janus_observation_init(&ob, done + limit, JANUS_OBS_OUTAGE);
                        }
                        ob.probe = 1;
                        probe_s = limit;
                        cut = 1;
                    }
                }
                if (!cut) {
                    janus_observation_init(&ob, done + took, JANUS_OBS_TRANSFER);
                    ob.nbytes = nb;
                    ob.seconds = tx;
                    ob.rtt_ms = prtt;
                    ob.server_ok = 1;
                    ob.probe = 1;
                    probe_s = took;
                }
                if ((rc = janus_controller_observe(ctl, &ob, NULL, err))) return rc;
            } else if (janus_controller_probe_due(ctl, done)) {
                janus_observation_init(&ob, done, JANUS_OBS_RATE);
                ob.mbps = mean_rate(tr, now, done);
                ob.rtt_ms = ping ? rtt : NAN;
                ob.server_ok = 1;
                ob.probe = 1;
                if ((rc = janus_controller_observe(ctl, &ob, NULL, err))) return rc;
            }
        }
        if (record(res, &cap, now, value_at(tr, send_t), &ch, lat)) return jn_fail(err, JANUS_E_NOMEM, "out of memory");
        now += lat / 1e3;
        if (d->bytes == 0 && probe_s != 0.0) { /* the next request starts once the probe is answered */
            now += probe_s;
            probe_s = 0.0;
        }
        i++;
    }
    res->elapsed_s = now;
    return JANUS_OK;
}

static int run_paper(janus_controller *ctl, const janus_sim_trace *tr, const janus_sim_trace *ping,
                     const janus_sim_options *o, janus_sim_result *res, janus_error *err) {
    const size_t n = tr->n;
    const double dt = tr->interval_s;
    /* _next_nonzero: for each index, the next sample > 0 at or after it (looping), as 0 .. 2n−1 */
    long long *nxt = malloc(sizeof(long long) * n);
    if (!nxt) return jn_fail(err, JANUS_E_NOMEM, "out of memory");
    long long nearest = -1;
    for (long long k = 2 * (long long)n - 1; k >= 0; k--) {
        if (tr->samples[k % (long long)n] > 0) nearest = k;
        if (k < (long long)n) nxt[k] = nearest;
    }
    size_t cap = 0;
    int64_t count = o->requests >= 0 ? o->requests : (int64_t)n;
    double elapsed = 0.0;
    janus_choice ch;
    janus_observation ob;
    int rc = JANUS_OK;
    for (int64_t i = 0; i < count; i++) {
        long long k = (long long)(i % (int64_t)n);
        double b = tr->samples[k];
        if ((rc = janus_controller_decide(ctl, elapsed, &ch, err))) break;
        const janus_decision *d = &ch.decision;
        double lat = ((d->edge_ms + d->encode_ms) + d->decode_ms) + d->cloud_ms;
        double rtt = NAN;
        if (d->bytes > 0) {
            double bits = (double)d->bytes * 8.0, tx_ms;
            if (b > 0) {
                tx_ms = bits / (b * 1e6) * 1e3;
            } else {
                long long j = nxt[k];
                tx_ms = (double)(j - k) * dt * 1e3 + bits / (tr->samples[j % (long long)n] * 1e6) * 1e3;
            }
            rtt = ping ? ping->samples[(size_t)(i % (int64_t)ping->n)] : o->rtt_ms;
            lat += tx_ms + rtt;
        }
        if (record(res, &cap, elapsed, b, &ch, lat)) {
            rc = jn_fail(err, JANUS_E_NOMEM, "out of memory");
            break;
        }
        elapsed += lat / 1e3;
        janus_observation_init(&ob, elapsed, JANUS_OBS_RATE);
        ob.mbps = b;
        ob.rtt_ms = rtt;
        if ((rc = janus_controller_observe(ctl, &ob, NULL, err))) break;
    }
    free(nxt);
    res->elapsed_s = elapsed;
    return rc;
}

static int check_trace(const janus_sim_trace *tr, int bandwidth, janus_error *err) {
    if (!tr->samples || tr->n == 0 || !(isfinite(tr->interval_s) && tr->interval_s > 0))
        return jn_fail(err, JANUS_E_INVALID, "a trace needs samples and an interval > 0 s");
    if (bandwidth && (!tr->cum || !(tr->cum[tr->n] > 0)))
        return jn_fail(err, JANUS_E_INVALID, "the bandwidth trace needs its cumulative bits and a nonzero sample");
    return JANUS_OK;
}

int janus_simulate(janus_controller *ctl, const janus_sim_trace *bw, const janus_sim_trace *ping,
                   const janus_sim_options *o, janus_sim_result *out, janus_error *err) {
    if (!ctl || !bw || !o || !out) return jn_fail(err, JANUS_E_INVALID, "janus_simulate: NULL argument");
    memset(out, 0, sizeof *out);
    int rc = check_trace(bw, 1, err);
    if (!rc && ping) rc = check_trace(ping, 0, err);
    if (rc) return rc;
    if (!(isfinite(o->sla_ms) && o->sla_ms > 0) || !(o->fps >= 0) || !(o->exchange_ms >= 0) || !(o->rtt_ms >= 0) ||
        !(o->probe_bytes >= 0) || (o->deadline && !(o->timeout_factor > 0 && o->min_timeout_ms >= 0)) ||
        (o->paper_mode && o->fps > 0) || !o->local_ms)
        return jn_fail(err, JANUS_E_INVALID, "janus_simulate: bad options");
    rc = o->paper_mode ? run_paper(ctl, bw, ping, o, out, err) : run_time_driven(ctl, bw, ping, o, out, err);
    if (rc) {
        janus_sim_result_free(out);
        return rc;
    }
    jn_ok(err);
    return JANUS_OK;
}
