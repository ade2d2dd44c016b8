/* Timeout scopes: every blocking call inside fails with ETIMEDOUT at the
 * scope's deadline (sleeps, events, queues, locks, joins, reads, polls),
 * nested scopes (the earliest wins, leaving restores the outer), one
 * coroutine's scope is not another's, a recycled coroutine record carries
 * no scope, threads without a hub, try forms, leaving out of order, and
 * futures, thread joins and pool tasks in a spawned coroutine. */
#include <fcntl.h>
#include <pthread.h>

#include "harness.h"

static void test_sleep_and_nesting(void)
{
    ASSERT_EQ(co_scope_deadline(), -1);
    int64_t t0 = co_now();
    co_scope_t outer, inner;
    co_scope_enter(&outer, t0 + 300);
    ASSERT_EQ(co_scope_deadline(), t0 + 300);
    co_scope_enter(&inner, t0 + 100);
    ASSERT_EQ(co_scope_deadline(), t0 + 100);
    ASSERT_EQ(co_sleep_ms(10), 0); /* shorter than the scope: sleeps */
    ASSERT_ERR(co_sleep_ms(5000), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 95, 250);
    ASSERT_EQ(co_scope_leave(&inner), true);
    ASSERT_EQ(co_scope_deadline(), t0 + 300); /* the outer one again */
    ASSERT_ERR(co_sleep_ms(5000), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 295, 600);
    ASSERT_EQ(co_scope_leave(&outer), true);
    ASSERT_EQ(co_scope_deadline(), -1);
    ASSERT_EQ(co_sleep_ms(20), 0); /* restored: nothing cuts it */
    /* An inner scope later than the outer one: the outer still wins. */
    t0 = co_now();
    co_scope_enter(&outer, t0 + 100);
    co_scope_enter(&inner, t0 + 5000);
    ASSERT_EQ(co_scope_deadline(), t0 + 100);
    ASSERT_ERR(co_sleep_ms(5000), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 95, 400);
    ASSERT_EQ(co_scope_leave(&inner), false);
    ASSERT_EQ(co_scope_leave(&outer), true);
    /* A scope without a deadline changes nothing. */
    co_scope_enter(&outer, -1);
    ASSERT_EQ(co_sleep_ms(10), 0);
    ASSERT_EQ(co_scope_leave(&outer), false);
}

static void *hold_lock(void *arg)
{
    co_lock_t *l = arg;
    co_lock_acquire(l, -1);
    co_sleep_ms(400);
    co_lock_release(l);
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)co_sleep_ms(300);
}

static void test_every_kind_of_wait(void)
{
    co_event_t ev;
    co_event_init(&ev);
    co_queue_t *q = co_queue_new(NULL);
    co_lock_t l;
    co_lock_init(&l, "scoped");
    co_coro_t *holder = co_spawn(hold_lock, &l);
    co_coro_t *sl = co_spawn(sleeper, NULL);
    co_yield_now();
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    char b;
    struct pollfd pf = {.fd = p[0], .events = POLLIN};

    co_scope_t sc;
    int64_t t0 = co_now();
    co_scope_enter(&sc, t0 + 80);
    ASSERT_ERR(co_event_wait(&ev, -1), ETIMEDOUT);
    ASSERT_ERR(co_event_wait(&ev, co_now() + 10000), ETIMEDOUT);
    void *item;
    ASSERT_ERR(co_queue_get(q, &item, -1), ETIMEDOUT);
    ASSERT_ERR(co_queue_get_nowait(q, &item), EAGAIN); /* try forms stay try forms */
    ASSERT_ERR(co_lock_acquire(&l, -1), ETIMEDOUT);
    ASSERT_ERR(co_join(sl, -1, NULL), ETIMEDOUT);
    ASSERT_ERR(co_read(p[0], &b, 1, -1), ETIMEDOUT);
    ASSERT_ERR(co_wait_readable(p[0], -1), ETIMEDOUT);
    ASSERT_ERR(co_poll(&pf, 1, -1), ETIMEDOUT); /* not poll's "0 ready": the scope ended it */
    ASSERT_EQ(co_poll(&pf, 1, 0), 0);           /* the try form */
    ASSERT(co_now() - t0 < 1000);
    ASSERT_EQ(co_scope_leave(&sc), true);
    /* After the scope, the same waits wait. */
    ASSERT_EQ(co_poll(&pf, 1, co_now() + 30), 0); /* its own deadline: 0 ready */
    ASSERT_EQ(co_lock_acquire(&l, co_now() + 5000), 0);
    co_lock_release(&l);
    void *r;
    ASSERT_EQ(co_join(sl, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, 0); /* its own sleep was not cut */
    co_join(holder, -1, NULL);
    co_close(p[0]);
    co_close(p[1]);
    co_queue_free(q, NULL);
    co_lock_destroy(&l);
    co_event_destroy(&ev);
}

/* A scope belongs to its coroutine: one spawned inside it is not bound. */
static void *child(void *arg)
{
    (void)arg;
    if (co_scope_deadline() != -1) return (void *)1;
    return (void *)(intptr_t)co_sleep_ms(150);
}

static void *leaves_scope_open(void *arg)
{
    (void)arg;
    co_scope_t sc;
    co_scope_enter(&sc, co_now() - 1); /* already passed, never left */
    return NULL;
}

static void *expect_no_scope(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)(co_scope_deadline() == -1 && co_sleep_ms(5) == 0);
}

static void test_per_coroutine(void)
{
    co_scope_t sc;
    co_scope_enter(&sc, co_now() + 50);
    co_coro_t *c = co_spawn(child, NULL);
    ASSERT_ERR(co_join(c, -1, NULL), ETIMEDOUT); /* the joiner's scope */
    ASSERT(co_scope_leave(&sc));
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, 0); /* the child slept its 150 ms */
    /* A record reused after a coroutine that left its scope open. */
    for (int i = 0; i < 50; i++) {
        co_coro_t *a = co_spawn(leaves_scope_open, NULL);
        co_join(a, -1, NULL);
        co_coro_t *b = co_spawn(expect_no_scope, NULL);
        co_join(b, -1, &r);
        ASSERT_EQ((intptr_t)r, 1);
    }
}

/* A thread without a hub: futex waits, fd waits, polls. */
static void *plain_thread(void *arg)
{
    (void)arg;
    intptr_t bad = 0;
    co_event_t ev;
    co_event_init(&ev);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return (void *)-1;
    char b;
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    co_scope_t sc;
    int64_t t0 = co_now();
    co_scope_enter(&sc, t0 + 80);
    if (co_event_wait(&ev, -1) != -1 || errno != ETIMEDOUT) bad |= 1;
    if (co_read(p[0], &b, 1, -1) != -1 || errno != ETIMEDOUT) bad |= 2; /* a blocking pipe */
    if (co_poll(&pf, 1, -1) != -1 || errno != ETIMEDOUT) bad |= 4;
    if (co_now() - t0 > 2000) bad |= 8;
    if (!co_scope_leave(&sc)) bad |= 16;
    if (co_poll(&pf, 1, 20) != 0) bad |= 32;
    co_close(p[0]);
    co_close(p[1]);
    co_event_destroy(&ev);
    return (void *)bad;
}

static void test_thread_without_hub(void)
{
    pthread_t t;
    void *r;
    pthread_create(&t, NULL, plain_thread, NULL);
    pthread_join(t, &r);
    ASSERT_EQ((intptr_t)r, 0);
}

static void leave_out_of_order(void *arg)
{
    (void)arg;
    co_scope_t a, b;
    co_scope_enter(&a, co_now() + 1000);
    co_scope_enter(&b, co_now() + 500);
    co_scope_leave(&a);
}

static void test_leave_out_of_order_aborts(void)
{
    char buf[1024];
    int st = run_child(leave_out_of_order, NULL, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    ASSERT(strstr(buf, "cogent: co_scope_leave: not the innermost scope") != NULL);
}

/* The waits main brought (futures, thread joins, pool tasks), and a
 * scope in a spawned coroutine (compact under COGENT_COMPACT=1, whose
 * stack moves while it waits): the objects it waits on live off its
 * stack, the scope itself on it. */
static void *slow_task(void *arg)
{
    (void)arg;
    usleep(300 * 1000);
    return (void *)7;
}

static co_future_t *fut;

static void *scoped_waits(void *arg)
{
    co_thread_t *t = arg;
    co_scope_t outer, inner;
    int64_t t0 = co_now();
    co_scope_enter(&outer, t0 + 5000);
    co_scope_enter(&inner, t0 + 60);
    if (co_future_wait(fut, -1) != -1 || errno != ETIMEDOUT) return (void *)1;
    if (co_thread_join(t, -1, NULL) != -1 || errno != ETIMEDOUT) return (void *)2;
    if (co_pool_run(NULL, slow_task, NULL, -1, NULL) != -1 || errno != ETIMEDOUT) return (void *)3;
    if (co_sleep_ms(10000) != -1 || errno != ETIMEDOUT) return (void *)4;
    if (co_now() - t0 > 2000) return (void *)5;
    if (!co_scope_leave(&inner)) return (void *)6;
    if (co_scope_deadline() != t0 + 5000) return (void *)7; /* the outer one again */
    if (co_thread_join(t, -1, NULL) != 0) return (void *)8; /* not cut: the thread ends in 300 ms */
    if (co_scope_leave(&outer)) return (void *)9;
    return NULL;
}

static void test_futures_threads_pools_in_a_coroutine(void)
{
    fut = co_future_new();
    ASSERT(fut != NULL);
    co_thread_t *t = co_thread_new(slow_task, NULL, NULL);
    ASSERT(t != NULL);
    co_coro_t *c = co_spawn(scoped_waits, t);
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, 0);
    ASSERT_EQ(co_thread_join(t, -1, NULL), 0);
    co_thread_free(t);
    co_future_set_result(fut, NULL);
    co_future_free(fut);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_sleep_and_nesting);
    RUN(test_every_kind_of_wait);
    RUN(test_per_coroutine);
    RUN(test_futures_threads_pools_in_a_coroutine);
    RUN(test_thread_without_hub);
    RUN(test_leave_out_of_order_aborts);
    return TEST_MAIN_END();
}
