/* The control loop: janus_deploy.schedule.controller.Controller with the estimators of
 * janus_deploy.schedule.estimators, operation for operation (same sums in the same order, so the
 * same observations give the same estimates and decisions to the last bit). */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct ring { /* a deque with maxlen: oldest first */
    double *v;
    int cap, len, head;
} ring;

static int ring_init(ring *r, int cap) {
    r->v = calloc((size_t)cap, sizeof(double));
    r->cap = cap;
    r->len = r->head = 0;
    return r->v ? JANUS_OK : JANUS_E_NOMEM;
}

static void ring_push(ring *r, double x) {
    if (r->len < r->cap) {
        r->v[(r->head + r->len) % r->cap] = x;
        r->len++;
    } else {
        r->v[r->head] = x;
        r->head = (r->head + 1) % r->cap;
    }
}

static double ring_at(const ring *r, int i) { return r->v[(r->head + i) % r->cap]; }

typedef struct cl_sample { /* CloudSample */
    double t, value, fixed;
} cl_sample;

struct janus_controller {
    const janus_table *t;
    janus_scheduler *sched;
    janus_config cfg;
    /* estimator */
    ring samples, errors, over; /* over: the errors where the estimate overshot, else 0 (Estimator.overshoot_error) */
    int has_value;
    double value; /* EWMA */
    /* RTT tracker: the window and a sorted copy for the median */
    ring rtt;
    double *rtt_sorted;
    /* server health */
    int failures, open, opened, config_error;
    double open_until, open_s;
    int has_last_link, probe_again;
    int surprises; /* consecutive link samples that were outages or missed by half or more */
    int reprobes; /* probes in a row that made another one due at once */
    double last_link_t;
    long long observations, nsamples;
    /* the server's load (CloudLoad): a ring of the last cloud_window samples, oldest first */
    cl_sample *cl;
    int cl_len, cl_head;
    long long cl_count;
};

#define OUTAGE_PROBE_S 0.25 /* controller.OUTAGE_PROBE_S */

/* before the first link sample with probes on, janus-deploy runs on the device (Controller.cold) */
static int cold(const janus_controller *c) {
    return !c->has_last_link && c->cfg.probe_interval_s > 0 && c->cfg.system == JANUS_SYSTEM_JANUS_DEPLOY;
}

/* ------------------------------------------------------------------------------ estimator */

static double raw_prediction(const janus_controller *c) {
    if (c->cfg.estimator == JANUS_ESTIMATOR_EWMA) return c->has_value ? c->value : c->cfg.cold_start_mbps;
    if (c->samples.len == 0) return c->cfg.cold_start_mbps;
    for (int i = 0; i < c->samples.len; i++)
        if (ring_at(&c->samples, i) <= 0) return 0.0;
    double acc = 0.0; /* sum(1.0 / s for s in samples), oldest first, as Python's loop */
    for (int i = 0; i < c->samples.len; i++) acc += 1.0 / ring_at(&c->samples, i);
    return (double)c->samples.len / acc;
}

static double recent_error(const janus_controller *c) {
    if (c->errors.len == 0) return 0.0;
    double m = ring_at(&c->errors, 0);
    for (int i = 1; i < c->errors.len; i++)
        if (ring_at(&c->errors, i) > m) m = ring_at(&c->errors, i);
    return m;
}

static double overshoot_error(const janus_controller *c) {
    if (c->over.len == 0) return 0.0;
    double m = ring_at(&c->over, 0);
    for (int i = 1; i < c->over.len; i++)
        if (ring_at(&c->over, i) > m) m = ring_at(&c->over, i);
    return m;
}

static double estimate(const janus_controller *c) {
    if (c->cfg.estimator == JANUS_ESTIMATOR_ROBUSTMPC) return raw_prediction(c) / (1.0 + recent_error(c));
    return raw_prediction(c);
}

/* Controller.scheduler_bandwidth: the estimate deflated by the error of estimates from samples
 * (janus-deploy), 0 while offloading is off */
static double scheduler_bandwidth(const janus_controller *c) {
    if (c->config_error || c->open) return 0.0;
    double est = estimate(c);
    if (c->cfg.system == JANUS_SYSTEM_JANUS_DEPLOY && c->cfg.deflate && c->cfg.estimator != JANUS_ESTIMATOR_ROBUSTMPC)
        return est / (1.0 + overshoot_error(c));
    return est;
}

static double rel_error(double predicted, double actual) {
    if (actual <= 0) return predicted <= 0 ? 0.0 : 1e3;
    double e = fabs(predicted - actual) / actual;
    return e < 1e3 ? e : 1e3;
}

static int observe_rate(janus_controller *c, double mbps, janus_error *err) {
    if (!(isfinite(mbps) && mbps >= 0))
        return jn_fail(err, JANUS_E_INVALID, "bad observation: a throughput sample must be a finite Mbit/s >= 0, "
                       "got %g", mbps);
    double pred = raw_prediction(c), e = rel_error(pred, mbps);
    ring_push(&c->errors, e);
    ring_push(&c->over, pred > mbps && c->nsamples > 0 ? e : 0.0); /* overshoots of estimates from samples */
    c->nsamples++;
    if (c->cfg.estimator == JANUS_ESTIMATOR_EWMA) {
        double a = c->cfg.ewma_alpha;
        c->value = c->has_value ? a * mbps + (1 - a) * c->value : mbps;
        c->has_value = 1;
    } else {
        ring_push(&c->samples, mbps);
    }
    return JANUS_OK;
}

/* ------------------------------------------------------------------------------ cloud load */

#define MIN_EXPECTED_MS 1.0 /* cloud_load.MIN_EXPECTED_MS */

static void cl_push(janus_controller *c, double t, double value, double fixed) {
    int cap = c->cfg.cloud_window;
    cl_sample x = {t, value, fixed};
    if (c->cl_len < cap) {
        c->cl[(c->cl_head + c->cl_len) % cap] = x;
        c->cl_len++;
    } else {
        c->cl[c->cl_head] = x;
        c->cl_head = (c->cl_head + 1) % cap;
    }
    c->cl_count++;
}

/* CloudLoad.observe */
static void cl_observe(janus_controller *c, double t, double server_ms, double expected_ms, double compute_ms) {
    if (c->cfg.cloud_load == JANUS_CLOUD_LOAD_OFF ||
        !(isfinite(server_ms) && server_ms >= 0 && isfinite(expected_ms) && expected_ms >= 0))
        return;
    if (c->cfg.cloud_load == JANUS_CLOUD_LOAD_FACTOR) {
        double part = server_ms, fixed = 0.0;
        if (isfinite(compute_ms) && compute_ms >= 0) {
            part = compute_ms;
            fixed = server_ms - compute_ms > 0.0 ? server_ms - compute_ms : 0.0;
        }
        double ratio = part / (expected_ms > MIN_EXPECTED_MS ? expected_ms : MIN_EXPECTED_MS);
        cl_push(c, t, ratio - 1.0, fixed);
        return;
    }
    cl_push(c, t, server_ms - expected_ms, 0.0);
}

/* CloudLoad.estimate: (factor, extra ms) */
static void cl_estimate(const janus_controller *c, double t, double *factor, double *extra) {
    *factor = 1.0;
    *extra = 0.0;
    if (c->cfg.cloud_load == JANUS_CLOUD_LOAD_OFF || c->cl_len == 0) return;
    double best = 0.0, fixed = 0.0;
    for (int i = 0; i < c->cl_len; i++) {
        const cl_sample *x = &c->cl[(c->cl_head + i) % c->cfg.cloud_window];
        if (x->value > 0 || x->fixed > 0) {
            double age = t - x->t > 0.0 ? t - x->t : 0.0;
            double decay = pow(0.5, age / c->cfg.cloud_half_life_s);
            if (x->value > 0) {
                double v = x->value * decay;
                if (v > best) best = v;
            }
            if (x->fixed > 0) {
                double v = x->fixed * decay;
                if (v > fixed) fixed = v;
            }
        }
    }
    if (best == 0.0 && fixed == 0.0) return;
    if (c->cfg.cloud_load == JANUS_CLOUD_LOAD_FACTOR) {
        *factor = 1.0 + best;
        *extra = fixed;
    } else {
        *extra = best;
    }
}

/* ------------------------------------------------------------------------------ RTT, breaker */

static double rtt_estimate(const janus_controller *c) {
    if (c->cfg.rtt_fixed || c->rtt.len == 0) return c->cfg.rtt_cold_ms;
    const double *s = c->rtt_sorted;
    int n = c->rtt.len;
    if (c->cfg.rtt_estimate == JANUS_RTT_MAX) return s[n - 1];
    int m = n / 2;
    return (n % 2) ? s[m] : (s[m - 1] + s[m]) / 2;
}

static void rtt_add(janus_controller *c, double v) {
    ring_push(&c->rtt, v);
    int n = c->rtt.len;
    for (int i = 0; i < n; i++) { /* insertion sort of the (small) window */
        double x = ring_at(&c->rtt, i);
        int p = i - 1;
        while (p >= 0 && c->rtt_sorted[p] > x) {
            c->rtt_sorted[p + 1] = c->rtt_sorted[p];
            p--;
        }
        c->rtt_sorted[p + 1] = x;
    }
}

static void server_health(janus_controller *c, double t, int ok, int probe) {
    const janus_config *cfg = &c->cfg;
    if (cfg->breaker_failures == 0) return;
    if (ok) {
        c->failures = 0;
        c->open = 0;
        c->open_s = 0.0;
        return;
    }
    if (c->open && !probe) return; /* an exchange in flight when the breaker opened: nothing new */
    c->failures++;
    if (c->open) { /* a failed probe while open: back off */
        double d = c->open_s * 2;
        c->open_s = d < cfg->breaker_max_open_s ? d : cfg->breaker_max_open_s;
        c->open_until = t + c->open_s;
    } else if (c->failures >= cfg->breaker_failures) {
        c->open_s = cfg->breaker_open_s;
        c->open_until = t + c->open_s;
        c->open = 1;
        c->opened++;
    }
}

/* ------------------------------------------------------------------------------ API */

static int check_config(const janus_table *t, const janus_config *c, janus_error *err) {
    if (c->system < JANUS_SYSTEM_DEVICE_ONLY || c->system > JANUS_SYSTEM_JANUS_DEPLOY)
        return jn_fail(err, JANUS_E_INVALID, "unknown system %d", c->system);
    if (c->estimator < JANUS_ESTIMATOR_HARMONIC || c->estimator > JANUS_ESTIMATOR_ROBUSTMPC)
        return jn_fail(err, JANUS_E_INVALID, "unknown estimator %d", c->estimator);
    if (!(isfinite(c->cold_start_mbps) && c->cold_start_mbps > 0))
        return jn_fail(err, JANUS_E_INVALID, "the cold-start bandwidth must be > 0 Mbit/s, got %g", c->cold_start_mbps);
    if (!(c->ewma_alpha > 0 && c->ewma_alpha <= 1))
        return jn_fail(err, JANUS_E_INVALID, "the EWMA weight alpha must be in (0, 1], got %g", c->ewma_alpha);
    if (!(c->margin >= 0 && c->margin < 1))
        return jn_fail(err, JANUS_E_INVALID, "the margin must be in [0, 1), got %g", c->margin);
    if (!(isfinite(c->rtt_cold_ms) && c->rtt_cold_ms >= 0))
        return jn_fail(err, JANUS_E_INVALID, "the cold RTT must be >= 0 ms, got %g", c->rtt_cold_ms);
    if (c->rtt_estimate != JANUS_RTT_MAX && c->rtt_estimate != JANUS_RTT_MEDIAN)
        return jn_fail(err, JANUS_E_INVALID, "unknown RTT estimate %d", c->rtt_estimate);
    if (c->rtt_window < 1 || c->window < 1 || c->rtt_window > (1 << 20) || c->window > (1 << 20))
        return jn_fail(err, JANUS_E_INVALID, "the estimator and RTT windows must be in 1..2^20");
    if (!(isfinite(c->probe_interval_s) && c->probe_interval_s >= 0))
        return jn_fail(err, JANUS_E_INVALID, "the probe interval must be > 0 s (or 0: never), got %g",
                       c->probe_interval_s);
    if (c->breaker_failures < 0 || !(c->breaker_open_s > 0 && c->breaker_open_s <= c->breaker_max_open_s) ||
        !isfinite(c->breaker_max_open_s))
        return jn_fail(err, JANUS_E_INVALID, "breaker settings: failures >= 0 and 0 < open_s <= max_open_s");
    if (!(isfinite(c->sla_ms) && c->sla_ms > 0))
        return jn_fail(err, JANUS_E_INVALID, "the SLA must be a positive number of ms, got %g", c->sla_ms);
    if (c->cloud_load < JANUS_CLOUD_LOAD_EXTRA || c->cloud_load > JANUS_CLOUD_LOAD_OFF)
        return jn_fail(err, JANUS_E_INVALID, "unknown cloud-load mode %d", c->cloud_load);
    if (c->cloud_window < 1 || c->cloud_window > (1 << 20) || !(isfinite(c->cloud_half_life_s) && c->cloud_half_life_s > 0))
        return jn_fail(err, JANUS_E_INVALID, "cloud-load settings: window in 1..2^20 and half-life > 0 s");
    if (c->system <= JANUS_SYSTEM_MIXED && t->baseline_level < 0)
        return jn_fail(err, JANUS_E_INVALID, "baselines need exactly one constant-policy (ToMe r) level; the table "
                       "has none chosen");
    return JANUS_OK;
}

void janus_controller_free(janus_controller *c) {
    if (!c) return;
    janus_scheduler_free(c->sched);
    free(c->samples.v);
    free(c->errors.v);
    free(c->over.v);
    free(c->rtt.v);
    free(c->rtt_sorted);
    free(c->cl);
    free(c);
}

int janus_controller_new(const janus_table *t, const janus_config *config, janus_controller **out, janus_error *err) {
    if (!out) return jn_fail(err, JANUS_E_INVALID, "janus_controller_new: out is NULL");
    *out = NULL;
    if (!t) return jn_fail(err, JANUS_E_INVALID, "janus_controller_new: table is NULL");
    janus_config cfg = config ? *config : t->config;
    int rc = check_config(t, &cfg, err);
    if (rc) return rc;
    janus_controller *c = calloc(1, sizeof *c);
    if (!c) return jn_fail(err, JANUS_E_NOMEM, "out of memory");
    c->t = t;
    c->cfg = cfg;
    rc = janus_scheduler_new(t, cfg.codec, cfg.frame_bytes, &c->sched, err);
    if (rc) {
        janus_controller_free(c);
        return rc;
    }
    c->cfg.codec = janus_scheduler_codec(c->sched); /* owned by the table, not the caller */
    c->rtt_sorted = calloc((size_t)cfg.rtt_window, sizeof(double));
    c->cl = calloc((size_t)cfg.cloud_window, sizeof(cl_sample));
    if (ring_init(&c->samples, cfg.window) || ring_init(&c->errors, cfg.window) || ring_init(&c->over, cfg.window) || ring_init(&c->rtt, cfg.rtt_window) ||
        !c->rtt_sorted || !c->cl) {
        janus_controller_free(c);
        return jn_fail(err, JANUS_E_NOMEM, "out of memory");
    }
    *out = c;
    jn_ok(err);
    return JANUS_OK;
}

const janus_scheduler *janus_controller_scheduler(const janus_controller *c) { return c ? c->sched : NULL; }

int janus_controller_decide(const janus_controller *c, double t, janus_choice *out, janus_error *err) {
    /* decisions depend on the observations and their times only (t: the load's decay), as in Python */
    if (!c || !out) return jn_fail(err, JANUS_E_INVALID, "janus_controller_decide: NULL argument");
    const janus_config *cfg = &c->cfg;
    int discounts = cfg->estimator == JANUS_ESTIMATOR_ROBUSTMPC;
    double est = estimate(c), e = discounts ? recent_error(c) : overshoot_error(c), rtt = rtt_estimate(c);
    double bw = scheduler_bandwidth(c);
    int reason = JANUS_REASON_SCHEDULER;
    if (c->config_error || c->open) reason = c->config_error ? JANUS_REASON_UNAUTHORIZED : JANUS_REASON_BREAKER_OPEN;
    double factor, extra;
    cl_estimate(c, t, &factor, &extra);
    double cold_bw = bw;
    if (cold(c)) bw = 0.0; /* the cold start: the device, if it meets the budget (Controller.decide) */
    int rc;
    if (cfg->system <= JANUS_SYSTEM_MIXED) {
        int system = reason != JANUS_REASON_SCHEDULER ? JANUS_SYSTEM_DEVICE_ONLY : cfg->system;
        rc = janus_baseline_loaded(c->sched, system, bw, rtt, cfg->sla_ms, factor, extra, &out->decision, err);
    } else if (cfg->system == JANUS_SYSTEM_JANUS_PAPER) {
        rc = janus_decide(c->sched, JANUS_MODE_PAPER, bw, 0.0, 0.0, cfg->sla_ms, &out->decision, err);
    } else {
        rc = janus_decide_loaded(c->sched, JANUS_MODE_DEPLOY, bw, rtt, cfg->margin, cfg->sla_ms, factor, extra,
                                 &out->decision, err);
        if (!rc && cold(c) && !(out->decision.predicted_ms <= cfg->sla_ms * (1.0 - cfg->margin))) {
            bw = cold_bw; /* the device alone misses the budget: the cold-start estimate */
            rc = janus_decide_loaded(c->sched, JANUS_MODE_DEPLOY, bw, rtt, cfg->margin, cfg->sla_ms, factor, extra,
                                     &out->decision, err);
        }
    }
    if (rc) return rc;
    out->estimate_mbps = est;
    out->bandwidth_mbps = bw;
    out->rtt_ms = rtt;
    out->recent_error = e;
    out->reason = reason;
    out->cloud_factor = factor;
    out->cloud_extra_ms = extra;
    return JANUS_OK;
}

void janus_observation_init(janus_observation *o, double t, int kind) {
    if (!o) return;
    o->t = t;
    o->kind = kind;
    o->nbytes = 0.0;
    o->seconds = 0.0;
    o->mbps = NAN;
    o->rtt_ms = NAN;
    o->server_ok = -1;
    o->probe = 0;
    o->server_ms = o->expected_ms = o->server_compute_ms = NAN;
}

int janus_controller_observe(janus_controller *c, const janus_observation *o, double *sample_out, janus_error *err) {
    if (sample_out) *sample_out = NAN;
    if (!c || !o) return jn_fail(err, JANUS_E_INVALID, "janus_controller_observe: NULL argument");
    c->observations++;
    double prior = estimate(c), sample = NAN; /* what this observation's link sample is measured against */
    int has_sample = 0, rc = JANUS_OK;
    switch (o->kind) {
    case JANUS_OBS_TRANSFER:
        if (!(isfinite(o->seconds) && o->seconds > 0))
            return jn_fail(err, JANUS_E_INVALID, "bad observation: a transfer must take a positive, finite time to "
                           "measure bandwidth, got %g s", o->seconds);
        if (!(isfinite(o->nbytes) && o->nbytes >= 0))
            return jn_fail(err, JANUS_E_INVALID, "bad observation: transfer size must be a finite number of bytes "
                           ">= 0, got %g", o->nbytes);
        sample = o->nbytes * 8.0 / o->seconds / 1e6;
        rc = observe_rate(c, sample, err);
        has_sample = 1;
        break;
    case JANUS_OBS_RATE:
        rc = observe_rate(c, o->mbps, err);
        sample = o->mbps;
        has_sample = 1;
        break;
    case JANUS_OBS_OUTAGE:
        rc = observe_rate(c, 0.0, err);
        sample = 0.0;
        has_sample = 1;
        break;
    case JANUS_OBS_UNAUTHORIZED:
        c->config_error = 1;
        break;
    case JANUS_OBS_SERVER:
        break;
    default:
        return jn_fail(err, JANUS_E_INVALID, "unknown observation kind %d", o->kind);
    }
    if (rc) return rc;
    if (has_sample) {
        c->last_link_t = o->t;
        c->has_last_link = 1;
        /* a surprise (an outage, or missed by half the sample or more): probes come soon */
        c->surprises = (sample == 0 || fabs(prior - sample) >= 0.5 * sample) ? c->surprises + 1 : 0;
        /* the link answers but the estimate or the deflated bandwidth is under half of it: probe again;
         * a burst once started goes on until it made `window` samples (Controller.observe) */
        double est = estimate(c), bw = scheduler_bandwidth(c);
        int low = (est < bw ? est : bw) < 0.5 * sample;
        int burst = c->reprobes > 0 && c->reprobes < c->cfg.window - 1; /* not yet `window` samples */
        c->probe_again = o->probe && sample > 0 && (low || burst) && c->reprobes < c->cfg.window;
        c->reprobes = c->probe_again ? c->reprobes + 1 : 0;
        if (sample_out) *sample_out = sample;
    }
    if (isfinite(o->rtt_ms) && o->rtt_ms >= 0) rtt_add(c, o->rtt_ms);
    if (o->server_ok == 0 || o->server_ok == 1) server_health(c, o->t, o->server_ok, o->probe);
    if (!isnan(o->server_ms) && !isnan(o->expected_ms)) cl_observe(c, o->t, o->server_ms, o->expected_ms, o->server_compute_ms);
    jn_ok(err);
    return JANUS_OK;
}

int janus_controller_probe_due(const janus_controller *c, double t) {
    if (!c || c->config_error) return 0;
    if (c->open) return t >= c->open_until;
    double interval = c->cfg.probe_interval_s;
    if (interval <= 0) return 0;
    if (c->probe_again || cold(c)) return 1;
    if (c->surprises) {
        double o = OUTAGE_PROBE_S * pow(2.0, (double)(c->surprises - 1 < 60 ? c->surprises - 1 : 60)); /* Python's cap */
        if (o < interval) interval = o;
    }
    return (t - (c->has_last_link ? c->last_link_t : 0.0)) > interval;
}

void janus_controller_get_state(const janus_controller *c, janus_controller_state *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    if (!c) return;
    o->breaker_open = c->open;
    o->consecutive_failures = c->failures;
    o->breaker_opened = c->opened;
    o->config_error = c->config_error;
    o->estimate_mbps = estimate(c);
    o->rtt_ms = rtt_estimate(c);
    o->observations = c->observations;
}

int janus_controller_observe_exchange(janus_controller *c, double t, const janus_exchange *ex, double *sample,
                                      janus_error *err) {
    if (sample) *sample = NAN;
    if (!c || !ex) return jn_fail(err, JANUS_E_INVALID, "janus_controller_observe_exchange: NULL argument");
    janus_observation o;
    double crossed = ex->sent - ex->unacked; /* bytes that crossed the link */
    if (ex->kind == JANUS_EXCHANGE_OK) {
        /* the server's own receive time when it reports one (a kernel socket takes a whole body at
         * once: only the receiver sees how long it took), else max(upload, network - RTT) */
        double recv_s = ex->server_receive_ms / 1e3, transfer_s = ex->upload_s, d;
        if (recv_s > 0) {
            if (recv_s > transfer_s) transfer_s = recv_s;
        } else {
            d = ex->network_s - rtt_estimate(c) / 1e3;
            if (d > transfer_s) transfer_s = d;
        }
        if (1e-4 > transfer_s) transfer_s = 1e-4;
        double r = ex->network_s - (recv_s > 0 ? transfer_s : ex->upload_s);
        janus_observation_init(&o, t, JANUS_OBS_TRANSFER);
        o.nbytes = ex->body_bytes;
        o.seconds = transfer_s;
        o.rtt_ms = (r > 0.0 ? r : 0.0) * 1e3;
        o.server_ok = 1;
    } else if (ex->kind == JANUS_EXCHANGE_UNAUTHORIZED) {
        janus_observation_init(&o, t, JANUS_OBS_UNAUTHORIZED);
    } else if (ex->kind == JANUS_EXCHANGE_SERVER_ERROR || ex->kind == JANUS_EXCHANGE_PROTOCOL ||
               (ex->kind == JANUS_EXCHANGE_TIMEOUT && crossed >= ex->body_bytes)) {
        janus_observation_init(&o, t, JANUS_OBS_SERVER);
        o.server_ok = 0;
    } else if (ex->kind == JANUS_EXCHANGE_TIMEOUT && crossed > 0 && ex->elapsed_s > 0) {
        janus_observation_init(&o, t, JANUS_OBS_TRANSFER);
        o.nbytes = crossed;
        o.seconds = ex->elapsed_s;
    } else if (ex->kind == JANUS_EXCHANGE_TIMEOUT || ex->kind == JANUS_EXCHANGE_UNREACHABLE ||
               ex->kind == JANUS_EXCHANGE_DROPPED) {
        janus_observation_init(&o, t, JANUS_OBS_OUTAGE);
        o.server_ok = ex->kind == JANUS_EXCHANGE_UNREACHABLE ? 0 : -1;
    } else {
        return jn_fail(err, JANUS_E_INVALID, "unknown exchange kind %d", ex->kind);
    }
    o.probe = ex->probe;
    return janus_controller_observe(c, &o, sample, err);
}
