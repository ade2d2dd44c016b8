/* A lock across processes: five processes print one at a time
 * (multiprocessing.Lock).
 *
 * Each child takes the lock, prints "running", sleeps 200 ms, prints
 * "done" and releases it.  With the lock the pairs never interleave and
 * the whole takes ~1 s (serial); without it (run with "nolock") the five
 * run at once and the lines mix.  The lock lives in shared memory made
 * before the children are forked; a child that waits for it sleeps in
 * the kernel (a futex), and a coroutine would park. */
#include <cogent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static co_plock_t *lock;
static int use_lock = 1;

static int work(void *arg)
{
    long n = (long)(intptr_t)arg;
    if (use_lock) co_plock_acquire(lock, -1);
    printf("%ld: %d is running\n", n, (int)getpid());
    fflush(stdout);
    co_sleep_ms(200);
    printf("%ld: %d is done\n", n, (int)getpid());
    fflush(stdout);
    if (use_lock) co_plock_release(lock);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines in order, also through a pipe */
    use_lock = !(argc > 1 && !strcmp(argv[1], "nolock"));
    lock = co_plock_new(NULL);
    if (!lock) return perror("co_plock_new"), 1;
    int64_t t0 = co_now();
    co_process_t *p[5];
    for (long i = 0; i < 5; i++) {
        p[i] = co_process_new(work, (void *)(intptr_t)i, NULL);
        co_process_start(p[i]);
    }
    for (int i = 0; i < 5; i++) {
        co_process_join(p[i], -1);
        co_process_free(p[i]);
    }
    printf("%s: %lld ms\n", use_lock ? "with the lock, one at a time" : "without a lock, all at once",
           (long long)(co_now() - t0));
    co_plock_free(lock);
    return 0;
}
