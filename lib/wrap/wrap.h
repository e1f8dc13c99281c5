// SPDX-License-Identifier: MIT
// Layer 5, the entry points: every way control enters the library -- the exported libc wrappers,
// our atfork handlers, the function CPython calls in a forked child, the signal handler, the
// constructor and the public API. Each is thin: it calls the real function and makes one call
// into the engine below (mechanisms in core/ and python/, reports in report/).
#ifndef FORKSAFE_WRAP_H
#define FORKSAFE_WRAP_H

#include "report/report.h"

/* init.c: one-time start-up, from the constructor or the first wrapper that needs it. */
void fs_init(void);
/* fork.c: makes our atfork handlers the oldest registered. */
void fs_atfork_register(void);
/* exec.c: the exit hook (atexit), registered at start-up. */
void fs_exit_hook_register(void);
/* python_hooks.c: what a Python child does once CPython's own after-fork work is done. */
void fs_python_entry_init(void);

#endif
