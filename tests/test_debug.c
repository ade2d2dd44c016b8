/* Debugging aids: lock-order warnings, the coroutine dump (called and on
 * SIGQUIT), and the blocking monitor.  Each runs in a child process whose
 * stderr is captured and checked. */
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "cogent.h"
#include "harness.h"

static co_lock_t A = CO_LOCK_INIT_NAMED("A"), B = CO_LOCK_INIT_NAMED("B"), C = CO_LOCK_INIT_NAMED("C");

static void *a_then_b(void *arg)
{
    (void)arg;
    co_lock_acquire(&A, -1);
    co_lock_acquire(&B, -1);
    co_lock_release(&B);
    co_lock_release(&A);
    return NULL;
}

static void *b_then_a(void *arg)
{
    (void)arg;
    co_lock_acquire(&B, -1);
    co_lock_acquire(&A, -1);
    co_lock_release(&A);
    co_lock_release(&B);
    return NULL;
}

static void *b_then_c_then_a(void *arg)
{
    (void)arg;
    co_lock_acquire(&B, -1);
    co_lock_acquire(&C, -1);
    co_lock_release(&C);
    co_lock_release(&B);
    co_lock_acquire(&C, -1);
    co_lock_acquire(&A, -1); /* A -> B -> C seen: C then A inverts it */
    co_lock_release(&A);
    co_lock_release(&C);
    return NULL;
}

static void lockdep_child(void *arg)
{
    (void)arg;
    co_lockdep_enable(true);
    co_join(co_spawn(a_then_b, NULL), -1, NULL); /* one after the other: no deadlock */
    if (co_lockdep_reports() != 0) _exit(1);
    co_join(co_spawn(b_then_a, NULL), -1, NULL);
    if (co_lockdep_reports() != 1) _exit(2);
    co_join(co_spawn(b_then_a, NULL), -1, NULL); /* reported once only */
    if (co_lockdep_reports() != 1) _exit(3);
    co_lock_destroy(&A); /* forgotten: a new lock at this address starts clean */
    co_join(co_spawn(a_then_b, NULL), -1, NULL);
    co_join(co_spawn(b_then_c_then_a, NULL), -1, NULL); /* a chain: A -> B -> C, then C -> A */
    _exit(co_lockdep_reports() == 2 ? 0 : 4);
}

static void test_lockdep(void)
{
    char buf[8192];
    int st = run_child(lockdep_child, NULL, buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d:\n%s", st, buf);
    ASSERT(strstr(buf, "lock order inversion"));
    ASSERT(strstr(buf, "takes lock 'A'") && strstr(buf, "while holding lock 'B'"));
    /* The first report names four places: both locks in both orders. */
    const char *second = strstr(buf + 1, "cogent: lockdep");
    int places = 0;
    for (const char *p = buf; (p = strstr(p, "test_debug.c:")) && (!second || p < second); p++) places++;
    ASSERT_(places == 4, "four places in the first report:\n%s", buf);
    ASSERT(strstr(buf, "takes lock 'A'") && strstr(buf, "while holding lock 'C'"));
}

static void lockdep_env_child(void *arg)
{
    (void)arg;
    /* COGENT_LOCKDEP=1 was in the environment at start (see main). */
    co_join(co_spawn(a_then_b, NULL), -1, NULL);
    co_join(co_spawn(b_then_a, NULL), -1, NULL);
    _exit(co_lockdep_reports() == 1 ? 0 : 1);
}

static void test_lockdep_env(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        setenv("COGENT_LOCKDEP", "1", 1);
        execl(test_argv_[0], "test_debug", "lockdep_env_child", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
}

/* ---------------------------------------------------------------- dump */

static co_event_t never = CO_EVENT_INIT;
static co_lock_t held = CO_LOCK_INIT_NAMED("held");

static void *sleeper(void *arg)
{
    co_sleep_ms((intptr_t)arg);
    return NULL;
}

static void *locker(void *arg)
{
    (void)arg;
    co_lock_acquire(&held, -1);
    return NULL;
}

static void *other_thread(void *arg)
{
    co_event_t *ready = arg;
    co_spawn_opts_t o = {.name = "faraway"};
    co_coro_t *c = co_spawn_with(sleeper, (void *)100000, &o);
    co_event_set(ready);
    co_event_wait(&never, co_now() + 100000); /* main of this thread waits too */
    co_kill(c);
    co_join(c, -1, NULL);
    return NULL;
}

static void test_dump(void)
{
    co_event_t ready = CO_EVENT_INIT;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, other_thread, &ready), 0);
    ASSERT_EQ(co_event_wait(&ready, -1), 0);
    co_lock_acquire(&held, -1);
    co_spawn_opts_t o1 = {.name = "napper"}, o2 = {.name = "blocked"};
    co_coro_t *s = co_spawn_with(sleeper, (void *)100000, &o1), *l = co_spawn_with(locker, NULL, &o2);
    co_yield_now();
    char path[] = "/tmp/cogent-dump-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    unlink(path);
    ASSERT_EQ(co_dump(fd), 0);
    char buf[8192];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    ASSERT(n > 0);
    buf[n] = 0;
    close(fd);
    ASSERT_(strstr(buf, "cogent: dump of 2 hubs"), "%s", buf);
    ASSERT_(strstr(buf, "napper") && strstr(buf, "waiting in co_sleep"), "%s", buf);
    ASSERT_(strstr(buf, "blocked") && strstr(buf, "waiting in co_lock_acquire on"), "%s", buf);
    ASSERT_(strstr(buf, "spawned at") && strstr(buf, "test_debug.c:"), "%s", buf);
    ASSERT_(strstr(buf, "main") && strstr(buf, "(this dump)"), "%s", buf);
    ASSERT_(strstr(buf, "faraway") && strstr(buf, "waiting in co_event_wait"), "%s", buf);
    ASSERT_(strstr(buf, " ms"), "%s", buf);
    co_event_set(&never);
    pthread_join(t, NULL);
    co_kill(s);
    co_kill(l);
    ASSERT_EQ(co_join(s, -1, NULL), 0);
    ASSERT_EQ(co_join(l, -1, NULL), 0); /* cancelled in its wait: took nothing */
    co_lock_release(&held);
    ASSERT(!co_lock_locked(&held));
}

/* Runs fn in a child and reads its stderr until `want` shows up (or 20 s
 * pass), then kills it.  Returns whether it showed up. */
static bool child_says(void (*fn)(void), const char *want, char *buf, size_t cap)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 2);
        close(p[1]);
        fn();
        _exit(0);
    }
    close(p[1]);
    size_t n = 0;
    int64_t deadline = co_now() + 20000;
    bool found = false;
    while (!found && co_now() < deadline && n < cap - 1) {
        ssize_t r = read(p[0], buf + n, cap - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        buf[n] = 0;
        found = strstr(buf, want) != NULL;
    }
    buf[n] = 0;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(p[0]);
    return found;
}

static void sigquit_child(void)
{
    co_dump_on_signal(SIGQUIT);
    co_spawn_opts_t o = {.name = "dreamer"};
    co_spawn_with(sleeper, (void *)100000, &o);
    raise(SIGQUIT);
    co_sleep_ms(60000); /* the parent kills us once it has read the dump */
}

static void test_dump_on_sigquit(void)
{
    char buf[8192];
    ASSERT_(child_says(sigquit_child, "dreamer", buf, sizeof buf), "stderr:\n%s", buf);
    ASSERT(strstr(buf, "cogent: dump of 1 hub"));
    ASSERT(strstr(buf, "waiting in co_sleep"));
    ASSERT_ERR(co_dump_on_signal(SIGKILL), EINVAL);
    ASSERT_ERR(co_dump_on_signal(-1), EINVAL);
}

/* ------------------------------------------------------------- monitor */

static void *spinner(void *arg)
{
    (void)arg;
    /* Hog the CPU until the monitor has noticed (bounded). */
    int64_t end = co_now() + 15000;
    while (co_monitor_reports() == 0 && co_now() < end) {
    }
    return NULL;
}

static void monitor_child(void)
{
    co_monitor_start(50);
    co_spawn_opts_t o = {.name = "hog"};
    co_join(co_spawn_with(spinner, NULL, &o), -1, NULL);
    fprintf(stderr, "reports=%llu\n", (unsigned long long)co_monitor_reports());
    co_sleep_ms(60000);
}

static void test_monitor(void)
{
    char buf[8192];
    ASSERT_(child_says(monitor_child, "reports=", buf, sizeof buf), "stderr:\n%s", buf);
    ASSERT_(strstr(buf, "cogent: monitor: coroutine 'hog'"), "%s", buf);
    ASSERT(strstr(buf, "without giving up the CPU"));
    ASSERT(strstr(buf, "reports=1\n")); /* once per stall */
    ASSERT_ERR(co_monitor_start(-5), EINVAL);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "lockdep_env_child")) lockdep_env_child(NULL);
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_lockdep);
    RUN(test_lockdep_env);
    RUN(test_dump);
    RUN(test_dump_on_sigquit);
    RUN(test_monitor);
    return TEST_MAIN_END();
}
