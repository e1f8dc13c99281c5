// SPDX-License-Identifier: MIT
// pthread_create and pthread_setname_np. A thread started through us gets a registry slot with
// its start routine (resolved here, never during a fork) and, when Python starts it, where it
// was created and its Python name (python/sites.c). A forked child that starts a thread has gone
// on running: it writes its fork report first. Starting a thread may cross a
// FORKSAFE_THREADS_WARN threshold (report/thread_groups.c).
#include "wrap.h"

#include <errno.h>
#include <string.h>

/* The new thread's first steps: become LIVE in its slot, then run the real start routine. */
static void *thread_start(void *p) {
    struct fs_thread *t = p;
    void *(*start)(void *) = t->start;
    void *arg = t->arg;
    fs_registry_become(t);
    fs_report_thread_started(fs_registry_live());
    void *r = start(arg);
    fs_tls_returned = 1; /* it ended by returning, not cut short by pthread_exit */
    return r;
}

FS_EXPORT int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *), void *arg) {
    fs_real_resolve(); /* a multi-threaded process may fork: have everything resolved first */
    int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *) = fs_real.pthread_create;
    fs_init();
    if (!fs_proc.tracking) return real(thread, attr, start, arg);
    int saved = errno;
    fs_report_fork_if_owed();
    fs_proc.single_since_fork = 0;
    struct fs_thread *t = fs_registry_claim();
    fs_py_thread_starting(t);
    errno = saved;
    if (!t) return real(thread, attr, start, arg);
    t->start = start;
    t->arg = arg;
    t->start_sym = fs_symbol_lookup((const void *)start);
    errno = saved;
    int r = real(thread, attr, thread_start, t);
    if (r != 0) fs_registry_unclaim(t);
    return r;
}

FS_EXPORT int pthread_setname_np(pthread_t thread, const char *name) {
    int (*real)(pthread_t, const char *) = FS_REAL(pthread_setname_np);
    if (!real) return ENOSYS;
    int r = real(thread, name);
    struct fs_thread *t = r == 0 ? fs_thread_find_pthread(thread) : NULL;
    if (t) fs_strlcpy(t->name, name, sizeof t->name);
    return r;
}
