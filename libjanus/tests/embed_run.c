/* Frames through the embedded runtime (janus_embed.h), for tests/runtime/test_libjanus_embed.py:
 *
 *   embed_run PLAN ENGINES EDGE CLOUD URL SLA FRAMES.raw COUNT HEIGHT WIDTH LOGITS.out LOG [OPTIONS_JSON]
 *
 * FRAMES.raw holds COUNT uint8 frames [HEIGHT, WIDTH, 3]; per frame one line on stdout
 * ("frame I id=.. top1=.. level=.. split=.. label=.. fallback=.. error=..") and its float32 logits
 * appended to LOGITS.out; then "summary {json}" and "cost open_ms=.. rss_mb=.. infer_ms=..". */
#define _POSIX_C_SOURCE 200809L
#include "janus_embed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double rss_mb(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident * 4096.0 / (1 << 20);
}

int main(int argc, char **argv) {
    if (argc < 13) {
        fprintf(stderr, "usage: %s PLAN ENGINES EDGE CLOUD URL SLA FRAMES COUNT H W LOGITS LOG [OPTIONS_JSON]\n", argv[0]);
        return 2;
    }
    int count = atoi(argv[8]), h = atoi(argv[9]), w = atoi(argv[10]);
    janus_rt_options o;
    memset(&o, 0, sizeof o);
    o.plan = argv[1];
    o.engines = argv[2];
    o.edge_profile = argv[3];
    o.cloud_profile = argv[4];
    o.server_url = argv[5];
    o.sla_ms = atof(argv[6]);
    o.codec = "fp32";
    o.log_path = argv[12];
    o.options_json = argc > 13 ? argv[13] : NULL;
    janus_error err;
    janus_rt *rt = NULL;
    double t0 = now_ms();
    if (janus_rt_open(&o, &rt, &err)) {
        fprintf(stderr, "open: %s: %s\n", janus_status_name(err.code), err.message);
        return 1;
    }
    double open_ms = now_ms() - t0, rss = rss_mb();
    FILE *frames = fopen(argv[7], "rb"), *logits = fopen(argv[11], "wb");
    if (!frames || !logits) {
        fprintf(stderr, "cannot open the frame or logits file\n");
        return 1;
    }
    size_t n = (size_t)h * (size_t)w * 3u;
    unsigned char *frame = malloc(n);
    double infer_ms = 0;
    int rc = 0;
    for (int i = 0; i < count; i++) {
        if (fread(frame, 1, n, frames) != n) {
            fprintf(stderr, "frame %d: short read\n", i);
            rc = 1;
            break;
        }
        janus_rt_result r;
        double t = now_ms();
        if (janus_rt_infer(rt, frame, h, w, &r, &err)) {
            fprintf(stderr, "infer %d: %s: %s\n", i, janus_status_name(err.code), err.message);
            rc = 1;
            break;
        }
        infer_ms += now_ms() - t;
        printf("frame %d id=%d top1=%d level=%d split=%d label=%s fallback=%s error=%s classes=%d\n", i, r.id, r.top1,
               r.level, r.split, r.label ? r.label : "-", r.fallback_kind ? r.fallback_kind : "-",
               r.error ? "yes" : "-", r.num_classes);
        if (r.logits) fwrite(r.logits, sizeof(float), (size_t)r.num_classes, logits);
    }
    const char *summary = janus_rt_summary(rt, &err);
    printf("summary %s\n", summary ? summary : "null");
    printf("cost open_ms=%.1f rss_mb=%.1f infer_ms=%.2f\n", open_ms, rss, count ? infer_ms / count : 0.0);
    janus_rt_close(rt);
    fclose(frames);
    fclose(logits);
    free(frame);
    return rc;
}
