// SPDX-License-Identifier: MIT
// One-time start-up: settings, the sink, our atfork handlers, the exit hook, the dump signal.
// Runs from the library constructor, or earlier from the first wrapper that needs it (another
// library's constructor may fork, create threads or register atfork handlers before ours runs).
// Never runs inside fork().
#include "wrap.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

/* In secure-execution mode (setuid, setgid, file capabilities: AT_SECURE) the environment belongs
 * to a less privileged user: no FORKSAFE_* variable is honoured, so nobody can make a privileged
 * program open or append to a file of their choosing. Defaults apply; reports go to stderr. */
static const char *env_get(const char *name) { return fs_proc.secure ? NULL : getenv(name); }

static void on_dump_signal(int sig) {
    (void)sig;
    int saved = errno;
    fs_report_thread_list();
    errno = saved;
}

static void install_dump_signal(void) {
    int which = fs_setting(FS_SET_dump_signal);
    int sig = which == FS_DUMP_SIGNAL_USR1 ? SIGUSR1 : which == FS_DUMP_SIGNAL_USR2 ? SIGUSR2 : 0;
    if (!sig) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_dump_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

/* The effective settings, as text lines, to wherever reports go. */
static void dump_settings(void) {
    char mem[8192];
    struct fs_buf b;
    fs_buf_init(&b, mem, sizeof mem, -1);
    fs_settings_format(&fs_settings, fs_proc.pid, &b);
    fs_sink_write(b.p, b.len, 1);
}

void fs_init(void) {
    static _Atomic int state; /* 0 not started, 1 running, 2 done */
    if (fs_likely(atomic_load_explicit(&state, memory_order_acquire) == 2)) return;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&state, &expected, 1)) return; /* done, or in progress */
    fs_proc.pid = fs_sys_getpid();
    fs_proc.secure = getauxval(AT_SECURE) != 0;
    fs_settings_parse(&fs_settings, env_get, 2);
    fs_proc.mode = (enum fs_mode)fs_setting(FS_SET_mode);
    fs_proc.tracking = fs_proc.mode != FS_MODE_OFF;
    fs_sink_init();
    fs_registry_init();
    fs_atfork_register();
    fs_exit_hook_register();
    fs_report_threads_init();
    fs_python_entry_init();
    install_dump_signal();
    if (fs_setting(FS_SET_verbose)) dump_settings();
    atomic_store_explicit(&state, 2, memory_order_release);
}

__attribute__((constructor)) static void fs_constructor(void) { fs_init(); }
