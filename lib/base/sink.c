// SPDX-License-Identifier: MIT
// Where reports go, and how each one is written whole. We hold no descriptor of our own between
// reports: a program that lists or closes its descriptors sees no difference.
//  - stderr: fd 2, but only while it is still the file it was when the library loaded (same
//    device and inode), so a program that closed fd 2 and reused the number for something else
//    never receives our lines -- and a daemon that closed every other descriptor still does.
//  - FORKSAFE_LOG=path (`%p`: the pid): opened for each event, appended to in one write(2), and
//    closed. Opened without blocking (a FIFO with no reader, or one whose reader stalls, drops
//    the event with one warning) and with the checks Linux applies in world-writable directories
//    (fs.protected_symlinks, fs.protected_regular): there, a symbolic link or an existing file
//    that belongs neither to us nor to the directory's owner is refused, so that nobody can aim
//    a privileged program's reports at a file of their choosing. Any refusal: one warning, and
//    the report goes to stderr.
//  - FORKSAFE_LOG=journal[:SOCKET]: a native journal entry per event (journal.c), the event
//    rendered both as JSON (the fields) and text (MESSAGE); a journal that cannot be reached:
//    one warning, and the event goes to stderr in FORKSAFE_FORMAT.
// Runs in forked children and signal handlers: async-signal-safe system calls only.
#include "base.h"
#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct { int known; dev_t dev; ino_t ino; } err0;  /* fd 2 when the library loaded */
static int to_file;
static const char *journal;   /* the journal's socket, or NULL */
static _Atomic unsigned warned;

void fs_sink_init(void) {
    struct stat st;
    int saved = errno;
    if (fstat(2, &st) == 0) {
        err0.known = 1;
        err0.dev = st.st_dev;
        err0.ino = st.st_ino;
    }
    errno = saved;
    journal = fs_journal_socket(fs_setting_str(FS_SET_log));
    to_file = !journal && strcmp(fs_setting_str(FS_SET_log), "stderr") != 0;
}

int fs_sink_journal(void) { return journal != NULL; }

/* fd 2 if it is still the original stderr, else -1; *pipe_like for a FIFO or socket. */
static int stderr_fd(int *pipe_like) {
    struct stat st;
    if (!err0.known || fstat(2, &st) != 0 || st.st_dev != err0.dev || st.st_ino != err0.ino) return -1;
    *pipe_like = S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode);
    return 2;
}

int fs_sink_available(void) {
    int saved = errno, pipe_like;
    int ok = to_file || journal || stderr_fd(&pipe_like) >= 0;
    errno = saved;
    return ok;
}

void fs_sink_warn(unsigned key, const char *what, const char *value, const char *outcome) {
    if (atomic_fetch_or(&warned, key) & key) return;
    int pipe_like, fd = stderr_fd(&pipe_like);
    if (fd < 0) return;
    char mem[1024];
    struct fs_buf b;
    fs_buf_init(&b, mem, sizeof mem - 1, -1);
    fs_buf_str(&b, "forksafe[");
    fs_buf_int(&b, fs_sys_getpid());
    fs_buf_str(&b, "]: warning: ");
    fs_buf_str(&b, what);
    if (value) {
        fs_buf_chr(&b, ' ');
        fs_buf_json_str(&b, value);
    }
    fs_buf_str(&b, outcome);
    if (b.overflow) b.len = b.cap; /* cut, but still one line */
    mem[b.len++] = '\n';
    fs_write_all(fd, mem, b.len);
}

/* FORKSAFE_LOG with %p replaced by the pid. Returns 0, or -1 if it does not fit. */
static int expand(char *out, size_t cap) {
    struct fs_buf b;
    fs_buf_init(&b, out, cap - 1, -1);
    for (const char *p = fs_setting_str(FS_SET_log); *p; p++) {
        if (p[0] == '%' && p[1] == 'p') {
            fs_buf_int(&b, fs_sys_getpid());
            p++;
        } else {
            fs_buf_chr(&b, *p);
        }
    }
    out[b.len] = '\0';
    return b.overflow ? -1 : 0;
}

/* The directory holding `path`, stat'ed. Returns 0 or -1. */
static int parent_dir(const char *path, struct stat *st) {
    char dir[PATH_MAX];
    size_t n = fs_strlcpy(dir, path, sizeof dir);
    while (n > 0 && dir[n - 1] != '/') n--;   /* keep up to the last '/' */
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n == 0) fs_strlcpy(dir, ".", sizeof dir);
    else dir[n] = '\0';
    return stat(dir, st);
}

/* A directory in which others can create or replace entries. */
static int shared_dir(const struct stat *d) { return (d->st_mode & S_IWOTH) != 0; }

/* May an entry owned by `uid` in directory `d` be trusted? Outside shared directories, yes; in a
 * sticky shared one (/tmp), only if it is ours or the directory owner's (nobody else can replace
 * it there); in a shared directory without the sticky bit, anyone can swap it: no. */
static int trusted_owner(const struct stat *d, uid_t uid) {
    if (!shared_dir(d)) return 1;
    return (d->st_mode & S_ISVTX) && (uid == geteuid() || uid == d->st_uid);
}

/* Opens the log for one event; -1 (with one warning) if it cannot or must not be used. */
static int open_log(void) {
    char path[PATH_MAX];
    if (expand(path, sizeof path) != 0) {
        fs_sink_warn(FS_WARN_LOG_LONG, "FORKSAFE_LOG is too long once %p is expanded:",
                     fs_setting_str(FS_SET_log), "; reports go to stderr");
        return -1;
    }
    const int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    int fd = open(path, flags | O_NOFOLLOW, 0644);
    struct stat dir, link, st;
    /* A symbolic link (ELOOP; EACCES when the kernel's own protected_symlinks refused it): follow
     * it only if its owner is trusted. */
    int err = errno;
    if (fd < 0 && lstat(path, &link) == 0 && S_ISLNK(link.st_mode)) {
        if (parent_dir(path, &dir) != 0 || !trusted_owner(&dir, link.st_uid)) {
            fs_sink_warn(FS_WARN_LOG_LINK, "FORKSAFE_LOG", path,
                         " is a symbolic link in a world-writable directory, owned by another user: not followed;"
                         " reports go to stderr");
            return -1;
        }
        fd = open(path, flags, 0644);
        err = errno;
    }
    if (fd < 0) {
        errno = err;
        if (errno == ENXIO)
            fs_sink_warn(FS_WARN_LOG_BLOCKED, "FORKSAFE_LOG", path, " is a FIFO with no reader; reports go to stderr");
        else
            fs_sink_warn(FS_WARN_LOG_OPEN, "cannot open FORKSAFE_LOG", path, "; reports go to stderr");
        return -1;
    }
    /* A file someone else owns, in a directory where they could have planted it (the rule of
     * fs.protected_regular). Our own file -- the one we just created -- is fine anywhere: the
     * descriptor refers to it, whatever happens to the name. */
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid != geteuid() && parent_dir(path, &dir) == 0 &&
        !trusted_owner(&dir, st.st_uid)) {
        close(fd);
        fs_sink_warn(FS_WARN_LOG_OWNER, "FORKSAFE_LOG", path,
                     " is a file of another user in a world-writable directory: not written; reports go to stderr");
        return -1;
    }
    return fd;
}

/* Text on a pipe: lines stay whole if each write holds only whole lines and at most PIPE_BUF
 * bytes (a single longer line goes alone). */
static int write_lines(int fd, const char *buf, size_t len) {
    while (len > 0) {
        size_t n = 0;
        for (size_t i = 0; i < len && i < PIPE_BUF; i++)
            if (buf[i] == '\n') n = i + 1;
        if (n == 0) { /* a line longer than PIPE_BUF */
            const char *nl = memchr(buf, '\n', len);
            n = nl ? (size_t)(nl - buf) + 1 : len;
        }
        if (fs_write_all(fd, buf, n) != 0) return -1;
        buf += n;
        len -= n;
    }
    return 0;
}

static int write_plain(const char *buf, size_t len, int text) {
    int saved = errno, pipe_like = 0, fd = to_file ? open_log() : -1, own = fd >= 0;
    struct stat st;
    if (own) pipe_like = fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
    else fd = stderr_fd(&pipe_like);
    int r = -1;
    if (fd >= 0) {
        r = pipe_like && text && len > PIPE_BUF ? write_lines(fd, buf, len) : fs_write_all(fd, buf, len);
        if (r != 0 && errno == EAGAIN)
            fs_sink_warn(FS_WARN_LOG_BLOCKED, "FORKSAFE_LOG", fs_setting_str(FS_SET_log),
                         " would block (its reader is not reading): reports that do not fit are dropped");
        if (own) close(fd);
    }
    errno = saved;
    return r;
}

/* ---- the journal ---- */

/* Sends the event to the journal; if it cannot, one warning and `fallback` to stderr. */
static int write_journal(const char *json, size_t jlen, const char *text, size_t tlen) {
    int saved = errno;
    if (fs_journal_send(journal, json, jlen, text, tlen, fs_sys_getpid()) == 0) {
        errno = saved;
        return 0;
    }
    const char *why = errno == ENOENT || errno == ECONNREFUSED ? ": no journal listens there"
                      : errno == EAGAIN ? ": the journal is not keeping up"
                      : errno == EMSGSIZE || errno == ENOBUFS ? ": the entry is too large"
                      : errno == EACCES || errno == EPERM ? ": permission denied"
                      : ": it failed";
    char outcome[96];
    struct fs_buf b;
    fs_buf_init(&b, outcome, sizeof outcome - 1, -1);
    fs_buf_str(&b, why);
    fs_buf_str(&b, "; reports go to stderr");
    outcome[b.len] = '\0';
    fs_sink_warn(FS_WARN_JOURNAL, "FORKSAFE_LOG: cannot send to the journal socket", journal, outcome);
    int as_json = json && (fs_setting(FS_SET_format) == FS_FORMAT_JSON || !text);
    int r = as_json ? write_plain(json, jlen, 0) : write_plain(text, tlen, 1);
    errno = saved;
    return r;
}

int fs_sink_write(const char *buf, size_t len, int text) {
    if (journal) return text ? write_journal(NULL, 0, buf, len) : write_journal(buf, len, NULL, 0);
    return write_plain(buf, len, text);
}

int fs_sink_write_event(const char *json, size_t jlen, const char *text, size_t tlen) {
    if (journal) return write_journal(json, jlen, text, tlen);
    return fs_setting(FS_SET_format) == FS_FORMAT_JSON ? write_plain(json, jlen, 0) : write_plain(text, tlen, 1);
}
