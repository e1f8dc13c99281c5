// SPDX-License-Identifier: MIT
// Unit tests for the settings parser (lib/settings.c): defaults, valid values, and the one
// warning line a bad value produces, after which the default is kept.
#include "base/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const *env_table;
static const char *fake_get(const char *name) {
    for (const char *const *p = env_table; p && p[0]; p += 2)
        if (strcmp(p[0], name) == 0) return p[1];
    return NULL;
}

static int failures;
#define EXPECT(c) do { if (!(c)) { fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #c); failures++; } } while (0)

/* Parses with the given environment; returns the warnings written, in `warn`. */
static int parse(struct fs_settings *s, const char *const *env, char *warn, size_t cap) {
    int p[2];
    if (pipe(p) != 0) abort();
    env_table = env;
    int n = fs_settings_parse(s, fake_get, p[1]);
    close(p[1]);
    ssize_t len = read(p[0], warn, cap - 1);
    warn[len > 0 ? len : 0] = '\0';
    close(p[0]);
    return n;
}

int main(void) {
    struct fs_settings s;
    char warn[4096];

    EXPECT(parse(&s, NULL, warn, sizeof warn) == 0 && warn[0] == '\0');
    EXPECT(s.v[FS_SET_mode].num == FS_MODE_REPAIR && strcmp(s.v[FS_SET_mode].str, "repair") == 0);
    EXPECT(s.v[FS_SET_format].num == FS_FORMAT_TEXT);
    EXPECT(strcmp(s.v[FS_SET_log].str, "stderr") == 0);
    EXPECT(s.v[FS_SET_verbose].num == 0 && !s.v[FS_SET_mode].from_env);

    const char *const good[] = {"FORKSAFE_MODE", "report", "FORKSAFE_FORMAT", "json",
                                "FORKSAFE_LOG", "/tmp/fs-%p.log", "FORKSAFE_VERBOSE", "yes", NULL};
    EXPECT(parse(&s, good, warn, sizeof warn) == 0 && warn[0] == '\0');
    EXPECT(s.v[FS_SET_mode].num == FS_MODE_REPORT && s.v[FS_SET_mode].from_env);
    EXPECT(s.v[FS_SET_format].num == FS_FORMAT_JSON);
    EXPECT(strcmp(s.v[FS_SET_log].str, "/tmp/fs-%p.log") == 0);
    EXPECT(s.v[FS_SET_verbose].num == 1);

    const char *const off[] = {"FORKSAFE_MODE", "off", NULL};
    parse(&s, off, warn, sizeof warn);
    EXPECT(s.v[FS_SET_mode].num == FS_MODE_OFF);

    /* Bad values: one line each, naming variable, value and fallback; defaults kept. */
    const char *const bad[] = {"FORKSAFE_MODE", "fast", "FORKSAFE_FORMAT", "JSON ", "FORKSAFE_LOG", "",
                               "FORKSAFE_VERBOSE", "2", NULL};
    EXPECT(parse(&s, bad, warn, sizeof warn) == 4);
    EXPECT(s.v[FS_SET_mode].num == FS_MODE_REPAIR && !s.v[FS_SET_mode].from_env);
    EXPECT(s.v[FS_SET_format].num == FS_FORMAT_TEXT);
    EXPECT(strcmp(s.v[FS_SET_log].str, "stderr") == 0);
    EXPECT(strstr(warn, "warning: FORKSAFE_MODE has an invalid value \"fast\"; using 'repair' (valid: repair|report|off)\n"));
    EXPECT(strstr(warn, "FORKSAFE_FORMAT has an invalid value \"JSON \"; using 'text'"));
    EXPECT(strstr(warn, "FORKSAFE_LOG has an invalid value \"\"; using 'stderr'"));
    int lines = 0;
    for (char *c = warn; *c; c++) lines += *c == '\n';
    EXPECT(lines == 4);
    EXPECT(strncmp(warn, "forksafe[", 9) == 0);

    /* A value with a control character is quoted safely in the warning. */
    const char *const ctl[] = {"FORKSAFE_MODE", "re\npair\"", NULL};
    EXPECT(parse(&s, ctl, warn, sizeof warn) == 1);
    EXPECT(strstr(warn, "\"re\\npair\\\"\""));

    /* The dump shows every setting and where its value came from. */
    const char *const some[] = {"FORKSAFE_MODE", "report", NULL};
    parse(&s, some, warn, sizeof warn);
    int p[2];
    if (pipe(p) != 0) abort();
    fs_settings_dump(&s, p[1]);
    close(p[1]);
    ssize_t n = read(p[0], warn, sizeof warn - 1);
    warn[n > 0 ? n : 0] = '\0';
    EXPECT(strstr(warn, "setting FORKSAFE_MODE=report (from the environment)\n"));
    EXPECT(strstr(warn, "setting FORKSAFE_FORMAT=text (default)\n"));
    EXPECT(strstr(warn, "setting FORKSAFE_LOG=stderr (default)\n"));

    /* Integers: within range, digits only. */
    const char *const depth[] = {"FORKSAFE_STACK_DEPTH", "64", NULL};
    EXPECT(parse(&s, depth, warn, sizeof warn) == 0 && s.v[FS_SET_stack_depth].num == 64);
    const char *const deep[] = {"FORKSAFE_STACK_DEPTH", "65", NULL};
    EXPECT(parse(&s, deep, warn, sizeof warn) == 1 && s.v[FS_SET_stack_depth].num == 8);
    EXPECT(strstr(warn, "FORKSAFE_STACK_DEPTH has an invalid value \"65\"; using '8' (valid: 0..64)"));
    const char *const neg[] = {"FORKSAFE_STACK_DEPTH", "-1", "FORKSAFE_PYTHON", "maybe", NULL};
    EXPECT(parse(&s, neg, warn, sizeof warn) == 2 && s.v[FS_SET_stack_depth].num == 8);
    EXPECT(s.v[FS_SET_python].num == 1);
    /* On/off settings are booleans: 1 is on. */
    const char *const zero[] = {"FORKSAFE_STACK_DEPTH", "0", "FORKSAFE_PYTHON", "off", NULL};
    EXPECT(parse(&s, zero, warn, sizeof warn) == 0 && s.v[FS_SET_stack_depth].num == 0 && s.v[FS_SET_python].num == 0);
    const char *const no[] = {"FORKSAFE_REPAIR_SEMAPHORES", "no", NULL};
    EXPECT(parse(&s, no, warn, sizeof warn) == 0 && s.v[FS_SET_repair_semaphores].num == 0);

    /* A bad value is echoed once, escaped and cut: it cannot forge lines or flood the log. */
    char big[4096];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[10] = '\n';
    const char *const flood[] = {"FORKSAFE_MODE", big, NULL};
    EXPECT(parse(&s, flood, warn, sizeof warn) == 1);
    EXPECT(strchr(warn, '\n') == warn + strlen(warn) - 1); /* one line */
    EXPECT(strlen(warn) < 300 && strstr(warn, "xxxxxxxxxx\\nxxx") && strstr(warn, "...\""));
    const char *const huge[] = {"FORKSAFE_STACK_DEPTH", "99999999999999999999", NULL};
    EXPECT(parse(&s, huge, warn, sizeof warn) == 1);

    if (failures) return 1;
    puts("settings: ok");
    return 0;
}
