#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# `forksafe summary`: a directory of per-pid JSON logs written by real processes (forks that lose
# a thread holding a lock, a thread cut off at exit, a thread-count warning) becomes a table and
# the same as JSON; hostile input (malformed lines, deep nesting, huge and odd numbers, invalid
# UTF-8, NUL and escape bytes, a line over the size limit, binary data, random mutations of real
# events) is counted, never fatal, and never reaches the terminal raw; journalctl -o json lines
# are read through their FORKSAFE_JSON. The hostile part runs also under ASan/UBSan.
#   check_summary.py --forksafe FORKSAFE --shim LIB --asan FORKSAFE_ASAN
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

from deploylib import end_checks, expect, run


# Forks twice while a named thread holds an RLock (each child takes it: repaired), then a
# thread-count warning (FORKSAFE_THREADS_WARN=8), then exits while a busy thread runs.
PROG = r'''
import os, sys, threading, time
lock = threading.RLock()
held = threading.Event()
def hold():
    with lock:
        held.set()
        threading.Event().wait()
threading.Thread(target=hold, name="metrics-flusher", daemon=True).start()
held.wait()
def spawn():
    pid = os.fork()
    if pid == 0:
        with lock:
            pass
        os._exit(0)
    os.waitpid(pid, 0)
for _ in range(2):
    spawn()
stop = threading.Event()
for i in range(8):
    threading.Thread(target=stop.wait, name="idle-%d" % i, daemon=True).start()
started = threading.Event()
def job():
    started.set()
    time.sleep(120)  # a job cut off mid-way when main ends
threading.Thread(target=job, name="report-job", daemon=True).start()
started.wait()
'''


def summary(tool, args, timeout=120, stdin=None):
    return run([tool, "summary"] + args, timeout, input=stdin)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--forksafe", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("--asan", required=True)
    a = ap.parse_args()
    fs, shim = os.path.abspath(a.forksafe), os.path.abspath(a.shim)
    base = {k: v for k, v in os.environ.items() if not (k.startswith("FORKSAFE_") or k == "LD_PRELOAD")}
    py = shutil.which("python3") or sys.executable
    tmp = tempfile.mkdtemp(prefix="forksafe-summary.")
    try:
        logs = os.path.join(tmp, "logs")
        os.mkdir(logs)
        r = run([fs, "--json", "--log=" + logs + "/forksafe-%p.log", "--threads-warn=8", py, "-c", PROG], 120,
                env=dict(base, FORKSAFE_LIBRARY=shim))
        files = sorted(os.listdir(logs))
        expect(r.returncode == 0 and len(files) == 3, "three processes wrote their own logs", (files, r.stderr))

        r = summary(fs, [logs])
        out = r.stdout
        print(out)
        expect(r.returncode == 0, "summary of a directory: status 0", r.stderr)
        expect("3 files" in out and "0 malformed lines" in out, "files and lines counted", out)
        expect("Forks of multi-threaded processes: 2 (threads lost: 2)" in out, "2 forks, 2 threads lost", out)
        expect("metrics-flusher" in out and "<string>" in out, "the lost thread by name; the forking site", out)
        lock_rows = [l for l in out.splitlines() if "repaired" in l and "semaphore" in l]
        expect(lock_rows and lock_rows[0].split()[0] == "2" and "metrics-flusher" in lock_rows[0],
               "2 repaired locks, owner named", out)
        expect("Thread-count warnings" in out and "idle-N" in out or "x Python 'idle-N'" in out,
               "the thread-count warning, its largest group with numbers folded", out)
        expect("report-job" in out and "busy" in out, "the busy thread cut off at exit", out)

        r = summary(fs, ["--json", logs])
        try:
            js = json.loads(r.stdout)
        except ValueError as e:
            js = {"error": str(e)}
        expect(r.returncode == 0 and js.get("files") == 3 and js.get("malformed") == 0, "--json: parses", r.stdout)
        forks = js.get("forks", {})
        expect(forks.get("total") == 2 and forks.get("lost_threads") == 2 and len(forks.get("by_parent", [])) == 1
               and forks["by_parent"][0]["forks"] == 2 and forks.get("by_site"), "--json: forks per parent and site",
               forks)
        lt = js.get("lost_threads", [])
        expect(lt and lt[0].get("python_name") == "metrics-flusher" and lt[0].get("forks") == 2,
               "--json: lost threads", lt)
        lk = js.get("locks", [])
        expect(lk and lk[0].get("outcome") == "repaired" and lk[0].get("count") == 2
               and lk[0].get("owner_python_name") == "metrics-flusher", "--json: locks", lk)
        cut = js.get("cut_off", {})
        expect(cut.get("events", {}).get("exit") == 1 and any(t.get("python_name") == "report-job"
                                                               and t.get("state") == "busy" for t in cut.get("threads", [])),
               "--json: cut off at exit", cut)
        tw = js.get("thread_warnings", [])
        expect(tw and tw[0].get("threshold") == 8 and tw[0].get("threads") >= 8, "--json: thread warnings", tw)

        # journalctl -o json: the event inside FORKSAFE_JSON; a text log: counted, with a hint
        events = [l for f in files for l in open(os.path.join(logs, f)) if l.strip()]
        jctl = os.path.join(tmp, "journal.json")
        with open(jctl, "w") as f:
            for e in events:
                f.write(json.dumps({"MESSAGE": "x", "PRIORITY": "4", "FORKSAFE_JSON": e.strip()}) + "\n")
        r = summary(fs, ["--json", jctl])
        js2 = json.loads(r.stdout) if r.returncode == 0 else {}
        expect(js2.get("forks", {}).get("total") == 2 and js2.get("malformed") == 0,
               "journalctl -o json input read through FORKSAFE_JSON", r.stdout + r.stderr)
        textlog = os.path.join(tmp, "text.log")
        open(textlog, "w").write("forksafe[12]: process 1 forked child 12 from thread 1 'x'; the child lost 1 thread:\n")
        r = summary(fs, [textlog])
        expect(r.returncode == 0 and "1 text report line skipped" in r.stdout and "0 malformed" in r.stdout,
               "a text log: counted apart, with a hint", r.stdout)

        # usage and unreadable paths
        r = summary(fs, [])
        expect(r.returncode == 2 and "usage" in r.stderr, "summary without a log: 2", r.stderr)
        r = summary(fs, ["--top", "x", logs])
        expect(r.returncode == 2, "summary --top x: 2", r.stderr)
        r = summary(fs, [logs, os.path.join(tmp, "absent")])
        expect(r.returncode == 1 and "absent" in r.stderr and "3 files" in r.stdout,
               "an unreadable path: named, status 1, the rest summarised", r.stdout + r.stderr)

        # hostile input, with the release build and with ASan/UBSan
        hostile = os.path.join(tmp, "hostile")
        os.mkdir(hostile)
        good = events[0].strip()
        lines = [
            b"{", b"}", b"[]", b"null", b"\"event\"", b"{\"event\":1}", b"{\"event\":\"fork\"",
            b"[" * 100000, b"{\"a\":" * 50000, b"{\"event\":\"fork\",\"lost_threads\":" + b"[" * 40 + b"]" * 40 + b"}",
            b"{\"event\":\"fork\",\"parent_pid\":1e999999,\"lost_threads_total\":-1e308}",
            b"{\"event\":\"fork\",\"parent_pid\":" + b"9" * 200 + b"}",
            b"{\"event\":\"lock_repaired\",\"owner_name\":\"\xff\xfe\x1b[31mred\x07\",\"type\":\"\\u001b[2J\"}",
            b"{\"event\":\"fork\",\"forking_thread\":{\"name\":\"a\\u0000b\\ud800\\udc00\\udfff\"}}",
            b"\x00\x00\x00{\"event\":\"fork\"}", b"{\"event\":\"fork\"}\x00", b"\x1b]0;title\x07",
            b"{\"event\":\"exit\",\"threads\":[1,\"x\",null,{\"name\":{}}]}",
            b"{\"event\":\"threads\",\"groups\":[{\"count\":\"many\",\"app_frame\":[]}]}",
            b"{\"event\":\"fork\",\"lost_threads\":{\"tid\":1}}", b"\"\\u12\"", b"{\"\\uZZZZ\":1}",
            b"tru", b"-", b"01", b"1.", b"{\"event\":\"fork\"}{}", good.encode()[:len(good) // 2],
        ]
        rnd = random.Random(1234)
        blob = good.encode()
        for _ in range(3000):  # mutations of a real event
            b = bytearray(blob)
            for _ in range(rnd.randint(1, 8)):
                i = rnd.randrange(len(b))
                op = rnd.randrange(3)
                if op == 0:
                    b[i] = rnd.randrange(256)
                elif op == 1:
                    del b[i]
                else:
                    b.insert(i, rnd.choice(b"{}[]\",:\\0-e.\n"))
            lines.append(bytes(b).replace(b"\n", b" "))
        with open(os.path.join(hostile, "a.log"), "wb") as f:
            f.write(b"\n".join(lines) + b"\n" + good.encode())  # the last line without a newline
        with open(os.path.join(hostile, "big.log"), "wb") as f:  # a line over 64 MiB, then a good one
            chunk = b"x" * (1 << 20)
            f.write(b"{\"event\":\"fork\",\"pad\":\"")
            for _ in range(65):
                f.write(chunk)
            f.write(b"\"}\n" + good.encode() + b"\n")
        with open(os.path.join(hostile, "binary.bin"), "wb") as f:
            f.write(bytes(rnd.randrange(256) for _ in range(200000)))
        open(os.path.join(hostile, "empty.log"), "w").close()
        os.symlink("/etc", os.path.join(hostile, "loop"))  # not followed inside a directory
        nlines = len(lines) + 2
        for tool, name in ((fs, "release"), (os.path.abspath(a.asan), "ASan/UBSan")):
            for extra in ([], ["--json"]):
                env = dict(base, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=99",
                           UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=98")
                r = subprocess.run([tool, "summary"] + extra + [hostile], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   timeout=240, env=env)
                out = r.stdout.decode("utf-8", "replace")
                what = "hostile input, %s%s" % (name, " --json" if extra else "")
                expect(r.returncode == 0, what + ": status 0", r.stderr.decode("utf-8", "replace")[-4000:])
                expect(b"\x1b" not in r.stdout and b"\x07" not in r.stdout and b"\x00" not in r.stdout,
                       what + ": no raw control bytes reach the output", out[:2000])
                if extra:
                    try:
                        hj = json.loads(out)
                    except ValueError as e:
                        hj = {"error": str(e)}
                    ok = hj.get("lines", 0) >= nlines and hj.get("malformed", 0) > 1000 and hj.get("events", 0) >= 2
                    expect(ok, what + ": lines and malformed lines counted, valid events kept",
                           {k: hj.get(k) for k in ("lines", "malformed", "events", "files", "error")})
                    expect(any("64 MiB" in m.get("reason", "") for m in hj.get("malformed_examples", [])) or
                           hj.get("malformed", 0) > 10, what + ": the over-long line counted", hj.get("malformed_examples"))
                else:
                    expect("Malformed lines:" in out, what + ": malformed lines shown", out[-2000:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    end_checks()
    print("PASS")


if __name__ == "__main__":
    main()
