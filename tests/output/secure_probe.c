// SPDX-License-Identifier: MIT
// Says whether libforksafe is loaded in this process and which mode it is in, for
// check_secure.py, which runs setuid and setgid copies of it (and a plain copy as the control).
//
//   secure_probe [report]
//
// Prints one line: "loaded=0|1 mode=<forksafe_mode()> secure=<AT_SECURE> uid=.. euid=.. gid=.. egid=..".
// With "report": then starts a thread, forks, and the child _exits while the thread is still
// alive in the parent, so the child owes a fork report (it is written where the library writes).
// Exit status 0; 1 if a check failed.
#include "forksafe_test.h"

#include <sys/auxv.h>

static int release[2];

static void *idle_main(void *p) {
    char c;
    while (read(release[0], &c, 1) < 0 && errno == EINTR) {}
    return p;
}

int main(int argc, char **argv) {
    alarm(30);
    const char *(*version)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "forksafe_version");
    const char *(*mode)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "forksafe_mode");
    printf("loaded=%d mode=%s secure=%lu uid=%d euid=%d gid=%d egid=%d\n", version != NULL,
           mode ? mode() : "none", getauxval(AT_SECURE), (int)getuid(), (int)geteuid(),
           (int)getgid(), (int)getegid());
    fflush(stdout);
    if (argc > 1 && !strcmp(argv[1], "report")) {
        CHECK(pipe2(release, O_CLOEXEC) == 0);
        pthread_t t;
        CHECK(pthread_create(&t, NULL, idle_main, NULL) == 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) _exit(0);
        int st;
        CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
        close(release[1]);
        CHECK(pthread_join(t, NULL) == 0);
    }
    return 0;
}
