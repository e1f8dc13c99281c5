// SPDX-License-Identifier: MIT
// Which CPython 3.13.1+ Locks each thread holds at a fork, read from its frames in the parent
// (the GIL held, when the snapshot is taken). A Lock is a PyMutex and records no owner; what
// proves that a thread holds one is a `with` block it is inside: the interpreter keeps that
// block's __exit__ -- bound to the lock, or to a Condition whose _lock it is -- on the frame's
// value stack until the block ends. Which part of the value stack is live does not need the
// frame's stack pointer (3.13 keeps it in a register while the frame runs): the code object's
// exception table gives, for the instruction the frame is at, the depth its handler unwinds to,
// and every slot below that depth is live.
//   Proof:     `with lock:`; `with cond:` for a Condition over a Lock (queue.Queue's and
//              threading.Semaphore's Conditions are such).
//   Not proof: the thread is still entering the block (its __exit__ is not yet covered by the
//              block's handler); a frame further in is Condition.wait/wait_for on the same lock
//              (wait releases it); a bare acquire() leaves no trace (core/pylock.c explains that
//              hang instead of repairing it).
// The child (core/pylock.c) repairs a Lock only if a lost thread, and no thread that lives on,
// held it by this proof. Offsets are measured once, when the hooks are installed, on a generator
// of ours suspended inside `with lock:` -- this same walk must find that lock there, or nothing
// here is used. Reads are plain loads: every object read is alive and not changing (the GIL is
// held; other threads are stopped outside the interpreter).
#include "py.h"

#include <string.h>

#define MAX_HELD 256
#define MAX_DEPTH 512      /* frames per thread */
#define MAX_RELEASED 16    /* Condition.wait frames per thread */
#define MAX_SLOTS 256      /* value-stack depth looked at */

static struct {
    int ok;
    int f_frame_off;                  /* PyFrameObject -> its _PyInterpreterFrame */
    int exec_off, frame_obj_off, instr_off, localsplus_off;
    int adaptive_off, exctable_off, nlocalsplus_off; /* in a code object */
    uintptr_t code_type, cfunc_type, method_type, lock_type;
    int mutex_off;                    /* the PyMutex byte in a Lock */
    uintptr_t lock_exit_ml;           /* the PyMethodDef of Lock.__exit__ (3.13's bound method) */
    uintptr_t lock_exit_descr;        /* Lock.__exit__ itself (3.14 pushes it unbound) */
} L;

/* threading's Condition, looked up at each fork (the program may import threading late). */
static struct { uintptr_t exit_fn, wait_code, wait_for_code; } cond;

static struct fs_py_held held[MAX_HELD];
static int nheld;

#define W(a) (*(const uintptr_t *)(uintptr_t)(a))
#define OBJ(a) (W(a) & ~(uintptr_t)7) /* 3.14 tags its stack references in the low bits */

static int type_is(uintptr_t o, uintptr_t type) { return o && !(o & 7) && W(o + 8) == type; }

/* ---- the code object's exception table (Objects/exception_handling_notes.txt) ---- */
static int varint(const uint8_t **p, const uint8_t *end, uint32_t *out) {
    if (*p >= end) return -1;
    uint8_t b = *(*p)++;
    uint32_t v = b & 63;
    while (b & 64) {
        if (*p >= end) return -1;
        b = *(*p)++;
        v = (v << 6) | (b & 63);
    }
    *out = v;
    return 0;
}

/* The handler covering instruction `i` (in code units): its target and depth. 0 if found. */
static int handler_for(uintptr_t code, uint32_t i, uint32_t *target, uint32_t *depth) {
    uintptr_t table = W(code + (uintptr_t)L.exctable_off);
    if (!table) return -1;
    const uint8_t *p = (const uint8_t *)(table + 32), *end = p + W(table + 16); /* PyBytesObject */
    while (p < end) {
        uint32_t start, size, tgt, dl;
        if (varint(&p, end, &start) || varint(&p, end, &size) || varint(&p, end, &tgt) || varint(&p, end, &dl))
            return -1;
        if (i < start) return -1; /* sorted by start */
        if (i < start + size) {
            *target = tgt;
            *depth = dl >> 1;
            return 0;
        }
    }
    return -1;
}

/* ---- what a live stack slot proves ---- */
/* A Condition's lock, if it is a Lock (an RLock has an owner: the RLock layers cover it). */
static uintptr_t condition_lock(uintptr_t c) {
    PyObj *lock = c ? fs_py_instance_attr((PyObj *)c, "_lock") : NULL;
    uintptr_t l = lock && type_is((uintptr_t)lock, L.lock_type) ? (uintptr_t)lock : 0;
    if (lock) py.DecRef(lock); /* the Condition keeps it */
    return l;
}

/* The Lock whose `with` block slot k (of n live slots) belongs to, or 0. */
static uintptr_t with_lock(const uintptr_t *s, uint32_t k, uint32_t n, int *top) {
    uintptr_t v = s[k] & ~(uintptr_t)7, next = k + 1 < n ? s[k + 1] & ~(uintptr_t)7 : 0;
    uintptr_t lock = 0;
    *top = k + 1 == n;
    if (type_is(v, L.cfunc_type) && W(v + 16) == L.lock_exit_ml) /* 3.13: lock.__exit__ */
        lock = W(v + 24);
    else if (cond.exit_fn && type_is(v, L.method_type) && W(v + 16) == cond.exit_fn) /* cond.__exit__ */
        lock = condition_lock(W(v + 24));
    else if (v == L.lock_exit_descr && next) { /* 3.14: Lock.__exit__, lock */
        lock = next;
        *top = k + 2 == n;
    } else if (v == cond.exit_fn && cond.exit_fn && next) { /* 3.14: Condition.__exit__, cond */
        lock = condition_lock(next);
        *top = k + 2 == n;
    }
    return type_is(lock, L.lock_type) ? lock : 0;
}

static int is_locked(uintptr_t lock) { return *(const uint8_t *)(lock + (uintptr_t)L.mutex_off) & 1; }

static void add(uintptr_t lock, uint64_t ident, uintptr_t code, uint32_t at) {
    for (int i = 0; i < nheld; i++)
        if (held[i].lock == lock && held[i].ident == ident) return; /* nested blocks: the outer one counts */
    if (nheld >= MAX_HELD) return;
    struct fs_py_held *h = &held[nheld++];
    h->lock = lock;
    h->ident = ident;
    h->site = fs_py_site_of((PyObj *)code);
    h->line = py.Code_Addr2Line ? py.Code_Addr2Line((PyObj *)code, (int)at * 2) : 0;
}

/* One thread's frames, innermost first, from its _PyInterpreterFrame `f`. Returns how many Locks
 * it was found holding. */
static int scan_frames(uint64_t ident, uintptr_t f) {
    uintptr_t released[MAX_RELEASED];
    int nreleased = 0, found = 0;
    for (int n = 0; f && n < MAX_DEPTH; n++, f = W(f + 8) /* previous */) {
        uintptr_t code = OBJ(f + (uintptr_t)L.exec_off);
        if (!type_is(code, L.code_type)) continue; /* the C stack's entry frames */
        uintptr_t start = code + (uintptr_t)L.adaptive_off, ip = W(f + (uintptr_t)L.instr_off);
        uintptr_t units = W(code + 16); /* ob_size: code units */
        if (ip < start || ip >= start + 2 * units) continue;
        uint32_t i = (uint32_t)((ip - start) / 2);
        const uintptr_t *locals = (const uintptr_t *)(f + (uintptr_t)L.localsplus_off);
        int nlocalsplus = *(const int *)(code + (uintptr_t)L.nlocalsplus_off);
        if (code == cond.wait_code || code == cond.wait_for_code) { /* it may have released self._lock */
            uintptr_t lock = nlocalsplus > 0 ? condition_lock(locals[0] & ~(uintptr_t)7) : 0;
            if (lock && nreleased < MAX_RELEASED) released[nreleased++] = lock;
            else if (lock) return found; /* too many to tell: prove nothing further out */
        }
        uint32_t target, depth;
        if (nlocalsplus < 0 || handler_for(code, i, &target, &depth) != 0) continue;
        if (depth > MAX_SLOTS) depth = MAX_SLOTS;
        const uintptr_t *stack = locals + nlocalsplus;
        for (uint32_t k = 0; k < depth; k++) {
            int top;
            uintptr_t lock = with_lock(stack, k, depth, &top);
            if (!lock || !is_locked(lock)) continue;
            int was_released = 0;
            for (int r = 0; r < nreleased; r++) was_released |= released[r] == lock;
            if (was_released) continue;
            /* The with statement's own handler is attributed to its line; a deeper one is not. */
            add(lock, ident, code, top ? target : i);
            found++;
        }
    }
    return found;
}

static uintptr_t iframe_of(PyObj *frame) {
    uintptr_t f = frame ? W((uintptr_t)frame + (uintptr_t)L.f_frame_off) : 0;
    return f && !(f & 7) && W(f + (uintptr_t)L.frame_obj_off) == (uintptr_t)frame ? f : 0;
}

/* ---- at each fork (snapshot.c) ---- */
void fs_py_held_begin(void) {
    nheld = 0;
    memset(&cond, 0, sizeof cond);
    if (!L.ok) return;
    PyObj *modules = py.Import_GetModuleDict();
    PyObj *threading = modules ? fs_py_dict_get(modules, "threading") : NULL; /* never imported by us */
    PyObj *condition = threading ? fs_py_dict_item(threading, "Condition") : NULL;
    if (!condition) return;
    PyObj *exit_fn = fs_py_attr(condition, "__exit__");
    PyObj *wait = fs_py_attr(condition, "wait"), *wait_for = fs_py_attr(condition, "wait_for");
    PyObj *wc = wait ? fs_py_attr(wait, "__code__") : NULL, *wfc = wait_for ? fs_py_attr(wait_for, "__code__") : NULL;
    /* Functions of the class: alive as long as threading is; compared by address only. */
    cond.exit_fn = (uintptr_t)exit_fn;
    cond.wait_code = (uintptr_t)wc;
    cond.wait_for_code = (uintptr_t)wfc;
    PyObj *refs[] = {exit_fn, wait, wait_for, wc, wfc};
    for (unsigned i = 0; i < sizeof refs / sizeof refs[0]; i++)
        if (refs[i]) py.DecRef(refs[i]);
}

void fs_py_held_thread(uint64_t ident, PyObj *frame) {
    if (L.ok) scan_frames(ident, iframe_of(frame));
}

int fs_py_held_count(void) { return fs_py_snapshot_valid() ? nheld : 0; }
const struct fs_py_held *fs_py_held_get(int i) { return &held[i]; }

/* ---- measured once, on objects of ours ---- */
static const char probe_src[] =
    "def forksafe_probe(lock, marker):\n"
    "    c = d = e = f = g = h = i = j = k = 0\n"
    "    with lock:\n"
    "        yield marker\n"
    "def forksafe_probe_cells(a):\n"
    "    x = y = 0\n"
    "    def inner():\n"
    "        return x + y\n"
    "    yield inner\n"
    "class forksafe_probe_class:\n"
    "    def m(self):\n"
    "        pass\n";

static int find_word(uintptr_t base, int from, int to, uintptr_t v, uintptr_t mask) {
    for (int o = from; o + 8 <= to; o += 8)
        if ((W(base + (uintptr_t)o) & mask) == v) return o;
    return -1;
}

static PyObj *call0(PyObj *o, const char *method) {
    PyObj *m = fs_py_attr(o, method);
    PyObj *r = m ? py.Object_CallObject(m, NULL) : NULL;
    if (m) py.DecRef(m);
    py.Err_Clear();
    return r;
}

/* The offsets in a code object, from two probes of known sizes. */
static int measure_code(PyObj *code, PyObj *code_cells) {
    PyObj *adaptive = fs_py_attr(code, "_co_code_adaptive"), *table = fs_py_attr(code, "co_exceptiontable");
    int ok = adaptive && table;
    uintptr_t a = (uintptr_t)adaptive, c = (uintptr_t)code;
    size_t len = ok ? W(a + 16) : 0;
    L.adaptive_off = -1;
    for (int o = 16; ok && len >= 16 && o < 512; o += 2)
        if (memcmp((const void *)(c + (uintptr_t)o), (const void *)(a + 32), len) == 0) {
            L.adaptive_off = o;
            break;
        }
    ok = ok && L.adaptive_off > 0 && W(c + 16) * 2 == len;
    L.exctable_off = ok ? find_word(c, 16, L.adaptive_off, (uintptr_t)table, ~(uintptr_t)0) : -1;
    L.nlocalsplus_off = -1;
    int matches = 0;
    for (int o = 16; ok && o + 4 <= L.adaptive_off; o += 4)
        if (*(const int *)(c + (uintptr_t)o) == 11 && *(const int *)((uintptr_t)code_cells + (uintptr_t)o) == 4) {
            L.nlocalsplus_off = o;
            matches++;
        }
    if (adaptive) py.DecRef(adaptive);
    if (table) py.DecRef(table);
    return ok && L.exctable_off > 0 && matches == 1 ? 0 : -1;
}

/* The frame offsets, from our generator suspended inside `with lock:` with (lock, marker) as its
 * first two locals. */
static int measure_frame(PyObj *gen, PyObj *code, PyObj *lock, PyObj *marker) {
    PyObj *frame = fs_py_attr(gen, "gi_frame");
    int ok = 0;
    for (int o = 16; frame && o <= 64 && !ok; o += 8) {
        uintptr_t f = W((uintptr_t)frame + (uintptr_t)o);
        if (!f || (f & 7) || f < (uintptr_t)gen || f > (uintptr_t)gen + 512) continue; /* inside the generator */
        int e = find_word(f, 0, 128, (uintptr_t)code, ~(uintptr_t)7);
        int fo = find_word(f, 0, 128, (uintptr_t)frame, ~(uintptr_t)0);
        uintptr_t start = (uintptr_t)code + (uintptr_t)L.adaptive_off, end = start + 2 * W((uintptr_t)code + 16);
        int ip = -1, ls = -1;
        for (int k = 0; k + 8 <= 128 && ip < 0; k += 8)
            if (W(f + (uintptr_t)k) >= start && W(f + (uintptr_t)k) < end) ip = k;
        for (int k = 0; k + 16 <= 160 && ls < 0; k += 8)
            if (OBJ(f + (uintptr_t)k) == (uintptr_t)lock && OBJ(f + (uintptr_t)k + 8) == (uintptr_t)marker) ls = k;
        if (e == 0 && fo > 0 && ip > 0 && ls > ip) {
            L.f_frame_off = o;
            L.exec_off = e;
            L.frame_obj_off = fo;
            L.instr_off = ip;
            L.localsplus_off = ls;
            ok = 1;
        }
    }
    if (frame) py.DecRef(frame);
    return ok ? 0 : -1;
}

void fs_py_held_forget(void) { memset(&L, 0, sizeof L); } /* its types are gone */

void fs_py_held_measure(void) {
    const struct fs_py_lock_layout *layout = fs_py_lock_layout();
    if (L.ok || !layout || !py.Run_StringFlags || !py.Dict_New || !py.Eval_GetBuiltins ||
        !py.Object_CallFunctionObjArgs || !py.Type_Lookup)
        return;
    PyObj *globals = py.Dict_New();
    if (!globals) return;
    py.Dict_SetItemString(globals, "__builtins__", py.Eval_GetBuiltins());
    PyObj *r = py.Run_StringFlags(probe_src, 257 /* Py_file_input */, globals, globals, NULL);
    PyObj *probe = py.Dict_GetItemString(globals, "forksafe_probe");
    PyObj *cells = py.Dict_GetItemString(globals, "forksafe_probe_cells");
    PyObj *klass = py.Dict_GetItemString(globals, "forksafe_probe_class");
    PyObj *code = probe ? fs_py_attr(probe, "__code__") : NULL;
    PyObj *code_cells = cells ? fs_py_attr(cells, "__code__") : NULL;
    PyObj *lock = py.Object_CallObject((PyObj *)layout->lock_type, NULL), *marker = py.List_New(0);
    PyObj *gen = NULL, *inst = NULL, *bound = NULL, *fn = NULL, *lock_exit = NULL;
    int ok = r && code && code_cells && lock && marker && klass;
    L.lock_type = layout->lock_type;
    L.mutex_off = layout->lock.mutex_off;
    L.code_type = ok ? W((uintptr_t)code + 8) : 0;
    ok = ok && measure_code(code, code_cells) == 0;
    if (ok) { /* a bound method of a Python class: 3.13 keeps `cond.__exit__` as one */
        inst = py.Object_CallObject(klass, NULL);
        bound = inst ? fs_py_attr(inst, "m") : NULL;
        fn = fs_py_attr(klass, "m");
        ok = bound && fn && W((uintptr_t)bound + 16) == (uintptr_t)fn && W((uintptr_t)bound + 24) == (uintptr_t)inst;
        L.method_type = ok ? W((uintptr_t)bound + 8) : 0;
    }
    if (ok) { /* lock.__exit__ bound (3.13) and unbound (3.14) */
        lock_exit = fs_py_attr(lock, "__exit__");
        ok = lock_exit && W((uintptr_t)lock_exit + 24) == (uintptr_t)lock;
        L.cfunc_type = ok ? W((uintptr_t)lock_exit + 8) : 0;
        L.lock_exit_ml = ok ? W((uintptr_t)lock_exit + 16) : 0;
        PyObj *descr = ok ? fs_py_attr((PyObj *)layout->lock_type, "__exit__") : NULL;
        L.lock_exit_descr = (uintptr_t)descr; /* the type keeps it */
        if (descr) py.DecRef(descr);
        ok = ok && descr;
    }
    if (ok) { /* our generator, suspended inside `with lock:` */
        gen = py.Object_CallFunctionObjArgs(probe, lock, marker, NULL);
        PyObj *y = gen ? call0(gen, "__next__") : NULL;
        ok = y == marker && is_locked((uintptr_t)lock) && measure_frame(gen, code, lock, marker) == 0;
        if (y) py.DecRef(y);
    }
    if (ok) { /* the proof: the walk finds our lock held by this generator's frame, and no other */
        L.ok = 1;
        nheld = 0;
        PyObj *frame = fs_py_attr(gen, "gi_frame");
        ok = frame && scan_frames(1, iframe_of(frame)) == 1 && nheld == 1 && held[0].lock == (uintptr_t)lock;
        if (frame) py.DecRef(frame);
        nheld = 0;
        L.ok = 0;
    }
    if (gen) {
        PyObj *c = call0(gen, "close"); /* leaves the with block: the lock is released */
        if (c) py.DecRef(c);
        ok = ok && !is_locked((uintptr_t)lock);
    }
    PyObj *refs[] = {gen, bound, inst, fn, lock_exit, lock, marker, code, code_cells, r};
    for (unsigned i = 0; i < sizeof refs / sizeof refs[0]; i++)
        if (refs[i]) py.DecRef(refs[i]);
    py.Err_Clear();
    py.DecRef(globals);
    L.ok = ok;
}
