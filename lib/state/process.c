// SPDX-License-Identifier: MIT
// The process-state struct: who this process is and what it owes, and each thread's cached tid.
// Owned here, written by the start-up code and the fork path, read everywhere.
#include "state.h"

struct fs_process fs_proc = {.tracking = 1, .mode = FS_MODE_REPAIR};
__thread pid_t fs_tls_tid __attribute__((tls_model("initial-exec")));

pid_t fs_gettid(void) {
    pid_t t = fs_tls_tid;
    if (fs_unlikely(t == 0)) t = fs_tls_tid = fs_sys_gettid();
    return t;
}

FS_FORK_PATH pid_t fs_proc_pid_checked(void) {
    pid_t p = fs_sys_getpid();
    if (fs_unlikely(p != fs_proc.pid)) { /* made without our fork handlers: new pid, new tid */
        fs_proc.pid = p;
        fs_tls_tid = fs_sys_gettid();
    }
    return p;
}

int fs_proc_report_owed(void) {
    return atomic_load_explicit(&fs_proc.report_owed, memory_order_relaxed) &&
           fs_sys_getpid() == fs_proc.report_owed_pid;
}
