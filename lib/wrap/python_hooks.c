// SPDX-License-Identifier: MIT
// What a child of os.fork does once CPython has finished its own after-fork work (python/hooks.c
// calls this through the callback registered here, with the GIL held): it reads the green threads
// it carries (python/green.c; under FORKSAFE_GREEN=kill their end is scheduled), and it goes on
// running, so it writes its fork report now (in strict mode that may end it); then the RLock
// layer of repair, where it applies (python/rlock.c), under the same repair policy as every lock
// kind (core/repair.c).
#include "wrap.h"

static void child_resumes(void) {
    fs_py_green_child();
    fs_report_fork_if_owed();
    if (fs_py_rlock_layer_wanted() && !fs_repair_refusal(FS_LOCK_PYTHON_RLOCK, 1, 0))
        fs_py_release_lost_rlocks(fs_report_python_rlock);
}

void fs_python_entry_init(void) { fs_py_on_child_resumes(child_resumes); }
