// SPDX-License-Identifier: MIT
// The interpreter's functions, found at run time through CPython's exported symbols (also when an
// embedding program loaded libpython RTLD_LOCAL), and the helpers the other python/ parts share:
// attribute and string access, an object's own __dict__, and the one frame walker.
// Outside fork only (dlsym, dlopen); every call into Python with the GIL held.
#include "py.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>

struct fs_py_api py;
int fs_py_version;
int fs_py_micro;

enum { PY_UNKNOWN, PY_ABSENT, PY_PRESENT };
static _Atomic int py_state;
static unsigned long long seen_adds;    /* dl_iterate_phdr's load count at the last look */

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
int fs_py_detect(void) {
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
    R(Object_GetAttr, "PyObject_GetAttr");
    R(Object_GenericGetAttr, "PyObject_GenericGetAttr");
    R(Type_Lookup, "_PyType_Lookup");
    R(AtExit, "Py_AtExit");
    R(Object_SetAttrString, "PyObject_SetAttrString");
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
    R(Frame_GetLasti, "PyFrame_GetLasti");
    R(Code_Addr2Line, "PyCode_Addr2Line");
    R(AddPendingCall, "Py_AddPendingCall");
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
    R(Long_FromLongLong, "PyLong_FromLongLong");
    R(Unicode_FromString, "PyUnicode_FromString");
    R(Intern_FromString, "PyUnicode_InternFromString");
    if (py.String_AsString) R(Intern_FromString, "PyString_InternFromString"); /* 2.7: str keys */
    if (py.String_AsString) R(Unicode_FromString, "PyString_FromString"); /* 2.7: str keys */
    R(GetVersion, "Py_GetVersion");
    R(Object_GenericGetDict, "PyObject_GenericGetDict");
    R(Object_GetDictPtr, "_PyObject_GetDictPtr");
    R(Object_Type, "PyObject_Type");
    R(Type_IsSubtype, "PyType_IsSubtype");
    R(Dict_SetItem, "PyDict_SetItem");
    R(Object_IsTrue, "PyObject_IsTrue");
    R(True, "_Py_TrueStruct");
    R(False, "_Py_FalseStruct");
    if (!py.False) R(False, "_Py_ZeroStruct"); /* 2.7 */
    if (py.GetVersion) {
        const char *v = py.GetVersion();
        int major = 0, minor = 0;
        for (; *v >= '0' && *v <= '9'; v++) major = major * 10 + (*v - '0');
        if (*v == '.') v++;
        for (; *v >= '0' && *v <= '9'; v++) minor = minor * 10 + (*v - '0');
        fs_py_version = major * 100 + minor;
        if (*v == '.') v++;
        for (fs_py_micro = 0; *v >= '0' && *v <= '9'; v++) fs_py_micro = fs_py_micro * 10 + (*v - '0');
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

int fs_py_holds_gil(void) {
    if (py.GILState_Check) return py.GILState_Check();
    void *t = py.GILState_GetThisThreadState();
    return t != NULL && *py.ThreadState_Current == t;
}

int fs_py_usable(void) {
    if (!fs_py_detect() || !py.IsInitialized()) return 0;
    if (py.IsFinalizing && py.IsFinalizing()) return 0;
    return py.GILState_GetThisThreadState() != NULL;
}

/* ---- helpers ---- */

/* Key objects for the few names we look up (attributes, __dict__ entries), made once (interned)
 * per literal: PyObject_GetAttrString and PyDict_GetItemString would build and hash a new string
 * at every call. */
#define KEYS 64
static struct { const char *literal; PyObj *key; } keys[KEYS];

static PyObj *key_for(const char *literal) {
    unsigned h = (unsigned)(((uintptr_t)literal >> 3) % KEYS); /* open addressing by address */
    for (unsigned k = 0; k < KEYS; k++) {
        unsigned i = (h + k) % KEYS;
        if (keys[i].literal == literal) return keys[i].key;
        if (!keys[i].literal) {
            PyObj *key = py.Intern_FromString ? py.Intern_FromString(literal) : NULL; /* kept: interned */
            if (key) {
                keys[i].key = key;
                keys[i].literal = literal;
            }
            return key;
        }
    }
    return NULL; /* full: the callers fall back to the *String functions */
}

void fs_py_binding_forget(void) { memset(keys, 0, sizeof keys); } /* line numbers: per session */

int fs_py_find_word(const void *mem, int from, int to, uintptr_t v, uintptr_t mask) {
    for (int o = from; o + 8 <= to; o += 8) {
        uintptr_t w;
        memcpy(&w, (const char *)mem + o, sizeof w);
        if ((w & mask) == v) return o;
    }
    return -1;
}

PyObj *fs_py_call_method(PyObj *o, const char *method) {
    PyObj *m = fs_py_attr(o, method);
    PyObj *r = m ? py.Object_CallObject(m, NULL) : NULL;
    if (m) py.DecRef(m);
    py.Err_Clear();
    return r;
}

PyObj *fs_py_attr(PyObj *o, const char *name) {
    PyObj *k = py.Object_GetAttr ? key_for(name) : NULL;
    PyObj *r = k ? py.Object_GetAttr(o, k) : py.Object_GetAttrString(o, name);
    if (!r) py.Err_Clear();
    return r;
}

const char *fs_py_str(PyObj *o) {
    if (!o) return NULL;
    const char *s = NULL;
    if (py.String_AsString) { /* 2.7: str is bytes; unicode names too */
        s = py.String_AsString(o);
        if (!s && py.Unicode_AsUTF8) {
            py.Err_Clear();
            s = py.Unicode_AsUTF8(o);
        }
    } else {
        s = py.Unicode_AsUTF8(o);
    }
    if (!s) py.Err_Clear();
    return s;
}

uint64_t fs_py_ulong(PyObj *o) {
    PyObj *l = o ? py.Number_Long(o) : NULL;
    if (!l) {
        py.Err_Clear();
        return 0;
    }
    uint64_t v = py.Long_AsUnsignedLongLongMask(l);
    py.DecRef(l);
    py.Err_Clear();
    return v;
}

static PyObj *dict_get(PyObj *d, const char *key) {
    PyObj *k = key_for(key);
    return k ? py.Dict_GetItem(d, k) : py.Dict_GetItemString(d, key);
}

PyObj *fs_py_dict_get(PyObj *dict, const char *key) {
    PyObj *r = dict_get(dict, key);
    py.Err_Clear();
    return r;
}

PyObj *fs_py_instance_attr(PyObj *o, const char *name) { return fs_py_instance_attr_obj(o, key_for(name)); }

PyObj *fs_py_instance_attr_obj(PyObj *o, PyObj *k) {
    PyObj *r = NULL;
    if (!k || !py.Object_GenericGetAttr || !py.Type_Lookup || !py.Object_Type) return NULL;
    PyObj *type = py.Object_Type(o);
    int shadowed = !type || py.Type_Lookup(type, k) != NULL; /* the class (or a base) has it */
    if (type) py.DecRef(type);
    if (!shadowed) r = py.Object_GenericGetAttr(o, k);
    py.Err_Clear();
    return r;
}

PyObj *fs_py_dict_item(PyObj *o, const char *key) {
    PyObj *d = NULL, *r = NULL;
    if (py.Object_GenericGetDict) {
        d = py.Object_GenericGetDict(o, NULL); /* new reference */
        r = d ? dict_get(d, key) : NULL;
        if (d) py.DecRef(d);                   /* r stays alive: the object holds its dict */
    } else if (py.Object_GetDictPtr) {
        PyObj **p = py.Object_GetDictPtr(o);
        r = p && *p ? dict_get(*p, key) : NULL;
    }
    py.Err_Clear();
    return r;
}

/* Line numbers: computing one walks the code's line table (about a thousand instructions), and
 * the threads of a pool sit in the same few frames. So within one walk session (a snapshot, a
 * creation stack) a line is computed once per (code object, instruction offset); the code
 * objects are alive throughout the session (their frames hold them), so the key cannot be
 * reused inside it. 3.11+ (PyFrame_GetLasti); earlier versions compute every line. */
#define LINE_CACHE 512
static struct { PyObj *code; int lasti, line; } line_cache[LINE_CACHE];
static uint32_t line_session, line_cache_session[LINE_CACHE];

void fs_py_walk_session(void) { line_session++; }

int fs_py_frame_line(PyObj *f, PyObj *code) {
    if (!py.Frame_GetLasti || !code) return py.Frame_GetLineNumber(f);
    int lasti = py.Frame_GetLasti(f);
    unsigned h = (unsigned)((((uintptr_t)code >> 4) * 31u + (unsigned)lasti) % LINE_CACHE);
    if (line_cache_session[h] == line_session && line_cache[h].code == code && line_cache[h].lasti == lasti)
        return line_cache[h].line;
    int line = py.Frame_GetLineNumber(f);
    line_cache[h].code = code;
    line_cache[h].lasti = lasti;
    line_cache[h].line = line;
    line_cache_session[h] = line_session;
    return line;
}

int fs_py_walk(PyObj *frame, int depth, fs_py_frame_fn fn, void *ctx) {
    int n = 0;
    PyObj *f = frame, *owned = NULL;
    while (f && f != py.None && n < depth) {
        PyObj *code = py.Frame_GetCode ? py.Frame_GetCode(f) : fs_py_attr(f, "f_code");
        int stop = fn(ctx, f, code);
        if (code) py.DecRef(code);
        n++;
        if (stop) break;
        PyObj *back = py.Frame_GetBack ? py.Frame_GetBack(f) : fs_py_attr(f, "f_back");
        if (owned) py.DecRef(owned);
        owned = f = back;
    }
    if (owned) py.DecRef(owned);
    py.Err_Clear();
    return n;
}
