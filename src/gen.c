/* Generators: send / next / yield / close on a fiber.
 *
 * The generator's fiber takes the caller of send as its parent for the
 * duration of each resume, so a yield is a switch to whoever asked. */
#include <errno.h>
#include <stdlib.h>

#include "fiber.h"
#include "switch.h"

struct co_gen {
    co_fiber_t fiber; /* first: co_fiber_t* <-> co_gen_t* */
    co_gen_fn fn;
    void *arg;
    void *result;
    bool closing;
    bool finished;
};

static void *gen_entry(co_fiber_t *f, void *first)
{
    (void)first; /* always NULL: checked by co_gen_send */
    co_gen_t *g = (co_gen_t *)f;
    g->result = g->fn(g, g->arg);
    g->finished = true;
    return g->result;
}

co_gen_t *co_gen_new(co_gen_fn fn, void *arg, const co_gen_opts_t *opts)
{
    co__thread();
    if (!fn) return errno = EINVAL, NULL;
    co_gen_t *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->fiber.kind = CO__K_GEN;
    if (co__fiber_init(&g->fiber, gen_entry, NULL, opts ? opts->stack_size : 0) < 0) {
        free(g);
        return NULL;
    }
    g->fn = fn;
    g->arg = arg;
    return g;
}

static void *resume(co_gen_t *g, void *in)
{
    co__thread_t *t = co__thread();
    CO__CHECK(g->fiber.owner == t, "co_gen_send: generator %p belongs to another thread (generators never move)",
              (void *)g);
    CO__CHECK(t->cur->stack.mode != CO__STACK_SHARED,
              "co_gen_send: called from a compact coroutine, whose stack moves while it is switched away: "
              "generators need coroutines with stacks of their own (docs/stacks.md)");
    for (co_fiber_t *p = t->cur; p; p = p->parent)
        CO__CHECK(p != &g->fiber, "co_gen_send: generator %p is already running (resumed from inside itself)",
                  (void *)g);
    g->fiber.parent = t->cur;
    return co__fiber_transfer(t->cur, &g->fiber, in, false);
}

int co_gen_send(co_gen_t *g, void *in, void **out)
{
    CO__CHECK(g != NULL, "co_gen_send: NULL generator");
    if (g->finished) return errno = EPIPE, -1;
    if (g->fiber.state == CO__F_NEW && in != NULL) return errno = EINVAL, -1;
    void *v = resume(g, in);
    if (out) *out = v;
    return g->finished ? 0 : 1;
}

int co_gen_next(co_gen_t *g, void **out)
{
    return co_gen_send(g, NULL, out);
}

int co_gen_yield(co_gen_t *g, void *out, void **in)
{
    CO__CHECK(g != NULL, "co_gen_yield: NULL generator");
    CO__CHECK(co__tls.cur == &g->fiber, "co_gen_yield: not called from inside generator %p", (void *)g);
    if (g->closing) return errno = ECANCELED, -1;
    void *v = co__fiber_transfer(&g->fiber, g->fiber.parent, out, false);
    if (g->closing) return errno = ECANCELED, -1;
    if (in) *in = v;
    return 0;
}

int co_gen_close(co_gen_t *g)
{
    CO__CHECK(g != NULL, "co_gen_close: NULL generator");
    if (g->finished) return errno = EPIPE, -1;
    g->closing = true;
    if (g->fiber.state == CO__F_NEW) {
        g->finished = true;
        co__fiber_release(&g->fiber);
        return 0;
    }
    resume(g, NULL); /* its yield fails with ECANCELED; it runs to its end */
    return 0;
}

bool co_gen_finished(const co_gen_t *g)
{
    return g->finished;
}

void co_gen_free(co_gen_t *g)
{
    if (!g) return;
    if (!g->finished) co_gen_close(g);
    co__fiber_release(&g->fiber);
    free(g);
}
