/* A priority queue of alerts: whatever arrives, the most severe is
 * handled first, and equal severities keep their arrival order. */
#include <cogent.h>
#include <stdio.h>

typedef struct alert {
    int severity; /* 1 (info) .. 5 (page someone) */
    const char *text;
} alert_t;

static int most_severe_first(const void *a, const void *b, void *ctx)
{
    (void)ctx;
    return ((const alert_t *)b)->severity - ((const alert_t *)a)->severity;
}

int main(void)
{
    co_queue_opts_t o = {.kind = CO_QUEUE_PRIORITY, .cmp = most_severe_first};
    co_queue_t *q = co_queue_new(&o);
    alert_t alerts[] = {{2, "disk 81% full"},      {5, "database unreachable"}, {1, "certificate renews in 20 days"},
                        {3, "p99 latency 900 ms"}, {5, "payment API down"},     {2, "backup took 2x longer"}};
    for (size_t i = 0; i < sizeof alerts / sizeof alerts[0]; i++) co_queue_put(q, &alerts[i], -1);
    void *it;
    while (co_queue_get_nowait(q, &it) == 0) {
        alert_t *a = it;
        printf("[%d] %s\n", a->severity, a->text);
    }
    co_queue_free(q, NULL);
    return 0;
}
