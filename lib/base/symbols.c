// SPDX-License-Identifier: MIT
// Start routines resolved to "symbol+0xoff (library)" with dladdr, in pthread_create, never on
// the fork path (dladdr takes the loader lock). A small lock-free cache keyed by address: most
// programs start all their threads from a handful of routines; each entry's text is rendered
// once. fs_symbol_str() and fs_symbol_text() only read
// published entries and is async-signal-safe. The main program is named by its real path
// (/proc/self/exe): dladdr would give argv[0], which setproctitle rewrites.
#include "base.h"
#include "platform/platform.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>

#define SYM_SLOTS 512
#define SYM_CLAIMED ((uintptr_t)1)

struct sym_entry {
    _Atomic uintptr_t addr;   /* 0 free, 1 being filled, else the published address */
    int plain;                /* `text` is printable ASCII without quotes or backslashes */
    char text[176];           /* "fn+0x10 (/lib/x.so)", rendered once, when resolved */
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
        struct link_map *map = NULL;
        memset(&info, 0, sizeof info);
        int found = dladdr1(addr, &info, (void **)&map, RTLD_DL_LINKMAP) != 0;
        if (found && map && map->l_name && map->l_name[0] == '\0' && fs_exe_path()[0])
            info.dli_fname = fs_exe_path(); /* the main program */
        char name[64], lib[96];
        uintptr_t offset;
        if (found && info.dli_sname && info.dli_saddr) {
            copy(name, sizeof name, info.dli_sname);
            offset = a - (uintptr_t)info.dli_saddr;
        } else {
            name[0] = '\0';
            offset = info.dli_fbase ? a - (uintptr_t)info.dli_fbase : a;
        }
        copy(lib, sizeof lib, info.dli_fname);
        struct fs_buf b;
        fs_buf_init(&b, e->text, sizeof e->text - 1, -1);
        if (name[0]) {
            fs_buf_str(&b, name);
            fs_buf_chr(&b, '+');
        }
        fs_buf_hex(&b, offset);
        if (lib[0]) {
            fs_buf_str(&b, " (");
            fs_buf_str(&b, lib);
            fs_buf_chr(&b, ')');
        }
        e->text[b.len] = '\0';
        e->plain = 1;
        for (const unsigned char *c = (const unsigned char *)e->text; *c; c++)
            if (*c < 0x20 || *c >= 0x7f || *c == '"' || *c == '\\') e->plain = 0;
        atomic_store_explicit(&e->addr, a, memory_order_release);
        return (uint32_t)(e - cache) + 1;
    }
    return 0; /* the neighbourhood is full: the report says the address only */
}

const char *fs_symbol_str(uint32_t sym, int *plain) {
    const struct sym_entry *e = sym >= 1 && sym <= SYM_SLOTS ? &cache[sym - 1] : NULL;
    if (!e || atomic_load_explicit(&e->addr, memory_order_acquire) <= SYM_CLAIMED) return NULL;
    if (plain) *plain = e->plain;
    return e->text;
}

int fs_symbol_text(uint32_t sym, char *out, size_t cap) {
    const char *s = fs_symbol_str(sym, NULL);
    fs_strlcpy(out, s, cap);
    return s ? 0 : -1;
}
