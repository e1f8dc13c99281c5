#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Checks that README.md's settings table is exactly what settings-gen prints from settings.def;
# with --fix, rewrites the table instead.
#   check-readme-settings.py [--fix] SETTINGS_GEN README.md
import subprocess
import sys

fix = "--fix" in sys.argv
doc, readme = [a for a in sys.argv[1:] if a != "--fix"]
table = subprocess.run([doc], stdout=subprocess.PIPE, check=True, timeout=30,
                       universal_newlines=True).stdout
text = open(readme).read()
begin, end = "<!-- settings-table:begin -->\n", "<!-- settings-table:end -->"
if begin not in text or end not in text:
    sys.exit("README.md has no settings-table markers")
current = text.split(begin, 1)[1].split(end, 1)[0]
if current != table and fix:
    with open(readme, "w") as f:
        f.write(text.replace(begin + current + end, begin + table + end))
    print("README.md's settings table rewritten")
elif current != table:
    print("README.md's settings table is out of date. It should read:\n" + table)
    sys.exit(1)
print("README settings table matches settings.def")
