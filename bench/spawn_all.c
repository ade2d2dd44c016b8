/* The shapes users write (gevent's spawn-a-list-then-joinall):
 *   spawn_all_<N>   N trivial coroutines spawned first, then all joined
 *                   (co_joinall): ns per coroutine, cold start each run;
 *   release_all     1M coroutines blocked on one event, then the event set
 *                   and all joined: ms for the release and the joins.
 * Usage: bench_spawn_all [N ...]   (default 1000 10000 100000 1000000) */
#include <cogent.h>
#include <stdint.h>
#include <stdlib.h>

#include "bench.h"

static void *trivial(void *arg)
{
    return arg;
}

static co_event_t gate = CO_EVENT_INIT;

static void *blocked(void *arg)
{
    co_event_wait(&gate, -1);
    return arg;
}

static double spawn_all(long n)
{
    co_coro_t **cs = malloc((size_t)n * sizeof *cs);
    if (!cs) abort();
    double t0 = bench_ns();
    for (long i = 0; i < n; i++) cs[i] = co_spawn(trivial, (void *)(intptr_t)i);
    if (co_joinall(cs, (size_t)n, -1, NULL) != 0) abort();
    double dt = bench_ns() - t0;
    free(cs);
    return dt;
}

static double release_all(long n)
{
    co_coro_t **cs = malloc((size_t)n * sizeof *cs);
    if (!cs) abort();
    for (long i = 0; i < n; i++) cs[i] = co_spawn(blocked, (void *)(intptr_t)i);
    co_sleep_ms(1); /* every one runs until it blocks on the gate */
    double t0 = bench_ns();
    co_event_set(&gate);
    if (co_joinall(cs, (size_t)n, -1, NULL) != 0) abort();
    double dt = bench_ns() - t0;
    co_event_clear(&gate);
    free(cs);
    return dt;
}

int main(int argc, char **argv)
{
    long sizes[8] = {1000, 10000, 100000, 1000000};
    int nsizes = 4;
    if (argc > 1) {
        nsizes = 0;
        for (int i = 1; i < argc && nsizes < 8; i++) sizes[nsizes++] = atol(argv[i]);
    }
    char name[64];
    for (int i = 0; i < nsizes; i++) {
        double dt = spawn_all(sizes[i]);
        snprintf(name, sizeof name, "spawn_all_%ld", sizes[i]);
        BENCH_RESULT(name, dt / (double)sizes[i], "ns/coroutine");
    }
    BENCH_RESULT("release_all", release_all(1000000) / 1e6, "ms");
    return 0;
}
