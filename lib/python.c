// SPDX-License-Identifier: MIT
// Python-aware reports: thread names and stacks of a CPython interpreter hosted by the process
// (2.7, 3.6 to 3.13), found at run time through its exported symbols -- no build-time dependency.
//
// When we call the interpreter (always with the GIL, never inside fork(), never importing):
//  - os.fork on 3.7+: from an os.register_at_fork(before=) hook, which runs before CPython takes
//    its own fork locks (on 3.13 HEAD_LOCK is held later, inside os.fork). The hook is installed
//    from pthread_create the first time Python starts a thread: the GIL is held there and no
//    runtime lock is (FACTS.md).
//  - os.fork on 2.7 and 3.6 (no register_at_fork): from the fork() wrapper; the GIL is held.
//  - fork() from C (uWSGI's master): from the fork() wrapper. If the thread holds the GIL we read
//    at once; if it has a thread state but not the GIL, we take the GIL with PyGILState_Ensure
//    first, as uWSGI itself does before forking with --py-call-uwsgi-fork-hooks.
// The snapshot (sys._current_frames() and threading._active, read through the frame API) goes to
// static memory; the child's report reads it there without calling Python.
#include "internal.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef void PyObj;

static struct {
    int (*IsInitialized)(void);
    int (*GILState_Check)(void);                 /* 3.4+ */
    void **ThreadState_Current;                  /* 2.7's _PyThreadState_Current */
    void *(*GILState_GetThisThreadState)(void);
    int (*GILState_Ensure)(void);
    void (*GILState_Release)(int);
    PyObj *(*Import_GetModuleDict)(void);
    PyObj *(*Import_ImportModule)(const char *);
    PyObj *(*Dict_GetItemString)(PyObj *, const char *);  /* borrowed */
    PyObj *(*Dict_GetItem)(PyObj *, PyObj *);             /* borrowed */
    int (*Dict_Next)(PyObj *, ssize_t *, PyObj **, PyObj **);
    PyObj *(*Dict_New)(void);
    int (*Dict_SetItemString)(PyObj *, const char *, PyObj *);
    PyObj *(*Object_GetAttrString)(PyObj *, const char *);
    PyObj *(*Object_CallObject)(PyObj *, PyObj *);
    PyObj *(*Object_Call)(PyObj *, PyObj *, PyObj *);
    PyObj *(*Object_CallFunctionObjArgs)(PyObj *, ...);
    PyObj *(*Tuple_New)(ssize_t);
    PyObj *(*Number_Long)(PyObj *);
    unsigned long long (*Long_AsUnsignedLongLongMask)(PyObj *);
    const char *(*Unicode_AsUTF8)(PyObj *);        /* 3.x */
    char *(*String_AsString)(PyObj *);             /* 2.7 */
    void (*Err_Clear)(void);
    void (*DecRef)(PyObj *);
    void (*IncRef)(PyObj *);
    PyObj *(*Eval_GetFrame)(void);                 /* borrowed */
    PyObj *(*CFunction_NewEx)(void *, PyObj *, PyObj *);
    PyObj *(*Frame_GetCode)(PyObj *);              /* 3.9+ */
    PyObj *(*Frame_GetBack)(PyObj *);              /* 3.9+ */
    int (*Frame_GetLineNumber)(PyObj *);
    int (*IsFinalizing)(void);                     /* Py_IsFinalizing 3.13, _Py_IsFinalizing 3.7+ */
    PyObj *(*Run_StringFlags)(const char *, int, PyObj *, PyObj *, void *);
    PyObj *(*Eval_GetBuiltins)(void);             /* borrowed */
    PyObj *(*List_New)(ssize_t);
    int (*List_Append)(PyObj *, PyObj *);
    ssize_t (*List_Size)(PyObj *);
    PyObj *(*List_GetItem)(PyObj *, ssize_t);      /* borrowed */
    PyObj *(*Tuple_GetItem)(PyObj *, ssize_t);     /* borrowed */
    PyObj *(*Long_FromUnsignedLongLong)(unsigned long long);
    PyObj *(*Unicode_FromString)(const char *);
    const char *(*GetVersion)(void);
    PyObj *None;
} py;
static int rlock_is_semaphore = 1;  /* CPython < 3.14 */
static PyObj *release_rlocks_fn;    /* the Python layer, compiled when the hooks are installed */

enum { PY_UNKNOWN, PY_ABSENT, PY_PRESENT };
static _Atomic int py_state;
static unsigned long long seen_adds;    /* dl_iterate_phdr's load count at the last look */
/* The os.register_at_fork hooks: not yet tried, being installed, impossible (2.7, 3.6: the fork
 * wrapper reads the threads instead), installed. */
enum { HOOKS_NONE, HOOKS_INSTALLING, HOOKS_UNAVAILABLE, HOOKS_INSTALLED };
static _Atomic int hooks_installed;
static __thread int tls_hook_took_snapshot __attribute__((tls_model("initial-exec")));

/* ---- finding the interpreter ---- */

static int find_libpython(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    void **handle = data;
    if (strstr(info->dlpi_name, "libpython")) *handle = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
    return *handle != NULL;
}

static int first_adds(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    *(unsigned long long *)data = info->dlpi_adds;
    return 1;
}

/* Looks for CPython's API. Outside fork only (dlsym, dlopen). Cheap when nothing was loaded
 * since the last look. */
static int detect(void) {
    int s = atomic_load_explicit(&py_state, memory_order_acquire);
    if (fs_likely(s == PY_PRESENT)) return 1;
    if (!fs_setting(FS_SET_python)) return 0;   /* FORKSAFE_PYTHON=off */
    unsigned long long adds = 0;
    dl_iterate_phdr(first_adds, &adds);
    if (s == PY_ABSENT && adds == seen_adds) return 0;
    seen_adds = adds;
    void *h = RTLD_DEFAULT;
    if (!dlsym(h, "Py_IsInitialized")) {
        void *handle = NULL;
        dl_iterate_phdr(find_libpython, &handle);
        if (!handle) {
            atomic_store(&py_state, PY_ABSENT);
            return 0;
        }
        h = handle; /* loaded RTLD_LOCAL by an embedding program; kept open, never closed */
    }
#define R(field, name) py.field = dlsym(h, name)
    R(IsInitialized, "Py_IsInitialized");
    R(GILState_Check, "PyGILState_Check");
    R(ThreadState_Current, "_PyThreadState_Current");
    R(GILState_GetThisThreadState, "PyGILState_GetThisThreadState");
    R(GILState_Ensure, "PyGILState_Ensure");
    R(GILState_Release, "PyGILState_Release");
    R(Import_GetModuleDict, "PyImport_GetModuleDict");
    R(Import_ImportModule, "PyImport_ImportModule");
    R(Dict_GetItemString, "PyDict_GetItemString");
    R(Dict_GetItem, "PyDict_GetItem");
    R(Dict_Next, "PyDict_Next");
    R(Dict_New, "PyDict_New");
    R(Dict_SetItemString, "PyDict_SetItemString");
    R(Object_GetAttrString, "PyObject_GetAttrString");
    R(Object_CallObject, "PyObject_CallObject");
    R(Object_Call, "PyObject_Call");
    R(Tuple_New, "PyTuple_New");
    R(Number_Long, "PyNumber_Long");
    R(Long_AsUnsignedLongLongMask, "PyLong_AsUnsignedLongLongMask");
    R(Unicode_AsUTF8, "PyUnicode_AsUTF8");
    R(String_AsString, "PyString_AsString");
    R(Err_Clear, "PyErr_Clear");
    R(DecRef, "Py_DecRef");
    R(IncRef, "Py_IncRef");
    R(Eval_GetFrame, "PyEval_GetFrame");
    R(CFunction_NewEx, "PyCFunction_NewEx");
    R(Frame_GetCode, "PyFrame_GetCode");
    R(Frame_GetBack, "PyFrame_GetBack");
    R(Frame_GetLineNumber, "PyFrame_GetLineNumber");
    R(IsFinalizing, "Py_IsFinalizing");
    if (!py.IsFinalizing) R(IsFinalizing, "_Py_IsFinalizing");
    R(None, "_Py_NoneStruct");
    R(Run_StringFlags, "PyRun_StringFlags");
    R(Object_CallFunctionObjArgs, "PyObject_CallFunctionObjArgs");
    R(Eval_GetBuiltins, "PyEval_GetBuiltins");
    R(List_New, "PyList_New");
    R(List_Append, "PyList_Append");
    R(List_Size, "PyList_Size");
    R(List_GetItem, "PyList_GetItem");
    R(Tuple_GetItem, "PyTuple_GetItem");
    R(Long_FromUnsignedLongLong, "PyLong_FromUnsignedLongLong");
    R(Unicode_FromString, "PyUnicode_FromString");
    if (py.String_AsString) R(Unicode_FromString, "PyString_FromString"); /* 2.7: str keys */
    R(GetVersion, "Py_GetVersion");
    if (py.GetVersion) {
        const char *v = py.GetVersion();
        int major = 0, minor = 0;
        for (; *v >= '0' && *v <= '9'; v++) major = major * 10 + (*v - '0');
        if (*v == '.') v++;
        for (; *v >= '0' && *v <= '9'; v++) minor = minor * 10 + (*v - '0');
        rlock_is_semaphore = major < 3 || (major == 3 && minor < 14);
    }
#undef R
    int ok = py.IsInitialized && py.GILState_GetThisThreadState && py.GILState_Ensure &&
             py.GILState_Release && py.Import_GetModuleDict && py.Dict_GetItemString && py.Dict_GetItem &&
             py.Dict_Next && py.Object_GetAttrString && py.Object_CallObject && py.Number_Long &&
             py.Long_AsUnsignedLongLongMask && (py.Unicode_AsUTF8 || py.String_AsString) && py.Err_Clear &&
             py.DecRef && py.IncRef && py.Frame_GetLineNumber && py.None && (py.GILState_Check || py.ThreadState_Current);
    atomic_store(&py_state, ok ? PY_PRESENT : PY_ABSENT);
    return ok;
}

static int holds_gil(void) {
    if (py.GILState_Check) return py.GILState_Check();
    void *t = py.GILState_GetThisThreadState();
    return t != NULL && *py.ThreadState_Current == t;
}

/* The interpreter can be called from this thread now: running, not finalizing, ours to use. */
static int usable(void) {
    if (!detect() || !py.IsInitialized()) return 0;
    if (py.IsFinalizing && py.IsFinalizing()) return 0;
    return py.GILState_GetThisThreadState() != NULL;
}

/* ---- the snapshot ---- */

#define PY_MAX_THREADS 1024
#define PY_MAX_FRAMES 16384
#define PY_ARENA (512 * 1024)
#define CODE_CACHE 512

struct py_frame { uint32_t file, func; int line; };
struct py_thread { uint64_t ident; pid_t tid; uint32_t name, first, nframes; };

static struct {
    _Atomic int writing;
    pid_t taker_pid, taker_tid;   /* the process and thread that took it, for the fork after it */
    int nthreads;
    uint32_t nframes, arena_len;
    struct py_thread t[PY_MAX_THREADS];
    struct py_frame f[PY_MAX_FRAMES];
    char arena[PY_ARENA];
} snap;
static int snap_valid_in_child;   /* the snapshot describes the moment being reported (fork, exit) */
static uint32_t snap_gen;         /* bumped by every snapshot */
static int rlock_layer_wanted(void);
static void release_lost_rlocks(void);

static struct { PyObj *code; uint32_t file, func; } code_cache[CODE_CACHE];

/* Copies `s` into the arena; returns its offset (0 is the empty string). */
static uint32_t intern(const char *s) {
    if (!s || !*s) return 0;
    size_t n = strlen(s) + 1;
    if (n > 1024) n = 1024;
    if (snap.arena_len + n > PY_ARENA) return 0;
    uint32_t off = snap.arena_len;
    memcpy(snap.arena + off, s, n - 1);
    snap.arena[off + n - 1] = '\0';
    snap.arena_len += (uint32_t)n;
    return off;
}

static uint32_t intern_obj(PyObj *o) {
    if (!o) return 0;
    const char *s = NULL;
    if (py.String_AsString) {
        s = py.String_AsString(o);         /* 2.7: str */
        if (!s && py.Unicode_AsUTF8) {
            py.Err_Clear();
            s = py.Unicode_AsUTF8(o);
        }
    } else {
        s = py.Unicode_AsUTF8(o);
    }
    if (!s) py.Err_Clear();
    return intern(s ? s : "?");
}

static PyObj *attr(PyObj *o, const char *name) {
    PyObj *r = py.Object_GetAttrString(o, name);
    if (!r) py.Err_Clear();
    return r;
}

static void code_names(PyObj *code, uint32_t *file, uint32_t *func) {
    unsigned h = (unsigned)(((uintptr_t)code >> 4) % CODE_CACHE);
    if (code_cache[h].code == code) {
        *file = code_cache[h].file;
        *func = code_cache[h].func;
        return;
    }
    PyObj *f = attr(code, "co_filename"), *n = attr(code, "co_name");
    *file = intern_obj(f);
    *func = intern_obj(n);
    if (f) py.DecRef(f);
    if (n) py.DecRef(n);
    code_cache[h].code = code;
    code_cache[h].file = *file;
    code_cache[h].func = *func;
}

/* Appends up to `depth` frames of `frame` (borrowed), innermost first. */
static uint32_t walk(PyObj *frame, int depth) {
    uint32_t n = 0;
    PyObj *f = frame, *owned = NULL;
    while (f && f != py.None && (int)n < depth && snap.nframes < PY_MAX_FRAMES) {
        PyObj *code = py.Frame_GetCode ? py.Frame_GetCode(f) : attr(f, "f_code");
        struct py_frame *out = &snap.f[snap.nframes++];
        out->file = out->func = 0;
        if (code) {
            code_names(code, &out->file, &out->func);
            py.DecRef(code);
        }
        out->line = py.Frame_GetLineNumber(f);
        n++;
        PyObj *back = py.Frame_GetBack ? py.Frame_GetBack(f) : attr(f, "f_back");
        if (owned) py.DecRef(owned);
        owned = f = back;
    }
    if (owned) py.DecRef(owned);
    if (!py.Frame_GetBack) py.Err_Clear();
    return n;
}

static pid_t tid_of(uint64_t ident, PyObj *thread) {
    if (thread) {
        PyObj *nid = attr(thread, "native_id"); /* 3.8+ */
        if (nid && nid != py.None) {
            PyObj *l = py.Number_Long(nid);
            pid_t tid = l ? (pid_t)py.Long_AsUnsignedLongLongMask(l) : 0;
            if (l) py.DecRef(l);
            py.DecRef(nid);
            if (tid > 0) return tid;
        } else if (nid) {
            py.DecRef(nid);
        }
        py.Err_Clear();
    }
    if (ident == (uint64_t)pthread_self()) return fs_gettid();
    struct fs_thread *t = fs_thread_find_pthread((pthread_t)ident);
    return t ? t->tid : 0;
}

static uint64_t as_ident(PyObj *key) {
    PyObj *l = py.Number_Long(key);
    if (!l) {
        py.Err_Clear();
        return 0;
    }
    uint64_t v = py.Long_AsUnsignedLongLongMask(l);
    py.DecRef(l);
    return v;
}

/* Reads every Python thread's name and stack. The GIL is held. */
static void take_snapshot(void) {
    PyObj *modules = py.Import_GetModuleDict();
    PyObj *sys = modules ? py.Dict_GetItemString(modules, "sys") : NULL;
    if (!sys) return;
    PyObj *current_frames = attr(sys, "_current_frames");
    PyObj *frames = current_frames ? py.Object_CallObject(current_frames, NULL) : NULL;
    if (current_frames) py.DecRef(current_frames);
    if (!frames) {
        py.Err_Clear();
        return;
    }
    PyObj *threading = py.Dict_GetItemString(modules, "threading"); /* never imported by us */
    PyObj *active = threading ? attr(threading, "_active") : NULL;
    int depth = fs_setting(FS_SET_stack_depth);

    atomic_store(&snap.writing, 1);
    snap_gen++;
    snap.taker_pid = getpid();
    snap.taker_tid = fs_gettid();
    snap.nthreads = 0;
    snap.nframes = 0;
    snap.arena_len = 1;
    snap.arena[0] = '\0';
    memset(code_cache, 0, sizeof code_cache);
    ssize_t pos = 0;
    PyObj *key, *frame;
    while (py.Dict_Next(frames, &pos, &key, &frame) && snap.nthreads < PY_MAX_THREADS) {
        struct py_thread *t = &snap.t[snap.nthreads++];
        t->ident = as_ident(key);
        PyObj *thread = active ? py.Dict_GetItem(active, key) : NULL; /* borrowed */
        PyObj *name = thread ? attr(thread, "name") : NULL;
        t->name = intern_obj(name);
        if (name) py.DecRef(name);
        t->tid = tid_of(t->ident, thread);
        t->first = snap.nframes;
        t->nframes = walk(frame, depth);
    }
    if (active) py.DecRef(active);
    py.DecRef(frames);
    py.Err_Clear();
    atomic_store(&snap.writing, 0);
}

static int multi_threaded(void) {
    extern int __libc_single_threaded;
    return !__libc_single_threaded && fs_thread_count() > 1;
}

/* ---- hooks ---- */

static PyObj *before_fork_hook(PyObj *self, PyObj *unused) {
    (void)self;
    (void)unused;
    if (multi_threaded()) take_snapshot();
    tls_hook_took_snapshot = 1;
    py.IncRef(py.None);
    return py.None;
}

/* Is the code that forked subprocess's _execute_child (preexec_fn: exec follows)? */
static int forked_by_subprocess(void) {
    PyObj *f = py.Eval_GetFrame ? py.Eval_GetFrame() : NULL;
    if (!f) return 0;
    PyObj *code = py.Frame_GetCode ? py.Frame_GetCode(f) : attr(f, "f_code");
    if (!code) return 0;
    PyObj *name = attr(code, "co_name"), *file = attr(code, "co_filename");
    const char *n = name ? (py.Unicode_AsUTF8 ? py.Unicode_AsUTF8(name) : py.String_AsString(name)) : NULL;
    const char *fl = file ? (py.Unicode_AsUTF8 ? py.Unicode_AsUTF8(file) : py.String_AsString(file)) : NULL;
    int r = n && fl && strcmp(n, "_execute_child") == 0 && strstr(fl, "subprocess") != NULL;
    if (name) py.DecRef(name);
    if (file) py.DecRef(file);
    py.DecRef(code);
    py.Err_Clear();
    return r;
}

/* In the child of os.fork (and of subprocess with preexec_fn): Python is consistent again. A
 * child that returns to the program goes on running: write its report now. */
static PyObj *after_fork_child_hook(PyObj *self, PyObj *unused) {
    (void)self;
    (void)unused;
    if (!forked_by_subprocess()) {
        fs_child_report_now();
        if (rlock_layer_wanted() && py.Object_CallFunctionObjArgs) release_lost_rlocks();
    }
    py.IncRef(py.None);
    return py.None;
}

/* Python's atexit: the runtime has joined its threads (non-daemon threads, executors); what is
 * still alive will be cut off. Read it now, while Python can be called; the C exit handler, which
 * runs later, reports the threads still alive then. */
static PyObj *atexit_hook(PyObj *self, PyObj *unused) {
    (void)self;
    (void)unused;
    if (multi_threaded()) {
        take_snapshot();
        snap_valid_in_child = 1;
    }
    py.IncRef(py.None);
    return py.None;
}

static struct { const char *name; void *meth; int flags; const char *doc; } method_defs[] = {
    {"forksafe_before_fork", (void *)before_fork_hook, 0x0004 /* METH_NOARGS */, NULL},
    {"forksafe_after_fork_child", (void *)after_fork_child_hook, 0x0004, NULL},
    {"forksafe_atexit", (void *)atexit_hook, 0x0004, NULL},
};

/* atexit.register(forksafe_atexit). The GIL is held. */
static void register_atexit(void) {
    if (!py.Import_ImportModule || !py.Object_CallFunctionObjArgs) return;
    PyObj *mod = py.Import_ImportModule("atexit");
    PyObj *reg = mod ? attr(mod, "register") : NULL;
    PyObj *fn = reg ? py.CFunction_NewEx(&method_defs[2], NULL, NULL) : NULL;
    PyObj *r = fn ? py.Object_CallFunctionObjArgs(reg, fn, NULL) : NULL;
    if (r) py.DecRef(r);
    if (fn) py.DecRef(fn);
    if (reg) py.DecRef(reg);
    if (mod) py.DecRef(mod);
    py.Err_Clear();
}

/* ---- the Python layer: RLocks owned by lost threads (3.9+) ----
 * An RLock knows its owner; _at_fork_reinit() (3.9+) makes it free. gc.get_referents reaches
 * every RLock held by a tracked object without touching attributes, so no user code runs. */
static const char release_rlocks_src[] =
    "def release_rlocks(lost):\n"
    "    import gc, _thread\n"
    "    rlock = type(_thread.RLock())\n"
    "    if not hasattr(rlock, '_at_fork_reinit'):\n"
    "        return None\n"
    "    lost, seen, out = set(lost), set(), []\n"
    "    for o in gc.get_objects():\n"
    "        for r in gc.get_referents(o):\n"
    "            if type(r) is not rlock or id(r) in seen:\n"
    "                continue\n"
    "            seen.add(id(r))\n"
    "            text = repr(r)\n"
    "            i = text.find(' owner=')\n"
    "            if not text.startswith('<locked') or i < 0:\n"
    "                continue\n"
    "            owner = int(text[i + 7:].split(' ', 1)[0])\n"
    "            if owner in lost:\n"
    "                r._at_fork_reinit()\n"
    "                out.append((id(r), owner))\n"
    "    return out\n";

static void compile_rlock_layer(void) {
    if (!py.Run_StringFlags || !py.Eval_GetBuiltins || !py.Dict_New || !py.Dict_SetItemString) return;
    PyObj *globals = py.Dict_New();
    if (!globals) return;
    py.Dict_SetItemString(globals, "__builtins__", py.Eval_GetBuiltins());
    PyObj *r = py.Run_StringFlags(release_rlocks_src, 257 /* Py_file_input */, globals, globals, NULL);
    if (r) {
        py.DecRef(r);
        release_rlocks_fn = py.Dict_GetItemString(globals, "release_rlocks");
        if (release_rlocks_fn) py.IncRef(release_rlocks_fn);
    }
    py.Err_Clear();
    py.DecRef(globals);
}

static int rlock_layer_wanted(void) {
    if (fs_setting(FS_SET_mode) != FS_MODE_REPAIR || !release_rlocks_fn || !snap_valid_in_child) return 0;
    switch (fs_setting(FS_SET_repair_rlocks)) {
    case 1: return 1;                                   /* on */
    case 2: return 0;                                   /* off */
    default: return !fs_setting(FS_SET_repair_semaphores) || !rlock_is_semaphore; /* auto */
    }
}

static const struct py_thread *snap_by_ident(uint64_t ident) {
    for (int i = 0; i < snap.nthreads; i++)
        if (snap.t[i].ident == ident) return &snap.t[i];
    return NULL;
}

/* In the child, from the after-fork hook: release the RLocks of lost threads and report each. */
static void release_lost_rlocks(void) {
    PyObj *lost = py.List_New(0);
    if (!lost) return;
    for (int i = 0; i < snap.nthreads; i++) {
        if (snap.t[i].tid == snap.taker_tid) continue; /* the forking thread survived */
        PyObj *n = py.Long_FromUnsignedLongLong(snap.t[i].ident);
        if (n) {
            py.List_Append(lost, n);
            py.DecRef(n);
        }
    }
    PyObj *res = py.Object_CallFunctionObjArgs(release_rlocks_fn, lost, NULL);
    py.DecRef(lost);
    if (!res) {
        py.Err_Clear();
        return;
    }
    ssize_t n = res != py.None ? py.List_Size(res) : 0;
    for (ssize_t i = 0; i < n; i++) {
        PyObj *item = py.List_GetItem(res, i);
        uint64_t addr = as_ident(py.Tuple_GetItem(item, 0)), ident = as_ident(py.Tuple_GetItem(item, 1));
        const struct py_thread *t = snap_by_ident(ident);
        char oname[16] = "";
        pid_t tid = t ? t->tid : 0;
        struct fs_thread *slot = tid ? fs_thread_find_tid(snap.taker_pid, tid) : NULL;
        if (slot && slot->name[0]) memcpy(oname, slot->name, sizeof oname);
        else if (tid) fs_read_comm(snap.taker_pid, tid, oname);
        struct fs_lock_owner owner = {tid, oname, t ? snap.arena + t->name : NULL, NULL};
        fs_report_lock_event("lock_repaired", "python_rlock", (const void *)(uintptr_t)addr, &owner);
    }
    py.DecRef(res);
    py.Err_Clear();
}

/* os.register_at_fork(before=..., after_in_child=...): 3.7+. The GIL is held. */
static void install_hooks(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&hooks_installed, &expected, HOOKS_INSTALLING)) return;
    PyObj *modules = py.Import_GetModuleDict();
    PyObj *posix = modules ? py.Dict_GetItemString(modules, "posix") : NULL;
    PyObj *reg = posix ? attr(posix, "register_at_fork") : NULL;
    if (py.CFunction_NewEx && fs_setting(FS_SET_exit_report) != FS_EXIT_REPORT_OFF) register_atexit();
    if (!reg || !py.CFunction_NewEx || !py.Dict_New || !py.Tuple_New || !py.Object_Call) {
        if (reg) py.DecRef(reg);
        atomic_store(&hooks_installed, HOOKS_UNAVAILABLE);
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
    if (r) compile_rlock_layer();
    if (before) py.DecRef(before);
    if (child) py.DecRef(child);
    if (kw) py.DecRef(kw);
    if (args) py.DecRef(args);
    py.DecRef(reg);
    atomic_store(&hooks_installed, r ? HOOKS_INSTALLED : HOOKS_UNAVAILABLE);
}

/* ---- where threads are created ----
 * At thread start (pthread_create with the GIL held) we keep the Python stack of the code that
 * starts the thread, as (site, line) pairs; a site is a code object's file and function, resolved
 * to strings once per code object. The strings are then readable anywhere: exit reports, thread
 * counts, a signal handler. The GIL serialises all writers. */
#define SITES 8192
#define SITE_ARENA (1024 * 1024)
static struct { PyObj *code; uint32_t file, func; } sites[SITES];   /* index 0 unused */
static uint32_t nsites = 1, site_arena_len = 1;
static char site_arena[SITE_ARENA];

static uint32_t site_intern_str(PyObj *o) {
    const char *s = NULL;
    if (o) s = py.Unicode_AsUTF8 ? py.Unicode_AsUTF8(o) : NULL;
    if (!s && o && py.String_AsString) {
        py.Err_Clear();
        s = py.String_AsString(o);
    }
    if (!s) {
        py.Err_Clear();
        return 0;
    }
    size_t n = strlen(s) + 1;
    if (n > 512 || site_arena_len + n > SITE_ARENA) return 0;
    uint32_t off = site_arena_len;
    memcpy(site_arena + off, s, n);
    site_arena_len += (uint32_t)n;
    return off;
}

static uint16_t site_of(PyObj *code) {
    unsigned h = (unsigned)(((uintptr_t)code >> 4) % (SITES - 1)) + 1;
    for (unsigned k = 0; k < 16; k++) {
        unsigned i = (h + k - 1) % (SITES - 1) + 1;
        if (sites[i].code == code) return (uint16_t)i;
        if (sites[i].code) continue;
        PyObj *f = attr(code, "co_filename"), *n = attr(code, "co_name");
        sites[i].file = site_intern_str(f);
        sites[i].func = site_intern_str(n);
        if (f) py.DecRef(f);
        if (n) py.DecRef(n);
        py.IncRef(code); /* kept alive: the site outlives the frame */
        sites[i].code = code;
        nsites++;
        return (uint16_t)i;
    }
    return 0;
}

void fs_py_site(uint16_t site, const char **file, const char **func) {
    *file = site_arena + (site < SITES ? sites[site].file : 0);
    *func = site_arena + (site < SITES ? sites[site].func : 0);
}

/* Thread.start's `self.name`, from the frame that calls _start_new_thread. */
static void creating_thread_name(PyObj *frame, char *out, size_t cap) {
    PyObj *locals = attr(frame, "f_locals");
    PyObj *self = NULL;
    if (locals) {
        PyObj *getitem = attr(locals, "get");
        if (getitem) {
            PyObj *k = py.Unicode_FromString ? py.Unicode_FromString("self") : NULL;
            if (k) {
                self = py.Object_CallFunctionObjArgs(getitem, k, NULL);
                py.DecRef(k);
            }
            py.DecRef(getitem);
        }
        py.DecRef(locals);
    }
    py.Err_Clear();
    if (!self) return;
    PyObj *name = self != py.None ? attr(self, "name") : NULL;
    const char *s = NULL;
    if (name) s = py.Unicode_AsUTF8 ? py.Unicode_AsUTF8(name) : NULL;
    if (!s && name && py.String_AsString) {
        py.Err_Clear();
        s = py.String_AsString(name);
    }
    if (s) {
        size_t n = strlen(s);
        if (n >= cap) n = cap - 1;
        memcpy(out, s, n);
        out[n] = '\0';
    }
    if (name) py.DecRef(name);
    py.DecRef(self);
    py.Err_Clear();
}

static void capture_creation(struct fs_thread *t) {
    t->ncreate = 0;
    t->pyname[0] = '\0';
    PyObj *f = py.Eval_GetFrame ? py.Eval_GetFrame() : NULL, *owned = NULL;
    if (!f) return;
    creating_thread_name(f, t->pyname, sizeof t->pyname);
    while (f && f != py.None && t->ncreate < FS_CREATE_DEPTH) {
        PyObj *code = py.Frame_GetCode ? py.Frame_GetCode(f) : attr(f, "f_code");
        t->create_site[t->ncreate] = code ? site_of(code) : 0;
        t->create_line[t->ncreate] = py.Frame_GetLineNumber(f);
        t->ncreate++;
        if (code) py.DecRef(code);
        PyObj *back = py.Frame_GetBack ? py.Frame_GetBack(f) : attr(f, "f_back");
        if (owned) py.DecRef(owned);
        owned = f = back;
    }
    if (owned) py.DecRef(owned);
    py.Err_Clear();
}

/* ---- called from the wrappers ---- */

void fs_py_thread_starting(struct fs_thread *t) {
    if (t) t->ncreate = 0;
    int hooks = atomic_load_explicit(&hooks_installed, memory_order_relaxed);
    if (hooks == HOOKS_NONE) {
        if (!usable() || !holds_gil()) return;
        install_hooks();
    } else if (atomic_load_explicit(&py_state, memory_order_relaxed) != PY_PRESENT || !holds_gil()) {
        return; /* a thread started from C, or no Python */
    }
    if (t) capture_creation(t);
}

/* Before exit or exec: a snapshot now, if this thread can call Python without waiting. */
void fs_py_snapshot_now(void) {
    if (atomic_load_explicit(&py_state, memory_order_relaxed) != PY_PRESENT || !py.IsInitialized() ||
        (py.IsFinalizing && py.IsFinalizing()) || !py.GILState_GetThisThreadState() || !holds_gil())
        return;
    take_snapshot();
    snap_valid_in_child = 1;
}

void fs_py_before_fork(void) {
    if (tls_hook_took_snapshot) { /* os.fork: our before-hook already read the threads */
        tls_hook_took_snapshot = 0;
        return;
    }
    int hooks = atomic_load_explicit(&hooks_installed, memory_order_relaxed);
    if (!usable()) return;
    /* Without our hook, a fork with the GIL held may be os.fork on 3.7+, which holds CPython's
     * fork locks here (HEAD_LOCK on 3.13): only 2.7 and 3.6 (no register_at_fork) are safe. */
    if (hooks != HOOKS_INSTALLED && hooks != HOOKS_UNAVAILABLE) {
        if (holds_gil()) install_hooks(); /* for the next fork */
        if (atomic_load(&hooks_installed) != HOOKS_UNAVAILABLE) return;
    }
    if (!multi_threaded()) return;
    if (holds_gil()) {
        take_snapshot();
    } else {
        int g = py.GILState_Ensure();
        take_snapshot();
        py.GILState_Release(g);
    }
}

/* Prepare handler (inside fork): does the snapshot describe this fork? */
void fs_py_prepare(pid_t forking_tid) {
    snap_valid_in_child = forking_tid > 0 && !atomic_load(&snap.writing) && snap.taker_pid == getpid() &&
                          snap.taker_tid == forking_tid && snap.nthreads > 0;
}

/* Parent handler: the snapshot was used (or not) by this fork; never by a later one. */
void fs_py_parent(void) { snap.taker_tid = 0; }

int fs_py_snapshot_valid(void) { return snap_valid_in_child; }

/* tid -> snapshot entry, built on the first lookup after a snapshot is taken or inherited. */
static int16_t snap_index[4 * PY_MAX_THREADS];
static uint32_t snap_index_size;
static uint32_t snap_index_gen;

const struct fs_py_info *fs_py_lookup(pid_t tid, struct fs_py_info *out) {
    if (!snap_valid_in_child || tid <= 0) return NULL;
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
        out->name = snap.arena + snap.t[i].name;
        out->nframes = snap.t[i].nframes;
        out->first = snap.t[i].first;
        return out;
    }
    return NULL;
}

void fs_py_frame(const struct fs_py_info *info, uint32_t i, const char **file, const char **func, int *line) {
    const struct py_frame *f = &snap.f[info->first + i];
    *file = snap.arena + f->file;
    *func = snap.arena + f->func;
    *line = f->line;
}
