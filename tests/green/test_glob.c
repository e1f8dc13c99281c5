// SPDX-License-Identifier: MIT
// Unit test of strict mode's glob matcher and allow-list (lib/core/strict.c): '*', '?', sets,
// ranges, negation, escapes, a '[' without ']', backtracking, and FORKSAFE_ALLOW's comma list
// matched against a thread's OS name, Python name and start routine.
#include "base/base.h"
#include "core/core.h"

#include <stdio.h>
#include <string.h>

static int failures;
#define EXPECT(c) do { if (!(c)) { fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #c); failures++; } } while (0)

static int m(const char *p, const char *s) { return fs_glob_match(p, strlen(p), s); }

static const char *allow;
static const char *get(const char *name) { return strcmp(name, "FORKSAFE_ALLOW") == 0 ? allow : NULL; }

int main(void) {
    EXPECT(m("abc", "abc"));
    EXPECT(!m("abc", "abcd"));
    EXPECT(!m("abcd", "abc"));
    EXPECT(m("", ""));
    EXPECT(!m("", "a"));
    EXPECT(m("*", ""));
    EXPECT(m("*", "anything"));
    EXPECT(m("lib*", "libmonitor-idle"));
    EXPECT(m("*idle", "libmonitor-idle"));
    EXPECT(m("*mon*", "libmonitor-idle"));
    EXPECT(!m("*mon*x", "libmonitor-idle"));
    EXPECT(m("a*b*c", "a-b-b-c"));            /* backtracking */
    EXPECT(m("a*b*c", "abbbbc"));
    EXPECT(!m("a*b*c", "abbbbd"));
    EXPECT(m("**a**", "xxa"));
    EXPECT(m("Thread-?", "Thread-7"));
    EXPECT(!m("Thread-?", "Thread-17"));
    EXPECT(m("Thread-[0-9]*", "Thread-17 (worker)"));
    EXPECT(!m("Thread-[!0-9]*", "Thread-17"));
    EXPECT(m("Thread-[!0-9]*", "Thread-x"));
    EXPECT(m("x[^a]y", "xby"));
    EXPECT(m("[]]", "]"));                    /* ']' first in a set is literal */
    EXPECT(m("[a-c]", "b") && !m("[a-c]", "d"));
    EXPECT(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
    EXPECT(m("[", "[") && m("x[y", "x[y"));   /* no closing bracket: a literal '[' */
    EXPECT(m("sym+0x?? (*libfoo.so*)", "sym+0x10 (/usr/lib/libfoo.so.1)"));

    struct fs_settings s;
    allow = " pymongo_* , libmonitor-idle,monitor_idle_loop ,*libmongoc*";
    fs_settings_parse(&fs_settings, get, -1);
    (void)s;
    EXPECT(strcmp(fs_setting_str(FS_SET_allow), allow) == 0);
    EXPECT(fs_strict_thread_allowed("python3", "pymongo_kill_cursors_thread", 0));
    EXPECT(fs_strict_thread_allowed("python3", "libmonitor-idle", 0));
    EXPECT(fs_strict_thread_allowed("libmonitor-idle", NULL, 0));
    EXPECT(!fs_strict_thread_allowed("python3", "libmonitor-idle2", 0));
    EXPECT(!fs_strict_thread_allowed("python3", "worker", 0));
    EXPECT(!fs_strict_thread_allowed("", NULL, 0));
    EXPECT(fs_strict_green_allowed("pymongo_x") && !fs_strict_green_allowed("redis-listener"));
    allow = "";
    fs_settings_parse(&fs_settings, get, -1);
    EXPECT(!fs_strict_thread_allowed("python3", "anything", 0));
    allow = ",, ,";
    fs_settings_parse(&fs_settings, get, -1);
    EXPECT(!fs_strict_thread_allowed("python3", "anything", 0));
    if (failures) fprintf(stderr, "%d failure(s)\n", failures);
    else printf("glob and allow-list: all expectations met\n");
    return failures != 0;
}
