// SPDX-License-Identifier: MIT
// The forksafe command (main.c): runs a program with libforksafe preloaded, checks whether it
// would load (check.c), summarises JSON reports (summary.c).
#ifndef FORKSAFE_TOOL_H
#define FORKSAFE_TOOL_H

#include <stddef.h>

#define FORKSAFE_SUMMARY_USAGE                                                                       \
    "usage: forksafe summary [--json] [--top N] LOG...\n"                                            \
    "  LOG: a JSON report file (FORKSAFE_FORMAT=json), a directory of them (FORKSAFE_LOG=DIR/%p.log),\n" \
    "       `journalctl -o json` output, or - for standard input\n"                                  \
    "  --json   the same summary as one JSON object\n"                                               \
    "  --top N  rows per table (default 10, 0: all)\n"

int forksafe_summary(int argc, char **argv);

/* check.c */
struct lib_info;
/* `forksafe check [CMD [ARGS]]`: exit status 0 (would load), 1 (would not), 2 (usage). */
int forksafe_check(const char *library, int argc, char **argv);
/* Why the library would not load into `cmd` (found in PATH), or NULL when it would: a warning
 * for `forksafe CMD` before it execs. `buf` receives the text. */
const char *forksafe_load_problem(const char *library, const char *cmd, char *buf, size_t cap);

#endif
