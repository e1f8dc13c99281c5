# SPDX-License-Identifier: MIT
# The Python interpreters the tests run on, by a stable name: `debian` is Debian's /usr/bin/python3;
# `pyenv:3.9` is the newest pyenv 3.9.x under $(pyenv root)/versions. A name that resolves to
# nothing means the interpreter is absent on this machine: tests then skip (exit 77).
import glob
import os
import subprocess

NAMES = ["debian"] + ["pyenv:%s" % v for v in
                      ("2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13")]


def pyenv_root():
    root = os.environ.get("PYENV_ROOT")
    if not root:
        try:
            root = subprocess.check_output(["pyenv", "root"], universal_newlines=True,
                                           stderr=subprocess.DEVNULL, timeout=30).strip()
        except (OSError, subprocess.SubprocessError):
            root = os.path.expanduser("~/.pyenv")
    return root


def resolve(name):
    """Path of the interpreter called `name`, or None if it is not on this machine."""
    if name == "debian":
        return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else None
    if name.startswith("pyenv:"):
        version = name.split(":", 1)[1]
        found = glob.glob(os.path.join(pyenv_root(), "versions", version + ".*", "bin", "python"))
        found.sort(key=lambda p: [int(x) if x.isdigit() else 0 for x in p.split("/")[-3].split(".")])
        return found[-1] if found else None
    return name if os.path.exists(name) else None
