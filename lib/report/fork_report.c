// SPDX-License-Identifier: MIT
// The `fork` event, written by a child of a multi-threaded fork once it shows that it goes on
// running (the entry points in wrap/ call fs_report_fork_if_owed), or never if it execs first.
// Who was lost: the registry's threads lost at this very fork -- a thread may have started or
// ended between the prepare handler's listing and the fork itself -- and the listed threads the
// registry does not know (started before the library loaded, or by libc). So a repair's owner is
// always in its child's list. Runs in forked children before exec: async-signal-safe only.
#include "report.h"

#include <string.h>

struct fork_ctx {
    const struct fs_fork_record *r;
    const pid_t *lost;
    int nlost, total;
};

/* Keeps the Python name in the lost thread's slot, for later repair events. */
static void remember_python_name(struct fs_thread *t, const struct fs_py_info *py) {
    if (t && py && py->name[0]) fs_strlcpy(t->pyname, py->name, sizeof t->pyname);
}

static void render_fork(struct fs_out *o, const void *ctx) {
    const struct fork_ctx *c = ctx;
    const struct fs_fork_record *r = c->r;
    struct fs_py_info info;
    const struct fs_py_info *py = fs_py_lookup(r->forking_tid, &info);
    fs_out_text(o, "process ");
    fs_out_int(o, "parent_pid", r->parent_pid);
    fs_out_text(o, " forked child ");
    fs_out_int(o, "child_pid", o->pid);
    fs_out_text(o, " from thread ");
    fs_out_obj(o, "forking_thread");
    fs_out_int(o, "tid", r->forking_tid);
    fs_out_text(o, " ");
    fs_out_quoted(o, "name", r->forking_name);
    if (py) {
        fs_out_text(o, " (Python ");
        fs_out_quoted(o, "python_name", py->name[0] ? py->name : NULL);
        fs_out_text(o, ")");
        if (o->json) fs_out_python_stack(o, "python_stack", py, NULL);
    }
    fs_out_end_obj(o);
    fs_out_text(o, "; the child lost ");
    fs_out_int(o, "lost_threads_total", c->total);
    fs_out_text(o, c->total == 1 ? " thread:" : " threads:");
    if (py && !o->json) fs_out_python_stack(o, NULL, py, "      ");
    fs_out_list(o, "lost_threads");
    int shown = 0;
    for (int i = 0; i < c->nlost && fs_out_room(o, i); i++, shown++) {
        pid_t tid = c->lost[i];
        struct fs_thread *t = fs_thread_find_tid(r->parent_pid, tid);
        char name[16];
        fs_thread_name(t, r->parent_pid, tid, name);
        const struct fs_py_info *tpy = fs_py_lookup(tid, &info);
        remember_python_name(t, tpy);
        struct fs_thread_view v = {.label = "lost", .tid = tid, .name = name, .start_sym = t ? t->start_sym : 0,
                                   .pyname = tpy && tpy->name[0] ? tpy->name : NULL, .py = tpy, .app = -1};
        fs_out_thread(o, NULL, &v);
    }
    fs_out_end_list(o);
    if (c->total > shown && !o->json) { /* JSON: lost_threads_total says it */
        fs_out_line(o, "  ... and ");
        fs_buf_int(&o->b, c->total - shown);
        fs_buf_str(&o->b, " more");
    }
}

static void write_fork_report(void);

FS_FORK_PATH void fs_report_fork_if_owed(void) {
    if (fs_likely(!atomic_load_explicit(&fs_proc.report_owed, memory_order_relaxed))) return;
    if (fs_sys_getpid() != fs_proc.report_owed_pid || !atomic_exchange(&fs_proc.report_owed, 0)) return;
    write_fork_report();
}

static void write_fork_report(void) {
    const struct fs_fork_record *r = &fs_fork_record;
    uint32_t seq = fs_proc.fork_seq;
    static pid_t lost[FS_MAX_LISTED]; /* one report at a time: report_owed was ours */
    int n = 0, listed = r->ntasks < FS_MAX_LISTED ? r->ntasks : FS_MAX_LISTED;
    fs_thread_index_build();
    for (int i = 0; i < listed; i++) {
        pid_t tid = r->tasks[i];
        if (tid == r->forking_tid) continue;
        struct fs_thread *t = fs_thread_find_tid(r->parent_pid, tid);
        if (t && t->lost_seq == seq) {
            t->listed_seq = seq;
            lost[n++] = tid;
        } else if (!t) {
            lost[n++] = tid; /* unknown to the registry */
        }
    }
    uint32_t used = fs_registry_used();
    for (uint32_t i = 0; i < used && n < FS_MAX_LISTED; i++) {
        struct fs_thread *t = &fs_threads[i];
        if (atomic_load(&t->state) == FS_T_LOST && t->lost_seq == seq && t->listed_seq != seq) lost[n++] = t->tid;
    }
    struct fork_ctx c = {r, lost, n, n + (r->ntasks - listed)};
    fs_emit("fork", &r->time, render_fork, &c, 512 + (size_t)n * (256 + 160 * (size_t)fs_setting(FS_SET_stack_depth)));
    fs_thread_index_release();
}

FS_FORK_PATH void fs_report_fork_cancel(void) {
    if (atomic_load(&fs_proc.report_owed) && fs_sys_getpid() == fs_proc.report_owed_pid)
        atomic_store(&fs_proc.report_owed, 0);
}
