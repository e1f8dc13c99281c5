// SPDX-License-Identifier: MIT
// One-time start-up: settings, the log descriptor, our atfork handlers, the exit hook.
// Runs from the library constructor, or earlier from the first wrapper that needs it (another
// library's constructor may fork, create threads or register atfork handlers before ours runs).
// Never runs inside fork().
#include "internal.h"

#include <stdlib.h>
#include <sys/auxv.h>
#include <unistd.h>

int fs_secure;

/* In secure-execution mode (setuid, setgid, file capabilities: AT_SECURE) the environment belongs
 * to a less privileged user: no FORKSAFE_* variable is honoured, so nobody can make a privileged
 * program open or append to a file of their choosing. Defaults apply; reports go to stderr. */
static const char *env_get(const char *name) { return fs_secure ? NULL : getenv(name); }

void fs_init(void) {
    static _Atomic int state; /* 0 not started, 1 running, 2 done */
    if (fs_likely(atomic_load_explicit(&state, memory_order_acquire) == 2)) return;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&state, &expected, 1)) return; /* done, or in progress */
    fs_hooks_resolve();
    fs_pid = getpid();
    fs_secure = getauxval(AT_SECURE) != 0;
    fs_settings_parse(&fs_settings, env_get, 2);
    fs_tracking = fs_setting(FS_SET_mode) != FS_MODE_OFF;
    fs_log_init();
    fs_threads_init();
    fs_atfork_register();
    fs_fork_init();
    fs_census_init();
    if (fs_setting(FS_SET_verbose)) {
        int fd = fs_log_fd();
        if (fd >= 0) fs_settings_dump(&fs_settings, fd);
    }
    atomic_store_explicit(&state, 2, memory_order_release);
}

__attribute__((constructor)) static void fs_constructor(void) { fs_init(); }
