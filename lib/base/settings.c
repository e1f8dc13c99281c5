// SPDX-License-Identifier: MIT
// Settings: parsed once from FORKSAFE_* environment variables, driven by settings.def.
// A bad value never stops the program: one warning line, then the default is used.
#include "base.h"

#include <string.h>
#include <unistd.h>

struct fs_settings fs_settings;

struct fs_setting_desc {
    const char *env;        /* without the FORKSAFE_ prefix */
    enum fs_setting_kind kind;
    const char *def;
    const char *choices;    /* "a|b|c" for enums */
};

static const struct fs_setting_desc desc[FS_SET_COUNT] = {
#define FS_SETTING(id, env, kind, def, choices, help) [FS_SET_##id] = {env, kind, def, choices},
#include "settings.def"
#undef FS_SETTING
};

/* Index of `value` among the '|'-separated `choices`, or -1. */
static int choice_index(const char *choices, const char *value) {
    size_t n = strlen(value);
    int i = 0;
    for (const char *p = choices; *p; i++) {
        const char *end = strchr(p, '|');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0) return i;
        if (!end) break;
        p = end + 1;
    }
    return -1;
}

/* An integer within the "min..max" of `choices`, or -1. */
static int parse_int(const char *choices, const char *v) {
    long min = 0, max = 0, n = 0;
    const char *c = choices;
    while (*c >= '0' && *c <= '9') min = min * 10 + (*c++ - '0');
    if (c[0] == '.' && c[1] == '.') c += 2;
    while (*c >= '0' && *c <= '9') max = max * 10 + (*c++ - '0');
    if (!*v) return -1;
    for (; *v; v++) {
        if (*v < '0' || *v > '9' || n > max) return -1;
        n = n * 10 + (*v - '0');
    }
    return n >= min && n <= max ? (int)n : -1;
}

static int parse_bool(const char *v) {
    static const char *const yes[] = {"1", "yes", "true", "on"}, *const no[] = {"0", "no", "false", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(v, yes[i]) == 0) return 1;
        if (strcmp(v, no[i]) == 0) return 0;
    }
    return -1;
}

/* Sets `out` from `text`; returns 0, or -1 if the text is not a valid value. */
static int set_value(const struct fs_setting_desc *d, struct fs_settings *s, struct fs_setting_value *out,
                     const char *text) {
    int num = 0;
    switch (d->kind) {
    case FS_KIND_ENUM: num = choice_index(d->choices, text); break;
    case FS_KIND_BOOL: num = parse_bool(text); break;
    case FS_KIND_INT: num = parse_int(d->choices, text); break;
    case FS_KIND_PATH: num = (text[0] != '\0' && strlen(text) < FS_SETTING_STR_MAX) ? 0 : -1; break;
    case FS_KIND_LIST: num = strlen(text) < FS_SETTING_STR_MAX ? 0 : -1; break; /* may be empty */
    }
    if (num < 0) return -1;
    out->num = num;
    if (d->kind == FS_KIND_PATH) { /* settings.def has one path setting: FORKSAFE_LOG */
        fs_strlcpy(s->path, text, sizeof s->path);
        out->str = s->path;
    } else if (d->kind == FS_KIND_LIST) { /* and one list setting: FORKSAFE_ALLOW */
        fs_strlcpy(s->list, text, sizeof s->list);
        out->str = s->list;
    } else { /* a valid value of the other kinds is short */
        fs_strlcpy(out->word, text, sizeof out->word);
        out->str = out->word;
    }
    return 0;
}

static void warn(int fd, const struct fs_setting_desc *d, const char *bad) {
    if (fd < 0) return;
    char mem[1024];
    struct fs_buf b;
    fs_buf_init(&b, mem, sizeof mem, fd);
    fs_buf_str(&b, "forksafe[");
    fs_buf_int(&b, getpid());
    fs_buf_str(&b, "]: warning: FORKSAFE_");
    fs_buf_str(&b, d->env);
    fs_buf_str(&b, " has an invalid value ");
    /* Echo a short, escaped prefix: a value can be long or hold newlines that would forge lines. */
    char cut[72];
    size_t n = strlen(bad);
    memcpy(cut, bad, n < 64 ? n : 64);
    if (n > 64) memcpy(cut + 64, "...", 4);
    else cut[n] = '\0';
    fs_buf_json_str(&b, cut);
    fs_buf_str(&b, "; using '");
    fs_buf_str(&b, d->def);
    fs_buf_str(&b, "' (valid: ");
    fs_buf_str(&b, d->choices);
    fs_buf_str(&b, ")\n");
    fs_buf_flush(&b);
}

int fs_settings_parse(struct fs_settings *out, const char *(*get)(const char *), int warn_fd) {
    int warnings = 0;
    for (int i = 0; i < FS_SET_COUNT; i++) {
        const struct fs_setting_desc *d = &desc[i];
        struct fs_setting_value *v = &out->v[i];
        set_value(d, out, v, d->def);
        v->from_env = 0;
        char name[64] = "FORKSAFE_";
        strncat(name, d->env, sizeof name - strlen(name) - 1);
        const char *text = get(name);
        if (!text) continue;
        if (set_value(d, out, v, text) == 0) {
            v->from_env = 1;
        } else {
            warn(warn_fd, d, text);
            warnings++;
        }
    }
    return warnings;
}

void fs_settings_format(const struct fs_settings *s, pid_t pid, struct fs_buf *b) {
    for (int i = 0; i < FS_SET_COUNT; i++) {
        fs_buf_str(b, "forksafe[");
        fs_buf_int(b, pid);
        fs_buf_str(b, "]: setting FORKSAFE_");
        fs_buf_str(b, desc[i].env);
        fs_buf_chr(b, '=');
        fs_buf_text_str(b, s->v[i].str);
        fs_buf_str(b, s->v[i].from_env ? " (from the environment)\n" : " (default)\n");
    }
}

void fs_settings_dump(const struct fs_settings *s, int fd) {
    char mem[2048];
    struct fs_buf b;
    fs_buf_init(&b, mem, sizeof mem, fd);
    fs_settings_format(s, getpid(), &b);
    fs_buf_flush(&b);
}
