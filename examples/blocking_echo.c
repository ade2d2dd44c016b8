/* A server written with plain blocking calls — socket, accept, read,
 * usleep, write, close — and a coroutine per connection, as a gevent
 * program after monkey.patch_all.  Built twice from this one file:
 *
 *   blocking_echo            linked with libcogent-patch.so: the blocking
 *                            calls park their coroutine; 20 clients whose
 *                            requests each take 100 ms are served in ~0.1 s
 *   blocking_echo_unpatched  the same code without the patch: each call
 *                            blocks the thread; the same 20 take ~2 s
 *
 * (LD_PRELOAD=libcogent-patch.so does the same to a program built
 * without it.)  The clients run on the main thread with cogent's own
 * calls; the server runs on a thread of its own. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cogent.h"

enum { N = 20 };

/* ------------------------------------------- the unmodified blocking code */

static void *handle(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    usleep(100 * 1000); /* a slow backend */
    for (ssize_t i = 0; i < n; i++) buf[i] = (char)toupper((unsigned char)buf[i]);
    if (n > 0 && write(fd, buf, (size_t)n) != n) perror("write");
    close(fd);
    return NULL;
}

static atomic_int port_ready;

static void *server(void *arg)
{
    (void)arg;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 128) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) < 0) {
        perror("server");
        exit(1);
    }
    atomic_store(&port_ready, ntohs(a.sin_port));
    co_coro_t *hs[N];
    for (int i = 0; i < N; i++) {
        int c = accept(l, NULL, NULL);
        if (c < 0) {
            perror("accept");
            exit(1);
        }
        hs[i] = co_spawn(handle, (void *)(intptr_t)c);
    }
    co_joinall(hs, N, -1, NULL);
    close(l);
    return NULL;
}

/* ------------------------------------------------------------ clients */

static int port;

static void *client(void *arg)
{
    int *ok = arg;
    int fd = co_tcp_connect("127.0.0.1", port, co_now() + 10000);
    if (fd < 0) return NULL;
    char got[16] = {0};
    size_t n = 0;
    if (co_write(fd, "hello", 5, -1) == 5)
        while (n < 5) {
            ssize_t r = co_read(fd, got + n, 5 - n, co_now() + 10000);
            if (r <= 0) break;
            n += (size_t)r;
        }
    *ok = n == 5 && !memcmp(got, "HELLO", 5);
    co_close(fd);
    return NULL;
}

int main(void)
{
    pthread_t t;
    pthread_create(&t, NULL, server, NULL);
    while (!atomic_load(&port_ready)) co_sleep_ms(1);
    port = atomic_load(&port_ready);
    int ok[N] = {0};
    co_coro_t *cs[N];
    int64_t t0 = co_now();
    for (int i = 0; i < N; i++) cs[i] = co_spawn(client, &ok[i]);
    co_joinall(cs, N, -1, NULL);
    int64_t took = co_now() - t0;
    pthread_join(t, NULL);
    int good = 0;
    for (int i = 0; i < N; i++) good += ok[i];
    printf("%d requests of 100 ms each through a blocking server: %d answered correctly in %lld ms\n", N, good,
           (long long)took);
    return good == N ? 0 : 1;
}
