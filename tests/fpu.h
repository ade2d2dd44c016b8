/* Floating-point helpers for the tests that check what a switch does to
 * the FP environment (test_switch, test_fiber, test_coro).
 *
 * The flags are raised by real arithmetic: on x86-64, glibc's
 * feraiseexcept raises them on the x87 unit, which a switch that wrongly
 * saved and restored MXCSR's flags would not disturb. */
#ifndef COGENT_TEST_FPU_H
#define COGENT_TEST_FPU_H

#include <fenv.h>
#include <stdbool.h>
#include <stdio.h>

static volatile double fpu_sink __attribute__((unused));

static inline void fpu_raise_inexact(void)
{
    volatile double one = 1.0;
    fpu_sink = one / 3.0;
}

static inline void fpu_raise_divbyzero(void)
{
    volatile double zero = 0.0;
    fpu_sink = 1.0 / zero;
}

/* Whether this CPU (or emulator) records exception flags at all: valgrind
 * does not, and a test of where the flags go then has nothing to see. */
static inline bool fpu_flags_recorded(void)
{
    feclearexcept(FE_ALL_EXCEPT);
    fpu_raise_inexact();
    bool yes = fetestexcept(FE_INEXACT) != 0;
    feclearexcept(FE_ALL_EXCEPT);
    if (!yes) fprintf(stderr, "    (skipped: FP exception flags are not recorded here, e.g. under valgrind)\n");
    return yes;
}

#endif
