/* The process pool of squares (multiprocessing.Pool).
 *
 * Three worker processes.  apply runs one task at a time and waits for
 * each (synchronous: ten tasks of 100 ms take a second); apply_async
 * queues all ten and the results are collected afterwards (three run at
 * once: ~0.4 s); map squares 0..9 in input order.  Each task says which
 * worker ran it.  A task is a function of this program and the bytes of
 * its argument; its result is bytes too: nothing is pickled. */
#include <cogent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static int work(co_ptask_t *t, const void *arg, size_t len)
{
    (void)len;
    long n;
    memcpy(&n, arg, sizeof n);
    printf("  %d runs work(%ld)\n", (int)getpid(), n);
    fflush(stdout);
    co_sleep_ms(100);
    long sq = n * n;
    return co_ptask_return(t, &sq, sizeof sq) < 0 ? errno : 0;
}

static long as_long(const void *p)
{
    long v;
    memcpy(&v, p, sizeof v);
    return v;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines in order, also through a pipe */
    co_procpool_t *pool = co_procpool_new(&(co_procpool_opts_t){.workers = 3});
    if (!pool) return perror("co_procpool_new"), 1;

    printf("apply (synchronous: each call waits for its result):\n");
    int64_t t0 = co_now();
    long res[10];
    for (long i = 0; i < 10; i++) {
        void *r;
        if (co_procpool_apply(pool, work, &i, sizeof i, &r, NULL, -1) < 0) return perror("apply"), 1;
        res[i] = as_long(r);
        free(r);
    }
    printf("results:");
    for (int i = 0; i < 10; i++) printf(" %ld", res[i]);
    printf("  (%lld ms)\n", (long long)(co_now() - t0));

    printf("apply_async (queued at once, three run at a time; get afterwards):\n");
    t0 = co_now();
    co_future_t *f[10];
    for (long i = 0; i < 10; i++) f[i] = co_procpool_apply_async(pool, work, &i, sizeof i, NULL, NULL, NULL);
    printf("results:");
    for (int i = 0; i < 10; i++) {
        void *v;
        if (co_future_result(f[i], -1, &v) < 0) return perror("result"), 1;
        printf(" %ld", as_long(v));
        co_future_free(f[i]);
    }
    printf("  (%lld ms)\n", (long long)(co_now() - t0));

    printf("map (results in input order):\n");
    long xs[10];
    struct iovec items[10];
    for (int i = 0; i < 10; i++) {
        xs[i] = i;
        items[i] = (struct iovec){&xs[i], sizeof xs[i]};
    }
    co_presults_t *r = co_procpool_map(pool, work, items, 10, 0, -1);
    if (!r) return perror("map"), 1;
    printf("results:");
    for (size_t i = 0; i < co_presults_count(r); i++) printf(" %ld", as_long(co_presults_get(r, i)->data));
    printf("\n");
    co_presults_free(r);

    co_procpool_close(pool);    /* no more tasks */
    co_procpool_join(pool, -1); /* the workers end once the queue is empty */
    co_procpool_free(pool);
    return 0;
}
