// SPDX-License-Identifier: MIT
// Green threads carried into a forked child. Under gevent's or eventlet's monkey-patching a
// threading.Thread is a greenlet, not an OS thread: a fork does not lose it, it copies it, and it
// goes on running in the child as it does in the parent (a listener started at import runs in the
// master and in every worker). At the OS level the process has one thread, so nothing else in the
// library sees it.
//
// Where they are found, without running any code of the program and without a heap scan:
// threading's own table of running threads, `threading._active`. Under the patch its keys are the
// greenlets' identities, which gevent and eventlet define as id(greenlet): the object's address
// in CPython (docs/internals.md). Its values are the Thread objects: green Threads, the
// _DummyThread of a greenlet that asked threading who it is (gevent.spawn'd code that logs), and
// the main thread. The parent reads the table in our os.register_at_fork(before=) hook -- in the
// child, threading's own after-fork hook, which runs before ours, has already emptied it -- and
// keeps each key that is a greenlet (its type word read fault-safe, then checked by type, never
// dereferenced otherwise) with the Thread's name: O(entries), only where threading is patched,
// no Python object touched but those entries. The child, in our after_in_child hook, checks each
// again with greenlet's own getters (dead, started, of this OS thread, not the hub nor the
// current greenlet), reads its stack (gr_frame) and where it was created (gevent's
// spawning_stack), and under FORKSAFE_GREEN=kill stops it through the library's own API:
// gevent's Greenlet.kill(block=False) / gevent.kill, eventlet's hub.schedule_call_global(-1e9,
// greenlet.throw): the exception is delivered by the hub when the child's loop next runs, never
// from inside our hook. The report (report/fork_report.c) reads what is kept here, without
// calling Python.
#include "py.h"

#include <string.h>

#define GREEN_MAX 1024           /* carried greenlets kept per fork (the count goes on) */
#define POOL 16384               /* frames of their stacks and creation stacks */
#define NAMES (64 * 1024)

enum { KIND_THREAD, KIND_DUMMY, KIND_MAIN, KIND_UNKNOWN };
static const char *const kind_names[] = {"thread", "dummy", "main"};
static const char *const lib_names[] = {"", "gevent", "eventlet"};

struct green {
    uintptr_t addr, type;            /* the greenlet and its type, as the parent saw them */
    uintptr_t thread, thread_type;   /* its Thread in threading._active */
    uint32_t name;                   /* the Thread's name (names arena) */
    uint8_t kind, live, stopped;
    uint32_t first, n;               /* its stack: pool[first, first + n), innermost first */
    uint32_t cfirst, cn;             /* where it was created, innermost first */
};

static char name_mem[NAMES];
static struct {
    int n, total;                    /* kept; found (may exceed GREEN_MAX) */
    int valid;                       /* the capture describes the fork being reported (set inside
                                      * fork; next to `n`: a fork that carries nothing reads one line) */
    pid_t taker_pid, taker_tid;      /* who captured, for the fork right after it */
    int lib;                         /* LIB_* */
    struct green g[GREEN_MAX];
} cap;                               /* zero-initialised: no page of it is touched until used */
static struct fs_arena names = {name_mem, 0, NAMES};
static int details;                  /* this child has checked the greenlets and read their stacks */
static int live_count;
static struct { uint16_t site; int line; } pool[POOL];
static uint32_t pool_n;

enum { LIB_NONE, LIB_GEVENT, LIB_EVENTLET };

/* What we use of greenlet, looked up once it is loaded (modules are never unloaded). */
static struct {
    int ready;
    int type_off;                    /* where an object keeps its type pointer */
    PyObj *greenlet_type, *type_type, *getcurrent, *greenlet_exit;
    PyObj *get_dead, *get_frame, *get_parent, *throw_descr; /* greenlet's own getters */
} G;

/* ---- small helpers (the GIL is held) ---- */

/* An item of module `mod`'s dict (borrowed; modules keep their dicts), or NULL. */
static PyObj *mod_item(PyObj *modules, const char *mod, const char *name) {
    PyObj *m = modules ? py.Dict_GetItemString(modules, mod) : NULL;
    if (!m || !py.Object_GenericGetDict) return NULL;
    PyObj *d = py.Object_GenericGetDict(m, NULL);
    PyObj *r = d ? py.Dict_GetItemString(d, name) : NULL;
    if (d) py.DecRef(d);
    py.Err_Clear();
    return r;
}

static PyObj *call1(PyObj *fn, PyObj *a) {
    PyObj *r = fn ? py.Object_CallFunctionObjArgs(fn, a, NULL) : NULL;
    if (!r) py.Err_Clear();
    return r;
}

/* A descriptor's __get__ bound to the descriptor, from `type`'s own attribute `name`. */
static PyObj *getter(PyObj *type, const char *name) {
    PyObj *d = fs_py_attr(type, name);
    PyObj *g = d ? fs_py_attr(d, "__get__") : NULL;
    if (d) py.DecRef(d);
    return g;
}

void fs_py_green_forget(void) { memset(&G, 0, sizeof G); } /* greenlet's objects are gone */

static int lookup(PyObj *modules) {
    if (G.ready) return 1;
    if (!py.Object_Type || !py.Type_IsSubtype || !py.Object_IsTrue || !py.True || !py.Object_GenericGetDict ||
        !py.Object_CallFunctionObjArgs)
        return 0;
    PyObj *type = mod_item(modules, "greenlet", "greenlet");
    PyObj *getcurrent = mod_item(modules, "greenlet", "getcurrent");
    PyObj *exit_type = mod_item(modules, "greenlet", "GreenletExit");
    if (!type || !getcurrent || !exit_type) return 0;
    PyObj *tt = py.Object_Type(type);
    int off = -1;
    for (int i = 0; tt && i <= 40; i += 8) { /* the type pointer's place, measured on the type itself */
        uintptr_t w;
        memcpy(&w, (char *)type + i, sizeof w);
        if (w == (uintptr_t)tt) {
            off = i;
            break;
        }
    }
    PyObj *dead = getter(type, "dead"), *frame = getter(type, "gr_frame"), *parent = getter(type, "parent");
    PyObj *throw_descr = fs_py_attr(type, "throw");
    if (off < 0 || !dead || !frame || !parent || !throw_descr) {
        if (tt) py.DecRef(tt);
        if (dead) py.DecRef(dead);
        if (frame) py.DecRef(frame);
        if (parent) py.DecRef(parent);
        if (throw_descr) py.DecRef(throw_descr);
        return 0;
    }
    py.IncRef(type);
    py.IncRef(getcurrent);
    py.IncRef(exit_type);
    G.type_off = off;
    G.greenlet_type = type;
    G.type_type = tt; /* kept */
    G.getcurrent = getcurrent;
    G.greenlet_exit = exit_type;
    G.get_dead = dead;
    G.get_frame = frame;
    G.get_parent = parent;
    G.throw_descr = throw_descr;
    G.ready = 1;
    return 1;
}

/* Is there a greenlet at `addr`? Its type word is read fault-safe and must be a type (its own
 * type word is `type`) derived from greenlet's; nothing else of the memory is touched. */
static int greenlet_at(uintptr_t addr, uintptr_t *type_out) {
    uintptr_t type, meta;
    if (!addr || (addr & 7) || fs_safe_read(addr + (uintptr_t)G.type_off, &type, sizeof type) != 0) return 0;
    if (type != (uintptr_t)G.greenlet_type) {
        if (!type || (type & 7) || fs_safe_read(type + (uintptr_t)G.type_off, &meta, sizeof meta) != 0 ||
            meta != (uintptr_t)G.type_type || !py.Type_IsSubtype((PyObj *)type, G.greenlet_type))
            return 0;
    }
    *type_out = type;
    return 1;
}

/* The object at `addr` still has the type word `type` (it was seen there before the fork). */
static int same_type_at(uintptr_t addr, uintptr_t type) {
    uintptr_t t;
    return addr && !(addr & 7) && fs_safe_read(addr + (uintptr_t)G.type_off, &t, sizeof t) == 0 && t == type;
}

/* Which library patched threading: its get_ident is gevent's or eventlet's. */
static int patched_by(PyObj *modules, PyObj *threading) {
    PyObj *ident = fs_py_dict_item(threading, "get_ident");
    if (!ident) return LIB_NONE;
    if (ident == mod_item(modules, "gevent.thread", "get_ident")) return LIB_GEVENT;
    if (ident == mod_item(modules, "eventlet.green.thread", "get_ident")) return LIB_EVENTLET;
    return LIB_NONE;
}

/* Under the patch, threading knows this OS thread's current greenlet, not the OS thread: its
 * Thread (borrowed), or NULL when threading is not patched or does not know it. */
PyObj *fs_py_green_current_thread(PyObj *active) {
    PyObj *modules = py.Import_GetModuleDict();
    PyObj *threading = modules ? py.Dict_GetItemString(modules, "threading") : NULL;
    if (!active || !threading || patched_by(modules, threading) == LIB_NONE || !lookup(modules)) return NULL;
    PyObj *cur = py.Object_CallObject(G.getcurrent, NULL);
    PyObj *key = cur && py.Long_FromUnsignedLongLong ? py.Long_FromUnsignedLongLong((uintptr_t)cur) : NULL;
    PyObj *t = key ? py.Dict_GetItem(active, key) : NULL;
    if (key) py.DecRef(key);
    if (cur) py.DecRef(cur);
    py.Err_Clear();
    return t;
}

/* ---- the parent, before the fork ---- */

/* Keeps each entry of `table` (id(greenlet) -> its Thread) whose key is a greenlet other than
 * `cur`. No allocation, so no code can run and change the table under us; the Threads are held
 * until their names are read. */
static void scan(PyObj *table, PyObj *cur, uint8_t kind) {
    ssize_t pos = 0;
    PyObj *key, *thread;
    while (py.Dict_Next(table, &pos, &key, &thread)) {
        uintptr_t addr = (uintptr_t)fs_py_ulong(key), type;
        if (addr == (uintptr_t)cur || !greenlet_at(addr, &type)) continue;
        cap.total++;
        if (cap.n >= GREEN_MAX) continue;
        struct green *g = &cap.g[cap.n++];
        memset(g, 0, sizeof *g);
        g->addr = addr;
        g->type = type;
        g->thread = (uintptr_t)thread;
        g->kind = kind;
        py.IncRef(thread);
    }
}

int fs_py_green_capture(void) {
    if (fs_setting(FS_SET_green) == FS_GREEN_OFF) return 0;
    if (cap.n || cap.total || cap.taker_pid) cap.n = cap.total = cap.taker_pid = 0;
    if (details) details = 0; /* what a child of ours reads is from its own fork */
    PyObj *modules = py.Import_GetModuleDict();
    PyObj *threading = modules ? py.Dict_GetItemString(modules, "threading") : NULL;
    int lib = threading ? patched_by(modules, threading) : LIB_NONE;
    if (lib == LIB_NONE || !lookup(modules)) return 0;
    PyObj *active = fs_py_dict_item(threading, "_active");
    PyObj *cur = py.Object_CallObject(G.getcurrent, NULL);
    if (!active || !cur) {
        if (cur) py.DecRef(cur);
        py.Err_Clear();
        return 0;
    }
    fs_arena_reset(&names);
    int from = cap.n;
    scan(active, cur, KIND_UNKNOWN);
    /* eventlet keeps its own table of the greenlets that asked threading who they are: the
     * `_GreenThread` wrappers of eventlet.green.threading, one dict per OS thread, by id(greenlet). */
    PyObj *tl = lib == LIB_EVENTLET ? mod_item(modules, "eventlet.green.threading", "__threadlocal") : NULL;
    PyObj *wrappers = tl ? fs_py_attr(tl, "active") : NULL;
    if (wrappers) scan(wrappers, cur, KIND_DUMMY);
    py.DecRef(cur);
    /* Second pass: names and kinds. */
    PyObj *dummy = fs_py_dict_item(threading, "_DummyThread"), *main_type = fs_py_dict_item(threading, "_MainThread");
    for (int i = from; i < cap.n; i++) {
        struct green *g = &cap.g[i];
        PyObj *t = (PyObj *)g->thread, *tt = py.Object_Type(t);
        g->thread_type = (uintptr_t)tt;
        if (g->kind == KIND_UNKNOWN)
            g->kind = tt && main_type && py.Type_IsSubtype(tt, main_type) ? KIND_MAIN
                      : tt && dummy && py.Type_IsSubtype(tt, dummy)   ? KIND_DUMMY
                                                                       : KIND_THREAD;
        if (tt) py.DecRef(tt);
        g->name = fs_arena_add(&names, fs_py_str(fs_py_dict_item(t, "_name")), 256);
        py.DecRef(t);
    }
    if (wrappers) py.DecRef(wrappers);
    py.Err_Clear();
    cap.lib = lib;
    if (cap.n) {
        cap.taker_pid = fs_proc_pid_checked();
        cap.taker_tid = fs_gettid();
    }
    return cap.n;
}

FS_FORK_PATH int fs_py_green_prepare(pid_t forking_tid) {
    int v = cap.n > 0 && cap.taker_tid == forking_tid && cap.taker_pid == fs_proc.pid;
    if (cap.valid != v) cap.valid = v; /* inside fork: write only what changes */
    return v;
}

/* The capture was used (or not) by this fork; never by a later one. */
FS_FORK_PATH void fs_py_green_parent(void) {
    if (cap.taker_tid) cap.taker_tid = 0;
}

/* ---- the child, after the fork, with the GIL ---- */

static PyObj *root_of(PyObj *g) {
    PyObj *cur = g;
    py.IncRef(cur);
    for (int i = 0; i < 64; i++) {
        PyObj *p = call1(G.get_parent, cur);
        if (!p || p == py.None) {
            if (p) py.DecRef(p);
            break;
        }
        py.DecRef(cur);
        cur = p;
    }
    py.DecRef(cur); /* the root is alive while `g` is: only its address is compared */
    return cur;
}

static void add_frame(void *ctx, PyObj *code, int line) {
    (void)ctx;
    if (pool_n >= POOL) return;
    pool[pool_n].site = code ? fs_py_site_of(code) : 0;
    pool[pool_n].line = line;
    pool_n++;
}

static int walk_frame(void *ctx, PyObj *frame, PyObj *code) {
    add_frame(ctx, code, fs_py_frame_line(frame, code));
    return pool_n >= POOL;
}

/* gevent's Greenlet keeps where it was spawned: a chain of its own small frame records
 * (f_code, f_lineno, f_back), innermost first. Read through the Greenlet class's own descriptor. */
static void gevent_created(PyObj *g, struct green *out, PyObj *spawning_stack_get) {
    PyObj *f = spawning_stack_get ? call1(spawning_stack_get, g) : NULL;
    if (!spawning_stack_get && (f = fs_py_dict_item(g, "spawning_stack")) != NULL) py.IncRef(f); /* pure Python */
    out->cfirst = pool_n;
    for (int i = 0; f && f != py.None && i < FS_CREATE_DEPTH && pool_n < POOL; i++) {
        PyObj *code = fs_py_attr(f, "f_code"), *line = fs_py_attr(f, "f_lineno");
        add_frame(NULL, code != py.None ? code : NULL, line ? (int)fs_py_ulong(line) : 0);
        if (code) py.DecRef(code);
        if (line) py.DecRef(line);
        PyObj *back = fs_py_attr(f, "f_back");
        py.DecRef(f);
        f = back;
    }
    if (f) py.DecRef(f);
    out->cn = pool_n - out->cfirst;
    py.Err_Clear();
}

/* Runs later in the child, from its hub, with the GIL: (greenlet or None, exception, active, key,
 * thread). Puts a green Thread back into threading._active under its ident (threading's after-fork
 * hooks took it out, and another copy of threading's, such as eventlet's `original` one, may
 * run after ours: too late to do it in our hook), so that its bootstrap finds it there on the way
 * out; then, if given a greenlet, throws the exception into it. */
static PyObj *end_greenlet(PyObj *self, PyObj *args) {
    (void)self;
    PyObj *g = py.Tuple_GetItem(args, 0), *exc = py.Tuple_GetItem(args, 1), *active = py.Tuple_GetItem(args, 2);
    PyObj *key = py.Tuple_GetItem(args, 3), *thread = py.Tuple_GetItem(args, 4);
    if (active && key && thread && active != py.None && !py.Dict_GetItem(active, key))
        py.Dict_SetItem(active, key, thread);
    py.Err_Clear();
    if (g && g != py.None && exc && G.throw_descr) {
        PyObj *get = fs_py_attr(G.throw_descr, "__get__");
        PyObj *thrower = get ? call1(get, g) : NULL;  /* greenlet's own throw, bound to g */
        PyObj *r = thrower ? call1(thrower, exc) : NULL;
        if (r) py.DecRef(r);
        if (thrower) py.DecRef(thrower);
        if (get) py.DecRef(get);
        py.Err_Clear();
    }
    py.IncRef(py.None);
    return py.None;
}

static struct { const char *name; void *meth; int flags; const char *doc; } end_def = {
    "forksafe_green_end", (void *)end_greenlet, 0x0001 /* METH_VARARGS */, NULL};

/* Schedules the end of `g` through its library: gevent's Greenlet.kill(block=False) (gevent.kill
 * for another greenlet), which has the hub throw the exception; eventlet's
 * hub.schedule_call_global(-1e9, ...), which does the same. A green Thread gets SystemExit, which its
 * own bootstrap ends on silently (as sys.exit() in a thread); any other greenlet GreenletExit,
 * which both libraries treat as a normal end. Nothing of the greenlet runs before our hook
 * returns. */
static int stop(PyObj *modules, struct green *g, PyObj *threading) {
    PyObj *o = (PyObj *)g->addr, *r = NULL;
    PyObj *builtins = py.Eval_GetBuiltins ? py.Eval_GetBuiltins() : NULL;
    PyObj *sys_exit = builtins ? py.Dict_GetItemString(builtins, "SystemExit") : NULL;
    PyObj *exc = g->kind == KIND_THREAD && sys_exit ? sys_exit : G.greenlet_exit;
    /* A Thread to put back into threading._active first. */
    PyObj *active = g->kind == KIND_THREAD ? fs_py_dict_item(threading, "_active") : NULL;
    PyObj *thread = active && same_type_at(g->thread, g->thread_type) ? (PyObj *)g->thread : py.None;
    if (!active) active = py.None;
    PyObj *key = py.Long_FromUnsignedLongLong((unsigned long long)g->addr);
    PyObj *end = py.CFunction_NewEx ? py.CFunction_NewEx(&end_def, NULL, NULL) : NULL;
    if (!key || !end) goto out;
    if (cap.lib == LIB_GEVENT) {
        PyObj *hub = mod_item(modules, "gevent._hub_local", "get_hub_if_exists");
        PyObj *h = hub ? py.Object_CallObject(hub, NULL) : NULL;
        PyObj *loop = h && h != py.None ? fs_py_attr(h, "loop") : NULL;
        PyObj *run_callback = loop ? fs_py_attr(loop, "run_callback") : NULL;
        PyObj *cb = thread != py.None && run_callback
                        ? py.Object_CallFunctionObjArgs(run_callback, end, py.None, py.None, active, key, thread, NULL)
                        : NULL;
        if (cb) py.DecRef(cb);
        PyObj *cls = mod_item(modules, "gevent.greenlet", "Greenlet");
        PyObj *type = py.Object_Type(o);
        if (cls && type && py.Type_IsSubtype(type, cls)) {
            PyObj *kill = fs_py_attr(cls, "kill"); /* the class's own, not a subclass's */
            r = kill ? py.Object_CallFunctionObjArgs(kill, o, exc, py.False, NULL) : NULL;
            if (kill) py.DecRef(kill);
        } else {
            PyObj *kill = mod_item(modules, "gevent.hub", "kill");
            r = kill ? py.Object_CallFunctionObjArgs(kill, o, exc, NULL) : NULL;
        }
        if (type) py.DecRef(type);
        if (run_callback) py.DecRef(run_callback);
        if (loop) py.DecRef(loop);
        if (h) py.DecRef(h);
    } else if (cap.lib == LIB_EVENTLET) {
        PyObj *tl = mod_item(modules, "eventlet.hubs", "_threadlocal");
        PyObj *hub = tl ? fs_py_attr(tl, "hub") : NULL;
        PyObj *sched = hub ? fs_py_attr(hub, "schedule_call_global") : NULL;
        /* Due before any timer already due (the greenlet's own wakeup may be): eventlet fires
         * due timers earliest first, so the greenlet gets the exception before it runs again. */
        PyObj *early = py.Long_FromLongLong ? py.Long_FromLongLong(-1000000000LL) : NULL;
        r = sched && early ? py.Object_CallFunctionObjArgs(sched, early, end, o, exc, active, key, thread, NULL) : NULL;
        if (early) py.DecRef(early);
        if (sched) py.DecRef(sched);
        if (hub) py.DecRef(hub);
    }
out:
    if (key) py.DecRef(key);
    if (end) py.DecRef(end);
    if (!r) {
        py.Err_Clear();
        return 0;
    }
    py.DecRef(r);
    py.Err_Clear();
    return 1;
}

void fs_py_green_child(void) {
    if (fs_likely(!cap.valid || cap.n == 0)) return; /* every child of os.fork: write nothing */
    details = 0;
    live_count = 0;
    pool_n = 0;
    PyObj *modules = py.Import_GetModuleDict();
    PyObj *threading = modules ? py.Dict_GetItemString(modules, "threading") : NULL;
    if (!threading || !lookup(modules)) return;
    PyObj *cur = py.Object_CallObject(G.getcurrent, NULL);
    if (!cur) {
        py.Err_Clear();
        return;
    }
    PyObj *root = root_of(cur);
    /* The hub: gevent's is of its Hub class; eventlet's is its hub's `greenlet`. */
    PyObj *hub_type = cap.lib == LIB_GEVENT ? mod_item(modules, "gevent.hub", "Hub") : NULL;
    PyObj *tl = cap.lib == LIB_EVENTLET ? mod_item(modules, "eventlet.hubs", "_threadlocal") : NULL;
    PyObj *ehub = tl ? fs_py_attr(tl, "hub") : NULL;
    PyObj *hub_greenlet = ehub ? fs_py_dict_item(ehub, "greenlet") : NULL;
    PyObj *gevent_greenlet = cap.lib == LIB_GEVENT ? mod_item(modules, "gevent.greenlet", "Greenlet") : NULL;
    PyObj *spawning = gevent_greenlet ? getter(gevent_greenlet, "spawning_stack") : NULL; /* compiled gevent */
    int depth = fs_setting(FS_SET_stack_depth);
    int kill = fs_setting(FS_SET_green) == FS_GREEN_KILL;
    fs_py_walk_session();
    for (int i = 0; i < cap.n; i++) {
        struct green *g = &cap.g[i];
        g->live = g->stopped = 0;
        g->first = g->n = g->cfirst = g->cn = 0;
        if (!same_type_at(g->addr, g->type)) continue;
        PyObj *o = (PyObj *)g->addr, *type = py.Object_Type(o);
        int skip = o == cur || root_of(o) != root || o == hub_greenlet ||
                   (hub_type && type && py.Type_IsSubtype(type, hub_type));
        if (type) py.DecRef(type);
        PyObj *dead = skip ? NULL : call1(G.get_dead, o);
        if (!dead || py.Object_IsTrue(dead) != 0) skip = 1;
        if (dead) py.DecRef(dead);
        PyObj *frame = skip ? NULL : call1(G.get_frame, o);
        if (!frame || frame == py.None) skip = 1; /* never switched to: not started */
        if (skip) {
            if (frame) py.DecRef(frame);
            py.Err_Clear();
            continue;
        }
        if (o == root) g->kind = KIND_MAIN;
        g->live = 1;
        live_count++;
        g->first = pool_n;
        fs_py_walk(frame, depth, walk_frame, NULL);
        g->n = pool_n - g->first;
        py.DecRef(frame);
        if (gevent_greenlet && py.Object_Type) {
            PyObj *t = py.Object_Type(o);
            if (t && py.Type_IsSubtype(t, gevent_greenlet)) gevent_created(o, g, spawning);
            if (t) py.DecRef(t);
        }
    }
    if (ehub) py.DecRef(ehub);
    if (spawning) py.DecRef(spawning);
    py.DecRef(cur);
    /* Stopping comes last: it calls the library, which may switch nothing now (the hub delivers
     * the exception later) but allocates. */
    for (int i = 0; kill && i < cap.n; i++)
        if (cap.g[i].live && cap.g[i].kind != KIND_MAIN) cap.g[i].stopped = (uint8_t)stop(modules, &cap.g[i], threading);
    py.Err_Clear();
    details = 1;
}

/* ---- the report's view (async-signal-safe: memory only) ---- */

int fs_py_green_count(int *total) {
    int n = !cap.valid ? 0 : details ? live_count : cap.n;
    if (total) *total = n + (cap.valid ? cap.total - cap.n : 0);
    return n;
}

int fs_py_green_get(int i, struct fs_py_green *out) {
    if (!cap.valid) return -1;
    int k = 0;
    for (int j = 0; j < cap.n; j++) {
        const struct green *g = &cap.g[j];
        if (details && !g->live) continue;
        if (k++ != i) continue;
        out->library = lib_names[cap.lib];
        out->kind = kind_names[g->kind];
        out->name = fs_arena_str(&names, g->name);
        out->ident = g->addr;
        out->stopped = g->stopped;
        out->first = g->first;
        out->nframes = details ? g->n : 0;
        out->cfirst = g->cfirst;
        out->ncreated = details ? g->cn : 0;
        return 0;
    }
    return -1;
}

void fs_py_green_frame(uint32_t at, uint16_t *site, int *line) {
    *site = at < POOL ? pool[at].site : 0;
    *line = at < POOL ? pool[at].line : 0;
}
