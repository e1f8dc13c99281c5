// SPDX-License-Identifier: MIT
// The emitter: the one place that knows how an event looks. A render function describes an
// event's fields once; here they become either text lines, each prefixed `forksafe[PID]: `, or
// one JSON object `{"event":...,"time":...,"pid":...,...}` on one line. The thread object, the
// frame object, the prefix and the JSON frame are written here and nowhere else.
// An event is rendered into one buffer and handed to the sink whole: a JSON event is always one
// write(2), never split. If it does not fit, it is rendered again shorter -- Python frames
// dropped first, then list entries -- and marked `"truncated": true`.
// Runs in forked children before exec and in signal handlers: a stack buffer or a private
// anonymous mapping, our formatter, no malloc, no stdio.
#include "report.h"

#include <limits.h>
#include <string.h>
#include <sys/mman.h>

#define SMALL 4096
#define LARGE_MIN (256 * 1024)

static void member(struct fs_out *o, const char *key) {
    if (o->comma) fs_buf_chr(&o->b, ',');
    if (key) {
        fs_buf_chr(&o->b, '"');
        fs_buf_str(&o->b, key);
        fs_buf_str(&o->b, "\":");
    }
    o->comma = 1;
}

void fs_out_int(struct fs_out *o, const char *key, long long v) {
    if (o->json) member(o, key);
    fs_buf_int(&o->b, v);
}

void fs_out_str(struct fs_out *o, const char *key, const char *s) {
    if (!o->json) {
        if (s) fs_buf_text_str(&o->b, s);
        return;
    }
    member(o, key);
    if (s) fs_buf_json_str(&o->b, s);
    else fs_buf_str(&o->b, "null");
}

void fs_out_plain(struct fs_out *o, const char *key, const char *s) {
    if (o->json) {
        member(o, key);
        fs_buf_chr(&o->b, '"');
    }
    fs_buf_str(&o->b, s);
    if (o->json) fs_buf_chr(&o->b, '"');
}

void fs_out_quoted(struct fs_out *o, const char *key, const char *s) {
    if (o->json) return fs_out_str(o, key, s);
    fs_buf_chr(&o->b, '\'');
    fs_buf_text_str(&o->b, s ? s : "");
    fs_buf_chr(&o->b, '\'');
}

void fs_out_bool(struct fs_out *o, const char *key, int v) {
    if (!o->json) return;
    member(o, key);
    fs_buf_str(&o->b, v ? "true" : "false");
}

void fs_out_hex(struct fs_out *o, const char *key, uintptr_t v) {
    if (o->json) {
        member(o, key);
        fs_buf_chr(&o->b, '"');
    }
    fs_buf_hex(&o->b, v);
    if (o->json) fs_buf_chr(&o->b, '"');
}

void fs_out_text(struct fs_out *o, const char *s) {
    if (!o->json) fs_buf_str(&o->b, s);
}

static void prefix(struct fs_out *o) {
    fs_buf_str(&o->b, "forksafe[");
    fs_buf_int(&o->b, o->pid);
    fs_buf_str(&o->b, "]: ");
}

void fs_out_line(struct fs_out *o, const char *indent) {
    if (o->json) return;
    fs_buf_chr(&o->b, '\n');
    prefix(o);
    fs_buf_str(&o->b, indent);
}

void fs_out_obj(struct fs_out *o, const char *key) {
    if (!o->json) return;
    member(o, key);
    fs_buf_chr(&o->b, '{');
    o->comma = 0;
}

void fs_out_end_obj(struct fs_out *o) {
    if (!o->json) return;
    fs_buf_chr(&o->b, '}');
    o->comma = 1;
}

void fs_out_list(struct fs_out *o, const char *key) {
    if (!o->json) return;
    member(o, key);
    fs_buf_chr(&o->b, '[');
    o->comma = 0;
}

void fs_out_end_list(struct fs_out *o) {
    if (!o->json) return;
    fs_buf_chr(&o->b, ']');
    o->comma = 1;
}

int fs_out_room(struct fs_out *o, int i) {
    if (i < o->max_items) return 1;
    o->truncated = 1;
    return 0;
}

void fs_out_frame(struct fs_out *o, const char *file, int line, const char *func) {
    fs_out_obj(o, NULL);
    fs_out_text(o, "File \"");
    fs_out_str(o, "file", file);
    fs_out_text(o, "\", line ");
    fs_out_int(o, "line", line);
    fs_out_text(o, ", in ");
    fs_out_str(o, "function", func);
    fs_out_end_obj(o);
}

void fs_out_python_stack(struct fs_out *o, const char *key, const struct fs_py_info *py, const char *indent) {
    int n = (int)py->nframes < o->max_frames ? (int)py->nframes : o->max_frames;
    if (n < (int)py->nframes) o->truncated = 1;
    const char *file, *func;
    int line;
    if (o->json) { /* innermost first */
        fs_out_list(o, key);
        for (int i = 0; i < n; i++) {
            fs_py_frame(py, (uint32_t)i, &file, &func, &line);
            fs_out_frame(o, file, line, func);
        }
        fs_out_end_list(o);
        return;
    }
    for (int i = n; i-- > 0;) { /* as a traceback shows them: most recent call last */
        fs_py_frame(py, (uint32_t)i, &file, &func, &line);
        fs_out_line(o, indent);
        fs_out_frame(o, file, line, func);
    }
}

void fs_out_created_at(struct fs_out *o, const char *key, const struct fs_thread *t) {
    if (!o->json) return;
    int n = t->ncreate < o->max_frames ? t->ncreate : o->max_frames;
    if (n < t->ncreate) o->truncated = 1;
    fs_out_list(o, key);
    for (int i = 0; i < n; i++) {
        const char *file, *func;
        fs_py_site(t->create_site[i], &file, &func);
        fs_out_frame(o, file, t->create_line[i], func);
    }
    fs_out_end_list(o);
}

int fs_app_file(const char *file) {
    return file[0] && strncmp(file, "<frozen", 7) != 0 && !strstr(file, "/lib/python") &&
           !strstr(file, "site-packages") && !strstr(file, "dist-packages");
}

int fs_app_frame(const struct fs_thread *t) {
    for (int i = 0; i < t->ncreate; i++) {
        const char *file, *func;
        fs_py_site(t->create_site[i], &file, &func);
        if (fs_app_file(file)) return i;
    }
    return -1;
}

void fs_out_thread(struct fs_out *o, const char *key, const struct fs_thread_view *v) {
    int plain = 0;
    const char *start = fs_symbol_str(v->start_sym, &plain);
    int known = start != NULL;
    fs_out_obj(o, key);
    fs_out_line(o, "  ");
    if (v->label) {
        fs_out_text(o, v->label);
        fs_out_text(o, " ");
    }
    fs_out_text(o, "thread ");
    fs_out_int(o, "tid", v->tid);
    fs_out_text(o, " ");
    fs_out_quoted(o, "name", v->name);
    if (v->pyname) {
        fs_out_text(o, " (Python ");
        fs_out_quoted(o, "python_name", v->pyname);
        fs_out_text(o, ")");
    } else if (v->py && o->json) {
        fs_out_str(o, "python_name", NULL); /* a Python thread without a Thread object */
    }
    fs_out_text(o, known ? " started at " : " (start routine unknown)");
    if (known && plain) fs_out_plain(o, "start", start);
    else fs_out_str(o, "start", start);
    if (v->state && o->json) fs_out_str(o, "state", v->state);
    if (v->strict) { /* strict mode's verdict on this thread */
        fs_out_text(o, v->strict == FS_VIEW_ALLOWED ? " [allowed]" : " [not allowed]");
        fs_out_bool(o, "allowed", v->strict == FS_VIEW_ALLOWED);
    }
    if (v->created && v->app >= 0 && !o->json) {
        const char *file, *func;
        fs_py_site(v->created->create_site[v->app], &file, &func);
        fs_out_text(o, ", created at ");
        fs_buf_text_str(&o->b, file);
        fs_out_text(o, ":");
        fs_buf_int(&o->b, v->created->create_line[v->app]);
        fs_out_text(o, " in ");
        fs_buf_text_str(&o->b, func);
    }
    if (v->py) fs_out_python_stack(o, "python_stack", v->py, "      ");
    if (v->created && v->created->ncreate) fs_out_created_at(o, "created_at", v->created);
    fs_out_end_obj(o);
}

/* ---- the event ---- */

static void render_once(struct fs_out *o, const char *event, const struct timespec *when, fs_render_fn render,
                        const void *ctx) {
    o->b.len = 0;
    o->b.overflow = 0;
    o->truncated = 0;
    if (o->json) {
        fs_buf_str(&o->b, "{\"event\":");
        fs_buf_json_str(&o->b, event);
        fs_buf_str(&o->b, ",\"time\":\"");
        fs_buf_time_iso(&o->b, when);
        fs_buf_str(&o->b, "\",\"pid\":");
        fs_buf_int(&o->b, o->pid);
        o->comma = 1;
    } else {
        prefix(o);
    }
    render(o, ctx);
    if (o->truncated) {
        if (o->json) fs_buf_str(&o->b, ",\"truncated\":true");
        else fs_out_line(o, "  (shortened: the full report did not fit)");
    }
    fs_buf_str(&o->b, o->json ? "}\n" : "\n");
}

/* Renders the event as JSON or text and writes it. For the journal (fs_sink_journal) the JSON
 * rendering, `first`, is kept while the text one is made, and the two go out together. */
static void emit_as(int json, const char *event, const struct timespec *when, fs_render_fn render,
                    const void *ctx, size_t size_hint, const struct fs_buf *first) {
    struct fs_out o = {.json = json, .pid = fs_proc_pid_checked(),
                       .max_frames = INT_MAX, .max_items = INT_MAX};
    const size_t largest = (size_t)fs_setting(FS_SET_event_max); /* FORKSAFE_EVENT_MAX, >= SMALL */
    char small[SMALL];
    char *mem = small;
    size_t cap = sizeof small, mapped = 0;
    for (int attempt = 0;; attempt++) {
        if (size_hint > cap && !mapped && largest > cap) { /* needs (or needed) more room: a mapping */
            size_t want = size_hint * 2 < LARGE_MIN ? LARGE_MIN : size_hint * 2;
            if (want > largest) want = largest;
            void *p = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p != MAP_FAILED) {
                mem = p;
                cap = mapped = want;
            }
        }
        fs_buf_init(&o.b, mem, cap, -1);
        render_once(&o, event, when, render, ctx);
        if (!o.b.overflow) break;
        if (!mapped && attempt == 0 && largest > cap) {
            size_hint = largest; /* did not fit the stack buffer: the largest mapping */
            continue;
        }
        /* Too large even so: shorter, and shorter again. */
        if (o.max_frames > 0) o.max_frames = 0;
        else if (o.max_items == INT_MAX) o.max_items = 1024;
        else if (o.max_items > 0) o.max_items /= 2;
        else break; /* cannot happen with a sane buffer: write what fits */
    }
    if (o.b.overflow) { /* keep whole lines: cut back to the last complete one */
        while (o.b.len > 0 && o.b.p[o.b.len - 1] != '\n') o.b.len--;
    }
    if (first) fs_sink_write_event(first->p, first->len, o.b.p, o.b.len);
    else if (json && fs_sink_journal()) emit_as(0, event, when, render, ctx, size_hint, &o.b);
    else fs_sink_write(o.b.p, o.b.len, !o.json);
    if (mapped) munmap(mem, mapped);
}

void fs_emit(const char *event, const struct timespec *when, fs_render_fn render, const void *ctx,
             size_t size_hint) {
    if (!fs_sink_available()) return;
    struct timespec now;
    if (!when) {
        clock_gettime(CLOCK_REALTIME, &now);
        when = &now;
    }
    emit_as(fs_sink_journal() || fs_setting(FS_SET_format) == FS_FORMAT_JSON, event, when, render, ctx, size_hint,
            NULL);
}
