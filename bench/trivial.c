// SPDX-License-Identifier: MIT
// The program that workloads 11 and 12 exec: it does nothing. Dynamically linked like any program
// (libc, ld.so), so what it costs to start is loading, relocation and libc's start-up, plus, with
// LD_PRELOAD, the preloaded library's loading and constructor.
int main(void) { return 0; }
