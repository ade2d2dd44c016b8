/* Producer/consumer across processes over a joinable process queue
 * (multiprocessing.JoinableQueue, with daemon consumers).
 *
 * Two producer processes put 5 buns each into a bounded queue (3 places);
 * two daemon consumer processes eat them and call task_done.  The main
 * process joins the producers, then the queue (every bun eaten), and
 * ends: the daemon consumers, still waiting for more, are terminated
 * with it -- Python's classic ending, without a sentinel. */
#include <cogent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static co_pqueue_t *q;

static int producer(void *arg)
{
    const char *who = arg;
    for (int i = 1; i <= 5; i++) {
        char bun[64];
        int n = snprintf(bun, sizeof bun, "%s's bun %d", who, i);
        co_sleep_ms(20 * i);
        co_pqueue_put(q, bun, (size_t)n, -1); /* waits while the queue is full */
        printf("%s made %s\n", who, bun);
        fflush(stdout);
    }
    return 0;
}

static int consumer(void *arg)
{
    const char *who = arg;
    char bun[64];
    for (;;) {
        ssize_t n = co_pqueue_get(q, bun, sizeof bun - 1, -1);
        if (n < 0) return 1;
        bun[n] = '\0';
        co_sleep_ms(50);
        printf("  %s (pid %d) ate %s\n", who, (int)getpid(), bun);
        fflush(stdout);
        co_pqueue_task_done(q);
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines in order, also through a pipe */
    q = co_pqueue_new(3, 64, NULL);
    if (!q) return perror("co_pqueue_new"), 1;
    co_process_t *p[2] = {co_process_new(producer, (void *)"alex", NULL),
                          co_process_new(producer, (void *)"egon", NULL)};
    co_process_t *c[2] = {co_process_new(consumer, (void *)"consumer 1", &(co_process_opts_t){.daemon = true}),
                          co_process_new(consumer, (void *)"consumer 2", &(co_process_opts_t){.daemon = true})};
    for (int i = 0; i < 2; i++) {
        co_process_start(p[i]);
        co_process_start(c[i]);
    }
    for (int i = 0; i < 2; i++) co_process_join(p[i], -1);
    co_pqueue_join(q, -1); /* every bun put was eaten */
    printf("all 10 buns eaten; the daemon consumers end with the main process\n");
    for (int i = 0; i < 2; i++) {
        co_process_free(p[i]);
        co_process_free(c[i]);
    }
    co_pqueue_free(q);
    return 0;
}
