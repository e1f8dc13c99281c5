// SPDX-License-Identifier: MIT
// The `fork` event, written by a child of a multi-threaded fork once it shows that it goes on
// running (the entry points in wrap/ call fs_report_fork_if_owed), or never if it execs first.
// Who was lost: the registry's threads lost at this very fork -- a thread may have started or
// ended between the prepare handler's listing and the fork itself -- and the listed threads the
// registry does not know (started before the library loaded, or by libc). So a repair's owner is
// always in its child's list. Green threads the child carries (python/green.c) follow the lost
// threads. In strict mode (core/strict.c) the report ends with the verdict, and a child that
// goes on running with a thread FORKSAFE_ALLOW does not allow is ended right after it.
// Runs in forked children before exec: async-signal-safe only.
#include "report.h"

#include <string.h>

struct fork_ctx {
    const struct fs_fork_record *r;
    const pid_t *lost;
    int nlost, total;
    int ngreen, green_total;      /* green threads carried into the child (python/green.c) */
    int strict;                   /* fs_strict_mode() */
    int not_allowed;              /* strict mode: what it counts and FORKSAFE_ALLOW does not allow */
};

/* Strict mode's verdict on lost thread `tid` (FS_VIEW_*), or 0 outside strict mode. */
static int thread_verdict(const struct fork_ctx *c, pid_t tid, const struct fs_thread *t, const char *name,
                          const struct fs_py_info *py) {
    if (!(c->strict & FS_STRICT_THREADS)) return 0;
    const char *pyname = py && py->name[0] ? py->name : t && t->pyname[0] ? t->pyname : NULL;
    (void)tid;
    return fs_strict_thread_allowed(name, pyname, t ? t->start_sym : 0) ? FS_VIEW_ALLOWED : FS_VIEW_NOT_ALLOWED;
}

static int green_verdict(const struct fork_ctx *c, const struct fs_py_green *g) {
    if (!(c->strict & FS_STRICT_GREENLETS)) return 0;
    return g->stopped || fs_strict_green_allowed(g->name) ? FS_VIEW_ALLOWED : FS_VIEW_NOT_ALLOWED;
}

/* Frames kept by python/green.c, from `first`: innermost first (JSON), or as a traceback. */
static void green_frames(struct fs_out *o, const char *key, uint32_t first, uint32_t n, const char *indent) {
    uint32_t shown = (int)n < o->max_frames ? n : (uint32_t)o->max_frames;
    if (shown < n) o->truncated = 1;
    const char *file, *func;
    uint16_t site;
    int line;
    fs_out_list(o, key);
    for (uint32_t k = 0; k < shown; k++) {
        uint32_t i = o->json ? k : shown - 1 - k;
        fs_py_green_frame(first + i, &site, &line);
        fs_py_site(site, &file, &func);
        fs_out_line(o, indent);
        fs_out_frame(o, file, line, func);
    }
    fs_out_end_list(o);
}

/* The green threads the child carries: each goes on running in it as in the parent. */
static void render_green(struct fs_out *o, const struct fork_ctx *c) {
    if (o->json) fs_out_int(o, "carried_greenlets_total", c->green_total);
    fs_out_list(o, "carried_greenlets");
    int shown = 0;
    for (int i = 0; i < c->ngreen && fs_out_room(o, i); i++, shown++) {
        struct fs_py_green g;
        if (fs_py_green_get(i, &g) != 0) break;
        fs_out_obj(o, NULL);
        fs_out_line(o, "  carried ");
        fs_out_plain(o, "library", g.library);
        fs_out_text(o, g.kind[0] == 't' ? " green thread " : g.kind[0] == 'm' ? " main greenlet " : " greenlet ");
        if (o->json) {
            fs_out_plain(o, "kind", g.kind);
            fs_out_int(o, "ident", (long long)g.ident);
        } else {
            fs_buf_hex(&o->b, (uintptr_t)g.ident);
        }
        fs_out_text(o, " (Python ");
        fs_out_quoted(o, "python_name", g.name[0] ? g.name : NULL);
        fs_out_text(o, ")");
        const char *file, *func;
        uint16_t site;
        int line;
        for (uint32_t k = 0; !o->json && k < g.ncreated; k++) { /* text: the application's creation line */
            fs_py_green_frame(g.cfirst + k, &site, &line);
            fs_py_site(site, &file, &func);
            if (!fs_app_file(file)) continue;
            fs_out_text(o, ", created at ");
            fs_buf_text_str(&o->b, file);
            fs_out_text(o, ":");
            fs_buf_int(&o->b, line);
            fs_out_text(o, " in ");
            fs_buf_text_str(&o->b, func);
            break;
        }
        if (g.stopped) fs_out_text(o, ", stopped (FORKSAFE_GREEN=kill)");
        fs_out_bool(o, "stopped", g.stopped);
        int v = green_verdict(c, &g);
        if (v) {
            fs_out_text(o, v == FS_VIEW_ALLOWED ? " [allowed]" : " [not allowed]");
            fs_out_bool(o, "allowed", v == FS_VIEW_ALLOWED);
        }
        green_frames(o, "python_stack", g.first, g.nframes, "      ");
        if (o->json) green_frames(o, "created_at", g.cfirst, g.ncreated, NULL);
        fs_out_end_obj(o);
    }
    fs_out_end_list(o);
    if (c->green_total > shown && !o->json) {
        fs_out_line(o, "  ... and ");
        fs_buf_int(&o->b, c->green_total - shown);
        fs_buf_str(&o->b, " more green threads");
    }
}

static void render_strict(struct fs_out *o, const struct fork_ctx *c) {
    fs_out_obj(o, "strict");
    fs_out_line(o, "");
    fs_out_text(o, c->strict & FS_STRICT_GREENLETS ? "strict mode (FORKSAFE_STRICT=green): "
                                                   : "strict mode (FORKSAFE_STRICT=on): ");
    if (c->not_allowed) {
        fs_out_int(o, "not_allowed", c->not_allowed);
        fs_out_text(o, c->not_allowed == 1 ? " of them is not in FORKSAFE_ALLOW" : " of them are not in FORKSAFE_ALLOW");
        fs_out_text(o, " and the child goes on running after the fork: an error; it exits with status ");
        fs_out_int(o, "exit_status", FS_STRICT_EXIT_STATUS);
    } else {
        if (o->json) fs_out_int(o, "not_allowed", 0); /* text says it in words */
        fs_out_str(o, "exit_status", NULL);
        fs_out_text(o, "every one of them is in FORKSAFE_ALLOW; the child goes on");
    }
    fs_out_end_obj(o);
}

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
    fs_out_text(o, c->total == 1 ? " thread" : " threads");
    if (c->green_total && !o->json) {
        struct fs_py_green g;
        fs_out_text(o, " and carries ");
        fs_buf_int(&o->b, c->green_total);
        fs_out_text(o, c->green_total == 1 ? " green thread (" : " green threads (");
        fs_out_text(o, fs_py_green_get(0, &g) == 0 ? g.library : "?");
        fs_out_text(o, c->green_total == 1 ? "), which goes on running in it as in the parent"
                                           : "), which go on running in it as in the parent");
    }
    fs_out_text(o, ":");
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
                                   .pyname = tpy && tpy->name[0] ? tpy->name : NULL, .py = tpy, .app = -1,
                                   .strict = thread_verdict(c, tid, t, name, tpy)};
        fs_out_thread(o, NULL, &v);
    }
    fs_out_end_list(o);
    if (c->total > shown && !o->json) { /* JSON: lost_threads_total says it */
        fs_out_line(o, "  ... and ");
        fs_buf_int(&o->b, c->total - shown);
        fs_buf_str(&o->b, " more");
    }
    if (c->green_total) render_green(o, c);
    if (c->strict) render_strict(o, c);
}

/* Strict mode: how many of what it counts FORKSAFE_ALLOW does not allow (threads beyond the list
 * count as not allowed). */
static int count_not_allowed(struct fork_ctx *c) {
    int bad = 0;
    struct fs_py_info info;
    for (int i = 0; (c->strict & FS_STRICT_THREADS) && i < c->nlost; i++) {
        struct fs_thread *t = fs_thread_find_tid(c->r->parent_pid, c->lost[i]);
        char name[16];
        fs_thread_name(t, c->r->parent_pid, c->lost[i], name);
        bad += thread_verdict(c, c->lost[i], t, name, fs_py_lookup(c->lost[i], &info)) == FS_VIEW_NOT_ALLOWED;
    }
    if (c->strict & FS_STRICT_THREADS) bad += c->total - c->nlost;
    for (int i = 0; (c->strict & FS_STRICT_GREENLETS) && i < c->ngreen; i++) {
        struct fs_py_green g;
        if (fs_py_green_get(i, &g) == 0) bad += green_verdict(c, &g) == FS_VIEW_NOT_ALLOWED;
    }
    if (c->strict & FS_STRICT_GREENLETS) bad += c->green_total - c->ngreen;
    return bad;
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
    struct fork_ctx c = {r, lost, n, n + (r->ntasks - listed), 0, 0, fs_strict_mode(), 0};
    c.ngreen = fs_py_green_count(&c.green_total);
    if (c.total == 0 && c.green_total == 0) { /* a green fork whose greenlets all ended: nothing */
        fs_thread_index_release();
        return;
    }
    if (c.total == 0 && !(c.strict & FS_STRICT_GREENLETS)) c.strict = 0; /* not a multi-threaded fork */
    if (c.strict) c.not_allowed = count_not_allowed(&c);
    size_t per = 256 + 160 * (size_t)fs_setting(FS_SET_stack_depth);
    fs_emit("fork", &r->time, render_fork, &c, 512 + (size_t)n * per + (size_t)c.ngreen * (per + 160 * FS_CREATE_DEPTH));
    fs_thread_index_release();
    if (c.not_allowed) fs_strict_exit();
}

FS_FORK_PATH void fs_report_fork_cancel(void) {
    if (atomic_load(&fs_proc.report_owed) && fs_sys_getpid() == fs_proc.report_owed_pid)
        atomic_store(&fs_proc.report_owed, 0);
}
