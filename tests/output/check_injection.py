#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Thread names are data the program (or its input) chooses: they must not forge report lines, nor
# break a JSON consumer.
#
# The threat: thread names come from code the operator does not control -- a library naming its
# workers after a URL, a queue or a tenant, Python's threading names copied to the OS name by some
# frameworks, prctl(PR_SET_NAME) from argv. A name "\nforksafe[1]: x" written raw makes a text
# report carry a forged line that grep, alerting rules and people will believe came from the
# library; escape sequences ("\x1b[2J") rewrite the terminal of whoever tails the log. In JSON,
# bytes that are not UTF-8 make the whole line invalid for strict parsers (Go's encoding/json
# replaces silently, but jq, Rust's serde_json, Java's Jackson and Python's json on decoded bytes
# reject it): the report is lost exactly when someone needed it.
#
# The contract checked, with the lost thread that held the lock named "\nforksafe[1]: x", the
# forking thread "m\x1b[2Jx" and idle threads with a tab and a carriage return in their names:
#   - text: every line starts with "forksafe[CHILD]: " (no forged line); no control byte appears
#     raw; the names appear escaped as \xNN: "\x0aforksafe[1]: x", "m\x1b[2Jx", "t\x09ab",
#     "cr\x0dx", in the fork report and in the repair line;
#   - JSON, with names "ok\xff\xfeok" (the lock holder), "caf\xc3\xa9" (valid UTF-8), "x\xe2\x82"
#     (a cut sequence), "\xc0\xafz" (an overlong form), "\xed\xa0\x80s" (a UTF-16 surrogate) and the
#     forking thread "m\xffm": every line parses with a strict parser (strict UTF-8, strict JSON);
#     invalid bytes become U+FFFD: "ok\ufffd\ufffdok" as the lost thread's name and the repair's
#     owner_name, "m\ufffdm" as the forking thread's; "café" passes unchanged; the others hold
#     U+FFFD and nothing else foreign.
#   check_injection.py --bin build/tests/output/emitter --shim build/lib/libforksafe.so
import os
import re
import tempfile

from forksafe_test import driver_args, fail, json_lines, lines, pids, read, run_cases, run_ok, shim_env

TEXT_NAMES = [b"m\x1b[2Jx", b"\nforksafe[1]: x", b"t\tab", b"cr\rx"]   # main, holder, idle...
TEXT_ESCAPED = [b"m\\x1b[2Jx", b"\\x0aforksafe[1]: x", b"t\\x09ab", b"cr\\x0dx"]

JSON_NAMES = [b"m\xffm", b"ok\xff\xfeok", b"caf\xc3\xa9", b"x\xe2\x82", b"\xc0\xafz", b"\xed\xa0\x80s"]


def main():
    a = driver_args("bin", "shim")
    emitter = a.bin
    tmp = tempfile.TemporaryDirectory()

    def emit(names, fmt):
        log = os.path.join(tmp.name, "%s.log" % fmt)
        r = run_ok([emitter.encode(), b"names"] + names, shim_env(a.shim, FORKSAFE_LOG=log, FORKSAFE_FORMAT=fmt),
                   "emitter names")
        return read(log), pids(r.out, "CHILD")[0]

    def text():
        data, child = emit(TEXT_NAMES, "text")
        ls = lines(data)
        if not data.endswith(b"\n"):
            fail("the log does not end with a newline", data[-300:])
        prefix = b"forksafe[%d]: " % child
        forged = [ln for ln in ls if not ln.startswith(prefix)]
        if forged:
            fail("%d line(s) do not start with %r: a thread name forged them" % (len(forged), prefix),
                 b"\n".join(forged[:3]))
        raw = sorted({c for c in data.replace(b"\n", b"") if c < 0x20 or c == 0x7f})
        if raw:
            fail("control bytes appear raw: %s" % [hex(c) for c in raw], data)
        header = [ln for ln in ls if b"forked child" in ln]
        lost = [ln for ln in ls if b"]:   lost thread " in ln]
        repair = [ln for ln in ls if b"repaired" in ln]
        if len(header) != 1 or len(lost) != len(TEXT_NAMES) - 1 or len(repair) != 1:
            fail("expected a header, %d lost threads and a repair line" % (len(TEXT_NAMES) - 1), data)
        if TEXT_ESCAPED[0] not in header[0]:
            fail("the forking thread's name is not written %r" % TEXT_ESCAPED[0], header[0])
        for want in TEXT_ESCAPED[1:]:
            if not any(want in ln for ln in lost):
                fail("no lost-thread line holds the name escaped as %r" % want, data)
        if TEXT_ESCAPED[1] not in repair[0]:
            fail("the repair line does not name the holder as %r" % TEXT_ESCAPED[1], repair[0])
        return "%d lines, all the child's, names escaped" % len(ls)

    def json_case():
        data, child = emit(JSON_NAMES, "json")
        events = json_lines(data, "the log")  # strict UTF-8, strict JSON
        forks = [e for e in events if e["event"] == "fork"]
        repairs = [e for e in events if e["event"] == "lock_repaired"]
        if len(forks) != 1 or len(repairs) != 1:
            fail("expected one fork event and one lock_repaired", data)
        f, rep = forks[0], repairs[0]
        names = [t.get("name") for t in f["lost_threads"]]
        want = {"ok\ufffd\ufffdok", "caf\u00e9"}
        if not want <= set(names):
            fail("lost thread names %r should include %r" % (names, sorted(want)), data)
        others = [n for n in names if n not in want]
        if len(others) != 3 or not all("\ufffd" in n and re.fullmatch("[a-z\ufffd]+", n) for n in others):
            fail("the other names %r should hold U+FFFD where the bytes were invalid, and only that" % others, data)
        if f["forking_thread"].get("name") != "m\ufffdm":
            fail("forking_thread.name is %r, not 'm\\ufffdm'" % f["forking_thread"].get("name"), data)
        if rep.get("owner_name") != "ok\ufffd\ufffdok":
            fail("lock_repaired.owner_name is %r" % rep.get("owner_name"), data)
        return "every line strict JSON; names %r" % names

    run_cases([
        ("text: names with a newline, escapes, tab, carriage return", text),
        ("JSON: names that are not UTF-8", json_case),
    ])


if __name__ == "__main__":
    main()
