// SPDX-License-Identifier: MIT
// Semaphores: the tag's rare paths, and a forked child's blocking wait on a semaphore that a
// thread lost at the fork holds. The hot path is inline in sem_tag.h; the wrappers are in
// wrap/sem.c. A child's wait takes the semaphore over only when the repair policy (repair.c)
// allows it and the semaphore
//   - was last taken by a thread alive at the fork and lost by it (its token names a LOST slot);
//   - was never posted by a thread other than its taker, nor posted while free (FS_SEM_NOT_A_LOCK).
// sem_trywait never comes here: it cannot hang, so it behaves as without the shim.
// Runs in children before exec: async-signal-safe only.
#include "sem_tag.h"

#include <errno.h>

/* Does this glibc's semaphore look as sem_tag.h expects: one 64-bit word holding the value (and
 * the waiter count above it), then `private`? Checked once on a semaphore of our own. */
static int layout_ok(void) {
    static _Atomic int known; /* 0 unknown, 1 yes, 2 no */
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (fs_likely(k)) return k == 1;
    sem_t probe;
    uint64_t v0 = 0, v1 = 0, v2 = 0;
    int priv = -1, ok = FS_REAL(sem_init)(&probe, 0, 5) == 0;
    if (ok) {
        __builtin_memcpy(&v0, &probe, 8);
        __builtin_memcpy(&priv, (char *)&probe + 8, sizeof priv);
        ok = FS_REAL(sem_trywait)(&probe) == 0;
        __builtin_memcpy(&v1, &probe, 8);
        ok = ok && FS_REAL(sem_post)(&probe) == 0;
        __builtin_memcpy(&v2, &probe, 8);
        FS_REAL(sem_destroy)(&probe);
    }
    ok = ok && v0 == 5 && v1 == 4 && v2 == 5 && priv == 0;
    atomic_store(&known, ok ? 1 : 2);
    return ok;
}

void fs_sem_tag_init(sem_t *s, int pshared, unsigned value) {
    if (!FS_SEM_TAGGED) return;
    struct fs_sem_tag *t = fs_sem_tag_at(s);
    int lock = pshared == 0 && value == 1 && fs_proc.tracking && layout_ok();
    atomic_store_explicit(&t->owner, 0, memory_order_relaxed);
    atomic_store_explicit(&t->state, lock ? fs_sem_magic(s) : 0, memory_order_release);
}

void fs_sem_tag_destroy(sem_t *s) {
    if (FS_SEM_TAGGED) atomic_store_explicit(&fs_sem_tag_at(s)->state, 0, memory_order_relaxed);
}

__attribute__((cold)) void fs_sem_taken_slow(struct fs_sem_tag *t) {
    atomic_store_explicit(&t->owner, fs_self_token(), memory_order_relaxed);
}

/* A post that is not the plain "taker releases it" of a proven lock: learn from it. A post by
 * its taker while it is held proves a lock; any other post (by another thread, or while free)
 * says it is not one. (A proven lock's taker posting while others wait comes here too, and is
 * still a lock.) */
__attribute__((cold)) void fs_sem_released_slow(struct fs_sem_tag *t, sem_t *s) {
    fs_token me = fs_self_token();
    if (me == 0) return; /* untracked thread: nothing to learn */
    int lock_like = atomic_load_explicit(&t->owner, memory_order_relaxed) == me && fs_sem_value(s) == 0;
    uint32_t flag = lock_like ? FS_SEM_PROVEN : FS_SEM_NOT_A_LOCK;
    if (!(fs_sem_flags(t) & flag)) atomic_fetch_or_explicit(&t->state, FS_SEM_FLAG(flag), memory_order_relaxed);
}

/* `s` is taken: is it held by a lost thread, and may we take it over? */
static int take_orphan(sem_t *s, int timed, struct fs_lock_outcome *out) {
    struct fs_sem_tag *t = fs_sem_tag(s);
    if (!t) return 0;
    uint32_t flags = fs_sem_flags(t);
    fs_token owner = atomic_load_explicit(&t->owner, memory_order_acquire);
    if ((flags & FS_SEM_NOT_A_LOCK) || !fs_token_lost(owner)) return 0;
    out->lock = s;
    out->type = "semaphore";
    out->owner = owner;
    const char *refused = fs_repair_refusal(FS_LOCK_SEMAPHORE, (flags & FS_SEM_PROVEN) != 0, timed);
    if (refused) {
        if (!(atomic_fetch_or(&t->state, FS_SEM_FLAG(FS_SEM_REPORTED)) & FS_SEM_FLAG(FS_SEM_REPORTED))) {
            out->event = "lock_orphaned";
            out->reason = refused;
        }
        return 0;
    }
    fs_token me = fs_self_token();
    if (me == 0 || !atomic_compare_exchange_strong(&t->owner, &owner, me)) return 0; /* lost the race */
    /* The count is normally 0 (the lost thread holds it); if someone posted meanwhile, take that
     * post too so that we hold exactly one lock either way. */
    FS_REAL(sem_trywait)(s);
    out->event = "lock_repaired";
    return 1;
}

int fs_sem_child_acquire(sem_t *s, int timed, struct fs_lock_outcome *out) {
    int saved = errno;
    *out = (struct fs_lock_outcome){0};
    int r = FS_REAL(sem_trywait)(s);
    if (r == 0) {
        fs_sem_taken(s);
    } else {
        out->would_block = 1;
        r = take_orphan(s, timed, out) ? 0 : -1;
    }
    errno = saved;
    return r;
}
