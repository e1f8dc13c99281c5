// SPDX-License-Identifier: MIT
// Which system calls mean "blocked, waiting for an event" (an idle thread) rather than work.
// Built from <sys/syscall.h>'s names, so each architecture gets its own numbers; a call an
// architecture lacks (poll on arm64) is simply absent. Async-signal-safe.
#include "platform.h"

#include <sys/syscall.h>

static const long waiting[] = {
#ifdef SYS_futex
    SYS_futex,
#endif
#ifdef SYS_poll
    SYS_poll,
#endif
#ifdef SYS_ppoll
    SYS_ppoll,
#endif
#ifdef SYS_select
    SYS_select,
#endif
#ifdef SYS_pselect6
    SYS_pselect6,
#endif
#ifdef SYS_epoll_wait
    SYS_epoll_wait,
#endif
#ifdef SYS_epoll_pwait
    SYS_epoll_pwait,
#endif
#ifdef SYS_epoll_pwait2
    SYS_epoll_pwait2,
#endif
#ifdef SYS_accept
    SYS_accept,
#endif
#ifdef SYS_accept4
    SYS_accept4,
#endif
#ifdef SYS_read
    SYS_read,
#endif
#ifdef SYS_recvfrom
    SYS_recvfrom,
#endif
#ifdef SYS_recvmsg
    SYS_recvmsg,
#endif
#ifdef SYS_pause
    SYS_pause,
#endif
#ifdef SYS_rt_sigtimedwait
    SYS_rt_sigtimedwait,
#endif
#ifdef SYS_rt_sigsuspend
    SYS_rt_sigsuspend,
#endif
#ifdef SYS_wait4
    SYS_wait4,
#endif
#ifdef SYS_waitid
    SYS_waitid,
#endif
#ifdef SYS_msgrcv
    SYS_msgrcv,
#endif
#ifdef SYS_semop
    SYS_semop,
#endif
#ifdef SYS_io_getevents
    SYS_io_getevents,
#endif
};

int fs_thread_waiting(pid_t tid) {
    long nr = fs_thread_syscall(tid);
    if (nr < 0) return 0; /* running, or not in a system call: busy */
    for (unsigned i = 0; i < sizeof waiting / sizeof waiting[0]; i++)
        if (nr == waiting[i]) return 1;
    return 0;
}
