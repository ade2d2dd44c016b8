/* Many idle clients, little memory: compact coroutines (docs/stacks.md).
 *
 * A server with a hundred thousand connected clients spends most of its
 * life with every one of them blocked, waiting for a message that rarely
 * comes.  With a stack each, every waiting coroutine keeps at least a page
 * of stack (4 KiB); a compact one keeps only the few hundred bytes of
 * frames it has live, copied aside, and runs on a stack its hub shares.
 *
 * Here each "client" waits for its turn on a queue of its own (the mailbox
 * a chat server would give it); a broadcaster wakes them all twice.  Run
 *
 *   ./idle_clients [count]          compact (the default here)
 *   ./idle_clients [count] own      a stack of its own each, to compare
 *
 * and look at the RSS it prints per client.  The one rule: a compact
 * coroutine's locals move while it waits, so nothing may point into them
 * meanwhile: the mailbox is on the heap, not in the client's frame.
 */
#include <cogent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct client {
    co_queue_t *mailbox; /* on the heap: others put into it while we wait */
    long received;
} client_t;

static void *client(void *arg)
{
    client_t *me = arg;
    char line[128]; /* a local buffer is fine: only we touch it */
    for (;;) {
        void *msg;
        if (co_queue_get(me->mailbox, &msg, -1) < 0) return NULL; /* closed: we are done */
        snprintf(line, sizeof line, "got %s", (const char *)msg);
        me->received += line[0] == 'g';
    }
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kib = atol(line + 6);
    if (f) fclose(f);
    return kib;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    bool own = argc > 2 && !strcmp(argv[2], "own");
    if (n <= 0) return fprintf(stderr, "usage: %s [count] [own]\n", argv[0]), 2;

    /* Every member of the group is compact unless it says otherwise. */
    co_group_t *g = co_group_new_with(&(co_group_opts_t){.spawn.compact = own ? CO_COMPACT_NO : CO_COMPACT_YES});
    client_t *clients = calloc((size_t)n, sizeof *clients);
    if (!g || !clients) return perror("setup"), 1;

    long before = rss_kib();
    for (long i = 0; i < n; i++) {
        clients[i].mailbox = co_queue_new(NULL);
        if (!clients[i].mailbox || !co_group_spawn(g, client, &clients[i], -1)) return perror("spawn"), 1;
    }
    co_yield_now(); /* every client runs until it waits on its mailbox */
    long idle = rss_kib() - before;
    printf("%ld %s clients waiting: %.2f KiB of RSS each (mailbox included)\n", n, own ? "own-stack" : "compact",
           (double)idle / (double)n);

    static char hello[] = "hello", bye[] = "bye";
    for (long i = 0; i < n; i++) co_queue_put(clients[i].mailbox, hello, -1);
    for (long i = 0; i < n; i++) co_queue_put(clients[i].mailbox, bye, -1);
    for (long i = 0; i < n; i++) co_queue_close(clients[i].mailbox);
    if (co_group_join(g, -1) < 0) return perror("join"), 1;

    long total = 0;
    for (long i = 0; i < n; i++) {
        total += clients[i].received;
        co_queue_free(clients[i].mailbox, NULL);
    }
    co_group_free(g);
    free(clients);
    printf("%ld messages delivered\n", total);
    return total == 2 * n ? 0 : 1;
}
