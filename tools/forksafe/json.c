// SPDX-License-Identifier: MIT
// The JSON reader of json.h: strict RFC 8259 grammar, bounded depth, arena allocation.
#include "json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t mem[];
};

void arena_reset(struct arena *a) {
    while (a->head) {
        struct chunk *c = a->head;
        a->head = c->next;
        free(c);
    }
}

static void *alloc(struct arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    struct chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = (char *)c->mem + c->used;
    c->used += n;
    return p;
}

struct parser {
    const char *p, *end;
    struct arena *a;
    const char *err;
};

static void ws(struct parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int fail(struct parser *ps, const char *why) {
    if (!ps->err) ps->err = why;
    return -1;
}

static int hex4(const char *p, const char *end, unsigned *out) {
    if (end - p < 4) return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (h < 0) return -1;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned long c) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xc0 | c >> 6); o[1] = (char)(0x80 | (c & 0x3f)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | c >> 12); o[1] = (char)(0x80 | (c >> 6 & 0x3f)); o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | c >> 18); o[1] = (char)(0x80 | (c >> 12 & 0x3f));
    o[2] = (char)(0x80 | (c >> 6 & 0x3f)); o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* A string at ps->p (on its opening quote). The decoded text is never longer than the source. */
static int string(struct parser *ps, const char **out, size_t *outlen) {
    const char *start = ++ps->p;
    const char *q = start;
    while (q < ps->end && *q != '"') {
        if (*q == '\\') q++;
        q++;
    }
    if (q >= ps->end) return fail(ps, "unterminated string");
    char *dst = alloc(ps->a, (size_t)(q - start) + 1);
    if (!dst) return fail(ps, "out of memory");
    size_t n = 0;
    while (ps->p < q) {
        unsigned char c = (unsigned char)*ps->p++;
        if (c < 0x20) return fail(ps, "control character in a string");
        if (c != '\\') {
            dst[n++] = (char)c;
            continue;
        }
        char e = *ps->p++;
        switch (e) {
        case '"': dst[n++] = '"'; break;
        case '\\': dst[n++] = '\\'; break;
        case '/': dst[n++] = '/'; break;
        case 'b': dst[n++] = '\b'; break;
        case 'f': dst[n++] = '\f'; break;
        case 'n': dst[n++] = '\n'; break;
        case 'r': dst[n++] = '\r'; break;
        case 't': dst[n++] = '\t'; break;
        case 'u': {
            unsigned u, lo;
            if (hex4(ps->p, q, &u) != 0) return fail(ps, "bad \\u escape");
            ps->p += 4;
            unsigned long cp = u;
            if (u >= 0xd800 && u < 0xdc00 && q - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u' &&
                hex4(ps->p + 2, q, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((unsigned long)(u - 0xd800) << 10) + (lo - 0xdc00);
                ps->p += 6;
            } else if (u >= 0xd800 && u < 0xe000) {
                cp = 0xfffd; /* a lone surrogate */
            }
            n += put_utf8(dst + n, cp);
            break;
        }
        default: return fail(ps, "bad escape");
        }
    }
    ps->p = q + 1;
    dst[n] = '\0';
    *out = dst;
    *outlen = n;
    return 0;
}

static int number(struct parser *ps, double *out) {
    const char *s = ps->p;
    if (ps->p < ps->end && *ps->p == '-') ps->p++;
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return fail(ps, "bad number");
    if (*ps->p == '0') ps->p++;
    else while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    if (ps->p < ps->end && *ps->p == '.') {
        ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return fail(ps, "bad number");
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return fail(ps, "bad number");
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    }
    char tmp[64];
    size_t n = (size_t)(ps->p - s);
    if (n >= sizeof tmp) return fail(ps, "number too long");
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    *out = strtod(tmp, NULL);
    return 0;
}

static int literal(struct parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return fail(ps, "unexpected character");
    ps->p += n;
    return 0;
}

static struct jval *value(struct parser *ps, int depth) {
    ws(ps);
    if (ps->p >= ps->end) return fail(ps, "unexpected end"), NULL;
    if (depth > JSON_DEPTH_MAX) return fail(ps, "nested too deeply"), NULL;
    struct jval *v = alloc(ps->a, sizeof *v);
    if (!v) return fail(ps, "out of memory"), NULL;
    memset(v, 0, sizeof *v);
    char c = *ps->p;
    if (c == '{' || c == '[') {
        int obj = c == '{';
        v->t = obj ? J_OBJ : J_ARR;
        ps->p++;
        struct jval **tail = &v->child;
        ws(ps);
        if (ps->p < ps->end && *ps->p == (obj ? '}' : ']')) {
            ps->p++;
            return v;
        }
        for (;;) {
            const char *key = NULL;
            size_t klen;
            if (obj) {
                ws(ps);
                if (ps->p >= ps->end || *ps->p != '"') return fail(ps, "expected a key"), NULL;
                if (string(ps, &key, &klen) != 0) return NULL;
                ws(ps);
                if (ps->p >= ps->end || *ps->p != ':') return fail(ps, "expected ':'"), NULL;
                ps->p++;
            }
            struct jval *item = value(ps, depth + 1);
            if (!item) return NULL;
            item->key = key;
            *tail = item;
            tail = &item->next;
            v->n++;
            ws(ps);
            if (ps->p >= ps->end) return fail(ps, "unexpected end"), NULL;
            if (*ps->p == ',') {
                ps->p++;
                continue;
            }
            if (*ps->p == (obj ? '}' : ']')) {
                ps->p++;
                return v;
            }
            return fail(ps, obj ? "expected ',' or '}'" : "expected ',' or ']'"), NULL;
        }
    }
    if (c == '"') {
        v->t = J_STR;
        return string(ps, &v->s, &v->n) == 0 ? v : NULL;
    }
    if (c == 't' || c == 'f') {
        v->t = J_BOOL;
        v->b = c == 't';
        return literal(ps, v->b ? "true" : "false") == 0 ? v : NULL;
    }
    if (c == 'n') {
        v->t = J_NULL;
        return literal(ps, "null") == 0 ? v : NULL;
    }
    if (c != '-' && (c < '0' || c > '9')) return fail(ps, "not JSON (unexpected character)"), NULL;
    v->t = J_NUM;
    return number(ps, &v->num) == 0 ? v : NULL;
}

struct jval *json_parse(struct arena *a, const char *text, size_t len, const char **err) {
    struct parser ps = {.p = text, .end = text + len, .a = a};
    struct jval *v = value(&ps, 0);
    if (v) {
        ws(&ps);
        if (ps.p != ps.end) {
            fail(&ps, "text after the value");
            v = NULL;
        }
    }
    *err = v ? NULL : ps.err ? ps.err : "invalid";
    return v;
}

const struct jval *jget(const struct jval *o, const char *key) {
    if (!o || o->t != J_OBJ) return NULL;
    for (const struct jval *m = o->child; m; m = m->next)
        if (m->key && strcmp(m->key, key) == 0) return m;
    return NULL;
}

const char *jstr(const struct jval *o, const char *key) {
    const struct jval *v = jget(o, key);
    return v && v->t == J_STR ? v->s : NULL;
}

double jnum(const struct jval *o, const char *key, double def) {
    const struct jval *v = jget(o, key);
    return v && v->t == J_NUM ? v->num : def;
}
