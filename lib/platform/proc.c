// SPDX-License-Identifier: MIT
// Raw system calls and /proc readers: who we are, how many threads we have, their names, and
// the main program's path. Runs anywhere, inside fork() and in signal handlers included:
// open/read/getdents64/close into stack buffers, nothing else.
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#if !defined(__x86_64__)
pid_t fs_sys_gettid(void) { return (pid_t)syscall(SYS_gettid); }
pid_t fs_sys_getpid(void) { return (pid_t)syscall(SYS_getpid); }
#endif

/* Reads at most cap-1 bytes of `path`, terminated; returns the length or -1. errno is kept. */
static ssize_t read_small(const char *path, char *buf, size_t cap) {
    int saved = errno;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, cap - 1);
    if (fd >= 0) close(fd);
    errno = saved;
    if (n < 0) return -1;
    buf[n] = '\0';
    return n;
}

static char *put_uint(char *p, unsigned long v) {
    char tmp[24];
    int n = 0;
    do tmp[n++] = (char)('0' + v % 10); while ((v /= 10) != 0);
    while (n) *p++ = tmp[--n];
    return p;
}

static char *put_str(char *p, const char *s) {
    while (*s) *p++ = *s++;
    return p;
}

int fs_thread_count(void) {
    char buf[512];
    if (read_small("/proc/self/stat", buf, sizeof buf) <= 0) return -1;
    char *p = NULL;
    for (char *c = buf; *c; c++)
        if (*c == ')') p = c; /* the name may contain spaces and parentheses */
    if (!p) return -1;
    int field = 2, count = 0;
    for (p++; *p && field < 20; p++)
        if (*p == ' ') field++;
    for (; *p >= '0' && *p <= '9'; p++) count = count * 10 + (*p - '0');
    return field == 20 ? count : -1;
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

int fs_list_tasks(pid_t *tids, int cap) {
    int saved = errno;
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        errno = saved;
        return -1;
    }
    char buf[4096] __attribute__((aligned(8)));
    int n = 0;
    for (;;) {
        long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (got <= 0) break;
        for (long off = 0; off < got;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
            off += d->d_reclen;
            if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
            pid_t tid = 0;
            for (const char *c = d->d_name; *c >= '0' && *c <= '9'; c++) tid = tid * 10 + (*c - '0');
            if (n < cap) tids[n] = tid;
            n++;
        }
    }
    close(fd);
    errno = saved;
    return n;
}

int fs_read_comm(pid_t pid, pid_t tid, char name[16]) {
    char path[64], *p = path;
    p = put_str(p, "/proc/");
    p = put_uint(p, (unsigned long)pid);
    p = put_str(p, "/task/");
    p = put_uint(p, (unsigned long)tid);
    p = put_str(p, "/comm");
    *p = '\0';
    ssize_t n = read_small(path, name, 16);
    if (n <= 0) {
        name[0] = '\0';
        return -1;
    }
    if (name[n - 1] == '\n') name[n - 1] = '\0';
    return 0;
}

/* /proc/self/task/TID/syscall: "202 0x..." while blocked in futex, "running", or "-1 ..." */
long fs_thread_syscall(pid_t tid) {
    char path[64], buf[128], *p = path;
    p = put_str(p, "/proc/self/task/");
    p = put_uint(p, (unsigned long)tid);
    p = put_str(p, "/syscall");
    *p = '\0';
    if (read_small(path, buf, sizeof buf) <= 0 || buf[0] < '0' || buf[0] > '9') return -1;
    long nr = 0;
    for (const char *c = buf; *c >= '0' && *c <= '9'; c++) nr = nr * 10 + (*c - '0');
    return nr;
}

static char exe_path[4096];
static _Atomic int exe_known;

const char *fs_exe_path(void) {
    if (!atomic_load_explicit(&exe_known, memory_order_acquire)) {
        int saved = errno;
        ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
        exe_path[n > 0 ? n : 0] = '\0';
        errno = saved;
        atomic_store_explicit(&exe_known, 1, memory_order_release);
    }
    return exe_path;
}

/* process_vm_readv on ourselves reports an unmapped address as EFAULT instead of faulting; where
 * it is refused (some seccomp profiles), write(2) into a pipe does the same. */
int fs_safe_read(uintptr_t addr, void *out, size_t n) {
    int saved = errno;
    struct iovec local = {out, n}, remote = {(void *)addr, n};
    ssize_t r = process_vm_readv(fs_sys_getpid(), &local, 1, &remote, 1, 0);
    if (r < 0 && (errno == ENOSYS || errno == EPERM)) {
        int p[2];
        r = -1;
        if (pipe2(p, O_CLOEXEC) == 0) {
            if (write(p[1], (const void *)addr, n) == (ssize_t)n) r = read(p[0], out, n);
            close(p[0]);
            close(p[1]);
        }
    }
    errno = saved;
    return r == (ssize_t)n ? 0 : -1;
}

/* The file mapped at `addr` (/proc/self/maps), into out[cap]: "" for anonymous memory (the heap,
 * a thread's stack) or if unknown. Read in chunks into a stack buffer; no allocation. */
int fs_maps_find(uintptr_t addr, char *out, size_t cap) {
    out[0] = '\0';
    int saved = errno;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errno = saved;
        return -1;
    }
    char buf[4096];
    size_t have = 0;
    int found = -1;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0 && have == 0) break;
        if (n > 0) have += (size_t)n;
        buf[have] = '\0';
        char *line = buf, *nl;
        while ((nl = memchr(line, '\n', have - (size_t)(line - buf))) != NULL) {
            *nl = '\0';
            uintptr_t lo = 0, hi = 0;
            char *p = line;
            for (; (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'); p++) lo = lo * 16 + (uintptr_t)(*p <= '9' ? *p - '0' : *p - 'a' + 10);
            if (*p == '-') p++;
            for (; (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'); p++) hi = hi * 16 + (uintptr_t)(*p <= '9' ? *p - '0' : *p - 'a' + 10);
            if (addr >= lo && addr < hi) {
                char *path = p;
                for (int field = 0; field < 4 && *path; field++) { /* perms offset dev inode */
                    while (*path == ' ') path++;
                    while (*path && *path != ' ') path++;
                }
                while (*path == ' ') path++;
                if (*path == '/') {
                    size_t k = 0;
                    while (path[k] && k + 1 < cap) { out[k] = path[k]; k++; }
                    out[k] = '\0';
                }
                found = 0;
                goto done;
            }
            line = nl + 1;
        }
        size_t rest = have - (size_t)(line - buf);
        if (n <= 0 || rest == sizeof buf - 1) break; /* end, or a line too long to hold */
        memmove(buf, line, rest);
        have = rest;
    }
done:
    close(fd);
    errno = saved;
    return found;
}
