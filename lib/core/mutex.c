// SPDX-License-Identifier: MIT
// pthread mutexes and rwlocks in a forked child. glibc records the owner's tid in every mutex
// (`__data.__owner`, all types) and the writer's in an rwlock (`__data.__cur_writer`)
// (docs/internals.md), so in a child the owner of a held lock can be checked:
//  - held by the forking thread, under its tid in the parent (the child's only thread has a new
//    tid): glibc's own checks would then fail -- an error-checking mutex's unlock returns EPERM,
//    a recursive relock deadlocks -- so when that thread touches the lock its old tid is replaced
//    by its new one, in every forked child, multi-threaded fork or not;
//  - held by a thread that was alive at a fork and lost by it (its tid is one the registry or
//    the fork record saw lost, and no thread of this process has it now): a thread about to
//    block on it takes it over, under the repair policy (core/repair.c) -- ownership moved to
//    the caller, the lock word left as it is (held, waiters noted), a recursive count reset to 1;
//  - never repaired, only reported: process-shared locks (another process may hold them), robust
//    mutexes (their owner-died protocol does not fire for a thread lost at fork), priority-
//    inheritance and priority-protect mutexes (the kernel manages their lock word).
// A read-held rwlock names no reader: a writer that would wait on one in a child with no other
// thread is told so (lock_orphaned), nothing more. Trylocks never repair: they cannot hang.
// Runs in children before exec: async-signal-safe only.
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* glibc's mutex kind bits (nptl/pthreadP.h; stable ABI: static initialisers depend on them). */
#define KIND_TYPE_MASK 3       /* normal 0, recursive 1, error-checking 2, adaptive 3 */
#define KIND_RECURSIVE 1
#define KIND_ROBUST 16
#define KIND_PRIO_INHERIT 32
#define KIND_PRIO_PROTECT 64
#define KIND_PSHARED 128

/* ---- who was lost ---- */

/* Is `tid` a thread of this process now? (A lost thread's tid may in time be reused.) */
static int our_thread(pid_t tid) {
    char path[48] = "/proc/self/task/", *p = path + 16;
    char digits[12];
    int n = 0;
    for (unsigned v = (unsigned)tid; n == 0 || v; v /= 10) digits[n++] = (char)('0' + v % 10);
    while (n) *p++ = digits[--n];
    *p = '\0';
    int saved = errno;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) close(fd);
    errno = saved;
    return fd >= 0;
}

/* The tids of threads lost at the forks on the way to this process, sorted: the registry's LOST
 * slots (any fork) and the threads the last fork's record listed. Built once per child, at the
 * first contended lock, so that a contended lock costs a binary search, not a scan. */
static pid_t lost_sorted[FS_MAX_LISTED];
static int nlost;
static uint32_t lost_built_seq; /* fs_proc.fork_seq it was built for; 0: never */

static void add_lost(pid_t tid) {
    if (tid > 0 && nlost < FS_MAX_LISTED) lost_sorted[nlost++] = tid;
}

/* Heapsort: n log n, in place, no allocation (a long fork chain may list thousands). */
static void sift(pid_t *a, int root, int n) {
    for (int child; (child = 2 * root + 1) < n; root = child) {
        if (child + 1 < n && a[child + 1] > a[child]) child++;
        if (a[root] >= a[child]) return;
        pid_t t = a[root];
        a[root] = a[child];
        a[child] = t;
    }
}

static void sort_tids(pid_t *a, int n) {
    for (int i = n / 2 - 1; i >= 0; i--) sift(a, i, n);
    for (int end = n - 1; end > 0; end--) {
        pid_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift(a, 0, end);
    }
}

static void build_lost(void) {
    nlost = 0;
    uint32_t used = fs_registry_used();
    for (uint32_t i = 0; i < used; i++)
        if (atomic_load_explicit(&fs_threads[i].state, memory_order_acquire) == FS_T_LOST) add_lost(fs_threads[i].tid);
    if (fs_proc.fork_recorded) {
        const struct fs_fork_record *r = &fs_fork_record;
        int listed = r->ntasks < FS_MAX_LISTED ? r->ntasks : FS_MAX_LISTED;
        for (int i = 0; i < listed; i++)
            if (r->tasks[i] != r->forking_tid) add_lost(r->tasks[i]);
    }
    sort_tids(lost_sorted, nlost);
    lost_built_seq = fs_proc.fork_seq;
}

/* Was `tid` a thread alive at a fork on the way to this process and lost by it -- and not a
 * thread of this process now (a lost thread's tid may in time be reused)? */
static int lost_tid(pid_t tid) {
    if (tid <= 0 || tid == fs_proc.pid) return 0;
    if (lost_built_seq != fs_proc.fork_seq) build_lost();
    int lo = 0, hi = nlost;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (lost_sorted[mid] < tid) lo = mid + 1;
        else hi = mid;
    }
    return lo < nlost && lost_sorted[lo] == tid && !our_thread(tid);
}

static fs_token token_for_tid(pid_t tid) {
    uint32_t used = fs_registry_used();
    for (uint32_t i = 0; i < used; i++) {
        const struct fs_thread *t = &fs_threads[i];
        if (t->tid == tid && atomic_load_explicit(&t->state, memory_order_acquire) == FS_T_LOST)
            return ((fs_token)t->gen << 32) | (i + 1);
    }
    return 0;
}

/* ---- reported once ---- */

#define MAX_REPORTED 64
static const void *reported[MAX_REPORTED];
static unsigned nreported;

static int report_once(const void *lock) {
    for (unsigned i = 0; i < nreported && i < MAX_REPORTED; i++)
        if (reported[i] == lock) return 0;
    if (nreported < MAX_REPORTED) reported[nreported++] = lock;
    return 1;
}

/* What a child's lock found about `lock`, held by `owner`: the common part of both outcomes. */
static void outcome(struct fs_lock_outcome *out, const void *lock, const char *type, pid_t owner) {
    out->lock = lock;
    out->type = type;
    out->owner = token_for_tid(owner);
    out->owner_tid = owner;
}

static int repaired(struct fs_lock_outcome *out, const void *lock, const char *type, pid_t owner) {
    outcome(out, lock, type, owner);
    out->event = "lock_repaired";
    return 1;
}

static void orphaned(struct fs_lock_outcome *out, const void *lock, const char *type, pid_t owner, const char *why) {
    outcome(out, lock, type, owner);
    if (report_once(lock)) {
        out->event = "lock_orphaned";
        out->reason = why;
    }
}

/* ---- the forking thread's own locks ---- */

/* In a forked child, the thread that forked is the one whose tid is the child's pid. */
static int caller_is_forker(void) { return fs_gettid() == fs_proc.pid; }

/* Only a process-private lock is the child's own copy. A process-shared one (robust ones are
 * too) lives in memory the parent still uses: an owner equal to the forker's old tid there is the
 * parent's thread holding it now, and writing the child's tid into it would take the parent's
 * lock from it (uWSGI's master and workers share robust mutexes). */
void fs_mutex_fix_forker(pthread_mutex_t *m) {
    _Atomic int *owner = (_Atomic int *)&m->__data.__owner;
    int o = atomic_load_explicit(owner, memory_order_relaxed);
    if (o != 0 && o == fs_proc.forker_old_tid && !(m->__data.__kind & (KIND_PSHARED | KIND_ROBUST)) &&
        caller_is_forker())
        atomic_compare_exchange_strong(owner, &o, (int)fs_gettid());
}

void fs_rwlock_fix_forker(pthread_rwlock_t *rw) {
    _Atomic int *writer = (_Atomic int *)&rw->__data.__cur_writer;
    int w = atomic_load_explicit(writer, memory_order_relaxed);
    if (w != 0 && w == fs_proc.forker_old_tid && !rw->__data.__shared && caller_is_forker())
        atomic_compare_exchange_strong(writer, &w, (int)fs_gettid());
}

/* ---- a child's blocking lock ---- */

int fs_mutex_child_lock(pthread_mutex_t *m, struct fs_lock_outcome *out) {
    *out = (struct fs_lock_outcome){0};
    fs_mutex_fix_forker(m);
    _Atomic int *owner = (_Atomic int *)&m->__data.__owner;
    int o = atomic_load_explicit(owner, memory_order_acquire);
    if (o == 0 || o == fs_gettid() || !fs_proc.armed || !lost_tid(o)) return 0;
    out->would_block = 1;
    int kind = atomic_load_explicit((_Atomic int *)&m->__data.__kind, memory_order_relaxed);
    const char *type = "pthread_mutex";
    /* Robust first: glibc marks every robust mutex process-shared too (the kernel wakes them). */
    if (kind & KIND_ROBUST) return orphaned(out, m, type, o, "robust"), 0;
    if (kind & KIND_PRIO_INHERIT) return orphaned(out, m, type, o, "priority_inheritance"), 0;
    if (kind & KIND_PRIO_PROTECT) return orphaned(out, m, type, o, "priority_protect"), 0;
    if (kind & KIND_PSHARED) return orphaned(out, m, type, o, "process_shared"), 0;
    const char *refused = fs_repair_refusal(FS_LOCK_PTHREAD, 1, 0); /* a mutex is a lock by type */
    if (refused) return orphaned(out, m, type, o, refused), 0;
    if (!atomic_compare_exchange_strong(owner, &o, (int)fs_gettid())) return 0; /* another took it */
    if ((kind & KIND_TYPE_MASK) == KIND_RECURSIVE) m->__data.__count = 1;
    return repaired(out, m, type, o);
}

int fs_rwlock_child_lock(pthread_rwlock_t *rw, int writer, struct fs_lock_outcome *out) {
    *out = (struct fs_lock_outcome){0};
    fs_rwlock_fix_forker(rw);
    _Atomic int *cur = (_Atomic int *)&rw->__data.__cur_writer;
    int w = atomic_load_explicit(cur, memory_order_acquire);
    const char *type = "pthread_rwlock";
    if (!fs_proc.armed) return 0;
    if (w == 0) {
        /* Read-held (readers in the high bits of __readers; glibc's rwlock: 3 flag bits) by
         * nobody we can name: explain a writer's wait that nothing in a lone child can end. */
        unsigned readers = atomic_load_explicit((_Atomic unsigned *)&rw->__data.__readers, memory_order_relaxed) >> 3;
        if (writer && readers && fs_thread_count() == 1) {
            out->would_block = 1;
            orphaned(out, rw, type, 0, "read_held");
        }
        return 0;
    }
    if (w == fs_gettid() || !lost_tid(w)) return 0;
    out->would_block = 1;
    if (rw->__data.__shared) return orphaned(out, rw, type, w, "process_shared"), 0;
    const char *refused = fs_repair_refusal(FS_LOCK_PTHREAD, 1, 0);
    if (refused) return orphaned(out, rw, type, w, refused), 0;
    /* The caller becomes the writer (for a reader: an exclusive hold, which is more than it
     * asked; its unlock releases it as the writer's would). */
    if (!atomic_compare_exchange_strong(cur, &w, (int)fs_gettid())) return 0;
    return repaired(out, rw, type, w);
}
