/* "Would block forever": EDEADLK and a one-line diagnostic, not a hang. */
#include "cogent.h"
#include "harness.h"

static co_coro_t *peer_a, *peer_b;

static void *join_peer(void *arg)
{
    co_coro_t **other = arg;
    co_sleep_ms(1); /* let both handles exist */
    if (co_join(*other, -1, NULL) < 0) return (void *)(intptr_t)errno;
    return NULL;
}

static void cycle(void *arg)
{
    (void)arg;
    peer_a = co_spawn(join_peer, &peer_b);
    peer_b = co_spawn(join_peer, &peer_a);
    int r = co_join(peer_a, -1, NULL);
    int e = errno;
    fprintf(stderr, "join=%d errno=%d\n", r, e);
    /* Clean up: both are parked in a cancellable join. */
    co_kill(peer_a);
    co_kill(peer_b);
    void *ra, *rb;
    if (co_join(peer_a, -1, &ra) || co_join(peer_b, -1, &rb)) _exit(3);
    fprintf(stderr, "a=%d b=%d\n", (int)(intptr_t)ra, (int)(intptr_t)rb);
    _exit(r == -1 && e == EDEADLK ? 0 : 2);
}

static void test_join_cycle(void)
{
    char buf[4096];
    int st = run_child(cycle, NULL, buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d, stderr:\n%s", st, buf);
    ASSERT(strstr(buf, "cogent: deadlock: the main coroutine of thread"));
    ASSERT(strstr(buf, "waits in co_join"));
    ASSERT(strstr(buf, "2 other coroutines blocked"));
    ASSERT(strstr(buf, "a=125 b=125")); /* both got ECANCELED */
}

static void sleep_forever(void *arg)
{
    (void)arg;
    int r = co_sleep_until(-1);
    _exit(r == -1 && errno == EDEADLK ? 0 : 2);
}

static void test_sleep_forever(void)
{
    char buf[4096];
    int st = run_child(sleep_forever, NULL, buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d, stderr:\n%s", st, buf);
    ASSERT(strstr(buf, "waits in co_sleep"));
}

/* No false alarm: a parked main with a timer pending somewhere, or a
 * coroutine sleeping, is not a deadlock. */
static void *late(void *arg)
{
    (void)arg;
    co_sleep_ms(30);
    return (void *)5;
}

static void test_no_false_alarm(void)
{
    co_coro_t *c = co_spawn(late, NULL);
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, 5);
}

static void *waits_group(void *arg)
{
    co_group_t *g = arg;
    co_coro_t *c = co_group_next(g, -1);
    return c ? NULL : (void *)(intptr_t)errno;
}

static void group_stuck(void *arg)
{
    (void)arg;
    /* main waits for a group whose only member waits for main's group. */
    co_group_t *g = co_group_new(0);
    co_group_t *h = co_group_new(0);
    co_group_spawn(h, late, NULL, -1);
    co_group_spawn(g, waits_group, g, -1); /* waits on its own group: forever */
    co_sleep_ms(50);                       /* h's member finishes meanwhile */
    int r = co_group_join(g, -1);
    _exit(r == -1 && errno == EDEADLK ? 0 : 2);
}

static void test_group_stuck(void)
{
    char buf[4096];
    int st = run_child(group_stuck, NULL, buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d, stderr:\n%s", st, buf);
    ASSERT(strstr(buf, "waits in co_group_join"));
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_join_cycle);
    RUN(test_sleep_forever);
    RUN(test_no_false_alarm);
    RUN(test_group_stuck);
    return TEST_MAIN_END();
}
