/* The HTTP client against a real local server (tests/http_testd.c): status
 * codes, headers, bodies, redirects, compression, deadlines and kills in
 * the middle of a transfer, refused connections, thousands of requests on
 * one hub, two hubs with a pool each, and libcurl's known pitfalls
 * (sockets closed before CURL_POLL_REMOVE, timers moved and deleted,
 * paused transfers, the threaded resolver's own socket, 10k handles).
 * Every case closes its thread's pool at the end, so the harness's leak
 * check sees every descriptor and coroutine back where it was. */
#include <curl/curl.h>
#include <netdb.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "harness.h"
#include "testd.h"

static testd_t srv;
static char url_[256];
#define URL(path) TESTD_URL(url_, &srv, "http", path)

static void pool_done(void)
{
    co_http_stats_t st;
    co_http_stats(&st);
    ASSERT_EQ(st.in_flight, 0);
    ASSERT_EQ(co_http_close(), 0);
    co_http_stats(&st);
    ASSERT_EQ(st.driving, 0);
}

static void test_status_and_headers(void)
{
    co_http_resp_t r = {0};
    ASSERT_EQ(co_http_get(URL("/status/200"), &r, co_now() + 5000), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body.data, "status 200");
    ASSERT_EQ(r.body.len, 10);
    ASSERT_STR_EQ(co_http_header(&r, "content-type"), "text/html");
    ASSERT_STR_EQ(co_http_header(&r, "Content-Length"), "10");
    ASSERT(co_http_header(&r, "X-Nothing") == NULL);
    ASSERT_EQ(r.http_version, 11);
    ASSERT_EQ(r.curl_code, 0);
    /* Error statuses are responses, not failures. */
    ASSERT_EQ(co_http_get(URL("/status/404"), &r, -1), 0);
    ASSERT_EQ(r.status, 404);
    ASSERT_EQ(co_http_get(URL("/status/503"), &r, -1), 0);
    ASSERT_EQ(r.status, 503);
    ASSERT_STR_EQ(r.body.data, "status 503");
    co_http_resp_destroy(&r);
    ASSERT(r.body.data == NULL);
    pool_done();
}

static void check_pattern(const co_buf_t *b, size_t n)
{
    ASSERT_EQ(b->len, n);
    for (size_t i = 0; i < n; i++)
        if (b->data[i] != (char)('a' + i % 26)) ASSERT_(0, "byte %zu is %d", i, b->data[i]);
}

static void test_bodies(void)
{
    co_http_resp_t r = {0};
    ASSERT_EQ(co_http_get(URL("/bytes/0"), &r, -1), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(r.body.len, 0);
    ASSERT_EQ(co_http_get(URL("/bytes/1048576"), &r, -1), 0);
    check_pattern(&r.body, 1048576);
    ASSERT_EQ(co_http_get(URL("/chunked/100000"), &r, -1), 0);
    ASSERT(co_http_header(&r, "Content-Length") == NULL);
    ASSERT_STR_EQ(co_http_header(&r, "Transfer-Encoding"), "chunked");
    check_pattern(&r.body, 100000);
    co_http_resp_destroy(&r);
    pool_done();
}

static void test_redirects(void)
{
    co_http_resp_t r = {0};
    ASSERT_EQ(co_http_get(URL("/redirect/3"), &r, -1), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(r.body.data, "done");
    ASSERT(strstr(r.url, "/redirect/0") != NULL);
    ASSERT(co_http_header(&r, "Location") == NULL); /* the final response's headers only */
    ASSERT_ERR(co_http_request(URL("/redirect/5"), &(co_http_opts_t){.max_redirects = 2}, &r, -1), ELOOP);
    ASSERT(strstr(co_http_error(), "redirect") != NULL);
    ASSERT_EQ(co_http_request(URL("/redirect/5"), &(co_http_opts_t){.max_redirects = -1}, &r, -1), 0);
    ASSERT_EQ(r.status, 302);
    ASSERT_STR_EQ(co_http_header(&r, "location"), "/redirect/4");
    co_http_resp_destroy(&r);
    pool_done();
}

static void test_gzip(void)
{
    co_http_resp_t r = {0};
    ASSERT_EQ(co_http_get(URL("/gzip"), &r, -1), 0);
    ASSERT_EQ(r.body.len, 13 * 40);
    ASSERT(!strncmp(r.body.data, "hello, gzip! hello, gzip! ", 26));
    ASSERT_STR_EQ(co_http_header(&r, "Content-Encoding"), "gzip");
    ASSERT_EQ(co_http_request(URL("/gzip"), &(co_http_opts_t){.no_compression = true}, &r, -1), 0);
    ASSERT_EQ(r.body.len, 38); /* as sent */
    ASSERT_EQ((unsigned char)r.body.data[0], 0x1f);
    co_http_resp_destroy(&r);
    pool_done();
}

static int patch_method(void *curl, void *arg)
{
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, (const char *)arg);
    return 0;
}

static int refuse(void *curl, void *arg)
{
    (void)curl;
    (void)arg;
    return EPERM;
}

static void test_methods_and_bodies(void)
{
    co_http_resp_t r = {0};
    ASSERT_EQ(co_http_post(URL("/echo"), "hello", 5, "text/plain", &r, -1), 0);
    ASSERT_STR_EQ(r.body.data, "POST\nhello");
    const char *hdrs[] = {"X-Test: forty two", NULL};
    ASSERT_EQ(co_http_request(URL("/echo"),
                              &(co_http_opts_t){.method = "PUT", .body = "x=1", .body_len = 3, .headers = hdrs}, &r,
                              -1),
              0);
    ASSERT_STR_EQ(r.body.data, "PUT\nx=1");
    ASSERT_STR_EQ(co_http_header(&r, "X-Echo"), "forty two");
    ASSERT_EQ(co_http_request(URL("/echo"), &(co_http_opts_t){.method = "DELETE"}, &r, -1), 0);
    ASSERT_STR_EQ(r.body.data, "DELETE\n");
    ASSERT_EQ(co_http_request(URL("/bytes/100"), &(co_http_opts_t){.method = "HEAD"}, &r, -1), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(r.body.len, 0);
    ASSERT_STR_EQ(co_http_header(&r, "Content-Length"), "100");
    /* A body of 64 KiB, and an empty one. */
    char *big = malloc(65536);
    memset(big, 'z', 65536);
    int prc = co_http_post(URL("/echo"), big, 65536, NULL, &r, -1);
    ASSERT_(prc == 0, "post: %s", co_http_error());
    ASSERT_EQ(r.body.len, 5 + 65536);
    free(big);
    ASSERT_EQ(co_http_post(URL("/echo"), NULL, 0, NULL, &r, -1), 0);
    ASSERT_STR_EQ(r.body.data, "POST\n");
    /* The escape hatch. */
    ASSERT_EQ(co_http_request(URL("/echo"), &(co_http_opts_t){.setup = patch_method, .setup_arg = "PATCH"}, &r, -1), 0);
    ASSERT_STR_EQ(r.body.data, "PATCH\n");
    ASSERT_ERR(co_http_request(URL("/echo"), &(co_http_opts_t){.setup = refuse}, &r, -1), EPERM);
    co_http_resp_destroy(&r);
    pool_done();
}

static void test_bad_input(void)
{
    co_http_resp_t r = {0};
    ASSERT_ERR(co_http_get(NULL, &r, -1), EINVAL);
    ASSERT_ERR(co_http_get(URL("/"), NULL, -1), EINVAL);
    ASSERT_ERR(co_http_get("nosuchscheme://127.0.0.1/", &r, -1), EINVAL);
    ASSERT(strstr(co_http_error(), "nosuchscheme") != NULL);
    ASSERT_ERR(co_http_get("http://[::1", &r, -1), EINVAL);
    ASSERT_ERR(co_http_get("", &r, -1), EINVAL);
    /* Only http and https: a URL found on a page must not read local
     * files or speak another protocol. */
    ASSERT_ERR(co_http_get("file:///etc/hostname", &r, -1), EINVAL);
    ASSERT_EQ(r.body.len, 0);
    ASSERT_ERR(co_http_get("ftp://127.0.0.1:1/", &r, -1), EINVAL);
    ASSERT(strstr(co_http_error(), "ftp") != NULL);
    ASSERT_ERR(co_http_request(URL("/echo"), &(co_http_opts_t){.method = ""}, &r, -1), EINVAL);
    ASSERT_ERR(co_http_request(URL("/echo"), &(co_http_opts_t){.body_len = 3}, &r, -1), EINVAL);
    ASSERT(strstr(co_http_error(), "body") != NULL);
    /* A deadline already passed, and the try form, fail at once. */
    ASSERT_ERR(co_http_get(URL("/status/200"), &r, co_now() - 300000), ETIMEDOUT);
    co_http_resp_destroy(&r);
    pool_done();
}

/* A port nobody listens on: bound, then closed. */
static int dead_port(void)
{
    int fd = co_tcp_listen("127.0.0.1", 0, NULL);
    ASSERT(fd >= 0);
    int port = co_socket_port(fd);
    co_close(fd);
    return port;
}

static void test_refused(void)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", dead_port());
    co_http_resp_t r = {0};
    int64_t t0 = co_now();
    ASSERT_ERR(co_http_get(url, &r, co_now() + 5000), ECONNREFUSED);
    ASSERT(co_now() - t0 < 4000);
    ASSERT_EQ(r.curl_code, CURLE_COULDNT_CONNECT);
    ASSERT(strstr(co_http_error(), "GET http://127.0.0.1:") != NULL);
    ASSERT(strstr(co_http_error(), "(curl 7)") != NULL);
    co_http_resp_destroy(&r);
    pool_done();
}

/* Proxies come from the environment, as for the curl tool: a real proxy
 * (tinyproxy, from Debian) on a free port in a temp dir relays requests;
 * no_proxy bypasses it; a proxy that is down fails the request clearly. */
static pid_t proxy_start(const char *dir, int *port_out)
{
    int port = dead_port();
    char conf[256], text[1024];
    snprintf(conf, sizeof conf, "%s/tinyproxy.conf", dir);
    snprintf(text, sizeof text,
             "Port %d\nListen 127.0.0.1\nTimeout 30\nMaxClients 64\nAllow 127.0.0.1\nLogLevel Critical\n"
             "LogFile \"%s/tinyproxy.log\"\nPidFile \"%s/tinyproxy.pid\"\nViaProxyName \"cogent-test-proxy\"\n",
             port, dir, dir);
    FILE *f = fopen(conf, "w");
    ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
    pid_t pid = testd_spawn_quiet((char *const[]){"/usr/bin/tinyproxy", "-d", "-c", conf, NULL});
    ASSERT(pid >= 0);
    for (int i = 0; i < 200; i++) {
        int fd = co_tcp_connect("127.0.0.1", port, co_now() + 1000);
        if (fd >= 0) {
            co_close(fd);
            *port_out = port;
            return pid;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) return -1; /* it could not start (the port taken meanwhile?) */
        co_sleep_ms(25);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void test_proxy_from_environment(void)
{
    if (access("/usr/bin/tinyproxy", X_OK) != 0) {
        fprintf(stderr, "    skipped: tinyproxy is not installed (scripts/deps.sh installs it)\n");
        return;
    }
    char dir[] = "/tmp/cogent-proxy-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    int port = 0;
    pid_t pid = -1;
    for (int attempt = 0; attempt < 3 && pid < 0; attempt++) pid = proxy_start(dir, &port);
    ASSERT_(pid > 0, "tinyproxy did not start (see %s/tinyproxy.log)", dir);
    char proxy[64];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", port);
    setenv("http_proxy", proxy, 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");

    /* Through the proxy: it says so in a Via header, and a body arrives whole. */
    co_http_resp_t r = {0};
    ASSERT_EQ(co_http_get(URL("/bytes/100000"), &r, co_now() + 10000), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(r.body.len, 100000);
    const char *via = co_http_header(&r, "via");
    ASSERT_(via && strstr(via, "cogent-test-proxy"), "no Via header from the proxy (%s)", via ? via : "none");
    /* A POST body goes through too. */
    ASSERT_EQ(co_http_request(URL("/echo"), &(co_http_opts_t){.method = "POST", .body = "abc", .body_len = 3}, &r,
                              co_now() + 10000),
              0);
    ASSERT_STR_EQ(r.body.data, "POST\nabc");

    /* no_proxy names the host: straight to the server, no Via. */
    setenv("no_proxy", "127.0.0.1", 1);
    ASSERT_EQ(co_http_get(URL("/status/200"), &r, co_now() + 10000), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT(co_http_header(&r, "via") == NULL);
    unsetenv("no_proxy");

    /* The proxy gone: a clear error, not a hang. */
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    ASSERT_ERR(co_http_get(URL("/status/200"), &r, co_now() + 10000), ECONNREFUSED);
    ASSERT(strstr(co_http_error(), "(curl 7)") != NULL);

    unsetenv("http_proxy");
    co_http_resp_destroy(&r);
    pool_done();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ASSERT_EQ(system(cmd), 0);
}

static void test_deadline_stalled_server(void)
{
    co_http_resp_t r = {0};
    int64_t t0 = co_now();
    ASSERT_ERR(co_http_get(URL("/stall"), &r, co_now() + 200), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 190, 3000);
    ASSERT(strstr(co_http_error(), "deadline") != NULL);
    /* Mid-body: headers and half the body came. */
    t0 = co_now();
    ASSERT_ERR(co_http_get(URL("/stallbody"), &r, co_now() + 200), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 190, 3000);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(r.body.len, 500);
    /* The pool still works. */
    ASSERT_EQ(co_http_get(URL("/status/200"), &r, co_now() + 5000), 0);
    co_http_stats_t st;
    co_http_stats(&st);
    ASSERT_EQ(st.failed, 2);
    co_http_resp_destroy(&r);
    pool_done();
}

static void *fetch_stall(void *arg)
{
    co_http_resp_t r = {0};
    intptr_t rc = co_http_get((const char *)arg, &r, -1) < 0 ? errno : 0;
    co_http_resp_destroy(&r);
    return (void *)rc;
}

static void test_kill_mid_transfer(void)
{
    char u1[128], u2[128];
    TESTD_URL(u1, &srv, "http", "/stall");
    TESTD_URL(u2, &srv, "http", "/stallbody");
    co_coro_t *a = co_spawn(fetch_stall, u1);
    co_coro_t *b = co_spawn(fetch_stall, u2);
    co_sleep_ms(100);
    co_http_stats_t st;
    co_http_stats(&st);
    ASSERT_EQ(st.in_flight, 2);
    ASSERT_EQ(st.sockets, 2);
    int64_t t0 = co_now();
    co_kill(a);
    co_kill(b);
    void *ra, *rb;
    ASSERT_EQ(co_join(a, co_now() + 2000, &ra), 0);
    ASSERT_EQ(co_join(b, co_now() + 2000, &rb), 0);
    ASSERT(co_now() - t0 < 1000);
    ASSERT_EQ((intptr_t)ra, ECANCELED);
    ASSERT_EQ((intptr_t)rb, ECANCELED);
    co_http_stats(&st);
    ASSERT_EQ(st.in_flight, 0);
    ASSERT_EQ(st.sockets, 0); /* the connections were closed, not pooled */
    pool_done();
}

typedef struct slow_sink {
    size_t got;
    unsigned calls;
} slow_sink_t;

static int slow_data(const void *data, size_t n, void *arg)
{
    slow_sink_t *s = arg;
    const char *p = data;
    for (size_t i = 0; i < n; i++)
        if (p[i] != (char)('a' + (s->got + i) % 26)) return EILSEQ;
    s->got += n;
    s->calls++;
    co_sleep_ms(2); /* behind the network: libcurl must pause the transfer */
    return 0;
}

static int stop_data(const void *data, size_t n, void *arg)
{
    (void)data;
    (void)n;
    (void)arg;
    return EIO;
}

static void test_streaming_and_pause(void)
{
    co_http_resp_t r = {0};
    slow_sink_t s = {0};
    int rc = co_http_request(URL("/bytes/8388608"), &(co_http_opts_t){.on_data = slow_data, .on_data_arg = &s}, &r,
                             co_now() + 20000);
    ASSERT_(rc == 0, "streaming: %s (got %zu in %u calls)", co_http_error(), s.got, s.calls);
    ASSERT_EQ(s.got, 8388608);
    ASSERT_EQ(r.body.len, 0); /* on_data took it */
    co_http_stats_t st;
    co_http_stats(&st);
    ASSERT(st.pauses > 0);
    /* on_data's error fails the request. */
    ASSERT_ERR(co_http_request(URL("/bytes/100000"), &(co_http_opts_t){.on_data = stop_data}, &r, -1), EIO);
    /* A limit. */
    ASSERT_ERR(co_http_request(URL("/bytes/100000"), &(co_http_opts_t){.max_body = 1000}, &r, -1), EFBIG);
    /* To a file. */
    char path[] = "/tmp/cogent-http-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    unlink(path);
    ASSERT_EQ(co_http_request(URL("/chunked/300000"), &(co_http_opts_t){.on_data = co_http_to_fd, .on_data_arg = &fd},
                              &r, -1),
              0);
    ASSERT_EQ(lseek(fd, 0, SEEK_END), 300000);
    co_close(fd);
    co_http_resp_destroy(&r);
    pool_done();
}

typedef struct many {
    const char *url;
    int ok;
} many_t;

static void *fetch_one(void *arg)
{
    many_t *m = arg;
    co_http_resp_t r = {0};
    if (co_http_get(m->url, &r, co_now() + 60000) == 0 && r.status == 200 && r.body.len == 100) m->ok++;
    co_http_resp_destroy(&r);
    return NULL;
}

/* n requests at once on this hub; the time they took in ms. */
static int64_t fetch_many(int n)
{
    char url[128];
    TESTD_URL(url, &srv, "http", "/bytes/100");
    many_t m = {url, 0};
    co_coro_t **cs = malloc(sizeof *cs * (size_t)n);
    int64_t t0 = co_now();
    for (int i = 0; i < n; i++) cs[i] = co_spawn(fetch_one, &m);
    ASSERT_EQ(co_joinall(cs, (size_t)n, -1, NULL), 0);
    int64_t dt = co_now() - t0;
    free(cs);
    ASSERT_EQ(m.ok, n);
    return dt;
}

static void test_5000_concurrent(void)
{
    fetch_many(5000);
    co_http_stats_t st;
    co_http_stats(&st);
    ASSERT_EQ(st.requests, 5000);
    ASSERT_EQ(st.failed, 0);
    ASSERT_(st.connects <= 100, "%llu connections", (unsigned long long)st.connects); /* the default limit, reused */
    pool_done();
}

/* 10k handles on one hub: no quadratic slowdown (4x the requests may take
 * 4x the time; a quadratic cost would take 16x).  Generous bound. */
static void test_10k_handles(void)
{
    /* Under TSan, a quarter: its shadow mappings and 10k coroutine stacks
     * together come near the process's map count limit (65530), and an
     * munmap inside TSan's allocator then fails. */
    int n = TEST_TSAN ? 2500 : 10000;
    fetch_many(500); /* warm */
    /* The best of two runs each: the machine may be shared. */
    int64_t small = fetch_many(n / 4), s2 = fetch_many(n / 4);
    int64_t big = fetch_many(n), b2 = fetch_many(n);
    small = s2 < small ? s2 : small;
    big = b2 < big ? b2 : big;
    fprintf(stderr, "    %d requests %lld ms, %d requests %lld ms\n", n / 4, (long long)small, n, (long long)big);
    ASSERT_(big <= 10 * (small > 20 ? small : 20), "%d requests took %lld ms, %d took %lld", n, (long long)big, n / 4,
            (long long)small);
    pool_done();
}

static void *hub_thread(void *arg)
{
    many_t *m = arg;
    for (int i = 0; i < 200; i++) fetch_one(m);
    co_http_stats_t st;
    co_http_stats(&st);
    if (st.requests != 200) m->ok = -1000;
    co_http_close();
    return NULL;
}

static void test_two_hubs(void)
{
    char url[128];
    TESTD_URL(url, &srv, "http", "/bytes/100");
    many_t a = {url, 0}, b = {url, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, hub_thread, &a);
    pthread_create(&tb, NULL, hub_thread, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    ASSERT_EQ(a.ok, 200);
    ASSERT_EQ(b.ok, 200);
    co_http_stats_t st;
    co_http_stats(&st);
    ASSERT_EQ(st.requests, 0); /* this thread's pool is its own */
}

/* A thread that never used cogent before: the request makes its hub. */
static void *plain_thread(void *arg)
{
    co_http_resp_t r = {0};
    int rc = co_http_get((const char *)arg, &r, co_now() + 5000);
    long status = r.status;
    co_http_resp_destroy(&r);
    co_http_close();
    return (void *)(intptr_t)(rc == 0 ? status : -1);
}

static void test_plain_thread(void)
{
    char url[128];
    TESTD_URL(url, &srv, "http", "/status/201");
    pthread_t t;
    void *res;
    pthread_create(&t, NULL, plain_thread, url);
    pthread_join(t, &res);
    ASSERT_EQ((intptr_t)res, 201);
}

static int timeout_ms_opt(void *curl, void *arg)
{
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(intptr_t)arg);
    return 0;
}

typedef struct timed {
    const char *url;
    long ms;
    int err;
    int64_t took;
} timed_t;

static void *fetch_timed(void *arg)
{
    timed_t *t = arg;
    co_http_resp_t r = {0};
    int64_t t0 = co_now();
    t->err = co_http_request(t->url, &(co_http_opts_t){.setup = timeout_ms_opt, .setup_arg = (void *)(intptr_t)t->ms},
                             &r, -1) < 0
                 ? errno
                 : 0;
    t->took = co_now() - t0;
    co_http_resp_destroy(&r);
    return NULL;
}

/* libcurl's own timer moves: a far timeout (5 s) is replaced by an earlier
 * one (150 ms) while the driver waits for the far one, and is deleted when
 * the pool empties. */
static void test_timer_replaced_and_deleted(void)
{
    char url[128];
    TESTD_URL(url, &srv, "http", "/stall");
    timed_t far = {url, 5000, 0, 0}, near = {url, 150, 0, 0};
    co_coro_t *a = co_spawn(fetch_timed, &far);
    co_sleep_ms(50);
    co_http_stats_t st;
    co_http_stats(&st);
    uint64_t sets = st.timer_sets;
    co_coro_t *b = co_spawn(fetch_timed, &near);
    ASSERT_EQ(co_join(b, co_now() + 3000, NULL), 0);
    ASSERT_EQ(near.err, ETIMEDOUT); /* libcurl's CURLE_OPERATION_TIMEDOUT */
    ASSERT_TIME(near.took, 140, 2000);
    co_http_stats(&st);
    ASSERT(st.timer_sets > sets);
    co_kill(a);
    ASSERT_EQ(co_join(a, co_now() + 2000, NULL), 0);
    ASSERT_EQ(far.err, ECANCELED);
    ASSERT(far.took < 3000);
    pool_done();
}

/* Closes libcurl's socket behind its back and takes the number at once,
 * with another descriptor, before libcurl's CURL_POLL_REMOVE can come. */
static int squatters[64];
static int nsquat;

static int close_and_squat(void *clientp, curl_socket_t fd)
{
    (void)clientp;
    close(fd);
    int s = open("/dev/null", O_RDONLY | O_CLOEXEC); /* the lowest free number: very likely fd's */
    if (s >= 0 && nsquat < 64) squatters[nsquat++] = s;
    return 0;
}

static int squat_setup(void *curl, void *arg)
{
    (void)arg;
    curl_easy_setopt(curl, CURLOPT_CLOSESOCKETFUNCTION, close_and_squat);
    curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);
    return 0;
}

static void test_socket_closed_before_remove(void)
{
    co_http_resp_t r = {0};
    for (int i = 0; i < 20; i++) {
        ASSERT_EQ(co_http_request(URL("/bytes/1000"), &(co_http_opts_t){.setup = squat_setup}, &r, co_now() + 5000), 0);
        ASSERT_EQ(r.body.len, 1000);
        /* The squatter is a descriptor the pool must not touch. */
        ASSERT(fcntl(squatters[nsquat - 1], F_GETFD) >= 0);
    }
    /* Connections closed by the server, their numbers reused by the next
     * socket at once. */
    for (int i = 0; i < 200; i++) {
        ASSERT_EQ(co_http_get(URL("/close"), &r, co_now() + 5000), 0);
        ASSERT_STR_EQ(r.body.data, "bye");
    }
    co_http_stats_t st;
    co_http_stats(&st);
    ASSERT_EQ(st.sockets, 0);
    fprintf(stderr, "    sockets named after their close: %llu\n", (unsigned long long)st.stale_sockets);
    co_http_resp_destroy(&r);
    pool_done();
    for (int i = 0; i < nsquat; i++) close(squatters[i]);
    nsquat = 0;
}

/* A host name that /etc/hosts maps to 127.0.0.1 goes through libcurl's
 * threaded resolver, whose thread signals libcurl on a socket of its own
 * when the answer is not there at once: one more socket for the pool to
 * watch (and libcurl 7.88 closes it and may name the connection's socket
 * under the same number as a change of the first, without a REMOVE: the
 * kernel dropped the closed one from the set, and the pool adds the new
 * one).  A lookup in /etc/hosts is quick and may be answered before
 * libcurl asks for the socket: a fresh pool (fresh DNS cache) each time,
 * a few times. */
static void test_threaded_resolver(void)
{
    char host[256];
    if (gethostname(host, sizeof host) < 0) return;
    struct addrinfo *ai = NULL, hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai ||
        ((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr != htonl(INADDR_LOOPBACK) || !strcmp(host, "localhost")) {
        if (ai) freeaddrinfo(ai);
        fprintf(stderr, "    skipped: the host name does not resolve to 127.0.0.1 through /etc/hosts\n");
        return;
    }
    freeaddrinfo(ai);
    char url[512];
    snprintf(url, sizeof url, "http://%s:%d/status/200", host, srv.port);
    co_http_resp_t r = {0};
    int with_socket = 0;
    for (int i = 0; i < 20; i++) {
        ASSERT_EQ(co_http_request(url, &(co_http_opts_t){0}, &r, co_now() + 10000), 0);
        ASSERT_EQ(r.status, 200);
        co_http_stats_t st;
        co_http_stats(&st);
        if (st.sockets_seen + st.stale_sockets >= 2) with_socket++;
        pool_done();
    }
    fprintf(stderr, "    lookups that went through the resolver's socket: %d of 20\n", with_socket);
    co_http_resp_destroy(&r);
}

/* A fork child does not inherit the pool: its first request opens a
 * connection of its own instead of writing into the parent's kept-alive
 * one, which the parent still uses afterwards. */
static void fork_child_fetch(void *arg)
{
    co_http_stats_t st;
    co_http_stats(&st);
    if (st.requests != 0) _exit(3); /* the parent's pool */
    co_http_resp_t r = {0};
    if (co_http_get(arg, &r, co_now() + 5000) < 0 || r.status != 200) _exit(4);
    co_http_stats(&st);
    if (st.connects != 1) _exit(5);
    _exit(0);
}

static void test_fork_child(void)
{
    if (TEST_TSAN) {
        /* The pool's driver, a copy of the parent's, resumes in the child:
         * TSan cannot follow a fiber across a fork (Makefile, test-tsan). */
        fprintf(stderr, "    skipped under TSan\n");
        return;
    }
    co_http_resp_t r = {0};
    ASSERT_EQ(co_http_get(URL("/status/200"), &r, co_now() + 5000), 0);
    char buf[512];
    int status = run_child(fork_child_fetch, URL("/status/200"), buf, sizeof buf);
    ASSERT_(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %d: %s", status, buf);
    ASSERT_EQ(co_http_get(URL("/status/200"), &r, co_now() + 5000), 0);
    co_http_stats_t st;
    co_http_stats(&st);
    ASSERT_EQ(st.connects, 1); /* the parent's connection, still good */
    co_http_resp_destroy(&r);
    pool_done();
}

static void test_config(void)
{
    ASSERT_EQ(co_http_configure(&(co_http_config_t){.max_conns = 4, .max_host_conns = 2, .dns_ttl_ms = -1}), 0);
    fetch_many(200);
    co_http_stats_t st;
    co_http_stats(&st);
    ASSERT_(st.connects <= 2, "%llu connections", (unsigned long long)st.connects);
    ASSERT_EQ(co_http_configure(NULL), 0);
    pool_done();
}

/* A timeout scope around requests (gevent.Timeout around a fetch). */
static void test_scope(void)
{
    co_http_resp_t r = {0};
    co_scope_t sc;
    int64_t t0 = co_now();
    co_scope_enter(&sc, t0 + 150);
    ASSERT_EQ(co_http_get(URL("/status/200"), &r, -1), 0); /* quick: done in time */
    ASSERT_ERR(co_http_get(URL("/stall"), &r, -1), ETIMEDOUT);
    ASSERT(co_scope_leave(&sc));
    ASSERT_TIME(co_now() - t0, 140, 3000);
    co_http_stats_t st;
    co_http_stats(&st);
    ASSERT_EQ(st.in_flight, 0);
    ASSERT_EQ(co_http_get(URL("/slow/200"), &r, -1), 0); /* after the scope: not cut */
    co_http_resp_destroy(&r);
    pool_done();
}

static void test_close_busy(void)
{
    char url[128];
    TESTD_URL(url, &srv, "http", "/stall");
    co_coro_t *a = co_spawn(fetch_stall, url);
    co_sleep_ms(50);
    ASSERT_ERR(co_http_close(), EBUSY);
    co_kill(a);
    co_join(a, -1, NULL);
    pool_done();
    ASSERT_EQ(co_http_close(), 0); /* nothing to close */
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (testd_start(&srv, NULL) < 0) {
        fprintf(stderr, "cannot start %s\n", TESTD);
        return 1;
    }
    RUN(test_status_and_headers);
    RUN(test_bodies);
    RUN(test_redirects);
    RUN(test_gzip);
    RUN(test_methods_and_bodies);
    RUN(test_bad_input);
    RUN(test_refused);
    RUN(test_proxy_from_environment);
    RUN(test_deadline_stalled_server);
    RUN(test_kill_mid_transfer);
    RUN(test_streaming_and_pause);
    RUN(test_5000_concurrent);
    RUN(test_10k_handles);
    RUN(test_two_hubs);
    RUN(test_plain_thread);
    RUN(test_timer_replaced_and_deleted);
    RUN(test_socket_closed_before_remove);
    RUN(test_threaded_resolver);
    RUN(test_config);
    RUN(test_fork_child);
    RUN(test_scope);
    RUN(test_close_busy);
    testd_stop(&srv);
    return TEST_MAIN_END();
}
