// SPDX-License-Identifier: MIT
// Where CPython 3.13.1+ keeps a lock's state, measured once on live objects. From 3.13.1
// threading.Lock is a PyMutex (one byte: bit 0 locked, bit 1 "has parked waiters"), and from 3.14
// RLock is a _PyRecursiveMutex {PyMutex; owner thread ident; level}. Neither makes a call a
// preload can see until a thread has to wait: then it parks on a per-waiter semaphore, and the
// address it parks on is the mutex byte (docs/internals.md). To recognise that byte from a
// libc wrapper in a forked child, we need each type's object address, where its type pointer is,
// and where the byte, the owner and the level are -- which differ between builds (a free-threaded
// build has a larger object header). So instead of trusting offsets we take them from our own
// lock objects, with the GIL held, when our hooks are installed: create one, acquire it, see
// which bytes changed. Nothing of the program's is touched.
#include "py.h"

#include <string.h>

static struct fs_py_lock_layout layout;

const struct fs_py_lock_layout *fs_py_lock_layout(void) { return layout.lock_type ? &layout : NULL; }

/* o.method(), for its effect: 1 if it returned. */
static int call(PyObj *o, const char *method) {
    PyObj *r = fs_py_call_method(o, method);
    if (r) py.DecRef(r);
    return r != NULL;
}

/* The offset of the first byte in [0, n) that is `before` in a and `after` in b, or -1. */
static int changed_byte(const unsigned char *a, const unsigned char *b, int n, int before, int after) {
    for (int i = 0; i < n; i++)
        if (a[i] == before && b[i] == after) return i;
    return -1;
}

#define SPAN 64

/* One type: object layout from an instance of `type`, acquired once (and twice for RLock). */
static int measure(PyObj *type, int recursive, struct fs_py_lock_kind *k) {
    PyObj *obj = py.Object_CallObject(type, NULL);
    if (!obj) {
        py.Err_Clear();
        return -1;
    }
    unsigned char before[SPAN], held[SPAN], twice[SPAN];
    memcpy(before, obj, SPAN);
    int ok = call(obj, "acquire");
    memcpy(held, obj, SPAN);
    if (ok && recursive) {
        ok = call(obj, "acquire");
        memcpy(twice, obj, SPAN);
        call(obj, "release");
    }
    if (ok) call(obj, "release");
    k->type = (uintptr_t)type;
    k->type_off = fs_py_find_word(before, 0, SPAN, (uintptr_t)type, ~(uintptr_t)0);
    k->mutex_off = ok ? changed_byte(before, held, SPAN, 0, 1) : -1;
    k->owner_off = ok && recursive ? fs_py_find_word(held, 0, SPAN, (uintptr_t)pthread_self(), ~(uintptr_t)0) : -1;
    k->level_off = -1;
    if (ok && recursive) /* the field that went 0 -> 1 on the second acquire */
        for (int i = 0; i + 8 <= SPAN && k->level_off < 0; i += 8) {
            uint64_t a, b;
            memcpy(&a, held + i, 8);
            memcpy(&b, twice + i, 8);
            if (a == 0 && b == 1 && i != k->mutex_off - k->mutex_off % 8) k->level_off = i;
        }
    py.DecRef(obj);
    int valid = k->type_off >= 0 && k->mutex_off >= 0 && (!recursive || (k->owner_off >= 0 && k->level_off >= 0));
    return valid ? 0 : -1;
}

void fs_py_lock_layout_forget(void) { memset(&layout, 0, sizeof layout); } /* its types are gone */

void fs_py_lock_layout_measure(void) {
    if (fs_py_version < 313 || layout.lock_type) return;
    PyObj *modules = py.Import_GetModuleDict();
    PyObj *thread = modules ? py.Dict_GetItemString(modules, "_thread") : NULL; /* borrowed */
    if (!thread) return;
    PyObj *lock = fs_py_attr(thread, "LockType"), *rlock = fs_py_attr(thread, "RLock");
    /* 3.13.0's Lock is still a semaphore (the semaphore wrappers cover it): PyMutex from 3.13.1. */
    struct fs_py_lock_layout l = {0};
    if (lock && (fs_py_version > 313 || fs_py_micro >= 1) && measure(lock, 0, &l.lock) == 0) {
        l.lock_type = l.lock.type;
        if (rlock && fs_py_version >= 314 && measure(rlock, 1, &l.rlock) == 0) l.rlock_type = l.rlock.type;
        layout = l; /* the types live as long as the interpreter: kept by _thread */
    }
    if (lock) py.DecRef(lock);
    if (rlock) py.DecRef(rlock);
    py.Err_Clear();
}
