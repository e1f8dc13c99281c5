// SPDX-License-Identifier: MIT
// A string arena: strings copied once into a fixed region and referred to by a 32-bit offset,
// so that tables of names and file paths stay small and can be read anywhere (a forked child,
// a signal handler) without pointers into memory someone else owns. No allocation.
#include "base.h"

#include <string.h>

void fs_arena_reset(struct fs_arena *a) {
    a->len = 1;
    a->mem[0] = '\0';
}

uint32_t fs_arena_add(struct fs_arena *a, const char *s, size_t max) {
    if (!s || !*s) return 0;
    if (a->len == 0) fs_arena_reset(a);
    size_t n = strnlen(s, max);
    if ((size_t)a->len + n + 1 > a->cap) return 0;
    uint32_t off = a->len;
    memcpy(a->mem + off, s, n);
    a->mem[off + n] = '\0';
    a->len += (uint32_t)n + 1;
    return off;
}
