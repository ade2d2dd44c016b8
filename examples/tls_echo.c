/* The uppercase echo server over TLS, and a client that opens many TLS
 * connections at once and checks every answer.
 *
 *   tls_echo server PORT CERT KEY            serve until Ctrl-C
 *   tls_echo client PORT CA [N [ROUNDS]]     N concurrent clients (200),
 *                                            ROUNDS round trips each (1)
 *   tls_echo CERT KEY CA                     both, in one process
 *
 * The handler is the plain echo's with co_tls_read/co_tls_write: the
 * stream server accepts, co_tls_serve does the handshake, and each
 * connection is straight-line code in its own coroutine.  Make a
 * certificate for a try with:
 *   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
 *     -nodes -keyout key.pem -out cert.pem -days 1 -subj /CN=localhost \
 *     -addext subjectAltName=DNS:localhost,IP:127.0.0.1
 * and pass cert.pem as the CA too. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cogent.h"

static int upper_handler(co_tls_t *s, void *arg)
{
    (void)arg;
    char buf[4096];
    ssize_t n;
    while ((n = co_tls_read(s, buf, sizeof buf, -1)) > 0) {
        for (ssize_t i = 0; i < n; i++) buf[i] = (char)toupper((unsigned char)buf[i]);
        if (co_tls_write(s, buf, (size_t)n, -1) < 0) return errno;
    }
    return n < 0 ? errno : 0;
}

/* ------------------------------------------------------------- client */

typedef struct {
    co_tls_ctx_t *ctx;
    int port, id, rounds, ok;
} client_t;

static void *client(void *arg)
{
    client_t *c = arg;
    int64_t deadline = co_now() + 20000;
    int fd = co_tcp_connect("127.0.0.1", c->port, deadline);
    if (fd < 0) {
        fprintf(stderr, "client %d: %s\n", c->id, co_net_error());
        return NULL;
    }
    co_tls_t *s = co_tls_connect(c->ctx, fd, "localhost", deadline);
    if (!s) {
        fprintf(stderr, "client %d: %s\n", c->id, co_tls_error());
        co_close(fd);
        return NULL;
    }
    char msg[64], want[64], got[64];
    int len = snprintf(msg, sizeof msg, "hello from tls client %d", c->id);
    for (int i = 0; i < len; i++) want[i] = (char)toupper((unsigned char)msg[i]);
    int good = 0;
    for (int r = 0; r < c->rounds; r++) {
        size_t n = 0;
        if (co_tls_write(s, msg, (size_t)len, deadline) == len) {
            while (n < (size_t)len) {
                ssize_t k = co_tls_read(s, got + n, (size_t)len - n, deadline);
                if (k <= 0) break;
                n += (size_t)k;
            }
        }
        good += n == (size_t)len && !memcmp(got, want, (size_t)len);
    }
    c->ok = good == c->rounds;
    co_tls_shutdown(s, false, deadline);
    co_tls_free(s, true);
    return NULL;
}

static int run_clients(int port, const char *ca, int n, int rounds)
{
    co_tls_ctx_t *ctx = co_tls_ctx_new(&(co_tls_ctx_opts_t){.ca_file = ca});
    if (!ctx) {
        fprintf(stderr, "tls_echo: %s\n", co_tls_error());
        return 1;
    }
    client_t *cs = calloc((size_t)n, sizeof *cs);
    co_coro_t **hs = calloc((size_t)n, sizeof *hs);
    int64_t t0 = co_now();
    for (int i = 0; i < n; i++) {
        cs[i] = (client_t){.ctx = ctx, .port = port, .id = i, .rounds = rounds};
        hs[i] = co_spawn(client, &cs[i]);
    }
    co_joinall(hs, (size_t)n, -1, NULL);
    int ok = 0;
    for (int i = 0; i < n; i++) ok += cs[i].ok;
    int64_t ms = co_now() - t0;
    printf("%d concurrent TLS connections x %d round trips, %d correct, %lld ms\n", n, rounds, ok, (long long)ms);
    free(cs);
    free(hs);
    co_tls_ctx_free(ctx);
    return ok == n ? 0 : 1;
}

/* ------------------------------------------------------------- server */

static void *on_signal(void *arg)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (co_signal_wait(&set, -1) > 0) co_server_stop(arg, co_now() + 1000);
    return NULL;
}

typedef struct server {
    co_tls_ctx_t *ctx;
    co_tls_service_t svc;
    co_server_t *srv;
} server_t;

static int server_open(server_t *s, int port, const char *cert, const char *key)
{
    s->ctx = co_tls_ctx_new(&(co_tls_ctx_opts_t){.server = true, .cert_file = cert, .key_file = key});
    if (!s->ctx) {
        fprintf(stderr, "tls_echo: %s\n", co_tls_error());
        return -1;
    }
    s->svc = (co_tls_service_t){.ctx = s->ctx, .handler = upper_handler};
    s->srv = co_server_new(co_tls_serve, &s->svc, &(co_server_opts_t){.host = "127.0.0.1", .port = port});
    if (!s->srv) {
        fprintf(stderr, "tls_echo: %s\n", co_net_error());
        co_tls_ctx_free(s->ctx);
        return -1;
    }
    return 0;
}

static void server_close(server_t *s)
{
    co_server_free(s->srv);
    co_tls_ctx_free(s->ctx);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 5 && !strcmp(argv[1], "server")) {
        server_t s;
        if (server_open(&s, atoi(argv[2]), argv[3], argv[4]) < 0) return 1;
        printf("TLS uppercase echo on 127.0.0.1:%d (Ctrl-C stops)\n", co_server_port(s.srv));
        fflush(stdout);
        co_coro_t *sig = co_spawn(on_signal, s.srv);
        co_server_serve(s.srv);
        co_kill(sig);
        co_join(sig, -1, NULL);
        server_close(&s);
        return 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "client"))
        return run_clients(atoi(argv[2]), argv[3], argc > 4 ? atoi(argv[4]) : 200, argc > 5 ? atoi(argv[5]) : 1);
    if (argc == 4) {
        server_t s;
        if (server_open(&s, 0, argv[1], argv[2]) < 0) return 1;
        co_server_start(s.srv);
        int rc = run_clients(co_server_port(s.srv), argv[3], 200, 3);
        server_close(&s);
        return rc;
    }
    fprintf(stderr,
            "usage: tls_echo server PORT CERT KEY | tls_echo client PORT CA [N [ROUNDS]] | tls_echo CERT KEY CA\n");
    return 2;
}
