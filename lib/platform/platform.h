// SPDX-License-Identifier: MIT
// Layer 1, platform: raw system calls and /proc readers, and what differs per architecture.
// Everything here is async-signal-safe, allocates nothing and keeps errno.
#ifndef FORKSAFE_PLATFORM_H
#define FORKSAFE_PLATFORM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The kernel's tid and pid, never cached values. Inline system calls where we know how: the fork
 * child's path then touches no page of libc's code it would not touch anyway. */
#if defined(__x86_64__)
static inline long fs_raw_syscall0(long nr) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(nr) : "rcx", "r11", "memory");
    return r;
}
#define FS_NR_gettid 186
#define FS_NR_getpid 39
static inline pid_t fs_sys_gettid(void) { return (pid_t)fs_raw_syscall0(FS_NR_gettid); }
static inline pid_t fs_sys_getpid(void) { return (pid_t)fs_raw_syscall0(FS_NR_getpid); }
#else
pid_t fs_sys_gettid(void);
pid_t fs_sys_getpid(void);
#endif

/* Functions on the fork path and in a child that exits: kept together, so that a child (whose
 * first touch of each code page of a library is a page fault) touches as few pages as can be. */
#define FS_FORK_PATH __attribute__((section(".text.hot.forksafe_fork")))
/* The kernel's count of this process's threads (field 20 of /proc/self/stat), or -1. */
int fs_thread_count(void);
/* The tids of /proc/self/task into tids[cap]; returns how many exist (may exceed cap), or -1. */
int fs_list_tasks(pid_t *tids, int cap);
/* /proc/<pid>/task/<tid>/comm into name[16]; returns 0, or -1 with name "". */
int fs_read_comm(pid_t pid, pid_t tid, char name[16]);
/* The system call thread `tid` of this process is blocked in (/proc/self/task/TID/syscall), or
 * -1 when it is running or /proc cannot tell. */
long fs_thread_syscall(pid_t tid);
/* Is thread `tid` of this process blocked in a system call that waits for an event (futex,
 * poll, accept, read, ...)? 1 yes; 0 no: running, sleeping inside a work loop, disk I/O. */
int fs_thread_waiting(pid_t tid);
/* The main program's path (readlink /proc/self/exe, read at the first call, outside fork):
 * dladdr's name for it is argv[0], which setproctitle overwrites. "" if unknown. */
const char *fs_exe_path(void);
/* Copies n bytes at addr, which may not be mapped: returns 0, or -1 if any of it is not readable
 * (never a fault). */
int fs_safe_read(uintptr_t addr, void *out, size_t n);
/* The path of the file mapped at `addr` (/proc/self/maps) into out[cap]; "" for anonymous memory.
 * Returns 0 if `addr` is mapped at all, -1 if not or unknown. */
int fs_maps_find(uintptr_t addr, char *out, size_t cap);

#endif
