/* libuv peer of bench/pool.c: uv_queue_work on libuv's thread pool, run
 * with UV_THREADPOOL_SIZE=2 (run.sh sets it).  The loop's thread is the
 * submitter; after_work runs back on it.
 *   pool_rtt        queue one request, and the next from its after_work
 *   pool_throughput batches of 10,000 requests, the next batch queued when
 *                   the last after_work of the one before has run
 * Prints "RESULT <name> <value> <unit>" as ours do. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define BATCH 10000

typedef struct req {
    uv_work_t w;
    long x, result;
} req_t;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void work(uv_work_t *w)
{
    req_t *r = (req_t *)w;
    r->result = r->x + 1;
}

static uv_loop_t *loop;
static long n, left, next_x;
static req_t one;
static req_t *reqs;

static void rtt_after(uv_work_t *w, int status)
{
    req_t *r = (req_t *)w;
    if (status || r->result != r->x + 1) abort();
    if (--left > 0) {
        one.x = next_x++;
        uv_queue_work(loop, &one.w, work, rtt_after);
    }
}

static double rtt(long count)
{
    left = count;
    next_x = 1;
    one.x = 0;
    double t0 = now_ns();
    uv_queue_work(loop, &one.w, work, rtt_after);
    uv_run(loop, UV_RUN_DEFAULT);
    return (now_ns() - t0) / (double)count;
}

static long in_batch, submitted;

static void batch_after(uv_work_t *w, int status);

static void queue_batch_cb(void)
{
    for (long i = 0; i < BATCH; i++) {
        reqs[i].x = submitted + i;
        uv_queue_work(loop, &reqs[i].w, work, batch_after);
    }
    in_batch = BATCH;
}

static void batch_after(uv_work_t *w, int status)
{
    req_t *r = (req_t *)w;
    if (status || r->result != r->x + 1) abort();
    if (--in_batch == 0) {
        submitted += BATCH;
        if (submitted < n) queue_batch_cb();
    }
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    long count = argc > 2 ? atol(argv[2]) : 0;
    bool all = !strcmp(what, "all");
    loop = uv_default_loop();
    if (all || !strcmp(what, "pool_rtt")) {
        rtt(1000); /* warm-up: the pool's threads start */
        printf("RESULT uv_pool_rtt %.3f ns/roundtrip\n", rtt(count ? count : 100000));
    }
    if (all || !strcmp(what, "pool_throughput")) {
        n = count ? count : 1000000;
        reqs = calloc(BATCH, sizeof *reqs);
        submitted = 0;
        double t0 = now_ns();
        queue_batch_cb();
        uv_run(loop, UV_RUN_DEFAULT);
        double dt = now_ns() - t0;
        printf("RESULT uv_pool_throughput %.3f tasks/s\n", (double)n / (dt / 1e9));
        free(reqs);
    }
    uv_loop_close(loop);
    return 0;
}
