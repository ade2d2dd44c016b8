/* Compact coroutines (docs/stacks.md): frames that survive being copied
 * aside and back, every way of blocking, threads, memory per suspended
 * coroutine, and the misuse that must abort. */
#include "cogent.h"
#include <math.h>
#include <pthread.h>

#include "harness.h"

static const co_spawn_opts_t COMPACT = {.compact = CO_COMPACT_YES};
static const co_spawn_opts_t OWN = {.compact = CO_COMPACT_NO};

/* ------------------------------------------------------------ frames */

/* A frame of n bytes filled with a pattern of the coroutine's own, checked
 * after every switch, at a depth of its own: every compact coroutine's
 * frames sit where another's were a moment ago. */
static int check_frames(unsigned seed, size_t n, int depth, int rounds)
{
    unsigned char buf[4096];
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)(seed * 31u + i);
    int bad = depth > 0 ? check_frames(seed + 7, n / 2 + 16, depth - 1, rounds) : 0;
    for (int r = 0; r < rounds; r++) {
        co_yield_now();
        for (size_t i = 0; i < n; i++)
            if (buf[i] != (unsigned char)(seed * 31u + i)) bad++;
    }
    return bad;
}

static void *framer(void *arg)
{
    uintptr_t k = (uintptr_t)arg;
    size_t n = 16 + (k * 397) % 4000;
    return (void *)(intptr_t)check_frames((unsigned)k, n, (int)(k % 5), 20);
}

static void test_frames_survive(void)
{
    enum { N = 64 };
    co_coro_t *cs[N];
    for (uintptr_t k = 0; k < N; k++) {
        /* One in four has a stack of its own: switches between the two
         * kinds take the lazy path (the owner's frames stay put). */
        cs[k] = co_spawn_with(framer, (void *)k, k % 4 == 3 ? &OWN : &COMPACT);
        ASSERT(cs[k]);
    }
    for (int k = 0; k < N; k++) {
        void *bad = (void *)1;
        ASSERT_EQ(co_join(cs[k], -1, &bad), 0);
        ASSERT_EQ((intptr_t)bad, 0);
    }
}

/* Compact coroutines run at the same addresses: the stack is shared. */
static void *where(void *arg)
{
    volatile char here = 0;
    *(const volatile char **)arg = &here;
    co_yield_now();
    return NULL;
}

static void test_shared_addresses(void)
{
    const volatile char *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    co_coro_t *ca = co_spawn_with(where, (void *)&a, &COMPACT), *cb = co_spawn_with(where, (void *)&b, &COMPACT);
    co_coro_t *cc = co_spawn_with(where, (void *)&c, &OWN), *cd = co_spawn_with(where, (void *)&d, &OWN);
    co_coro_t *all[] = {ca, cb, cc, cd};
    ASSERT_EQ(co_joinall(all, 4, -1, NULL), 0);
    ASSERT(a && a == b);
    ASSERT(c && d && c != d && c != a);

    /* A group's default, and a member's own options over it. */
    co_group_t *g = co_group_new_with(&(co_group_opts_t){.spawn = {.compact = CO_COMPACT_YES, .name = "compact"}});
    ASSERT(g);
    a = b = c = NULL;
    ASSERT(co_group_spawn(g, where, (void *)&a, -1));
    ASSERT(co_group_spawn(g, where, (void *)&b, -1));
    ASSERT(co_group_spawn_with(g, where, (void *)&c, -1, &OWN));
    ASSERT_EQ(co_group_join(g, -1), 0);
    co_group_free(g);
    ASSERT(a && a == b && c != a);
}

/* Deep once, then shallow: the copy follows what is live now. */
static int deep(int n)
{
    volatile char pad[1024];
    pad[0] = (char)n;
    if (n == 0) {
        co_yield_now(); /* 150 KiB of frames go aside and come back */
        return pad[0];
    }
    return deep(n - 1) + pad[0] - (char)n;
}

/* Floating-point work across switches: the same result as without them. */
static double fp_work(bool yield)
{
    double x = 1.0, y = 0.5;
    for (int i = 0; i < 100; i++) {
        x = sqrt(x + i) + y;
        y = sin(x) * 0.25;
        if (yield) co_yield_now();
    }
    return x;
}

static void *deep_then_shallow(void *arg)
{
    (void)arg;
    if (deep(150) != 0) return (void *)1;
    return (void *)(intptr_t)(fp_work(true) == fp_work(false) ? 0 : 2);
}

static void test_deep_then_shallow(void)
{
    co_coro_t *a = co_spawn_with(deep_then_shallow, NULL, &COMPACT);
    co_coro_t *b = co_spawn_with(framer, (void *)3, &COMPACT);
    void *ra, *rb;
    ASSERT_EQ(co_join(a, -1, &ra), 0);
    ASSERT_EQ(co_join(b, -1, &rb), 0);
    ASSERT_EQ((intptr_t)ra, 0);
    ASSERT_EQ((intptr_t)rb, 0);
}

/* --------------------------------------------------------- blocking */

static void *reader(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[64];
    ssize_t n = co_read(fd, buf, sizeof buf, co_now() + 5000);
    if (n != 5 || memcmp(buf, "hello", 5)) return (void *)1;
    return NULL;
}

static void *poller(void *arg)
{
    int *fds = arg;
    /* Nine descriptors: more than the on-stack nodes of a coroutine with
     * a stack of its own would take. */
    struct pollfd p[9];
    for (int i = 0; i < 9; i++) p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    int n = co_poll(p, 9, co_now() + 5000);
    return (void *)(intptr_t)(n == 1 && (p[8].revents & POLLIN) ? 0 : 1);
}

static void test_blocking_io(void)
{
    int p[10][2];
    for (int i = 0; i < 10; i++) ASSERT_EQ(pipe(p[i]), 0);
    co_coro_t *r = co_spawn_with(reader, (void *)(intptr_t)p[9][0], &COMPACT);
    int fds[9];
    for (int i = 0; i < 9; i++) fds[i] = p[i][0];
    co_coro_t *q = co_spawn_with(poller, fds, &COMPACT);
    co_coro_t *f = co_spawn_with(framer, (void *)5, &COMPACT); /* takes the stack meanwhile */
    co_sleep_ms(10);
    ASSERT_EQ(co_write(p[9][1], "hello", 5, -1), 5);
    ASSERT_EQ(co_write(p[8][1], "x", 1, -1), 1);
    co_coro_t *all[] = {r, q, f};
    void *res[3];
    ASSERT_EQ(co_joinall(all, 3, -1, res), 0);
    for (int i = 0; i < 3; i++) ASSERT_PTR_EQ(res[i], NULL);
    for (int i = 0; i < 10; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
}

static co_lock_t L = CO_LOCK_INIT_NAMED("compact-L");
static co_queue_t *Q;
static co_event_t E = CO_EVENT_INIT;
static long shared_counter;

static void *locker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++) {
        if (co_lock_acquire(&L, -1)) return (void *)1;
        long v = shared_counter;
        co_yield_now(); /* others queue on the lock meanwhile */
        shared_counter = v + 1;
        co_lock_release(&L);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    long sum = 0;
    for (;;) {
        void *item;
        if (co_queue_get(Q, &item, -1) < 0) return errno == EPIPE ? (void *)sum : (void *)-1;
        sum += (long)(intptr_t)item;
    }
}

static void *event_waiter(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)(co_event_wait(&E, co_now() + 5000) == 0 ? 0 : errno);
}

static void test_sync_objects(void)
{
    shared_counter = 0;
    co_coro_t *ls[4];
    for (int i = 0; i < 4; i++) ls[i] = co_spawn_with(locker, NULL, &COMPACT);
    ASSERT_EQ(co_joinall(ls, 4, -1, NULL), 0);
    ASSERT_EQ(shared_counter, 400);

    /* Getters wait first: puts hand items straight to them. */
    Q = co_queue_new(&(co_queue_opts_t){.maxsize = 2});
    ASSERT(Q);
    co_coro_t *cs[3];
    for (int i = 0; i < 3; i++) cs[i] = co_spawn_with(consumer, NULL, &COMPACT);
    co_yield_now();
    long want = 0;
    for (long i = 1; i <= 1000; i++) {
        ASSERT_EQ(co_queue_put(Q, (void *)(intptr_t)i, -1), 0);
        want += i;
    }
    co_queue_close(Q);
    long got = 0;
    for (int i = 0; i < 3; i++) {
        void *r;
        ASSERT_EQ(co_join(cs[i], -1, &r), 0);
        ASSERT((long)(intptr_t)r >= 0);
        got += (long)(intptr_t)r;
    }
    ASSERT_EQ(got, want);
    co_queue_free(Q, NULL);

    co_event_clear(&E);
    co_coro_t *ws[5];
    for (int i = 0; i < 5; i++) ws[i] = co_spawn_with(event_waiter, NULL, &COMPACT);
    co_sleep_ms(5);
    co_event_set(&E);
    void *rs[5];
    ASSERT_EQ(co_joinall(ws, 5, -1, rs), 0);
    for (int i = 0; i < 5; i++) ASSERT_PTR_EQ(rs[i], NULL);
}

/* Killed while its frames are aside, and before it ever ran. */
static void *sleeper(void *arg)
{
    (void)arg;
    char big[2000];
    memset(big, 1, sizeof big);
    int e = co_sleep_ms(10000) < 0 ? errno : 0;
    return (void *)(intptr_t)(big[5] == 1 && big[1999] == 1 ? e : -1);
}

static void test_kill_and_deadlines(void)
{
    co_coro_t *a = co_spawn_with(sleeper, NULL, &COMPACT), *b = co_spawn_with(sleeper, NULL, &COMPACT);
    co_yield_now(); /* both asleep: a's frames went aside when b ran */
    co_coro_t *never = co_spawn_with(sleeper, (void *)1, &COMPACT);
    co_kill(a);
    co_kill(never);
    ASSERT_ERR(co_join(b, co_now() + 20, NULL), ETIMEDOUT);
    co_kill(b);
    void *ra, *rb, *rn = (void *)1;
    ASSERT_EQ(co_join(a, -1, &ra), 0);
    ASSERT_EQ(co_join(b, -1, &rb), 0);
    ASSERT_EQ(co_join(never, -1, &rn), 0);
    ASSERT_EQ((intptr_t)ra, ECANCELED);
    ASSERT_EQ((intptr_t)rb, ECANCELED);
    ASSERT_PTR_EQ(rn, NULL); /* never ran */
}

/* ----------------------------------------------------------- threads */

static co_queue_t *XQ;

static void *xproducer(void *arg)
{
    for (long i = 1; i <= 500; i++)
        if (co_queue_put(XQ, (void *)(intptr_t)(i + (long)(intptr_t)arg), -1)) return (void *)1;
    return NULL;
}

/* A thread of its own: its hub, its shared stack, its compact coroutines. */
static void *producer_thread(void *arg)
{
    (void)arg;
    co_coro_t *cs[4];
    for (int i = 0; i < 4; i++) cs[i] = co_spawn_with(xproducer, (void *)(intptr_t)(i * 1000), &COMPACT);
    void *rs[4];
    if (co_joinall(cs, 4, -1, rs)) return (void *)1;
    for (int i = 0; i < 4; i++)
        if (rs[i]) return (void *)1;
    return NULL;
}

static void *xconsumer(void *arg)
{
    long *sum = arg;
    for (int i = 0; i < 1000; i++) {
        void *item;
        if (co_queue_get(XQ, &item, co_now() + 10000)) return (void *)1;
        *sum += (long)(intptr_t)item; /* sum lives on the main thread's own stack */
    }
    return NULL;
}

static void test_threads(void)
{
    XQ = co_queue_new(&(co_queue_opts_t){.maxsize = 8});
    ASSERT(XQ);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_create(&t[i], NULL, producer_thread, NULL), 0);
    long sums[4] = {0};
    co_coro_t *cs[4];
    for (int i = 0; i < 4; i++) cs[i] = co_spawn_with(xconsumer, &sums[i], &COMPACT);
    void *rs[4];
    ASSERT_EQ(co_joinall(cs, 4, -1, rs), 0);
    for (int i = 0; i < 2; i++) {
        void *r;
        ASSERT_EQ(pthread_join(t[i], &r), 0);
        ASSERT_PTR_EQ(r, NULL);
    }
    long want = 0;
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 4; i++) want += 500L * 501 / 2 + 500L * i * 1000;
    ASSERT_EQ(sums[0] + sums[1] + sums[2] + sums[3], want);
    co_queue_free(XQ, NULL);
}

/* ------------------------------------------------------------ memory */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    long size = 0, res = 0;
    if (!f) abort();
    if (fscanf(f, "%ld %ld", &size, &res) != 2) abort();
    fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static co_event_t IDLE = CO_EVENT_INIT;
static void *idle(void *arg)
{
    (void)arg;
    volatile char frame[200]; /* a modest frame, as a connection handler has */
    frame[0] = 1;
    co_event_wait(&IDLE, -1);
    return (void *)(intptr_t)(frame[0] - 1);
}

/* A suspended compact coroutine keeps its record and its live frames, not
 * a stack: far less than the page (at least) one of its own costs. */
static void test_memory_per_coroutine(void)
{
    const char *preload = getenv("LD_PRELOAD");
    if (TEST_SANITIZED || (preload && strstr(preload, "vgpreload"))) {
        fprintf(stderr, "    (skipped: the tools' shadow memory would be counted)\n");
        return;
    }
    enum { N = 20000 };
    co_coro_t **cs = malloc(N * sizeof *cs);
    ASSERT(cs);
    co_event_clear(&IDLE);
    long before = rss_kib();
    for (int i = 0; i < N; i++) ASSERT((cs[i] = co_spawn_with(idle, NULL, &COMPACT)));
    co_yield_now(); /* every one runs to its wait */
    long per = (rss_kib() - before) * 1024 / N;
    co_hub_stats_t st;
    co_hub_stats(&st);
    ASSERT_EQ(st.coroutines, (size_t)N);
    co_event_set(&IDLE);
    void **rs = malloc(N * sizeof *rs);
    ASSERT(rs);
    ASSERT_EQ(co_joinall(cs, N, -1, rs), 0);
    for (int i = 0; i < N; i++) ASSERT_PTR_EQ(rs[i], NULL);
    free(rs);
    free(cs);
    fprintf(stderr, "    %ld bytes per suspended compact coroutine\n", per);
    ASSERT_(per < 2048, "a suspended compact coroutine costs %ld bytes", per);
}

/* ------------------------------------------------------- bad arguments */

static void *nothing(void *arg)
{
    return arg;
}

static void test_bad_arguments(void)
{
    /* Larger than the shared stack: refused. */
    errno = 0;
    ASSERT(co_spawn_with(nothing, NULL, &(co_spawn_opts_t){.stack_size = 1 << 20, .compact = CO_COMPACT_YES}) == NULL);
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT(co_spawn_with(nothing, NULL, &(co_spawn_opts_t){.compact = (co_compact_t)7}) == NULL);
    ASSERT_EQ(errno, EINVAL);
    /* Within it: fine. */
    co_coro_t *c =
        co_spawn_with(nothing, (void *)9, &(co_spawn_opts_t){.stack_size = 64 << 10, .compact = CO_COMPACT_YES});
    ASSERT(c);
    void *r;
    ASSERT_EQ(co_join(c, -1, &r), 0);
    ASSERT_PTR_EQ(r, (void *)9);
    errno = 0;
    ASSERT(co_group_new_with(&(co_group_opts_t){.spawn = {.stack_size = 3}}) == NULL);
    ASSERT_EQ(errno, EINVAL);
    co_group_t *g = co_group_new_with(NULL);
    ASSERT(g);
    co_group_free(g);
}

/* -------------------------------------------------------------- misuse */

static void *waits_on_own_event(void *arg)
{
    (void)arg;
    co_event_t mine = CO_EVENT_INIT; /* on the shared stack: moves while we wait */
    co_event_wait(&mine, co_now() + 1000);
    return NULL;
}

static void own_event_child(void *arg)
{
    (void)arg;
    co_join(co_spawn_with(waits_on_own_event, NULL, &COMPACT), -1, NULL);
    _exit(0);
}

static void *switches_fiber(void *arg)
{
    co_fiber_switch(arg, NULL);
    return NULL;
}

static void *fiber_body(co_fiber_t *self, void *v)
{
    (void)self;
    return v;
}

static void fiber_child(void *arg)
{
    (void)arg;
    co_fiber_t *f = co_fiber_new(fiber_body, NULL, 0);
    co_join(co_spawn_with(switches_fiber, f, &COMPACT), -1, NULL);
    _exit(0);
}

static void *gen_body(co_gen_t *g, void *arg)
{
    (void)g;
    return arg;
}

static void *sends(void *arg)
{
    return (void *)(intptr_t)co_gen_next(arg, NULL);
}

static void gen_child(void *arg)
{
    (void)arg;
    co_gen_t *g = co_gen_new(gen_body, NULL, NULL);
    co_join(co_spawn_with(sends, g, &COMPACT), -1, NULL);
    _exit(0);
}

static int bottomless(int n)
{
    volatile char pad[4096];
    pad[0] = (char)n;
    if (n == 1 << 20) return 0; /* 4 GiB down: never reached */
    return bottomless(n + 1) + pad[0];
}

static void *overflows(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)bottomless(0);
}

static void overflow_child(void *arg)
{
    (void)arg;
    co_join(co_spawn_with(overflows, NULL, &(co_spawn_opts_t){.name = "bottomless", .compact = CO_COMPACT_YES}), -1,
            NULL);
    _exit(0);
}

static void expect_abort(void (*fn)(void *), const char *what)
{
    char buf[8192];
    int st = run_child(fn, NULL, buf, sizeof buf);
    ASSERT_(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x, stderr:\n%s", st, buf);
    ASSERT_(strstr(buf, what) != NULL, "the report does not say \"%s\":\n%s", what, buf);
}

static void test_misuse_aborts(void)
{
    if (TEST_TSAN) {
        fprintf(stderr, "    (skipped: TSan cannot follow fibers into a forked child)\n");
        return;
    }
    expect_abort(own_event_child, "lives on a compact coroutine's stack");
    expect_abort(fiber_child, "co_fiber_switch: called from a compact coroutine");
    expect_abort(gen_child, "co_gen_send: called from a compact coroutine");
    expect_abort(overflow_child, "\"bottomless\"");
    expect_abort(overflow_child, "shared stack, guard page");
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(test_frames_survive);
    RUN(test_shared_addresses);
    RUN(test_deep_then_shallow);
    RUN(test_blocking_io);
    RUN(test_sync_objects);
    RUN(test_kill_and_deadlines);
    RUN(test_threads);
    RUN(test_memory_per_coroutine);
    RUN(test_bad_arguments);
    RUN(test_misuse_aborts);
    return TEST_MAIN_END();
}
