/* Thread pools (co_pool_*): submit/result, lazy workers reused when idle,
 * names, map (order, window, chunks, failures, deadlines), bounded
 * queues, initializer failure (a broken pool), shutdown with and without
 * cancel, join, cancel of queued tasks, co_pool_run from coroutines, the
 * default pool, a task blocking on a queue fed from another hub, a stress
 * of many hubs submitting, exit with a busy pool, and a fork child. */
#include <pthread.h>
#include <stdatomic.h>

#include "cogent.h"
#include "harness.h"

static void *square(void *arg)
{
    intptr_t x = (intptr_t)arg;
    return (void *)(x * x);
}

static void *my_name(void *arg)
{
    (void)arg;
    return (void *)co_thread_name(co_thread_current());
}

static co_event_t gate;

static void *wait_gate(void *arg)
{
    co_event_wait(&gate, -1);
    return arg;
}

static void test_submit_result(void)
{
    co_pool_t *p = co_pool_new(&(co_pool_opts_t){.max_workers = 2, .name = "sq"});
    ASSERT(p != NULL);
    co_pool_stats_t st;
    co_pool_stats(p, &st);
    ASSERT_EQ(st.workers, 0); /* started lazily */
    co_future_t *f = co_pool_submit(p, square, (void *)7, -1);
    ASSERT(f != NULL);
    void *v;
    ASSERT_EQ(co_future_result(f, -1, &v), 0);
    ASSERT_EQ((intptr_t)v, 49);
    ASSERT_EQ(co_future_state(f), CO_FUTURE_DONE);
    co_future_free(f);
    /* One at a time: the idle worker is reused, no second one starts. */
    for (intptr_t i = 0; i < 50; i++) {
        f = co_pool_submit(p, square, (void *)i, -1);
        ASSERT_EQ(co_future_result(f, -1, &v), 0);
        ASSERT_EQ((intptr_t)v, i * i);
        co_future_free(f);
    }
    co_pool_stats(p, &st);
    ASSERT_EQ(st.workers, 1);
    ASSERT_EQ(st.completed, 51);
    f = co_pool_submit(p, my_name, NULL, -1);
    ASSERT_EQ(co_future_result(f, -1, &v), 0);
    ASSERT_STR_EQ((const char *)v, "sq_0");
    co_future_free(f);
    ASSERT_ERR(co_pool_submit(p, NULL, NULL, -1), EINVAL);
    ASSERT_ERR(co_pool_join(p, 0), EINVAL); /* still running: nothing would end */
    co_pool_free(p);
    co_pool_free(NULL);
}

static void test_defaults(void)
{
    co_pool_t *p = co_pool_new(NULL);
    co_event_init(&gate);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long want = cpus + 4 < 32 ? cpus + 4 : 32;
    co_future_t *fs[40];
    for (int i = 0; i < 40; i++) fs[i] = co_pool_submit(p, wait_gate, NULL, -1);
    co_pool_stats_t st;
    co_pool_stats(p, &st);
    ASSERT_EQ(st.workers, want);
    for (int i = 0; i < 2000 && st.queued > (size_t)(40 - want); i++) {
        co_sleep_ms(1); /* the workers take their first task */
        co_pool_stats(p, &st);
    }
    ASSERT_EQ(st.queued, 40 - want);
    co_event_set(&gate);
    ASSERT_EQ(co_futures_wait(fs, 40, CO_ALL_COMPLETED, -1), 40);
    for (int i = 0; i < 40; i++) co_future_free(fs[i]);
    co_future_t *f = co_pool_submit(p, my_name, NULL, -1);
    void *v;
    co_future_result(f, -1, &v);
    ASSERT(!strncmp(v, "ThreadPool-", 11));
    co_future_free(f);
    /* Workers are the program's threads: enumerate lists them. */
    ASSERT(co_thread_count() >= (size_t)want + 1);
    co_pool_free(p);
    /* "No limit": the slot array's size once overflowed (64 bytes for
     * SIZE_MAX / 64 + 2 workers) and workers wrote past it. */
    co_pool_t *big = co_pool_new(&(co_pool_opts_t){.max_workers = SIZE_MAX / 64 + 2});
    ASSERT(big != NULL);
    co_future_t *g[8];
    for (int i = 0; i < 8; i++) ASSERT((g[i] = co_pool_submit(big, my_name, NULL, -1)) != NULL);
    ASSERT_EQ(co_futures_wait(g, 8, CO_ALL_COMPLETED, -1), 8);
    for (int i = 0; i < 8; i++) co_future_free(g[i]);
    co_pool_free(big);
    ASSERT_ERR(co_pool_new(&(co_pool_opts_t){.stack_size = 100}), EINVAL);
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ASSERT_ERR(co_pool_new(&(co_pool_opts_t){.name = longname}), EINVAL);
}

/* ---------------------------------------------------------------- map */

static atomic_int inflight, max_inflight;

static void *tracked(void *arg)
{
    int now = ++inflight;
    int m = max_inflight;
    while (now > m && !atomic_compare_exchange_weak(&max_inflight, &m, now)) {
    }
    intptr_t x = (intptr_t)arg;
    struct timespec ts = {0, (x % 3) * 1000000}; /* out-of-order completion */
    nanosleep(&ts, NULL);
    inflight--;
    return (void *)(x * 2);
}

static void test_map_order_window(void)
{
    co_pool_t *p = co_pool_new(&(co_pool_opts_t){.max_workers = 8});
    enum { N = 100 };
    void *items[N], *results[N];
    for (intptr_t i = 0; i < N; i++) items[i] = (void *)i;
    inflight = max_inflight = 0;
    size_t nd = 0;
    ASSERT_EQ(co_pool_map(p, tracked, items, N, results, &nd, -1, &(co_map_opts_t){.window = 3}), 0);
    ASSERT_EQ(nd, N);
    for (intptr_t i = 0; i < N; i++) ASSERT_EQ((intptr_t)results[i], 2 * i);
    ASSERT(max_inflight <= 3); /* never more than the window in flight */
    ASSERT(max_inflight >= 2);

    /* Chunks: items per task; the window counts tasks. */
    inflight = max_inflight = 0;
    memset(results, 0, sizeof results);
    ASSERT_EQ(co_pool_map(p, tracked, items, N, results, NULL, -1, &(co_map_opts_t){.window = 2, .chunksize = 7}), 0);
    for (intptr_t i = 0; i < N; i++) ASSERT_EQ((intptr_t)results[i], 2 * i);
    ASSERT(max_inflight <= 2);
    ASSERT_EQ(co_pool_map(p, tracked, items, 0, results, &nd, -1, NULL), 0);
    ASSERT_EQ(nd, 0);
    co_pool_free(p);
}

static void *fail_at_13(void *arg)
{
    if ((intptr_t)arg == 13) co_task_fail(EDOM, "thirteen");
    return arg;
}

static void test_map_failure(void)
{
    co_pool_t *p = co_pool_new(&(co_pool_opts_t){.max_workers = 4});
    enum { N = 40 };
    void *items[N], *results[N];
    for (intptr_t i = 0; i < N; i++) items[i] = (void *)i;
    for (size_t chunk = 1; chunk <= 5; chunk += 4) {
        size_t nd = 99;
        memset(results, 0, sizeof results);
        ASSERT_ERR(co_pool_map(p, fail_at_13, items, N, results, &nd, -1, &(co_map_opts_t){.chunksize = chunk}), EDOM);
        ASSERT_EQ(nd, 13); /* the results before the failure, in order */
        for (intptr_t i = 0; i < 13; i++) ASSERT_EQ((intptr_t)results[i], i);
    }
    /* A deadline: tasks not started are cancelled, the running ones end
     * on their own (the pool is freed only after). */
    co_event_init(&gate);
    size_t nd;
    int64_t t0 = co_now();
    ASSERT_ERR(co_pool_map(p, wait_gate, items, N, results, &nd, co_now() + 30, NULL), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 20, 3000);
    ASSERT_EQ(nd, 0);
    co_event_set(&gate);
    ASSERT_ERR(co_task_fail(EIO, "not in a task"), EINVAL);
    co_pool_free(p);
}

/* ----------------------------------------------------- bounded queue */

static void *submit_in_coroutine(void *arg)
{
    co_future_t *f = co_pool_submit(arg, square, (void *)3, co_now() + 10000);
    if (!f) return (void *)(intptr_t)-errno;
    void *v;
    co_future_result(f, -1, &v);
    co_future_free(f);
    return v;
}

static void test_bounded_queue(void)
{
    co_event_init(&gate);
    co_pool_t *p = co_pool_new(&(co_pool_opts_t){.max_workers = 1, .max_queue = 1});
    co_future_t *a = co_pool_submit(p, wait_gate, (void *)1, -1); /* runs, blocks */
    co_future_t *b = co_pool_submit(p, square, (void *)2, -1);    /* queued */
    ASSERT(a && b);
    for (int i = 0; i < 1000 && !co_future_running(a); i++) co_sleep_ms(1);
    ASSERT(co_future_running(a));
    ASSERT_ERR(co_pool_submit(p, square, (void *)3, 0), EAGAIN); /* full: the try form */
    int64_t t0 = co_now();
    ASSERT_ERR(co_pool_submit(p, square, (void *)3, co_now() + 30), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 20, 3000);
    /* A coroutine waits for room and parks meanwhile. */
    co_coro_t *c = co_spawn(submit_in_coroutine, p);
    co_sleep_ms(10);
    ASSERT(!co_finished(c));
    co_event_set(&gate);
    void *v;
    ASSERT_EQ(co_join(c, -1, &v), 0);
    ASSERT_EQ((intptr_t)v, 9);
    ASSERT_EQ(co_future_result(b, -1, &v), 0);
    ASSERT_EQ((intptr_t)v, 4);
    co_future_free(a);
    co_future_free(b);

    /* A waiting submitter is killed: ECANCELED, nothing queued. */
    co_event_clear(&gate);
    a = co_pool_submit(p, wait_gate, NULL, -1);
    b = co_pool_submit(p, square, (void *)2, -1);
    c = co_spawn(submit_in_coroutine, p);
    co_sleep_ms(5);
    co_kill(c);
    ASSERT_EQ(co_join(c, -1, &v), 0);
    ASSERT_EQ((intptr_t)v, -ECANCELED);
    /* Cancelling the queued task frees its room at once. */
    ASSERT_EQ(co_future_cancel(b), 0);
    co_future_t *d = co_pool_submit(p, square, (void *)5, 0);
    ASSERT(d != NULL);
    co_event_set(&gate);
    ASSERT_EQ(co_future_result(d, -1, &v), 0);
    ASSERT_EQ((intptr_t)v, 25);
    ASSERT_ERR(co_future_result(b, -1, &v), ECANCELED);
    co_future_free(a);
    co_future_free(b);
    co_future_free(d);
    co_pool_free(p);
}

/* ------------------------------------------------------- initializer */

static atomic_int inits;

static int init_fails(void *arg)
{
    inits++;
    return (int)(intptr_t)arg;
}

static void test_broken_pool(void)
{
    inits = 0;
    co_pool_t *p = co_pool_new(&(co_pool_opts_t){.max_workers = 1, .init = init_fails, .init_arg = (void *)EACCES});
    co_future_t *fs[5];
    for (int i = 0; i < 5; i++) {
        fs[i] = co_pool_submit(p, square, (void *)2, -1);
        if (!fs[i]) ASSERT_EQ(errno, ENOTRECOVERABLE); /* the break may come first */
    }
    for (int i = 0; i < 5; i++) {
        if (!fs[i]) continue;
        ASSERT_ERR(co_future_result(fs[i], -1, NULL), ENOTRECOVERABLE);
        const char *msg;
        ASSERT_EQ(co_future_error(fs[i], &msg), ENOTRECOVERABLE);
        ASSERT_(msg && strstr(msg, "broken") && strstr(msg, strerror(EACCES)), "%s", msg ? msg : "(null)");
        co_future_free(fs[i]);
    }
    ASSERT_ERR(co_pool_submit(p, square, NULL, -1), ENOTRECOVERABLE);
    ASSERT_EQ(co_pool_join(p, -1), 0); /* a broken pool ends without shutdown */
    ASSERT_EQ(inits, 1);
    co_pool_free(p);

    /* An initializer that succeeds runs once per worker. */
    inits = 0;
    p = co_pool_new(&(co_pool_opts_t){.max_workers = 3, .init = init_fails, .init_arg = NULL});
    co_event_init(&gate);
    for (int i = 0; i < 3; i++) fs[i] = co_pool_submit(p, wait_gate, NULL, -1);
    co_event_set(&gate);
    co_futures_wait(fs, 3, CO_ALL_COMPLETED, -1);
    for (int i = 0; i < 3; i++) co_future_free(fs[i]);
    co_pool_free(p);
    ASSERT_EQ(inits, 3);
}

/* ----------------------------------------------------------- shutdown */

static atomic_int ran;

static void *count_run(void *arg)
{
    ran++;
    return arg;
}

static void test_shutdown(void)
{
    /* Without cancel: the queue drains. */
    co_event_init(&gate);
    ran = 0;
    co_pool_t *p = co_pool_new(&(co_pool_opts_t){.max_workers = 1});
    co_future_t *a = co_pool_submit(p, wait_gate, NULL, -1);
    co_future_t *q[10];
    for (int i = 0; i < 10; i++) q[i] = co_pool_submit(p, count_run, NULL, -1);
    co_pool_shutdown(p, false);
    ASSERT_ERR(co_pool_submit(p, count_run, NULL, -1), EPIPE);
    ASSERT_ERR(co_pool_join(p, 0), ETIMEDOUT);
    ASSERT_ERR(co_pool_join(p, co_now() + 20), ETIMEDOUT);
    co_event_set(&gate);
    ASSERT_EQ(co_pool_join(p, -1), 0);
    ASSERT_EQ(ran, 10);
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ(co_future_state(q[i]), CO_FUTURE_DONE);
        co_future_free(q[i]);
    }
    co_pool_shutdown(p, true); /* idempotent */
    ASSERT_EQ(co_pool_join(p, 0), 0);
    co_future_free(a);
    co_pool_free(p);

    /* With cancel: queued tasks are cancelled, the running one finishes. */
    co_event_clear(&gate);
    ran = 0;
    p = co_pool_new(&(co_pool_opts_t){.max_workers = 1});
    a = co_pool_submit(p, wait_gate, (void *)8, -1);
    for (int i = 0; i < 10; i++) q[i] = co_pool_submit(p, count_run, NULL, -1);
    for (int i = 0; i < 1000 && !co_future_running(a); i++) co_sleep_ms(1);
    co_pool_shutdown(p, true);
    for (int i = 0; i < 10; i++) ASSERT(co_future_cancelled(q[i]));
    co_event_set(&gate);
    ASSERT_EQ(co_pool_join(p, -1), 0);
    void *v;
    ASSERT_EQ(co_future_result(a, -1, &v), 0);
    ASSERT_PTR_EQ(v, (void *)8);
    ASSERT_EQ(ran, 0);
    for (int i = 0; i < 10; i++) co_future_free(q[i]);
    co_future_free(a);
    co_pool_free(p);
}

static void *join_own_pool(void *arg)
{
    co_pool_shutdown(arg, false);
    return (void *)(intptr_t)(co_pool_join(arg, -1) < 0 ? errno : 0);
}

static void test_join_from_worker(void)
{
    co_pool_t *p = co_pool_new(&(co_pool_opts_t){.max_workers = 1});
    co_future_t *f = co_pool_submit(p, join_own_pool, p, -1);
    void *v;
    ASSERT_EQ(co_future_result(f, -1, &v), 0);
    ASSERT_EQ((intptr_t)v, EDEADLK);
    co_future_free(f);
    co_pool_free(p);
}

/* A future dropped before its task ran: the task still runs. */
static void test_free_before_done(void)
{
    co_event_init(&gate);
    ran = 0;
    co_pool_t *p = co_pool_new(&(co_pool_opts_t){.max_workers = 1});
    co_future_t *a = co_pool_submit(p, wait_gate, NULL, -1);
    co_future_free(co_pool_submit(p, count_run, NULL, -1));
    co_future_free(a);
    co_event_set(&gate);
    co_pool_free(p); /* drains */
    ASSERT_EQ(ran, 1);
}

/* --------------------------------------------------- from coroutines */

static atomic_int ticks;

static void *ticker(void *arg)
{
    (void)arg;
    while (co_sleep_ms(1) == 0) ticks++;
    return NULL;
}

static void *blocking_sleep(void *arg)
{
    struct timespec ts = {0, 60 * 1000000};
    nanosleep(&ts, NULL); /* a plain blocking call, on the worker */
    return arg;
}

static void *run_it(void *arg)
{
    void *v = NULL;
    if (co_pool_run(arg, blocking_sleep, (void *)21, -1, &v) < 0) return (void *)(intptr_t)-errno;
    return v;
}

static void test_run_from_coroutine(void)
{
    ticks = 0;
    co_coro_t *tk = co_spawn(ticker, NULL);
    co_coro_t *c = co_spawn(run_it, NULL); /* the default pool */
    void *v;
    ASSERT_EQ(co_join(c, -1, &v), 0);
    ASSERT_PTR_EQ(v, (void *)21);
    ASSERT(ticks >= 2); /* the hub ran on while the call blocked a worker */
    co_kill(tk);
    co_join(tk, -1, NULL);
    /* Killed while it waits: ECANCELED; the running task ends on its own. */
    c = co_spawn(run_it, NULL);
    co_sleep_ms(10);
    co_kill(c);
    ASSERT_EQ(co_join(c, -1, &v), 0);
    ASSERT_EQ((intptr_t)v, -ECANCELED);
    /* The default pool's workers carry its name. */
    void *name;
    ASSERT_EQ(co_pool_run(NULL, my_name, NULL, -1, &name), 0);
    ASSERT(!strncmp(name, "cogent-pool_", 12));
    ASSERT_PTR_EQ(co_pool_default(), co_pool_default());
    /* A task's error comes back as errno. */
    ASSERT_ERR(co_pool_run(NULL, fail_at_13, (void *)13, -1, NULL), EDOM);
    /* Submit and map take NULL for the default pool too. */
    co_future_t *f = co_pool_submit(NULL, my_name, NULL, -1);
    ASSERT(f != NULL);
    ASSERT_EQ(co_future_result(f, -1, &name), 0);
    ASSERT(!strncmp(name, "cogent-pool_", 12));
    co_future_free(f);
    void *items[3] = {(void *)1, (void *)2, (void *)3}, *out[3];
    size_t nd;
    ASSERT_EQ(co_pool_map(NULL, my_name, items, 3, out, &nd, -1, NULL), 0);
    ASSERT_EQ(nd, 3);
    for (int i = 0; i < 3; i++) ASSERT(!strncmp(out[i], "cogent-pool_", 12));
}

/* A task blocks on a cogent queue that a coroutine of another thread's
 * hub feeds. */
static co_queue_t *feed;

static void *consume3(void *arg)
{
    (void)arg;
    intptr_t sum = 0;
    for (int i = 0; i < 3; i++) {
        void *it;
        if (co_queue_get(feed, &it, co_now() + 10000) < 0) return (void *)-1;
        sum += (intptr_t)it;
    }
    return (void *)sum;
}

static void *feeder(void *arg)
{
    (void)arg;
    for (intptr_t i = 1; i <= 3; i++) {
        co_sleep_ms(5);
        co_queue_put(feed, (void *)i, -1);
    }
    return NULL;
}

static void *hub_with_feeder(void *arg)
{
    (void)arg;
    co_join(co_spawn(feeder, NULL), -1, NULL);
    return NULL;
}

static void test_task_waits_on_other_hub(void)
{
    feed = co_queue_new(NULL);
    co_pool_t *p = co_pool_new(&(co_pool_opts_t){.max_workers = 2});
    co_future_t *f = co_pool_submit(p, consume3, NULL, -1);
    co_thread_t *t = co_thread_new(hub_with_feeder, NULL, NULL);
    void *v;
    ASSERT_EQ(co_future_result(f, -1, &v), 0);
    ASSERT_EQ((intptr_t)v, 6);
    co_thread_join(t, -1, NULL);
    co_thread_free(t);
    co_future_free(f);
    co_pool_free(p);
    co_queue_free(feed, NULL);
}

/* Callbacks of pool futures: on the owner's hub. */
static atomic_int cb_runs;
static pthread_t cb_thread;

static void cb(co_future_t *f, void *arg)
{
    (void)f;
    (void)arg;
    cb_thread = pthread_self();
    cb_runs++;
}

static void test_pool_callbacks(void)
{
    cb_runs = 0;
    co_pool_t *p = co_pool_new(&(co_pool_opts_t){.max_workers = 2});
    co_event_init(&gate);
    co_future_t *f = co_pool_submit(p, wait_gate, NULL, -1);
    co_future_add_done_callback(f, cb, NULL);
    co_future_free(f); /* the callback still runs */
    co_event_set(&gate);
    for (int i = 0; i < 2000 && cb_runs < 1; i++) co_sleep_ms(1);
    ASSERT_EQ(cb_runs, 1);
    ASSERT(pthread_equal(cb_thread, pthread_self()));
    co_pool_free(p);
}

/* --------------------------------------------------------------- stress */

#define HUBS 3
#define CORO 20
#define EACH 200

static co_pool_t *sp;
static atomic_long total;

static void *submitter(void *arg)
{
    intptr_t base = (intptr_t)arg;
    long sum = 0;
    for (intptr_t i = 0; i < EACH; i++) {
        co_future_t *f = co_pool_submit(sp, square, (void *)(base + i), -1);
        void *v;
        if (!f || co_future_result(f, -1, &v) < 0) return (void *)-1;
        sum += (long)(intptr_t)v;
        co_future_free(f);
    }
    total += sum;
    return NULL;
}

static void *stress_hub(void *arg)
{
    intptr_t h = (intptr_t)arg;
    co_coro_t *cs[CORO];
    for (intptr_t i = 0; i < CORO; i++) cs[i] = co_spawn(submitter, (void *)((h * CORO + i) * 1000));
    void *rs[CORO];
    co_joinall(cs, CORO, -1, rs);
    for (int i = 0; i < CORO; i++)
        if (rs[i]) return rs[i];
    return NULL;
}

static void test_stress(void)
{
    sp = co_pool_new(&(co_pool_opts_t){.max_workers = 3});
    total = 0;
    co_thread_t *t[HUBS];
    for (intptr_t i = 0; i < HUBS; i++) t[i] = co_thread_new(stress_hub, (void *)i, NULL);
    long want = 0;
    for (long k = 0; k < HUBS * CORO; k++)
        for (long i = 0; i < EACH; i++) want += (k * 1000 + i) * (k * 1000 + i);
    for (int i = 0; i < HUBS; i++) {
        void *r;
        ASSERT_EQ(co_thread_join(t[i], -1, &r), 0);
        ASSERT_PTR_EQ(r, NULL);
        co_thread_free(t[i]);
    }
    ASSERT_EQ(total, want);
    co_pool_stats_t st;
    co_pool_stats(sp, &st);
    ASSERT_EQ(st.completed, HUBS * CORO * EACH);
    co_pool_free(sp);
}

/* ------------------------------------------------------- exit and fork */

static bool daemon_case;

static void *late_mark(void *arg)
{
    /* Long for the daemon pool: exit must not wait (the test would take
     * seconds, and see the marks, if it did). */
    struct timespec ts = {daemon_case ? 3 : 0, daemon_case ? 0 : 100 * 1000000};
    nanosleep(&ts, NULL);
    fputs(arg, stderr);
    return NULL;
}

static void exit_child(void *arg)
{
    daemon_case = arg != NULL;
    co_pool_t *p = co_pool_new(&(co_pool_opts_t){.max_workers = 1, .daemon = daemon_case});
    /* One task runs, one is queued behind it: both finish before exit
     * returns, unless the pool is a daemon. */
    co_future_free(co_pool_submit(p, late_mark, "first\n", -1));
    co_future_free(co_pool_submit(p, late_mark, "second\n", -1));
    exit(0);
}

static void test_exit_drains_pools(void)
{
    char buf[256];
    int st = run_child(exit_child, NULL, buf, sizeof buf);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT_(strstr(buf, "first\nsecond\n") != NULL, "%s", buf);
    st = run_child(exit_child, (void *)1, buf, sizeof buf);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT_(strstr(buf, "first") == NULL, "%s", buf);
}

static co_pool_t *fp;
static co_future_t *f_running, *f_queued;

static void fork_child(void *arg)
{
    (void)arg;
    /* The parent's tasks: the running one is lost, the queued one
     * cancelled (the parent runs it). */
    if (co_future_wait(f_running, co_now() + 5000) < 0) _exit(10);
    if (co_future_error(f_running, NULL) != EOWNERDEAD) _exit(11);
    if (!co_future_cancelled(f_queued)) _exit(12);
    /* The pool works in the child: new workers start on demand. */
    for (intptr_t i = 0; i < 20; i++) {
        co_future_t *f = co_pool_submit(fp, square, (void *)i, co_now() + 5000);
        void *v;
        if (!f || co_future_result(f, co_now() + 5000, &v) < 0 || (intptr_t)v != i * i) _exit(13);
        co_future_free(f);
    }
    /* And so does the default pool. */
    void *v;
    if (co_pool_run(NULL, square, (void *)6, co_now() + 5000, &v) < 0 || (intptr_t)v != 36) _exit(14);
    co_pool_shutdown(fp, false);
    if (co_pool_join(fp, co_now() + 5000) < 0) _exit(15);
    _exit(0);
}

static void test_fork_with_busy_pool(void)
{
    co_event_init(&gate);
    fp = co_pool_new(&(co_pool_opts_t){.max_workers = 1});
    f_running = co_pool_submit(fp, wait_gate, (void *)1, -1);
    f_queued = co_pool_submit(fp, square, (void *)4, -1);
    for (int i = 0; i < 1000 && !co_future_running(f_running); i++) co_sleep_ms(1);
    (void)co_pool_run(NULL, square, NULL, -1, NULL); /* the default pool has a worker too */
    char buf[512];
    int st = run_child(fork_child, NULL, buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d: %s", WEXITSTATUS(st), buf);
    /* The parent is untouched. */
    co_event_set(&gate);
    void *v;
    ASSERT_EQ(co_future_result(f_running, -1, &v), 0);
    ASSERT_EQ(co_future_result(f_queued, -1, &v), 0);
    ASSERT_EQ((intptr_t)v, 16);
    co_future_free(f_running);
    co_future_free(f_queued);
    co_pool_free(fp);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_submit_result);
    RUN(test_defaults);
    RUN(test_map_order_window);
    RUN(test_map_failure);
    RUN(test_bounded_queue);
    RUN(test_broken_pool);
    RUN(test_shutdown);
    RUN(test_join_from_worker);
    RUN(test_free_before_done);
    RUN(test_run_from_coroutine);
    RUN(test_task_waits_on_other_hub);
    RUN(test_pool_callbacks);
    RUN(test_stress);
    RUN(test_exit_drains_pools);
    RUN(test_fork_with_busy_pool);
    return TEST_MAIN_END();
}
