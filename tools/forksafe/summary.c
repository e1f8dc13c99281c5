// SPDX-License-Identifier: MIT
// `forksafe summary [--json] [--top N] LOG...`: reads JSON report files (FORKSAFE_FORMAT=json),
// directories of them (the per-pid files FORKSAFE_LOG=/dir/forksafe-%p.log gives), `-` for
// standard input, and `journalctl -o json` output (an entry's FORKSAFE_JSON field), and prints
// what happened: forks of multi-threaded processes per parent and per forking site, the threads
// most often lost, repaired and orphaned locks, threads cut off at exit and exec, thread-count
// warnings. Lines that are not report events are counted and shown, never fatal. Input is not
// trusted: lines are bounded (LINE_MAX_BYTES), JSON depth is bounded (json.h), tables are bounded
// (TABLE_MAX distinct rows each, the rest counted), and every string printed is escaped.
#include "tool.h"
#include "json.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINE_MAX_BYTES (64u << 20)
#define TABLE_MAX 100000
#define EXAMPLES_MAX 10
#define DIR_DEPTH_MAX 8

/* snprintf, cutting quietly: messages here are bounded by design. */
__attribute__((format(printf, 3, 4))) static void cut(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}

/* ---- counting tables: a key (fields joined by \x1f) -> count, sum, max, an example ---- */

struct row {
    char *key;
    long count, sum, max;
    char *example;
};

struct table {
    struct row *rows;
    size_t n, cap;
    size_t *slots, nslots;   /* open addressing: row index + 1, 0 empty */
    long others;             /* counts that found no room */
};

static void oom(void) {
    fputs("forksafe summary: out of memory\n", stderr);
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom();
    return p;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

static size_t hash(const char *s) {
    size_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static struct row *table_get(struct table *t, const char *key) {
    if (t->nslots == 0 || (t->n + 1) * 2 > t->nslots) {
        size_t ns = t->nslots ? t->nslots * 2 : 64;
        size_t *slots = calloc(ns, sizeof *slots);
        if (!slots) return NULL;
        for (size_t i = 0; i < t->n; i++) {
            size_t h = hash(t->rows[i].key) & (ns - 1);
            while (slots[h]) h = (h + 1) & (ns - 1);
            slots[h] = i + 1;
        }
        free(t->slots);
        t->slots = slots;
        t->nslots = ns;
    }
    size_t h = hash(key) & (t->nslots - 1);
    for (; t->slots[h]; h = (h + 1) & (t->nslots - 1))
        if (strcmp(t->rows[t->slots[h] - 1].key, key) == 0) return &t->rows[t->slots[h] - 1];
    if (t->n >= TABLE_MAX) return NULL;
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 32;
        t->rows = realloc(t->rows, t->cap * sizeof *t->rows);
        if (!t->rows) oom();
    }
    struct row *r = &t->rows[t->n++];
    memset(r, 0, sizeof *r);
    r->key = xstrdup(key);
    t->slots[h] = t->n;
    return r;
}

/* Adds one occurrence of `key` (with `value` to its sum and max, and an example if it has none). */
static void count(struct table *t, const char *key, long value, const char *example) {
    struct row *r = table_get(t, key);
    if (!r) {
        t->others++;
        return;
    }
    r->count++;
    r->sum += value;
    if (value > r->max) r->max = value;
    if (example && !r->example) r->example = xstrdup(example);
}

static int by_count(const void *a, const void *b) {
    const struct row *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return strcmp(x->key, y->key);
}

static int by_max(const void *a, const void *b) {
    const struct row *x = a, *y = b;
    if (x->max != y->max) return x->max > y->max ? -1 : 1;
    return strcmp(x->key, y->key);
}

static void sort_rows(struct table *t, int (*cmp)(const void *, const void *)) {
    if (t->n > 1) qsort(t->rows, t->n, sizeof *t->rows, cmp);
}

/* Field i of a key (fields are separated by \x1f); "" past the last. */
static const char *field(const char *key, int i, char *out, size_t cap) {
    const char *p = key;
    while (i-- > 0) {
        p = strchr(p, '\x1f');
        if (!p) return out[0] = '\0', out;
        p++;
    }
    const char *end = strchr(p, '\x1f');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n >= cap) n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

/* ---- a growable string ---- */

struct str {
    char *p;
    size_t len, cap;
};

static void str_add(struct str *s, const char *t, size_t n) {
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 128;
        while (cap < s->len + n + 1) cap *= 2;
        s->p = realloc(s->p, cap);
        if (!s->p) oom();
        s->cap = cap;
    }
    memcpy(s->p + s->len, t, n);
    s->len += n;
    s->p[s->len] = '\0';
}

static void str_cat(struct str *s, const char *t) { str_add(s, t ? t : "", t ? strlen(t) : 0); }

static void str_reset(struct str *s) {
    s->len = 0;
    if (s->p) s->p[0] = '\0';
}

/* ---- the summary ---- */

struct summary {
    long files, unreadable, lines, events, malformed, text_lines, truncated, blank;
    struct table events_by_type, parents, sites, lost, locks, cut, how, warns;
    long forks, lost_total;
    struct {
        char *where;
        char *why;
    } examples[EXAMPLES_MAX];
    int nexamples;
    struct str key;  /* scratch */
};

static void malformed(struct summary *s, const char *file, long line, const char *why) {
    s->malformed++;
    if (s->nexamples >= EXAMPLES_MAX) return;
    char where[4200];
    snprintf(where, sizeof where, "%s:%ld", file, line);
    s->examples[s->nexamples].where = xstrdup(where);
    s->examples[s->nexamples].why = xstrdup(why);
    s->nexamples++;
}

/* A Python name with runs of digits folded: "Thread-12 (worker)" -> "Thread-N (worker)". */
static void folded(struct str *k, const char *name) {
    if (!name) return;
    for (const char *p = name; *p; p++) {
        if (*p >= '0' && *p <= '9') {
            while (p[1] >= '0' && p[1] <= '9') p++;
            str_add(k, "N", 1);
        } else {
            str_add(k, p, 1);
        }
    }
}

/* Keys: fields joined by \x1f (a value's own \x1f bytes become spaces). */
static void key_field(struct str *k, const char *v) {
    if (k->len) str_add(k, "\x1f", 1);
    for (const char *p = v ? v : ""; *p; p++) str_add(k, *p == '\x1f' ? " " : p, 1);
}

/* An integer as text; "?" for what is not one (a pid of 1e300, NaN, a fraction). */
static void key_num(struct str *k, double v) {
    char tmp[32];
    if (v == v && v > -1e15 && v < 1e15 && v == (double)(long long)v) snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    else snprintf(tmp, sizeof tmp, "?");
    key_field(k, tmp);
}

/* A count from input: clamped, NaN as 0. */
static long as_long(double v) {
    if (!(v == v)) return 0;
    if (v > 1e15) return (long)1e15;
    if (v < -1e15) return (long)-1e15;
    return (long)v;
}

/* A key field that key_num made: a JSON number, or null. */
static void jint(FILE *f, const char *s) {
    int ok = *s != '\0';
    for (const char *p = s; *p; p++) ok = ok && ((*p >= '0' && *p <= '9') || (*p == '-' && p == s && p[1]));
    fputs(ok ? s : "null", f);
}

/* "file:line in function" of a frame object. */
static void frame_text(struct str *out, const struct jval *f) {
    char tmp[32];
    str_cat(out, jstr(f, "file") ? jstr(f, "file") : "?");
    snprintf(tmp, sizeof tmp, ":%.0f in ", jnum(f, "line", 0));
    str_cat(out, tmp);
    str_cat(out, jstr(f, "function") ? jstr(f, "function") : "?");
}

static void on_fork(struct summary *s, const struct jval *ev) {
    struct str *k = &s->key;
    double lost = jnum(ev, "lost_threads_total", 0);
    s->forks++;
    s->lost_total += as_long(lost);
    str_reset(k);
    key_num(k, jnum(ev, "parent_pid", -1));
    count(&s->parents, k->p, as_long(lost), NULL);

    /* the forking site: the forking thread's innermost Python frame, else its names */
    const struct jval *ft = jget(ev, "forking_thread");
    const struct jval *stack = jget(ft, "python_stack");
    str_reset(k);
    if (stack && stack->t == J_ARR && stack->child && stack->child->t == J_OBJ) {
        frame_text(k, stack->child);
    } else {
        str_cat(k, "thread '");
        str_cat(k, jstr(ft, "name") ? jstr(ft, "name") : "?");
        str_cat(k, "'");
        if (jstr(ft, "python_name")) {
            str_cat(k, " (Python '");
            folded(k, jstr(ft, "python_name"));
            str_cat(k, "')");
        }
    }
    if (k->p) {
        char *site = xstrdup(k->p);
        str_reset(k);
        key_field(k, site);
        count(&s->sites, k->p, 0, NULL);
        free(site);
    }

    const struct jval *lt = jget(ev, "lost_threads");
    if (!lt || lt->t != J_ARR) return;
    for (const struct jval *t = lt->child; t; t = t->next) {
        if (t->t != J_OBJ) continue;
        struct str py = {0};
        folded(&py, jstr(t, "python_name"));
        str_reset(k);
        key_field(k, jstr(t, "name"));
        key_field(k, py.p);
        key_field(k, jstr(t, "start") ? jstr(t, "start") : "(unknown)");
        const struct jval *ps = jget(t, "python_stack");
        struct str where = {0};
        if (ps && ps->t == J_ARR && ps->child && ps->child->t == J_OBJ) frame_text(&where, ps->child);
        count(&s->lost, k->p, 0, where.p);
        free(py.p);
        free(where.p);
    }
}

static void on_lock(struct summary *s, const struct jval *ev, int repaired) {
    struct str *k = &s->key;
    str_reset(k);
    key_field(k, repaired ? "repaired" : "orphaned");
    key_field(k, jstr(ev, "type"));
    key_field(k, jstr(ev, "owner_name") ? jstr(ev, "owner_name") : "(unknown)");
    struct str py = {0};
    folded(&py, jstr(ev, "owner_python_name"));
    key_field(k, py.p);
    key_field(k, repaired ? "" : jstr(ev, "reason"));
    count(&s->locks, k->p, 0, jstr(ev, "lock"));
    free(py.p);
}

static void on_cut(struct summary *s, const struct jval *ev, const char *event) {
    struct str *k = &s->key;
    const char *how = jstr(ev, "how") ? jstr(ev, "how") : event;
    str_reset(k);
    key_field(k, how);
    count(&s->how, k->p, 0, NULL);
    const struct jval *ts = jget(ev, "threads");
    if (!ts || ts->t != J_ARR) return;
    for (const struct jval *t = ts->child; t; t = t->next) {
        if (t->t != J_OBJ) continue;
        struct str py = {0};
        folded(&py, jstr(t, "python_name"));
        str_reset(k);
        key_field(k, how);
        key_field(k, jstr(t, "state"));
        key_field(k, jstr(t, "name"));
        key_field(k, py.p);
        key_field(k, jstr(t, "start") ? jstr(t, "start") : "(unknown)");
        const struct jval *ps = jget(t, "python_stack");
        struct str where = {0};
        if (ps && ps->t == J_ARR && ps->child && ps->child->t == J_OBJ) frame_text(&where, ps->child);
        count(&s->cut, k->p, 0, where.p);
        free(py.p);
        free(where.p);
    }
}

static void on_threads(struct summary *s, const struct jval *ev) {
    struct str *k = &s->key;
    struct str group = {0};
    const struct jval *gs = jget(ev, "groups");
    if (gs && gs->t == J_ARR && gs->child && gs->child->t == J_OBJ) {
        const struct jval *g = gs->child; /* the largest group comes first */
        char tmp[40];
        snprintf(tmp, sizeof tmp, "%.0f x ", jnum(g, "count", 0));
        str_cat(&group, tmp);
        if (jstr(g, "python_name")) {
            str_cat(&group, "Python '");
            str_cat(&group, jstr(g, "python_name"));
            str_cat(&group, "' ");
        }
        str_cat(&group, jstr(g, "start") ? jstr(g, "start") : "(start unknown)");
        const struct jval *app = jget(g, "app_frame");
        if (app && app->t == J_OBJ) {
            str_cat(&group, ", created at ");
            frame_text(&group, app);
        }
    }
    str_reset(k);
    key_num(k, jnum(ev, "pid", -1));
    key_num(k, jnum(ev, "threshold", 0));
    struct row *r = table_get(&s->warns, k->p);
    if (!r) {
        s->warns.others++;
    } else {
        long n = as_long(jnum(ev, "count", 0));
        r->count++;
        if (n >= r->max) { /* keep the largest group of the largest warning */
            r->max = n;
            free(r->example);
            r->example = xstrdup(group.p ? group.p : "");
        }
    }
    free(group.p);
}

static void on_event(struct summary *s, const struct jval *ev) {
    const char *event = jstr(ev, "event");
    s->events++;
    const struct jval *tr = jget(ev, "truncated");
    if (tr && tr->t == J_BOOL && tr->b) s->truncated++;
    str_reset(&s->key);
    key_field(&s->key, event);
    count(&s->events_by_type, s->key.p, 0, NULL);
    if (strcmp(event, "fork") == 0) on_fork(s, ev);
    else if (strcmp(event, "lock_repaired") == 0) on_lock(s, ev, 1);
    else if (strcmp(event, "lock_orphaned") == 0) on_lock(s, ev, 0);
    else if (strcmp(event, "exit") == 0 || strcmp(event, "exec") == 0) on_cut(s, ev, event);
    else if (strcmp(event, "threads") == 0) on_threads(s, ev);
}

static int text_line(const char *p, size_t n) {
    if (n < 12 || memcmp(p, "forksafe[", 9) != 0) return 0;
    size_t i = 9;
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    return i > 9 && i + 1 < n && p[i] == ']' && p[i + 1] == ':';
}

static void on_line(struct summary *s, struct arena *a, const char *file, long lineno, const char *p, size_t n) {
    s->lines++;
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r')) i++;
    if (i == n) {
        s->blank++;
        return;
    }
    if (text_line(p + i, n - i)) {
        s->text_lines++;
        return;
    }
    const char *err;
    struct jval *v = json_parse(a, p, n, &err);
    if (v && v->t == J_OBJ && !jget(v, "event") && jstr(v, "FORKSAFE_JSON")) { /* journalctl -o json */
        const struct jval *inner = jget(v, "FORKSAFE_JSON");
        v = json_parse(a, inner->s, inner->n, &err);
    }
    if (!v) malformed(s, file, lineno, err);
    else if (v->t != J_OBJ || !jstr(v, "event")) malformed(s, file, lineno, "not a report event (no \"event\")");
    else on_event(s, v);
    arena_reset(a);
}

/* Reads fd line by line; a line longer than LINE_MAX_BYTES is skipped and counted. */
static void read_fd(struct summary *s, int fd, const char *file) {
    struct arena a = {0};
    struct str line = {0};
    char buf[65536];
    long lineno = 0;
    int too_long = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        const char *p = buf, *end = buf + n;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);
            if (!too_long && line.len + k > LINE_MAX_BYTES) {
                too_long = 1;
                str_reset(&line);
            }
            if (!too_long) str_add(&line, p, k);
            p += k;
            if (!nl) break;
            p++;
            lineno++;
            if (too_long) {
                s->lines++;
                malformed(s, file, lineno, "line longer than 64 MiB");
            } else {
                on_line(s, &a, file, lineno, line.p ? line.p : "", line.len);
            }
            too_long = 0;
            str_reset(&line);
        }
    }
    if (line.len || too_long) { /* a last line without a newline (a writer cut off) */
        lineno++;
        if (too_long) {
            s->lines++;
            malformed(s, file, lineno, "line longer than 64 MiB");
        } else {
            on_line(s, &a, file, lineno, line.p, line.len);
        }
    }
    free(line.p);
    arena_reset(&a);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void read_path(struct summary *s, const char *path, int depth, int named);

static void read_dir(struct summary *s, const char *path, int depth) {
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "forksafe summary: cannot read directory %s: %s\n", path, strerror(errno));
        s->unreadable++;
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* ., .., hidden files */
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof *names);
            if (!names) oom();
        }
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (n > 1) qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(path) + strlen(names[i]) + 2;
        char *full = xmalloc(len);
        snprintf(full, len, "%s/%s", path, names[i]);
        read_path(s, full, depth + 1, 0);
        free(full);
        free(names[i]);
    }
    free(names);
}

static void read_path(struct summary *s, const char *path, int depth, int named) {
    struct stat st;
    if (strcmp(path, "-") == 0 && named) {
        s->files++;
        read_fd(s, 0, "(stdin)");
        return;
    }
    /* named on the command line: follow a symbolic link; inside a directory: skip them (no loops) */
    if ((named ? stat(path, &st) : lstat(path, &st)) != 0) {
        fprintf(stderr, "forksafe summary: cannot read %s: %s\n", path, strerror(errno));
        s->unreadable++;
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        if (depth >= DIR_DEPTH_MAX) return;
        read_dir(s, path, depth);
        return;
    }
    if (!S_ISREG(st.st_mode) && !(named && (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)))) return;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fprintf(stderr, "forksafe summary: cannot read %s: %s\n", path, strerror(errno));
        s->unreadable++;
        return;
    }
    s->files++;
    read_fd(s, fd, path);
    close(fd);
}

/* ---- output: text ---- */

/* A value for a terminal: control bytes and invalid UTF-8 as \xNN. Returns the display width. */
static size_t put_text(FILE *f, const char *s, size_t maxw) {
    size_t w = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p && w < maxw) {
        int n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
        int ok = n > 0 && !(n == 1 && (*p < 0x20 || *p == 0x7f));
        for (int i = 1; ok && i < n; i++) ok = (p[i] & 0xc0) == 0x80;
        if (ok && n == 2 && *p < 0xc2) ok = 0;
        if (ok) {
            fwrite(p, 1, (size_t)n, f);
            p += n;
            w++;
        } else {
            fprintf(f, "\\x%02x", *p++);
            w += 4;
        }
    }
    if (*p) {
        fputs("...", f);
        w += 3;
    }
    return w;
}

static size_t text_width(const char *s, size_t maxw) {
    FILE *f = fopen("/dev/null", "w");
    size_t w = f ? put_text(f, s, maxw) : strlen(s);
    if (f) fclose(f);
    return w;
}

#define COLS_MAX 6
#define CELL_MAX 120   /* a cell wider than this is cut, "..." */

struct grid {
    const char *head[COLS_MAX];
    int ncols, numeric[COLS_MAX];
    char **cells;   /* rows * ncols */
    size_t rows;
};

static void grid_print(FILE *f, struct grid *g) {
    size_t w[COLS_MAX] = {0};
    for (int c = 0; c < g->ncols; c++) w[c] = strlen(g->head[c]);
    for (size_t r = 0; r < g->rows; r++)
        for (int c = 0; c < g->ncols; c++) {
            size_t x = text_width(g->cells[r * (size_t)g->ncols + c], CELL_MAX);
            if (x > w[c]) w[c] = x;
        }
    for (size_t r = 0; r <= g->rows; r++) {
        fputs("  ", f);
        for (int c = 0; c < g->ncols; c++) {
            const char *cell = r == 0 ? g->head[c] : g->cells[(r - 1) * (size_t)g->ncols + c];
            size_t x = text_width(cell, CELL_MAX);
            int last = c == g->ncols - 1;
            if (g->numeric[c]) for (size_t i = x; i < w[c]; i++) fputc(' ', f);
            put_text(f, cell, CELL_MAX);
            if (!last && !g->numeric[c]) for (size_t i = x; i < w[c]; i++) fputc(' ', f);
            if (!last) fputs("  ", f);
        }
        fputc('\n', f);
    }
}

static void grid_free(struct grid *g) {
    for (size_t i = 0; i < g->rows * (size_t)g->ncols; i++) free(g->cells[i]);
    free(g->cells);
}

static void grid_row(struct grid *g, ...);

static void grid_row(struct grid *g, ...) {
    g->cells = realloc(g->cells, (g->rows + 1) * (size_t)g->ncols * sizeof *g->cells);
    if (!g->cells) oom();
    va_list ap;
    va_start(ap, g);
    for (int c = 0; c < g->ncols; c++) {
        const char *v = va_arg(ap, const char *);
        g->cells[g->rows * (size_t)g->ncols + c] = xstrdup(v ? v : "");
    }
    va_end(ap);
    g->rows++;
}

static size_t shown(const struct table *t, size_t top) { return top == 0 || t->n < top ? t->n : top; }

static void more(FILE *f, const struct table *t, size_t top) {
    if (shown(t, top) < t->n) fprintf(f, "  ... and %zu more (--top 0 shows all)\n", t->n - shown(t, top));
    if (t->others) fprintf(f, "  ... and %ld more not tabled (over %d distinct rows)\n", t->others, TABLE_MAX);
}

/* "name (Python 'py')" */
static void who(char *out, size_t cap, const char *name, const char *py) {
    if (py && *py) cut(out, cap, "%s (Python '%s')", name, py);
    else cut(out, cap, "%s", name);
}

static void print_text(FILE *f, struct summary *s, size_t top) {
    char a[4096], b[4096], c[4096], d[4096], e[4096], n1[32], n2[32];
    fprintf(f, "forksafe summary: %ld file%s, %ld line%s, %ld event%s", s->files, s->files == 1 ? "" : "s",
            s->lines, s->lines == 1 ? "" : "s", s->events, s->events == 1 ? "" : "s");
    if (s->truncated) fprintf(f, " (%ld shortened)", s->truncated);
    fprintf(f, "; %ld malformed line%s\n", s->malformed, s->malformed == 1 ? "" : "s");
    if (s->unreadable) fprintf(f, "  %ld path%s could not be read (see above)\n", s->unreadable, s->unreadable == 1 ? "" : "s");
    if (s->text_lines)
        fprintf(f, "  %ld text report line%s skipped: summary reads JSON reports (FORKSAFE_FORMAT=json, forksafe --json)\n",
                s->text_lines, s->text_lines == 1 ? "" : "s");
    if (s->events_by_type.n) {
        sort_rows(&s->events_by_type, by_count);
        fputs("  events:", f);
        for (size_t i = 0; i < s->events_by_type.n; i++) {
            fputc(' ', f);
            put_text(f, s->events_by_type.rows[i].key, 40);
            fprintf(f, " %ld%s", s->events_by_type.rows[i].count, i + 1 < s->events_by_type.n ? "," : "");
        }
        fputc('\n', f);
    }

    fprintf(f, "\nForks of multi-threaded processes: %ld (threads lost: %ld)\n", s->forks, s->lost_total);
    if (s->parents.n) {
        sort_rows(&s->parents, by_count);
        struct grid g = {.head = {"forks", "lost threads", "parent pid"}, .ncols = 3, .numeric = {1, 1, 1}};
        for (size_t i = 0; i < shown(&s->parents, top); i++) {
            struct row *r = &s->parents.rows[i];
            snprintf(n1, sizeof n1, "%ld", r->count);
            snprintf(n2, sizeof n2, "%ld", r->sum);
            grid_row(&g, n1, n2, r->key);
        }
        fputs(" by parent:\n", f);
        grid_print(f, &g);
        grid_free(&g);
        more(f, &s->parents, top);
    }
    if (s->sites.n) {
        sort_rows(&s->sites, by_count);
        struct grid g = {.head = {"forks", "forking site (innermost Python frame, or thread)"}, .ncols = 2, .numeric = {1, 0}};
        for (size_t i = 0; i < shown(&s->sites, top); i++) {
            snprintf(n1, sizeof n1, "%ld", s->sites.rows[i].count);
            grid_row(&g, n1, s->sites.rows[i].key);
        }
        fputs(" by forking site:\n", f);
        grid_print(f, &g);
        grid_free(&g);
        more(f, &s->sites, top);
    }

    fputs("\nThreads most often lost:\n", f);
    if (!s->lost.n) fputs("  none\n", f);
    else {
        sort_rows(&s->lost, by_count);
        struct grid g = {.head = {"forks", "thread", "start routine", "was at"}, .ncols = 4, .numeric = {1, 0, 0, 0}};
        for (size_t i = 0; i < shown(&s->lost, top); i++) {
            struct row *r = &s->lost.rows[i];
            snprintf(n1, sizeof n1, "%ld", r->count);
            who(a, sizeof a, field(r->key, 0, b, sizeof b), field(r->key, 1, c, sizeof c));
            grid_row(&g, n1, a, field(r->key, 2, d, sizeof d), r->example ? r->example : "");
        }
        grid_print(f, &g);
        grid_free(&g);
        more(f, &s->lost, top);
    }

    fputs("\nLocks held by lost threads:\n", f);
    if (!s->locks.n) fputs("  none\n", f);
    else {
        sort_rows(&s->locks, by_count);
        struct grid g = {.head = {"count", "outcome", "type", "owner (lost thread)", "reason", "e.g. lock"}, .ncols = 6,
                         .numeric = {1, 0, 0, 0, 0, 0}};
        for (size_t i = 0; i < shown(&s->locks, top); i++) {
            struct row *r = &s->locks.rows[i];
            snprintf(n1, sizeof n1, "%ld", r->count);
            who(a, sizeof a, field(r->key, 2, b, sizeof b), field(r->key, 3, c, sizeof c));
            grid_row(&g, n1, field(r->key, 0, d, sizeof d), field(r->key, 1, e, sizeof e), a,
                     *field(r->key, 4, b, sizeof b) ? b : "-", r->example ? r->example : "");
        }
        grid_print(f, &g);
        grid_free(&g);
        more(f, &s->locks, top);
    }

    long cut_events = 0;
    for (size_t i = 0; i < s->how.n; i++) cut_events += s->how.rows[i].count;
    fprintf(f, "\nThreads cut off at exit and exec: %ld event%s", cut_events, cut_events == 1 ? "" : "s");
    sort_rows(&s->how, by_count);
    for (size_t i = 0; i < s->how.n; i++) {
        fputs(i ? ", " : " (", f);
        put_text(f, s->how.rows[i].key, 40);
        fprintf(f, " %ld", s->how.rows[i].count);
    }
    fputs(s->how.n ? ")\n" : "\n", f);
    if (s->cut.n) {
        sort_rows(&s->cut, by_count);
        struct grid g = {.head = {"count", "how", "state", "thread", "start routine", "was at"}, .ncols = 6,
                         .numeric = {1, 0, 0, 0, 0, 0}};
        for (size_t i = 0; i < shown(&s->cut, top); i++) {
            struct row *r = &s->cut.rows[i];
            snprintf(n1, sizeof n1, "%ld", r->count);
            who(a, sizeof a, field(r->key, 2, b, sizeof b), field(r->key, 3, c, sizeof c));
            grid_row(&g, n1, field(r->key, 0, d, sizeof d), field(r->key, 1, e, sizeof e), a,
                     field(r->key, 4, b, sizeof b), r->example ? r->example : "");
        }
        grid_print(f, &g);
        grid_free(&g);
        more(f, &s->cut, top);
    }

    fputs("\nThread-count warnings (FORKSAFE_THREADS_WARN):\n", f);
    if (!s->warns.n) fputs("  none\n", f);
    else {
        sort_rows(&s->warns, by_max);
        struct grid g = {.head = {"pid", "threads", "warnings", "largest group"}, .ncols = 4, .numeric = {1, 1, 1, 0}};
        for (size_t i = 0; i < shown(&s->warns, top); i++) {
            struct row *r = &s->warns.rows[i];
            snprintf(n1, sizeof n1, "%ld", r->max);
            snprintf(n2, sizeof n2, "%ld", r->count);
            grid_row(&g, field(r->key, 0, a, sizeof a), n1, n2, r->example ? r->example : "");
        }
        grid_print(f, &g);
        grid_free(&g);
        more(f, &s->warns, top);
    }

    if (s->malformed) {
        fprintf(f, "\nMalformed lines: %ld%s\n", s->malformed, s->malformed > s->nexamples ? " (the first ones:)" : "");
        for (int i = 0; i < s->nexamples; i++) {
            fputs("  ", f);
            put_text(f, s->examples[i].where, 4096);
            fputs(": ", f);
            put_text(f, s->examples[i].why, 200);
            fputc('\n', f);
        }
    }
}

/* ---- output: JSON ---- */

static void jstring(FILE *f, const char *s) {
    fputc('"', f);
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        int n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
        int ok = n > 0;
        for (int i = 1; ok && i < n; i++) ok = (p[i] & 0xc0) == 0x80;
        if (ok && n == 2 && *p < 0xc2) ok = 0;
        if (!ok) {
            fputs("\\ufffd", f);
            p++;
        } else if (n == 1 && (*p < 0x20 || *p == '"' || *p == '\\' || *p == 0x7f)) {
            if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
            else fprintf(f, "\\u%04x", *p);
            p++;
        } else {
            fwrite(p, 1, (size_t)n, f);
            p += n;
        }
    }
    fputc('"', f);
}

static void jkey(FILE *f, int *first, const char *k) {
    if (!*first) fputc(',', f);
    *first = 0;
    jstring(f, k);
    fputc(':', f);
}

static void jnull_or(FILE *f, const char *s) {
    if (s && *s) jstring(f, s);
    else fputs("null", f);
}

static void print_json(FILE *f, struct summary *s, size_t top) {
    char a[4096], b[4096], c[4096], d[4096], e[4096];
    int first = 1;
    fputc('{', f);
    jkey(f, &first, "files"); fprintf(f, "%ld", s->files);
    jkey(f, &first, "unreadable"); fprintf(f, "%ld", s->unreadable);
    jkey(f, &first, "lines"); fprintf(f, "%ld", s->lines);
    jkey(f, &first, "events"); fprintf(f, "%ld", s->events);
    jkey(f, &first, "truncated"); fprintf(f, "%ld", s->truncated);
    jkey(f, &first, "malformed"); fprintf(f, "%ld", s->malformed);
    jkey(f, &first, "text_lines"); fprintf(f, "%ld", s->text_lines);
    jkey(f, &first, "events_by_type");
    fputc('{', f);
    sort_rows(&s->events_by_type, by_count);
    for (size_t i = 0; i < s->events_by_type.n; i++) {
        if (i) fputc(',', f);
        jstring(f, s->events_by_type.rows[i].key);
        fprintf(f, ":%ld", s->events_by_type.rows[i].count);
    }
    fputc('}', f);

    jkey(f, &first, "forks");
    fprintf(f, "{\"total\":%ld,\"lost_threads\":%ld,\"by_parent\":[", s->forks, s->lost_total);
    sort_rows(&s->parents, by_count);
    for (size_t i = 0; i < shown(&s->parents, top); i++) {
        fputs(i ? ",{\"parent_pid\":" : "{\"parent_pid\":", f);
        jint(f, s->parents.rows[i].key);
        fprintf(f, ",\"forks\":%ld,\"lost_threads\":%ld}", s->parents.rows[i].count, s->parents.rows[i].sum);
    }
    fputs("],\"by_site\":[", f);
    sort_rows(&s->sites, by_count);
    for (size_t i = 0; i < shown(&s->sites, top); i++) {
        fputs(i ? ",{\"site\":" : "{\"site\":", f);
        jstring(f, s->sites.rows[i].key);
        fprintf(f, ",\"forks\":%ld}", s->sites.rows[i].count);
    }
    fputs("]}", f);

    jkey(f, &first, "lost_threads");
    fputc('[', f);
    sort_rows(&s->lost, by_count);
    for (size_t i = 0; i < shown(&s->lost, top); i++) {
        struct row *r = &s->lost.rows[i];
        fputs(i ? ",{\"name\":" : "{\"name\":", f);
        jstring(f, field(r->key, 0, a, sizeof a));
        fputs(",\"python_name\":", f);
        jnull_or(f, field(r->key, 1, b, sizeof b));
        fputs(",\"start\":", f);
        jstring(f, field(r->key, 2, c, sizeof c));
        fputs(",\"was_at\":", f);
        jnull_or(f, r->example);
        fprintf(f, ",\"forks\":%ld}", r->count);
    }
    fputc(']', f);

    jkey(f, &first, "locks");
    fputc('[', f);
    sort_rows(&s->locks, by_count);
    for (size_t i = 0; i < shown(&s->locks, top); i++) {
        struct row *r = &s->locks.rows[i];
        fputs(i ? ",{\"outcome\":" : "{\"outcome\":", f);
        jstring(f, field(r->key, 0, a, sizeof a));
        fputs(",\"type\":", f);
        jnull_or(f, field(r->key, 1, b, sizeof b));
        fputs(",\"owner_name\":", f);
        jstring(f, field(r->key, 2, c, sizeof c));
        fputs(",\"owner_python_name\":", f);
        jnull_or(f, field(r->key, 3, d, sizeof d));
        fputs(",\"reason\":", f);
        jnull_or(f, field(r->key, 4, e, sizeof e));
        fputs(",\"example_lock\":", f);
        jnull_or(f, r->example);
        fprintf(f, ",\"count\":%ld}", r->count);
    }
    fputc(']', f);

    jkey(f, &first, "cut_off");
    fputs("{\"events\":{", f);
    sort_rows(&s->how, by_count);
    for (size_t i = 0; i < s->how.n; i++) {
        if (i) fputc(',', f);
        jstring(f, s->how.rows[i].key);
        fprintf(f, ":%ld", s->how.rows[i].count);
    }
    fputs("},\"threads\":[", f);
    sort_rows(&s->cut, by_count);
    for (size_t i = 0; i < shown(&s->cut, top); i++) {
        struct row *r = &s->cut.rows[i];
        fputs(i ? ",{\"how\":" : "{\"how\":", f);
        jstring(f, field(r->key, 0, a, sizeof a));
        fputs(",\"state\":", f);
        jnull_or(f, field(r->key, 1, b, sizeof b));
        fputs(",\"name\":", f);
        jstring(f, field(r->key, 2, c, sizeof c));
        fputs(",\"python_name\":", f);
        jnull_or(f, field(r->key, 3, d, sizeof d));
        fputs(",\"start\":", f);
        jstring(f, field(r->key, 4, e, sizeof e));
        fputs(",\"was_at\":", f);
        jnull_or(f, r->example);
        fprintf(f, ",\"count\":%ld}", r->count);
    }
    fputs("]}", f);

    jkey(f, &first, "thread_warnings");
    fputc('[', f);
    sort_rows(&s->warns, by_max);
    for (size_t i = 0; i < shown(&s->warns, top); i++) {
        struct row *r = &s->warns.rows[i];
        fputs(i ? ",{\"pid\":" : "{\"pid\":", f);
        jint(f, field(r->key, 0, a, sizeof a));
        fputs(",\"threshold\":", f);
        jint(f, field(r->key, 1, b, sizeof b));
        fprintf(f, ",\"threads\":%ld,\"warnings\":%ld,\"largest_group\":", r->max, r->count);
        jnull_or(f, r->example);
        fputc('}', f);
    }
    fputc(']', f);

    jkey(f, &first, "malformed_examples");
    fputc('[', f);
    for (int i = 0; i < s->nexamples; i++) {
        fputs(i ? ",{\"where\":" : "{\"where\":", f);
        jstring(f, s->examples[i].where);
        fputs(",\"reason\":", f);
        jstring(f, s->examples[i].why);
        fputc('}', f);
    }
    fputs("]}\n", f);
}

int forksafe_summary(int argc, char **argv) {
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"top", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'}, {0}};
    int json = 0;
    size_t top = 10;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "+jt:h", opts, NULL)) != -1;) {
        switch (c) {
        case 'j': json = 1; break;
        case 't': {
            char *end;
            errno = 0;
            unsigned long v = strtoul(optarg, &end, 10);
            if (!*optarg || *end || errno || optarg[0] == '-' || v > 1000000) {
                fprintf(stderr, "forksafe summary: --top wants a number 0..1000000, not '%s'\n", optarg);
                return 2;
            }
            top = v;
            break;
        }
        case 'h': printf("%s", FORKSAFE_SUMMARY_USAGE); return 0;
        default: fprintf(stderr, "%s", FORKSAFE_SUMMARY_USAGE); return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "forksafe summary: no log given\n%s", FORKSAFE_SUMMARY_USAGE);
        return 2;
    }
    struct summary s;
    memset(&s, 0, sizeof s);
    for (int i = optind; i < argc; i++) read_path(&s, argv[i], 0, 1);
    if (json) print_json(stdout, &s, top);
    else print_text(stdout, &s, top);
    if (fflush(stdout) != 0) return 1;
    return s.unreadable ? 1 : 0;
}
