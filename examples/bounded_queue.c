/* A bounded queue throttles a fast producer: it can only be 3 items ahead
 * of the slow consumer, so it waits in put instead of piling up memory. */
#include <cogent.h>
#include <stdint.h>
#include <stdio.h>

static co_queue_t *q;
static int64_t t0;

static void *fast_producer(void *arg)
{
    (void)arg;
    for (intptr_t i = 1; i <= 8; i++) {
        co_queue_put(q, (void *)i, -1); /* waits while 3 are queued */
        printf("%4lld ms  put %ld (queued %zu)\n", (long long)(co_now() - t0), (long)i, co_queue_size(q));
    }
    co_queue_close(q);
    return NULL;
}

static void *slow_consumer(void *arg)
{
    (void)arg;
    void *it;
    while (co_queue_get(q, &it, -1) == 0) {
        co_sleep_ms(50);
        printf("%4lld ms  consumed %ld\n", (long long)(co_now() - t0), (long)(intptr_t)it);
    }
    return NULL;
}

int main(void)
{
    co_queue_opts_t o = {.maxsize = 3};
    q = co_queue_new(&o);
    t0 = co_now();
    co_coro_t *cs[2] = {co_spawn(fast_producer, NULL), co_spawn(slow_consumer, NULL)};
    co_joinall(cs, 2, -1, NULL);
    co_queue_free(q, NULL);
    return 0;
}
