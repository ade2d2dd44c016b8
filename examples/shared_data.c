/* Shared data between processes: Value, Array and a shared map
 * (multiprocessing.Value / Array and Manager().dict()).
 *
 * Four processes each add 1 to a shared counter 10,000 times under its
 * lock (40,000 at the end; without the lock increments would be lost),
 * fill their quarter of a shared array of squares, and record in a
 * shared map of byte strings which pid did which quarter.  The map needs
 * no manager process: it lives in the shared memory itself, with a
 * capacity fixed at creation. */
#include <cogent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static co_pvalue_t *counter, *squares;
static co_pmap_t *who;

static int work(void *arg)
{
    long part = (long)(intptr_t)arg;
    int64_t *n = co_pvalue_data(counter);
    for (int i = 0; i < 10000; i++) {
        co_plock_acquire(co_pvalue_lock(counter), -1);
        ++*n;
        co_plock_release(co_pvalue_lock(counter));
    }
    double *sq = co_pvalue_data(squares);
    for (long i = part * 4; i < part * 4 + 4; i++) sq[i] = (double)(i * i);
    char key[32], val[32];
    int kl = snprintf(key, sizeof key, "quarter %ld", part);
    int vl = snprintf(val, sizeof val, "pid %d", (int)getpid());
    co_pmap_set(who, key, (size_t)kl, val, (size_t)vl, -1);
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    counter = co_pvalue_new(sizeof(int64_t), 1, NULL); /* Value('q', 0) */
    squares = co_pvalue_new(sizeof(double), 16, NULL); /* Array('d', 16) */
    who = co_pmap_new(8, 32, 32, NULL);
    if (!counter || !squares || !who) return perror("shared memory"), 1;
    co_process_t *p[4];
    for (long i = 0; i < 4; i++) {
        p[i] = co_process_new(work, (void *)(intptr_t)i, NULL);
        co_process_start(p[i]);
    }
    for (int i = 0; i < 4; i++) {
        co_process_join(p[i], -1);
        co_process_free(p[i]);
    }
    printf("counter: %lld (4 processes x 10,000 increments under the value's lock)\n",
           (long long)*(int64_t *)co_pvalue_data(counter));
    printf("squares:");
    double *sq = co_pvalue_data(squares);
    for (int i = 0; i < 16; i++) printf(" %g", sq[i]);
    printf("\nthe map (%zu entries):\n", co_pmap_size(who));
    size_t cursor = 0;
    char key[32], val[32];
    ssize_t kl;
    while ((kl = co_pmap_next(who, &cursor, key, sizeof key, -1)) >= 0) {
        ssize_t vl = co_pmap_get(who, key, (size_t)kl, val, sizeof val, -1);
        printf("  %.*s -> %.*s\n", (int)kl, key, (int)(vl < 0 ? 0 : vl), val);
    }
    co_pmap_free(who);
    co_pvalue_free(squares);
    co_pvalue_free(counter);
    return 0;
}
