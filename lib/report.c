// SPDX-License-Identifier: MIT
// The reports, in text or JSON (the README's "Report format" section is the contract).
// Written from forked children, possibly before exec: async-signal-safe only -- a stack buffer,
// our formatter, write(2) to a descriptor we own.
#include "internal.h"

#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define REPORT_BUF 4096

static int json(void) { return fs_setting(FS_SET_format) == FS_FORMAT_JSON; }

void fs_report_line_start(struct fs_buf *b, const char *event, const struct timespec *when) {
    if (json()) {
        fs_buf_str(b, "{\"event\":");
        fs_buf_json_str(b, event);
        fs_buf_str(b, ",\"time\":\"");
        fs_buf_time_iso(b, when);
        fs_buf_str(b, "\",\"pid\":");
        fs_buf_int(b, fs_pid);
    } else {
        fs_buf_str(b, "forksafe[");
        fs_buf_int(b, fs_pid);
        fs_buf_str(b, "]: ");
    }
}

void fs_report_line_end(struct fs_buf *b) { fs_buf_str(b, json() ? "}\n" : "\n"); }

static void self_name(char name[16]) {
    if (prctl(PR_GET_NAME, name) != 0) name[0] = '\0';
}

void fs_thread_name(const struct fs_thread *t, pid_t pid, pid_t tid, char name[16]) {
    if (t && t->name[0]) {
        __builtin_memcpy(name, t->name, 16);
        name[15] = '\0';
    } else if (fs_read_comm(pid, tid, name) != 0) {
        name[0] = '\0';
    }
}

/* Python fields of thread `tid`, if the process hosts CPython and the fork had a snapshot. */
static void json_python(struct fs_buf *b, pid_t tid, int with_name) {
    struct fs_py_info info;
    if (!fs_py_lookup(tid, &info)) return;
    if (with_name) {
        fs_buf_str(b, ",\"python_name\":");
        if (info.name[0]) fs_buf_json_str(b, info.name);
        else fs_buf_str(b, "null");
    }
    fs_report_json_python_stack(b, &info);
}

void fs_report_json_python_stack(struct fs_buf *b, const struct fs_py_info *info) {
    fs_buf_str(b, ",\"python_stack\":[");
    for (uint32_t i = 0; i < info->nframes; i++) {
        const char *file, *func;
        int line;
        fs_py_frame(info, i, &file, &func, &line);
        fs_buf_str(b, i ? ",{\"file\":" : "{\"file\":");
        fs_buf_json_str(b, file);
        fs_buf_str(b, ",\"line\":");
        fs_buf_int(b, line);
        fs_buf_str(b, ",\"function\":");
        fs_buf_json_str(b, func);
        fs_buf_chr(b, '}');
    }
    fs_buf_chr(b, ']');
}

/* The same as text: the Python name, then the frames as a traceback shows them (most recent
 * call last). */
static void text_python(struct fs_buf *b, pid_t tid, const struct timespec *when, const char *indent,
                        const char *what) {
    struct fs_py_info info;
    if (!fs_py_lookup(tid, &info)) return;
    fs_report_line_start(b, "fork", when);
    fs_buf_str(b, indent);
    fs_buf_str(b, what);
    if (info.name[0]) {
        fs_buf_chr(b, '\'');
        fs_buf_str(b, info.name);
        fs_buf_chr(b, '\'');
    } else {
        fs_buf_str(b, "(unnamed)");
    }
    fs_buf_str(b, info.nframes ? ", most recent call last:\n" : "\n");
    fs_report_text_python_stack(b, &info, "fork", when, indent);
}

void fs_report_text_python_stack(struct fs_buf *b, const struct fs_py_info *info, const char *event,
                                 const struct timespec *when, const char *indent) {
    for (uint32_t i = info->nframes; i-- > 0;) {
        const char *file, *func;
        int line;
        fs_py_frame(info, i, &file, &func, &line);
        fs_report_line_start(b, event, when);
        fs_buf_str(b, indent);
        fs_buf_str(b, "  File \"");
        fs_buf_str(b, file);
        fs_buf_str(b, "\", line ");
        fs_buf_int(b, line);
        fs_buf_str(b, ", in ");
        fs_buf_str(b, func);
        fs_buf_chr(b, '\n');
    }
}

/* Keeps the Python name in the lost thread's slot, for later repair entries. */
static void remember_python_name(pid_t pid, pid_t tid) {
    struct fs_py_info info;
    struct fs_thread *t = fs_thread_find_tid(pid, tid);
    if (!t || !fs_py_lookup(tid, &info)) return;
    size_t n = __builtin_strlen(info.name);
    if (n >= sizeof t->pyname) n = sizeof t->pyname - 1;
    __builtin_memcpy(t->pyname, info.name, n);
    t->pyname[n] = '\0';
}

static void text_thread(struct fs_buf *b, pid_t tid, const char *name) {
    fs_buf_str(b, "thread ");
    fs_buf_int(b, tid);
    fs_buf_str(b, " '");
    fs_buf_str(b, name);
    fs_buf_chr(b, '\'');
}

void fs_report_fork(const struct fs_fork_snapshot *snap, pid_t child_pid) {
    int fd = fs_log_fd();
    if (fd < 0) return;
    char mem[REPORT_BUF], fname[16], name[16];
    struct fs_buf b;
    fs_buf_init(&b, mem, sizeof mem, fd);
    self_name(fname);
    fs_thread_index_build();
    /* Who was lost: the registry's threads lost at this very fork (a thread may have started or
     * ended between the prepare handler's listing and the fork itself), and the threads of the
     * listing that the registry does not know (started before us, or by libc). */
    static pid_t list[FS_MAX_SNAPSHOT];
    int nlist = 0, listed = snap->ntasks < FS_MAX_SNAPSHOT ? snap->ntasks : FS_MAX_SNAPSHOT;
    for (int i = 0; i < listed; i++) {
        pid_t tid = snap->tasks[i];
        if (tid == snap->forking_tid) continue;
        struct fs_thread *t = fs_thread_find_tid(snap->parent_pid, tid);
        if (t && t->lost_seq == fs_fork_seq) {
            t->listed_seq = fs_fork_seq;
            list[nlist++] = tid;
        } else if (!t) {
            list[nlist++] = tid; /* unknown to the registry */
        }
    }
    uint32_t hwm = atomic_load(&fs_threads_hwm);
    for (uint32_t i = 0; i < hwm && i < FS_MAX_THREADS && nlist < FS_MAX_SNAPSHOT; i++) {
        struct fs_thread *t = &fs_threads[i];
        if (atomic_load(&t->state) == FS_T_LOST && t->lost_seq == fs_fork_seq && t->listed_seq != fs_fork_seq)
            list[nlist++] = t->tid;
    }
    int nlost = nlist + (snap->ntasks - listed);

    fs_report_line_start(&b, "fork", &snap->time);
    if (json()) {
        fs_buf_str(&b, ",\"parent_pid\":");
        fs_buf_int(&b, snap->parent_pid);
        fs_buf_str(&b, ",\"child_pid\":");
        fs_buf_int(&b, child_pid);
        fs_buf_str(&b, ",\"forking_thread\":{\"tid\":");
        fs_buf_int(&b, snap->forking_tid);
        fs_buf_str(&b, ",\"name\":");
        fs_buf_json_str(&b, fname);
        json_python(&b, snap->forking_tid, 1);
        fs_buf_str(&b, "},\"lost_threads_total\":");
        fs_buf_int(&b, nlost);
        fs_buf_str(&b, ",\"lost_threads\":[");
    } else {
        fs_buf_str(&b, "process ");
        fs_buf_int(&b, snap->parent_pid);
        fs_buf_str(&b, " forked child ");
        fs_buf_int(&b, child_pid);
        fs_buf_str(&b, " from ");
        text_thread(&b, snap->forking_tid, fname);
        fs_buf_str(&b, "; the child lost ");
        fs_buf_int(&b, nlost);
        fs_buf_str(&b, nlost == 1 ? " thread:\n" : " threads:\n");
        text_python(&b, snap->forking_tid, &snap->time, "  ", "forked from Python thread ");
    }
    int first = 1;
    for (int i = 0; i < nlist; i++) {
        pid_t tid = list[i];
        const struct fs_thread *t = fs_thread_find_tid(snap->parent_pid, tid);
        fs_thread_name(t, snap->parent_pid, tid, name);
        remember_python_name(snap->parent_pid, tid);
        if (json()) {
            fs_buf_str(&b, first ? "{\"tid\":" : ",{\"tid\":");
            fs_buf_int(&b, tid);
            fs_buf_str(&b, ",\"name\":");
            fs_buf_json_str(&b, name);
            fs_buf_str(&b, ",\"start\":");
            fs_symbol_json(&b, t ? t->start_sym : 0);
            json_python(&b, tid, 1);
            fs_buf_chr(&b, '}');
        } else {
            fs_report_line_start(&b, "fork", &snap->time);
            fs_buf_str(&b, "  lost ");
            text_thread(&b, tid, name);
            if (t && t->start_sym) {
                fs_buf_str(&b, " started at ");
                fs_symbol_format(&b, t->start_sym);
            } else {
                fs_buf_str(&b, " (start routine unknown: not started through pthread_create, or not yet running)");
            }
            fs_buf_chr(&b, '\n');
            text_python(&b, tid, &snap->time, "    ", "Python thread ");
        }
        first = 0;
    }
    if (json()) {
        fs_buf_chr(&b, ']');
        fs_report_line_end(&b);
    } else if (nlost > nlist) {
        fs_report_line_start(&b, "fork", &snap->time);
        fs_buf_str(&b, "  ... and ");
        fs_buf_int(&b, nlost - nlist);
        fs_buf_str(&b, " more\n");
    }
    fs_buf_flush(&b);
    fs_thread_index_release();
}

static void text_pyname(struct fs_buf *b, const char *pyname) {
    if (!pyname || !pyname[0]) return;
    fs_buf_str(b, " (Python '");
    fs_buf_str(b, pyname);
    fs_buf_str(b, "')");
}

void fs_report_lock(const char *event, const void *lock, fs_token owner_token, const char *reason) {
    const struct fs_thread *t = fs_thread_by_token(owner_token);
    char oname[16];
    fs_thread_name(t, t->home_pid, t->tid, oname);
    struct fs_lock_owner owner = {t->tid, oname, t->pyname, reason};
    fs_report_lock_event(event, "semaphore", lock, &owner);
}

void fs_report_lock_event(const char *event, const char *type, const void *lock, const struct fs_lock_owner *owner) {
    int fd = fs_log_fd();
    if (fd < 0) return;
    char mem[1024], name[16];
    struct fs_buf b;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    fs_buf_init(&b, mem, sizeof mem, fd);
    self_name(name);
    int repaired = event[5] == 'r'; /* "lock_repaired" */

    fs_report_line_start(&b, event, &now);
    if (json()) {
        fs_buf_str(&b, ",\"lock\":\"");
        fs_buf_hex(&b, (uintptr_t)lock);
        fs_buf_str(&b, "\",\"type\":");
        fs_buf_json_str(&b, type);
        fs_buf_str(&b, ",\"owner_tid\":");
        fs_buf_int(&b, owner->tid);
        fs_buf_str(&b, ",\"owner_name\":");
        fs_buf_json_str(&b, owner->name);
        if (owner->pyname && owner->pyname[0]) {
            fs_buf_str(&b, ",\"owner_python_name\":");
            fs_buf_json_str(&b, owner->pyname);
        }
        fs_buf_str(&b, ",\"tid\":");
        fs_buf_int(&b, fs_gettid());
        fs_buf_str(&b, ",\"name\":");
        fs_buf_json_str(&b, name);
        if (owner->reason) {
            fs_buf_str(&b, ",\"reason\":");
            fs_buf_json_str(&b, owner->reason);
        }
    } else {
        if (!repaired) {
            text_thread(&b, fs_gettid(), name);
            fs_buf_str(&b, " waits on ");
        } else {
            fs_buf_str(&b, "repaired ");
        }
        fs_buf_str(&b, strcmp(type, "semaphore") == 0 ? "semaphore " : "Python RLock ");
        fs_buf_hex(&b, (uintptr_t)lock);
        fs_buf_str(&b, repaired ? ": held by lost " : ", held by lost ");
        text_thread(&b, owner->tid, owner->name);
        text_pyname(&b, owner->pyname);
        if (repaired && strcmp(type, "semaphore") != 0) {
            fs_buf_str(&b, ", released: free again");
        } else if (repaired) {
            fs_buf_str(&b, ", handed to ");
            text_thread(&b, fs_gettid(), name);
        } else {
            fs_buf_str(&b, "; not repaired (");
            fs_buf_str(&b, owner->reason ? owner->reason : "?");
            fs_buf_str(&b, "): unless another thread posts it, this wait never ends");
        }
    }
    fs_report_line_end(&b);
    fs_buf_flush(&b);
}
