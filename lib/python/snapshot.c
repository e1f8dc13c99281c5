// SPDX-License-Identifier: MIT
// The Python snapshot: every Python thread's name and stack, taken with the GIL held at a fork
// or an exit (hooks.c decides when), kept in static memory. A forked child, an exit handler or
// a report reads it with fs_py_lookup without calling Python (async-signal-safe). Names come
// from each Thread's own __dict__ (no property or user code runs); stacks from
// sys._current_frames() through the public frame API, code-object strings cached per snapshot.
#include "py.h"

#include <string.h>

#define PY_MAX_THREADS 1024
#define PY_MAX_FRAMES 16384
#define PY_ARENA (512 * 1024)
#define CODE_CACHE 512

struct py_frame { uint32_t file, func; int line; };
struct py_thread { uint64_t ident; pid_t tid; uint32_t name, first, nframes; };

static char arena_mem[PY_ARENA];
static struct {
    _Atomic int writing;
    pid_t taker_pid, taker_tid;   /* the process and thread that took it, for the fork after it */
    int nthreads;
    uint32_t nframes;
    struct py_thread t[PY_MAX_THREADS];
    struct py_frame f[PY_MAX_FRAMES];
    struct fs_arena strings;
} snap;                           /* zero-initialised: in .bss, not 220 KB of the file's .data */
static int valid;                 /* the snapshot describes the moment being reported (fork, exit) */
static uint32_t snap_gen;         /* bumped by every snapshot */

static struct { PyObj *code; uint32_t file, func; } code_cache[CODE_CACHE];

static uint32_t add_str(PyObj *o) {
    const char *s = fs_py_str(o);
    return fs_arena_add(&snap.strings, s ? s : "?", 1024);
}

static void code_names(PyObj *code, uint32_t *file, uint32_t *func) {
    unsigned h = (unsigned)(((uintptr_t)code >> 4) % CODE_CACHE);
    if (code_cache[h].code == code) {
        *file = code_cache[h].file;
        *func = code_cache[h].func;
        return;
    }
    PyObj *f = fs_py_attr(code, "co_filename"), *n = fs_py_attr(code, "co_name");
    *file = add_str(f);
    *func = add_str(n);
    if (f) py.DecRef(f);
    if (n) py.DecRef(n);
    code_cache[h].code = code;
    code_cache[h].file = *file;
    code_cache[h].func = *func;
}

static int add_frame(void *ctx, PyObj *frame, PyObj *code) {
    (void)ctx;
    if (snap.nframes >= PY_MAX_FRAMES) return 1;
    struct py_frame *out = &snap.f[snap.nframes++];
    out->file = out->func = 0;
    if (code) code_names(code, &out->file, &out->func);
    out->line = fs_py_frame_line(frame, code);
    return 0;
}

/* A Thread's name and native id (3.x `_name`, `_native_id`; 2.7 `_Thread__name`), read without
 * running the program's code or building the Thread's __dict__; a new reference. */
static PyObj *thread_field(PyObj *thread, const char *py3, const char *py2) {
    return fs_py_instance_attr(thread, fs_py_version >= 300 ? py3 : py2);
}

static pid_t tid_of(uint64_t ident, PyObj *thread) {
    PyObj *nid = thread ? thread_field(thread, "_native_id", "_Thread__native_id") : NULL; /* 3.8+ */
    pid_t tid = nid && nid != py.None ? (pid_t)fs_py_ulong(nid) : 0;
    if (nid) py.DecRef(nid);
    if (tid > 0) return tid;
    if (ident == (uint64_t)pthread_self()) return fs_gettid();
    struct fs_thread *t = fs_thread_find_pthread((pthread_t)ident);
    return t ? t->tid : 0;
}

/* A Thread still in threading._limbo whose OS thread already runs with this ident: Thread.start()
 * returns once the new thread has set its `started` event, just before it moves itself from
 * _limbo to _active, so a fork right after start() may find it there. Borrowed, or NULL. */
static PyObj *limbo_thread(PyObj *limbo, uint64_t ident) {
    ssize_t pos = 0;
    PyObj *key, *thread, *found = NULL;
    while (!found && limbo && py.Dict_Next(limbo, &pos, &key, &thread)) {
        PyObj *id = thread_field(thread, "_ident", "_Thread__ident");
        if (id && id != py.None && fs_py_ulong(id) == ident) found = thread;
        if (id) py.DecRef(id);
    }
    return found;
}

void fs_py_snapshot_take(void) {
    PyObj *modules = py.Import_GetModuleDict();
    PyObj *sys = modules ? fs_py_dict_get(modules, "sys") : NULL;
    if (!sys) return;
    PyObj *current_frames = fs_py_attr(sys, "_current_frames");
    PyObj *frames = current_frames ? py.Object_CallObject(current_frames, NULL) : NULL;
    if (current_frames) py.DecRef(current_frames);
    if (!frames) {
        py.Err_Clear();
        return;
    }
    PyObj *threading = fs_py_dict_get(modules, "threading"); /* never imported by us */
    PyObj *active = threading ? fs_py_dict_item(threading, "_active") : NULL;
    PyObj *limbo = threading ? fs_py_dict_item(threading, "_limbo") : NULL;
    int depth = fs_setting(FS_SET_stack_depth);

    atomic_store(&snap.writing, 1);
    snap_gen++;
    snap.taker_pid = fs_proc_pid_checked();
    snap.taker_tid = fs_gettid();
    snap.nthreads = 0;
    snap.nframes = 0;
    snap.strings.mem = arena_mem;
    snap.strings.cap = PY_ARENA;
    fs_arena_reset(&snap.strings);
    memset(code_cache, 0, sizeof code_cache);
    fs_py_walk_session();
    fs_py_held_begin();
    ssize_t pos = 0;
    PyObj *key, *frame;
    while (py.Dict_Next(frames, &pos, &key, &frame) && snap.nthreads < PY_MAX_THREADS) {
        struct py_thread *t = &snap.t[snap.nthreads++];
        t->ident = fs_py_ulong(key);
        PyObj *thread = active ? py.Dict_GetItem(active, key) : NULL; /* borrowed */
        if (!thread && t->ident == (uint64_t)pthread_self()) thread = fs_py_green_current_thread(active);
        if (!thread) thread = limbo_thread(limbo, t->ident);
        PyObj *name = thread ? thread_field(thread, "_name", "_Thread__name") : NULL;
        t->name = name ? add_str(name) : 0;
        if (name) py.DecRef(name);
        t->tid = tid_of(t->ident, thread);
        t->first = snap.nframes;
        fs_py_walk(frame, depth, add_frame, NULL);
        fs_py_held_thread(t->ident, frame);
        t->nframes = snap.nframes - t->first; /* what was stored: the frame table may fill up */
    }
    fs_py_held_end();
    py.DecRef(frames);
    py.Err_Clear();
    atomic_store(&snap.writing, 0);
}

int fs_py_multi_threaded(void) {
    extern int __libc_single_threaded;
    return !__libc_single_threaded && fs_thread_count() > 1;
}

void fs_py_snapshot_mark_valid(void) { valid = 1; }

void fs_py_snapshot_for_exit(void) {
    if (!fs_py_detect() || !py.IsInitialized() || (py.IsFinalizing && py.IsFinalizing()) ||
        !py.GILState_GetThisThreadState() || !fs_py_holds_gil())
        return;
    fs_py_snapshot_take();
    valid = 1;
}

FS_FORK_PATH void fs_py_prepare(pid_t forking_tid) {
    int v = forking_tid > 0 && !atomic_load(&snap.writing) && snap.taker_pid == fs_proc.pid &&
            snap.taker_tid == forking_tid && snap.nthreads > 0;
    if (valid != v) valid = v; /* inside fork: write only what changes */
}

/* The snapshot was used (or not) by this fork; never by a later one. */
FS_FORK_PATH void fs_py_parent(void) {
    if (snap.taker_tid) snap.taker_tid = 0;
}

int fs_py_snapshot_valid(void) { return valid; }

int fs_py_snapshot_threads(struct fs_py_thread *out, int cap) {
    int n = 0;
    for (int i = 0; i < snap.nthreads && n < cap; i++, n++) {
        out[n].ident = snap.t[i].ident;
        out[n].tid = snap.t[i].tid;
        out[n].name = fs_arena_str(&snap.strings, snap.t[i].name);
    }
    return n;
}

pid_t fs_py_snapshot_taker(pid_t *tid) {
    if (tid) *tid = snap.taker_tid;
    return snap.taker_pid;
}

/* tid -> snapshot entry, built on the first lookup after a snapshot is taken or inherited. */
static int16_t snap_index[4 * PY_MAX_THREADS];
static uint32_t snap_index_size;
static uint32_t snap_index_gen;

const struct fs_py_info *fs_py_lookup(pid_t tid, struct fs_py_info *out) {
    if (!valid || tid <= 0) return NULL;
    if (snap_index_gen != snap_gen || snap_index_size == 0) {
        for (snap_index_size = 64; snap_index_size < 4 * (uint32_t)snap.nthreads; snap_index_size *= 2) {}
        memset(snap_index, 0, snap_index_size * sizeof snap_index[0]);
        for (int i = 0; i < snap.nthreads; i++) {
            uint32_t h = (uint32_t)snap.t[i].tid * 2654435761u % snap_index_size;
            while (snap_index[h]) h = (h + 1) % snap_index_size;
            snap_index[h] = (int16_t)(i + 1);
        }
        snap_index_gen = snap_gen;
    }
    for (uint32_t h = (uint32_t)tid * 2654435761u % snap_index_size; snap_index[h];
         h = (h + 1) % snap_index_size) {
        int i = snap_index[h] - 1;
        if (snap.t[i].tid != tid) continue;
        out->name = fs_arena_str(&snap.strings, snap.t[i].name);
        out->nframes = snap.t[i].nframes;
        out->first = snap.t[i].first;
        return out;
    }
    return NULL;
}

void fs_py_frame(const struct fs_py_info *info, uint32_t i, const char **file, const char **func, int *line) {
    const struct py_frame *f = &snap.f[info->first + i];
    *file = fs_arena_str(&snap.strings, f->file);
    *func = fs_arena_str(&snap.strings, f->func);
    *line = f->line;
}
