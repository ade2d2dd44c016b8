/* The generator producer/consumer: the consumer is a generator that
 * receives each item through send, the producer drives it.  The printed
 * interleaving shows control passing back and forth on one thread. */
#include <cogent.h>
#include <stdint.h>
#include <stdio.h>

static void *consumer(co_gen_t *g, void *arg)
{
    (void)arg;
    void *item;
    intptr_t total = 0;
    /* x = yield: receive what the producer sends; ECANCELED on close. */
    while (co_gen_yield(g, (void *)total, &item) == 0) {
        printf("  consumer: handled item %ld\n", (long)(intptr_t)item);
        total += (intptr_t)item;
    }
    printf("  consumer: closed, cleaning up\n");
    return NULL;
}

int main(void)
{
    co_gen_t *g = co_gen_new(consumer, NULL, NULL);
    if (!g) return perror("co_gen_new"), 1;
    co_gen_next(g, NULL); /* run to the first yield, as Python's next(g) */
    void *total = NULL;
    for (intptr_t i = 1; i <= 3; i++) {
        printf("producer: sending %ld\n", (long)i);
        co_gen_send(g, (void *)i, &total);
        printf("producer: consumer's running total is %ld\n", (long)(intptr_t)total);
    }
    co_gen_close(g);
    co_gen_free(g);
    return 0;
}
