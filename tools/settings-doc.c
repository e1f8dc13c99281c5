// SPDX-License-Identifier: MIT
// Prints the README's settings table from lib/settings.def, so the two never disagree.
// The test `readme-settings` checks that README.md contains exactly this output.
#include <stdio.h>

int main(void) {
    puts("| variable | values | default | meaning |");
    puts("|---|---|---|---|");
#define FS_SETTING(id, env, kind, def, choices, help) \
    printf("| `FORKSAFE_%s` | `%s` | `%s` | %s |\n", env, choices, def, help);
#include "settings.def"
#undef FS_SETTING
    return 0;
}
