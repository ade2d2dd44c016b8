/* Cooperative I/O: every call's data path, deadline, try form,
 * cancellation and errors; close while waiting (same hub, other thread);
 * partial writes; poll; threads without a hub; no fd left open. */
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#include "cogent.h"
#include "harness.h"

/* ------------------------------------------------------------ plumbing */

static void *echo_once(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[256];
    ssize_t n;
    while ((n = co_read(fd, buf, sizeof buf, -1)) > 0) ASSERT_EQ(co_write_all(fd, buf, (size_t)n, NULL, -1), 0);
    ASSERT_EQ(n, 0);
    return NULL;
}

static void test_read_write(void)
{
    FDS_BEGIN();
    int sv[2];
    ASSERT_EQ(co_socketpair(sv), 0);
    ASSERT(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    ASSERT(fcntl(sv[0], F_GETFD) & FD_CLOEXEC);
    co_coro_t *c = co_spawn(echo_once, (void *)(intptr_t)sv[1]);
    for (int i = 0; i < 1000; i++) {
        char out[32], in[32];
        int len = snprintf(out, sizeof out, "message %d", i);
        ASSERT_EQ(co_write(sv[0], out, (size_t)len, -1), len);
        size_t got = 0;
        while (got < (size_t)len) {
            ssize_t r = co_read(sv[0], in + got, sizeof in - got, co_now() + 5000);
            ASSERT(r > 0);
            got += (size_t)r;
        }
        ASSERT(!memcmp(in, out, (size_t)len));
    }
    shutdown(sv[0], SHUT_WR);
    ASSERT_EQ(co_join(c, -1, NULL), 0);
    ASSERT_EQ(co_close(sv[0]), 0);
    ASSERT_EQ(co_close(sv[1]), 0);
    FDS_END();
}

static void test_deadline_and_try(void)
{
    FDS_BEGIN();
    int sv[2];
    ASSERT_EQ(co_socketpair(sv), 0);
    char b;
    ASSERT_ERR(co_read(sv[0], &b, 1, 0), EAGAIN);
    ASSERT_ERR(co_recv(sv[0], &b, 1, 0, 0), EAGAIN);
    int64_t t0 = co_now();
    ASSERT_ERR(co_read(sv[0], &b, 1, co_now() + 60), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 55, 2000);
    ASSERT_ERR(co_recv(sv[0], &b, 1, 0, co_now() + 20), ETIMEDOUT);
    ASSERT_ERR(co_wait_readable(sv[0], co_now() + 20), ETIMEDOUT);
    ASSERT_EQ(co_wait_writable(sv[0], co_now() + 20), 0);
    /* a deadline already passed */
    ASSERT_ERR(co_read(sv[0], &b, 1, co_now() - 5), ETIMEDOUT);
    /* default timeout per fd, as socket.settimeout */
    ASSERT_EQ(co_fd_set_timeout_ms(sv[0], 30), 0);
    t0 = co_now();
    ASSERT_ERR(co_read(sv[0], &b, 1, -1), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 25, 2000);
    ASSERT_EQ(co_fd_set_timeout_ms(sv[0], -1), 0);
    ASSERT_ERR(co_fd_set_timeout_ms(-1, 10), EBADF);
    co_close(sv[0]);
    co_close(sv[1]);
    FDS_END();
}

static void *blocked_reader(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char b;
    ssize_t r = co_read(fd, &b, 1, -1);
    return (void *)(intptr_t)(r < 0 ? errno : 0);
}

static void test_cancel(void)
{
    FDS_BEGIN();
    int sv[2];
    ASSERT_EQ(co_socketpair(sv), 0);
    co_coro_t *c = co_spawn(blocked_reader, (void *)(intptr_t)sv[0]);
    co_sleep_ms(10);
    ASSERT(!co_finished(c));
    co_kill(c);
    void *res;
    ASSERT_EQ(co_join(c, -1, &res), 0);
    ASSERT_EQ((intptr_t)res, ECANCELED);
    co_close(sv[0]);
    co_close(sv[1]);
    FDS_END();
}

static void test_close_while_waiting(void)
{
    FDS_BEGIN();
    int sv[2];
    ASSERT_EQ(co_socketpair(sv), 0);
    co_coro_t *a = co_spawn(blocked_reader, (void *)(intptr_t)sv[0]);
    co_coro_t *b = co_spawn(blocked_reader, (void *)(intptr_t)sv[0]);
    co_sleep_ms(10);
    int num = sv[0];
    ASSERT_EQ(co_close(sv[0]), 0);
    void *ra, *rb;
    ASSERT_EQ(co_join(a, co_now() + 5000, &ra), 0);
    ASSERT_EQ(co_join(b, co_now() + 5000, &rb), 0);
    ASSERT_EQ((intptr_t)ra, EBADF);
    ASSERT_EQ((intptr_t)rb, EBADF);
    /* The number comes back for a new socket: it must behave as new
     * (registered afresh, no stale waiter or event). */
    int sv2[2];
    ASSERT_EQ(co_socketpair(sv2), 0);
    ASSERT(sv2[0] == num || sv2[1] == num);
    int rd = sv2[0] == num ? sv2[0] : sv2[1], wr = sv2[0] == num ? sv2[1] : sv2[0];
    co_coro_t *c = co_spawn(blocked_reader, (void *)(intptr_t)rd);
    co_sleep_ms(5);
    ASSERT_EQ(co_write(wr, "x", 1, -1), 1);
    void *rc;
    ASSERT_EQ(co_join(c, co_now() + 5000, &rc), 0);
    ASSERT_EQ((intptr_t)rc, 0);
    co_close(sv[1]);
    co_close(sv2[0]);
    co_close(sv2[1]);
    FDS_END();
}

/* A coroutine on another thread's hub waits; this thread closes. */
typedef struct {
    int fd;
    atomic_int state; /* 1: about to wait, 2: returned */
    int err;
} xwait_t;

static void *xthread(void *arg)
{
    xwait_t *x = arg;
    atomic_store(&x->state, 1);
    char b;
    ssize_t r = co_read(x->fd, &b, 1, co_now() + 10000);
    x->err = r < 0 ? errno : 0;
    atomic_store(&x->state, 2);
    return NULL;
}

static void *xthread_main(void *arg)
{
    co_coro_t *c = co_spawn(xthread, arg);
    co_join(c, -1, NULL);
    return NULL;
}

static void test_close_from_other_thread(void)
{
    FDS_BEGIN();
    int sv[2];
    ASSERT_EQ(co_socketpair(sv), 0);
    xwait_t x = {.fd = sv[0]};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, xthread_main, &x), 0);
    while (atomic_load(&x.state) != 1) co_sleep_ms(1);
    co_sleep_ms(20); /* let it park: an early close is EBADF as well */
    int64_t t0 = co_now();
    ASSERT_EQ(co_close(sv[0]), 0);
    pthread_join(t, NULL);
    ASSERT_EQ(x.err, EBADF);
    ASSERT(co_now() - t0 < 5000);
    co_close(sv[1]);
    FDS_END();
}

static void test_eof_and_epipe(void)
{
    FDS_BEGIN();
    int sv[2];
    ASSERT_EQ(co_socketpair(sv), 0);
    co_close(sv[1]);
    char b[8];
    ASSERT_EQ(co_read(sv[0], b, sizeof b, co_now() + 1000), 0);
    /* SIGPIPE's default action would kill us here. */
    ASSERT_ERR(co_write(sv[0], "x", 1, -1), EPIPE);
    ASSERT_ERR(co_send(sv[0], "x", 1, 0, -1), EPIPE);
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    ASSERT_ERR(co_writev(sv[0], &iov, 1, -1), EPIPE);
    co_close(sv[0]);
    ASSERT_ERR(co_read(sv[0], b, 1, -1), EBADF);
    ASSERT_ERR(co_write(-1, b, 1, -1), EBADF);
    ASSERT_ERR(co_close(-1), EBADF);
    FDS_END();
}

/* Data and the hang-up arriving in one poller event: the read that takes
 * the data is short, and the next must still see EOF at once (the short
 * read hint must not wait for an edge that will never come). */
static void *read_to_eof(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char b[64];
    ssize_t n, total = 0;
    while ((n = co_read(fd, b, sizeof b, co_now() + 3000)) > 0) total += n;
    return (void *)(intptr_t)(n == 0 ? total : -errno);
}

static void test_data_then_hangup(void)
{
    FDS_BEGIN();
    for (int round = 0; round < 2; round++) {
        int sv[2];
        ASSERT_EQ(co_socketpair(sv), 0);
        co_coro_t *r = co_spawn(read_to_eof, (void *)(intptr_t)sv[1]);
        co_yield_now(); /* the reader is parked in co_read */
        ASSERT_EQ(co_write(sv[0], "0123456789", 10, -1), 10);
        if (round == 0)
            shutdown(sv[0], SHUT_WR);
        else
            co_close(sv[0]);
        void *res;
        int64_t t0 = co_now();
        ASSERT_EQ(co_join(r, -1, &res), 0);
        ASSERT_EQ((intptr_t)res, 10);
        ASSERT(co_now() - t0 < 1000);
        if (round == 0) co_close(sv[0]);
        co_close(sv[1]);
    }
    FDS_END();
}

static int listen_any(void)
{
    int l = co_tcp_listen("127.0.0.1", 0, NULL);
    ASSERT(l >= 0);
    ASSERT(co_socket_port(l) > 0);
    return l;
}

static void test_refused_and_reset(void)
{
    FDS_BEGIN();
    int l = listen_any();
    int port = co_socket_port(l);
    co_close(l);
    ASSERT_ERR(co_tcp_connect("127.0.0.1", port, co_now() + 2000), ECONNREFUSED);
    ASSERT(strstr(co_net_error(), "connect to 127.0.0.1:") != NULL);
    ASSERT(strstr(co_net_error(), "refused") != NULL);

    l = listen_any();
    port = co_socket_port(l);
    int c = co_tcp_connect("127.0.0.1", port, co_now() + 2000);
    ASSERT(c >= 0);
    int s = co_accept(l, NULL, NULL, co_now() + 2000);
    ASSERT(s >= 0);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    ASSERT_EQ(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    co_close(s); /* RST */
    char b[4];
    ASSERT_ERR(co_read(c, b, sizeof b, co_now() + 2000), ECONNRESET);
    co_close(c);
    co_close(l);
    FDS_END();
}

static void test_accept_connect(void)
{
    FDS_BEGIN();
    int l = listen_any();
    ASSERT_ERR(co_accept(l, NULL, NULL, 0), EAGAIN);
    ASSERT_ERR(co_accept(l, NULL, NULL, co_now() + 20), ETIMEDOUT);
    int c = co_tcp_connect(NULL, co_socket_port(l), co_now() + 2000); /* NULL: loopback */
    ASSERT(c >= 0);
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    int s = co_accept(l, (struct sockaddr *)&peer, &len, co_now() + 2000);
    ASSERT(s >= 0);
    ASSERT_EQ(peer.sin_family, AF_INET);
    ASSERT_EQ(co_send(c, "hello", 5, 0, -1), 5);
    char b[8];
    ASSERT_EQ(co_recv(s, b, sizeof b, 0, co_now() + 2000), 5);
    ASSERT(!memcmp(b, "hello", 5));
    /* connect on a socket of our own, with co_connect */
    int raw = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)co_socket_port(l)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(co_connect(raw, (struct sockaddr *)&a, sizeof a, co_now() + 2000), 0);
    ASSERT(!(fcntl(raw, F_GETFL) & O_NONBLOCK)); /* left as the program made it */
    int s2 = co_accept(l, NULL, NULL, co_now() + 2000);
    ASSERT(s2 >= 0);
    co_close(raw);
    co_close(s2);
    co_close(s);
    co_close(c);
    co_close(l);
    /* bad arguments */
    ASSERT_ERR(co_tcp_listen("127.0.0.1", 70000, NULL), EINVAL);
    ASSERT_ERR(co_tcp_connect("127.0.0.1", -1, -1), EINVAL);
    FDS_END();
}

static void test_vectored_and_msg(void)
{
    FDS_BEGIN();
    int sv[2];
    ASSERT_EQ(co_socketpair(sv), 0);
    struct iovec out[2] = {{.iov_base = "abc", .iov_len = 3}, {.iov_base = "defg", .iov_len = 4}};
    ASSERT_EQ(co_writev(sv[0], out, 2, -1), 7);
    char x[3], y[4];
    struct iovec in[2] = {{.iov_base = x, .iov_len = 3}, {.iov_base = y, .iov_len = 4}};
    ASSERT_EQ(co_readv(sv[1], in, 2, co_now() + 1000), 7);
    ASSERT(!memcmp(x, "abc", 3) && !memcmp(y, "defg", 4));
    struct msghdr m = {.msg_iov = out, .msg_iovlen = 2};
    ASSERT_EQ(co_sendmsg(sv[1], &m, 0, -1), 7);
    struct msghdr mi = {.msg_iov = in, .msg_iovlen = 2};
    ASSERT_EQ(co_recvmsg(sv[0], &mi, 0, co_now() + 1000), 7);
    ASSERT(!memcmp(y, "defg", 4));
    ASSERT_ERR(co_recvmsg(sv[0], &mi, 0, co_now() + 10), ETIMEDOUT);
    co_close(sv[0]);
    co_close(sv[1]);

    /* UDP: sendto / recvfrom */
    int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(bind(u1, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    getsockname(u1, (struct sockaddr *)&a, &al);
    char b[16];
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ASSERT_ERR(co_recvfrom(u1, b, sizeof b, 0, (struct sockaddr *)&from, &fl, co_now() + 10), ETIMEDOUT);
    ASSERT_EQ(co_sendto(u2, "dgram", 5, 0, (struct sockaddr *)&a, sizeof a, -1), 5);
    ASSERT_EQ(co_recvfrom(u1, b, sizeof b, 0, (struct sockaddr *)&from, &fl, co_now() + 1000), 5);
    ASSERT_EQ(from.sin_family, AF_INET);
    co_close(u1);
    co_close(u2);
    FDS_END();
}

/* Partial writes: a 1 MiB write through a socket with a tiny buffer. */
static void *slow_reader(void *arg)
{
    int fd = (int)(intptr_t)arg;
    size_t total = 0;
    unsigned char b[700];
    uint32_t sum = 0;
    ssize_t n;
    while ((n = co_read(fd, b, sizeof b, co_now() + 10000)) > 0) {
        for (ssize_t i = 0; i < n; i++) sum = sum * 31 + b[i];
        total += (size_t)n;
        if (total % 65536 < 700) co_yield_now();
    }
    ASSERT_EQ(n, 0);
    ASSERT_EQ(total, 1 << 20);
    return (void *)(uintptr_t)sum;
}

static void test_partial_writes(void)
{
    FDS_BEGIN();
    int sv[2];
    ASSERT_EQ(co_socketpair(sv), 0);
    int sz = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    unsigned char *buf = malloc(1 << 20);
    uint32_t sum = 0;
    for (size_t i = 0; i < (1u << 20); i++) {
        buf[i] = (unsigned char)(i * 7 + i / 251);
        sum = sum * 31 + buf[i];
    }
    /* a single write does not take it all */
    ssize_t w = co_write(sv[0], buf, 1 << 20, 0);
    ASSERT(w > 0 && w < (1 << 20));
    co_coro_t *r = co_spawn(slow_reader, (void *)(intptr_t)sv[1]);
    size_t written = 0;
    ASSERT_EQ(co_write_all(sv[0], buf + w, (1u << 20) - (size_t)w, &written, co_now() + 10000), 0);
    ASSERT_EQ(written + (size_t)w, 1 << 20);
    shutdown(sv[0], SHUT_WR);
    void *res;
    ASSERT_EQ(co_join(r, -1, &res), 0);
    ASSERT_EQ((uint32_t)(uintptr_t)res, sum);
    /* write_all reports how much went before a deadline */
    written = 12345;
    ASSERT_ERR(co_write_all(sv[1], buf, 1 << 20, &written, co_now() + 30), ETIMEDOUT);
    ASSERT(written > 0 && written < (1u << 20));
    free(buf);
    co_close(sv[0]);
    co_close(sv[1]);
    FDS_END();
}

/* --------------------------------------------------------------- poll */

static void *write_later(void *arg)
{
    int fd = (int)(intptr_t)arg;
    co_sleep_ms(20);
    co_write(fd, "p", 1, -1);
    return NULL;
}

static void test_poll(void)
{
    FDS_BEGIN();
    int a[2], b[2];
    ASSERT_EQ(co_socketpair(a), 0);
    ASSERT_EQ(co_socketpair(b), 0);
    struct pollfd p[3] = {{.fd = a[0], .events = POLLIN}, {.fd = -1}, {.fd = b[0], .events = POLLIN}};
    ASSERT_EQ(co_poll(p, 3, 0), 0);
    int64_t t0 = co_now();
    ASSERT_EQ(co_poll(p, 3, co_now() + 30), 0);
    ASSERT_TIME(co_now() - t0, 25, 2000);
    co_coro_t *c = co_spawn(write_later, (void *)(intptr_t)b[1]);
    ASSERT_EQ(co_poll(p, 3, co_now() + 5000), 1);
    ASSERT_EQ(p[0].revents, 0);
    ASSERT(p[2].revents & POLLIN);
    co_join(c, -1, NULL);
    /* writable at once */
    struct pollfd q = {.fd = a[0], .events = POLLOUT};
    ASSERT_EQ(co_poll(&q, 1, -1), 1);
    ASSERT(q.revents & POLLOUT);
    /* a hang-up is reported */
    co_close(a[1]);
    struct pollfd h = {.fd = a[0], .events = POLLIN};
    ASSERT_EQ(co_poll(&h, 1, co_now() + 1000), 1);
    ASSERT(h.revents & (POLLIN | POLLHUP));
    /* many fds, more than the on-stack nodes */
    int many[12][2];
    struct pollfd mp[12];
    for (int i = 0; i < 12; i++) {
        ASSERT_EQ(co_socketpair(many[i]), 0);
        mp[i] = (struct pollfd){.fd = many[i][0], .events = POLLIN};
    }
    c = co_spawn(write_later, (void *)(intptr_t)many[11][1]);
    ASSERT_EQ(co_poll(mp, 12, co_now() + 5000), 1);
    ASSERT(mp[11].revents & POLLIN);
    co_join(c, -1, NULL);
    for (int i = 0; i < 12; i++) {
        co_close(many[i][0]);
        co_close(many[i][1]);
    }
    co_close(a[0]);
    co_close(b[0]);
    co_close(b[1]);
    FDS_END();
}

static void *poll_forever(void *arg)
{
    struct pollfd p = {.fd = (int)(intptr_t)arg, .events = POLLIN};
    int r = co_poll(&p, 1, -1);
    return (void *)(intptr_t)(r < 0 ? errno : 0);
}

static void test_poll_cancel(void)
{
    FDS_BEGIN();
    int sv[2];
    ASSERT_EQ(co_socketpair(sv), 0);
    co_coro_t *c = co_spawn(poll_forever, (void *)(intptr_t)sv[0]);
    co_sleep_ms(5);
    co_kill(c);
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, ECANCELED);
    co_close(sv[0]);
    co_close(sv[1]);
    FDS_END();
}

/* ----------------------------------------------------- without a hub */

typedef struct {
    int fd;
    atomic_int done;
} rescue_t;

static void *rescue_after(void *arg)
{
    rescue_t *r = arg;
    for (int i = 0; i < 2000 && !atomic_load(&r->done); i++) usleep(1000);
    if (!atomic_load(&r->done)) ASSERT_EQ(write(r->fd, "r", 1), 1);
    return NULL;
}

static void *hubless(void *arg)
{
    int *sv = arg;
    char b[4];
    int64_t t0 = co_now();
    errno = 0;
    ASSERT_EQ(co_read(sv[0], b, 1, co_now() + 30), -1);
    ASSERT_EQ(errno, ETIMEDOUT);
    ASSERT(co_now() - t0 >= 25);
    ASSERT_ERR(co_read(sv[0], b, 1, 0), EAGAIN);
    /* a blocking fd the thread made itself: a deadline still holds */
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    ASSERT_ERR(co_read(p[0], b, 1, co_now() + 20), ETIMEDOUT);
    /* any negative deadline but -1 has passed: not a wait forever (a
     * rescue byte after 2 s makes a regression fail instead of hang) */
    rescue_t rs = {.fd = p[1]};
    pthread_t rt;
    ASSERT_EQ(pthread_create(&rt, NULL, rescue_after, &rs), 0);
    ASSERT_ERR(co_read(p[0], b, 1, -5), ETIMEDOUT);
    atomic_store(&rs.done, 1);
    pthread_join(rt, NULL);
    ASSERT_ERR(co_read(p[0], b, 1, 0), EAGAIN);
    ASSERT(!(fcntl(p[0], F_GETFL) & O_NONBLOCK)); /* left as it was */
    ASSERT_EQ(write(p[1], "z", 1), 1);
    ASSERT_EQ(co_read(p[0], b, 1, -1), 1);
    co_close(p[0]);
    co_close(p[1]);
    ASSERT_EQ(co_write(sv[0], "hi", 2, -1), 2);
    ASSERT_EQ(co_read(sv[0], b, 2, co_now() + 5000), 2);
    ASSERT(!memcmp(b, "ok", 2));
    struct pollfd q = {.fd = sv[0], .events = POLLIN};
    ASSERT_EQ(co_poll(&q, 1, co_now() + 10), 0);
    return NULL;
}

static void *reply_ok(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char b[2];
    ASSERT_EQ(co_read(fd, b, 2, co_now() + 5000), 2);
    ASSERT_EQ(co_write(fd, "ok", 2, -1), 2);
    return NULL;
}

static void test_without_hub(void)
{
    FDS_BEGIN();
    int sv[2];
    ASSERT_EQ(co_socketpair(sv), 0);
    co_coro_t *c = co_spawn(reply_ok, (void *)(intptr_t)sv[1]);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, hubless, sv), 0);
    ASSERT_EQ(co_join(c, -1, NULL), 0);
    pthread_join(t, NULL);
    co_close(sv[0]);
    co_close(sv[1]);
    FDS_END();
}

static void test_regular_file(void)
{
    FDS_BEGIN();
    char path[] = "/tmp/cogent-io-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    unlink(path);
    ASSERT_EQ(co_write(fd, "file data", 9, 0), 9);
    lseek(fd, 0, SEEK_SET);
    char b[16];
    ASSERT_EQ(co_read(fd, b, sizeof b, 0), 9);
    ASSERT_EQ(co_read(fd, b, sizeof b, 0), 0);
    ASSERT_EQ(co_wait_readable(fd, 0), 0);
    co_close(fd);
    FDS_END();
}

static void test_unix(void)
{
    FDS_BEGIN();
    char path[64];
    snprintf(path, sizeof path, "/tmp/cogent-unix-%d", (int)getpid());
    int l = co_unix_listen(path, NULL);
    ASSERT(l >= 0);
    int c = co_unix_connect(path, co_now() + 1000);
    ASSERT(c >= 0);
    int s = co_accept(l, NULL, NULL, co_now() + 1000);
    ASSERT(s >= 0);
    ASSERT_EQ(co_write(c, "unix", 4, -1), 4);
    char b[4];
    ASSERT_EQ(co_read(s, b, 4, co_now() + 1000), 4);
    /* a live listener is not replaced (its probe connection is accepted) */
    ASSERT_ERR(co_unix_listen(path, NULL), EADDRINUSE);
    int probe = co_accept(l, NULL, NULL, co_now() + 1000);
    ASSERT(probe >= 0);
    co_close(probe);
    co_close(s);
    co_close(c);
    co_close(l);
    /* a stale socket file (nobody listening) is replaced */
    l = co_unix_listen(path, NULL);
    ASSERT(l >= 0);
    co_close(l);
    unlink(path);
    ASSERT_ERR(co_unix_connect(path, co_now() + 100), ENOENT);
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    ASSERT_ERR(co_unix_listen(longp, NULL), ENAMETOOLONG);
    ASSERT_ERR(co_unix_connect("", -1), EINVAL);
    FDS_END();
}

/* Many coroutines, many sockets: every byte comes back. */
static void *pair_client(void *arg)
{
    int fd = (int)(intptr_t)arg;
    for (int i = 0; i < 20; i++) {
        uint32_t v = (uint32_t)(fd * 1000 + i), got = 0;
        ASSERT_EQ(co_write_all(fd, &v, sizeof v, NULL, co_now() + 10000), 0);
        size_t n = 0;
        while (n < sizeof got) {
            ssize_t r = co_read(fd, (char *)&got + n, sizeof got - n, co_now() + 10000);
            ASSERT(r > 0);
            n += (size_t)r;
        }
        ASSERT_EQ(got, v);
    }
    shutdown(fd, SHUT_WR);
    return NULL;
}

static void test_many_pairs(void)
{
    FDS_BEGIN();
    enum { N = 300 };
    int sv[N][2];
    co_coro_t *cs[2 * N];
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(co_socketpair(sv[i]), 0);
        cs[2 * i] = co_spawn(echo_once, (void *)(intptr_t)sv[i][1]);
        cs[2 * i + 1] = co_spawn(pair_client, (void *)(intptr_t)sv[i][0]);
    }
    ASSERT_EQ(co_joinall(cs, 2 * N, co_now() + 30000, NULL), 0);
    for (int i = 0; i < N; i++) {
        co_close(sv[i][0]);
        co_close(sv[i][1]);
    }
    FDS_END();
}

/* ------------------------------------------------ MSG_DONTWAIT per call */

static void *recv_dontwait(void *arg)
{
    char b;
    ssize_t r = co_recv((int)(intptr_t)arg, &b, 1, MSG_DONTWAIT, -1);
    return (void *)(intptr_t)(r < 0 ? errno : 0);
}

static void *hubless_dontwait(void *arg)
{
    char b;
    ssize_t r = co_recv((int)(intptr_t)arg, &b, 1, MSG_DONTWAIT, -1);
    return (void *)(intptr_t)(r < 0 ? errno : 0);
}

static void test_msg_dontwait(void)
{
    FDS_BEGIN();
    int sv[2];
    ASSERT_EQ(co_socketpair(sv), 0);
    /* no deadline: EAGAIN at once, not a wait forever (bounded here so
     * that a regression fails instead of hanging) */
    co_coro_t *c = co_spawn(recv_dontwait, (void *)(intptr_t)sv[0]);
    void *res = NULL;
    int r = co_join(c, co_now() + 2000, &res);
    if (r != 0) {
        co_kill(c);
        co_join(c, -1, NULL);
    }
    ASSERT_EQ(r, 0);
    ASSERT_EQ((intptr_t)res, EAGAIN);
    /* with a deadline: EAGAIN at once, not ETIMEDOUT at the deadline */
    char b[64];
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    struct iovec iov = {.iov_base = b, .iov_len = sizeof b};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    int64_t t0 = co_now();
    ASSERT_ERR(co_recv(sv[0], b, sizeof b, MSG_DONTWAIT, co_now() + 1000), EAGAIN);
    ASSERT_ERR(co_recvfrom(sv[0], b, sizeof b, MSG_DONTWAIT, (struct sockaddr *)&from, &fl, co_now() + 1000), EAGAIN);
    ASSERT_ERR(co_recvmsg(sv[0], &m, MSG_DONTWAIT, co_now() + 1000), EAGAIN);
    ASSERT_ERR(co_recvmsg(sv[0], &m, MSG_DONTWAIT, -1), EAGAIN);
    ASSERT(co_now() - t0 < 500);
    /* sends on a full socket */
    static char big[65536];
    while (co_send(sv[0], big, sizeof big, MSG_DONTWAIT, -1) > 0) continue;
    ASSERT_EQ(errno, EAGAIN);
    t0 = co_now();
    ASSERT_ERR(co_send(sv[0], big, sizeof big, MSG_DONTWAIT, co_now() + 1000), EAGAIN);
    ASSERT_ERR(co_sendto(sv[0], big, sizeof big, MSG_DONTWAIT, NULL, 0, -1), EAGAIN);
    struct iovec out = {.iov_base = big, .iov_len = sizeof big};
    struct msghdr mo = {.msg_iov = &out, .msg_iovlen = 1};
    ASSERT_ERR(co_sendmsg(sv[0], &mo, MSG_DONTWAIT, -1), EAGAIN);
    ASSERT(co_now() - t0 < 500);
    /* data still flows with the flag */
    ASSERT(co_recv(sv[1], big, sizeof big, MSG_DONTWAIT, -1) > 0);
    co_close(sv[0]);
    co_close(sv[1]);
    /* a socket the program left blocking, here and on a thread without a
     * hub: the same, and its flags stay as they were */
    int raw[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, raw), 0);
    ASSERT_ERR(co_recv(raw[0], b, 1, MSG_DONTWAIT, -1), EAGAIN);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, hubless_dontwait, (void *)(intptr_t)raw[0]), 0);
    pthread_join(t, &res);
    ASSERT_EQ((intptr_t)res, EAGAIN);
    ASSERT(!(fcntl(raw[0], F_GETFL) & O_NONBLOCK));
    co_close(raw[0]);
    co_close(raw[1]);
    FDS_END();
}

/* ------------------------------------------ EPIPE for every fd type */

static volatile sig_atomic_t sigpipes;
static void count_sigpipe(int sig)
{
    (void)sig;
    sigpipes++;
}

static bool sigpipe_pending(void)
{
    sigset_t p;
    sigemptyset(&p);
    sigpending(&p);
    return sigismember(&p, SIGPIPE) == 1;
}

static bool sigpipe_blocked(void)
{
    sigset_t m;
    sigemptyset(&m);
    pthread_sigmask(SIG_BLOCK, NULL, &m);
    return sigismember(&m, SIGPIPE) == 1;
}

/* Every cogent write on fd, whose reader is gone, fails with EPIPE and
 * raises no SIGPIPE. */
static void expect_epipe(int fd)
{
    char one = 'x';
    struct iovec iov = {.iov_base = &one, .iov_len = 1};
    size_t written = 99;
    ASSERT_ERR(co_write(fd, &one, 1, -1), EPIPE);
    ASSERT_ERR(co_write(fd, &one, 1, co_now() + 1000), EPIPE);
    ASSERT_ERR(co_writev(fd, &iov, 1, -1), EPIPE);
    ASSERT_ERR(co_write_all(fd, &one, 1, &written, -1), EPIPE);
    ASSERT_EQ(written, 0);
    ASSERT_EQ(sigpipes, 0);
    ASSERT(!sigpipe_pending());
    ASSERT(!sigpipe_blocked()); /* the mask is as it was */
}

static void *hubless_epipe(void *arg)
{
    expect_epipe((int)(intptr_t)arg);
    return NULL;
}

static void test_epipe_every_fd_type(void)
{
    FDS_BEGIN();
    /* a handler counts what the default action would have killed us for */
    struct sigaction sa = {.sa_handler = count_sigpipe}, old;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGPIPE, &sa, &old), 0);
    sigpipes = 0;
    /* a pipe the program made (blocking), here and without a hub */
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    close(p[0]);
    expect_epipe(p[1]);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, hubless_epipe, (void *)(intptr_t)p[1]), 0);
    pthread_join(t, NULL);
    co_close(p[1]);
    /* a pipe the program made non-blocking */
    ASSERT_EQ(pipe2(p, O_NONBLOCK), 0);
    close(p[0]);
    expect_epipe(p[1]);
    co_close(p[1]);
    /* a FIFO */
    char path[64];
    snprintf(path, sizeof path, "/tmp/cogent-fifo-%d", (int)getpid());
    ASSERT_EQ(mkfifo(path, 0600), 0);
    int rd = open(path, O_RDONLY | O_NONBLOCK), wr = open(path, O_WRONLY);
    ASSERT(rd >= 0 && wr >= 0);
    unlink(path);
    close(rd);
    expect_epipe(wr);
    co_close(wr);
    /* a socket, as before */
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    expect_epipe(sv[0]);
    ASSERT_ERR(co_send(sv[0], "x", 1, 0, -1), EPIPE);
    ASSERT_EQ(sigpipes, 0);
    co_close(sv[0]);
    /* the program blocks SIGPIPE itself and one is pending already: that
     * one is the program's, and stays pending (and blocked) */
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &only, NULL);
    raise(SIGPIPE);
    ASSERT_EQ(pipe(p), 0);
    close(p[0]);
    ASSERT_ERR(co_write(p[1], "x", 1, -1), EPIPE);
    ASSERT(sigpipe_pending());
    ASSERT(sigpipe_blocked());
    /* ...and one raised by our write while blocked and none pending is
     * taken back */
    ASSERT_EQ(sigwaitinfo(&only, NULL), SIGPIPE);
    ASSERT_ERR(co_write(p[1], "x", 1, -1), EPIPE);
    ASSERT(!sigpipe_pending());
    ASSERT(sigpipe_blocked());
    pthread_sigmask(SIG_UNBLOCK, &only, NULL);
    co_close(p[1]);
    ASSERT_EQ(sigpipes, 0);
    ASSERT_EQ(sigaction(SIGPIPE, &old, NULL), 0);
    FDS_END();
}

/* ------------------------------- descriptors cogent did not make */

/* O_NONBLOCK belongs to the open file, which other processes share (a
 * terminal, a pipeline's pipe): cogent must serve a descriptor it did not
 * make without ever setting it. */
typedef struct {
    int fd;
    size_t n;
} xfer_t;

static void *write_after_sleep(void *arg)
{
    xfer_t *x = arg;
    co_sleep_ms(20);
    static char buf[300000];
    memset(buf, 'w', sizeof buf);
    ASSERT_EQ(co_write_all(x->fd, buf, x->n, NULL, co_now() + 10000), 0);
    return NULL;
}

static void *read_n(void *arg)
{
    xfer_t *x = arg;
    static char buf[4096];
    size_t got = 0;
    while (got < x->n) {
        ssize_t r = co_read(x->fd, buf, sizeof buf, co_now() + 10000);
        ASSERT(r > 0);
        for (ssize_t i = 0; i < r; i++) ASSERT_EQ(buf[i], 'w');
        got += (size_t)r;
    }
    return NULL;
}

static int kernel_flags(int fd)
{
    return fcntl(fd, F_GETFL);
}

/* rd/wr: both ends of something blocking that cogent did not make;
 * `big`: how much to stream through it. */
static void borrowed_pair(int rd, int wr, size_t big)
{
    int frd = kernel_flags(rd), fwr = kernel_flags(wr);
    ASSERT(!(frd & O_NONBLOCK) && !(fwr & O_NONBLOCK));
    /* a read parks its coroutine only: the writer runs meanwhile */
    xfer_t w = {.fd = wr, .n = 5};
    co_coro_t *c = co_spawn(write_after_sleep, &w);
    char b[8];
    ASSERT_EQ(co_read(rd, b, sizeof b, co_now() + 5000), 5);
    ASSERT_EQ(co_join(c, -1, NULL), 0);
    /* the try form and deadlines */
    ASSERT_ERR(co_read(rd, b, 1, 0), EAGAIN);
    int64_t t0 = co_now();
    ASSERT_ERR(co_read(rd, b, 1, co_now() + 30), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 25, 2000);
    /* more than the kernel buffers at once, both sides cooperative */
    xfer_t r = {.fd = rd, .n = big};
    w.n = big;
    co_coro_t *cr = co_spawn(read_n, &r), *cw = co_spawn(write_after_sleep, &w);
    ASSERT_EQ(co_join(cw, co_now() + 20000, NULL), 0);
    ASSERT_EQ(co_join(cr, co_now() + 20000, NULL), 0);
    /* the kernel's flags, which other holders of the open file see, are
     * untouched */
    ASSERT_EQ(kernel_flags(rd), frd);
    ASSERT_EQ(kernel_flags(wr), fwr);
}

static void test_borrowed_fds_keep_flags(void)
{
    FDS_BEGIN();
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    borrowed_pair(p[0], p[1], 300000);
    co_close(p[0]);
    co_close(p[1]);
    /* a FIFO: no RWF_NOWAIT here, poll-then-call */
    char path[64];
    snprintf(path, sizeof path, "/tmp/cogent-fifo2-%d", (int)getpid());
    ASSERT_EQ(mkfifo(path, 0600), 0);
    int rd = open(path, O_RDONLY | O_NONBLOCK), wr = open(path, O_WRONLY);
    ASSERT(rd >= 0 && wr >= 0);
    unlink(path);
    ASSERT_EQ(fcntl(rd, F_SETFL, O_RDONLY), 0);
    borrowed_pair(rd, wr, 300000);
    co_close(rd);
    co_close(wr);
    /* a pseudo-terminal, both ways (raw mode: no line discipline) */
    int master, slave;
    ASSERT_EQ(openpty(&master, &slave, NULL, NULL, NULL), 0);
    struct termios tio;
    ASSERT_EQ(tcgetattr(slave, &tio), 0);
    cfmakeraw(&tio);
    ASSERT_EQ(tcsetattr(slave, TCSANOW, &tio), 0);
    borrowed_pair(slave, master, 100000);
    borrowed_pair(master, slave, 100000);
    co_close(master);
    co_close(slave);
    /* a socket pair the program made */
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    borrowed_pair(sv[0], sv[1], 300000);
    co_close(sv[0]);
    co_close(sv[1]);
    /* a listener the program made: accept waits, then accepts; the
     * listener keeps its flags, the connection is cogent's (non-blocking) */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    ASSERT_EQ(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(l, 8), 0);
    ASSERT_EQ(getsockname(l, (struct sockaddr *)&a, &al), 0);
    ASSERT_ERR(co_accept(l, NULL, NULL, co_now() + 20), ETIMEDOUT);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_EQ(co_connect(c, (struct sockaddr *)&a, sizeof a, co_now() + 2000), 0);
    int s = co_accept(l, NULL, NULL, co_now() + 2000);
    ASSERT(s >= 0);
    ASSERT(!(kernel_flags(l) & O_NONBLOCK));
    ASSERT(!(kernel_flags(c) & O_NONBLOCK));
    ASSERT(kernel_flags(s) & O_NONBLOCK);
    co_close(s);
    co_close(c);
    co_close(l);
    FDS_END();
}

/* ------------------------------------------------- closes that race */
/* Found by test_fuzz: each failed before co_close kept waits from
 * starting between its forget and close(2), co_poll looked again at a
 * descriptor it could not watch, and threads without a hub waited on
 * their own eventfd as well. */

typedef struct racer {
    int fd;
    unsigned spin;
    atomic_int go;
} racer_t;

static void *close_racer(void *arg)
{
    racer_t *r = arg;
    while (!atomic_load(&r->go)) {
    }
    for (volatile unsigned i = 0; i < r->spin; i++) {
    }
    co_close(r->fd);
    return NULL;
}

/* Waits on a descriptor that another thread closes at a varying moment:
 * each wait must end at once (EBADF, or POLLNVAL for co_poll), never sleep
 * until its deadline. */
static void close_race(bool poll, unsigned rounds)
{
    FDS_BEGIN();
    for (unsigned k = 0; k < rounds; k++) {
        int sv[2];
        ASSERT_EQ(co_socketpair(sv), 0);
        racer_t r = {.fd = sv[0], .spin = (k * 2654435761u >> 8) % 3000};
        pthread_t t;
        ASSERT_EQ(pthread_create(&t, NULL, close_racer, &r), 0);
        atomic_store(&r.go, 1);
        int64_t t0 = co_now();
        struct pollfd p = {.fd = sv[0], .events = POLLIN};
        char b;
        long rc = poll ? co_poll(&p, 1, co_now() + 2000) : co_read(sv[0], &b, 1, co_now() + 2000);
        int64_t took = co_now() - t0;
        ASSERT_EQ(pthread_join(t, NULL), 0);
        ASSERT_(took < 1000, "round %u: %s returned %ld after %lld ms: the close was missed", k,
                poll ? "co_poll" : "co_read", rc, (long long)took);
        co_close(sv[1]);
    }
    FDS_END();
}

/* Closed between co_poll's first poll(2) and its wait, the descriptor
 * failed to link (EBADF) and was skipped, and the coroutine parked with
 * nothing that could wake it (about 1 round in 10). */
static void test_poll_close_race(void)
{
    close_race(true, 1000);
}

/* co_close forgot the entry (waking its waiters), then closed: a wait that
 * linked in between was never woken (about 1 round in 10,000). */
static void test_close_race(void)
{
    close_race(false, TEST_SANITIZED ? 5000 : 30000);
}

static void *hubless_read(void *arg)
{
    char b;
    int64_t t0 = co_now();
    ssize_t r = co_read((int)(intptr_t)arg, &b, 1, co_now() + 3000);
    int e = errno;
    return (void *)(intptr_t)(r == -1 && e == EBADF && co_now() - t0 < 1500);
}

/* A thread without a hub waited in poll(2), which another thread's close
 * does not end: it slept until its deadline, or forever. */
static void test_close_wakes_hubless_thread(void)
{
    FDS_BEGIN();
    int sv[2];
    ASSERT_EQ(co_socketpair(sv), 0);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, hubless_read, (void *)(intptr_t)sv[0]), 0);
    co_sleep_ms(50); /* let it wait: an early close gives EBADF at once as well */
    ASSERT_EQ(co_close(sv[0]), 0);
    void *ok;
    ASSERT_EQ(pthread_join(t, &ok), 0);
    ASSERT((intptr_t)ok);
    co_close(sv[1]);
    FDS_END();
}

static void *hubless_wait_closed(void *arg)
{
    int64_t t0 = co_now();
    int r = co_wait_readable((int)(intptr_t)arg, co_now() + 2000);
    int e = errno;
    return (void *)(intptr_t)(r == -1 && e == EBADF && co_now() - t0 < 1000);
}

/* A thread's first wait without a hub makes the eventfd it polls beside
 * the descriptor.  When another thread's close landed between the call's
 * readiness check and that point, the new eventfd took the closed number
 * and the thread waited on itself until its deadline (the fuzz found it:
 * a plain thread stuck with no deadline).  That window cannot be hit from
 * here on purpose; this pins the answer for a number closed before the
 * call: EBADF at once. */
static void test_hubless_wait_on_closed_number(void)
{
    FDS_BEGIN();
    int fd = eventfd(0, EFD_CLOEXEC); /* the lowest free number */
    ASSERT(fd >= 0);
    ASSERT_EQ(co_close(fd), 0);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, hubless_wait_closed, (void *)(intptr_t)fd), 0);
    void *ok;
    ASSERT_EQ(pthread_join(t, &ok), 0);
    ASSERT((intptr_t)ok);
    FDS_END();
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    co_hub_poller(); /* the hub's own fds exist before the first count */
    RUN(test_read_write);
    RUN(test_deadline_and_try);
    RUN(test_cancel);
    RUN(test_close_while_waiting);
    RUN(test_close_from_other_thread);
    RUN(test_eof_and_epipe);
    RUN(test_data_then_hangup);
    RUN(test_refused_and_reset);
    RUN(test_accept_connect);
    RUN(test_vectored_and_msg);
    RUN(test_partial_writes);
    RUN(test_poll);
    RUN(test_poll_cancel);
    RUN(test_without_hub);
    RUN(test_regular_file);
    RUN(test_unix);
    RUN(test_many_pairs);
    RUN(test_msg_dontwait);
    RUN(test_epipe_every_fd_type);
    RUN(test_borrowed_fds_keep_flags);
    RUN(test_poll_close_race);
    RUN(test_close_race);
    RUN(test_close_wakes_hubless_thread);
    RUN(test_hubless_wait_on_closed_number);
    return TEST_MAIN_END();
}
