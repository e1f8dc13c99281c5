// SPDX-License-Identifier: MIT
// Layer 2, state: plain data with no behaviour above it -- the process's own state (process.c)
// and the registry of threads (registry.c). Nothing here calls anything outside base/ and
// platform/; a higher layer that needs to hear about a change registers a callback.
#ifndef FORKSAFE_STATE_H
#define FORKSAFE_STATE_H

#include "base/base.h"
#include "platform/platform.h"

/* ---- process.c: the process-state struct, one per process ---- */
struct fs_process {
    pid_t pid;                  /* getpid(), cached: set at start and in the fork child */
    int tracking;               /* FORKSAFE_MODE is not off: the wrappers record and report */
    enum fs_mode mode;
    int secure;                 /* AT_SECURE (setuid, setgid, capabilities): settings ignored */
    uint32_t fork_seq;          /* forks on the way to this process (each child adds one) */
    int single_since_fork;      /* a forked child that has started no thread since */
    _Atomic int armed;          /* hot-path flag: a forked child that may hold orphaned locks */
    _Atomic int report_owed;    /* this child still owes its fork report ... */
    pid_t report_owed_pid;      /* ... this very process (a vfork child shares our memory) */
    int forked;                 /* a forked child (any fork): the pthread wrappers check their locks */
    pid_t forker_old_tid;       /* in a child: the forking thread's tid in the parent */
    _Atomic int fork_busy;      /* core/fork.c: one fork at a time owns the fork record */
    int fork_recorded;          /* core/fork.c: the prepare handler recorded a fork to report: */
#define FS_FORK_THREADS 1       /*   of a multi-threaded process */
#define FS_FORK_GREEN 2         /*   carrying green threads (gevent, eventlet) */
};
extern struct fs_process fs_proc;
/* getpid() as report paths need it: the cached value, refreshed when the process was made
 * without our fork handlers (syscall(SYS_fork), clone). One system call. */
pid_t fs_proc_pid_checked(void);
/* Does this process owe its fork report? */
int fs_proc_report_owed(void);
/* This thread's tid, cached (the fork child and fs_proc_pid_checked refresh it). */
extern __thread pid_t fs_tls_tid __attribute__((tls_model("initial-exec")));
pid_t fs_gettid(void);

/* ---- registry.c: one slot per thread we know ---- */
#define FS_MAX_THREADS 16384
#define FS_CREATE_DEPTH 24
enum fs_thread_state { FS_T_FREE, FS_T_STARTING, FS_T_LIVE, FS_T_LOST };
struct fs_thread {
    _Atomic uint32_t state;
    uint32_t gen;            /* bumped each time the slot is claimed: tokens are never reused */
    pid_t tid;
    pid_t home_pid;          /* LOST: the process the thread lived in */
    uint32_t lost_seq;       /* LOST: fs_proc.fork_seq of the fork that lost it */
    uint32_t listed_seq;     /* the fork report that listed it (report/fork_report.c) */
    uint32_t start_sym;      /* start routine: symbol cache index + 1; 0: unknown */
    void *(*start)(void *);
    void *arg;
    pthread_t self;          /* pthread_self() of the thread */
    char name[16];           /* OS thread name, as last known */
    char pyname[48];         /* Python thread name: at creation, or from a fork snapshot */
    uint8_t ncreate;         /* Python stack of the code that started the thread: */
    uint16_t create_site[FS_CREATE_DEPTH];   /* sites (python/sites.c), innermost first */
    int create_line[FS_CREATE_DEPTH];
};
extern struct fs_thread fs_threads[FS_MAX_THREADS];
extern _Atomic uint32_t fs_threads_hwm;     /* slots [0, hwm) have ever been used */
static inline uint32_t fs_registry_used(void) {
    uint32_t hwm = atomic_load_explicit(&fs_threads_hwm, memory_order_acquire);
    return hwm < FS_MAX_THREADS ? hwm : FS_MAX_THREADS;
}

/* A thread's owner token, what a lock records as its taker: (generation << 32) | (slot + 1).
 * No other thread ever gets the same token, even one that reuses the slot later. */
typedef uint64_t fs_token;
#define FS_TOKEN_NONE UINT64_MAX   /* untracked: registry full, or the thread is ending */
extern __thread fs_token fs_tls_token __attribute__((tls_model("initial-exec")));
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

/* pthread_create: a slot for the thread about to start (STARTING), or NULL when full. */
struct fs_thread *fs_registry_claim(void);
void fs_registry_unclaim(struct fs_thread *t);    /* the thread did not start */
void fs_registry_become(struct fs_thread *t);     /* in the new thread: it is LIVE */
/* Live threads the registry knows (a count kept as threads start and end). */
uint32_t fs_registry_live(void);
/* Did thread `tid`'s start routine return very recently? (The kernel may list it a moment
 * longer.) */
int fs_registry_recently_ended(pid_t tid);
/* Set by the pthread_create trampoline when the start routine has returned. */
extern __thread int fs_tls_returned __attribute__((tls_model("initial-exec")));
/* Entry i of the threads that ended without their start routine returning (pthread_exit), in
 * order: 1 and its tid and start routine, or 0 past the end. */
int fs_registry_stopped(int i, pid_t *tid, uint32_t *start_sym);

/* Thread `tid` of process `pid`: a live thread of this process, or one lost at a fork of `pid`.
 * Through an index when one is built. */
struct fs_thread *fs_thread_find_tid(pid_t pid, pid_t tid);
/* Builds a (pid, tid) -> slot index for a report (O(threads)); lookups are O(1) until released. */
void fs_thread_index_build(void);
void fs_thread_index_release(void);
struct fs_thread *fs_thread_find_pthread(pthread_t self);
/* The name of thread `tid` of process `pid`: the registry's if known, else /proc's. */
void fs_thread_name(const struct fs_thread *t, pid_t pid, pid_t tid, char name[16]);
/* In the forked child (inside fork): the forking thread gets its new tid; every other live
 * thread becomes LOST at fork number fs_proc.fork_seq. Returns how many. */
int fs_registry_after_fork_child(pid_t parent_pid);
/* Inside fork: every thread's tid into tids[cap], the forking thread's included; returns how
 * many. From the registry when it accounts for all of them (the kernel's count says so), else
 * from /proc/self/task, whose walk costs about 0.4 us per thread. */
int fs_registry_threads_now(pid_t *tids, int cap, pid_t forking_tid);
void fs_registry_init(void);

#endif
