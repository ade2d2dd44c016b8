/* Futures (co_future_*): every state transition, results, bytes and
 * errors, deadlines, waits from coroutines of several hubs and from plain
 * threads, cancellation of the waiter, callbacks (exactly once, where the
 * docs say), co_futures_wait and as_completed with mixed completions. */
#include <pthread.h>
#include <stdatomic.h>

#include "cogent.h"
#include "harness.h"

static void test_promise_states(void)
{
    co_future_t *f = co_future_new();
    ASSERT(f != NULL);
    ASSERT_EQ(co_future_state(f), CO_FUTURE_PENDING);
    ASSERT(!co_future_done(f) && !co_future_running(f) && !co_future_cancelled(f));
    ASSERT_EQ(co_future_error(f, NULL), 0);
    ASSERT_EQ(co_future_set_running(f), 0);
    ASSERT_EQ(co_future_state(f), CO_FUTURE_RUNNING);
    ASSERT(co_future_running(f));
    ASSERT_ERR(co_future_set_running(f), EALREADY);
    ASSERT_ERR(co_future_cancel(f), EBUSY); /* running: cannot be cancelled */
    ASSERT_ERR(co_future_wait(f, 0), ETIMEDOUT);
    ASSERT_EQ(co_future_set_result(f, (void *)5), 0);
    ASSERT_EQ(co_future_state(f), CO_FUTURE_DONE);
    ASSERT(co_future_done(f) && !co_future_running(f));
    ASSERT_ERR(co_future_set_result(f, (void *)6), EALREADY); /* twice: reported, nothing changes */
    ASSERT_ERR(co_future_set_error(f, EIO, "x"), EALREADY);
    ASSERT_ERR(co_future_set_bytes(f, "ab", 2), EALREADY);
    ASSERT_ERR(co_future_cancel(f), EALREADY);
    ASSERT_ERR(co_future_set_running(f), EALREADY);
    void *v = NULL;
    ASSERT_EQ(co_future_result(f, 0, &v), 0);
    ASSERT_PTR_EQ(v, (void *)5);
    ASSERT_EQ(co_future_size(f), 0);
    ASSERT_EQ(co_future_error(f, NULL), 0);
    co_future_free(f);
    co_future_free(NULL);

    /* pending -> done directly (no running step). */
    f = co_future_new();
    ASSERT_EQ(co_future_set_result(f, NULL), 0);
    ASSERT_EQ(co_future_result(f, -1, &v), 0);
    ASSERT_PTR_EQ(v, NULL);
    co_future_free(f);
}

static void test_cancel_states(void)
{
    co_future_t *f = co_future_new();
    ASSERT_EQ(co_future_cancel(f), 0);
    ASSERT_EQ(co_future_state(f), CO_FUTURE_CANCELLED);
    ASSERT(co_future_cancelled(f) && co_future_done(f));
    ASSERT_EQ(co_future_cancel(f), 0); /* already cancelled: still a success */
    ASSERT_ERR(co_future_set_running(f), ECANCELED);
    ASSERT_ERR(co_future_set_result(f, (void *)1), EALREADY);
    void *v = (void *)9;
    ASSERT_ERR(co_future_result(f, -1, &v), ECANCELED);
    ASSERT(co_future_done(f)); /* how to tell it from a killed caller */
    ASSERT_PTR_EQ(v, (void *)9);
    ASSERT_EQ(co_future_error(f, NULL), ECANCELED);
    ASSERT_EQ(co_future_wait(f, 0), 0);
    co_future_free(f);
}

static void test_error_and_bytes(void)
{
    co_future_t *f = co_future_new();
    ASSERT_ERR(co_future_set_error(f, 0, "no"), EINVAL);
    ASSERT_ERR(co_future_set_error(f, -3, NULL), EINVAL);
    ASSERT_EQ(co_future_state(f), CO_FUTURE_PENDING);
    ASSERT_EQ(co_future_set_error(f, EIO, "disk on fire"), 0);
    void *v = (void *)1;
    ASSERT_ERR(co_future_result(f, -1, &v), EIO);
    ASSERT(co_future_done(f));
    const char *msg = NULL;
    ASSERT_EQ(co_future_error(f, &msg), EIO);
    ASSERT_STR_EQ(msg, "disk on fire");
    co_future_free(f);

    f = co_future_new();
    ASSERT_EQ(co_future_set_error(f, ETIMEDOUT, NULL), 0); /* a task's own ETIMEDOUT: done tells */
    ASSERT_ERR(co_future_result(f, -1, NULL), ETIMEDOUT);
    ASSERT(co_future_done(f));
    ASSERT_EQ(co_future_error(f, &msg), ETIMEDOUT);
    ASSERT_PTR_EQ(msg, NULL);
    co_future_free(f);

    f = co_future_new();
    char data[] = "hello";
    ASSERT_EQ(co_future_set_bytes(f, data, 5), 0);
    data[0] = 'X'; /* the future has its own copy */
    ASSERT_EQ(co_future_size(f), 5);
    ASSERT_EQ(co_future_result(f, -1, &v), 0);
    ASSERT(!memcmp(v, "hello", 5));
    co_future_free(f);

    f = co_future_new();
    ASSERT_EQ(co_future_set_bytes(f, NULL, 0), 0);
    ASSERT_EQ(co_future_size(f), 0);
    co_future_free(f);
}

static void test_wait_deadline(void)
{
    co_future_t *f = co_future_new();
    ASSERT_ERR(co_future_wait(f, 0), ETIMEDOUT);
    int64_t t0 = co_now();
    ASSERT_ERR(co_future_result(f, co_now() + 40, NULL), ETIMEDOUT);
    ASSERT(!co_future_done(f)); /* the wait failed, not the future */
    ASSERT_TIME(co_now() - t0, 30, 3000);
    ASSERT_ERR(co_future_wait(f, co_now() - 10), ETIMEDOUT);
    ASSERT_EQ(co_future_state(f), CO_FUTURE_PENDING);
    co_future_set_result(f, NULL);
    co_future_free(f);
}

/* ---------------------------------------------------- across threads */

typedef struct later {
    co_future_t *f;
    int ms;
    void *value;
    int err;
} later_t;

static void *complete_later(void *arg)
{
    later_t *l = arg;
    co_sleep_ms(l->ms);
    if (l->err)
        co_future_set_error(l->f, l->err, "later");
    else
        co_future_set_result(l->f, l->value);
    return NULL;
}

static void *await_it(void *arg)
{
    void *v = NULL;
    if (co_future_result(arg, co_now() + 10000, &v) < 0) return (void *)(intptr_t)-errno;
    return v;
}

static atomic_int ticks;

static void *ticker(void *arg)
{
    (void)arg;
    while (co_sleep_ms(1) == 0) ticks++;
    return NULL;
}

/* A coroutine awaiting parks alone; a plain thread awaiting blocks. */
static void test_await_from_coroutine_and_thread(void)
{
    co_future_t *f = co_future_new();
    later_t l = {f, 60, (void *)33, 0};
    co_thread_t *t = co_thread_new(complete_later, &l, NULL);
    ticks = 0;
    co_coro_t *tk = co_spawn(ticker, NULL);
    co_coro_t *a = co_spawn(await_it, f);
    pthread_t pt;
    pthread_create(&pt, NULL, await_it, f); /* no hub: blocks */
    void *r;
    ASSERT_EQ(co_join(a, -1, &r), 0);
    ASSERT_PTR_EQ(r, (void *)33);
    ASSERT(ticks >= 2); /* the hub ran meanwhile (generous: a loaded machine) */
    pthread_join(pt, &r);
    ASSERT_PTR_EQ(r, (void *)33);
    co_kill(tk);
    co_join(tk, -1, NULL);
    co_thread_join(t, -1, NULL);
    co_thread_free(t);
    co_future_free(f);
}

/* Coroutines on another thread's hub await; this one completes it. */
static void *hub_awaiters(void *arg)
{
    co_coro_t *cs[4];
    for (int i = 0; i < 4; i++) cs[i] = co_spawn(await_it, arg);
    intptr_t sum = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        co_join(cs[i], -1, &r);
        sum += (intptr_t)r;
    }
    return (void *)sum;
}

static void test_await_from_other_hub(void)
{
    co_future_t *f = co_future_new();
    co_thread_t *t = co_thread_new(hub_awaiters, f, NULL);
    co_sleep_ms(20);
    ASSERT_EQ(co_future_set_result(f, (void *)10), 0);
    void *r;
    ASSERT_EQ(co_thread_join(t, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, 40);
    co_thread_free(t);
    co_future_free(f);
}

static void test_waiter_killed(void)
{
    co_future_t *f = co_future_new();
    co_coro_t *a = co_spawn(await_it, f);
    co_sleep_ms(5);
    co_kill(a);
    void *r;
    ASSERT_EQ(co_join(a, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, -ECANCELED);
    ASSERT_EQ(co_future_state(f), CO_FUTURE_PENDING); /* untouched */
    ASSERT_EQ(co_future_set_result(f, (void *)1), 0);
    co_future_free(f);
}

/* A promise nothing could complete: the main coroutine's wait fails with
 * EDEADLK instead of hanging (in a child: a process that has only ever
 * had one thread, so that nobody else could). */
static void deadlock_child(void *arg)
{
    (void)arg;
    co_future_t *f = co_future_new();
    int r = co_future_wait(f, -1);
    _exit(r < 0 && errno == EDEADLK ? 0 : 1);
}

static void test_edeadlk(void)
{
    char buf[512];
    int st = run_child(deadlock_child, NULL, buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d: %s", st, buf);
    ASSERT(strstr(buf, "deadlock"));
}

static void free_waited_child(void *arg)
{
    (void)arg;
    co_future_t *f = co_future_new();
    co_coro_t *a = co_spawn(await_it, f);
    co_yield_now();
    co_future_free(f); /* someone waits on it: aborts */
    (void)a;
}

static void double_free_child(void *arg)
{
    (void)arg;
    co_future_t *f = co_future_new();
    co_future_free(f);
    co_future_free(f);
}

static void test_free_waited_aborts(void)
{
    char buf[512];
    int st = run_child(free_waited_child, NULL, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    ASSERT(strstr(buf, "cogent: co_future_free"));
    st = run_child(double_free_child, NULL, buf, sizeof buf); /* once went unnoticed */
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    ASSERT(strstr(buf, "was already freed"));
}

/* ------------------------------------------------------------ callbacks */

typedef struct cbrec {
    atomic_int runs;
    atomic_int order; /* each callback's turn */
    int seen[8];
    pthread_t thread;
    bool in_coroutine; /* ran in a coroutine other than the main one */
    co_future_t *f;
} cbrec_t;

static cbrec_t rec;

static void cb(co_future_t *f, void *arg)
{
    int turn = rec.order++;
    if (turn < 8) rec.seen[turn] = (int)(intptr_t)arg;
    rec.thread = pthread_self();
    rec.f = f;
    co_hub_stats_t st;
    co_hub_stats(&st);
    rec.in_coroutine = st.coroutines > 0 && co_current() != NULL && strcmp(co_name(co_current()), "main") != 0;
    rec.runs++;
}

static void reset_rec(void)
{
    memset(&rec, 0, sizeof rec);
}

static void *set_from_thread(void *arg)
{
    co_future_set_result(arg, (void *)1);
    return (void *)pthread_self();
}

/* Added by a coroutine (here, the main one): runs on this hub, in a
 * coroutine of its own, even though another thread completes f. */
static void test_callback_on_owner_hub(void)
{
    reset_rec();
    co_future_t *f = co_future_new();
    for (intptr_t i = 0; i < 3; i++) ASSERT_EQ(co_future_add_done_callback(f, cb, (void *)i), 0);
    co_thread_t *t = co_thread_new(set_from_thread, f, NULL);
    co_thread_join(t, -1, NULL);
    co_thread_free(t);
    for (int i = 0; i < 1000 && rec.runs < 3; i++) co_sleep_ms(1);
    ASSERT_EQ(rec.runs, 3);
    ASSERT(pthread_equal(rec.thread, pthread_self()));
    ASSERT(rec.in_coroutine);
    ASSERT_EQ(rec.seen[0], 0);
    ASSERT_EQ(rec.seen[1], 1);
    ASSERT_EQ(rec.seen[2], 2);
    ASSERT_PTR_EQ(rec.f, f);
    co_sleep_ms(5);
    ASSERT_EQ(rec.runs, 3); /* exactly once each */
    co_future_free(f);
}

/* Added after completion: at once, by the caller. */
static void test_callback_after_completion(void)
{
    reset_rec();
    co_future_t *f = co_future_new();
    co_future_set_result(f, NULL);
    ASSERT_EQ(co_future_add_done_callback(f, cb, (void *)7), 0);
    ASSERT_EQ(rec.runs, 1);
    ASSERT(pthread_equal(rec.thread, pthread_self()));
    ASSERT(!rec.in_coroutine);
    ASSERT_ERR(co_future_add_done_callback(f, NULL, NULL), EINVAL);
    co_future_free(f);
}

/* Added by a thread without a hub: runs on the completing thread. */
static void *register_plain(void *arg)
{
    return (void *)(intptr_t)co_future_add_done_callback(arg, cb, (void *)4);
}

static void test_callback_from_plain_thread(void)
{
    reset_rec();
    co_future_t *f = co_future_new();
    pthread_t pt;
    pthread_create(&pt, NULL, register_plain, f);
    void *r;
    pthread_join(pt, &r);
    ASSERT_EQ((intptr_t)r, 0);
    co_thread_t *t = co_thread_new(set_from_thread, f, NULL);
    void *completer;
    co_thread_join(t, -1, &completer);
    co_thread_free(t);
    ASSERT_EQ(rec.runs, 1); /* already: it ran on the completer, before its join ended */
    ASSERT(pthread_equal(rec.thread, (pthread_t)completer));
    co_future_free(f);
}

/* Cancelling runs callbacks too. */
static void test_callback_cancel_and_free(void)
{
    reset_rec();
    co_future_t *f = co_future_new();
    co_future_add_done_callback(f, cb, (void *)1);
    co_future_cancel(f);
    for (int i = 0; i < 1000 && rec.runs < 1; i++) co_sleep_ms(1);
    ASSERT_EQ(rec.runs, 1);
    co_future_free(f);
}

/* A callback added on a hub whose thread has exited runs on the
 * completing thread instead. */
static void *register_then_exit(void *arg)
{
    co_sleep_ms(0); /* this thread gets a hub */
    co_future_add_done_callback(arg, cb, (void *)5);
    return NULL;
}

static void test_callback_owner_gone(void)
{
    reset_rec();
    co_future_t *f = co_future_new();
    co_thread_t *t = co_thread_new(register_then_exit, f, NULL);
    co_thread_join(t, -1, NULL);
    co_thread_free(t);
    co_future_set_result(f, NULL);
    ASSERT_EQ(rec.runs, 1);
    ASSERT(pthread_equal(rec.thread, pthread_self()));
    co_future_free(f);
}

/* The owner's thread is busy when the callback's message comes, then
 * exits: the message is handled during its exit, when no coroutine can
 * run any more.  The callback once ran inline there and crashed when it
 * blocked; it runs on a default-pool worker now, and may block. */
static atomic_int busy_registered, busy_stop, exiting_cb_done;
static pthread_t exiting_cb_thread;

static void blocking_cb(co_future_t *f, void *arg)
{
    (void)f;
    /* Blocks for 20 ms (a wait that times out; a sleep would give the
     * worker a hub, whose descriptors outlive the case). */
    int r = co_future_wait(arg, co_now() + 20);
    int e = errno;
    exiting_cb_thread = pthread_self();
    atomic_store(&exiting_cb_done, r == -1 && e == ETIMEDOUT ? 1 : 2);
}

static void *register_then_busy(void *arg)
{
    co_sleep_ms(1); /* the thread has a hub */
    ASSERT_EQ(co_future_add_done_callback(((co_future_t **)arg)[0], blocking_cb, ((co_future_t **)arg)[1]), 0);
    atomic_store(&busy_registered, 1);
    while (!atomic_load(&busy_stop)) nanosleep(&(struct timespec){0, 1000000}, NULL); /* never yields */
    return NULL;
}

static void test_callback_owner_exiting(void)
{
    co_future_t *f = co_future_new(), *never = co_future_new();
    co_future_t *both[2] = {f, never};
    co_thread_t *t = co_thread_new(register_then_busy, both, NULL);
    for (int i = 0; i < 5000 && !atomic_load(&busy_registered); i++) co_sleep_ms(1);
    ASSERT(atomic_load(&busy_registered));
    ASSERT_EQ(co_future_set_result(f, NULL), 0); /* the message waits in the busy thread's inbox */
    atomic_store(&busy_stop, 1);
    ASSERT_EQ(co_thread_join(t, -1, NULL), 0);
    co_thread_free(t);
    for (int i = 0; i < 5000 && !atomic_load(&exiting_cb_done); i++) co_sleep_ms(1);
    ASSERT_EQ(atomic_load(&exiting_cb_done), 1);
    ASSERT(!pthread_equal(exiting_cb_thread, pthread_self()));
    co_future_free(f);
    co_future_free(never);
}

/* --------------------------------------------------- several at once */

static void test_futures_wait(void)
{
    co_future_t *fs[4];
    for (int i = 0; i < 4; i++) fs[i] = co_future_new();
    ASSERT_EQ(co_futures_wait(fs, 0, CO_ALL_COMPLETED, -1), 0);
    ASSERT_ERR(co_futures_wait(fs, 4, (co_wait_when_t)99, -1), EINVAL);
    ASSERT_ERR(co_futures_wait(fs, 4, CO_FIRST_COMPLETED, 0), ETIMEDOUT);
    int64_t t0 = co_now();
    ASSERT_ERR(co_futures_wait(fs, 4, CO_FIRST_COMPLETED, co_now() + 30), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 20, 3000);

    /* Mixed: one set later by another thread. */
    later_t l1 = {fs[2], 20, (void *)2, 0};
    co_thread_t *t1 = co_thread_new(complete_later, &l1, NULL);
    ASSERT_EQ(co_futures_wait(fs, 4, CO_FIRST_COMPLETED, co_now() + 5000), 1);
    ASSERT(co_future_done(fs[2]));
    co_thread_join(t1, -1, NULL);
    co_thread_free(t1);

    /* FIRST_ERROR: a success does not end it, an error does. */
    co_future_set_result(fs[0], NULL);
    later_t l2 = {fs[3], 20, NULL, EIO};
    co_thread_t *t2 = co_thread_new(complete_later, &l2, NULL);
    ASSERT_EQ(co_futures_wait(fs, 4, CO_FIRST_ERROR, co_now() + 5000), 3);
    ASSERT_EQ(co_future_error(fs[3], NULL), EIO);
    ASSERT(!co_future_done(fs[1]));
    co_thread_join(t2, -1, NULL);
    co_thread_free(t2);

    /* ALL_COMPLETED: a cancelled one counts as complete; with no error it
     * is what FIRST_ERROR becomes. */
    co_future_t *gs[3] = {fs[0], fs[1], fs[2]};
    co_future_cancel(fs[1]);
    ASSERT_EQ(co_futures_wait(gs, 3, CO_FIRST_ERROR, 0), 3);
    ASSERT_EQ(co_futures_wait(fs, 4, CO_ALL_COMPLETED, 0), 4);
    /* The same future twice. */
    co_future_t *dup[2] = {fs[0], fs[0]};
    ASSERT_EQ(co_futures_wait(dup, 2, CO_ALL_COMPLETED, -1), 2);
    for (int i = 0; i < 4; i++) co_future_free(fs[i]);
}

static void *wait_all(void *arg)
{
    co_future_t **fs = arg;
    int r = co_futures_wait(fs, 3, CO_ALL_COMPLETED, -1);
    return (void *)(intptr_t)(r < 0 ? -errno : r);
}

static void test_futures_wait_killed(void)
{
    co_future_t *fs[3];
    for (int i = 0; i < 3; i++) fs[i] = co_future_new();
    co_future_set_result(fs[0], NULL);
    co_coro_t *c = co_spawn(wait_all, fs);
    co_sleep_ms(5);
    co_kill(c);
    void *r;
    co_join(c, -1, &r);
    ASSERT_EQ((intptr_t)r, -ECANCELED);
    /* Its listeners are gone: completing now touches nothing of it. */
    co_future_set_result(fs[1], NULL);
    co_future_set_result(fs[2], NULL);
    for (int i = 0; i < 3; i++) co_future_free(fs[i]);
}

static void test_as_completed(void)
{
    co_future_t *fs[4];
    for (int i = 0; i < 4; i++) fs[i] = co_future_new();
    co_future_set_result(fs[3], NULL); /* complete already: comes first */
    co_as_completed_t *ac = co_as_completed_new(fs, 4);
    ASSERT(ac != NULL);
    later_t l[2] = {{fs[1], 10, NULL, 0}, {fs[0], 60, NULL, EIO}};
    co_thread_t *t[2];
    for (int i = 0; i < 2; i++) t[i] = co_thread_new(complete_later, &l[i], NULL);
    ASSERT_PTR_EQ(co_as_completed_next(ac, co_now() + 5000), fs[3]);
    ASSERT_PTR_EQ(co_as_completed_next(ac, co_now() + 5000), fs[1]);
    ASSERT_PTR_EQ(co_as_completed_next(ac, co_now() + 5000), fs[0]);
    ASSERT_ERR(co_as_completed_next(ac, 0), ETIMEDOUT); /* fs[2] is pending */
    ASSERT_ERR(co_as_completed_next(ac, co_now() + 20), ETIMEDOUT);
    co_future_cancel(fs[2]);
    ASSERT_PTR_EQ(co_as_completed_next(ac, -1), fs[2]);
    ASSERT_ERR(co_as_completed_next(ac, -1), ENOENT);
    for (int i = 0; i < 2; i++) {
        co_thread_join(t[i], -1, NULL);
        co_thread_free(t[i]);
    }
    /* The set holds its futures: freeing them first is fine. */
    for (int i = 0; i < 4; i++) co_future_free(fs[i]);
    co_as_completed_free(ac);

    /* Freed with futures still pending. */
    co_future_t *g = co_future_new();
    ac = co_as_completed_new(&g, 1);
    co_as_completed_free(ac);
    co_future_set_result(g, NULL);
    co_future_free(g);
    ac = co_as_completed_new(NULL, 0);
    ASSERT_ERR(co_as_completed_next(ac, -1), ENOENT);
    co_as_completed_free(ac);
    co_as_completed_free(NULL);
}

/* Many promises completed by threads while coroutines on two hubs wait
 * on them in every way: no wake-up lost, every count exact. */
#define NF 200

static co_future_t *many[NF];
static atomic_int got;

static void *await_one(void *arg)
{
    void *v;
    if (co_future_result(arg, -1, &v) == 0 && v == arg) got++;
    return NULL;
}

static void *hub_of_waiters(void *arg)
{
    (void)arg;
    co_coro_t *cs[NF];
    for (int i = 0; i < NF; i++) cs[i] = co_spawn(await_one, many[i]);
    co_as_completed_t *ac = co_as_completed_new(many, NF);
    int n = 0;
    while (co_as_completed_next(ac, -1)) n++;
    co_as_completed_free(ac);
    if (n == NF) got++;
    co_joinall(cs, NF, -1, NULL);
    return NULL;
}

static void *completer(void *arg)
{
    intptr_t k = (intptr_t)arg;
    for (int i = (int)k; i < NF; i += 2) co_future_set_result(many[i], many[i]);
    return NULL;
}

static void test_stress(void)
{
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < NF; i++) many[i] = co_future_new();
        got = 0;
        co_thread_t *h[2], *c[2];
        for (int i = 0; i < 2; i++) h[i] = co_thread_new(hub_of_waiters, NULL, NULL);
        co_sleep_ms(2);
        for (int i = 0; i < 2; i++) c[i] = co_thread_new(completer, (void *)(intptr_t)i, NULL);
        ASSERT_EQ(co_futures_wait(many, NF, CO_ALL_COMPLETED, -1), NF);
        for (int i = 0; i < 2; i++) {
            co_thread_join(c[i], -1, NULL);
            co_thread_join(h[i], -1, NULL);
            co_thread_free(c[i]);
            co_thread_free(h[i]);
        }
        ASSERT_EQ(got, 2 * NF + 2);
        for (int i = 0; i < NF; i++) co_future_free(many[i]);
    }
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_promise_states);
    RUN(test_cancel_states);
    RUN(test_error_and_bytes);
    RUN(test_wait_deadline);
    RUN(test_edeadlk);
    RUN(test_free_waited_aborts);
    RUN(test_await_from_coroutine_and_thread);
    RUN(test_await_from_other_hub);
    RUN(test_waiter_killed);
    RUN(test_callback_on_owner_hub);
    RUN(test_callback_after_completion);
    RUN(test_callback_from_plain_thread);
    RUN(test_callback_cancel_and_free);
    RUN(test_callback_owner_gone);
    RUN(test_callback_owner_exiting);
    RUN(test_futures_wait);
    RUN(test_futures_wait_killed);
    RUN(test_as_completed);
    RUN(test_stress);
    return TEST_MAIN_END();
}
