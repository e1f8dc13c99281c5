// SPDX-License-Identifier: MIT
// Python rules of thumb for the thread tables (exit, exec, listing): whether a Python thread is
// idle (waiting for work in the standard library) and whether it has in fact finished. They read
// the snapshot only, without calling Python: async-signal-safe.
#include "python.h"

#include <string.h>

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int fs_py_idle(const struct fs_py_info *info) {
    static const char *const waits[] = {"/threading.py", "/queue.py", "/selectors.py", "/socket.py",
                                        "/socketserver.py", "/multiprocessing/connection.py",
                                        "/concurrent/futures/thread.py", "/multiprocessing/queues.py",
                                        /* a Manager's request handler waiting for the next call
                                         * (2.7: in C recv(), called from serve_client) */
                                        "/multiprocessing/managers.py"};
    if (!info->nframes) return 0;
    const char *file, *func;
    int line;
    fs_py_frame(info, 0, &file, &func, &line);
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++)
        if (ends_with(file, waits[i])) return 1;
    return 0;
}

int fs_py_finished(pid_t tid, const struct fs_thread *t) {
    struct fs_py_info info;
    const struct fs_py_info *py = fs_py_lookup(tid, &info);
    /* A Python thread missing from the snapshot taken after the runtime's joins was joined. */
    if (!py) return t && (t->pyname[0] || t->ncreate) && fs_py_snapshot_valid();
    /* Its target has returned: the innermost frame is threading's bootstrap (2.7's join returns
     * while the thread still runs its last lines there, and it may never get the GIL again). */
    if (!py->nframes) return 0;
    const char *file, *func;
    int line;
    fs_py_frame(py, 0, &file, &func, &line);
    return ends_with(file, "/threading.py") && strstr(func, "bootstrap") != NULL;
}

/* A file of the standard library itself: under lib/pythonX.Y but not an installed package. */
static int stdlib_file(const char *file) {
    if (strncmp(file, "<frozen", 7) == 0) return 1;
    return strstr(file, "/lib/python") && !strstr(file, "site-packages") && !strstr(file, "dist-packages");
}

int fs_py_created_by_stdlib(const struct fs_thread *t) {
    if (!t || !t->ncreate) return 0;
    for (int i = 0; i < t->ncreate; i++) {
        const char *file, *func;
        fs_py_site(t->create_site[i], &file, &func);
        if (!file[0] || !stdlib_file(file)) return 0;
    }
    return 1;
}
