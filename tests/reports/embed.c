// SPDX-License-Identifier: MIT
// A C program that embeds CPython (loaded with dlopen, RTLD_LOCAL or RTLD_GLOBAL) and forks from
// C while a Python thread holds a lock, following the embedding protocol (PyOS_BeforeFork,
// PyOS_AfterFork_Parent/_Child on 3.7+; PyOS_AfterFork in the child on 2.7 and 3.6). The child
// then takes the lock.
//   embed LIBPYTHON local|global     exit 0: the child finished; 3: it hung (killed after 2 s)
//   embed LIBPYTHON reinit           three rounds of Py_Initialize, a Python thread, os.fork,
//                                    Py_Finalize(Ex): exit 0 when all three printed "round ok"
// No Python headers: the handful of API functions are looked up with dlsym.
#include "forksafe_test.h"

static const char *setup =
    "import threading\n"
    "lock = threading.Lock()\n"
    "ready = threading.Event()\n"
    "def embedded_holder():\n"
    "    with lock:\n"
    "        ready.set()\n"
    "        threading.Event().wait()\n"   /* line 7 of <string> */
    "t = threading.Thread(target=embedded_holder, name='embedded-holder')\n"
    "t.daemon = True\n"
    "t.start()\n"
    "ready.wait()\n";

/* One round of an embedding program that initializes and finalizes Python several times. */
static const char *round_code =
    "import os, sys, threading\n"
    "ev = threading.Event()\n"
    "t = threading.Thread(target=ev.wait, name='reinit-waiter')\n"
    "t.daemon = True\n"
    "t.start()\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os._exit(0)\n"
    "os.waitpid(pid, 0)\n"
    "ev.set()\n"
    "t.join()\n"
    "sys.stdout.write('round ok\\n')\n"
    "sys.stdout.flush()\n";

static int reinit(void *h) {
    void (*init)(int) = (void (*)(int))dlsym(h, "Py_InitializeEx");
    int (*run)(const char *) = (int (*)(const char *))dlsym(h, "PyRun_SimpleString");
    void (*fin)(void) = (void (*)(void))dlsym(h, "Py_Finalize"); /* every version */
    CHECK(init && run && fin);
    for (int i = 0; i < 3; i++) {
        init(0);
        CHECK(run(round_code) == 0);
        fin();
    }
    return 0;
}

int main(int argc, char **argv) {
    CHECK(argc == 3);
    void *h = dlopen(argv[1], RTLD_NOW | (strcmp(argv[2], "global") == 0 ? RTLD_GLOBAL : RTLD_LOCAL));
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    if (strcmp(argv[2], "reinit") == 0) return reinit(h);
    void (*init)(int) = (void (*)(int))dlsym(h, "Py_InitializeEx");
    int (*run)(const char *) = (int (*)(const char *))dlsym(h, "PyRun_SimpleString");
    void (*before_fork)(void) = (void (*)(void))dlsym(h, "PyOS_BeforeFork");     /* 3.7+ */
    void (*after_parent)(void) = (void (*)(void))dlsym(h, "PyOS_AfterFork_Parent");
    void (*after_fork)(void) = (void (*)(void))dlsym(h, "PyOS_AfterFork_Child"); /* 3.7+ */
    if (!after_fork) after_fork = (void (*)(void))dlsym(h, "PyOS_AfterFork");    /* 2.7, 3.6 */
    CHECK(init && run && after_fork);
    init(0);
    CHECK(run(setup) == 0);
    if (before_fork) before_fork();
    pid_t pid = fork(); /* from C, with the GIL held by this thread */
    CHECK(pid >= 0);
    if (pid > 0 && after_parent) after_parent();
    if (pid == 0) {
        after_fork();
        _exit(run("with lock:\n    pass\n") == 0 ? 0 : 2);
    }
    int st = wait_child(pid, shim_loaded() ? 20000 : 2000);
    if (st == -1) {
        printf("child hung\n");
        return 3;
    }
    printf("child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 2;
}
