/* Many coroutines alive at once, all blocked, on stock kernel settings:
 * more than vm.max_map_count/2 stacks, so guard pages run out and the
 * allocator must switch to canary stacks.  (The million is in bench/.) */
#include "cogent.h"
#include "harness.h"

enum { N = 100000 };
static co_coro_t *gate;
static int woke;

static void *gate_body(void *arg)
{
    (void)arg;
    co_sleep_ms(50);
    return NULL;
}

static void *waiter(void *arg)
{
    (void)arg;
    ASSERT_EQ(co_wait(gate, -1), 0); /* all 100k wait on one coroutine */
    woke++;
    return NULL;
}

static void test_hundred_thousand_blocked(void)
{
    co_group_t *g = co_group_new(0);
    gate = co_spawn(gate_body, NULL);
    int64_t t0 = co_now();
    for (int i = 0; i < N; i++) ASSERT(co_group_spawn(g, waiter, NULL, -1));
    int64_t spawned = co_now() - t0;
    co_sleep_ms(10); /* every waiter is parked now */
    co_hub_stats_t hs;
    co_hub_stats(&hs);
    ASSERT_EQ(hs.coroutines, N + 1);
    co_stack_stats_t ss;
    co_stack_stats(&ss);
    const char *compact = getenv("COGENT_COMPACT");
    if (!compact || !*compact || !strcmp(compact, "0")) { /* compact ones share one stack */
        ASSERT(ss.guarded + ss.canary >= N + 1);
        ASSERT(ss.guarded <= ss.guard_budget);
        ASSERT(ss.canary > 0); /* past the guard budget */
    }
    ASSERT_EQ(woke, 0);
    ASSERT_EQ(co_group_join(g, -1), 0);
    ASSERT_EQ(woke, N);
    ASSERT_EQ(co_join(gate, -1, NULL), 0);
    co_group_free(g);
    fprintf(stderr, "    spawned %d in %lld ms (guarded %zu, canary %zu)\n", N, (long long)spawned, ss.guarded,
            ss.canary);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_hundred_thousand_blocked);
    return TEST_MAIN_END();
}
