# SPDX-License-Identifier: MIT
# CPython's own regression suite (Lib/test) without and with the shim, compared test by test.
#
#   compare_regrtest.py --interp pyenv:3.8|PATH --shim libforksafe.so [--modules test_os,...]
#                       [--reports log|stderr] [--known known_differences.txt] [--reruns 3] [--keep DIR]
#
# This file owns: running `python -m test -v MODULE` (2.7: `-m test.regrtest`) with bounded time,
# parsing the per-test outcomes of the -v output, telling noise from differences, and matching the
# differences against the known-differences file. For each module:
#   1. run it without the shim, then with LD_PRELOAD=shim (reports to a temporary file, or left on
#      stderr with --reports stderr). A run cut off by a hang or crash is resumed with the tests it
#      did not reach (--matchfile), so one hang does not hide the rest of the module;
#   2. if some tests differ, the module runs once more each way: a test whose two runs with the
#      shim and two without share an outcome is not a difference (a disturbed run). The others
#      are rerun alone, --reruns times each way: a test whose outcome varies without the shim,
#      and which shows nothing new with it, is noise;
#   3. every other difference must match an `explained` line of the known-differences file.
#      A `bug` line names it but still fails, until the bug is fixed and the line deleted.
# Outcomes: ok, FAIL, ERROR, skipped, expected failure, unexpected success; hang (cut off by a
# timeout), crash (the run ended without finishing the test), missing (never run), unknown.
# Exit status: 0 every difference explained, 1 otherwise, 77 interpreter or every module absent.
import argparse
import collections
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from forksafe_test import IN_ROOT, preload, resolve, root_path

SKIP = 77
MODULES = ["test_threading", "test_thread", "test_fork1", "test_os", "test_logging", "test_queue",
           "test_subprocess", "test_concurrent_futures"]
HERE = os.path.dirname(os.path.abspath(__file__))
START = re.compile(r"^(?:\d+\.\d+s )?(\w+) \((test\.[\w.]+)\)")  # "test_x (test.mod.Cls[.test_x])"
OUTCOME = re.compile(r"^(?:\d+\.\d+s )?(ok|FAIL|ERROR|expected failure|unexpected success|skipped\b.*)$")
HEADING = re.compile(r"^(FAIL|ERROR|UNEXPECTED SUCCESS): (\w+) \((test\.[\w.]+)\)")
FIXTURES = ("setUpClass", "tearDownClass", "setUpModule", "tearDownModule")

Run = collections.namedtuple("Run", "outcomes order seconds reports")


def test_id(name, where):
    full = where if where.endswith("." + name) else where + "." + name
    return full[len("test."):]


def parse(out, cut_off):
    """Per-test outcomes of regrtest -v output. cut_off: 'hang' or 'crash' if the run ended early."""
    outcomes, order, pending, finished_after = {}, [], None, False
    for line in out.splitlines():
        m = START.match(line)
        if m:
            pending = test_id(m.group(1), m.group(2))
            if pending not in outcomes:
                order.append(pending)
            outcomes[pending] = None
            finished_after = False
            line = line.split(" ... ", 1)[1] if " ... " in line else ""
        elif pending and " ... " in line and not OUTCOME.match(line):
            line = line.split(" ... ", 1)[1]          # a docstring line: "Summary ... ok"
        o = OUTCOME.match(line.strip())
        if pending and o:
            outcomes[pending] = "skipped" if o.group(1).startswith("skipped") else o.group(1)
            pending = None
        if re.match(r"^Ran \d+ tests? in ", line):
            finished_after = True
        h = HEADING.match(line)
        if h:
            tid = test_id(h.group(2), h.group(3))
            if tid not in outcomes:
                order.append(tid)
            outcomes[tid] = {"UNEXPECTED SUCCESS": "unexpected success"}.get(h.group(1), h.group(1))
    for tid in order:
        if outcomes[tid] is None:
            outcomes[tid] = cut_off if (cut_off and not finished_after and tid == order[-1]) else "unknown"
    return outcomes, order


def run_regrtest(py, version, module, env, timeout, workdir, tag, match=None):
    """One regrtest process, bounded by regrtest's --timeout (3.x) and an outer timeout."""
    cmd = py + ["-m", "test.regrtest" if version < (3,) else "test", "-v"]
    if version >= (3,):
        cmd += ["--timeout", str(int(timeout))]
    if match:
        matchfile = os.path.join(workdir, tag + ".match")
        with open(matchfile, "w") as f:
            f.write("\n".join(match) + "\n")
        cmd += ["--matchfile", matchfile]
    cmd.append(module)
    out_path, err_path = (os.path.join(workdir, tag + ext) for ext in (".out", ".err"))
    start, cut_off = time.time(), None
    with open(out_path, "w") as out, open(err_path, "w") as err:
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             start_new_session=True, cwd=workdir)
        try:
            p.wait(timeout + 30 if version >= (3,) else timeout)   # 2.7: no --timeout of its own
        except subprocess.TimeoutExpired:
            cut_off = "hang"
        finally:
            try:
                os.killpg(p.pid, signal.SIGKILL)   # the run, and whatever its tests left behind
            except OSError:
                pass
            p.wait()
    seconds = time.time() - start
    with open(out_path, errors="replace") as f:
        text = f.read()
    with open(err_path, errors="replace") as f:
        err_text = f.read()
    if not cut_off and re.search(r"^Timeout \(\d+:\d\d:\d\d\)!", err_text + text, re.M):
        cut_off = "hang"                            # regrtest's faulthandler timeout
    outcomes, order = parse(text, cut_off or "crash")   # a test left unfinished otherwise: crash
    return outcomes, order, seconds, err_text


TEXT_EVENTS = [("fork", r"forked child"), ("lock_repaired", r"repaired "), ("exit", r"ends \("),
               ("exec", r"execs? "), ("threads", r"\d+ threads \(FORKSAFE_THREADS_WARN")]


def count_reports(counts, logdir=None, err_text=""):
    """Adds the reports of a run to counts: events, and the threads an exit report names
    ('exit: NAME'), from the JSON log files (emptied) or from text reports on stderr."""
    for name in os.listdir(logdir) if logdir else []:
        with open(os.path.join(logdir, name), errors="replace") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    counts["(not json)"] += 1
                    continue
                counts[e.get("event", "?")] += 1
                for t in e.get("threads", []) if e.get("event") in ("exit", "exec") else []:
                    counts["%s: %s" % (e["event"], re.sub(r"\d+", "N", t.get("python_name") or t["name"]))] += 1
        os.unlink(os.path.join(logdir, name))
    for line in err_text.splitlines():
        m = re.match(r"forksafe\[\d+\]: (?:process \d+ )?(.*)", line)
        for event, pattern in TEXT_EVENTS if m else []:
            if re.match(pattern, m.group(1)):
                counts[event] += 1


class Side:
    """Runs regrtest without or with the shim (reports to a log directory, or left on stderr)."""

    def __init__(self, args, py, version, shim, workdir):
        self.args, self.py, self.version, self.workdir = args, py, version, workdir
        self.logdir = os.path.join(workdir, "reports")
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("LD_PRELOAD", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP",
                                 "PYTHONWARNINGS", "PYTHONUNBUFFERED")
                    and not (k.startswith("FORKSAFE_") and k != "FORKSAFE_ROOTS_DIR")}
        self.env["TMPDIR"] = os.path.join(workdir, "tmp")
        for d in (self.logdir, self.env["TMPDIR"]):
            os.makedirs(d, exist_ok=True)
        self.shim_env = dict(self.env, LD_PRELOAD=preload(shim))
        if args.reports == "log":
            self.shim_env.update(FORKSAFE_FORMAT="json",
                                 FORKSAFE_LOG=os.path.join(self.logdir, "forksafe-%p.jsonl"))
        self.count = 0

    def list_cases(self, module):
        cmd = self.py + ["-m", "test.regrtest" if self.version < (3,) else "test", "--list-cases", module]
        out = subprocess.run(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=120, universal_newlines=True, cwd=self.workdir).stdout
        return [line[len("test."):] for line in out.split() if line.startswith("test.")]

    def run(self, module, shim, timeout, cases, match=None):
        """A complete run. A module run cut off by a hang or crash is resumed (3 times at most)
        with the listed cases it did not reach; a rerun of one test (match) is not."""
        outcomes, order, seconds, owed, reports = {}, [], 0.0, match, collections.Counter()
        for _ in range(4):
            self.count += 1
            tag = "%s-%s-%d" % (module, "with" if shim else "without", self.count)
            o, run_order, s, err_text = run_regrtest(self.py, self.version, module,
                                                     self.shim_env if shim else self.env,
                                                     timeout, self.workdir, tag, owed)
            seconds += s
            if shim:
                count_reports(reports, self.logdir if self.args.reports == "log" else None, err_text)
            outcomes.update(o)
            order += [t for t in run_order if t not in order]
            if match or not any(o[t] in ("hang", "crash") for t in run_order):
                break
            owed = ["test." + t for t in cases if t not in outcomes]
            if not owed:
                break
        return Run(outcomes, order, seconds, dict(reports))


def rerun_pattern(tid):
    parts = tid.split(".")
    if parts[-1] in FIXTURES:
        return "test." + ".".join(parts[:-1]) + ".*"
    return "test." + tid


def classify(without, with_):
    """From every outcome each way (two module runs, then reruns alone): 'once' if a module
    run with the shim agreed with one without; 'noise' if the test varies without the shim and
    shows nothing new with it; else a 'consistent' or 'intermittent' difference."""
    w, s = set(without), set(with_)
    if set(without[:2]) & set(with_[:2]):
        return "once"
    if len(w) > 1 and s <= w:
        return "noise"
    return "consistent" if len(w) == 1 and len(s) == 1 else "intermittent"


def load_known(path):
    entries = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            kind, interps, mode, tid, reason = (line.split(None, 4) + [""])[:5]
            if kind not in ("explained", "bug") or mode not in ("log", "stderr", "*"):
                sys.exit("%s:%d: want `explained|bug INTERPRETERS log|stderr|* TEST_ID REASON`" % (path, n))
            entries.append(dict(kind=kind, interps=interps.split(","), mode=mode, tid=tid,
                                reason=reason, line=n, used=False))
    return entries


def applies(entry, v, mode):
    return entry["mode"] in ("*", mode) and any(i == "*" or v == i or v.startswith(i + ".")
                                                for i in entry["interps"])


def find_known(entries, v, mode, tid):
    for e in entries:
        if applies(e, v, mode) and fnmatch.fnmatchcase(tid, e["tid"]):
            e["used"] = True
            return e
    return None


def main():
    ap = argparse.ArgumentParser(description="CPython's regression tests without and with the shim, compared")
    ap.add_argument("--interp", help="a path, debian, or pyenv:X.Y (see resolve() in tests/lib/forksafe_test.py)")
    ap.add_argument("--root", help="instead: python3 inside this Debian root (scripts/make-roots.sh), "
                                   "run through scripts/in-root.sh; its libpython3.X-testsuite package")
    ap.add_argument("--shim", required=True)
    ap.add_argument("--modules", default=",".join(MODULES))
    ap.add_argument("--reports", choices=("log", "stderr"), default="log",
                    help="log: reports to a temporary file; stderr: left on stderr, where the tests see them")
    ap.add_argument("--known", default=os.path.join(HERE, "known_differences.txt"))
    ap.add_argument("--reruns", type=int, default=3, help="reruns of each differing test, each way")
    ap.add_argument("--timeout", type=int, default=600, help="seconds for a module run without the shim")
    ap.add_argument("--test-timeout", type=int, default=60, help="seconds for a rerun of one test")
    ap.add_argument("--keep", help="keep every run's output in this directory")
    args = ap.parse_args()
    if bool(args.interp) == bool(args.root):
        ap.error("give --interp or --root")
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)   # progress shows while it runs

    if not os.path.exists(args.shim):
        print("FAIL: shim %s does not exist" % args.shim)
        return 1
    workdir = args.keep or tempfile.mkdtemp(prefix="cpy-regr-")
    os.makedirs(workdir, exist_ok=True)
    if args.root:   # the root's python3, in the work directory (bound at its own path), via in-root.sh
        where = root_path(args.root)
        if not os.path.exists(os.path.join(where, "usr", "bin", "python3")):
            print("SKIP: no root %s at %s" % (args.root, where))
            return SKIP
        py = [IN_ROOT, "--rw", workdir, args.root, "--", "/bin/sh", "-c", 'cd "$0" && exec python3 "$@"', workdir]
    else:
        path = resolve(args.interp)
        if path is None:
            print("SKIP: interpreter %s is not on this machine" % args.interp)
            return SKIP
        py, where = [path], "/"
    version = tuple(int(x) for x in subprocess.check_output(
        py + ["-c", "import sys; print('%d %d %d' % sys.version_info[:3])"], timeout=60,
        universal_newlines=True).split())
    v = ".".join(map(str, version))
    testdir = subprocess.check_output(py + ["-c", "import os, test; print(os.path.dirname(test.__file__))"],
                                      timeout=60, universal_newlines=True).strip()
    seen = os.path.join(where, testdir.lstrip("/"))   # the same directory, seen from here
    modules = [m for m in args.modules.split(",")
               if os.path.exists(os.path.join(seen, m + ".py")) or os.path.isdir(os.path.join(seen, m))]
    for m in sorted(set(args.modules.split(",")) - set(modules)):
        print("SKIP: %s is not in %s" % (m, testdir))
    if not modules:
        return SKIP
    known = load_known(args.known)
    side = Side(args, py, version, os.path.abspath(args.shim), workdir)
    print("CPython %s (%s), reports: %s, work directory %s" % (v, args.root or py[0], args.reports, workdir))

    problems, timings = [], []
    for module in modules:
        t0 = time.time()
        cases = side.list_cases(module)
        base = side.run(module, False, args.timeout, cases)
        shim_timeout = min(args.timeout, 3 * base.seconds + 60)
        shim = side.run(module, True, shim_timeout, cases)
        runs = {False: [base], True: [shim]}
        ids = base.order + [t for t in shim.order if t not in base.outcomes]
        differ = [t for t in ids if base.outcomes.get(t, "missing") != shim.outcomes.get(t, "missing")]
        print("\n== %s %s: %d tests; without %.0f s, with %.0f s; %d differ"
              % (v, module, len(ids), base.seconds, shim.seconds, len(differ)))
        print("  reports: " + (", ".join("%s %d" % kv for kv in sorted(shim.reports.items())) or "none"))
        t_rerun = time.time()
        if differ:   # a second module run each way: what one disturbed run did is not a difference
            runs[False].append(side.run(module, False, args.timeout, cases))
            runs[True].append(side.run(module, True, shim_timeout, cases))
        for tid in differ:
            without, with_ = ([r.outcomes.get(tid, "missing") for r in runs[k]] for k in (False, True))
            if not set(without) & set(with_):        # alone, a few times each way
                for _ in range(args.reruns):
                    for seq, use_shim in ((without, False), (with_, True)):
                        if seq.count("hang") >= 2:
                            continue                  # a hang costs a timeout: twice is enough
                        r = side.run(module, use_shim, args.test_timeout, cases, [rerun_pattern(tid)])
                        seq.append(r.outcomes.get(tid, "missing"))
            kind = classify(without, with_)
            entry = find_known(known, v, args.reports, tid) if kind in ("consistent", "intermittent") else None
            if kind == "noise":
                verdict = "noise: varies without the shim"
            elif kind == "once":
                verdict = "not reproduced: a module run with the shim agreed with one without"
            elif entry and entry["kind"] == "explained":
                verdict = "explained: " + entry["reason"]
            else:
                verdict = "KNOWN BUG: " + entry["reason"] if entry else "UNEXPLAINED"
            line = "%s %s: without %s, with %s [%s] -> %s" % (v, tid, " ".join(without),
                                                             " ".join(with_), kind, verdict)
            print("  " + line)
            if kind in ("consistent", "intermittent") and not (entry and entry["kind"] == "explained"):
                problems.append(line)
        timings.append((module, base.seconds, shim.seconds, time.time() - t_rerun, time.time() - t0))

    for e in known:
        if e["kind"] == "bug" and not e["used"] and e["tid"].split(".")[0] in modules \
                and applies(e, v, args.reports):
            print("NOTE: %s:%d (bug %s) did not show on %s: fixed? then delete the line"
                  % (os.path.basename(args.known), e["line"], e["tid"], v))
    print("\ntimes (s)        without   with confirm  total    (confirm: second module runs, reruns alone)")
    for module, a, b, c, d in timings:
        print("  %-24s %5.0f %6.0f %7.0f %6.0f" % (module, a, b, c, d))
    if not args.keep:
        if problems:
            print("outputs kept in %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if problems:
        print("\nFAIL: %d difference(s) not explained:\n  %s" % (len(problems), "\n  ".join(problems)))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
