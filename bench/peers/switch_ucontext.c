/* Peer for bench/switch.c: glibc's swapcontext (saves the signal mask:
 * a system call per switch). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <ucontext.h>

static ucontext_t main_uc, peer_uc;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void pong(void)
{
    for (;;) swapcontext(&peer_uc, &main_uc);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    static char stack[64 * 1024];
    getcontext(&peer_uc);
    peer_uc.uc_stack.ss_sp = stack;
    peer_uc.uc_stack.ss_size = sizeof stack;
    peer_uc.uc_link = NULL;
    makecontext(&peer_uc, pong, 0);
    swapcontext(&main_uc, &peer_uc);
    double t0 = now_ns();
    for (long i = 0; i < n; i++) swapcontext(&main_uc, &peer_uc);
    double dt = now_ns() - t0;
    printf("RESULT switch_ucontext %.3f ns/switch\n", dt / ((double)n * 2));
    return 0;
}
