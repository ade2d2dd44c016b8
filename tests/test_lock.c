/* Locks and rlocks: ownership, deadlines, cancellation, FIFO hand-off,
 * misuse, cycle detection between coroutines and between threads, and
 * plain threads without a hub. */
#include <pthread.h>
#include <signal.h>

#include "cogent.h"
#include "harness.h"

static co_lock_t L = CO_LOCK_INIT_NAMED("L");

static void *hold_for(void *arg)
{
    ASSERT_EQ(co_lock_acquire(&L, -1), 0);
    co_sleep_ms((intptr_t)arg);
    co_lock_release(&L);
    return NULL;
}

static void *try_lock(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)(co_lock_acquire(&L, 0) == 0 ? 0 : errno);
}

static void test_basic(void)
{
    ASSERT(!co_lock_locked(&L));
    ASSERT_EQ(co_lock_acquire(&L, -1), 0);
    ASSERT(co_lock_locked(&L));
    co_coro_t *c = co_spawn(try_lock, NULL);
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, EAGAIN);             /* the try form, held by main */
    ASSERT_ERR(co_lock_acquire(&L, 0), EAGAIN); /* trying a lock we hold is not a hang */
    ASSERT_EQ(co_lock_destroy(&L), -1);
    ASSERT_EQ(errno, EBUSY);
    co_lock_release(&L);
    ASSERT(!co_lock_locked(&L));
    ASSERT_EQ(co_lock_acquire(&L, 0), 0);
    co_lock_release(&L);
    co_lock_t mine;
    co_lock_init(&mine, "mine");
    ASSERT_EQ(co_lock_destroy(&mine), 0);
}

static void test_timeout_keeps_state(void)
{
    co_coro_t *h = co_spawn(hold_for, (void *)60);
    co_yield_now();
    ASSERT(co_lock_locked(&L));
    int64_t t0 = co_now();
    ASSERT_ERR(co_lock_acquire(&L, co_now() + 20), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 15, 2000);
    ASSERT(co_lock_locked(&L));                         /* still the holder's */
    ASSERT_EQ(co_lock_acquire(&L, co_now() + 5000), 0); /* handed over at release */
    co_lock_release(&L);
    ASSERT_EQ(co_join(h, -1, NULL), 0);
    ASSERT(!co_lock_locked(&L));
}

static void *wait_lock(void *arg)
{
    (void)arg;
    if (co_lock_acquire(&L, -1) < 0) return (void *)(intptr_t)errno;
    co_lock_release(&L);
    return NULL;
}

static void test_cancel_keeps_state(void)
{
    ASSERT_EQ(co_lock_acquire(&L, -1), 0);
    co_coro_t *w = co_spawn(wait_lock, NULL);
    co_yield_now(); /* w now waits */
    co_kill(w);
    void *r;
    ASSERT_EQ(co_join(w, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, ECANCELED);
    co_lock_release(&L); /* nobody to hand it to: free */
    ASSERT(!co_lock_locked(&L));
    ASSERT_EQ(co_lock_destroy(&L), 0);
}

static int order[8], norder;

static void *take_in_turn(void *arg)
{
    ASSERT_EQ(co_lock_acquire(&L, -1), 0);
    order[norder++] = (int)(intptr_t)arg;
    co_yield_now(); /* others must still wait: no barging */
    co_lock_release(&L);
    return NULL;
}

static void test_fifo(void)
{
    norder = 0;
    ASSERT_EQ(co_lock_acquire(&L, -1), 0);
    co_coro_t *cs[6];
    for (intptr_t i = 0; i < 6; i++) cs[i] = co_spawn(take_in_turn, (void *)i);
    co_yield_now(); /* all six queue up in spawn order */
    co_lock_release(&L);
    /* A late comer queues behind them even though the lock is "free" for
     * an instant at every hand-off. */
    ASSERT_EQ(co_lock_acquire(&L, -1), 0);
    ASSERT_EQ(norder, 6);
    for (int i = 0; i < 6; i++) ASSERT_EQ(order[i], i);
    co_lock_release(&L);
    ASSERT_EQ(co_joinall(cs, 6, -1, NULL), 0);
}

/* ----------------------------------------------------- misuse reports */

static void self_deadlock(void *arg)
{
    (void)arg;
    co_lock_t l = CO_LOCK_INIT_NAMED("accounts");
    co_lock_acquire(&l, -1);
    if (co_lock_acquire(&l, -1) == -1 && errno == EDEADLK) _exit(3);
    _exit(1);
}

static void release_unheld(void *arg)
{
    (void)arg;
    co_lock_t l = CO_LOCK_INIT_NAMED("free");
    co_lock_release(&l);
}

static void *grab(void *l)
{
    co_lock_acquire(l, -1);
    return NULL;
}

static void release_other(void *arg)
{
    (void)arg;
    static co_lock_t l = CO_LOCK_INIT_NAMED("theirs");
    co_spawn_opts_t o = {.name = "owner"};
    co_join(co_spawn_with(grab, &l, &o), -1, NULL); /* ends holding it */
    co_lock_release(&l);
}

static void test_misuse(void)
{
    char buf[4096];
    int st = run_child(self_deadlock, NULL, buf, sizeof buf);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    ASSERT(strstr(buf, "deadlock") && strstr(buf, "'accounts'") && strstr(buf, "already holds it") &&
           strstr(buf, "test_lock.c:"));
    st = run_child(release_unheld, NULL, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    ASSERT(strstr(buf, "co_lock_release") && strstr(buf, "'free'") && strstr(buf, "not held"));
    st = run_child(release_other, NULL, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    ASSERT(strstr(buf, "ended holding 1 lock"));
    ASSERT(strstr(buf, "'theirs'") && strstr(buf, "held by"));
}

/* ---------------------------------------------------------------- rlock */

static co_rlock_t R = CO_RLOCK_INIT_NAMED("R");

static void *rlock_other(void *arg)
{
    (void)arg;
    ASSERT_EQ(co_rlock_count(&R), 0);
    ASSERT_ERR(co_rlock_acquire(&R, 0), EAGAIN);
    ASSERT_EQ(co_rlock_acquire(&R, -1), 0); /* after all three levels go */
    ASSERT_EQ(co_rlock_count(&R), 1);
    co_rlock_release(&R);
    return NULL;
}

static void rlock_foreign_release(void *arg)
{
    (void)arg;
    co_rlock_acquire(&R, -1);
    co_spawn_opts_t o = {.name = "intruder"};
    co_coro_t *c = co_spawn_with((co_fn)(void (*)(void))co_rlock_release, &R, &o);
    co_join(c, -1, NULL);
}

static void test_rlock(void)
{
    ASSERT_EQ(co_rlock_acquire(&R, -1), 0);
    ASSERT_EQ(co_rlock_acquire(&R, -1), 0);
    ASSERT_EQ(co_rlock_acquire(&R, 0), 0);
    ASSERT_EQ(co_rlock_count(&R), 3);
    ASSERT_ERR(co_rlock_destroy(&R), EBUSY);
    co_coro_t *c = co_spawn(rlock_other, NULL);
    co_yield_now();
    co_rlock_release(&R);
    co_rlock_release(&R);
    ASSERT_EQ(co_rlock_count(&R), 1);
    co_yield_now();
    ASSERT(!co_finished(c));
    co_rlock_release(&R);
    ASSERT_EQ(co_join(c, -1, NULL), 0);
    ASSERT_EQ(co_rlock_destroy(&R), 0);
    char buf[4096];
    int st = run_child(rlock_foreign_release, NULL, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    ASSERT(strstr(buf, "co_rlock_release") && strstr(buf, "'intruder'") && strstr(buf, "held by"));
}

/* --------------------------------------------------------------- cycles */

static co_lock_t X = CO_LOCK_INIT_NAMED("X"), Y = CO_LOCK_INIT_NAMED("Y");

static void *x_then_y(void *arg)
{
    (void)arg;
    ASSERT_EQ(co_lock_acquire(&X, -1), 0);
    co_yield_now();
    int r = co_lock_acquire(&Y, -1) == 0 ? 0 : errno;
    if (r == 0) co_lock_release(&Y);
    co_lock_release(&X);
    return (void *)(intptr_t)r;
}

static void *y_then_x(void *arg)
{
    (void)arg;
    ASSERT_EQ(co_lock_acquire(&Y, -1), 0);
    co_yield_now();
    int r = co_lock_acquire(&X, -1) == 0 ? 0 : errno;
    if (r == 0) co_lock_release(&X);
    co_lock_release(&Y);
    return (void *)(intptr_t)r;
}

static void cycle_child(void *arg)
{
    (void)arg;
    co_spawn_opts_t oa = {.name = "alice"}, ob = {.name = "bob"};
    co_coro_t *a = co_spawn_with(x_then_y, NULL, &oa), *b = co_spawn_with(y_then_x, NULL, &ob);
    void *ra, *rb;
    if (co_join(a, -1, &ra) || co_join(b, -1, &rb)) _exit(1);
    /* alice blocked first (no cycle yet); bob closed the cycle. */
    _exit((intptr_t)ra == 0 && (intptr_t)rb == EDEADLK ? 3 : 2);
}

static void test_cycle_coroutines(void)
{
    char buf[8192];
    int st = run_child(cycle_child, NULL, buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 3, "child status %d, stderr:\n%s", st, buf);
    ASSERT(strstr(buf, "deadlock") && strstr(buf, "cycle"));
    ASSERT(strstr(buf, "coroutine 'bob'") && strstr(buf, "coroutine 'alice'"));
    ASSERT(strstr(buf, "lock 'X'") && strstr(buf, "lock 'Y'"));
    ASSERT(strstr(buf, "taken at") && strstr(buf, "test_lock.c:"));
}

/* Two threads, one with a hub and one without, close a cycle: whichever
 * blocks second gets EDEADLK, the other then gets its lock. */
static void *thread_y_then_x(void *arg)
{
    co_event_t *ready = arg;
    ASSERT_EQ(co_lock_acquire(&Y, -1), 0);
    co_event_set(ready);
    int r = co_lock_acquire(&X, -1) == 0 ? 0 : errno;
    if (r == 0) co_lock_release(&X);
    co_lock_release(&Y);
    return (void *)(intptr_t)r;
}

static void test_cycle_threads(void)
{
    co_event_t ready = CO_EVENT_INIT;
    ASSERT_EQ(co_lock_acquire(&X, -1), 0);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, thread_y_then_x, &ready), 0);
    ASSERT_EQ(co_event_wait(&ready, -1), 0);
    int mine = co_lock_acquire(&Y, -1) == 0 ? 0 : errno;
    if (mine == 0) co_lock_release(&Y);
    co_lock_release(&X);
    void *theirs;
    pthread_join(t, &theirs);
    ASSERT_((mine == EDEADLK) != ((intptr_t)theirs == EDEADLK), "exactly one EDEADLK: main %d, thread %d", mine,
            (int)(intptr_t)theirs);
    ASSERT(mine == 0 || (intptr_t)theirs == 0);
    ASSERT(!co_lock_locked(&X) && !co_lock_locked(&Y));
}

/* A wait with a deadline is not an edge: it ends by itself. */
static void *y_then_x_deadline(void *arg)
{
    (void)arg;
    ASSERT_EQ(co_lock_acquire(&Y, -1), 0);
    co_yield_now();
    int r = co_lock_acquire(&X, co_now() + 30) == 0 ? 0 : errno;
    co_lock_release(&Y);
    return (void *)(intptr_t)r;
}

static void test_deadline_is_not_a_cycle(void)
{
    co_coro_t *a = co_spawn(x_then_y, NULL), *b = co_spawn(y_then_x_deadline, NULL);
    void *ra, *rb;
    ASSERT_EQ(co_join(a, -1, &ra), 0);
    ASSERT_EQ(co_join(b, -1, &rb), 0);
    ASSERT_EQ((intptr_t)rb, ETIMEDOUT);
    ASSERT_EQ((intptr_t)ra, 0);
}

/* Nothing can ever release it: the hub's deadlock check. */
static co_event_t never = CO_EVENT_INIT;
static void *hold_and_block(void *arg)
{
    (void)arg;
    co_lock_acquire(&L, -1);
    co_event_wait(&never, -1); /* EDEADLK? no: killed at the end */
    co_lock_release(&L);
    return NULL;
}

static void forever_child(void *arg)
{
    (void)arg;
    co_coro_t *c = co_spawn(hold_and_block, NULL);
    co_yield_now();
    int r = co_lock_acquire(&L, -1);
    int e = errno;
    co_kill(c);
    co_join(c, -1, NULL);
    _exit(r == -1 && e == EDEADLK ? 3 : 1);
}

static void test_nothing_can_release(void)
{
    char buf[4096];
    int st = run_child(forever_child, NULL, buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 3, "status %d: %s", st, buf);
    ASSERT(strstr(buf, "deadlock") && strstr(buf, "co_lock_acquire"));
}

/* -------------------------------------------- threads without a hub */

static long counter;
static co_lock_t C = CO_LOCK_INIT;

static void *plain_thread(void *arg)
{
    for (int i = 0; i < 20000; i++) {
        ASSERT_EQ(co_lock_acquire(&C, -1), 0);
        counter++;
        co_lock_release(&C);
    }
    return arg;
}

static void *coro_adder(void *arg)
{
    for (int i = 0; i < 20000; i++) {
        ASSERT_EQ(co_lock_acquire(&C, -1), 0);
        counter++;
        if (i % 100 == 0) co_yield_now(); /* hold it across a switch now and then */
        co_lock_release(&C);
    }
    return arg;
}

static void *plain_timeout(void *arg)
{
    (void)arg;
    int64_t t0 = co_now();
    int r = co_lock_acquire(&L, co_now() + 30) == 0 ? 0 : errno;
    ASSERT_TIME(co_now() - t0, 25, 3000);
    return (void *)(intptr_t)r;
}

static void test_plain_threads(void)
{
    counter = 0;
    pthread_t t[2];
    for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_create(&t[i], NULL, plain_thread, NULL), 0);
    co_coro_t *c[2] = {co_spawn(coro_adder, NULL), co_spawn(coro_adder, NULL)};
    ASSERT_EQ(co_joinall(c, 2, -1, NULL), 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    ASSERT_EQ(counter, 80000);
    ASSERT(!co_lock_locked(&C));

    ASSERT_EQ(co_lock_acquire(&L, -1), 0);
    pthread_t p;
    ASSERT_EQ(pthread_create(&p, NULL, plain_timeout, NULL), 0);
    void *r;
    pthread_join(p, &r); /* blocks main's hub: fine, nothing else runs */
    ASSERT_EQ((intptr_t)r, ETIMEDOUT);
    co_lock_release(&L);
}

static void hubless_forever(void *arg)
{
    (void)arg;
    co_event_t e = CO_EVENT_INIT;
    int r = co_event_wait(&e, -1);
    _exit(r == -1 && errno == EDEADLK ? 3 : 1);
}

static void test_hubless_alone(void)
{
    char buf[4096];
    /* A fresh process (no hub, one thread): waiting forever is reported. */
    pid_t pid = fork();
    if (pid == 0) {
        execl(test_argv_[0], "test_lock", "hubless_child", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 3, "status %d", st);
    (void)buf;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "hubless_child")) hubless_forever(NULL);
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_basic);
    RUN(test_timeout_keeps_state);
    RUN(test_cancel_keeps_state);
    RUN(test_fifo);
    RUN(test_misuse);
    RUN(test_rlock);
    RUN(test_cycle_coroutines);
    RUN(test_cycle_threads);
    RUN(test_deadline_is_not_a_cycle);
    RUN(test_nothing_can_release);
    RUN(test_plain_threads);
    RUN(test_hubless_alone);
    return TEST_MAIN_END();
}
