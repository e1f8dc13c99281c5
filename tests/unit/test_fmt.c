// SPDX-License-Identifier: MIT
// Unit tests for the formatter (lib/fmt.c): integers, hex, JSON escaping, ISO 8601 time,
// truncation without a descriptor, and flushing when the buffer fills.
#include "base/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
#define EXPECT(c) do { if (!(c)) { fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #c); failures++; } } while (0)

static const char *fmt_time(long long secs, long nsec) {
    static char out[64];
    struct fs_buf b;
    fs_buf_init(&b, out, sizeof out - 1, -1);
    struct timespec t = {(time_t)secs, nsec};
    fs_buf_time_iso(&b, &t);
    out[b.len] = '\0';
    return out;
}

int main(void) {
    char mem[256];
    struct fs_buf b;
    fs_buf_init(&b, mem, sizeof mem - 1, -1);
    fs_buf_int(&b, 0);
    fs_buf_chr(&b, ' ');
    fs_buf_int(&b, -42);
    fs_buf_chr(&b, ' ');
    fs_buf_int(&b, 9223372036854775807LL);
    fs_buf_chr(&b, ' ');
    fs_buf_int(&b, (-9223372036854775807LL - 1));
    fs_buf_chr(&b, ' ');
    fs_buf_hex(&b, 0);
    fs_buf_chr(&b, ' ');
    fs_buf_hex(&b, 0x7fffdeadbeefULL);
    mem[b.len] = '\0';
    EXPECT(strcmp(mem, "0 -42 9223372036854775807 -9223372036854775808 0x0 0x7fffdeadbeef") == 0);

    fs_buf_init(&b, mem, sizeof mem - 1, -1);
    fs_buf_json_str(&b, "a\"b\\c\nd\te\x01\x7f" "é");
    mem[b.len] = '\0';
    EXPECT(strcmp(mem, "\"a\\\"b\\\\c\\nd\\te\\u0001\\u007fé\"") == 0);

    EXPECT(strcmp(fmt_time(0, 0), "1970-01-01T00:00:00.000Z") == 0);
    EXPECT(strcmp(fmt_time(951782400, 999999999), "2000-02-29T00:00:00.999Z") == 0);
    EXPECT(strcmp(fmt_time(1795316645, 123000000), "2026-11-22T03:04:05.123Z") == 0);
    EXPECT(strcmp(fmt_time(4107542399LL, 0), "2100-02-28T23:59:59.000Z") == 0);

    /* Without a descriptor, a full buffer truncates. */
    char small[8];
    fs_buf_init(&b, small, sizeof small, -1);
    fs_buf_str(&b, "0123456789");
    EXPECT(b.len == 8 && memcmp(small, "01234567", 8) == 0);

    /* With one, it flushes and nothing is lost. */
    int p[2];
    if (pipe(p) != 0) abort();
    fs_buf_init(&b, small, sizeof small, p[1]);
    for (int i = 0; i < 10; i++) fs_buf_str(&b, "abcdef");
    fs_buf_flush(&b);
    close(p[1]);
    char got[128];
    ssize_t n = read(p[0], got, sizeof got);
    EXPECT(n == 60 && memcmp(got, "abcdefabcdef", 12) == 0);

    if (failures) return 1;
    puts("fmt: ok");
    return 0;
}
