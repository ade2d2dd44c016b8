/* Timeout scopes around unmodified blocking libraries, under
 * libcogent-patch.so: libpq's PQconnectdb and libcurl's easy interface
 * against a local server that accepts and never answers return an error
 * at the scope's deadline instead of hanging; the same calls outside the
 * scope are not cut; other coroutines run meanwhile. */
#include <curl/curl.h>
#include <libpq-fe.h>

#include "cogent.h"
#include "harness.h"

static int lfd;

static void *stalled_server(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = co_accept(lfd, NULL, NULL, -1);
        if (fd < 0) return NULL;
        char buf[512];
        while (co_read(fd, buf, sizeof buf, -1) > 0) {
        }
        co_close(fd);
    }
}

static int ticks;
static void *ticker(void *arg)
{
    (void)arg;
    while (co_sleep_ms(10) == 0) ticks++;
    return NULL;
}

static void test_libpq(void)
{
    co_coro_t *srv = co_spawn(stalled_server, NULL);
    co_coro_t *tk = co_spawn(ticker, NULL);
    char conninfo[128];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=x user=x connect_timeout=0",
             co_socket_port(lfd));
    co_scope_t sc;
    int64_t t0 = co_now();
    ticks = 0;
    co_scope_enter(&sc, t0 + 100);
    PGconn *c = PQconnectdb(conninfo);
    ASSERT(co_scope_leave(&sc));
    ASSERT_TIME(co_now() - t0, 95, 2000);
    ASSERT_EQ(PQstatus(c), CONNECTION_BAD);
    fprintf(stderr, "    libpq: %s", PQerrorMessage(c));
    ASSERT(ticks >= 3); /* the hub ran the others meanwhile */
    PQfinish(c);
    /* Outside the scope, libpq's own timeout (2 s) is what ends it. */
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=x user=x connect_timeout=2",
             co_socket_port(lfd));
    t0 = co_now();
    c = PQconnectdb(conninfo);
    ASSERT_EQ(PQstatus(c), CONNECTION_BAD);
    ASSERT_TIME(co_now() - t0, 1500, 6000);
    PQfinish(c);
    co_kill(tk);
    co_kill(srv);
    co_join(tk, -1, NULL);
    co_join(srv, -1, NULL);
}

static void test_curl_easy(void)
{
    co_coro_t *srv = co_spawn(stalled_server, NULL);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", co_socket_port(lfd));
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    co_scope_t outer, inner;
    int64_t t0 = co_now();
    co_scope_enter(&outer, t0 + 1000);
    co_scope_enter(&inner, t0 + 150);
    CURLcode rc = curl_easy_perform(e); /* blocks in poll(): cut at 150 ms */
    ASSERT(co_scope_leave(&inner));
    ASSERT_NE(rc, CURLE_OK);
    ASSERT_TIME(co_now() - t0, 140, 900);
    fprintf(stderr, "    libcurl easy: %s\n", curl_easy_strerror(rc));
    rc = curl_easy_perform(e); /* the outer scope: cut at 1 s */
    ASSERT(co_scope_leave(&outer));
    ASSERT_NE(rc, CURLE_OK);
    ASSERT_TIME(co_now() - t0, 950, 3000);
    curl_easy_cleanup(e);
    co_kill(srv);
    co_join(srv, -1, NULL);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    lfd = co_tcp_listen("127.0.0.1", 0, NULL);
    RUN(test_libpq);
    RUN(test_curl_easy);
    co_close(lfd);
    curl_global_cleanup();
    return TEST_MAIN_END();
}
