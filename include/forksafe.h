// SPDX-License-Identifier: MIT
// libforksafe's public API. The library works with no code change (LD_PRELOAD); these calls are
// for programs that want to ask it something. Link with -lforksafe, or look the symbols up with
// dlsym(RTLD_DEFAULT, ...) so the program still runs without the library.
#ifndef FORKSAFE_H
#define FORKSAFE_H

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version, e.g. "0.1.0". Never NULL. */
const char *forksafe_version(void);

/* The effective FORKSAFE_MODE: "repair", "report" or "off". Never NULL. */
const char *forksafe_mode(void);

/* Writes the effective settings to `fd`, one line each:
 *   forksafe[PID]: setting FORKSAFE_MODE=repair (default)
 * Returns 0, or -1 with errno set (EBADF for a negative fd). */
int forksafe_print_settings(int fd);

#ifdef __cplusplus
}
#endif

#endif
