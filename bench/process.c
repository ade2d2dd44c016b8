/* Process figures (issue 12), our side; run.sh runs the peers
 * (peers/process_floor.c: the raw system calls; peers/py_process.py:
 * Python's multiprocessing) in the same run:
 *   proc_start_join    co_process_new + start + join + free of a function
 *                      that returns at once: us per process
 *   proc_exec_join     co_process_exec("/bin/true") + join: us per process
 *   pipe_pingpong      64-byte messages back and forth over co_pipe between
 *                      two processes: us per round trip
 *   pqueue_64, pqueue_4k  1 producer process -> 1 consumer process through
 *                      a co_pqueue of 1024 places: messages/s
 *   procpool_map       100k tiny tasks through co_procpool_map, 2 workers,
 *                      default chunks: tasks/s
 *   procpool_apply_rtt submit -> result of one tiny task: us per round trip
 *   procpool_speedup   a CPU-bound map (16 tasks of ~25 ms) on 2 workers
 *                      vs 1: the speedup (x)
 *   procpool_crash     a worker SIGKILLed mid-task: ms until its future has
 *                      failed and the next task's result is back
 * Usage: bench_process [figure [n]]; no figure runs them all. */
#include <cogent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench.h"

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

static void start_join(long n)
{
    double t0 = bench_ns();
    for (long i = 0; i < n; i++) {
        co_process_t *p = co_process_new(nothing, NULL, NULL);
        if (!p || co_process_start(p) < 0 || co_process_join(p, -1) < 0) abort();
        co_process_free(p);
    }
    BENCH_RESULT("proc_start_join", (bench_ns() - t0) / (double)n / 1e3, "us/process");
}

static void exec_join(long n)
{
    const char *argv[] = {"/bin/true", NULL};
    double t0 = bench_ns();
    for (long i = 0; i < n; i++) {
        co_process_t *p = co_process_exec(argv, NULL);
        if (!p || co_process_join(p, -1) < 0) abort();
        co_process_free(p);
    }
    BENCH_RESULT("proc_exec_join", (bench_ns() - t0) / (double)n / 1e3, "us/process");
}

static co_conn_t *ends[2];

static int echo_child(void *arg)
{
    (void)arg;
    co_conn_close(ends[0]);
    char buf[64];
    ssize_t n;
    while ((n = co_conn_recv_into(ends[1], buf, sizeof buf, -1)) >= 0)
        if (co_conn_send(ends[1], buf, (size_t)n, -1) < 0) return 1;
    return 0;
}

static void pipe_pingpong(long n)
{
    if (co_pipe(ends, true) < 0) abort();
    co_process_t *p = co_process_new(echo_child, NULL, NULL);
    co_process_start(p);
    co_conn_close(ends[1]);
    char msg[64] = {1}, back[64];
    for (long i = 0; i < 1000; i++) { /* warm up */
        co_conn_send(ends[0], msg, sizeof msg, -1);
        co_conn_recv_into(ends[0], back, sizeof back, -1);
    }
    double t0 = bench_ns();
    for (long i = 0; i < n; i++) {
        if (co_conn_send(ends[0], msg, sizeof msg, -1) < 0) abort();
        if (co_conn_recv_into(ends[0], back, sizeof back, -1) != sizeof back) abort();
    }
    double dt = bench_ns() - t0;
    co_conn_close(ends[0]);
    co_process_join(p, -1);
    co_process_free(p);
    co_conn_free(ends[0]);
    co_conn_free(ends[1]);
    BENCH_RESULT("pipe_pingpong", dt / (double)n / 1e3, "us/roundtrip");
}

static co_pqueue_t *q;
static long q_n;
static size_t q_size;

static int producer(void *arg)
{
    (void)arg;
    char *msg = calloc(1, q_size);
    for (long i = 0; i < q_n; i++)
        if (co_pqueue_put(q, msg, q_size, -1) < 0) return 1;
    free(msg);
    return 0;
}

static int consumer(void *arg)
{
    (void)arg;
    char *buf = malloc(q_size);
    for (long i = 0; i < q_n; i++)
        if (co_pqueue_get(q, buf, q_size, -1) != (ssize_t)q_size) return 1;
    free(buf);
    return 0;
}

static void pqueue(long n, size_t size)
{
    q_n = n;
    q_size = size;
    q = co_pqueue_new(1024, size, NULL);
    if (!q) abort();
    double t0 = bench_ns();
    co_process_t *c = co_process_new(consumer, NULL, NULL), *p = co_process_new(producer, NULL, NULL);
    co_process_start(c);
    co_process_start(p);
    co_process_join(p, -1);
    co_process_join(c, -1);
    double dt = bench_ns() - t0;
    if (co_process_exitcode(p) || co_process_exitcode(c)) abort();
    co_process_free(p);
    co_process_free(c);
    co_pqueue_free(q);
    BENCH_RESULT(size == 64 ? "pqueue_64" : "pqueue_4k", (double)n / (dt / 1e9), "msgs/s");
}

static int tiny(co_ptask_t *t, const void *arg, size_t len)
{
    int x;
    memcpy(&x, arg, sizeof x);
    (void)len;
    x = x * x;
    return co_ptask_return(t, &x, sizeof x) < 0 ? errno : 0;
}

static void procpool_map(long n)
{
    co_procpool_t *p = co_procpool_new(&(co_procpool_opts_t){.workers = 2});
    int *xs = malloc((size_t)n * sizeof *xs);
    struct iovec *items = malloc((size_t)n * sizeof *items);
    for (long i = 0; i < n; i++) {
        xs[i] = (int)i;
        items[i] = (struct iovec){&xs[i], sizeof xs[i]};
    }
    double t0 = bench_ns();
    co_presults_t *r = co_procpool_map(p, tiny, items, (size_t)n, 0, -1);
    double dt = bench_ns() - t0;
    if (!r || co_presults_failed(r)) abort();
    for (long i = 0; i < n; i++) {
        int y;
        memcpy(&y, co_presults_get(r, (size_t)i)->data, sizeof y);
        if (y != (int)(i * i)) abort();
    }
    co_presults_free(r);
    co_procpool_free(p);
    free(items);
    free(xs);
    BENCH_RESULT("procpool_map", (double)n / (dt / 1e9), "tasks/s");
}

static void procpool_rtt(long n)
{
    co_procpool_t *p = co_procpool_new(&(co_procpool_opts_t){.workers = 2});
    int x = 3;
    double t0 = 0;
    for (long i = -1000; i < n; i++) {
        if (i == 0) t0 = bench_ns();
        co_future_t *f = co_procpool_submit(p, tiny, &x, sizeof x);
        if (co_future_result(f, -1, NULL) < 0) abort();
        co_future_free(f);
    }
    double dt = bench_ns() - t0;
    co_procpool_free(p);
    BENCH_RESULT("procpool_apply_rtt", dt / (double)n / 1e3, "us/roundtrip");
}

static int burn(co_ptask_t *t, const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    volatile double x = 0;
    for (long i = 0; i < 25 * 1000 * 1000; i++) x = x * 1.0000001 + 1.0; /* ~25 ms */
    double r = x;
    return co_ptask_return(t, &r, sizeof r) < 0 ? errno : 0;
}

static double cpu_map(size_t workers)
{
    co_procpool_t *p = co_procpool_new(&(co_procpool_opts_t){.workers = workers});
    struct iovec items[16];
    for (int i = 0; i < 16; i++) items[i] = (struct iovec){NULL, 0};
    double t0 = bench_ns();
    co_presults_t *r = co_procpool_map(p, burn, items, 16, 1, -1);
    double dt = bench_ns() - t0;
    if (!r || co_presults_failed(r)) abort();
    co_presults_free(r);
    co_procpool_free(p);
    return dt;
}

static void procpool_speedup(void)
{
    double one = cpu_map(1), two = cpu_map(2);
    BENCH_RESULT("procpool_speedup", one / two, "x");
}

static int report_fd[2];
static int hang(co_ptask_t *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    (void)len;
    pid_t me = getpid();
    if (write(report_fd[1], &me, sizeof me) != sizeof me) return EIO;
    for (;;) pause();
}

static void procpool_crash(long n)
{
    if (pipe(report_fd) < 0) abort();
    co_procpool_t *p = co_procpool_new(&(co_procpool_opts_t){.workers = 2});
    int x = 3;
    double total = 0;
    for (long i = 0; i < n; i++) {
        co_future_t *f = co_procpool_submit(p, hang, NULL, 0);
        pid_t victim;
        if (read(report_fd[0], &victim, sizeof victim) != sizeof victim) abort();
        double t0 = bench_ns();
        kill(victim, SIGKILL);
        if (co_future_result(f, -1, NULL) == 0 || errno != EOWNERDEAD) abort();
        co_future_free(f);
        /* Both workers serving again: one task each at once. */
        co_future_t *a = co_procpool_submit(p, tiny, &x, sizeof x), *b = co_procpool_submit(p, tiny, &x, sizeof x);
        if (co_future_result(a, -1, NULL) < 0 || co_future_result(b, -1, NULL) < 0) abort();
        total += bench_ns() - t0;
        co_future_free(a);
        co_future_free(b);
    }
    co_procpool_free(p);
    close(report_fd[0]);
    close(report_fd[1]);
    BENCH_RESULT("procpool_crash", total / (double)n / 1e6, "ms");
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    long n = argc > 2 ? atol(argv[2]) : 0;
    bool all = !strcmp(what, "all");
    if (all || !strcmp(what, "start_join")) start_join(n ? n : 2000);
    if (all || !strcmp(what, "exec_join")) exec_join(n ? n : 1000);
    if (all || !strcmp(what, "pipe_pingpong")) pipe_pingpong(n ? n : 50000);
    if (all || !strcmp(what, "pqueue_64")) pqueue(n ? n : 500000, 64);
    if (all || !strcmp(what, "pqueue_4k")) pqueue(n ? n : 200000, 4096);
    if (all || !strcmp(what, "procpool_map")) procpool_map(n ? n : 100000);
    if (all || !strcmp(what, "procpool_rtt")) procpool_rtt(n ? n : 20000);
    if (all || !strcmp(what, "procpool_speedup")) procpool_speedup();
    if (all || !strcmp(what, "procpool_crash")) procpool_crash(n ? n : 20);
    return 0;
}
