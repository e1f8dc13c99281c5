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

#define FS_SEM_TAGGED (sizeof(sem_t) >= 32)
#define FS_SEM_MAGIC 0x6b5f4653u /* "FS_k" */
#define FS_SEM_NOT_A_LOCK 1u     /* posted by a thread that had not taken it, or while free */
#define FS_SEM_REPORTED 2u       /* already reported as orphaned */
#define FS_SEM_PROVEN 4u         /* taken and then released by one thread: used as a lock */

struct fs_sem_tag {
    _Atomic uint32_t magic;
    _Atomic uint32_t flags;
    _Atomic fs_token owner; /* token of the last taker, 0: none */
};
_Static_assert(!FS_SEM_TAGGED || sizeof(sem_t) >= 16 + sizeof(struct fs_sem_tag), "sem_t too small");

static inline struct fs_sem_tag *fs_sem_tag_at(sem_t *s) { return (struct fs_sem_tag *)((char *)s + 16); }
static inline uint32_t fs_sem_magic(const sem_t *s) { return FS_SEM_MAGIC ^ (uint32_t)((uintptr_t)s >> 4); }

/* The tag of a semaphore that may be a lock, or NULL. */
static inline struct fs_sem_tag *fs_sem_tag(sem_t *s) {
    if (!FS_SEM_TAGGED) return NULL;
    struct fs_sem_tag *t = fs_sem_tag_at(s);
    return atomic_load_explicit(&t->magic, memory_order_relaxed) == fs_sem_magic(s) ? t : NULL;
}

/* glibc's 64-bit semaphore: one 64-bit word, the value in its low 32 bits (docs/internals.md). */
static inline uint32_t fs_sem_value(sem_t *s) {
    return (uint32_t)atomic_load_explicit((_Atomic uint64_t *)(void *)s, memory_order_relaxed);
}

/* sem_init: tag a process-private semaphore initialised to 1 (with tracking on). */
void fs_sem_tag_init(sem_t *s, int pshared, unsigned value);
void fs_sem_tag_destroy(sem_t *s);
/* The rare halves, out of line so that the hot path stays a leaf. */
void fs_sem_taken_slow(struct fs_sem_tag *t);
void fs_sem_released_slow(struct fs_sem_tag *t, sem_t *s);

static inline void fs_sem_taken(sem_t *s) {
    struct fs_sem_tag *t = fs_sem_tag(s);
    if (!t) return;
    fs_token me = fs_tls_token;
    if (fs_likely(me - 1 < FS_TOKEN_NONE - 1)) atomic_store_explicit(&t->owner, me, memory_order_relaxed);
    else fs_sem_taken_slow(t);
}

/* Before the real post. The plain case -- a proven lock released by its taker while held -- is
 * three loads and no store. */
static inline void fs_sem_releasing(sem_t *s) {
    struct fs_sem_tag *t = fs_sem_tag(s);
    if (!t) return;
    uint32_t f = atomic_load_explicit(&t->flags, memory_order_relaxed);
    if (f & FS_SEM_NOT_A_LOCK) return; /* known not to be a lock: nothing more to learn */
    if (fs_unlikely(!(f & FS_SEM_PROVEN) || atomic_load_explicit(&t->owner, memory_order_relaxed) != fs_tls_token ||
                    fs_sem_value(s) != 0))
        fs_sem_released_slow(t, s);
}

#endif
