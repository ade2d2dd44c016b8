/* A timeout around unmodified library code: libpq's blocking
 * PQconnectdb, under libcogent-patch.so, against a "database" that
 * accepts connections and never answers (a stalled server, here a
 * coroutine).  Without the scope the call hangs for good (libpq's own
 * connect_timeout is off); inside a 100 ms scope its poll() fails with
 * ETIMEDOUT and libpq gives up with an error, like gevent.Timeout around
 * a psycopg2 call.
 *
 *   scope_libpq [MS]      (100 by default) */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

#include "cogent.h"

/* Accepts and reads, never answers. */
static void *stalled_server(void *arg)
{
    int lfd = *(int *)arg;
    for (;;) {
        int fd = co_accept(lfd, NULL, NULL, -1);
        if (fd < 0) return NULL; /* killed */
        char buf[512];
        while (co_read(fd, buf, sizeof buf, -1) > 0) {
        }
        co_close(fd);
    }
}

int main(int argc, char **argv)
{
    int ms = argc > 1 ? atoi(argv[1]) : 100;
    int lfd = co_tcp_listen("127.0.0.1", 0, NULL);
    co_coro_t *srv = co_spawn(stalled_server, &lfd);
    char conninfo[128];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=app user=app connect_timeout=0",
             co_socket_port(lfd));

    co_scope_t scope;
    int64_t t0 = co_now();
    co_scope_enter(&scope, t0 + ms);
    PGconn *conn = PQconnectdb(conninfo); /* plain libpq: blocking calls inside */
    bool expired = co_scope_leave(&scope);
    long took = (long)(co_now() - t0);

    int ok = PQstatus(conn) == CONNECTION_OK;
    printf("PQconnectdb %s after %ld ms (scope of %d ms %s)\n", ok ? "connected" : "failed", took, ms,
           expired ? "expired" : "not expired");
    if (!ok) printf("libpq says: %s", PQerrorMessage(conn));
    PQfinish(conn);
    co_kill(srv);
    co_join(srv, -1, NULL);
    co_close(lfd);
    return ok || !expired ? 1 : 0;
}
