// SPDX-License-Identifier: MIT
// Where threads are created. At thread start (pthread_create, in the creating thread, with the
// GIL held) we keep the Python stack of the code that starts the thread as (site, line) pairs; a
// site is a file and function name, stored once in an arena and found again by its content, so
// no code object is kept alive. The strings are then readable anywhere: exit reports, thread
// counts, a signal handler. The GIL serialises all writers.
// The new thread's name comes from threading's own table of threads being started (`_limbo`),
// read as object.__getattribute__ would, unless a class defines the name: no frame's locals are
// touched (reading f_locals makes CPython up to 3.12 copy and keep a frame's locals alive), no
// code of the program runs, and no Thread's __dict__ is built (3.11+ keeps attributes inline).
#include "py.h"

#include <string.h>

#define SITES 8192
#define SITE_ARENA (1024 * 1024)
static char site_mem[SITE_ARENA];
static struct fs_arena site_strings = {site_mem, 0, SITE_ARENA};
static struct { uint32_t file, func; } sites[SITES];   /* index 0: unknown */

static uint32_t hash_str(uint32_t h, const char *s) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static uint16_t site_of(PyObj *code) {
    PyObj *f = code ? fs_py_attr(code, "co_filename") : NULL, *n = code ? fs_py_attr(code, "co_name") : NULL;
    const char *file = fs_py_str(f), *func = fs_py_str(n);
    uint16_t found = 0;
    if (file && func) {
        uint32_t h = hash_str(hash_str(2166136261u, file), func) % (SITES - 1) + 1;
        for (unsigned k = 0; k < 16 && !found; k++) {
            unsigned i = (h + k - 1) % (SITES - 1) + 1;
            if (sites[i].file == 0) { /* free: this site is new */
                uint32_t a = fs_arena_add(&site_strings, file, 512), b = fs_arena_add(&site_strings, func, 512);
                if (a && b) {
                    sites[i].file = a;
                    sites[i].func = b;
                    found = (uint16_t)i;
                }
                break;
            }
            if (strcmp(fs_arena_str(&site_strings, sites[i].file), file) == 0 &&
                strcmp(fs_arena_str(&site_strings, sites[i].func), func) == 0)
                found = (uint16_t)i;
        }
    }
    if (f) py.DecRef(f);
    if (n) py.DecRef(n);
    return found;
}

uint16_t fs_py_site_of(PyObj *code) { return site_of(code); }

void fs_py_site(uint16_t site, const char **file, const char **func) {
    int ok = site > 0 && site < SITES && sites[site].file;
    *file = ok ? fs_arena_str(&site_strings, sites[site].file) : "";
    *func = ok ? fs_arena_str(&site_strings, sites[site].func) : "";
}

/* The name of the Thread being started: the one entry of threading._limbo whose thread has not
 * run yet (its ident is still None). Ambiguous or absent (a thread started with _thread
 * directly): no name. */
static void starting_thread_name(char *out, size_t cap) {
    PyObj *modules = py.Import_GetModuleDict();
    PyObj *threading = modules ? fs_py_dict_get(modules, "threading") : NULL;
    PyObj *limbo = threading ? fs_py_dict_item(threading, "_limbo") : NULL;
    const int v3 = fs_py_version >= 300;
    ssize_t pos = 0;
    PyObj *key, *thread, *found = NULL;
    int n = 0;
    while (limbo && py.Dict_Next(limbo, &pos, &key, &thread)) {
        PyObj *ident = fs_py_instance_attr(thread, v3 ? "_ident" : "_Thread__ident");
        if (ident == py.None) {
            found = thread;
            n++;
        }
        if (ident) py.DecRef(ident);
    }
    PyObj *name = n == 1 ? fs_py_instance_attr(found, v3 ? "_name" : "_Thread__name") : NULL;
    fs_strlcpy(out, fs_py_str(name), cap);
    if (name) py.DecRef(name);
    py.Err_Clear();
}

struct creation { struct fs_thread *t; };
static int add_site(void *ctx, PyObj *frame, PyObj *code) {
    struct fs_thread *t = ((struct creation *)ctx)->t;
    t->create_site[t->ncreate] = site_of(code);
    t->create_line[t->ncreate] = fs_py_frame_line(frame, code);
    t->ncreate++;
    return 0;
}

/* Records in `t` where it is being created, and its Python name. The GIL is held. */
void fs_py_capture_creation(struct fs_thread *t) {
    t->ncreate = 0;
    t->pyname[0] = '\0';
    PyObj *f = py.Eval_GetFrame ? py.Eval_GetFrame() : NULL;
    if (!f) return;
    starting_thread_name(t->pyname, sizeof t->pyname);
    fs_py_walk_session();
    struct creation c = {t};
    fs_py_walk(f, FS_CREATE_DEPTH, add_site, &c);
}
