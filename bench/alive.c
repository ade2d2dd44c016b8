/* One million coroutines alive at once, all blocked: half sleep, half wait
 * on one coroutine (like waiting on an event).  Peak RSS per coroutine
 * and the time to spawn them all, on stock kernel settings. */
#include <cogent.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

static co_coro_t *gate;
static int64_t wake_at;

static void *gate_body(void *arg)
{
    (void)arg;
    co_sleep_until(wake_at);
    return NULL;
}

static void *blocked(void *arg)
{
    if ((intptr_t)arg & 1)
        co_wait(gate, -1);
    else
        co_sleep_until(wake_at);
    return NULL;
}

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t k = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, k)) v = atol(line + k + 1);
    if (f) fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    long n = bench_arg(argc, argv, 1000000);
    long rss0 = status_kb("VmRSS");
    wake_at = co_now() + 3600 * 1000;
    gate = co_spawn(gate_body, NULL);
    co_group_t *g = co_group_new(0);
    double t0 = bench_ns();
    for (long i = 0; i < n; i++)
        if (!co_group_spawn(g, blocked, (void *)(intptr_t)i, -1)) return perror("spawn"), 1;
    co_sleep_ms(0); /* run them all until they block */
    double dt = bench_ns() - t0;
    co_hub_stats_t hs;
    co_hub_stats(&hs);
    long rss = status_kb("VmRSS"), pte = status_kb("VmPTE");
    co_stack_stats_t ss;
    co_stack_stats(&ss);
    fprintf(stderr, "alive: %zu coroutines, RSS %ld MiB, page tables %ld MiB, %zu guarded + %zu canary stacks\n",
            hs.coroutines, rss / 1024, pte / 1024, ss.guarded, ss.canary);
    BENCH_RESULT("alive_rss", (double)(rss - rss0) * 1024.0 / (double)n / 1024.0, "KiB/coroutine");
    BENCH_RESULT("alive_spawn", dt / 1e6, "ms");
    BENCH_RESULT("alive_pte", (double)pte * 1024.0 / (double)n, "B/coroutine");
    fflush(stdout);
    _exit(0); /* do not wait an hour */
}
