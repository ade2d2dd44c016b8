/* libcogent-patch.so on unmodified blocking code: a plain blocking echo
 * server and clients become concurrent; sleeps, poll and select park; the
 * caller's view of O_NONBLOCK is kept; threads without a hub still block;
 * COGENT_PATCH=0 turns it off; libcurl's easy interface from 100
 * coroutines runs its fetches at once.  And libc's semantics hold: no
 * shared descriptor's flags change (pipes and a terminal around a patched
 * program), signal handlers interrupt patched calls with EINTR, SIGPIPE
 * is raised as by libc, writes are complete, select updates its
 * timeout. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <stdatomic.h>
#include <termios.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_CURL
#include <curl/curl.h>
#endif

#include "cogent.h"
#include "harness.h"

/* ------------------------------------------- plain blocking networking */
/* Written as any blocking program would be: no cogent call inside. */

static int plain_listen(int *port)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int on = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 128) < 0) abort();
    socklen_t len = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return l;
}

static void *plain_handler(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char b[64];
    ssize_t n = read(fd, b, sizeof b);
    usleep(100 * 1000); /* "slow work" */
    for (ssize_t i = 0; i < n; i++)
        if (b[i] >= 'a' && b[i] <= 'z') b[i] = (char)(b[i] - 32);
    if (n > 0) ASSERT_EQ(write(fd, b, (size_t)n), n);
    close(fd);
    return NULL;
}

typedef struct {
    int l, n;
} acceptor_t;

static void *plain_acceptor(void *arg)
{
    acceptor_t *a = arg;
    for (int i = 0; i < a->n; i++) {
        int c = accept(a->l, NULL, NULL);
        ASSERT(c >= 0);
        co_detach(co_spawn(plain_handler, (void *)(intptr_t)c));
    }
    return NULL;
}

static void *plain_client(void *arg)
{
    int port = (int)(intptr_t)arg;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(connect(s, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(send(s, "hello", 5, 0), 5);
    char b[16];
    size_t got = 0;
    ssize_t n;
    while (got < 5 && (n = recv(s, b + got, sizeof b - got, 0)) > 0) got += (size_t)n;
    ASSERT_EQ(got, 5);
    ASSERT(!memcmp(b, "HELLO", 5));
    close(s);
    return NULL;
}

static void test_blocking_echo_concurrent(void)
{
    enum { N = 50 };
    int port;
    int l = plain_listen(&port);
    acceptor_t a = {.l = l, .n = N};
    int64_t t0 = co_now();
    co_coro_t *srv = co_spawn(plain_acceptor, &a);
    co_coro_t *cs[N];
    for (int i = 0; i < N; i++) cs[i] = co_spawn(plain_client, (void *)(intptr_t)port);
    ASSERT_EQ(co_joinall(cs, N, co_now() + 20000, NULL), 0);
    ASSERT_EQ(co_join(srv, -1, NULL), 0);
    /* 50 handlers each sleeping 100 ms: serially that is 5 s */
    ASSERT_TIME(co_now() - t0, 95, 2500);
    close(l);
}

/* ------------------------------------------------------ O_NONBLOCK view */

static void *write_after(void *arg)
{
    int fd = (int)(intptr_t)arg;
    usleep(30 * 1000);
    ASSERT_EQ(write(fd, "w", 1), 1);
    return NULL;
}

static void test_nonblock_view(void)
{
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    co_coro_t *w = co_spawn(write_after, (void *)(intptr_t)sv[1]);
    char b;
    ASSERT_EQ(read(sv[0], &b, 1), 1); /* parked, not blocked: the writer ran */
    co_join(w, -1, NULL);
    /* neither the kernel's flag nor the caller's view changed */
    ASSERT(!(syscall(SYS_fcntl, sv[0], F_GETFL, 0) & O_NONBLOCK));
    ASSERT(!(fcntl(sv[0], F_GETFL) & O_NONBLOCK));
    /* the caller asks for non-blocking: EAGAIN, as from libc */
    ASSERT_EQ(fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK), 0);
    ASSERT(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    ASSERT_ERR(read(sv[0], &b, 1), EAGAIN);
    ASSERT_ERR(recv(sv[0], &b, 1, 0), EAGAIN);
    /* and back to blocking with ioctl(FIONBIO) */
    int zero = 0;
    ASSERT_EQ(ioctl(sv[0], FIONBIO, &zero), 0);
    ASSERT(!(fcntl(sv[0], F_GETFL) & O_NONBLOCK));
    w = co_spawn(write_after, (void *)(intptr_t)sv[1]);
    ASSERT_EQ(recv(sv[0], &b, 1, 0), 1);
    co_join(w, -1, NULL);
    /* a length known only at run time: _FORTIFY_SOURCE calls __read_chk */
    volatile size_t one = 1;
    w = co_spawn(write_after, (void *)(intptr_t)sv[1]);
    ASSERT_EQ(read(sv[0], &b, one), 1);
    co_join(w, -1, NULL);
    /* MSG_DONTWAIT is honoured */
    ASSERT_ERR(recv(sv[0], &b, 1, MSG_DONTWAIT), EAGAIN);
    /* a dup shares the view */
    int d = dup(sv[0]);
    ASSERT(!(fcntl(d, F_GETFL) & O_NONBLOCK));
    close(d);
    close(sv[0]);
    close(sv[1]);
}

/* ------------------------------------------------ poll, select, sleeps */

static void *sleeper(void *arg)
{
    int kind = (int)(intptr_t)arg;
    struct timespec ts = {0, 100 * 1000000L};
    switch (kind) {
    case 0:
        usleep(100000);
        break;
    case 1:
        nanosleep(&ts, NULL);
        break;
    case 2:
        ASSERT_EQ(poll(NULL, 0, 100), 0);
        break;
    case 3: {
        struct timeval tv = {0, 100000};
        ASSERT_EQ(select(0, NULL, NULL, NULL, &tv), 0);
        break;
    }
    case 4:
        ASSERT_EQ(clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL), 0);
        break;
    case 5: {
        struct timespec t = {0, 100 * 1000000L};
        ASSERT_EQ(ppoll(NULL, 0, &t, NULL), 0);
        break;
    }
    }
    return NULL;
}

static void test_sleeps_overlap(void)
{
    co_coro_t *cs[6];
    int64_t t0 = co_now();
    for (int i = 0; i < 6; i++) cs[i] = co_spawn(sleeper, (void *)(intptr_t)i);
    ASSERT_EQ(co_joinall(cs, 6, -1, NULL), 0);
    ASSERT_TIME(co_now() - t0, 95, 450); /* serially: 600 ms */
}

static void test_poll_select_ready(void)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    co_coro_t *w = co_spawn(write_after, (void *)(intptr_t)p[1]);
    fd_set r;
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    struct timeval tv = {5, 0};
    ASSERT_EQ(select(p[0] + 1, &r, NULL, NULL, &tv), 1);
    ASSERT(FD_ISSET(p[0], &r));
    co_join(w, -1, NULL);
    char b;
    ASSERT_EQ(read(p[0], &b, 1), 1);
    w = co_spawn(write_after, (void *)(intptr_t)p[1]);
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    ASSERT_EQ(poll(&pf, 1, 5000), 1);
    ASSERT(pf.revents & POLLIN);
    co_join(w, -1, NULL);
    ASSERT_EQ(read(p[0], &b, 1), 1);
    close(p[0]);
    close(p[1]);
}

/* ------------------------------------------------- a thread without hub */

static void *hubless_reader(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char b;
    /* cogent made this fd non-blocking; to this thread it still blocks */
    ssize_t r = read(fd, &b, 1);
    return (void *)(intptr_t)(r == 1 ? 0 : errno);
}

static void test_thread_without_hub(void)
{
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    co_coro_t *w = co_spawn(write_after, (void *)(intptr_t)sv[1]);
    char b;
    ASSERT_EQ(read(sv[0], &b, 1), 1);
    co_join(w, -1, NULL);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, hubless_reader, (void *)(intptr_t)sv[0]), 0);
    usleep(30 * 1000); /* parks this coroutine; the thread blocks meanwhile */
    ASSERT_EQ(write(sv[1], "x", 1), 1);
    void *r;
    pthread_join(t, &r);
    ASSERT_EQ((intptr_t)r, 0);
    close(sv[0]);
    close(sv[1]);
}

/* ------------------------------------------------------- COGENT_PATCH=0 */

static void disabled_child(void)
{
    co_coro_t *cs[2];
    int64_t t0 = co_now();
    for (int i = 0; i < 2; i++) cs[i] = co_spawn(sleeper, (void *)(intptr_t)0);
    co_joinall(cs, 2, -1, NULL);
    /* libc's usleep blocked the thread: one after the other */
    ASSERT_TIME(co_now() - t0, 195, 5000);
}

static void test_disabled(void)
{
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        setenv("COGENT_PATCH", "0", 1);
        execl("/proc/self/exe", test_argv_[0], "--disabled-child", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* --------------------------------------- shared descriptors keep flags */

/* The patched program of these cases: this executable, run as
 * `--cat [n]`, with a hub on its main thread, copying stdin to stdout
 * with plain read/write (n bytes, or to end of file). */
static int cat_main(long limit)
{
    co_hub_poller();
    static char buf[65536];
    long done = 0;
    while (limit < 0 || done < limit) {
        size_t want = sizeof buf;
        if (limit >= 0 && (size_t)(limit - done) < want) want = (size_t)(limit - done);
        ssize_t n = read(0, buf, want);
        if (n < 0) return 3;
        if (n == 0) break;
        if (write(1, buf, (size_t)n) != n) return 4;
        done += n;
    }
    return 0;
}

static pid_t spawn_cat(int in, int out, const char *limit)
{
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        dup2(in, 0);
        dup2(out, 1);
        for (int fd = 3; fd < 1024; fd++) close(fd); /* only stdin and stdout hold the files */
        execl("/proc/self/exe", test_argv_[0], "--cat", limit, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int exit_code(pid_t pid)
{
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

typedef struct {
    int fd;
    size_t n;
    unsigned seed;
} stream_t;

static void *stream_out(void *arg)
{
    stream_t *s = arg;
    static char buf[8192];
    for (size_t done = 0; done < s->n;) {
        size_t k = s->n - done < sizeof buf ? s->n - done : sizeof buf;
        for (size_t i = 0; i < k; i++) buf[i] = (char)((done + i) * s->seed >> 3);
        ASSERT_EQ(write(s->fd, buf, k), (ssize_t)k); /* a blocking write is complete */
        done += k;
    }
    return NULL;
}

static void *stream_in(void *arg)
{
    stream_t *s = arg;
    static char buf[8192];
    size_t done = 0;
    while (done < s->n) {
        ssize_t r = read(s->fd, buf, sizeof buf);
        ASSERT(r > 0);
        for (ssize_t i = 0; i < r; i++) ASSERT_EQ(buf[i], (char)((done + (size_t)i) * s->seed >> 3));
        done += (size_t)r;
    }
    return NULL;
}

static int nonblock(int fd)
{
    return fcntl(fd, F_GETFL) & O_NONBLOCK;
}

/* stdin and stdout are pipes whose ends this process keeps too (the
 * same open files, as a shell's pipeline shares them): their flags stay
 * blocking during and after the run; all data goes through. */
static void test_pipes_around_patched_program(void)
{
    FDS_BEGIN();
    int in[2], out[2];
    ASSERT_EQ(pipe(in), 0);
    ASSERT_EQ(pipe(out), 0);
    pid_t pid = spawn_cat(in[0], out[1], "-1");
    stream_t w = {.fd = in[1], .n = 1 << 20, .seed = 7}, r = {.fd = out[0], .n = 1 << 20, .seed = 7};
    co_coro_t *cw = co_spawn(stream_out, &w), *cr = co_spawn(stream_in, &r);
    ASSERT_EQ(co_join(cw, co_now() + 20000, NULL), 0);
    ASSERT_EQ(co_join(cr, co_now() + 20000, NULL), 0);
    /* mid-run: the patched program waits for more input now */
    ASSERT(!nonblock(in[0]));
    ASSERT(!nonblock(out[1]));
    close(in[1]);
    ASSERT_EQ(exit_code(pid), 0);
    ASSERT(!nonblock(in[0]));
    ASSERT(!nonblock(out[1]));
    close(in[0]);
    close(out[0]);
    close(out[1]);
    FDS_END();
}

/* The case of the report: `{ patched; cat; }` reading one pipe.  The
 * patched program takes the first part and exits; cat, which shares the
 * same open file, must then block for the rest, not fail with EAGAIN. */
static void test_shell_pipeline_after_patched_program(void)
{
    FDS_BEGIN();
    int in[2], out[2];
    ASSERT_EQ(pipe(in), 0);
    ASSERT_EQ(pipe(out), 0);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execl("/bin/sh", "sh", "-c", "\"$0\" --cat 5 && cat", test_argv_[0], (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    /* if cat has failed, the writes below say EPIPE instead of ending us */
    sighandler_t prev = signal(SIGPIPE, SIG_IGN);
    ASSERT_EQ(write(in[1], "hello", 5), 5);
    char b[32];
    size_t got = 0;
    while (got < 5) {
        ssize_t n = read(out[0], b + got, sizeof b - got);
        ASSERT(n > 0);
        got += (size_t)n;
    }
    /* The patched program has answered and is on its way out; give cat
     * the moment to find the pipe empty (what failed), then the rest. */
    usleep(200 * 1000);
    ASSERT_EQ(write(in[1], " world", 6), 6);
    close(in[1]);
    ssize_t n;
    while ((n = read(out[0], b + got, sizeof b - 1 - got)) > 0) got += (size_t)n;
    b[got] = '\0';
    ASSERT_STR_EQ(b, "hello world");
    ASSERT_EQ(exit_code(pid), 0);
    signal(SIGPIPE, prev);
    close(out[0]);
    FDS_END();
}

/* stdin and stdout are a terminal (a pseudo-terminal this process holds
 * both sides of): its flags, shared by every process of a session, stay
 * blocking. */
static void test_tty_around_patched_program(void)
{
    FDS_BEGIN();
    int master, slave;
    ASSERT_EQ(openpty(&master, &slave, NULL, NULL, NULL), 0);
    struct termios tio;
    ASSERT_EQ(tcgetattr(slave, &tio), 0);
    cfmakeraw(&tio);
    ASSERT_EQ(tcsetattr(slave, TCSANOW, &tio), 0);
    enum { N = 100000 };
    pid_t pid = spawn_cat(slave, slave, "100000");
    stream_t w = {.fd = master, .n = N, .seed = 13}, r = {.fd = master, .n = N, .seed = 13};
    co_coro_t *cw = co_spawn(stream_out, &w), *cr = co_spawn(stream_in, &r);
    ASSERT_EQ(co_join(cw, co_now() + 20000, NULL), 0);
    ASSERT_EQ(co_join(cr, co_now() + 20000, NULL), 0);
    ASSERT_EQ(exit_code(pid), 0);
    ASSERT(!nonblock(slave));
    ASSERT(!nonblock(master));
    close(master);
    close(slave);
    FDS_END();
}

/* ------------------------------------------------ complete writes */

/* 1000 bytes, 100 at a time with a pause between */
static void *trickle(void *arg)
{
    char b[100];
    for (int k = 0; k < 10; k++) {
        for (int i = 0; i < 100; i++) b[i] = (char)(k * 100 + i);
        co_sleep_ms(5);
        ASSERT_EQ(write((int)(intptr_t)arg, b, sizeof b), (ssize_t)sizeof b);
    }
    return NULL;
}

static void test_blocking_write_is_complete(void)
{
    FDS_BEGIN();
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    stream_t r = {.fd = p[0], .n = 1 << 20, .seed = 3};
    co_coro_t *c = co_spawn(stream_in, &r);
    char *buf = malloc(1 << 20);
    for (size_t i = 0; i < (1u << 20); i++) buf[i] = (char)(i * 3 >> 3);
    /* one call, more than the pipe holds: all of it, as libc's */
    ASSERT_EQ(write(p[1], buf, 1 << 20), 1 << 20);
    ASSERT_EQ(co_join(c, co_now() + 20000, NULL), 0);
    /* the same through a socket the program made blocking, with send */
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    r = (stream_t){.fd = sv[1], .n = 1 << 20, .seed = 3};
    c = co_spawn(stream_in, &r);
    ASSERT_EQ(send(sv[0], buf, 1 << 20, 0), 1 << 20);
    ASSERT_EQ(co_join(c, co_now() + 20000, NULL), 0);
    /* MSG_WAITALL: all of it, however it trickles in */
    static char got[1000];
    c = co_spawn(trickle, (void *)(intptr_t)sv[1]);
    ASSERT_EQ(recv(sv[0], got, sizeof got, MSG_WAITALL), (ssize_t)sizeof got);
    ASSERT_EQ(co_join(c, -1, NULL), 0);
    for (size_t i = 0; i < sizeof got; i++) ASSERT_EQ(got[i], (char)i);
    struct iovec halves[2] = {{got, 500}, {got + 500, 500}};
    struct msghdr m = {.msg_iov = halves, .msg_iovlen = 2};
    c = co_spawn(trickle, (void *)(intptr_t)sv[1]);
    ASSERT_EQ(recvmsg(sv[0], &m, MSG_WAITALL), (ssize_t)sizeof got);
    ASSERT_EQ(co_join(c, -1, NULL), 0);
    for (size_t i = 0; i < sizeof got; i++) ASSERT_EQ(got[i], (char)i);
    free(buf);
    close(sv[0]);
    close(sv[1]);
    close(p[0]);
    close(p[1]);
    FDS_END();
}

/* ------------------------------------------------------------ SIGPIPE */

/* A write whose result is not the point (it fails, or the process dies). */
static void write_anyway(int fd, const char *s)
{
    ssize_t w = write(fd, s, strlen(s));
    (void)w;
}

static void write_closed_pipe(void *arg)
{
    (void)arg;
    co_hub_poller(); /* the child's main thread has a hub: patched calls are cogent's */
    int p[2];
    if (pipe(p) < 0) _exit(2);
    close(p[0]);
    write_anyway(p[1], "x");
    _exit(0); /* libc would not get here */
}

static void send_closed_socket(void *arg)
{
    co_hub_poller();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) _exit(2);
    close(sv[1]);
    if (arg) {
        ssize_t w = send(sv[0], "x", 1, 0);
        (void)w;
    } else {
        write_anyway(sv[0], "x");
    }
    _exit(0);
}

static void epipe_when_ignored(void *arg)
{
    (void)arg;
    co_hub_poller();
    signal(SIGPIPE, SIG_IGN);
    int p[2], sv[2];
    if (pipe(p) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) _exit(2);
    close(p[0]);
    close(sv[1]);
    if (write(p[1], "x", 1) != -1 || errno != EPIPE) _exit(3);
    if (send(sv[0], "x", 1, 0) != -1 || errno != EPIPE) _exit(4);
    _exit(0);
}

static void cogent_own_write(void *arg)
{
    (void)arg;
    co_hub_poller();
    int p[2];
    if (pipe(p) < 0) _exit(2);
    close(p[0]);
    /* cogent's call promises EPIPE, even in a patched program */
    _exit(co_write(p[1], "x", 1, -1) == -1 && errno == EPIPE ? 0 : 5);
}

static void test_sigpipe_as_libc(void)
{
    char buf[256];
    int st = run_child(write_closed_pipe, NULL, buf, sizeof buf);
    ASSERT_(WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE, "write to a closed pipe: status %#x", st);
    st = run_child(send_closed_socket, NULL, buf, sizeof buf);
    ASSERT_(WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE, "write to a closed socket: status %#x", st);
    st = run_child(send_closed_socket, (void *)1, buf, sizeof buf);
    ASSERT_(WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE, "send to a closed socket: status %#x", st);
    st = run_child(epipe_when_ignored, NULL, buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIG_IGN: status %#x", st);
    st = run_child(cogent_own_write, NULL, buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "co_write: status %#x", st);
}

/* ------------------------------------------------------------- select */

static void *write_later_co(void *arg)
{
    co_sleep_ms(100);
    ASSERT_EQ(write((int)(intptr_t)arg, "s", 1), 1);
    return NULL;
}

static void check_select_timeout(bool hub)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    /* a timeout: nothing left */
    struct timeval tv = {0, 50000};
    ASSERT_EQ(select(0, NULL, NULL, NULL, &tv), 0);
    ASSERT_EQ(tv.tv_sec, 0);
    ASSERT_EQ(tv.tv_usec, 0);
    /* ready after ~100 ms of 5 s: the rest is left */
    fd_set r;
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    tv = (struct timeval){5, 0};
    co_coro_t *c = hub ? co_spawn(write_later_co, (void *)(intptr_t)p[1]) : NULL;
    if (!c) ASSERT_EQ(write(p[1], "s", 1), 1);
    ASSERT_EQ(select(p[0] + 1, &r, NULL, NULL, &tv), 1);
    if (c) ASSERT_EQ(co_join(c, -1, NULL), 0);
    int64_t left = tv.tv_sec * 1000 + tv.tv_usec / 1000;
    ASSERT_(left > 2500 && left <= 5000, "select left %lld ms of 5000", (long long)left);
    if (c) ASSERT_(left < 4960, "select left %lld ms of 5000 after ~100 ms", (long long)left);
    close(p[0]);
    close(p[1]);
}

static void *select_hubless(void *arg)
{
    (void)arg;
    check_select_timeout(false); /* libc's own select, for comparison */
    return NULL;
}

static void test_select_updates_timeout(void)
{
    check_select_timeout(true);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, select_hubless, NULL), 0);
    pthread_join(t, NULL);
}

/* ------------------------------------------------------------ signals */

static atomic_int handled;
static atomic_int handled_info;
static void on_usr1(int sig)
{
    (void)sig;
    atomic_fetch_add(&handled, 1);
}
static void on_usr1_info(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (sig == SIGUSR1 && si && si->si_signo == SIGUSR1) atomic_fetch_add(&handled_info, 1);
    atomic_fetch_add(&handled, 1);
}

static void install_usr1(int flags)
{
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = flags};
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
}

static void restore_usr1(void)
{
    struct sigaction sa = {.sa_handler = SIG_DFL};
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
}

enum {
    V_SLEEP,
    V_USLEEP,
    V_NANOSLEEP,
    V_CLOCK_NANOSLEEP,
    V_POLL,
    V_POLL_FOREVER,
    V_PPOLL,
    V_SELECT,
    V_READ,
    V_ACCEPT,
    V_WRITE_BIG
};

typedef struct victim {
    int kind, fd;
    atomic_int started, done;
    long r;
    int err;
    unsigned left;
    struct timespec rem;
} victim_t;

static void *victim(void *arg)
{
    victim_t *v = arg;
    char b[8];
    struct timespec three = {3, 0};
    struct pollfd pf = {.fd = v->fd, .events = POLLIN};
    fd_set rs;
    struct timeval tv = {3, 0};
    atomic_store(&v->started, 1);
    errno = 0;
    switch (v->kind) {
    case V_SLEEP:
        v->left = sleep(3);
        v->r = 0;
        break;
    case V_USLEEP:
        v->r = usleep(3000000);
        break;
    case V_NANOSLEEP:
        v->r = nanosleep(&three, &v->rem);
        break;
    case V_CLOCK_NANOSLEEP:
        v->r = clock_nanosleep(CLOCK_MONOTONIC, 0, &three, &v->rem);
        break;
    case V_POLL:
        v->r = poll(&pf, 1, 3000);
        break;
    case V_POLL_FOREVER:
        v->r = poll(NULL, 0, -1);
        break;
    case V_PPOLL:
        v->r = ppoll(&pf, 1, &three, NULL);
        break;
    case V_SELECT:
        FD_ZERO(&rs);
        FD_SET(v->fd, &rs);
        v->r = select(v->fd + 1, &rs, NULL, NULL, &tv);
        break;
    case V_READ:
        v->r = read(v->fd, b, sizeof b);
        break;
    case V_ACCEPT:
        v->r = accept(v->fd, NULL, NULL);
        if (v->r >= 0) close((int)v->r);
        break;
    case V_WRITE_BIG: {
        char *big = calloc(1, 1 << 20);
        v->r = write(v->fd, big, 1 << 20);
        v->err = errno;
        free(big);
        errno = v->err;
        break;
    }
    }
    v->err = errno;
    atomic_store(&v->done, 1);
    return NULL;
}

/* Signals `target` once v has begun its call (and, after `rescue_ms`,
 * writes a byte to `rescue_fd` so that a call the signal failed to
 * interrupt ends anyway and the case fails instead of hanging). */
typedef struct killer {
    pthread_t target;
    victim_t *v;
    int sig;
    int rescue_fd;
    int rescue_ms;
} killer_t;

static void *killer(void *arg)
{
    killer_t *k = arg;
    while (!atomic_load(&k->v->started)) usleep(1000);
    usleep(50 * 1000); /* it parks within microseconds of starting */
    pthread_kill(k->target, k->sig);
    for (int ms = 0; ms < k->rescue_ms && !atomic_load(&k->v->done); ms++) usleep(1000);
    if (k->rescue_fd >= 0 && !atomic_load(&k->v->done)) write_anyway(k->rescue_fd, "r");
    return NULL;
}

/* Runs a victim coroutine of this thread's hub, signals this thread
 * while it waits, and returns when it has returned (or, if it does not
 * within 2.5 s, kills it: the case then fails on its errno). */
static int64_t interrupt(victim_t *v, int rescue_fd, int rescue_ms)
{
    killer_t k = {.target = pthread_self(), .v = v, .sig = SIGUSR1, .rescue_fd = rescue_fd, .rescue_ms = rescue_ms};
    int64_t t0 = co_now();
    co_coro_t *c = co_spawn(victim, v);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, killer, &k), 0);
    if (co_join(c, co_now() + 2500, NULL) != 0) {
        co_kill(c);
        co_join(c, -1, NULL);
    }
    pthread_join(t, NULL);
    return co_now() - t0;
}

static void test_signal_interrupts_patched_calls(void)
{
    FDS_BEGIN();
    install_usr1(0); /* no SA_RESTART */
    atomic_store(&handled, 0);
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    int kinds[] = {V_SLEEP, V_USLEEP, V_NANOSLEEP, V_CLOCK_NANOSLEEP, V_POLL, V_POLL_FOREVER,
                   V_PPOLL, V_SELECT, V_READ};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        victim_t v = {.kind = kinds[i], .fd = p[0]};
        int64_t took = interrupt(&v, p[1], 1000);
        ASSERT_(took < 1500, "kind %d took %lld ms", v.kind, (long long)took);
        if (v.kind == V_SLEEP) {
            ASSERT_EQ(v.left, 2); /* the whole seconds not slept, as glibc's */
        } else if (v.kind == V_CLOCK_NANOSLEEP) {
            ASSERT_EQ(v.r, EINTR); /* returned, not in errno */
            ASSERT_EQ(v.rem.tv_sec, 2);
        } else {
            ASSERT_(v.r == -1 && v.err == EINTR, "kind %d: %ld, errno %d", v.kind, v.r, v.err);
            if (v.kind == V_NANOSLEEP) ASSERT_EQ(v.rem.tv_sec, 2);
        }
    }
    ASSERT_EQ(atomic_load(&handled), (int)(sizeof kinds / sizeof *kinds));
    /* accept, on a listener the program made blocking */
    int port;
    int l = plain_listen(&port);
    victim_t v = {.kind = V_ACCEPT, .fd = l};
    interrupt(&v, -1, 0);
    ASSERT_(v.r == -1 && v.err == EINTR, "accept: %ld, errno %d", v.r, v.err);
    close(l);
    /* a write interrupted after some progress returns the count so far;
     * one that made none, EINTR */
    int q[2];
    ASSERT_EQ(pipe(q), 0);
    int cap = fcntl(q[1], F_GETPIPE_SZ);
    v = (victim_t){.kind = V_WRITE_BIG, .fd = q[1]};
    interrupt(&v, -1, 0);
    ASSERT_(v.r == cap, "write of 1 MiB into a pipe of %d: %ld, errno %d", cap, v.r, v.err);
    v = (victim_t){.kind = V_WRITE_BIG, .fd = q[1]};
    interrupt(&v, -1, 0);
    ASSERT_(v.r == -1 && v.err == EINTR, "write into a full pipe: %ld, errno %d", v.r, v.err);
    close(q[0]);
    close(q[1]);
    close(p[0]);
    close(p[1]);
    restore_usr1();
    FDS_END();
}

/* libc's sleep on a thread without a hub, for comparison. */
static void *libc_sleep(void *arg)
{
    victim_t *v = arg;
    atomic_store(&v->started, 1);
    v->left = sleep(3);
    v->err = errno;
    return NULL;
}

/* siginterrupt is deprecated, and still used by programs (the patch
 * library redoes it). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static int set_interrupt(int sig, int flag)
{
    return siginterrupt(sig, flag);
}
#pragma GCC diagnostic pop

static void test_signal_restart_semantics(void)
{
    FDS_BEGIN();
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    /* SA_RESTART: a read is restarted (it goes on waiting, the data ends
     * it), while poll and sleeps are interrupted anyway, as in Linux */
    install_usr1(SA_RESTART);
    atomic_store(&handled, 0);
    victim_t v = {.kind = V_READ, .fd = p[0]};
    interrupt(&v, p[1], 200);
    ASSERT_(v.r == 1, "read under SA_RESTART: %ld, errno %d", v.r, v.err);
    ASSERT_EQ(atomic_load(&handled), 1);
    v = (victim_t){.kind = V_POLL, .fd = p[0]};
    interrupt(&v, p[1], 1000);
    ASSERT_(v.r == -1 && v.err == EINTR, "poll under SA_RESTART: %ld, errno %d", v.r, v.err);
    v = (victim_t){.kind = V_SLEEP};
    ASSERT(interrupt(&v, -1, 0) < 1500);
    ASSERT_EQ(v.left, 2);
    /* the same sleep in libc, on a thread without a hub */
    victim_t lv = {.kind = V_SLEEP};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, libc_sleep, &lv), 0);
    while (!atomic_load(&lv.started)) usleep(1000);
    usleep(50 * 1000);
    pthread_kill(t, SIGUSR1);
    pthread_join(t, NULL);
    ASSERT_EQ(lv.left, v.left);
    /* sigaction reports the program's own handler and flags */
    struct sigaction cur;
    ASSERT_EQ(sigaction(SIGUSR1, NULL, &cur), 0);
    ASSERT_PTR_EQ((void *)cur.sa_handler, (void *)on_usr1);
    ASSERT(cur.sa_flags & SA_RESTART);
    ASSERT(!(cur.sa_flags & SA_SIGINFO));
    /* signal() restarts (BSD semantics) ... */
    ASSERT_PTR_EQ((void *)signal(SIGUSR1, on_usr1), (void *)on_usr1);
    v = (victim_t){.kind = V_READ, .fd = p[0]};
    interrupt(&v, p[1], 200);
    ASSERT_EQ(v.r, 1);
    /* ... unless siginterrupt says otherwise */
    ASSERT_EQ(set_interrupt(SIGUSR1, 1), 0);
    ASSERT_EQ(sigaction(SIGUSR1, NULL, &cur), 0);
    ASSERT_PTR_EQ((void *)cur.sa_handler, (void *)on_usr1);
    ASSERT(!(cur.sa_flags & SA_RESTART));
    v = (victim_t){.kind = V_READ, .fd = p[0]};
    interrupt(&v, p[1], 1000);
    ASSERT_(v.r == -1 && v.err == EINTR, "read after siginterrupt: %ld, errno %d", v.r, v.err);
    ASSERT_EQ(set_interrupt(SIGUSR1, 0), 0);
    /* an SA_SIGINFO handler gets its siginfo */
    struct sigaction sa = {.sa_sigaction = on_usr1_info, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    atomic_store(&handled_info, 0);
    v = (victim_t){.kind = V_READ, .fd = p[0]};
    interrupt(&v, p[1], 1000);
    ASSERT_(v.r == -1 && v.err == EINTR, "read, SA_SIGINFO: %ld, errno %d", v.r, v.err);
    ASSERT_EQ(atomic_load(&handled_info), 1);
    ASSERT_EQ(sigaction(SIGUSR1, NULL, &cur), 0);
    ASSERT_PTR_EQ((void *)cur.sa_sigaction, (void *)on_usr1_info);
    ASSERT(cur.sa_flags & SA_SIGINFO);
    restore_usr1();
    ASSERT_EQ(sigaction(SIGUSR1, NULL, &cur), 0);
    ASSERT_PTR_EQ((void *)cur.sa_handler, (void *)SIG_DFL);
    close(p[0]);
    close(p[1]);
    FDS_END();
}

/* Several coroutines: every patched call parked when the handler runs
 * ends with EINTR; cogent's own calls do not; a handler that runs while
 * another coroutine is running (the hub is not in its poller) still
 * reaches the parked ones; a call that starts after the handler ran is
 * not interrupted by it. */
static void *own_read(void *arg)
{
    char b;
    ssize_t r = co_read((int)(intptr_t)arg, &b, 1, co_now() + 5000);
    return (void *)(intptr_t)(r == 1 ? 0 : -1);
}

static void *spin_until_handled(void *arg)
{
    victim_t *v = arg;
    atomic_store(&v->started, 1);
    int before = (int)v->r;
    while (atomic_load(&handled) == before) continue; /* the hub runs us, not its poller */
    return NULL;
}

static void *signal_later(void *arg)
{
    killer_t *k = arg;
    while (!atomic_load(&k->v->started)) usleep(1000);
    usleep(50 * 1000);
    pthread_kill(k->target, k->sig);
    return NULL;
}

static void test_signal_and_coroutines(void)
{
    FDS_BEGIN();
    install_usr1(0);
    atomic_store(&handled, 0);
    int a[2], b[2], c[2];
    ASSERT_EQ(pipe(a), 0);
    ASSERT_EQ(pipe(b), 0);
    ASSERT_EQ(pipe(c), 0);
    victim_t va = {.kind = V_READ, .fd = a[0]}, vb = {.kind = V_READ, .fd = b[0]};
    co_coro_t *ca = co_spawn(victim, &va), *cb = co_spawn(victim, &vb);
    co_coro_t *own = co_spawn(own_read, (void *)(intptr_t)c[0]);
    co_yield_now(); /* all three are parked */
    ASSERT(atomic_load(&va.started) && atomic_load(&vb.started));
    victim_t dummy = {.started = 1};
    killer_t k = {.target = pthread_self(), .v = &dummy, .sig = SIGUSR1, .rescue_fd = -1};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, signal_later, &k), 0);
    int ra = co_join(ca, co_now() + 2500, NULL), rb = co_join(cb, co_now() + 2500, NULL);
    pthread_join(t, NULL);
    if (ra) write_anyway(a[1], "r"), co_join(ca, -1, NULL);
    if (rb) write_anyway(b[1], "r"), co_join(cb, -1, NULL);
    ASSERT_(va.r == -1 && va.err == EINTR, "first: %ld, errno %d", va.r, va.err);
    ASSERT_(vb.r == -1 && vb.err == EINTR, "second: %ld, errno %d", vb.r, vb.err);
    ASSERT(!co_finished(own)); /* cogent's own co_read is still waiting */
    ASSERT_EQ(write(c[1], "x", 1), 1);
    void *res;
    ASSERT_EQ(co_join(own, -1, &res), 0);
    ASSERT_EQ((intptr_t)res, 0);

    /* the handler runs while a coroutine computes */
    va = (victim_t){.kind = V_READ, .fd = a[0]};
    ca = co_spawn(victim, &va);
    victim_t spin = {.r = atomic_load(&handled)};
    co_coro_t *cs = co_spawn(spin_until_handled, &spin);
    k = (killer_t){.target = pthread_self(), .v = &spin, .sig = SIGUSR1, .rescue_fd = -1};
    ASSERT_EQ(pthread_create(&t, NULL, signal_later, &k), 0);
    ASSERT_EQ(co_join(cs, -1, NULL), 0);
    pthread_join(t, NULL);
    if (co_join(ca, co_now() + 2500, NULL)) write_anyway(a[1], "r"), co_join(ca, -1, NULL);
    ASSERT_(va.r == -1 && va.err == EINTR, "parked while another ran: %ld, errno %d", va.r, va.err);

    /* a call that begins after the handler ran is not interrupted */
    int n = atomic_load(&handled);
    raise(SIGUSR1);
    ASSERT_EQ(atomic_load(&handled), n + 1);
    co_coro_t *w = co_spawn(write_after, (void *)(intptr_t)a[1]);
    char x;
    ASSERT_EQ(read(a[0], &x, 1), 1);
    ASSERT_EQ(co_join(w, -1, NULL), 0);
    restore_usr1();
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    close(c[0]);
    close(c[1]);
    FDS_END();
}

/* -------------------------------------------------------------- libcurl */
#ifdef HAVE_CURL
/* A local HTTP server on its own thread that answers after 200 ms. */
static int slow_http(int fd, void *arg)
{
    (void)arg;
    char req[2048];
    size_t n = 0;
    while (n < sizeof req - 1) {
        ssize_t r = co_read(fd, req + n, sizeof req - 1 - n, co_now() + 10000);
        if (r <= 0) return r < 0 ? errno : 0;
        n += (size_t)r;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n")) break;
    }
    co_sleep_ms(200);
    const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    return co_write_all(fd, resp, strlen(resp), NULL, -1) < 0 ? errno : 0;
}

typedef struct {
    co_server_t *s;
    co_event_t ready, stop;
    int port;
} http_t;

static void *http_thread(void *arg)
{
    http_t *h = arg;
    co_server_opts_t o = {.host = "127.0.0.1"};
    h->s = co_server_new(slow_http, NULL, &o);
    ASSERT(h->s != NULL);
    h->port = co_server_port(h->s);
    co_server_start(h->s);
    co_event_set(&h->ready);
    co_event_wait(&h->stop, -1);
    co_server_stop(h->s, co_now() + 2000);
    co_server_free(h->s);
    return NULL;
}

typedef struct {
    char body[16];
    size_t n;
    int port;
    CURLcode rc;
} fetch_t;

static size_t collect(char *p, size_t sz, size_t nm, void *ud)
{
    fetch_t *f = ud;
    size_t n = sz * nm;
    if (f->n + n < sizeof f->body) memcpy(f->body + f->n, p, n), f->n += n;
    return n;
}

static void *fetch(void *arg)
{
    fetch_t *f = arg;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", f->port);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    f->rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    return NULL;
}

static void test_libcurl(void)
{
    enum { N = 100 };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    static http_t h;
    co_event_init(&h.ready);
    co_event_init(&h.stop);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, http_thread, &h), 0);
    co_event_wait(&h.ready, -1);
    static fetch_t f[N];
    co_coro_t *cs[N];
    int64_t t0 = co_now();
    for (int i = 0; i < N; i++) {
        f[i] = (fetch_t){.port = h.port};
        cs[i] = co_spawn(fetch, &f[i]);
    }
    ASSERT_EQ(co_joinall(cs, N, co_now() + 60000, NULL), 0);
    int64_t took = co_now() - t0;
    for (int i = 0; i < N; i++) {
        ASSERT_(f[i].rc == CURLE_OK, "fetch %d: %s", i, curl_easy_strerror(f[i].rc));
        ASSERT_EQ(f[i].n, 5);
        ASSERT(!memcmp(f[i].body, "hello", 5));
    }
    fprintf(stderr, "    100 libcurl fetches of a 200 ms page: %lld ms\n", (long long)took);
    ASSERT_TIME(took, 195, 3000); /* one after the other: 20 s */
    co_event_set(&h.stop);
    pthread_join(t, NULL);
    curl_global_cleanup();
}
#endif

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--disabled-child")) {
        disabled_child();
        return 0;
    }
    if (argc > 2 && !strcmp(argv[1], "--cat")) return cat_main(atol(argv[2]));
    TEST_MAIN_BEGIN(argc, argv);
    co_hub_poller();
    RUN(test_blocking_echo_concurrent);
    RUN(test_nonblock_view);
    RUN(test_sleeps_overlap);
    RUN(test_poll_select_ready);
    RUN(test_thread_without_hub);
    RUN(test_disabled);
    RUN(test_pipes_around_patched_program);
    RUN(test_shell_pipeline_after_patched_program);
    RUN(test_tty_around_patched_program);
    RUN(test_blocking_write_is_complete);
    RUN(test_sigpipe_as_libc);
    RUN(test_select_updates_timeout);
    RUN(test_signal_interrupts_patched_calls);
    RUN(test_signal_restart_semantics);
    RUN(test_signal_and_coroutines);
#ifdef HAVE_CURL
    RUN(test_libcurl);
#endif
    return TEST_MAIN_END();
}
