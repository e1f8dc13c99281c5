// SPDX-License-Identifier: MIT
// Declarations shared by the shim's files. Every name here is internal: `fs_` for our own
// functions and state, `fs_real` for the libc functions we wrap. Nothing here is exported.
#ifndef FORKSAFE_INTERNAL_H
#define FORKSAFE_INTERNAL_H

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

#define FS_EXPORT __attribute__((visibility("default")))
#define fs_likely(x) __builtin_expect(!!(x), 1)
#define fs_unlikely(x) __builtin_expect(!!(x), 0)

/* ---- hooks.c: the libc functions we wrap, resolved with dlsym(RTLD_NEXT) ---- */
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
};
extern struct fs_real fs_real;
/* Resolves every hook once. Safe to call from any wrapper, any number of times. */
void fs_hooks_resolve(void);
#define FS_REAL(name) (fs_likely(fs_real.name != NULL) ? fs_real.name : (fs_hooks_resolve(), fs_real.name))
/* sem_trywait, sem_wait, sem_post, sem_timedwait start as resolvers (hooks.c): call them directly. */

/* ---- init.c: one-time start-up (settings, atfork handlers, log descriptor) ---- */
void fs_init(void);
/* Nonzero in a setuid/setgid/capability process (AT_SECURE): settings are not read. */
extern int fs_secure;

/* ---- settings.c ---- */
enum fs_mode { FS_MODE_REPAIR, FS_MODE_REPORT, FS_MODE_OFF };
enum fs_format { FS_FORMAT_TEXT, FS_FORMAT_JSON };
enum fs_exit_report { FS_EXIT_REPORT_ON, FS_EXIT_REPORT_ALL, FS_EXIT_REPORT_OFF };
enum fs_setting_kind { FS_KIND_ENUM, FS_KIND_PATH, FS_KIND_BOOL, FS_KIND_INT };
#define FS_SETTING(id, env, kind, def, choices, help) FS_SET_##id,
enum fs_setting_id {
#include "settings.def"
    FS_SET_COUNT
};
#undef FS_SETTING
#define FS_SETTING_STR_MAX 512
struct fs_setting_value {
    int num;                        /* enum index, bool or integer */
    char str[FS_SETTING_STR_MAX];   /* the effective text */
    int from_env;                   /* 1 if the environment set it (validly) */
};
struct fs_settings { struct fs_setting_value v[FS_SET_COUNT]; };
extern struct fs_settings fs_settings;
/* Parses every setting from `get` (getenv in production). Invalid values keep the default and
 * write one warning line each to `warn_fd` (-1: none). Returns the number of warnings. */
int fs_settings_parse(struct fs_settings *out, const char *(*get)(const char *), int warn_fd);
/* Writes the effective settings, one `forksafe[PID]: FORKSAFE_X=value` line each. */
void fs_settings_dump(const struct fs_settings *s, int fd);
static inline int fs_setting(enum fs_setting_id id) { return fs_settings.v[id].num; }

/* ---- fmt.c: a formatter into a caller's buffer; async-signal-safe ---- */
struct fs_buf {
    char *p;
    size_t len, cap;
    int fd;          /* flushed here when full; -1: truncate instead */
};
void fs_buf_init(struct fs_buf *b, char *mem, size_t cap, int fd);
void fs_buf_mem(struct fs_buf *b, const char *s, size_t n);
void fs_buf_str(struct fs_buf *b, const char *s);
void fs_buf_chr(struct fs_buf *b, char c);
void fs_buf_int(struct fs_buf *b, long long v);
void fs_buf_hex(struct fs_buf *b, uintptr_t v);       /* 0x... */
void fs_buf_json_str(struct fs_buf *b, const char *s); /* quoted, escaped */
void fs_buf_time_iso(struct fs_buf *b, const struct timespec *t); /* 2026-11-22T03:04:05.678Z */
void fs_buf_flush(struct fs_buf *b);
/* Writes all of buf to fd, retrying on EINTR and short writes. Returns 0 or -1. */
int fs_write_all(int fd, const char *buf, size_t len);
/* Reads /proc/<pid>/task/<tid>/comm into name[16]; returns 0 or -1 (name set to ""). */
int fs_read_comm(pid_t pid, pid_t tid, char name[16]);

/* ---- log.c: the descriptor reports go to ---- */
void fs_log_init(void);     /* at start: duplicates stderr if that is the destination */
int fs_log_fd(void);        /* the descriptor to write to now, or -1; async-signal-safe */
void fs_log_after_fork_child(void);

/* ---- threads.c: the registry of threads, who we are, what is alive ---- */
#define FS_MAX_THREADS 16384
#define FS_CREATE_DEPTH 24
enum fs_thread_state { FS_T_FREE, FS_T_STARTING, FS_T_LIVE, FS_T_LOST };
struct fs_thread {
    _Atomic uint32_t state;
    uint32_t gen;            /* bumped each time the slot is claimed: tokens are never reused */
    pid_t tid;
    pid_t home_pid;          /* LOST: the process the thread lived in */
    uint32_t lost_seq;       /* LOST: fs_fork_seq of the fork that lost it */
    uint32_t listed_seq;     /* the fork report that listed it (see report.c) */
    uint32_t start_sym;      /* index into the symbol cache + 1; 0: unknown */
    void *(*start)(void *);
    void *arg;
    pthread_t self;          /* pthread_self() of the thread */
    char name[16];           /* OS thread name, as last known */
    char pyname[48];         /* Python thread name: at creation, or from a fork snapshot */
    uint8_t ncreate;         /* Python stack of the code that started the thread: */
    uint16_t create_site[FS_CREATE_DEPTH];   /* sites (python.c), innermost first */
    int create_line[FS_CREATE_DEPTH];
};
extern struct fs_thread fs_threads[FS_MAX_THREADS];
extern _Atomic uint32_t fs_threads_hwm;     /* slots [0, hwm) have ever been used */

/* A thread's owner token, what a semaphore records as its taker: (generation << 32) | (slot + 1).
 * No other thread ever gets the same token, even one that reuses the slot later. */
typedef uint64_t fs_token;
#define FS_TOKEN_NONE UINT64_MAX   /* untracked: registry full, or the thread is ending */
extern __thread fs_token fs_tls_token __attribute__((tls_model("initial-exec")));
extern __thread pid_t fs_tls_tid __attribute__((tls_model("initial-exec")));
fs_token fs_self_token_slow(void);   /* registers the calling thread */
/* This thread's token, registering it on first use; 0 if untracked. */
static inline fs_token fs_self_token(void) {
    fs_token t = fs_tls_token;
    if (fs_likely(t != 0 && t != FS_TOKEN_NONE)) return t;
    return t == 0 ? fs_self_token_slow() : 0;
}
static inline struct fs_thread *fs_thread_by_token(fs_token tok) {
    uint32_t id = (uint32_t)tok;
    return (id >= 1 && id <= FS_MAX_THREADS) ? &fs_threads[id - 1] : NULL;
}
/* The slot of the thread named by `tok` if that very thread was alive at a fork and lost by it;
 * NULL otherwise (still alive, ended before the fork, or its slot now belongs to another). */
struct fs_thread *fs_token_lost(fs_token tok);
pid_t fs_gettid(void);
/* Thread `tid` of process `pid`: a live thread of this process, or one lost at a fork of `pid`.
 * Through an index when one is built. */
struct fs_thread *fs_thread_find_tid(pid_t pid, pid_t tid);
/* Builds a (pid, tid) -> slot index for a report (O(threads)); lookups are O(1) until released. */
void fs_thread_index_build(void);
void fs_thread_index_release(void);
extern pid_t fs_pid;   /* getpid(), cached: set at start and in the fork child */
/* getpid() as the report path needs it: the cached value, refreshed if a process was made
 * without our fork handlers (syscall(SYS_fork), clone). One system call. */
pid_t fs_getpid_checked(void);
extern int fs_single_since_fork; /* a forked child that has started no thread since */
extern uint32_t fs_fork_seq;     /* forks this process and its ancestors made (child side) */
struct fs_thread *fs_thread_find_pthread(pthread_t self);
int fs_thread_recently_ended(pid_t tid);   /* its start routine returned very recently */
/* In the forked child (inside fork): the forking thread gets its new tid; every other live
 * thread becomes LOST at fork number fs_fork_seq. Returns how many. */
int fs_threads_after_fork_child(pid_t parent_pid);
void fs_threads_init(void);
/* Lists the tids of /proc/self/task into tids[cap]; returns how many exist (may exceed cap). */
int fs_list_tasks(pid_t *tids, int cap);
/* Inside fork: every thread's tid into tids[cap], the forking thread's included; returns how
 * many. From the registry when it accounts for all of them (the kernel's count says so), else
 * from /proc/self/task, whose walk costs about 0.4 us per thread. */
int fs_threads_at_fork(pid_t *tids, int cap, pid_t forking_tid);
/* The kernel's count of this process's threads (one small /proc read), or -1. */
int fs_thread_count(void);

/* ---- symbols.c: start routine -> "symbol+0xoff (library)", resolved outside fork ---- */
uint32_t fs_symbol_lookup(const void *addr);   /* cache index + 1, 0 on failure */
void fs_symbol_format(struct fs_buf *b, uint32_t sym); /* "fn+0x10 (/lib/x.so)" */
void fs_symbol_json(struct fs_buf *b, uint32_t sym);   /* the same as a JSON string, or null */

/* ---- fork.c: the fork path ---- */
#define FS_MAX_SNAPSHOT 16384
struct fs_fork_snapshot {
    pid_t parent_pid;
    pid_t forking_tid;            /* in the parent */
    struct timespec time;
    int ntasks;                   /* how many threads existed (may exceed the array) */
    pid_t tasks[FS_MAX_SNAPSHOT];
};
extern struct fs_fork_snapshot fs_snap;
/* Hot-path flag: nonzero in a forked child that may hold orphaned locks or owe a report. */
extern _Atomic int fs_child_armed;
/* Non-zero when the semaphore wrappers record owners (mode is not off). */
extern int fs_tracking;
/* Writes this child's fork report if it still owes one (the child is clearly going on). */
void fs_child_report_now(void);
void fs_child_report_cancel(void);   /* exec: the child is being replaced */
void fs_atfork_register(void);
void fs_fork_init(void);   /* registers the exit hook */

/* ---- python.c: names and stacks of a hosted CPython (see its header comment) ---- */
struct fs_py_info { const char *name; uint32_t first, nframes; };
void fs_py_thread_starting(struct fs_thread *t); /* pthread_create: hooks, creation stack of t */
void fs_py_snapshot_now(void);      /* before exit/exec, if the GIL is held */
void fs_py_site(uint16_t site, const char **file, const char **func);
void fs_py_before_fork(void);       /* fork wrapper, before the real fork */
void fs_py_prepare(pid_t forking_tid);
void fs_py_parent(void);
int fs_py_snapshot_valid(void);     /* in the child */
const struct fs_py_info *fs_py_lookup(pid_t tid, struct fs_py_info *out);
void fs_py_frame(const struct fs_py_info *info, uint32_t i, const char **file, const char **func, int *line);

/* ---- census.c: the threads alive now (exit, exec, counts, listing on demand) ---- */
void fs_exit_report(const char *how, const char *path);  /* how: "exit", "_exit", "exec" */
void fs_census_thread_started(void);
void fs_census_thread_ended(void);
void fs_census_after_fork_child(void);
void fs_census_init(void);

/* ---- report.c: building the reports ---- */
void fs_report_fork(const struct fs_fork_snapshot *snap, pid_t child_pid);
/* A lock taken over ("lock_repaired") or waited on in vain ("lock_orphaned"). */
struct fs_lock_owner { pid_t tid; const char *name, *pyname, *reason; };
void fs_report_lock_event(const char *event, const char *type, const void *lock, const struct fs_lock_owner *owner);
/* The same for a semaphore, whose owner is a thread's token; `reason` why it was not repaired. */
void fs_report_lock(const char *event, const void *lock, fs_token owner, const char *reason);
void fs_report_line_start(struct fs_buf *b, const char *event, const struct timespec *when);
void fs_report_line_end(struct fs_buf *b);
/* ,"python_stack":[{"file","line","function"}, ...] of a snapshot entry, innermost first. */
void fs_report_json_python_stack(struct fs_buf *b, const struct fs_py_info *info);
/* The same as text lines, as a traceback shows them (most recent call last). */
void fs_report_text_python_stack(struct fs_buf *b, const struct fs_py_info *info, const char *event,
                                 const struct timespec *when, const char *indent);
/* The name of thread `tid` of process `pid`: the registry's if known, else /proc's. */
void fs_thread_name(const struct fs_thread *t, pid_t pid, pid_t tid, char name[16]);

#endif
