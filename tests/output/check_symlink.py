#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# FORKSAFE_LOG in a world-writable sticky directory (/tmp, /var/tmp, /dev/shm) must not be a way
# for another user to make a privileged process write where it chooses.
#
# The threat: `FORKSAFE_LOG=/tmp/forksafe.log` set for a service that runs as root (a unit file,
# a cron job). Any local user can create /tmp/forksafe.log first: as a symbolic link to
# /etc/ld.so.preload, /root/.bashrc or a log the admin trusts, the root process appends its report
# lines there (or creates the file the link names); as a regular file of theirs, they read what
# root writes and may feed it to whoever reads it. Linux refuses both on open(2) when
# fs.protected_symlinks / fs.protected_regular are set, but those are sysctls (off on many
# machines and containers; this one's values are printed): the library must apply the same rules
# itself.
#
# The rules checked (those of fs.protected_symlinks and fs.protected_regular):
#   - in a world-writable sticky directory, a symbolic link owned by another user (here nobody,
#     the directory's owner being root) is not followed: its target is unchanged (a dangling one
#     is not created), exactly one warning line on stderr mentions the symbolic link, the report
#     goes to stderr;
#   - there, a regular file owned by another user is not appended to: one warning, report on stderr;
#   - controls: a link there owned by the running user (root) is followed; a link owned by nobody
#     in a normal 0755 directory is followed; a regular file there owned by root is appended to; a
#     file owned by nobody in a normal 0755 directory is appended to.
# Runs as root (it makes files owned by nobody); skipped (77) otherwise.
#   check_symlink.py --bin build/tests/output/emitter --shim build/lib/libforksafe.so
import os
import pwd
import re
import tempfile

from forksafe_test import (driver_args, fail, pids, read, report_lines, run_cases, run_ok, shim_env, skip,
                           warnings)

ORIGINAL = b"original content, must stay as it is\n"


def sysctl(name):
    try:
        with open("/proc/sys/fs/" + name) as f:
            return f.read().strip()
    except OSError:
        return "?"


def main():
    a = driver_args("bin", "shim")
    if os.geteuid() != 0:
        skip("needs root: the files under test belong to another user")
    emitter = a.bin
    nobody = pwd.getpwnam("nobody")
    print("fs.protected_symlinks=%s fs.protected_regular=%s" % (sysctl("protected_symlinks"),
                                                               sysctl("protected_regular")))

    tmp = tempfile.TemporaryDirectory()
    top = tmp.name
    os.chmod(top, 0o755)
    sticky = os.path.join(top, "sticky")   # like /tmp: root's, 1777
    os.mkdir(sticky)
    os.chmod(sticky, 0o1777)
    normal = os.path.join(top, "normal")   # root's, 0755
    os.mkdir(normal, 0o755)
    targets = os.path.join(top, "targets")
    os.mkdir(targets, 0o755)

    def target(name, content=ORIGINAL):
        p = os.path.join(targets, name)
        with open(p, "wb") as f:
            f.write(content)
        return p

    def link(where, name, to, owner):
        p = os.path.join(where, name)
        os.symlink(to, p)
        os.lchown(p, owner, owner)
        return p

    def regular(where, name, owner, content=ORIGINAL):
        p = os.path.join(where, name)
        with open(p, "wb") as f:
            f.write(content)
        os.chown(p, owner, owner)
        return p

    def emit(log):
        r = run_ok([emitter, "fork", "2"], shim_env(a.shim, FORKSAFE_LOG=log), "emitter fork 2")
        return r, pids(r.out, "CHILD")[0]

    def refused(log, victim, expect_link):
        """The report went to stderr, one warning, the victim untouched."""
        before = None if victim is None or not os.path.exists(victim) else read(victim)
        r, child = emit(log)
        if victim is not None:
            if before is None and os.path.lexists(victim):
                fail("the file the link names was created: %s" % victim, read(victim))
            if before is not None and read(victim) != before:
                fail("the file was written to", read(victim))
        w = warnings(r.err)
        if len(w) != 1:
            fail("expected exactly one warning line on stderr, got %d" % len(w), r.text())
        if expect_link and not re.search(rb"symbolic link|symlink", w[0], re.I):
            fail("the warning does not mention the symbolic link: %r" % w[0], r.text())
        if not any(ln.startswith(b"forksafe[%d]: process" % child) for ln in report_lines(r.err)):
            fail("the child's fork report did not go to stderr", r.text())
        return w[0].decode("utf-8", "backslashreplace")

    def followed(log, dest):
        before = read(dest)
        r, child = emit(log)
        after = read(dest)
        if not after.startswith(before) or b"forksafe[%d]: process" % child not in after[len(before):]:
            fail("the report was not appended to %s" % dest, r.text() + "\nfile:\n" + after.decode("utf-8", "replace"))
        if warnings(r.err) or report_lines(r.err):
            fail("a warning or report lines on stderr", r.text())
        return "the report was appended to %s" % os.path.relpath(dest, top)

    def c_link_other():
        victim = target("victim1.txt")
        return refused(link(sticky, "evil.log", victim, nobody.pw_uid), victim, True)

    def c_link_dangling():
        victim = os.path.join(targets, "created-by-root.txt")
        return refused(link(sticky, "dangling.log", victim, nobody.pw_uid), victim, True)

    def c_regular_other():
        theirs = regular(sticky, "theirs.log", nobody.pw_uid, b"nobody's file\n")
        return refused(theirs, theirs, False)

    def c_link_mine():
        dest = target("mine.txt", b"")
        return followed(link(sticky, "mine.log", dest, 0), dest)

    def c_link_normal_dir():
        dest = target("normal.txt", b"")
        return followed(link(normal, "their-link.log", dest, nobody.pw_uid), dest)

    def c_regular_mine():
        p = regular(sticky, "roots.log", 0, b"")
        return followed(p, p)

    def c_regular_normal_dir():
        p = regular(normal, "theirs.log", nobody.pw_uid, b"")
        return followed(p, p)

    run_cases([
        ("sticky dir, link owned by nobody to an existing file: not followed", c_link_other),
        ("sticky dir, dangling link owned by nobody: the target is not created", c_link_dangling),
        ("sticky dir, regular file owned by nobody: not appended to", c_regular_other),
        ("control: sticky dir, link owned by root: followed", c_link_mine),
        ("control: 0755 dir, link owned by nobody: followed", c_link_normal_dir),
        ("control: sticky dir, regular file owned by root: appended to", c_regular_mine),
        ("control: 0755 dir, regular file owned by nobody: appended to", c_regular_normal_dir),
    ])


if __name__ == "__main__":
    main()
