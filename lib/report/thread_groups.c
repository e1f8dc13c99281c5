// SPDX-License-Identifier: MIT
// `threads`: when the number of live threads first reaches FORKSAFE_THREADS_WARN (N), and again
// at 2N, 4N, ..., the live threads grouped by where they were created -- start routine, Python
// name with numbers folded ("Thread-N (worker)"), and the Python stack that started them --
// largest group first. Written by the thread whose start crossed the threshold.
#include "report.h"

#include <string.h>

#define MAX_GROUPS 256
#define SHOW_GROUPS 10

static _Atomic uint32_t next_warning;

/* Copies `name` with each run of digits replaced by "N": "Thread-12 (worker)" -> "Thread-N (worker)". */
static void fold(const char *name, char *out, size_t cap) {
    size_t k = 0;
    for (const char *c = name; *c && k + 1 < cap; c++) {
        if (*c >= '0' && *c <= '9') {
            out[k++] = 'N';
            while (c[1] >= '0' && c[1] <= '9') c++;
        } else {
            out[k++] = *c;
        }
    }
    out[k] = '\0';
}

static int same_group(const struct fs_thread *a, const struct fs_thread *b) {
    if (a->start_sym != b->start_sym || a->ncreate != b->ncreate) return 0;
    for (int i = 0; i < a->ncreate; i++)
        if (a->create_site[i] != b->create_site[i] || a->create_line[i] != b->create_line[i]) return 0;
    char fa[48], fb[48];
    fold(a->pyname, fa, sizeof fa);
    fold(b->pyname, fb, sizeof fb);
    return strcmp(fa, fb) == 0;
}

struct group { uint32_t rep, count; };
struct groups_ctx {
    const struct group *g;
    int n, ungrouped, count;
    uint32_t threshold;
};

static void render_groups(struct fs_out *o, const void *ctx) {
    const struct groups_ctx *c = ctx;
    fs_out_int(o, "count", c->count);
    fs_out_text(o, " threads (FORKSAFE_THREADS_WARN reached ");
    fs_out_int(o, "threshold", c->threshold);
    fs_out_text(o, "); the largest groups by where they were created:");
    fs_out_list(o, "groups");
    for (int g = 0; g < c->n && g < SHOW_GROUPS && fs_out_room(o, g); g++) {
        const struct fs_thread *t = &fs_threads[c->g[g].rep];
        char folded[48], start[256];
        fold(t->pyname, folded, sizeof folded);
        int app = fs_app_frame(t), known = fs_symbol_text(t->start_sym, start, sizeof start) == 0;
        fs_out_obj(o, NULL);
        fs_out_line(o, "  ");
        fs_out_int(o, "count", c->g[g].count);
        fs_out_text(o, " x");
        if (folded[0] || o->json) {
            fs_out_text(o, " Python ");
            fs_out_quoted(o, "python_name", folded[0] ? folded : NULL);
        }
        if (known || o->json) {
            fs_out_text(o, " started at ");
            fs_out_str(o, "start", known ? start : NULL);
        }
        fs_out_created_at(o, "created_at", t);
        int shown = app >= 0 ? app : t->ncreate ? 0 : -1;
        if (o->json) { /* app_frame: the application's line that creates these threads */
            if (app >= 0) {
                const char *file, *func;
                fs_py_site(t->create_site[app], &file, &func);
                fs_out_obj(o, "app_frame");
                fs_out_str(o, "file", file);
                fs_out_int(o, "line", t->create_line[app]);
                fs_out_str(o, "function", func);
                fs_out_end_obj(o);
            } else {
                fs_out_str(o, "app_frame", NULL);
            }
        } else if (shown >= 0) {
            const char *file, *func;
            fs_py_site(t->create_site[shown], &file, &func);
            fs_out_text(o, ", created at ");
            fs_buf_text_str(&o->b, file);
            fs_out_text(o, ":");
            fs_buf_int(&o->b, t->create_line[shown]);
            fs_out_text(o, " in ");
            fs_buf_text_str(&o->b, func);
        } else if (!folded[0] && !known) {
            fs_out_text(o, " not started through pthread_create (the main thread, or started before the library loaded)");
        }
        fs_out_end_obj(o);
    }
    fs_out_end_list(o);
    if (c->ungrouped && o->json) fs_out_int(o, "ungrouped", c->ungrouped);
}

static void groups_report(uint32_t threshold) {
    static struct group groups[MAX_GROUPS];
    int ngroups = 0, other = 0;
    uint32_t used = fs_registry_used();
    for (uint32_t i = 0; i < used; i++) {
        if (atomic_load_explicit(&fs_threads[i].state, memory_order_acquire) != FS_T_LIVE) continue;
        int g = 0;
        while (g < ngroups && !same_group(&fs_threads[groups[g].rep], &fs_threads[i])) g++;
        if (g == ngroups) {
            if (ngroups == MAX_GROUPS) {
                other++;
                continue;
            }
            groups[ngroups].rep = i;
            groups[ngroups++].count = 0;
        }
        groups[g].count++;
    }
    for (int i = 1; i < ngroups; i++) /* largest first */
        for (int j = i; j > 0 && groups[j].count > groups[j - 1].count; j--) {
            struct group tmp = groups[j];
            groups[j] = groups[j - 1];
            groups[j - 1] = tmp;
        }
    struct groups_ctx c = {groups, ngroups, other, fs_thread_count(), threshold};
    fs_emit("threads", NULL, render_groups, &c, 512 + SHOW_GROUPS * 4096);
}

void fs_report_thread_started(uint32_t live) {
    uint32_t warn = atomic_load_explicit(&next_warning, memory_order_relaxed);
    if (fs_likely(warn == 0 || live < warn)) return;
    if (!atomic_compare_exchange_strong(&next_warning, &warn, warn * 2)) return; /* another thread reports */
    groups_report(warn);
}

FS_FORK_PATH void fs_report_threads_after_fork_child(void) {
    uint32_t n = (uint32_t)fs_setting(FS_SET_threads_warn);
    if (atomic_load_explicit(&next_warning, memory_order_relaxed) != n) atomic_store(&next_warning, n);
}

void fs_report_threads_init(void) { fs_report_threads_after_fork_child(); }
