// SPDX-License-Identifier: MIT
// The registry of threads: one slot per thread that was started through pthread_create or
// touched a semaphore, holding its tid, start routine and name. A thread's token (slot and the
// slot's generation) is what locks record as their taker. In a forked child, the slots of the
// threads that did not survive become LOST; they are kept so that their locks stay repairable in
// descendants, and reclaimed (oldest fork first) only when the registry is otherwise full.
// Pure data: it calls nothing above base/ and platform/.
// fs_registry_after_fork_child() and fs_registry_threads_now() run inside fork():
// async-signal-safe only.
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

struct fs_thread fs_threads[FS_MAX_THREADS];
_Atomic uint32_t fs_threads_hwm;
static _Atomic uint32_t free_hint;
static _Atomic int free_slots;   /* slots freed by exited threads: worth scanning for */
static _Atomic uint32_t live_count;

/* Tids whose start routine returned: the kernel may list them a moment longer. */
#define RECENT 64
static _Atomic pid_t recently_ended[RECENT];
static _Atomic uint32_t recent_next;

int fs_registry_recently_ended(pid_t tid) {
    for (int i = 0; i < RECENT; i++)
        if (atomic_load_explicit(&recently_ended[i], memory_order_relaxed) == tid) return 1;
    return 0;
}

/* Threads that ended without their start routine returning (pthread_exit: CPython ends a daemon
 * thread that way when it reaches for the GIL during finalization). */
#define STOPPED 1024
static struct { _Atomic pid_t tid; uint32_t start_sym; } stopped[STOPPED];
static _Atomic uint32_t stopped_next;
__thread int fs_tls_returned __attribute__((tls_model("initial-exec")));

int fs_registry_stopped(int i, pid_t *tid, uint32_t *start_sym) {
    uint32_t n = atomic_load_explicit(&stopped_next, memory_order_acquire);
    if (i < 0 || (uint32_t)i >= n || (uint32_t)i >= STOPPED) return 0;
    *tid = atomic_load_explicit(&stopped[i].tid, memory_order_relaxed);
    *start_sym = stopped[i].start_sym;
    return 1;
}


__thread fs_token fs_tls_token __attribute__((tls_model("initial-exec")));
static pthread_key_t exit_key;
static _Atomic int exit_key_state; /* 0 none, 1 creating, 2 ready */

static fs_token token_of(const struct fs_thread *t) {
    return ((fs_token)t->gen << 32) | ((uint32_t)(t - fs_threads) + 1);
}

/* At thread exit: the slot is free again; later semaphore calls of this thread go untracked. */
static void on_thread_exit(void *p) {
    struct fs_thread *t = p;
    if (fs_tls_returned) {
        atomic_store_explicit(&recently_ended[atomic_fetch_add(&recent_next, 1) % RECENT], t->tid,
                              memory_order_relaxed);
    } else if (t->start) { /* started through pthread_create, and stopped on the way */
        uint32_t i = atomic_fetch_add(&stopped_next, 1);
        if (i < STOPPED) {
            stopped[i].start_sym = t->start_sym;
            atomic_store_explicit(&stopped[i].tid, t->tid, memory_order_release);
        }
    }
    fs_tls_token = FS_TOKEN_NONE;
    atomic_store_explicit(&t->state, FS_T_FREE, memory_order_release);
    atomic_store_explicit(&free_hint, (uint32_t)(t - fs_threads), memory_order_relaxed);
    atomic_fetch_add_explicit(&free_slots, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&live_count, 1, memory_order_relaxed);
}

uint32_t fs_registry_live(void) { return atomic_load_explicit(&live_count, memory_order_relaxed); }

static int ensure_exit_key(void) {
    int s = atomic_load_explicit(&exit_key_state, memory_order_acquire);
    if (fs_likely(s == 2)) return 0;
    int expected = 0;
    if (atomic_compare_exchange_strong(&exit_key_state, &expected, 1)) {
        if (pthread_key_create(&exit_key, on_thread_exit) != 0) {
            atomic_store(&exit_key_state, 0);
            return -1;
        }
        atomic_store_explicit(&exit_key_state, 2, memory_order_release);
        return 0;
    }
    while (atomic_load_explicit(&exit_key_state, memory_order_acquire) == 1) sched_yield();
    return atomic_load(&exit_key_state) == 2 ? 0 : -1;
}

void fs_registry_init(void) { ensure_exit_key(); }

/* A slot moves to STARTING with a new generation, so tokens of its earlier owners never match. */
static struct fs_thread *take(struct fs_thread *t, uint32_t from) {
    uint32_t expected = from;
    if (!atomic_compare_exchange_strong(&t->state, &expected, FS_T_STARTING)) return NULL;
    if (++t->gen == 0) t->gen = 1;
    return t;
}

/* Slots of threads lost at earlier forks are kept, so that their locks stay repairable in
 * descendants; when the registry is otherwise full they are reclaimed, oldest fork first. Never
 * the slots lost at this process's own fork: its fork report names them. */
static struct fs_thread *reclaim_lost(uint32_t hwm) {
    uint32_t oldest = UINT32_MAX;
    for (uint32_t i = 0; i < hwm; i++)
        if (atomic_load_explicit(&fs_threads[i].state, memory_order_relaxed) == FS_T_LOST &&
            fs_threads[i].lost_seq < oldest && fs_threads[i].lost_seq < fs_proc.fork_seq)
            oldest = fs_threads[i].lost_seq;
    for (uint32_t i = 0; oldest != UINT32_MAX && i < hwm; i++) {
        struct fs_thread *t = &fs_threads[i];
        if (t->lost_seq != oldest || atomic_load_explicit(&t->state, memory_order_relaxed) != FS_T_LOST) continue;
        if (take(t, FS_T_LOST)) return t;
    }
    return NULL;
}

/* Claims a free slot (state STARTING). NULL when the registry is full. */
struct fs_thread *fs_registry_claim(void) {
    uint32_t hwm = atomic_load_explicit(&fs_threads_hwm, memory_order_acquire);
    if (hwm > FS_MAX_THREADS) hwm = FS_MAX_THREADS;
    /* Reuse a freed slot first, so the registry stays as small as the live thread count. */
    uint32_t start = atomic_load_explicit(&free_hint, memory_order_relaxed);
    for (uint32_t k = 0; atomic_load_explicit(&free_slots, memory_order_relaxed) > 0 && k < hwm && k < 256; k++) {
        uint32_t i = (start + k) % hwm;
        if (take(&fs_threads[i], FS_T_FREE)) {
            atomic_store_explicit(&free_hint, i + 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&free_slots, 1, memory_order_relaxed);
            return &fs_threads[i];
        }
    }
    for (;;) {
        uint32_t i = atomic_fetch_add(&fs_threads_hwm, 1);
        if (i >= FS_MAX_THREADS) {
            atomic_store(&fs_threads_hwm, FS_MAX_THREADS);
            break;
        }
        if (take(&fs_threads[i], FS_T_FREE)) return &fs_threads[i];
    }
    /* Full: any free slot at all (the hint window may have missed it), then lost ones. */
    for (uint32_t i = 0; i < FS_MAX_THREADS; i++)
        if (atomic_load_explicit(&fs_threads[i].state, memory_order_relaxed) == FS_T_FREE &&
            take(&fs_threads[i], FS_T_FREE)) {
            atomic_fetch_sub_explicit(&free_slots, 1, memory_order_relaxed);
            return &fs_threads[i];
        }
    return reclaim_lost(FS_MAX_THREADS);
}

void fs_registry_unclaim(struct fs_thread *t) {
    atomic_store_explicit(&t->state, FS_T_FREE, memory_order_release);
    atomic_fetch_add_explicit(&free_slots, 1, memory_order_relaxed);
}

/* Makes `t` the calling thread's slot. */
void fs_registry_become(struct fs_thread *t) {
    t->tid = fs_gettid();
    for (int i = 0; i < RECENT; i++) { /* a reused tid is a new thread */
        pid_t expected = t->tid;
        atomic_compare_exchange_strong(&recently_ended[i], &expected, 0);
    }
    t->home_pid = 0;
    t->lost_seq = t->listed_seq = 0;
    t->self = pthread_self();
    if (prctl(PR_GET_NAME, t->name) != 0) t->name[0] = '\0';
    fs_tls_token = token_of(t);
    if (ensure_exit_key() == 0) pthread_setspecific(exit_key, t);
    atomic_store_explicit(&t->state, FS_T_LIVE, memory_order_release);
    atomic_fetch_add_explicit(&live_count, 1, memory_order_relaxed);
}

fs_token fs_self_token_slow(void) {
    int saved = errno;
    struct fs_thread *t = fs_registry_claim();
    if (!t) {
        fs_tls_token = FS_TOKEN_NONE; /* registry full: this thread's locks go untracked */
        errno = saved;
        return 0;
    }
    t->start = NULL;
    t->start_sym = 0;
    t->ncreate = 0;
    t->pyname[0] = '\0';
    fs_registry_become(t);
    errno = saved;
    return fs_tls_token;
}

struct fs_thread *fs_token_lost(fs_token tok) {
    struct fs_thread *t = fs_thread_by_token(tok);
    if (!t || atomic_load_explicit(&t->state, memory_order_acquire) != FS_T_LOST) return NULL;
    return t->gen == (uint32_t)(tok >> 32) ? t : NULL;
}

/* A (pid, tid) -> slot hash, built for one report at a time (a report looks up every thread). */
#define INDEX_SIZE (2 * FS_MAX_THREADS)
static struct { pid_t tid; uint32_t slot; } tid_index[INDEX_SIZE];
static uint32_t index_size;     /* the part in use: a power of two >= 2 x the registry in use */
static _Atomic int index_owner; /* 0 free, 1 being built, 2 ready */

/* Does slot `t` hold thread `tid` of process `pid`? Live threads belong to this process; lost
 * ones to the process they lived in. */
static int holds(const struct fs_thread *t, pid_t pid, pid_t tid) {
    if (t->tid != tid) return 0;
    uint32_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    return s == FS_T_LIVE ? pid == fs_proc.pid : s == FS_T_LOST && t->home_pid == pid;
}

void fs_thread_index_build(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&index_owner, &expected, 1)) return; /* in use: linear lookups */
    uint32_t hwm = atomic_load_explicit(&fs_threads_hwm, memory_order_acquire);
    if (hwm > FS_MAX_THREADS) hwm = FS_MAX_THREADS;
    /* Clear only what this registry needs: a forked child touches as few pages as it can. */
    for (index_size = 64; index_size < 2 * hwm; index_size *= 2) {}
    memset(tid_index, 0, index_size * sizeof tid_index[0]);
    for (uint32_t i = 0; i < hwm; i++) {
        uint32_t s = atomic_load_explicit(&fs_threads[i].state, memory_order_acquire);
        if (s != FS_T_LIVE && s != FS_T_LOST) continue;
        uint32_t h = (uint32_t)fs_threads[i].tid * 2654435761u % index_size;
        while (tid_index[h].slot) h = (h + 1) % index_size;
        tid_index[h].tid = fs_threads[i].tid;
        tid_index[h].slot = i + 1;
    }
    atomic_store(&index_owner, 2);
}

void fs_thread_index_release(void) {
    int expected = 2;
    atomic_compare_exchange_strong(&index_owner, &expected, 0);
}

struct fs_thread *fs_thread_find_tid(pid_t pid, pid_t tid) {
    if (atomic_load_explicit(&index_owner, memory_order_acquire) == 2) {
        uint32_t h = (uint32_t)tid * 2654435761u % index_size;
        for (; tid_index[h].slot; h = (h + 1) % index_size) {
            struct fs_thread *t = &fs_threads[tid_index[h].slot - 1];
            if (tid_index[h].tid == tid && holds(t, pid, tid)) return t;
        }
        return NULL;
    }
    uint32_t hwm = atomic_load_explicit(&fs_threads_hwm, memory_order_acquire);
    if (hwm > FS_MAX_THREADS) hwm = FS_MAX_THREADS;
    for (uint32_t i = 0; i < hwm; i++)
        if (holds(&fs_threads[i], pid, tid)) return &fs_threads[i];
    return NULL;
}

struct fs_thread *fs_thread_find_pthread(pthread_t self) {
    uint32_t hwm = atomic_load_explicit(&fs_threads_hwm, memory_order_acquire);
    if (hwm > FS_MAX_THREADS) hwm = FS_MAX_THREADS;
    for (uint32_t i = 0; i < hwm; i++) {
        if (atomic_load_explicit(&fs_threads[i].state, memory_order_acquire) == FS_T_LIVE &&
            pthread_equal(fs_threads[i].self, self))
            return &fs_threads[i];
    }
    return NULL;
}

FS_FORK_PATH int fs_registry_after_fork_child(pid_t parent_pid) {
    fs_token me = fs_tls_token;
    struct fs_thread *self = me != FS_TOKEN_NONE ? fs_thread_by_token(me) : NULL;
    if (self && self->tid != fs_tls_tid) self->tid = fs_tls_tid;
    uint32_t hwm = atomic_load_explicit(&fs_threads_hwm, memory_order_relaxed);
    if (hwm > FS_MAX_THREADS) hwm = FS_MAX_THREADS;
    int lost = 0;
    for (uint32_t i = 0; i < hwm; i++) {
        struct fs_thread *t = &fs_threads[i];
        if (t == self) continue;
        uint32_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
        if (s == FS_T_LIVE) {
            t->home_pid = parent_pid;
            t->lost_seq = fs_proc.fork_seq;
            atomic_store_explicit(&t->state, FS_T_LOST, memory_order_relaxed);
            lost++;
        } else if (s == FS_T_STARTING) {
            /* Being created or registered in the parent: that thread does not exist here. */
            atomic_store_explicit(&t->state, FS_T_FREE, memory_order_relaxed);
            atomic_fetch_add_explicit(&free_slots, 1, memory_order_relaxed);
        }
    }
    uint32_t live = self ? 1 : 0; /* a write only if it changes: every page written costs a fault */
    if (atomic_load_explicit(&live_count, memory_order_relaxed) != live)
        atomic_store_explicit(&live_count, live, memory_order_relaxed);
    return lost;
}

void fs_thread_name(const struct fs_thread *t, pid_t pid, pid_t tid, char name[16]) {
    if (t && t->name[0]) {
        __builtin_memcpy(name, t->name, 16);
        name[15] = '\0';
    } else if (fs_read_comm(pid, tid, name) != 0) {
        name[0] = '\0';
    }
}

FS_FORK_PATH int fs_registry_threads_now(pid_t *tids, int cap, pid_t forking_tid) {
    int saved = errno, n = 0, has_forker = 0;
    uint32_t hwm = atomic_load_explicit(&fs_threads_hwm, memory_order_acquire);
    if (hwm > FS_MAX_THREADS) hwm = FS_MAX_THREADS;
    for (uint32_t i = 0; i < hwm && n < cap; i++) {
        if (atomic_load_explicit(&fs_threads[i].state, memory_order_acquire) != FS_T_LIVE) continue;
        pid_t tid = fs_threads[i].tid;
        if (tid == forking_tid) has_forker = 1;
        tids[n++] = tid;
    }
    if (!has_forker && n < cap) tids[n++] = forking_tid;
    int kernel = fs_thread_count();
    errno = saved;
    if (kernel == n) return n; /* the registry knows every thread */
    return fs_list_tasks(tids, cap);
}
