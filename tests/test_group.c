/* Groups: join all, kill all, size limit, completion order. */
#include "cogent.h"
#include "harness.h"

static void *sleep_ret(void *arg)
{
    intptr_t ms = (intptr_t)arg;
    if (co_sleep_ms(ms) < 0) return (void *)-1;
    return arg;
}

static void test_as_completed_order(void)
{
    co_group_t *g = co_group_new(0);
    ASSERT(g);
    /* Task i sleeps (10 - i) * 5 ms: they finish in reverse spawn order. */
    for (intptr_t i = 0; i < 10; i++) ASSERT(co_group_spawn(g, sleep_ret, (void *)((10 - i) * 5), -1));
    ASSERT_EQ(co_group_size(g), 10);
    intptr_t last = 0;
    co_coro_t *c;
    int n = 0;
    while ((c = co_group_next(g, -1))) {
        void *r;
        ASSERT_EQ(co_join(c, -1, &r), 0);
        ASSERT((intptr_t)r > last);
        last = (intptr_t)r;
        n++;
    }
    ASSERT_EQ(errno, ENOENT);
    ASSERT_EQ(n, 10);
    ASSERT_EQ(co_group_size(g), 0);
    co_group_free(g);
}

static int running_now, running_max;
static void *count_running(void *arg)
{
    (void)arg;
    running_now++;
    if (running_now > running_max) running_max = running_now;
    co_sleep_ms(5);
    running_now--;
    return NULL;
}

static void test_limit(void)
{
    running_now = running_max = 0;
    co_group_t *g = co_group_new(3);
    int64_t t0 = co_now();
    for (int i = 0; i < 12; i++) ASSERT(co_group_spawn(g, count_running, NULL, -1));
    ASSERT_EQ(co_group_join(g, -1), 0);
    ASSERT_EQ(running_max, 3);
    ASSERT(co_now() - t0 >= 20); /* 4 waves of 5 ms */
    ASSERT_EQ(co_group_size(g), 0);
    co_group_free(g);
}

static void test_limit_deadline(void)
{
    co_group_t *g = co_group_new(1);
    ASSERT(co_group_spawn(g, sleep_ret, (void *)200, -1));
    ASSERT_ERR(co_group_spawn(g, sleep_ret, (void *)1, co_now() + 20), ETIMEDOUT);
    ASSERT_ERR(co_group_spawn(g, sleep_ret, (void *)1, 0), EAGAIN);
    ASSERT_EQ(co_group_running(g), 1);
    ASSERT_ERR(co_group_join(g, co_now() + 10), ETIMEDOUT);
    ASSERT_ERR(co_group_next(g, co_now() + 10), ETIMEDOUT);
    co_group_kill(g);
    ASSERT_EQ(co_group_join(g, -1), 0);
    co_group_free(g);
}

static void test_kill_all(void)
{
    co_group_t *g = co_group_new(0);
    for (int i = 0; i < 5; i++) co_group_spawn(g, sleep_ret, (void *)10000, -1);
    co_sleep_ms(0);
    int64_t t0 = co_now();
    co_group_kill(g);
    co_coro_t *c;
    int n = 0;
    while ((c = co_group_next(g, -1))) {
        void *r;
        co_join(c, -1, &r);
        ASSERT_EQ((intptr_t)r, -1);
        n++;
    }
    ASSERT_EQ(n, 5);
    ASSERT_TIME(co_now() - t0, 0, 5000); /* the kill, not the 10 s sleeps */
    ;
    co_group_free(g);
}

static void test_join_member_directly_and_detach(void)
{
    co_group_t *g = co_group_new(2);
    co_coro_t *a = co_group_spawn(g, sleep_ret, (void *)5, -1);
    co_coro_t *b = co_group_spawn(g, sleep_ret, (void *)5, -1);
    ASSERT_EQ(co_join(a, -1, NULL), 0); /* leaves the group */
    ASSERT_EQ(co_group_size(g), 1);
    co_detach(b); /* leaves the group and its slot */
    ASSERT_EQ(co_group_size(g), 0);
    ASSERT(co_group_spawn(g, sleep_ret, (void *)1, 0));
    ASSERT(co_group_spawn(g, sleep_ret, (void *)1, 0));
    ASSERT_EQ(co_group_join(g, -1), 0);
    co_group_free(g);
    co_sleep_ms(10); /* b ends detached */
}

static void *kill_waiting_spawner(void *arg)
{
    co_group_t *g = arg;
    if (!co_group_spawn(g, sleep_ret, (void *)1, -1)) return (void *)(intptr_t)errno;
    return NULL;
}

static void test_cancel_waiting_for_slot(void)
{
    co_group_t *g = co_group_new(1);
    co_group_spawn(g, sleep_ret, (void *)100, -1);
    co_coro_t *s = co_spawn(kill_waiting_spawner, g);
    co_sleep_ms(5);
    co_kill(s);
    void *r;
    ASSERT_EQ(co_join(s, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, ECANCELED);
    ASSERT_EQ(co_group_size(g), 1);
    co_group_kill(g);
    ASSERT_EQ(co_group_join(g, -1), 0);
    co_group_free(g);
}

static co_event_t gate = CO_EVENT_INIT;

static void *wait_gate(void *arg)
{
    (void)arg;
    return co_event_wait(&gate, -1) == 0 ? NULL : (void *)-1;
}

static void *spawn_when_free(void *arg)
{
    co_coro_t *c = co_group_spawn(arg, sleep_ret, (void *)1, co_now() + 5000);
    return c ? NULL : (void *)(intptr_t)errno;
}

/* A member that finishes wakes the oldest spawner waiting for its slot;
 * one cancelled (or timed out) in that same instant must pass the slot on,
 * not take the wake-up with it (found by test_fuzz). */
static void test_slot_passed_on(void)
{
    co_group_t *g = co_group_new(1);
    co_event_clear(&gate);
    ASSERT(co_group_spawn(g, wait_gate, NULL, -1));
    co_coro_t *s1 = co_spawn(spawn_when_free, g), *s2 = co_spawn(spawn_when_free, g);
    co_yield_now();      /* both wait for the slot */
    co_event_set(&gate); /* the member runs first and finishes... */
    co_kill(s1);         /* ...waking s1, which is cancelled already */
    int64_t t0 = co_now();
    void *r1, *r2;
    ASSERT_EQ(co_join(s1, -1, &r1), 0);
    ASSERT_EQ((intptr_t)r1, ECANCELED);
    ASSERT_EQ(co_join(s2, -1, &r2), 0);
    ASSERT_EQ((intptr_t)r2, 0); /* the slot reached s2 */
    ASSERT_TIME(co_now() - t0, 0, 1000);
    ASSERT_EQ(co_group_join(g, -1), 0);
    co_group_free(g);
}

static void *next_member(void *arg)
{
    co_coro_t *c = co_group_next(arg, co_now() + 5000);
    return (void *)(intptr_t)(c ? 0 : errno);
}

static void *join_group(void *arg)
{
    return (void *)(intptr_t)(co_group_join(arg, co_now() + 5000) == 0 ? 0 : errno);
}

/* Detaching the last running member leaves nothing to wait for: waiters
 * in co_group_next and co_group_join learn it at once (found by
 * test_fuzz). */
static void test_detach_wakes_waiters(void)
{
    co_group_t *g = co_group_new(0);
    co_event_clear(&gate);
    co_coro_t *m = co_group_spawn(g, wait_gate, NULL, -1);
    co_coro_t *x = co_spawn(next_member, g), *y = co_spawn(join_group, g);
    co_yield_now(); /* both wait for m */
    int64_t t0 = co_now();
    co_detach(m);
    void *rx, *ry;
    ASSERT_EQ(co_join(x, -1, &rx), 0);
    ASSERT_EQ(co_join(y, -1, &ry), 0);
    ASSERT_EQ((intptr_t)rx, ENOENT);
    ASSERT_EQ((intptr_t)ry, 0);
    ASSERT_TIME(co_now() - t0, 0, 1000);
    co_event_set(&gate);
    co_yield_now(); /* m ends, detached */
    co_group_free(g);
}

static void free_nonempty(void *arg)
{
    (void)arg;
    co_group_t *g = co_group_new(0);
    co_group_spawn(g, sleep_ret, (void *)1, -1);
    co_group_free(g);
}

static void test_misuse(void)
{
    char buf[1024];
    int st = run_child(free_nonempty, NULL, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && strstr(buf, "still has 1 member"));
    co_group_t *g = co_group_new(0);
    ASSERT_ERR(co_group_next(g, -1), ENOENT);
    ASSERT_EQ(co_group_join(g, 0), 0);
    co_group_free(g);
    co_group_free(NULL);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_as_completed_order);
    RUN(test_limit);
    RUN(test_limit_deadline);
    RUN(test_kill_all);
    RUN(test_join_member_directly_and_detach);
    RUN(test_cancel_waiting_for_slot);
    RUN(test_slot_passed_on);
    RUN(test_detach_wakes_waiters);
    RUN(test_misuse);
    return TEST_MAIN_END();
}
