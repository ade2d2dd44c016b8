/* Shared by the benchmark programs: a nanosecond clock and the one-line
 * result format run.sh parses: "RESULT <name> <value> <unit>". */
#ifndef COGENT_BENCH_H
#define COGENT_BENCH_H

#include <fenv.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline long bench_arg(int argc, char **argv, long dflt)
{
    return argc > 1 ? atol(argv[1]) : dflt;
}

#define BENCH_RESULT(name, value, unit) printf("RESULT %s %.3f %s\n", (name), (double)(value), (unit))

/* The *_fp figures: the same measurement while the program does
 * floating-point work, as most real programs do.  One inexact
 * multiply-add per step raises FE_INEXACT in MXCSR (FPSR on aarch64).
 * A switch that saved those status flags per context, compared them and
 * reloaded them when they differed (as cogent's did) got slow once two
 * contexts held different flags: typically coroutines made before the
 * program's first inexact operation (they hold none) and the ones that
 * computed since.  Each FP figure sets that up: clear flags
 * (bench_fp_clean), make the coroutines or fibers, an inexact operation
 * in the main one (bench_fp_dirty), then time.  An honest switch costs
 * the same with or without it. */
static inline double bench_fp_step(double x)
{
    return x * 1.0000001 + 1.0 / 3.0;
}

/* For two coroutines running one function, only one of which computes:
 * the same multiply-add on both, exact (raising no flag) for the one
 * given bench_fp_exact.  A branch instead would let the compiler split the
 * loop in two (-O3 unswitching) and give the two sides different call
 * sites, which costs more than the switch itself (docs/internals.md). */
typedef struct bench_fp {
    double mul, add;
} bench_fp_t;
static const bench_fp_t bench_fp_inexact __attribute__((unused)) = {1.0000001, 1.0 / 3.0};
static const bench_fp_t bench_fp_exact __attribute__((unused)) = {1.0, 0.0};
static inline double bench_fp_step_as(double x, const bench_fp_t *how)
{
    return x * how->mul + how->add;
}

/* The state of a program that has not computed anything yet. */
static inline void bench_fp_clean(void)
{
    feclearexcept(FE_ALL_EXCEPT);
}

/* One inexact operation in the calling context before timing starts, as
 * a program that once converted a time to seconds has done. */
static inline void bench_fp_dirty(void)
{
    volatile double one = 1.0;
    volatile double third = one / 3.0;
    (void)third;
}

/* Where the FP work's result goes, so that it is not optimised away. */
static volatile double bench_fp_sink __attribute__((unused));

#endif
