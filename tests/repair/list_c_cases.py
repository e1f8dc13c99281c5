#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Prints the case names of tests/repair/scenarios.c's cases[] table (what `scenarios list` prints),
# for meson to register one test per case at configure time.
import re
import sys

src = open(sys.argv[1]).read().split("cases[] = {")[1].split("#ifdef")[0]
print("\n".join(re.findall(r'\{"(\w+)",', src)))
