// SPDX-License-Identifier: MIT
// Layer 4, reports. Every event is written by one render function that describes its fields
// once, through the emitter (emit.c), which renders them as text lines or as one JSON object
// and writes the event whole (base/sink.c). The README's "Report format" is the contract.
//   emit.c           the emitter: line prefix, JSON frame, thread and frame objects, shortening
//   fork_report.c    `fork`: what a child lost (written once the child goes on running)
//   lock_report.c    `lock_repaired`, `lock_orphaned`
//   thread_table.c   `exit`, `exec`, `thread_list`: the threads alive now
//   thread_groups.c  `threads`: thread counts grouped by where threads were created
// Reports are written in forked children before exec and in signal handlers: async-signal-safe.
#ifndef FORKSAFE_REPORT_H
#define FORKSAFE_REPORT_H

#include "core/core.h"
#include "python/python.h"

/* ---- emit.c ---- */
struct fs_out {
    struct fs_buf b;
    int json;
    int comma;          /* JSON: the next member or item needs a comma before it */
    int max_frames;     /* frames per stack in this rendering */
    int max_items;      /* entries per list in this rendering */
    int truncated;      /* this rendering left something out */
    pid_t pid;
};
/* Renders one event. Called again, with fewer frames and list entries, if it did not fit. */
typedef void (*fs_render_fn)(struct fs_out *o, const void *ctx);
/* Writes event `event` at time `when` (NULL: now), rendered by `render`. `size_hint`: bytes
 * expected (small events use a stack buffer). Nothing is formatted if nothing can be written. */
void fs_emit(const char *event, const struct timespec *when, fs_render_fn render, const void *ctx,
             size_t size_hint);

/* Fields. Each writes a JSON member `"key":value`, or, in text, the value alone. */
void fs_out_int(struct fs_out *o, const char *key, long long v);
void fs_out_str(struct fs_out *o, const char *key, const char *s);    /* NULL: null (JSON), nothing (text) */
void fs_out_quoted(struct fs_out *o, const char *key, const char *s); /* text: 'value' */
/* A string known to need no escaping (printable ASCII, no quote or backslash): copied as it is. */
void fs_out_plain(struct fs_out *o, const char *key, const char *s);
void fs_out_hex(struct fs_out *o, const char *key, uintptr_t v);      /* JSON: "0x..." */
void fs_out_bool(struct fs_out *o, const char *key, int v);           /* JSON only */
/* Text only (JSON: nothing): a literal, and the start of a new line (prefix, then indent). */
void fs_out_text(struct fs_out *o, const char *s);
void fs_out_line(struct fs_out *o, const char *indent);
/* JSON structure (text: nothing). */
void fs_out_obj(struct fs_out *o, const char *key);    /* key NULL: an item of a list */
void fs_out_end_obj(struct fs_out *o);
void fs_out_list(struct fs_out *o, const char *key);
void fs_out_end_list(struct fs_out *o);
/* May entry `i` of a list be written in this rendering? If not, the event is marked truncated. */
int fs_out_room(struct fs_out *o, int i);

/* One frame: {"file","line","function"} / File "f", line n, in fn. */
void fs_out_frame(struct fs_out *o, const char *file, int line, const char *func);
/* A thread: one JSON object, or one text line ("  LABEL thread TID 'name' ...") followed by its
 * Python stack in traceback order. */
struct fs_thread_view {
    const char *label;             /* text: "lost", "busy", "idle", ... */
    pid_t tid;
    const char *name;              /* OS thread name */
    uint32_t start_sym;            /* 0: unknown */
    const char *state;             /* "busy", "idle" or NULL */
    const char *pyname;            /* NULL: unknown */
    const struct fs_py_info *py;   /* Python stack from the snapshot, or NULL */
    const struct fs_thread *created; /* where it was created (Python), or NULL */
    int app;                       /* text: the creation frame to show, -1 none */
    int strict;                    /* strict mode: FS_VIEW_ALLOWED, FS_VIEW_NOT_ALLOWED; 0 not judged */
};
enum { FS_VIEW_ALLOWED = 1, FS_VIEW_NOT_ALLOWED = 2 };
void fs_out_thread(struct fs_out *o, const char *key, const struct fs_thread_view *v);
/* `key`: the Python stack of `py`, innermost first (JSON); frames as a traceback (text). */
void fs_out_python_stack(struct fs_out *o, const char *key, const struct fs_py_info *py, const char *indent);
/* `key`: where `t` was created, innermost first (JSON only). */
void fs_out_created_at(struct fs_out *o, const char *key, const struct fs_thread *t);
/* The innermost creation frame that is the application's: not the standard library, not an
 * installed package. -1 if none. */
int fs_app_frame(const struct fs_thread *t);
int fs_app_file(const char *file);   /* a file of the application's (same rule) */

/* ---- fork_report.c ---- */
/* Writes this child's fork report if it still owes one (the child is clearly going on). */
void fs_report_fork_if_owed(void);
void fs_report_fork_cancel(void);    /* exec: the child is being replaced */

/* ---- lock_report.c ---- */
/* A lock a child thread took over ("lock_repaired") or will wait on in vain ("lock_orphaned"). */
void fs_report_lock_outcome(const struct fs_lock_outcome *o);
void fs_report_python_rlock(uintptr_t lock, pid_t owner_tid, const char *owner_name, const char *owner_pyname);

/* ---- thread_table.c ---- */
void fs_report_exit(const char *how, const char *path);   /* how: "exit", "_exit", "exec" */
void fs_report_thread_list(void);                         /* FORKSAFE_DUMP_SIGNAL */

/* ---- thread_groups.c ---- */
/* A thread has started: report the groups when the live count reaches N, 2N, 4N, ... */
void fs_report_thread_started(uint32_t live);
void fs_report_threads_after_fork_child(void);   /* thresholds start again from N */
void fs_report_threads_init(void);

#endif
