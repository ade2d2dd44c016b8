/* Sync and queue figures:
 *   lock           uncontended co_lock acquire+release, ns (lock_mt: in a
 *                  process that has had a second thread)
 *   lock_handoff   a lock passed between two coroutines of one hub, ns per hand-off
 *   queue_pingpong two coroutines of one hub, put wakes the getter which answers: ns per round trip
 *   queue_threads  one producer thread, one consumer thread (no hubs), bounded 1024: items/s
 *   queue_hubs     one producer coroutine and one consumer coroutine on two threads' hubs: items/s
 *   lock_handoff_fp, queue_pingpong_fp, queue_hubs_fp: the same while one
 *                  side does floating-point work (bench.h), after an inexact
 *                  operation in the main coroutine
 * Usage: bench_sync [figure [n]]; no figure runs them all. */
#include <cogent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "bench.h"

static void *idle(void *arg)
{
    return arg;
}

/* Makes the process multi-threaded for good (as any program whose locks
 * are shared is): both glibc and cogent take single-threaded shortcuts. */
static void go_multithreaded(void)
{
    pthread_t t;
    pthread_create(&t, NULL, idle, NULL);
    pthread_join(t, NULL);
}

static void lock_uncontended(long n, bool mt)
{
    if (mt) go_multithreaded();
    co_lock_t l = CO_LOCK_INIT;
    double t0 = bench_ns();
    for (long i = 0; i < n; i++) {
        co_lock_acquire(&l, -1);
        co_lock_release(&l);
    }
    BENCH_RESULT(mt ? "lock_uncontended_mt" : "lock_uncontended", (bench_ns() - t0) / (double)n, "ns/op");
}

static co_lock_t hl = CO_LOCK_INIT;
static long rounds;

static void *handoff(void *arg)
{
    /* With arg, an FP step (bench.h), inexact on one side only; the
     * same code on both keeps their call sites the same. */
    const bench_fp_t *fp = arg;
    double x = 1.0;
    for (long i = 0; i < rounds; i++) {
        if (fp) x = bench_fp_step_as(x, fp);
        co_lock_acquire(&hl, -1);
        co_yield_now(); /* the other one queues on the lock meanwhile */
        co_lock_release(&hl);
    }
    bench_fp_sink = x;
    return NULL;
}

static void lock_handoff(long n, bool fp)
{
    rounds = n;
    if (fp) bench_fp_clean();
    co_coro_t *a = co_spawn(handoff, fp ? (void *)&bench_fp_inexact : NULL);
    co_coro_t *b = co_spawn(handoff, fp ? (void *)&bench_fp_exact : NULL);
    if (fp) bench_fp_dirty();
    double t0 = bench_ns();
    co_join(a, -1, NULL);
    co_join(b, -1, NULL);
    BENCH_RESULT(fp ? "lock_handoff_fp" : "lock_handoff", (bench_ns() - t0) / (double)(2 * n), "ns/handoff");
}

static co_queue_t *ping, *pong;

static void *answerer(void *arg)
{
    (void)arg;
    void *it;
    while (co_queue_get(ping, &it, -1) == 0) co_queue_put(pong, it, -1);
    return NULL;
}

static void queue_pingpong(long n, bool fp)
{
    ping = co_queue_new(NULL);
    pong = co_queue_new(NULL);
    if (fp) bench_fp_clean();
    co_coro_t *a = co_spawn(answerer, NULL);
    double x = 1.0;
    if (fp) bench_fp_dirty();
    double t0 = bench_ns();
    for (long i = 0; i < n; i++) {
        void *it;
        if (fp) x = bench_fp_step(x);
        co_queue_put(ping, (void *)(intptr_t)i, -1);
        co_queue_get(pong, &it, -1);
    }
    double dt = bench_ns() - t0;
    co_queue_close(ping);
    co_join(a, -1, NULL);
    co_queue_free(ping, NULL);
    co_queue_free(pong, NULL);
    bench_fp_sink = x;
    BENCH_RESULT(fp ? "queue_pingpong_fp" : "queue_pingpong", dt / (double)n, "ns/roundtrip");
}

/* --------------------------------------------------- across threads */

static co_queue_t *xq;
static long xn;
static bool xfp; /* the consumer does FP work */

static void *producer(void *arg)
{
    (void)arg;
    for (long i = 1; i <= xn; i++) co_queue_put(xq, (void *)(intptr_t)i, -1);
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    long long sum = 0;
    void *it;
    double x = 1.0;
    if (xfp) bench_fp_dirty();
    for (long i = 0; i < xn; i++) {
        if (xfp) x = bench_fp_step(x);
        co_queue_get(xq, &it, -1);
        sum += (intptr_t)it;
    }
    if (sum != (long long)xn * (xn + 1) / 2) fprintf(stderr, "queue lost items\n"), exit(1);
    bench_fp_sink = x;
    return NULL;
}

static void *hub_producer(void *arg)
{
    co_join(co_spawn(producer, NULL), -1, NULL);
    return arg;
}

static void xthread(long n, bool hubs, bool fp)
{
    co_queue_opts_t o = {.maxsize = 1024};
    xq = co_queue_new(&o);
    xn = n;
    xfp = fp;
    pthread_t p;
    double t0 = bench_ns();
    pthread_create(&p, NULL, hubs ? hub_producer : producer, NULL);
    if (hubs)
        co_join(co_spawn(consumer, NULL), -1, NULL);
    else
        consumer(NULL);
    pthread_join(p, NULL);
    double dt = bench_ns() - t0;
    co_queue_free(xq, NULL);
    BENCH_RESULT(hubs ? (fp ? "queue_hubs_fp" : "queue_hubs") : "queue_threads", (double)n / (dt / 1e9), "items/s");
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    long n = argc > 2 ? atol(argv[2]) : 0;
    bool all = !strcmp(what, "all");
    if (all || !strcmp(what, "lock")) lock_uncontended(n ? n : 20000000, false);
    if (!strcmp(what, "lock_mt")) lock_uncontended(n ? n : 20000000, true);
    if (all || !strcmp(what, "lock_handoff")) lock_handoff(n ? n : 2000000, false);
    if (all || !strcmp(what, "queue_pingpong")) queue_pingpong(n ? n : 2000000, false);
    if (all || !strcmp(what, "queue_threads")) xthread(n ? n : 2000000, false, false);
    if (all || !strcmp(what, "queue_hubs")) xthread(n ? n : 2000000, true, false);
    /* After every plain figure: these leave FP status flags set. */
    if (all || !strcmp(what, "lock_handoff_fp")) lock_handoff(n ? n : 2000000, true);
    if (all || !strcmp(what, "queue_pingpong_fp")) queue_pingpong(n ? n : 2000000, true);
    if (all || !strcmp(what, "queue_hubs_fp")) xthread(n ? n : 2000000, true, true);
    return 0;
}
