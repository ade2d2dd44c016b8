/* Starts tests/http_testd.c (a real HTTP server on a free 127.0.0.1 port,
 * in a process of its own) and stops it.  The server lives while the
 * pipe to its stdin is open: closing it, or this process dying, ends it. */
#ifndef COGENT_TESTD_H
#define COGENT_TESTD_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct testd {
    pid_t pid;
    int in; /* its stdin */
    int port;
} testd_t;

/* argv: extra arguments, NULL-terminated (may be NULL).  0 or -1. */
static inline int testd_start(testd_t *t, const char *const *args)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) return -1;
    const char *argv[16] = {TESTD};
    int n = 1;
    for (; args && *args && n < 15; args++) argv[n++] = *args;
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execv(TESTD, (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    char buf[64] = "";
    size_t len = 0;
    ssize_t r;
    while (len < sizeof buf - 1 && (r = read(out[0], buf + len, sizeof buf - 1 - len)) > 0) {
        len += (size_t)r;
        if (memchr(buf, '\n', len)) break;
    }
    close(out[0]);
    t->pid = pid;
    t->in = in[1];
    t->port = 0;
    if (sscanf(buf, "port %d", &t->port) != 1) {
        close(t->in);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return 0;
}

static inline void testd_stop(testd_t *t)
{
    close(t->in);
    int st;
    waitpid(t->pid, &st, 0);
}

/* "http://127.0.0.1:PORT" + path into a static buffer of the caller. */
#define TESTD_URL(buf, t, scheme, path)                                                                                \
    (snprintf((buf), sizeof(buf), "%s://127.0.0.1:%d%s", (scheme), (t)->port, (path)), (buf))

/* Starts a real server program from Debian (nginx, tinyproxy) in the
 * background, its output to /dev/null, killed if this process dies.
 * argv[0] is the program's path.  Its pid, or -1. */
#include <sys/prctl.h>
static inline pid_t testd_spawn_quiet(char *const argv[])
{
    pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives the test */
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execv(argv[0], argv);
    _exit(127);
}

#endif
