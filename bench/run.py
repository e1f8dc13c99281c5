# SPDX-License-Identifier: MIT
# Runs every benchmark of bench/README.md without and with the shim (LD_PRELOAD), alternating
# the two in one session, and writes the results as Markdown to bench/RESULTS.md (raw numbers
# and callgrind files go to bench/out/). For each workload: the median of each side, the median
# of the pairwise ratios with their IQR and min-max, the budget target and whether it is met.
# The C micro-benchmarks and the Python lock loop are also counted with callgrind
# (instructions per operation, noise-free). Normally started by bench/run.sh, which builds first.
#   /usr/bin/python3 bench/run.py [--build-dir build] [--only 1,4,8] [--quick] [--output FILE]
import argparse
import datetime
import glob
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
PY = "/usr/bin/python3"          # Debian's interpreter: the one measured in workloads 5-7
IN_ROOT = os.path.join(ROOT, "scripts", "in-root.sh")
ROOTS_DIR = os.environ.get("FORKSAFE_ROOTS_DIR", "/var/tmp/forksafe-roots")
GUNICORN = "/usr/bin/gunicorn"
ANALYSIS_BEGIN = "<!-- analysis:begin -->"
ANALYSIS_END = "<!-- analysis:end -->"

SIDE_LABEL = {
    "none": "without shim",
    "shim": "with shim",
    "off": "with shim, FORKSAFE_MODE=off",
    "empty": "control: an empty library preloaded instead",
    "noreport": "with shim, report not written",
}
EMPTY_LIB = None   # set in main(): build/bench/libbench_empty_preload.so
CG_PREFIX = ""     # "quick." for --quick, so a smoke run keeps the real run's callgrind files


# ---------------------------------------------------------------- helpers

def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def clean_env():
    """The caller's environment without anything that changes what is measured."""
    env = {}
    for k, v in os.environ.items():
        if k.startswith(("PYTHON", "FORKSAFE_")) or k in ("LD_PRELOAD", "LD_LIBRARY_PATH", "PYENV_VERSION"):
            continue
        env[k] = v
    return env


def side_env(side, shim):
    env = clean_env()
    if side == "empty":
        env["LD_PRELOAD"] = EMPTY_LIB
    if side in ("shim", "off", "noreport"):
        env["LD_PRELOAD"] = shim
        env["FORKSAFE_LOG"] = "/dev/null"   # reports are written, but not to a terminal
    if side == "noreport":
        # FORKSAFE_LOG=stderr and no fd 2 (see side_cmd): the shim has no descriptor to write to,
        # so it tracks as usual but returns from the report at once.
        env["FORKSAFE_LOG"] = "stderr"
    if side == "off":
        env["FORKSAFE_MODE"] = "off"
    return env


def side_cmd(side, cmd):
    if side == "noreport":
        return ["sh", "-c", 'exec "$0" "$@" 2>&-'] + cmd
    return cmd


def run_json(cmd, env, timeout=600):
    """Runs cmd, returns the list of JSON objects it printed (one per line)."""
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("%s exited %d:\n%s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    out = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    if not out:
        raise RuntimeError("%s printed no result:\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
    return out


def pair_orders(sides, pairs):
    """A B, B A, A B, ... (or a rotation for three sides): alternating, and drift cancels."""
    for i in range(pairs):
        if len(sides) == 2:
            yield i, (sides if i % 2 == 0 else sides[::-1])
        else:
            k = i % len(sides)
            yield i, sides[k:] + sides[:k]


def quartiles(v):
    v = sorted(v)
    if len(v) == 1:
        return v[0], v[0]
    q = statistics.quantiles(v, n=4, method="inclusive")
    return q[0], q[2]


def summarize(values):
    q1, q3 = quartiles(values)
    return {"median": statistics.median(values), "q1": q1, "q3": q3,
            "min": min(values), "max": max(values), "n": len(values)}


def fmt(x, digits=None):
    if x is None:
        return "n/a"
    if digits is None:
        ax = abs(x)
        digits = 0 if ax >= 1000 else 1 if ax >= 100 else 2 if ax >= 1 else 3
    return "%.*f" % (digits, x)


def fmt_side(s):
    return "%s (IQR %s–%s)" % (fmt(s["median"]), fmt(s["q1"]), fmt(s["q3"]))


def fmt_ratio(s):
    return "**%.3f** (IQR %.3f–%.3f, min–max %.3f–%.3f)" % (s["median"], s["q1"], s["q3"], s["min"], s["max"])


# ---------------------------------------------------------------- measurement

class Measured:
    """Paired runs of one workload: values[side][i] for pair i."""

    def __init__(self, key, title, unit, sides):
        self.key, self.title, self.unit, self.sides = key, title, unit, sides
        self.values = {s: [] for s in sides}
        self.extra = {s: [] for s in sides}   # the whole JSON object of each run

    def side(self, s):
        return summarize(self.values[s])

    def ratio(self, s, base="none"):
        return summarize([b / a for a, b in zip(self.values[base], self.values[s])])

    def diff(self, s, base="none", scale=1.0):
        return summarize([(b - a) * scale for a, b in zip(self.values[base], self.values[s])])


def busy_seconds():
    """CPU time (all CPUs) not idle since boot, steal included, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_watched(cmd, env):
    """run_json, plus how much CPU the rest of the machine used meanwhile, in CPUs (0.5: half of
    one CPU on average), i.e. all busy time minus that of our child."""
    r0, b0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds(), time.monotonic()
    out = run_json(cmd, env)
    r1, b1, t1 = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds(), time.monotonic()
    ours = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return out, max(0.0, (b1 - b0) - ours) / max(t1 - t0, 1e-3)


DISTURBED = 0.30     # other load, in CPUs, above which a pair is run again
MAX_RETRIES = 3      # per pair


def measure(key, title, cmd, sides, pairs, shim, value=lambda o: o["value"], setup=None):
    """`pairs` rounds of one run per side, alternating order. A round during which the rest of the
    machine used more than DISTURBED CPUs is run again (at most MAX_RETRIES times). `setup`, if
    given, is side -> (command, environment), for workloads whose sides differ in their arguments
    (process start: LD_PRELOAD only in the child's environment) rather than in the environment."""
    if setup is None:
        setup = lambda side: (side_cmd(side, cmd), side_env(side, shim))
    m = Measured(key, title, "", sides)
    m.retries, m.other_load = 0, []
    for i, order in pair_orders(sides, pairs):
        for attempt in range(MAX_RETRIES + 1):
            outs, worst = {}, 0.0
            for side in order:
                out, other = run_watched(*setup(side))
                outs[side] = out[0]
                worst = max(worst, other)
            if worst <= DISTURBED or attempt == MAX_RETRIES:
                break
            m.retries += 1
        m.other_load.append(worst)
        for side in sides:
            m.unit = outs[side].get("unit", "")
            m.values[side].append(value(outs[side]))
            m.extra[side].append(dict(outs[side], other_load=round(worst, 3)))
    log("%s: %s (%d rounds re-run)" % (title, ", ".join("%s %s" % (s, fmt(m.side(s)["median"])) for s in sides),
                                      m.retries))
    return m


# ---------------------------------------------------------------- callgrind

def parse_callgrind(path):
    """Total Ir and self Ir per (object, function) of one callgrind output file."""
    names = {"ob": {}, "fn": {}}
    selfcost = {}
    total = 0
    cur_ob = cur_fn = ""
    skip_next = False

    def name(kind, rest):
        m = re.match(r"\((\d+)\)(?: (.*))?", rest)
        if not m:
            return rest
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), "?")

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if skip_next:          # the inclusive cost of a call, not self cost
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) > 1:
                    ir = int(parts[1])
                    selfcost[(cur_ob, cur_fn)] = selfcost.get((cur_ob, cur_fn), 0) + ir
                    total += ir
            elif line.startswith("ob="):
                cur_ob = name("ob", line[3:])
            elif line.startswith("cob="):
                name("ob", line[4:])
            elif line.startswith("fn="):
                cur_fn = name("fn", line[3:])
            elif line.startswith("cfn="):
                name("fn", line[4:])
            elif line.startswith("calls="):
                skip_next = True
    return total, selfcost


def callgrind_run(cmd, env, outdir, tag, fork_dumps=False):
    """Runs cmd under callgrind (--trace-children=yes: exec'd programs are counted too). Returns
    (parent, children, files): parent is (total Ir, self Ir per (object, function)) of the process
    itself; children is (total Ir, self Ir per function, number of children) summed over every
    other process (forked, then perhaps exec'd); files is (parent's files, children's files).
    fork_dumps: --dump-before=_Fork, so that the parent writes (and zeroes) its counts as it enters
    glibc's _Fork and each child's file starts with only the few instructions of _Fork before the
    clone: the child's own run is then counted from the fork on, its fork handlers included (a
    child otherwise inherits all of the parent's counts); and --dump-before=execve, because
    valgrind writes nothing at exec: the child's part before exec is a dump of its own, and the
    exec'd program writes its file under the same pid. A process's files are summed."""
    for old in glob.glob(os.path.join(outdir, "cg.%s.*.out*" % tag)):
        os.unlink(old)
    vg = ["valgrind", "--tool=callgrind", "--quiet", "--trace-children=yes",
          "--callgrind-out-file=" + os.path.join(outdir, "cg.%s.%%p.out" % tag)]
    if fork_dumps:
        vg += ["--dump-before=_Fork", "--dump-before=execve"]
    p = subprocess.Popen(vg + cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=1200)
    if p.returncode != 0:
        raise RuntimeError("callgrind %s exited %d: %s" % (" ".join(cmd), p.returncode, err[-2000:]))
    by_pid = {}
    pat = re.compile(r"cg\.%s\.(\d+)\.out(\.\d+)?$" % re.escape(tag))
    for fpath in sorted(glob.glob(os.path.join(outdir, "cg.%s.*.out*" % tag))):
        mm = pat.search(os.path.basename(fpath))
        if mm:
            by_pid.setdefault(int(mm.group(1)), []).append(fpath)

    def summed(paths):
        total, selfcost = 0, {}
        for fpath in paths:
            t, sc = parse_callgrind(fpath)
            total += t
            for k, v in sc.items():
                selfcost[k] = selfcost.get(k, 0) + v
        return total, selfcost

    parent_files = by_pid.pop(p.pid, [])
    if not parent_files:
        raise RuntimeError("callgrind %s: no output file for pid %d" % (" ".join(cmd), p.pid))
    parent = summed(parent_files)
    kids_total, kids_self = 0, {}
    child_files = []
    for pid, paths in by_pid.items():
        t, sc = summed(paths)
        kids_total += t
        child_files += paths
        for k, v in sc.items():
            kids_self[k] = kids_self.get(k, 0) + v
    return parent, (kids_total, kids_self, len(by_pid)), (parent_files, child_files)


def short_ob(ob):
    return os.path.basename(ob) if ob else "?"


def write_perop_table(path, key, funcs, objs, ops):
    """Per-operation self Ir of every function and object, both sides and the difference."""
    with open(path, "w") as f:
        f.write("# %s: self Ir per operation (N2 - N1 runs, plus the mean child), without -> with the shim.\n"
                "# Written by bench/run.py; a negative difference is work the shim's side did not do.\n\n" % key)
        f.write("## by object\n%14s %14s %14s  %s\n" % ("without", "with", "added", "object"))
        for ob in sorted(set(objs["none"]) | set(objs["shim"]),
                         key=lambda o: -abs(objs["shim"].get(o, 0) - objs["none"].get(o, 0))):
            a, b = objs["none"].get(ob, 0), objs["shim"].get(ob, 0)
            if abs(a) >= 0.05 or abs(b) >= 0.05:
                f.write("%14.1f %14.1f %+14.1f  %s\n" % (a, b, b - a, ob))
        f.write("\n## by function\n%14s %14s %14s  %s\n" % ("without", "with", "added", "object:function"))
        keys = sorted(set(funcs["none"]) | set(funcs["shim"]),
                      key=lambda k: -abs(funcs["shim"].get(k, 0) - funcs["none"].get(k, 0)))
        for k in keys:
            a, b = funcs["none"].get(k, 0), funcs["shim"].get(k, 0)
            if abs(b - a) >= 0.5 or (abs(b) >= 0.5 and "libforksafe" in k[0]):
                f.write("%14.1f %14.1f %+14.1f  %s:%s\n" % (a, b, b - a, short_ob(k[0]), k[1]))


def callgrind_measure(key, cmd_for_iters, n1, n2, shim, outdir, ops_per_iter=1, extra_env=None, setup=None,
                      fork_dumps=False):
    """Instructions per operation from the difference of two runs (n2 - n1 iterations), so that
    start-up (loading, the shim's constructor) cancels; plus, for fork and exec benchmarks, the mean
    cost of one child (all its files: see callgrind_run). Also the shim's own functions, and the
    added instructions per object, per operation. `setup`, if given, is (side, iterations) ->
    (command, environment) (process start: the sides differ in arguments, not environment)."""
    res = {"n1": n1, "n2": n2, "ops_per_iter": ops_per_iter}
    funcs_by_side, objs_by_side = {}, {}
    ops = (n2 - n1) * ops_per_iter
    for side in ("none", "shim"):
        def run(k, tag):
            if setup:
                cmd, env = setup(side, k)
            else:
                cmd, env = cmd_for_iters(k), side_env(side, shim)
            env = dict(env)
            env.update(extra_env or {})
            return callgrind_run(cmd, env, outdir, tag, fork_dumps=fork_dumps)
        (t1, s1), _, _ = run(n1, "%s%s.%s.n1" % (CG_PREFIX, key, side))
        (t2, s2), (kt, ks, nk), (pfiles, kfiles) = run(n2, "%s%s.%s.n2" % (CG_PREFIX, key, side))
        per_op = (t2 - t1) / ops
        funcs = {k: (s2.get(k, 0) - s1.get(k, 0)) / ops for k in set(s1) | set(s2)}
        if nk:       # one child per operation (fork): add the mean child
            per_op += kt / nk
            for k, v in ks.items():
                funcs[k] = funcs.get(k, 0) + v / nk
        objs = {}
        for (ob, fn), v in funcs.items():
            objs[short_ob(ob)] = objs.get(short_ob(ob), 0) + v
        funcs_by_side[side], objs_by_side[side] = funcs, objs
        res[side] = {"total_n2": t2 + kt, "per_op": per_op, "children": nk,
                     "child_per_op": kt / nk if nk else 0, "parent_per_op": (t2 - t1) / ops}
        if side == "shim":
            mine = {k[1]: v for k, v in funcs.items() if "libforksafe" in k[0] and abs(v) >= 0.05}
            res["shim_funcs"] = sorted(mine.items(), key=lambda kv: -kv[1])
            if shutil.which("callgrind_annotate"):
                # the largest file of the parent, and of the children (fork's child, exec'd program)
                for what, paths in (("", pfiles), (".child", kfiles)):
                    if not paths:
                        continue
                    big = max(paths, key=os.path.getsize)
                    ann = subprocess.run(["callgrind_annotate", "--inclusive=no", big],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                    with open(os.path.join(outdir, "%s%s.shim%s.annotate.txt" % (CG_PREFIX, key, what)), "w") as f:
                        f.write(ann.stdout)
    added_obj = {ob: objs_by_side["shim"].get(ob, 0) - objs_by_side["none"].get(ob, 0)
                 for ob in set(objs_by_side["none"]) | set(objs_by_side["shim"])}
    res["added_by_object"] = sorted(((ob, v) for ob, v in added_obj.items() if abs(v) >= 0.5),
                                    key=lambda kv: -abs(kv[1]))
    write_perop_table(os.path.join(outdir, "%s%s.perop.txt" % (CG_PREFIX, key)), key, funcs_by_side,
                      objs_by_side, ops)
    res["added_per_op"] = res["shim"]["per_op"] - res["none"]["per_op"]
    res["ratio"] = res["shim"]["per_op"] / res["none"]["per_op"] if res["none"]["per_op"] else None
    log("callgrind %s: %.1f -> %.1f Ir/op (+%.1f)" % (key, res["none"]["per_op"], res["shim"]["per_op"],
                                                      res["added_per_op"]))
    return res


# ---------------------------------------------------------------- gunicorn + wrk

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(env, port, logpath):
    cmd = [GUNICORN, "-w", "2", "-k", "sync", "-b", "127.0.0.1:%d" % port, "--chdir", BENCH,
           "--log-level", "warning", "--timeout", "60", "wsgi_app:app"]
    err = open(logpath, "w")
    proc = subprocess.Popen(cmd, env=env, stdout=err, stderr=err, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited:\n" + open(logpath).read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)   # waiting for the listener, with a deadline
    stop_gunicorn(proc)
    raise RuntimeError("gunicorn did not start:\n" + open(logpath).read())


def stop_gunicorn(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def tree_cpu_seconds(pid):
    """CPU time used so far by process pid and its direct children (gunicorn: master + workers)."""
    pids = [pid]
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    total = 0.0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def wrk_rps(port, seconds, connections):
    p = subprocess.run(["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds,
                        "http://127.0.0.1:%d/" % port],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=seconds + 60)
    m = re.search(r"Requests/sec:\s*([\d.]+)", p.stdout)
    if p.returncode != 0 or not m:
        raise RuntimeError("wrk failed:\n" + p.stdout)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)
    errs = re.search(r"Socket errors: (.*)", p.stdout)
    return float(m.group(1)), (int(bad.group(1)) if bad else 0), (errs.group(1) if errs else "")


def py_load(port, seconds, connections):
    """Fallback when wrk is absent: `connections` threads doing HTTP/1.0 GETs for `seconds`."""
    import threading
    stop = time.monotonic() + seconds
    counts = [0] * connections

    def worker(i):
        req = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        while time.monotonic() < stop:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(req)
                while s.recv(65536):
                    pass
            counts[i] += 1

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.monotonic() - t0), 0, ""


def measure_gunicorn(shim, pairs, seconds, connections, outdir):
    have_wrk = shutil.which("wrk") is not None
    load = wrk_rps if have_wrk else py_load
    procs, ports = {}, {}
    m = Measured("gunicorn", "gunicorn -w 2 -k sync, requests/s", "req/s", ["none", "shim"])
    problems = []
    try:
        for side in ("none", "shim"):
            ports[side] = free_port()
            procs[side] = start_gunicorn(side_env(side, shim), ports[side],
                                         os.path.join(outdir, "gunicorn.%s.log" % side))
        for side in ("none", "shim"):
            load(ports[side], 1, connections)   # warm-up: workers import and settle
        m.retries, m.other_load = 0, []
        for i, order in pair_orders(["none", "shim"], pairs):
            for attempt in range(MAX_RETRIES + 1):
                got, worst = {}, 0.0
                for side in order:
                    # other load: all busy CPU time minus wrk's (our child) and this server's
                    r0, b0, g0, t0 = (resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds(),
                                      tree_cpu_seconds(procs[side].pid), time.monotonic())
                    rps, bad, errs = load(ports[side], seconds, connections)
                    r1, b1, g1, t1 = (resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds(),
                                      tree_cpu_seconds(procs[side].pid), time.monotonic())
                    ours = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime) + (g1 - g0)
                    worst = max(worst, max(0.0, (b1 - b0) - ours) / (t1 - t0))
                    if bad or errs:
                        problems.append("%s run %d: %d non-2xx, socket errors %s" % (side, i, bad, errs))
                    got[side] = rps
                if worst <= DISTURBED or attempt == MAX_RETRIES:
                    break
                m.retries += 1
            m.other_load.append(worst)
            for side in ("none", "shim"):
                m.values[side].append(got[side])
                m.extra[side].append({"rps": got[side], "other_load": round(worst, 3)})
    finally:
        for p in procs.values():
            stop_gunicorn(p)
    m.tool = "wrk -t1 -c%d -d%ds" % (connections, seconds) if have_wrk else \
        "Python load generator (wrk not installed), %d connections, %d s" % (connections, seconds)
    m.problems = problems
    log("gunicorn: none %s, shim %s req/s" % (fmt(m.side("none")["median"]), fmt(m.side("shim")["median"])))
    return m


# ---------------------------------------------------------------- machine

def limit(which, unit=1):
    soft = resource.getrlimit(which)[0]
    return "unlimited" if soft == resource.RLIM_INFINITY else str(soft // unit)


def read1(path):
    try:
        return open(path).read().strip()
    except OSError:
        return "?"


def machine_info(shim):
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def cmd_out(cmd):
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
            return p.stdout.strip().splitlines()[0] if p.stdout.strip() else "?"
        except (OSError, subprocess.TimeoutExpired):
            return "not installed"

    git = cmd_out(["git", "-C", ROOT, "describe", "--always", "--dirty", "--abbrev=12"])
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(ROOT, "lib", "*"))):
        if os.path.isfile(path):
            h.update(os.path.basename(path).encode() + b"\0" + open(path, "rb").read())
    lib_dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "lib"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "kernel": platform.release(),
        "glibc": os.confstr("CS_GNU_LIBC_VERSION"),
        "python": cmd_out([PY, "-VV"]),
        "gunicorn": cmd_out([PY, "-c", "import gunicorn; print(gunicorn.__version__)"]),
        "wrk": cmd_out(["wrk", "-v"]) if shutil.which("wrk") else "not installed",
        "valgrind": cmd_out(["valgrind", "--version"]) if shutil.which("valgrind") else "not installed",
        "shim": shim,
        "commit": git + (" (lib/ has uncommitted changes; lib/ sources sha256 %s…)" % h.hexdigest()[:12]
                         if lib_dirty else ""),
        "loadavg": open("/proc/loadavg").read().split()[:3],
        "limits": "ulimit -u %s, ulimit -s %s KiB, kernel.threads-max %s, pid_max %s, vm.max_map_count %s" % (
            limit(resource.RLIMIT_NPROC), limit(resource.RLIMIT_STACK, 1024),
            read1("/proc/sys/kernel/threads-max"), read1("/proc/sys/kernel/pid_max"),
            read1("/proc/sys/vm/max_map_count")),
    }


# ---------------------------------------------------------------- the report

def verdict(value, target, op, iqr=None):
    ok = value <= target if op == "<=" else value >= target
    s = "met" if ok else "**MISSED**"
    if iqr is not None:
        lo, hi = iqr
        crosses = (lo <= target <= hi)
        if crosses:
            s += " (borderline: IQR crosses the target)"
    return s, ok


def write_results(path, info, R, args, elapsed):
    L = []
    w = L.append
    w("<!-- SPDX-License-Identifier: MIT -->")
    w("<!-- Generated by bench/run.py; only the Analysis section is written by hand. -->")
    w("# libforksafe benchmark results")
    w("")
    w("Generated by `bench/run.sh` (see [README.md](README.md) for what each workload does and how to "
      "read this). One run = one process, whose figure is the fastest of its timed repetitions. Each "
      "figure below: median over runs; spreads are the interquartile range (IQR) and min–max. Runs "
      "alternate without/with the shim in one session (rounds A B, B A, …); *ratio* is the median of "
      "the per-round ratios with/without. A round during which other processes used more than "
      "%.2f CPU is run again (at most %d times); the last column gives how many rounds were re-run "
      "and the other load during the rounds kept (median, max)." % (DISTURBED, MAX_RETRIES))
    w("")
    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    for k, label in [("date", "date"), ("nproc", "nproc"), ("cpu", "CPU"), ("kernel", "kernel"),
                     ("glibc", "glibc"), ("python", "/usr/bin/python3"), ("gunicorn", "gunicorn"),
                     ("wrk", "wrk"), ("valgrind", "valgrind"), ("shim", "shim measured"),
                     ("commit", "source tree"),
                     ("loadavg", "load average at start"), ("limits", "limits")]:
        v = info[k]
        if isinstance(v, list):
            v = " ".join(v)
        w("| %s | %s |" % (label, str(v).replace("|", "\\|")))
    w("| run | %s rounds per workload (4, 7, 15 and the recorded rows of 11–12: %s; gunicorn: %s × %d s; memory: %s), %.0f s in all |"
      % (args.pairs, args.fork_pairs, args.gunicorn_pairs, args.gunicorn_seconds, args.mem_pairs, elapsed))
    w("")

    # ---- budget summary
    w("## Budget")
    w("")
    w("| # | workload | figure | result | target | verdict |")
    w("|---|---|---|---|---|---|")
    for row in R.get("budget", []):
        w("| %s |" % " | ".join(row))
    w("")

    # ---- timing tables
    w("## Timings")
    w("")
    w("| # | workload | unit | without shim | with shim | ratio with/without | target | rounds re-run / other load (CPUs) |")
    w("|---|---|---|---|---|---|---|---|")
    for row in R.get("timing_rows", []):
        w("| %s |" % " | ".join(row))
    w("")
    for note in R.get("timing_notes", []):
        w("- " + note)
    w("")

    if R.get("callgrind"):
        w("## Instructions (callgrind)")
        w("")
        w("Instructions per operation from `valgrind --tool=callgrind --trace-children=yes`, as the "
          "difference between a run of N2 and one of N1 iterations (start-up cancels), all threads "
          "counted. For fork and exec (4, 10–12), the parent writes its counts as it enters glibc's "
          "`_Fork` (`--dump-before=_Fork`), so each child is counted from the fork on, its fork "
          "handlers included, and a child's part before exec is written at `execve` "
          "(`--dump-before=execve`); the exec'd program (with the shim: loading it, its constructor) "
          "is counted in its own file; the mean child (all its files) is added to the parent's "
          "per-fork figure. User-space instructions only: system calls and page faults are not in "
          "these counts. *Total Ir* is the whole N2 run (children included). Python runs use "
          "PYTHONHASHSEED=0 so that both runs hash alike. The single-threaded loops (1, 5) count the "
          "same on every run; ping-pong and multi-threaded fork depend on how valgrind schedules the "
          "threads (whether a wait blocks), so they vary between runs (fork by a few percent, "
          "ping-pong by more).")
        w("")
        w("| # | workload | N1 → N2 | total Ir (N2) without | total Ir (N2) with | Ir/op without | Ir/op with | added Ir/op | Ir ratio | of which child, without → with |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for num, title, cg, opname in R["callgrind"]:
            kid = ("%s → %s" % (fmt(cg["none"]["child_per_op"]), fmt(cg["shim"]["child_per_op"]))
                   if cg["shim"].get("children") else "—")
            w("| %s | %s | %d → %d | %d | %d | %s | %s | **%s** per %s | %s | %s |" % (
                num, title, cg["n1"], cg["n2"], cg["none"]["total_n2"], cg["shim"]["total_n2"],
                fmt(cg["none"]["per_op"]), fmt(cg["shim"]["per_op"]), fmt(cg["added_per_op"]), opname,
                "%.3f" % cg["ratio"] if cg["ratio"] else "n/a", kid))
        w("")
        w("Added instructions per operation by object (with − without; the shim's work shows in "
          "`libforksafe.so`, loading it in `ld-linux`; per function, both sides: "
          "`bench/out/*.perop.txt`):")
        w("")
        for num, title, cg, opname in R["callgrind"]:
            objs = cg.get("added_by_object", [])[:6]
            w("- %s %s: %s" % (num, title, ", ".join("`%s` %+.1f" % (o, v) for o, v in objs) or "none"))
        w("")
        w("Where the shim's instructions go (self Ir per operation of each `libforksafe` function, "
          "with-shim run, children included; `callgrind_annotate` output of the parent's and of a "
          "child's largest file in `bench/out/*.shim.annotate.txt`, `*.shim.child.annotate.txt`):")
        w("")
        for num, title, cg, opname in R["callgrind"]:
            funcs = cg.get("shim_funcs", [])[:8]
            w("- %s %s: %s" % (num, title, ", ".join("`%s` %s" % (f, fmt(v)) for f, v in funcs) or "none"))
        w("")

    if R.get("mem"):
        mem = R["mem"]
        w("## Memory (VmRSS)")
        w("")
        w("| workload | count | RSS before, without → with (KiB) | RSS after, without → with (KiB) | "
          "growth without (KiB) | growth with (KiB) | shim's cost per item | target |")
        w("|---|---|---|---|---|---|---|---|")
        for row in mem["rows"]:
            w("| %s |" % " | ".join(row))
        w("")
        for note in mem["notes"]:
            w("- " + note)
        w("")

    w("## Analysis")
    w("")
    w(ANALYSIS_BEGIN)
    w(R.get("analysis") or "_No analysis written yet: add it between the analysis markers; "
      "bench/run.py keeps this section when it rewrites the file._")
    w(ANALYSIS_END)
    w("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def old_analysis(path):
    try:
        text = open(path).read()
    except OSError:
        return None
    i, j = text.find(ANALYSIS_BEGIN), text.find(ANALYSIS_END)
    if i < 0 or j < i:
        return None
    return text[i + len(ANALYSIS_BEGIN):j].strip("\n")


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--only", default="", help="comma-separated workload numbers (1-15), default all")
    ap.add_argument("--quick", action="store_true", help="tiny run to check the harness (results not meaningful)")
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--fork-pairs", type=int, default=10)
    ap.add_argument("--gunicorn-pairs", type=int, default=5)
    ap.add_argument("--gunicorn-seconds", type=int, default=5)
    ap.add_argument("--mem-pairs", type=int, default=3)
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--output", default=None, help="default bench/RESULTS.md (bench/out/RESULTS-quick.md with --quick)")
    args = ap.parse_args()
    if args.quick:
        args.pairs = args.fork_pairs = args.mem_pairs = 2
        args.gunicorn_pairs, args.gunicorn_seconds = 1, 1
    only = {int(x) for x in args.only.split(",") if x.strip()} or set(range(1, 16))
    outdir = os.path.join(BENCH, "out")
    os.makedirs(outdir, exist_ok=True)
    output = args.output or (os.path.join(outdir, "RESULTS-quick.md") if args.quick else os.path.join(BENCH, "RESULTS.md"))
    global EMPTY_LIB, CG_PREFIX
    CG_PREFIX = "quick." if args.quick else ""
    shim = os.path.join(os.path.abspath(args.build_dir), "lib", "libforksafe.so")
    bindir = os.path.join(os.path.abspath(args.build_dir), "bench")
    EMPTY_LIB = os.path.join(bindir, "libbench_empty_preload.so")
    if not os.path.exists(shim):
        sys.exit("no shim at %s: build first (bench/run.sh does)" % shim)
    # Measure a private copy: the build directory may be rebuilt by someone else during the run.
    built_shim = shim
    shim = os.path.join(outdir, "libforksafe-quick.so" if args.quick else "libforksafe.so")
    shutil.copy2(os.path.realpath(built_shim), shim + ".tmp")
    os.replace(shim + ".tmp", shim)
    have_vg = shutil.which("valgrind") is not None and not args.no_callgrind

    def c(name):
        return os.path.join(bindir, "bench_" + name)

    def q(argv, quick_argv):
        return quick_argv if args.quick else argv

    info = machine_info(shim)
    info["shim"] = "%s (copy of %s, sha256 %s…, built %s)" % (
        os.path.relpath(shim, ROOT), os.path.relpath(os.path.realpath(built_shim), ROOT),
        hashlib.sha256(open(shim, "rb").read()).hexdigest()[:12],
        datetime.datetime.fromtimestamp(os.path.getmtime(os.path.realpath(built_shim)),
                                        datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    t_start = time.monotonic()
    R = {"budget": [], "timing_rows": [], "timing_notes": [], "callgrind": []}
    raw = {"machine": info, "runs": {}}

    def keep(m):
        raw["runs"][m.key] = {"values": m.values, "runs": m.extra}

    def timing_row(num, m, target_txt, sides=("shim",)):
        base = m.side("none")
        load = getattr(m, "other_load", None)
        watch = ("%d / %.2f (max %.2f)" % (m.retries, statistics.median(load), max(load))) if load else "—"
        for s in sides:
            R["timing_rows"].append([str(num), m.title + ("" if s == "shim" else " — " + SIDE_LABEL[s]), m.unit,
                                     fmt_side(base), fmt_side(m.side(s)), fmt_ratio(m.ratio(s)),
                                     target_txt if s == "shim" else "", watch if s == sides[0] else ""])

    def budget_ratio(num, title, m, target, op, side="shim"):
        r = m.ratio(side)
        v, _ = verdict(r["median"], target, op, (r["q1"], r["q3"]))
        R["budget"].append([str(num), title, "ratio with/without", "%.3f (IQR %.3f–%.3f)" % (r["median"], r["q1"], r["q3"]),
                            "%s %.2f" % ("≤" if op == "<=" else "≥", target), v])

    def budget_info(num, title, m, side):
        r = m.ratio(side)
        R["budget"].append([str(num), title, "ratio with/without",
                            "%.3f (IQR %.3f–%.3f)" % (r["median"], r["q1"], r["q3"]), "—", "info"])

    def fault_note(m, what, field, per):
        flt = {s: statistics.median([o.get(field, 0) for o in m.extra[s]]) for s in m.sides}
        R["timing_notes"].append("%s: minor page faults per %s (parent + child, getrusage, median over runs): %s"
                                 % (what, per, ", ".join("%s %.1f" % (SIDE_LABEL[s], flt[s]) for s in m.sides)))

    fork_noted = []

    def fork_note():
        if fork_noted:
            return
        fork_noted.append(1)
        R["timing_notes"].append("Idle threads for fork: 64 KiB stacks (pthread_attr_setstacksize), each blocked in "
                                 "read(2) on a pipe. With-shim runs use FORKSAFE_LOG=/dev/null: every child of a "
                                 "multi-threaded parent formats and writes its fork report at _exit.")

    def cg_fork(num, threads, exec_, n):
        key = ("forkexec_%d" if exec_ else "fork_%d") % threads
        argv = [c("fork_threads"), "--threads", str(threads)] + (["--exec", c("trivial")] if exec_ else [])
        cg = callgrind_measure(key, lambda k: argv + ["--iters", str(k), "--reps", "1", "--no-warmup"],
                               n, 2 * n, shim, outdir, fork_dumps=True)
        what = "single-threaded" if threads == 0 else "%d idle thread%s" % (threads, "" if threads == 1 else "s")
        R["callgrind"].append((str(num), "fork+%s, %s (parent + children)" % ("exec" if exec_ else "_exit", what),
                               cg, "fork"))
        raw["callgrind_" + key] = cg

    def start_setup(side, argv, prog):
        """Process start: the parent never preloaded; the side is what the child gets."""
        env = clean_env()
        env["FORKSAFE_LOG"] = "/dev/null"
        if side == "off":
            env["FORKSAFE_MODE"] = "off"
        pre = {"none": [], "shim": ["--preload", shim], "off": ["--preload", shim],
               "empty": ["--preload", EMPTY_LIB]}[side]
        return [c("exec_start")] + argv + pre + prog, env

    # 1. sem_trywait + sem_post
    if 1 in only:
        cmd = [c("sem_trywait")] + q([], ["--iters", "20000", "--reps", "1"])
        m = measure("sem_trywait", "sem_trywait+sem_post, uncontended (1 idle extra thread)", cmd,
                    ["none", "shim"], args.pairs, shim)
        keep(m)
        timing_row(1, m, "≤ 3 ns added per call")
        added = m.diff("shim", scale=0.5)   # a pair is two calls
        v, _ = verdict(added["median"], 3.0, "<=", (added["q1"], added["q3"]))
        R["budget"].append(["1", "sem_trywait+sem_post", "ns added per call (pairwise, /2)",
                            "%.2f (IQR %.2f–%.2f)" % (added["median"], added["q1"], added["q3"]), "≤ 3 ns", v])
        if have_vg:
            n = 2000 if args.quick else 100000
            cg = callgrind_measure("sem_trywait", lambda k: [c("sem_trywait"), "--iters", str(k), "--reps", "1",
                                                             "--no-warmup"], n, 2 * n, shim, outdir, ops_per_iter=2)
            R["callgrind"].append(("1", "sem_trywait / sem_post", cg, "call"))
            raw["callgrind_sem_trywait"] = cg
            R["budget"].append(["1", "sem_trywait+sem_post", "instructions added per call (callgrind)",
                                "%.1f Ir (%.1f → %.1f)" % (cg["added_per_op"], cg["none"]["per_op"], cg["shim"]["per_op"]),
                                "—", "info"])

    # 2. ping-pong
    if 2 in only:
        cmd = [c("sem_pingpong")] + q([], ["--iters", "500", "--reps", "1"])
        m = measure("sem_pingpong", "sem_wait/sem_post ping-pong, 2 threads", cmd, ["none", "shim"], args.pairs, shim)
        keep(m)
        timing_row(2, m, "—")
        if have_vg:
            n = 200 if args.quick else 2000
            cg = callgrind_measure("sem_pingpong", lambda k: [c("sem_pingpong"), "--iters", str(k), "--reps", "1",
                                                              "--no-warmup"], n, 2 * n, shim, outdir, ops_per_iter=2)
            R["callgrind"].append(("2", "ping-pong", cg, "hand-off"))
            raw["callgrind_sem_pingpong"] = cg

    # 3. pthread_create + join
    if 3 in only:
        cmd = [c("thread_create")] + q([], ["--iters", "100", "--reps", "1"])
        m = measure("thread_create", "pthread_create + pthread_join", cmd, ["none", "shim", "empty"], args.pairs, shim)
        keep(m)
        timing_row(3, m, "—", sides=["shim", "empty"])
        if have_vg:
            n = 20 if args.quick else 200
            cg = callgrind_measure("thread_create", lambda k: [c("thread_create"), "--iters", str(k), "--reps", "1",
                                                               "--no-warmup"], n, 2 * n, shim, outdir)
            R["callgrind"].append(("3", "pthread_create + join", cg, "thread"))
            raw["callgrind_thread_create"] = cg

    # 4. fork with idle threads
    if 4 in only:
        for threads, iters in ((10, 100), (100, 60), (1000, 12)):
            sides = ["none", "shim", "noreport", "off"] if threads == 100 else ["none", "shim"]
            cmd = [c("fork_threads"), "--threads", str(threads)] + \
                q(["--iters", str(iters)], ["--iters", "5", "--reps", "1"])
            m = measure("fork_%d" % threads, "fork+_exit+waitpid, %d idle threads" % threads, cmd, sides,
                        args.fork_pairs, shim)
            keep(m)
            timing_row(4, m, "ratio ≤ 1.20" if threads == 100 else "—", sides=[s for s in sides if s != "none"])
            if threads == 100:
                budget_ratio(4, "fork, 100 idle threads", m, 1.20, "<=")
                for side in ("noreport", "off"):
                    budget_info(4, "fork, 100 idle threads, " + SIDE_LABEL[side], m, side)
            fault_note(m, "fork+_exit, %d idle threads" % threads, "minflt_per_fork", "fork")
        fork_note()
        if have_vg:
            cg_fork(4, 100, False, 5 if args.quick else 20)

    R["timing_notes"].append("Extra sides: *%s* loads the shim with its wrappers passing straight through (no "
                             "tracking, no reports); *%s* tracks as usual but has no descriptor to write the "
                             "report to (FORKSAFE_LOG=stderr, fd 2 closed), so fork report formatting and writing "
                             "are left out; *%s* (bench/empty_preload.c) shows what preloading any library "
                             "costs, apart from the shim's code." % (SIDE_LABEL["off"], SIDE_LABEL["noreport"],
                                                                      SIDE_LABEL["empty"]))

    # 5-7. Python
    pyenv_note = "Python workloads run %s with every PYTHON* variable removed from the environment." % PY
    if 5 in only:
        cmd = [PY, os.path.join(BENCH, "py_locks.py")] + q([], ["--iters", "20000", "--reps", "1"])
        m = measure("py_locks", "Python Lock+RLock acquire/release loop", cmd, ["none", "shim", "off"], args.pairs,
                    shim)
        keep(m)
        timing_row(5, m, "ratio ≤ 1.02", sides=["shim", "off"])
        budget_ratio(5, "Python Lock+RLock loop", m, 1.02, "<=")
        r = m.ratio("off")
        R["budget"].append(["5", "Python Lock+RLock loop, " + SIDE_LABEL["off"], "ratio with/without",
                            "%.3f (IQR %.3f–%.3f)" % (r["median"], r["q1"], r["q3"]), "—", "info"])
        R["timing_notes"].append("Python lock loop: one iteration is Lock acquire+release and RLock acquire+release, "
                                 "i.e. 2 sem_trywait + 2 sem_post. " + pyenv_note)
        if have_vg:
            n = 2000 if args.quick else 20000
            cg = callgrind_measure("py_locks", lambda k: [PY, os.path.join(BENCH, "py_locks.py"), "--iters", str(k),
                                                          "--reps", "1", "--no-warmup"], n, 3 * n, shim, outdir,
                                   extra_env={"PYTHONHASHSEED": "0"})   # same dict layouts in every run
            R["callgrind"].append(("5", "Python Lock+RLock loop", cg, "iteration (4 calls)"))
            raw["callgrind_py_locks"] = cg
    if 6 in only:
        cmd = [PY, os.path.join(BENCH, "py_threads.py")] + q([], ["--iters", "50", "--reps", "1"])
        m = measure("py_threads", "Python Thread start+join", cmd, ["none", "shim", "off", "empty"], args.pairs, shim)
        keep(m)
        timing_row(6, m, "ratio ≤ 1.10", sides=["shim", "off", "empty"])
        budget_ratio(6, "Python Thread start+join", m, 1.10, "<=")
        for side in ("off", "empty"):
            r = m.ratio(side)
            R["budget"].append(["6", "Python Thread start+join, " + SIDE_LABEL[side], "ratio with/without",
                                "%.3f (IQR %.3f–%.3f)" % (r["median"], r["q1"], r["q3"]), "—", "info"])
    if 7 in only:
        cmd = [PY, os.path.join(BENCH, "py_fork.py")] + q([], ["--iters", "5", "--reps", "1"])
        pyaware = (os.path.exists(os.path.join(ROOT, "lib", "python.c")) or
                   os.path.isdir(os.path.join(ROOT, "lib", "python")))
        label = ("shim with the Python-aware report" if pyaware else "shim as built: no Python-aware report yet")
        m = measure("py_fork", "Python os.fork, 100 idle threads (%s)" % label, cmd,
                    ["none", "shim", "off"], args.fork_pairs, shim)
        keep(m)
        timing_row(7, m, "ratio ≤ 1.20", sides=["shim", "off"])
        budget_ratio(7, "Python os.fork, 100 threads", m, 1.20, "<=")
        r = m.ratio("off")
        R["budget"].append(["7", "Python os.fork, 100 threads, " + SIDE_LABEL["off"], "ratio with/without",
                            "%.3f (IQR %.3f–%.3f)" % (r["median"], r["q1"], r["q3"]), "—", "info"])
        R["timing_notes"].append("Python fork: 100 threads with threading.stack_size(256 KiB), blocked in os.read on "
                                 "a pipe; child os._exit(0), parent os.waitpid. Measured with the shim as built "
                                 "from %s: %s." % (info["commit"], "lib/python present, so each child's report "
                                 "includes the Python names and stacks of the lost threads" if pyaware else
                                 "no Python-aware report yet; re-run when it lands"))
        fault_note(m, "Python os.fork, 100 idle threads", "minflt_per_fork", "fork")

    # 8. gunicorn
    if 8 in only:
        if not os.path.exists(GUNICORN):
            R["timing_notes"].append("gunicorn: %s not found, skipped." % GUNICORN)
        else:
            m = measure_gunicorn(shim, args.gunicorn_pairs, args.gunicorn_seconds, 4, outdir)
            keep(m)
            timing_row(8, m, "ratio ≥ 0.98")
            budget_ratio(8, "gunicorn throughput", m, 0.98, ">=")
            R["timing_notes"].append("gunicorn: `gunicorn -w 2 -k sync` serving bench/wsgi_app.py on 127.0.0.1 (a free "
                                     "port), both servers started once, load by %s alternating between them "
                                     "after a 1 s warm-up each." % m.tool)
            for p in m.problems:
                R["timing_notes"].append("gunicorn problem: " + p)

    # 9. memory
    if 9 in only:
        nthreads = 200 if args.quick else 10000
        nsems = 20000 if args.quick else 1000000
        mem = {"rows": [], "notes": []}
        for kind, count, argv, per, target in (
                ("threads", nthreads, [c("mem"), "threads", "--threads", str(nthreads)], "thread", None),
                ("sems", nsems, [c("mem"), "sems", "--iters", str(nsems)], "semaphore", 1.0)):
            vals = {"none": [], "shim": []}
            for i, order in pair_orders(["none", "shim"], args.mem_pairs):
                for side in order:
                    vals[side].append(run_json(argv, side_env(side, shim))[0])
            raw["runs"]["mem_" + kind] = vals
            med = lambda side, k: statistics.median([o[k] for o in vals[side]])
            grow = {s: statistics.median([o["rss_after_kib"] - o["rss_before_kib"] for o in vals[s]]) for s in vals}
            per_item = [((b["rss_after_kib"] - b["rss_before_kib"]) - (a["rss_after_kib"] - a["rss_before_kib"]))
                        * 1024.0 / count for a, b in zip(vals["none"], vals["shim"])]
            pi = summarize(per_item)
            if target is None:
                tgt, vd = "—", "info"
            else:
                tgt = "no growth with N (≤ %.0f B per %s)" % (target, per)
                vd, _ = verdict(pi["median"], target, "<=")
            title = ("%d threads, 64 KiB stacks, blocked in read(2)" % count if kind == "threads" else
                     "%d semaphores, sem_init(s, 0, 1) in one malloc'd array, each taken and released once" % count)
            mem["rows"].append([title, str(count),
                                "%d → %d" % (med("none", "rss_before_kib"), med("shim", "rss_before_kib")),
                                "%d → %d" % (med("none", "rss_after_kib"), med("shim", "rss_after_kib")),
                                "%d" % grow["none"], "%d" % grow["shim"],
                                "**%.1f B** per %s (min–max %.1f–%.1f)" % (pi["median"], per, pi["min"], pi["max"]),
                                tgt])
            R["budget"].append(["9", "memory, %d %ss" % (count, per), "RSS added per %s" % per,
                                "%.1f B (min–max %.1f–%.1f)" % (pi["median"], pi["min"], pi["max"]), tgt, vd])
            log("memory %s: growth none %d KiB, shim %d KiB, %.1f B per %s" % (kind, grow["none"], grow["shim"],
                                                                              pi["median"], per))
        mem["notes"].append("%d alternating pairs of processes per row; *growth* is VmRSS after minus before "
                            "creating the threads or semaphores in the same process; the shim's cost per item is the "
                            "median over pairs of (growth with − growth without) / count. *RSS before* includes "
                            "the shim's fixed cost (its pages and the first registry slot)." % args.mem_pairs)
        R["mem"] = mem

    # 10. fork + _exit from a process with 0 or 1 idle thread: nothing to record, nothing to report
    if 10 in only:
        for threads, target, sides in ((0, 1.05, ["none", "shim", "off", "empty"]), (1, 1.15, ["none", "shim"])):
            cmd = [c("fork_threads"), "--threads", str(threads)] + \
                q(["--iters", "300"], ["--iters", "5", "--reps", "1"])
            title = ("fork+_exit+waitpid, single-threaded" if threads == 0 else
                     "fork+_exit+waitpid, 1 idle thread (report written)")
            m = measure("fork_%d" % threads, title, cmd, sides, args.pairs, shim)
            keep(m)
            timing_row(10, m, "ratio ≤ %.2f" % target, sides=[s for s in sides if s != "none"])
            budget_ratio(10, "fork+_exit, %s" % ("single-threaded" if threads == 0 else "1 idle thread"), m,
                         target, "<=")
            for side in sides[2:]:
                budget_info(10, "fork+_exit, single-threaded, " + SIDE_LABEL[side], m, side)
            fault_note(m, "fork+_exit, %d idle thread%s" % (threads, "" if threads == 1 else "s"),
                       "minflt_per_fork", "fork")
        fork_note()
        if have_vg:
            for threads in (0, 1):
                cg_fork(10, threads, False, 5 if args.quick else 20)

    # 11. fork + exec of a trivial program (which loads the shim too) + waitpid
    if 11 in only:
        for threads, iters, target, sides, pairs in ((0, 100, 1.05, ["none", "shim", "off", "empty"], args.pairs),
                                                     (1, 100, None, ["none", "shim"], args.fork_pairs),
                                                     (100, 50, None, ["none", "shim"], args.fork_pairs)):
            cmd = [c("fork_threads"), "--threads", str(threads), "--exec", c("trivial")] + \
                q(["--iters", str(iters)], ["--iters", "5", "--reps", "1"])
            what = "single-threaded" if threads == 0 else "%d idle thread%s" % (threads, "" if threads == 1 else "s")
            m = measure("forkexec_%d" % threads, "fork+exec(trivial)+waitpid, " + what, cmd, sides, pairs, shim)
            keep(m)
            timing_row(11, m, "ratio ≤ %.2f" % target if target else "—", sides=[s for s in sides if s != "none"])
            if target:
                budget_ratio(11, "fork+exec, " + what, m, target, "<=")
                for side in sides[2:]:
                    budget_info(11, "fork+exec, %s, %s" % (what, SIDE_LABEL[side]), m, side)
            else:
                budget_info(11, "fork+exec, " + what, m, "shim")
            fault_note(m, "fork+exec, " + what, "minflt_per_fork", "fork (the exec'd program's included)")
        R["timing_notes"].append("fork+exec: the child execv()s build/bench/bench_trivial (main returns 0) with the "
                                 "parent's environment, so with the shim it loads the shim too (and its "
                                 "constructor runs); a fork directly followed by exec writes no report.")
        if have_vg:
            for threads in (0, 1, 100):
                cg_fork(11, threads, True, 3 if args.quick else 10)

    # 12. process start: fork+execve from a parent that is not preloaded, LD_PRELOAD only in the child
    if 12 in only:
        for key, title, prog, iters, target, sides, pairs in (
                ("start_trivial", "process start: exec of a trivial C program", [c("trivial")], 100, 1.05,
                 ["none", "shim", "off", "empty"], args.pairs),
                ("start_python", "process start: %s -c pass" % PY, [PY, "-c", "pass"], 10, None,
                 ["none", "shim"], args.fork_pairs)):
            argv = q(["--iters", str(iters)], ["--iters", "3", "--reps", "1"])
            m = measure(key, title, None, sides, pairs, shim, setup=lambda side: start_setup(side, argv, prog))
            keep(m)
            timing_row(12, m, "ratio ≤ %.2f" % target if target else "—", sides=[s for s in sides if s != "none"])
            short = "process start, " + ("trivial C program" if key == "start_trivial" else "python3 -c pass")
            if target:
                budget_ratio(12, short, m, target, "<=")
                for side in sides[2:]:
                    budget_info(12, "%s, %s" % (short, SIDE_LABEL[side]), m, side)
            else:
                budget_info(12, short, m, "shim")
            fault_note(m, short, "minflt_per_start", "start")
        R["timing_notes"].append("Process start: build/bench/bench_exec_start, itself never preloaded, fork()s and "
                                 "execve()s the program with LD_PRELOAD (the shim, or the empty library) only in "
                                 "the child's environment; every side runs the same program with FORKSAFE_LOG=/dev/null "
                                 "(and FORKSAFE_MODE=off for that side). µs per start: fork + execve + the "
                                 "program's whole run + waitpid.")
        if have_vg:
            n = 3 if args.quick else 10
            cg = callgrind_measure("start_trivial", None, n, 2 * n, shim, outdir, fork_dumps=True,
                                   setup=lambda side, k: start_setup(side, ["--iters", str(k), "--reps", "1",
                                                                            "--no-warmup"], [c("trivial")]))
            R["callgrind"].append(("12", "process start, trivial C program (parent + children)", cg, "start"))
            raw["callgrind_start_trivial"] = cg
            n = 1 if args.quick else 2
            cg = callgrind_measure("start_python", None, n, 2 * n, shim, outdir, fork_dumps=True,
                                   extra_env={"PYTHONHASHSEED": "0"},
                                   setup=lambda side, k: start_setup(side, ["--iters", str(k), "--reps", "1",
                                                                            "--no-warmup"], [PY, "-c", "pass"]))
            R["callgrind"].append(("12", "process start, python3 -c pass (parent + children)", cg, "start"))
            raw["callgrind_start_python"] = cg

    # 13. pthread_mutex_lock + unlock, uncontended: in a process that has not forked, and in a forked child
    if 13 in only:
        for mode, key, title in (([], "mutex_pair", "pthread_mutex_lock+unlock, uncontended (1 idle extra thread)"),
                                 (["child"], "mutex_pair_child", "pthread_mutex_lock+unlock in a forked child "
                                  "(1 thread lost at the fork)")):
            cmd = [c("mutex_pair")] + mode + q([], ["--iters", "20000", "--reps", "1"])
            # a nanosecond on a ~7 ns pair: 15 rounds cannot resolve it; these runs take 0.3 s each
            m = measure(key, title, cmd, ["none", "shim"], max(args.pairs, 41), shim)
            keep(m)
            timing_row(13, m, "≤ +1 ns per pair" if not mode else "—")
            added = m.diff("shim")
            short = "pthread mutex lock+unlock" + (", in a forked child" if mode else "")
            if not mode:
                v, _ = verdict(added["median"], 1.0, "<=", (added["q1"], added["q3"]))
                R["budget"].append(["13", short, "ns added per pair (pairwise)",
                                    "%.2f (IQR %.2f–%.2f)" % (added["median"], added["q1"], added["q3"]), "≤ 1 ns", v])
            else:
                R["budget"].append(["13", short, "ns added per pair (pairwise)",
                                    "%.2f (IQR %.2f–%.2f)" % (added["median"], added["q1"], added["q3"]), "—", "info"])
            if have_vg and not mode:   # (the child mode's loop runs in a child: not this harness's n2 - n1)
                n = 2000 if args.quick else 100000
                cg = callgrind_measure(key, lambda k: [c("mutex_pair"), "--iters", str(k), "--reps", "1",
                                                       "--no-warmup"], n, 2 * n, shim, outdir)
                R["callgrind"].append(("13", short, cg, "pair"))
                raw["callgrind_" + key] = cg
                R["budget"].append(["13", short, "instructions added per pair (callgrind)",
                                    "%.1f Ir (%.1f → %.1f)" % (cg["added_per_op"], cg["none"]["per_op"],
                                                                cg["shim"]["per_op"]), "—", "info"])
        R["timing_notes"].append("pthread mutexes: bench_mutex_pair locks and unlocks one normal mutex; in the child "
                                 "mode the loop runs in a child of fork() whose parent had an idle thread (a "
                                 "pre-forking server's worker), where the wrappers also look at the lock's owner.")

    # 14. the GIL handed back and forth between two Python threads
    if 14 in only:
        cmd = [PY, os.path.join(BENCH, "py_gil.py")] + q([], ["--iters", "20000", "--reps", "1"])
        m = measure("py_gil", "Python GIL ping-pong: 2 threads, switch interval 5 µs", cmd, ["none", "shim"],
                    args.pairs, shim)
        keep(m)
        timing_row(14, m, "ratio ≤ 1.03")
        budget_ratio(14, "Python GIL ping-pong", m, 1.03, "<=")

    # 15. current Pythons (3.13: Debian 13; 3.14: Debian unstable), inside the roots of
    # scripts/make-roots.sh: os.fork with 100 threads 50 frames deep, each holding a Lock in a
    # `with` block (the frames the shim reads at each fork), and the child's repair of all 100.
    if 15 in only:
        for root in ("trixie", "sid"):
            if not os.path.exists(os.path.join(ROOTS_DIR, root, "usr", "bin", "python3")):
                R["timing_notes"].append("Workload 15 (%s): no root at %s (scripts/make-roots.sh), skipped."
                                         % (root, os.path.join(ROOTS_DIR, root)))
                continue
            base = [IN_ROOT, root, "--", "python3", os.path.join(BENCH, "py_fork.py"), "--depth", "50", "--held"]
            base += q([], ["--iters", "5", "--reps", "1"])
            m = measure("py_fork_root_" + root, "Python os.fork in %s, 100 threads 50 frames deep holding Locks" % root,
                        base, ["none", "shim"], args.fork_pairs, shim)
            keep(m)
            timing_row(15, m, "ratio ≤ 1.5")
            budget_ratio(15, "Python os.fork in %s, 100 threads, depth 50" % root, m, 1.5, "<=")
            t = measure("py_fork_root_%s_takes" % root, "the same, the child taking all 100 Locks (%s)" % root,
                        base + ["--child-takes"], ["shim"], args.fork_pairs, shim)
            keep(t)
            work = summarize([b - a for a, b in zip(m.values["shim"], t.values["shim"])])
            R["budget"].append(["15", "child's repair of 100 Locks (%s), µs per child" % root, "added to a fork with the shim",
                                "%.0f (IQR %.0f–%.0f), %.1f µs per Lock" % (work["median"], work["q1"], work["q3"],
                                                                        work["median"] / 100), "—", "info"])
            R["timing_notes"].append("Workload 15 (%s): bench/py_fork.py --depth 50 --held run inside the root with "
                                     "scripts/in-root.sh; each of 100 threads (256 KiB stacks) holds its own Lock in a "
                                     "`with` block 50 frames deep, blocked in os.read. The repair row runs the same with "
                                     "--child-takes (the child acquires every Lock: 100 repairs; without the shim it "
                                     "would hang, so it is measured with the shim only) and subtracts the plain "
                                     "fork with the shim, round by round." % root)

    elapsed = time.monotonic() - t_start
    R["analysis"] = old_analysis(output)
    write_results(output, info, R, args, elapsed)
    default_output = os.path.join(BENCH, "RESULTS.md")
    json_path = (os.path.join(outdir, "results.json") if os.path.abspath(output) == default_output
                 else os.path.splitext(output)[0] + ".json")
    with open(json_path, "w") as f:
        json.dump(raw, f, indent=1, default=str)
    log("wrote %s (%.0f s)" % (output, elapsed))


if __name__ == "__main__":
    main()
