/* ns per fiber switch: two fibers ping-pong with co_fiber_switch. */
#include <cogent.h>
#include <stdint.h>

#include "bench.h"

static co_fiber_t *main_f, *peer;

static void *pong(co_fiber_t *self, void *v)
{
    (void)self;
    for (;;) v = co_fiber_switch(main_f, v);
    return NULL;
}

int main(int argc, char **argv)
{
    long n = bench_arg(argc, argv, 20000000);
    main_f = co_fiber_current();
    peer = co_fiber_new(pong, NULL, NULL);
    co_fiber_switch(peer, NULL); /* warm */
    double t0 = bench_ns();
    void *v = NULL;
    for (long i = 0; i < n; i++) v = co_fiber_switch(peer, v);
    double dt = bench_ns() - t0;
    BENCH_RESULT("switch", dt / ((double)n * 2), "ns/switch");
    return v != NULL;
}
