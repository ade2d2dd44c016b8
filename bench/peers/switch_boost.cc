// Peer for bench/switch.c: Boost.Context's fcontext (the assembly under
// boost::context), ping-pong between main and one context.
#include <boost/context/detail/fcontext.hpp>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sys/mman.h>

namespace ctx = boost::context::detail;

static double now_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void pong(ctx::transfer_t t)
{
    for (;;) t = ctx::jump_fcontext(t.fctx, t.data);
}

// The switch_fp variant of bench/switch.c: the main side did an inexact
// operation before timing and does one per round trip, the peer none.
static volatile double sink;
static double fp_step(double x)
{
    return x * 1.0000001 + 1.0 / 3.0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000000;
    size_t size = 64 * 1024;
    char *stack = (char *)mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ctx::fcontext_t c = ctx::make_fcontext(stack + size, size, pong);
    ctx::transfer_t t = ctx::jump_fcontext(c, nullptr);
    double t0 = now_ns();
    for (long i = 0; i < n; i++) t = ctx::jump_fcontext(t.fctx, t.data);
    double plain = now_ns() - t0;
    volatile double one = 1.0;
    sink = one / 3.0;
    double x = 1.0;
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
        x = fp_step(x);
        t = ctx::jump_fcontext(t.fctx, t.data);
    }
    double fp = now_ns() - t0;
    sink = x;
    printf("RESULT switch_boost %.3f ns/switch\n", plain / (n * 2.0));
    printf("RESULT switch_boost_fp %.3f ns/switch\n", fp / (n * 2.0));
    return 0;
}
