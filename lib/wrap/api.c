// SPDX-License-Identifier: MIT
// The public API declared in include/forksafe.h.
#include "wrap.h"
#include "forksafe.h"

#include <errno.h>

FS_EXPORT const char *forksafe_version(void) { return FORKSAFE_VERSION; }

FS_EXPORT const char *forksafe_mode(void) {
    fs_init();
    return fs_settings.v[FS_SET_mode].str;
}

FS_EXPORT int forksafe_print_settings(int fd) {
    fs_init();
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    fs_settings_dump(&fs_settings, fd);
    return 0;
}
