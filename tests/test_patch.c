/* libcogent-patch.so on unmodified blocking code: a plain blocking echo
 * server and clients become concurrent; sleeps, poll and select park; the
 * caller's view of O_NONBLOCK is kept; threads without a hub still block;
 * COGENT_PATCH=0 turns it off; libcurl's easy interface from 100
 * coroutines runs its fetches at once. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
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
    TEST_MAIN_BEGIN(argc, argv);
    co_hub_poller();
    RUN(test_blocking_echo_concurrent);
    RUN(test_nonblock_view);
    RUN(test_sleeps_overlap);
    RUN(test_poll_select_ready);
    RUN(test_thread_without_hub);
    RUN(test_disabled);
#ifdef HAVE_CURL
    RUN(test_libcurl);
#endif
    return TEST_MAIN_END();
}
