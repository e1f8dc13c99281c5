// SPDX-License-Identifier: MIT
// The POSIX semaphore wrappers: the hot path (every CPython lock acquire and release goes
// through two of them) and orphaned-lock repair in forked children.
//
// How ownership is known without any shared structure: glibc's 64-bit sem_t is 32 bytes and
// uses only the first 16 (docs/internals.md). sem_init(s, 0, 1) -- a process-private semaphore
// that may be a lock -- writes a tag into bytes 16..31: a magic bound to the address, flags, and
// the token of the thread that last took it. Every successful wait stores the taker's token;
// every post checks that it comes from that taker while the semaphore is held, which is what
// proves it a lock. Nothing else is touched.
//
// The repair rule (the one place it is decided: may_repair). In a forked child, a *blocking*
// wait (sem_wait, sem_timedwait, sem_clockwait; never sem_trywait, which cannot hang) that finds
// the semaphore taken takes it over when:
//   1. its last taker was a thread alive at the fork and lost by it (its token, which no later
//      thread can carry, names a LOST registry slot);
//   2. it was never posted by a thread other than its taker, nor posted while free;
//   3. it is a proven lock (some thread took and released it before), or the waiting thread is
//      the child's only thread, so nobody else could ever post it;
//   4. FORKSAFE_MODE=repair and FORKSAFE_REPAIR_SEMAPHORES=on.
// When 1 holds but another does not, the child reports `lock_orphaned` once, with the reason.
// Repair runs in children before exec: async-signal-safe only.
#include "internal.h"

#include <errno.h>

#define FS_SEM_TAGGED (sizeof(sem_t) >= 32)
#define FS_SEM_MAGIC 0x6b5f4653u /* "FS_k" */
#define FS_SEM_NOT_A_LOCK 1u     /* posted by a thread that had not taken it, or while free */
#define FS_SEM_REPORTED 2u       /* already reported as orphaned */
#define FS_SEM_PROVEN 4u         /* taken and then released by one thread: used as a lock */

struct sem_tag {
    _Atomic uint32_t magic;
    _Atomic uint32_t flags;
    _Atomic fs_token owner; /* token of the last taker, 0: none */
};
_Static_assert(!FS_SEM_TAGGED || sizeof(sem_t) >= 16 + sizeof(struct sem_tag), "sem_t too small");

static inline struct sem_tag *tag_of(sem_t *s) { return (struct sem_tag *)((char *)s + 16); }
static inline uint32_t magic_for(const sem_t *s) { return FS_SEM_MAGIC ^ (uint32_t)((uintptr_t)s >> 4); }

static inline struct sem_tag *lock_tag(sem_t *s) {
    if (!FS_SEM_TAGGED) return NULL;
    struct sem_tag *t = tag_of(s);
    return atomic_load_explicit(&t->magic, memory_order_relaxed) == magic_for(s) ? t : NULL;
}

/* glibc's 64-bit semaphore: one 64-bit word, the value in its low 32 bits (docs/internals.md). */
static inline uint32_t sem_value(sem_t *s) {
    return (uint32_t)atomic_load_explicit((_Atomic uint64_t *)(void *)s, memory_order_relaxed);
}

/* The hot path stays a leaf: anything rare (first use by a thread, a hand-off) is out of line. */
__attribute__((noinline, cold)) static void note_taken_slow(struct sem_tag *t) {
    atomic_store_explicit(&t->owner, fs_self_token(), memory_order_relaxed);
}

static inline void note_taken(sem_t *s) {
    struct sem_tag *t = lock_tag(s);
    if (!t) return;
    fs_token me = fs_tls_token;
    if (fs_likely(me - 1 < FS_TOKEN_NONE - 1)) atomic_store_explicit(&t->owner, me, memory_order_relaxed);
    else note_taken_slow(t);
}

/* A post that is not the plain "taker releases it" of a proven lock: learn from it. */
__attribute__((noinline, cold)) static void note_released_slow(struct sem_tag *t, sem_t *s) {
    fs_token me = fs_self_token();
    if (me == 0) return; /* untracked thread: nothing to learn */
    int lock_like = atomic_load_explicit(&t->owner, memory_order_relaxed) == me && sem_value(s) == 0;
    atomic_fetch_or_explicit(&t->flags, lock_like ? FS_SEM_PROVEN : FS_SEM_NOT_A_LOCK, memory_order_relaxed);
}

static inline void note_released(sem_t *s) {
    struct sem_tag *t = lock_tag(s);
    if (!t) return;
    uint32_t f = atomic_load_explicit(&t->flags, memory_order_relaxed);
    if (f & FS_SEM_NOT_A_LOCK) return; /* known not to be a lock: nothing more to learn */
    if (fs_unlikely(!(f & FS_SEM_PROVEN) || atomic_load_explicit(&t->owner, memory_order_relaxed) != fs_tls_token ||
                    sem_value(s) != 0))
        note_released_slow(t, s);
}

/* Rule 3's second half: nobody but the waiting thread exists to post the semaphore. */
static int only_thread(void) { return fs_thread_count() == 1; }

/* The repair rule: NULL to repair, else why not (the `reason` of lock_orphaned). */
static const char *may_repair(uint32_t flags) {
    if (fs_setting(FS_SET_mode) != FS_MODE_REPAIR) return "report_mode";
    if (!fs_setting(FS_SET_repair_semaphores)) return "semaphore_repair_off";
    if (!(flags & FS_SEM_PROVEN) && !only_thread()) return "not_proven_lock";
    return NULL;
}

/* In a child whose blocking wait on `s` found it taken: if a lost thread holds it, take it over
 * or report why not (once). Returns 1 if the caller now holds the lock. */
static int take_orphan(sem_t *s) {
    struct sem_tag *t = lock_tag(s);
    if (!t) return 0;
    uint32_t flags = atomic_load_explicit(&t->flags, memory_order_relaxed);
    fs_token owner = atomic_load_explicit(&t->owner, memory_order_acquire);
    if ((flags & FS_SEM_NOT_A_LOCK) || !fs_token_lost(owner)) return 0;
    fs_child_report_now(); /* the fork report comes before the lock's */
    const char *refused = may_repair(flags);
    if (refused) {
        if (!(atomic_fetch_or(&t->flags, FS_SEM_REPORTED) & FS_SEM_REPORTED))
            fs_report_lock("lock_orphaned", s, owner, refused);
        return 0;
    }
    fs_token me = fs_self_token();
    if (me == 0 || !atomic_compare_exchange_strong(&t->owner, &owner, me)) return 0; /* lost the race */
    /* The count is normally 0 (the lost thread holds it); if someone posted meanwhile, take that
     * post too so that we hold exactly one lock either way. */
    FS_REAL(sem_trywait)(s);
    fs_report_lock("lock_repaired", s, owner, NULL);
    return 1;
}

/* The child's path for a blocking wait: try without blocking; if the semaphore is taken, write
 * the pending fork report (the child may block for good) and try a repair. Returns 0 if it was
 * taken, -1 if the caller must do its real (blocking) wait. errno is unchanged. */
__attribute__((noinline, cold)) static int child_try(sem_t *s) {
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

/* sem_trywait cannot hang, so it never repairs: in a child it behaves as without the shim. */
FS_EXPORT int sem_trywait(sem_t *s) {
    int r = fs_real.sem_trywait(s);
    if (fs_likely(r == 0)) note_taken(s);
    return r;
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
