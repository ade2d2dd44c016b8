/* Thread pool figures (a pool of 2 workers, as every peer's):
 *   pool_rtt_thread   submit -> result, one task at a time, from a thread
 *                     without a hub: ns per round trip
 *   pool_rtt_coro     the same from a coroutine (it parks; its hub waits)
 *   pool_throughput   1M trivial tasks submitted from one thread in
 *                     batches of 10,000 (submit the batch, then take every
 *                     result in order): tasks/s
 * Usage: bench_pool [figure [n]]; no figure runs them all. */
#include <cogent.h>
#include <stdint.h>
#include <string.h>

#include "bench.h"

#define BATCH 10000

static void *trivial(void *arg)
{
    return (void *)((intptr_t)arg + 1);
}

static co_pool_t *pool;
static long rounds;
static double rtt_ns;

static void rtt_loop(void)
{
    /* Warm up: the worker starts, caches fill. */
    for (long i = 0; i < 1000; i++) {
        co_future_t *f = co_pool_submit(pool, trivial, (void *)i, -1);
        co_future_result(f, -1, NULL);
        co_future_free(f);
    }
    double t0 = bench_ns();
    for (long i = 0; i < rounds; i++) {
        co_future_t *f = co_pool_submit(pool, trivial, (void *)i, -1);
        void *v;
        if (co_future_result(f, -1, &v) < 0 || (intptr_t)v != i + 1) abort();
        co_future_free(f);
    }
    rtt_ns = (bench_ns() - t0) / (double)rounds;
}

static void *rtt_coro(void *arg)
{
    (void)arg;
    rtt_loop();
    return NULL;
}

static void rtt(long n, bool coro)
{
    pool = co_pool_new(&(co_pool_opts_t){.max_workers = 2});
    rounds = n;
    if (coro)
        co_join(co_spawn(rtt_coro, NULL), -1, NULL);
    else
        rtt_loop();
    co_pool_free(pool);
    BENCH_RESULT(coro ? "pool_rtt_coro" : "pool_rtt_thread", rtt_ns, "ns/roundtrip");
}

static void throughput(long n)
{
    pool = co_pool_new(&(co_pool_opts_t){.max_workers = (size_t)(getenv("W") ? atoi(getenv("W")) : 2)});
    static co_future_t *fs[BATCH];
    double t0 = bench_ns();
    for (long done = 0; done < n; done += BATCH) {
        for (long i = 0; i < BATCH; i++) fs[i] = co_pool_submit(pool, trivial, (void *)(done + i), -1);
        for (long i = 0; i < BATCH; i++) {
            void *v;
            if (co_future_result(fs[i], -1, &v) < 0 || (intptr_t)v != done + i + 1) abort();
            co_future_free(fs[i]);
        }
    }
    double dt = bench_ns() - t0;
    co_pool_free(pool);
    BENCH_RESULT("pool_throughput", (double)n / (dt / 1e9), "tasks/s");
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    long n = argc > 2 ? atol(argv[2]) : 0;
    bool all = !strcmp(what, "all");
    if (all || !strcmp(what, "rtt_thread")) rtt(n ? n : 100000, false);
    if (all || !strcmp(what, "rtt_coro")) rtt(n ? n : 100000, true);
    if (all || !strcmp(what, "throughput")) throughput(n ? n : 1000000);
    return 0;
}
