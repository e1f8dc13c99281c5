// SPDX-License-Identifier: MIT
// Inside the Python binding (python/*.c only): CPython's API as found at run time, and the
// small helpers every part uses. Other layers use python.h.
#ifndef FORKSAFE_PY_H
#define FORKSAFE_PY_H

#include "python.h"

typedef void PyObj;

struct fs_py_api {
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
    PyObj *(*Object_GetAttr)(PyObj *, PyObj *);           /* new reference; the name interned */
    PyObj *(*Object_GenericGetAttr)(PyObj *, PyObj *);    /* object.__getattribute__; new reference */
    int (*AtExit)(void (*)(void));                        /* Py_AtExit: after finalization */
    PyObj *(*Type_Lookup)(PyObj *, PyObj *);              /* _PyType_Lookup: borrowed, sets no error */
    int (*Object_SetAttrString)(PyObj *, const char *, PyObj *);
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
    int (*Frame_GetLasti)(PyObj *);                /* 3.11+ */
    int (*Code_Addr2Line)(PyObj *, int);           /* 3.10+: a byte offset's line */
    int (*IsFinalizing)(void);                     /* Py_IsFinalizing 3.13, _Py_IsFinalizing 3.7+ */
    int (*AddPendingCall)(int (*)(void *), void *); /* any thread, GIL or not */
    PyObj *(*Run_StringFlags)(const char *, int, PyObj *, PyObj *, void *);
    PyObj *(*Eval_GetBuiltins)(void);             /* borrowed */
    PyObj *(*List_New)(ssize_t);
    int (*List_Append)(PyObj *, PyObj *);
    ssize_t (*List_Size)(PyObj *);
    PyObj *(*List_GetItem)(PyObj *, ssize_t);      /* borrowed */
    PyObj *(*Tuple_GetItem)(PyObj *, ssize_t);     /* borrowed */
    PyObj *(*Long_FromUnsignedLongLong)(unsigned long long);
    PyObj *(*Long_FromLongLong)(long long);
    PyObj *(*Unicode_FromString)(const char *);
    PyObj *(*Intern_FromString)(const char *);     /* PyUnicode_InternFromString, 2.7: PyString_ */
    const char *(*GetVersion)(void);
    PyObj *(*Object_GenericGetDict)(PyObj *, void *);  /* 3.3+: an instance __dict__, no user code */
    PyObj **(*Object_GetDictPtr)(PyObj *);         /* 2.7 */
    PyObj *(*Object_Type)(PyObj *);                /* new reference; runs no code */
    int (*Type_IsSubtype)(PyObj *, PyObj *);       /* by the MRO; runs no code */
    int (*Dict_SetItem)(PyObj *, PyObj *, PyObj *);
    int (*Object_IsTrue)(PyObj *);
    PyObj *None, *True, *False;
};
extern struct fs_py_api py;
extern int fs_py_version;   /* major * 100 + minor, e.g. 311 */
extern int fs_py_micro;     /* the third number: 5 for 3.13.5 */

/* The interpreter is present (its API found). Outside fork only: the first call looks it up. */
int fs_py_detect(void);
int fs_py_holds_gil(void);
/* The interpreter can be called from this thread now: running, not finalizing, ours to use. */
int fs_py_usable(void);

/* The helpers: each returns NULL/0 on any error and leaves no Python error set. */
PyObj *fs_py_attr(PyObj *o, const char *name);          /* new reference; `name` a literal (below) */
PyObj *fs_py_call_method(PyObj *o, const char *method); /* o.method(): new reference or NULL */
/* The offset of the first 8-byte aligned word in mem[from, to) that is v under mask, or -1: how
 * our layout probes find a field in an object of ours. */
int fs_py_find_word(const void *mem, int from, int to, uintptr_t v, uintptr_t mask);
const char *fs_py_str(PyObj *o);                        /* str's UTF-8 (2.7: bytes), borrowed */
uint64_t fs_py_ulong(PyObj *o);                         /* an int's value, masked */
/* An item of an object's own __dict__, read without running any code of the object's class
 * (no properties, no __getattr__); borrowed. `key` must be a string literal (its key object is
 * made once and found again by the literal's address). */
PyObj *fs_py_dict_item(PyObj *o, const char *key);
/* An instance attribute as object.__getattribute__ reads it -- no __getattr__ or
 * __getattribute__ of the object's class runs -- and only when no class in its MRO defines the
 * name (a descriptor there could run code): then NULL. Unlike fs_py_dict_item it does not make
 * CPython 3.11+ build the __dict__ of an object that keeps its attributes inline (which slows
 * every later attribute access on it). New reference; `name` a string literal, as above. */
PyObj *fs_py_instance_attr(PyObj *o, const char *name);
PyObj *fs_py_instance_attr_obj(PyObj *o, PyObj *name);  /* the same, `name` a str object */
/* dict[key] (borrowed, NULL if absent), the key interned once per literal. */
PyObj *fs_py_dict_get(PyObj *dict, const char *key);
/* One frame walker: up to `depth` frames of `frame` (borrowed), innermost first, each given to
 * `fn` with its code object (both borrowed); `fn` returns nonzero to stop. Only the public frame
 * API: no locals are read. A line number costs a walk of the code's line table: `fn` asks for
 * it (fs_py_frame_line) only if it wants it. Returns the number of frames given. */
typedef int (*fs_py_frame_fn)(void *ctx, PyObj *frame, PyObj *code);
int fs_py_walk(PyObj *frame, int depth, fs_py_frame_fn fn, void *ctx);
int fs_py_frame_line(PyObj *frame, PyObj *code);
/* Starts a walk session: caches (line numbers) from earlier walks are not trusted after it. */
void fs_py_walk_session(void);
/* The interpreter has been finalized (Py_AtExit, registered with the hooks): every Python object
 * this file keeps (interned names) is gone. A later Py_Initialize starts afresh. */
void fs_py_binding_forget(void);

/* ---- snapshot.c, for the other parts ---- */
/* Reads every Python thread's name and stack into the snapshot. The GIL is held. */
void fs_py_snapshot_take(void);
/* The threads of the last snapshot: its thread idents, OS tids and names. */
struct fs_py_thread { uint64_t ident; pid_t tid; const char *name; };
int fs_py_snapshot_threads(struct fs_py_thread *out, int cap);
pid_t fs_py_snapshot_taker(pid_t *tid);   /* the process (and thread) that took it */
void fs_py_snapshot_mark_valid(void);     /* it describes the exit being reported */
int fs_py_multi_threaded(void);           /* more than one thread exists, by the kernel's count */

/* ---- sites.c ---- */
void fs_py_capture_creation(struct fs_thread *t);   /* the GIL is held */
uint16_t fs_py_site_of(PyObj *code);               /* a code object's site (0: none); the GIL is held */

/* ---- green.c ---- */
/* Under gevent's or eventlet's patch: the Thread of this OS thread's current greenlet in
 * `active` (threading._active), borrowed; NULL otherwise. The GIL is held. */
PyObj *fs_py_green_current_thread(PyObj *active);
void fs_py_green_forget(void);            /* the interpreter is gone (see fs_py_binding_forget) */

/* ---- pymutex.c ---- */
void fs_py_lock_layout_measure(void);     /* when the hooks are installed; the GIL is held */
void fs_py_lock_layout_forget(void);      /* the interpreter is gone (see fs_py_binding_forget) */

/* ---- held.c: Locks (3.13.1+) each thread holds at a fork, from its `with` blocks ---- */
void fs_py_held_measure(void);            /* when the hooks are installed; the GIL is held */
void fs_py_held_forget(void);             /* the interpreter is gone (see fs_py_binding_forget) */
void fs_py_held_begin(void);              /* a snapshot starts: forget the last one's */
void fs_py_held_thread(uint64_t ident, PyObj *frame);  /* a thread's innermost frame (borrowed) */
void fs_py_held_end(void);                /* reads every thread's frames (all at once: see held.c) */

/* ---- rlock.c ---- */
void fs_py_rlock_layer_compile(void);     /* when the hooks are installed; the GIL is held */
void fs_py_rlock_layer_forget(void);      /* the interpreter is gone (see fs_py_binding_forget) */

#endif
