// SPDX-License-Identifier: MIT
// CPython 3.13.1+ locks (PyMutex) in a forked child. Their acquire and release are inline
// compare-and-swaps: the only thing a preload ever sees is a thread that has to wait, parking
// on a semaphore of its own (sem_init(s, 0, 0), then sem_wait or sem_clockwait). The parking
// lot keeps that semaphore inside a `struct wait_entry` on the waiter's stack, right after the
// address it waits on (docs/internals.md), so a blocking wait in an armed child can find the
// lock from the semaphore. Every read of memory found that way goes through fs_safe_read: a
// semaphore that is not a parking one only fails the checks.
//  - A 3.14 RLock (_PyRecursiveMutex) records its owner: if that owner is a thread lost at the
//    fork, the repair policy decides as for any lock. Repair: the owner and level are cleared and
//    the lock is made free (its "has parked waiters" bit kept), then the wait returns EINTR; the
//    parking lot unlinks the waiter and CPython's lock loop finds the lock free and takes it.
//  - A Lock has no owner. The parent proved, from the threads' `with` blocks, which Locks each
//    held at the fork (python/held.c); the child handler marked those that only lost threads held
//    (fs_pylock_child_mark). A marked Lock is repaired as an RLock is, then the wait returns EINTR.
//    Otherwise, when the waiting thread is the child's only thread and waits with no timeout,
//    nothing can ever release it: `lock_orphaned` (type python_lock) explains the hang.
// Runs in children before exec: async-signal-safe only.
#include "core.h"
#include "python/python.h"

#include <errno.h>

#define ENTRY_ADDR_OFF 8          /* struct wait_entry: park_arg, addr, sema */
#define STACK_REACH (512 * 1024)  /* the waiter's wait_entry is a few frames above us */
#define MAX_REPORTED 64

static uintptr_t reported[MAX_REPORTED]; /* locks already reported as orphaned */
static unsigned nreported;

static int report_once(uintptr_t lock) {
    for (unsigned i = 0; i < nreported && i < MAX_REPORTED; i++)
        if (reported[i] == lock) return 0;
    if (nreported < MAX_REPORTED) reported[nreported++] = lock;
    return 1;
}

/* The registry slot of the lost thread whose pthread_self() was `ident`, if no live thread of
 * the child has that ident too (a new thread may reuse a lost thread's stack, and its ident). */
static struct fs_thread *lost_by_ident(uint64_t ident) {
    struct fs_thread *lost = NULL;
    uint32_t used = fs_registry_used();
    for (uint32_t i = 0; i < used; i++) {
        struct fs_thread *t = &fs_threads[i];
        uint32_t s = atomic_load_explicit(&t->state, memory_order_acquire);
        if ((s == FS_T_LIVE || s == FS_T_LOST) && (uint64_t)t->self == ident) {
            if (s == FS_T_LIVE) return NULL;
            lost = t;
        }
    }
    return lost;
}

static fs_token token_of(const struct fs_thread *t) {
    return ((fs_token)t->gen << 32) | ((uint32_t)(t - fs_threads) + 1);
}

/* A bit of the PyMutex byte CPython never sets (1 locked, 2 has parked waiters); every unlock
 * writes the byte without it. */
#define HELD_MARK 0x80

/* Who held Lock `lock` at the fork, by the parent's proof: the one lost thread (and its record),
 * or NULL if none did, a thread that lives on did, or two threads seem to (one of them released
 * it inside its block: which one holds it now is unknown). */
static struct fs_thread *lost_holder(uintptr_t lock, const struct fs_py_held **rec) {
    struct fs_thread *holder = NULL;
    int n = fs_py_snapshot_valid() ? fs_py_held_count() : 0; /* the proof is of this fork's */
    for (int i = 0; i < n; i++) {
        const struct fs_py_held *h = fs_py_held_get(i);
        if (h->lock != lock) continue;
        struct fs_thread *t = lost_by_ident(h->ident);
        if (!t || (holder && holder != t)) return NULL;
        holder = t;
        *rec = h;
    }
    return holder;
}

FS_FORK_PATH void fs_pylock_child_mark(void) {
    const struct fs_py_lock_layout *l = fs_py_lock_layout();
    int n = l && fs_py_snapshot_valid() ? fs_py_held_count() : 0;
    for (int i = 0; i < n; i++) {
        const struct fs_py_held *h = fs_py_held_get(i), *rec;
        if (!lost_holder(h->lock, &rec)) continue;
        _Atomic uint8_t *bits = (_Atomic uint8_t *)(h->lock + (uintptr_t)l->lock.mutex_off);
        uint8_t v = atomic_load(bits);
        if ((v & 1) && !(v & HELD_MARK)) atomic_compare_exchange_strong(bits, &v, (uint8_t)(v | HELD_MARK));
    }
}

/* Frees a marked Lock as its holder's release would, keeping the note that threads are parked. */
static int release_marked(uintptr_t mutex) {
    _Atomic uint8_t *bits = (_Atomic uint8_t *)mutex;
    uint8_t v = atomic_load(bits);
    return (v & 1) && (v & HELD_MARK) &&
           atomic_compare_exchange_strong(bits, &v, (uint8_t)(v & ~(1u | HELD_MARK)));
}

int fs_pylock_child_wait(sem_t *s, int timed, struct fs_lock_outcome *out) {
    *out = (struct fs_lock_outcome){0};
    const struct fs_py_lock_layout *l = fs_py_lock_layout();
    char here;
    uintptr_t sp = (uintptr_t)&here, sem = (uintptr_t)s;
    if (!l || sem < sp || sem - sp > STACK_REACH) return 0; /* not a waiter's stack entry */
    int saved = errno;
    uintptr_t mutex = *(const uintptr_t *)(sem - ENTRY_ADDR_OFF); /* on our own stack */
    const struct fs_py_lock_kind *k = NULL;
    unsigned char obj[64];
    for (int i = 0; i < 2 && !k; i++) {
        const struct fs_py_lock_kind *c = i ? &l->rlock : &l->lock;
        uintptr_t type;
        if (!(i ? l->rlock_type : l->lock_type) || mutex < (uintptr_t)c->mutex_off) continue;
        uintptr_t base = mutex - (uintptr_t)c->mutex_off;
        if (fs_safe_read(base + (uintptr_t)c->type_off, &type, sizeof type) == 0 && type == c->type &&
            fs_safe_read(base, obj, sizeof obj) == 0)
            k = c;
    }
    errno = saved;
    if (!k) return 0;
    uintptr_t base = mutex - (uintptr_t)k->mutex_off;
    if (!(obj[k->mutex_off] & 1)) return 0; /* not locked (any more): a plain wait */
    out->would_block = 1;
    out->lock = (const void *)base;
    if (k == &l->lock) {
        out->type = "python_lock";
        const struct fs_py_held *rec = NULL;
        struct fs_thread *lost = (obj[k->mutex_off] & HELD_MARK) ? lost_holder(base, &rec) : NULL;
        if (lost) { /* held by a lost thread, and not released since the fork */
            out->owner = token_of(lost);
            out->taken_site = rec->site;
            out->taken_line = rec->line;
            const char *refused = fs_repair_refusal(FS_LOCK_PYTHON_LOCK, 1, timed);
            if (refused) {
                if (report_once(base)) {
                    out->event = "lock_orphaned";
                    out->reason = refused;
                }
                return 0;
            }
            if (!release_marked(mutex)) return 0;
            out->event = "lock_repaired";
            return 1;
        }
        /* no owner to check: explain a wait that can never end */
        if (!timed && fs_thread_count() == 1 && report_once(base)) {
            out->event = "lock_orphaned";
            out->reason = "owner_unknown";
        }
        return 0;
    }
    out->type = "python_rlock";
    uint64_t owner;
    __builtin_memcpy(&owner, obj + k->owner_off, sizeof owner);
    struct fs_thread *lost = lost_by_ident(owner);
    if (!lost) return 0; /* held by a thread of the child, or by one we do not know */
    out->owner = token_of(lost);
    const char *refused = fs_repair_refusal(FS_LOCK_PYTHON_RLOCK, 1, timed); /* an RLock is a lock by type */
    if (refused) {
        if (report_once(base)) {
            out->event = "lock_orphaned";
            out->reason = refused;
        }
        return 0;
    }
    /* Free it as its owner's release would, keeping the note that threads are parked on it. */
    _Atomic uint64_t *owner_field = (_Atomic uint64_t *)(mutex - (uintptr_t)k->mutex_off + (uintptr_t)k->owner_off);
    _Atomic uint64_t *level_field = (_Atomic uint64_t *)(mutex - (uintptr_t)k->mutex_off + (uintptr_t)k->level_off);
    _Atomic uint8_t *bits = (_Atomic uint8_t *)mutex;
    uint8_t v = atomic_load(bits);
    if (!(v & 1) || atomic_load(owner_field) != owner) return 0;
    atomic_store(level_field, 0);
    atomic_store(owner_field, 0);
    if (!atomic_compare_exchange_strong(bits, &v, (uint8_t)(v & ~1u))) return 0;
    out->event = "lock_repaired";
    return 1;
}
