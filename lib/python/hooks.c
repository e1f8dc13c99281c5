// SPDX-License-Identifier: MIT
// Our functions registered in the interpreter, and when the snapshot is taken:
//  - os.fork on 3.7+: from an os.register_at_fork(before=) hook, which runs before CPython takes
//    its own fork locks (HEAD_LOCK on 3.13 is taken later, inside os.fork). The hooks are
//    installed from pthread_create the first time Python starts a thread: the GIL is held there
//    and no runtime lock is.
//  - os.fork on 2.7 and 3.6 (no register_at_fork): from the fork() wrapper; the GIL is held.
//  - fork() from C (uWSGI's master): from the fork() wrapper. With the GIL if this thread holds
//    it; if it has a thread state but not the GIL, after PyGILState_Ensure, as uWSGI itself does
//    before forking with --py-call-uwsgi-fork-hooks.
//  - exit: from an atexit callback, after the runtime has joined its threads.
// The hooks are installed the first time Python starts a thread (pthread_create runs with the GIL
// held) or creates an event loop's epoll instance (gevent's and eventlet's hubs: a program of
// green threads may fork before it ever starts an OS thread), else at the first fork, for the next.
// The before hook also reads the green threads the child will carry (green.c).
// After a fork, the after_in_child hook tells the layer above (a registered callback) that the
// child goes on running. Nothing is imported but 3.x's built-in atexit (2.7's is a Python
// module, which a file in the current directory could shadow: used only if already loaded).
#include "py.h"

#include <string.h>

/* The os.register_at_fork hooks: not yet tried, being installed, impossible (2.7, 3.6: the fork
 * wrapper reads the threads instead), installed. */
enum { HOOKS_NONE, HOOKS_INSTALLING, HOOKS_UNAVAILABLE, HOOKS_INSTALLED };
static _Atomic int hooks_state;
static _Atomic int pending_install; /* a Py_AddPendingCall to install them is queued */
static __thread int tls_hook_took_snapshot __attribute__((tls_model("initial-exec")));
static void (*on_child_resumes)(void);

void fs_py_on_child_resumes(void (*fn)(void)) { on_child_resumes = fn; }

static PyObj *none(void) {
    py.IncRef(py.None);
    return py.None;
}

static PyObj *before_fork_hook(PyObj *self, PyObj *unused) {
    (void)self;
    (void)unused;
    int green = fs_py_green_capture(); /* green threads the child will carry (gevent, eventlet) */
    if (green || fs_py_multi_threaded()) fs_py_snapshot_take();
    tls_hook_took_snapshot = 1;
    return none();
}

/* Is the code that forked a subprocess module's _execute_child (exec follows)? The stdlib's
 * (preexec_fn: the innermost frame) or gevent.subprocess's, which forks through gevent.os's
 * wrappers (a few frames further out). */
static int is_execute_child(void *found, PyObj *frame, PyObj *code) {
    (void)frame;
    PyObj *name = code ? fs_py_attr(code, "co_name") : NULL, *file = code ? fs_py_attr(code, "co_filename") : NULL;
    const char *n = fs_py_str(name), *fl = fs_py_str(file);
    *(int *)found = n && fl && strcmp(n, "_execute_child") == 0 && strstr(fl, "subprocess") != NULL;
    if (name) py.DecRef(name);
    if (file) py.DecRef(file);
    return *(int *)found;
}

static int forked_by_subprocess(void) {
    int found = 0;
    PyObj *f = py.Eval_GetFrame ? py.Eval_GetFrame() : NULL;
    if (f) fs_py_walk(f, 6, is_execute_child, &found);
    return found;
}

/* In the child of os.fork (and of subprocess with preexec_fn): Python is consistent again. */
static PyObj *after_fork_child_hook(PyObj *self, PyObj *unused) {
    (void)self;
    (void)unused;
    if (on_child_resumes && !forked_by_subprocess()) on_child_resumes();
    return none();
}

/* Python's atexit: the runtime has joined its threads (non-daemon threads, executors); what is
 * still alive will be cut off. Read it now, while Python can be called; the C exit handler, which
 * runs later, reports the threads still alive then. */
static PyObj *atexit_hook(PyObj *self, PyObj *unused) {
    (void)self;
    (void)unused;
    if (fs_py_multi_threaded()) {
        fs_py_snapshot_take();
        fs_py_snapshot_mark_valid();
    }
    return none();
}

static struct { const char *name; void *meth; int flags; const char *doc; } method_defs[] = {
    {"forksafe_before_fork", (void *)before_fork_hook, 0x0004 /* METH_NOARGS */, NULL},
    {"forksafe_after_fork_child", (void *)after_fork_child_hook, 0x0004, NULL},
    {"forksafe_atexit", (void *)atexit_hook, 0x0004, NULL},
};

/* atexit.register(forksafe_atexit). On 3.x atexit is built in (no file can shadow it). On 2.7
 * it is a Python module that an atexit.py in the current directory could shadow, so it is never
 * imported: if the program loaded it we register there, otherwise we become sys.exitfunc, which
 * 2.7 calls at the same moment and which atexit adopts if the program imports it later. The GIL
 * is held. */
static void register_atexit(void) {
    if (!py.Object_CallFunctionObjArgs || !py.CFunction_NewEx) return;
    PyObj *modules = py.Import_GetModuleDict();
    PyObj *mod = modules ? py.Dict_GetItemString(modules, "atexit") : NULL; /* borrowed */
    PyObj *imported = NULL, *fn = py.CFunction_NewEx(&method_defs[2], NULL, NULL);
    if (!fn) goto out;
    if (!mod && fs_py_version >= 300 && py.Import_ImportModule) mod = imported = py.Import_ImportModule("atexit");
    if (mod) {
        PyObj *reg = fs_py_attr(mod, "register");
        PyObj *r = reg ? py.Object_CallFunctionObjArgs(reg, fn, NULL) : NULL;
        if (r) py.DecRef(r);
        if (reg) py.DecRef(reg);
    } else if (fs_py_version < 300) {
        PyObj *sys = modules ? py.Dict_GetItemString(modules, "sys") : NULL;
        PyObj *current = sys ? fs_py_attr(sys, "exitfunc") : NULL;
        if (current) py.DecRef(current); /* the program has its own: leave it alone */
        else if (sys) py.Object_SetAttrString(sys, "exitfunc", fn);
    }
    py.DecRef(fn);
out:
    if (imported) py.DecRef(imported);
    py.Err_Clear();
}

/* os.register_at_fork(before=..., after_in_child=...): 3.7+. The GIL is held. */
/* Py_FinalizeEx has run (the last thing it does: Py_AtExit's functions). Every Python object we
 * keep went with the interpreter, and our os.register_at_fork hooks and atexit callback with it:
 * an embedding program that calls Py_Initialize again gets them installed afresh. Without this,
 * its next os.fork would find "installed" and the fork wrapper would read the threads itself
 * while os.fork holds the runtime's locks (a hang on 3.13). No Python API here. */
static void interpreter_finalized(void) {
    fs_py_binding_forget();
    fs_py_rlock_layer_forget();
    fs_py_lock_layout_forget();
    fs_py_held_forget();
    fs_py_green_forget();
    atomic_store(&pending_install, 0);
    atomic_store(&hooks_state, HOOKS_NONE);
}

static void install_hooks(void) {
    int expected = HOOKS_NONE;
    if (!atomic_compare_exchange_strong(&hooks_state, &expected, HOOKS_INSTALLING)) return;
    if (py.AtExit) py.AtExit(interpreter_finalized); /* once per interpreter: this runs once */
    PyObj *modules = py.Import_GetModuleDict();
    PyObj *posix = modules ? py.Dict_GetItemString(modules, "posix") : NULL;
    PyObj *reg = posix ? fs_py_attr(posix, "register_at_fork") : NULL;
    if (fs_setting(FS_SET_exit_report) != FS_EXIT_REPORT_OFF) register_atexit();
    if (!reg || !py.CFunction_NewEx || !py.Dict_New || !py.Tuple_New || !py.Object_Call) {
        if (reg) py.DecRef(reg);
        atomic_store(&hooks_state, HOOKS_UNAVAILABLE);
        return;
    }
    PyObj *before = py.CFunction_NewEx(&method_defs[0], NULL, NULL);
    PyObj *child = py.CFunction_NewEx(&method_defs[1], NULL, NULL);
    PyObj *kw = py.Dict_New(), *args = py.Tuple_New(0);
    PyObj *r = NULL;
    if (before && child && kw && args && py.Dict_SetItemString(kw, "before", before) == 0 &&
        py.Dict_SetItemString(kw, "after_in_child", child) == 0)
        r = py.Object_Call(reg, args, kw);
    if (r) py.DecRef(r);
    else py.Err_Clear();
    if (r) fs_py_rlock_layer_compile();
    fs_py_lock_layout_measure();
    fs_py_held_measure();
    if (before) py.DecRef(before);
    if (child) py.DecRef(child);
    if (kw) py.DecRef(kw);
    if (args) py.DecRef(args);
    py.DecRef(reg);
    atomic_store(&hooks_state, r ? HOOKS_INSTALLED : HOOKS_UNAVAILABLE);
}

void fs_py_thread_starting(struct fs_thread *t) {
    if (t) t->ncreate = 0;
    if (atomic_load_explicit(&hooks_state, memory_order_relaxed) == HOOKS_NONE) {
        if (!fs_py_usable() || !fs_py_holds_gil()) return;
        install_hooks();
    } else if (!fs_py_detect() || !fs_py_holds_gil()) {
        return; /* a thread started from C, or no Python */
    }
    if (t) fs_py_capture_creation(t);
}

/* Installs the hooks unless done; the GIL is held. Before the interpreter has imported posix (an
 * embedding program's very start), installing would mark the hooks unavailable for good: wait for
 * a later occasion. */
static void install_hooks_now(void) {
    if (atomic_load(&hooks_state) != HOOKS_NONE || !fs_py_usable()) return;
    PyObj *modules = py.Import_GetModuleDict();
    if (modules && py.Dict_GetItemString(modules, "posix")) install_hooks();
}

static int install_pending(void *unused) { /* Python's pending call: main thread, GIL held */
    (void)unused;
    atomic_store(&pending_install, 0);
    install_hooks_now();
    return 0;
}

/* gevent and eventlet create their hub's epoll instance before the first green thread runs; a
 * program of green threads may never call pthread_create before it forks. gevent's libev does
 * it with the GIL held: the hooks are installed now. Python's select.epoll (eventlet, asyncio)
 * releases the GIL around the call: then the interpreter's own pending-call queue installs them
 * at its next safe point in the main thread (Py_AddPendingCall needs no GIL and waits for
 * nothing), long before the program can fork. */
void fs_py_event_loop_created(void) {
    if (atomic_load_explicit(&hooks_state, memory_order_relaxed) != HOOKS_NONE) return;
    if (!fs_py_usable()) return;
    if (fs_py_holds_gil()) {
        install_hooks_now();
    } else if (py.AddPendingCall && !atomic_exchange(&pending_install, 1)) {
        if (py.AddPendingCall(install_pending, NULL) != 0) atomic_store(&pending_install, 0);
    }
}

void fs_py_before_fork(void) {
    if (tls_hook_took_snapshot) { /* os.fork: our before-hook already read the threads */
        tls_hook_took_snapshot = 0;
        return;
    }
    int hooks = atomic_load_explicit(&hooks_state, memory_order_relaxed);
    if (!fs_py_usable()) return;
    /* Without our hook, a fork with the GIL held may be os.fork on 3.7+, which holds CPython's
     * fork locks here (HEAD_LOCK on 3.13): only 2.7 and 3.6 (no register_at_fork) are safe. */
    if (hooks != HOOKS_INSTALLED && hooks != HOOKS_UNAVAILABLE) {
        if (fs_py_holds_gil()) install_hooks(); /* for the next fork */
        if (atomic_load(&hooks_state) != HOOKS_UNAVAILABLE) return;
    }
    int multi = fs_py_multi_threaded();
    if (fs_py_holds_gil()) {
        int green = fs_py_green_capture();
        if (multi || green) fs_py_snapshot_take();
    } else if (multi) {
        int g = py.GILState_Ensure();
        fs_py_snapshot_take();
        py.GILState_Release(g);
    }
}
