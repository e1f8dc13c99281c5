// SPDX-License-Identifier: MIT
// forksafe: runs a program with libforksafe preloaded, without knowing where it is installed.
//   forksafe [OPTIONS] [--] CMD [ARGS...]      LD_PRELOAD gains the library (kept entries, never
//                                             twice), the options become FORKSAFE_* variables,
//                                             then CMD replaces forksafe (same pid, signals, fds)
//   forksafe [OPTIONS] check [CMD [ARGS...]]   would the library load into CMD? settings
//   forksafe summary [--json] [--top N] LOG... a table of what JSON reports say
//   forksafe --print-path | --version | --help
// The library's path is compiled in (meson's prefix and libdir); --library PATH or the
// environment variable FORKSAFE_LIBRARY overrides it (tests, relocated installs).
// Exit status: CMD's; 2 bad usage; 125 forksafe itself failed (library missing); 126 CMD cannot
// be executed; 127 CMD not found. check: 0 would load, 1 would not, 2 usage.
// Needs only the C library at run time.
#include "base/base.h"
#include "tool.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef FORKSAFE_LIBRARY_PATH
#error "FORKSAFE_LIBRARY_PATH: the installed library, set by meson"
#endif

/* settings.def's names and choices, for our messages */
static const struct { const char *env, *choices; } setting_doc[FS_SET_COUNT] = {
#define FS_SETTING(id, env, kind, def, choices, help) [FS_SET_##id] = {env, choices},
#include "base/settings.def"
#undef FS_SETTING
};

static const char usage_text[] =
    "usage: forksafe [OPTIONS] [--] CMD [ARGS...]     run CMD with libforksafe preloaded\n"
    "       forksafe [OPTIONS] check [CMD [ARGS...]]  would the library load into CMD? and its settings\n"
    "       forksafe summary [--json] [--top N] LOG...  what JSON reports say, as a table\n"
    "       forksafe --print-path | --version | --help\n"
    "options (each sets the FORKSAFE_* variable named for CMD; see libforksafe(7)):\n"
    "  --mode=repair|report|off         FORKSAFE_MODE\n"
    "  --log=stderr|journal|PATH        FORKSAFE_LOG (%p in PATH: the pid)\n"
    "  --json                           FORKSAFE_FORMAT=json\n"
    "  --verbose                        FORKSAFE_VERBOSE=1: print the settings when the library loads\n"
    "  --stack-depth=N                  FORKSAFE_STACK_DEPTH (0..64)\n"
    "  --exit-report=on|all|off         FORKSAFE_EXIT_REPORT\n"
    "  --threads-warn=N                 FORKSAFE_THREADS_WARN (0: never)\n"
    "  --strict[=on|green|off]          FORKSAFE_STRICT (alone: on): a fork that loses a thread fails\n"
    "                                   the child (status 70), for test suites and CI\n"
    "  --allow=GLOB,...                 FORKSAFE_ALLOW: threads strict mode accepts losing\n"
    "  --green=report|kill|off          FORKSAFE_GREEN: green threads carried into a child\n"
    "  --library=PATH                   the library to preload (else $FORKSAFE_LIBRARY, else\n"
    "                                   " FORKSAFE_LIBRARY_PATH ")\n"
    "exit status: CMD's; 2 bad usage; 125 forksafe failed; 126 CMD not executable; 127 CMD not found;\n"
    "check: 0 would load, 1 would not.\n";

static int usage_error(const char *fmt, const char *arg) {
    fputs("forksafe: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n", stderr);
    fputs(usage_text, stderr);
    return 2;
}

/* The options given, as settings. */
static const char *given[FS_SET_COUNT];

static const char *get_given(const char *name) {
    for (int i = 0; i < FS_SET_COUNT; i++)
        if (given[i] && strncmp(name, "FORKSAFE_", 9) == 0 && strcmp(name + 9, setting_doc[i].env) == 0) return given[i];
    return NULL;
}

/* Checks the options' values with the library's own parser; 0, or 2 after a message. */
static int validate(void) {
    for (int i = 0; i < FS_SET_COUNT; i++) {
        if (!given[i]) continue;
        const char *saved[FS_SET_COUNT];
        memcpy(saved, given, sizeof saved);
        for (int j = 0; j < FS_SET_COUNT; j++)
            if (j != i) given[j] = NULL;
        static struct fs_settings s;
        int bad = fs_settings_parse(&s, get_given, -1);
        memcpy(given, saved, sizeof saved);
        if (bad) {
            char opt[64];
            size_t k = 0;
            for (const char *p = setting_doc[i].env; *p && k < sizeof opt - 1; p++) opt[k++] = *p == '_' ? '-' : (char)(*p | 0x20);
            opt[k] = '\0';
            fprintf(stderr, "forksafe: --%s: invalid value '%s' (valid: %s)\n", opt, given[i], setting_doc[i].choices);
            fputs(usage_text, stderr);
            return 2;
        }
    }
    return 0;
}

static int apply(void) {
    for (int i = 0; i < FS_SET_COUNT; i++) {
        if (!given[i]) continue;
        char name[64];
        snprintf(name, sizeof name, "FORKSAFE_%s", setting_doc[i].env);
        if (setenv(name, given[i], 1) != 0) return -1;
    }
    return 0;
}

/* The library's path: --library, else $FORKSAFE_LIBRARY, else the one installed with us. Made
 * absolute (LD_PRELOAD resolves a relative path against each program's own directory). */
static char library[PATH_MAX];

static int set_library(const char *opt) {
    const char *p = opt ? opt : getenv("FORKSAFE_LIBRARY");
    if (!p || !*p) p = FORKSAFE_LIBRARY_PATH;
    if (p[0] == '/') {
        snprintf(library, sizeof library, "%s", p);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd) || strlen(cwd) + strlen(p) + 2 > sizeof library) return -1;
        memcpy(library, cwd, strlen(cwd));
        library[strlen(cwd)] = '/';
        memcpy(library + strlen(cwd) + 1, p, strlen(p) + 1);
    }
    return 0;
}

static int is_sep(char c) { return c == ' ' || c == ':' || c == '\t' || c == '\n'; }

/* Is this LD_PRELOAD entry our library? By path, by file, or by name for a bare soname. */
static int is_ours(const char *entry, size_t n, const struct stat *lib, int have_lib) {
    char e[PATH_MAX];
    if (n >= sizeof e) return 0;
    memcpy(e, entry, n);
    e[n] = '\0';
    if (strcmp(e, library) == 0) return 1;
    if (!strchr(e, '/')) return strncmp(e, "libforksafe.so", 14) == 0;
    struct stat st;
    return have_lib && stat(e, &st) == 0 && st.st_dev == lib->st_dev && st.st_ino == lib->st_ino;
}

/* LD_PRELOAD with the library added at the end (its entries stay first: a sanitizer's runtime
 * must come first), unless it is there already. */
static int set_preload(void) {
    const char *old = getenv("LD_PRELOAD");
    struct stat lib;
    int have_lib = stat(library, &lib) == 0;
    if (old) {
        for (const char *p = old; *p;) {
            while (*p && is_sep(*p)) p++;
            const char *s = p;
            while (*p && !is_sep(*p)) p++;
            if (p > s && is_ours(s, (size_t)(p - s), &lib, have_lib)) return 0;
        }
    }
    size_t n = (old ? strlen(old) : 0) + strlen(library) + 2;
    char *v = malloc(n);
    if (!v) return -1;
    size_t end = old ? strlen(old) : 0;
    while (end > 0 && is_sep(old[end - 1])) end--;
    snprintf(v, n, "%.*s%s%s", (int)end, old ? old : "", end ? ":" : "", library);
    int r = setenv("LD_PRELOAD", v, 1);
    free(v);
    return r;
}

int main(int argc, char **argv) {
    enum { O_LIBRARY = 256, O_PRINT_PATH, O_VERSION, O_JSON, O_VERBOSE };
    static const struct option opts[] = {
        {"mode", required_argument, NULL, FS_SET_mode},
        {"log", required_argument, NULL, FS_SET_log},
        {"stack-depth", required_argument, NULL, FS_SET_stack_depth},
        {"exit-report", required_argument, NULL, FS_SET_exit_report},
        {"threads-warn", required_argument, NULL, FS_SET_threads_warn},
        {"strict", optional_argument, NULL, FS_SET_strict},
        {"allow", required_argument, NULL, FS_SET_allow},
        {"green", required_argument, NULL, FS_SET_green},
        {"json", no_argument, NULL, O_JSON},
        {"verbose", no_argument, NULL, O_VERBOSE},
        {"library", required_argument, NULL, O_LIBRARY},
        {"print-path", no_argument, NULL, O_PRINT_PATH},
        {"version", no_argument, NULL, O_VERSION},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    const char *lib_opt = NULL;
    int print_path = 0, version = 0;
    /* '+': options end at CMD, so that CMD's own options stay CMD's */
    for (int c; (c = getopt_long(argc, argv, "+h", opts, NULL)) != -1;) {
        switch (c) {
        case O_JSON: given[FS_SET_format] = "json"; break;
        case O_VERBOSE: given[FS_SET_verbose] = "1"; break;
        case O_LIBRARY:
            if (!*optarg) return usage_error("--library wants a path%s", "");
            lib_opt = optarg;
            break;
        case O_PRINT_PATH: print_path = 1; break;
        case O_VERSION: version = 1; break;
        case 'h': fputs(usage_text, stdout); return 0;
        case '?': fputs(usage_text, stderr); return 2;
        default:
            if (c >= 0 && c < FS_SET_COUNT) given[c] = optarg ? optarg : "on"; /* --strict alone */
            break;
        }
    }
    if (set_library(lib_opt) != 0) {
        perror("forksafe: the current directory");
        return 125;
    }
    if (version) {
        printf("forksafe %s\nlibrary: %s\n", FORKSAFE_VERSION, library);
        return 0;
    }
    if (print_path) {
        puts(library);
        if (access(library, R_OK) != 0) {
            fprintf(stderr, "forksafe: warning: %s: %s\n", library, strerror(errno));
            return 1;
        }
        return 0;
    }
    if (optind >= argc) return usage_error("no command given%s", "");
    const char *cmd = argv[optind];
    if (strcmp(cmd, "summary") == 0) return forksafe_summary(argc - optind, argv + optind);
    int r = validate();
    if (r) return r;
    if (strcmp(cmd, "check") == 0) {
        /* options may also follow `check` */
        int sub_argc = argc - optind;
        char **sub_argv = argv + optind;
        optind = 1;
        for (int c; (c = getopt_long(sub_argc, sub_argv, "+h", opts, NULL)) != -1;) {
            switch (c) {
            case O_JSON: given[FS_SET_format] = "json"; break;
            case O_VERBOSE: given[FS_SET_verbose] = "1"; break;
            case O_LIBRARY:
                if (!*optarg) return usage_error("--library wants a path%s", "");
                if (set_library(optarg) != 0) return 125;
                break;
            case 'h': fputs(usage_text, stdout); return 0;
            case O_PRINT_PATH:
            case O_VERSION:
            case '?': fputs(usage_text, stderr); return 2;
            default:
                if (c >= 0 && c < FS_SET_COUNT) given[c] = optarg ? optarg : "on"; /* --strict alone */
                break;
            }
        }
        if ((r = validate()) != 0) return r;
        if (apply() != 0) {
            perror("forksafe: setenv");
            return 125;
        }
        return forksafe_check(library, sub_argc - optind, sub_argv + optind);
    }

    if (access(library, R_OK) != 0) {
        fprintf(stderr, "forksafe: the library %s: %s (install libforksafe, or name it with --library or FORKSAFE_LIBRARY)\n",
                library, strerror(errno));
        return 125;
    }
    if (strpbrk(library, " :\t")) {
        fprintf(stderr, "forksafe: the library path %s has a space or ':', which LD_PRELOAD cannot hold\n", library);
        return 125;
    }
    char why[PATH_MAX + 600];
    if (forksafe_load_problem(library, cmd, why, sizeof why))
        fprintf(stderr, "forksafe: warning: libforksafe will not be loaded: %s\n", why);
    if (apply() != 0 || set_preload() != 0) {
        perror("forksafe: setenv");
        return 125;
    }
    execvp(cmd, argv + optind);
    int err = errno;
    fprintf(stderr, "forksafe: %s: %s\n", cmd, strerror(err));
    return err == ENOENT || err == ENOTDIR ? 127 : 126;
}
