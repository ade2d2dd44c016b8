/* The echo load generator: C connections to 127.0.0.1:PORT, each doing
 * ping-pong with an M-byte message for T seconds; prints round trips per
 * second and p50/p99 latency.  Written with plain epoll (no cogent) so
 * that it drives every server the same way.
 *
 *   loadgen PORT C M T          ->  RESULT rps=... p50_us=... p99_us=... errors=...
 *   loadgen --hold PORT N       opens N connections, one ping-pong each,
 *                               prints "HELD n errors" and keeps them open
 *                               until stdin closes (for RSS per connection)
 *
 * Loopback only; bounded in time (T) and count (C <= 20000). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    size_t got;
    uint64_t start_ns;
} conn_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int tries = 0; connect(fd, (struct sockaddr *)&a, sizeof a) < 0; tries++) {
        if (errno != ECONNREFUSED && errno != EAGAIN && errno != ETIMEDOUT) return close(fd), -1;
        if (tries > 200) return close(fd), -1;
        usleep(10000); /* the backlog is full: a moment */
        close(fd);
        fd = socket(AF_INET, SOCK_STREAM, 0);
    }
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EAGAIN) {
                struct timespec ts = {0, 10000};
                nanosleep(&ts, NULL); /* rare: the message fits the socket buffer */
                continue;
            }
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void raise_nofile(size_t want)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int hold(int port, int n)
{
    raise_nofile((size_t)n + 64);
    char msg[64], back[64];
    memset(msg, 'h', sizeof msg);
    int errors = 0, held = 0;
    int *fds = calloc((size_t)n, sizeof *fds);
    for (int i = 0; i < n; i++) {
        fds[i] = dial(port);
        if (fds[i] < 0) {
            errors++;
            continue;
        }
        fcntl(fds[i], F_SETFL, 0); /* blocking: one ping-pong */
        size_t got = 0;
        if (send_all(fds[i], msg, sizeof msg) == 0)
            while (got < sizeof back) {
                ssize_t r = read(fds[i], back + got, sizeof back - got);
                if (r <= 0) break;
                got += (size_t)r;
            }
        if (got == sizeof back && !memcmp(msg, back, sizeof msg))
            held++;
        else
            errors++;
    }
    printf("HELD %d %d\n", held, errors);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {
    }
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) close(fds[i]);
    free(fds);
    return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--hold")) return hold(atoi(argv[2]), atoi(argv[3]));
    if (argc != 5) {
        fprintf(stderr, "usage: %s PORT C M T | --hold PORT N\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), c = atoi(argv[2]);
    size_t m = (size_t)atol(argv[3]);
    double t = atof(argv[4]);
    if (c < 1 || c > 20000 || m < 1 || m > (1u << 20) || t <= 0 || t > 600) {
        fprintf(stderr, "loadgen: C in 1..20000, M in 1..1MiB, T in (0, 600] s\n");
        return 2;
    }
    raise_nofile((size_t)c + 64);
    char *msg = malloc(m), *buf = malloc(1 << 16);
    for (size_t i = 0; i < m; i++) msg[i] = (char)('a' + i % 26);
    int ep = epoll_create1(0);
    conn_t *cs = calloc((size_t)c, sizeof *cs);
    for (int i = 0; i < c; i++) {
        cs[i].fd = dial(port);
        if (cs[i].fd < 0) {
            fprintf(stderr, "loadgen: cannot connect (%d of %d): %s\n", i, c, strerror(errno));
            return 1;
        }
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &e);
    }
    size_t cap = 1 << 22, nlat = 0;
    uint32_t *lat = malloc(cap * sizeof *lat);
    uint64_t errors = 0, done = 0;
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(t * 1e9);
    for (int i = 0; i < c; i++) {
        cs[i].start_ns = now_ns();
        if (send_all(cs[i].fd, msg, m) < 0) errors++;
    }
    struct epoll_event ev[256];
    uint64_t now = t0;
    while (now < end) {
        int n = epoll_wait(ep, ev, 256, 100);
        now = now_ns();
        for (int k = 0; k < n; k++) {
            conn_t *x = ev[k].data.ptr;
            ssize_t r = read(x->fd, buf, 1 << 16);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
                continue;
            }
            x->got += (size_t)r;
            if (x->got < m) continue;
            if (x->got > m) errors++; /* more than was sent */
            if (nlat < cap) lat[nlat++] = (uint32_t)((now - x->start_ns) / 1000);
            done++;
            x->got = 0;
            x->start_ns = now;
            if (now < end && send_all(x->fd, msg, m) < 0) errors++;
        }
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    uint32_t p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[nlat * 99 / 100] : 0;
    printf("RESULT rps=%.0f p50_us=%u p99_us=%u errors=%llu\n", (double)done / secs, p50, p99,
           (unsigned long long)errors);
    for (int i = 0; i < c; i++) close(cs[i].fd);
    free(cs);
    free(lat);
    free(msg);
    free(buf);
    close(ep);
    return errors ? 1 : 0;
}
