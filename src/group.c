/* Groups: gevent's Pool and asyncio's as_completed over coroutines.
 *
 * Members are in one of two intrusive lists: `running`, or `done` in the
 * order they finished.  A slot is held by a running member only. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "coro.h"
#include "hub.h"

struct co_group {
    co__hub_t *hub;
    size_t limit;
    size_t nrunning, ndone;
    co__list_t running, done; /* members, through co_coro_t.gnode */
    co__parkq_t slot_waiters; /* co_group_spawn at the limit */
    co__parkq_t done_waiters; /* co_group_next / co_group_join */
    co_spawn_opts_t spawn;    /* members' options when they bring none (name copied) */
};

static co_coro_t *member(co__lnode_t *n)
{
    return n ? CO__CONTAINER(n, co_coro_t, gnode) : NULL;
}

static void check_owner(const co_group_t *g, const char *fn)
{
    CO__CHECK(g != NULL, "%s: NULL group", fn);
    CO__CHECK(g->hub == co__tls.hub, "%s: the group belongs to another thread", fn);
}

co_group_t *co_group_new(size_t limit)
{
    return co_group_new_with(&(co_group_opts_t){.limit = limit});
}

co_group_t *co_group_new_with(const co_group_opts_t *opts)
{
    co_group_opts_t o = opts ? *opts : (co_group_opts_t){0};
    if (!co__stack_size_ok(o.spawn.stack_size)) return errno = EINVAL, NULL;
    co_group_t *g = calloc(1, sizeof *g);
    if (!g) return errno = ENOMEM, NULL;
    g->hub = co__hub();
    g->limit = o.limit;
    g->spawn = o.spawn;
    if (o.spawn.name && !(g->spawn.name = strdup(o.spawn.name))) {
        free(g);
        return errno = ENOMEM, NULL;
    }
    return g;
}

void co_group_free(co_group_t *g)
{
    if (!g) return;
    check_owner(g, "co_group_free");
    CO__CHECK(g->nrunning + g->ndone == 0,
              "co_group_free: the group still has %zu member(s); join, take or detach them first",
              g->nrunning + g->ndone);
    CO__CHECK(co__list_empty(&g->slot_waiters.list) && co__list_empty(&g->done_waiters.list),
              "co_group_free: coroutines are waiting on the group");
    free((char *)g->spawn.name);
    free(g);
}

co_coro_t *co_group_spawn_at(co_group_t *g, co_fn fn, void *arg, int64_t deadline, const co_spawn_opts_t *opts,
                             const char *file, int line)
{
    check_owner(g, "co_group_spawn");
    co__hub_t *h = g->hub;
    while (g->limit && g->nrunning >= g->limit) {
        if (deadline == 0) return errno = EAGAIN, NULL;
        co__parknode_t local, *node = co__parknode_get(&local, h->current);
        co__parkq_push(&g->slot_waiters, node, h->current);
        h->current->wait_obj = g;
        int r = co__park(h, deadline, "co_group_spawn (waiting for a slot)", CO__BY_HUB, true);
        h->current->wait_obj = NULL;
        bool woken = !node->linked; /* a slot came free for us */
        co__parkq_remove(&g->slot_waiters, node);
        if (r) {
            /* Killed or timed out in the same instant: the slot goes to
             * the next waiter instead of being lost with us. */
            if (woken) co__parkq_wake(h, &g->slot_waiters, 1);
            return errno = r, NULL;
        }
    }
    co_coro_t *c = co_spawn_at(fn, arg, opts ? opts : &g->spawn, file, line);
    if (!c) return NULL;
    c->group = g;
    co__list_push(&g->running, &c->gnode);
    g->nrunning++;
    return c;
}

void co__group_member_done(co_coro_t *c)
{
    co_group_t *g = c->group;
    co__list_remove(&g->running, &c->gnode);
    g->nrunning--;
    co__list_push(&g->done, &c->gnode);
    g->ndone++;
    co__parkq_wake(g->hub, &g->slot_waiters, 1);
    co__parkq_wake(g->hub, &g->done_waiters, SIZE_MAX);
}

void co__group_member_leave(co_coro_t *c)
{
    co_group_t *g = c->group;
    CO__CHECK(g->hub == co__tls.hub, "coroutine #%" PRIu64 " of a group was joined or detached from another thread",
              c->id);
    if (c->state == CO__C_DONE) {
        co__list_remove(&g->done, &c->gnode);
        g->ndone--;
    } else {
        co__list_remove(&g->running, &c->gnode);
        g->nrunning--;
        co__parkq_wake(g->hub, &g->slot_waiters, 1);
        /* Detached while running: one fewer to wait for, maybe the last
         * (co_group_next then says ENOENT, co_group_join is done). */
        co__parkq_wake(g->hub, &g->done_waiters, SIZE_MAX);
    }
    c->group = NULL;
}

/* Parks until a member finishes.  0 or an errno value. */
static int wait_member(co_group_t *g, int64_t deadline, const char *what)
{
    co_coro_t *self = g->hub->current;
    co__parknode_t local, *node = co__parknode_get(&local, self);
    co__parkq_push(&g->done_waiters, node, self);
    self->wait_obj = g;
    int r = co__park(g->hub, deadline, what, CO__BY_HUB, true);
    self->wait_obj = NULL;
    co__parkq_remove(&g->done_waiters, node);
    return r;
}

int co_group_join(co_group_t *g, int64_t deadline)
{
    check_owner(g, "co_group_join");
    while (g->nrunning > 0) {
        int r = wait_member(g, deadline, "co_group_join");
        if (r) return errno = r, -1;
    }
    while (!co__list_empty(&g->done)) co_join(member(g->done.head), 0, NULL); /* finished: leaves the group */
    return 0;
}

void co_group_kill(co_group_t *g)
{
    check_owner(g, "co_group_kill");
    for (co__lnode_t *n = g->running.head; n; n = n->next) co_kill(member(n));
}

co_coro_t *co_group_next(co_group_t *g, int64_t deadline)
{
    check_owner(g, "co_group_next");
    while (co__list_empty(&g->done)) {
        if (g->nrunning == 0) return errno = ENOENT, NULL;
        int r = wait_member(g, deadline, "co_group_next");
        if (r) return errno = r, NULL;
    }
    co_coro_t *c = member(g->done.head);
    co__list_remove(&g->done, &c->gnode);
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
