// SPDX-License-Identifier: MIT
// Layer 3, mechanisms: the fork path (fork.c), the one repair policy every lock kind shares
// (repair.c), strict mode's allow-list (strict.c) and the semaphore tags and their repair in
// children (sem_tag.h, sem.c). The Python binding, also a mechanism, is in python/. Mechanisms report nothing themselves: they return
// what happened (struct fs_lock_outcome) and the entry points in wrap/ write the reports.
#ifndef FORKSAFE_CORE_H
#define FORKSAFE_CORE_H

#include "state/state.h"

/* ---- fork.c: what the prepare handler saw, for the child's report ---- */
#define FS_MAX_LISTED 16384
struct fs_fork_record {
    pid_t parent_pid;
    pid_t forking_tid;            /* in the parent */
    char forking_name[16];        /* the forking thread's name at the fork */
    struct timespec time;
    int ntasks;                   /* how many threads existed (may exceed the array) */
    pid_t tasks[FS_MAX_LISTED];
};
extern struct fs_fork_record fs_fork_record;
/* The bodies of our atfork handlers (wrap/fork.c registers them). Inside fork():
 * async-signal-safe only, errno preserved. */
void fs_fork_lock(void);      /* one fork at a time owns fs_fork_record (2.36 runs handlers unlocked) */
void fs_fork_prepare(void);   /* the record: threads about to be lost, the forking thread */
void fs_fork_parent(void);    /* ... unlocks */
void fs_fork_child(void);     /* new tid, lost threads, the child is armed and owes a report */

/* ---- repair.c: the repair policy ---- */
enum fs_lock_kind { FS_LOCK_SEMAPHORE, FS_LOCK_PYTHON_RLOCK, FS_LOCK_PYTHON_LOCK, FS_LOCK_PTHREAD };
/* Whether a lock that a thread lost at the fork holds may be handed to the caller, which would
 * otherwise block on it. `proven`: the lock has been seen used as a lock (taken and released by
 * one thread), or is one by its type (an RLock has an owner), or by proof of its holder (a Python
 * Lock). `timed`: the wait has a deadline. NULL: repair. Otherwise the reason not to, as reported
 * in lock_orphaned: "report_mode", "semaphore_repair_off", "not_proven_lock" (not proven, and
 * another thread of the child could still release it), "not_proven_timed" (not proven, and the
 * wait ends at its deadline: the program expects that it may, and the lock may be a signal). */
const char *fs_repair_refusal(enum fs_lock_kind kind, int proven, int timed);

/* ---- strict.c: strict mode (FORKSAFE_STRICT) and its allow-list (FORKSAFE_ALLOW) ---- */
#define FS_STRICT_EXIT_STATUS 70   /* a strict child's end: EX_SOFTWARE */
enum { FS_STRICT_THREADS = 1, FS_STRICT_GREENLETS = 2 };
/* What counts: 0 (off), FS_STRICT_THREADS, or both. */
int fs_strict_mode(void);
/* Is a lost thread on the allow-list: its OS name, Python name (NULL: none), start routine? */
int fs_strict_thread_allowed(const char *os_name, const char *py_name, uint32_t start_sym);
int fs_strict_green_allowed(const char *py_name);
/* Glob `pat` (n bytes: '*', '?', '[a-z]', '[!...]', '\\' escapes) against all of `s`. */
int fs_glob_match(const char *pat, size_t n, const char *s);
/* Ends the child at once with FS_STRICT_EXIT_STATUS, as _exit does (no handler runs). */
__attribute__((noreturn)) void fs_strict_exit(void);

/* What a child's wait found, for the entry point to report. */
struct fs_lock_outcome {
    int would_block;              /* the lock was taken: the child may block for good */
    const char *type;             /* "semaphore", "python_rlock", "python_lock" */
    const char *event;            /* "lock_repaired", "lock_orphaned" or NULL: nothing to report */
    const void *lock;
    fs_token owner;               /* the lost thread that held it; 0: unknown */
    pid_t owner_tid;              /* its tid, when the lock records one (pthread locks) */
    uintptr_t waiter_pc;          /* where the waiting call came from (pthread locks), or 0 */
    const char *reason;           /* lock_orphaned: why it was not repaired */
    uint16_t taken_site;          /* Python Lock: where its lost holder took it (fs_py_site), 0: unknown */
    int taken_line;
};

/* ---- sem.c: a forked child's blocking wait on a semaphore ---- */
/* Tries to take `s` without blocking; if it is held by a lost thread, takes it over or says why
 * not (once per semaphore). `timed`: the wait has a deadline (then a semaphore not proven a lock
 * is left alone: it may be a signal, and the wait ends by itself). Returns 0 if the caller now
 * holds it, -1 if it must do its real, blocking wait. errno is unchanged. Async-signal-safe. */
int fs_sem_child_acquire(sem_t *s, int timed, struct fs_lock_outcome *out);

/* ---- mutex.c: pthread mutexes and rwlocks in a forked child ---- */
/* Before a blocking lock in a forked child: the forking thread's own lock gets its new tid; one
 * held by a lost thread is taken over (returns 1: the caller holds it now) or reported. */
int fs_mutex_child_lock(pthread_mutex_t *m, struct fs_lock_outcome *out);
int fs_rwlock_child_lock(pthread_rwlock_t *rw, int writer, struct fs_lock_outcome *out);
/* Before any other operation in a forked child: the forking thread's own lock gets its new tid. */
void fs_mutex_fix_forker(pthread_mutex_t *m);
void fs_rwlock_fix_forker(pthread_rwlock_t *rw);

/* ---- pylock.c: a forked child's wait on a CPython 3.13.1+ lock (PyMutex) ---- */
/* `s` is an untagged semaphore that a blocking wait (`timed`: with a deadline) is about to wait
 * on. If it is a CPython parking-lot waiter's and the lock it waits for is held by a thread lost
 * at the fork, repair it or say why not. Returns 1 if the wait must return EINTR (the lock is
 * free now: CPython takes it), 0 to wait as usual. */
int fs_pylock_child_wait(sem_t *s, int timed, struct fs_lock_outcome *out);
/* The child handler: each Lock that only lost threads held at the fork (python/held.c) gets a mark
 * in a bit CPython does not use, which any release clears -- a repair then needs the mark, so a
 * Lock released and taken again in the child is never touched. Async-signal-safe. */
void fs_pylock_child_mark(void);

#endif
