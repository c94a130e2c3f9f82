/* Small helpers of the sink: growable buffers, a CBOR writer, UUIDs and RFC 3339 times.
 * None of this runs on the hot path. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "sirius_internal.h"

const char sr_empty[] = "";

char *sr_strdup(const char *s) {
    size_t n = strlen(s ? s : "");
    char *p = malloc(n + 1);
    if (p) memcpy(p, s ? s : "", n + 1);
    return p;
}

/* ---- buffers: an allocation failure marks the buffer failed instead of crashing ---------- */

void sr_buf_reserve(sr_buf *b, size_t extra) {
    if (b->failed || b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        b->failed = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

void sr_buf_put(sr_buf *b, const void *data, size_t n) {
    sr_buf_reserve(b, n);
    if (b->failed) return;
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

void sr_buf_free(sr_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- CBOR (RFC 8949), just what the ingestion bodies need ------------------------------- */

void sr_cbor_head(sr_buf *b, int major, uint64_t v) {
    uint8_t h[9];
    size_t n;
    uint8_t m = (uint8_t)(major << 5);
    if (v < 24) {
        h[0] = m | (uint8_t)v;
        n = 1;
    } else if (v <= 0xff) {
        h[0] = m | 24;
        h[1] = (uint8_t)v;
        n = 2;
    } else if (v <= 0xffff) {
        h[0] = m | 25;
        h[1] = (uint8_t)(v >> 8);
        h[2] = (uint8_t)v;
        n = 3;
    } else if (v <= 0xffffffffull) {
        h[0] = m | 26;
        for (int i = 0; i < 4; i++) h[1 + i] = (uint8_t)(v >> (24 - 8 * i));
        n = 5;
    } else {
        h[0] = m | 27;
        for (int i = 0; i < 8; i++) h[1 + i] = (uint8_t)(v >> (56 - 8 * i));
        n = 9;
    }
    sr_buf_put(b, h, n);
}

void sr_cbor_text(sr_buf *b, const char *s) {
    size_t n = strlen(s ? s : "");
    sr_cbor_head(b, 3, n);
    sr_buf_put(b, s ? s : "", n);
}

void sr_cbor_bytes(sr_buf *b, const void *p, size_t n) {
    sr_cbor_head(b, 2, n);
    sr_buf_put(b, p, n);
}

void sr_cbor_int(sr_buf *b, int64_t v) {
    if (v >= 0) sr_cbor_head(b, 0, (uint64_t)v);
    else sr_cbor_head(b, 1, (uint64_t)(-(v + 1)));
}

void sr_cbor_null(sr_buf *b) {
    uint8_t v = 0xf6;
    sr_buf_put(b, &v, 1);
}

void sr_cbor_uuid(sr_buf *b, const uint8_t id[16]) {
    char text[37];
    sr_uuid_text(id, text);
    sr_cbor_text(b, text);
}

void sr_cbor_time(sr_buf *b, int64_t ns) {
    char text[40];
    sr_rfc3339(ns, text);
    sr_cbor_text(b, text);
}

/* ---- UUIDs ------------------------------------------------------------------------------- */

/* Version-4 UUID from the kernel's CSPRNG: no generator state, so a forked child can never
 * repeat its parent's ids. */
void sr_uuid4(uint8_t out[16]) {
    size_t got = 0;
    while (got < 16) {
        ssize_t n = getrandom(out + got, 16 - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (got < 16) { /* no getrandom: mix clocks and addresses (unique enough, not secret) */
        uint64_t a = (uint64_t)sr_real_ns() ^ ((uint64_t)getpid() << 32), c = (uint64_t)sr_mono_ns() ^ (uintptr_t)out;
        for (int i = 0; i < 8; i++) {
            a = a * 6364136223846793005ull + 1442695040888963407ull;
            c = c * 6364136223846793005ull + 1442695040888963407ull;
            out[i] = (uint8_t)(a >> 56);
            out[8 + i] = (uint8_t)(c >> 56);
        }
    }
    out[6] = (uint8_t)((out[6] & 0x0f) | 0x40);
    out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
}

void sr_uuid_text(const uint8_t id[16], char out[37]) {
    static const char hex[] = "0123456789abcdef";
    int j = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[j++] = '-';
        out[j++] = hex[id[i] >> 4];
        out[j++] = hex[id[i] & 15];
    }
    out[j] = 0;
}

static int sr_hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int sr_uuid_parse(const char *text, uint8_t out[16]) {
    int n = 0;
    for (const char *p = text; *p && n < 32; p++) {
        if (*p == '-') continue;
        int v = sr_hexval(*p);
        if (v < 0) return -1;
        if (n % 2 == 0) out[n / 2] = (uint8_t)(v << 4);
        else out[n / 2] |= (uint8_t)v;
        n++;
    }
    return n == 32 ? 0 : -1;
}

/* ---- RFC 3339 with nanoseconds ----------------------------------------------------------- */

void sr_rfc3339(int64_t ns, char out[40]) {
    char tmp[96]; /* wider than any struct tm can print, keeps -Wformat-truncation quiet */
    int64_t sec = ns / 1000000000;
    int64_t frac = ns % 1000000000;
    if (frac < 0) {
        frac += 1000000000;
        sec -= 1;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long long)frac);
    memcpy(out, tmp, 39);
    out[39] = 0;
}
