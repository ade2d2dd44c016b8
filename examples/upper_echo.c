/* The uppercase echo server, and a client that opens 500 connections at
 * once and checks every answer.
 *
 *   upper_echo server PORT        serve until Ctrl-C
 *   upper_echo client PORT [N]    N concurrent clients (500)
 *   upper_echo                    both, in one process (the demo)
 *
 * One coroutine per connection, written as if each had its own thread:
 * recv, upper-case, send, until the client hangs up. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cogent.h"

static int upper_handler(int fd, void *arg)
{
    (void)arg;
    char buf[4096];
    ssize_t n;
    while ((n = co_recv(fd, buf, sizeof buf, 0, -1)) > 0) {
        for (ssize_t i = 0; i < n; i++) buf[i] = (char)toupper((unsigned char)buf[i]);
        if (co_write_all(fd, buf, (size_t)n, NULL, -1) < 0) return errno;
    }
    return n < 0 ? errno : 0;
}

/* ------------------------------------------------------------- client */

typedef struct {
    int port, id, ok;
} client_t;

static void *client(void *arg)
{
    client_t *c = arg;
    int fd = co_tcp_connect("127.0.0.1", c->port, co_now() + 10000);
    if (fd < 0) {
        fprintf(stderr, "client %d: %s\n", c->id, co_net_error());
        return NULL;
    }
    char msg[64], want[64], got[64];
    int len = snprintf(msg, sizeof msg, "hello from client number %d", c->id);
    for (int i = 0; i < len; i++) want[i] = (char)toupper((unsigned char)msg[i]);
    size_t n = 0;
    if (co_write_all(fd, msg, (size_t)len, NULL, co_now() + 10000) == 0) {
        while (n < (size_t)len) {
            ssize_t r = co_recv(fd, got + n, (size_t)len - n, 0, co_now() + 10000);
            if (r <= 0) break;
            n += (size_t)r;
        }
    }
    c->ok = n == (size_t)len && !memcmp(got, want, (size_t)len);
    co_close(fd);
    return NULL;
}

static int run_clients(int port, int n)
{
    client_t *cs = calloc((size_t)n, sizeof *cs);
    co_coro_t **hs = calloc((size_t)n, sizeof *hs);
    co_spawn_opts_t so = {.stack_size = 16384};
    int64_t t0 = co_now();
    for (int i = 0; i < n; i++) {
        cs[i] = (client_t){.port = port, .id = i};
        hs[i] = co_spawn_with(client, &cs[i], &so);
    }
    co_joinall(hs, (size_t)n, -1, NULL);
    int ok = 0;
    for (int i = 0; i < n; i++) ok += cs[i].ok;
    printf("%d concurrent connections, %d correct answers, %lld ms\n", n, ok, (long long)(co_now() - t0));
    free(cs);
    free(hs);
    return ok == n ? 0 : 1;
}

/* ------------------------------------------------------------- server */

/* Stops the server on SIGINT/SIGTERM: a coroutine waits for the signal
 * like for any event, then stops the server gracefully (open connections
 * get a second to finish).  No async handler, no flag to poll. */
static void *on_signal(void *arg)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int s = co_signal_wait(&set, -1);
    if (s > 0) {
        printf("%s: stopping\n", s == SIGINT ? "SIGINT" : "SIGTERM");
        co_server_stop(arg, co_now() + 1000);
    }
    return NULL;
}

static int serve(int port)
{
    co_server_opts_t o = {.host = "127.0.0.1", .port = port, .backlog = 1024};
    co_server_t *s = co_server_new(upper_handler, NULL, &o);
    if (!s) {
        fprintf(stderr, "upper_echo: %s\n", co_net_error());
        return 1;
    }
    printf("serving on 127.0.0.1:%d (Ctrl-C stops)\n", co_server_port(s));
    fflush(stdout);
    co_coro_t *sig = co_spawn(on_signal, s);
    co_server_serve(s);
    co_join(sig, -1, NULL);
    co_server_stats_t st;
    co_server_stats(s, &st);
    printf("served %llu connections\n", (unsigned long long)st.accepted);
    co_server_free(s);
    return 0;
}

/* Both in one process: the server on a thread of its own (its own hub),
 * the clients on the main thread. */
typedef struct {
    co_server_t *s;
    co_event_t ready, done;
} demo_t;

static void *server_thread(void *arg)
{
    demo_t *d = arg;
    co_server_opts_t o = {.host = "127.0.0.1", .port = 0, .backlog = 1024};
    d->s = co_server_new(upper_handler, NULL, &o);
    if (d->s) co_server_start(d->s);
    co_event_set(&d->ready);
    if (!d->s) return NULL;
    co_event_wait(&d->done, -1);
    co_server_stop(d->s, co_now() + 1000);
    co_server_free(d->s);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "server")) return serve(atoi(argv[2]));
    if (argc >= 3 && !strcmp(argv[1], "client")) return run_clients(atoi(argv[2]), argc > 3 ? atoi(argv[3]) : 500);
    if (argc != 1) {
        fprintf(stderr, "usage: %s [server PORT | client PORT [N]]\n", argv[0]);
        return 2;
    }
    static demo_t d;
    co_event_init(&d.ready);
    co_event_init(&d.done);
    pthread_t t;
    pthread_create(&t, NULL, server_thread, &d);
    co_event_wait(&d.ready, -1);
    if (!d.s) {
        fprintf(stderr, "upper_echo: %s\n", co_net_error());
        return 1;
    }
    int rc = run_clients(co_server_port(d.s), 500);
    co_event_set(&d.done);
    pthread_join(t, NULL);
    return rc;
}
