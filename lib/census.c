// SPDX-License-Identifier: MIT
// Reports on the threads alive now: at exit and exec (threads about to be cut off), on demand
// (FORKSAFE_DUMP_SIGNAL), and when their number reaches FORKSAFE_THREADS_WARN (grouped by where
// they were created). Runs at exit, before exec (possibly in a forked child) and in a signal
// handler: async-signal-safe only. Python stacks come from a snapshot taken earlier with the GIL
// (python.c); creation stacks were resolved to strings when the threads started.
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static pid_t table[FS_MAX_SNAPSHOT];
static _Atomic int table_busy;
static _Atomic int exit_reported;
static _Atomic uint32_t fs_live_threads;
static _Atomic uint32_t next_warning;

static int json(void) { return fs_setting(FS_SET_format) == FS_FORMAT_JSON; }

/* ---- busy or idle ---- */

/* Python: idle when the innermost frame is a wait in the standard library's waiting modules. */
static int python_idle(const struct fs_py_info *info) {
    static const char *const waits[] = {"/threading.py", "/queue.py", "/selectors.py", "/socket.py",
                                        "/socketserver.py", "/multiprocessing/connection.py",
                                        "/concurrent/futures/thread.py", "/multiprocessing/queues.py"};
    const char *file, *func;
    int line;
    fs_py_frame(info, 0, &file, &func, &line);
    size_t n = strlen(file);
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        size_t k = strlen(waits[i]);
        if (n >= k && strcmp(file + n - k, waits[i]) == 0) return 1;
    }
    return 0;
}

/* C: running is busy; blocked in a call that waits for an event is idle; anything else (a sleep
 * inside a work loop, disk I/O) is busy. */
static int kernel_idle(pid_t tid) {
    char path[64], buf[128];
    struct fs_buf b;
    fs_buf_init(&b, path, sizeof path - 1, -1);
    fs_buf_str(&b, "/proc/self/task/");
    fs_buf_int(&b, tid);
    fs_buf_str(&b, "/syscall");
    path[b.len] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0 || buf[0] < '0' || buf[0] > '9') return 0; /* "running" or unreadable */
    long nr = 0;
    for (const char *c = buf; *c >= '0' && *c <= '9'; c++) nr = nr * 10 + (*c - '0');
#if defined(__x86_64__)
    static const long waiting[] = {202 /* futex */, 7 /* poll */, 271 /* ppoll */, 23 /* select */,
                                   270 /* pselect6 */, 232 /* epoll_wait */, 281 /* epoll_pwait */,
                                   441 /* epoll_pwait2 */, 43 /* accept */, 288 /* accept4 */,
                                   0 /* read */, 45 /* recvfrom */, 47 /* recvmsg */, 34 /* pause */,
                                   128 /* rt_sigtimedwait */, 61 /* wait4 */, 247 /* waitid */};
    for (size_t i = 0; i < sizeof waiting / sizeof waiting[0]; i++)
        if (nr == waiting[i]) return 1;
#endif
    return 0;
}

/* ---- pieces shared by the thread lines ---- */

static void json_frames(struct fs_buf *b, const char *key, const struct fs_thread *t) {
    fs_buf_str(b, ",\"");
    fs_buf_str(b, key);
    fs_buf_str(b, "\":[");
    for (int i = 0; t && i < t->ncreate; i++) {
        const char *file, *func;
        fs_py_site(t->create_site[i], &file, &func);
        fs_buf_str(b, i ? ",{\"file\":" : "{\"file\":");
        fs_buf_json_str(b, file);
        fs_buf_str(b, ",\"line\":");
        fs_buf_int(b, t->create_line[i]);
        fs_buf_str(b, ",\"function\":");
        fs_buf_json_str(b, func);
        fs_buf_chr(b, '}');
    }
    fs_buf_chr(b, ']');
}

/* The innermost creation frame that is the application's: not the standard library, not an
 * installed package. -1 if none. */
static int app_frame(const struct fs_thread *t) {
    for (int i = 0; i < t->ncreate; i++) {
        const char *file, *func;
        fs_py_site(t->create_site[i], &file, &func);
        if (!file[0] || strncmp(file, "<frozen", 7) == 0 || strstr(file, "/lib/python") ||
            strstr(file, "site-packages") || strstr(file, "dist-packages"))
            continue;
        return i;
    }
    return -1;
}

static void text_site(struct fs_buf *b, const struct fs_thread *t, int i) {
    const char *file, *func;
    fs_py_site(t->create_site[i], &file, &func);
    fs_buf_str(b, file);
    fs_buf_chr(b, ':');
    fs_buf_int(b, t->create_line[i]);
    fs_buf_str(b, " in ");
    fs_buf_str(b, func);
}

/* ---- the thread table: exit, exec, thread_list ---- */

static void thread_line(struct fs_buf *b, pid_t tid, const struct timespec *now, const char *event) {
    const struct fs_thread *t = fs_thread_find_tid(fs_pid, tid);
    char name[16] = "";
    if (tid == fs_gettid()) {
        if (prctl(PR_GET_NAME, name) != 0) name[0] = '\0';
    } else {
        fs_thread_name(t, getpid(), tid, name);
    }
    struct fs_py_info info;
    const struct fs_py_info *py = fs_py_lookup(tid, &info);
    int idle = tid == fs_gettid() ? 0 /* it is writing this */ : py && py->nframes ? python_idle(py) : kernel_idle(tid);
    const char *pyname = py && py->name[0] ? py->name : (t && t->pyname[0] ? t->pyname : NULL);
    if (json()) {
        fs_buf_str(b, "{\"tid\":");
        fs_buf_int(b, tid);
        fs_buf_str(b, ",\"name\":");
        fs_buf_json_str(b, name);
        fs_buf_str(b, ",\"start\":");
        fs_symbol_json(b, t ? t->start_sym : 0);
        fs_buf_str(b, idle ? ",\"state\":\"idle\"" : ",\"state\":\"busy\"");
        if (pyname) {
            fs_buf_str(b, ",\"python_name\":");
            fs_buf_json_str(b, pyname);
        }
        if (py) fs_report_json_python_stack(b, py);
        if (t && t->ncreate) json_frames(b, "created_at", t);
        fs_buf_chr(b, '}');
        return;
    }
    fs_report_line_start(b, event, now);
    fs_buf_str(b, idle ? "  idle thread " : "  busy thread ");
    fs_buf_int(b, tid);
    fs_buf_str(b, " '");
    fs_buf_str(b, name);
    fs_buf_chr(b, '\'');
    if (pyname) {
        fs_buf_str(b, " (Python '");
        fs_buf_str(b, pyname);
        fs_buf_str(b, "')");
    }
    if (t && t->start_sym) {
        fs_buf_str(b, " started at ");
        fs_symbol_format(b, t->start_sym);
    }
    int app = t ? app_frame(t) : -1;
    if (app >= 0) {
        fs_buf_str(b, ", created at ");
        text_site(b, t, app);
    }
    fs_buf_chr(b, '\n');
    if (py) fs_report_text_python_stack(b, py, event, now, "    ");
}

/* Is `tid` a thread that has already finished as far as its program can tell, though the kernel
 * still lists it? Its runtime joined it (a Python thread missing from the snapshot taken after the
 * joins), its target or start routine returned, or it is gone. */
static int finishing(pid_t tid, int for_exit) {
    if (fs_thread_recently_ended(tid)) return 1;
    const struct fs_thread *t = fs_thread_find_tid(fs_pid, tid);
    struct fs_py_info info;
    if (for_exit && t && (t->pyname[0] || t->ncreate) && fs_py_snapshot_valid() && !fs_py_lookup(tid, &info))
        return 1;
    /* Its target has returned: the innermost frame is threading's bootstrap (2.7's join returns
     * while the thread still runs its last lines there, and it may never get the GIL again). */
    if (for_exit && fs_py_lookup(tid, &info) && info.nframes) {
        const char *file, *func;
        int line;
        fs_py_frame(&info, 0, &file, &func, &line);
        size_t n = strlen(file);
        if (n >= 13 && strcmp(file + n - 13, "/threading.py") == 0 && strstr(func, "bootstrap")) return 1;
    }
    char name[16];
    return !t && fs_read_comm(getpid(), tid, name) != 0;
}

/* Writes the table of live threads; `include_self` for a listing, not for exit or exec. */
static void thread_table(const char *event, const char *how, const char *path, int include_self) {
    int fd = fs_log_fd();
    if (fd < 0 || atomic_exchange(&table_busy, 1)) return;
    int n = fs_list_tasks(table, FS_MAX_SNAPSHOT);
    if (how) {
        /* A thread its runtime has just joined is still in the kernel's list for a moment: wait
         * (20 ms at most) until the list stops shrinking, and report what is really left. */
        for (int k = 0, prev = n; k < 20; k++) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
            n = fs_list_tasks(table, FS_MAX_SNAPSHOT);
            if (n == prev && k >= 1) break;
            prev = n;
        }
    }
    int listed = n < FS_MAX_SNAPSHOT ? n : FS_MAX_SNAPSHOT;
    pid_t self = fs_gettid();
    fs_thread_index_build();
    int kept = 0; /* the threads really cut off (or, for a listing, alive) */
    for (int i = 0; i < listed; i++) {
        if ((table[i] == self && !include_self) || (table[i] != self && finishing(table[i], how != NULL)))
            continue;
        table[kept++] = table[i];
    }
    int total = kept + (n - listed);
    if (total == 0) { /* nothing is cut off after all */
        fs_thread_index_release();
        atomic_store(&table_busy, 0);
        return;
    }
    listed = kept;
    char mem[4096];
    struct fs_buf b;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    fs_buf_init(&b, mem, sizeof mem, fd);
    fs_report_line_start(&b, event, &now);
    if (json()) {
        if (how) {
            fs_buf_str(&b, ",\"how\":");
            fs_buf_json_str(&b, how);
        }
        if (path) {
            fs_buf_str(&b, ",\"path\":");
            fs_buf_json_str(&b, path);
        }
        fs_buf_str(&b, ",\"threads_total\":");
        fs_buf_int(&b, total);
        fs_buf_str(&b, ",\"threads\":[");
    } else {
        if (how) {
            fs_buf_str(&b, "process ");
            fs_buf_int(&b, getpid());
            fs_buf_str(&b, strcmp(event, "exec") == 0 ? " execs " : " ends (");
            fs_buf_str(&b, strcmp(event, "exec") == 0 ? (path ? path : "?") : how);
            fs_buf_str(&b, strcmp(event, "exec") == 0 ? "" : ")");
            fs_buf_str(&b, " while ");
            fs_buf_int(&b, total);
            fs_buf_str(&b, total == 1 ? " other thread is still alive; it is cut off:\n"
                                      : " other threads are still alive; they are cut off:\n");
        } else {
            fs_buf_str(&b, "thread list: ");
            fs_buf_int(&b, total);
            fs_buf_str(&b, total == 1 ? " thread\n" : " threads\n");
        }
    }
    int first = 1;
    for (int i = 0; i < listed; i++) {
        if (json() && !first) fs_buf_chr(&b, ',');
        thread_line(&b, table[i], &now, event);
        first = 0;
    }
    fs_thread_index_release();
    if (json()) {
        fs_buf_chr(&b, ']');
        fs_report_line_end(&b);
    }
    fs_buf_flush(&b);
    atomic_store(&table_busy, 0);
}

void fs_exit_report(const char *how, const char *path) {
    extern int __libc_single_threaded;
    if (!fs_tracking || fs_setting(FS_SET_exit_report) == FS_EXIT_REPORT_OFF) return;
    if (__libc_single_threaded || fs_single_since_fork) return; /* without a /proc read */
    if (fs_thread_count() <= 1) return; /* single-threaded: nothing is cut off */
    if (atomic_exchange(&exit_reported, 1)) return;
    fs_py_snapshot_now();
    int exec = strcmp(how, "exec") == 0;
    thread_table(exec ? "exec" : "exit", how, path, 0);
    if (exec) atomic_store(&exit_reported, 0); /* the exec may fail; the process goes on */
}

static void on_dump_signal(int sig) {
    (void)sig;
    int saved = errno;
    thread_table("thread_list", NULL, NULL, 1);
    errno = saved;
}

/* ---- thread counts ---- */

/* Copies `name` with each run of digits replaced by "N": "Thread-12 (worker)" -> "Thread-N (worker)". */
static void fold(const char *name, char *out, size_t cap) {
    size_t k = 0;
    for (const char *c = name; *c && k + 1 < cap; c++) {
        if (*c >= '0' && *c <= '9') {
            out[k++] = 'N';
            while (c[1] >= '0' && c[1] <= '9') c++;
        } else {
            out[k++] = *c;
        }
    }
    out[k] = '\0';
}

static int same_group(const struct fs_thread *a, const struct fs_thread *b) {
    if (a->start_sym != b->start_sym || a->ncreate != b->ncreate) return 0;
    for (int i = 0; i < a->ncreate; i++)
        if (a->create_site[i] != b->create_site[i] || a->create_line[i] != b->create_line[i]) return 0;
    char fa[48], fb[48];
    fold(a->pyname, fa, sizeof fa);
    fold(b->pyname, fb, sizeof fb);
    return strcmp(fa, fb) == 0;
}

#define MAX_GROUPS 256
#define SHOW_GROUPS 10

static void groups_report(uint32_t threshold) {
    int fd = fs_log_fd();
    if (fd < 0) return;
    static struct { uint32_t rep, count; } groups[MAX_GROUPS];
    int ngroups = 0, other = 0;
    uint32_t hwm = atomic_load(&fs_threads_hwm);
    if (hwm > FS_MAX_THREADS) hwm = FS_MAX_THREADS;
    for (uint32_t i = 0; i < hwm; i++) {
        if (atomic_load_explicit(&fs_threads[i].state, memory_order_acquire) != FS_T_LIVE) continue;
        int g = 0;
        while (g < ngroups && !same_group(&fs_threads[groups[g].rep], &fs_threads[i])) g++;
        if (g == ngroups) {
            if (ngroups == MAX_GROUPS) {
                other++;
                continue;
            }
            groups[ngroups].rep = i;
            groups[ngroups++].count = 0;
        }
        groups[g].count++;
    }
    for (int i = 1; i < ngroups; i++) /* largest first */
        for (int j = i; j > 0 && groups[j].count > groups[j - 1].count; j--) {
            uint32_t r = groups[j].rep, c = groups[j].count;
            groups[j] = groups[j - 1];
            groups[j - 1].rep = r;
            groups[j - 1].count = c;
        }
    int count = fs_thread_count();
    char mem[4096], folded[48];
    struct fs_buf b;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    fs_buf_init(&b, mem, sizeof mem, fd);
    fs_report_line_start(&b, "threads", &now);
    if (json()) {
        fs_buf_str(&b, ",\"count\":");
        fs_buf_int(&b, count);
        fs_buf_str(&b, ",\"threshold\":");
        fs_buf_int(&b, threshold);
        fs_buf_str(&b, ",\"groups\":[");
    } else {
        fs_buf_int(&b, count);
        fs_buf_str(&b, " threads (FORKSAFE_THREADS_WARN reached ");
        fs_buf_int(&b, threshold);
        fs_buf_str(&b, "); the largest groups by where they were created:\n");
    }
    for (int g = 0; g < ngroups && g < SHOW_GROUPS; g++) {
        const struct fs_thread *t = &fs_threads[groups[g].rep];
        fold(t->pyname, folded, sizeof folded);
        int app = app_frame(t);
        if (json()) {
            fs_buf_str(&b, g ? ",{\"count\":" : "{\"count\":");
            fs_buf_int(&b, groups[g].count);
            fs_buf_str(&b, ",\"start\":");
            fs_symbol_json(&b, t->start_sym);
            fs_buf_str(&b, ",\"python_name\":");
            if (folded[0]) fs_buf_json_str(&b, folded);
            else fs_buf_str(&b, "null");
            json_frames(&b, "created_at", t);
            fs_buf_str(&b, ",\"app_frame\":");
            if (app >= 0) {
                const char *file, *func;
                fs_py_site(t->create_site[app], &file, &func);
                fs_buf_str(&b, "{\"file\":");
                fs_buf_json_str(&b, file);
                fs_buf_str(&b, ",\"line\":");
                fs_buf_int(&b, t->create_line[app]);
                fs_buf_str(&b, ",\"function\":");
                fs_buf_json_str(&b, func);
                fs_buf_chr(&b, '}');
            } else {
                fs_buf_str(&b, "null");
            }
            fs_buf_chr(&b, '}');
        } else {
            fs_report_line_start(&b, "threads", &now);
            fs_buf_str(&b, "  ");
            fs_buf_int(&b, groups[g].count);
            fs_buf_str(&b, " x");
            if (folded[0]) {
                fs_buf_str(&b, " Python '");
                fs_buf_str(&b, folded);
                fs_buf_chr(&b, '\'');
            }
            if (t->start_sym) {
                fs_buf_str(&b, " started at ");
                fs_symbol_format(&b, t->start_sym);
            }
            if (app >= 0) {
                fs_buf_str(&b, ", created at ");
                text_site(&b, t, app);
            } else if (t->ncreate) {
                fs_buf_str(&b, ", created at ");
                text_site(&b, t, 0);
            } else if (!folded[0] && !t->start_sym) {
                fs_buf_str(&b, " not started through pthread_create (the main thread, or started before the library loaded)");
            }
            fs_buf_chr(&b, '\n');
        }
    }
    if (json()) {
        fs_buf_chr(&b, ']');
        if (other) {
            fs_buf_str(&b, ",\"ungrouped\":");
            fs_buf_int(&b, other);
        }
        fs_report_line_end(&b);
    }
    fs_buf_flush(&b);
}

/* A thread became live (the registry counts it): warn at N, 2N, 4N, ... */
void fs_census_thread_started(void) {
    uint32_t n = atomic_fetch_add_explicit(&fs_live_threads, 1, memory_order_relaxed) + 1;
    uint32_t warn = atomic_load_explicit(&next_warning, memory_order_relaxed);
    if (fs_likely(warn == 0 || n < warn)) return;
    if (!atomic_compare_exchange_strong(&next_warning, &warn, warn * 2)) return; /* another thread reports */
    groups_report(warn);
}

void fs_census_thread_ended(void) { atomic_fetch_sub_explicit(&fs_live_threads, 1, memory_order_relaxed); }

/* In a forked child: only the forking thread is alive; warnings start again from N. */
void fs_census_after_fork_child(void) {
    atomic_store(&fs_live_threads, 1);
    atomic_store(&next_warning, (uint32_t)fs_setting(FS_SET_threads_warn));
}

void fs_census_init(void) {
    atomic_store(&next_warning, (uint32_t)fs_setting(FS_SET_threads_warn));
    int sig = fs_setting(FS_SET_dump_signal) == 1 ? SIGUSR1 : fs_setting(FS_SET_dump_signal) == 2 ? SIGUSR2 : 0;
    if (sig) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_dump_signal;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        sigaction(sig, &sa, NULL);
    }
}
