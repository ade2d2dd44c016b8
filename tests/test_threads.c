/* Hubs on several threads: cross-thread join and kill through the inbox,
 * plain threads joining coroutines, thread exit with live coroutines. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "cogent.h"
#include "harness.h"

static void *sleep_ret(void *arg)
{
    if (co_sleep_ms((intptr_t)arg) < 0) return (void *)(intptr_t)-errno;
    return arg;
}

typedef struct handoff {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    co_coro_t *c;
    int stop;
} handoff_t;

/* A thread whose hub runs a coroutine; hands the handle out. */
static void *owner_thread(void *arg)
{
    handoff_t *h = arg;
    co_coro_t *c = co_spawn(sleep_ret, (void *)30);
    pthread_mutex_lock(&h->mu);
    h->c = c;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    /* Keep the hub alive until told; the coroutine runs while we sleep. */
    while (co_sleep_ms(1) == 0) {
        pthread_mutex_lock(&h->mu);
        int stop = h->stop;
        pthread_mutex_unlock(&h->mu);
        if (stop) break;
    }
    return NULL;
}

static co_coro_t *wait_handle(handoff_t *h)
{
    pthread_mutex_lock(&h->mu);
    while (!h->c) pthread_cond_wait(&h->cv, &h->mu);
    co_coro_t *c = h->c;
    pthread_mutex_unlock(&h->mu);
    return c;
}

static void stop_owner(handoff_t *h, pthread_t t)
{
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_mutex_unlock(&h->mu);
    pthread_join(t, NULL);
}

static void test_join_from_other_thread(void)
{
    handoff_t h = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0};
    pthread_t t;
    pthread_create(&t, NULL, owner_thread, &h);
    co_coro_t *c = wait_handle(&h);
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0); /* main's hub parks until the inbox rings */
    ASSERT_EQ((intptr_t)r, 30);
    stop_owner(&h, t);
}

/* The owner's hub goes idle once its last coroutine finishes (its main
 * waits on an event): a join from another thread still learns of the end
 * at once (found by test_fuzz: the end was published only when the owner's
 * hub next had something to run). */
static co_event_t idle_release = CO_EVENT_INIT, idle_ready = CO_EVENT_INIT;
static co_coro_t *idle_c;

static void *idle_owner(void *arg)
{
    (void)arg;
    idle_c = co_spawn(sleep_ret, (void *)20);
    co_event_set(&idle_ready);
    ASSERT_EQ(co_event_wait(&idle_release, -1), 0); /* nothing else runs on this hub */
    return NULL;
}

static void test_join_last_on_idle_hub(void)
{
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, idle_owner, NULL), 0);
    ASSERT_EQ(co_event_wait(&idle_ready, -1), 0);
    int64_t t0 = co_now();
    void *r = NULL;
    int rc = co_join(idle_c, co_now() + 5000, &r);
    int64_t took = co_now() - t0;
    ASSERT_EQ(rc, 0);
    ASSERT_EQ((intptr_t)r, 20);
    ASSERT_TIME(took, 15, 2000);
    co_event_set(&idle_release);
    ASSERT_EQ(pthread_join(t, NULL), 0);
}

/* A co_wait on another hub's coroutine whose deadline passes between its
 * first look and its park returns ETIMEDOUT at once, leaving its watch on
 * the coroutine: the watch's answer, when the coroutine ends, must not end
 * the caller's next park as if it were that park's own wake-up (found by
 * test_fuzz: a lock wait "woken without a grant").  Each round aims the
 * deadline at the next millisecond tick, a few hundred ns ahead. */
static co_event_t tick_go = CO_EVENT_INIT;
static co_queue_t *tick_requests, *tick_handles;

static void *wait_tick_go(void *arg)
{
    (void)arg;
    co_event_wait(&tick_go, -1);
    return NULL;
}

static void *tick_spawner(void *arg)
{
    (void)arg;
    void *req;
    while (co_queue_get(tick_requests, &req, -1) == 0) co_queue_put(tick_handles, co_spawn(wait_tick_go, NULL), -1);
    return NULL;
}

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void test_watch_after_failed_park(void)
{
    tick_requests = co_queue_new(NULL);
    tick_handles = co_queue_new(NULL);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, tick_spawner, NULL), 0);
    for (int k = 0; k < 150; k++) {
        co_event_clear(&tick_go);
        ASSERT_EQ(co_queue_put(tick_requests, (void *)1, -1), 0);
        void *c;
        ASSERT_EQ(co_queue_get(tick_handles, &c, -1), 0);
        int64_t d = mono_ns() / 1000000 + 1, lead = 20 + (k % 60) * 15;
        while (mono_ns() < d * 1000000 - lead) {
        }
        co_wait(c, d);                 /* 0 or ETIMEDOUT: either way, */
        co_event_set(&tick_go);        /* c ends now, answering its watches, */
        ASSERT_EQ(co_sleep_ms(10), 0); /* and only the timer ends this */
        ASSERT_EQ(co_join(c, -1, NULL), 0);
    }
    co_queue_close(tick_requests);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    co_queue_free(tick_requests, NULL);
    co_queue_free(tick_handles, NULL);
}

static void test_kill_from_other_thread(void)
{
    handoff_t h = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0};
    pthread_t t;
    pthread_create(&t, NULL, owner_thread, &h);
    co_coro_t *c = wait_handle(&h);
    ASSERT_ERR(co_join(c, co_now() + 5, NULL), ETIMEDOUT);
    co_kill(c);
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, -ECANCELED);
    stop_owner(&h, t);
}

/* A thread exits while its coroutines still run: they are killed and run
 * to their end; handles held elsewhere stay joinable. */
static co_coro_t *orphan;
static void *short_lived(void *arg)
{
    (void)arg;
    orphan = co_spawn(sleep_ret, (void *)100000);
    co_sleep_ms(1);
    return NULL; /* exits with orphan still sleeping */
}

static void test_thread_exit_with_live_coroutines(void)
{
    pthread_t t;
    pthread_create(&t, NULL, short_lived, NULL);
    pthread_join(t, NULL);
    ASSERT(co_finished(orphan));
    void *r;
    ASSERT_EQ(co_join(orphan, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, -ECANCELED);
}

/* pthread_cancel of a thread with a hub (docs/coroutine.md): cogent's
 * calls are not cancellation points, so a thread parked in its hub stays;
 * the cancel is acted on at the program's own next cancellation point.
 * In the main coroutine that is a normal thread exit: the other
 * coroutines are killed and run to their end. */
static co_event_t go_on;
static co_coro_t *bystander;
static atomic_int parked_main;

static void *cancellable(void *unused)
{
    (void)unused;
    bystander = co_spawn(sleep_ret, (void *)100000);
    atomic_store(&parked_main, 1);
    co_event_wait(&go_on, -1); /* parked in the hub: not a cancellation point */
    pthread_testcancel();      /* the program's own: the thread ends here */
    return (void *)1;
}

static void test_cancel_in_main_coroutine(void)
{
    co_event_init(&go_on);
    atomic_store(&parked_main, 0);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, cancellable, NULL), 0);
    while (!atomic_load(&parked_main)) co_sleep_ms(1);
    co_sleep_ms(20);
    ASSERT_EQ(pthread_cancel(t), 0);
    co_sleep_ms(50);
    ASSERT_EQ(pthread_tryjoin_np(t, NULL), EBUSY); /* still parked: not cancelled inside cogent */
    co_event_set(&go_on);
    void *r;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, PTHREAD_CANCELED);
    ASSERT(co_finished(bystander)); /* killed by the thread's exit */
    ASSERT_EQ(co_join(bystander, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, -ECANCELED);
}

/* Acted on inside a spawned coroutine, the thread's exit cannot unwind it:
 * refused with a message. */
static void *exits_in_coroutine(void *unused)
{
    (void)unused;
    pthread_exit(NULL);
}
static void *hub_thread_exiting_in_coro(void *unused)
{
    (void)unused;
    co_join(co_spawn(exits_in_coroutine, NULL), -1, NULL);
    return NULL;
}
static void child_exit_in_coroutine(void *unused)
{
    (void)unused;
    pthread_t t;
    pthread_create(&t, NULL, hub_thread_exiting_in_coro, NULL);
    pthread_join(t, NULL);
}

static void test_exit_in_coroutine_refused(void)
{
    /* The sanitizers' own bookkeeping cannot follow a thread that ends on
     * a coroutine's stack: they report before cogent can. */
    if (TEST_SANITIZED) return;
    char buf[2048];
    int st = run_child(child_exit_in_coroutine, NULL, buf, sizeof buf);
    ASSERT_(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(buf, "pthread_exit or pthread_cancel") &&
                strstr(buf, "inside coroutine #"),
            "status %#x: %s", st, buf);
}

/* Stress: T threads, each with its own hub and K coroutines; every thread
 * joins the coroutines of the next thread, cross-thread, while its own
 * run.  No wake-up may be lost (the test would hang). */
enum { T = 4, K = 200 };
static co_coro_t *grid[T][K];
static pthread_barrier_t spawned, joined;

static void *yield_some(void *arg)
{
    for (intptr_t i = 0; i < (intptr_t)arg % 7; i++) co_yield_now();
    co_sleep_ms((intptr_t)arg % 3);
    return arg;
}

static void *grid_thread(void *arg)
{
    intptr_t me = (intptr_t)arg;
    for (intptr_t k = 0; k < K; k++) grid[me][k] = co_spawn(yield_some, (void *)(me * K + k));
    pthread_barrier_wait(&spawned);
    intptr_t other = (me + 1) % T;
    for (intptr_t k = 0; k < K; k++) {
        void *r;
        ASSERT_EQ(co_join(grid[other][k], -1, &r), 0);
        ASSERT_EQ((intptr_t)r, other * K + k);
    }
    /* Run our own coroutines to their end before blocking the thread
     * outside cogent (a blocked thread runs no coroutines). */
    co_hub_stats_t st;
    for (co_hub_stats(&st); st.coroutines > 0; co_hub_stats(&st)) co_sleep_ms(1);
    pthread_barrier_wait(&joined);
    return NULL;
}

static void test_cross_thread_join_stress(void)
{
    pthread_barrier_init(&spawned, NULL, T);
    pthread_barrier_init(&joined, NULL, T);
    pthread_t ts[T];
    for (intptr_t i = 0; i < T; i++) pthread_create(&ts[i], NULL, grid_thread, (void *)i);
    for (int i = 0; i < T; i++) pthread_join(ts[i], NULL);
    pthread_barrier_destroy(&spawned);
    pthread_barrier_destroy(&joined);
}

/* A plain thread that never used cogent joins a coroutine: it blocks. */
static void *plain_joiner(void *arg)
{
    void *r = NULL;
    if (co_join(arg, -1, &r) < 0) return (void *)-1;
    return r;
}

static void test_plain_thread_joins(void)
{
    co_coro_t *c = co_spawn(sleep_ret, (void *)20);
    pthread_t t;
    pthread_create(&t, NULL, plain_joiner, c);
    co_sleep_ms(60); /* main's hub runs c meanwhile */
    void *r;
    pthread_join(t, &r);
    ASSERT_EQ((intptr_t)r, 20);
}

/* Two hubs that both waited on one descriptor exit at the same moment,
 * each dropping its registrations from the fd table.  Its walk over the
 * entries first looked at each without the entry's lock while the other
 * exiting hub wrote it under the lock: a data race TSan reported every
 * time (found by test_fuzz).  The walk now takes each entry's lock. */
static int exit_fd[2];
static pthread_barrier_t exit_barrier;

static void *wait_then_exit(void *arg)
{
    (void)arg;
    char b;
    (void)co_hub_poller();                                   /* a hub of its own */
    ASSERT_EQ(co_read(exit_fd[0], &b, 1, co_now() + 1), -1); /* registers the fd with it */
    ASSERT_EQ(errno, ETIMEDOUT);
    pthread_barrier_wait(&exit_barrier);
    return NULL; /* both hubs exit now */
}

static void test_hubs_exit_at_once(void)
{
    ASSERT_EQ(co_socketpair(exit_fd), 0);
    for (int round = 0; round < 5; round++) {
        pthread_t t[2];
        ASSERT_EQ(pthread_barrier_init(&exit_barrier, NULL, 2), 0);
        for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_create(&t[i], NULL, wait_then_exit, NULL), 0);
        for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
        pthread_barrier_destroy(&exit_barrier);
    }
    co_close(exit_fd[0]);
    co_close(exit_fd[1]);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_join_from_other_thread);
    RUN(test_join_last_on_idle_hub);
    RUN(test_watch_after_failed_park);
    RUN(test_kill_from_other_thread);
    RUN(test_thread_exit_with_live_coroutines);
    RUN(test_cancel_in_main_coroutine);
    RUN(test_exit_in_coroutine_refused);
    RUN(test_cross_thread_join_stress);
    RUN(test_plain_thread_joins);
    RUN(test_hubs_exit_at_once);
    return TEST_MAIN_END();
}
