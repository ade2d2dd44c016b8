/* What a switch costs a compact coroutine (docs/stacks.md), as a round
 * trip of two coroutines yielding through the run queue (hub_yield's
 * shape), by how much stack each has live when it yields:
 *   compact_yield_<L>   two compact coroutines, L bytes of frames each
 *                       (64, 256, 1k, 4k): every switch copies one out
 *                       and the other back
 *   compact_own_yield   a compact coroutine and one with a stack of its
 *                       own (256 bytes live): no copy, the compact one
 *                       keeps the shared stack while the other runs
 *   own_yield_<L>       two with stacks of their own, the same frames
 *                       (the reference: hub_yield with L bytes live)
 *   compact_yield_fp    compact_yield_256 with floating-point work */
#include <cogent.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "bench.h"

static long rounds;

typedef struct spec {
    size_t live;
    const bench_fp_t *fp; /* NULL: no FP work */
} spec_t;

/* Keeps `live` bytes of frame alive across every yield (the compiler
 * cannot drop a buffer whose address escapes to an opaque call). */
static __attribute__((noinline)) void yield_with(const spec_t *s)
{
    char *frame = __builtin_alloca(s->live);
    memset(frame, 1, s->live);
    __asm__ volatile("" : : "r"(frame) : "memory");
    double x = 1.0;
    for (long i = 0; i < rounds; i++) {
        if (s->fp) x = bench_fp_step_as(x, s->fp);
        co_yield_now();
    }
    bench_fp_sink = x + frame[s->live - 1];
}

static void *yielder(void *arg)
{
    yield_with(arg);
    return NULL;
}

static double pair(const spec_t *a, const spec_t *b, co_compact_t ka, co_compact_t kb)
{
    co_coro_t *x = co_spawn_with(yielder, (void *)a, &(co_spawn_opts_t){.compact = ka});
    co_coro_t *y = co_spawn_with(yielder, (void *)b, &(co_spawn_opts_t){.compact = kb});
    if (!x || !y) perror("spawn"), exit(1);
    double t0 = bench_ns();
    co_join(x, -1, NULL);
    co_join(y, -1, NULL);
    return (bench_ns() - t0) / (double)rounds;
}

int main(int argc, char **argv)
{
    rounds = bench_arg(argc, argv, 2000000);
    static const size_t sizes[] = {64, 256, 1024, 4096};
    static const char *names[] = {"64", "256", "1k", "4k"};
    double compact[4], own[4];
    for (int i = 0; i < 4; i++) {
        spec_t s = {sizes[i], NULL};
        compact[i] = pair(&s, &s, CO_COMPACT_YES, CO_COMPACT_YES);
        own[i] = pair(&s, &s, CO_COMPACT_NO, CO_COMPACT_NO);
    }
    spec_t s256 = {256, NULL};
    double mixed = pair(&s256, &s256, CO_COMPACT_YES, CO_COMPACT_NO);
    bench_fp_clean();
    spec_t fa = {256, &bench_fp_inexact}, fb = {256, &bench_fp_exact};
    bench_fp_dirty();
    double fp = pair(&fa, &fb, CO_COMPACT_YES, CO_COMPACT_YES);
    char name[64];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "compact_yield_%s", names[i]);
        BENCH_RESULT(name, compact[i], "ns/roundtrip");
        snprintf(name, sizeof name, "own_yield_%s", names[i]);
        BENCH_RESULT(name, own[i], "ns/roundtrip");
    }
    BENCH_RESULT("compact_own_yield", mixed, "ns/roundtrip");
    BENCH_RESULT("compact_yield_fp", fp, "ns/roundtrip");
    return 0;
}
