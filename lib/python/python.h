// SPDX-License-Identifier: MIT
// Layer 3, the Python binding: names and stacks of a CPython interpreter hosted by the process
// (2.7, 3.6 and later), found at run time through its exported symbols -- no build-time
// dependency. We call the interpreter only with the GIL held, never inside fork(), and never
// import anything. Parts:
//   binding.c  the interpreter's functions, found at run time; the helpers (py.h)
//   snapshot.c every Python thread's name and stack at a fork or an exit, kept in static memory
//              so that a child reads them without calling Python
//   sites.c    where a thread was created (the Python stack of the code that started it)
//   hooks.c    our functions registered in the interpreter (os.register_at_fork, atexit)
//   rlock.c    the RLock layer of repair (3.9+)
//   rules.c    Python rules of thumb: is a thread idle, has its target returned
//   green.c    green threads (gevent, eventlet) a fork carries into the child
//   pymutex.c  the layout of 3.13.1+ Lock and 3.14 RLock objects (PyMutex)
//   held.c     which of those Locks each thread holds at a fork (its `with` blocks)
#ifndef FORKSAFE_PYTHON_H
#define FORKSAFE_PYTHON_H

#include "state/state.h"

/* ---- snapshot.c ---- */
struct fs_py_info { const char *name; uint32_t first, nframes; };
/* Before exit or exec: a snapshot now, if this thread holds the GIL (nothing otherwise). */
void fs_py_snapshot_for_exit(void);
/* The fork() wrapper, before the real fork: a snapshot when the fork does not come through
 * os.fork's hooks (2.7, 3.6, a fork from C such as uWSGI's master). */
void fs_py_before_fork(void);
void fs_py_prepare(pid_t forking_tid);   /* inside fork: does the snapshot describe this fork? */
void fs_py_parent(void);
int fs_py_snapshot_valid(void);          /* the snapshot describes the moment being reported */
/* The snapshot's entry for thread `tid`, or NULL. Async-signal-safe. */
const struct fs_py_info *fs_py_lookup(pid_t tid, struct fs_py_info *out);
void fs_py_frame(const struct fs_py_info *info, uint32_t i, const char **file, const char **func, int *line);

/* ---- sites.c ---- */
void fs_py_site(uint16_t site, const char **file, const char **func);

/* ---- hooks.c ---- */
/* pthread_create, in the creating thread: installs our interpreter hooks the first time (the GIL
 * is held there), and records in `t` where a Python thread is being created and its name. */
void fs_py_thread_starting(struct fs_thread *t);
/* An event loop was created (epoll_create): gevent's and eventlet's hubs, which start green
 * threads without pthread_create. Installs our interpreter hooks if not yet done (GIL held). */
void fs_py_event_loop_created(void);
/* The registered callback: a child of os.fork is about to return to the program (Python's own
 * after-fork work is done, and it is not subprocess's child that execs next). The GIL is held. */
void fs_py_on_child_resumes(void (*fn)(void));

/* ---- green.c: green threads (gevent, eventlet greenlets) a fork carries into the child ---- */
/* The parent, before the fork, with the GIL (our before-fork hook, or the fork() wrapper): reads
 * threading's table of running threads when gevent or eventlet patched threading, and keeps the
 * greenlets found there. Returns how many were kept. */
int fs_py_green_capture(void);
/* Inside fork (prepare): did this thread capture greenlets for this very fork? */
int fs_py_green_prepare(pid_t forking_tid);
void fs_py_green_parent(void);
/* The child, with the GIL (after-fork hook): checks each greenlet again (dead, not started, the hub,
 * the current one, another OS thread's are left out), reads its stack and where it was created,
 * and stops it under FORKSAFE_GREEN=kill. */
void fs_py_green_child(void);
/* The report's view, async-signal-safe: the carried greenlets (*total: also those not kept). */
struct fs_py_green {
    const char *library;          /* "gevent", "eventlet" */
    const char *kind;             /* "thread", "dummy", "main" */
    const char *name;             /* its Thread's name */
    uint64_t ident;               /* threading's ident for it: id(greenlet) */
    int stopped;                  /* FORKSAFE_GREEN=kill scheduled its end */
    uint32_t first, nframes;      /* its stack (fs_py_green_frame), innermost first */
    uint32_t cfirst, ncreated;    /* where it was created, innermost first */
};
int fs_py_green_count(int *total);
int fs_py_green_get(int i, struct fs_py_green *out);
void fs_py_green_frame(uint32_t at, uint16_t *site, int *line);   /* site: fs_py_site */

/* ---- pymutex.c: the layout of PyMutex locks (3.13.1+), measured when the hooks are installed ---- */
struct fs_py_lock_kind {
    uintptr_t type;                   /* the type object */
    int type_off, mutex_off;          /* offsets in an object: its type pointer, its PyMutex byte */
    int owner_off, level_off;         /* _PyRecursiveMutex's owner ident and level; -1: none */
};
struct fs_py_lock_layout {
    uintptr_t lock_type, rlock_type;  /* 0: not a PyMutex here */
    struct fs_py_lock_kind lock, rlock;
};
/* NULL when this interpreter's Lock is not a PyMutex (before 3.13.1) or it was not measured. */
const struct fs_py_lock_layout *fs_py_lock_layout(void);

/* ---- held.c: which Locks (3.13.1+) each thread held at the fork, proven by its `with` blocks ---- */
struct fs_py_held {
    uintptr_t lock;               /* the Lock object */
    uint64_t ident;               /* the holder's threading.get_ident() (pthread_self) */
    uint16_t site;                /* where: the frame's code (fs_py_site) */
    int line;                     /* the with statement's line */
};
/* The records of the last snapshot (use them only if fs_py_snapshot_valid()). Async-signal-safe. */
int fs_py_held_count(void);
const struct fs_py_held *fs_py_held_get(int i);
/* The calling thread's Python stack, innermost first, read without the GIL (a thread waiting in a
 * child: its frames are its own). Names are ASCII, not NUL-terminated ("?" if not plain ASCII).
 * Returns how many frames were written; 0 where not measured. */
struct fs_py_raw_frame { const char *file, *func; int file_len, func_len, line; };
int fs_py_own_stack(struct fs_py_raw_frame *out, int cap);

/* ---- rlock.c ---- */
/* Is the RLock layer to run in this child? (FORKSAFE_REPAIR_RLOCKS, the version, the snapshot) */
int fs_py_rlock_layer_wanted(void);
/* Releases the RLocks that threads lost at the fork owned, calling `repaired` for each. The GIL
 * is held (the after-fork hook). */
typedef void (*fs_py_rlock_repaired_fn)(uintptr_t lock, pid_t owner_tid, const char *owner_name,
                                        const char *owner_pyname);
void fs_py_release_lost_rlocks(fs_py_rlock_repaired_fn repaired);

/* ---- rules.c ---- */
/* Idle: the innermost frame is a wait in the standard library's waiting modules. */
int fs_py_idle(const struct fs_py_info *info);
/* Has the thread's target returned (its innermost frame is threading's bootstrap), or did the
 * runtime join it before the snapshot was taken? For exit reports. */
int fs_py_finished(pid_t tid, const struct fs_thread *t);
/* Was the thread started by the standard library for its own machinery (every frame of the code
 * that started it is the standard library's: a multiprocessing Manager's request handlers)? */
int fs_py_created_by_stdlib(const struct fs_thread *t);

#endif
