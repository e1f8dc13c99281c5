#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The verdict of scripts/test-sanitize.sh, from meson's JSON test logs and the sanitizer reports:
#
#   sanitize-summary.py RUN.json KNOWN.json REPORTS_DIR < known-failures (NAME<TAB>REGEX per line)
#
# RUN.json: the tests that must pass (meson's own verdicts). KNOWN.json: the known failures; each
# must fail with output matching its REGEX (then it counts as an expected failure); passing, or
# failing otherwise, counts as failed. REPORTS_DIR: one file per process that hit an ASan or
# UBSan report (log_path); each is printed in full and counts as a failure. Prints the counts in
# meson's words (.ci/run reads them) and exits 1 if anything failed.
import collections
import json
import os
import re
import sys


def results(path):
    """{test name: (result, stdout)} from a meson JSON log (absent: no test ran)."""
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                t = json.loads(line)
                out[t["name"].split(" / ", 1)[-1]] = (t["result"], t.get("stdout") or "")
    return out


def main():
    run_log, known_log, reports = sys.argv[1:4]
    known = dict(line.split("\t", 1) for line in sys.stdin.read().splitlines() if line.strip())
    counts = collections.Counter()
    failed = []
    for name, (result, _) in sorted(results(run_log).items()):
        counts[{"OK": "Ok", "SKIP": "Skipped", "EXPECTEDFAIL": "Expected Fail",
                "UNEXPECTEDPASS": "Unexpected Pass", "TIMEOUT": "Timeout"}.get(result, "Fail")] += 1
        if result not in ("OK", "SKIP", "EXPECTEDFAIL"):
            failed.append("%s: %s" % (name, result))
    got = results(known_log)
    for name, pattern in sorted(known.items()):
        result, stdout = got.get(name, ("NOT RUN", ""))
        if result == "FAIL" and re.search(pattern, stdout):
            counts["Expected Fail"] += 1
            print("known failure, as expected: %s" % name)
        elif result == "SKIP":
            counts["Skipped"] += 1
        elif result == "OK":
            counts["Unexpected Pass"] += 1
            failed.append("%s: passed (a known failure: take it off the list)" % name)
        else:
            counts["Fail"] += 1
            failed.append("%s: %s, not the known failure (/%s/)\n%s" % (name, result, pattern, stdout[-3000:]))

    files = sorted(os.listdir(reports)) if os.path.isdir(reports) else []
    for name in files:
        with open(os.path.join(reports, name), errors="replace") as f:
            print("\n==== sanitizer report %s ====\n%s" % (name, f.read()))
    if files:
        failed.append("%d sanitizer report(s): %s" % (len(files), ", ".join(files)))

    print("\nsanitizer run:")
    for f in failed:
        print("FAILED: " + f)
    for key in ("Ok", "Expected Fail", "Fail", "Unexpected Pass", "Skipped", "Timeout"):
        print("%-20s%d" % (key + ":", counts[key]))
    print("%-20s%d" % ("Sanitizer reports:", len(files)))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
