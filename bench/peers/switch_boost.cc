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

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000000;
    size_t size = 64 * 1024;
    char *stack = (char *)mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ctx::fcontext_t c = ctx::make_fcontext(stack + size, size, pong);
    ctx::transfer_t t = ctx::jump_fcontext(c, nullptr);
    double t0 = now_ns();
    for (long i = 0; i < n; i++) t = ctx::jump_fcontext(t.fctx, t.data);
    double dt = now_ns() - t0;
    printf("RESULT switch_boost %.3f ns/switch\n", dt / (n * 2.0));
    return 0;
}
