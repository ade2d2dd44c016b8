/* ns per round trip of coroutines yielding through the run queue:
 *   hub_yield       two spawned coroutines, yielding from the same call site
 *   hub_yield_main  the main coroutine and one spawned coroutine, yielding
 *                   from two different call sites (as real programs do:
 *                   docs/internals.md says why that costs more)
 *   *_fp            the same with floating-point work (bench.h): the main
 *                   coroutine did an inexact operation before timing, and
 *                   one side does one per round trip (only one: see
 *                   switch.c). */
#include <cogent.h>
#include <stdbool.h>
#include <stdint.h>

#include "bench.h"

static long rounds;

static void *yielder(void *arg)
{
    (void)arg;
    for (long i = 0; i < rounds; i++) co_yield_now();
    return NULL;
}

/* yielder, with an FP step between yields: inexact or exact as arg says
 * (bench.h).  Both sides of hub_yield_fp run this one function, so that
 * they yield from the same call site, as in hub_yield. */
static void *fp_yielder(void *arg)
{
    double x = 1.0;
    for (long i = 0; i < rounds; i++) {
        x = bench_fp_step_as(x, arg);
        co_yield_now();
    }
    bench_fp_sink = x;
    return NULL;
}

/* Two spawned coroutines alternate while main waits in co_join. */
static double two_spawned(bool fp)
{
    if (fp) bench_fp_clean();
    co_coro_t *a = fp ? co_spawn(fp_yielder, (void *)&bench_fp_inexact) : co_spawn(yielder, NULL);
    co_coro_t *b = fp ? co_spawn(fp_yielder, (void *)&bench_fp_exact) : co_spawn(yielder, NULL);
    if (fp) bench_fp_dirty();
    double t0 = bench_ns();
    co_join(a, -1, NULL); /* main parks; a and b alternate */
    co_join(b, -1, NULL);
    return bench_ns() - t0;
}

/* Main and one spawned coroutine alternate. */
static double main_and_spawned(bool fp)
{
    double x = 1.0;
    if (fp) bench_fp_clean();
    co_coro_t *a = co_spawn(yielder, NULL);
    co_yield_now(); /* a starts and stops at its first yield */
    if (fp) bench_fp_dirty();
    double t0 = bench_ns();
    for (long i = 0; i < rounds; i++) {
        if (fp) x = bench_fp_step(x);
        co_yield_now(); /* the last one lets a finish */
    }
    double dt = bench_ns() - t0;
    co_join(a, -1, NULL);
    bench_fp_sink = x;
    return dt;
}

int main(int argc, char **argv)
{
    rounds = bench_arg(argc, argv, 10000000);
    /* All timed before any result is computed: the divisions below are
     * inexact operations themselves. */
    double two = two_spawned(false);
    double with_main = main_and_spawned(false);
    double two_fp = two_spawned(true);
    double with_main_fp = main_and_spawned(true);
    /* A round trip = one side yields to the other and it yields back. */
    BENCH_RESULT("hub_yield", two / (double)rounds, "ns/roundtrip");
    BENCH_RESULT("hub_yield_main", with_main / (double)rounds, "ns/roundtrip");
    BENCH_RESULT("hub_yield_fp", two_fp / (double)rounds, "ns/roundtrip");
    BENCH_RESULT("hub_yield_main_fp", with_main_fp / (double)rounds, "ns/roundtrip");
    return 0;
}
