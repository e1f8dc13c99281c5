// SPDX-License-Identifier: MIT
// The descriptor reports are written to. We write only to descriptors we own: stderr is
// duplicated at start (close-on-exec), a FORKSAFE_LOG path is opened by us. Before each report we
// check that the descriptor still refers to the same file, so a program that closed it and
// reused the number never receives our lines. fs_log_fd() runs in forked children:
// async-signal-safe only.
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct owned_fd {
    int fd;
    pid_t pid;     /* process that opened it (a %p file belongs to one process) */
    dev_t dev;
    ino_t ino;
};

static struct owned_fd err = {-1, 0, 0, 0};   /* our duplicate of the original stderr */
static struct owned_fd file = {-1, 0, 0, 0};  /* the FORKSAFE_LOG file */
static int to_file, per_pid, file_warned;

static int adopt(struct owned_fd *o, int fd) {
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return -1;
    *o = (struct owned_fd){fd, getpid(), st.st_dev, st.st_ino};
    return fd;
}

static int still_ours(const struct owned_fd *o) {
    struct stat st;
    return o->fd >= 0 && fstat(o->fd, &st) == 0 && st.st_dev == o->dev && st.st_ino == o->ino;
}

static int open_file(void) {
    const char *path = fs_settings.v[FS_SET_log].str;
    char expanded[FS_SETTING_STR_MAX + 32];
    struct fs_buf b;
    fs_buf_init(&b, expanded, sizeof expanded - 1, -1);
    for (const char *p = path; *p; p++) {
        if (p[0] == '%' && p[1] == 'p') {
            fs_buf_int(&b, getpid());
            p++;
        } else {
            fs_buf_chr(&b, *p);
        }
    }
    expanded[b.len] = '\0';
    int fd = open(expanded, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && !file_warned && still_ours(&err)) {
        file_warned = 1;
        char mem[FS_SETTING_STR_MAX + 128];
        struct fs_buf w;
        fs_buf_init(&w, mem, sizeof mem, err.fd);
        fs_buf_str(&w, "forksafe[");
        fs_buf_int(&w, getpid());
        fs_buf_str(&w, "]: warning: cannot open FORKSAFE_LOG file ");
        fs_buf_json_str(&w, expanded);
        fs_buf_str(&w, "; reports go to stderr\n");
        fs_buf_flush(&w);
    }
    return adopt(&file, fd);
}

void fs_log_init(void) {
    const char *path = fs_settings.v[FS_SET_log].str;
    to_file = strcmp(path, "stderr") != 0;
    per_pid = strstr(path, "%p") != NULL;
    int saved = errno;
    adopt(&err, fcntl(2, F_DUPFD_CLOEXEC, 3));
    errno = saved;
    /* A file is opened at the first report: a process that never reports creates none. */
}

void fs_log_after_fork_child(void) {
    if (per_pid && file.fd >= 0) {
        close(file.fd); /* the parent's file; the child opens its own at its first report */
        file.fd = -1;
    }
}

int fs_log_fd(void) {
    int saved = errno, fd = -1;
    if (to_file) {
        if (!still_ours(&file)) {
            file.fd = -1; /* closed, or the number now belongs to the program */
            if (!file_warned) open_file();
        }
        fd = file.fd;
    }
    if (fd < 0 && still_ours(&err)) fd = err.fd;
    errno = saved;
    return fd;
}
