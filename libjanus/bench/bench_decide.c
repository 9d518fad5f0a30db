/* ns per janus_decide over a file of cases: bench_decide TABLE CASES REPEATS
 * CASES: one "mode bandwidth_mbps rtt_ms sla_ms margin" per line (mode 0 = janus-deploy, 1 = paper).
 * Prints "cases N repeats R best_ns_per_decision X median_ns_per_decision Y checksum Z". */
#define _POSIX_C_SOURCE 200809L
#include "janus.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct { int mode; double bw, rtt, sla, margin; } bench_case;

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s TABLE CASES REPEATS\n", argv[0]);
        return 2;
    }
    janus_error err;
    janus_table *t = NULL;
    janus_scheduler *s = NULL;
    if (janus_table_load(argv[1], &t, &err) || janus_scheduler_new(t, NULL, -1, &s, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) return 1;
    size_t n = 0, cap = 1024;
    bench_case *cs = malloc(cap * sizeof *cs);
    bench_case c;
    while (fscanf(f, "%d %lf %lf %lf %lf", &c.mode, &c.bw, &c.rtt, &c.sla, &c.margin) == 5) {
        if (n == cap) cs = realloc(cs, (cap *= 2) * sizeof *cs);
        cs[n++] = c;
    }
    fclose(f);
    int reps = atoi(argv[3]);
    double *per = malloc((size_t)reps * sizeof *per), checksum = 0;
    janus_decision d;
    for (size_t i = 0; i < n; i++) /* warm up */
        janus_decide(s, cs[i].mode, cs[i].bw, cs[i].rtt, cs[i].margin, cs[i].sla, &d, &err);
    for (int r = 0; r < reps; r++) {
        double t0 = now_ns();
        for (size_t i = 0; i < n; i++) {
            if (janus_decide(s, cs[i].mode, cs[i].bw, cs[i].rtt, cs[i].margin, cs[i].sla, &d, &err)) return 1;
            checksum += d.predicted_ms + d.split;
        }
        per[r] = (now_ns() - t0) / (double)n;
    }
    qsort(per, (size_t)reps, sizeof *per, cmp);
    printf("cases %zu repeats %d best_ns_per_decision %.1f median_ns_per_decision %.1f checksum %.6g\n", n, reps,
           per[0], per[reps / 2], checksum);
    free(per);
    free(cs);
    janus_scheduler_free(s);
    janus_table_free(t);
    return 0;
}
