/* janus-decide TABLE: one scheduling decision per input line, as `janus-deploy schedule --json`.
 *
 *   stdin:  bandwidth_mbps rtt_ms sla_ms mode      (mode: paper | janus-deploy)
 *   stdout: one JSON object per line, the keys (and number formatting) of `schedule --json`
 *
 * Exit status 0; 2 with one line on stderr for a bad table, a bad option or a bad input line
 * (the lines before it have been answered). */
#include "janus.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: janus-decide [--margin M] [--codec NAME] [--names] TABLE\n"
    "Reads 'bandwidth_mbps rtt_ms sla_ms mode' lines (mode: paper | janus-deploy) on stdin and prints\n"
    "one JSON decision per line with the keys of `janus-deploy schedule --json`.\n"
    "  --margin M    fraction of the SLA held back in janus-deploy mode (default 0, as `schedule`)\n"
    "  --codec NAME  payload codec (default: the table's)\n"
    "  --names       add the V2 model to call and the edge's engine files (tables made with --plan)\n";

/* A double as Python's repr() writes it (json.dumps): the shortest digits that read back to the
 * same value, fixed notation for 1e-4 <= |v| < 1e16, else d.ddde+XX; NaN / Infinity as json. */
static void fmt_double(double v, char *out, size_t cap) {
    if (isnan(v)) {
        snprintf(out, cap, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "Infinity" : "-Infinity");
        return;
    }
    char e[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    /* e = [-]d[.ddd]e[+-]XX */
    const char *s = e;
    int neg = *s == '-';
    if (neg) s++;
    char digits[24];
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s != '.') digits[nd++] = *s;
    int exp = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    char *o = out;
    size_t left = cap;
#define EMIT(...)                                          \
    do {                                                   \
        int w_ = snprintf(o, left, __VA_ARGS__);           \
        if (w_ < 0 || (size_t)w_ >= left) return;          \
        o += w_;                                           \
        left -= (size_t)w_;                                \
    } while (0)
    if (neg) EMIT("-");
    if (exp < -4 || exp >= 16) {
        EMIT("%c", digits[0]);
        if (nd > 1) EMIT(".%s", digits + 1);
        EMIT("e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp >= 0) {
        for (int i = 0; i <= exp; i++) EMIT("%c", i < nd ? digits[i] : '0');
        EMIT(".%s", nd > exp + 1 ? digits + exp + 1 : "0");
    } else {
        EMIT("0.");
        for (int i = 0; i < -exp - 1; i++) EMIT("0");
        EMIT("%s", digits);
    }
#undef EMIT
}

static void put_num(FILE *f, double v) {
    char b[64];
    fmt_double(v, b, sizeof b);
    fputs(b, f);
}

static void put_str(FILE *f, const char *s) { /* names are plain ASCII, but stay valid JSON anyway */
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static const char *POLICY_NAMES[] = {"exponential", "linear", "constant"};

static void print_decision(FILE *f, const char *mode, double sla, double bw, double rtt, const char *codec,
                           const janus_decision *d, int names) {
    fputs("{\"mode\": ", f);
    put_str(f, mode);
    fputs(", \"sla_ms\": ", f);
    put_num(f, sla);
    fputs(", \"bandwidth_mbps\": ", f);
    put_num(f, bw);
    fputs(", \"rtt_ms\": ", f);
    put_num(f, rtt);
    fputs(", \"codec\": ", f);
    if (codec) put_str(f, codec);
    else fputs("null", f);
    fputs(", \"alpha\": ", f);
    put_num(f, d->alpha);
    fputs(", \"policy\": ", f);
    put_str(f, POLICY_NAMES[d->policy]);
    fprintf(f, ", \"level_index\": %d, \"split\": %d, \"predicted_ms\": ", d->level_index, d->split);
    put_num(f, d->predicted_ms);
    fprintf(f, ", \"meets_sla\": %s, \"bytes\": %llu, \"accuracy\": ", d->meets_sla ? "true" : "false",
            (unsigned long long)d->bytes);
    if (isnan(d->accuracy)) fputs("null", f);
    else put_num(f, d->accuracy);
    const double bd[6] = {d->edge_ms, d->encode_ms, d->comm_ms, d->rtt_ms, d->decode_ms, d->cloud_ms};
    static const char *const keys[6] = {"edge_ms", "encode_ms", "comm_ms", "rtt_ms", "decode_ms", "cloud_ms"};
    fputs(", \"breakdown\": {", f);
    for (int i = 0; i < 6; i++) {
        fprintf(f, "%s\"%s\": ", i ? ", " : "", keys[i]);
        put_num(f, bd[i]);
    }
    fputc('}', f);
    if (names) {
        fputs(", \"model\": ", f);
        if (d->model) put_str(f, d->model);
        else fputs("null", f);
        fputs(", \"engines\": [", f);
        for (int i = 0; d->engines && i < d->num_engines; i++) {
            if (i) fputs(", ", f);
            put_str(f, d->engines[i]);
        }
        fputc(']', f);
    }
    fputs("}\n", f);
}

static int parse_num(const char *s, double *out) {
    char *end;
    if (!*s) return 0;
    *out = strtod(s, &end);
    return *end == '\0';
}

static int fail(const char *fmt, const char *a, const char *b) {
    fflush(stdout);
    fprintf(stderr, "janus-decide: error: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

/* Read one line of any length into *buf; 0 at end of input. */
static int read_line(char **buf, size_t *cap, FILE *f) {
    size_t len = 0;
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (len + 1 >= *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            char *nb = realloc(*buf, nc);
            if (!nb) return -1;
            *buf = nb;
            *cap = nc;
        }
        if (c == '\n') break;
        (*buf)[len++] = (char)c;
    }
    if (c == EOF && len == 0) return 0;
    (*buf)[len] = '\0';
    if (len && (*buf)[len - 1] == '\r') (*buf)[len - 1] = '\0';
    return 1;
}

int main(int argc, char **argv) {
    const char *path = NULL, *codec = NULL;
    double margin = 0.0;
    int names = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("janus-decide (libjanus %s, table format %d)\n", janus_version(), JANUS_TABLE_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--margin") && i + 1 < argc) {
            if (!parse_num(argv[++i], &margin) || !(margin >= 0 && margin < 1))
                return fail("--margin must be a number in [0, 1), got %s%s", argv[i], "");
        } else if (!strcmp(argv[i], "--codec") && i + 1 < argc) {
            codec = argv[++i];
        } else if (!strcmp(argv[i], "--names")) {
            names = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fputs(USAGE, stderr);
            return fail("unknown option %s%s", argv[i], "");
        } else if (!path) {
            path = argv[i];
        } else {
            fputs(USAGE, stderr);
            return fail("one TABLE only (got %s and %s)", path, argv[i]);
        }
    }
    if (!path) {
        fputs(USAGE, stderr);
        return fail("give the decision table file (`janus-deploy export-table`)%s%s", "", "");
    }
    janus_error err;
    janus_table *table = NULL;
    janus_scheduler *sched = NULL;
    if (janus_table_load(path, &table, &err)) return fail("%s%s", err.message, "");
    janus_config cfg;
    janus_table_config(table, &cfg);
    if (janus_scheduler_new(table, codec, cfg.frame_bytes, &sched, &err)) {
        janus_table_free(table);
        return fail("%s%s", err.message, "");
    }
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = 0, got;
    while ((got = read_line(&line, &cap, stdin)) > 0) {
        lineno++;
        char *fields[5];
        int nf = 0;
        for (char *tok = strtok(line, " \t"); tok; tok = strtok(NULL, " \t")) {
            if (nf < 5) fields[nf] = tok;
            nf++;
        }
        if (nf == 0) continue; /* blank line */
        char where[48];
        snprintf(where, sizeof where, "line %ld", lineno);
        double bw, rtt, sla;
        if (nf != 4) {
            rc = fail("%s: expected 'bandwidth_mbps rtt_ms sla_ms mode', got %s", where, nf < 4 ? "too few fields" : "too many fields");
            break;
        }
        if (!parse_num(fields[0], &bw) || !parse_num(fields[1], &rtt) || !parse_num(fields[2], &sla)) {
            rc = fail("%s: bandwidth_mbps, rtt_ms and sla_ms must be numbers%s", where, "");
            break;
        }
        int mode;
        if (!strcmp(fields[3], "paper")) mode = JANUS_MODE_PAPER;
        else if (!strcmp(fields[3], "janus-deploy")) mode = JANUS_MODE_DEPLOY;
        else {
            rc = fail("%s: unknown mode '%s'; choose paper or janus-deploy", where, fields[3]);
            break;
        }
        janus_decision d;
        if (!(isfinite(rtt) && rtt >= 0)) { /* `schedule` checks the RTT in both modes */
            rc = fail("%s: rtt_ms must be a finite number >= 0, got %s", where, fields[1]);
            break;
        }
        if (janus_decide(sched, mode, bw, rtt, margin, sla, &d, &err)) {
            rc = fail("%s: %s", where, err.message);
            break;
        }
        /* the decision's codec (Decision.codec): none at device only, none in paper mode */
        print_decision(stdout, fields[3], sla, bw, rtt, mode == JANUS_MODE_DEPLOY ? d.codec : NULL, &d, names);
        fflush(stdout);
    }
    if (got < 0) rc = fail("out of memory reading line %s%s", "", "");
    free(line);
    janus_scheduler_free(sched);
    janus_table_free(table);
    return rc;
}
