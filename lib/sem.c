// SPDX-License-Identifier: MIT
// The POSIX semaphore wrappers: the hot path (every CPython lock acquire and release goes
// through two of them) and orphaned-lock repair in forked children.
//
// How ownership is known without any shared structure: glibc's 64-bit sem_t is 32 bytes and
// uses only the first 16 (see FACTS.md). sem_init(s, 0, 1) -- a process-private lock -- writes a
// tag into bytes 16..31: a magic bound to the address, the id of the thread that last took it,
// and flags. Every successful wait stores the taker's id there; nothing else is touched.
// In a forked child, a wait that would block looks at the tag: if the lock was last taken by a
// thread lost at the fork, one thread takes it over with a compare-and-swap on the owner field.
// Repair runs in children before exec: async-signal-safe only.
#include "internal.h"

#include <errno.h>

#define FS_SEM_TAGGED (sizeof(sem_t) >= 32)
#define FS_SEM_MAGIC 0x6b5f4653u /* "FS_k" */
#define FS_SEM_NOT_A_LOCK 1u     /* released by a thread that had not taken it: signalling */
#define FS_SEM_REPORTED 2u       /* mode=report: already reported as orphaned */

struct sem_tag {
    _Atomic uint32_t magic;
    _Atomic uint32_t owner; /* registry id of the last taker, 0: none */
    _Atomic uint32_t flags;
    uint32_t unused;
};
_Static_assert(!FS_SEM_TAGGED || sizeof(sem_t) >= 16 + sizeof(struct sem_tag), "sem_t too small");

static inline struct sem_tag *tag_of(sem_t *s) { return (struct sem_tag *)((char *)s + 16); }
static inline uint32_t magic_for(const sem_t *s) { return FS_SEM_MAGIC ^ (uint32_t)((uintptr_t)s >> 4); }

static inline struct sem_tag *lock_tag(sem_t *s) {
    if (!FS_SEM_TAGGED) return NULL;
    struct sem_tag *t = tag_of(s);
    return atomic_load_explicit(&t->magic, memory_order_relaxed) == magic_for(s) ? t : NULL;
}

/* The hot path stays a leaf: anything rare (first use by a thread, a hand-off) is out of line. */
__attribute__((noinline, cold)) static void note_taken_slow(struct sem_tag *t) {
    atomic_store_explicit(&t->owner, fs_self_id(), memory_order_relaxed);
}

static inline void note_taken(sem_t *s) {
    struct sem_tag *t = lock_tag(s);
    if (!t) return;
    uint32_t id = fs_tls_self;
    if (fs_likely(id - 1 < FS_SELF_GONE - 1)) atomic_store_explicit(&t->owner, id, memory_order_relaxed);
    else note_taken_slow(t);
}

__attribute__((noinline, cold)) static void mark_not_a_lock(struct sem_tag *t) {
    if (atomic_load_explicit(&t->owner, memory_order_relaxed) != fs_self_id())
        atomic_fetch_or_explicit(&t->flags, FS_SEM_NOT_A_LOCK, memory_order_relaxed);
}

static inline void note_released(sem_t *s) {
    struct sem_tag *t = lock_tag(s);
    if (t && fs_unlikely(atomic_load_explicit(&t->owner, memory_order_relaxed) != fs_tls_self) &&
        !(atomic_load_explicit(&t->flags, memory_order_relaxed) & FS_SEM_NOT_A_LOCK))
        mark_not_a_lock(t);
}

/* In a child whose wait on `s` found it taken: if a lost thread holds it, take it over (mode
 * repair) or report it once (mode report). Returns 1 if the caller now holds the lock. */
static int take_orphan(sem_t *s) {
    struct sem_tag *t = lock_tag(s);
    if (!t || (atomic_load_explicit(&t->flags, memory_order_relaxed) & FS_SEM_NOT_A_LOCK)) return 0;
    uint32_t owner = atomic_load_explicit(&t->owner, memory_order_acquire);
    if (!fs_thread_is_lost(owner)) return 0;
    fs_child_report_now(); /* the fork report comes before the lock's */
    if (fs_setting(FS_SET_mode) != FS_MODE_REPAIR || fs_setting(FS_SET_repair_semaphores) != 0) {
        if (!(atomic_fetch_or(&t->flags, FS_SEM_REPORTED) & FS_SEM_REPORTED))
            fs_report_lock("lock_orphaned", s, owner);
        return 0;
    }
    uint32_t me = fs_self_id();
    if (me == 0 || !atomic_compare_exchange_strong(&t->owner, &owner, me)) return 0; /* lost the race */
    /* The count is normally 0 (the lost thread holds it); if someone posted meanwhile, take that
     * post too so that we hold exactly one lock either way. */
    FS_REAL(sem_trywait)(s);
    fs_report_lock("lock_repaired", s, owner);
    return 1;
}

/* The child's path for every wait: try without blocking; if the lock is taken, write the
 * pending fork report (the child may block for good) and try a repair. Returns 0 if the lock was
 * taken, -1 if the caller must do its real (blocking) wait. errno is unchanged. */
static int child_try(sem_t *s) {
    int saved = errno;
    int r = FS_REAL(sem_trywait)(s);
    if (r == 0) {
        note_taken(s);
    } else {
        fs_child_report_now();
        r = take_orphan(s) ? 0 : -1;
    }
    errno = saved;
    return r;
}

/* With FORKSAFE_MODE=off nothing is tagged, so the other wrappers find no tag and do nothing. */
FS_EXPORT int sem_init(sem_t *s, int pshared, unsigned value) {
    int r = FS_REAL(sem_init)(s, pshared, value);
    if (r == 0 && FS_SEM_TAGGED) {
        struct sem_tag *t = tag_of(s);
        int lock = pshared == 0 && value == 1 && fs_tracking;
        atomic_store_explicit(&t->owner, 0, memory_order_relaxed);
        atomic_store_explicit(&t->flags, 0, memory_order_relaxed);
        atomic_store_explicit(&t->magic, lock ? magic_for(s) : 0, memory_order_release);
    }
    return r;
}

FS_EXPORT int sem_destroy(sem_t *s) {
    if (FS_SEM_TAGGED) atomic_store_explicit(&tag_of(s)->magic, 0, memory_order_relaxed);
    return FS_REAL(sem_destroy)(s);
}

/* A failed trywait in a child: maybe the lock is orphaned. A failed trywait alone does not block
 * (Python 2.7 probes with one in every release()): it writes the fork report only with a repair. */
__attribute__((noinline, cold)) static int trywait_failed(sem_t *s, int r) {
    if (!atomic_load_explicit(&fs_child_armed, memory_order_relaxed)) return r;
    int saved = errno;
    int got = take_orphan(s);
    errno = saved;
    return got ? 0 : r;
}

FS_EXPORT int sem_trywait(sem_t *s) {
    int r = fs_real.sem_trywait(s);
    if (fs_likely(r == 0)) {
        note_taken(s);
        return 0;
    }
    return trywait_failed(s, r);
}

FS_EXPORT int sem_wait(sem_t *s) {
    if (fs_unlikely(atomic_load_explicit(&fs_child_armed, memory_order_relaxed)) && child_try(s) == 0) return 0;
    int r = fs_real.sem_wait(s);
    if (r == 0) note_taken(s);
    return r;
}

FS_EXPORT int sem_timedwait(sem_t *s, const struct timespec *abstime) {
    if (fs_unlikely(atomic_load_explicit(&fs_child_armed, memory_order_relaxed)) && child_try(s) == 0) return 0;
    int r = fs_real.sem_timedwait(s, abstime);
    if (r == 0) note_taken(s);
    return r;
}

FS_EXPORT int sem_clockwait(sem_t *s, clockid_t clock, const struct timespec *abstime) {
    int (*real)(sem_t *, clockid_t, const struct timespec *) = FS_REAL(sem_clockwait);
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    if (fs_unlikely(atomic_load_explicit(&fs_child_armed, memory_order_relaxed)) && child_try(s) == 0) return 0;
    int r = real(s, clock, abstime);
    if (r == 0) note_taken(s);
    return r;
}

FS_EXPORT int sem_post(sem_t *s) {
    note_released(s);
    return fs_real.sem_post(s);
}
