// SPDX-License-Identifier: MIT
// pthread mutex and rwlock wrappers: on the hottest path of every C library (and of CPython's
// GIL), so in a process that has not forked each is one well-predicted test and a jump to the
// real function. In a forked child (core/mutex.c): the forking thread's own locks get its new
// tid, and a blocking lock on one that a lost thread holds is taken over or reported -- after
// the child's fork report, since the child may block for good. Trylocks never repair.
#include "wrap.h"

#include <errno.h>

static inline int forked(void) { return fs_unlikely(fs_proc.forked); }

/* In a child, most locks are free when taken (owner 0: nothing to check or fix) and are not the
 * forking thread's (owner not its old tid): both tested inline, so a worker process of a
 * pre-forking server pays a load and a compare per call, not a call into core/mutex.c. */
static inline int owner(pthread_mutex_t *m) {
    return atomic_load_explicit((_Atomic int *)&m->__data.__owner, memory_order_relaxed);
}
static inline int held(pthread_mutex_t *m) { return owner(m) != 0; }
static inline int forkers(pthread_mutex_t *m) { return fs_unlikely(owner(m) == fs_proc.forker_old_tid); }

/* What a child's blocking lock found: the fork report first, then the lock's event. */
static void report(struct fs_lock_outcome *out, void *caller) {
    if (out->would_block) fs_report_fork_if_owed();
    if (out->event) {
        out->waiter_pc = (uintptr_t)caller;
        fs_report_lock_outcome(out);
    }
}

__attribute__((noinline, cold)) static int mutex_child(pthread_mutex_t *m, void *caller) {
    int saved = errno;
    struct fs_lock_outcome out;
    int got = fs_mutex_child_lock(m, &out);
    report(&out, caller);
    errno = saved;
    return got;
}

__attribute__((noinline, cold)) static int rwlock_child(pthread_rwlock_t *rw, int writer, void *caller) {
    int saved = errno;
    struct fs_lock_outcome out;
    int got = fs_rwlock_child_lock(rw, writer, &out);
    report(&out, caller);
    errno = saved;
    return got;
}

FS_EXPORT int pthread_mutex_lock(pthread_mutex_t *m) {
    if (forked() && held(m) && mutex_child(m, __builtin_return_address(0))) return 0;
    return fs_real.mutex_lock(m);
}

FS_EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *t) {
    if (forked() && held(m) && mutex_child(m, __builtin_return_address(0))) return 0;
    return FS_REAL(mutex_timedlock)(m, t);
}

FS_EXPORT int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t c, const struct timespec *t) {
    if (!FS_REAL(mutex_clocklock)) return ENOSYS;
    if (forked() && held(m) && mutex_child(m, __builtin_return_address(0))) return 0;
    return fs_real.mutex_clocklock(m, c, t);
}

FS_EXPORT int pthread_mutex_trylock(pthread_mutex_t *m) {
    if (forked() && forkers(m)) fs_mutex_fix_forker(m);
    return fs_real.mutex_trylock(m);
}

FS_EXPORT int pthread_mutex_unlock(pthread_mutex_t *m) {
    if (forked() && forkers(m)) fs_mutex_fix_forker(m);
    return fs_real.mutex_unlock(m);
}

FS_EXPORT int pthread_rwlock_rdlock(pthread_rwlock_t *rw) {
    if (forked() && rwlock_child(rw, 0, __builtin_return_address(0))) return 0;
    return FS_REAL(rwlock_rdlock)(rw);
}

FS_EXPORT int pthread_rwlock_wrlock(pthread_rwlock_t *rw) {
    if (forked() && rwlock_child(rw, 1, __builtin_return_address(0))) return 0;
    return FS_REAL(rwlock_wrlock)(rw);
}

FS_EXPORT int pthread_rwlock_timedrdlock(pthread_rwlock_t *rw, const struct timespec *t) {
    if (forked() && rwlock_child(rw, 0, __builtin_return_address(0))) return 0;
    return FS_REAL(rwlock_timedrdlock)(rw, t);
}

FS_EXPORT int pthread_rwlock_timedwrlock(pthread_rwlock_t *rw, const struct timespec *t) {
    if (forked() && rwlock_child(rw, 1, __builtin_return_address(0))) return 0;
    return FS_REAL(rwlock_timedwrlock)(rw, t);
}

FS_EXPORT int pthread_rwlock_clockrdlock(pthread_rwlock_t *rw, clockid_t c, const struct timespec *t) {
    if (!FS_REAL(rwlock_clockrdlock)) return ENOSYS;
    if (forked() && rwlock_child(rw, 0, __builtin_return_address(0))) return 0;
    return fs_real.rwlock_clockrdlock(rw, c, t);
}

FS_EXPORT int pthread_rwlock_clockwrlock(pthread_rwlock_t *rw, clockid_t c, const struct timespec *t) {
    if (!FS_REAL(rwlock_clockwrlock)) return ENOSYS;
    if (forked() && rwlock_child(rw, 1, __builtin_return_address(0))) return 0;
    return fs_real.rwlock_clockwrlock(rw, c, t);
}

FS_EXPORT int pthread_rwlock_tryrdlock(pthread_rwlock_t *rw) {
    if (forked()) fs_rwlock_fix_forker(rw);
    return FS_REAL(rwlock_tryrdlock)(rw);
}

FS_EXPORT int pthread_rwlock_trywrlock(pthread_rwlock_t *rw) {
    if (forked()) fs_rwlock_fix_forker(rw);
    return FS_REAL(rwlock_trywrlock)(rw);
}

FS_EXPORT int pthread_rwlock_unlock(pthread_rwlock_t *rw) {
    if (forked()) fs_rwlock_fix_forker(rw);
    return FS_REAL(rwlock_unlock)(rw);
}
