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
    RUN(test_misuse);
    return TEST_MAIN_END();
}
