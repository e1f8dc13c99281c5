// SPDX-License-Identifier: MIT
// The semaphore tag: how ownership is known without any shared structure, on the hot path of
// every CPython lock (inlined into the wrappers in wrap/sem.c).
// glibc's 64-bit sem_t is 32 bytes and uses only the first 16 (docs/internals.md). sem_init(s, 0,
// 1) -- a process-private semaphore that may be a lock -- writes a tag into bytes 16..31: a magic
// bound to the address, flags, and the token of the thread that last took it. Every successful
// wait stores the taker's token; every post checks that it comes from that taker while the
// semaphore is held, which is what proves it a lock. Nothing else is touched; no allocation.
#ifndef FORKSAFE_SEM_TAG_H
#define FORKSAFE_SEM_TAG_H

#include "core.h"

#include <limits.h>

#define FS_SEM_TAGGED (sizeof(sem_t) >= 32)
#define FS_SEM_MAGIC 0x6b5f4653u /* "FS_k" */
/* Flags, in the high half of the tag's state word (the magic is the low half). */
#define FS_SEM_NOT_A_LOCK 1u     /* posted by a thread that had not taken it, or while free */
#define FS_SEM_REPORTED 2u       /* already reported as orphaned */
#define FS_SEM_PROVEN 4u         /* taken and then released by one thread: used as a lock */
#define FS_SEM_FLAG(f) ((uint64_t)(f) << 32)

struct fs_sem_tag {
    _Atomic uint64_t state; /* magic | flags << 32: one load tells "a proven lock, nothing odd" */
    _Atomic fs_token owner; /* token of the last taker, 0: none */
};
_Static_assert(!FS_SEM_TAGGED || sizeof(sem_t) >= 16 + sizeof(struct fs_sem_tag), "sem_t too small");

static inline struct fs_sem_tag *fs_sem_tag_at(sem_t *s) { return (struct fs_sem_tag *)((char *)s + 16); }
static inline uint32_t fs_sem_magic(const sem_t *s) { return FS_SEM_MAGIC ^ (uint32_t)((uintptr_t)s >> 4); }
static inline uint32_t fs_sem_flags(struct fs_sem_tag *t) {
    return (uint32_t)(atomic_load_explicit(&t->state, memory_order_relaxed) >> 32);
}

/* The tag of a semaphore that may be a lock, or NULL. */
static inline struct fs_sem_tag *fs_sem_tag(sem_t *s) {
    if (!FS_SEM_TAGGED) return NULL;
    struct fs_sem_tag *t = fs_sem_tag_at(s);
    return (uint32_t)atomic_load_explicit(&t->state, memory_order_relaxed) == fs_sem_magic(s) ? t : NULL;
}

/* glibc's 64-bit semaphore: one 64-bit word, the value in its low 32 bits and the number of
 * waiters in its high 32 (docs/internals.md). */
static inline _Atomic uint64_t *fs_sem_word(sem_t *s) { return (_Atomic uint64_t *)(void *)s; }
static inline uint32_t fs_sem_value(sem_t *s) {
    return (uint32_t)atomic_load_explicit(fs_sem_word(s), memory_order_relaxed);
}

/* sem_init: tag a process-private semaphore initialised to 1 (with tracking on). */
void fs_sem_tag_init(sem_t *s, int pshared, unsigned value);
void fs_sem_tag_destroy(sem_t *s);
/* The rare halves, out of line so that the hot path stays short. */
void fs_sem_taken_slow(struct fs_sem_tag *t);
void fs_sem_released_slow(struct fs_sem_tag *t, sem_t *s);

static inline void fs_sem_note_taken(struct fs_sem_tag *t) {
    fs_token me = fs_tls_token;
    if (fs_likely(me + 1 > 1)) atomic_store_explicit(&t->owner, me, memory_order_relaxed); /* not 0, not NONE */
    else fs_sem_taken_slow(t);
}

static inline void fs_sem_taken(sem_t *s) {
    struct fs_sem_tag *t = fs_sem_tag(s);
    if (t) fs_sem_note_taken(t);
}

/* The uncontended halves of glibc's own sem_trywait and sem_post (nptl/sem_waitcommon.c,
 * nptl/sem_post.c) on a tagged semaphore: the same 64-bit compare-and-swap on the same word, so
 * that the common case never calls into libc. Anything else -- no value to take, a waiter to
 * wake, a lost race -- goes to the real function. Tags are written only when fs_sem_tag_init
 * has checked that this glibc's semaphore has the layout these rely on. Return 0 when done. */
static inline int fs_sem_fast_trywait(sem_t *s) {
    struct fs_sem_tag *t = fs_sem_tag(s);
    if (!t) return -1;
    uint64_t d = atomic_load_explicit(fs_sem_word(s), memory_order_relaxed);
    if ((uint32_t)d == 0 ||
        !atomic_compare_exchange_weak_explicit(fs_sem_word(s), &d, d - 1, memory_order_acquire, memory_order_relaxed))
        return -1;
    fs_sem_note_taken(t);
    return 0;
}

/* The plain case -- a proven lock, released by its taker while held (value 0) and with nobody
 * waiting (the whole word is 0) -- is three loads and one compare-and-swap. Any other post goes
 * through fs_sem_released_slow, which learns from it, then to the real function. */
static inline int fs_sem_fast_post(sem_t *s) {
    struct fs_sem_tag *t = fs_sem_tag_at(s);
    if (!FS_SEM_TAGGED ||
        atomic_load_explicit(&t->state, memory_order_relaxed) != (FS_SEM_FLAG(FS_SEM_PROVEN) | fs_sem_magic(s)) ||
        atomic_load_explicit(&t->owner, memory_order_relaxed) != fs_tls_token)
        return -1;
    uint64_t d = 0;
    return atomic_compare_exchange_strong_explicit(fs_sem_word(s), &d, 1, memory_order_release, memory_order_relaxed)
               ? 0 : -1;
}

/* Before a post that fs_sem_fast_post did not do: learn from it if the semaphore is tagged. */
static inline void fs_sem_releasing(sem_t *s) {
    struct fs_sem_tag *t = fs_sem_tag(s);
    if (t && !(fs_sem_flags(t) & FS_SEM_NOT_A_LOCK)) fs_sem_released_slow(t, s);
}

#endif
