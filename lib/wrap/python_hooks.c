// SPDX-License-Identifier: MIT
// What a child of os.fork does once CPython has finished its own after-fork work (python/hooks.c
// calls this through the callback registered here, with the GIL held): it reads the green threads
// it carries (python/green.c; under FORKSAFE_GREEN=kill their end is scheduled), and it goes on
// running, so it writes its fork report now (in strict mode that may end it); then the RLock
// layer of repair, where it applies (python/rlock.c), under the same repair policy as every lock
// kind (core/repair.c).
// And epoll_create: gevent and eventlet create their hub's epoll instance with the GIL held before
// the first green thread runs, the moment to install our interpreter hooks in a program that may
// never start an OS thread before it forks.
#include "wrap.h"

#include <errno.h>

static void child_resumes(void) {
    fs_py_green_child();
    fs_report_fork_if_owed();
    if (fs_py_rlock_layer_wanted() && !fs_repair_refusal(FS_LOCK_PYTHON_RLOCK, 1))
        fs_py_release_lost_rlocks(fs_report_python_rlock);
}

void fs_python_entry_init(void) { fs_py_on_child_resumes(child_resumes); }

static void loop_created(void) {
    int saved = errno;
    fs_init();
    if (fs_proc.tracking) fs_py_event_loop_created();
    errno = saved;
}

FS_EXPORT int epoll_create1(int flags) {
    static int (*real)(int);
    if (fs_unlikely(!real)) real = (int (*)(int))fs_real_resolve_one("epoll_create1");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    int fd = real(flags);
    if (fd >= 0) loop_created();
    return fd;
}

FS_EXPORT int epoll_create(int size) {
    static int (*real)(int);
    if (fs_unlikely(!real)) real = (int (*)(int))fs_real_resolve_one("epoll_create");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    int fd = real(size);
    if (fd >= 0) loop_created();
    return fd;
}
