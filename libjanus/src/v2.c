/* KServe V2 binary-tensor bodies: janus_deploy.wire.v2 (encode_request, parse_response) and the
 * payload codecs of janus_deploy.wire.codecs, byte for byte. Includes a small strict JSON parser
 * (the response header) and IEEE binary16 conversion with numpy's rounding. */
#include "internal.h"

#include <float.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "libjanus's wire format code assumes a little-endian host (x86-64, ARM)"
#endif

static const char *const DTYPE_NAMES[] = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8",
                                          "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"};
static const size_t DTYPE_SIZES[] = {1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8};
#define NDTYPES 12

const char *janus_dtype_name(int d) { return (d >= 0 && d < NDTYPES) ? DTYPE_NAMES[d] : NULL; }
size_t janus_dtype_size(int d) { return (d >= 0 && d < NDTYPES) ? DTYPE_SIZES[d] : 0; }

/* ------------------------------------------------------------------------------ binary16 */

uint16_t janus_fp16_from_float(float value) {
    uint32_t f;
    memcpy(&f, &value, sizeof f);
    uint16_t sign = (uint16_t)((f >> 16) & 0x8000u);
    uint32_t exp = f & 0x7f800000u, sig = f & 0x007fffffu;
    if (exp >= 0x47800000u) { /* overflow, inf or NaN */
        if (exp == 0x7f800000u && sig) {
            uint16_t r = (uint16_t)(0x7c00u + (sig >> 13));
            return (uint16_t)(sign | (r == 0x7c00u ? 0x7c01u : r)); /* stays a NaN */
        }
        return (uint16_t)(sign | 0x7c00u);
    }
    if (exp <= 0x38000000u) { /* a subnormal half or zero */
        if (exp < 0x33000000u) return sign;
        uint32_t e = exp >> 23, m = 0x00800000u + sig;
        m >>= (113 - e);
        /* round half to even; bits shifted out above are part of the "remainder" test */
        if (((m & 0x3fffu) != 0x1000u) || (sig & 0x7ffu)) m += 0x1000u;
        return (uint16_t)(sign | (m >> 13));
    }
    uint16_t h = (uint16_t)((exp - 0x38000000u) >> 13);
    if ((sig & 0x3fffu) != 0x1000u) sig += 0x1000u; /* round half to even */
    return (uint16_t)(sign | (uint16_t)(h + (sig >> 13)));
}

float janus_fp16_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, sig = h & 0x3ffu, f;
    if (exp == 0x1f) {
        f = sign | 0x7f800000u | (sig << 13);
    } else if (exp == 0) {
        if (!sig) {
            f = sign;
        } else { /* normalise a subnormal */
            int e = -1;
            do {
                e++;
                sig <<= 1;
            } while (!(sig & 0x400u));
            f = sign | ((uint32_t)(127 - 15 - e) << 23) | ((sig & 0x3ffu) << 13);
        }
    } else {
        f = sign | ((exp + 112u) << 23) | (sig << 13);
    }
    float out;
    memcpy(&out, &f, sizeof out);
    return out;
}

/* double -> binary16, rounded once (numpy's npy_double_to_half). */
static uint16_t fp16_from_double(double value) {
    uint64_t d;
    memcpy(&d, &value, sizeof d);
    uint16_t sign = (uint16_t)((d >> 48) & 0x8000u);
    uint64_t exp = d & 0x7ff0000000000000ull, sig = d & 0x000fffffffffffffull;
    if (exp >= 0x40f0000000000000ull) {
        if (exp == 0x7ff0000000000000ull && sig) {
            uint16_t r = (uint16_t)(0x7c00u + (sig >> 42));
            return (uint16_t)(sign | (r == 0x7c00u ? 0x7c01u : r));
        }
        return (uint16_t)(sign | 0x7c00u);
    }
    if (exp <= 0x3f00000000000000ull) {
        if (exp < 0x3e60000000000000ull) return sign;
        /* doubles have room to shift the subnormal significand left: no bit is lost */
        uint64_t e = exp >> 52, m = 0x0010000000000000ull + sig;
        m <<= (e - 998);
        if ((m & 0x003fffffffffffffull) != 0x0010000000000000ull) m += 0x0010000000000000ull;
        return (uint16_t)(sign | (uint16_t)(m >> 53));
    }
    uint16_t h = (uint16_t)((exp - 0x3f00000000000000ull) >> 42);
    if ((sig & 0x7ffffffffffull) != 0x20000000000ull) sig += 0x20000000000ull;
    return (uint16_t)(sign | (uint16_t)(h + (sig >> 42)));
}

/* ------------------------------------------------------------------------------ writing */

typedef struct sink {
    unsigned char *buf;
    size_t cap, len;
} sink;

static void put(sink *s, const void *p, size_t n) {
    if (s->buf && s->len <= s->cap && n <= s->cap - s->len) memcpy(s->buf + s->len, p, n);
    s->len += n;
}

static void puts_(sink *s, const char *str) { put(s, str, strlen(str)); }

static void put_i64(sink *s, int64_t v) {
    char b[32];
    int n = snprintf(b, sizeof b, "%" PRId64, v);
    put(s, b, (size_t)n);
}

/* A JSON string as Python's json.dumps writes it (ensure_ascii): \" \\ \n \r \t \b \f, other
 * characters outside ' '..'~' as \uXXXX (surrogate pairs above U+FFFF). */
static int put_json_string(sink *s, const char *str, janus_error *err) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)str;
    put(s, "\"", 1);
    while (*p) {
        unsigned c = *p;
        uint32_t cp;
        int len;
        if (c < 0x80) {
            cp = c;
            len = 1;
        } else if ((c & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
            cp = ((c & 0x1Fu) << 6) | (p[1] & 0x3Fu);
            len = 2;
            if (cp < 0x80) goto bad;
        } else if ((c & 0xF0) == 0xE0 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80) {
            cp = ((c & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
            len = 3;
            if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) goto bad;
        } else if ((c & 0xF8) == 0xF0 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80) {
            cp = ((c & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
            len = 4;
            if (cp < 0x10000 || cp > 0x10FFFF) goto bad;
        } else {
            goto bad;
        }
        p += len;
        const char *esc = NULL;
        switch (cp) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default: break;
        }
        if (esc) {
            puts_(s, esc);
        } else if (cp >= 0x20 && cp <= 0x7e) {
            char ch = (char)cp;
            put(s, &ch, 1);
        } else {
            uint32_t units[2];
            int nu = 1;
            if (cp > 0xFFFF) {
                cp -= 0x10000;
                units[0] = 0xD800 + (cp >> 10);
                units[1] = 0xDC00 + (cp & 0x3FF);
                nu = 2;
            } else {
                units[0] = cp;
            }
            for (int u = 0; u < nu; u++) {
                char b[6] = {'\\', 'u', hex[(units[u] >> 12) & 15], hex[(units[u] >> 8) & 15], hex[(units[u] >> 4) & 15],
                             hex[units[u] & 15]};
                put(s, b, 6);
            }
        }
    }
    put(s, "\"", 1);
    return JANUS_OK;
bad:
    return jn_fail(err, JANUS_E_INVALID, "a name or request id is not valid UTF-8");
}

static int tensor_bytes(const janus_tensor *t, size_t *out, janus_error *err) {
    if (!t->name || !t->name[0]) return jn_fail(err, JANUS_E_INVALID, "a tensor needs a name");
    size_t item = janus_dtype_size(t->dtype);
    if (!item) return jn_fail(err, JANUS_E_INVALID, "tensor '%s' has an unknown dtype %d", t->name, t->dtype);
    if (t->ndim < 0 || t->ndim > JANUS_MAX_DIMS || (t->ndim > 0 && !t->shape))
        return jn_fail(err, JANUS_E_INVALID, "tensor '%s' has an invalid shape", t->name);
    size_t n = item;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0) return jn_fail(err, JANUS_E_INVALID, "tensor '%s' has a negative dimension", t->name);
        if (t->shape[d] && n > SIZE_MAX / (uint64_t)t->shape[d])
            return jn_fail(err, JANUS_E_INVALID, "tensor '%s' is too large", t->name);
        n *= (size_t)t->shape[d];
    }
    *out = n;
    return JANUS_OK;
}

/* The header and, unless ``data`` is 0, the tensors' bytes. */
static int encode(const janus_tensor *in, size_t nin, const char *rid, const char *const *outs, size_t nout,
                  int binary_output, int data, sink *s, size_t *header_len, janus_error *err) {
    int rc;
    if (!in || nin == 0) return jn_fail(err, JANUS_E_INVALID, "a request needs at least one input tensor");
    puts_(s, "{");
    if (rid) {
        puts_(s, "\"id\":");
        if ((rc = put_json_string(s, rid, err))) return rc;
        puts_(s, ",");
    }
    puts_(s, "\"inputs\":[");
    for (size_t i = 0; i < nin; i++) {
        size_t nb = 0;
        if ((rc = tensor_bytes(&in[i], &nb, err))) return rc;
        if (in[i].nbytes != nb)
            return jn_fail(err, JANUS_E_INVALID, "tensor '%s' has %zu bytes but its shape and dtype need %zu",
                           in[i].name, in[i].nbytes, nb);
        if (nb && data && !in[i].data) return jn_fail(err, JANUS_E_INVALID, "tensor '%s' has no data", in[i].name);
        puts_(s, i ? ",{\"name\":" : "{\"name\":");
        if ((rc = put_json_string(s, in[i].name, err))) return rc;
        puts_(s, ",\"datatype\":\"");
        puts_(s, DTYPE_NAMES[in[i].dtype]);
        puts_(s, "\",\"shape\":[");
        for (int d = 0; d < in[i].ndim; d++) {
            if (d) puts_(s, ",");
            put_i64(s, in[i].shape[d]);
        }
        puts_(s, "],\"parameters\":{\"binary_data_size\":");
        put_i64(s, (int64_t)nb);
        puts_(s, "}}");
    }
    puts_(s, "]");
    if (outs && nout) {
        puts_(s, ",\"outputs\":[");
        for (size_t i = 0; i < nout; i++) {
            if (!outs[i]) return jn_fail(err, JANUS_E_INVALID, "an output name is NULL");
            puts_(s, i ? ",{\"name\":" : "{\"name\":");
            if ((rc = put_json_string(s, outs[i], err))) return rc;
            puts_(s, binary_output ? ",\"parameters\":{\"binary_data\":true}}" : ",\"parameters\":{\"binary_data\":false}}");
        }
        puts_(s, "]");
    }
    puts_(s, "}");
    *header_len = s->len;
    if (data)
        for (size_t i = 0; i < nin; i++) put(s, in[i].data, in[i].nbytes);
    return JANUS_OK;
}

static int finish(sink *s, size_t capacity, size_t *body_len, janus_error *err) {
    if (body_len) *body_len = s->len;
    if (!s->buf || s->len > capacity)
        return jn_fail(err, JANUS_E_NOSPACE, "the body needs %zu bytes, the buffer has %zu", s->len,
                       s->buf ? capacity : (size_t)0);
    jn_ok(err);
    return JANUS_OK;
}

int janus_v2_encode_request(const janus_tensor *inputs, size_t num_inputs, const char *request_id,
                            const char *const *outputs, size_t num_outputs, int binary_output, void *buf,
                            size_t capacity, size_t *body_len, size_t *header_len, janus_error *err) {
    sink s = {buf, buf ? capacity : 0, 0};
    size_t hl = 0;
    int rc = encode(inputs, num_inputs, request_id, outputs, num_outputs, binary_output, 1, &s, &hl, err);
    if (rc) return rc;
    if (header_len) *header_len = hl;
    return finish(&s, capacity, body_len, err);
}

static const char *const LOGITS[] = {"logits"};

int janus_v2_encode_frame(const uint8_t *rgb, int h, int w, const char *rid, void *buf, size_t capacity,
                          size_t *body_len, size_t *header_len, janus_error *err) {
    if (!rgb || h < 1 || w < 1) return jn_fail(err, JANUS_E_INVALID, "a frame needs pixels and a size >= 1x1");
    int64_t shape[4] = {1, h, w, 3};
    janus_tensor t = {"frame", JANUS_DT_UINT8, 4, shape, rgb, (size_t)h * (size_t)w * 3u};
    return janus_v2_encode_request(&t, 1, rid, LOGITS, 1, 1, buf, capacity, body_len, header_len, err);
}

int janus_codec_compresses(const char *codec) {
    if (!codec) return -1;
    if (!strcmp(codec, "fp16-zstd")) return 1;
    if (!strcmp(codec, "fp32") || !strcmp(codec, "fp16") || !strcmp(codec, "int8")) return 0;
    return -1;
}

int janus_v2_encode_tokens(const char *codec, const float *tokens, const float *size, int x, int dim,
                           const char *rid, void *buf, size_t capacity, size_t *body_len, size_t *header_len,
                           janus_error *err) {
    if (janus_codec_compresses(codec) < 0)
        return jn_fail(err, JANUS_E_INVALID, "unknown codec '%s'; choose one of fp32, fp16, fp16-zstd, int8",
                       codec ? codec : "(null)");
    if (!tokens || !size || x < 1 || dim < 1)
        return jn_fail(err, JANUS_E_INVALID, "boundary tensors need data, x >= 1 and dim >= 1");
    size_t nt = (size_t)x * (size_t)dim, nx = (size_t)x;
    int64_t tshape[3] = {1, x, dim}, sshape[3] = {1, x, 1};
    int fp32 = !strcmp(codec, "fp32"), int8 = !strcmp(codec, "int8");
    janus_tensor ts[3];
    size_t n = 0;
    ts[n++] = (janus_tensor){"tokens", fp32 ? JANUS_DT_FP32 : int8 ? JANUS_DT_INT8 : JANUS_DT_FP16, 3, tshape, NULL,
                             nt * (fp32 ? 4u : int8 ? 1u : 2u)};
    if (int8) ts[n++] = (janus_tensor){"token_scale", JANUS_DT_FP32, 3, sshape, NULL, nx * 4u};
    ts[n++] = (janus_tensor){"size", fp32 ? JANUS_DT_FP32 : JANUS_DT_FP16, 3, sshape, NULL, nx * (fp32 ? 4u : 2u)};
    sink s = {buf, buf ? capacity : 0, 0};
    size_t hl = 0;
    int rc = encode(ts, n, rid, LOGITS, 1, 1, 0, &s, &hl, err);
    if (rc) return rc;
    size_t total = hl;
    for (size_t i = 0; i < n; i++) total += ts[i].nbytes;
    if (header_len) *header_len = hl;
    if (body_len) *body_len = total;
    if (!buf || total > capacity)
        return jn_fail(err, JANUS_E_NOSPACE, "the body needs %zu bytes, the buffer has %zu", total,
                       buf ? capacity : (size_t)0);
    unsigned char *p = (unsigned char *)buf + hl;
    if (fp32) {
        memcpy(p, tokens, nt * 4u);
        memcpy(p + nt * 4u, size, nx * 4u);
    } else if (int8) {
        /* one symmetric fp32 scale per token: max|t| / 127 (1 when 0), q = clip(rint(t / scale)) */
        unsigned char *q = p, *sc = p + nt;
        for (size_t r = 0; r < nx; r++) {
            const float *row = tokens + r * (size_t)dim;
            float m = 0.0f;
            int nan = 0;
            for (int k = 0; k < dim; k++) {
                float a = fabsf(row[k]);
                nan |= isnan(a);
                if (a > m) m = a;
            }
            float scale = nan ? NAN : m / 127.0f;
            if (scale == 0.0f) scale = 1.0f;
            memcpy(sc + r * 4u, &scale, 4);
            for (int k = 0; k < dim; k++) {
                float v = rintf(row[k] / scale);
                if (v > 127.0f) v = 127.0f;
                if (v < -127.0f) v = -127.0f;
                int8_t iv = isnan(v) ? 0 : (int8_t)v;
                memcpy(q + r * (size_t)dim + (size_t)k, &iv, 1);
            }
        }
        unsigned char *sz = sc + nx * 4u;
        for (size_t r = 0; r < nx; r++) {
            uint16_t hbits = janus_fp16_from_float(size[r]);
            memcpy(sz + 2 * r, &hbits, 2);
        }
    } else {
        for (size_t k = 0; k < nt; k++) {
            uint16_t hbits = janus_fp16_from_float(tokens[k]);
            memcpy(p + 2 * k, &hbits, 2);
        }
        for (size_t r = 0; r < nx; r++) {
            uint16_t hbits = janus_fp16_from_float(size[r]);
            memcpy(p + nt * 2u + 2 * r, &hbits, 2);
        }
    }
    jn_ok(err);
    return JANUS_OK;
}

/* ------------------------------------------------------------------------------ JSON parsing */

enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jv {
    int type;
    int is_int;        /* 1: an integer literal whose magnitude fits 64 bits, 2: a larger one */
    int neg;           /* the integer literal is negative */
    uint64_t mag;      /* its magnitude */
    double d;
    char *s;           /* J_STR: NUL-terminated UTF-8 (owned by the arena) */
    size_t n;          /* J_ARR / J_OBJ: children */
    struct jv **items; /* children */
    char **keys;       /* J_OBJ */
} jv;

typedef struct jparser {
    const unsigned char *p, *end;
    int depth;
    void **allocs;
    size_t nalloc, capalloc;
    janus_error *err;
    int failed;
} jparser;

static void *jalloc(jparser *jp, size_t n) {
    if (jp->nalloc == jp->capalloc) {
        size_t cap = jp->capalloc ? jp->capalloc * 2 : 64;
        void **a = realloc(jp->allocs, cap * sizeof *a);
        if (!a) return NULL;
        jp->allocs = a;
        jp->capalloc = cap;
    }
    void *m = calloc(1, n ? n : 1);
    if (m) jp->allocs[jp->nalloc++] = m;
    return m;
}

static void jfree_all(jparser *jp) {
    for (size_t i = 0; i < jp->nalloc; i++) free(jp->allocs[i]);
    free(jp->allocs);
    jp->allocs = NULL;
    jp->nalloc = jp->capalloc = 0;
}

static jv *jerr(jparser *jp, const char *what) {
    if (!jp->failed) jn_fail(jp->err, JANUS_E_WIRE, "the JSON header does not parse: %s", what);
    jp->failed = 1;
    return NULL;
}

static void skip_ws(jparser *jp) {
    while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\n' || *jp->p == '\r')) jp->p++;
}

static jv *parse_value(jparser *jp);

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static char *parse_string_raw(jparser *jp) {
    /* at the opening quote; decoded text is never longer than its source */
    const unsigned char *start = ++jp->p;
    const unsigned char *q = start;
    while (q < jp->end && *q != '"') q += (*q == '\\' && q + 1 < jp->end) ? 2 : 1;
    if (q >= jp->end) return (char *)jerr(jp, "unterminated string");
    char *out = jalloc(jp, (size_t)(q - start) + 1);
    if (!out) return (char *)jerr(jp, "out of memory");
    size_t o = 0;
    while (jp->p < q) {
        unsigned c = *jp->p;
        if (c < 0x20) return (char *)jerr(jp, "invalid control character in a string");
        if (c != '\\') {
            out[o++] = (char)c;
            jp->p++;
            continue;
        }
        jp->p++;
        unsigned e = *jp->p++;
        switch (e) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '/': out[o++] = '/'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            uint32_t cp = 0;
            if (q - jp->p < 4) return (char *)jerr(jp, "invalid \\u escape");
            for (int k = 0; k < 4; k++) {
                int h = hexval(jp->p[k]);
                if (h < 0) return (char *)jerr(jp, "invalid \\u escape");
                cp = cp << 4 | (uint32_t)h;
            }
            jp->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && q - jp->p >= 6 && jp->p[0] == '\\' && jp->p[1] == 'u') {
                uint32_t lo = 0;
                int ok = 1;
                for (int k = 0; k < 4; k++) {
                    int h = hexval(jp->p[2 + k]);
                    if (h < 0) ok = 0;
                    lo = lo << 4 | (uint32_t)(h < 0 ? 0 : h);
                }
                if (ok && lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    jp->p += 6;
                }
            }
            /* UTF-8 (lone surrogates as 3 bytes, like Python's surrogatepass); 6 source bytes
             * give at most 3 (BMP) and 12 give 4: the output always fits */
            if (cp < 0x80) {
                out[o++] = (char)cp;
            } else if (cp < 0x800) {
                out[o++] = (char)(0xC0 | (cp >> 6));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                out[o++] = (char)(0xE0 | (cp >> 12));
                out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[o++] = (char)(0xF0 | (cp >> 18));
                out[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[o++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: return (char *)jerr(jp, "invalid escape in a string");
        }
    }
    jp->p = q + 1;
    out[o] = '\0';
    return out;
}

static int match(jparser *jp, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(jp->end - jp->p) >= n && memcmp(jp->p, lit, n) == 0) {
        jp->p += n;
        return 1;
    }
    return 0;
}

/* strtod on a copy with the locale's decimal point (the grammar was checked before). */
static double to_double(const unsigned char *a, size_t n) {
    char small[128], *buf = n < sizeof small ? small : malloc(n + 1);
    if (!buf) return NAN;
    memcpy(buf, a, n);
    buf[n] = '\0';
    const char *dp = localeconv()->decimal_point;
    if (dp && dp[0] && dp[0] != '.' && !dp[1]) {
        char *dot = strchr(buf, '.');
        if (dot) *dot = dp[0];
    }
    double d = strtod(buf, NULL);
    if (buf != small) free(buf);
    return d;
}

static jv *parse_number(jparser *jp) {
    const unsigned char *a = jp->p, *q = jp->p;
    int frac = 0;
    if (q < jp->end && *q == '-') q++;
    if (q < jp->end && *q == '0') {
        q++;
    } else if (q < jp->end && *q >= '1' && *q <= '9') {
        while (q < jp->end && *q >= '0' && *q <= '9') q++;
    } else {
        return jerr(jp, "invalid number");
    }
    if (q + 1 < jp->end && *q == '.' && q[1] >= '0' && q[1] <= '9') {
        frac = 1;
        q++;
        while (q < jp->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < jp->end && (*q == 'e' || *q == 'E')) {
        const unsigned char *r = q + 1;
        if (r < jp->end && (*r == '+' || *r == '-')) r++;
        if (r < jp->end && *r >= '0' && *r <= '9') {
            frac = 1;
            q = r;
            while (q < jp->end && *q >= '0' && *q <= '9') q++;
        }
    }
    jv *v = jalloc(jp, sizeof *v);
    if (!v) return jerr(jp, "out of memory");
    v->type = J_NUM;
    size_t n = (size_t)(q - a);
    v->d = to_double(a, n);
    if (!frac) { /* an integer literal: exact when it fits int64 */
        const unsigned char *r = a;
        int neg = *r == '-';
        r += neg;
        uint64_t acc = 0;
        int fits = 1;
        for (; r < q; r++) {
            unsigned dgt = (unsigned)(*r - '0');
            if (acc > (UINT64_MAX - dgt) / 10) {
                fits = 0;
                break;
            }
            acc = acc * 10 + dgt;
        }
        v->is_int = fits ? 1 : 2;
        v->neg = neg && acc != 0;
        v->mag = acc;
    }
    jp->p = q;
    return v;
}

static jv *parse_container(jparser *jp, int obj) {
    jv *v = jalloc(jp, sizeof *v);
    if (!v) return jerr(jp, "out of memory");
    v->type = obj ? J_OBJ : J_ARR;
    jp->p++;
    size_t cap = 0;
    skip_ws(jp);
    if (jp->p < jp->end && *jp->p == (obj ? '}' : ']')) {
        jp->p++;
        return v;
    }
    for (;;) {
        char *key = NULL;
        if (obj) {
            skip_ws(jp);
            if (jp->p >= jp->end || *jp->p != '"') return jerr(jp, "expected a property name in double quotes");
            if (!(key = parse_string_raw(jp))) return NULL;
            skip_ws(jp);
            if (jp->p >= jp->end || *jp->p != ':') return jerr(jp, "expected ':'");
            jp->p++;
        }
        jv *item = parse_value(jp);
        if (!item) return NULL;
        if (v->n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            jv **ni = jalloc(jp, nc * sizeof *ni);
            char **nk = obj ? jalloc(jp, nc * sizeof *nk) : NULL;
            if (!ni || (obj && !nk)) return jerr(jp, "out of memory");
            if (v->n) {
                memcpy(ni, v->items, v->n * sizeof *ni);
                if (obj) memcpy(nk, v->keys, v->n * sizeof *nk);
            }
            v->items = ni;
            v->keys = nk;
            cap = nc;
        }
        v->items[v->n] = item;
        if (obj) v->keys[v->n] = key;
        v->n++;
        skip_ws(jp);
        if (jp->p < jp->end && *jp->p == ',') {
            jp->p++;
            continue;
        }
        if (jp->p < jp->end && *jp->p == (obj ? '}' : ']')) {
            jp->p++;
            return v;
        }
        return jerr(jp, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static jv *parse_value(jparser *jp) {
    if (jp->failed) return NULL;
    if (++jp->depth > 64) return jerr(jp, "nested too deeply");
    skip_ws(jp);
    jv *v = NULL;
    if (jp->p >= jp->end) {
        v = jerr(jp, "expecting a value");
    } else if (*jp->p == '{' || *jp->p == '[') {
        v = parse_container(jp, *jp->p == '{');
    } else if (*jp->p == '"') {
        char *s = parse_string_raw(jp);
        if (s && (v = jalloc(jp, sizeof *v)) != NULL) {
            v->type = J_STR;
            v->s = s;
        } else if (s) {
            v = jerr(jp, "out of memory");
        }
    } else {
        static const char *const LITS[] = {"true", "false", "null", "NaN", "Infinity", "-Infinity"};
        int lit = -1;
        for (int k = 0; k < 6 && lit < 0; k++)
            if (match(jp, LITS[k])) lit = k;
        if (lit < 0) {
            v = parse_number(jp);
        } else if ((v = jalloc(jp, sizeof *v)) == NULL) {
            v = jerr(jp, "out of memory");
        } else if (lit < 3) {
            v->type = lit == 0 ? J_TRUE : lit == 1 ? J_FALSE : J_NULL;
        } else {
            v->type = J_NUM;
            v->d = lit == 3 ? NAN : lit == 4 ? INFINITY : -INFINITY;
        }
    }
    jp->depth--;
    return v;
}

static const jv *jget(const jv *o, const char *key) { /* the last value of ``key`` (Python's dict) */
    if (!o || o->type != J_OBJ) return NULL;
    for (size_t i = o->n; i-- > 0;)
        if (strcmp(o->keys[i], key) == 0) return o->items[i];
    return NULL;
}

static int truthy(const jv *v) {
    if (!v) return 0;
    switch (v->type) {
    case J_NULL:
    case J_FALSE: return 0;
    case J_TRUE: return 1;
    case J_NUM: return v->d != 0;
    case J_STR: return v->s[0] != '\0';
    default: return v->n != 0;
    }
}

/* ------------------------------------------------------------------------------ responses */

typedef struct jparam {
    char *name;
    double value;
} jparam;

struct janus_v2_response {
    size_t n;
    janus_v2_output *outputs;
    char **names;
    void **data;
    char *id, *model;
    size_t nparams;
    jparam *params;
};

void janus_v2_response_free(janus_v2_response *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->names[i]);
        free(r->data[i]);
    }
    for (size_t i = 0; i < r->nparams; i++) free(r->params[i].name);
    free(r->outputs);
    free(r->names);
    free(r->data);
    free(r->params);
    free(r->id);
    free(r->model);
    free(r);
}

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int utf8_valid(const unsigned char *p, size_t n) { /* surrogates allowed (surrogatepass) */
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + len > n) return 0;
        for (size_t k = 1; k < len; k++)
            if ((p[i + k] & 0xC0) != 0x80) return 0;
        if (len == 2 && c < 0xC2) return 0;
        if (len == 3 && c == 0xE0 && p[i + 1] < 0xA0) return 0;
        if (len == 4 && (c > 0xF4 || (c == 0xF0 && p[i + 1] < 0x90) || (c == 0xF4 && p[i + 1] > 0x8F))) return 0;
        i += len;
    }
    return 1;
}

/* Flatten JSON "data" (nested lists of one rectangular shape) into count values of dtype. */
typedef struct flat {
    unsigned char *out;
    size_t count, n, item;
    int dtype;
    size_t dims[JANUS_MAX_DIMS + 1];
    int ndims, leaf_depth;
} flat;

static int store_value(flat *f, const jv *v, const char *where, janus_error *err) {
    if (f->n >= f->count) {
        f->n++;
        return JANUS_OK; /* counted; the size check reports it */
    }
    unsigned char *dst = f->out + f->n * f->item;
    double d;
    int is_bool = v->type == J_TRUE || v->type == J_FALSE;
    if (!is_bool && v->type != J_NUM)
        return jn_fail(err, JANUS_E_WIRE, "%s: 'data' is not a list of %s values", where, DTYPE_NAMES[f->dtype]);
    d = is_bool ? (v->type == J_TRUE) : v->d;
    switch (f->dtype) {
    case JANUS_DT_BOOL: {
        uint8_t b = is_bool ? (uint8_t)(v->type == J_TRUE) : (uint8_t)(v->d != 0);
        memcpy(dst, &b, 1);
        break;
    }
    case JANUS_DT_FP16: {
        uint16_t h = fp16_from_double(d);
        memcpy(dst, &h, 2);
        break;
    }
    case JANUS_DT_FP32: {
        float x = (float)d;
        if (isfinite(d) && !isfinite(x) && fabs(d) > FLT_MAX) x = d > 0 ? INFINITY : -INFINITY;
        memcpy(dst, &x, 4);
        break;
    }
    case JANUS_DT_FP64: memcpy(dst, &d, 8); break;
    default: { /* integers: exact integer literals in range, floats truncated, bools 0/1 */
        int is_signed = f->dtype >= JANUS_DT_INT8, bits = (int)f->item * 8, neg = 0;
        uint64_t mag;
        if (is_bool) {
            mag = v->type == J_TRUE;
        } else if (v->is_int == 1) {
            neg = v->neg;
            mag = v->mag;
        } else if (v->is_int == 0 && isfinite(d) && fabs(trunc(d)) < 18446744073709551616.0) {
            double tr = trunc(d);
            neg = tr < 0;
            mag = (uint64_t)fabs(tr);
        } else {
            return jn_fail(err, JANUS_E_WIRE, "%s: 'data' value out of range for %s", where, DTYPE_NAMES[f->dtype]);
        }
        uint64_t top = bits == 64 ? UINT64_MAX : (((uint64_t)1 << bits) - 1u);
        uint64_t pos_max = is_signed ? top >> 1 : top, neg_max = is_signed ? (top >> 1) + 1u : 0u;
        if (neg ? mag > neg_max : mag > pos_max)
            return jn_fail(err, JANUS_E_WIRE, "%s: 'data' value out of range for %s", where, DTYPE_NAMES[f->dtype]);
        uint64_t u = neg ? (uint64_t)0 - mag : mag; /* two's complement bits, truncated below */
        unsigned char bytes[8];
        for (int k = 0; k < 8; k++) bytes[k] = (unsigned char)(u >> (8 * k));
        memcpy(dst, bytes, f->item); /* little-endian host */
    }
    }
    f->n++;
    return JANUS_OK;
}

static int flatten(flat *f, const jv *v, int depth, const char *where, janus_error *err) {
    if (v->type != J_ARR) {
        if (f->leaf_depth < 0) f->leaf_depth = depth;
        if (depth != f->leaf_depth)
            return jn_fail(err, JANUS_E_WIRE, "%s: 'data' is not a rectangular nested list", where);
        return store_value(f, v, where, err);
    }
    if (depth >= JANUS_MAX_DIMS) return jn_fail(err, JANUS_E_WIRE, "%s: 'data' is nested too deeply", where);
    if (depth >= f->ndims) {
        if (f->leaf_depth >= 0 && depth >= f->leaf_depth)
            return jn_fail(err, JANUS_E_WIRE, "%s: 'data' is not a rectangular nested list", where);
        f->dims[depth] = v->n;
        f->ndims = depth + 1;
    } else if (f->dims[depth] != v->n) {
        return jn_fail(err, JANUS_E_WIRE, "%s: 'data' is not a rectangular nested list", where);
    }
    if (v->n == 0 && f->leaf_depth < 0) f->leaf_depth = depth + 1;
    for (size_t i = 0; i < v->n; i++) {
        int rc = flatten(f, v->items[i], depth + 1, where, err);
        if (rc) return rc;
    }
    return JANUS_OK;
}

static int decode_outputs(const jv *entries, const unsigned char *rest, size_t rest_len, janus_v2_response *r,
                          janus_error *err) {
    if (!entries || entries->type != J_ARR || entries->n == 0)
        return jn_fail(err, JANUS_E_WIRE, "the JSON header needs a non-empty 'outputs' list");
    size_t n = entries->n, offset = 0;
    r->outputs = calloc(n, sizeof *r->outputs);
    r->names = calloc(n, sizeof *r->names);
    r->data = calloc(n, sizeof *r->data);
    if (!r->outputs || !r->names || !r->data) return jn_fail(err, JANUS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const jv *e = entries->items[i];
        char where[160];
        if (e->type != J_OBJ) return jn_fail(err, JANUS_E_WIRE, "outputs[%zu] must be an object", i);
        const jv *name = jget(e, "name");
        if (!name || name->type != J_STR || !name->s[0])
            return jn_fail(err, JANUS_E_WIRE, "outputs[%zu] needs a string 'name'", i);
        snprintf(where, sizeof where, "output '%.120s'", name->s);
        for (size_t k = 0; k < r->n; k++)
            if (strcmp(r->names[k], name->s) == 0) return jn_fail(err, JANUS_E_WIRE, "%s appears twice", where);
        const jv *dt = jget(e, "datatype");
        int dtype = -1;
        for (int k = 0; dt && dt->type == J_STR && k < NDTYPES; k++)
            if (strcmp(dt->s, DTYPE_NAMES[k]) == 0) dtype = k;
        if (dtype < 0)
            return jn_fail(err, JANUS_E_WIRE, "unsupported datatype %.60s (supported: BOOL, UINT8, UINT16, UINT32, "
                           "UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64)",
                           dt && dt->type == J_STR ? dt->s : "(not a string)");
        const jv *shape = jget(e, "shape");
        if (!shape || shape->type != J_ARR) return jn_fail(err, JANUS_E_WIRE, "%s: 'shape' must be a list of integers", where);
        if (shape->n > JANUS_MAX_DIMS) return jn_fail(err, JANUS_E_WIRE, "%s: more than %d dimensions", where, JANUS_MAX_DIMS);
        size_t item = DTYPE_SIZES[dtype], count = 1;
        int overflow = 0;
        janus_v2_output *o = &r->outputs[i];
        for (size_t d = 0; d < shape->n; d++) {
            const jv *x = shape->items[d];
            if (x->type != J_NUM || x->is_int == 0) return jn_fail(err, JANUS_E_WIRE, "%s: 'shape' must be a list of integers", where);
            if (x->neg) return jn_fail(err, JANUS_E_WIRE, "%s: shape has a negative dimension", where);
            if (x->is_int == 2 || x->mag > (uint64_t)INT64_MAX) {
                overflow = 1;
                o->shape[d] = INT64_MAX;
                continue;
            }
            o->shape[d] = (int64_t)x->mag;
            if (x->mag && count > SIZE_MAX / item / x->mag) overflow = 1;
            else count *= (size_t)x->mag;
        }
        o->ndim = (int)shape->n;
        const jv *params = jget(e, "parameters");
        if (truthy(params) && params->type != J_OBJ) return jn_fail(err, JANUS_E_WIRE, "%s: 'parameters' must be an object", where);
        const jv *size = truthy(params) ? jget(params, "binary_data_size") : NULL;
        if (size && size->type == J_NULL) size = NULL;
        const jv *data = jget(e, "data");
        void *buf = NULL;
        size_t nbytes = 0;
        if (size) {
            if (size->type != J_NUM || size->is_int == 0 || size->neg)
                return jn_fail(err, JANUS_E_WIRE, "%s: binary_data_size must be an integer >= 0", where);
            if (data) return jn_fail(err, JANUS_E_WIRE, "%s has both 'data' and binary_data_size", where);
            if (overflow || size->is_int == 2 || size->mag != (uint64_t)count * item)
                return jn_fail(err, JANUS_E_WIRE, "%s: binary_data_size is %s bytes but shape and datatype need %s",
                               where, size->is_int == 2 ? "a huge number of" : "another number of",
                               overflow ? "more than this machine can hold" : "another size");
            nbytes = (size_t)size->mag;
            if (nbytes > rest_len - offset)
                return jn_fail(err, JANUS_E_WIRE, "body is truncated: %s needs %zu bytes at offset %zu of the binary "
                               "section but only %zu remain", where, nbytes, offset, rest_len - offset);
            buf = malloc(nbytes ? nbytes : 1);
            if (!buf) return jn_fail(err, JANUS_E_NOMEM, "out of memory");
            if (nbytes) memcpy(buf, rest + offset, nbytes);
            offset += nbytes;
        } else {
            if (!data) return jn_fail(err, JANUS_E_WIRE, "%s has neither 'data' nor a binary_data_size parameter", where);
            if (overflow) return jn_fail(err, JANUS_E_WIRE, "%s: shape is too large", where);
            nbytes = count * item;
            buf = calloc(1, nbytes ? nbytes : 1);
            if (!buf) return jn_fail(err, JANUS_E_NOMEM, "out of memory");
            flat f;
            memset(&f, 0, sizeof f);
            f.out = buf;
            f.count = count;
            f.item = item;
            f.dtype = dtype;
            f.leaf_depth = -1;
            int rc = flatten(&f, data, 0, where, err);
            if (!rc && f.n != count)
                rc = jn_fail(err, JANUS_E_WIRE, "%s: 'data' holds %zu values but the shape needs %zu", where, f.n, count);
            if (rc) {
                free(buf);
                return rc;
            }
        }
        r->names[i] = dupstr(name->s);
        r->data[i] = buf;
        r->n = i + 1;
        if (!r->names[i]) return jn_fail(err, JANUS_E_NOMEM, "out of memory");
        o->name = r->names[i];
        o->dtype = dtype;
        o->data = buf;
        o->nbytes = nbytes;
    }
    if (offset != rest_len)
        return jn_fail(err, JANUS_E_WIRE, "the body has %zu trailing bytes that no output claims", rest_len - offset);
    return JANUS_OK;
}

int janus_v2_decode_response(const void *body, size_t len, int64_t header_len, janus_v2_response **out,
                             janus_error *err) {
    if (!out) return jn_fail(err, JANUS_E_INVALID, "janus_v2_decode_response: out is NULL");
    *out = NULL;
    if (!body && len) return jn_fail(err, JANUS_E_INVALID, "janus_v2_decode_response: body is NULL");
    if (header_len < -1) return jn_fail(err, JANUS_E_WIRE, "%s must be >= 0, got %lld", JANUS_HEADER_LENGTH, (long long)header_len);
    if (header_len >= 0 && (uint64_t)header_len > len)
        return jn_fail(err, JANUS_E_WIRE, "body is truncated: %s says the JSON header has %lld bytes but the body "
                       "has only %zu", JANUS_HEADER_LENGTH, (long long)header_len, len);
    const unsigned char *b = body;
    size_t hl = header_len < 0 ? len : (size_t)header_len;
    if (hl == 0) return jn_fail(err, JANUS_E_WIRE, "the response has an empty JSON header");
    if (!utf8_valid(b, hl))
        return jn_fail(err, JANUS_E_WIRE, "the JSON header is not UTF-8 text%s",
                       header_len < 0 ? " (binary tensors need the " JANUS_HEADER_LENGTH " header)" : "");
    jparser jp;
    memset(&jp, 0, sizeof jp);
    jp.p = b;
    jp.end = b + hl;
    jp.err = err;
    jv *root = parse_value(&jp);
    if (root) {
        skip_ws(&jp);
        if (jp.p != jp.end) root = jerr(&jp, "extra data after the header object");
    }
    if (!root) {
        if (header_len < 0 && err && strlen(err->message) + 60 < sizeof err->message)
            strcat(err->message, " (binary tensors need the " JANUS_HEADER_LENGTH " header)");
        jfree_all(&jp);
        return JANUS_E_WIRE;
    }
    int rc = JANUS_OK;
    janus_v2_response *r = calloc(1, sizeof *r);
    if (!r) {
        jfree_all(&jp);
        return jn_fail(err, JANUS_E_NOMEM, "out of memory");
    }
    if (root->type != J_OBJ) {
        rc = jn_fail(err, JANUS_E_WIRE, "the JSON header must be an object");
    } else {
        rc = decode_outputs(jget(root, "outputs"), b + hl, len - hl, r, err);
    }
    if (!rc) {
        const jv *id = jget(root, "id"), *model = jget(root, "model_name"), *params = jget(root, "parameters");
        if (id && id->type == J_STR && !(r->id = dupstr(id->s))) rc = jn_fail(err, JANUS_E_NOMEM, "out of memory");
        if (!rc && model && model->type == J_STR && !(r->model = dupstr(model->s)))
            rc = jn_fail(err, JANUS_E_NOMEM, "out of memory");
        if (!rc && params && params->type == J_OBJ && params->n) {
            r->params = calloc(params->n, sizeof *r->params);
            if (!r->params) rc = jn_fail(err, JANUS_E_NOMEM, "out of memory");
            for (size_t i = 0; !rc && i < params->n; i++) {
                const jv *v = params->items[i];
                if (v->type != J_NUM) continue;
                if (!(r->params[r->nparams].name = dupstr(params->keys[i]))) {
                    rc = jn_fail(err, JANUS_E_NOMEM, "out of memory");
                    break;
                }
                r->params[r->nparams++].value = v->d;
            }
        }
    }
    jfree_all(&jp);
    if (rc) {
        janus_v2_response_free(r);
        return rc;
    }
    *out = r;
    jn_ok(err);
    return JANUS_OK;
}

size_t janus_v2_response_num_outputs(const janus_v2_response *r) { return r ? r->n : 0; }

const janus_v2_output *janus_v2_response_output(const janus_v2_response *r, size_t i) {
    return (r && i < r->n) ? &r->outputs[i] : NULL;
}

const janus_v2_output *janus_v2_response_find(const janus_v2_response *r, const char *name) {
    if (!r || !name) return NULL;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->names[i], name) == 0) return &r->outputs[i];
    return NULL;
}

const char *janus_v2_response_id(const janus_v2_response *r) { return r ? r->id : NULL; }
const char *janus_v2_response_model(const janus_v2_response *r) { return r ? r->model : NULL; }

int janus_v2_response_parameter(const janus_v2_response *r, const char *name, double *value) {
    if (!r || !name) return 0;
    for (size_t i = r->nparams; i-- > 0;)
        if (strcmp(r->params[i].name, name) == 0) {
            if (value) *value = r->params[i].value;
            return 1;
        }
    return 0;
}
