#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The man pages: forksafe(1) and the generated libforksafe(7) pass `mandoc -T lint` (warnings
# count) and `groff -ww` without a word, render with man(1), and libforksafe(7) lists every
# setting of settings.def and the installed library's path.
#   check_man.py --man1 man/forksafe.1 --man7 build/man/libforksafe.7 --settings-def lib/base/settings.def
import argparse
import os
import re
import shutil

from deploylib import fail, run, skip


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--man1", required=True)
    ap.add_argument("--man7", required=True)
    ap.add_argument("--settings-def", required=True)
    a = ap.parse_args()
    pages = [a.man1, a.man7]
    tools = [t for t in ("mandoc", "groff", "man") if shutil.which(t)]
    if not tools:
        skip("none of mandoc, groff, man is installed (scripts/install-deps.sh installs mandoc)")
    if "mandoc" in tools:
        r = run(["mandoc", "-T", "lint", "-W", "warning"] + pages, 60)
        if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
            fail("mandoc -T lint:\n" + r.stdout + r.stderr)
        print("mandoc -T lint -W warning: clean")
    if "groff" in tools:
        r = run(["groff", "-ww", "-z", "-man"] + pages, 60)
        if r.returncode != 0 or r.stderr.strip():
            fail("groff -ww:\n" + r.stderr)
        print("groff -ww: clean")
    if "man" in tools:
        for p in pages:
            r = run(["man", "-l", p], 60, env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
            if r.returncode != 0 or "SEE ALSO" not in r.stdout:
                fail("man -l %s does not render:\n%s" % (p, r.stdout[-2000:] + r.stderr))
        print("man -l renders both pages")
    text7 = open(a.man7).read()
    names = re.findall(r'^FS_SETTING\(\w+, "(\w+)"', open(a.settings_def).read(), re.M)
    missing = [n for n in names if ".B FORKSAFE_%s\n" % n not in text7]
    if not names or missing:
        fail("libforksafe(7) lacks settings: %s" % missing)
    if "@" in re.sub(r"^\.\\\".*$", "", text7, flags=re.M).replace("\\(at", ""):
        fail("libforksafe(7) has an unreplaced @...@ placeholder")
    if "libforksafe.so.0" not in text7:
        fail("libforksafe(7) should name the installed library")
    print("libforksafe(7) lists all %d settings" % len(names))
    print("PASS")


if __name__ == "__main__":
    main()
