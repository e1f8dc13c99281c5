// SPDX-License-Identifier: MIT
// The RLock layer of repair (CPython 3.9+): in an os.fork child, RLocks that threads lost at the
// fork owned are released with RLock._at_fork_reinit(). An RLock knows its owner, so ownership
// is certain; finding the RLocks takes one walk of the objects the garbage collector tracks
// (gc.get_referents: no attribute access, no user code). That walk touches every object's
// reference count -- it undoes copy-on-write sharing of the heap -- so it runs by default only
// where nothing else covers RLocks: when semaphore repair is off (3.9 to 3.13, where RLocks are
// semaphores). FORKSAFE_REPAIR_RLOCKS=on forces it. The GIL is held throughout.
#include "py.h"

static PyObj *release_rlocks_fn;    /* compiled when the hooks are installed */

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

void fs_py_rlock_layer_forget(void) { release_rlocks_fn = NULL; } /* freed with the interpreter */

void fs_py_rlock_layer_compile(void) {
    if (fs_py_version < 309 || !py.Run_StringFlags || !py.Eval_GetBuiltins || !py.Dict_New ||
        !py.Dict_SetItemString || !py.Object_CallFunctionObjArgs)
        return;
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

int fs_py_rlock_layer_wanted(void) {
    if (!release_rlocks_fn || !fs_py_snapshot_valid()) return 0;
    switch (fs_setting(FS_SET_repair_rlocks)) {
    case FS_REPAIR_RLOCKS_ON: return 1;
    case FS_REPAIR_RLOCKS_OFF: return 0;
    default: return !fs_setting(FS_SET_repair_semaphores) && fs_py_version < 314; /* auto */
    }
}

#define MAX_LOST 1024

void fs_py_release_lost_rlocks(fs_py_rlock_repaired_fn repaired) {
    static struct fs_py_thread threads[MAX_LOST];
    pid_t taker_tid, taker_pid = fs_py_snapshot_taker(&taker_tid);
    int n = fs_py_snapshot_threads(threads, MAX_LOST);
    PyObj *lost = py.List_New(0);
    if (!lost) return;
    for (int i = 0; i < n; i++) {
        if (threads[i].tid == taker_tid) continue; /* the forking thread survived */
        PyObj *id = py.Long_FromUnsignedLongLong(threads[i].ident);
        if (id) {
            py.List_Append(lost, id);
            py.DecRef(id);
        }
    }
    PyObj *res = py.Object_CallFunctionObjArgs(release_rlocks_fn, lost, NULL);
    py.DecRef(lost);
    ssize_t count = res && res != py.None ? py.List_Size(res) : 0;
    for (ssize_t i = 0; i < count; i++) {
        PyObj *item = py.List_GetItem(res, i);
        uintptr_t addr = (uintptr_t)fs_py_ulong(py.Tuple_GetItem(item, 0));
        uint64_t ident = fs_py_ulong(py.Tuple_GetItem(item, 1));
        const struct fs_py_thread *owner = NULL;
        for (int k = 0; k < n && !owner; k++)
            if (threads[k].ident == ident) owner = &threads[k];
        char oname[16] = "";
        if (owner && owner->tid) fs_thread_name(fs_thread_find_tid(taker_pid, owner->tid), taker_pid, owner->tid, oname);
        repaired(addr, owner ? owner->tid : 0, oname, owner ? owner->name : NULL);
    }
    if (res) py.DecRef(res);
    py.Err_Clear();
}
