#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Checks that README.md's settings table is exactly what settings-doc prints from settings.def.
#   check-readme-settings.py SETTINGS_DOC README.md
import subprocess
import sys

doc, readme = sys.argv[1], sys.argv[2]
table = subprocess.run([doc], stdout=subprocess.PIPE, check=True, timeout=30,
                       universal_newlines=True).stdout
text = open(readme).read()
begin, end = "<!-- settings-table:begin -->\n", "<!-- settings-table:end -->"
if begin not in text or end not in text:
    sys.exit("README.md has no settings-table markers")
current = text.split(begin, 1)[1].split(end, 1)[0]
if current != table:
    print("README.md's settings table is out of date. It should read:\n" + table)
    sys.exit(1)
print("README settings table matches settings.def")
