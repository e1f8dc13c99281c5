// SPDX-License-Identifier: MIT
// Our atfork handlers and how they are made the oldest registered (the fork path is told in
// wrap/fork.c). They run inside fork(): async-signal-safe only, errno preserved.
#include "wrap.h"

#include <errno.h>

extern void *__dso_handle;

FS_FORK_PATH static void prepare(void) {
    if (!fs_proc.tracking) return;
    int saved = errno;
    fs_fork_lock();
    fs_report_fork_if_owed(); /* a child forking again (forkpty, daemon) before writing its own */
    fs_fork_prepare();
    if (errno != saved) errno = saved; /* a write only if needed: the page may be copy-on-write */
}

FS_FORK_PATH static void parent(void) {
    if (fs_proc.tracking) fs_fork_parent();
}

/* Nothing here sets errno (raw system calls that cannot fail, plain memory): none to restore. */
FS_FORK_PATH static void child(void) {
    if (!fs_proc.tracking) return;
    fs_fork_child();
    fs_report_threads_after_fork_child();
}

/* Our handlers must be the oldest registered: prepare handlers run newest first, child handlers
 * oldest first. A library loaded before us (DT_NEEDED) may register from its constructor before
 * ours runs, so the first registration by anyone goes through here and puts ours first. */
void fs_atfork_register(void) {
    static _Atomic int done;
    int expected = 0;
    if (atomic_load_explicit(&done, memory_order_acquire) || !atomic_compare_exchange_strong(&done, &expected, 1))
        return;
    if (!fs_real.register_atfork) fs_real.register_atfork = fs_real_resolve_one("__register_atfork");
    FS_REAL(register_atfork)(prepare, parent, child, &__dso_handle);
}

/* pthread_atfork in programs built against glibc 2.28+ comes from libc_nonshared.a and calls
 * this through the PLT; older programs call libc's pthread_atfork, which we also wrap. */
FS_EXPORT int __register_atfork(void (*pre)(void), void (*par)(void), void (*chi)(void), void *dso) {
    fs_atfork_register();
    return FS_REAL(register_atfork)(pre, par, chi, dso);
}

FS_EXPORT int pthread_atfork(void (*pre)(void), void (*par)(void), void (*chi)(void)) {
    return __register_atfork(pre, par, chi, &__dso_handle);
}

