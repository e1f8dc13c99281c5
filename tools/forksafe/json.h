// SPDX-License-Identifier: MIT
// A small JSON reader for `forksafe summary`: one line of input (one report event) becomes a tree
// in an arena. Meant for input nobody vouches for: bounded depth, bounded sizes, every byte
// checked, no recursion deeper than JSON_DEPTH_MAX, never reads past the end.
#ifndef FORKSAFE_TOOL_JSON_H
#define FORKSAFE_TOOL_JSON_H

#include <stddef.h>

#define JSON_DEPTH_MAX 32

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jval {
    enum jtype t;
    int b;                  /* J_BOOL */
    double num;             /* J_NUM */
    const char *s;          /* J_STR: decoded, NUL-terminated (may hold NULs: see n) */
    size_t n;               /* J_STR: length; J_ARR, J_OBJ: number of items */
    const char *key;        /* as a member of an object: its key (decoded) */
    struct jval *child;     /* J_ARR, J_OBJ: the first item */
    struct jval *next;      /* the next item of the enclosing array or object */
};

/* Chunks of memory freed all at once. */
struct arena {
    struct chunk *head;
};
void arena_reset(struct arena *a);

/* Parses `len` bytes as one JSON value (surrounding whitespace allowed). Returns the root, or
 * NULL with *err set to a short reason. */
struct jval *json_parse(struct arena *a, const char *text, size_t len, const char **err);

/* Member `key` of object `o`, or NULL (also when o is not an object). */
const struct jval *jget(const struct jval *o, const char *key);
/* Its string, or NULL when absent or not a string. */
const char *jstr(const struct jval *o, const char *key);
/* Its number, or `def` when absent or not a number. */
double jnum(const struct jval *o, const char *key, double def);

#endif
