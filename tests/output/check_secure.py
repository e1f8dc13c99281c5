#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Secure mode: in a setuid or setgid process (AT_SECURE), every FORKSAFE_* variable is ignored,
# the defaults apply, and reports go only to the inherited stderr.
#
# The threat: a library in /etc/ld.so.preload (how a fleet installs libforksafe for every
# process) is loaded into setuid-root programs too: su, passwd, mount, sudo. Their environment
# belongs to the unprivileged user who runs them. If the library honoured FORKSAFE_LOG there, any
# user could make root create or append to a file of their choosing (FORKSAFE_LOG=/etc/cron.d/x,
# or a root-only directory) with partly controlled content (thread names); FORKSAFE_MODE=off or
# FORKSAFE_PYTHON would let the user change how a privileged process behaves. glibc itself drops
# LD_PRELOAD, LD_LIBRARY_PATH and MALLOC_* for AT_SECURE processes for this reason.
#
# Tested for real: in a private mount namespace (unshare -m; / made rprivate), a copy of /etc with
# an ld.so.preload naming a copy of the built library (readable by nobody) is bind-mounted over
# /etc; programs then run as user nobody (uid/gid 65534, no supplementary groups):
#   - a setuid-root program from Debian (mount --version, or su --help, passwd -S) with
#     FORKSAFE_LOG=<root-only dir>/owned.log and FORKSAFE_VERBOSE=1: exits 0, no file appears, no
#     settings are printed;
#   - a setuid-root copy of secure_probe with FORKSAFE_MODE=off: the library is loaded
#     (forksafe_version found with dlsym) and forksafe_mode() is "repair", the default; no file;
#   - a setgid-root copy: the same (its FORKSAFE_LOG directory is 0770 root:root, writable
#     through the gained group);
#   - the setuid copy forking while a thread is alive, FORKSAFE_LOG=<root-only dir>/report.log and
#     FORKSAFE_FORMAT=json: the child's fork report arrives on stderr, in text (the default); no file;
#   - controls, proving the test can fail: a plain (not setuid) copy of secure_probe as nobody with
#     the same variables and FORKSAFE_LOG in a directory nobody can write: the library is loaded,
#     its mode is "off", the file appears; /bin/true likewise creates its file.
# Afterwards nothing of the test is mounted (the namespace dies with its last process).
# Skipped (77) when not root, without unshare or setuid support, or without user nobody.
#   check_secure.py --bin build/tests/output/secure_probe --shim build/lib/libforksafe.so
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile

from forksafe_test import LIB, base_env, driver_args, fail, lines, report_lines, run, run_cases, skip

NOBODY = 65534
CANDIDATES = [["/usr/bin/mount", "--version"], ["/bin/mount", "--version"], ["/usr/bin/su", "--help"],
              ["/usr/bin/passwd", "-S"], ["/usr/bin/chfn", "--help"]]


def as_nobody():
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []}


def setuid_program():
    """A setuid-root program from the distribution that nobody can run to a 0 exit."""
    for cmd in CANDIDATES:
        try:
            st = os.stat(cmd[0])
        except OSError:
            continue
        if not (st.st_mode & stat.S_ISUID) or st.st_uid != 0:
            continue
        r = run(cmd, base_env(), timeout=30, **as_nobody())
        if r.rc == 0 and not r.hung:
            return cmd
    return None


def mounted_under(top):
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f if top in ln]


# ---- inside the namespace ----

def inner(top, program):
    rootonly = os.path.join(top, "rootonly")
    nobodydir = os.path.join(top, "nobody")
    probe = {k: os.path.join(top, "bin", "probe-" + k) for k in ("setuid", "setgid", "plain")}

    subprocess.run(["mount", "--make-rprivate", "/"], check=True, timeout=30)
    subprocess.run(["mount", "--bind", os.path.join(top, "etc"), "/etc"], check=True, timeout=30)
    with open("/etc/ld.so.preload") as f:
        preload = f.read()
    lib = os.path.join(top, "lib", "libforksafe.so")
    if lib not in preload:
        print("FAIL: /etc/ld.so.preload in the namespace does not name %s" % lib)
        sys.exit(1)

    def env(**kw):
        e = base_env()
        e.update({k: str(v) for k, v in kw.items()})
        return e

    def go(cmd, **kw):
        r = run(cmd, env(**kw), timeout=30, **as_nobody())
        if r.hung or r.rc != 0:
            fail("%s as nobody: %s" % (" ".join(cmd), "hung" if r.hung else "exit %r" % r.rc), r.text())
        return r

    def private_dir(name, mode=0o700):
        """A directory of root's that nobody cannot write to (0770 root:root: a setgid-root
        process could, through its group)."""
        d = os.path.join(rootonly, name)
        os.mkdir(d)
        os.chmod(d, mode)
        return d

    def no_files(where):
        left = os.listdir(where)
        if left:
            fail("the privileged process created %s in a directory only root can write to" % left,
                 "".join(open(os.path.join(where, f), errors="replace").read()[:600] for f in left))

    def probe_fields(r):
        ls = [ln for ln in lines(r.out) if ln.startswith(b"loaded=")]
        if len(ls) != 1:
            fail("the probe did not print its line", r.text())
        return dict(kv.split("=", 1) for kv in ls[0].decode().split())

    def debian_setuid():
        d = private_dir("debian")
        r = go(program, FORKSAFE_LOG=os.path.join(d, "owned.log"), FORKSAFE_VERBOSE=1)
        no_files(d)
        if any(b"setting FORKSAFE_" in ln for ln in report_lines(r.err)):
            fail("FORKSAFE_VERBOSE=1 was honoured: the settings were printed", r.text())
        return "%s: exit 0, no file, no settings printed" % " ".join(program)

    def probe_case(kind, want_id):
        def case():
            d = private_dir(kind, 0o770)
            r = go([probe[kind]], FORKSAFE_MODE="off", FORKSAFE_LOG=os.path.join(d, "owned.log"), FORKSAFE_VERBOSE=1)
            f = probe_fields(r)
            if f["secure"] != "1" or f[want_id] != "0":
                fail("the %s probe did not run privileged (AT_SECURE=%s, %s=%s): the test proves nothing"
                     % (kind, f["secure"], want_id, f[want_id]), r.text())
            if f["loaded"] != "1":
                fail("the library was not loaded in the %s process: the test proves nothing" % kind, r.text())
            if f["mode"] != "repair":
                fail("FORKSAFE_MODE=off was honoured in a %s process: forksafe_mode() is %r" % (kind, f["mode"]), r.text())
            no_files(d)
            return "loaded, mode %s, AT_SECURE, no file" % f["mode"]
        return case

    def setuid_report():
        d = private_dir("report")
        r = go([probe["setuid"], "report"], FORKSAFE_LOG=os.path.join(d, "owned.log"), FORKSAFE_FORMAT="json")
        no_files(d)
        rl = report_lines(r.err)
        if not any(b"forked child" in ln for ln in rl):
            fail("the child's fork report did not arrive on stderr as text", r.text())
        return "the fork report arrived on stderr, as text"

    def control_probe():
        log = os.path.join(nobodydir, "plain.log")
        r = go([probe["plain"]], FORKSAFE_MODE="off", FORKSAFE_LOG=log, FORKSAFE_VERBOSE=1)
        f = probe_fields(r)
        if f != dict(f, loaded="1", mode="off", secure="0"):
            fail("the plain probe should say loaded=1 mode=off secure=0", r.text())
        if not os.path.exists(log) or b"setting FORKSAFE_MODE=off" not in open(log, "rb").read():
            fail("the plain probe did not write its settings to %s" % log, r.text())
        return "loaded, mode off, the file holds the settings"

    def control_true():
        log = os.path.join(nobodydir, "true.log")
        r = go(["/bin/true"], FORKSAFE_LOG=log, FORKSAFE_VERBOSE=1)
        if not os.path.exists(log) or b"setting FORKSAFE_LOG=" not in open(log, "rb").read():
            fail("/bin/true as nobody did not write its settings to %s" % log, r.text())
        return "the file holds the settings"

    run_cases([
        ("control: a plain copy of the probe as nobody honours the settings", control_probe),
        ("control: /bin/true as nobody honours FORKSAFE_LOG", control_true),
        ("setuid-root %s as nobody" % os.path.basename(program[0]), debian_setuid),
        ("setuid-root probe as nobody, FORKSAFE_MODE=off", probe_case("setuid", "euid")),
        ("setgid-root probe as nobody, FORKSAFE_MODE=off", probe_case("setgid", "egid")),
        ("setuid-root probe forking, FORKSAFE_LOG and FORKSAFE_FORMAT=json", setuid_report),
    ])


# ---- outside ----

def main():
    a = driver_args("bin", "shim", inner=dict(nargs=2, metavar=("TOP", "PROGRAM_JSON")))
    if a.inner:
        inner(a.inner[0], json.loads(a.inner[1]))
        return
    if os.geteuid() != 0:
        skip("needs root (setuid copies, a mount namespace)")
    if not shutil.which("unshare"):
        skip("no unshare")
    try:
        pwd.getpwuid(NOBODY)
    except KeyError:
        skip("no user nobody (65534)")
    r = run(["unshare", "-m", "true"], base_env(), timeout=30)
    if r.rc != 0:
        skip("unshare -m does not work here: %s" % r.err.decode(errors="replace").strip())
    program = setuid_program()
    if not program:
        skip("no setuid-root program that nobody can run (%s)" % ", ".join(c[0] for c in CANDIDATES))
    host_preload = os.path.exists("/etc/ld.so.preload") and open("/etc/ld.so.preload", "rb").read()

    tmp = tempfile.TemporaryDirectory(prefix="forksafe-secure-", dir="/tmp")
    top = tmp.name
    if os.statvfs(top).f_flag & os.ST_NOSUID:
        skip("%s is on a filesystem mounted nosuid" % top)
    os.chmod(top, 0o755)
    for d, mode, owner in (("lib", 0o755, 0), ("bin", 0o755, 0), ("rootonly", 0o700, 0), ("nobody", 0o755, NOBODY)):
        os.mkdir(os.path.join(top, d))
        os.chmod(os.path.join(top, d), mode)
        os.chown(os.path.join(top, d), owner, owner)
    lib = os.path.join(top, "lib", "libforksafe.so")
    shutil.copyfile(a.shim, lib)
    os.chmod(lib, 0o755)
    for kind, mode in (("setuid", 0o4755), ("setgid", 0o2755), ("plain", 0o755)):
        p = os.path.join(top, "bin", "probe-" + kind)
        shutil.copyfile(a.bin, p)
        os.chown(p, 0, 0)
        os.chmod(p, mode)
    subprocess.run(["cp", "-a", "/etc", os.path.join(top, "etc")], check=True, timeout=120)
    with open(os.path.join(top, "etc", "ld.so.preload"), "ab") as f:
        f.write(("\n" + lib + "\n").encode())
    os.chmod(os.path.join(top, "etc", "ld.so.preload"), 0o644)
    # nobody can reach the library and the probes: every directory on the way is traversable
    d = top
    while d != "/":
        if not os.stat(d).st_mode & stat.S_IXOTH:
            skip("%s is not traversable by nobody" % d)
        d = os.path.dirname(d)

    print("setuid program: %s; namespace root: %s" % (" ".join(program), top))
    sys.stdout.flush()
    r = run(["unshare", "-m", "--propagation", "private", sys.executable, os.path.abspath(__file__),
             "--bin", a.bin, "--shim", a.shim, "--inner", top, json.dumps(program)],
            base_env(PYTHONPATH=LIB), timeout=180)  # the driver again: it imports forksafe_test
    sys.stdout.write(r.out.decode("utf-8", "backslashreplace"))
    if r.err:
        sys.stdout.write("inner stderr:\n" + r.err.decode("utf-8", "backslashreplace"))
    rc = 1 if r.hung else r.rc

    left = mounted_under(top)
    now_preload = os.path.exists("/etc/ld.so.preload") and open("/etc/ld.so.preload", "rb").read()
    if left:
        print("FAIL: still mounted after the test:\n" + "".join(left))
        rc = 1
    elif now_preload != host_preload:
        print("FAIL: the host's /etc/ld.so.preload changed")
        rc = 1
    else:
        print("ok: nothing left mounted; the host's /etc untouched")
    sys.exit(rc)


if __name__ == "__main__":
    main()
