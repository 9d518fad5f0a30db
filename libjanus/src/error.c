/* Errors, version, CRC-32. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

int jn_fail(janus_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

void jn_ok(janus_error *err) {
    if (err) {
        err->code = JANUS_OK;
        err->message[0] = '\0';
    }
}

const char *janus_status_name(int code) {
    switch (code) {
    case JANUS_OK: return "JANUS_OK";
    case JANUS_E_IO: return "JANUS_E_IO";
    case JANUS_E_FORMAT: return "JANUS_E_FORMAT";
    case JANUS_E_VERSION: return "JANUS_E_VERSION";
    case JANUS_E_CHECKSUM: return "JANUS_E_CHECKSUM";
    case JANUS_E_CORRUPT: return "JANUS_E_CORRUPT";
    case JANUS_E_NOMEM: return "JANUS_E_NOMEM";
    case JANUS_E_INVALID: return "JANUS_E_INVALID";
    case JANUS_E_NOSPACE: return "JANUS_E_NOSPACE";
    case JANUS_E_WIRE: return "JANUS_E_WIRE";
    case JANUS_E_PYTHON: return "JANUS_E_PYTHON";
    default: return "JANUS_E_UNKNOWN";
    }
}

#define JN_STR2(x) #x
#define JN_STR(x) JN_STR2(x)

const char *janus_version(void) {
    return JN_STR(JANUS_VERSION_MAJOR) "." JN_STR(JANUS_VERSION_MINOR) "." JN_STR(JANUS_VERSION_PATCH);
}

/* CRC-32 (ISO-HDLC, reflected 0xEDB88320): the same value as Python's zlib.crc32. A nibble
 * table: constant data, nothing to initialise (no race between threads). */
uint32_t jn_crc32(uint32_t crc, const unsigned char *p, size_t n) {
    static const uint32_t nib[16] = {
        0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
        0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc = nib[(crc ^ p[i]) & 0x0Fu] ^ (crc >> 4);
        crc = nib[(crc ^ (uint32_t)(p[i] >> 4)) & 0x0Fu] ^ (crc >> 4);
    }
    return ~crc;
}
