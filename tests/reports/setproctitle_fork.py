# SPDX-License-Identifier: MIT
# A server that renames itself (setproctitle rewrites the memory of argv[0], as gunicorn and
# uWSGI do) then forks while a thread it started is alive. Prints CHILD <pid>.
#   python3 setproctitle_fork.py
import os
import threading

import setproctitle

release_r, release_w = os.pipe()
t = threading.Thread(target=os.read, args=(release_r, 1), name="worker-thread", daemon=True)
t.start()
setproctitle.setproctitle("master [app] " + "x" * 200)   # longer than the original command line
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
os.write(release_w, b"x")
t.join(10)
print("CHILD %d" % pid, flush=True)
