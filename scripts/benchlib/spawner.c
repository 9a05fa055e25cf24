/*
 * The bench's spawner: a tiny long-lived process that starts the measured
 * commands and reads their cost from the kernel.
 *
 * Why not spawn from Python: a child's ru_maxrss starts at the RSS of the
 * memory it was forked (or vforked) from, since exec records the old mm's
 * high-water mark; Python's ~16 MiB would hide every runtime's real peak.
 * This program is static and small, so the floor it adds is ~0.1 MiB.
 *
 * Protocol (stdin -> stdout, one request at a time):
 *   request:  MODE COUNT\n  then COUNT commands, each:
 *             ARGC\n ARG\n ... STDOUT-PATH\n STDERR-PATH\n
 *             MODE P starts all commands at once and waits for all of them,
 *             MODE S runs them one after the other (stops at the first failure).
 *   reply:    one line per command run: STATUS UTIME_NS STIME_NS MAXRSS_KIB
 *             (STATUS is the wait status, -1 if fork failed), then
 *             E WALL_NS\n  (fork of the first to exit of the last)
 * Arguments cannot contain newlines.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CMDS 256
#define MAX_ARGS 64
#define MAX_LINE 4096

struct cmd {
    char *argv[MAX_ARGS + 1];
    char *out, *err;
    pid_t pid;
};

static struct cmd cmds[MAX_CMDS];

static char *read_line(void) {
    char buf[MAX_LINE];
    if (!fgets(buf, sizeof buf, stdin))
        return NULL;
    buf[strcspn(buf, "\n")] = 0;
    return strdup(buf);
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long long tv_ns(struct timeval tv) {
    return tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL;
}

static pid_t start(struct cmd *c) {
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int in = open("/dev/null", O_RDONLY);
    int out = open(c->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = open(c->err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0 || err < 0)
        _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    execv(c->argv[0], c->argv);
    dprintf(2, "spawner: exec %s failed\n", c->argv[0]);
    _exit(127);
}

static int finish(pid_t pid) {
    int status = 0;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &status, 0, &ru) < 0) {
        printf("-1 0 0 0\n");
        return -1;
    }
    printf("%d %lld %lld %ld\n", status, tv_ns(ru.ru_utime), tv_ns(ru.ru_stime), ru.ru_maxrss);
    return status;
}

static void free_cmds(int n) {
    for (int i = 0; i < n; i++) {
        for (char **a = cmds[i].argv; *a; a++)
            free(*a);
        free(cmds[i].out);
        free(cmds[i].err);
        memset(&cmds[i], 0, sizeof cmds[i]);
    }
}

int main(void) {
    char mode;
    int n;
    while (scanf(" %c %d", &mode, &n) == 2) {
        getchar(); /* the newline after the header */
        if (n < 1 || n > MAX_CMDS || (mode != 'P' && mode != 'S'))
            return 2;
        for (int i = 0; i < n; i++) {
            char *argc_line = read_line();
            int argc = argc_line ? atoi(argc_line) : 0;
            free(argc_line);
            if (argc < 1 || argc > MAX_ARGS)
                return 2;
            for (int a = 0; a < argc; a++)
                cmds[i].argv[a] = read_line();
            cmds[i].argv[argc] = NULL;
            cmds[i].out = read_line();
            cmds[i].err = read_line();
            if (!cmds[i].err)
                return 2;
        }
        long long t0 = now_ns();
        if (mode == 'P') {
            for (int i = 0; i < n; i++)
                cmds[i].pid = start(&cmds[i]);
            for (int i = 0; i < n; i++)
                finish(cmds[i].pid);
        } else {
            for (int i = 0; i < n; i++)
                if (finish(start(&cmds[i])) != 0)
                    break;
        }
        printf("E %lld\n", now_ns() - t0);
        fflush(stdout);
        free_cmds(n);
    }
    return 0;
}
