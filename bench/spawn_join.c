/* ns per spawn + run + join of trivial coroutines, stack cache warm:
 * batches of 100 spawned, then joined, 1M in all.
 *   spawn_join     no floating-point work
 *   spawn_join_fp  the main coroutine did an inexact operation before
 *                  timing, and each coroutine does one.
 * bench_spawn_join [n], or bench_spawn_join plain n: only the first (run.sh
 * counts its instructions under callgrind). */
#include <cogent.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "bench.h"

#define BATCH 100

static void *trivial(void *arg)
{
    return arg;
}

static void *trivial_fp(void *arg)
{
    double x = bench_fp_step((double)(intptr_t)arg);
    return (void *)(intptr_t)(x > 0); /* 1 */
}

static uintptr_t sum;

static double spawn_join(long n, void *(*fn)(void *))
{
    co_coro_t *cs[BATCH];
    double t0 = bench_ns();
    for (long done = 0; done < n; done += BATCH) {
        for (intptr_t i = 0; i < BATCH; i++) cs[i] = co_spawn(fn, (void *)i);
        for (int i = 0; i < BATCH; i++) {
            void *r;
            co_join(cs[i], -1, &r);
            sum += (uintptr_t)r;
        }
    }
    return bench_ns() - t0;
}

int main(int argc, char **argv)
{
    bool only_plain = argc > 2 && !strcmp(argv[1], "plain");
    long n = only_plain ? atol(argv[2]) : bench_arg(argc, argv, 1000000);
    co_coro_t *cs[BATCH];
    for (int i = 0; i < BATCH; i++) cs[i] = co_spawn(trivial, NULL); /* warm the caches */
    co_joinall(cs, BATCH, -1, NULL);
    /* Both timed before either result is computed (the divisions are
     * inexact operations themselves). */
    double plain = spawn_join(n, trivial);
    if (only_plain) return sum == 0;
    bench_fp_dirty();
    double fp = spawn_join(n, trivial_fp);
    BENCH_RESULT("spawn_join", plain / (double)n, "ns/coroutine");
    BENCH_RESULT("spawn_join_fp", fp / (double)n, "ns/coroutine");
    return sum == 0;
}
