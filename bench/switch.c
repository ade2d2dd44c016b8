/* ns per fiber switch: two fibers ping-pong with co_fiber_switch.
 *   switch     no floating-point work anywhere
 *   switch_fp  the main fiber did an inexact operation before timing and
 *              does one per round trip; the peer does none (if both did,
 *              both would hold the same FP status flags, and a switch that
 *              wrongly saved and compared them would still look fast). */
#include <cogent.h>
#include <stdbool.h>
#include <stdint.h>

#include "bench.h"

static co_fiber_t *main_f, *peer;

static void *pong(co_fiber_t *self, void *v)
{
    (void)self;
    for (;;) v = co_fiber_switch(main_f, v);
    return NULL;
}

static double round_trips(long n, bool fp)
{
    double x = 1.0;
    if (fp) bench_fp_dirty();
    double t0 = bench_ns();
    void *v = NULL;
    for (long i = 0; i < n; i++) {
        if (fp) x = bench_fp_step(x);
        v = co_fiber_switch(peer, v);
    }
    double dt = bench_ns() - t0;
    bench_fp_sink = x + (double)(uintptr_t)v;
    return dt;
}

int main(int argc, char **argv)
{
    long n = bench_arg(argc, argv, 20000000);
    main_f = co_fiber_current();
    peer = co_fiber_new(pong, NULL, NULL);
    co_fiber_switch(peer, NULL); /* warm */
    /* Both timed before either result is computed: the division below is
     * itself an inexact operation. */
    double plain = round_trips(n, false);
    double fp = round_trips(n, true);
    BENCH_RESULT("switch", plain / ((double)n * 2), "ns/switch");
    BENCH_RESULT("switch_fp", fp / ((double)n * 2), "ns/switch");
    return 0;
}
