// SPDX-License-Identifier: MIT
// Layer 1, base: what every other part uses and that uses nothing of ours above it -- the libc
// functions we wrap, the settings, the formatter, where reports go (the sink), start-routine
// symbols, a string arena. Platform specifics (raw system calls, /proc) are in
// platform/platform.h, the other half of this layer. Names: `fs_` ours, `fs_real` libc's.
#ifndef FORKSAFE_BASE_H
#define FORKSAFE_BASE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "settings_enums.h" /* generated from settings.def: enum fs_mode, fs_format, ... */

#define FS_EXPORT __attribute__((visibility("default")))
#define fs_likely(x) __builtin_expect(!!(x), 1)
#define fs_unlikely(x) __builtin_expect(!!(x), 0)

/* ---- real.c: the libc functions we wrap, resolved with dlsym(RTLD_NEXT) ---- */
struct fs_real {
    pid_t (*fork)(void);
    int (*pthread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    int (*pthread_setname_np)(pthread_t, const char *);
    int (*register_atfork)(void (*)(void), void (*)(void), void (*)(void), void *);
    int (*sem_init)(sem_t *, int, unsigned);
    int (*sem_destroy)(sem_t *);
    int (*sem_wait)(sem_t *);
    int (*sem_trywait)(sem_t *);
    int (*sem_timedwait)(sem_t *, const struct timespec *);
    int (*sem_clockwait)(sem_t *, clockid_t, const struct timespec *);
    int (*sem_post)(sem_t *);
    int (*execve)(const char *, char *const[], char *const[]);
    int (*execv)(const char *, char *const[]);
    int (*execvp)(const char *, char *const[]);
    int (*execvpe)(const char *, char *const[], char *const[]);
    int (*fexecve)(int, char *const[], char *const[]);
    void (*exit_)(int);  /* _exit */
    void (*Exit_)(int);  /* _Exit */
    int (*mutex_lock)(pthread_mutex_t *);
    int (*mutex_trylock)(pthread_mutex_t *);
    int (*mutex_unlock)(pthread_mutex_t *);
    int (*mutex_timedlock)(pthread_mutex_t *, const struct timespec *);
    int (*mutex_clocklock)(pthread_mutex_t *, clockid_t, const struct timespec *);
    int (*rwlock_rdlock)(pthread_rwlock_t *);
    int (*rwlock_wrlock)(pthread_rwlock_t *);
    int (*rwlock_tryrdlock)(pthread_rwlock_t *);
    int (*rwlock_trywrlock)(pthread_rwlock_t *);
    int (*rwlock_unlock)(pthread_rwlock_t *);
    int (*rwlock_timedrdlock)(pthread_rwlock_t *, const struct timespec *);
    int (*rwlock_timedwrlock)(pthread_rwlock_t *, const struct timespec *);
    int (*rwlock_clockrdlock)(pthread_rwlock_t *, clockid_t, const struct timespec *);
    int (*rwlock_clockwrlock)(pthread_rwlock_t *, clockid_t, const struct timespec *);
};
extern struct fs_real fs_real;
/* Resolves every hook once. Safe to call from any wrapper, any number of times; never from
 * inside fork() (dlsym may allocate). */
void fs_real_resolve(void);
/* One function alone (start-up needs only __register_atfork): dlsym costs about a microsecond
 * each, and most processes never call most of what we wrap. */
void *fs_real_resolve_one(const char *name);
#define FS_REAL(name) (fs_likely(fs_real.name != NULL) ? fs_real.name : (fs_real_resolve(), fs_real.name))
/* sem_trywait, sem_wait, sem_post, sem_timedwait, pthread_mutex_lock, _trylock and _unlock start
 * as resolvers: the hot wrappers call them directly, with no test. */

struct fs_buf;

/* ---- settings.c: read once from FORKSAFE_* (settings.def is the one table) ---- */
enum fs_setting_kind { FS_KIND_ENUM, FS_KIND_PATH, FS_KIND_BOOL, FS_KIND_INT, FS_KIND_LIST };
#define FS_SETTING(id, env, kind, def, choices, help) FS_SET_##id,
enum fs_setting_id {
#include "settings.def"
    FS_SET_COUNT
};
#undef FS_SETTING
#define FS_SETTING_STR_MAX 512    /* a path, a list */
struct fs_setting_value {
    int num;                        /* enum index (see settings_enums.h), 0/1 for a boolean, or integer */
    int from_env;                   /* 1 if the environment set it (validly) */
    const char *str;                /* the effective text: `word` or, for a path, `path` */
    char word[24];
};
/* Small, so that a process's start touches one page for it. */
struct fs_settings {
    struct fs_setting_value v[FS_SET_COUNT];
    char path[FS_SETTING_STR_MAX];  /* the one path setting's text (FORKSAFE_LOG) */
    char list[FS_SETTING_STR_MAX];  /* the one list setting's text (FORKSAFE_ALLOW) */
};
extern struct fs_settings fs_settings;
/* Parses every setting from `get` (getenv in production; NULL for every name in secure mode).
 * Invalid values keep the default and write one warning line each to `warn_fd` (-1: none).
 * Returns the number of warnings. */
int fs_settings_parse(struct fs_settings *out, const char *(*get)(const char *), int warn_fd);
/* The effective settings, one `forksafe[PID]: setting FORKSAFE_X=value (...)` line each: into a
 * buffer, or written to a descriptor. */
void fs_settings_format(const struct fs_settings *s, pid_t pid, struct fs_buf *b);
void fs_settings_dump(const struct fs_settings *s, int fd);
static inline int fs_setting(enum fs_setting_id id) { return fs_settings.v[id].num; }
static inline const char *fs_setting_str(enum fs_setting_id id) { return fs_settings.v[id].str; }

/* ---- fmt.c: a formatter into a caller's buffer; async-signal-safe ---- */
struct fs_buf {
    char *p;
    size_t len, cap;
    int fd;          /* flushed here when full; -1: never flushed, `overflow` is set instead */
    int overflow;    /* something did not fit (fd -1) */
};
void fs_buf_init(struct fs_buf *b, char *mem, size_t cap, int fd);
void fs_buf_mem(struct fs_buf *b, const char *s, size_t n);
void fs_buf_str(struct fs_buf *b, const char *s);
void fs_buf_chr(struct fs_buf *b, char c);
void fs_buf_int(struct fs_buf *b, long long v);
void fs_buf_hex(struct fs_buf *b, uintptr_t v);        /* 0x... */
/* A JSON string, quoted: control bytes escaped, invalid UTF-8 replaced by U+FFFD, so that a
 * strict parser accepts every line. */
void fs_buf_json_str(struct fs_buf *b, const char *s);
/* Text for people: control bytes (a newline in a thread name) written as \xNN, so that no value
 * can forge a report line. */
void fs_buf_text_str(struct fs_buf *b, const char *s);
void fs_buf_time_iso(struct fs_buf *b, const struct timespec *t); /* 2026-11-22T03:04:05.678Z */
void fs_buf_flush(struct fs_buf *b);
/* Writes all of buf to fd, retrying on EINTR and short writes. Returns 0 or -1 (errno kept). */
int fs_write_all(int fd, const char *buf, size_t len);
/* Copies at most cap-1 bytes of src and terminates; returns the length copied. */
size_t fs_strlcpy(char *dst, const char *src, size_t cap);

/* ---- arena.c: strings copied once into a fixed region, referred to by offset ---- */
struct fs_arena {
    char *mem;
    uint32_t len, cap;   /* offset 0 is the empty string */
};
void fs_arena_reset(struct fs_arena *a);
/* Copies s (at most `max` bytes of it) and returns its offset; 0 (the empty string) if s is NULL
 * or empty, or the arena is full. */
uint32_t fs_arena_add(struct fs_arena *a, const char *s, size_t max);
static inline const char *fs_arena_str(const struct fs_arena *a, uint32_t off) { return a->mem + off; }

/* ---- sink.c: where reports go (FORKSAFE_LOG); async-signal-safe after fs_sink_init ---- */
void fs_sink_init(void);
/* 0 if a report written now would surely go nowhere (stderr closed or replaced, and no file):
 * callers skip the work of formatting it. */
int fs_sink_available(void);
/* Writes one whole event: a regular file (opened for this event, O_APPEND, then closed) receives
 * it in one write(2); on a pipe, text goes out line by line in writes of at most PIPE_BUF so
 * that lines stay whole. `text`: the event is text lines. Returns 0, or -1 if it was dropped. */
int fs_sink_write(const char *buf, size_t len, int text);
/* One warning line on the original stderr, at most once per `key` bit (FS_WARN_*). */
enum { FS_WARN_LOG_OPEN = 1, FS_WARN_LOG_BLOCKED = 2, FS_WARN_LOG_LINK = 4, FS_WARN_LOG_OWNER = 8,
       FS_WARN_LOG_LONG = 16, FS_WARN_JOURNAL = 32 };
void fs_sink_warn(unsigned key, const char *what, const char *value, const char *outcome);
/* FORKSAFE_LOG=journal[:SOCKET]: the event is wanted in both renderings (JSON: the journal's
 * fields, text: its MESSAGE), handed over together by fs_sink_write_event. */
int fs_sink_journal(void);
/* One event in both renderings (either may be NULL): the journal gets both; elsewhere the one
 * FORKSAFE_FORMAT names is written as fs_sink_write would. */
int fs_sink_write_event(const char *json, size_t jlen, const char *text, size_t tlen);

/* ---- journal.c: native journal entries (FORKSAFE_LOG=journal), no libsystemd ---- */
/* The socket FORKSAFE_LOG names: "journal" (journald's) or "journal:PATH"; NULL for another log. */
const char *fs_journal_socket(const char *log);
/* Sends one entry: MESSAGE from `text` (line prefixes dropped), fields flattened from `json`
 * (either may be NULL). A socket per call, closed before returning. 0, or -1 with errno. */
int fs_journal_send(const char *sock, const char *json, size_t jlen, const char *text, size_t tlen, pid_t pid);

/* ---- symbols.c: start routine -> "symbol+0xoff (library)", resolved outside fork ---- */
uint32_t fs_symbol_lookup(const void *addr);   /* cache index + 1, 0 on failure */
/* "fn+0x10 (/lib/x.so)", or "0x2e1970 (/usr/bin/python3.11)" without a symbol, into out[cap];
 * returns 0, or -1 (out "") for an unknown routine. */
int fs_symbol_text(uint32_t sym, char *out, size_t cap);
/* The same text, read in place (entries never change once published), or NULL; *plain (if not
 * NULL): it needs no escaping, in JSON or text. */
const char *fs_symbol_str(uint32_t sym, int *plain);

#endif
