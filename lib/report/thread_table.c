// SPDX-License-Identifier: MIT
// `exit`, `exec` and `thread_list`: the threads alive now. At exit and exec they are about to be
// cut off; an exit report exists for work cut off, so by default it is written only when at
// least one of them is busy (FORKSAFE_EXIT_REPORT=all: also when all are idle, waiting for work).
// A thread the standard library started for its own machinery does not count as work cut off.
// On demand (FORKSAFE_DUMP_SIGNAL) the whole table is listed. Runs at exit, before exec (possibly
// in a forked child) and in a signal handler: async-signal-safe only. Python stacks come from a
// snapshot taken earlier with the GIL; creation sites were resolved when the threads started.
#include "report.h"

#include <string.h>
#include <sys/prctl.h>

static pid_t table[FS_MAX_LISTED];
static uint32_t stopped_sym[FS_MAX_LISTED]; /* the start routine of a thread no longer there (below) */
static _Atomic int table_busy;
static _Atomic int exit_reported;

struct table_ctx {
    const char *event, *how, *path;
    const pid_t *tids;
    int n, total, self_included;
};

/* Busy or idle: a Python thread by its innermost frame, any other by its system call. */
static int idle(pid_t tid, const struct fs_py_info *py) {
    if (tid == fs_gettid()) return 0; /* it is writing this */
    return py && py->nframes ? fs_py_idle(py) : fs_thread_waiting(tid);
}

static void render_table(struct fs_out *o, const void *ctx) {
    const struct table_ctx *c = ctx;
    if (c->how) {
        int exec = c->event[2] == 'e'; /* "exec" */
        if (o->json) fs_out_str(o, "how", c->how);
        if (exec && o->json) fs_out_str(o, "path", c->path);
        fs_out_text(o, "process ");
        if (!o->json) fs_buf_int(&o->b, o->pid);
        if (exec) {
            fs_out_text(o, " execs ");
            if (!o->json) fs_buf_text_str(&o->b, c->path ? c->path : "?");
        } else {
            fs_out_text(o, " ends (");
            fs_out_text(o, c->how);
            fs_out_text(o, ")");
        }
        fs_out_text(o, " while ");
        fs_out_int(o, "threads_total", c->total);
        fs_out_text(o, c->total == 1 ? " other thread is still alive; it is cut off:"
                                     : " other threads are still alive; they are cut off:");
    } else {
        fs_out_text(o, "thread list: ");
        fs_out_int(o, "threads_total", c->total);
        fs_out_text(o, c->total == 1 ? " thread" : " threads");
    }
    fs_out_list(o, "threads");
    for (int i = 0; i < c->n && fs_out_room(o, i); i++) {
        pid_t tid = c->tids[i];
        const struct fs_thread *t = stopped_sym[i] ? NULL : fs_thread_find_tid(fs_proc.pid, tid);
        char name[16] = "";
        if (tid == fs_gettid()) {
            if (prctl(PR_GET_NAME, name) != 0) name[0] = '\0';
        } else if (!stopped_sym[i]) {
            fs_thread_name(t, fs_proc.pid, tid, name);
        }
        struct fs_py_info info;
        const struct fs_py_info *py = fs_py_lookup(tid, &info);
        int is_idle = idle(tid, py);
        const char *pyname = py && py->name[0] ? py->name : (t && t->pyname[0] ? t->pyname : NULL);
        struct fs_thread_view v = {.label = is_idle ? "idle" : "busy", .tid = tid, .name = name,
                                   .start_sym = t ? t->start_sym : stopped_sym[i], .state = is_idle ? "idle" : "busy",
                                   .pyname = pyname, .py = py, .created = t, .app = t ? fs_app_frame(t) : -1};
        fs_out_thread(o, NULL, &v);
    }
    fs_out_end_list(o);
}

/* Is `tid` a thread that has already finished as far as its program can tell, though the kernel
 * still lists it? Its start routine returned, its runtime joined it or its target returned
 * (Python's rules), or it is gone. */
static int finishing(pid_t tid, int for_exit) {
    if (fs_registry_recently_ended(tid)) return 1;
    const struct fs_thread *t = fs_thread_find_tid(fs_proc.pid, tid);
    if (for_exit && fs_py_finished(tid, t)) return 1;
    char name[16];
    return !t && fs_read_comm(fs_proc.pid, tid, name) != 0;
}

/* Writes the table of live threads; `include_self` for a listing, not for exit or exec. */
static void thread_table(const char *event, const char *how, const char *path, int include_self) {
    if (!fs_sink_available() || atomic_exchange(&table_busy, 1)) return;
    fs_proc_pid_checked();
    int n = fs_list_tasks(table, FS_MAX_LISTED);
    if (how) {
        /* A thread its runtime has just joined is still in the kernel's list for a moment: wait
         * (20 ms at most) until the list stops shrinking, and report what is really left. */
        for (int k = 0, prev = n; k < 20; k++) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
            n = fs_list_tasks(table, FS_MAX_LISTED);
            if (n == prev && k >= 1) break;
            prev = n;
        }
    }
    int listed = n < FS_MAX_LISTED ? n : FS_MAX_LISTED;
    pid_t self = fs_gettid();
    fs_thread_index_build();
    int kept = 0, busy = 0; /* the threads really cut off (or, for a listing, alive) */
    for (int i = 0; i < listed; i++) {
        if ((table[i] == self && !include_self) || (table[i] != self && finishing(table[i], how != NULL)))
            continue;
        stopped_sym[kept] = 0;
        table[kept++] = table[i];
        /* Work cut off: a busy thread, unless the standard library started it for its own
         * machinery (a Manager's handler finishing a reply as the server exits). */
        struct fs_py_info info;
        if (how && !busy)
            busy = !idle(table[i], fs_py_lookup(table[i], &info)) &&
                   !fs_py_created_by_stdlib(fs_thread_find_tid(fs_proc.pid, table[i]));
    }
    /* At exit, also the Python threads that were alive when Python's exit began (the snapshot
     * of our atexit hook) and have since been stopped without returning: CPython ends a daemon
     * thread that way when it reaches for the GIL during finalization -- its work cut off, and
     * gone from the kernel's list before these handlers run. */
    pid_t tid;
    uint32_t sym;
    struct fs_py_info pinfo;
    for (int i = 0; how && strcmp(how, "exec") != 0 && fs_registry_stopped(i, &tid, &sym) && kept < FS_MAX_LISTED; i++) {
        int seen = tid == self || !fs_py_lookup(tid, &pinfo);
        for (int k = 0; k < kept && !seen; k++) seen = table[k] == tid;
        if (seen) continue;
        stopped_sym[kept] = sym ? sym : UINT32_MAX; /* nonzero: no live slot to look up */
        table[kept++] = tid;
        if (!busy) busy = !fs_py_idle(&pinfo);
    }
    int total = kept + (n - listed);
    /* Nothing cut off after all; or, at exit, only idle threads (normal: daemons waiting for
     * work), unless FORKSAFE_EXIT_REPORT=all. */
    int quiet = total == 0 || (how && !busy && fs_setting(FS_SET_exit_report) != FS_EXIT_REPORT_ALL);
    if (!quiet) {
        struct table_ctx c = {event, how, path, table, kept, total, include_self};
        fs_emit(event, NULL, render_table, &c, 512 + (size_t)kept * (384 + 160 * (size_t)fs_setting(FS_SET_stack_depth)));
    }
    fs_thread_index_release();
    atomic_store(&table_busy, 0);
}

static void exit_report(const char *how, const char *path);

FS_FORK_PATH void fs_report_exit(const char *how, const char *path) {
    extern int __libc_single_threaded;
    if (!fs_proc.tracking || fs_setting(FS_SET_exit_report) == FS_EXIT_REPORT_OFF) return;
    if (__libc_single_threaded || fs_proc.single_since_fork) return; /* without a /proc read */
    exit_report(how, path);
}

static void exit_report(const char *how, const char *path) {
    pid_t tid;
    uint32_t sym;
    /* Single-threaded, and no thread stopped while Python was exiting: nothing is cut off. */
    if (fs_thread_count() <= 1 && !fs_registry_stopped(0, &tid, &sym)) return;
    if (atomic_exchange(&exit_reported, 1)) return;
    fs_py_snapshot_for_exit();
    int exec = strcmp(how, "exec") == 0;
    thread_table(exec ? "exec" : "exit", how, path, 0);
    if (exec) atomic_store(&exit_reported, 0); /* the exec may fail; the process goes on */
}

void fs_report_thread_list(void) { thread_table("thread_list", NULL, NULL, 1); }
