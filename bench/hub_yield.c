/* ns per round trip of two coroutines yielding through the run queue. */
#include <cogent.h>
#include <stdint.h>

#include "bench.h"

static long rounds;

static void *yielder(void *arg)
{
    (void)arg;
    for (long i = 0; i < rounds; i++) co_yield_now();
    return NULL;
}

int main(int argc, char **argv)
{
    rounds = bench_arg(argc, argv, 10000000);
    co_coro_t *a = co_spawn(yielder, NULL), *b = co_spawn(yielder, NULL);
    double t0 = bench_ns();
    co_join(a, -1, NULL); /* main parks; a and b alternate */
    co_join(b, -1, NULL);
    double dt = bench_ns() - t0;
    /* A round trip = a yields to b and b yields back to a. */
    BENCH_RESULT("hub_yield", dt / (double)rounds, "ns/roundtrip");
    return 0;
}
