/* Signals handled cooperatively: co_signal_wait from coroutines and plain
 * threads, counting, deadlines, cancellation, restore, and the refusal of
 * cogent calls made from the program's own signal handlers. */
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#include "cogent.h"
#include "harness.h"

static sigset_t one(int s)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, s);
    return set;
}

static void *wait_usr1(void *arg)
{
    sigset_t set = one(SIGUSR1);
    int s = co_signal_wait(&set, co_now() + 5000);
    return (void *)(intptr_t)(s < 0 ? -errno : s);
}

static void test_wait_in_coroutine(void)
{
    co_coro_t *c = co_spawn(wait_usr1, NULL);
    co_sleep_ms(10); /* it waits */
    ASSERT(!co_finished(c));
    ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
    void *r;
    ASSERT_EQ(co_join(c, co_now() + 5000, &r), 0);
    ASSERT_EQ((intptr_t)r, SIGUSR1);
    sigset_t set = one(SIGUSR1);
    co_signal_restore(&set);
}

/* Deliveries nobody waited for are counted, one wait each. */
static void test_counted_and_try(void)
{
    sigset_t set = one(SIGUSR2);
    ASSERT_ERR(co_signal_wait(&set, 0), EAGAIN); /* catches it; none pending */
    ASSERT_EQ(raise(SIGUSR2), 0);
    ASSERT_EQ(raise(SIGUSR2), 0);
    ASSERT_EQ(co_signal_wait(&set, co_now() + 2000), SIGUSR2);
    ASSERT_EQ(co_signal_wait(&set, co_now() + 2000), SIGUSR2);
    ASSERT_ERR(co_signal_wait(&set, 0), EAGAIN);
    ASSERT_ERR(co_signal_wait(&set, co_now() + 30), ETIMEDOUT);
    co_signal_restore(&set);
}

static void test_cancel_and_bad_sets(void)
{
    co_coro_t *c = co_spawn(wait_usr1, NULL);
    co_sleep_ms(5);
    co_kill(c);
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, -ECANCELED);
    sigset_t empty;
    sigemptyset(&empty);
    ASSERT_ERR(co_signal_wait(NULL, 0), EINVAL);
    ASSERT_ERR(co_signal_wait(&empty, 0), EINVAL);
    sigset_t k = one(SIGKILL), segv = one(SIGSEGV);
    ASSERT_ERR(co_signal_wait(&k, 0), EINVAL);
    ASSERT_ERR(co_signal_wait(&segv, 0), EINVAL);
    ASSERT_ERR(co_signal_restore(NULL), EINVAL);
    sigset_t set = one(SIGUSR1);
    co_signal_restore(&set);
}

/* The main coroutine alone waiting for a signal the kernel will send is
 * not a deadlock: nothing in the process can end the wait, but a signal
 * can come from outside at any time. */
static void test_main_alone_no_false_deadlock(void)
{
    sigset_t set = one(SIGALRM);
    ASSERT_ERR(co_signal_wait(&set, 0), EAGAIN); /* caught from now on */
    struct itimerval it = {.it_value = {0, 30000}};
    ASSERT_EQ(setitimer(ITIMER_REAL, &it, NULL), 0);
    int64_t t0 = co_now();
    ASSERT_EQ(co_signal_wait(&set, -1), SIGALRM);
    ASSERT_TIME(co_now() - t0, 10, 3000);
    co_signal_restore(&set);
}

/* A thread without a hub waits too (and gets no hub for it). */
static void *plain_wait(void *arg)
{
    (void)arg;
    sigset_t set = one(SIGUSR1);
    int s = co_signal_wait(&set, co_now() + 5000);
    co_hub_stats_t st;
    co_hub_stats(&st);
    return (void *)(intptr_t)(s < 0 ? -errno : s);
}

static void test_plain_thread(void)
{
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, plain_wait, NULL), 0);
    co_sleep_ms(30);
    ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
    void *r;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_EQ((intptr_t)r, SIGUSR1);
    sigset_t set = one(SIGUSR1);
    co_signal_restore(&set);
}

/* restore gives the previous action back. */
static volatile sig_atomic_t old_ran;
static void old_handler(int s)
{
    (void)s;
    old_ran = 1;
}

static void test_restore(void)
{
    struct sigaction sa = {.sa_handler = old_handler};
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR2, &sa, NULL), 0);
    sigset_t set = one(SIGUSR2);
    ASSERT_ERR(co_signal_wait(&set, 0), EAGAIN);
    raise(SIGUSR2);
    ASSERT_EQ(old_ran, 0); /* cogent's now */
    ASSERT_EQ(co_signal_wait(&set, co_now() + 2000), SIGUSR2);
    ASSERT_EQ(co_signal_restore(&set), 0);
    raise(SIGUSR2);
    ASSERT_EQ(old_ran, 1);
    signal(SIGUSR2, SIG_DFL);
}

/* A cogent call from the program's own handler, while the hub waits for
 * events: refused with a message (it would corrupt the hub). */
static void bad_handler(int s)
{
    (void)s;
    co_sleep_ms(1);
}

static void call_from_handler(void *arg)
{
    (void)arg;
    struct sigaction sa = {.sa_handler = bad_handler};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {.it_value = {0, 20000}};
    setitimer(ITIMER_REAL, &it, NULL);
    co_sleep_ms(2000);
    _exit(3); /* not reached */
}

static void test_call_from_handler_refused(void)
{
    char buf[2048];
    int st = run_child(call_from_handler, NULL, buf, sizeof buf);
    ASSERT_(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(buf, "signal handler") &&
                strstr(buf, "co_signal_wait"),
            "status %#x: %s", st, buf);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    /* The first wait makes the process's wake-up pipe (two descriptors,
     * kept for the process's life like the hub's): before the cases, so
     * that the harness's descriptor count starts with it. */
    sigset_t set = one(SIGUSR1);
    ASSERT_ERR(co_signal_wait(&set, 0), EAGAIN);
    co_signal_restore(&set);
    RUN(test_wait_in_coroutine);
    RUN(test_counted_and_try);
    RUN(test_cancel_and_bad_sets);
    RUN(test_main_alone_no_false_deadlock);
    RUN(test_plain_thread);
    RUN(test_restore);
    RUN(test_call_from_handler_refused);
    return TEST_MAIN_END();
}
