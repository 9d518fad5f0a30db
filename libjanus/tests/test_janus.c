/* libjanus's own tests: error paths, a bounded mutation fuzz of the table loader and of the V2
 * response decoder, the controller's observation paths and concurrent decisions. Built from the
 * sources (so it may call internals such as jn_crc32) and run under AddressSanitizer + UBSan and
 * under valgrind by tests/libjanus/test_libjanus_safety.py.
 *
 *   test_janus TABLE [TABLE...] --fuzz N [--threads T]
 *
 * Decision correctness is checked against Python elsewhere (tests/libjanus/); here every call must
 * return a status, never crash, leak or read out of bounds. */
#include "../src/internal.h"
#include "janus.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond, ...)                                             \
    do {                                                             \
        if (!(cond)) {                                               \
            failures++;                                              \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);     \
            fprintf(stderr, __VA_ARGS__);                            \
            fputc('\n', stderr);                                     \
        }                                                            \
    } while (0)

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}
static double urand(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void fix_crc(unsigned char *b, size_t n) {
    if (n < 64) return;
    put_u64(b + 16, n);
    put_u32(b + 24, 0);
    put_u32(b + 24, jn_crc32(0, b, n));
}

/* Exercise everything a loaded table offers; nothing may fail other than with a status. */
static long exercise(const janus_table *t) {
    janus_error err;
    janus_scheduler *s = NULL;
    long calls = 0;
    janus_table_info info;
    janus_table_get_info(t, &info);
    if (janus_scheduler_new(t, NULL, -1, &s, &err)) {
        CHECK(err.code == JANUS_E_INVALID || err.code == JANUS_E_NOMEM, "scheduler_new: %d", err.code);
        return 0;
    }
    static const double bws[] = {0.0, 0.05, 1.0, 7.3, 50.0, 1000.0, INFINITY};
    janus_decision d;
    for (size_t i = 0; i < sizeof bws / sizeof *bws; i++) {
        for (int mode = 0; mode < 2; mode++) {
            int rc = janus_decide(s, mode, bws[i], 12.0, 0.1, 250.0, &d, &err);
            CHECK(rc == JANUS_OK, "decide: %s", err.message);
            if (!rc) {
                CHECK(d.level_index >= 0 && d.level_index < info.num_levels, "level %d", d.level_index);
                for (int e = 0; d.engines && e < d.num_engines; e++) calls += (long)strlen(d.engines[e]);
                if (d.model) calls += (long)strlen(d.model);
            }
            calls++;
        }
        for (int sys = 0; sys < 3; sys++) {
            int rc = janus_baseline(s, sys, bws[i], 5.0, 250.0, &d, &err);
            CHECK(rc == JANUS_OK || (rc == JANUS_E_INVALID && info.baseline_level < 0), "baseline: %s", err.message);
        }
    }
    for (int l = 0; l < info.num_levels; l++) {
        janus_level_info li;
        CHECK(janus_table_level(t, l, &li, &err) == JANUS_OK, "level info");
        calls += (long)strlen(li.label);
        for (int j = 0; j < info.num_candidates; j++)
            for (int mode = 0; mode < 2; mode++)
                CHECK(janus_evaluate(s, mode, l, info.candidates[j], 3.0, 1.0, 100.0, &d, &err) == JANUS_OK,
                      "evaluate: %s", err.message);
    }
    janus_scheduler_free(s);
    janus_controller *c = NULL;
    if (janus_controller_new(t, NULL, &c, &err) == JANUS_OK) {
        janus_choice ch;
        janus_observation o;
        for (int k = 0; k < 12; k++) {
            janus_observation_init(&o, k * 0.1, (int)(rnd() % 5));
            o.nbytes = 1000.0 * (double)(rnd() % 100);
            o.seconds = 0.001 + urand();
            o.mbps = urand() * 100;
            o.rtt_ms = urand() * 50;
            o.server_ok = (int)(rnd() % 3) - 1;
            janus_controller_observe(c, &o, NULL, &err);
            CHECK(janus_controller_decide(c, k * 0.1, &ch, &err) == JANUS_OK, "controller decide: %s", err.message);
            janus_controller_probe_due(c, k * 0.1);
        }
        janus_controller_free(c);
    }
    return calls;
}

/* janus_simulate over a trace with outages, every system, both clocks, with and without the
 * deadline and probes: every record in range, time moving forward, error paths (the Python
 * parity is tests/test_sim_fast.py; here: memory safety under the sanitizers and valgrind). */
static void test_simulate(const janus_table *t) {
    janus_table_info info;
    janus_table_get_info(t, &info);
    enum { N = 37 };
    double samples[N], cum[N + 1], ping[5] = {20, 35, 250, 40, 900};
    cum[0] = 0.0;
    for (int i = 0; i < N; i++) {
        samples[i] = (i % 5 == 0) ? 0.0 : (i % 7 == 0) ? 0.02 : 1.0 + (double)(i % 11) * 9.0;
        cum[i + 1] = cum[i] + samples[i] * 1e6 * 0.5;
    }
    janus_sim_trace bw = {samples, N, 0.5, cum}, pg = {ping, 5, 0.5, NULL};
    double *local = calloc((size_t)info.num_levels * (size_t)info.num_candidates, sizeof(double));
    CHECK(local != NULL, "calloc");
    if (!local) return;
    for (int q = 0; q < info.num_levels * info.num_candidates; q++) local[q] = 5.0 + (double)(q % 13);
    janus_error err;
    for (int system = 0; system <= JANUS_SYSTEM_JANUS_DEPLOY; system++) {
        for (int variant = 0; variant < 4; variant++) {
            janus_config cfg;
            janus_table_config(t, &cfg);
            cfg.system = system;
            cfg.breaker_failures = variant == 2 ? 1 : 3;
            janus_controller *c = NULL;
            if (janus_controller_new(t, &cfg, &c, &err) != JANUS_OK) {
                CHECK(system <= JANUS_SYSTEM_MIXED && info.baseline_level < 0, "controller: %s", err.message);
                continue;
            }
            janus_sim_options o = {cfg.sla_ms, variant == 3, variant == 3 ? 200 : -1, variant == 1 ? 5.0 : 0.0, 12.0,
                                   variant == 2 ? 2.0 : 0.0, variant == 2, 1.0, 20.0, variant == 2 ? 4096.0 : 0.0,
                                   1.0, local};
            janus_sim_result r;
            int rc = janus_simulate(c, &bw, variant % 2 ? NULL : &pg, &o, &r, &err);
            CHECK(rc == JANUS_OK, "simulate system %d variant %d: %s", system, variant, err.message);
            if (rc == JANUS_OK) {
                CHECK(r.n > 0 && (variant != 3 || r.n == 200), "simulate: %zu records", r.n);
                for (size_t i = 0; i < r.n; i++) {
                    CHECK(r.level_index[i] >= 0 && r.level_index[i] < info.num_levels, "level %d", r.level_index[i]);
                    CHECK(r.latency_ms[i] >= 0 && !isnan(r.latency_ms[i]), "latency %g", r.latency_ms[i]);
                    CHECK(i == 0 || r.start_s[i] >= r.start_s[i - 1], "time went back at %zu", i);
                }
                CHECK(r.elapsed_s >= r.start_s[r.n - 1], "elapsed");
                janus_sim_result_free(&r);
                CHECK(r.n == 0 && r.latency_ms == NULL, "result freed");
            }
            janus_controller_free(c);
        }
    }
    janus_controller *c = NULL;
    if (janus_controller_new(t, NULL, &c, &err) == JANUS_OK) {
        janus_sim_options o = {300.0, 0, 10, 0.0, 0.0, 0.0, 0, 1.0, 20.0, 0.0, 0.0, local};
        janus_sim_result r;
        CHECK(janus_simulate(NULL, &bw, NULL, &o, &r, &err) == JANUS_E_INVALID, "NULL controller");
        double zero_cum[N + 1] = {0};
        janus_sim_trace dead = {samples, N, 0.5, zero_cum};
        CHECK(janus_simulate(c, &dead, NULL, &o, &r, &err) == JANUS_E_INVALID && r.n == 0, "a trace without bandwidth");
        o.fps = 5.0;
        o.paper_mode = 1;
        CHECK(janus_simulate(c, &bw, NULL, &o, &r, &err) == JANUS_E_INVALID, "fps in paper mode");
        janus_controller_free(c);
    }
    free(local);
}

static int expect_load(const unsigned char *b, size_t n, int want, const char *what) {
    janus_table *t = NULL;
    janus_error err;
    int rc = janus_table_load_memory(b, n, &t, &err);
    CHECK(rc == want, "%s: got %s (%s), expected %s", what, janus_status_name(rc), err.message, janus_status_name(want));
    CHECK(rc != JANUS_OK || t != NULL, "%s: OK without a table", what);
    CHECK(rc == JANUS_OK || (t == NULL && err.code == rc && err.message[0]), "%s: error not reported", what);
    janus_table_free(t);
    return rc;
}

static void test_header_errors(const unsigned char *valid, size_t n) {
    unsigned char *b = malloc(n + 16);
    memcpy(b, valid, n);
    expect_load(b, n, JANUS_OK, "valid table");
    expect_load(b, 0, JANUS_E_FORMAT, "empty");
    expect_load(b, 63, JANUS_E_FORMAT, "shorter than the header");
    expect_load(b, n - 1, JANUS_E_FORMAT, "truncated by one byte");
    memcpy(b + n, "junk", 4);
    expect_load(b, n + 4, JANUS_E_FORMAT, "extra bytes");
    b[0] ^= 1;
    expect_load(b, n, JANUS_E_FORMAT, "bad magic");
    b[0] ^= 1;
    put_u32(b + 8, 2);
    expect_load(b, n, JANUS_E_VERSION, "version 2");
    put_u32(b + 8, 1);
    b[n / 2] ^= 0x10;
    expect_load(b, n, JANUS_E_CHECKSUM, "one flipped bit");
    b[n / 2] ^= 0x10;
    /* a consistent checksum over an inconsistent body: the loader's own checks */
    uint64_t sec_off = 64;
    uint32_t nsec = (uint32_t)b[28] | (uint32_t)b[29] << 8;
    for (uint32_t i = 0; i < nsec; i++) {
        unsigned char *e = b + sec_off + 24 * i;
        if (!memcmp(e, "INFO", 4)) {
            uint64_t off = 0;
            for (int k = 0; k < 8; k++) off |= (uint64_t)e[8 + k] << (8 * k);
            unsigned char save[4];
            memcpy(save, b + off + 24, 4);
            put_u32(b + off + 24, 0x7fffffff); /* num_levels */
            fix_crc(b, n);
            expect_load(b, n, JANUS_E_CORRUPT, "huge num_levels");
            memcpy(b + off + 24, save, 4);
            put_u32(b + off + 40, 0x7fff); /* baseline level out of range */
            fix_crc(b, n);
            expect_load(b, n, JANUS_E_CORRUPT, "baseline level out of range");
            memcpy(b, valid, n);
        }
        if (!memcmp(e, "STRS", 4)) {
            memcpy(e, "XXXX", 4); /* a missing section */
            fix_crc(b, n);
            expect_load(b, n, JANUS_E_CORRUPT, "missing string table");
            memcpy(b, valid, n);
        }
    }
    free(b);
}

/* Bounded mutation fuzz of the loader: flips, special values, overwritten fields, truncations,
 * extensions; three times in four the size and checksum are fixed up so the structural checks
 * behind the checksum get exercised too. */
static void fuzz_loader(const unsigned char *valid, size_t n, long iters, long counts[16], long *calls) {
    unsigned char *b = malloc(n + 4096);
    for (long it = 0; it < iters; it++) {
        memcpy(b, valid, n);
        size_t len = n;
        int kind = (int)(rnd() % 6);
        int nm = 1 + (int)(rnd() % 8);
        for (int m = 0; m < nm; m++) {
            size_t pos = (size_t)(rnd() % len);
            switch (kind) {
            case 0: b[pos] ^= (unsigned char)(1u << (rnd() % 8)); break;
            case 1: {
                static const unsigned char special[] = {0, 0xFF, 0x7F, 0x80, 1, 0xFE};
                b[pos] = special[rnd() % sizeof special];
                break;
            }
            case 2: { /* a field-sized overwrite with an interesting value, aligned */
                static const uint64_t vals[] = {0, 1, 2, 0xFFFFFFFFull, 0x7FFFFFFFull, 0xFFFFFFFFFFFFFFFFull,
                                                0x7FF8000000000000ull /* NaN */, 0x7FF0000000000000ull /* inf */,
                                                0xBFF0000000000000ull /* -1.0 */, 64, 1u << 20};
                pos &= ~(size_t)3;
                uint64_t v = vals[rnd() % (sizeof vals / sizeof *vals)];
                if (pos + 8 <= len && rnd() % 2) put_u64(b + pos, v);
                else if (pos + 4 <= len) put_u32(b + pos, (uint32_t)v);
                break;
            }
            case 3: len = (size_t)(rnd() % len); break;
            case 4: {
                size_t add = 1 + (size_t)(rnd() % 4000);
                for (size_t k = 0; k < add; k++) b[len + k] = (unsigned char)rnd();
                len += add;
                m = nm;
                break;
            }
            default: b[pos] = (unsigned char)rnd(); break;
            }
            if (!len) break;
        }
        if (rnd() % 4) fix_crc(b, len);
        janus_table *t = NULL;
        janus_error err;
        int rc = janus_table_load_memory(b, len, &t, &err);
        CHECK(rc >= 0 && rc < 16, "status %d", rc);
        CHECK((rc == JANUS_OK) == (t != NULL), "status and table disagree");
        CHECK(rc == JANUS_OK || err.message[0], "an error without a message");
        counts[rc & 15]++;
        if (t) *calls += exercise(t);
        janus_table_free(t);
    }
    free(b);
}

static const char *RESPONSE_HEADERS[] = {
    "{\"model_name\":\"janus_L0_S3\",\"model_version\":\"1\",\"id\":\"7\",\"parameters\":{\"janus_server_ms\":1.5,"
    "\"flag\":true},\"outputs\":[{\"name\":\"logits\",\"datatype\":\"FP32\",\"shape\":[1,4],"
    "\"parameters\":{\"binary_data_size\":16}}]}",
    "{\"outputs\":[{\"name\":\"logits\",\"datatype\":\"FP16\",\"shape\":[2,2],\"data\":[[1.5,-2],[65504,1e-8]]},"
    "{\"name\":\"n\",\"datatype\":\"INT8\",\"shape\":[3],\"data\":[-128,127,true]},"
    "{\"name\":\"u\",\"datatype\":\"UINT64\",\"shape\":[2],\"data\":[18446744073709551615,0]},"
    "{\"name\":\"b\",\"datatype\":\"BOOL\",\"shape\":[2],\"data\":[false,3]},"
    "{\"name\":\"s\\u00e9\\ud83d\\ude00\",\"datatype\":\"FP64\",\"shape\":[1],\"data\":[NaN]}]}",
};

static void fuzz_response(long iters, long *ok_count) {
    float logits[4] = {1.0f, -2.0f, 3.5f, 0.25f};
    size_t hl = strlen(RESPONSE_HEADERS[0]);
    size_t n = hl + sizeof logits;
    unsigned char *valid = malloc(n);
    memcpy(valid, RESPONSE_HEADERS[0], hl);
    memcpy(valid + hl, logits, sizeof logits);
    janus_v2_response *r = NULL;
    janus_error err;
    CHECK(janus_v2_decode_response(valid, n, (int64_t)hl, &r, &err) == JANUS_OK, "valid response: %s", err.message);
    if (r) {
        const janus_v2_output *o = janus_v2_response_find(r, "logits");
        CHECK(o && o->nbytes == 16 && o->ndim == 2 && o->shape[1] == 4 && ((const float *)o->data)[2] == 3.5f,
              "logits decoded");
        double v = 0;
        CHECK(janus_v2_response_parameter(r, "janus_server_ms", &v) == 1 && v == 1.5, "parameter");
        CHECK(janus_v2_response_parameter(r, "flag", &v) == 0, "a bool is not a number");
        CHECK(janus_v2_response_id(r) && !strcmp(janus_v2_response_id(r), "7"), "id");
        janus_v2_response_free(r);
    }
    r = NULL;
    CHECK(janus_v2_decode_response(RESPONSE_HEADERS[1], strlen(RESPONSE_HEADERS[1]), -1, &r, &err) == JANUS_OK,
          "JSON data response: %s", err.message);
    if (r) {
        const janus_v2_output *o = janus_v2_response_output(r, 0);
        const uint16_t *h = o->data;
        CHECK(h[0] == 0x3E00 && h[1] == 0xC000 && h[2] == 0x7BFF && h[3] == 0x0000, "fp16 data %x %x %x %x", h[0],
              h[1], h[2], h[3]);
        const int8_t *i8 = janus_v2_response_output(r, 1)->data;
        CHECK(i8[0] == -128 && i8[1] == 127 && i8[2] == 1, "int8 data");
        const uint64_t *u = janus_v2_response_output(r, 2)->data;
        CHECK(u[0] == UINT64_MAX && u[1] == 0, "uint64 data");
        const uint8_t *b8 = janus_v2_response_output(r, 3)->data;
        CHECK(b8[0] == 0 && b8[1] == 1, "bool data");
        CHECK(!strcmp(janus_v2_response_output(r, 4)->name, "s\xc3\xa9\xf0\x9f\x98\x80"), "unicode name");
        janus_v2_response_free(r);
    }
    static const char *bad[] = {"", "[]", "{", "{\"outputs\":[]}", "{\"outputs\":[{\"name\":\"x\"}]}",
                                "{\"outputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[1]}]}",
                                "{\"outputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1.0],\"data\":[1]}]}",
                                "{\"outputs\":[{\"name\":\"x\",\"datatype\":\"UINT8\",\"shape\":[1],\"data\":[256]}]}",
                                "{\"outputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[[1],2]}]}",
                                "{\"outputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}]} x",
                                "{\"a\":01}", "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}", "\xff{}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = NULL;
        int rc = janus_v2_decode_response(bad[i], strlen(bad[i]), -1, &r, &err);
        CHECK(rc == JANUS_E_WIRE && r == NULL, "bad response %zu accepted (%d)", i, rc);
    }
    CHECK(janus_v2_decode_response(valid, n, (int64_t)n + 1, &r, &err) == JANUS_E_WIRE, "header_len > body");
    CHECK(janus_v2_decode_response(valid, n - 1, (int64_t)hl, &r, &err) == JANUS_E_WIRE, "truncated binary");
    /* nesting bomb */
    char deep[300];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = '\0';
    CHECK(janus_v2_decode_response(deep, strlen(deep), -1, &r, &err) == JANUS_E_WIRE, "deep nesting");
    unsigned char *b = malloc(n + strlen(RESPONSE_HEADERS[1]) + 64);
    for (long it = 0; it < iters; it++) {
        const char *src = RESPONSE_HEADERS[rnd() % 2];
        size_t len;
        int64_t h;
        if (src == RESPONSE_HEADERS[0]) {
            memcpy(b, valid, n);
            len = n;
            h = (int64_t)hl;
        } else {
            len = strlen(src);
            memcpy(b, src, len);
            h = -1;
        }
        int nm = 1 + (int)(rnd() % 4);
        for (int m = 0; m < nm && len; m++) {
            size_t pos = (size_t)(rnd() % len);
            switch (rnd() % 5) {
            case 0: b[pos] ^= (unsigned char)(1u << (rnd() % 8)); break;
            case 1: b[pos] = "{}[]\",:0-9eE.\\u"[rnd() % 16]; break;
            case 2: len = pos; break;
            case 3: h = (int64_t)(rnd() % (len + 2)) - 1; break;
            default: b[pos] = (unsigned char)rnd(); break;
            }
        }
        r = NULL;
        int rc = janus_v2_decode_response(b, len, h, &r, &err);
        CHECK((rc == JANUS_OK) == (r != NULL), "status and response disagree");
        CHECK(rc == JANUS_OK || rc == JANUS_E_WIRE, "status %d", rc);
        if (r) {
            (*ok_count)++;
            volatile unsigned sum = 0;
            for (size_t i = 0; i < janus_v2_response_num_outputs(r); i++) {
                const janus_v2_output *o = janus_v2_response_output(r, i);
                sum += (unsigned)strlen(o->name);
                for (size_t k = 0; k < o->nbytes; k++) sum += ((const unsigned char *)o->data)[k];
            }
            (void)sum;
            janus_v2_response_free(r);
        }
    }
    free(b);
    free(valid);
}

static void test_encode(void) {
    uint8_t frame[2 * 3 * 3];
    for (int i = 0; i < 18; i++) frame[i] = (uint8_t)i;
    size_t need = 0, hl = 0;
    janus_error err;
    CHECK(janus_v2_encode_frame(frame, 2, 3, "0", NULL, 0, &need, &hl, &err) == JANUS_E_NOSPACE && need > 18,
          "size query");
    unsigned char *buf = malloc(need);
    CHECK(janus_v2_encode_frame(frame, 2, 3, "0", buf, need - 1, &need, &hl, &err) == JANUS_E_NOSPACE, "short buffer");
    CHECK(janus_v2_encode_frame(frame, 2, 3, "0", buf, need, &need, &hl, &err) == JANUS_OK, "encode frame");
    const char *want = "{\"id\":\"0\",\"inputs\":[{\"name\":\"frame\",\"datatype\":\"UINT8\",\"shape\":[1,2,3,3],"
                       "\"parameters\":{\"binary_data_size\":18}}],\"outputs\":[{\"name\":\"logits\",\"parameters\":"
                       "{\"binary_data\":true}}]}";
    CHECK(hl == strlen(want) && !memcmp(buf, want, hl) && !memcmp(buf + hl, frame, 18), "frame body");
    free(buf);
    float tok[2 * 3] = {0.1f, -2.0f, 70000.0f, 0.0f, 1e-8f, -0.0f}, size[2] = {1.0f, 3.0f};
    static const char *codecs[] = {"fp32", "fp16", "fp16-zstd", "int8"};
    for (int c = 0; c < 4; c++) {
        CHECK(janus_v2_encode_tokens(codecs[c], tok, size, 2, 3, NULL, NULL, 0, &need, &hl, &err) == JANUS_E_NOSPACE,
              "tokens size");
        buf = malloc(need);
        CHECK(janus_v2_encode_tokens(codecs[c], tok, size, 2, 3, NULL, buf, need, &need, &hl, &err) == JANUS_OK,
              "tokens %s: %s", codecs[c], err.message);
        free(buf);
    }
    CHECK(janus_v2_encode_tokens("zstd", tok, size, 2, 3, NULL, NULL, 0, &need, &hl, &err) == JANUS_E_INVALID,
          "unknown codec");
    CHECK(janus_fp16_from_float(65520.0f) == 0x7C00 && janus_fp16_from_float(65519.0f) == 0x7BFF, "fp16 overflow");
    CHECK(janus_fp16_from_float(5.96046448e-08f) == 0x0001 && janus_fp16_from_float(2.98023224e-08f) == 0x0000,
          "fp16 subnormal ties to even");
    CHECK(janus_fp16_to_float(0x3C00) == 1.0f && janus_fp16_to_float(0x0001) == 5.96046448e-08f, "fp16 to float");
    janus_tensor t = {"x", 99, 0, NULL, NULL, 0};
    CHECK(janus_v2_encode_request(&t, 1, NULL, NULL, 0, 1, NULL, 0, &need, &hl, &err) == JANUS_E_INVALID, "bad dtype");
    t = (janus_tensor){"x\xff", JANUS_DT_UINT8, 0, NULL, frame, 1};
    CHECK(janus_v2_encode_request(&t, 1, NULL, NULL, 0, 1, NULL, 0, &need, &hl, &err) == JANUS_E_INVALID, "bad UTF-8");
}

static void test_api_errors(const janus_table *t) {
    janus_error err;
    janus_decision d;
    janus_scheduler *s = NULL;
    CHECK(janus_scheduler_new(t, "nope", -1, &s, &err) == JANUS_E_INVALID && !s, "unknown codec");
    CHECK(janus_scheduler_new(t, NULL, -2, &s, &err) == JANUS_E_INVALID, "bad frame bytes");
    CHECK(janus_scheduler_new(t, NULL, -1, &s, &err) == JANUS_OK, "scheduler");
    CHECK(janus_decide(s, 0, NAN, 0, 0, 100, &d, &err) == JANUS_E_INVALID, "NaN bandwidth");
    CHECK(janus_decide(s, 0, -1, 0, 0, 100, &d, &err) == JANUS_E_INVALID, "negative bandwidth");
    CHECK(janus_decide(s, 0, 1, INFINITY, 0, 100, &d, &err) == JANUS_E_INVALID, "infinite RTT");
    CHECK(janus_decide(s, 0, 1, 0, 1.0, 100, &d, &err) == JANUS_E_INVALID, "margin 1");
    CHECK(janus_decide(s, 0, 1, 0, 0, 0, &d, &err) == JANUS_E_INVALID, "SLA 0");
    CHECK(janus_decide(s, 7, 1, 0, 0, 100, &d, &err) == JANUS_E_INVALID, "unknown mode");
    CHECK(janus_decide(NULL, 0, 1, 0, 0, 100, &d, &err) == JANUS_E_INVALID, "NULL scheduler");
    CHECK(janus_evaluate(s, 0, -1, 0, 1, 0, 100, &d, &err) == JANUS_E_INVALID, "bad level");
    CHECK(janus_evaluate(s, 0, 0, -5, 1, 0, 100, &d, &err) == JANUS_E_INVALID, "bad split");
    CHECK(janus_baseline(s, JANUS_SYSTEM_JANUS_DEPLOY, 1, 0, 100, &d, &err) == JANUS_E_INVALID, "not a baseline");
    janus_scheduler_free(s);
    janus_config cfg;
    janus_table_config(t, &cfg);
    janus_controller *c = NULL;
    janus_config bad = cfg;
    bad.window = 0;
    CHECK(janus_controller_new(t, &bad, &c, &err) == JANUS_E_INVALID && !c, "window 0");
    bad = cfg;
    bad.margin = 1.5;
    CHECK(janus_controller_new(t, &bad, &c, &err) == JANUS_E_INVALID, "margin");
    bad = cfg;
    bad.cold_start_mbps = 0;
    CHECK(janus_controller_new(t, &bad, &c, &err) == JANUS_E_INVALID, "cold start");
    CHECK(janus_controller_new(t, &cfg, &c, &err) == JANUS_OK, "controller: %s", err.message);
    janus_observation o;
    janus_observation_init(&o, 1.0, JANUS_OBS_TRANSFER);
    o.nbytes = 100;
    o.seconds = 0;
    CHECK(janus_controller_observe(c, &o, NULL, &err) == JANUS_E_INVALID, "zero-second transfer");
    janus_observation_init(&o, 1.0, JANUS_OBS_RATE);
    CHECK(janus_controller_observe(c, &o, NULL, &err) == JANUS_E_INVALID, "rate without mbps");
    janus_observation_init(&o, 1.0, 42);
    CHECK(janus_controller_observe(c, &o, NULL, &err) == JANUS_E_INVALID, "unknown kind");
    janus_exchange ex = {JANUS_EXCHANGE_OK, 1000, 0, 1000, 0.001, 0.002, 0.003, 0, 0};
    double sample = 0;
    CHECK(janus_controller_observe_exchange(c, 2.0, &ex, &sample, &err) == JANUS_OK && sample > 0, "exchange ok");
    for (int k = 1; k <= 6; k++) {
        ex.kind = k;
        ex.sent = k % 2 ? 500 : 1000;
        CHECK(janus_controller_observe_exchange(c, 2.0 + k, &ex, &sample, &err) == JANUS_OK, "exchange %d", k);
    }
    ex.kind = 99;
    CHECK(janus_controller_observe_exchange(c, 9.0, &ex, &sample, &err) == JANUS_E_INVALID, "unknown exchange");
    janus_controller_state st;
    janus_controller_get_state(c, &st);
    CHECK(st.config_error == 1 && st.observations == 10, "state after an unauthorized exchange (%lld)", st.observations);
    janus_choice ch;
    CHECK(janus_controller_decide(c, 10.0, &ch, &err) == JANUS_OK && ch.reason == JANUS_REASON_UNAUTHORIZED,
          "unauthorized stops offloading");
    janus_controller_free(c);
}

typedef struct worker {
    const janus_scheduler *s;
    int count, mismatches;
    const janus_decision *want;
    const double *bw;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    janus_error err;
    for (int i = 0; i < w->count; i++) {
        janus_decision d;
        janus_decide(w->s, i % 2, w->bw[i], 5.0, 0.1, 300.0, &d, &err);
        if (d.level_index != w->want[i].level_index || d.split != w->want[i].split ||
            d.predicted_ms != w->want[i].predicted_ms)
            w->mismatches++;
    }
    return NULL;
}

static void test_threads(const janus_table *t, int nthreads) {
    janus_scheduler *s = NULL;
    janus_error err;
    if (janus_scheduler_new(t, NULL, -1, &s, &err)) return;
    enum { N = 4000 };
    static double bw[N];
    static janus_decision want[N];
    for (int i = 0; i < N; i++) {
        bw[i] = pow(10.0, urand() * 4 - 1);
        janus_decide(s, i % 2, bw[i], 5.0, 0.1, 300.0, &want[i], &err);
    }
    pthread_t th[16];
    worker w[16];
    if (nthreads > 16) nthreads = 16;
    for (int k = 0; k < nthreads; k++) {
        w[k] = (worker){s, N, 0, want, bw};
        pthread_create(&th[k], NULL, work, &w[k]);
    }
    for (int k = 0; k < nthreads; k++) {
        pthread_join(th[k], NULL);
        CHECK(w[k].mismatches == 0, "thread %d: %d decisions differ", k, w[k].mismatches);
    }
    janus_scheduler_free(s);
}

int main(int argc, char **argv) {
    long iters = 0;
    int nthreads = 4, ntables = 0;
    const char *tables[8];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--fuzz") && i + 1 < argc) iters = atol(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) nthreads = atoi(argv[++i]);
        else if (ntables < 8) tables[ntables++] = argv[i];
    }
    janus_error err;
    janus_table *t = NULL;
    CHECK(janus_table_load("/nonexistent/table.jdt", &t, &err) == JANUS_E_IO && !t, "missing file");
    test_encode();
    long resp_ok = 0;
    fuzz_response(iters, &resp_ok);
    for (int k = 0; k < ntables; k++) {
        size_t n = 0;
        unsigned char *valid = read_file(tables[k], &n);
        CHECK(valid != NULL, "cannot read %s", tables[k]);
        if (!valid) continue;
        CHECK(janus_table_load(tables[k], &t, &err) == JANUS_OK, "load %s: %s", tables[k], err.message);
        if (t) {
            exercise(t);
            test_simulate(t);
            test_api_errors(t);
            test_threads(t, nthreads);
            janus_table_free(t);
            t = NULL;
        }
        test_header_errors(valid, n);
        long counts[16] = {0}, calls = 0;
        fuzz_loader(valid, n, iters, counts, &calls);
        printf("%s: %ld mutated tables:", tables[k], iters);
        for (int c = 0; c < 16; c++)
            if (counts[c]) printf(" %s=%ld", janus_status_name(c), counts[c]);
        printf(" (decisions on loaded ones: %ld)\n", calls);
        free(valid);
    }
    printf("responses: %ld mutated, %ld still decoded\n", iters, resp_ok);
    if (failures) {
        printf("%d FAILURES\n", failures);
        return 1;
    }
    printf("OK\n");
    return 0;
}
