// SPDX-License-Identifier: MIT
// Which CPython 3.13.1+ Locks each thread holds at a fork, read from its frames in the parent
// (the GIL held, when the snapshot is taken). A Lock is a PyMutex and records no owner; what
// proves that a thread holds one is where its frames are:
//  - inside `with lock:` (or `with cond:` for a Condition over a Lock: queue.Queue's and
//    threading.Semaphore's are such): the interpreter keeps the block's __exit__ on the frame's
//    value stack until the block ends. Which part of the value stack is live does not need the
//    frame's stack pointer (3.13 keeps it in a register while the frame runs): the code object's
//    exception table gives, for the instruction the frame is at, the depth its handler unwinds
//    to, and every slot below that depth is live;
//  - inside `try:` right after `lock.acquire()`, whose `finally:` begins `lock.release()`: read
//    from the code (co_code) with opcodes learned per interpreter.
// Not proof: the thread is still entering the block (its __exit__ is not yet covered by the
// block's handler); a frame further in is Condition.wait/wait_for on the same lock (wait releases
// it) or Condition.__exit__ (leaving); a bare acquire() leaves no trace (core/pylock.c explains
// that hang instead of repairing it).
// The child (core/pylock.c) repairs a Lock only if a lost thread, and no thread that lives on,
// held it by this proof. Offsets and opcodes are measured once, when the hooks are installed, on
// generators of ours suspended inside `with lock:` and inside each form of the try/finally idiom:
// this same walk must find their locks, or that part is not used. Reads are plain loads: every
// object read is alive and not changing (the GIL is held; other threads are stopped outside the
// interpreter). Cost: one cold read per frame, most frames have no handler (docs/internals.md).
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
static struct { uintptr_t exit_fn, exit_code, wait_code, wait_for_code; } cond;

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

struct entry { uint32_t start, size, target, depth; };

/* The next entry of a table being read; 0 if there is one. */
static int next_entry(const uint8_t **p, const uint8_t *end, struct entry *e) {
    uint32_t dl;
    if (*p >= end || varint(p, end, &e->start) || varint(p, end, &e->size) || varint(p, end, &e->target) ||
        varint(p, end, &dl))
        return -1;
    e->depth = dl >> 1;
    return 0;
}

static const uint8_t *table_of(uintptr_t code, const uint8_t **end) {
    uintptr_t table = W(code + (uintptr_t)L.exctable_off);
    if (!table) return NULL;
    *end = (const uint8_t *)(table + 32) + W(table + 16); /* PyBytesObject: ob_size, ob_sval */
    return (const uint8_t *)(table + 32);
}

/* The handler covering instruction `i` (in code units): its target and depth. 0 if found. */
static int handler_for(uintptr_t code, uint32_t i, uint32_t *target, uint32_t *depth) {
    const uint8_t *end = NULL, *p = table_of(code, &end);
    struct entry e;
    while (p && next_entry(&p, end, &e) == 0) {
        if (i < e.start) return -1; /* sorted by start */
        if (i < e.start + e.size) {
            *target = e.target;
            *depth = e.depth;
            return 0;
        }
    }
    return -1;
}

/* Where the protected range of handler `target` begins: the first instruction of the try. */
static uint32_t range_start(uintptr_t code, uint32_t target) {
    const uint8_t *end = NULL, *p = table_of(code, &end);
    struct entry e;
    while (p && next_entry(&p, end, &e) == 0)
        if (e.target == target) return e.start; /* sorted: the first is the earliest */
    return UINT32_MAX;
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

/* ---- `lock.acquire()` then `try: ... finally: lock.release()` ---- */
/* The idiom leaves no trace on the stack, only in the code: the frame is inside a try whose
 * handler (the finally block) begins `EXPR.release()`, and the instructions just before the try
 * are `EXPR.acquire()` with the same EXPR. Opcodes differ between versions: they are learned from
 * our probes (F below). Only the deoptimised code (co_code) is read; an instruction we did not
 * learn (EXTENDED_ARG, another form of EXPR) makes the idiom not match: no proof. */
#define EXPR_MAX 3
struct insn { uint8_t op, arg; };
struct expr { int n; struct insn in[EXPR_MAX]; };

static struct {
    int ok;
    uint8_t push_exc_info, load_attr, call, load_global;
    uint8_t load_fast[4], load_deref[4];  /* the forms seen (3.14 also has LOAD_FAST_BORROW) */
    int nload_fast, nload_deref;
    uintptr_t cell_type;
    int nglue;
    uint8_t glue[2];                  /* between the acquire's CALL and the try (POP_TOP, ...) */
    int names_off, globals_off;       /* co_names in a code object; f_globals in a frame */
    int items_off;                    /* a tuple's first item (3.14 caches the hash before it) */
} F;

static int in_set(uint8_t op, const uint8_t *set, int n) {
    for (int i = 0; i < n; i++)
        if (set[i] == op) return 1;
    return 0;
}
static int is_load_fast(uint8_t op) { return in_set(op, F.load_fast, F.nload_fast); }
static int is_load_deref(uint8_t op) { return in_set(op, F.load_deref, F.nload_deref); }
static void learn_op(uint8_t op, uint8_t *set, int *n) {
    if (!in_set(op, set, *n) && *n < 4) set[(*n)++] = op;
}

/* A code object's deoptimised code, as (op, arg) units without the inline caches (CACHE is 0). */
struct code_view { const uint8_t *b; uint32_t n; };

static uint32_t next_real(const struct code_view *c, uint32_t u) {
    for (u++; u < c->n && c->b[2 * u] == 0; u++) {}
    return u;
}

static struct insn at(const struct code_view *c, uint32_t u) {
    return u < c->n ? (struct insn){c->b[2 * u], c->b[2 * u + 1]} : (struct insn){0, 0};
}

static PyObj *name_at(uintptr_t code, unsigned i) {
    uintptr_t names = W(code + (uintptr_t)F.names_off);
    return names && i < W(names + 16) ? (PyObj *)W(names + (uintptr_t)F.items_off + 8 * (uintptr_t)i) : NULL;
}

static int name_is(uintptr_t code, unsigned i, const char *want) {
    const char *n = fs_py_str(name_at(code, i));
    return n && strcmp(n, want) == 0;
}

/* EXPR at unit u: a local, or a global, then up to two attributes (self._lock). Returns the unit
 * after it. */
static uint32_t read_expr(const struct code_view *c, uint32_t u, struct expr *e) {
    e->n = 0;
    struct insn in = at(c, u);
    if (!is_load_fast(in.op) && !is_load_deref(in.op) && !(in.op == F.load_global && !(in.arg & 1))) return UINT32_MAX;
    e->in[e->n++] = in;
    for (u = next_real(c, u); e->n < EXPR_MAX; u = next_real(c, u)) {
        in = at(c, u);
        if (in.op != F.load_attr || (in.arg & 1)) break; /* a method load ends it */
        e->in[e->n++] = in;
    }
    return u;
}

static int same_expr(const struct expr *a, const struct expr *b) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++)
        if (a->in[i].arg != b->in[i].arg ||
            !(a->in[i].op == b->in[i].op || (is_load_fast(a->in[i].op) && is_load_fast(b->in[i].op)) ||
              (is_load_deref(a->in[i].op) && is_load_deref(b->in[i].op))))
            return 0;
    return 1;
}

/* EXPR's value in frame f (GIL held; no program code runs: a dict read, instance attributes only
 * where no class defines the name). Borrowed, or 0. */
static uintptr_t eval_expr(const struct expr *e, uintptr_t code, uintptr_t f, int nlocalsplus) {
    uintptr_t v = 0;
    struct insn in = e->in[0];
    if (is_load_fast(in.op) || is_load_deref(in.op)) {
        v = in.arg < nlocalsplus ? ((const uintptr_t *)(f + (uintptr_t)L.localsplus_off))[in.arg] & ~(uintptr_t)7 : 0;
        if (is_load_deref(in.op)) v = type_is(v, F.cell_type) ? W(v + 16) : 0; /* PyCellObject.ob_ref */
    } else {
        PyObj *globals = (PyObj *)W(f + (uintptr_t)F.globals_off), *name = name_at(code, in.arg >> 1);
        v = globals && name ? (uintptr_t)py.Dict_GetItem(globals, name) : 0;
    }
    for (int i = 1; i < e->n && v; i++) {
        PyObj *name = name_at(code, e->in[i].arg >> 1);
        PyObj *a = name ? fs_py_instance_attr_obj((PyObj *)v, name) : NULL;
        v = (uintptr_t)a;
        if (a) py.DecRef(a); /* the object it was read from keeps it */
    }
    py.Err_Clear();
    return v;
}

/* Does handler `t` begin `EXPR.release()`? Then EXPR, and 0. */
static int finally_releases(const struct code_view *c, uintptr_t code, uint32_t t, struct expr *e) {
    if (at(c, t).op != F.push_exc_info) return -1;
    uint32_t u = read_expr(c, next_real(c, t), e);
    struct insn m = at(c, u), call = at(c, next_real(c, u));
    return m.op == F.load_attr && (m.arg & 1) && name_is(code, m.arg >> 1, "release") && call.op == F.call &&
                   call.arg == 0
               ? 0
               : -1;
}

/* Are the instructions right before unit `s` `EXPR.acquire()` (its result dropped), for e? */
static int acquired_before(const struct code_view *c, uintptr_t code, uint32_t s, const struct expr *e) {
    enum { BACK = EXPR_MAX + 2 + 2 };
    uint32_t last[BACK];
    int n = 0;
    for (uint32_t u = 0; u < s && u < c->n; u = next_real(c, u)) { /* instruction starts, in order */
        if (n == BACK) memmove(last, last + 1, sizeof last - sizeof last[0]), n--;
        last[n++] = u;
    }
    int k = n - F.nglue;
    for (int g = 0; g < F.nglue; g++)
        if (k + g < 0 || at(c, last[k + g]).op != F.glue[g]) return 0;
    k -= 2; /* LOAD_ATTR acquire, CALL 0 */
    if (k - e->n < 0) return 0;
    struct insn m = at(c, last[k]), call = at(c, last[k + 1]);
    if (m.op != F.load_attr || !(m.arg & 1) || !name_is(code, m.arg >> 1, "acquire") || call.op != F.call ||
        call.arg != 0)
        return 0;
    struct expr before;
    return read_expr(c, last[k - e->n], &before) == last[k] && same_expr(&before, e);
}

/* What a handler of a code object is, decoded once per scan: the threads of a pool run the same
 * code, and decoding needs the code's co_code (a call into the interpreter). */
#define IDIOM_CACHE 64
static struct idiom { uintptr_t code; uint32_t t, s; int match; struct expr e; } idioms[IDIOM_CACHE];

static const struct idiom *idiom_at(uintptr_t code, uint32_t t, PyObj **bytes) {
    struct idiom *d = &idioms[(((code >> 4) ^ t) * 2654435761u) % IDIOM_CACHE];
    if (d->code == code && d->t == t) return d;
    if (!*bytes) *bytes = fs_py_attr((PyObj *)code, "co_code");
    if (!*bytes) return NULL;
    struct code_view c = {(const uint8_t *)*bytes + 32, (uint32_t)(W((uintptr_t)*bytes + 16) / 2)};
    d->code = code;
    d->t = t;
    d->match = finally_releases(&c, code, t, &d->e) == 0 && (d->s = range_start(code, t)) != UINT32_MAX &&
               acquired_before(&c, code, d->s, &d->e);
    return d;
}

/* The Lock a frame at instruction i holds by the idiom, through its chain of enclosing handlers
 * (a finally's handler is itself covered by the one outside it); where it was taken in *at. */
static uintptr_t finally_lock(uintptr_t code, uintptr_t f, int nlocalsplus, uint32_t i, uint32_t *at_unit) {
    if (!F.ok) return 0;
    PyObj *bytes = NULL;
    uintptr_t lock = 0;
    uint32_t t, depth, from = i;
    for (int step = 0; step < 8 && !lock && handler_for(code, from, &t, &depth) == 0 && t != from; step++, from = t) {
        const struct idiom *d = idiom_at(code, t, &bytes);
        if (d && d->match) {
            lock = eval_expr(&d->e, code, f, nlocalsplus);
            *at_unit = d->s;
        }
    }
    if (bytes) py.DecRef(bytes); /* the code object caches it */
    return lock;
}

static void add(uintptr_t lock, uint64_t ident, uintptr_t code, uint32_t at) {
    for (int i = 0; i < nheld; i++)
        if (held[i].lock == lock && held[i].ident == ident) return; /* nested blocks: the outer one counts */
    if (nheld >= MAX_HELD) return;
    struct fs_py_held *h = &held[nheld++];
    h->lock = lock;
    h->ident = ident;
    /* A pool's threads hold their locks at the same place: its line is computed once per scan. */
    static uintptr_t last_code;
    static uint32_t last_at;
    static uint16_t last_site;
    static int last_line;
    if (nheld == 1 || code != last_code || at != last_at) {
        last_code = code;
        last_at = at;
        last_site = fs_py_site_of((PyObj *)code);
        last_line = py.Code_Addr2Line ? py.Code_Addr2Line((PyObj *)code, (int)at * 2) : 0;
    }
    h->site = last_site;
    h->line = last_line;
}

/* One thread's frames, innermost first, from its _PyInterpreterFrame `f`. Returns how many Locks
 * it was found holding. */
/* A frame's code object and the instruction it is at; 0 if it runs Python code. */
static int frame_at(uintptr_t f, uintptr_t *code_out, uint32_t *i) {
    uintptr_t code = OBJ(f + (uintptr_t)L.exec_off);
    if (!type_is(code, L.code_type)) return -1; /* the C stack's entry frames */
    uintptr_t start = code + (uintptr_t)L.adaptive_off, ip = W(f + (uintptr_t)L.instr_off);
    uintptr_t units = W(code + 16); /* ob_size: code units */
    if (ip < start || ip >= start + 2 * units) return -1;
    *code_out = code;
    *i = (uint32_t)((ip - start) / 2);
    return 0;
}

/* One thread's walk, innermost frame first. */
struct cursor {
    uint64_t ident;
    uintptr_t f;                      /* the next frame; 0: done */
    int n, nreleased;
    uintptr_t released[MAX_RELEASED]; /* locks a Condition.wait further in released */
};

static int was_released(const struct cursor *c, uintptr_t lock) {
    for (int r = 0; r < c->nreleased; r++)
        if (c->released[r] == lock) return 1;
    return 0;
}

/* The cursor's frame, then it moves one frame out. Returns how many Locks that frame holds. */
static int scan_step(struct cursor *c) {
    uintptr_t f = c->f, code = OBJ(f + (uintptr_t)L.exec_off);
    uint32_t i;
    int found = 0;
    c->f = ++c->n < MAX_DEPTH ? W(f + 8) /* previous */ : 0;
    if (!type_is(code, L.code_type)) return 0; /* the C stack's entry frames */
    const uintptr_t *locals = (const uintptr_t *)(f + (uintptr_t)L.localsplus_off);
    int nlocalsplus = *(const int *)(code + (uintptr_t)L.nlocalsplus_off);
    /* wait() releases self._lock while it waits; __exit__, called from a `with` block's exception
     * handler (where the block's __exit__ is still on the stack), may just have released it. */
    if (code == cond.wait_code || code == cond.wait_for_code || code == cond.exit_code) {
        uintptr_t lock = nlocalsplus > 0 ? condition_lock(locals[0] & ~(uintptr_t)7) : 0;
        if (lock && c->nreleased < MAX_RELEASED) c->released[c->nreleased++] = lock;
        else if (lock) c->f = 0; /* too many to tell: prove nothing further out */
    }
    uintptr_t table = W(code + (uintptr_t)L.exctable_off);
    if (!table || W(table + 16) == 0) return 0; /* no handler anywhere in this code: most frames */
    uint32_t target, depth;
    if (frame_at(f, &code, &i) != 0 || nlocalsplus < 0 || handler_for(code, i, &target, &depth) != 0) return 0;
    if (depth > MAX_SLOTS) depth = MAX_SLOTS;
    const uintptr_t *stack = locals + nlocalsplus;
    for (uint32_t k = 0; k < depth; k++) {
        int top;
        uintptr_t lock = with_lock(stack, k, depth, &top);
        if (!lock || !is_locked(lock) || was_released(c, lock)) continue;
        /* The with statement's own handler is attributed to its line; a deeper one is not. */
        add(lock, c->ident, code, top ? target : i);
        found++;
    }
    uint32_t taken;
    uintptr_t lock = finally_lock(code, f, nlocalsplus, i, &taken);
    if (type_is(lock, L.lock_type) && is_locked(lock) && !was_released(c, lock)) {
        add(lock, c->ident, code, taken);
        found++;
    }
    return found;
}

/* The threads' walks, in lockstep: each step reads one frame of every thread, so the memory reads
 * of different threads' frames (cold: their threads sleep) overlap instead of waiting in turn. */
static int scan_all(struct cursor *cs, int n) {
    int found = 0, active = 1;
    while (active) {
        active = 0;
        for (int k = 0; k < n; k++) {
            if (!cs[k].f) continue;
            found += scan_step(&cs[k]);
            if (cs[k].f) {
                __builtin_prefetch((const void *)cs[k].f);
                active = 1;
            }
        }
    }
    return found;
}

static int scan_frames(uint64_t ident, uintptr_t f) {
    struct cursor c = {.ident = ident, .f = f};
    return scan_all(&c, 1);
}

static uintptr_t iframe_of(PyObj *frame) {
    uintptr_t f = frame ? W((uintptr_t)frame + (uintptr_t)L.f_frame_off) : 0;
    return f && !(f & 7) && W(f + (uintptr_t)L.frame_obj_off) == (uintptr_t)frame ? f : 0;
}

/* ---- at each fork (snapshot.c) ---- */
#define MAX_THREADS 1024
static struct cursor cursors[MAX_THREADS];
static int ncursors;

void fs_py_held_begin(void) {
    nheld = 0;
    ncursors = 0;
    memset(idioms, 0, sizeof idioms); /* code objects of the last scan may be gone */
    memset(&cond, 0, sizeof cond);
    if (!L.ok) return;
    PyObj *modules = py.Import_GetModuleDict();
    PyObj *threading = modules ? fs_py_dict_get(modules, "threading") : NULL; /* never imported by us */
    PyObj *condition = threading ? fs_py_dict_item(threading, "Condition") : NULL;
    if (!condition) return;
    PyObj *exit_fn = fs_py_attr(condition, "__exit__");
    PyObj *wait = fs_py_attr(condition, "wait"), *wait_for = fs_py_attr(condition, "wait_for");
    PyObj *wc = wait ? fs_py_attr(wait, "__code__") : NULL, *wfc = wait_for ? fs_py_attr(wait_for, "__code__") : NULL;
    PyObj *ec = exit_fn ? fs_py_attr(exit_fn, "__code__") : NULL;
    /* Functions of the class: alive as long as threading is; compared by address only. */
    cond.exit_fn = (uintptr_t)exit_fn;
    cond.wait_code = (uintptr_t)wc;
    cond.wait_for_code = (uintptr_t)wfc;
    cond.exit_code = (uintptr_t)ec;
    PyObj *refs[] = {exit_fn, wait, wait_for, wc, wfc, ec};
    for (unsigned i = 0; i < sizeof refs / sizeof refs[0]; i++)
        if (refs[i]) py.DecRef(refs[i]);
}

void fs_py_held_thread(uint64_t ident, PyObj *frame) {
    uintptr_t f = L.ok && ncursors < MAX_THREADS ? iframe_of(frame) : 0;
    if (f) {
        cursors[ncursors] = (struct cursor){.ident = ident, .f = f};
        __builtin_prefetch((const void *)f);
        ncursors++;
    }
}

void fs_py_held_end(void) {
    scan_all(cursors, ncursors);
    ncursors = 0;
}

int fs_py_held_count(void) { return nheld; }
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
    "        pass\n"
    "forksafe_probe_lock = None\n"
    "def forksafe_probe_finally(lock, marker):\n"
    "    lock.acquire()\n"
    "    try:\n"
    "        yield marker\n"
    "    finally:\n"
    "        lock.release()\n"
    "def forksafe_probe_finally_attr(obj, marker):\n"
    "    obj.lk.acquire()\n"
    "    try:\n"
    "        yield marker\n"
    "    finally:\n"
    "        obj.lk.release()\n"
    "def forksafe_probe_finally_cell(lock, marker):\n"
    "    def inner():\n"
    "        lock.acquire()\n"
    "        try:\n"
    "            yield marker\n"
    "        finally:\n"
    "            lock.release()\n"
    "    return inner()\n"
    "def forksafe_probe_finally_local(box, marker):\n"
    "    lock = box[0]\n"
    "    lock.acquire()\n"
    "    try:\n"
    "        yield marker\n"
    "    finally:\n"
    "        lock.release()\n"
    "def forksafe_probe_finally_global(marker):\n"
    "    forksafe_probe_lock.acquire()\n"
    "    try:\n"
    "        yield marker\n"
    "    finally:\n"
    "        forksafe_probe_lock.release()\n";

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
    L.exctable_off = ok ? fs_py_find_word((const void *)c, 16, L.adaptive_off, (uintptr_t)table, ~(uintptr_t)0) : -1;
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
        int e = fs_py_find_word((const void *)f, 0, 128, (uintptr_t)code, ~(uintptr_t)7);
        int fo = fs_py_find_word((const void *)f, 0, 128, (uintptr_t)frame, ~(uintptr_t)0);
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

struct probe_run { PyObj *gen, *code, *bytes; uintptr_t f; uint32_t i, t; struct code_view c; };

/* The start of the k-th real instruction before unit u (k >= 1), or UINT32_MAX. */
static uint32_t before(const struct code_view *c, uint32_t u, int k) {
    uint32_t ring[8];
    int n = 0;
    if (k < 1 || k > 8) return UINT32_MAX;
    for (uint32_t v = 0; v < u && v < c->n; v = next_real(c, v)) ring[n++ % 8] = v;
    return n >= k ? ring[(n - k) % 8] : UINT32_MAX;
}

/* The probe's first EXPR instruction at the handler and at the acquire before the try: the forms
 * of a local's (or a cell's) load the compiler uses in both places. */
static void learn_loads(const struct probe_run *r, uint8_t *set, int *n, uint8_t *arg_handler, uint8_t *arg_acquire) {
    const struct code_view *c = &r->c;
    struct insn h = at(c, next_real(c, r->t));
    uint32_t s = range_start((uintptr_t)r->code, r->t);
    struct insn a = at(c, before(c, s, F.nglue + 3)); /* EXPR, LOAD_ATTR acquire, CALL, glue... */
    learn_op(h.op, set, n);
    learn_op(a.op, set, n);
    *arg_handler = h.arg;
    *arg_acquire = a.arg;
}

/* One finally probe, suspended inside its try: the handler's first instructions, as units. */

static int probe_start(struct probe_run *r, PyObj *fn, PyObj *a, PyObj *b, PyObj *marker) {
    memset(r, 0, sizeof *r);
    r->gen = py.Object_CallFunctionObjArgs(fn, a, b, NULL);
    PyObj *y = r->gen ? fs_py_call_method(r->gen, "__next__") : NULL;
    PyObj *frame = r->gen ? fs_py_attr(r->gen, "gi_frame") : NULL;
    uintptr_t code = 0;
    uint32_t depth;
    r->f = iframe_of(frame);
    int ok = y == marker && r->f && frame_at(r->f, &code, &r->i) == 0 && handler_for(code, r->i, &r->t, &depth) == 0;
    r->code = (PyObj *)code;
    r->bytes = ok ? fs_py_attr(r->code, "co_code") : NULL;
    if (r->bytes) r->c = (struct code_view){(const uint8_t *)r->bytes + 32, (uint32_t)(W((uintptr_t)r->bytes + 16) / 2)};
    if (y) py.DecRef(y);
    if (frame) py.DecRef(frame);
    return r->bytes ? 0 : -1;
}

/* Closes the probe (its finally releases the lock); 0 if the lock is free then. */
static int probe_end(struct probe_run *r, PyObj *lock) {
    if (r->bytes) py.DecRef(r->bytes);
    PyObj *c = r->gen ? fs_py_call_method(r->gen, "close") : NULL;
    if (c) py.DecRef(c);
    if (r->gen) py.DecRef(r->gen);
    return lock && !is_locked((uintptr_t)lock) ? 0 : -1;
}

/* Does the walk find exactly `lock` held by the probe's frame? */
static int probe_found(struct probe_run *r, PyObj *lock) {
    nheld = 0;
    memset(idioms, 0, sizeof idioms);
    int n = scan_frames(1, r->f), ok = n == 1 && nheld == 1 && held[0].lock == (uintptr_t)lock;
    nheld = 0;
    return ok;
}

/* The opcodes of the acquire/try/finally idiom, learned from three probes (EXPR a local, an
 * attribute of a local, a global), then the walk must find each probe's lock. */
static void learn_finally(PyObj *globals, PyObj *klass, PyObj *marker) {
    PyObj *fn1 = py.Dict_GetItemString(globals, "forksafe_probe_finally");
    PyObj *fn2 = py.Dict_GetItemString(globals, "forksafe_probe_finally_attr");
    PyObj *fn3 = py.Dict_GetItemString(globals, "forksafe_probe_finally_global");
    PyObj *fn4 = py.Dict_GetItemString(globals, "forksafe_probe_finally_cell");
    PyObj *fn5 = py.Dict_GetItemString(globals, "forksafe_probe_finally_local");
    PyObj *lk[5] = {NULL, NULL, NULL, NULL, NULL}, *inst = klass ? py.Object_CallObject(klass, NULL) : NULL;
    for (int k = 0; k < 5; k++) lk[k] = py.Object_CallObject((PyObj *)L.lock_type, NULL);
    PyObj *box = py.List_New(0);
    int ok = fn1 && fn2 && fn3 && fn4 && fn5 && inst && box && lk[0] && lk[1] && lk[2] && lk[3] && lk[4] &&
             py.List_Append(box, lk[4]) == 0 && py.Object_SetAttrString &&
             py.Object_SetAttrString(inst, "lk", lk[1]) == 0 && py.Dict_SetItemString(globals, "forksafe_probe_lock", lk[2]) == 0;
    struct probe_run r[5];
    memset(r, 0, sizeof r);
    memset(&F, 0, sizeof F);
    ok = ok && probe_start(&r[0], fn1, lk[0], marker, marker) == 0;
    if (ok) { /* PUSH_EXC_INFO; LOAD_FAST lock; LOAD_ATTR release (method); CALL 0 */
        PyObj *names = fs_py_attr(r[0].code, "co_names");
        F.names_off = names ? fs_py_find_word((const void *)r[0].code, 16, L.adaptive_off, (uintptr_t)names, ~(uintptr_t)0) : -1;
        PyObj *first = names ? py.Tuple_GetItem(names, 0) : NULL; /* borrowed */
        F.items_off = first ? fs_py_find_word((const void *)names, 24, 48, (uintptr_t)first, ~(uintptr_t)0) : -1;
        if (names) py.DecRef(names);
        py.Err_Clear();
        const struct code_view *c = &r[0].c;
        uint32_t u1 = next_real(c, r[0].t), u2 = next_real(c, u1), u3 = next_real(c, u2);
        F.push_exc_info = at(c, r[0].t).op;
        F.load_attr = at(c, u2).op;
        F.call = at(c, u3).op;
        ok = F.names_off > 0 && F.items_off > 0 && at(c, u1).arg == 0 && (at(c, u2).arg & 1) &&
             name_is((uintptr_t)r[0].code, at(c, u2).arg >> 1, "release") && at(c, u3).arg == 0;
        /* the glue: what comes between the acquire's CALL and the try */
        uint32_t s = range_start((uintptr_t)r[0].code, r[0].t), last_call = UINT32_MAX;
        for (uint32_t u = 0; ok && u < s && u < c->n; u = next_real(c, u))
            if (at(c, u).op == F.call) last_call = u;
        for (uint32_t u = last_call == UINT32_MAX ? s : next_real(c, last_call); ok && u < s; u = next_real(c, u)) {
            if (F.nglue == 2) ok = 0;
            else F.glue[F.nglue++] = at(c, u).op;
        }
        ok = ok && last_call != UINT32_MAX;
        uint8_t ah = 1, aa = 1;
        if (ok) learn_loads(&r[0], F.load_fast, &F.nload_fast, &ah, &aa);
        ok = ok && ah == 0 && aa == 0; /* both load `lock`, local 0 */
    }
    ok = ok && probe_start(&r[1], fn2, inst, marker, marker) == 0;
    if (ok) { /* ... LOAD_FAST obj; LOAD_ATTR lk (an attribute); LOAD_ATTR release ... */
        const struct code_view *c = &r[1].c;
        uint32_t u1 = next_real(c, r[1].t), u2 = next_real(c, u1);
        uint8_t ah = 1, aa = 1;
        learn_loads(&r[1], F.load_fast, &F.nload_fast, &ah, &aa);
        ok = ah == 0 && aa == 0 && at(c, r[1].t).op == F.push_exc_info && at(c, u1).arg == 0 && at(c, u2).op == F.load_attr &&
             !(at(c, u2).arg & 1) && name_is((uintptr_t)r[1].code, at(c, u2).arg >> 1, "lk");
    }
    ok = ok && probe_start(&r[2], fn3, marker, NULL, marker) == 0;
    if (ok) { /* ... LOAD_GLOBAL forksafe_probe_lock; LOAD_ATTR release ... */
        const struct code_view *c = &r[2].c;
        struct insn g = at(c, next_real(c, r[2].t));
        F.load_global = g.op;
        F.globals_off = fs_py_find_word((const void *)r[2].f, 0, L.localsplus_off, (uintptr_t)globals, ~(uintptr_t)0);
        ok = at(c, r[2].t).op == F.push_exc_info && !(g.arg & 1) &&
             name_is((uintptr_t)r[2].code, g.arg >> 1, "forksafe_probe_lock") && F.globals_off > 0;
    }
    ok = ok && probe_start(&r[3], fn4, lk[3], marker, marker) == 0;
    if (ok) { /* a closure's: LOAD_DEREF lock, a cell in the frame's locals */
        uint8_t ah = 0, aa = 0;
        learn_loads(&r[3], F.load_deref, &F.nload_deref, &ah, &aa);
        int nlp = *(const int *)((uintptr_t)r[3].code + (uintptr_t)L.nlocalsplus_off);
        uintptr_t cell = ah == aa && ah < nlp ? OBJ(r[3].f + (uintptr_t)L.localsplus_off + 8 * (uintptr_t)ah) : 0;
        F.cell_type = cell ? W(cell + 8) : 0;
        ok = cell && W(cell + 16) == (uintptr_t)lk[3] && !in_set(F.load_deref[0], F.load_fast, F.nload_fast);
    }
    ok = ok && probe_start(&r[4], fn5, box, marker, marker) == 0;
    if (ok) { /* a local assigned in the function: the handler may check it is bound (LOAD_FAST_CHECK) */
        uint8_t ah = 0, aa = 0;
        learn_loads(&r[4], F.load_fast, &F.nload_fast, &ah, &aa);
        ok = ah == 2 && aa == 2; /* `lock`, local 2 */
    }
    if (ok) { /* the proof: each probe's lock is found */
        F.ok = 1;
        ok = probe_found(&r[0], lk[0]) && probe_found(&r[1], lk[1]) && probe_found(&r[2], lk[2]) &&
             probe_found(&r[3], lk[3]) && probe_found(&r[4], lk[4]);
    }
    for (int k = 0; k < 5; k++) ok = probe_end(&r[k], lk[k]) == 0 && ok;
    if (box) py.DecRef(box);
    for (int k = 0; k < 5; k++)
        if (lk[k]) py.DecRef(lk[k]);
    if (inst) py.DecRef(inst);
    py.Err_Clear();
    F.ok = ok;
}

/* ---- the calling thread's own Python stack, read without the GIL (a waiter in a child) ---- */
static struct {
    int ok;
    int current_frame_off;            /* in a thread state */
    int name_off, filename_off;       /* co_name, co_filename in a code object */
    int str_len_off, str_ascii_off;   /* a compact ASCII str: its length and its characters */
    uintptr_t str_type;
} S;

/* A name's characters if it is a plain ASCII str, else "?". */
static const char *ascii_of(uintptr_t s, int *len) {
    *len = 1;
    if (!type_is(s, S.str_type)) return "?";
    uintptr_t n = W(s + (uintptr_t)S.str_len_off);
    const char *c = (const char *)(s + (uintptr_t)S.str_ascii_off);
    if (n == 0 || n > 512) return "?";
    for (uintptr_t k = 0; k < n; k++)
        if ((unsigned char)c[k] < 0x20 || (unsigned char)c[k] > 0x7e) return "?"; /* not compact ASCII */
    if (c[n] != '\0') return "?";
    *len = (int)n;
    return c;
}

int fs_py_own_stack(struct fs_py_raw_frame *out, int cap) {
    void *tstate = S.ok && py.GILState_GetThisThreadState ? py.GILState_GetThisThreadState() : NULL;
    uintptr_t f = tstate ? W((uintptr_t)tstate + (uintptr_t)S.current_frame_off) : 0;
    int n = 0;
    for (int depth = 0; f && !(f & 7) && n < cap && depth < MAX_DEPTH; depth++, f = W(f + 8)) {
        uintptr_t code;
        uint32_t i;
        if (frame_at(f, &code, &i) != 0) continue;
        struct fs_py_raw_frame *r = &out[n++];
        r->file = ascii_of(W(code + (uintptr_t)S.filename_off), &r->file_len);
        r->func = ascii_of(W(code + (uintptr_t)S.name_off), &r->func_len);
        r->line = py.Code_Addr2Line ? py.Code_Addr2Line((PyObj *)code, (int)i * 2) : 0; /* reads the line table only */
    }
    return n;
}

/* Where a thread state points to its innermost frame, and how names are laid out: from our own
 * thread (its current frame is the Python code that started a thread, or made an event loop) and
 * the probe's code object. */
static void measure_own_stack(PyObj *code) {
    memset(&S, 0, sizeof S);
    PyObj *name = fs_py_attr(code, "co_name"), *file = fs_py_attr(code, "co_filename");
    void *tstate = py.GILState_GetThisThreadState ? py.GILState_GetThisThreadState() : NULL;
    uintptr_t f = py.Eval_GetFrame ? iframe_of(py.Eval_GetFrame()) : 0;
    int ok = name && file && tstate && f;
    S.current_frame_off = ok ? fs_py_find_word((const void *)tstate, 16, 1024, f, ~(uintptr_t)0) : -1;
    S.name_off = ok ? fs_py_find_word((const void *)code, 16, L.adaptive_off, (uintptr_t)name, ~(uintptr_t)0) : -1;
    S.filename_off = ok ? fs_py_find_word((const void *)code, 16, L.adaptive_off, (uintptr_t)file, ~(uintptr_t)0) : -1;
    static const char probe_name[] = "forksafe_probe";
    S.str_len_off = ok ? fs_py_find_word((const void *)name, 16, 40, sizeof probe_name - 1, ~(uintptr_t)0) : -1;
    S.str_ascii_off = -1;
    for (int o = 24; ok && o < 96 && S.str_ascii_off < 0; o += 8)
        if (memcmp((const char *)name + o, probe_name, sizeof probe_name) == 0) S.str_ascii_off = o;
    S.str_type = ok ? W((uintptr_t)name + 8) : 0;
    S.ok = S.current_frame_off > 0 && S.name_off > 0 && S.filename_off > 0 && S.str_len_off > 0 && S.str_ascii_off > 0;
    if (S.ok) { /* the proof: our own stack, read this way, starts in the frame Python gives */
        struct fs_py_raw_frame r[1];
        uintptr_t c0;
        uint32_t i0;
        S.ok = fs_py_own_stack(r, 1) == 1 && frame_at(f, &c0, &i0) == 0 && r[0].func[0] != '?' &&
               (size_t)r[0].func_len == strlen(fs_py_str((PyObj *)W(c0 + (uintptr_t)S.name_off)) ?: "");
    }
    if (name) py.DecRef(name);
    if (file) py.DecRef(file);
    py.Err_Clear();
}

void fs_py_held_forget(void) { /* its types are gone */
    memset(&S, 0, sizeof S);
    memset(&L, 0, sizeof L);
    memset(&F, 0, sizeof F);
}

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
        PyObj *y = gen ? fs_py_call_method(gen, "__next__") : NULL;
        ok = y == marker && is_locked((uintptr_t)lock) && measure_frame(gen, code, lock, marker) == 0;
        if (y) py.DecRef(y);
    }
    if (ok) measure_own_stack(code);
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
        PyObj *c = fs_py_call_method(gen, "close"); /* leaves the with block: the lock is released */
        if (c) py.DecRef(c);
        ok = ok && !is_locked((uintptr_t)lock);
    }
    if (ok) { /* the idiom without `with`: only once `with` is proven to work */
        L.ok = 1;
        learn_finally(globals, klass, marker);
        L.ok = 0;
    }
    PyObj *refs[] = {gen, bound, inst, fn, lock_exit, lock, marker, code, code_cells, r};
    for (unsigned i = 0; i < sizeof refs / sizeof refs[0]; i++)
        if (refs[i]) py.DecRef(refs[i]);
    py.Err_Clear();
    py.DecRef(globals);
    L.ok = ok;
}
