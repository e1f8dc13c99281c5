#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The Debian package: `dpkg-buildpackage -b -us -uc` on a copy of this checkout builds a .deb
# holding the library, forksafe, the header, the pkg-config file, the man pages and the
# examples; installed with dpkg into a copy of the Debian 13 root (scripts/make-roots.sh; the
# cached root stays untouched), `forksafe gunicorn --preload ...` run by someone who knows
# nothing of where anything is installed answers every request and reports each worker's repair
# on stderr; `forksafe check gunicorn` says it loads; `dpkg -r` removes it all.
#   check_deb.py
import os
import re
import shutil
import tempfile

from deploylib import APP_DIR, REPO, RootCopy, fail, free_port, require_root_fs, run, serve_and_query, skip


def source_files():
    """The checkout's files: tracked and untracked-but-not-ignored, or the tree without builds."""
    if shutil.which("git") and os.path.exists(os.path.join(REPO, ".git")):
        r = run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], 60)
        if r.returncode == 0:
            return [f for f in r.stdout.split("\0") if f and os.path.isfile(os.path.join(REPO, f))
                    and not f.startswith(("build/", "obj-"))]
    out = []
    for d, dirs, files in os.walk(REPO):
        dirs[:] = [x for x in dirs if not x.startswith((".", "build", "obj-"))]
        out += [os.path.relpath(os.path.join(d, f), REPO) for f in files]
    return out


def main():
    require_root_fs("trixie")
    for tool in ("dpkg-buildpackage", "dh", "meson", "ninja"):
        if not shutil.which(tool):
            skip("%s is absent (scripts/install-deps.sh installs debhelper, dpkg-dev, meson)" % tool)
    tmp = tempfile.mkdtemp(prefix="forksafe-deb.", dir="/var/tmp")
    try:
        src = os.path.join(tmp, "src")
        for f in source_files():
            os.makedirs(os.path.dirname(os.path.join(src, f)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, f), os.path.join(src, f))
        env = {k: v for k, v in os.environ.items() if not (k.startswith("FORKSAFE_") or k == "LD_PRELOAD")}
        r = run(["dpkg-buildpackage", "-b", "-us", "-uc"], 900, cwd=src, env=dict(env, DEB_BUILD_OPTIONS="nocheck"))
        if r.returncode != 0:
            fail("dpkg-buildpackage failed:\n" + (r.stdout + r.stderr)[-6000:])
        debs = [f for f in os.listdir(tmp) if re.match(r"forksafe_.*\.deb$", f)]
        if len(debs) != 1:
            fail("expected one forksafe_*.deb, found %s" % os.listdir(tmp))
        deb = os.path.join(tmp, debs[0])
        arch = run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], 30).stdout.strip()
        listing = run(["dpkg-deb", "-c", deb], 60).stdout
        paths = {l.split()[5].lstrip(".") for l in listing.splitlines() if len(l.split()) >= 6}
        lib = "/usr/lib/%s/libforksafe.so.0" % arch
        want = ["/usr/bin/forksafe", lib, "/usr/lib/%s/libforksafe.so" % arch, "/usr/include/forksafe.h",
                "/usr/lib/%s/pkgconfig/forksafe.pc" % arch, "/usr/share/man/man1/forksafe.1.gz",
                "/usr/share/man/man7/libforksafe.7.gz",
                "/usr/share/doc/forksafe/examples/systemd/gunicorn.service.d/forksafe.conf",
                "/usr/share/doc/forksafe/examples/docker/Dockerfile"]
        missing = [p for p in want if p not in paths]
        if missing:
            fail("the package lacks %s:\n%s" % (missing, listing))
        print("%s holds %s" % (debs[0], ", ".join(want)))
        info = run(["dpkg-deb", "-f", deb, "Depends"], 30).stdout.strip()
        print("Depends: " + info)

        with RootCopy("trixie") as rc:
            r = rc.run(["dpkg", "-i", deb], 300, ro=[tmp])
            if r.returncode != 0:
                fail("dpkg -i in the root failed:\n" + r.stdout + r.stderr)
            r = rc.run(["forksafe", "--print-path"], 60)
            if r.returncode != 0 or r.stdout.strip() != lib:
                fail("forksafe --print-path: %r (status %s), expected %s" % (r.stdout, r.returncode, lib))
            r = rc.run(["forksafe", "check", "gunicorn"], 60)
            print(r.stdout)
            if r.returncode != 0 or "would load" not in r.stdout:
                fail("forksafe check gunicorn in the root:\n" + r.stdout + r.stderr)
            text = rc.run(["sh", "-c", "zcat /usr/share/man/man7/libforksafe.7.gz"], 60).stdout
            if lib not in text or "FORKSAFE_LOG" not in text:
                fail("the installed libforksafe(7) should name %s and the settings" % lib)

            port = free_port()
            log = os.path.join(tmp, "gunicorn.log")
            cmd = ["forksafe", "gunicorn", "--preload", "-w", "2", "-b", "127.0.0.1:%d" % port, "--chdir", APP_DIR,
                   "app:app"]
            answers = serve_and_query(cmd, port, None, log, requests=10, popen=lambda argv, **kw: rc.popen(argv, **kw))
            out = open(log).read()
            if any(s != 200 for s, _ in answers):
                fail("requests failed: %s\n%s" % (answers, out[-4000:]))
            served = {int(b.split("from worker ")[1]) for _, b in answers}
            repaired = {int(m.group(1)) for m in re.finditer(r"^forksafe\[(\d+)\]: repaired semaphore .*'metrics-flusher'", out, re.M)}
            forked = set(re.findall(r"forked child (\d+)", out))
            if len(forked) != 2 or not served <= repaired:
                fail("each worker should report its fork, and those that answered the repair:\n" + out[-4000:])
            print("forksafe gunicorn --preload in Debian 13 with the package: 10 of 10 requests answered, "
                  "%d workers reported, %d repaired" % (len(forked), len(repaired)))
            r = rc.run(["sh", "-c", "dpkg -r forksafe && ! test -e %s && ! command -v forksafe" % lib], 120)
            if r.returncode != 0:
                fail("dpkg -r forksafe:\n" + r.stdout + r.stderr)
            print("dpkg -r removes it")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()
