/* Queues: FIFO/LIFO/priority order, bounds, the nowait forms, deadlines,
 * close, cancellation without losing or half-putting an item, joinable
 * counting, and producers/consumers on other threads. */
#include <pthread.h>

#include "cogent.h"
#include "harness.h"

#define P(i) ((void *)(intptr_t)(i))
#define I(p) ((int)(intptr_t)(p))

static co_queue_t *mk(co_queue_kind_t kind, size_t maxsize)
{
    co_queue_opts_t o = {.kind = kind, .maxsize = maxsize};
    co_queue_t *q = co_queue_new(&o);
    ASSERT(q);
    return q;
}

static void test_orders(void)
{
    co_queue_t *f = mk(CO_QUEUE_FIFO, 0), *l = mk(CO_QUEUE_LIFO, 0), *p = mk(CO_QUEUE_PRIORITY, 0);
    for (int i = 1; i <= 100; i++) {
        ASSERT_EQ(co_queue_put(f, P(i), -1), 0);
        ASSERT_EQ(co_queue_put_nowait(l, P(i)), 0);
        ASSERT_EQ(co_queue_put_prio(p, P(i), (i * 37) % 10, -1), 0); /* ten priorities, ten items each */
    }
    ASSERT_EQ(co_queue_size(f), 100);
    ASSERT(!co_queue_full(f));
    int last_prio = -1, last_item = 0;
    for (int i = 1; i <= 100; i++) {
        void *a, *b, *c;
        ASSERT_EQ(co_queue_get(f, &a, -1), 0);
        ASSERT_EQ(co_queue_get_nowait(l, &b), 0);
        ASSERT_EQ(co_queue_get(p, &c, 0), 0);
        ASSERT_EQ(I(a), i);
        ASSERT_EQ(I(b), 101 - i);
        int prio = (I(c) * 37) % 10;
        ASSERT(prio >= last_prio);
        if (prio == last_prio) ASSERT(I(c) > last_item); /* FIFO among equals */
        last_prio = prio;
        last_item = I(c);
    }
    ASSERT(co_queue_empty(f));
    ASSERT_ERR(co_queue_get_nowait(f, NULL), EAGAIN);
    int64_t t0 = co_now();
    ASSERT_ERR(co_queue_get(f, NULL, co_now() + 20), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 15, 2000);
    co_queue_free(f, NULL);
    co_queue_free(l, NULL);
    co_queue_free(p, NULL);
}

typedef struct alert {
    int severity;
    const char *text;
} alert_t;

static int by_severity(const void *a, const void *b, void *ctx)
{
    (void)ctx;
    return ((const alert_t *)b)->severity - ((const alert_t *)a)->severity; /* highest first */
}

static void test_comparator(void)
{
    co_queue_opts_t o = {.kind = CO_QUEUE_PRIORITY, .cmp = by_severity};
    co_queue_t *q = co_queue_new(&o);
    alert_t a[] = {{1, "disk 80%"}, {5, "db down"}, {3, "slow"}, {5, "api down"}, {1, "cert soon"}};
    for (int i = 0; i < 5; i++) ASSERT_EQ(co_queue_put(q, &a[i], -1), 0);
    const char *want[] = {"db down", "api down", "slow", "disk 80%", "cert soon"};
    for (int i = 0; i < 5; i++) {
        void *it;
        ASSERT_EQ(co_queue_get(q, &it, -1), 0);
        ASSERT_STR_EQ(((alert_t *)it)->text, want[i]);
    }
    co_queue_free(q, NULL);
    o.kind = CO_QUEUE_FIFO;
    ASSERT_ERR(co_queue_new(&o), EINVAL);
    o = (co_queue_opts_t){.kind = 7};
    ASSERT_ERR(co_queue_new(&o), EINVAL);
}

static co_queue_t *Q;

static void *putter(void *arg)
{
    return (void *)(intptr_t)(co_queue_put(Q, arg, -1) == 0 ? 0 : errno);
}

static void *getter(void *arg)
{
    (void)arg;
    void *it;
    if (co_queue_get(Q, &it, -1) < 0) return (void *)(intptr_t)-errno;
    return it;
}

static void test_bounded(void)
{
    Q = mk(CO_QUEUE_FIFO, 2);
    ASSERT_EQ(co_queue_put(Q, P(1), -1), 0);
    ASSERT_EQ(co_queue_put(Q, P(2), -1), 0);
    ASSERT(co_queue_full(Q));
    ASSERT_ERR(co_queue_put_nowait(Q, P(3)), EAGAIN);
    ASSERT_ERR(co_queue_put(Q, P(3), co_now() + 10), ETIMEDOUT);
    ASSERT_EQ(co_queue_size(Q), 2);
    co_coro_t *p3 = co_spawn(putter, P(3)), *p4 = co_spawn(putter, P(4));
    co_yield_now(); /* both wait for room, in order */
    for (int i = 1; i <= 4; i++) {
        void *it;
        ASSERT_EQ(co_queue_get(Q, &it, -1), 0);
        ASSERT_EQ(I(it), i);
    }
    ASSERT_EQ(co_join(p3, -1, NULL), 0);
    ASSERT_EQ(co_join(p4, -1, NULL), 0);
    ASSERT(co_queue_empty(Q));
    co_queue_free(Q, NULL);
}

static void test_cancellation(void)
{
    Q = mk(CO_QUEUE_FIFO, 1);
    /* A getter killed while waiting takes nothing with it. */
    co_coro_t *g = co_spawn(getter, NULL);
    co_yield_now();
    co_kill(g);
    void *r;
    ASSERT_EQ(co_join(g, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, -ECANCELED);
    ASSERT_EQ(co_queue_put(Q, P(7), -1), 0);
    ASSERT_EQ(co_queue_size(Q), 1); /* not handed to the dead getter */
    /* A putter killed while waiting leaves nothing behind. */
    co_coro_t *p = co_spawn(putter, P(8));
    co_yield_now();
    co_kill(p);
    ASSERT_EQ(co_join(p, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, ECANCELED);
    void *it;
    ASSERT_EQ(co_queue_get(Q, &it, -1), 0);
    ASSERT_EQ(I(it), 7);
    ASSERT_ERR(co_queue_get_nowait(Q, &it), EAGAIN); /* no 8 */
    ASSERT_EQ(co_queue_unfinished(Q), 1);            /* only 7 was ever put */
    co_queue_free(Q, NULL);
}

static int dropped;
static void drop(void *it)
{
    dropped += I(it);
}

static void test_close(void)
{
    Q = mk(CO_QUEUE_FIFO, 2);
    co_coro_t *g = co_spawn(getter, NULL);
    co_yield_now();
    co_queue_close(Q);
    void *r;
    ASSERT_EQ(co_join(g, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, -EPIPE);
    ASSERT(co_queue_closed(Q));
    ASSERT_ERR(co_queue_put(Q, P(1), -1), EPIPE);
    co_queue_free(Q, NULL);

    /* Items left at close are drained first; waiting putters fail. */
    Q = mk(CO_QUEUE_FIFO, 2);
    ASSERT_EQ(co_queue_put(Q, P(1), -1), 0);
    ASSERT_EQ(co_queue_put(Q, P(2), -1), 0);
    co_coro_t *p = co_spawn(putter, P(3));
    co_yield_now();
    co_queue_close(Q);
    ASSERT_EQ(co_join(p, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, EPIPE);
    void *it;
    ASSERT_EQ(co_queue_get(Q, &it, -1), 0);
    ASSERT_EQ(I(it), 1);
    ASSERT_EQ(co_queue_get(Q, &it, -1), 0);
    ASSERT_EQ(I(it), 2);
    ASSERT_ERR(co_queue_get(Q, &it, -1), EPIPE);
    co_queue_close(Q); /* idempotent */
    co_queue_free(Q, NULL);

    Q = mk(CO_QUEUE_LIFO, 0);
    for (int i = 1; i <= 4; i++) co_queue_put(Q, P(i), -1);
    dropped = 0;
    co_queue_free(Q, drop);
    ASSERT_EQ(dropped, 10);
}

static void *worker(void *arg)
{
    (void)arg;
    void *it;
    int n = 0;
    while (co_queue_get(Q, &it, -1) == 0) {
        co_sleep_ms(1);
        n++;
        ASSERT_EQ(co_queue_task_done(Q), 0);
    }
    ASSERT_EQ(errno, EPIPE);
    return (void *)(intptr_t)n;
}

static void test_joinable(void)
{
    Q = mk(CO_QUEUE_FIFO, 0);
    ASSERT_EQ(co_queue_join(Q, 0), 0); /* nothing put */
    ASSERT_ERR(co_queue_task_done(Q), EINVAL);
    co_coro_t *w[3];
    for (int i = 0; i < 3; i++) w[i] = co_spawn(worker, NULL);
    for (int i = 0; i < 30; i++) ASSERT_EQ(co_queue_put(Q, P(i), -1), 0);
    ASSERT_ERR(co_queue_join(Q, 0), ETIMEDOUT);
    ASSERT_EQ(co_queue_join(Q, co_now() + 10000), 0);
    ASSERT_EQ(co_queue_unfinished(Q), 0);
    ASSERT_ERR(co_queue_task_done(Q), EINVAL);
    co_queue_close(Q);
    void *n[3];
    ASSERT_EQ(co_joinall(w, 3, -1, n), 0);
    ASSERT_EQ((intptr_t)n[0] + (intptr_t)n[1] + (intptr_t)n[2], 30);
    co_queue_free(Q, NULL);
}

/* --------------------------------------------------- across threads */

#define PER_PRODUCER 20000

static void *thread_producer(void *arg)
{
    co_queue_t *q = arg;
    for (int i = 1; i <= PER_PRODUCER; i++) ASSERT_EQ(co_queue_put(q, P(i), co_now() + 20000), 0);
    return NULL;
}

static void *thread_consumer(void *arg)
{
    co_queue_t *q = arg;
    long long sum = 0;
    void *it;
    while (co_queue_get(q, &it, co_now() + 20000) == 0) sum += I(it);
    ASSERT_EQ(errno, EPIPE);
    return (void *)(intptr_t)sum;
}

static void *coro_consumer(void *arg)
{
    return thread_consumer(arg);
}

static void test_threads(void)
{
    co_queue_t *q = mk(CO_QUEUE_FIFO, 16); /* small: putters block too */
    pthread_t prod[2], cons;
    for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_create(&prod[i], NULL, thread_producer, q), 0);
    ASSERT_EQ(pthread_create(&cons, NULL, thread_consumer, q), 0);
    co_coro_t *c[2] = {co_spawn(coro_consumer, q), co_spawn(coro_consumer, q)};
    /* Joining the producers blocks this hub's thread; the hub-less
     * consumer keeps the queue moving meanwhile. */
    for (int i = 0; i < 2; i++) pthread_join(prod[i], NULL);
    co_queue_close(q);
    void *r[2], *rt;
    ASSERT_EQ(co_joinall(c, 2, -1, r), 0);
    pthread_join(cons, &rt);
    long long total = (intptr_t)r[0] + (intptr_t)r[1] + (intptr_t)rt;
    ASSERT_EQ(total, 2LL * PER_PRODUCER * (PER_PRODUCER + 1) / 2);
    co_queue_free(q, NULL);
}

static void queue_forever(void *arg)
{
    (void)arg;
    co_queue_t *q = co_queue_new(NULL);
    int r = co_queue_get(q, NULL, -1);
    int e = errno;
    co_queue_free(q, NULL);
    _exit(r == -1 && e == EDEADLK ? 3 : 1);
}

/* A hand-off (a put waking a getter of the same hub, the putter then
 * blocking in its own get) never jumps the run queue: coroutines runnable
 * meanwhile each run at least once per round trip (FIFO), and a sleeper's
 * deadline holds while the pair goes flat out.  (A Go-style "run the
 * woken one next" would starve the bystanders here.) */
static co_queue_t *hq_ping, *hq_pong;
static volatile bool hand_stop, sleeper_done;

static void *bystander(void *arg)
{
    long *n = arg;
    while (!hand_stop) {
        (*n)++;
        co_yield_now();
    }
    return NULL;
}

static void *echo(void *arg)
{
    (void)arg;
    void *it;
    while (co_queue_get(hq_ping, &it, -1) == 0) co_queue_put(hq_pong, it, -1);
    return NULL;
}

static void *late_sleeper(void *arg)
{
    (void)arg;
    int64_t t0 = co_now();
    co_sleep_ms(30);
    sleeper_done = true;
    return (void *)(intptr_t)(co_now() - t0);
}

static void test_handoff_fair(void)
{
    hq_ping = mk(CO_QUEUE_FIFO, 0);
    hq_pong = mk(CO_QUEUE_FIFO, 0);
    hand_stop = sleeper_done = false;
    long runs[3] = {0};
    co_coro_t *e = co_spawn(echo, NULL), *s = co_spawn(late_sleeper, NULL), *b[3];
    for (int i = 0; i < 3; i++) b[i] = co_spawn(bystander, &runs[i]);
    co_yield_now();
    long rounds = 0;
    long before[3] = {runs[0], runs[1], runs[2]};
    while (!sleeper_done) {
        void *it;
        ASSERT_EQ(co_queue_put(hq_ping, P(rounds), -1), 0);
        ASSERT_EQ(co_queue_get(hq_pong, &it, -1), 0);
        ASSERT_EQ(I(it), (int)rounds);
        rounds++;
    }
    for (int i = 0; i < 3; i++)
        ASSERT_(runs[i] - before[i] >= rounds, "bystander %d ran %ld times in %ld round trips", i, runs[i] - before[i],
                rounds);
    void *slept;
    ASSERT_EQ(co_join(s, -1, &slept), 0);
    ASSERT_TIME((int64_t)(intptr_t)slept, 30, 2000);
    hand_stop = true;
    for (int i = 0; i < 3; i++) ASSERT_EQ(co_join(b[i], -1, NULL), 0);
    co_queue_close(hq_ping);
    ASSERT_EQ(co_join(e, -1, NULL), 0);
    co_queue_free(hq_ping, NULL);
    co_queue_free(hq_pong, NULL);
}

static void test_deadlock(void)
{
    char buf[2048];
    int st = run_child(queue_forever, NULL, buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 3, "status %d: %s", st, buf);
    ASSERT(strstr(buf, "co_queue_get"));
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_orders);
    RUN(test_comparator);
    RUN(test_bounded);
    RUN(test_cancellation);
    RUN(test_close);
    RUN(test_joinable);
    RUN(test_threads);
    RUN(test_handoff_fair);
    RUN(test_deadlock);
    return TEST_MAIN_END();
}
