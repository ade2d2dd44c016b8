/* The stream server (5,000 concurrent connections, connection limit, idle
 * timeout, graceful stop with handlers in flight, counters) and name
 * resolution off the hub (localhost, failures, deadlines). */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cogent.h"
#include "harness.h"
#include "internal.h"

static int echo_handler(int fd, void *arg)
{
    (void)arg;
    char buf[512];
    ssize_t n;
    while ((n = co_recv(fd, buf, sizeof buf, 0, -1)) > 0)
        if (co_write_all(fd, buf, (size_t)n, NULL, -1) < 0) return errno;
    return n < 0 ? errno : 0;
}

typedef struct {
    int port;
    int id;
} client_t;

/* At most this many handshakes at once: beyond the kernel's SYN backlog
 * (net.ipv4.tcp_max_syn_backlog, 2048 here) it answers with SYN cookies,
 * and a cookie connection that finds the accept queue full is dropped
 * without a trace: the client's first data then gets a reset.  That is the
 * kernel under a SYN flood, not the server; the clients pace themselves. */
static co_sem_t handshakes = CO_SEM_INIT(1000);

static void *echo_client(void *arg)
{
    client_t *c = arg;
    ASSERT_EQ(co_sem_acquire(&handshakes, co_now() + 20000), 0);
    int fd = co_tcp_connect("127.0.0.1", c->port, co_now() + 20000);
    co_sem_release(&handshakes);
    ASSERT_(fd >= 0, "connect: %s", co_net_error());
    char out[32], in[32];
    int len = snprintf(out, sizeof out, "client %d", c->id);
    ASSERT_EQ(co_write_all(fd, out, (size_t)len, NULL, co_now() + 20000), 0);
    int got = 0;
    while (got < len) {
        ssize_t r = co_read(fd, in + got, sizeof in - (size_t)got, co_now() + 20000);
        ASSERT_(r > 0, "client %d: read %zd after %d of %d bytes (%s)", c->id, r, got, len,
                r < 0 ? strerror(errno) : "EOF");
        got += (int)r;
    }
    ASSERT(!memcmp(in, out, (size_t)len));
    co_close(fd);
    return NULL;
}

static void test_server_5000(void)
{
    enum { N = 5000 };
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2 * N + 100) {
        rl.rlim_cur = rl.rlim_max < 2 * N + 100 ? rl.rlim_max : 2 * N + 100;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < 2 * N + 100) {
        fprintf(stderr, "    (skipped: open-file limit %llu)\n", (unsigned long long)rl.rlim_cur);
        return;
    }
    FDS_BEGIN();
    co_server_opts_t o = {.host = "127.0.0.1", .port = 0, .backlog = 1024};
    co_server_t *s = co_server_new(echo_handler, NULL, &o);
    ASSERT(s != NULL);
    ASSERT(co_server_port(s) > 0);
    ASSERT_EQ(co_server_start(s), 0);
    ASSERT_ERR(co_server_start(s), EINVAL);
    static client_t cl[N];
    static co_coro_t *cs[N];
    co_spawn_opts_t so = {.stack_size = 16384};
    for (int i = 0; i < N; i++) {
        cl[i] = (client_t){.port = co_server_port(s), .id = i};
        cs[i] = co_spawn_with(echo_client, &cl[i], &so);
        ASSERT(cs[i] != NULL);
    }
    ASSERT_EQ(co_joinall(cs, N, co_now() + 60000, NULL), 0);
    co_server_stats_t st;
    /* handlers see EOF after their client closed: let them finish */
    for (int i = 0; i < 1000; i++) {
        co_server_stats(s, &st);
        if (st.closed == N) break;
        co_sleep_ms(5);
    }
    ASSERT_EQ(st.accepted, N);
    ASSERT_EQ(st.closed, N);
    ASSERT_EQ(st.active, 0);
    ASSERT_EQ(st.errors, 0);
    ASSERT_EQ(co_server_stop(s, co_now() + 1000), 0);
    co_server_free(s);
    FDS_END();
}

/* ---------------------------------------------------- connection limit */

static atomic_int in_handler, max_seen;

static int counting_handler(int fd, void *arg)
{
    (void)arg;
    int now = atomic_fetch_add(&in_handler, 1) + 1;
    if (now > atomic_load(&max_seen)) atomic_store(&max_seen, now);
    co_sleep_ms(20);
    atomic_fetch_sub(&in_handler, 1);
    return echo_handler(fd, NULL);
}

static void test_max_conns(void)
{
    FDS_BEGIN();
    co_server_opts_t o = {.host = "127.0.0.1", .max_conns = 2};
    co_server_t *s = co_server_new(counting_handler, NULL, &o);
    ASSERT(s != NULL);
    ASSERT_EQ(co_server_start(s), 0);
    enum { N = 8 };
    client_t cl[N];
    co_coro_t *cs[N];
    for (int i = 0; i < N; i++) {
        cl[i] = (client_t){.port = co_server_port(s), .id = i};
        cs[i] = co_spawn(echo_client, &cl[i]);
    }
    ASSERT_EQ(co_joinall(cs, N, co_now() + 20000, NULL), 0);
    ASSERT_EQ(atomic_load(&max_seen), 2);
    ASSERT_EQ(co_server_stop(s, co_now() + 1000), 0);
    co_server_stats_t st;
    co_server_stats(s, &st);
    ASSERT_EQ(st.accepted, N);
    ASSERT_EQ(st.closed, N);
    co_server_free(s);
    FDS_END();
}

/* -------------------------------------------------------- idle timeout */

static int idle_handler(int fd, void *arg)
{
    int *result = arg;
    char b[8];
    ssize_t r = co_read(fd, b, sizeof b, -1); /* the server's idle timeout applies */
    *result = r < 0 ? errno : 0;
    return r < 0 ? errno : 0;
}

static void test_idle_timeout(void)
{
    FDS_BEGIN();
    int result = -1;
    co_server_opts_t o = {.host = "127.0.0.1", .idle_timeout_ms = 40};
    co_server_t *s = co_server_new(idle_handler, &result, &o);
    ASSERT_EQ(co_server_start(s), 0);
    int fd = co_tcp_connect("127.0.0.1", co_server_port(s), co_now() + 2000);
    ASSERT(fd >= 0);
    int64_t t0 = co_now();
    char b[4];
    ASSERT_EQ(co_read(fd, b, sizeof b, co_now() + 5000), 0); /* the server hung up */
    ASSERT_TIME(co_now() - t0, 30, 4000);
    ASSERT_EQ(result, ETIMEDOUT);
    co_server_stats_t st;
    co_server_stats(s, &st);
    ASSERT_EQ(st.errors, 1);
    co_close(fd);
    co_server_free(s);
    FDS_END();
}

/* ------------------------------------------------------ graceful stop */

static int slow_handler(int fd, void *arg)
{
    int64_t ms = *(int64_t *)arg;
    char b[8];
    if (co_read(fd, b, 1, -1) != 1) return errno;
    if (co_sleep_ms(ms) < 0) return errno; /* killed at the stop deadline */
    return co_write(fd, "done", 4, -1) == 4 ? 0 : errno;
}

static void *stop_client(void *arg)
{
    client_t *c = arg;
    int fd = co_tcp_connect("127.0.0.1", c->port, co_now() + 5000);
    ASSERT(fd >= 0);
    ASSERT_EQ(co_write(fd, "g", 1, -1), 1);
    char b[8];
    ssize_t r = co_read(fd, b, sizeof b, co_now() + 10000);
    co_close(fd);
    return (void *)(intptr_t)r; /* 4: served; 0: the server gave up on it */
}

static void graceful(int64_t handler_ms, int64_t stop_ms, int expect_killed, intptr_t expect_read)
{
    FDS_BEGIN();
    co_server_opts_t o = {.host = "127.0.0.1"};
    co_server_t *s = co_server_new(slow_handler, &handler_ms, &o);
    ASSERT_EQ(co_server_start(s), 0);
    enum { N = 10 };
    client_t cl[N];
    co_coro_t *cs[N];
    for (int i = 0; i < N; i++) {
        cl[i] = (client_t){.port = co_server_port(s), .id = i};
        cs[i] = co_spawn(stop_client, &cl[i]);
    }
    co_server_stats_t st;
    do { /* every handler in flight */
        co_sleep_ms(2);
        co_server_stats(s, &st);
    } while (st.accepted < N);
    int port = co_server_port(s);
    int64_t t0 = co_now();
    ASSERT_EQ(co_server_stop(s, co_now() + stop_ms), expect_killed);
    int64_t took = co_now() - t0;
    if (expect_killed) ASSERT_TIME(took, (int)stop_ms - 10, (int)stop_ms + 3000);
    /* no longer accepting */
    ASSERT_ERR(co_tcp_connect("127.0.0.1", port, co_now() + 2000), ECONNREFUSED);
    void *res[N];
    ASSERT_EQ(co_joinall(cs, N, co_now() + 10000, res), 0);
    for (int i = 0; i < N; i++) ASSERT_EQ((intptr_t)res[i], expect_read);
    co_server_stats(s, &st);
    ASSERT_EQ(st.accepted, N);
    ASSERT_EQ(st.closed, N);
    ASSERT_EQ(st.active, 0);
    ASSERT_EQ(st.errors, (uint64_t)expect_killed);
    ASSERT_EQ(co_server_stop(s, 0), 0); /* idempotent */
    co_server_free(s);
    FDS_END();
}

static void test_stop_waits_for_handlers(void)
{
    graceful(50, 5000, 0, 4);
}

static void test_stop_kills_at_deadline(void)
{
    graceful(60000, 80, 10, 0);
}

static void *stop_from_elsewhere(void *arg)
{
    errno = 0;
    int r = co_server_stop(arg, 0);
    return (void *)(intptr_t)(r == -1 ? errno : 0);
}

static void *serve_it(void *arg)
{
    return (void *)(intptr_t)co_server_serve(arg);
}

static void test_serve_and_unix(void)
{
    FDS_BEGIN();
    char path[64];
    snprintf(path, sizeof path, "/tmp/cogent-srv-%d", (int)getpid());
    co_server_opts_t o = {.host = path, .unix_socket = true};
    co_server_t *s = co_server_new(echo_handler, NULL, &o);
    ASSERT(s != NULL);
    ASSERT_EQ(co_server_port(s), -1);
    co_coro_t *srv = co_spawn(serve_it, s);
    co_yield_now();
    int fd = co_unix_connect(path, co_now() + 2000);
    ASSERT(fd >= 0);
    ASSERT_EQ(co_write(fd, "abc", 3, -1), 3);
    char b[3];
    ASSERT_EQ(co_read(fd, b, 3, co_now() + 2000), 3);
    co_close(fd);
    /* only the server's own hub may stop it */
    pthread_t t;
    void *why;
    ASSERT_EQ(pthread_create(&t, NULL, stop_from_elsewhere, s), 0);
    pthread_join(t, &why);
    ASSERT_EQ((intptr_t)why, EINVAL);
    ASSERT_EQ(co_server_stop(s, co_now() + 2000), 0);
    void *r;
    ASSERT_EQ(co_join(srv, co_now() + 2000, &r), 0);
    ASSERT_EQ((intptr_t)r, 0);
    ASSERT(access(path, F_OK) != 0); /* the socket file is gone */
    co_server_free(s);
    /* bad arguments */
    ASSERT_ERR(co_server_new(NULL, NULL, &o), EINVAL);
    co_server_opts_t bad = {.host = "127.0.0.1", .port = 99999};
    ASSERT_ERR(co_server_new(echo_handler, NULL, &bad), EINVAL);
    FDS_END();
}

/* ------------------------------------------- Unix socket paths: never a
 * file that is not a socket, never a socket file that is not ours */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    ASSERT_EQ(fputs(text, f) >= 0, 1);
    ASSERT_EQ(fclose(f), 0);
}

static bool file_has(const char *path, const char *text)
{
    char buf[256] = {0};
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    return n == strlen(text) && !memcmp(buf, text, n);
}

static mode_t lmode(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 ? st.st_mode & S_IFMT : 0;
}

/* co_unix_listen on `path` fails with `err` and the message names the path
 * and what is there. */
static void listen_refused(const char *path, int err, const char *what)
{
    char want[300];
    ASSERT_ERR(co_unix_listen(path, NULL), err);
    snprintf(want, sizeof want, "listen on %s: %s", path, what);
    ASSERT_STR_EQ(co_net_error(), want);
}

static void test_unix_listen_paths(void)
{
    FDS_BEGIN();
    char dir[] = "/tmp/cogent-net-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    char data[64], sub[64], fifo[64], sock[64], link[64], dangling[64], moved[64];
    snprintf(data, sizeof data, "%s/data.txt", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(sock, sizeof sock, "%s/s.sock", dir);
    snprintf(link, sizeof link, "%s/link", dir);
    snprintf(dangling, sizeof dangling, "%s/dangling", dir);
    snprintf(moved, sizeof moved, "%s/moved", dir);

    /* a data file at a mistyped path: reported, left as it was */
    write_file(data, "precious");
    listen_refused(data, EEXIST, "the path is a regular file, not a socket");
    ASSERT(file_has(data, "precious"));
    ASSERT_EQ(mkdir(sub, 0700), 0);
    listen_refused(sub, EEXIST, "the path is a directory, not a socket");
    ASSERT_EQ(lmode(sub), S_IFDIR);
    ASSERT_EQ(mkfifo(fifo, 0600), 0);
    listen_refused(fifo, EEXIST, "the path is a FIFO, not a socket");
    ASSERT_EQ(lmode(fifo), S_IFIFO);

    /* a stale socket file (its listener closed): replaced */
    int l = co_unix_listen(sock, NULL);
    ASSERT(l >= 0);
    co_close(l);
    l = co_unix_listen(sock, NULL);
    ASSERT_(l >= 0, "%s", co_net_error());
    /* a live one: refused, and the probe is only a connection */
    listen_refused(sock, EADDRINUSE, "a server is listening on it");
    int probe = co_accept(l, NULL, NULL, co_now() + 1000);
    ASSERT(probe >= 0);
    co_close(probe);
    co_close(l);

    /* symbolic links are never replaced, even to a stale socket (sock is
     * one now), nor dangling ones */
    ASSERT_EQ(symlink(sock, link), 0);
    listen_refused(link, EEXIST, "the path is a symbolic link, not a socket");
    ASSERT_EQ(lmode(link), S_IFLNK);
    ASSERT_EQ(lmode(sock), S_IFSOCK);
    ASSERT_EQ(symlink("nowhere", dangling), 0);
    listen_refused(dangling, EEXIST, "the path is a symbolic link, not a socket");
    ASSERT_EQ(lmode(dangling), S_IFLNK);

    /* the stream server removes its own socket file at stop, and nothing
     * that took its place: a regular file... */
    co_server_opts_t o = {.host = sock, .unix_socket = true};
    ASSERT_EQ(unlink(sock), 0);
    co_server_t *s = co_server_new(echo_handler, NULL, &o);
    ASSERT(s != NULL);
    ASSERT_EQ(co_server_start(s), 0);
    ASSERT_EQ(unlink(sock), 0);
    write_file(sock, "not the server's");
    ASSERT_EQ(co_server_stop(s, co_now() + 2000), 0);
    ASSERT(file_has(sock, "not the server's"));
    co_server_free(s);
    ASSERT_EQ(unlink(sock), 0);
    /* ...or another listener's socket, the server's own moved away */
    s = co_server_new(echo_handler, NULL, &o);
    ASSERT(s != NULL);
    ASSERT_EQ(co_server_start(s), 0);
    ASSERT_EQ(rename(sock, moved), 0);
    l = co_unix_listen(sock, NULL);
    ASSERT(l >= 0);
    ASSERT_EQ(co_server_stop(s, co_now() + 2000), 0);
    co_server_free(s);
    int c = co_unix_connect(sock, co_now() + 1000);
    ASSERT_(c >= 0, "%s", co_net_error());
    co_close(c);
    co_close(l);
    ASSERT_EQ(lmode(moved), S_IFSOCK);

    const char *all[] = {data, fifo, sock, link, dangling, moved};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) ASSERT_EQ(unlink(all[i]), 0);
    ASSERT_EQ(rmdir(sub), 0);
    ASSERT_EQ(rmdir(dir), 0);
    FDS_END();
}

/* ------------------------------------- co_server_stop from a handler */

typedef struct {
    co_server_t *s;
    int64_t stop_ms; /* the stopper's deadline, from when it calls */
    int rc, err;     /* what its co_server_stop returned */
    int64_t took;
    bool returned; /* the stopper handler ran on after its stop call */
} self_stop_t;

/* First byte: 's' stops the server, 'w' works 30 ms, 'h' hangs until
 * killed. */
static int self_stop_handler(int fd, void *arg)
{
    self_stop_t *st = arg;
    char b;
    if (co_read(fd, &b, 1, -1) != 1) return errno;
    if (b == 'w') {
        co_sleep_ms(30);
        return co_write(fd, "done", 4, -1) == 4 ? 0 : errno;
    }
    if (b == 'h') return co_read(fd, &b, 1, -1) < 0 ? errno : 0;
    int64_t t0 = co_now();
    errno = 0;
    st->rc = co_server_stop(st->s, co_now() + st->stop_ms);
    st->err = errno;
    st->took = co_now() - t0;
    co_sleep_ms(20); /* still running, its connection still open */
    st->returned = true;
    return co_write(fd, "ok", 2, -1) == 2 ? 0 : errno;
}

static void *send_and_read(void *arg)
{
    const char *what = arg; /* "<port>:<byte>" */
    int fd = co_tcp_connect("127.0.0.1", atoi(what), co_now() + 5000);
    ASSERT(fd >= 0);
    ASSERT_EQ(co_write(fd, strchr(what, ':') + 1, 1, -1), 1);
    char b[8];
    ssize_t r = co_read(fd, b, sizeof b, co_now() + 10000);
    co_close(fd);
    return (void *)(intptr_t)r;
}

/* The stopper waits for the other handlers (killing them at its deadline),
 * not for itself; it runs on afterwards; serve returns once it has. */
static void self_stop(const char *other, int64_t stop_ms, int expect_killed, intptr_t other_read)
{
    FDS_BEGIN();
    self_stop_t st = {.stop_ms = stop_ms, .rc = -2};
    co_server_opts_t o = {.host = "127.0.0.1"};
    st.s = co_server_new(self_stop_handler, &st, &o);
    ASSERT(st.s != NULL);
    co_coro_t *srv = co_spawn(serve_it, st.s);
    co_yield_now();
    char a[32], b[32];
    snprintf(a, sizeof a, "%d:%s", co_server_port(st.s), other);
    snprintf(b, sizeof b, "%d:s", co_server_port(st.s));
    co_coro_t *ca = co_spawn(send_and_read, a);
    co_server_stats_t ss;
    do co_sleep_ms(2), co_server_stats(st.s, &ss);
    while (ss.accepted < 1);
    co_coro_t *cb = co_spawn(send_and_read, b);
    void *ra, *rb, *rs;
    ASSERT_EQ(co_join(cb, co_now() + 10000, &rb), 0);
    ASSERT_EQ((intptr_t)rb, 2); /* the stopper answered after its stop */
    ASSERT_EQ(co_join(ca, co_now() + 10000, &ra), 0);
    ASSERT_EQ((intptr_t)ra, other_read);
    ASSERT_(st.rc == expect_killed, "stop returned %d (errno %s), not %d", st.rc, strerror(st.err), expect_killed);
    if (expect_killed)
        ASSERT_TIME(st.took, (int)stop_ms - 10, (int)stop_ms + 3000);
    else
        ASSERT_TIME(st.took, 0, 2000); /* not its own deadline */
    ASSERT_EQ(co_join(srv, co_now() + 5000, &rs), 0);
    ASSERT(st.returned); /* serve returned after every handler, the stopper too */
    co_server_stats(st.s, &ss);
    ASSERT_EQ(ss.accepted, 2);
    ASSERT_EQ(ss.closed, 2);
    ASSERT_EQ(ss.active, 0);
    ASSERT_EQ(co_server_stop(st.s, 0), 0); /* idempotent */
    co_server_free(st.s);
    FDS_END();
}

static void test_stop_from_handler(void)
{
    self_stop("w", 3000, 0, 4);
}

static void test_stop_from_handler_kills_others(void)
{
    self_stop("h", 150, 1, 0);
}

/* ---------------------------------------------------------------- DNS */

static void test_dns(void)
{
    FDS_BEGIN();
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_INET}, *res = NULL;
    ASSERT_EQ(co_getaddrinfo("localhost", "80", &hints, &res, co_now() + 5000), 0);
    ASSERT(res != NULL);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof ip);
    ASSERT_STR_EQ(ip, "127.0.0.1");
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    ASSERT_EQ(co_getnameinfo(res->ai_addr, res->ai_addrlen, host, sizeof host, serv, sizeof serv,
                             NI_NUMERICHOST | NI_NUMERICSERV, co_now() + 5000),
              0);
    ASSERT_STR_EQ(host, "127.0.0.1");
    ASSERT_STR_EQ(serv, "80");
    freeaddrinfo(res);
    /* failures resolved locally (no DNS server is asked): an unknown
     * service, a non-numeric name where a number was required */
    res = NULL;
    int rc = co_getaddrinfo("localhost", "no-such-service-cogent", &hints, &res, co_now() + 5000);
    ASSERT(rc == EAI_SERVICE || rc == EAI_NONAME);
    ASSERT(res == NULL);
    struct addrinfo num = {.ai_flags = AI_NUMERICHOST};
    ASSERT_EQ(co_getaddrinfo("not-a-number", "80", &num, &res, co_now() + 5000), EAI_NONAME);
    ASSERT_EQ(co_getaddrinfo(NULL, NULL, NULL, &res, -1), EAI_NONAME);
    ASSERT_EQ(co_getnameinfo(NULL, 0, host, sizeof host, NULL, 0, 0, -1), EAI_FAMILY);
    ASSERT_ERR(co_socket_port(-1), EBADF);
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    ASSERT_ERR(co_socket_port(p[0]), ENOTSOCK);
    close(p[0]);
    close(p[1]);
    /* a name through the socket calls: the message says why */
    int l = co_tcp_listen("localhost", 0, NULL);
    ASSERT(l >= 0);
    int c = co_tcp_connect("localhost", co_socket_port(l), co_now() + 5000);
    ASSERT(c >= 0);
    co_close(c);
    co_close(l);
    FDS_END();
}

/* A slow job past its caller's deadline: the caller gets ETIMEDOUT at
 * once; the pool frees the job when it ends. */
typedef struct {
    co__job_t job;
    atomic_int *dropped;
} slow_job_t;

static void slow_run(co__job_t *j)
{
    (void)j;
    usleep(150 * 1000);
}
static void slow_drop(co__job_t *j)
{
    slow_job_t *s = (slow_job_t *)j;
    atomic_store(s->dropped, 1);
    free(s);
}

static void test_offload_deadline(void)
{
    static atomic_int dropped;
    slow_job_t *j = calloc(1, sizeof *j);
    j->job.run = slow_run;
    j->job.drop = slow_drop;
    j->dropped = &dropped;
    int64_t t0 = co_now();
    ASSERT_EQ(co__offload(&j->job, co_now() + 30, "test"), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 25, 140);
    while (!atomic_load(&dropped)) co_sleep_ms(5);
    /* killed while waiting: ECANCELED, freed all the same */
    slow_job_t *k = calloc(1, sizeof *k);
    k->job.run = slow_run;
    k->job.drop = slow_drop;
    k->dropped = &dropped;
    atomic_store(&dropped, 0);
    co_kill(co_current());
    ASSERT_EQ(co__offload(&k->job, -1, "test"), ECANCELED);
    while (!atomic_load(&dropped)) usleep(5000);
}

/* fork while another thread is inside a lookup: the child's lookups
 * still work (cogent's table of /etc/hosts is not left locked in the
 * child).  Through co_tcp_listen, which reads that table and hands glibc
 * only numeric addresses: glibc's own name-service locks are not reset at
 * fork (after fork, a multi-threaded program's child may only count on
 * async-signal-safe calls), so a child calling getaddrinfo on a name can
 * hang in glibc itself, whatever cogent does. */
static atomic_bool hammer_stop;

static void *hammer_lookups(void *arg)
{
    (void)arg;
    while (!atomic_load(&hammer_stop)) {
        int l = co_tcp_listen("localhost", 0, NULL);
        ASSERT(l >= 0);
        co_close(l);
    }
    return NULL;
}

static void lookup_in_child(void *arg)
{
    (void)arg;
    alarm(10); /* a child stuck on a lock dies instead of hanging the test */
    int l = co_tcp_listen("localhost", 0, NULL);
    ASSERT(l >= 0);
    co_close(l);
}

static void test_dns_fork(void)
{
    if (CO_ASAN) {
        /* ASan's allocator itself can be left locked in such a child */
        fprintf(stderr, "    (skipped under ASan)\n");
        return;
    }
    pthread_t t;
    atomic_store(&hammer_stop, false);
    ASSERT_EQ(pthread_create(&t, NULL, hammer_lookups, NULL), 0);
    char out[4096];
    for (int i = 0; i < 12; i++) { /* the hammer holds the table most of the time: one fork nearly always hits */
        int st = run_child(lookup_in_child, NULL, out, sizeof out);
        ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d: status %d: %s", i, st, out);
    }
    atomic_store(&hammer_stop, true);
    pthread_join(t, NULL);
}

/* A stand-in for the patch library, which interposes getaddrinfo and
 * getnameinfo and sends them to cogent on a hub: cogent's own calls of
 * libc's lookups (the answers it gives on the caller's thread) must not
 * come back through it, forever. */
static atomic_bool interposing;

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    if (atomic_load(&interposing) && co__tls.hub) return co_getaddrinfo(node, service, hints, res, -1);
    if (!real)
        real = (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(RTLD_NEXT,
                                                                                                       "getaddrinfo");
    return real(node, service, hints, res);
}

int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen, char *serv,
                socklen_t servlen, int flags)
{
    static int (*real)(const struct sockaddr *, socklen_t, char *, socklen_t, char *, socklen_t, int);
    if (atomic_load(&interposing) && co__tls.hub)
        return co_getnameinfo(sa, salen, host, hostlen, serv, servlen, flags, -1);
    if (!real)
        real = (int (*)(const struct sockaddr *, socklen_t, char *, socklen_t, char *, socklen_t, int))dlsym(
            RTLD_NEXT, "getnameinfo");
    return real(sa, salen, host, hostlen, serv, servlen, flags);
}

static void interposed_lookups(void *arg)
{
    (void)arg;
    alarm(10); /* endless recursion may hang rather than crash */
    atomic_store(&interposing, true);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_INET}, *res = NULL;
    const char *names[] = {"localhost", "127.0.0.1", NULL};
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(getaddrinfo(names[i], "80", &hints, &res), 0);
        freeaddrinfo(res);
    }
    char host[NI_MAXHOST];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(getnameinfo((struct sockaddr *)&sa, sizeof sa, host, sizeof host, NULL, 0, NI_NUMERICHOST), 0);
    ASSERT_STR_EQ(host, "127.0.0.1");
    ASSERT_EQ(getnameinfo((struct sockaddr *)&sa, sizeof sa, host, sizeof host, NULL, 0, 0), 0);
    int l = co_tcp_listen("localhost", 0, NULL);
    ASSERT(l >= 0);
    co_close(l);
    atomic_store(&interposing, false);
}

static void test_dns_interposed(void)
{
    char out[4096];
    int st = run_child(interposed_lookups, NULL, out, sizeof out);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d: %s", st, out);
}

/* Jobs for the pool's limits: a blocker waits until the test opens the
 * gate (5 s at most: a safety net that turns a hang into a failed
 * assertion); a quick one returns at once.  Both record where they ran. */
static int gate[2];
static atomic_int jobs_ran, jobs_dropped, dropped_unrun;

typedef struct {
    co__job_t job;
    bool quick, did_run;
    pthread_t thread;
} tjob_t;

static void tjob_run(co__job_t *j)
{
    tjob_t *t = (tjob_t *)j;
    t->thread = pthread_self();
    t->did_run = true;
    atomic_fetch_add(&jobs_ran, 1);
    if (!t->quick) {
        struct pollfd p = {.fd = gate[0], .events = POLLIN};
        poll(&p, 1, 5000);
    }
}

static void tjob_drop(co__job_t *j)
{
    tjob_t *t = (tjob_t *)j;
    if (!t->did_run) atomic_fetch_add(&dropped_unrun, 1);
    atomic_fetch_add(&jobs_dropped, 1);
    free(t);
}

static tjob_t *tjob_new(bool quick)
{
    tjob_t *t = calloc(1, sizeof *t);
    ASSERT(t != NULL);
    t->job.run = tjob_run;
    t->job.drop = tjob_drop;
    t->quick = quick;
    return t;
}

static void gate_close(void)
{
    atomic_store(&jobs_ran, 0);
    atomic_store(&jobs_dropped, 0);
    atomic_store(&dropped_unrun, 0);
    ASSERT_EQ(pipe(gate), 0);
}

/* Opens the gate and waits until the pool has dropped n jobs. */
static void gate_open(int n)
{
    ASSERT_EQ(write(gate[1], "x", 1), 1);
    int64_t until = co_now() + 10000;
    while (atomic_load(&jobs_dropped) < n && co_now() < until) usleep(2000);
    ASSERT_EQ(atomic_load(&jobs_dropped), n);
    unsigned workers, stuck;
    for (stuck = 1; stuck && co_now() < until; usleep(1000)) co__offload_counts(&workers, &stuck);
    ASSERT_EQ(stuck, 0);
    close(gate[0]);
    close(gate[1]);
}

static void *offload_blocker(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)co__offload(&tjob_new(false)->job, -1, "test blocker");
}

static void wait_ran(int n)
{
    int64_t until = co_now() + 5000;
    while (atomic_load(&jobs_ran) < n && co_now() < until) co_sleep_ms(1);
    ASSERT_EQ(atomic_load(&jobs_ran), n);
}

/* n blockers, killed once as many as the pool runs at a time are
 * running: abandoned, stuck in the pool until the gate opens.  The queued
 * ones are killed first, so that they leave the queue before a worker is
 * freed to take them: they must never run. */
static void abandon_blockers(int n)
{
    co_coro_t *cs[2 * CO__OFFLOAD_LIVE_MAX];
    ASSERT(n <= 2 * CO__OFFLOAD_LIVE_MAX);
    int running = n < CO__OFFLOAD_LIVE_MAX ? n : CO__OFFLOAD_LIVE_MAX;
    int ran = atomic_load(&jobs_ran), unrun = atomic_load(&dropped_unrun);
    for (int i = 0; i < n; i++) cs[i] = co_spawn(offload_blocker, NULL);
    wait_ran(ran + running);
    for (int i = n - 1; i >= 0; i--) co_kill(cs[i]);
    void *r[2 * CO__OFFLOAD_LIVE_MAX];
    ASSERT_EQ(co_joinall(cs, (size_t)n, co_now() + 5000, r), 0);
    for (int i = 0; i < n; i++) ASSERT_EQ((intptr_t)r[i], ECANCELED);
    ASSERT_EQ(atomic_load(&dropped_unrun) - unrun, n - running);
    ASSERT_EQ(atomic_load(&jobs_ran) - ran, running);
}

/* Jobs whose callers left do not hold the pool: with every worker the
 * limit allows stuck on one, a new job still runs at once; abandoned jobs
 * still queued never run. */
static void test_offload_abandoned_dont_starve(void)
{
    enum { N = 2 * CO__OFFLOAD_LIVE_MAX };
    gate_close();
    abandon_blockers(N);
    tjob_t *q = tjob_new(true);
    int64_t t0 = co_now();
    ASSERT_EQ(co__offload(&q->job, co_now() + 3000, "test quick"), 0);
    ASSERT_TIME(co_now() - t0, 0, 1000);
    ASSERT(q->did_run && !pthread_equal(q->thread, pthread_self()));
    free(q);
    gate_open(N);
}

/* Stuck workers are bounded: at CO__OFFLOAD_THREADS_MAX no thread is
 * added, a new job waits in the queue and its caller gets its deadline;
 * the job is dropped without running.  The pool recovers once the stuck
 * jobs end. */
static void test_offload_thread_cap(void)
{
    gate_close();
    int rounds = CO__OFFLOAD_THREADS_MAX / CO__OFFLOAD_LIVE_MAX;
    for (int i = 0; i < rounds; i++) abandon_blockers(CO__OFFLOAD_LIVE_MAX);
    unsigned workers, stuck;
    co__offload_counts(&workers, &stuck);
    ASSERT_EQ(workers, CO__OFFLOAD_THREADS_MAX);
    ASSERT_EQ(stuck, CO__OFFLOAD_THREADS_MAX);
    int64_t t0 = co_now();
    ASSERT_EQ(co__offload(&tjob_new(true)->job, co_now() + 150, "test quick"), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 140, 2000);
    ASSERT_EQ(atomic_load(&dropped_unrun), 1);
    co__offload_counts(&workers, &stuck);
    ASSERT_EQ(workers, CO__OFFLOAD_THREADS_MAX);
    gate_open(CO__OFFLOAD_THREADS_MAX + 1);
    tjob_t *q = tjob_new(true);
    ASSERT_EQ(co__offload(&q->job, co_now() + 3000, "test quick"), 0);
    free(q);
}

/* A thread without a hub: the deadline holds (a worker runs the job, the
 * thread sleeps on a futex), and the thread gets no hub for it.  With no
 * deadline the job runs on the thread itself. */
static void *offload_no_hub(void *arg)
{
    (void)arg;
    ASSERT(co__tls.hub == NULL);
    int64_t t0 = co_now();
    ASSERT_EQ(co__offload(&tjob_new(false)->job, co_now() + 100, "test blocker"), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 90, 2000);
    tjob_t *q = tjob_new(true);
    ASSERT_EQ(co__offload(&q->job, co_now() + 3000, "test quick"), 0);
    ASSERT(!pthread_equal(q->thread, pthread_self()));
    q->did_run = false;
    ASSERT_EQ(co__offload(&q->job, -1, "test quick"), 0);
    ASSERT(q->did_run && pthread_equal(q->thread, pthread_self()));
    free(q);
    ASSERT(co__tls.hub == NULL);
    return NULL;
}

static void test_offload_without_hub(void)
{
    gate_close();
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, offload_no_hub, NULL), 0);
    pthread_join(t, NULL);
    gate_open(1);
}

static void *dns_off_hub(void *arg)
{
    (void)arg;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_INET}, *res = NULL;
    ASSERT_EQ(co_getaddrinfo("localhost", "80", &hints, &res, -1), 0);
    freeaddrinfo(res);
    return NULL;
}

static void test_dns_without_hub(void)
{
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, dns_off_hub, NULL), 0);
    pthread_join(t, NULL);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    co_hub_poller();
    RUN(test_server_5000);
    RUN(test_max_conns);
    RUN(test_idle_timeout);
    RUN(test_stop_waits_for_handlers);
    RUN(test_stop_kills_at_deadline);
    RUN(test_serve_and_unix);
    RUN(test_unix_listen_paths);
    RUN(test_stop_from_handler);
    RUN(test_stop_from_handler_kills_others);
    RUN(test_dns);
    RUN(test_dns_without_hub);
    RUN(test_dns_fork);
    RUN(test_dns_interposed);
    RUN(test_offload_abandoned_dont_starve);
    RUN(test_offload_thread_cap);
    RUN(test_offload_without_hub);
    RUN(test_offload_deadline); /* last: it kills the main coroutine */
    return TEST_MAIN_END();
}
