// SPDX-License-Identifier: MIT
// A small formatter into a caller-provided buffer: flushed to a descriptor when full, or, without
// one, filled up to its end with `overflow` set (the emitter then shortens the event). Escaping
// for JSON (strict UTF-8) and for text (no control bytes). Async-signal-safe: it runs in forked
// children before exec and in signal handlers. No malloc, no stdio, no locale.
#include "base.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

void fs_buf_init(struct fs_buf *b, char *mem, size_t cap, int fd) {
    b->p = mem;
    b->len = 0;
    b->cap = cap;
    b->fd = fd;
    b->overflow = 0;
}

size_t fs_strlcpy(char *dst, const char *src, size_t cap) {
    size_t n = src ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
    return n;
}

int fs_write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

void fs_buf_flush(struct fs_buf *b) {
    if (b->fd >= 0 && b->len > 0) {
        int saved = errno;
        fs_write_all(b->fd, b->p, b->len);
        errno = saved;
    }
    b->len = 0;
}

void fs_buf_mem(struct fs_buf *b, const char *s, size_t n) {
    if (fs_likely(b->cap - b->len >= n)) { /* the common case: it fits */
        memcpy(b->p + b->len, s, n);
        b->len += n;
        return;
    }
    while (n > 0) {
        if (b->len == b->cap) {
            if (b->fd < 0) { /* no descriptor: truncate, and say so */
                b->overflow = 1;
                return;
            }
            fs_buf_flush(b);
        }
        size_t room = b->cap - b->len, k = n < room ? n : room;
        memcpy(b->p + b->len, s, k);
        b->len += k;
        s += k;
        n -= k;
    }
}

void fs_buf_str(struct fs_buf *b, const char *s) { fs_buf_mem(b, s, strlen(s)); }
void fs_buf_chr(struct fs_buf *b, char c) {
    if (fs_likely(b->len < b->cap)) b->p[b->len++] = c;
    else fs_buf_mem(b, &c, 1);
}

static void put_uint(struct fs_buf *b, unsigned long long v, unsigned base, int min_digits) {
    char tmp[24];
    int n = sizeof tmp;
    do {
        tmp[--n] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while ((int)sizeof tmp - n < min_digits) tmp[--n] = '0';
    fs_buf_mem(b, tmp + n, sizeof tmp - (size_t)n);
}

void fs_buf_int(struct fs_buf *b, long long v) {
    if (v < 0) {
        fs_buf_chr(b, '-');
        put_uint(b, -(unsigned long long)v, 10, 1);
    } else {
        put_uint(b, (unsigned long long)v, 10, 1);
    }
}

void fs_buf_hex(struct fs_buf *b, uintptr_t v) {
    fs_buf_str(b, "0x");
    put_uint(b, v, 16, 1);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF). */
static int utf8_len(const unsigned char *s) {
    unsigned c = s[0];
    int n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (n == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f))) return 0;
    if (n == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))) return 0;
    return n;
}

/* Bytes a JSON string or a text value can carry as they are: printable ASCII. */
static inline int plain(unsigned char c, int json) {
    return c >= 0x20 && c < 0x7f && (!json || (c != '"' && c != '\\'));
}

/* Copies the run of plain bytes at s in one go; returns its length. */
static size_t plain_run(struct fs_buf *b, const unsigned char *s, int json) {
    size_t n = 0;
    while (plain(s[n], json)) n++;
    if (n) fs_buf_mem(b, (const char *)s, n);
    return n;
}

void fs_buf_json_str(struct fs_buf *b, const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    fs_buf_chr(b, '"');
    for (;;) {
        s += plain_run(b, s, 1);
        unsigned char c = *s;
        if (!c) break;
        if (c == '"' || c == '\\') {
            fs_buf_chr(b, '\\');
            fs_buf_chr(b, (char)c);
        } else if (c == '\n') {
            fs_buf_str(b, "\\n");
        } else if (c == '\t') {
            fs_buf_str(b, "\\t");
        } else if (c < 0x80) { /* other control bytes, DEL */
            fs_buf_str(b, "\\u00");
            put_uint(b, c, 16, 2);
        } else {
            int n = utf8_len(s);
            if (n == 0) {
                fs_buf_str(b, "\\ufffd"); /* not UTF-8: one replacement character per byte */
                s++;
                continue;
            }
            fs_buf_mem(b, (const char *)s, (size_t)n);
            s += n;
            continue;
        }
        s++;
    }
    fs_buf_chr(b, '"');
}

void fs_buf_text_str(struct fs_buf *b, const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    for (;;) {
        s += plain_run(b, s, 0);
        if (!*s) break;
        if (*s < 0x20 || *s == 0x7f) {
            fs_buf_str(b, "\\x");
            put_uint(b, *s, 16, 2);
        } else {
            fs_buf_chr(b, (char)*s); /* UTF-8 and other bytes >= 0x80 pass through */
        }
        s++;
    }
}

/* Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm); gmtime_r is not
 * async-signal-safe. */
static void civil_from_days(long long z, long long *y, unsigned *m, unsigned *d) {
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (long long)yoe + era * 400 + (*m <= 2);
}

void fs_buf_time_iso(struct fs_buf *b, const struct timespec *t) {
    long long secs = t->tv_sec, days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    long long y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    put_uint(b, (unsigned long long)y, 10, 4);
    fs_buf_chr(b, '-');
    put_uint(b, m, 10, 2);
    fs_buf_chr(b, '-');
    put_uint(b, d, 10, 2);
    fs_buf_chr(b, 'T');
    put_uint(b, (unsigned long long)(rem / 3600), 10, 2);
    fs_buf_chr(b, ':');
    put_uint(b, (unsigned long long)(rem / 60 % 60), 10, 2);
    fs_buf_chr(b, ':');
    put_uint(b, (unsigned long long)(rem % 60), 10, 2);
    fs_buf_chr(b, '.');
    put_uint(b, (unsigned long long)(t->tv_nsec / 1000000), 10, 3);
    fs_buf_chr(b, 'Z');
}
