/* The raw context switch: values both ways, callee-saved registers and
 * FPU control words preserved, FP exception flags left to the thread,
 * stack alignment at entry. */
#include <fenv.h>
#include <stdint.h>
#include <sys/mman.h>

#include "arch.h"
#include "fpu.h"
#include "harness.h"

static void *main_sp, *ctx_sp;
static uintptr_t seen_align;
static int rounding_inside;

static void entry(void *arg, void *value)
{
    int *counter = arg;
    char probe __attribute__((aligned(16)));
    (void)probe;
    seen_align = (uintptr_t)__builtin_frame_address(0);
    rounding_inside = fegetround();
    /* Values both ways, many times. */
    for (intptr_t i = (intptr_t)value;; i += 2) {
        (*counter)++;
        void *back = co__switch(&ctx_sp, main_sp, (void *)(i + 1), 0);
        ASSERT_EQ((intptr_t)back, i + 2);
    }
}

static void test_values_both_ways(void)
{
    size_t size = 64 * 1024;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(stack != MAP_FAILED);
    int counter = 0;
    ctx_sp = co__ctx_init(stack, size, entry, &counter);
    void *v = co__switch(&main_sp, ctx_sp, (void *)(intptr_t)0, 0);
    ASSERT_EQ((intptr_t)v, 1);
    for (intptr_t i = 2; i < 2000; i += 2) {
        v = co__switch(&main_sp, ctx_sp, (void *)i, 0);
        ASSERT_EQ((intptr_t)v, i + 1);
    }
    ASSERT_EQ(counter, 1000);
    /* The first frame starts 16-byte aligned as the ABI wants. */
    ASSERT_EQ(seen_align % 16, 0);
    munmap(stack, size);
}

/* Callee-saved registers survive a switch: compute with many live values
 * across switches and compare with the same computation without them. */
static void *regs_main, *regs_ctx;
volatile double switch_junk;
static void regs_entry(void *arg, void *value)
{
    (void)arg;
    for (;;) {
        /* Clobber as much as the compiler will let us. */
        for (int i = 0; i < 16; i++) switch_junk += i * (double)(intptr_t)value;
        value = co__switch(&regs_ctx, regs_main, value, 0);
    }
}

static void test_callee_saved_preserved(void)
{
    size_t size = 64 * 1024;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(stack != MAP_FAILED);
    regs_ctx = co__ctx_init(stack, size, regs_entry, NULL);
    uint64_t a = 1, b = 2, c = 3, d = 5, e = 8, f = 13, g = 21, h = 34;
    double x = 1.5, y = 2.5, z = 3.5;
    uint64_t ra = 1, rb = 2, rc = 3, rd = 5, re = 8, rf = 13, rg = 21, rh = 34;
    double rx = 1.5, ry = 2.5, rz = 3.5;
    for (int i = 0; i < 1000; i++) {
        co__switch(&regs_main, regs_ctx, (void *)(intptr_t)i, 0);
        a = a * 3 + b;
        b ^= c << 1;
        c += d;
        d = d * 7 + e;
        e -= f;
        f += g * 3;
        g ^= h;
        h += a;
        x = x * 1.0001 + y;
        y -= z * 0.5;
        z += x * 0.25;
        ra = ra * 3 + rb;
        rb ^= rc << 1;
        rc += rd;
        rd = rd * 7 + re;
        re -= rf;
        rf += rg * 3;
        rg ^= rh;
        rh += ra;
        rx = rx * 1.0001 + ry;
        ry -= rz * 0.5;
        rz += rx * 0.25;
        __asm__ volatile("" ::: "memory");
    }
    ASSERT(a == ra && b == rb && c == rc && d == rd && e == re && f == rf && g == rg && h == rh);
    ASSERT(x == rx && y == ry && z == rz);
    munmap(stack, size);
}

/* The rounding mode is part of the saved context. */
static void *fe_main, *fe_ctx;
static int fe_seen;
static void fe_entry(void *arg, void *value)
{
    (void)arg;
    (void)value;
    for (;;) {
        fe_seen = fegetround();
        fesetround(FE_TOWARDZERO); /* the context's own mode */
        co__switch(&fe_ctx, fe_main, NULL, 0);
    }
}

static void test_fpu_control_saved(void)
{
    size_t size = 64 * 1024;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(stack != MAP_FAILED);
    fesetround(FE_UPWARD);
    fe_ctx = co__ctx_init(stack, size, fe_entry, NULL); /* inherits FE_UPWARD */
    co__switch(&fe_main, fe_ctx, NULL, 0);
    ASSERT_EQ(fe_seen, FE_UPWARD);
    ASSERT_EQ(fegetround(), FE_UPWARD); /* its FE_TOWARDZERO did not leak out */
    fesetround(FE_DOWNWARD);
    co__switch(&fe_main, fe_ctx, NULL, 0);
    ASSERT_EQ(fe_seen, FE_TOWARDZERO); /* and ours did not leak in */
    ASSERT_EQ(fegetround(), FE_DOWNWARD);
    fesetround(FE_TONEAREST);
    munmap(stack, size);
}

/* ------------------------------------------- FP status flags are the thread's
 * The exception flags (MXCSR bits 0-5 on x86-64, FPSR on aarch64) are not
 * part of a context: a switch neither saves nor restores them, so each
 * side sees exactly what the thread has raised so far, and a context
 * whose flags differ from another's costs nothing extra to switch to
 * (co__fpu_loads counts the switches that had to load FP control state). */
enum { FP_NOTHING, FP_INEXACT, FP_CLEAR };
static void *fl_main, *fl_ctx;
static int fl_seen, fl_round;
static void fl_entry(void *arg, void *value)
{
    (void)arg;
    for (;;) {
        fl_seen = fetestexcept(FE_ALL_EXCEPT); /* what the thread holds on arrival */
        fl_round = fegetround();
        if ((intptr_t)value == FP_INEXACT) fpu_raise_inexact();
        if ((intptr_t)value == FP_CLEAR) feclearexcept(FE_ALL_EXCEPT);
        value = co__switch(&fl_ctx, fl_main, NULL, 0);
    }
}

static void test_fpu_flags_follow_thread(void)
{
    if (!fpu_flags_recorded()) return;
    size_t size = 64 * 1024;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(stack != MAP_FAILED);
    fesetround(FE_TONEAREST);
    feclearexcept(FE_ALL_EXCEPT);
    fpu_raise_divbyzero();
    fl_ctx = co__ctx_init(stack, size, fl_entry, NULL); /* made while a flag is up */
    feclearexcept(FE_ALL_EXCEPT);
    unsigned long loads = co__fpu_loads;

    /* A fresh context does not bring back the flags of its creator. */
    co__switch(&fl_main, fl_ctx, (void *)FP_INEXACT, 0);
    ASSERT_EQ(fl_seen, 0);
    /* What it raised is the thread's: visible here. */
    ASSERT_EQ(fetestexcept(FE_ALL_EXCEPT), FE_INEXACT);
    /* Cleared here: it does not see its own stale FE_INEXACT. */
    feclearexcept(FE_ALL_EXCEPT);
    co__switch(&fl_main, fl_ctx, (void *)FP_NOTHING, 0);
    ASSERT_EQ(fl_seen, 0);
    ASSERT_EQ(fetestexcept(FE_ALL_EXCEPT), 0);
    /* Raised here, seen there; cleared there, gone here. */
    fpu_raise_divbyzero();
    co__switch(&fl_main, fl_ctx, (void *)FP_CLEAR, 0);
    ASSERT_EQ(fl_seen, FE_DIVBYZERO);
    ASSERT_EQ(fetestexcept(FE_ALL_EXCEPT), 0);
    /* The flags differed at every one of those switches, the control
     * state never: nothing was loaded. */
    ASSERT_EQ(co__fpu_loads - loads, 0);

    /* Different control state: the slow path loads the target's rounding
     * mode and still leaves the flags alone. */
    fesetround(FE_UPWARD);
    fpu_raise_divbyzero();
    co__switch(&fl_main, fl_ctx, (void *)FP_INEXACT, 0);
    ASSERT_EQ(fl_seen, FE_DIVBYZERO);
    ASSERT_EQ(fl_round, FE_TONEAREST); /* its own mode, not ours */
    ASSERT_EQ(fetestexcept(FE_ALL_EXCEPT), FE_DIVBYZERO | FE_INEXACT);
    ASSERT_EQ(fegetround(), FE_UPWARD);
    ASSERT_EQ(co__fpu_loads - loads, 2); /* there and back */

    /* Many switches while the flags keep changing on both sides. */
    fesetround(FE_TONEAREST);
    loads = co__fpu_loads;
    for (int i = 0; i < 100; i++) {
        feclearexcept(FE_ALL_EXCEPT);
        co__switch(&fl_main, fl_ctx, (void *)(intptr_t)(i % 2 ? FP_INEXACT : FP_CLEAR), 0);
        ASSERT_EQ(fl_seen, 0);
        ASSERT_EQ(fetestexcept(FE_ALL_EXCEPT), i % 2 ? FE_INEXACT : 0);
    }
    ASSERT_EQ(co__fpu_loads - loads, 0);
    feclearexcept(FE_ALL_EXCEPT);
    munmap(stack, size);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_values_both_ways);
    RUN(test_callee_saved_preserved);
    RUN(test_fpu_control_saved);
    RUN(test_fpu_flags_follow_thread);
    return TEST_MAIN_END();
}
