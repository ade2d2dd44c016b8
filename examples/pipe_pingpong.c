/* Pipe ping-pong between two processes (multiprocessing.Pipe).
 *
 * A duplex pipe: the parent keeps one end, the child the other.  They
 * bat a counter back and forth; then the parent sends one 8 MiB message
 * -- far more than the kernel's pipe buffer -- and the child echoes it
 * back whole while the parent is still sending (no deadlock whichever
 * side is slower).  Closing an end gives the other EOF (EPIPE). */
#include <cogent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static co_conn_t *ends[2];

static int child(void *arg)
{
    (void)arg;
    co_conn_close(ends[0]); /* the parent's end */
    co_conn_t *c = ends[1];
    void *m;
    size_t n;
    while (co_conn_recv(c, &m, &n, -1) == 0) {
        if (n == sizeof(int)) {
            int v;
            memcpy(&v, m, sizeof v);
            printf("  child %d got ping %d\n", (int)getpid(), v);
            fflush(stdout);
            v++;
            co_conn_send(c, &v, sizeof v, -1);
        } else {
            co_conn_send(c, m, n, -1); /* the big one, back */
        }
        free(m);
    }
    printf("  child: the parent closed its end (%s)\n", errno == EPIPE ? "EPIPE" : strerror(errno));
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines in order, also through a pipe */
    if (co_pipe(ends, true) < 0) return perror("co_pipe"), 1;
    co_process_t *p = co_process_new(child, NULL, NULL);
    co_process_start(p);
    co_conn_close(ends[1]); /* the child's end */
    co_conn_t *c = ends[0];
    int v = 0;
    int64_t t0 = co_now();
    for (int i = 0; i < 5; i++) {
        co_conn_send(c, &v, sizeof v, -1);
        void *m;
        size_t n;
        co_conn_recv(c, &m, &n, -1);
        memcpy(&v, m, sizeof v);
        free(m);
        printf("parent got pong %d\n", v);
        v++;
    }
    size_t big = 8u << 20;
    char *buf = malloc(big);
    for (size_t i = 0; i < big; i++) buf[i] = (char)(i * 13);
    co_conn_send(c, buf, big, -1);
    void *back;
    size_t n;
    co_conn_recv(c, &back, &n, -1);
    printf("8 MiB sent and echoed back %s (%lld ms in all)\n",
           n == big && !memcmp(back, buf, big) ? "intact" : "CORRUPT", (long long)(co_now() - t0));
    free(back);
    free(buf);
    co_conn_close(c);
    co_process_join(p, -1);
    co_process_free(p);
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
    return 0;
}
