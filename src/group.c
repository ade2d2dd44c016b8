/* Groups: gevent's Pool and asyncio's as_completed over coroutines.
 *
 * Members are in one of two intrusive lists: `running`, or `done` in the
 * order they finished.  A slot is held by a running member only. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "internal.h"

typedef struct list {
    co_coro_t *head, *tail;
} list_t;

struct co_group {
    co__hub_t *hub;
    size_t limit;
    size_t nrunning, ndone;
    list_t running, done;
    co__waitq_t slot_waiters; /* co_group_spawn at the limit */
    co__waitq_t done_waiters; /* co_group_next / co_group_join */
};

static void list_push(list_t *l, co_coro_t *c)
{
    c->gnext = NULL;
    c->gprev = l->tail;
    if (l->tail)
        l->tail->gnext = c;
    else
        l->head = c;
    l->tail = c;
}

static void list_remove(list_t *l, co_coro_t *c)
{
    if (c->gprev)
        c->gprev->gnext = c->gnext;
    else
        l->head = c->gnext;
    if (c->gnext)
        c->gnext->gprev = c->gprev;
    else
        l->tail = c->gprev;
    c->gprev = c->gnext = NULL;
}

static void check_owner(const co_group_t *g, const char *fn)
{
    CO__CHECK(g != NULL, "%s: NULL group", fn);
    CO__CHECK(g->hub == co__tls.hub, "%s: the group belongs to another thread", fn);
}

co_group_t *co_group_new(size_t limit)
{
    co_group_t *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->hub = co__hub();
    g->limit = limit;
    return g;
}

void co_group_free(co_group_t *g)
{
    if (!g) return;
    check_owner(g, "co_group_free");
    CO__CHECK(g->nrunning + g->ndone == 0,
              "co_group_free: the group still has %zu member(s); join, take or detach them first",
              g->nrunning + g->ndone);
    CO__CHECK(!g->slot_waiters.head && !g->done_waiters.head, "co_group_free: coroutines are waiting on the group");
    free(g);
}

co_coro_t *co_group_spawn_at(co_group_t *g, co_fn fn, void *arg, int64_t deadline, const co_spawn_opts_t *opts,
                             const char *file, int line)
{
    check_owner(g, "co_group_spawn");
    co__hub_t *h = g->hub;
    while (g->limit && g->nrunning >= g->limit) {
        if (deadline == 0) return errno = EAGAIN, NULL;
        co__wnode_t node;
        co__waitq_push(&g->slot_waiters, &node, h->current);
        int r = co__park(h, deadline, "co_group_spawn (waiting for a slot)", true);
        co__waitq_remove(&g->slot_waiters, &node);
        if (r) return errno = r, NULL;
    }
    co_coro_t *c = co_spawn_at(fn, arg, opts, file, line);
    if (!c) return NULL;
    c->group = g;
    list_push(&g->running, c);
    g->nrunning++;
    return c;
}

void co__group_member_done(co_coro_t *c)
{
    co_group_t *g = c->group;
    list_remove(&g->running, c);
    g->nrunning--;
    list_push(&g->done, c);
    g->ndone++;
    co__waitq_wake(g->hub, &g->slot_waiters, 1);
    co__waitq_wake(g->hub, &g->done_waiters, SIZE_MAX);
}

void co__group_member_leave(co_coro_t *c)
{
    co_group_t *g = c->group;
    CO__CHECK(g->hub == co__tls.hub, "coroutine #%" PRIu64 " of a group was joined or detached from another thread",
              c->id);
    if (c->state == CO__C_DONE) {
        list_remove(&g->done, c);
        g->ndone--;
    } else {
        list_remove(&g->running, c);
        g->nrunning--;
        co__waitq_wake(g->hub, &g->slot_waiters, 1);
    }
    c->group = NULL;
}

/* Parks until a member finishes.  0 or an errno value. */
static int wait_member(co_group_t *g, int64_t deadline, const char *what)
{
    co__wnode_t node;
    co__waitq_push(&g->done_waiters, &node, g->hub->current);
    int r = co__park(g->hub, deadline, what, true);
    co__waitq_remove(&g->done_waiters, &node);
    return r;
}

int co_group_join(co_group_t *g, int64_t deadline)
{
    check_owner(g, "co_group_join");
    while (g->nrunning > 0) {
        int r = wait_member(g, deadline, "co_group_join");
        if (r) return errno = r, -1;
    }
    while (g->done.head) {
        co_coro_t *c = g->done.head;
        co_join(c, 0, NULL); /* finished: cannot fail; leaves the group */
    }
    return 0;
}

void co_group_kill(co_group_t *g)
{
    check_owner(g, "co_group_kill");
    for (co_coro_t *c = g->running.head; c; c = c->gnext) co_kill(c);
}

co_coro_t *co_group_next(co_group_t *g, int64_t deadline)
{
    check_owner(g, "co_group_next");
    while (!g->done.head) {
        if (g->nrunning == 0) return errno = ENOENT, NULL;
        int r = wait_member(g, deadline, "co_group_next");
        if (r) return errno = r, NULL;
    }
    co_coro_t *c = g->done.head;
    list_remove(&g->done, c);
    g->ndone--;
    c->group = NULL;
    return c;
}

size_t co_group_size(const co_group_t *g)
{
    return g->nrunning + g->ndone;
}

size_t co_group_running(const co_group_t *g)
{
    return g->nrunning;
}
