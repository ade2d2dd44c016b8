/* The process pool: apply / apply_async / submit (futures) / map / imap /
 * imap_unordered, results in order, callbacks, a worker killed mid-task
 * (SIGKILL, SIGSEGV, abort), max_tasks_per_child, per-task timeouts,
 * terminate with tasks in flight, close / join / shutdown, initializers,
 * deadlines and cancellation, bad arguments, waits from coroutines and
 * from threads, nothing leaked (descriptors, /dev/shm, children). */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/uio.h>

#include "cogent.h"
#include "harness.h"

/* ------------------------------------------------------------- tasks */

static int square(co_ptask_t *t, const void *arg, size_t len)
{
    if (len != sizeof(long)) return co_ptask_fail(t, EINVAL, "want a long");
    long x;
    memcpy(&x, arg, sizeof x);
    long y = x * x;
    return co_ptask_return(t, &y, sizeof y) < 0 ? errno : 0;
}

/* Fails odd numbers with a message. */
static int even_only(co_ptask_t *t, const void *arg, size_t len)
{
    (void)len;
    long x;
    memcpy(&x, arg, sizeof x);
    if (x % 2) return co_ptask_fail(t, ERANGE, "odd");
    return co_ptask_return(t, &x, sizeof x) < 0 ? errno : 0;
}

static int getpid_task(co_ptask_t *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    pid_t pid = getpid();
    return co_ptask_return(t, &pid, sizeof pid) < 0 ? errno : 0;
}

/* Sleeps the argument's milliseconds (an int), then returns it. */
static int sleeper(co_ptask_t *t, const void *arg, size_t len)
{
    (void)len;
    int ms;
    memcpy(&ms, arg, sizeof ms);
    co_sleep_ms(ms);
    return co_ptask_return(t, &ms, sizeof ms) < 0 ? errno : 0;
}

/* Writes its pid to report[1], then sleeps as sleeper. */
static int report[2];
static int report_then_sleep(co_ptask_t *t, const void *arg, size_t len)
{
    pid_t pid = getpid();
    if (write(report[1], &pid, sizeof pid) != sizeof pid) return EIO;
    return sleeper(t, arg, len);
}

/* Dies by the signal in its argument (an int). */
static int dies(co_ptask_t *t, const void *arg, size_t len)
{
    (void)t;
    (void)len;
    int sig;
    memcpy(&sig, arg, sizeof sig);
    signal(sig, SIG_DFL);
    if (sig == SIGABRT) abort();
    raise(sig);
    for (;;) pause();
}

static int echo(co_ptask_t *t, const void *arg, size_t len)
{
    return co_ptask_return(t, arg, len) < 0 ? errno : 0;
}

static long init_value;
static int set_init(co_ptask_t *t, const void *arg, size_t len)
{
    (void)t;
    if (len != sizeof init_value) return EINVAL;
    memcpy(&init_value, arg, len);
    return 0;
}
static int get_init(co_ptask_t *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    return co_ptask_return(t, &init_value, sizeof init_value) < 0 ? errno : 0;
}
static int bad_init(co_ptask_t *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    return co_ptask_fail(t, EACCES, "no access");
}

/* ----------------------------------------------------------- helpers */

static co_procpool_t *pool(size_t workers)
{
    co_procpool_t *p = co_procpool_new(&(co_procpool_opts_t){.workers = workers});
    ASSERT(p);
    return p;
}

static void done(co_procpool_t *p)
{
    co_procpool_close(p);
    ASSERT_EQ(co_procpool_join(p, co_now() + 20000), 0);
    co_procpool_free(p);
}

static long apply_square(co_procpool_t *p, long x)
{
    void *res;
    size_t n;
    int r_ = co_procpool_apply(p, square, &x, sizeof x, &res, &n, co_now() + 20000);
    if (r_ < 0) {
        int e_ = errno;
        co_future_t *f_ = co_procpool_submit(p, square, &x, sizeof x);
        const char *m_ = NULL;
        if (f_ && co_future_wait(f_, -1) == 0) co_future_error(f_, &m_);
        ASSERT_(r_ == 0, "apply: errno %d %s (%s)", e_, strerror(e_), m_ ? m_ : "");
    }
    ASSERT_EQ(n, sizeof(long));
    long y;
    memcpy(&y, res, sizeof y);
    free(res);
    return y;
}

static long future_long(co_future_t *f)
{
    void *v;
    ASSERT_EQ(co_future_result(f, co_now() + 20000, &v), 0);
    ASSERT_EQ(co_future_size(f), sizeof(long));
    long y;
    memcpy(&y, v, sizeof y);
    return y;
}

/* Shared memory files of /dev/shm this process maps (the whole directory
 * is not ours to count: other programs, and the ipc tests running
 * beside this one, make entries there). */
static int count_shm(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    ASSERT(f);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, "/dev/shm/") != NULL;
    fclose(f);
    return n;
}

/* Children of this process's threads (zombies included), from /proc:
 * up to cap pids into out (may be NULL); how many. */
static int children(pid_t *out, int cap)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    ASSERT(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/children", de->d_name);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        int pid;
        while (fscanf(f, "%d", &pid) == 1) {
            if (out && n < cap) out[n] = pid;
            n++;
        }
        fclose(f);
    }
    closedir(d);
    return n;
}
static int count_children(void)
{
    return children(NULL, 0);
}

/* ------------------------------------------------------------- cases */

static void test_apply_and_submit(void)
{
    co_procpool_t *p = pool(2);
    for (long i = 0; i < 10; i++) ASSERT_EQ(apply_square(p, i), i * i);
    co_future_t *fs[20];
    for (long i = 0; i < 20; i++) ASSERT((fs[i] = co_procpool_submit(p, square, &i, sizeof i)));
    for (long i = 0; i < 20; i++) {
        ASSERT_EQ(future_long(fs[i]), i * i);
        co_future_free(fs[i]);
    }
    /* A task's own failure, with its message. */
    long odd = 3;
    co_future_t *f = co_procpool_submit(p, even_only, &odd, sizeof odd);
    ASSERT_ERR(co_future_result(f, co_now() + 20000, NULL), ERANGE);
    const char *msg;
    ASSERT_EQ(co_future_error(f, &msg), ERANGE);
    ASSERT_STR_EQ(msg, "odd");
    co_future_free(f);
    ASSERT_ERR(co_procpool_apply(p, even_only, &odd, sizeof odd, NULL, NULL, -1), ERANGE);
    /* Empty and big arguments and results. */
    void *res;
    size_t n = 99;
    ASSERT_EQ(co_procpool_apply(p, echo, NULL, 0, &res, &n, -1), 0);
    ASSERT_EQ(n, 0);
    free(res);
    size_t big = 3 << 20;
    char *b = malloc(big);
    for (size_t i = 0; i < big; i++) b[i] = (char)(i * 7);
    ASSERT_EQ(co_procpool_apply(p, echo, b, big, &res, &n, -1), 0);
    ASSERT_EQ(n, big);
    ASSERT(memcmp(res, b, big) == 0);
    free(res);
    free(b);
    co_procpool_stats_t st;
    co_procpool_stats(p, &st);
    ASSERT_EQ(st.workers, 2);
    ASSERT_EQ(st.completed, 10 + 20 + 2);
    ASSERT_EQ(st.failed, 2);
    ASSERT_EQ(st.crashes, 0);
    done(p);
}

static atomic_int cb_ok, cb_err;
static co_event_t cb_all;
static void on_ok(co_future_t *f, void *arg)
{
    ASSERT_EQ(co_future_error(f, NULL), 0);
    if (atomic_fetch_add(&cb_ok, 1) + 1 + atomic_load(&cb_err) == *(int *)arg) co_event_set(&cb_all);
}
static void on_err(co_future_t *f, void *arg)
{
    ASSERT_EQ(co_future_error(f, NULL), ERANGE);
    if (atomic_fetch_add(&cb_err, 1) + 1 + atomic_load(&cb_ok) == *(int *)arg) co_event_set(&cb_all);
}

/* apply_async's callback / error_callback, from the main code (a hub:
 * they run on it) and from a thread without a hub (on the pool's). */
static void *async_from_thread(void *arg)
{
    co_procpool_t *p = arg;
    static int total = 10;
    co_future_t *fs[10];
    for (long i = 0; i < 10; i++)
        ASSERT((fs[i] = co_procpool_apply_async(p, even_only, &i, sizeof i, on_ok, on_err, &total)));
    ASSERT_EQ(co_event_wait(&cb_all, co_now() + 20000), 0);
    for (int i = 0; i < 10; i++) co_future_free(fs[i]);
    return NULL;
}

static void test_apply_async_callbacks(void)
{
    co_procpool_t *p = pool(2);
    static int total = 10;
    co_event_init(&cb_all);
    co_future_t *fs[10];
    for (long i = 0; i < 10; i++)
        ASSERT((fs[i] = co_procpool_apply_async(p, even_only, &i, sizeof i, on_ok, on_err, &total)));
    ASSERT_EQ(co_event_wait(&cb_all, co_now() + 20000), 0);
    ASSERT_EQ(atomic_load(&cb_ok), 5);
    ASSERT_EQ(atomic_load(&cb_err), 5);
    for (int i = 0; i < 10; i++) co_future_free(fs[i]);

    atomic_store(&cb_ok, 0);
    atomic_store(&cb_err, 0);
    co_event_clear(&cb_all);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, async_from_thread, p), 0);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT_EQ(atomic_load(&cb_ok), 5);
    ASSERT_EQ(atomic_load(&cb_err), 5);
    co_event_destroy(&cb_all);
    done(p);
}

static void test_map_order(void)
{
    co_procpool_t *p = pool(2);
    size_t n = 10000;
    long *xs = malloc(n * sizeof *xs);
    struct iovec *items = malloc(n * sizeof *items);
    for (size_t i = 0; i < n; i++) {
        xs[i] = (long)i;
        items[i] = (struct iovec){&xs[i], sizeof xs[i]};
    }
    size_t chunks[] = {0, 1, 7, 10000, 20000};
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        co_presults_t *r = co_procpool_map(p, square, items, n, chunks[c], co_now() + 30000);
        ASSERT(r);
        ASSERT_EQ(co_presults_count(r), n);
        ASSERT_EQ(co_presults_failed(r), 0);
        for (size_t i = 0; i < n; i++) {
            const co_presult_t *x = co_presults_get(r, i);
            ASSERT_EQ(x->index, i);
            ASSERT_EQ(x->err, 0);
            ASSERT_EQ(x->len, sizeof(long));
            long y;
            memcpy(&y, x->data, sizeof y);
            ASSERT_EQ(y, (long)(i * i));
        }
        co_presults_free(r);
    }
    /* Failures are per item. */
    co_presults_t *r = co_procpool_map(p, even_only, items, 100, 3, -1);
    ASSERT(r);
    ASSERT_EQ(co_presults_failed(r), 50);
    for (size_t i = 0; i < 100; i++) {
        const co_presult_t *x = co_presults_get(r, i);
        ASSERT_EQ(x->err, i % 2 ? ERANGE : 0);
        if (i % 2) ASSERT_STR_EQ(x->msg, "odd");
    }
    co_presults_free(r);
    /* An empty map. */
    r = co_procpool_map(p, square, NULL, 0, 0, -1);
    ASSERT(r);
    ASSERT_EQ(co_presults_count(r), 0);
    co_presults_free(r);
    free(items);
    free(xs);
    done(p);
}

static void test_imap(void)
{
    co_procpool_t *p = pool(2);
    size_t n = 3000;
    long *xs = malloc(n * sizeof *xs);
    struct iovec *items = malloc(n * sizeof *items);
    for (size_t i = 0; i < n; i++) {
        xs[i] = (long)i;
        items[i] = (struct iovec){&xs[i], sizeof xs[i]};
    }
    co_pimap_t *it = co_procpool_imap(p, square, items, n, 10);
    ASSERT(it);
    co_presult_t x;
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(co_pimap_next(it, &x, co_now() + 20000), 0);
        ASSERT_EQ(x.index, i);
        long y;
        memcpy(&y, x.data, sizeof y);
        ASSERT_EQ(y, (long)(i * i));
    }
    ASSERT_ERR(co_pimap_next(it, &x, -1), ENOENT);
    co_pimap_free(it);

    it = co_procpool_imap_unordered(p, square, items, n, 0);
    ASSERT(it);
    unsigned char *seen = calloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(co_pimap_next(it, &x, co_now() + 20000), 0);
        ASSERT(x.index < n && !seen[x.index]);
        seen[x.index] = 1;
        long y;
        memcpy(&y, x.data, sizeof y);
        ASSERT_EQ(y, (long)(x.index * x.index));
    }
    ASSERT_ERR(co_pimap_next(it, &x, -1), ENOENT);
    co_pimap_free(it);
    free(seen);

    /* Unordered really is completion order: the slow first item is not
     * the first result (another worker runs item 1 meanwhile). */
    int ms[4] = {600, 0, 0, 0};
    struct iovec si[4];
    for (int i = 0; i < 4; i++) si[i] = (struct iovec){&ms[i], sizeof ms[i]};
    it = co_procpool_imap_unordered(p, sleeper, si, 4, 1);
    ASSERT_EQ(co_pimap_next(it, &x, co_now() + 20000), 0);
    ASSERT_NE(x.index, 0);
    int sum = (int)x.index;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(co_pimap_next(it, &x, co_now() + 20000), 0);
        sum += (int)x.index;
    }
    ASSERT_EQ(sum, 0 + 1 + 2 + 3);
    ASSERT_ERR(co_pimap_next(it, &x, 0), ENOENT);
    co_pimap_free(it);

    /* Freed half-way: the rest is dropped, the pool goes on. */
    it = co_procpool_imap(p, square, items, n, 1);
    ASSERT_EQ(co_pimap_next(it, &x, co_now() + 20000), 0);
    co_pimap_free(it);
    ASSERT_EQ(apply_square(p, 12), 144);
    free(items);
    free(xs);
    done(p);
}

/* A worker killed mid-task fails that task only, naming the signal; the
 * others complete and the pool goes on with a new worker. */
static void test_worker_killed(void)
{
    ASSERT_EQ(pipe(report), 0);
    co_procpool_t *p = pool(2);
    int sigs[] = {SIGKILL, SIGSEGV, SIGABRT};
    for (int s = 0; s < 3; s++) {
        co_future_t *before[6], *after[6];
        for (long i = 0; i < 6; i++) before[i] = co_procpool_submit(p, square, &i, sizeof i);
        co_future_t *bad = co_procpool_submit(p, dies, &sigs[s], sizeof sigs[s]);
        for (long i = 0; i < 6; i++) after[i] = co_procpool_submit(p, square, &i, sizeof i);
        ASSERT_ERR(co_future_result(bad, co_now() + 20000, NULL), EOWNERDEAD);
        const char *msg;
        co_future_error(bad, &msg);
        ASSERT(msg && strstr(msg, "signal"));
        if (sigs[s] == SIGKILL) ASSERT(strstr(msg, "signal 9"));
        co_future_free(bad);
        for (long i = 0; i < 6; i++) {
            ASSERT_EQ(future_long(before[i]), i * i);
            ASSERT_EQ(future_long(after[i]), i * i);
            co_future_free(before[i]);
            co_future_free(after[i]);
        }
        ASSERT_EQ(apply_square(p, 9), 81);
    }
    /* Killed from outside while running a task: the task tells its pid
     * through a pipe (made before the workers) once it runs. */
    int ms = 100000;
    co_future_t *slow = co_procpool_submit(p, report_then_sleep, &ms, sizeof ms);
    pid_t victim;
    ASSERT_EQ(co_read(report[0], &victim, sizeof victim, co_now() + 20000), (ssize_t)sizeof victim);
    ASSERT_EQ(kill(victim, SIGKILL), 0);
    ASSERT_ERR(co_future_result(slow, co_now() + 20000, NULL), EOWNERDEAD);
    co_future_free(slow);
    close(report[0]);
    close(report[1]);
    co_procpool_stats_t st;
    co_procpool_stats(p, &st);
    ASSERT_EQ(st.crashes, 4);
    /* (The replacement starts after the future fails: wait for it.) */
    for (int64_t d = co_now() + 10000; st.replaced < 4 && co_now() < d; co_procpool_stats(p, &st)) co_sleep_ms(5);
    ASSERT_EQ(st.replaced, 4);
    ASSERT_EQ(apply_square(p, 5), 25);
    done(p);
}

/* A map item that fails fails alone. */
static void test_map_item_errors(void)
{
    co_procpool_t *p = pool(2);
    long xs[40];
    struct iovec items[40];
    for (int i = 0; i < 40; i++) {
        xs[i] = i;
        items[i] = (struct iovec){&xs[i], sizeof xs[i]};
    }
    int bad = 17;
    items[17] = (struct iovec){&bad, sizeof bad};
    co_presults_t *r = co_procpool_map(p, square, items, 40, 5, co_now() + 20000);
    ASSERT(r);
    ASSERT_EQ(co_presults_failed(r), 1); /* item 17's length is an int's: EINVAL */
    ASSERT_EQ(co_presults_get(r, 17)->err, EINVAL);
    co_presults_free(r);
    done(p);
}

static int die_on_17(co_ptask_t *t, const void *arg, size_t len)
{
    long x;
    memcpy(&x, arg, sizeof x);
    if (x == 17) raise(SIGKILL);
    return square(t, arg, len);
}

static void test_map_worker_killed(void)
{
    co_procpool_t *p = pool(2);
    long xs[40];
    struct iovec items[40];
    for (int i = 0; i < 40; i++) {
        xs[i] = i;
        items[i] = (struct iovec){&xs[i], sizeof xs[i]};
    }
    co_presults_t *r = co_procpool_map(p, die_on_17, items, 40, 5, co_now() + 20000);
    ASSERT(r);
    /* 17 fails; the items before it in its chunk ran but lost their
     * results with the worker only if they were not sent yet. */
    ASSERT(co_presults_failed(r) >= 1);
    ASSERT_EQ(co_presults_get(r, 17)->err, EOWNERDEAD);
    ASSERT(strstr(co_presults_get(r, 17)->msg, "signal 9"));
    for (int i = 0; i < 40; i++) {
        const co_presult_t *x = co_presults_get(r, i);
        if (i >= 15 && i < 17 && x->err) {
            ASSERT_EQ(x->err, EOWNERDEAD);
            continue;
        }
        if (i == 17) continue;
        ASSERT_EQ(x->err, 0);
        long y;
        memcpy(&y, x->data, sizeof y);
        ASSERT_EQ(y, (long)i * i);
    }
    co_presults_free(r);
    ASSERT_EQ(apply_square(p, 3), 9);
    done(p);
}

static void test_max_tasks_per_child(void)
{
    co_procpool_t *p = co_procpool_new(&(co_procpool_opts_t){.workers = 1, .max_tasks_per_child = 2});
    ASSERT(p);
    pid_t pids[8];
    for (int i = 0; i < 8; i++) {
        void *v;
        size_t n;
        ASSERT_EQ(co_procpool_apply(p, getpid_task, NULL, 0, &v, &n, co_now() + 20000), 0);
        memcpy(&pids[i], v, sizeof pids[i]);
        free(v);
    }
    for (int i = 0; i < 8; i += 2) {
        ASSERT_EQ(pids[i], pids[i + 1]);
        if (i) ASSERT_NE(pids[i], pids[i - 1]);
    }
    /* Many at once: nothing stranded. */
    co_future_t *fs[30];
    for (long i = 0; i < 30; i++) fs[i] = co_procpool_submit(p, square, &i, sizeof i);
    for (long i = 0; i < 30; i++) {
        ASSERT_EQ(future_long(fs[i]), i * i);
        co_future_free(fs[i]);
    }
    co_procpool_stats_t st;
    co_procpool_stats(p, &st);
    ASSERT_EQ(st.crashes, 0);
    ASSERT(st.replaced >= 3 + 14);
    done(p);
}

static void test_task_timeout(void)
{
    co_procpool_t *p = co_procpool_new(&(co_procpool_opts_t){.workers = 2, .task_timeout_ms = 300});
    ASSERT(p);
    int forever = 1000000, quick = 10;
    int64_t t0 = co_now();
    co_future_t *slow = co_procpool_submit(p, sleeper, &forever, sizeof forever);
    co_future_t *fast = co_procpool_submit(p, sleeper, &quick, sizeof quick);
    ASSERT_ERR(co_future_result(slow, co_now() + 20000, NULL), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 250, 10000);
    const char *msg;
    co_future_error(slow, &msg);
    ASSERT(msg && strstr(msg, "300 ms"));
    ASSERT_EQ(co_future_result(fast, co_now() + 20000, NULL), 0);
    co_future_free(slow);
    co_future_free(fast);
    /* A map item too. */
    int ms[3] = {0, forever, 0};
    struct iovec items[3];
    for (int i = 0; i < 3; i++) items[i] = (struct iovec){&ms[i], sizeof ms[i]};
    co_presults_t *r = co_procpool_map(p, sleeper, items, 3, 1, co_now() + 20000);
    ASSERT(r);
    ASSERT_EQ(co_presults_failed(r), 1);
    ASSERT_EQ(co_presults_get(r, 1)->err, ETIMEDOUT);
    co_presults_free(r);
    ASSERT_EQ(apply_square(p, 4), 16);
    done(p);
}

static void test_terminate_in_flight(void)
{
    int children = count_children();
    co_procpool_t *p = pool(2);
    int forever = 1000000;
    co_future_t *fs[6];
    for (int i = 0; i < 6; i++) fs[i] = co_procpool_submit(p, sleeper, &forever, sizeof forever);
    /* Wait until two run. */
    for (int tries = 0; tries < 2000; tries++) {
        int running = 0;
        for (int i = 0; i < 6; i++) running += co_future_running(fs[i]);
        if (running >= 2) break;
        co_sleep_ms(5);
    }
    int64_t t0 = co_now();
    co_procpool_terminate(p);
    ASSERT_EQ(co_procpool_join(p, co_now() + 20000), 0);
    ASSERT_TIME(co_now() - t0, 0, 10000);
    for (int i = 0; i < 6; i++) {
        ASSERT_ERR(co_future_result(fs[i], co_now() + 20000, NULL), ECANCELED);
        co_future_free(fs[i]);
    }
    ASSERT_ERR(co_procpool_submit(p, square, &forever, sizeof forever), EPIPE);
    co_procpool_free(p);
    ASSERT_EQ(count_children(), children);
}

static void test_close_join_shutdown(void)
{
    co_procpool_t *p = pool(2);
    ASSERT_ERR(co_procpool_join(p, 0), EINVAL); /* still open */
    co_future_t *fs[10];
    int ms = 20;
    for (int i = 0; i < 10; i++) fs[i] = co_procpool_submit(p, sleeper, &ms, sizeof ms);
    co_procpool_close(p);
    long x = 2;
    ASSERT_ERR(co_procpool_submit(p, square, &x, sizeof x), EPIPE);
    ASSERT_ERR(co_procpool_apply(p, square, &x, sizeof x, NULL, NULL, -1), EPIPE);
    ASSERT_ERR(co_procpool_map(p, square, &(struct iovec){&x, sizeof x}, 1, 0, -1), EPIPE);
    ASSERT_EQ(co_procpool_join(p, co_now() + 20000), 0);
    for (int i = 0; i < 10; i++) { /* queued ones still ran */
        ASSERT_EQ(co_future_state(fs[i]), CO_FUTURE_DONE);
        ASSERT_EQ(co_future_error(fs[i], NULL), 0);
        co_future_free(fs[i]);
    }
    co_procpool_free(p);

    /* shutdown(wait, cancel_pending): what had not started is cancelled. */
    p = pool(1);
    ms = 300;
    for (int i = 0; i < 10; i++) fs[i] = co_procpool_submit(p, sleeper, &ms, sizeof ms);
    while (!co_future_running(fs[0])) co_sleep_ms(1);
    ASSERT_EQ(co_procpool_shutdown(p, true, true), 0);
    int cancelled = 0;
    for (int i = 0; i < 10; i++) {
        ASSERT(co_future_done(fs[i]));
        if (co_future_cancelled(fs[i]))
            cancelled++;
        else
            ASSERT_EQ(co_future_error(fs[i], NULL), 0);
        co_future_free(fs[i]);
    }
    ASSERT(cancelled >= 8);
    co_procpool_free(p);

    /* Freed while open: terminated first. */
    p = pool(2);
    ASSERT_EQ(apply_square(p, 3), 9);
    co_procpool_free(p);
    co_procpool_free(NULL);
}

static void test_initializer(void)
{
    long v = 4242;
    co_procpool_t *p =
        co_procpool_new(&(co_procpool_opts_t){.workers = 2, .init = set_init, .init_arg = &v, .init_len = sizeof v});
    ASSERT(p);
    for (int i = 0; i < 4; i++) {
        void *r;
        size_t n;
        ASSERT_EQ(co_procpool_apply(p, get_init, NULL, 0, &r, &n, co_now() + 20000), 0);
        ASSERT_EQ(*(long *)r, 4242);
        free(r);
    }
    done(p);
    /* A failing initializer breaks the pool, once. */
    p = co_procpool_new(&(co_procpool_opts_t){.workers = 2, .init = bad_init});
    ASSERT(p);
    long x = 1;
    co_future_t *f = co_procpool_submit(p, square, &x, sizeof x);
    if (f) {
        ASSERT_ERR(co_future_result(f, co_now() + 20000, NULL), ENOTRECOVERABLE);
        const char *msg;
        co_future_error(f, &msg);
        ASSERT(msg && strstr(msg, "no access"));
        co_future_free(f);
    }
    /* Refused from then on. */
    for (int i = 0; i < 2000 && (f = co_procpool_submit(p, square, &x, sizeof x)); i++) {
        co_future_wait(f, -1);
        co_future_free(f);
        co_sleep_ms(5);
    }
    ASSERT_EQ(errno, ENOTRECOVERABLE);
    co_procpool_free(p);
}

static void test_bad_arguments(void)
{
    ASSERT_ERR(co_procpool_new(&(co_procpool_opts_t){.init_len = 4}), EINVAL);
    ASSERT_ERR(co_procpool_new(&(co_procpool_opts_t){.task_timeout_ms = -1}), EINVAL);
    co_procpool_t *p = pool(1);
    long x = 1;
    ASSERT_ERR(co_procpool_submit(p, NULL, &x, sizeof x), EINVAL);
    ASSERT_ERR(co_procpool_submit(p, square, NULL, 8), EINVAL);
    ASSERT_ERR(co_procpool_apply(p, NULL, NULL, 0, NULL, NULL, -1), EINVAL);
    ASSERT_ERR(co_procpool_apply_async(p, NULL, NULL, 0, on_ok, NULL, NULL), EINVAL);
    ASSERT_ERR(co_procpool_map(p, NULL, NULL, 0, 0, -1), EINVAL);
    ASSERT_ERR(co_procpool_map(p, square, NULL, 3, 0, -1), EINVAL);
    ASSERT_ERR(co_procpool_imap(p, NULL, NULL, 0, 0), EINVAL);
    ASSERT_ERR(co_procpool_imap_unordered(p, square, NULL, 2, 0), EINVAL);
    done(p);
}

/* Deadlines: apply, map, imap give up; the pool is fine after. */
static void test_deadlines(void)
{
    co_procpool_t *p = pool(1);
    int ms = 400;
    int64_t t0 = co_now();
    ASSERT_ERR(co_procpool_apply(p, sleeper, &ms, sizeof ms, NULL, NULL, co_now() + 100), ETIMEDOUT);
    ASSERT_TIME(co_now() - t0, 90, 5000);
    ASSERT_ERR(co_procpool_apply(p, sleeper, &ms, sizeof ms, NULL, NULL, co_now() - 5), ETIMEDOUT);
    struct iovec items[4];
    for (int i = 0; i < 4; i++) items[i] = (struct iovec){&ms, sizeof ms};
    ASSERT_ERR(co_procpool_map(p, sleeper, items, 4, 1, co_now() + 100), ETIMEDOUT);
    co_pimap_t *it = co_procpool_imap(p, sleeper, items, 4, 1);
    co_presult_t x;
    ASSERT_ERR(co_pimap_next(it, &x, 0), ETIMEDOUT);
    co_pimap_free(it);
    co_future_t *f = co_procpool_submit(p, sleeper, &ms, sizeof ms);
    ASSERT_ERR(co_future_result(f, co_now() + 50, NULL), ETIMEDOUT);
    ASSERT(!co_future_done(f));
    co_future_free(f);
    ASSERT_EQ(apply_square(p, 7), 49);
    done(p);
}

/* Waits from coroutines park only them; a killed waiter fails with
 * ECANCELED; threads block. */
static co_procpool_t *shared_pool;
static atomic_int ticks;
static void *ticker(void *arg)
{
    (void)arg;
    for (;;) {
        if (co_sleep_ms(2) < 0) return NULL;
        atomic_fetch_add(&ticks, 1);
    }
}
static void *co_applier(void *arg)
{
    long x = (long)(intptr_t)arg;
    for (int i = 0; i < 5; i++) ASSERT_EQ(apply_square(shared_pool, x + i), (x + i) * (x + i));
    return NULL;
}
static void *waits_forever(void *arg)
{
    (void)arg;
    int ms = 100000;
    int r = co_procpool_apply(shared_pool, sleeper, &ms, sizeof ms, NULL, NULL, -1);
    return (void *)(intptr_t)(r < 0 ? errno : 0);
}
static void *thread_applier(void *arg)
{
    co_applier(arg);
    return NULL;
}

static void test_awaited_from_coroutines_and_threads(void)
{
    shared_pool = pool(2);
    atomic_store(&ticks, 0);
    co_coro_t *tk = co_spawn(ticker, NULL);
    co_coro_t *cs[8];
    for (long i = 0; i < 8; i++) cs[i] = co_spawn(co_applier, (void *)(intptr_t)(i * 10));
    pthread_t th[2];
    for (long i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&th[i], NULL, thread_applier, (void *)(intptr_t)(100 + i)), 0);
    co_coro_t *w = co_spawn(waits_forever, NULL);
    /* A task sleeping 300 ms while the ticker goes on. */
    int ms = 300;
    int before = atomic_load(&ticks);
    ASSERT_EQ(co_procpool_apply(shared_pool, sleeper, &ms, sizeof ms, NULL, NULL, co_now() + 20000), 0);
    ASSERT(atomic_load(&ticks) - before >= 10);
    for (int i = 0; i < 8; i++) ASSERT_EQ(co_join(cs[i], -1, NULL), 0);
    for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_join(th[i], NULL), 0);
    co_kill(w);
    void *r;
    ASSERT_EQ(co_join(w, -1, &r), 0);
    ASSERT_EQ((intptr_t)r, ECANCELED);
    co_kill(tk);
    co_join(tk, -1, NULL);
    co_procpool_free(shared_pool); /* terminates the abandoned sleeper */
}

/* as_completed and co_futures_wait work on the pool's futures, as on a
 * thread pool's. */
static void test_futures_interplay(void)
{
    co_procpool_t *p = pool(2);
    int ms[3] = {300, 10, 100};
    co_future_t *fs[3];
    for (int i = 0; i < 3; i++) fs[i] = co_procpool_submit(p, sleeper, &ms[i], sizeof ms[i]);
    co_as_completed_t *ac = co_as_completed_new(fs, 3);
    ASSERT(ac);
    int order[3];
    for (int i = 0; i < 3; i++) {
        co_future_t *f = co_as_completed_next(ac, co_now() + 20000);
        ASSERT(f);
        for (int k = 0; k < 3; k++)
            if (fs[k] == f) order[i] = k;
    }
    ASSERT_EQ(order[2], 0); /* the 300 ms one last */
    co_as_completed_free(ac);
    ASSERT_EQ(co_futures_wait(fs, 3, CO_ALL_COMPLETED, co_now() + 20000), 3);
    for (int i = 0; i < 3; i++) co_future_free(fs[i]);
    /* A cancel before a worker takes it: never runs. */
    int long_ms = 400;
    co_future_t *a = co_procpool_submit(p, sleeper, &long_ms, sizeof long_ms);
    co_future_t *b = co_procpool_submit(p, sleeper, &long_ms, sizeof long_ms);
    co_future_t *c = co_procpool_submit(p, sleeper, &long_ms, sizeof long_ms);
    co_future_t *d = co_procpool_submit(p, sleeper, &long_ms, sizeof long_ms);
    co_future_t *e = co_procpool_submit(p, sleeper, &long_ms, sizeof long_ms);
    int r = co_future_cancel(e); /* one per worker is taken: e waits */
    ASSERT_EQ(r, 0);
    ASSERT(co_future_cancelled(e));
    co_future_t *all[4] = {a, b, c, d};
    ASSERT_EQ(co_futures_wait(all, 4, CO_ALL_COMPLETED, co_now() + 20000), 4);
    for (int i = 0; i < 4; i++) co_future_free(all[i]);
    co_future_free(e);
    co_procpool_stats_t st;
    co_procpool_stats(p, &st);
    ASSERT_EQ(st.completed, 7);
    done(p);
}

static void test_nothing_leaked(void)
{
    int shm = count_shm(), children = count_children();
    FDS_BEGIN();
    for (int round = 0; round < 3; round++) {
        co_procpool_t *p = pool(3);
        ASSERT_EQ(apply_square(p, round), round * round);
        int sig = SIGKILL;
        co_future_t *f = co_procpool_submit(p, dies, &sig, sizeof sig);
        co_future_wait(f, -1);
        co_future_free(f);
        if (round == 1)
            co_procpool_terminate(p);
        else
            co_procpool_close(p);
        ASSERT_EQ(co_procpool_join(p, co_now() + 20000), 0);
        co_procpool_free(p);
    }
    FDS_END();
    ASSERT_EQ(count_shm(), shm);
    ASSERT_EQ(count_children(), children);
}

/* A callback on the pool's own thread (added by a thread without a hub)
 * cannot join the pool: EDEADLK, not a hang. */
static co_procpool_t *cb_pool;
static atomic_int cb_join_err;
static void join_from_callback(co_future_t *f, void *arg)
{
    (void)f;
    (void)arg;
    co_procpool_close(cb_pool);
    atomic_store(&cb_join_err, co_procpool_join(cb_pool, -1) < 0 ? errno : 0);
}
/* Waits for a byte on gate[0] (made before the workers), then succeeds:
 * the test decides when the task ends. */
static int gate[2];
static int gated(co_ptask_t *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    (void)len;
    char c;
    return read(gate[0], &c, 1) == 1 ? 0 : EIO;
}
static void *submit_from_plain_thread(void *arg)
{
    (void)arg;
    co_future_t *f = co_procpool_apply_async(cb_pool, gated, NULL, 0, join_from_callback, NULL, NULL);
    ASSERT(f);
    ASSERT_EQ(write(gate[1], "x", 1), 1); /* the callback is in: the task may end */
    ASSERT_EQ(co_future_wait(f, co_now() + 20000), 0);
    co_future_free(f);
    return NULL;
}
static void test_join_from_callback(void)
{
    ASSERT_EQ(pipe(gate), 0);
    cb_pool = pool(1);
    atomic_store(&cb_join_err, -1);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, submit_from_plain_thread, NULL), 0);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    for (int64_t d = co_now() + 10000; atomic_load(&cb_join_err) == -1 && co_now() < d;) co_sleep_ms(2);
    ASSERT_EQ(atomic_load(&cb_join_err), EDEADLK);
    ASSERT_EQ(co_procpool_join(cb_pool, co_now() + 20000), 0);
    co_procpool_free(cb_pool);
    close(gate[0]);
    close(gate[1]);
}

/* In a fork child the pool's copy refuses at once: nothing hangs. */
static co_procpool_t *forked_pool;
static int use_in_child(void *arg)
{
    (void)arg;
    long x = 2;
    errno = 0;
    if (co_procpool_submit(forked_pool, square, &x, sizeof x) || errno != ECHILD) return 10;
    if (co_procpool_apply(forked_pool, square, &x, sizeof x, NULL, NULL, -1) == 0 || errno != ECHILD) return 11;
    if (co_procpool_map(forked_pool, square, &(struct iovec){&x, sizeof x}, 1, 0, -1) || errno != ECHILD) return 12;
    co_procpool_close(forked_pool);
    co_procpool_terminate(forked_pool);
    if (co_procpool_join(forked_pool, -1) == 0 || errno != ECHILD) return 13;
    if (co_procpool_shutdown(forked_pool, true, true) == 0 || errno != ECHILD) return 14;
    co_procpool_free(forked_pool);
    return 0;
}

static void test_fork_child_refuses(void)
{
    forked_pool = pool(1);
    co_process_t *c = co_process_new(use_in_child, NULL, NULL);
    ASSERT_EQ(co_process_start(c), 0);
    ASSERT_EQ(co_process_join(c, co_now() + 20000), 0);
    ASSERT_EQ(co_process_exitcode(c), 0);
    co_process_free(c);
    ASSERT_EQ(apply_square(forked_pool, 6), 36); /* the parent's is fine */
    done(forked_pool);
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    /* The reaper (a helper thread and its eventfd) lives from the first
     * child on: start it before the cases count descriptors. */
    co_procpool_t *warm = pool(1);
    ASSERT_EQ(apply_square(warm, 2), 4);
    co_procpool_free(warm);
    RUN(test_apply_and_submit);
    RUN(test_apply_async_callbacks);
    RUN(test_map_order);
    RUN(test_imap);
    RUN(test_worker_killed);
    RUN(test_map_item_errors);
    RUN(test_map_worker_killed);
    RUN(test_max_tasks_per_child);
    RUN(test_task_timeout);
    RUN(test_terminate_in_flight);
    RUN(test_close_join_shutdown);
    RUN(test_initializer);
    RUN(test_bad_arguments);
    RUN(test_deadlines);
    RUN(test_awaited_from_coroutines_and_threads);
    RUN(test_futures_interplay);
    RUN(test_join_from_callback);
    RUN(test_fork_child_refuses);
    RUN(test_nothing_leaked);
    return TEST_MAIN_END();
}
