/* Coroutines: spawn/join/detach/kill/yield, deadlines, cancellation, misuse. */
#include "arch.h"
#include "cogent.h"
#include <pthread.h>

#include "coro.h" /* co__check_handles */
#include "fpu.h"
#include "harness.h"

static void *add_one(void *arg)
{
    return (void *)((uintptr_t)arg + 1);
}

static void test_spawn_join_result(void)
{
    char buf[2];
    co_coro_t *c = co_spawn(add_one, buf);
    ASSERT(c);
    ASSERT(!co_finished(c));
    void *r = NULL;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_PTR_EQ(r, buf + 1);
}

static char order[64];
static void *tagger(void *arg)
{
    const char *tag = arg;
    for (int i = 0; i < 3; i++) {
        strcat(order, tag);
        co_yield_now();
    }
    return NULL;
}

static void test_yield_round_robin(void)
{
    order[0] = 0;
    co_coro_t *a = co_spawn(tagger, "a"), *b = co_spawn(tagger, "b");
    co_coro_t *cs[] = {a, b};
    ASSERT_EQ(co_joinall(cs, 2, -1, NULL), 0);
    ASSERT_STR_EQ(order, "ababab");
}

/* FP state across the hub's switches: the rounding mode is each
 * coroutine's own, the exception flags are the thread's, and flags alone
 * never make a switch load anything (co__fpu_loads, src/arch.h). */
static int fp_seen[2], fp_round;
static void *fp_rounding_coro(void *arg)
{
    (void)arg;
    fp_seen[0] = fetestexcept(FE_ALL_EXCEPT);
    fesetround(FE_UPWARD); /* this coroutine's own mode */
    fpu_raise_inexact();
    co_yield_now();
    fp_seen[1] = fetestexcept(FE_ALL_EXCEPT);
    fp_round = fegetround();
    return NULL;
}

static int fp_flagged_arrivals;
static void *fp_inexact_yielder(void *arg)
{
    for (intptr_t i = 0; i < (intptr_t)arg; i++) {
        if (fetestexcept(FE_ALL_EXCEPT)) fp_flagged_arrivals++;
        fpu_raise_inexact();
        co_yield_now();
    }
    return NULL;
}

static void test_fp_state(void)
{
    if (!fpu_flags_recorded()) return;
    fesetround(FE_TONEAREST);
    co_coro_t *c = co_spawn(fp_rounding_coro, NULL);
    fpu_raise_divbyzero();
    unsigned long loads = co__fpu_loads;
    co_yield_now();                                                    /* c runs to its yield */
    ASSERT_EQ(fp_seen[0], FE_DIVBYZERO);                               /* raised here, seen there */
    ASSERT_EQ(fetestexcept(FE_ALL_EXCEPT), FE_DIVBYZERO | FE_INEXACT); /* and the other way */
    ASSERT_EQ(fegetround(), FE_TONEAREST);                             /* its FE_UPWARD stayed there */
    feclearexcept(FE_ALL_EXCEPT);
    ASSERT_EQ(co_join(c, -1, NULL), 0);
    ASSERT_EQ(fp_seen[1], 0); /* not its own stale FE_INEXACT */
    ASSERT_EQ(fp_round, FE_UPWARD);
    ASSERT_EQ(fegetround(), FE_TONEAREST);
    /* Loaded only where the rounding modes differed: back from c, into c
     * again, back when it ended. */
    ASSERT_EQ(co__fpu_loads - loads, 3);

    /* One mode everywhere, flags different at every switch: no loads. */
    loads = co__fpu_loads;
    fp_flagged_arrivals = 0;
    c = co_spawn(fp_inexact_yielder, (void *)50);
    for (int i = 0; i < 50; i++) {
        feclearexcept(FE_ALL_EXCEPT);
        co_yield_now();
        ASSERT_EQ(fetestexcept(FE_ALL_EXCEPT), FE_INEXACT);
    }
    ASSERT_EQ(co_join(c, -1, NULL), 0);
    ASSERT_EQ(fp_flagged_arrivals, 0);
    ASSERT_EQ(co__fpu_loads - loads, 0);
    feclearexcept(FE_ALL_EXCEPT);
}

static void *check_identity(void *arg)
{
    co_coro_t *self = co_current();
    ASSERT(co_id(self) > 0);
    ASSERT_STR_EQ(co_name(self), (const char *)arg);
    return self;
}

static void test_current_id_name(void)
{
    co_coro_t *m = co_current();
    ASSERT_STR_EQ(co_name(m), "main");
    co_spawn_opts_t o = {.name = "worker"};
    co_coro_t *c = co_spawn_with(check_identity, "worker", &o);
    ASSERT(co_id(c) != co_id(m));
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_PTR_EQ(r, c); /* co_current() inside was the handle */
    /* Unnamed: "#<id>". */
    co_coro_t *d = co_spawn(add_one, NULL);
    char want[32];
    snprintf(want, sizeof want, "#%" PRIu64, co_id(d));
    ASSERT_STR_EQ(co_name(d), want);
    ASSERT_EQ(co_join(d, -1, NULL), 0);
    /* Long names are copied whole. */
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    o.name = longname;
    d = co_spawn_with(add_one, NULL, &o);
    longname[0] = 'y';
    ASSERT_EQ(strlen(co_name(d)), 199);
    ASSERT_EQ(co_name(d)[0], 'x');
    ASSERT_EQ(co_join(d, -1, NULL), 0);
}

static void *sleep_ms(void *arg)
{
    if (co_sleep_ms((intptr_t)arg) < 0) return (void *)(intptr_t)errno;
    return NULL;
}

static void test_join_deadline(void)
{
    co_coro_t *c = co_spawn(sleep_ms, (void *)200);
    int64_t t0 = co_now();
    ASSERT_ERR(co_join(c, co_now() + 30, NULL), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 30, 2000);       /* never early; late only on a loaded machine */
    ASSERT_ERR(co_join(c, 0, NULL), ETIMEDOUT); /* nowait */
    ASSERT_ERR(co_wait(c, co_now() + 10), ETIMEDOUT);
    void *r = (void *)1;
    ASSERT_EQ(co_join(c, -1, &r), 0); /* the handle stayed valid */
    ASSERT_PTR_EQ(r, NULL);
}

static void test_kill_sleeping(void)
{
    co_coro_t *c = co_spawn(sleep_ms, (void *)10000);
    co_sleep_ms(0); /* let it start sleeping */
    int64_t t0 = co_now();
    co_kill(c);
    ASSERT(co_killed(c));
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, ECANCELED);
    ASSERT_TIME(co_now() - t0, 0, 5000); /* the kill, not the 10 s sleep, ended it */
    ;
}

static int ran;
static void *mark_ran(void *arg)
{
    (void)arg;
    ran = 1;
    return (void *)7;
}

static void test_kill_before_start_and_after_end(void)
{
    ran = 0;
    co_coro_t *c = co_spawn(mark_ran, NULL);
    co_kill(c);
    void *r = (void *)1;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ(ran, 0); /* never ran */
    ASSERT_PTR_EQ(r, NULL);

    c = co_spawn(mark_ran, NULL);
    ASSERT_EQ(co_wait(c, -1), 0);
    ASSERT(co_finished(c));
    co_kill(c); /* finished: nothing happens, not even co_killed */
    ASSERT(!co_killed(c));
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, 7);
}

/* Killed while joining another: the join fails with ECANCELED, and every
 * later blocking call too, until it returns. */
static void *join_other(void *arg)
{
    co_coro_t *other = arg;
    if (co_join(other, -1, NULL) == 0) return "joined";
    ASSERT_EQ(errno, ECANCELED);
    ASSERT_ERR(co_sleep_ms(10), ECANCELED);
    ASSERT_ERR(co_yield_now(), ECANCELED);
    return "cancelled";
}

static void test_kill_while_joining(void)
{
    co_coro_t *sleeper = co_spawn(sleep_ms, (void *)100);
    co_coro_t *joiner = co_spawn(join_other, sleeper);
    co_sleep_ms(10);
    co_kill(joiner);
    void *r;
    ASSERT_EQ(co_join(joiner, -1, &r), 0);
    ASSERT_STR_EQ(r, "cancelled");
    ASSERT_EQ(co_join(sleeper, -1, &r), 0); /* the target was not affected */
    ASSERT_PTR_EQ(r, NULL);
}

/* A killed main coroutine stays killed (on its own thread, so that the
 * rest of the suite keeps a live main coroutine). */
static void *killed_main_thread(void *unused)
{
    (void)unused;
    co_coro_t *m = co_current();
    co_kill(m);
    ASSERT_ERR(co_sleep_ms(10), ECANCELED);
    ASSERT_ERR(co_yield_now(), ECANCELED);
    co_coro_t *c = co_spawn(add_one, NULL);
    ASSERT_ERR(co_join(c, -1, NULL), ECANCELED);
    ASSERT_ERR(co_wait(c, co_now() + 1000), ECANCELED);
    /* c is left queued: the thread's exit ends it (killed before it ran).
     * Its handle must still be given up: an unjoined handle keeps its
     * record, and its hub's memory and doorbell, alive. */
    co_detach(c);
    return NULL;
}

static void test_killed_main(void)
{
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, killed_main_thread, NULL), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
}

static void *spawn_tree(void *arg)
{
    intptr_t depth = (intptr_t)arg;
    if (depth == 0) return (void *)1;
    co_coro_t *l = co_spawn(spawn_tree, (void *)(depth - 1));
    co_coro_t *r = co_spawn(spawn_tree, (void *)(depth - 1));
    void *a, *b;
    ASSERT_EQ(co_join(l, -1, &a), 0);
    ASSERT_EQ(co_join(r, -1, &b), 0);
    return (void *)((intptr_t)a + (intptr_t)b);
}

static void test_nested_spawns(void)
{
    co_coro_t *root = co_spawn(spawn_tree, (void *)10);
    void *n;
    ASSERT_EQ(co_join(root, -1, &n), 0);
    ASSERT_EQ((intptr_t)n, 1024);
    co_hub_stats_t st;
    co_hub_stats(&st);
    ASSERT_EQ(st.coroutines, 0);
}

static int detached_done;
static void *detached_body(void *arg)
{
    co_sleep_ms((intptr_t)arg);
    detached_done++;
    return NULL;
}

static void test_detach(void)
{
    detached_done = 0;
    co_detach(co_spawn(detached_body, (void *)0));
    co_detach(co_spawn(detached_body, (void *)20));
    co_coro_t *c = co_spawn(detached_body, (void *)1);
    co_sleep_ms(5);
    co_detach(c); /* already finished: freed now */
    co_sleep_ms(60);
    ASSERT_EQ(detached_done, 3);
}

/* co_spawn_with takes a compound literal with several fields in place
 * (the macro is variadic: the commas inside it are not arguments). */
static void *name_of_self(void *arg)
{
    (void)arg;
    return (void *)co_name(co_current());
}

static void test_spawn_with_compound_literal(void)
{
    co_coro_t *c = co_spawn_with(name_of_self, NULL, &(co_spawn_opts_t){.stack_size = 32768, .name = "lit"});
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_STR_EQ((const char *)r, "lit");
}

/* Every negative deadline but -1 has passed (co_now() - 300000 is
 * negative right after boot): each call fails at once as at a past
 * deadline, never waits forever. */
static void *sleep_forever(void *arg)
{
    (void)arg;
    int r = co_sleep_ms(INT64_MAX); /* no overflow inside (UBSan) */
    return (void *)(intptr_t)(r < 0 ? errno : 0);
}

static void test_negative_deadlines(void)
{
    const int64_t past[] = {-2, -300000, INT64_MIN};
    for (size_t i = 0; i < sizeof past / sizeof *past; i++) {
        int64_t d = past[i], t0 = co_now();
        co_coro_t *c = co_spawn(sleep_forever, NULL);
        ASSERT_ERR(co_join(c, d, NULL), ETIMEDOUT);
        ASSERT_ERR(co_wait(c, d), ETIMEDOUT);
        co_sem_t s = CO_SEM_INIT(0);
        ASSERT_ERR(co_sem_acquire(&s, d), ETIMEDOUT);
        co_event_t e = CO_EVENT_INIT;
        ASSERT_ERR(co_event_wait(&e, d), ETIMEDOUT);
        co_queue_t *q = co_queue_new(NULL);
        void *item;
        ASSERT_ERR(co_queue_get(q, &item, d), ETIMEDOUT);
        co_queue_free(q, NULL);
        ASSERT_EQ(co_sleep_until(d), 0); /* passed: just yields */
        int sv[2];
        ASSERT_EQ(co_socketpair(sv), 0);
        char b;
        ASSERT_ERR(co_read(sv[0], &b, 1, d), ETIMEDOUT);
        co_close(sv[0]);
        co_close(sv[1]);
        ASSERT_TIME(co_now() - t0, 0, 1000);
        co_kill(c); /* a sleep of INT64_MAX ms is a sleep without end */
        void *r;
        ASSERT_EQ(co_join(c, -1, &r), 0);
        ASSERT_EQ((intptr_t)r, ECANCELED);
    }
}

static void test_joinall_errors(void)
{
    co_coro_t *cs[3] = {co_spawn(sleep_ms, (void *)1), co_spawn(sleep_ms, (void *)300), co_spawn(sleep_ms, (void *)1)};
    ASSERT_ERR(co_joinall(cs, 3, co_now() + 20, NULL), ETIMEDOUT);
    co_kill(cs[1]);
    void *rs[3];
    ASSERT_EQ(co_joinall(cs, 3, -1, rs), 0);
    ASSERT_PTR_EQ(rs[0], NULL);
    ASSERT_EQ((intptr_t)rs[1], ECANCELED);
}

static void test_poller_in_use(void)
{
    /* The _poll variants of the suite really run on poll(2). */
    const char *want = getenv("COGENT_POLLER");
    ASSERT_STR_EQ(co_hub_poller(), want && !strcmp(want, "poll") ? "poll" : "epoll");
}

static void test_self_and_main_join(void)
{
    ASSERT_ERR(co_join(co_current(), -1, NULL), EDEADLK);
    ASSERT_ERR(co_spawn(NULL, NULL), EINVAL);
    co_spawn_opts_t o = {.stack_size = 100};
    ASSERT_ERR(co_spawn_with(add_one, NULL, &o), EINVAL);
}

static void *join_main(void *arg)
{
    co_coro_t *m = arg;
    if (co_join(m, -1, NULL) < 0) return (void *)(intptr_t)errno;
    return NULL;
}

static void test_join_main_einval(void)
{
    co_coro_t *c = co_spawn(join_main, co_current());
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, EINVAL);
}

static void double_join(void *arg)
{
    (void)arg;
    co_coro_t *c = co_spawn(add_one, NULL);
    co_join(c, -1, NULL);
    co_join(c, -1, NULL);
}
static void join_detached(void *arg)
{
    (void)arg;
    co_coro_t *c = co_spawn(add_one, NULL);
    co_detach(c);
    co_join(c, -1, NULL);
}
static void detach_twice(void *arg)
{
    (void)arg;
    co_coro_t *c = co_spawn(sleep_ms, (void *)100);
    co_detach(c);
    co_detach(c);
}
static void join_null(void *arg)
{
    (void)arg;
    co_join(NULL, -1, NULL);
}

static void test_misuse_aborts(void)
{
    char buf[1024];
    int st = run_child(double_join, NULL, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    ASSERT(strstr(buf, "co_join: coroutine #") && strstr(buf, "already joined"));
    st = run_child(join_detached, NULL, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && strstr(buf, "already detached"));
    st = run_child(detach_twice, NULL, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && strstr(buf, "co_detach") && strstr(buf, "already detached"));
    st = run_child(join_null, NULL, buf, sizeof buf);
    ASSERT(WIFSIGNALED(st) && strstr(buf, "NULL coroutine"));
}

/* A handle is invalid once joined (docs/conventions.md): its record is
 * reused by the next spawn.  This pins that documented rule; the debug
 * mode below is how a program finds its stale handles. */
static void test_handle_reuse_documented(void)
{
    co_coro_t *a = co_spawn(add_one, NULL);
    ASSERT_EQ(co_join(a, -1, NULL), 0);
    co_coro_t *b = co_spawn(add_one, (void *)1);
    ASSERT_PTR_EQ(b, a); /* the same record: `a` now names b */
    ASSERT_EQ(co_join(b, -1, NULL), 0);
}

/* With COGENT_CHECK_HANDLES the record waits in a quarantine: a stale
 * join or kill aborts, naming the handle, instead of reaching b. */
static void stale_join(void *arg)
{
    co__check_handles = 16;
    co_coro_t *a = co_spawn(add_one, NULL);
    co_join(a, -1, NULL);
    co_coro_t *b = co_spawn(add_one, NULL);
    if (b == a) _exit(3);
    if (arg)
        co_kill(a);
    else
        co_join(a, -1, NULL);
    _exit(4); /* not reached */
}

static void test_stale_handle_checked(void)
{
    char buf[1024];
    int st = run_child(stale_join, NULL, buf, sizeof buf);
    ASSERT_(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x: %s", st, buf);
    ASSERT(strstr(buf, "co_join: coroutine #") && strstr(buf, "already joined") && strstr(buf, "invalid"));
    st = run_child(stale_join, (void *)1, buf, sizeof buf);
    ASSERT_(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x: %s", st, buf);
    ASSERT(strstr(buf, "co_kill: coroutine #") && strstr(buf, "already joined"));
}

/* The same, turned on by the environment variable (a fresh process). */
static int child_stale_env(void)
{
    co_coro_t *a = co_spawn(add_one, NULL); /* reads the environment */
    co_join(a, -1, NULL);
    if (co__check_handles == 0) return 5; /* refused */
    co_coro_t *b = co_spawn(add_one, NULL);
    if (b == a) return 3;
    co_join(b, -1, NULL);
    co_join(a, -1, NULL); /* aborts */
    return 4;
}

static void exec_stale(void *arg)
{
    setenv("COGENT_CHECK_HANDLES", arg, 1);
    execl(test_argv_[0], "test_coro", "--child", "stale", (char *)NULL);
    _exit(99); /* cannot run itself again (under qemu-user, say) */
}

static void test_stale_handle_env(void)
{
    char buf[1024];
    int st = run_child(exec_stale, "1", buf, sizeof buf);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 99) {
        fprintf(stderr, "    skipped: this program cannot run itself again here\n");
        return;
    }
    ASSERT_(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(buf, "already joined"), "status %#x: %s", st, buf);
    st = run_child(exec_stale, "lots", buf, sizeof buf);
    ASSERT_(WIFEXITED(st) && WEXITSTATUS(st) == 5 && strstr(buf, "ignoring COGENT_CHECK_HANDLES=lots"),
            "status %#x: %s", st, buf);
}

/* A generator driven from a coroutine can block on the hub inside. */
static void *sleepy_gen(co_gen_t *g, void *arg)
{
    (void)arg;
    for (intptr_t i = 0; i < 3; i++) {
        co_sleep_ms(5);
        co_gen_yield(g, (void *)i, NULL);
    }
    return NULL;
}
static int ticks;
static void *ticker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5; i++) {
        ticks++;
        co_sleep_ms(2);
    }
    return NULL;
}
static void *spin_generator_inside(void *arg)
{
    (void)arg;
    co_gen_t *g = co_gen_new(sleepy_gen, NULL, NULL);
    void *v;
    intptr_t sum = 0;
    while (co_gen_next(g, &v) > 0) sum += (intptr_t)v;
    co_gen_free(g);
    return (void *)sum;
}

static void test_generator_blocks_inside_coroutine(void)
{
    ticks = 0;
    co_coro_t *t = co_spawn(ticker, NULL);
    /* Generators need a coroutine with a stack of its own (docs/stacks.md). */
    co_coro_t *c = co_spawn_with(spin_generator_inside, NULL, &(co_spawn_opts_t){.compact = CO_COMPACT_NO});
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, 3);
    ASSERT(ticks >= 3); /* the ticker ran while the generator slept */
    ASSERT_EQ(co_join(t, -1, NULL), 0);
}

/* After a generator that blocked inside is freed, the coroutine's record
 * still names the generator's fiber as where it last switched away from,
 * until it next does: a yield with another coroutine runnable must not
 * read it (the pick's read-ahead did; ASan: use after free). */
static volatile bool keep_yielding;
static void *yield_until_told(void *arg)
{
    while (keep_yielding) co_yield_now();
    return arg;
}
static void *gen_then_yield(void *arg)
{
    void *sum = spin_generator_inside(arg);
    for (int i = 0; i < 3; i++) co_yield_now();
    keep_yielding = false;
    return sum;
}

static void test_yield_after_freed_generator(void)
{
    keep_yielding = true;
    co_coro_t *y = co_spawn(yield_until_told, NULL);
    co_coro_t *c = co_spawn_with(gen_then_yield, NULL, &(co_spawn_opts_t){.compact = CO_COMPACT_NO});
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, 3);
    ASSERT_EQ(co_join(y, -1, NULL), 0);
}

/* fork(): the child gets a hub of its own (fresh epoll and eventfd) with
 * copies of the coroutines, and both sides keep working. */
static void *count_sleeps(void *arg)
{
    for (int i = 0; i < 3; i++) co_sleep_ms(5);
    return arg;
}

static void test_fork(void)
{
    co_coro_t *c = co_spawn(count_sleeps, (void *)21);
    co_sleep_ms(1); /* c is sleeping when we fork */
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        void *r;
        int ok = co_join(c, co_now() + 5000, &r) == 0 && (intptr_t)r == 21;
        co_coro_t *d = co_spawn(count_sleeps, (void *)2);
        ok = ok && co_join(d, co_now() + 5000, &r) == 0 && (intptr_t)r == 2;
        _exit(ok ? 0 : 1);
    }
    void *r;
    ASSERT_EQ(co_join(c, co_now() + 5000, &r), 0);
    ASSERT_EQ((intptr_t)r, 21);
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--child") && !strcmp(argv[2], "stale")) return child_stale_env();
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_spawn_join_result);
    RUN(test_poller_in_use);
    RUN(test_yield_round_robin);
    RUN(test_fp_state);
    RUN(test_current_id_name);
    RUN(test_join_deadline);
    RUN(test_kill_sleeping);
    RUN(test_kill_before_start_and_after_end);
    RUN(test_kill_while_joining);
    RUN(test_nested_spawns);
    RUN(test_detach);
    RUN(test_joinall_errors);
    RUN(test_spawn_with_compound_literal);
    RUN(test_negative_deadlines);
    RUN(test_self_and_main_join);
    RUN(test_join_main_einval);
    RUN(test_misuse_aborts);
    RUN(test_generator_blocks_inside_coroutine);
    RUN(test_yield_after_freed_generator);
    RUN(test_fork);
    RUN(test_killed_main);
    RUN(test_handle_reuse_documented);
    RUN(test_stale_handle_checked);
    RUN(test_stale_handle_env);
    return TEST_MAIN_END();
}
