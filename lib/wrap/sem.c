// SPDX-License-Identifier: MIT
// The POSIX semaphore wrappers: the hot path of every CPython lock up to 3.13.0. Each calls the
// real function and records or checks the tag inline (core/sem_tag.h). In an armed child (a
// child of a multi-threaded fork) a blocking wait first goes through core/sem.c, which may hand
// it a lock that a lost thread held; what it found is reported here. sem_trywait never repairs:
// it cannot hang. With FORKSAFE_MODE=off nothing is tagged, so these find no tag and do nothing.
#include "wrap.h"
#include "core/sem_tag.h"

#include <errno.h>

/* The child's blocking wait: try, and if the semaphore is taken write the fork report (the
 * child may block for good), then what the repair found. 0: the caller holds it now. */
__attribute__((noinline, cold)) static int child_wait(sem_t *s) {
    int saved = errno;
    struct fs_lock_outcome out;
    int r = fs_sem_child_acquire(s, &out);
    if (out.would_block) fs_report_fork_if_owed();
    if (out.event) fs_report_lock_outcome(&out);
    errno = saved;
    return r;
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

FS_EXPORT int sem_trywait(sem_t *s) {
    int r = fs_real.sem_trywait(s);
    if (fs_likely(r == 0)) fs_sem_taken(s);
    return r;
}

FS_EXPORT int sem_wait(sem_t *s) {
    if (armed() && child_wait(s) == 0) return 0;
    int r = fs_real.sem_wait(s);
    if (r == 0) fs_sem_taken(s);
    return r;
}

FS_EXPORT int sem_timedwait(sem_t *s, const struct timespec *abstime) {
    if (armed() && child_wait(s) == 0) return 0;
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
    if (armed() && child_wait(s) == 0) return 0;
    int r = real(s, clock, abstime);
    if (r == 0) fs_sem_taken(s);
    return r;
}

FS_EXPORT int sem_post(sem_t *s) {
    fs_sem_releasing(s);
    return fs_real.sem_post(s);
}
