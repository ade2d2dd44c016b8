/* Pipes between processes: whole messages, big ones both ways without a
 * deadlock, deadlines, cancellation, committed sends, close and EOF,
 * one-way pipes, an end handed to a program. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "cogent.h"
#include "harness.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "child: %s:%d: %s (errno %d %s)\n", __FILE__, __LINE__, #cond, errno, strerror(errno));    \
            return 10;                                                                                                 \
        }                                                                                                              \
    } while (0)

static char *self_path;

/* Starts fn(arg) in a child and returns its exit code after joining. */
static co_process_t *start(co_process_fn fn, void *arg)
{
    co_process_t *p = co_process_new(fn, arg, NULL);
    ASSERT(p);
    ASSERT_EQ(co_process_start(p), 0);
    return p;
}
static int finish(co_process_t *p)
{
    ASSERT_EQ(co_process_join(p, co_now() + 20000), 0);
    int code = co_process_exitcode(p);
    co_process_free(p);
    return code;
}

static void fill_pattern(char *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) b[i] = (char)(seed + i * 31 + i / 977);
}
static bool check_pattern(const char *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != (char)(seed + i * 31 + i / 977)) return false;
    return true;
}

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

/* ------------------------------------------------------------- pipes */

static co_conn_t *ends[2];

static int echo_child(void *arg)
{
    (void)arg;
    co_conn_close(ends[0]);
    for (;;) {
        void *m;
        size_t n;
        if (co_conn_recv(ends[1], &m, &n, co_now() + 10000) < 0) return errno == EPIPE ? 0 : 11;
        int r = co_conn_send(ends[1], m, n, co_now() + 10000);
        free(m);
        CHECK(r == 0);
    }
}

static void test_pipe_ping_pong(void)
{
    ASSERT_EQ(co_pipe(ends, true), 0);
    co_process_t *p = start(echo_child, NULL);
    co_conn_close(ends[1]);
    for (int i = 0; i < 1000; i++) {
        char msg[64], back[64];
        int len = snprintf(msg, sizeof msg, "ping %d", i);
        ASSERT_EQ(co_conn_send(ends[0], msg, (size_t)len, co_now() + 5000), 0);
        ASSERT_EQ(co_conn_recv_into(ends[0], back, sizeof back, co_now() + 5000), len);
        ASSERT(!memcmp(msg, back, (size_t)len));
    }
    /* an empty message is a message */
    ASSERT_EQ(co_conn_send(ends[0], NULL, 0, co_now() + 5000), 0);
    size_t n = 99;
    void *m;
    ASSERT_EQ(co_conn_recv(ends[0], &m, &n, co_now() + 5000), 0);
    ASSERT_EQ(n, 0);
    free(m);
    co_conn_free(ends[0]); /* the child sees EPIPE and exits 0 */
    ASSERT_EQ(finish(p), 0);
    co_conn_free(ends[1]);
}

static void test_pipe_one_mib_both_ways(void)
{
    /* The child echoes a 1 MiB message; then both sides send 1 MiB before
     * either receives: with plain blocking pipes, a deadlock. */
    ASSERT_EQ(co_pipe(ends, true), 0);
    co_process_t *p = start(echo_child, NULL);
    co_conn_close(ends[1]);
    size_t big = 1u << 20;
    char *b = malloc(big);
    fill_pattern(b, big, 1);
    ASSERT_EQ(co_conn_send(ends[0], b, big, co_now() + 10000), 0);
    void *m;
    size_t n;
    ASSERT_EQ(co_conn_recv(ends[0], &m, &n, co_now() + 10000), 0);
    ASSERT_EQ(n, big);
    ASSERT(check_pattern(m, n, 1));
    free(m);
    /* Several at once: the child's sends wait while ours go out. */
    for (int i = 0; i < 4; i++) {
        fill_pattern(b, big, (unsigned)i + 2);
        ASSERT_EQ(co_conn_send(ends[0], b, big, co_now() + 10000), 0);
    }
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(co_conn_recv(ends[0], &m, &n, co_now() + 10000), 0);
        ASSERT_EQ(n, big);
        ASSERT(check_pattern(m, n, (unsigned)i + 2));
        free(m);
    }
    free(b);
    co_conn_free(ends[0]);
    ASSERT_EQ(finish(p), 0);
    co_conn_free(ends[1]);
}

static int send_then_recv_child(void *arg)
{
    size_t big = (size_t)(uintptr_t)arg;
    co_conn_close(ends[0]);
    char *b = malloc(big);
    fill_pattern(b, big, 7);
    CHECK(co_conn_send(ends[1], b, big, co_now() + 10000) == 0);
    void *m;
    size_t n;
    CHECK(co_conn_recv(ends[1], &m, &n, co_now() + 10000) == 0);
    CHECK(n == big && check_pattern(m, n, 8));
    free(m);
    free(b);
    return 0;
}

static void test_pipe_symmetric_big_sends(void)
{
    size_t big = 4u << 20;
    ASSERT_EQ(co_pipe(ends, true), 0);
    co_process_t *p = start(send_then_recv_child, (void *)(uintptr_t)big);
    co_conn_close(ends[1]);
    char *b = malloc(big);
    fill_pattern(b, big, 8);
    ASSERT_EQ(co_conn_send(ends[0], b, big, co_now() + 10000), 0);
    void *m;
    size_t n;
    ASSERT_EQ(co_conn_recv(ends[0], &m, &n, co_now() + 10000), 0);
    ASSERT_EQ(n, big);
    ASSERT(check_pattern(m, n, 7));
    free(m);
    free(b);
    ASSERT_EQ(finish(p), 0);
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
}

static void test_pipe_deadlines(void)
{
    ASSERT_EQ(co_pipe(ends, true), 0);
    void *m;
    size_t n;
    char buf[16];
    ASSERT_ERR(co_conn_recv(ends[0], &m, &n, 0), EAGAIN);
    ASSERT_ERR(co_conn_recv_into(ends[0], buf, sizeof buf, 0), EAGAIN);
    int64_t t0 = co_now();
    ASSERT_ERR(co_conn_recv(ends[0], &m, &n, co_now() + 50), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 40, 1000);
    ASSERT_ERR(co_conn_recv(ends[0], &m, &n, co_now() - 10), ETIMEDOUT);
    ASSERT_EQ(co_conn_poll(ends[0], 0), 0);
    ASSERT_EQ(co_conn_poll(ends[0], co_now() + 20), 0);
    /* Fill the other direction: nobody reads ends[1]. */
    char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    int sent = 0;
    while (co_conn_send(ends[0], chunk, sizeof chunk, 0) == 0) sent++;
    ASSERT_EQ(errno, EAGAIN);
    ASSERT(sent > 0);
    t0 = co_now();
    ASSERT_ERR(co_conn_send(ends[0], chunk, 10, co_now() + 50), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 40, 1000);
    /* Every message sent arrives whole; the refused ones never do. */
    for (int i = 0; i < sent; i++) {
        ASSERT_EQ(co_conn_poll(ends[1], 0), 1);
        ASSERT_EQ(co_conn_recv_into(ends[1], chunk, sizeof chunk, 0), (ssize_t)sizeof chunk);
    }
    ASSERT_ERR(co_conn_recv(ends[1], &m, &n, 0), EAGAIN);
    /* recv_into with a small buffer: EMSGSIZE, the message stays */
    ASSERT_EQ(co_conn_send(ends[1], "0123456789", 10, 0), 0);
    ASSERT_ERR(co_conn_recv_into(ends[0], buf, 4, 0), EMSGSIZE);
    ASSERT_EQ(co_conn_recv_into(ends[0], buf, 10, 0), 10);
    ASSERT(!memcmp(buf, "0123456789", 10));
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
}

static void *send_after(void *arg)
{
    return (void *)(intptr_t)co_conn_send(arg, "after", 5, co_now() + 10000);
}

static void test_pipe_committed_send(void)
{
    /* A big send whose deadline passes after it started: committed (0),
     * its tail goes out ahead of the next message, nothing interleaves. */
    ASSERT_EQ(co_pipe(ends, true), 0);
    size_t big = 2u << 20;
    char *b = malloc(big);
    fill_pattern(b, big, 3);
    int64_t t0 = co_now();
    ASSERT_EQ(co_conn_send(ends[0], b, big, co_now() + 50), 0);
    ASSERT_TIME(co_now() - t0, 40, 1000);
    /* The tail cannot go out yet: the next send refuses, sending nothing. */
    ASSERT_ERR(co_conn_send(ends[0], "after", 5, 0), EAGAIN);
    void *m;
    size_t n;
    /* Only part of it is out: a receive times out, keeping what it read. */
    ASSERT_ERR(co_conn_recv(ends[1], &m, &n, co_now() + 50), ETIMEDOUT);
    ASSERT_EQ(co_conn_poll(ends[1], 0), 0);
    /* The next send flushes the tail first; meanwhile we receive. */
    co_coro_t *s = co_spawn(send_after, ends[0]);
    ASSERT_EQ(co_conn_recv(ends[1], &m, &n, co_now() + 10000), 0);
    ASSERT_EQ(n, big);
    ASSERT(check_pattern(m, n, 3));
    free(m);
    ASSERT_EQ(co_conn_recv(ends[1], &m, &n, co_now() + 10000), 0);
    ASSERT_EQ(n, 5);
    ASSERT(!memcmp(m, "after", 5));
    free(m);
    void *r;
    ASSERT_EQ(co_join(s, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, 0);
    free(b);
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
}

static void *receiver(void *arg)
{
    void *m;
    size_t n;
    int r = co_conn_recv(arg, &m, &n, -1);
    if (r == 0) free(m);
    return (void *)(intptr_t)(r < 0 ? errno : 0);
}

static atomic_int ticks;
static void *ticker(void *arg)
{
    (void)arg;
    while (co_sleep_ms(2) == 0) atomic_fetch_add(&ticks, 1);
    return NULL;
}

static void test_pipe_cancel_and_parking(void)
{
    ASSERT_EQ(co_pipe(ends, true), 0);
    atomic_store(&ticks, 0);
    co_coro_t *t = co_spawn(ticker, NULL);
    co_coro_t *r = co_spawn(receiver, ends[0]);
    co_sleep_ms(50);
    ASSERT(atomic_load(&ticks) > 5); /* the receiver parked only itself */
    co_kill(r);
    void *res;
    ASSERT_EQ(co_join(r, -1, &res), 0);
    ASSERT_EQ((intptr_t)res, ECANCELED);
    /* Half a message arrives, a receive gives up, the rest arrives: the
     * next receive gets it whole. */
    int fd = co_conn_fd(ends[1]);
    uint64_t len = 6;
    ASSERT_EQ(write(fd, &len, 8), 8);
    ASSERT_EQ(write(fd, "hal", 3), 3);
    void *m;
    size_t n;
    ASSERT_ERR(co_conn_recv(ends[0], &m, &n, co_now() + 30), ETIMEDOUT);
    ASSERT_EQ(write(fd, "ves", 3), 3);
    ASSERT_EQ(co_conn_recv(ends[0], &m, &n, co_now() + 1000), 0);
    ASSERT_EQ(n, 6);
    ASSERT(!memcmp(m, "halves", 6));
    free(m);
    co_kill(t);
    ASSERT_EQ(co_join(t, -1, NULL), 0);
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
}

static void *thread_echo(void *arg)
{
    co_conn_t *c = arg;
    void *m;
    size_t n;
    while (co_conn_recv(c, &m, &n, co_now() + 10000) == 0) {
        co_conn_send(c, m, n, co_now() + 10000);
        free(m);
    }
    return NULL;
}

static void test_pipe_close_and_eof(void)
{
    ASSERT_EQ(co_pipe(ends, true), 0);
    ASSERT_EQ(co_conn_send(ends[0], "last", 4, 0), 0);
    co_conn_close(ends[0]);
    ASSERT(co_conn_closed(ends[0]));
    co_conn_close(ends[0]); /* idempotent */
    ASSERT_ERR(co_conn_send(ends[0], "x", 1, 0), EPIPE);
    void *m;
    size_t n;
    ASSERT_ERR(co_conn_recv(ends[0], &m, &n, 0), EPIPE);
    /* the peer takes what was sent, then sees the close */
    ASSERT_EQ(co_conn_poll(ends[1], 0), 1);
    ASSERT_EQ(co_conn_recv(ends[1], &m, &n, 0), 0);
    free(m);
    ASSERT_EQ(co_conn_poll(ends[1], 0), 1);
    ASSERT_ERR(co_conn_recv(ends[1], &m, &n, co_now() + 1000), EPIPE);
    ASSERT_ERR(co_conn_send(ends[1], "x", 1, co_now() + 1000), EPIPE); /* no SIGPIPE */
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
    co_conn_free(NULL);
    /* one-way */
    ASSERT_EQ(co_pipe(ends, false), 0);
    ASSERT_ERR(co_conn_send(ends[0], "x", 1, 0), EBADF);
    ASSERT_ERR(co_conn_recv(ends[1], &m, &n, 0), EBADF);
    ASSERT_ERR(co_conn_send(ends[1], NULL, 1, 0), EINVAL);
    ASSERT_EQ(co_conn_send(ends[1], "one way", 7, 0), 0);
    ASSERT_EQ(co_conn_recv(ends[0], &m, &n, 0), 0);
    ASSERT_EQ(n, 7);
    free(m);
    co_conn_close(ends[0]);
    ASSERT_ERR(co_conn_send(ends[1], "x", 1, 0), EPIPE); /* a pipe without a reader: no SIGPIPE */
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
    /* a plain thread on the other end */
    ASSERT_EQ(co_pipe(ends, true), 0);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, thread_echo, ends[1]), 0);
    for (int i = 0; i < 100; i++) {
        ASSERT_EQ(co_conn_send(ends[0], &i, sizeof i, co_now() + 5000), 0);
        int back;
        ASSERT_EQ(co_conn_recv_into(ends[0], &back, sizeof back, co_now() + 5000), (ssize_t)sizeof back);
        ASSERT_EQ(back, i);
    }
    co_conn_close(ends[0]);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
}

/* A program (this test, exec'd) that echoes on an inherited end. */
static int exec_echo_main(int fd)
{
    co_conn_t *c = co_conn_from_fd(fd);
    CHECK(c);
    void *m;
    size_t n;
    while (co_conn_recv(c, &m, &n, co_now() + 10000) == 0) {
        char *up = m;
        for (size_t i = 0; i < n; i++) up[i] = (char)(up[i] >= 'a' && up[i] <= 'z' ? up[i] - 32 : up[i]);
        CHECK(co_conn_send(c, up, n, co_now() + 10000) == 0);
        free(m);
    }
    co_conn_free(c);
    return 0;
}

static void test_pipe_end_handed_to_a_program(void)
{
    ASSERT_EQ(co_pipe(ends, true), 0);
    char fdarg[16];
    snprintf(fdarg, sizeof fdarg, "%d", co_conn_fd(ends[1]));
    const char *argv[] = {self_path, "--exec-echo", fdarg, NULL};
    int keep = co_conn_fd(ends[1]);
    co_process_opts_t o = {.pass_fds = &keep, .npass_fds = 1};
    co_process_t *p = co_process_exec(argv, &o);
    ASSERT(p);
    co_conn_close(ends[1]);
    ASSERT_EQ(co_conn_send(ends[0], "hello", 5, co_now() + 5000), 0);
    char back[8];
    ASSERT_EQ(co_conn_recv_into(ends[0], back, sizeof back, co_now() + 5000), 5);
    ASSERT(!memcmp(back, "HELLO", 5));
    co_conn_close(ends[0]);
    ASSERT_EQ(finish(p), 0);
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
    ASSERT_ERR(co_conn_from_fd(12345), EBADF);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--exec-echo")) return exec_echo_main(atoi(argv[2]));
    self_path = argv[0];
    TEST_MAIN_BEGIN(argc, argv);
    ASSERT_EQ(finish(start(nothing, NULL)), 0); /* the reaper lives from the first child on */
    RUN(test_pipe_ping_pong);
    RUN(test_pipe_one_mib_both_ways);
    RUN(test_pipe_symmetric_big_sends);
    RUN(test_pipe_deadlines);
    RUN(test_pipe_committed_send);
    RUN(test_pipe_cancel_and_parking);
    RUN(test_pipe_close_and_eof);
    RUN(test_pipe_end_handed_to_a_program);
    return TEST_MAIN_END();
}
