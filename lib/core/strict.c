// SPDX-License-Identifier: MIT
// Strict mode (FORKSAFE_STRICT): a fork of a multi-threaded process whose child goes on running --
// it did not exec first -- is an error, unless every thread it lost is on the allow-list
// (FORKSAFE_ALLOW), and, with FORKSAFE_STRICT=green, every green thread it carries too. The
// fork report (report/fork_report.c) is where a child shows it goes on running: it asks here
// which threads are allowed, writes the verdict, and ends the child with FS_STRICT_EXIT_STATUS.
// The allow-list is matched by our own small glob matcher: fnmatch may allocate (locales).
// Runs in forked children before exec: async-signal-safe.
#include "core.h"

#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int fs_strict_mode(void) {
    switch (fs_setting(FS_SET_strict)) {
    case FS_STRICT_ON: return FS_STRICT_THREADS;
    case FS_STRICT_GREEN: return FS_STRICT_THREADS | FS_STRICT_GREENLETS;
    default: return 0;
    }
}

/* One pattern element at p[*i] against byte c: '?', a set "[...]" ("[!...]" or "[^...]"
 * negated, "a-z" ranges, "]" first is literal), "\x" literal x, or a literal byte. Advances *i
 * past the element. A '[' without its ']' is a literal '['. */
static int match_one(const char *p, size_t n, size_t *i, unsigned char c) {
    size_t k = *i;
    if (p[k] == '?') {
        *i = k + 1;
        return 1;
    }
    if (p[k] == '[') {
        size_t j = k + 1;
        int neg = j < n && (p[j] == '!' || p[j] == '^');
        if (neg) j++;
        size_t first = j;
        int hit = 0;
        for (; j < n && (p[j] != ']' || j == first); j++) {
            unsigned char lo = (unsigned char)p[j], hi = lo;
            if (lo == '\\' && j + 1 < n) lo = hi = (unsigned char)p[++j];
            if (j + 2 < n && p[j + 1] == '-' && p[j + 2] != ']') {
                hi = (unsigned char)p[j + 2];
                j += 2;
            }
            if (c >= lo && c <= hi) hit = 1;
        }
        if (j < n) { /* p[j] == ']' */
            *i = j + 1;
            return hit != neg;
        }
        /* no closing bracket: a literal '[' */
    }
    if (p[k] == '\\' && k + 1 < n) k++;
    *i = k + 1;
    return (unsigned char)p[k] == c;
}

int fs_glob_match(const char *p, size_t n, const char *s) {
    size_t i = 0, star = (size_t)-1, resume = 0;
    const char *str = s;
    while (*str) {
        if (i < n && p[i] == '*') {
            star = ++i;            /* '*' matches nothing for now; more if what follows fails */
            resume = (size_t)(str - s);
            continue;
        }
        size_t next = i;
        if (i < n && match_one(p, n, &next, (unsigned char)*str)) {
            i = next;
            str++;
            continue;
        }
        if (star == (size_t)-1) return 0;
        i = star;                  /* the last '*' takes one more byte */
        str = s + ++resume;
    }
    while (i < n && p[i] == '*') i++;
    return i == n;
}

/* Does any of `names` match any pattern of FORKSAFE_ALLOW (comma-separated, blanks around each
 * pattern ignored)? */
static int allowed(const char *const *names, int count) {
    const char *list = fs_setting_str(FS_SET_allow);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == '\t') p++;
        const char *end = p;
        while (*end && *end != ',') end++;
        const char *last = end;
        while (last > p && (last[-1] == ' ' || last[-1] == '\t')) last--;
        for (int k = 0; last > p && k < count; k++)
            if (names[k] && names[k][0] && fs_glob_match(p, (size_t)(last - p), names[k])) return 1;
        p = *end ? end + 1 : end;
    }
    return 0;
}

int fs_strict_thread_allowed(const char *os_name, const char *py_name, uint32_t start_sym) {
    int plain;
    const char *start = fs_symbol_str(start_sym, &plain); /* "sym+0x10 (/lib/x.so)" or "0x10 (...)" */
    char sym[256] = "";
    if (start && !(start[0] == '0' && start[1] == 'x')) {
        size_t k = 0;
        while (start[k] && start[k] != '+' && start[k] != ' ' && k + 1 < sizeof sym) {
            sym[k] = start[k];
            k++;
        }
        sym[k] = '\0';
    }
    const char *names[] = {os_name, py_name, sym, start};
    return allowed(names, 4);
}

int fs_strict_green_allowed(const char *py_name) {
    const char *names[] = {py_name};
    return allowed(names, 1);
}

void fs_strict_exit(void) {
    for (;;) syscall(SYS_exit_group, FS_STRICT_EXIT_STATUS); /* as _exit: no handler, no flush */
}
