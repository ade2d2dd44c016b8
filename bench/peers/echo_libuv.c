/* libuv echo server: the usual pattern, with uv_try_write first and one
 * shared read buffer (a copy only when the kernel takes less). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static char buf[16384];
static uv_loop_t *loop;

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)h;
    (void)sz;
    *b = uv_buf_init(buf, sizeof buf);
}
static void close_cb(uv_handle_t *h)
{
    free(h);
}
static void write_cb(uv_write_t *w, int st)
{
    (void)st;
    free(w->data);
    free(w);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    if (n < 0) {
        uv_close((uv_handle_t *)s, close_cb);
        return;
    }
    if (n == 0) return;
    uv_buf_t out = uv_buf_init(b->base, (unsigned)n);
    int w = uv_try_write(s, &out, 1);
    if (w == n) return;
    if (w < 0) w = 0;
    uv_write_t *req = malloc(sizeof *req);
    char *copy = malloc((size_t)(n - w));
    memcpy(copy, b->base + w, (size_t)(n - w));
    req->data = copy;
    uv_buf_t rest = uv_buf_init(copy, (unsigned)(n - w));
    uv_write(req, s, &rest, 1, write_cb);
}

static void on_conn(uv_stream_t *srv, int st)
{
    if (st < 0) return;
    uv_tcp_t *c = malloc(sizeof *c);
    uv_tcp_init(loop, c);
    if (uv_accept(srv, (uv_stream_t *)c) == 0)
        uv_read_start((uv_stream_t *)c, alloc_cb, read_cb);
    else
        uv_close((uv_handle_t *)c, close_cb);
}

static void on_signal(uv_signal_t *h, int s)
{
    (void)s;
    uv_stop(h->loop);
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    loop = uv_default_loop();
    uv_tcp_t srv;
    uv_tcp_init(loop, &srv);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &a);
    uv_tcp_bind(&srv, (const struct sockaddr *)&a, 0);
    if (uv_listen((uv_stream_t *)&srv, 4096, on_conn)) return 1;
    uv_signal_t s1, s2;
    uv_signal_init(loop, &s1);
    uv_signal_start(&s1, on_signal, SIGTERM);
    uv_signal_init(loop, &s2);
    uv_signal_start(&s2, on_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
