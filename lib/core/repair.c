// SPDX-License-Identifier: MIT
// The repair policy: the one place that decides whether a lock held by a thread lost at the fork
// is handed to the child thread that would block on it. Every lock kind asks here. The caller has
// already established that the holder was alive at the fork and lost by it, and that the call
// would block (a non-blocking attempt never repairs: it cannot hang).
// Called in children before exec: async-signal-safe.
#include "core.h"

/* Nobody but the calling thread exists to release anything. */
static int only_thread(void) { return fs_thread_count() == 1; }

const char *fs_repair_refusal(enum fs_lock_kind kind, int proven, int timed) {
    if (fs_proc.mode != FS_MODE_REPAIR) return "report_mode";
    if (kind == FS_LOCK_SEMAPHORE && !fs_setting(FS_SET_repair_semaphores)) return "semaphore_repair_off";
    /* A lock not yet seen used as one may be a signal that another live thread will still post:
     * repair it only when no other thread exists that could. */
    if (!proven && !only_thread()) return "not_proven_lock";
    /* Nothing else could post it, but a wait with a deadline ends by itself: a signal the program
     * waits for with a timeout (a Condition's waiter lock, a done-flag) must time out as before. */
    if (!proven && timed) return "not_proven_timed";
    return NULL;
}
