/*
 * sbuf.c: the output buffer every renderer writes into, its escapes (JSON strings, XML text) and the
 * units for people (bytes, counts, times, CUresult names); see util.h.
 *
 * Runs in the `cumemtrace` command only. Prints nothing: sb_write (util.c), which the verbs call once after
 * the analysis succeeded, is the only way out to a file or stdout.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int grow(struct sbuf *b, size_t need)
{
    if (b->oom)
        return -1;
    if (b->len + need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + need + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (grow(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void sb_puts(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

void sb_putc(struct sbuf *b, char c) { sb_put(b, &c, 1); }

void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        sb_put(b, small, (size_t)n);
        return;
    }
    if (grow(b, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if the bytes there are not one. Traces come from
 * symbol tables and /proc: bytes are not promised to be text, and JSON, HTML and SVG must be. */
static int utf8_len(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    int n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] < 0xe0 ? 2 : 0;
    if (!n || (p[0] >= 0xf0 && n != 4))
        return 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((n == 3 && p[0] == 0xe0 && p[1] < 0xa0) || (n == 3 && p[0] == 0xed && p[1] >= 0xa0) ||
        (n == 4 && p[0] == 0xf0 && p[1] < 0x90) || (n == 4 && p[0] == 0xf4 && p[1] >= 0x90))
        return 0; /* overlong, surrogate, or beyond U+10FFFF */
    return n;
}

/* Copies the character at *p (advancing it), or U+FFFD for a byte that does not start valid UTF-8. */
static void put_utf8(struct sbuf *b, const unsigned char **p)
{
    if (**p < 0x80) { /* the common case, ASCII */
        sb_putc(b, (char)*(*p)++);
        return;
    }
    int n = utf8_len(*p);
    if (!n) {
        sb_puts(b, "\xef\xbf\xbd");
        (*p)++;
        return;
    }
    for (int i = 0; i < n; i++)
        sb_putc(b, (char)(*p)[i]);
    *p += n;
}

void sb_json_str(struct sbuf *b, const char *s)
{
    if (!s) {
        sb_puts(b, "null");
        return;
    }
    sb_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        switch (*p) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        default:
            if (*p < 0x20)
                sb_printf(b, "\\u%04x", *p);
            else {
                put_utf8(b, &p);
                continue;
            }
        }
        p++;
    }
    sb_putc(b, '"');
}

void sb_xml(struct sbuf *b, const char *s)
{
    if (!s)
        return;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        switch (*p) {
        case '&': sb_puts(b, "&amp;"); break;
        case '<': sb_puts(b, "&lt;"); break;
        case '>': sb_puts(b, "&gt;"); break;
        case '"': sb_puts(b, "&quot;"); break;
        case '\'': sb_puts(b, "&#39;"); break;
        default:
            if (*p >= 0x20) {
                put_utf8(b, &p);
                continue;
            }
            if (*p == '\n' || *p == '\t')
                sb_putc(b, (char)*p);
        }
        p++;
    }
}

void sb_free(struct sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}


const char *cmt_bytes_str(int64_t bytes, char buf[32])
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int neg = bytes < 0;
    double v = neg ? -(double)bytes : (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, 32, "%s%lld B", neg ? "-" : "", (long long)(neg ? -bytes : bytes));
    else if (v < 10) {
        /* three significant digits below 10 (1.25 GiB), trailing zero dropped but one decimal kept */
        char num[16];
        snprintf(num, sizeof num, "%.2f", v);
        size_t l = strlen(num);
        if (num[l - 1] == '0' && num[l - 2] != '.')
            num[l - 1] = 0;
        snprintf(buf, 32, "%s%s %s", neg ? "-" : "", num, units[u]);
    } else
        snprintf(buf, 32, "%s%.1f %s", neg ? "-" : "", v, units[u]);
    return buf;
}

const char *cmt_count_str(int64_t n, char buf[32])
{
    char raw[32];
    int neg = n < 0;
    snprintf(raw, sizeof raw, "%llu", (unsigned long long)(neg ? -(n + 1) + 1ULL : (uint64_t)n));
    size_t len = strlen(raw), o = 0;
    if (neg)
        buf[o++] = '-';
    for (size_t i = 0; i < len; i++) {
        if (i && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = 0;
    return buf;
}

const char *cmt_time_str(int64_t ns, char buf[32])
{
    double a = ns < 0 ? -(double)ns : (double)ns;
    const char *sign = ns < 0 ? "-" : "";
    if (a >= 1e9)
        snprintf(buf, 32, "%s%.3f s", sign, a / 1e9);
    else if (a >= 1e6)
        snprintf(buf, 32, "%s%.1f ms", sign, a / 1e6);
    else if (a >= 1e3)
        snprintf(buf, 32, "%s%.1f us", sign, a / 1e3);
    else
        snprintf(buf, 32, "%s%.0f ns", sign, a);
    return buf;
}

const char *cmt_result_name(int64_t r)
{
    switch (r) {
    case 0: return "CUDA_SUCCESS";
    case 1: return "CUDA_ERROR_INVALID_VALUE";
    case 2: return "CUDA_ERROR_OUT_OF_MEMORY";
    case 3: return "CUDA_ERROR_NOT_INITIALIZED";
    case 4: return "CUDA_ERROR_DEINITIALIZED";
    case 100: return "CUDA_ERROR_NO_DEVICE";
    case 101: return "CUDA_ERROR_INVALID_DEVICE";
    case 201: return "CUDA_ERROR_INVALID_CONTEXT";
    case 400: return "CUDA_ERROR_INVALID_HANDLE";
    case 700: return "CUDA_ERROR_ILLEGAL_ADDRESS";
    case 801: return "CUDA_ERROR_NOT_SUPPORTED";
    case 999: return "CUDA_ERROR_UNKNOWN";
    default: return NULL;
    }
}


char *cmt_text_dup(const char *s)
{
    if (!s)
        return NULL;
    struct sbuf b = {0};
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        if (*p < 0x20) {
            sb_putc(&b, ' ');
            p++;
        } else {
            put_utf8(&b, &p);
        }
    }
    if (b.oom) {
        sb_free(&b);
        return NULL;
    }
    return b.p ? b.p : strdup("");
}

size_t cmt_text_elide(struct sbuf *b, size_t i, size_t n, const char *indent, const char *what)
{
    if (n <= 2 * CMT_TEXT_EACH_END || i != CMT_TEXT_EACH_END)
        return i;
    sb_printf(b, "%s... %zu more%s%s (all of them in --json)\n", indent, n - 2 * CMT_TEXT_EACH_END, what[0] ? " " : "",
              what);
    return n - CMT_TEXT_EACH_END;
}
