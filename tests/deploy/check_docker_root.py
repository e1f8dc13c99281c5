#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The Docker recipe (examples/docker/Dockerfile) without a Docker engine, in a copy of the Debian
# 13 root made by scripts/make-roots.sh (the cached root stays untouched):
#  - the build stage: its `meson setup` options, read from the Dockerfile, on the host
#    (Debian 12's compiler instead of Debian 13's), then `meson install --destdir`;
#  - the runtime stage, read from the Dockerfile: COPY (from the build's destdir, or from this
#    checkout), ENV, WORKDIR, USER, ENTRYPOINT and CMD applied to the root copy; its RUN lines
#    must be apt-get installs of packages the root already has;
#  - the container started as Docker would (ENTRYPOINT + CMD, as USER, with ENV, in WORKDIR;
#    only the bind address changed to a free loopback port): every request is answered and the
#    report (the lost thread, the repaired RLock; CPython 3.13) reaches the container's log
#    (stderr). The image's command without the entry point hangs (the control).
#   check_docker_root.py --dockerfile examples/docker/Dockerfile
import argparse
import json
import os
import re
import shlex
import shutil
import tempfile

from deploylib import REPO, RootCopy, fail, free_port, require_root_fs, run, serve_and_query, skip


def parse(path):
    """The Dockerfile's stages: a list of (name, [(INSTRUCTION, argument text)])."""
    stages, lines, cur = [], [], ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        lines.append(cur + line)
        cur = ""
    for line in lines:
        ins, _, arg = line.strip().partition(" ")
        ins = ins.upper()
        if ins == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", arg.strip(), re.I)
            stages.append((m.group(2) or m.group(1), []))
        else:
            stages[-1][1].append((ins, arg.strip()))
    return stages


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dockerfile", required=True)
    a = ap.parse_args()
    require_root_fs("trixie")
    if not shutil.which("meson"):
        skip("meson is absent")
    stages = parse(a.dockerfile)
    build = dict(stages)["build"]
    runtime = stages[-1][1]
    tmp = tempfile.mkdtemp(prefix="forksafe-docker.", dir="/var/tmp")
    try:
        # the build stage, on the host
        setup = [arg for ins, arg in build if ins == "RUN" and "meson setup" in arg]
        if not setup:
            fail("the build stage has no `meson setup`")
        opts = shlex.split(setup[0].split("meson setup", 1)[1].split("&&")[0])[2:]  # after BUILDDIR SRCDIR
        bdir, out = os.path.join(tmp, "build"), os.path.join(tmp, "out")
        print("meson setup %s" % " ".join(opts))
        for cmd in (["meson", "setup", bdir, REPO] + opts, ["meson", "compile", "-C", bdir],
                    ["meson", "install", "-C", bdir, "--destdir", out]):
            r = run(cmd, 600)
            if r.returncode != 0:
                fail("%s failed:\n%s" % (" ".join(cmd), (r.stdout + r.stderr)[-4000:]))

        with RootCopy("trixie") as rc:
            env, workdir, user, entry, cmd = {}, "/", None, [], []
            for ins, arg in runtime:
                if ins == "RUN":
                    m = re.search(r"apt-get install (?:-\S+ )*([^&]+)", arg)
                    if not m:
                        fail("unsupported RUN in the runtime stage: " + arg)
                    pkgs = [p for p in m.group(1).split() if not p.startswith("-")]
                    r = rc.run(["dpkg-query", "-W", "-f=${Status}\\n"] + pkgs, 60)
                    if r.returncode != 0 or r.stdout.count("install ok installed") != len(pkgs):
                        skip("the root lacks %s (scripts/make-roots.sh installs them)" % pkgs)
                    print("RUN apt-get install %s: in the root already" % " ".join(pkgs))
                elif ins == "COPY":
                    words = arg.split()
                    frm = [w for w in words if w.startswith("--from=")]
                    src, dst = [w for w in words if not w.startswith("--")]
                    src = os.path.join(out, src.replace("/out/", "", 1).lstrip("/")) if frm else os.path.join(REPO, src)
                    target = rc.path(dst)
                    if os.path.isdir(src):
                        shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
                    else:
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        shutil.copy2(src, target)
                    print("COPY %s %s" % (src, dst))
                elif ins == "ENV":
                    for kv in shlex.split(arg):
                        k, _, v = kv.partition("=")
                        env[k] = v
                elif ins == "WORKDIR":
                    workdir = arg
                    os.makedirs(rc.path(arg), exist_ok=True)
                elif ins == "USER":
                    user = arg
                elif ins == "ENTRYPOINT":
                    entry = json.loads(arg)
                elif ins == "CMD":
                    cmd = json.loads(arg)
            port = free_port()
            cmd = [c.replace("0.0.0.0:8000", "127.0.0.1:%d" % port) for c in cmd]
            if not any("127.0.0.1:%d" % port in c for c in cmd):
                fail("the image's CMD does not bind 0.0.0.0:8000: %s" % cmd)
            ids = rc.run(["sh", "-c", "id -u %s; id -g %s" % (user, user)], 30).stdout.split() if user else []
            if user and len(ids) != 2:
                fail("no user %r in the root" % user)

            def container(argv):
                """argv run as Docker would: in WORKDIR, as USER, with ENV only."""
                full = ["env", "-i"] + ["%s=%s" % kv for kv in sorted(env.items())] + \
                       ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"]
                if ids:
                    full += ["setpriv", "--reuid=" + ids[0], "--regid=" + ids[1], "--clear-groups"]
                return ["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", workdir] + full + argv

            def popen(argv, **kw):
                return rc.popen(argv, **kw)

            print("container: ENTRYPOINT %s CMD %s, USER %s, WORKDIR %s, ENV %s" % (entry, cmd, user, workdir, env))
            log0 = os.path.join(tmp, "plain.log")
            answers = serve_and_query(container(cmd), port, None, log0, requests=1, popen=popen, timeout=8)
            if answers[0][0] == 200:
                fail("without the entry point the worker answered: the app does not reproduce the hang here")
            print("the image's command without the entry point: the first request fails (%s)" % answers[0][1][:60])

            port2 = free_port()
            cmd2 = [c.replace("127.0.0.1:%d" % port, "127.0.0.1:%d" % port2) for c in cmd]
            log = os.path.join(tmp, "container.log")
            answers = serve_and_query(container(entry + cmd2), port2, None, log, requests=10, popen=popen)
            text = open(log).read()
            if any(s != 200 for s, _ in answers):
                fail("with the entry point, requests failed: %s\n%s" % (answers, text[-4000:]))
            print("with the entry point: 10 of 10 requests answered")
            reports = [l for l in text.splitlines() if l.startswith("forksafe[")]
            print("\n".join(l for l in reports if "  File" not in l))
            forked = {int(m.group(1)) for m in (re.search(r"forked child (\d+)", l) for l in reports) if m}
            repaired = {int(l.split("[", 1)[1].split("]", 1)[0]) for l in reports
                        if "repaired semaphore" in l and "'metrics-flusher'" in l}
            served = {int(b.split("from worker ")[1]) for _, b in answers}
            if len(forked) != 2 or not served or not served <= repaired or not repaired <= forked:
                fail("every worker should report its fork, and every worker that answered the repaired RLock "
                     "(forked %s, repaired %s, served by %s):\n%s" % (sorted(forked), sorted(repaired), sorted(served),
                     "\n".join(l for l in text.splitlines() if "  File" not in l)))
            if any("warning" in l for l in reports):
                fail("unexpected warnings from forksafe:\n" + "\n".join(reports))
            print("each worker's report is in the container's log (stderr)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()
