/* Actors (actor.c): who owns a lock.  One record per coroutine that ever
 * took a lock, one per thread that took one without a hub.  Records are
 * pooled and never freed, so a report that follows a stale owner pointer
 * reads a record, not freed memory. */
#ifndef COGENT_ACTOR_H
#define COGENT_ACTOR_H

#include "core.h"
#include "hub.h"

typedef struct co__actor {
    struct co__actor *next; /* free pool */
    co_coro_t *co;          /* NULL: a thread */
    pid_t tid;
    const void *blocked_on; /* atomic: the lock it waits for, no deadline */
    const char *wfile;      /* where it waits */
    int wline;
    void *held;     /* lockdep.c: locks held, in order */
    size_t nheld;   /* locks it owns (touched by itself only) */
    bool abandoned; /* ended while owning locks: never reused */
} co__actor_t;

/* The calling coroutine's (or hub-less thread's) actor; NULL only when
 * out of memory.  The first call of each makes the record; a thread's
 * record moves to its main coroutine when the thread gets a hub. */
co__actor_t *co__actor_self_slow(void);
static inline co__actor_t *co__actor_self(void)
{
    co__hub_t *h = co__tls.hub;
    co__actor_t *a = h ? h->current->actor : co__tls.actor;
    return CO__LIKELY(a != NULL) ? a : co__actor_self_slow();
}
/* Returns an actor to the pool when its coroutine or thread ends; one
 * that still owns locks is reported and kept (those locks stay held).
 * NULL is a no-op. */
void co__actor_release(co__actor_t *a);
/* "coroutine 'name' (#id) of thread T" or "thread T"; buf >= 96 bytes. */
const char *co__actor_describe(const co__actor_t *a, char *buf, size_t n);

/* The fork path: the pool lock is held across fork(). */
void co__actor_fork_prepare(void);
void co__actor_fork_parent(void);
void co__actor_fork_child(void);

#endif
