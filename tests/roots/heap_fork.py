# SPDX-License-Identifier: MIT
# A pre-forking server's parent with a large heap (2 million objects) and a thread alive forks a
# child, as every worker start does. Prints the child's private dirty memory (kB) just after
# os.fork returned in it -- Python's own after-fork work and every after_in_child hook done -- and
# how long that took. Copy-on-write sharing is what pre-forking servers rely on: a child that
# touched every object's reference count would have copied the heap.
#   python3 heap_fork.py
import os
import threading
import time

heap = [{"k": i, "v": str(i)} for i in range(700000)]   # ~2.1 million objects
release_r, release_w = os.pipe()
t = threading.Thread(target=os.read, args=(release_r, 1), name="monitor", daemon=True)
t.start()
result_r, result_w = os.pipe()
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    ms = (time.monotonic() - t0) * 1000
    dirty = 0
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                dirty = int(line.split()[1])
    os.write(result_w, b"%d %.1f" % (dirty, ms))
    os._exit(0)
os.close(result_w)
out = os.read(result_r, 100).decode()
os.waitpid(pid, 0)
os.write(release_w, b"x")
print("CHILD_DIRTY_KB %s CHILD_START_MS %s" % tuple(out.split()), flush=True)
