/* One million coroutines alive at once, all blocked: half sleep, half wait
 * on one coroutine (like waiting on an event).  Peak RSS per coroutine
 * and the time to spawn them all, on stock kernel settings.
 *   bench_alive [n]          each with a stack of its own (alive_*)
 *   bench_alive n compact    compact coroutines (alive_compact_*) */
#include <cogent.h>
#include <stdbool.h>
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
    bool compact = argc > 2 && !strcmp(argv[2], "compact");
    long rss0 = status_kb("VmRSS");
    wake_at = co_now() + 3600 * 1000;
    gate = co_spawn(gate_body, NULL);
    co_group_t *g = co_group_new_with(&(co_group_opts_t){.spawn.compact = compact ? CO_COMPACT_YES : CO_COMPACT_NO});
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
    const char *pre = compact ? "alive_compact" : "alive";
    char name[64];
    snprintf(name, sizeof name, "%s_rss", pre);
    BENCH_RESULT(name, (double)(rss - rss0) * 1024.0 / (double)n / 1024.0, "KiB/coroutine");
    snprintf(name, sizeof name, "%s_spawn", pre);
    BENCH_RESULT(name, dt / 1e6, "ms");
    snprintf(name, sizeof name, "%s_pte", pre);
    BENCH_RESULT(name, (double)pte * 1024.0 / (double)n, "B/coroutine");
    fflush(stdout);
    _exit(0); /* do not wait an hour */
}
