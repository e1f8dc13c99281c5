// SPDX-License-Identifier: MIT
// FORKSAFE_LOG=journal (or journal:SOCKET): each event becomes one native journal entry, sent as
// one datagram to journald's socket (/run/systemd/journal/socket), without libsystemd.
//   MESSAGE            the event's text lines, without their `forksafe[PID]: ` prefixes
//   PRIORITY           4 (warning): fork, lock_orphaned, exit, exec, threads; 5 (notice):
//                      lock_repaired; 6 (info): anything else (thread_list, settings)
//   SYSLOG_IDENTIFIER  forksafe;  SYSLOG_PID: the writing process
//   FORKSAFE_JSON      the event's JSON line, whole
//   FORKSAFE_<KEY>     the JSON members flattened: a scalar member `key` of the event becomes
//                      FORKSAFE_KEY; a member of an object or of the objects of a list joins the
//                      keys with `_` (forking_thread.tid: FORKSAFE_FORKING_THREAD_TID); a list
//                      gives the field once per item (journald keeps repeated fields), at most
//                      FIELD_ITEMS items per list; a list inside a list is left out (the Python
//                      stacks of lost threads: FORKSAFE_JSON has them); null is left out.
// The native protocol: `KEY=value\n`, or, for a value holding a newline, `KEY\n`, its length as
// 64-bit little-endian, the value, `\n`. A datagram too large for the socket (EMSGSIZE, ENOBUFS)
// is written to a sealed memfd whose descriptor is passed instead, as sd_journal_send does.
// We hold no descriptor between events: a socket per event, closed before returning.
// Runs in forked children and signal handlers: system calls and our formatter only, no malloc
// (the entry is built in a private anonymous mapping). Uses nothing of ours but fmt.c; the sink
// (sink.c) decides what a failure means (one warning, then stderr).
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define JOURNAL_SOCKET "/run/systemd/journal/socket"
#define FIELD_ITEMS 64        /* items flattened per list */
#define FIELDS_MAX 900        /* flattened fields per entry (journald refuses more than 1024) */
#define FIELD_NAME_MAX 64     /* journald's limit on a field name */
#define DEPTH_MAX 8           /* our JSON nests 4 deep */
#define SEND_WAIT_MS 500      /* a journal that does not keep up: how long we wait, at most */

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif

const char *fs_journal_socket(const char *log) {
    if (!log || strncmp(log, "journal", 7) != 0) return NULL;
    if (log[7] == '\0') return JOURNAL_SOCKET;
    if (log[7] == ':' && log[8] != '\0') return log + 8;
    return NULL;
}

/* ---- fields ---- */

/* Starts field `key`: written as `KEY\n` and room for the length; field_end() makes it
 * `KEY=value\n` when the value holds no newline. Returns where the length goes. */
static size_t field_begin(struct fs_buf *b, const char *key, size_t klen) {
    fs_buf_mem(b, key, klen);
    fs_buf_chr(b, '\n');
    size_t at = b->len;
    fs_buf_mem(b, "\0\0\0\0\0\0\0\0", 8);
    return at;
}

static void field_end(struct fs_buf *b, size_t at) {
    if (b->overflow || b->len < at + 8) return;
    char *v = b->p + at + 8;
    size_t n = b->len - (at + 8);
    if (!memchr(v, '\n', n)) {
        b->p[at - 1] = '=';
        memmove(b->p + at, v, n);
        b->len -= 8;
    } else {
        uint64_t le = n;
        for (int i = 0; i < 8; i++) b->p[at + i] = (char)(le >> (8 * i));
    }
    fs_buf_chr(b, '\n');
}

static void field(struct fs_buf *b, const char *key, const char *v, size_t n) {
    size_t at = field_begin(b, key, strlen(key));
    fs_buf_mem(b, v, n);
    field_end(b, at);
}

/* MESSAGE: the text without its line prefixes and without the last newline. */
static void message(struct fs_buf *b, const char *text, size_t len) {
    size_t at = field_begin(b, "MESSAGE", 7);
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        const char *q = p;
        if (stop - q > 9 && memcmp(q, "forksafe[", 9) == 0) { /* forksafe[PID]: */
            const char *r = q + 9;
            while (r < stop && *r >= '0' && *r <= '9') r++;
            if (stop - r >= 2 && r[0] == ']' && r[1] == ':') q = r + 2 + (stop - r > 2 && r[2] == ' ');
        }
        if (p != text) fs_buf_chr(b, '\n');
        fs_buf_mem(b, q, (size_t)(stop - q));
        p = nl ? nl + 1 : end;
        if (nl && p == end) break; /* the last newline */
    }
    field_end(b, at);
}

/* ---- a small reader of our own JSON, flattening it into fields ---- */

struct flat {
    const char *p, *end;
    struct fs_buf *b;
    char name[FIELD_NAME_MAX + 1];  /* FORKSAFE_A_B... */
    size_t nlen;
    int lists;                      /* lists we are inside */
    int fields;
    int bad;
};

static void ws(struct flat *f) {
    while (f->p < f->end && (*f->p == ' ' || *f->p == '\n' || *f->p == '\r' || *f->p == '\t')) f->p++;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static long hex4(const char *p, const char *end) {
    if (end - p < 4) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static void utf8(struct fs_buf *b, unsigned long c) {
    char u[4];
    size_t n;
    if (c < 0x80) { u[0] = (char)c; n = 1; }
    else if (c < 0x800) { u[0] = (char)(0xc0 | c >> 6); u[1] = (char)(0x80 | (c & 0x3f)); n = 2; }
    else if (c < 0x10000) {
        u[0] = (char)(0xe0 | c >> 12); u[1] = (char)(0x80 | (c >> 6 & 0x3f)); u[2] = (char)(0x80 | (c & 0x3f)); n = 3;
    } else {
        u[0] = (char)(0xf0 | c >> 18); u[1] = (char)(0x80 | (c >> 12 & 0x3f));
        u[2] = (char)(0x80 | (c >> 6 & 0x3f)); u[3] = (char)(0x80 | (c & 0x3f)); n = 4;
    }
    fs_buf_mem(b, u, n);
}

/* A string at f->p (after its opening quote): decoded into `out` if not NULL, else skipped. */
static void string(struct flat *f, struct fs_buf *out) {
    while (f->p < f->end && *f->p != '"') {
        const char *run = f->p;
        while (f->p < f->end && *f->p != '"' && *f->p != '\\') f->p++;
        if (out) fs_buf_mem(out, run, (size_t)(f->p - run));
        if (f->p >= f->end || *f->p == '"') break;
        if (++f->p >= f->end) break;           /* a backslash */
        char c = *f->p++, d = c;
        switch (c) {
        case 'n': d = '\n'; break;
        case 't': d = '\t'; break;
        case 'r': d = '\r'; break;
        case 'b': d = '\b'; break;
        case 'f': d = '\f'; break;
        case 'u': {
            long u = hex4(f->p, f->end);
            if (u < 0) { f->bad = 1; return; }
            f->p += 4;
            unsigned long cp = (unsigned long)u;
            if (u >= 0xd800 && u < 0xdc00 && f->end - f->p >= 6 && f->p[0] == '\\' && f->p[1] == 'u') {
                long lo = hex4(f->p + 2, f->end);
                if (lo >= 0xdc00 && lo < 0xe000) {
                    cp = 0x10000 + (((unsigned long)u - 0xd800) << 10) + ((unsigned long)lo - 0xdc00);
                    f->p += 6;
                }
            }
            if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd; /* a lone surrogate */
            if (out) utf8(out, cp);
            continue;
        }
        default: break;                        /* \" \\ \/ */
        }
        if (out) fs_buf_chr(out, d);
    }
    if (f->p >= f->end) { f->bad = 1; return; }
    f->p++; /* the closing quote */
}

static void value(struct flat *f, int depth, int emit);

/* Emits the current name with the value at f->p (a scalar). */
static void scalar(struct flat *f, int emit) {
    char c = *f->p;
    const char *start = f->p;
    if (c == '"') {
        f->p++;
        if (!emit) {
            string(f, NULL);
            return;
        }
        size_t at = field_begin(f->b, f->name, f->nlen);
        string(f, f->b);
        field_end(f->b, at);
        f->fields++;
        return;
    }
    while (f->p < f->end && (((*f->p | 0x20) >= 'a' && (*f->p | 0x20) <= 'z') || (*f->p >= '0' && *f->p <= '9') ||
                             *f->p == '-' || *f->p == '+' || *f->p == '.'))
        f->p++;
    if (f->p == start) { f->bad = 1; return; }
    if (emit && !(f->p - start == 4 && memcmp(start, "null", 4) == 0)) {
        field(f->b, f->name, start, (size_t)(f->p - start));
        f->fields++;
    }
}

static void object(struct flat *f, int depth, int emit) {
    f->p++; /* { */
    for (int first = 1; !f->bad;) {
        ws(f);
        if (f->p >= f->end) { f->bad = 1; return; }
        if (*f->p == '}') { f->p++; return; }
        if (!first) {
            if (*f->p != ',') { f->bad = 1; return; }
            f->p++;
            ws(f);
        }
        first = 0;
        if (f->p >= f->end || *f->p != '"') { f->bad = 1; return; }
        const char *key = ++f->p;
        while (f->p < f->end && *f->p != '"' && *f->p != '\\') f->p++;
        if (f->p >= f->end || *f->p != '"') { f->bad = 1; return; }
        size_t klen = (size_t)(f->p - key), saved = f->nlen;
        f->p++;
        ws(f);
        if (f->p >= f->end || *f->p != ':') { f->bad = 1; return; }
        f->p++;
        ws(f);
        /* FORKSAFE_..._KEY: our keys are [a-z0-9_]; any other (or too long) is not a field */
        int ok = emit && klen > 0 && f->nlen + 1 + klen <= FIELD_NAME_MAX;
        for (size_t i = 0; ok && i < klen; i++) {
            char c = key[i];
            ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        }
        if (ok) {
            f->name[f->nlen++] = '_';
            for (size_t i = 0; i < klen; i++) f->name[f->nlen++] = (char)(key[i] >= 'a' ? key[i] - 32 : key[i]);
            f->name[f->nlen] = '\0';
        }
        value(f, depth + 1, ok);
        f->nlen = saved;
        f->name[f->nlen] = '\0';
    }
}

static void list(struct flat *f, int depth, int emit) {
    f->p++; /* [ */
    f->lists++;
    for (int i = 0; !f->bad; i++) {
        ws(f);
        if (f->p >= f->end) { f->bad = 1; break; }
        if (*f->p == ']') { f->p++; break; }
        if (i > 0) {
            if (*f->p != ',') { f->bad = 1; break; }
            f->p++;
            ws(f);
        }
        value(f, depth + 1, emit && f->lists == 1 && i < FIELD_ITEMS);
    }
    f->lists--;
}

static void value(struct flat *f, int depth, int emit) {
    ws(f);
    if (f->p >= f->end || depth > DEPTH_MAX) { f->bad = 1; return; }
    if (f->fields >= FIELDS_MAX) emit = 0;
    if (*f->p == '{') object(f, depth, emit);
    else if (*f->p == '[') list(f, depth, emit);
    else scalar(f, emit);
}

/* The event's name, from the JSON's "event" member or the text's lack of one. */
static int priority(const char *json, size_t jlen) {
    static const struct { const char *ev; int prio; } table[] = {
        {"\"event\":\"fork\"", 4}, {"\"event\":\"lock_orphaned\"", 4}, {"\"event\":\"exit\"", 4},
        {"\"event\":\"exec\"", 4}, {"\"event\":\"threads\"", 4}, {"\"event\":\"lock_repaired\"", 5},
    };
    for (size_t i = 0; json && i < sizeof table / sizeof table[0]; i++) {
        size_t n = strlen(table[i].ev);
        if (jlen > n && memcmp(json + 1, table[i].ev, n) == 0) return table[i].prio;
    }
    return 6;
}

/* The whole entry into b. */
static void build(struct fs_buf *b, const char *json, size_t jlen, const char *text, size_t tlen, pid_t pid) {
    if (text && tlen) message(b, text, tlen);
    else if (json) field(b, "MESSAGE", json, jlen);
    char prio = (char)('0' + priority(json, jlen));
    field(b, "PRIORITY", &prio, 1);
    fs_buf_str(b, "SYSLOG_IDENTIFIER=forksafe\nSYSLOG_PID=");
    fs_buf_int(b, pid);
    fs_buf_chr(b, '\n');
    if (!json) {
        fs_buf_str(b, "FORKSAFE_EVENT=settings\n"); /* the one text-only write: FORKSAFE_VERBOSE */
        return;
    }
    field(b, "FORKSAFE_JSON", json, jlen);
    size_t before = b->len;
    struct flat f = {.p = json, .end = json + jlen, .b = b};
    memcpy(f.name, "FORKSAFE", 9);
    f.nlen = 8;
    ws(&f);
    if (f.p < f.end && *f.p == '{') value(&f, 0, 1);
    if (f.bad && !b->overflow) b->len = before; /* not our JSON after all: MESSAGE and FORKSAFE_JSON only */
}

/* ---- sending ---- */

static int send_wait(int fd, const char *buf, size_t len) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (send(fd, buf, len, MSG_NOSIGNAL) >= 0) return 0;
        if (errno == EINTR) continue;
        if (errno != EAGAIN) return -1;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms >= SEND_WAIT_MS) return -1; /* errno EAGAIN: the journal does not keep up */
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        poll(&p, 1, (int)(SEND_WAIT_MS - ms));
    }
}

/* Too large for a datagram: a sealed memfd holding the entry, its descriptor sent alone. */
static int send_memfd(int sock, const char *buf, size_t len) {
    int mfd = (int)syscall(SYS_memfd_create, "forksafe-journal", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (mfd < 0) return -1;
    int r = -1;
    if (fs_write_all(mfd, buf, len) == 0 &&
        fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) == 0) {
        union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
        memset(&ctl, 0, sizeof ctl);
        struct msghdr m = {.msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &mfd, sizeof(int));
        for (;;) {
            if (sendmsg(sock, &m, MSG_NOSIGNAL) >= 0) { r = 0; break; }
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                struct pollfd p = {.fd = sock, .events = POLLOUT};
                if (poll(&p, 1, SEND_WAIT_MS) > 0) continue;
            }
            break;
        }
    }
    int err = errno;
    close(mfd);
    errno = err;
    return r;
}

int fs_journal_send(const char *sock_path, const char *json, size_t jlen, const char *text, size_t tlen, pid_t pid) {
    if (json && jlen && json[jlen - 1] == '\n') jlen--;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t plen = strlen(sock_path);
    if (plen >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, sock_path, plen);
    /* Room: MESSAGE and FORKSAFE_JSON, the flattened values (no longer than the JSON) and their
     * names and framing. */
    size_t cap = tlen + 2 * jlen + 1024 + (size_t)FIELDS_MAX * (FIELD_NAME_MAX + 10);
    cap = (cap + 4095) & ~(size_t)4095;
    char *mem = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return -1;
    struct fs_buf b;
    fs_buf_init(&b, mem, cap, -1);
    build(&b, json, jlen, text, tlen, pid);
    int r = -1, err = EMSGSIZE;
    if (!b.overflow) {
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        err = errno;
        if (fd >= 0) {
            if (connect(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1)) == 0) {
                int sz = 8 << 20; /* as sd_journal: most entries fit one datagram (capped by wmem_max) */
                setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
                r = send_wait(fd, b.p, b.len);
                if (r != 0 && (errno == EMSGSIZE || errno == ENOBUFS)) r = send_memfd(fd, b.p, b.len);
            }
            err = errno;
            close(fd);
        }
    }
    munmap(mem, cap);
    errno = r == 0 ? 0 : err;
    return r;
}
