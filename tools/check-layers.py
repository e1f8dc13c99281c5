#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Checks the library's layering from its object files: which file calls (or reads) a symbol that
# another file defines, as `nm` shows them. Every such dependency must go down the layers of
# README's "How it works" (a folder per layer), and no files may depend on each other in a
# cycle. A registered callback is a function pointer, which `nm` does not see: that is the one
# sanctioned way for a lower layer to call up, and it is visible in the code as such.
#   check-layers.py build/lib/libforksafe_core.a
import collections
import re
import subprocess
import sys

# Lower number = lower layer. python/ is below core/: core's fork path calls the binding, and
# the binding calls nothing of core.
RANK = {"base": 1, "platform": 1, "state": 2, "python": 3, "core": 4, "report": 5, "wrap": 6}


def main():
    out = subprocess.run(["nm", "-A", sys.argv[1]], stdout=subprocess.PIPE, check=True, timeout=60,
                         universal_newlines=True).stdout
    defined, used = {}, collections.defaultdict(set)
    for line in out.splitlines():
        # ARCHIVE:MEMBER:ADDRESS KIND SYMBOL, the address empty for undefined symbols
        m = re.match(r"^.*?([^/:]+\.c\.o):[0-9a-f]*\s+(\w)\s+(\S+)$", line)
        if not m:
            continue
        obj, kind, sym = m.groups()                # base_fmt.c.o, T, fs_buf_init
        if kind == "U":
            used[obj].add(sym)
        elif kind in "TDBRVW":
            defined[sym] = obj
    edges = collections.defaultdict(set)
    for obj, syms in used.items():
        for s in syms:
            if s in defined and defined[s] != obj:
                edges[obj].add(defined[s])
    layer = lambda o: o.split("_", 1)[0]  # noqa: E731
    bad = []
    for a, targets in sorted(edges.items()):
        for b in sorted(targets):
            if layer(a) not in RANK or layer(b) not in RANK:
                bad.append("%s -> %s: a file outside the known folders" % (a, b))
            elif RANK[layer(a)] < RANK[layer(b)]:
                bad.append("%s -> %s: calls up, from %s to %s" % (a, b, layer(a), layer(b)))
    # Cycles between files (Tarjan's strongly connected components).
    index, low, stack, on, comps, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(set(edges) | {t for ts in edges.values() for t in ts}):
        if v not in index:
            visit(v)
    bad += ["a cycle: " + ", ".join(c) for c in comps]
    if bad:
        print("\n".join(bad))
        sys.exit(1)
    files = set(edges) | {t for ts in edges.values() for t in ts}
    print("%d files, %d dependencies: all go down the layers, no cycle" % (len(files), sum(map(len, edges.values()))))


if __name__ == "__main__":
    main()
