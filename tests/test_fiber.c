/* Fibers (greenlet): values both ways, parent on end, errors, FP state. */
#include "arch.h"
#include "cogent.h"
#include "fpu.h"
#include <pthread.h>

#include "harness.h"

static co_fiber_t *eat_f, *play_f;
static char trace[256];

static void note(const char *s)
{
    strcat(trace, s);
    strcat(trace, ";");
}

static void *eat(co_fiber_t *self, void *name)
{
    ASSERT_PTR_EQ(self, eat_f);
    ASSERT_PTR_EQ(co_fiber_current(), eat_f);
    note("eat1");
    void *v = co_fiber_switch(play_f, name);
    ASSERT_STR_EQ(v, "back");
    note("eat2");
    co_fiber_switch(play_f, NULL);
    note("never");
    return NULL;
}

static void *play(co_fiber_t *self, void *name)
{
    (void)self;
    ASSERT_STR_EQ(name, "tom");
    note("play1");
    co_fiber_switch(eat_f, "back");
    note("play2");
    return "play done";
}

static void test_eat_play(void)
{
    trace[0] = 0;
    co_fiber_t *main_f = co_fiber_current();
    ASSERT(main_f != NULL);
    ASSERT_PTR_EQ(co_fiber_parent(main_f), NULL);
    eat_f = co_fiber_new(eat, NULL, NULL);
    play_f = co_fiber_new(play, NULL, NULL);
    ASSERT(eat_f && play_f);
    ASSERT(!co_fiber_started(eat_f));
    ASSERT_PTR_EQ(co_fiber_parent(eat_f), main_f);
    /* play ends: its value goes to its parent, main. */
    void *r = co_fiber_switch(eat_f, "tom");
    ASSERT_STR_EQ(r, "play done");
    ASSERT_STR_EQ(trace, "eat1;play1;eat2;play2;");
    ASSERT(co_fiber_started(eat_f) && !co_fiber_ended(eat_f));
    ASSERT(co_fiber_ended(play_f));
    ASSERT_PTR_EQ(co_fiber_current(), main_f);
    co_fiber_free(eat_f); /* suspended: freed without running */
    co_fiber_free(play_f);
}

static void *ret_arg(co_fiber_t *self, void *v)
{
    (void)self;
    return (void *)((uintptr_t)v + 1);
}

static void test_end_returns_to_parent_chain(void)
{
    /* a's parent is b; b has ended by the time a ends: a returns to main. */
    co_fiber_t *b = co_fiber_new(ret_arg, NULL, NULL);
    co_fiber_t *a = co_fiber_new(ret_arg, NULL, NULL);
    ASSERT_EQ(co_fiber_set_parent(a, b), 0);
    char buf[4];
    ASSERT_PTR_EQ(co_fiber_switch(b, buf), buf + 1);
    ASSERT(co_fiber_ended(b));
    ASSERT_PTR_EQ(co_fiber_switch(a, buf), buf + 1);
    co_fiber_free(a);
    co_fiber_free(b);
}

static void test_set_parent_errors(void)
{
    co_fiber_t *a = co_fiber_new(ret_arg, NULL, NULL);
    co_fiber_t *b = co_fiber_new(ret_arg, NULL, NULL);
    ASSERT_EQ(co_fiber_set_parent(b, a), 0);
    ASSERT_ERR(co_fiber_set_parent(a, b), EINVAL); /* cycle */
    ASSERT_ERR(co_fiber_set_parent(a, a), EINVAL);
    co_fiber_switch(a, NULL);
    ASSERT_ERR(co_fiber_set_parent(b, a), EINVAL); /* a has ended */
    co_fiber_free(a);
    co_fiber_free(b);
}

static void test_bad_arguments(void)
{
    ASSERT_ERR(co_fiber_new(NULL, NULL, NULL), EINVAL);
    ASSERT_ERR(co_fiber_new(ret_arg, NULL, &(co_fiber_opts_t){.stack_size = 1024}), EINVAL);
    co_fiber_free(NULL);
    /* Switching to yourself hands the value straight back. */
    ASSERT_PTR_EQ(co_fiber_switch(co_fiber_current(), "x"), "x");
}

static void switch_to_ended(void *arg)
{
    (void)arg;
    co_fiber_t *f = co_fiber_new(ret_arg, NULL, NULL);
    co_fiber_switch(f, NULL);
    co_fiber_switch(f, NULL);
}

static void free_current(void *arg)
{
    (void)arg;
    co_fiber_free(co_fiber_current());
}

/* Fibers never move between threads: switching to another thread's fiber
 * (the assembly fast path's case: a raw fiber, alive, on a guard-page
 * stack) or freeing it aborts. */
static co_fiber_t *foreign;
static void *switch_to_foreign(void *free_it)
{
    if (free_it)
        co_fiber_free(foreign);
    else
        co_fiber_switch(foreign, NULL);
    return NULL;
}
static void other_thread_fiber(void *free_it)
{
    foreign = co_fiber_new(ret_arg, NULL, NULL);
    pthread_t t;
    pthread_create(&t, NULL, switch_to_foreign, free_it);
    pthread_join(t, NULL);
}

static void test_misuse_aborts(void)
{
    char buf[1024];
    for (intptr_t free_it = 0; free_it < 2; free_it++) {
        int st = run_child(other_thread_fiber, (void *)free_it, buf, sizeof buf);
        ASSERT_(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(buf, "belongs to another thread"), "%#x: %s", st,
                buf);
    }
    int st = run_child(switch_to_ended, NULL, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    ASSERT(strstr(buf, "has ended"));
    st = run_child(free_current, NULL, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    ASSERT(strstr(buf, "is not a fiber made by co_fiber_new"));
}

/* Many fibers alive, switched round-robin, each with its own locals. */
#define RING 200
static co_fiber_t *ring[RING];
static void *ring_body(co_fiber_t *self, void *v)
{
    intptr_t me = (intptr_t)co_fiber_data(self);
    intptr_t sum = (intptr_t)v;
    for (int round = 0; round < 5; round++) {
        sum += me;
        sum = (intptr_t)co_fiber_switch(ring[(me + 1) % RING], (void *)sum);
    }
    return (void *)sum;
}

static void test_ring(void)
{
    for (intptr_t i = 0; i < RING; i++) ring[i] = co_fiber_new(ring_body, (void *)i, NULL);
    for (int i = 1; i < RING; i++) co_fiber_set_parent(ring[i], ring[0]); /* ends return along the ring */
    /* The value passed around accumulates every fiber's id 5 times; the
     * last fiber to end returns to its parent chain and finally main. */
    intptr_t r = (intptr_t)co_fiber_switch(ring[0], (void *)0);
    ASSERT_EQ(r, 5LL * (RING * (RING - 1) / 2));
    for (int i = 0; i < RING; i++) co_fiber_free(ring[i]);
}

/* FP control state (the rounding mode) belongs to each fiber; the
 * exception flags belong to the thread and follow it across switches
 * (docs/fiber.md).  Run twice by ctest: with guard-page stacks (the
 * assembly fast path both ways) and as fiber_canary (a canary-mode fiber
 * switches away through the C half). */
static int fp_seen_flags, fp_seen_round;
static void *fp_body(co_fiber_t *self, void *v)
{
    co_fiber_t *back = co_fiber_parent(self);
    for (bool first = true;; first = false) {
        fp_seen_flags = fetestexcept(FE_ALL_EXCEPT); /* the thread's, on arrival */
        if (first) fesetround(FE_DOWNWARD);          /* this fiber's own mode from now on */
        fp_seen_round = fegetround();
        if (v) fpu_raise_inexact();
        v = co_fiber_switch(back, NULL);
    }
    return NULL;
}

static void test_fp_state(void)
{
    if (!fpu_flags_recorded()) return;
    fesetround(FE_TONEAREST);
    fpu_raise_divbyzero();
    co_fiber_t *f = co_fiber_new(fp_body, NULL, NULL); /* inherits FE_TONEAREST */
    unsigned long loads = co__fpu_loads;

    /* Flags raised here are seen there, and the other way round. */
    co_fiber_switch(f, "raise");
    ASSERT_EQ(fp_seen_flags, FE_DIVBYZERO);
    ASSERT_EQ(fetestexcept(FE_ALL_EXCEPT), FE_DIVBYZERO | FE_INEXACT);
    /* Its FE_DOWNWARD stayed with it: loaded on the way back only. */
    ASSERT_EQ(fegetround(), FE_TONEAREST);
    ASSERT_EQ(co__fpu_loads - loads, 1);

    /* Cleared here: it does not get its stale flags back, and it keeps
     * its rounding mode while we change ours. */
    feclearexcept(FE_ALL_EXCEPT);
    fesetround(FE_UPWARD);
    co_fiber_switch(f, NULL);
    ASSERT_EQ(fp_seen_flags, 0);
    ASSERT_EQ(fp_seen_round, FE_DOWNWARD);
    ASSERT_EQ(fegetround(), FE_UPWARD);
    ASSERT_EQ(co__fpu_loads - loads, 3);

    /* Same control state on both sides, flags changing at every switch:
     * no switch loads anything (once, every one of them did). */
    fesetround(FE_DOWNWARD);
    loads = co__fpu_loads;
    for (int i = 0; i < 100; i++) {
        feclearexcept(FE_ALL_EXCEPT);
        co_fiber_switch(f, i % 2 ? "raise" : NULL);
        ASSERT_EQ(fp_seen_flags, 0);
        ASSERT_EQ(fetestexcept(FE_ALL_EXCEPT), i % 2 ? FE_INEXACT : 0);
    }
    ASSERT_EQ(co__fpu_loads - loads, 0);
    fesetround(FE_TONEAREST);
    feclearexcept(FE_ALL_EXCEPT);
    co_fiber_free(f);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_eat_play);
    RUN(test_end_returns_to_parent_chain);
    RUN(test_set_parent_errors);
    RUN(test_bad_arguments);
    RUN(test_misuse_aborts);
    RUN(test_ring);
    RUN(test_fp_state);
    return TEST_MAIN_END();
}
