// SPDX-License-Identifier: MIT
// Would libforksafe load into a program? Read from the files themselves, never by running the
// program: the dynamic loader honours LD_PRELOAD only in a dynamically linked ELF program (one
// with a PT_INTERP) of the library's class and machine, built for glibc, and ignores entries
// that contain `/` when the program runs with raised privileges (setuid, setgid, file
// capabilities: secure-execution mode). A script is followed to its interpreter (#!, and
// `#!/usr/bin/env NAME` to NAME in PATH), as the kernel does, at most four levels deep.
// `forksafe check` also loads the library here (dlopen) and prints the settings it reads.
#include "tool.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

/* snprintf, cutting quietly: messages here are bounded by design. */
__attribute__((format(printf, 3, 4))) static void cut(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}

struct elf_info {
    int cls, data, type, machine;   /* ELFCLASS64, ELFDATA2LSB, ET_DYN, EM_X86_64 */
    int has_interp, has_dynamic;
    char interp[PATH_MAX];
};

static const char *machine_name(int m, char *buf, size_t cap) {
    switch (m) {
    case EM_X86_64: return "x86-64";
    case EM_386: return "i386";
    case EM_AARCH64: return "aarch64";
    case EM_ARM: return "arm";
    case EM_RISCV: return "riscv";
    case EM_PPC64: return "ppc64";
    case EM_PPC: return "ppc";
    case EM_S390: return "s390";
    case EM_MIPS: return "mips";
    case EM_LOONGARCH: return "loongarch";
    default: cut(buf, cap, "machine %d", m); return buf;
    }
}

static int host_data(void) {
    const unsigned one = 1;
    return *(const unsigned char *)&one ? ELFDATA2LSB : ELFDATA2MSB;
}

/* Reads the ELF header and program headers. Returns 0, 1 if not ELF, -1 on error (errno). */
static int elf_read(const char *path, struct elf_info *e) {
    memset(e, 0, sizeof *e);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return -1;
    unsigned char h[64];
    ssize_t n = pread(fd, h, sizeof h, 0);
    int r = 1;
    if (n < 52 || memcmp(h, ELFMAG, SELFMAG) != 0) goto out;
    e->cls = h[EI_CLASS];
    e->data = h[EI_DATA];
    if ((e->cls != ELFCLASS32 && e->cls != ELFCLASS64) || e->data != host_data()) {
        r = 0; /* an ELF file we do not read further (other byte order): class and data say enough */
        goto out;
    }
    uint64_t phoff;
    unsigned phnum, phentsize;
    if (e->cls == ELFCLASS64) {
        if (n < (ssize_t)sizeof(Elf64_Ehdr)) goto out;
        Elf64_Ehdr eh;
        memcpy(&eh, h, sizeof eh);
        e->type = eh.e_type;
        e->machine = eh.e_machine;
        phoff = eh.e_phoff;
        phnum = eh.e_phnum;
        phentsize = eh.e_phentsize;
        if (phentsize < sizeof(Elf64_Phdr)) phnum = 0;
    } else {
        Elf32_Ehdr eh;
        memcpy(&eh, h, sizeof eh);
        e->type = eh.e_type;
        e->machine = eh.e_machine;
        phoff = eh.e_phoff;
        phnum = eh.e_phnum;
        phentsize = eh.e_phentsize;
        if (phentsize < sizeof(Elf32_Phdr)) phnum = 0;
    }
    r = 0;
    if (phnum > 4096) phnum = 4096;
    for (unsigned i = 0; i < phnum; i++) {
        uint32_t ptype;
        uint64_t off, filesz;
        if (e->cls == ELFCLASS64) {
            Elf64_Phdr ph;
            if (pread(fd, &ph, sizeof ph, (off_t)(phoff + (uint64_t)i * phentsize)) != (ssize_t)sizeof ph) break;
            ptype = ph.p_type;
            off = ph.p_offset;
            filesz = ph.p_filesz;
        } else {
            Elf32_Phdr ph;
            if (pread(fd, &ph, sizeof ph, (off_t)(phoff + (uint64_t)i * phentsize)) != (ssize_t)sizeof ph) break;
            ptype = ph.p_type;
            off = ph.p_offset;
            filesz = ph.p_filesz;
        }
        if (ptype == PT_DYNAMIC) e->has_dynamic = 1;
        if (ptype == PT_INTERP && !e->has_interp) {
            size_t len = filesz < sizeof e->interp - 1 ? (size_t)filesz : sizeof e->interp - 1;
            ssize_t got = pread(fd, e->interp, len, (off_t)off);
            e->interp[got > 0 ? got : 0] = '\0';
            e->has_interp = 1;
        }
    }
out:
    close(fd);
    return r;
}

static void describe(const struct elf_info *e, char *out, size_t cap) {
    char m[32];
    cut(out, cap, "ELF %s-bit %s%s", e->cls == ELFCLASS64 ? "64" : "32",
             e->data != host_data() ? "(other byte order) " : "", machine_name(e->machine, m, sizeof m));
}

/* Finds `cmd` as execvp would: a name with '/' as it is, else the first executable in PATH. */
static int find_in_path(const char *cmd, char *out, size_t cap) {
    if (strchr(cmd, '/')) {
        cut(out, cap, "%s", cmd);
        return access(out, F_OK) == 0 ? 0 : -1;
    }
    const char *path = getenv("PATH");
    if (!path) path = "/bin:/usr/bin";
    int found_noexec = 0;
    for (const char *p = path;;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        cut(out, cap, "%.*s%s%s", (int)n, p, n ? "/" : "", cmd);
        struct stat st;
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(out, X_OK) == 0) return 0;
            found_noexec = 1;
        }
        if (!end) break;
        p = end + 1;
    }
    errno = found_noexec ? EACCES : ENOENT;
    return -1;
}

/* Our own program's class, machine and dynamic loader: what the library was built with. */
static void self_info(struct elf_info *e) {
    if (elf_read("/proc/self/exe", e) != 0) {
        memset(e, 0, sizeof *e);
        e->cls = sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32;
        e->data = host_data();
    }
}

/* Why the program would run in secure-execution mode (LD_PRELOAD paths ignored), or NULL. */
static const char *secure_reason(const char *path, const struct stat *st) {
    struct statvfs vfs;
    if (statvfs(path, &vfs) == 0 && (vfs.f_flag & ST_NOSUID)) return NULL; /* the bits are ignored there */
    if ((st->st_mode & S_ISUID) && st->st_uid != getuid()) return "it is setuid";
    if ((st->st_mode & S_ISGID) && st->st_gid != getgid()) return "it is setgid";
    if (getuid() != 0 && getxattr(path, "security.capability", NULL, 0) > 0) return "it has file capabilities";
    return NULL;
}

struct verdict {
    char lines[8][PATH_MAX + 256];  /* what was found, for `check` */
    int nlines;
    char problem[PATH_MAX + 512];   /* empty: it would load */
    char note[PATH_MAX + 512];      /* loads, but worth knowing */
    char target[PATH_MAX];          /* the ELF program that would load it */
};

static void line(struct verdict *v, const char *fmt, const char *a, const char *b) {
    if (v->nlines < 8) cut(v->lines[v->nlines++], sizeof v->lines[0], fmt, a, b);
}

/* Follows `cmd` to the ELF program the kernel runs and judges it. */
static void judge(const char *cmd, struct verdict *v) {
    memset(v, 0, sizeof *v);
    char path[PATH_MAX];
    if (find_in_path(cmd, path, sizeof path) != 0) {
        cut(v->problem, sizeof v->problem, "%s: %s", cmd,
                 errno == EACCES ? "found in PATH but not executable" : "not found (PATH, or no such file)");
        return;
    }
    struct elf_info self;
    self_info(&self);
    for (int depth = 0;; depth++) {
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            cut(v->problem, sizeof v->problem, "%s: not a regular file", path);
            return;
        }
        struct elf_info e;
        int r = elf_read(path, &e);
        if (r < 0) {
            cut(v->problem, sizeof v->problem, "%s: cannot be read (%s)", path, strerror(errno));
            return;
        }
        if (r == 1) { /* a script? */
            char head[512];
            int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
            ssize_t n = fd >= 0 ? pread(fd, head, sizeof head - 1, 0) : -1;
            if (fd >= 0) close(fd);
            if (n < 2 || head[0] != '#' || head[1] != '!') {
                cut(v->problem, sizeof v->problem, "%s: neither an ELF program nor a #! script", path);
                return;
            }
            if (depth >= 4) {
                cut(v->problem, sizeof v->problem, "%s: interpreters nested too deeply", path);
                return;
            }
            head[n] = '\0';
            char *nl = strchr(head, '\n');
            if (nl) *nl = '\0';
            char *p = head + 2;
            while (*p == ' ' || *p == '\t') p++;
            char *interp = p;
            while (*p && *p != ' ' && *p != '\t') p++;
            char *rest = *p ? p + 1 : p;
            *p = '\0';
            const char *base = strrchr(interp, '/') ? strrchr(interp, '/') + 1 : interp;
            char next[PATH_MAX];
            if (strcmp(base, "env") == 0) {
                /* #!/usr/bin/env [-S] [NAME=VALUE...] PROGRAM: env gets the library too, then PROGRAM */
                char *tok = strtok(rest, " \t");
                while (tok && (tok[0] == '-' || strchr(tok, '='))) tok = strtok(NULL, " \t");
                if (!tok || find_in_path(tok, next, sizeof next) != 0) {
                    cut(v->problem, sizeof v->problem, "%s: its interpreter (%s %s) cannot be found", path, interp,
                             tok ? tok : "");
                    return;
                }
                line(v, "%s: a script run by env, which runs %s", path, next);
            } else {
                cut(next, sizeof next, "%s", interp);
                line(v, "%s: a script run by %s (#!)", path, next);
            }
            cut(path, sizeof path, "%s", next);
            continue;
        }
        char d[96];
        describe(&e, d, sizeof d);
        cut(v->target, sizeof v->target, "%s", path);
        if (e.cls != self.cls || e.data != self.data || (self.machine && e.machine != self.machine)) {
            char sd[96];
            describe(&self, sd, sizeof sd);
            cut(v->problem, sizeof v->problem,
                     "%s is %s, the library is %s: the dynamic loader skips it (\"wrong ELF class\")", path, d, sd);
            return;
        }
        if (!e.has_interp) {
            cut(v->problem, sizeof v->problem,
                     "%s is statically linked (%s, no program interpreter): it has no dynamic loader to read LD_PRELOAD", path,
                     e.has_dynamic ? "static-pie" : "static");
            return;
        }
        if (strstr(e.interp, "ld-musl")) {
            cut(v->problem, sizeof v->problem,
                     "%s is linked against musl (%s): libforksafe is built for glibc and cannot load there", path, e.interp);
            return;
        }
        line(v, "%s: %s", path, d);
        char dd[PATH_MAX + 64];
        cut(dd, sizeof dd, "dynamically linked, loader %s", e.interp);
        line(v, "%s%s", "  ", dd);
        const char *sec = secure_reason(path, &st);
        if (sec) {
            cut(v->problem, sizeof v->problem,
                     "%s: %s, so it runs in secure-execution mode, where the dynamic loader ignores LD_PRELOAD entries "
                     "that contain '/'. Only /etc/ld.so.preload reaches it, and there libforksafe ignores every FORKSAFE_* "
                     "variable and runs with the defaults, reporting to stderr", path, sec);
            return;
        }
        if (self.has_interp && strcmp(self.interp, e.interp) != 0)
            cut(v->note, sizeof v->note, "%s uses the dynamic loader %s, forksafe uses %s: a different C library "
                     "may refuse libforksafe", path, e.interp, self.interp);
        return;
    }
}

const char *forksafe_load_problem(const char *library, const char *cmd, char *buf, size_t cap) {
    (void)library;
    static struct verdict v;
    judge(cmd, &v);
    if (!v.problem[0] || !v.target[0]) return NULL; /* not found, or no ELF reached: exec will say */
    cut(buf, cap, "%s", v.problem);
    return buf;
}

/* Is the library listed in /etc/ld.so.preload (by path, or the same file)? */
static int in_ld_so_preload(const char *library) {
    FILE *f = fopen("/etc/ld.so.preload", "re");
    if (!f) return 0;
    struct stat lib, st;
    int have = stat(library, &lib) == 0, found = 0;
    char word[PATH_MAX];
    while (!found && fscanf(f, " %4095[^ \t\n:]", word) == 1) {
        if (word[0] == '#') { /* ld.so reads no comments, but be kind */
            int c;
            while ((c = fgetc(f)) != EOF && c != '\n') {}
            continue;
        }
        found = strcmp(word, library) == 0 ||
                (have && stat(word, &st) == 0 && st.st_dev == lib.st_dev && st.st_ino == lib.st_ino);
        if (fscanf(f, "%*[ \t\n:]") == EOF) break;
    }
    fclose(f);
    return found;
}

/* The library: a readable ELF shared object of our class and machine that dlopen accepts. */
static int check_library(const char *library, void **handle) {
    struct stat st;
    if (stat(library, &st) != 0) {
        printf("problem: library %s: %s (install libforksafe, or name it with --library or FORKSAFE_LIBRARY)\n", library,
               strerror(errno));
        return 1;
    }
    struct elf_info e, self;
    int r = elf_read(library, &e);
    if (r != 0) {
        printf("problem: library %s: %s\n", library, r < 0 ? strerror(errno) : "not an ELF file");
        return 1;
    }
    self_info(&self);
    char d[96], sd[96];
    describe(&e, d, sizeof d);
    describe(&self, sd, sizeof sd);
    if (e.cls != self.cls || e.data != self.data || (self.machine && e.machine != self.machine)) {
        printf("problem: library %s is %s, this system's programs are %s: it would be skipped (\"wrong ELF class\")\n",
               library, d, sd);
        return 1;
    }
    if (e.type != ET_DYN) {
        printf("problem: library %s is not a shared object\n", library);
        return 1;
    }
    if (strpbrk(library, " :\t")) {
        printf("problem: library %s: its path has a space or ':', which LD_PRELOAD cannot hold\n", library);
        return 1;
    }
    if (!(st.st_mode & S_IROTH))
        printf("warning: library %s is not readable by other users: programs running as another user cannot load it\n",
               library);
    *handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (!*handle) {
        printf("problem: library %s does not load: %s\n", library, dlerror());
        return 1;
    }
    const char *(*version)(void) = (const char *(*)(void))dlsym(*handle, "forksafe_version");
    printf("library: %s (%s, libforksafe %s)\n", library, d, version ? version() : "of unknown version");
    if (in_ld_so_preload(library))
        printf("note: /etc/ld.so.preload lists it too: every dynamically linked program on this system loads it "
               "(once, however many times it is named)\n");
    return 0;
}

/* The settings the library reads, printed by the library itself. FORKSAFE_VERBOSE is hidden from
 * it while it loads here (else it would write them to the log) and shown as set. */
static void print_settings(void *handle, const char *verbose) {
    int (*dump)(int) = (int (*)(int))dlsym(handle, "forksafe_print_settings");
    if (!dump) {
        printf("warning: the library has no forksafe_print_settings: settings not shown\n");
        return;
    }
    printf("settings (as the library reads them from this environment):\n");
    fflush(stdout);
    FILE *tmp = tmpfile();
    if (!tmp) {
        dump(1);
        return;
    }
    dump(fileno(tmp));
    rewind(tmp);
    char buf[1024];
    while (fgets(buf, sizeof buf, tmp)) {
        char *s = strstr(buf, "setting FORKSAFE_VERBOSE=");
        if (s && verbose) {
            *s = '\0';
            printf("  %ssetting FORKSAFE_VERBOSE=%s (from the environment; the library was loaded here with it unset)\n",
                   buf, verbose);
        } else {
            printf("  %s", buf);
        }
    }
    fclose(tmp);
}

int forksafe_check(const char *library, int argc, char **argv) {
    char *verbose = getenv("FORKSAFE_VERBOSE") ? strdup(getenv("FORKSAFE_VERBOSE")) : NULL;
    unsetenv("FORKSAFE_VERBOSE");
    void *handle = NULL;
    int bad = check_library(library, &handle);
    if (argc > 0) {
        struct verdict v;
        judge(argv[0], &v);
        for (int i = 0; i < v.nlines; i++) printf("command: %s\n", v.lines[i]);
        if (v.problem[0]) {
            printf("problem: %s\n", v.problem);
            bad = 1;
        }
        if (v.note[0]) printf("warning: %s\n", v.note);
        if (!bad) printf("result: libforksafe would load into %s\n", v.target);
        else printf("result: libforksafe would NOT load into %s\n", v.target[0] ? v.target : argv[0]);
    } else {
        printf(bad ? "result: the library would NOT load\n" : "result: the library loads (name a command to check it too)\n");
    }
    if (handle) print_settings(handle, verbose);
    if (verbose) setenv("FORKSAFE_VERBOSE", verbose, 1);
    free(verbose);
    return bad;
}
