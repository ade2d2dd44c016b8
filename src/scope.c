/* Timeout scopes (docs/coroutine.md): the public side.  A scope only
 * records a deadline for the calling coroutine (or the thread's own
 * stack); every wait then takes the earlier of its own deadline and that
 * one (scope.h, called from co__park and the waits of threads without a
 * hub), and so fails with ETIMEDOUT once it passes, whatever the call:
 * cogent's own, or a libc call the patch library turned into one, inside
 * a library that knows nothing of it. */
#include "scope.h"

CO__TLS __thread int64_t co__thread_scope = -1;

/* The calling context's scope deadline, and where to store it. */
static int64_t *slot(co_coro_t **tag)
{
    co__hub_t *h = co__tls.hub;
    co_coro_t *co = h ? h->current : NULL;
    if (!co || co->is_main) {
        *tag = NULL;
        return &co__thread_scope;
    }
    if (co->scope_id != co->id) { /* first scope of this coroutine */
        co->scope_id = co->id;
        co->scope_deadline = -1;
    }
    *tag = co;
    return &co->scope_deadline;
}

void co_scope_enter(co_scope_t *s, int64_t deadline)
{
    CO__CHECK(s != NULL, "co_scope_enter: NULL scope");
    co_coro_t *co;
    int64_t *d = slot(&co);
    s->deadline = deadline;
    s->_outer = *d;
    s->_effective = co__deadline_min(*d, deadline);
    s->_owner = co ? co_id(co) : 0;
    *d = s->_effective;
}

bool co_scope_leave(co_scope_t *s)
{
    CO__CHECK(s != NULL, "co_scope_leave: NULL scope");
    co_coro_t *co;
    int64_t *d = slot(&co);
    CO__CHECK((co ? co_id(co) : 0) == s->_owner && *d == s->_effective,
              "co_scope_leave: not the innermost scope of the calling coroutine (scopes end in reverse order)");
    *d = s->_outer;
    return s->deadline != -1 && s->deadline <= co_now();
}

int64_t co_scope_deadline(void)
{
    return co__scoped(-1);
}
