#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The forksafe command: options, LD_PRELOAD (kept entries, never twice), exec (same pid, CMD's
# status), exit statuses, --print-path, --version, and `check`: a script followed to its
# interpreter, a static program, a setuid program, a missing library, a library or program of
# another ELF class, a musl program, bad usage.
#   check_cli.py --forksafe build/tools/forksafe/forksafe --shim build/lib/libforksafe.so --static PROG
import argparse
import os
import shutil
import struct
import sys
import tempfile

from deploylib import end_checks, expect, run


def fake_elf(path, cls64=True, machine=62, interp=None, mode=0o755):
    """A minimal ELF header (and a PT_INTERP when `interp`): enough for forksafe check."""
    if cls64:
        phoff, ehsize, phentsize = 64, 64, 56
        body_off = phoff + phentsize
        data = interp.encode() + b"\0" if interp else b""
        eh = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
        eh += struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0x400000, phoff, 0, 0, ehsize, phentsize,
                          1 if interp else 0, 64, 0, 0)
        ph = struct.pack("<IIQQQQQQ", 3, 4, body_off, 0, 0, len(data), len(data), 1) if interp else b""
    else:
        phoff, ehsize, phentsize = 52, 52, 32
        body_off = phoff + phentsize
        data = interp.encode() + b"\0" if interp else b""
        eh = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
        eh += struct.pack("<HHIIIIIHHHHHH", 3, machine, 1, 0x8048000, phoff, 0, 0, ehsize, phentsize,
                          1 if interp else 0, 40, 0, 0)
        ph = struct.pack("<IIIIIIII", 3, body_off, 0, 0, len(data), len(data), 4, 1) if interp else b""
    with open(path, "wb") as f:
        f.write(eh + ph + data)
    os.chmod(path, mode)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--forksafe", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("--static", required=True)
    a = ap.parse_args()
    fs, shim = os.path.abspath(a.forksafe), os.path.abspath(a.shim)
    base = {k: v for k, v in os.environ.items() if not (k.startswith("FORKSAFE_") or k == "LD_PRELOAD")}
    env = dict(base, FORKSAFE_LIBRARY=shim)
    tmp = tempfile.mkdtemp(prefix="forksafe-cli.")
    try:
        # --version, --print-path
        r = run([fs, "--version"], 30, env=base)
        expect(r.returncode == 0 and r.stdout.startswith("forksafe "), "--version", r.stdout + r.stderr)
        r = run([fs, "--print-path"], 30, env=env)
        expect(r.returncode == 0 and r.stdout.strip() == shim, "--print-path honours FORKSAFE_LIBRARY", r.stdout + r.stderr)
        r = run([fs, "--library", shim, "--print-path"], 30, env=base)
        expect(r.returncode == 0 and r.stdout.strip() == shim, "--print-path honours --library", r.stdout + r.stderr)
        r = run([fs, "--library", "/nonexistent/libforksafe.so.0", "--print-path"], 30, env=base)
        expect(r.returncode == 1 and r.stdout.strip() == "/nonexistent/libforksafe.so.0" and "No such file" in r.stderr,
               "--print-path of a missing library: printed, warned, status 1", r.stdout + r.stderr)

        # bad usage: status 2 and the usage text
        for args, what in ((["--bogus", "true"], "an unknown option"), (["--mode=sometimes", "true"], "a bad --mode"),
                           (["--stack-depth=99", "true"], "--stack-depth out of range"),
                           (["--threads-warn=-1", "true"], "a negative --threads-warn"),
                           ([], "no command"), (["--mode"], "an option without its value"),
                           (["--strict=yes", "true"], "a bad --strict"), (["--green=maybe", "true"], "a bad --green"),
                           (["check", "--exit-report=never"], "check with a bad option")):
            r = run([fs] + args, 30, env=env)
            expect(r.returncode == 2 and "usage: forksafe" in r.stderr, "usage error: " + what, r.stdout + r.stderr)

        # run: options become settings, CMD's options stay CMD's, LD_PRELOAD gains the library
        show = "echo \"$LD_PRELOAD|$FORKSAFE_MODE|$FORKSAFE_LOG|$FORKSAFE_FORMAT|$FORKSAFE_VERBOSE|$FORKSAFE_STACK_DEPTH|" \
               "$FORKSAFE_EXIT_REPORT|$FORKSAFE_THREADS_WARN|$0|$1\""
        r = run([fs, "--mode=report", "--log", "/dev/null", "--json", "--verbose", "--stack-depth=3", "--exit-report=all",
                 "--threads-warn", "7", "sh", "-c", show, "x", "--mode=off"], 30, env=env)
        expect(r.returncode == 0 and r.stdout.strip() == "%s|report|/dev/null|json|1|3|all|7|x|--mode=off" % shim,
               "options set FORKSAFE_*, CMD's own options untouched", r.stdout + r.stderr)
        strict = "echo \"$FORKSAFE_STRICT|$FORKSAFE_ALLOW|$FORKSAFE_GREEN\""
        r = run([fs, "--strict", "--allow=libmonitor-*,x", "--green=kill", "sh", "-c", strict], 30, env=env)
        expect(r.returncode == 0 and r.stdout.strip() == "on|libmonitor-*,x|kill",
               "--strict alone is FORKSAFE_STRICT=on; --allow, --green", r.stdout + r.stderr)
        r = run([fs, "--strict=green", "sh", "-c", strict], 30, env=env)
        expect(r.returncode == 0 and r.stdout.strip() == "green||", "--strict=green", r.stdout + r.stderr)
        r = run([fs, "--", "sh", "-c", "echo \"$LD_PRELOAD\""], 30, env=dict(env, LD_PRELOAD="libm.so.6 "))
        expect(r.stdout.strip() == "libm.so.6:" + shim, "existing LD_PRELOAD entries kept first", r.stdout + r.stderr)
        r = run([fs, "sh", "-c", "echo \"$LD_PRELOAD\""], 30, env=dict(env, LD_PRELOAD=shim))
        expect(r.stdout.strip() == shim, "not added twice (same path)", r.stdout + r.stderr)
        link = os.path.join(tmp, "link.so")
        os.symlink(shim, link)
        r = run([fs, "sh", "-c", "echo \"$LD_PRELOAD\""], 30, env=dict(env, LD_PRELOAD="/x.so:" + link))
        expect(r.stdout.strip() == "/x.so:" + link, "not added twice (another path to the same file)", r.stdout + r.stderr)
        r = run([fs, "sh", "-c", "echo \"$LD_PRELOAD\""], 30, env=dict(env, LD_PRELOAD="libforksafe.so.0"))
        expect(r.stdout.strip() == "libforksafe.so.0", "not added twice (bare soname)", r.stdout + r.stderr)
        r = run([fs, "sh", "-c", "echo $$ $PPID; exit 7"], 30, env=env)
        expect(r.returncode == 7, "CMD's exit status is forksafe's", r.stdout + r.stderr)
        # the library really loads: its settings dump
        r = run([fs, "--verbose", "--mode=report", "true"], 30, env=env)
        expect(r.returncode == 0 and "setting FORKSAFE_MODE=report (from the environment)" in r.stderr,
               "the library is loaded into CMD", r.stdout + r.stderr)
        # exec, not fork: CMD keeps forksafe's pid (a shell prints its own pid, python compares)
        r = run([sys.executable, "-c", "import subprocess,sys; p=subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE);"
                 "o=p.communicate()[0].decode().strip(); print(o == str(p.pid))", fs, "sh", "-c", "echo $$"], 30, env=env)
        expect(r.stdout.strip() == "True", "CMD replaces forksafe (same pid)", r.stdout + r.stderr)
        r = run([fs, "no-such-command-forksafe"], 30, env=env)
        expect(r.returncode == 127 and "no-such-command-forksafe" in r.stderr, "CMD not found: 127", r.stderr)
        noexec = os.path.join(tmp, "noexec")
        open(noexec, "w").write("#!/bin/sh\n")
        os.chmod(noexec, 0o644)
        r = run([fs, noexec], 30, env=env)
        expect(r.returncode == 126, "CMD not executable: 126", r.stderr)
        r = run([fs, "true"], 30, env=dict(base, FORKSAFE_LIBRARY="/nonexistent/libforksafe.so.0"))
        expect(r.returncode == 125 and "/nonexistent/libforksafe.so.0" in r.stderr, "missing library: 125, named",
               r.stderr)
        r = run([fs, a.static], 30, env=env)
        expect(r.returncode == 0 and "statically linked" in r.stderr, "running a static program warns", r.stderr)

        # check
        r = run([fs, "--mode=report", "check"], 60, env=env)
        expect(r.returncode == 0 and "setting FORKSAFE_MODE=report (from the environment)" in r.stdout
               and "libforksafe" in r.stdout, "check: library loads, its own settings dump", r.stdout + r.stderr)
        r = run([fs, "check", "--verbose"], 60, env=env)
        expect(r.returncode == 0 and "FORKSAFE_VERBOSE=1 (from the environment" in r.stdout and not r.stderr.strip(),
               "check --verbose: shown, and nothing written to the log", r.stdout + r.stderr)
        r = run([fs, "check", "sh"], 60, env=env)
        expect(r.returncode == 0 and "would load" in r.stdout, "check sh", r.stdout + r.stderr)
        script = os.path.join(tmp, "script")
        open(script, "w").write("#!/usr/bin/env -S sh -e\necho hi\n")
        os.chmod(script, 0o755)
        r = run([fs, "check", script], 60, env=env)
        expect(r.returncode == 0 and "run by env" in r.stdout and "would load" in r.stdout,
               "check follows #!/usr/bin/env to the program", r.stdout + r.stderr)
        r = run([fs, "check", a.static], 60, env=env)
        expect(r.returncode == 1 and "statically linked" in r.stdout, "check: static program", r.stdout + r.stderr)
        r = run([fs, "check", "no-such-command-forksafe"], 60, env=env)
        expect(r.returncode == 1 and "not found" in r.stdout, "check: command not found", r.stdout + r.stderr)
        r = run([fs, "check", "true"], 60, env=dict(base, FORKSAFE_LIBRARY="/nonexistent/libforksafe.so.0"))
        expect(r.returncode == 1 and "No such file" in r.stdout, "check: missing library", r.stdout + r.stderr)
        lib32 = os.path.join(tmp, "lib32.so")
        fake_elf(lib32, cls64=False, machine=3)
        r = run([fs, "--library", lib32, "check"], 60, env=base)
        expect(r.returncode == 1 and "wrong ELF class" in r.stdout, "check: a 32-bit library", r.stdout + r.stderr)
        prog32 = os.path.join(tmp, "prog32")
        fake_elf(prog32, cls64=False, machine=3, interp="/lib/ld-linux.so.2")
        r = run([fs, "check", prog32], 60, env=env)
        expect(r.returncode == 1 and "wrong ELF class" in r.stdout and "32-bit" in r.stdout,
               "check: a 32-bit program", r.stdout + r.stderr)
        musl = os.path.join(tmp, "musl")
        fake_elf(musl, interp="/lib/ld-musl-x86_64.so.1")
        r = run([fs, "check", musl], 60, env=env)
        expect(r.returncode == 1 and "musl" in r.stdout, "check: a musl program", r.stdout + r.stderr)
        notelf = os.path.join(tmp, "data")
        open(notelf, "w").write("hello\n")
        os.chmod(notelf, 0o755)
        r = run([fs, "check", notelf], 60, env=env)
        expect(r.returncode == 1, "check: neither ELF nor script", r.stdout + r.stderr)

        # setuid: a copy of a dynamic program owned by another user, with the setuid bit, where
        # the file system honours it (not on a nosuid mount)
        suid_dir = tempfile.mkdtemp(prefix="forksafe-suid.", dir=os.path.dirname(fs))
        try:
            suid = os.path.join(suid_dir, "suid-true")
            shutil.copy(shutil.which("true"), suid)
            if os.getuid() == 0:
                os.chown(suid, 65534, 65534)
            os.chmod(suid, 0o4755)
            nosuid = os.statvfs(suid_dir).f_flag & os.ST_NOSUID
            if os.getuid() != 0 or nosuid:
                print("skip setuid case: " + ("not root" if os.getuid() else "nosuid mount"))
            else:
                r = run([fs, "check", suid], 60, env=env)
                expect(r.returncode == 1 and "setuid" in r.stdout and "secure-execution" in r.stdout
                       and "ld.so.preload" in r.stdout and "defaults" in r.stdout,
                       "check: a setuid program, and what /etc/ld.so.preload does there", r.stdout + r.stderr)
                os.chmod(suid, 0o2755)
                os.chown(suid, 65534, 65534)
                os.chmod(suid, 0o2755)
                r = run([fs, "check", suid], 60, env=env)
                expect(r.returncode == 1 and "setgid" in r.stdout, "check: a setgid program", r.stdout + r.stderr)
        finally:
            shutil.rmtree(suid_dir, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    end_checks()
    print("PASS")


if __name__ == "__main__":
    main()
