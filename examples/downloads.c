/* Concurrent downloads: N pages from a local HTTP server that takes
 * 100 ms to answer each, fetched one after the other, then all at once
 * from N coroutines.  The client is a dozen lines of HTTP/1.0 over
 * cogent's sockets; the server is a co_server on a thread of its own. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cogent.h"

enum { N = 20, DELAY_MS = 100 };

/* -------------------------------------------------------------- server */

static int http_handler(int fd, void *arg)
{
    (void)arg;
    char req[1024];
    size_t n = 0;
    for (;;) { /* read the request head */
        ssize_t r = co_read(fd, req + n, sizeof req - 1 - n, co_now() + 5000);
        if (r <= 0) return r < 0 ? errno : 0;
        n += (size_t)r;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n") || n == sizeof req - 1) break;
    }
    char path[256] = "/";
    sscanf(req, "GET %255s", path);
    co_sleep_ms(DELAY_MS); /* a slow backend */
    char body[512], resp[768];
    int bl = snprintf(body, sizeof body, "This is the page at %s.\n", path);
    int rl = snprintf(resp, sizeof resp, "HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s", bl, body);
    return co_write_all(fd, resp, (size_t)rl, NULL, co_now() + 5000) < 0 ? errno : 0;
}

typedef struct {
    co_server_t *s;
    co_event_t ready, done;
} srv_t;

static void *server_thread(void *arg)
{
    srv_t *v = arg;
    co_server_opts_t o = {.host = "127.0.0.1"};
    v->s = co_server_new(http_handler, NULL, &o);
    if (v->s) co_server_start(v->s);
    co_event_set(&v->ready);
    if (!v->s) return NULL;
    co_event_wait(&v->done, -1);
    co_server_free(v->s);
    return NULL;
}

/* -------------------------------------------------------------- client */

typedef struct {
    int port;
    char path[32];
    size_t bytes;
    int ok;
} fetch_t;

static void *fetch(void *arg)
{
    fetch_t *f = arg;
    int fd = co_tcp_connect("localhost", f->port, co_now() + 5000);
    if (fd < 0) {
        fprintf(stderr, "%s: %s\n", f->path, co_net_error());
        return NULL;
    }
    char req[128], buf[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", f->path);
    if (co_write_all(fd, req, (size_t)n, NULL, co_now() + 5000) == 0) {
        ssize_t r;
        size_t got = 0;
        while ((r = co_read(fd, buf + got, sizeof buf - 1 - got, co_now() + 5000)) > 0) got += (size_t)r;
        buf[got] = '\0';
        f->bytes = got;
        f->ok = r == 0 && !strncmp(buf, "HTTP/1.0 200", 12) && strstr(buf, f->path);
    }
    co_close(fd);
    return NULL;
}

int main(void)
{
    static srv_t v;
    co_event_init(&v.ready);
    co_event_init(&v.done);
    pthread_t t;
    pthread_create(&t, NULL, server_thread, &v);
    co_event_wait(&v.ready, -1);
    if (!v.s) return 1;
    int port = co_server_port(v.s);
    fetch_t f[N];
    for (int i = 0; i < N; i++) {
        f[i] = (fetch_t){.port = port};
        snprintf(f[i].path, sizeof f[i].path, "/page/%d", i);
    }

    int64_t t0 = co_now();
    for (int i = 0; i < N; i++) fetch(&f[i]);
    int64_t seq = co_now() - t0;
    int ok_seq = 0;
    for (int i = 0; i < N; i++) ok_seq += f[i].ok, f[i].ok = 0;

    co_coro_t *cs[N];
    t0 = co_now();
    for (int i = 0; i < N; i++) cs[i] = co_spawn(fetch, &f[i]);
    co_joinall(cs, N, -1, NULL);
    int64_t conc = co_now() - t0;
    int ok_conc = 0;
    for (int i = 0; i < N; i++) ok_conc += f[i].ok;

    printf("%d pages, %d ms each to serve:\n", N, DELAY_MS);
    printf("  one after the other: %5lld ms (%d ok)\n", (long long)seq, ok_seq);
    printf("  concurrently:        %5lld ms (%d ok)\n", (long long)conc, ok_conc);
    co_event_set(&v.done);
    pthread_join(t, NULL);
    return ok_seq == N && ok_conc == N ? 0 : 1;
}
