/* Threads (co_thread_*): start, names, join with deadlines from coroutines
 * and plain threads, current/enumerate/count, timers, daemon threads at
 * exit (child processes, checked from here), and the fork child. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "cogent.h"
#include "harness.h"

static void *ret_arg(void *arg)
{
    return arg;
}

/* The kernel's name of thread tid, as ps -L shows it. */
static void comm_of(pid_t tid, char *buf, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)tid);
    FILE *f = fopen(path, "re");
    ASSERT(f != NULL);
    ASSERT(fgets(buf, (int)n, f) != NULL);
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
}

static co_event_t go;

static void *wait_go(void *arg)
{
    co_event_wait(&go, -1);
    return arg;
}

static void test_start_join(void)
{
    co_event_init(&go);
    co_thread_t *t = co_thread_new(wait_go, (void *)42, &(co_thread_opts_t){.name = "worker-a"});
    ASSERT(t != NULL);
    ASSERT(co_thread_alive(t));
    ASSERT_STR_EQ(co_thread_name(t), "worker-a");
    ASSERT(!co_thread_daemon(t));
    pid_t tid = co_thread_id(t);
    ASSERT(tid > 0);
    ASSERT_NE(tid, getpid());
    char comm[32];
    comm_of(tid, comm, sizeof comm); /* named before co_thread_new returned */
    ASSERT_STR_EQ(comm, "worker-a");
    co_event_set(&go);
    void *r = NULL;
    ASSERT_EQ(co_thread_join(t, -1, &r), 0);
    ASSERT_PTR_EQ(r, (void *)42);
    ASSERT(!co_thread_alive(t));
    /* Joining again is allowed (the handle stays valid). */
    r = NULL;
    ASSERT_EQ(co_thread_join(t, 0, &r), 0);
    ASSERT_PTR_EQ(r, (void *)42);
    co_thread_free(t);
    co_thread_free(NULL);
}

static void test_names(void)
{
    co_thread_t *a = co_thread_new(ret_arg, NULL, NULL);
    co_thread_t *b = co_thread_new(ret_arg, NULL, NULL);
    ASSERT(a && b);
    ASSERT(!strncmp(co_thread_name(a), "Thread-", 7));
    ASSERT(strcmp(co_thread_name(a), co_thread_name(b)) != 0);
    const char *longname = "a-rather-long-thread-name-of-30";
    co_event_init(&go);
    co_thread_t *c = co_thread_new(wait_go, NULL, &(co_thread_opts_t){.name = longname});
    ASSERT_STR_EQ(co_thread_name(c), longname); /* whole here, cut for the kernel */
    char comm[32];
    comm_of(co_thread_id(c), comm, sizeof comm);
    ASSERT_EQ(strlen(comm), 15);
    ASSERT(!strncmp(comm, longname, 15));
    co_event_set(&go);
    co_thread_t *all[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(co_thread_join(all[i], -1, NULL), 0);
        co_thread_free(all[i]);
    }
}

static void test_bad_args(void)
{
    ASSERT_ERR(co_thread_new(NULL, NULL, NULL), EINVAL);
    ASSERT_ERR(co_thread_new(ret_arg, NULL, &(co_thread_opts_t){.stack_size = 1000}), EINVAL);
    co_thread_t *t = co_thread_new(ret_arg, (void *)7, &(co_thread_opts_t){.stack_size = 64 * 1024});
    ASSERT(t != NULL);
    void *r;
    ASSERT_EQ(co_thread_join(t, -1, &r), 0);
    ASSERT_PTR_EQ(r, (void *)7);
    ASSERT_ERR(co_thread_cancel(t), EINVAL); /* not a timer */
    co_thread_free(t);
    ASSERT_ERR(co_thread_join(co_thread_current(), -1, NULL), EDEADLK);
}

static void test_join_deadline(void)
{
    co_event_init(&go);
    co_thread_t *t = co_thread_new(wait_go, (void *)1, NULL);
    ASSERT_ERR(co_thread_join(t, 0, NULL), ETIMEDOUT);
    int64_t t0 = co_now();
    ASSERT_ERR(co_thread_join(t, co_now() + 50, NULL), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 40, 2000);
    ASSERT_ERR(co_thread_join(t, co_now() - 5, NULL), ETIMEDOUT);
    ASSERT(co_thread_alive(t));
    co_event_set(&go);
    ASSERT_EQ(co_thread_join(t, co_now() + 10000, NULL), 0);
    co_thread_free(t);
}

/* A thread without a hub blocks in join; the same deadline rules hold. */
static void *plain_joiner(void *arg)
{
    co_thread_t *t = arg;
    if (co_thread_join(t, co_now() + 30, NULL) == 0 || errno != ETIMEDOUT) return (void *)1;
    co_event_set(&go);
    void *r = NULL;
    if (co_thread_join(t, -1, &r) < 0) return (void *)2;
    return r;
}

static void test_join_from_plain_thread(void)
{
    co_event_init(&go);
    co_thread_t *t = co_thread_new(wait_go, (void *)9, NULL);
    pthread_t pt;
    pthread_create(&pt, NULL, plain_joiner, t);
    void *r;
    pthread_join(pt, &r);
    ASSERT_PTR_EQ(r, (void *)9);
    co_thread_free(t);
}

static atomic_int ticks;

static void *ticker(void *arg)
{
    (void)arg;
    while (co_sleep_ms(1) == 0) ticks++;
    return NULL;
}

static void *coro_joiner(void *arg)
{
    void *r = NULL;
    int rc = co_thread_join(arg, co_now() + 10000, &r);
    return rc == 0 ? r : (void *)(intptr_t)-errno;
}

static void *sleep_then(void *arg)
{
    struct timespec ts = {0, 60 * 1000000};
    nanosleep(&ts, NULL); /* blocks this thread only */
    return arg;
}

/* From a coroutine, join parks only that coroutine: the hub's other
 * coroutines run meanwhile. */
static void test_join_parks_only_the_coroutine(void)
{
    ticks = 0;
    co_thread_t *t = co_thread_new(sleep_then, (void *)5, NULL);
    co_coro_t *tk = co_spawn(ticker, NULL);
    co_coro_t *j = co_spawn(coro_joiner, t);
    void *r;
    ASSERT_EQ(co_join(j, -1, &r), 0);
    ASSERT_PTR_EQ(r, (void *)5);
    ASSERT(ticks >= 2); /* 60 ms of 1 ms sleeps went on while it waited (generous: a loaded machine) */
    co_kill(tk);
    ASSERT_EQ(co_join(tk, -1, NULL), 0);
    co_thread_free(t);
}

static void test_join_cancelled(void)
{
    co_event_init(&go);
    co_thread_t *t = co_thread_new(wait_go, (void *)3, NULL);
    co_coro_t *j = co_spawn(coro_joiner, t);
    co_sleep_ms(10);
    co_kill(j);
    void *r;
    ASSERT_EQ(co_join(j, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, -ECANCELED);
    ASSERT(co_thread_alive(t)); /* the thread is untouched */
    co_event_set(&go);
    ASSERT_EQ(co_thread_join(t, -1, &r), 0);
    ASSERT_PTR_EQ(r, (void *)3);
    co_thread_free(t);
}

/* Coroutines left on a thread's hub end before its join returns. */
static atomic_int ended_by_exit;

static void *sleeper_forever(void *arg)
{
    (void)arg;
    if (co_sleep_ms(1000000) < 0 && errno == ECANCELED) ended_by_exit = 1;
    return NULL;
}

static void *spawn_and_leave(void *arg)
{
    co_detach(co_spawn(sleeper_forever, NULL));
    co_yield_now(); /* it starts and parks */
    return arg;
}

static void test_hub_ends_before_join(void)
{
    ended_by_exit = 0;
    co_thread_t *t = co_thread_new(spawn_and_leave, NULL, NULL);
    ASSERT_EQ(co_thread_join(t, -1, NULL), 0);
    ASSERT_EQ(ended_by_exit, 1);
    co_thread_free(t);
}

static void *exit_early(void *arg)
{
    (void)arg;
    pthread_exit((void *)77);
}

static void test_pthread_exit(void)
{
    co_thread_t *t = co_thread_new(exit_early, NULL, NULL);
    void *r = (void *)1;
    ASSERT_EQ(co_thread_join(t, -1, &r), 0);
    ASSERT_PTR_EQ(r, NULL); /* documented: the value given to pthread_exit is lost */
    co_thread_free(t);
}

/* ------------------------------------------------- current, enumerate */

static void *whoami(void *arg)
{
    (void)arg;
    return co_thread_current();
}

static int in_list(co_thread_t *const *l, size_t n, const co_thread_t *t)
{
    for (size_t i = 0; i < n; i++)
        if (l[i] == t) return 1;
    return 0;
}

static void test_current_enumerate(void)
{
    co_thread_t *m = co_thread_main();
    ASSERT_PTR_EQ(co_thread_current(), m);
    ASSERT_STR_EQ(co_thread_name(m), "MainThread");
    ASSERT_EQ(co_thread_id(m), getpid());
    ASSERT(co_thread_alive(m));
    ASSERT_ERR(co_thread_join(m, 0, NULL), EDEADLK); /* it is us */
    size_t base = co_thread_count();

    co_event_init(&go);
    co_thread_t *a = co_thread_new(wait_go, NULL, &(co_thread_opts_t){.name = "enum-a"});
    co_thread_t *b = co_thread_new(wait_go, NULL, &(co_thread_opts_t){.name = "enum-b", .daemon = true});
    ASSERT(co_thread_daemon(b));
    ASSERT_EQ(co_thread_count(), base + 2);
    co_thread_t *l[64];
    size_t n = co_thread_enumerate(l, 64);
    ASSERT_EQ(n, base + 2);
    ASSERT_PTR_EQ(l[0], m);
    ASSERT(in_list(l, n, a) && in_list(l, n, b));
    /* A short array: the count is still the whole. */
    co_thread_t *one[1];
    ASSERT_EQ(co_thread_enumerate(one, 1), n);
    co_thread_free(one[0]);
    ASSERT_EQ(co_thread_enumerate(NULL, 0), n);
    co_event_set(&go);
    ASSERT_EQ(co_thread_join(a, -1, NULL), 0);
    ASSERT_EQ(co_thread_join(b, -1, NULL), 0);
    ASSERT_EQ(co_thread_count(), base);
    /* The references enumerate gave keep the records readable. */
    co_thread_free(a);
    co_thread_free(b);
    ASSERT_STR_EQ(co_thread_name(l[1]), co_thread_name(l[1]));
    for (size_t i = 0; i < n; i++) co_thread_free(l[i]);

    co_thread_t *t = co_thread_new(whoami, NULL, NULL);
    void *r;
    ASSERT_EQ(co_thread_join(t, -1, &r), 0);
    ASSERT_PTR_EQ(r, t);
    co_thread_free(t);
}

static void *foreign(void *arg)
{
    (void)arg;
    co_thread_t *me = co_thread_current();
    if (strncmp(co_thread_name(me), "Dummy-", 6) != 0) return (void *)1;
    if (co_thread_current() != me) return (void *)2;
    if (co_thread_id(me) != (pid_t)syscall(SYS_gettid)) return (void *)3;
    co_thread_t *l[64];
    size_t n = co_thread_enumerate(l, 64);
    int listed = in_list(l, n < 64 ? n : 64, me);
    for (size_t i = 0; i < n && i < 64; i++) co_thread_free(l[i]);
    return listed ? (void *)4 : NULL;
}

static void test_foreign_thread(void)
{
    pthread_t pt;
    pthread_create(&pt, NULL, foreign, NULL);
    void *r;
    pthread_join(pt, &r);
    ASSERT_PTR_EQ(r, NULL);
}

/* --------------------------------------------------------------- timers */

static atomic_int fired;

static void *fire(void *arg)
{
    fired++;
    return arg;
}

static void test_timer(void)
{
    fired = 0;
    int64_t t0 = co_now();
    co_thread_t *t = co_thread_after(30, fire, (void *)11, &(co_thread_opts_t){.name = "timer"});
    ASSERT(t != NULL);
    void *r;
    ASSERT_EQ(co_thread_join(t, -1, &r), 0);
    ASSERT_TIME(co_now() - t0, 25, 5000);
    ASSERT_PTR_EQ(r, (void *)11);
    ASSERT_EQ(fired, 1);
    ASSERT_ERR(co_thread_cancel(t), EALREADY); /* it ran */
    co_thread_free(t);

    t = co_thread_after(10000, fire, (void *)12, NULL);
    ASSERT_EQ(co_thread_cancel(t), 0);
    ASSERT_EQ(co_thread_cancel(t), 0); /* again: still cancelled */
    t0 = co_now();
    r = (void *)1;
    ASSERT_EQ(co_thread_join(t, -1, &r), 0);
    ASSERT_TIME(co_now() - t0, 0, 2000); /* it did not wait out its delay */
    ASSERT_PTR_EQ(r, NULL);
    ASSERT_EQ(fired, 1);
    co_thread_free(t);
}

/* ------------------------------------------------------------ exit hooks */

/* In a child: a thread writes "late" after 150 ms; the child leaves as
 * `how` says.  The parent reads what the child wrote. */
typedef struct exit_case {
    bool daemon;
    int how; /* 0 exit(), 1 return-from-main equivalent through exit in a coroutine, 2 _exit(), 3 SIGKILL */
} exit_case_t;

static void *late_writer(void *arg)
{
    /* Long where exit must not wait: were it to, the test would take
     * seconds and see the mark. */
    struct timespec ts = {arg ? 3 : 0, arg ? 0 : 150 * 1000000};
    nanosleep(&ts, NULL);
    fputs("late\n", stderr);
    return NULL;
}

static void *exit_from_coroutine(void *arg)
{
    (void)arg;
    exit(0);
}

static void exit_child(void *arg)
{
    exit_case_t *c = arg;
    bool waited = !c->daemon && c->how <= 1; /* the cases where exit waits: a short sleep */
    co_thread_t *t = co_thread_new(late_writer, waited ? NULL : (void *)1, &(co_thread_opts_t){.daemon = c->daemon});
    if (!t) _exit(3);
    fputs("early\n", stderr);
    switch (c->how) {
    case 0:
        exit(0);
    case 1:
        co_join(co_spawn(exit_from_coroutine, NULL), -1, NULL);
        _exit(4);
    case 2:
        _exit(0);
    default:
        raise(SIGKILL);
    }
}

static void test_exit_waits_for_non_daemon(void)
{
    char buf[256];
    exit_case_t c = {.daemon = false, .how = 0};
    int st = run_child(exit_child, &c, buf, sizeof buf);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT(strstr(buf, "early\nlate\n") != NULL);

    c.how = 1; /* exit() from a coroutine: the same */
    st = run_child(exit_child, &c, buf, sizeof buf);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT(strstr(buf, "late\n") != NULL);
}

static void test_exit_leaves_daemon(void)
{
    char buf[256];
    exit_case_t c = {.daemon = true, .how = 0};
    int64_t t0 = co_now();
    int st = run_child(exit_child, &c, buf, sizeof buf);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT(strstr(buf, "early\n") != NULL);
    ASSERT(strstr(buf, "late") == NULL);
    ASSERT_TIME(co_now() - t0, 0, 2500); /* not waited for */
}

static void test_exit_without_hooks(void)
{
    char buf[256];
    exit_case_t c = {.daemon = false, .how = 2}; /* _exit: nothing is waited for */
    int st = run_child(exit_child, &c, buf, sizeof buf);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT(strstr(buf, "late") == NULL);
    c.how = 3; /* killed by a signal: neither */
    st = run_child(exit_child, &c, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ASSERT(strstr(buf, "late") == NULL);
}

/* ------------------------------------------------------------------ fork */

static co_thread_t *forked_t;

static void fork_child(void *arg)
{
    (void)arg;
    co_thread_t *t = forked_t;
    if (co_thread_alive(t)) _exit(10);
    errno = 0;
    if (co_thread_join(t, -1, NULL) == 0 || errno != ESRCH) _exit(11);
    if (co_thread_current() != co_thread_main()) _exit(12);
    if (co_thread_id(co_thread_main()) != getpid()) _exit(13);
    if (co_thread_count() != 1) _exit(14);
    /* Threads start in the child as anywhere. */
    co_thread_t *n = co_thread_new(ret_arg, (void *)5, NULL);
    void *r;
    if (!n || co_thread_join(n, -1, &r) < 0 || r != (void *)5) _exit(15);
    co_thread_free(n);
    _exit(0);
}

static void test_fork_child(void)
{
    co_event_init(&go);
    forked_t = co_thread_new(wait_go, NULL, NULL);
    char buf[256];
    int st = run_child(fork_child, NULL, buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d: %s", WEXITSTATUS(st), buf);
    co_event_set(&go);
    ASSERT_EQ(co_thread_join(forked_t, -1, NULL), 0);
    co_thread_free(forked_t);
}

/* ------------------------------------------------------------------ dump */

static void *named_hub(void *arg)
{
    (void)arg;
    co_event_wait(&go, -1); /* through its hub: it made one */
    return NULL;
}

static void *make_hub_then_wait(void *arg)
{
    co_sleep_ms(0);
    return named_hub(arg);
}

static void test_dump_shows_names(void)
{
    co_event_init(&go);
    co_thread_t *a = co_thread_new(make_hub_then_wait, NULL, &(co_thread_opts_t){.name = "dump-with-hub"});
    co_thread_t *b = co_thread_new(wait_go, NULL, &(co_thread_opts_t){.name = "dump-no-hub"});
    co_sleep_ms(20);
    char path[] = "/tmp/cogent-dump-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    unlink(path);
    ASSERT_EQ(co_dump(fd), 0);
    char buf[8192];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    ASSERT(n > 0);
    buf[n] = '\0';
    close(fd);
    ASSERT_(strstr(buf, "dump-with-hub") != NULL, "%s", buf);
    ASSERT_(strstr(buf, "dump-no-hub") != NULL, "%s", buf);
    co_event_set(&go);
    ASSERT_EQ(co_thread_join(a, -1, NULL), 0);
    ASSERT_EQ(co_thread_join(b, -1, NULL), 0);
    co_thread_free(a);
    co_thread_free(b);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_start_join);
    RUN(test_names);
    RUN(test_bad_args);
    RUN(test_join_deadline);
    RUN(test_join_from_plain_thread);
    RUN(test_join_parks_only_the_coroutine);
    RUN(test_join_cancelled);
    RUN(test_hub_ends_before_join);
    RUN(test_pthread_exit);
    RUN(test_current_enumerate);
    RUN(test_foreign_thread);
    RUN(test_timer);
    RUN(test_exit_waits_for_non_daemon);
    RUN(test_exit_leaves_daemon);
    RUN(test_exit_without_hooks);
    RUN(test_fork_child);
    RUN(test_dump_shows_names);
    return TEST_MAIN_END();
}
