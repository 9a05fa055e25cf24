/*
 * launch: starts a container holder (berth-shim, conmon) the way the layer
 * above does, so that the bench's spawner times the whole hand-over as one
 * command.
 *
 *   launch [-s] [-a ARG]... [-w FILE] [-t SECONDS] -- COMMAND [ARG]...
 *
 *   -s       hand COMMAND a sync pipe in $_OCI_SYNCPIPE (conmon's protocol,
 *            as Podman uses it) and, once COMMAND exited, wait for the line
 *            carrying the container's pid: {"data": PID}. A negative PID or
 *            end-of-file before it is a failure.
 *   -a ARG   then run the command made of the -a arguments (e.g. `runc
 *            start ID`); one -a per argument.
 *   -w FILE  then wait until FILE exists and is not empty (inotify on its
 *            directory, which must exist by then).
 *   -t SECS  give up waiting (pipe or file) after SECS seconds (default 120).
 *
 * Exit status: 0 when every step succeeded; otherwise a message on stderr
 * and 1, the failing command's exit code, or 124 on a timeout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_AFTER 64

static long long deadline_ms;

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

/* Waits for fd to become readable before the deadline; 0, or -1 on timeout. */
static int wait_readable(int fd) {
    for (;;) {
        long long left = deadline_ms - now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* Runs argv (with the sync pipe's write end `sync_fd` in $_OCI_SYNCPIPE if
   >= 0) and returns its exit code, 128+N if killed by signal N. */
static int run(char **argv, int sync_fd) {
    pid_t pid = fork();
    if (pid < 0) {
        perror("launch: fork");
        return 1;
    }
    if (pid == 0) {
        if (sync_fd >= 0) {
            char v[16];
            fcntl(sync_fd, F_SETFD, 0); /* this end is handed over */
            snprintf(v, sizeof v, "%d", sync_fd);
            setenv("_OCI_SYNCPIPE", v, 1);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "launch: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 1;
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

/* Reads the sync pipe until a line with "data"; returns the pid, or -1. */
static long read_sync(int fd) {
    char buf[4096];
    size_t len = 0;
    for (;;) {
        if (wait_readable(fd) < 0) {
            fprintf(stderr, "launch: timed out waiting for the sync pipe\n");
            return -2;
        }
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            buf[len] = 0;
            fprintf(stderr, "launch: sync pipe closed without a pid (%s)\n", buf);
            return -1;
        }
        len += n;
        buf[len] = 0;
        char *data = strstr(buf, "\"data\"");
        if (data && strchr(data, '}')) {
            char *colon = strchr(data, ':');
            long pid = colon ? strtol(colon + 1, NULL, 10) : -1;
            if (pid <= 0)
                fprintf(stderr, "launch: the container was not created: %s\n", buf);
            return pid > 0 ? pid : -1;
        }
        if (len == sizeof buf - 1) {
            fprintf(stderr, "launch: sync message too long\n");
            return -1;
        }
    }
}

static int ready(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && st.st_size > 0;
}

/* Waits until `path` exists and is not empty. 0, or 124 on timeout. */
static int wait_file(const char *path) {
    char *copy = strdup(path);
    const char *dir = dirname(copy);
    int in = inotify_init1(IN_CLOEXEC);
    if (in < 0 || inotify_add_watch(in, dir, IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
        fprintf(stderr, "launch: watch %s: %s\n", dir, strerror(errno));
        free(copy);
        return 1;
    }
    free(copy);
    /* The watch is in place before this check, so no event is missed. */
    while (!ready(path)) {
        if (wait_readable(in) < 0) {
            fprintf(stderr, "launch: timed out waiting for %s\n", path);
            close(in);
            return 124;
        }
        char ev[4096];
        if (read(in, ev, sizeof ev) < 0 && errno != EINTR && errno != EAGAIN) {
            perror("launch: read inotify");
            close(in);
            return 1;
        }
    }
    close(in);
    return 0;
}

int main(int argc, char **argv) {
    int sync = 0, timeout = 120, n_after = 0;
    const char *wait_path = NULL;
    char *after[MAX_AFTER + 1];
    int c;
    while ((c = getopt(argc, argv, "+sa:w:t:")) != -1) {
        switch (c) {
        case 's':
            sync = 1;
            break;
        case 'a':
            if (n_after == MAX_AFTER) {
                fprintf(stderr, "launch: too many -a arguments\n");
                return 2;
            }
            after[n_after++] = optarg;
            break;
        case 'w':
            wait_path = optarg;
            break;
        case 't':
            timeout = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: launch [-s] [-a ARG]... [-w FILE] [-t SECS] -- CMD...\n");
            return 2;
        }
    }
    after[n_after] = NULL;
    if (optind >= argc) {
        fprintf(stderr, "launch: no command\n");
        return 2;
    }
    deadline_ms = now_ms() + timeout * 1000LL;

    int p[2] = {-1, -1};
    if (sync && pipe2(p, O_CLOEXEC) < 0) {
        perror("launch: pipe");
        return 1;
    }
    int rc = run(argv + optind, sync ? p[1] : -1);
    if (sync)
        close(p[1]);
    if (rc != 0) {
        fprintf(stderr, "launch: %s exited with %d\n", argv[optind], rc);
        return rc;
    }
    if (sync) {
        long pid = read_sync(p[0]);
        close(p[0]);
        if (pid < 0)
            return pid == -2 ? 124 : 1;
    }
    if (n_after > 0 && (rc = run(after, -1)) != 0) {
        fprintf(stderr, "launch: %s exited with %d\n", after[0], rc);
        return rc;
    }
    if (wait_path)
        return wait_file(wait_path);
    return 0;
}
