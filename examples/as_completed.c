/* asyncio.as_completed: task i sleeps (10 - i) / 10 s; results arrive in
 * completion order, not spawn order. */
#include <cogent.h>
#include <stdint.h>
#include <stdio.h>

static void *task(void *arg)
{
    intptr_t i = (intptr_t)arg;
    co_sleep_ms((10 - i) * 100);
    return arg;
}

int main(void)
{
    co_group_t *g = co_group_new(0);
    int64_t t0 = co_now();
    for (intptr_t i = 0; i < 10; i++) co_group_spawn(g, task, (void *)i, -1);
    co_coro_t *c;
    while ((c = co_group_next(g, -1)) != NULL) { /* NULL + ENOENT: none left */
        void *r;
        co_join(c, -1, &r);
        printf("task %ld done after %lld ms\n", (long)(intptr_t)r, (long long)(co_now() - t0));
    }
    co_group_free(g);
    return 0;
}
