/* Producer/consumer with a joinable queue (queue.JoinableQueue).
 *
 * Two producers put 10 jobs each; three consumers take jobs, "work" on
 * them and call task_done; main joins the queue (every job done), then
 * closes it, and the consumers stop when their get fails with EPIPE. */
#include <cogent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

static co_queue_t *jobs;

static void *producer(void *arg)
{
    intptr_t base = (intptr_t)arg;
    for (intptr_t i = 1; i <= 10; i++) co_queue_put(jobs, (void *)(base + i), -1);
    return NULL;
}

static void *consumer(void *arg)
{
    intptr_t id = (intptr_t)arg, done = 0;
    void *job;
    while (co_queue_get(jobs, &job, -1) == 0) {
        co_sleep_ms(((intptr_t)job % 7) + 1); /* the work */
        done++;
        co_queue_task_done(jobs);
    }
    printf("consumer %ld: queue closed (%s) after %ld jobs\n", (long)id, errno == EPIPE ? "EPIPE" : "?", (long)done);
    return (void *)done;
}

int main(void)
{
    jobs = co_queue_new(NULL);
    co_coro_t *c[3], *p[2];
    for (intptr_t i = 0; i < 3; i++) c[i] = co_spawn(consumer, (void *)i);
    p[0] = co_spawn(producer, (void *)100);
    p[1] = co_spawn(producer, (void *)200);
    co_joinall(p, 2, -1, NULL);
    int64_t t0 = co_now();
    co_queue_join(jobs, -1); /* returns when every job put was marked done */
    printf("all %d jobs done (joined after %lld ms); closing the queue\n", 20, (long long)(co_now() - t0));
    co_queue_close(jobs);
    void *n[3];
    co_joinall(c, 3, -1, n);
    printf("jobs per consumer: %ld %ld %ld\n", (long)(intptr_t)n[0], (long)(intptr_t)n[1], (long)(intptr_t)n[2]);
    co_queue_free(jobs, NULL);
    return 0;
}
