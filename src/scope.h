/* Timeout scopes (scope.c; gevent.Timeout, Trio's move_on_after): a
 * deadline for every blocking call of one coroutine, or of a thread's own
 * stack, while the scope lasts.  The hook in the core is this one
 * function: the effective deadline of a wait is the earlier of its own
 * and the caller's innermost scope (co__park, and the waits of a thread
 * without a hub, call it). */
#ifndef COGENT_SCOPE_H
#define COGENT_SCOPE_H

#include "core.h"
#include "coro.h"
#include "fiber.h"
#include "hub.h"

/* The scope deadline of the thread's own stack (its main coroutine, or
 * the thread itself while it has no hub); -1: none. */
extern CO__TLS __thread int64_t co__thread_scope;

/* The earlier of two deadlines (-1 is none; other negatives have passed). */
static inline int64_t co__deadline_min(int64_t a, int64_t b)
{
    if (a == -1) return b;
    if (b == -1) return a;
    return a < b ? a : b;
}

/* co's innermost scope deadline, -1 if none.  A spawned coroutine's is in
 * its record, valid only while tagged with its own id: a recycled record
 * still carries an earlier coroutine's (no reset at spawn needed). */
static inline int64_t co__scope_of(const co_coro_t *co)
{
    if (co->is_main) return co__thread_scope;
    return co->scope_id == co->id ? co->scope_deadline : -1;
}

/* The deadline a wait of the caller (the hub's running coroutine, or the
 * thread) really has. */
static inline int64_t co__scoped(int64_t deadline)
{
    co__hub_t *h = co__tls.hub;
    return co__deadline_min(deadline, h ? co__scope_of(h->current) : co__thread_scope);
}

#endif
