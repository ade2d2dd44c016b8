/* The waiting protocol (wait.c): how a coroutine of any hub, or a plain
 * thread without one, waits on an object shared between threads (locks,
 * semaphores, events, conditions, barriers, queues, fds, offloaded jobs)
 * and how whoever changes the object hands it what it waited for.
 *
 * A spin lock guards each object's state for a few dozen instructions and
 * is never held across a switch; waiters queue as co__waiter_t nodes on
 * their own stacks, on the object's co__list_t.
 *
 * Protocol.  A waiter, holding the object's spin lock, fills a node
 * (co__waiter_prepare), appends it and calls co__wait_block, which drops
 * the spin lock and parks (a coroutine) or sleeps on a futex (a thread
 * without a hub).  A waker, holding the spin lock, unlinks nodes with
 * co__grant (setting what the waiter gets: a result and an item) onto a
 * local wake list, drops the spin lock, then calls co__wake_list.  A
 * waiter that times out or is cancelled retakes the spin lock: still
 * linked, it leaves empty-handed; already granted, it takes what it was
 * given (a wake-up that won the race is never lost). */
#ifndef COGENT_WAIT_H
#define COGENT_WAIT_H

#include "core.h"
#include "futex.h"
#include "helper.h"
#include "hub.h"
#include "list.h"

/* The contended half of co__spin_lock: spins, then yields the CPU. */
void co__spin_wait(unsigned *l);
static inline void co__spin_lock(unsigned *l)
{
    if (co__single_threaded()) {
        __atomic_store_n(l, 1, __ATOMIC_RELAXED);
        return;
    }
    if (CO__UNLIKELY(__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))) co__spin_wait(l);
}
static inline void co__spin_unlock(unsigned *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

/* A waiter's `done` word (also the futex of a thread without a hub). */
enum { W_WAITING = 0, W_DONE = 1, W_SLEEPING = 2 };

typedef struct co__waiter {
    co__lnode_t node;  /* the object's list (spin lock held to touch) */
    co__snode_t wnode; /* the waker's wake list */
    co_coro_t *co;     /* NULL: a thread without a hub (futex) */
    co__hub_t *hub;
    uint64_t seq;   /* the park a same-hub or message wake ends */
    unsigned done;  /* atomic: set by the waker once granted */
    bool linked;    /* on the object's list */
    bool remote;    /* granted from another thread's hub: a message comes */
    bool delivered; /* that message was handled (the waiter's thread) */
    int result;     /* what the waker granted: 0 or an errno */
    void *item;     /* what the waker handed over (queues) */
    int64_t key;    /* the waiter's own data (priority, index...) */
    int wake_fd;    /* a thread without a hub polling an fd: written when granted (-1: none) */
    co__msg_t msg;  /* the grant message of a remote wake */
} co__waiter_t;

/* A wake list: granted waiters, woken after the spin lock is dropped. */
typedef co__fifo_t co__wlist_t;

static inline co__waiter_t *co__waiter_of(co__lnode_t *n)
{
    return CO__CONTAINER(n, co__waiter_t, node);
}
/* The oldest waiter on l, or NULL.  Spin lock held. */
static inline co__waiter_t *co__waiters_first(const co__list_t *l)
{
    return l->head ? co__waiter_of(l->head) : NULL;
}

/* (Inline: these run on every blocking wait and every hand-off.) */
/* Fills w for the calling coroutine or thread.  Spin lock held. */
static inline void co__waiter_prepare(co__waiter_t *w)
{
    co__hub_t *h = co__tls.hub;
    w->co = h ? h->current : NULL;
    w->hub = h;
    w->seq = h ? h->current->park_seq : 0;
    __atomic_store_n(&w->done, W_WAITING, __ATOMIC_RELAXED);
    w->remote = false;
    w->delivered = false;
    w->result = 0;
    w->item = NULL;
    w->wake_fd = -1;
}
/* The waiter node of the calling coroutine or thread, prepared: `local`
 * (on the caller's stack) unless the caller is a compact coroutine, whose
 * stack moves while it waits: then the node in its record (compact.c).
 * Spin lock held. */
co__waiter_t *co__compact_waiter(co_coro_t *c);
/* Is the caller a compact coroutine?  Its stack moves while it waits:
 * anything others reach while it waits belongs on the heap. */
static inline bool co__compact_running(void)
{
    co__hub_t *h = co__tls.hub;
    return h && CO__UNLIKELY(h->shared != NULL) && h->current->compact;
}

static inline co__waiter_t *co__waiter_get(co__waiter_t *local)
{
    co__hub_t *h = co__tls.hub;
    co__waiter_t *w =
        h && CO__UNLIKELY(h->shared != NULL) && h->current->compact ? co__compact_waiter(h->current) : local;
    co__waiter_prepare(w);
    return w;
}

/* Appends w to the object's list.  Spin lock held. */
static inline void co__waiters_push(co__list_t *l, co__waiter_t *w)
{
    co__list_push(l, &w->node);
    w->linked = true;
}
/* Unlinks w.  Spin lock held. */
static inline void co__waiters_remove(co__list_t *l, co__waiter_t *w)
{
    co__list_remove(l, &w->node);
    w->linked = false;
}
/* Unlinks w and gives it what it gets.  Spin lock held.  A coroutine of
 * the caller's own hub is made runnable at once (no other thread is
 * involved, and it cannot run before the caller switches away, by when
 * the spin lock is dropped); any other waiter goes on the wake list `wl`
 * and is woken by co__wake_list.  (Waking the same-hub ones here is one
 * pass over the waiters instead of two: a million released at once have
 * their nodes on a million cold stacks.) */
static inline void co__grant(co__list_t *l, co__waiter_t *w, int result, void *item, co__wlist_t *wl)
{
    co__waiters_remove(l, w);
    w->result = result;
    w->item = item;
    /* Decided now, under the spin lock, so that a waiter timing out knows
     * whether a message is on its way. */
    co__hub_t *h = co__tls.hub;
    w->remote = w->co && w->hub != h;
    if (w->co && !w->remote) {
        __atomic_store_n(&w->done, W_DONE, __ATOMIC_RELEASE);
        co__wake(h, w->co, w->seq, 0);
        return;
    }
    co__fifo_push(wl, &w->wnode);
}

/* Wakes what co__grant left on the list: waiters of other threads and
 * hubs.  Spin lock NOT held.  Switches: no. */
void co__wake_list_slow(co__wlist_t *wl);
static inline void co__wake_list(co__wlist_t *wl)
{
    if (wl->head) co__wake_list_slow(wl);
}
/* Blocks the caller, whose node w is linked on l, after dropping *spin.
 * Returns 0 when granted (w->result and w->item say what; spin lock not
 * held), or ETIMEDOUT / ECANCELED / EDEADLK / ENOMEM with w unlinked and
 * the spin lock HELD, so that the caller can repair the object's state.
 * `what` names the call for dumps; `obj` is the object; `waker` says who
 * can grant it (CO__BY_*): with CO__BY_THREADS and no deadline, a thread
 * without a hub that is the only thread gets EDEADLK at once (nothing
 * could grant it).  A thread without a hub is not cancellable.
 * Switches: yes. */
int co__wait_block(co__waiter_t *w, unsigned *spin, co__list_t *l, int64_t deadline, const char *what, const void *obj,
                   int waker, bool cancellable);
/* The common case of the above: appends w (prepared by the caller, with
 * any item or key it carries), blocks cancellably, and drops the spin lock
 * whatever happens.  0 when granted, else the errno of the failed wait
 * (w unlinked, the object untouched).  Switches: yes. */
static inline int co__wait_in(co__waiter_t *w, unsigned *spin, co__list_t *l, int64_t deadline, const char *what,
                              const void *obj, int waker)
{
    co__waiters_push(l, w);
    int r = co__wait_block(w, spin, l, deadline, what, obj, waker, true);
    if (r) co__spin_unlock(spin);
    return r;
}
/* The caller, granted while its wait was ending, waits for the grant's
 * message.  Switches: yes. */
void co__await_grant(co__waiter_t *w);

#endif
