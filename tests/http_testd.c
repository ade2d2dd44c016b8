/* A small HTTP/1.1 server for the tests and the crawler's test site: a
 * real server on 127.0.0.1 (cogent's stream server, plain or TLS), in a
 * process of its own.  It prints "port N" on stdout once it listens and
 * serves until stdin reaches EOF (its parent went away) or SIGTERM.
 *
 *   http_testd [--tls CERT KEY] [--site N]
 *
 * Routes:
 *   /status/N       status N, body "status N"
 *   /bytes/N        N bytes (Content-Length)
 *   /chunked/N      N bytes, chunked
 *   /redirect/N     302 to /redirect/N-1; /redirect/0 is 200 "done"
 *   /gzip           a gzip-encoded text (Content-Encoding: gzip)
 *   /slow/MS        200 "slow" after MS ms
 *   /stall          reads the request, never answers
 *   /stallbody      headers and half of a 1000-byte body, then nothing
 *   /echo           "METHOD\n" + the request body; X-Test echoed as X-Echo
 *   /close          200 with Connection: close
 *   /site/I         the crawler's site (with --site N: pages 0..N-1):
 *                   page I links to 3I+1..3I+3; every 7th is slow
 *                   (150 ms), every 11th fails with 500, every 13th
 *                   fails with 503 on its first fetch only, and page 1
 *                   also links to an outside host that must not be
 *                   crawled.
 */
#include <cogent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const unsigned char gzip_body[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xcb, 0x48, 0xcd,
                                          0xc9, 0xc9, 0xd7, 0x51, 0x48, 0xaf, 0xca, 0x2c, 0x50, 0x54, 0xc8, 0x18, 0xe5,
                                          0x8c, 0x54, 0x0e, 0x00, 0xd7, 0xa1, 0x37, 0xfc, 0x08, 0x02, 0x00, 0x00};

static long site_pages;
static unsigned char *site_seen; /* 503 pages answered once already */

/* A connection: plain fd or TLS stream. */
typedef struct conn {
    int fd;
    co_tls_t *tls;
    bool head; /* the request is a HEAD: no body in the answer */
    char buf[262144];
    size_t len;
} conn_t;

static ssize_t conn_read(conn_t *c, void *p, size_t n)
{
    return c->tls ? co_tls_read(c->tls, p, n, -1) : co_read(c->fd, p, n, -1);
}

static int conn_write(conn_t *c, const void *p, size_t n)
{
    if (c->tls) return co_tls_write(c->tls, p, n, -1) == (ssize_t)n ? 0 : -1;
    return co_write_all(c->fd, p, n, NULL, -1);
}

/* One write for head and body: two small writes would meet Nagle's
 * algorithm and the client's delayed ACK (40 ms each). */
static int respond(conn_t *c, int status, const char *extra, const void *body, size_t len, bool close)
{
    char head[1024];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nContent-Type: text/html\r\n%s%s\r\n",
                     status, len, extra ? extra : "", close ? "Connection: close\r\n" : "");
    if (c->head) len = 0;
    if (len <= 16384) {
        char out[1024 + 16384];
        memcpy(out, head, (size_t)n);
        if (len) memcpy(out + n, body, len);
        return conn_write(c, out, (size_t)n + len);
    }
    if (conn_write(c, head, (size_t)n) < 0) return -1;
    return conn_write(c, body, len);
}

static int site_page(conn_t *c, long i)
{
    if (i < 0 || i >= site_pages) return respond(c, 404, NULL, "no such page", 12, false);
    if (i % 7 == 0 && i) co_sleep_ms(150);
    if (i % 11 == 5) return respond(c, 500, NULL, "broken", 6, false);
    if (i % 13 == 6 && !site_seen[i]) {
        site_seen[i] = 1;
        return respond(c, 503, NULL, "try again", 9, false);
    }
    char body[1024];
    int n = snprintf(body, sizeof body, "<html><title>page %ld</title><body>", i);
    for (long k = 3 * i + 1; k <= 3 * i + 3; k++)
        n += snprintf(body + n, sizeof body - (size_t)n, "<a href=\"/site/%ld\">%ld</a> ", k, k);
    if (i == 1) n += snprintf(body + n, sizeof body - (size_t)n, "<a href=\"http://outside.invalid/x\">out</a> ");
    n += snprintf(body + n, sizeof body - (size_t)n, "<a href=\"/site/0\">home</a></body></html>\n");
    return respond(c, 200, NULL, body, (size_t)n, false);
}

/* Serves one request from c->buf (head of `hlen` bytes, body after it).
 * Returns 1 to keep the connection, 0 to close it, -1 on error. */
static int serve(conn_t *c, const char *method, const char *path, const char *body, size_t blen, const char *xtest)
{
    long n = 0;
    if (sscanf(path, "/status/%ld", &n) == 1) {
        char b[32];
        int l = snprintf(b, sizeof b, "status %ld", n);
        return respond(c, (int)n, NULL, b, (size_t)l, false) < 0 ? -1 : 1;
    }
    if (sscanf(path, "/bytes/%ld", &n) == 1) {
        char *b = malloc((size_t)n + 1);
        for (long i = 0; i < n; i++) b[i] = (char)('a' + i % 26);
        int r = respond(c, 200, NULL, b, (size_t)n, false);
        free(b);
        return r < 0 ? -1 : 1;
    }
    if (sscanf(path, "/chunked/%ld", &n) == 1) {
        const char *h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        if (conn_write(c, h, strlen(h)) < 0) return -1;
        char chunk[1100];
        for (long done = 0; done < n;) {
            long k = n - done < 1000 ? n - done : 1000;
            int l = snprintf(chunk, sizeof chunk, "%lx\r\n", k);
            for (long i = 0; i < k; i++) chunk[l + i] = (char)('a' + (done + i) % 26);
            memcpy(chunk + l + k, "\r\n", 2);
            if (conn_write(c, chunk, (size_t)(l + k + 2)) < 0) return -1;
            done += k;
            co_yield_now(); /* arrive in pieces */
        }
        return conn_write(c, "0\r\n\r\n", 5) < 0 ? -1 : 1;
    }
    if (sscanf(path, "/redirect/%ld", &n) == 1) {
        if (n <= 0) return respond(c, 200, NULL, "done", 4, false) < 0 ? -1 : 1;
        char loc[64];
        snprintf(loc, sizeof loc, "Location: /redirect/%ld\r\n", n - 1);
        return respond(c, 302, loc, NULL, 0, false) < 0 ? -1 : 1;
    }
    if (!strcmp(path, "/gzip"))
        return respond(c, 200, "Content-Encoding: gzip\r\n", gzip_body, sizeof gzip_body, false) < 0 ? -1 : 1;
    if (sscanf(path, "/slow/%ld", &n) == 1) {
        co_sleep_ms(n);
        return respond(c, 200, NULL, "slow", 4, false) < 0 ? -1 : 1;
    }
    if (!strcmp(path, "/stall")) {
        char b[256];
        while (conn_read(c, b, sizeof b) > 0) {
        } /* until the client gives up */
        return 0;
    }
    if (!strcmp(path, "/stallbody")) {
        const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        char half[500];
        memset(half, 'x', sizeof half);
        if (conn_write(c, h, strlen(h)) < 0 || conn_write(c, half, sizeof half) < 0) return -1;
        char b[256];
        while (conn_read(c, b, sizeof b) > 0) {
        }
        return 0;
    }
    if (!strcmp(path, "/echo")) {
        char *out = malloc(blen + 32);
        int l = snprintf(out, 32, "%s\n", method);
        memcpy(out + l, body, blen);
        char extra[300] = "";
        if (xtest) snprintf(extra, sizeof extra, "X-Echo: %s\r\n", xtest);
        int r = respond(c, 200, extra, out, (size_t)l + blen, false);
        free(out);
        return r < 0 ? -1 : 1;
    }
    if (!strcmp(path, "/close")) return respond(c, 200, NULL, "bye", 3, true) < 0 ? -1 : 0;
    if (sscanf(path, "/site/%ld", &n) == 1) return site_page(c, n) < 0 ? -1 : 1;
    return respond(c, 404, NULL, "not found", 9, false) < 0 ? -1 : 1;
}

static int handle_conn(conn_t *c)
{
    for (;;) {
        char *end;
        while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
            if (c->len == sizeof c->buf) return 0;
            ssize_t n = conn_read(c, c->buf + c->len, sizeof c->buf - c->len);
            if (n <= 0) return 0;
            c->len += (size_t)n;
        }
        size_t hlen = (size_t)(end - c->buf) + 4;
        char method[16], path[512];
        if (sscanf(c->buf, "%15s %511s", method, path) != 2) return 0;
        c->head = !strcmp(method, "HEAD");
        size_t clen = 0;
        char xtest[256] = "";
        bool has_x = false, close_after = false;
        for (char *l = strstr(c->buf, "\r\n") + 2; l < end; l = strstr(l, "\r\n") + 2) {
            if (!strncasecmp(l, "Content-Length:", 15)) clen = strtoul(l + 15, NULL, 10);
            if (!strncasecmp(l, "Connection: close", 17)) close_after = true;
            if (!strncasecmp(l, "X-Test:", 7)) {
                has_x = sscanf(l + 7, " %255[^\r]", xtest) == 1;
            }
        }
        if (hlen + clen > sizeof c->buf) return 0;
        while (c->len < hlen + clen) {
            ssize_t n = conn_read(c, c->buf + c->len, sizeof c->buf - c->len);
            if (n <= 0) return 0;
            c->len += (size_t)n;
        }
        int r = serve(c, method, path, c->buf + hlen, clen, has_x ? xtest : NULL);
        memmove(c->buf, c->buf + hlen + clen, c->len - hlen - clen);
        c->len -= hlen + clen;
        if (r <= 0 || close_after) return 0;
    }
}

static void nodelay(int fd)
{
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

static int plain_handler(int fd, void *arg)
{
    (void)arg;
    nodelay(fd);
    conn_t *c = malloc(sizeof *c);
    c->fd = fd;
    c->tls = NULL;
    c->len = 0;
    handle_conn(c);
    free(c);
    return 0;
}

static int tls_handler(co_tls_t *s, void *arg)
{
    (void)arg;
    nodelay(co_tls_fd(s));
    conn_t *c = malloc(sizeof *c);
    c->fd = co_tls_fd(s);
    c->tls = s;
    c->len = 0;
    handle_conn(c);
    free(c);
    return 0;
}

/* Stops the server when stdin closes (the test that started us ended,
 * even by a crash) or at SIGTERM. */
static void *watch_parent(void *arg)
{
    char b[64];
    while (co_read(0, b, sizeof b, -1) > 0) {
    }
    co_server_stop(arg, co_now() + 500);
    return NULL;
}

static void *watch_term(void *arg)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    if (co_signal_wait(&set, -1) > 0) co_server_stop(arg, co_now() + 500);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tls") && i + 2 < argc) {
            cert = argv[++i];
            key = argv[++i];
        } else if (!strcmp(argv[i], "--site") && i + 1 < argc) {
            site_pages = atol(argv[++i]);
        } else {
            fprintf(stderr, "usage: http_testd [--tls CERT KEY] [--site N]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    site_seen = calloc((size_t)site_pages + 1, 1);
    co_tls_ctx_t *ctx = NULL;
    co_tls_service_t svc = {.handler = tls_handler};
    if (cert) {
        ctx = co_tls_ctx_new(&(co_tls_ctx_opts_t){.server = true, .cert_file = cert, .key_file = key});
        if (!ctx) {
            fprintf(stderr, "http_testd: %s\n", co_tls_error());
            return 1;
        }
        svc.ctx = ctx;
    }
    co_server_t *s = ctx ? co_server_new(co_tls_serve, &svc, &(co_server_opts_t){.host = "127.0.0.1"})
                         : co_server_new(plain_handler, NULL, &(co_server_opts_t){.host = "127.0.0.1"});
    if (!s) {
        fprintf(stderr, "http_testd: %s\n", co_net_error());
        return 1;
    }
    printf("port %d\n", co_server_port(s));
    fflush(stdout);
    co_coro_t *w1 = co_spawn(watch_parent, s);
    co_coro_t *w2 = co_spawn(watch_term, s);
    co_server_serve(s);
    co_kill(w1);
    co_kill(w2);
    co_join(w1, -1, NULL);
    co_join(w2, -1, NULL);
    co_server_free(s);
    co_tls_ctx_free(ctx);
    free(site_seen);
    return 0;
}
