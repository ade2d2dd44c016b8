/* The GIL lesson, answered for C.
 *
 * The Python notes teach that CPython's threads cannot use two cores at
 * once (one global interpreter lock), that coroutines cannot either, and
 * that I/O-bound work is where threads and coroutines pay off.  In C there
 * is no GIL.  This program measures the three claims on this machine:
 *
 *  1. a CPU-bound job (counting primes by trial division) split over N
 *     threads runs about N times faster, up to the number of cores;
 *  2. the same job split over N coroutines of one hub runs no faster than
 *     one: coroutines take turns on one thread, and a coroutine that never
 *     blocks never lets another run;
 *  3. an I/O-bound job (many waits of 50 ms) is cheapest as coroutines:
 *     as fast as a thread per wait, with a fraction of the CPU and memory,
 *     and much faster than a pool with a few threads.
 *
 * Usage: gil_lesson [limit]  (primes below limit; default 3,000,000) */
#define _GNU_SOURCE /* clock_gettime, usleep: also when built with -std=c11 */
#include <cogent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static long limit = 3000000;
static int parts;

/* Odd numbers 3, 5, 7... below the limit, dealt round-robin to `parts`
 * workers so that each gets the same mix of small and large ones. */
static void *count_primes(void *arg)
{
    long part = (long)(intptr_t)arg, found = 0;
    for (long n = 3 + 2 * part; n < limit; n += 2L * parts) {
        bool prime = true;
        for (long d = 3; d * d <= n; d += 2) {
            if (n % d == 0) {
                prime = false;
                break;
            }
        }
        found += prime;
    }
    return (void *)(intptr_t)found;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* The job split in n parts run by threads (threads) or coroutines of this
 * thread's hub.  Returns the wall time; *count gets the primes found. */
static double run_split(int n, bool threads, long *count)
{
    parts = n;
    co_thread_t *ts[64];
    co_coro_t *cs[64];
    double t0 = now_ms();
    for (int i = 0; i < n; i++) {
        if (threads)
            ts[i] = co_thread_new(count_primes, (void *)(intptr_t)i, NULL);
        else
            cs[i] = co_spawn(count_primes, (void *)(intptr_t)i);
    }
    long total = 1; /* 2 */
    for (int i = 0; i < n; i++) {
        void *r;
        if (threads) {
            co_thread_join(ts[i], -1, &r);
            co_thread_free(ts[i]);
        } else {
            co_join(cs[i], -1, &r);
        }
        total += (long)(intptr_t)r;
    }
    *count = total;
    return now_ms() - t0;
}

/* ------------------------------------------------------------ I/O-bound */

#define WAITS   200
#define WAIT_MS 50

static void *wait_io(void *arg)
{
    co_sleep_ms(WAIT_MS); /* a coroutine parks; a thread without a hub sleeps */
    return arg;
}

static void *blocking_wait(void *arg)
{
    usleep(WAIT_MS * 1000); /* a plain blocking call: holds its thread */
    return arg;
}

typedef struct io_result {
    double wall, cpu;
} io_result_t;

static io_result_t io_coroutines(void)
{
    double t0 = now_ms(), c0 = cpu_ms();
    co_coro_t *cs[WAITS];
    for (int i = 0; i < WAITS; i++) cs[i] = co_spawn(wait_io, NULL);
    co_joinall(cs, WAITS, -1, NULL);
    return (io_result_t){now_ms() - t0, cpu_ms() - c0};
}

static io_result_t io_threads(void)
{
    double t0 = now_ms(), c0 = cpu_ms();
    co_thread_t *ts[WAITS];
    int n = 0;
    for (int i = 0; i < WAITS; i++) {
        /* Small stacks: 200 threads of the default 8 MiB would reserve 1.6 GiB. */
        ts[n] = co_thread_new(blocking_wait, NULL, &(co_thread_opts_t){.stack_size = 64 * 1024});
        if (ts[n]) n++;
    }
    for (int i = 0; i < n; i++) {
        co_thread_join(ts[i], -1, NULL);
        co_thread_free(ts[i]);
    }
    return (io_result_t){now_ms() - t0, cpu_ms() - c0};
}

static io_result_t io_pool(co_pool_t *p)
{
    double t0 = now_ms(), c0 = cpu_ms();
    co_future_t *fs[WAITS];
    for (int i = 0; i < WAITS; i++) fs[i] = co_pool_submit(p, blocking_wait, NULL, -1);
    co_futures_wait(fs, WAITS, CO_ALL_COMPLETED, -1);
    for (int i = 0; i < WAITS; i++) co_future_free(fs[i]);
    return (io_result_t){now_ms() - t0, cpu_ms() - c0};
}

int main(int argc, char **argv)
{
    if (argc > 1) limit = atol(argv[1]);
    if (limit < 100) return fprintf(stderr, "usage: %s [limit >= 100]\n", argv[0]), 2;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cores < 2 ? 2 : cores > 8 ? 8 : (int)cores;

    printf("CPU-bound: count the primes below %ld, this machine has %ld core%s\n", limit, cores, cores == 1 ? "" : "s");
    long c1, ct, cc;
    double one = run_split(1, true, &c1);
    double thr = run_split(n, true, &ct);
    double cor = run_split(n, false, &cc);
    if (c1 != ct || c1 != cc) return fprintf(stderr, "the counts differ: %ld %ld %ld\n", c1, ct, cc), 1;
    printf("  1 thread:                  %7.0f ms  (%ld primes)\n", one, c1);
    printf("  %d threads:                 %7.0f ms  %.2fx  <- no GIL: every core works\n", n, thr, one / thr);
    printf("  %d coroutines of one hub:   %7.0f ms  %.2fx  <- one thread: they take turns\n", n, cor, one / cor);

    printf("I/O-bound: %d waits of %d ms each (%.0f ms one after another)\n", WAITS, WAIT_MS, (double)WAITS * WAIT_MS);
    io_result_t co = io_coroutines();
    io_result_t th = io_threads();
    co_pool_t *p = co_pool_new(&(co_pool_opts_t){.max_workers = (size_t)n + 4});
    io_result_t po = io_pool(p);
    co_pool_free(p);
    printf("  %d coroutines, one thread:  %7.0f ms, %6.1f ms of CPU  <- cheapest\n", WAITS, co.wall, co.cpu);
    printf("  %d threads, one per wait:   %7.0f ms, %6.1f ms of CPU\n", WAITS, th.wall, th.cpu);
    printf("  a pool of %d threads:        %7.0f ms, %6.1f ms of CPU  <- waits queue for a thread\n", n + 4, po.wall,
           po.cpu);
#ifdef GIL_RESULTS
    /* bench/run.sh reads these (bench/CMakeLists.txt builds this file as
     * bench_scaling with GIL_RESULTS defined). */
    printf("RESULT cpu_speedup_threads %.3f x\n", one / thr);
    printf("RESULT cpu_speedup_coroutines %.3f x\n", one / cor);
#endif
    return 0;
}
