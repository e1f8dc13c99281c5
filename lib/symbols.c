// SPDX-License-Identifier: MIT
// Start routines resolved to "symbol+0xoff (library)" with dladdr, in pthread_create, never on
// the fork path (dladdr takes the loader lock). A small lock-free cache keyed by address: most
// programs start all their threads from a handful of routines. fs_symbol_format() only reads
// published entries and is async-signal-safe.
#include "internal.h"

#include <dlfcn.h>
#include <string.h>

#define SYM_SLOTS 512
#define SYM_CLAIMED ((uintptr_t)1)

struct sym_entry {
    _Atomic uintptr_t addr;   /* 0 free, 1 being filled, else the published address */
    uintptr_t offset;
    char name[64];
    char lib[96];
};
static struct sym_entry cache[SYM_SLOTS];

static void copy(char *dst, size_t cap, const char *src) {
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) { /* keep the end of a long path: the file name is what matters */
        src += n - (cap - 1);
        n = cap - 1;
    }
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

uint32_t fs_symbol_lookup(const void *addr) {
    uintptr_t a = (uintptr_t)addr;
    if (a <= SYM_CLAIMED) return 0;
    uint32_t h = (uint32_t)((a >> 4) * 2654435761u) % SYM_SLOTS;
    for (uint32_t k = 0; k < 16; k++) {
        struct sym_entry *e = &cache[(h + k) % SYM_SLOTS];
        uintptr_t cur = atomic_load_explicit(&e->addr, memory_order_acquire);
        if (cur == a) return (uint32_t)(e - cache) + 1;
        if (cur != 0) continue;
        uintptr_t expected = 0;
        if (!atomic_compare_exchange_strong(&e->addr, &expected, SYM_CLAIMED)) {
            if (expected == a) return (uint32_t)(e - cache) + 1;
            continue;
        }
        Dl_info info;
        memset(&info, 0, sizeof info);
        if (dladdr(addr, &info) != 0 && info.dli_sname && info.dli_saddr) {
            copy(e->name, sizeof e->name, info.dli_sname);
            e->offset = a - (uintptr_t)info.dli_saddr;
        } else {
            e->name[0] = '\0';
            e->offset = info.dli_fbase ? a - (uintptr_t)info.dli_fbase : a;
        }
        copy(e->lib, sizeof e->lib, info.dli_fname);
        atomic_store_explicit(&e->addr, a, memory_order_release);
        return (uint32_t)(e - cache) + 1;
    }
    return 0; /* the neighbourhood is full: the report says the address only */
}

void fs_symbol_json(struct fs_buf *b, uint32_t sym) {
    if (!sym) {
        fs_buf_str(b, "null");
        return;
    }
    char text[256];
    struct fs_buf s;
    fs_buf_init(&s, text, sizeof text - 1, -1);
    fs_symbol_format(&s, sym);
    text[s.len] = '\0';
    fs_buf_json_str(b, text);
}

void fs_symbol_format(struct fs_buf *b, uint32_t sym) {
    if (sym == 0 || sym > SYM_SLOTS) {
        fs_buf_str(b, "?");
        return;
    }
    struct sym_entry *e = &cache[sym - 1];
    uintptr_t a = atomic_load_explicit(&e->addr, memory_order_acquire);
    if (a <= SYM_CLAIMED) {
        fs_buf_str(b, "?");
        return;
    }
    if (e->name[0]) {
        fs_buf_str(b, e->name);
        fs_buf_chr(b, '+');
    }
    fs_buf_hex(b, e->offset);
    if (e->lib[0]) {
        fs_buf_str(b, " (");
        fs_buf_str(b, e->lib);
        fs_buf_chr(b, ')');
    }
}
