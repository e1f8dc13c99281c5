// SPDX-License-Identifier: MIT
// The table of libc functions the shim wraps, and their resolution with dlsym(RTLD_NEXT).
// Resolution happens once, outside fork (dlsym may allocate): the whole table the first time
// the process starts a thread or forks -- before any fork of ours, so a child has everything
// resolved -- or at the first call of a wrapper. A process that does neither (most exec'd
// commands) resolves only what it uses.
#include "base.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

/* The semaphore hooks start as functions that resolve everything, then call the real function:
 * the hot wrappers call through the pointer with no test. */
static int resolve_then_sem_trywait(sem_t *s) { fs_real_resolve(); return fs_real.sem_trywait(s); }
static int resolve_then_sem_wait(sem_t *s) { fs_real_resolve(); return fs_real.sem_wait(s); }
static int resolve_then_sem_post(sem_t *s) { fs_real_resolve(); return fs_real.sem_post(s); }
static int resolve_then_sem_timedwait(sem_t *s, const struct timespec *t) {
    fs_real_resolve();
    return fs_real.sem_timedwait(s, t);
}

static int resolve_then_mutex_lock(pthread_mutex_t *m) { fs_real_resolve(); return fs_real.mutex_lock(m); }
static int resolve_then_mutex_trylock(pthread_mutex_t *m) { fs_real_resolve(); return fs_real.mutex_trylock(m); }
static int resolve_then_mutex_unlock(pthread_mutex_t *m) { fs_real_resolve(); return fs_real.mutex_unlock(m); }

struct fs_real fs_real = {
    .sem_trywait = resolve_then_sem_trywait,
    .sem_wait = resolve_then_sem_wait,
    .sem_post = resolve_then_sem_post,
    .sem_timedwait = resolve_then_sem_timedwait,
    .mutex_lock = resolve_then_mutex_lock,
    .mutex_trylock = resolve_then_mutex_trylock,
    .mutex_unlock = resolve_then_mutex_unlock,
};

/* A slot still holding its resolver (or nothing) needs resolving. */
static int unresolved(void *cur) {
    return !cur || cur == (void *)resolve_then_sem_trywait || cur == (void *)resolve_then_sem_wait ||
           cur == (void *)resolve_then_sem_post || cur == (void *)resolve_then_sem_timedwait ||
           cur == (void *)resolve_then_mutex_lock || cur == (void *)resolve_then_mutex_trylock ||
           cur == (void *)resolve_then_mutex_unlock;
}

static const struct {
    const char *name;
    void **slot;
    int required;
} hooks[] = {
#define HOOK(field, sym, req) {sym, (void **)&fs_real.field, req}
    HOOK(fork, "fork", 1),
    HOOK(pthread_create, "pthread_create", 1),
    HOOK(pthread_setname_np, "pthread_setname_np", 0),
    HOOK(register_atfork, "__register_atfork", 1),
    HOOK(sem_init, "sem_init", 1),
    HOOK(sem_destroy, "sem_destroy", 1),
    HOOK(sem_wait, "sem_wait", 1),
    HOOK(sem_trywait, "sem_trywait", 1),
    HOOK(sem_timedwait, "sem_timedwait", 1),
    HOOK(sem_clockwait, "sem_clockwait", 0), /* glibc 2.30+ */
    HOOK(sem_post, "sem_post", 1),
    HOOK(execve, "execve", 1),
    HOOK(execv, "execv", 1),
    HOOK(execvp, "execvp", 1),
    HOOK(execvpe, "execvpe", 0),
    HOOK(fexecve, "fexecve", 0),
    HOOK(exit_, "_exit", 1),
    HOOK(Exit_, "_Exit", 1),
    HOOK(mutex_lock, "pthread_mutex_lock", 1),
    HOOK(mutex_trylock, "pthread_mutex_trylock", 1),
    HOOK(mutex_unlock, "pthread_mutex_unlock", 1),
    HOOK(mutex_timedlock, "pthread_mutex_timedlock", 1),
    HOOK(mutex_clocklock, "pthread_mutex_clocklock", 0), /* glibc 2.30+ */
    HOOK(rwlock_rdlock, "pthread_rwlock_rdlock", 1),
    HOOK(rwlock_wrlock, "pthread_rwlock_wrlock", 1),
    HOOK(rwlock_tryrdlock, "pthread_rwlock_tryrdlock", 1),
    HOOK(rwlock_trywrlock, "pthread_rwlock_trywrlock", 1),
    HOOK(rwlock_unlock, "pthread_rwlock_unlock", 1),
    HOOK(rwlock_timedrdlock, "pthread_rwlock_timedrdlock", 1),
    HOOK(rwlock_timedwrlock, "pthread_rwlock_timedwrlock", 1),
    HOOK(rwlock_clockrdlock, "pthread_rwlock_clockrdlock", 0), /* glibc 2.30+ */
    HOOK(rwlock_clockwrlock, "pthread_rwlock_clockwrlock", 0),
#undef HOOK
};

void *fs_real_resolve_one(const char *name) { return dlsym(RTLD_NEXT, name); }

void fs_real_resolve(void) {
    static _Atomic int done;
    if (atomic_load_explicit(&done, memory_order_acquire)) return;
    for (size_t i = 0; i < sizeof hooks / sizeof hooks[0]; i++) {
        if (!unresolved(*hooks[i].slot)) continue;
        void *p = dlsym(RTLD_NEXT, hooks[i].name);
        if (!p && hooks[i].required) {
            /* No libc below us has this function: nothing sane can be called. */
            static const char msg[] = "forksafe: required libc symbol not found: ";
            (void)!write(2, msg, sizeof msg - 1);
            (void)!write(2, hooks[i].name, __builtin_strlen(hooks[i].name));
            (void)!write(2, "\n", 1);
            abort();
        }
        /* Several threads may race here; they store the same value. */
        __atomic_store_n(hooks[i].slot, p, __ATOMIC_RELEASE);
    }
    atomic_store_explicit(&done, 1, memory_order_release);
}
