/* Load generator for the TLS echo figure: C connections (TLS, or plain
 * with no CA given), each sending a 64-byte message and reading the echo
 * back, as fast as it can, for SECONDS.  Connections and handshakes are
 * made first; then it samples the server's CPU time (utime + stime of
 * /proc/PID/stat), runs, and samples again, so the figure is the steady
 * state.  Prints one JSON line.
 *
 *   bench_tls_loadgen PORT PID C SECONDS [CAFILE] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cogent.h"

static int port, conns;
static int64_t stop_at = -1;
static long trips;
static co_tls_ctx_t *ctx;
static co_event_t go;
static int ready, failed;

static void *client(void *arg)
{
    (void)arg;
    int fd = co_tcp_connect("127.0.0.1", port, co_now() + 20000);
    co_tls_t *s = NULL;
    if (fd >= 0 && ctx) s = co_tls_connect(ctx, fd, "localhost", co_now() + 20000);
    if (fd < 0 || (ctx && !s)) {
        failed++;
        ready++;
        if (fd >= 0) co_close(fd);
        return NULL;
    }
    ready++;
    co_event_wait(&go, -1);
    char msg[64], back[64];
    memset(msg, 'a', sizeof msg);
    while (co_now() < stop_at) {
        ssize_t w = s ? co_tls_write(s, msg, sizeof msg, -1) : co_write(fd, msg, sizeof msg, -1);
        if (w != (ssize_t)sizeof msg) break;
        size_t got = 0;
        while (got < sizeof back) {
            ssize_t n =
                s ? co_tls_read(s, back + got, sizeof back - got, -1) : co_read(fd, back + got, sizeof back - got, -1);
            if (n <= 0) goto out;
            got += (size_t)n;
        }
        trips++;
    }
out:
    co_tls_free(s, false);
    co_close(fd);
    return NULL;
}

static long cpu_ticks(int pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    long ut = 0, st = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &ut, &st) != 2) return -1;
    return ut + st;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bench_tls_loadgen PORT PID C SECONDS [CAFILE]\n");
        return 2;
    }
    port = atoi(argv[1]);
    int pid = atoi(argv[2]);
    conns = atoi(argv[3]);
    int secs = atoi(argv[4]);
    if (argc > 5 && !(ctx = co_tls_ctx_new(&(co_tls_ctx_opts_t){.ca_file = argv[5]}))) {
        fprintf(stderr, "%s\n", co_tls_error());
        return 1;
    }
    co_event_init(&go);
    co_coro_t **cs = calloc((size_t)conns, sizeof *cs);
    for (int i = 0; i < conns; i++) cs[i] = co_spawn(client, NULL);
    while (ready < conns) co_sleep_ms(10);
    long t0 = cpu_ticks(pid);
    int64_t start = co_now();
    stop_at = start + secs * 1000;
    co_event_set(&go);
    co_joinall(cs, (size_t)conns, -1, NULL);
    double wall = (double)(co_now() - start) / 1000.0;
    long t1 = cpu_ticks(pid);
    double cpu_us = (double)(t1 - t0) * 1e6 / (double)sysconf(_SC_CLK_TCK);
    printf(
        "{\"conns\": %d, \"failed\": %d, \"round_trips\": %ld, \"rt_per_s\": %.0f, \"server_cpu_us_per_rt\": %.2f}\n",
        conns, failed, trips, (double)trips / wall, trips ? cpu_us / (double)trips : 0.0);
    free(cs);
    co_tls_ctx_free(ctx);
    return failed ? 1 : 0;
}
