// SPDX-License-Identifier: MIT
// `lock_repaired` and `lock_orphaned`: a lock that a thread lost at the fork held, taken over by
// the child thread that needed it, or left alone (with the reason) by a child thread that may
// now wait forever. Written by that child thread (for the Python RLock layer, by the thread that
// ran it). Async-signal-safe.
#include "report.h"

#include <string.h>
#include <sys/prctl.h>

struct lock_ctx {
    int repaired;
    const char *type;          /* "semaphore", "python_rlock", "pthread_mutex", ... */
    const char *type_text;     /* "semaphore", "Python RLock", "pthread mutex", ... */
    uintptr_t lock;
    pid_t owner_tid;
    const char *owner_name, *owner_pyname, *reason;
    const char *lock_in, *waiter_in; /* the library holding the lock, and the waiting code's */
    uint16_t taken_site;             /* a Python Lock: where its lost holder took it */
    int taken_line;
};

/* Text: "thread TID 'name'" of the calling thread (JSON has it as tid and name). */
static void text_self(struct fs_out *o, const char *name) {
    if (o->json) return;
    fs_out_text(o, "thread ");
    fs_buf_int(&o->b, fs_gettid());
    fs_out_text(o, " ");
    fs_out_quoted(o, NULL, name);
}

/* The waiting thread's own Python stack (a Python lock's waiter), read now, without the GIL. */
static void waiter_stack(struct fs_out *o) {
    struct fs_py_raw_frame f[32];
    int cap = o->max_frames < 32 ? o->max_frames : 32;
    int n = fs_py_own_stack(f, cap);
    if (n <= 0) return;
    if (n == cap) o->truncated = 1;
    if (!o->json) fs_out_text(o, "; waiting in:");
    fs_out_list(o, "waiter_python_stack");
    for (int k = 0; k < n; k++) {
        const struct fs_py_raw_frame *r = &f[o->json ? k : n - 1 - k]; /* text: most recent call last */
        char file[256], func[128];
        int fl = r->file_len < (int)sizeof file - 1 ? r->file_len : (int)sizeof file - 1;
        int nl = r->func_len < (int)sizeof func - 1 ? r->func_len : (int)sizeof func - 1;
        memcpy(file, r->file, (size_t)fl);
        file[fl] = '\0';
        memcpy(func, r->func, (size_t)nl);
        func[nl] = '\0';
        fs_out_line(o, "      ");
        fs_out_frame(o, file, r->line, func);
    }
    fs_out_end_list(o);
}

static void render_lock(struct fs_out *o, const void *ctx) {
    const struct lock_ctx *c = ctx;
    char name[16];
    if (prctl(PR_GET_NAME, name) != 0) name[0] = '\0';
    if (!c->repaired) {
        text_self(o, name);
        fs_out_text(o, " waits on ");
    } else {
        fs_out_text(o, "repaired ");
    }
    fs_out_text(o, c->type_text);
    fs_out_text(o, " ");
    fs_out_hex(o, "lock", c->lock);
    if (o->json) fs_out_str(o, "type", c->type);
    if (c->lock_in && c->lock_in[0]) {
        fs_out_text(o, " (in ");
        fs_out_str(o, "lock_in", c->lock_in);
        fs_out_text(o, ")");
    }
    if (c->owner_name) {
        fs_out_text(o, c->repaired ? ": held by lost thread " : ", held by lost thread ");
        fs_out_int(o, "owner_tid", c->owner_tid);
        fs_out_text(o, " ");
        fs_out_quoted(o, "owner_name", c->owner_name);
    } else { /* a Lock has no owner: only that no thread of the child can release it */
        fs_out_text(o, ", held, and no other thread of this process can release it");
        if (o->json) {
            fs_out_str(o, "owner_tid", NULL);
            fs_out_str(o, "owner_name", NULL);
        }
    }
    if (c->owner_pyname && c->owner_pyname[0]) {
        fs_out_text(o, " (Python ");
        fs_out_quoted(o, "owner_python_name", c->owner_pyname);
        fs_out_text(o, ")");
    }
    if (c->taken_site) { /* the holder's with statement */
        const char *file, *func;
        fs_py_site(c->taken_site, &file, &func);
        fs_out_text(o, ", taken in ");
        fs_out_str(o, "taken_function", func);
        fs_out_text(o, " (");
        fs_out_str(o, "taken_file", file);
        fs_out_text(o, ":");
        fs_out_int(o, "taken_line", c->taken_line);
        fs_out_text(o, ")");
    }
    if (o->json) { /* the text names the waiting thread first, or the taker last */
        fs_out_int(o, "tid", fs_gettid());
        fs_out_str(o, "name", name);
    }
    if (c->waiter_in && c->waiter_in[0]) {
        fs_out_text(o, c->repaired ? ", called from " : ", waiting in ");
        fs_out_str(o, "waiter_in", c->waiter_in);
    }
    if (c->repaired && c->type[0] == 'p') { /* python_rlock, python_lock */
        fs_out_text(o, ", released: free again for ");
        text_self(o, name);
    } else if (c->repaired) {
        fs_out_text(o, ", handed to ");
        text_self(o, name);
    } else {
        fs_out_text(o, "; not repaired (");
        fs_out_str(o, "reason", c->reason);
        fs_out_text(o, c->reason && strcmp(c->reason, "not_proven_timed") == 0
                           ? "): unless another thread releases it, this wait times out"
                           : "): unless another thread releases it, this wait never ends");
        if (c->type[0] == 'p' && c->type[1] == 'y') waiter_stack(o); /* python_lock, python_rlock */
    }
}

static const char *type_text(const char *type) {
    static const char *const names[][2] = {{"semaphore", "semaphore"}, {"python_rlock", "Python RLock"},
                                           {"python_lock", "Python Lock"}, {"pthread_mutex", "pthread mutex"},
                                           {"pthread_rwlock", "pthread rwlock"}};
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(type, names[i][0]) == 0) return names[i][1];
    return type;
}

void fs_report_lock_outcome(const struct fs_lock_outcome *out) {
    const struct fs_thread *t = out->owner ? fs_thread_by_token(out->owner) : NULL;
    const char *type = out->type ? out->type : "semaphore";
    pid_t owner_tid = t ? t->tid : out->owner_tid;
    char oname[16] = "", lock_in[256] = "", waiter_in[256] = "";
    if (t) fs_thread_name(t, t->home_pid, t->tid, oname);
    else if (owner_tid) fs_read_comm(fs_fork_record.parent_pid, owner_tid, oname);
    if (type[0] == 'p' && type[1] == 't') { /* pthread locks: which libraries are involved */
        fs_maps_find((uintptr_t)out->lock, lock_in, sizeof lock_in);
        if (out->waiter_pc) fs_maps_find(out->waiter_pc, waiter_in, sizeof waiter_in);
    }
    struct lock_ctx c = {out->event[5] == 'r', type, type_text(type), (uintptr_t)out->lock, owner_tid,
                         t || owner_tid ? oname : NULL, t ? t->pyname : NULL, out->reason, lock_in, waiter_in,
                         out->taken_site, out->taken_line};
    fs_emit(out->event, NULL, render_lock, &c, 2048);
}

void fs_report_python_rlock(uintptr_t lock, pid_t owner_tid, const char *owner_name, const char *owner_pyname) {
    struct lock_ctx c = {1, "python_rlock", "Python RLock", lock, owner_tid, owner_name, owner_pyname, NULL, NULL, NULL, 0, 0};
    fs_emit("lock_repaired", NULL, render_lock, &c, 1024);
}
