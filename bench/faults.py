# SPDX-License-Identifier: MIT
# Where the page faults of a fork or exec workload are taken, by function, without and with the
# shim: `perf record -e minor-faults -c 1` (every fault is a sample, children followed) of a run
# of N and of 2N iterations on each side; (faults(2N) - faults(N)) / N per function is what one
# operation costs, start-up cancelled, as for the instruction counts in run.py. A companion to
# the page-fault totals of RESULTS.md, for the analysis of a missed budget; not run by run.sh.
#   /usr/bin/python3 bench/faults.py [--build-dir build] [--n 100] [--start] -- CMD ARGS... 
# CMD ARGS may contain {n} (the iterations), e.g.
#   bench/faults.py -- build/bench/bench_fork_threads --threads 0 --iters {n} --reps 1 --no-warmup
#   bench/faults.py --start -- build/bench/bench_exec_start --iters {n} --reps 1 --no-warmup build/bench/bench_trivial
# With --start the side is given to bench_exec_start as --preload SHIM (its parent is never
# preloaded); otherwise the shim's side runs with LD_PRELOAD=SHIM FORKSAFE_LOG=/dev/null.
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "FORKSAFE_")) and k not in ("LD_PRELOAD", "LD_LIBRARY_PATH")}


def faults_by_symbol(argv, env):
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "perf.data")
        p = subprocess.run(["perf", "record", "-q", "-o", data, "-e", "minor-faults", "-c", "1", "--"] + argv,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            sys.exit("perf record %s failed: %s" % (" ".join(argv), p.stderr[-2000:]))
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,sym",
                              "-F", "period,dso,sym"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = {}
    for line in rep.stdout.splitlines():
        m = re.match(r"\s*(\d+)\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$", line)
        if m:
            key = "%s:%s" % (m.group(2), m.group(4))
            out[key] = out.get(key, 0) + int(m.group(1))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--shim", default=None, help="default BUILD/lib/libforksafe.so")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--start", action="store_true", help="CMD is bench_exec_start: the side is --preload")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd or not shutil.which("perf"):
        sys.exit("usage: faults.py [options] -- CMD ARGS ({n} for the iterations); needs perf")
    shim = os.path.abspath(a.shim or os.path.join(a.build_dir, "lib", "libforksafe.so"))
    per = {}
    for side in ("none", "shim"):
        env = clean_env()
        env["FORKSAFE_LOG"] = "/dev/null"
        runs = []
        for n in (a.n, 2 * a.n):
            argv = [x.replace("{n}", str(n)) for x in cmd]
            if side == "shim":
                if a.start:
                    argv = argv[:1] + ["--preload", shim] + argv[1:]
                else:
                    env["LD_PRELOAD"] = shim
            runs.append(faults_by_symbol(argv, env))
        per[side] = {k: (runs[1].get(k, 0) - runs[0].get(k, 0)) / a.n for k in set(runs[0]) | set(runs[1])}
    tot = {s: sum(per[s].values()) for s in per}
    print("minor page faults per operation: without %.1f, with %.1f, added %+.1f" % (
        tot["none"], tot["shim"], tot["shim"] - tot["none"]))
    print("%10s %10s %10s  %s" % ("without", "with", "added", "object:function (where the fault was taken)"))
    keys = sorted(set(per["none"]) | set(per["shim"]),
                  key=lambda k: -abs(per["shim"].get(k, 0) - per["none"].get(k, 0)))
    for k in keys:
        x, y = per["none"].get(k, 0), per["shim"].get(k, 0)
        if max(abs(x), abs(y)) >= 0.1:
            print("%10.2f %10.2f %+10.2f  %s" % (x, y, y - x, k))


if __name__ == "__main__":
    main()
