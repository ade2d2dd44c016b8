/* ProcessPoolExecutor with add_done_callback, and a worker that crashes.
 *
 * Five tasks are submitted; each future gets a done callback that prints
 * its result as soon as it is ready (in completion order: the shortest
 * task first).  Then one task kills its own worker with SIGSEGV: only
 * its future fails -- with an error that names the signal -- the pool
 * starts a new worker and the next tasks run as before.  (Python's
 * ProcessPoolExecutor is broken for good after such a crash, and its
 * Pool waits forever for the lost result.) */
#include <cogent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int slow_double(co_ptask_t *t, const void *arg, size_t len)
{
    (void)len;
    int n;
    memcpy(&n, arg, sizeof n);
    co_sleep_ms(60 * (5 - n)); /* the last submitted finishes first */
    int d = 2 * n;
    return co_ptask_return(t, &d, sizeof d) < 0 ? errno : 0;
}

static int crash(co_ptask_t *t, const void *arg, size_t len)
{
    (void)t;
    (void)arg;
    (void)len;
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
    return 0;
}

static void on_done(co_future_t *f, void *arg)
{
    void *v;
    if (co_future_result(f, 0, &v) == 0) {
        int d;
        memcpy(&d, v, sizeof d);
        printf("  callback: task %ld -> %d\n", (long)(intptr_t)arg, d);
    } else {
        const char *msg;
        co_future_error(f, &msg);
        printf("  callback: task %ld failed: %s (%s)\n", (long)(intptr_t)arg, strerror(errno), msg ? msg : "");
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines in order, also through a pipe */
    co_procpool_t *ex = co_procpool_new(&(co_procpool_opts_t){.workers = 5});
    if (!ex) return perror("co_procpool_new"), 1;
    printf("five tasks, a done callback each:\n");
    co_future_t *fs[5];
    for (int i = 0; i < 5; i++) {
        fs[i] = co_procpool_submit(ex, slow_double, &i, sizeof i);
        co_future_add_done_callback(fs[i], on_done, (void *)(intptr_t)i);
    }
    co_futures_wait(fs, 5, CO_ALL_COMPLETED, -1);
    co_sleep_ms(10); /* callbacks run in coroutines of this hub: let them */
    for (int i = 0; i < 5; i++) co_future_free(fs[i]);

    printf("a task that crashes its worker (SIGSEGV):\n");
    co_future_t *bad = co_procpool_submit(ex, crash, NULL, 0);
    co_future_add_done_callback(bad, on_done, (void *)(intptr_t)99);
    co_future_wait(bad, -1);
    co_sleep_ms(10);
    co_future_free(bad);

    printf("the pool goes on:\n");
    int n = 4;
    co_future_t *f = co_procpool_submit(ex, slow_double, &n, sizeof n);
    co_future_add_done_callback(f, on_done, (void *)(intptr_t)4);
    co_future_wait(f, -1);
    co_sleep_ms(10);
    co_future_free(f);
    co_procpool_stats_t st;
    co_procpool_stats(ex, &st);
    printf("stats: %llu completed, %llu failed, %llu crash, %llu worker replaced\n", (unsigned long long)st.completed,
           (unsigned long long)st.failed, (unsigned long long)st.crashes, (unsigned long long)st.replaced);
    co_procpool_shutdown(ex, true, false); /* Executor.shutdown(wait=True) */
    co_procpool_free(ex);
    return 0;
}
