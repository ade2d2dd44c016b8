/* Synchronous vs concurrent: ten tasks that each wait 0.5 s take about
 * 5 s one after another, and about 0.5 s as coroutines on one thread. */
#include <cogent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define TASKS   10
#define WAIT_MS 500

static void *task(void *arg)
{
    co_sleep_ms(WAIT_MS); /* parks this coroutine only: the hub runs the others */
    return arg;
}

int main(int argc, char **argv)
{
    int tasks = argc > 1 ? atoi(argv[1]) : TASKS;
    if (tasks < 1 || tasks > 100000) return fprintf(stderr, "usage: %s [tasks 1..100000]\n", argv[0]), 2;

    int64_t t0 = co_now();
    for (int i = 0; i < tasks; i++) usleep(WAIT_MS * 1000); /* blocks the thread */
    int64_t sync_ms = co_now() - t0;
    printf("synchronous: %d tasks of %d ms took %lld ms\n", tasks, WAIT_MS, (long long)sync_ms);

    t0 = co_now();
    co_group_t *g = co_group_new(0);
    for (intptr_t i = 0; i < tasks; i++) co_group_spawn(g, task, (void *)i, -1);
    co_group_join(g, -1);
    co_group_free(g);
    int64_t co_ms = co_now() - t0;
    printf("coroutines:  %d tasks of %d ms took %lld ms (%.1fx faster)\n", tasks, WAIT_MS, (long long)co_ms,
           co_ms ? (double)sync_ms / (double)co_ms : 0.0);
    return 0;
}
