// SPDX-License-Identifier: MIT
// A small formatter into a caller-provided buffer, flushed to a descriptor when full.
// Async-signal-safe: it runs in forked children before exec. No malloc, no stdio, no locale.
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

void fs_buf_init(struct fs_buf *b, char *mem, size_t cap, int fd) {
    b->p = mem;
    b->len = 0;
    b->cap = cap;
    b->fd = fd;
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
    while (n > 0) {
        if (b->len == b->cap) {
            if (b->fd < 0) return; /* no descriptor: truncate */
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

void fs_buf_json_str(struct fs_buf *b, const char *s) {
    fs_buf_chr(b, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            fs_buf_chr(b, '\\');
            fs_buf_chr(b, (char)c);
        } else if (c == '\n') {
            fs_buf_str(b, "\\n");
        } else if (c == '\t') {
            fs_buf_str(b, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            fs_buf_str(b, "\\u00");
            put_uint(b, c, 16, 2);
        } else {
            fs_buf_chr(b, (char)c); /* UTF-8 passes through; thread names are bytes, see README */
        }
    }
    fs_buf_chr(b, '"');
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

int fs_read_comm(pid_t pid, pid_t tid, char name[16]) {
    char path[64];
    struct fs_buf b;
    fs_buf_init(&b, path, sizeof path - 1, -1);
    fs_buf_str(&b, "/proc/");
    fs_buf_int(&b, pid);
    fs_buf_str(&b, "/task/");
    fs_buf_int(&b, tid);
    fs_buf_str(&b, "/comm");
    path[b.len] = '\0';
    name[0] = '\0';
    int saved = errno;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errno = saved;
        return -1;
    }
    ssize_t n = read(fd, name, 15);
    close(fd);
    errno = saved;
    if (n <= 0) return -1;
    if (name[n - 1] == '\n') n--;
    name[n] = '\0';
    return 0;
}
