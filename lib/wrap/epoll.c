// SPDX-License-Identifier: MIT
// epoll_create and epoll_create1: an event loop is being made. gevent's and eventlet's hubs make
// theirs before the first green thread runs, and a program of green threads may fork without
// ever starting an OS thread, so this is where our interpreter hooks get installed in it
// (python/hooks.c), in time for its first fork. Otherwise the call passes straight through.
#include "wrap.h"

#include <errno.h>

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
