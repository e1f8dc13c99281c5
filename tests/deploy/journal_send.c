// SPDX-License-Identifier: MIT
// Sends one journal entry through the library's own fs_journal_send (base/journal.c), with a
// value of SIZE bytes: larger than any socket buffer allows (8 MiB and more), it must go through
// a sealed memfd. Prints "sent" or the error.
//   journal_send SOCKET SIZE
#include "base/base.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    size_t size = strtoul(argv[2], NULL, 10);
    char *json = malloc(size + 64), *text = malloc(size + 64);
    if (!json || !text) return 1;
    int n = snprintf(json, 64, "{\"event\":\"fork\",\"pid\":%d,\"name\":\"", (int)getpid());
    memset(json + n, 'j', size);
    memcpy(json + n + size, "\"}\n", 4);
    int t = snprintf(text, 64, "forksafe[%d]: big\nforksafe[%d]: ", (int)getpid(), (int)getpid());
    memset(text + t, 't', size);
    memcpy(text + t + size, "\n", 2);
    if (fs_journal_send(argv[1], json, strlen(json), text, strlen(text), getpid()) != 0) {
        printf("failed: %s\n", strerror(errno));
        return 1;
    }
    printf("sent\n");
    return 0;
}
