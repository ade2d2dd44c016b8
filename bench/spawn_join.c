/* ns per spawn + run + join of trivial coroutines, stack cache warm:
 * batches of 100 spawned, then joined, 1M in all. */
#include <cogent.h>
#include <stdint.h>

#include "bench.h"

#define BATCH 100

static void *trivial(void *arg)
{
    return arg;
}

int main(int argc, char **argv)
{
    long n = bench_arg(argc, argv, 1000000);
    co_coro_t *cs[BATCH];
    for (int i = 0; i < BATCH; i++) cs[i] = co_spawn(trivial, NULL); /* warm the caches */
    co_joinall(cs, BATCH, -1, NULL);
    double t0 = bench_ns();
    uintptr_t sum = 0;
    for (long done = 0; done < n; done += BATCH) {
        for (intptr_t i = 0; i < BATCH; i++) cs[i] = co_spawn(trivial, (void *)i);
        for (int i = 0; i < BATCH; i++) {
            void *r;
            co_join(cs[i], -1, &r);
            sum += (uintptr_t)r;
        }
    }
    double dt = bench_ns() - t0;
    BENCH_RESULT("spawn_join", dt / (double)n, "ns/coroutine");
    return sum == 0;
}
