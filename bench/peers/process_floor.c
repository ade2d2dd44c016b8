/* The floors of the process figures: the raw system calls, no library.
 *   fork_floor        fork + _exit + waitpid: us per process
 *   posix_spawn_true  posix_spawn("/bin/true") + waitpid: us per process
 *   pipe_floor        64-byte ping-pong over two pipes: us per round trip
 *   rawpipe_64/_4k    a producer process writes fixed-size messages into a
 *                     pipe, the parent reads them: messages/s
 *   mq_64/_4k         the same through a POSIX message queue
 *                     (mq_send / mq_receive): messages/s */
#include <fcntl.h>
#include <mqueue.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void fork_floor(long n)
{
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        waitpid(p, NULL, 0);
    }
    printf("RESULT fork_floor %.3f us/process\n", (now_ns() - t0) / (double)n / 1e3);
}

static void spawn_true(long n)
{
    char *argv[] = {"/bin/true", NULL};
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        pid_t p;
        if (posix_spawn(&p, "/bin/true", NULL, NULL, argv, environ) != 0) exit(1);
        waitpid(p, NULL, 0);
    }
    printf("RESULT posix_spawn_true %.3f us/process\n", (now_ns() - t0) / (double)n / 1e3);
}

static int full_read(int fd, char *b, size_t n)
{
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r <= 0) return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static void pipe_floor(long n)
{
    int a[2], b[2];
    if (pipe(a) || pipe(b)) exit(1);
    pid_t p = fork();
    char m[64] = {1};
    if (p == 0) {
        close(a[1]);
        close(b[0]);
        while (full_read(a[0], m, sizeof m) == 0)
            if (write(b[1], m, sizeof m) != sizeof m) break;
        _exit(0);
    }
    close(a[0]);
    close(b[1]);
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        if (write(a[1], m, sizeof m) != sizeof m || full_read(b[0], m, sizeof m)) exit(1);
    }
    double dt = now_ns() - t0;
    close(a[1]);
    waitpid(p, NULL, 0);
    printf("RESULT pipe_floor %.3f us/roundtrip\n", dt / (double)n / 1e3);
}

static void rawpipe(long n, size_t size)
{
    int a[2];
    if (pipe(a)) exit(1);
    char *m = calloc(1, size);
    double t0 = now_ns();
    pid_t p = fork();
    if (p == 0) {
        close(a[0]);
        for (long i = 0; i < n; i++)
            if (write(a[1], m, size) != (ssize_t)size) _exit(1);
        _exit(0);
    }
    close(a[1]);
    for (long i = 0; i < n; i++)
        if (full_read(a[0], m, size)) exit(1);
    waitpid(p, NULL, 0);
    double dt = now_ns() - t0;
    printf("RESULT rawpipe_%s %.3f msgs/s\n", size == 64 ? "64" : "4k", (double)n / (dt / 1e9));
    free(m);
}

static void mq(long n, size_t size)
{
    char name[64];
    snprintf(name, sizeof name, "/cogent-bench-%d", (int)getpid());
    struct mq_attr at = {.mq_maxmsg = 10, .mq_msgsize = (long)size}; /* 10: the default limit without privileges */
    mqd_t q = mq_open(name, O_CREAT | O_RDWR, 0600, &at);
    if (q == (mqd_t)-1) {
        perror("mq_open");
        exit(1);
    }
    mq_unlink(name);
    char *m = calloc(1, size);
    double t0 = now_ns();
    pid_t p = fork();
    if (p == 0) {
        for (long i = 0; i < n; i++) mq_send(q, m, size, 0);
        _exit(0);
    }
    for (long i = 0; i < n; i++)
        if (mq_receive(q, m, size, NULL) < 0) exit(1);
    waitpid(p, NULL, 0);
    double dt = now_ns() - t0;
    printf("RESULT mq_%s %.3f msgs/s\n", size == 64 ? "64" : "4k", (double)n / (dt / 1e9));
    free(m);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    int all = !strcmp(what, "all");
    if (all || !strcmp(what, "fork")) fork_floor(2000);
    if (all || !strcmp(what, "spawn")) spawn_true(1000);
    if (all || !strcmp(what, "pipe")) pipe_floor(50000);
    if (all || !strcmp(what, "rawpipe_64")) rawpipe(500000, 64);
    if (all || !strcmp(what, "rawpipe_4k")) rawpipe(200000, 4096);
    if (all || !strcmp(what, "mq_64")) mq(500000, 64);
    if (all || !strcmp(what, "mq_4k")) mq(200000, 4096);
    fflush(stdout);
    return 0;
}
