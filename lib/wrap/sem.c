// SPDX-License-Identifier: MIT
// The POSIX semaphore wrappers: the hot path of every CPython lock up to 3.13.0. On a tagged
// semaphore the uncontended trywait and post are done inline with glibc's own atomics, tag
// included (core/sem_tag.h); everything else calls the real function. In an armed child (a
// child of a multi-threaded fork) a blocking wait first goes through core/sem.c, which may hand
// it a lock that a lost thread held; what it found is reported here. sem_trywait never repairs:
// it cannot hang. With FORKSAFE_MODE=off nothing is tagged, so these find no tag and do nothing.
#include "wrap.h"
#include "core/sem_tag.h"

#include <errno.h>

/* The child's blocking wait: try, and if the semaphore is taken write the fork report (the
 * child may block for good), then what the repair found. An untagged semaphore may be a CPython
 * 3.13.1+ thread parking on a PyMutex (core/pylock.c). Returns 0: the caller holds it now;
 * 1: return EINTR (a PyMutex was freed: CPython retakes it); -1: do the real wait. */
__attribute__((noinline, cold)) static int child_wait(sem_t *s, int timed) {
    int saved = errno;
    struct fs_lock_outcome out, py;
    int r = fs_sem_child_acquire(s, timed, &out);
    if (r != 0 && !out.event && !fs_sem_tag(s)) {
        if (fs_pylock_child_wait(s, timed, &py)) r = 1;
        if (py.event) out = py;
        out.would_block |= py.would_block;
    }
    if (out.would_block) fs_report_fork_if_owed();
    if (out.event) fs_report_lock_outcome(&out);
    errno = saved;
    return r;
}

/* In an armed child: 1 if the wrapper returns `*ret` (with errno set) without the real wait. */
static inline int child_path(sem_t *s, int timed, int *ret) {
    int c = child_wait(s, timed);
    if (c < 0) return 0;
    *ret = c == 0 ? 0 : -1;
    if (c == 1) errno = EINTR;
    return 1;
}

static inline int armed(void) { return fs_unlikely(atomic_load_explicit(&fs_proc.armed, memory_order_relaxed)); }

FS_EXPORT int sem_init(sem_t *s, int pshared, unsigned value) {
    int r = FS_REAL(sem_init)(s, pshared, value);
    if (r == 0) fs_sem_tag_init(s, pshared, value);
    return r;
}

FS_EXPORT int sem_destroy(sem_t *s) {
    fs_sem_tag_destroy(s);
    return FS_REAL(sem_destroy)(s);
}

/* The slow halves, apart, so that the fast paths need no saved registers and tail-call them. */
__attribute__((noinline)) static int trywait_slow(sem_t *s) {
    int r = fs_real.sem_trywait(s);
    if (r == 0) fs_sem_taken(s);
    return r;
}

__attribute__((noinline)) static int post_slow(sem_t *s) {
    fs_sem_releasing(s);
    return fs_real.sem_post(s);
}

FS_EXPORT int sem_trywait(sem_t *s) {
    if (fs_likely(fs_sem_fast_trywait(s) == 0)) return 0;
    return trywait_slow(s);
}

FS_EXPORT int sem_wait(sem_t *s) {
    int ret;
    if (armed() && child_path(s, 0, &ret)) return ret;
    int r = fs_real.sem_wait(s);
    if (r == 0) fs_sem_taken(s);
    return r;
}

FS_EXPORT int sem_timedwait(sem_t *s, const struct timespec *abstime) {
    int ret;
    if (armed() && child_path(s, 1, &ret)) return ret;
    int r = fs_real.sem_timedwait(s, abstime);
    if (r == 0) fs_sem_taken(s);
    return r;
}

FS_EXPORT int sem_clockwait(sem_t *s, clockid_t clock, const struct timespec *abstime) {
    int (*real)(sem_t *, clockid_t, const struct timespec *) = FS_REAL(sem_clockwait);
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    int ret;
    if (armed() && child_path(s, 1, &ret)) return ret;
    int r = real(s, clock, abstime);
    if (r == 0) fs_sem_taken(s);
    return r;
}

FS_EXPORT int sem_post(sem_t *s) {
    if (fs_likely(fs_sem_fast_post(s) == 0)) return 0;
    return post_slow(s);
}
