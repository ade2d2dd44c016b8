/* Semaphores, events, conditions and barriers: each a spin-locked state
 * plus a FIFO of waiters, woken through wait.c's protocol.  A unit, a
 * notification or a barrier round is handed to a waiter directly (under
 * the spin lock), so a waiter that times out at the same moment either
 * leaves empty-handed or returns with what it was given. */
#include <errno.h>

#include "lock.h"
#include "wait.h"

/* ----------------------------------------------------------- semaphore */

void co_sem_init(co_sem_t *s, long value, bool bounded)
{
    CO__CHECK(value >= 0, "co_sem_init: negative value %ld", value);
    *s = (co_sem_t)CO_SEM_INIT(value);
    s->_bounded = bounded;
}

static int busy_if_waited(unsigned *spin, const co__list_t *waiters)
{
    co__spin_lock(spin);
    bool busy = !co__list_empty(waiters);
    co__spin_unlock(spin);
    return busy ? (errno = EBUSY, -1) : 0;
}

int co_sem_destroy(co_sem_t *s)
{
    return busy_if_waited(&s->_spin, &s->_waiters);
}

int co_sem_acquire(co_sem_t *s, int64_t deadline)
{
    co__spin_lock(&s->_spin);
    if (s->_value > 0 && co__list_empty(&s->_waiters)) {
        __atomic_store_n(&s->_value, s->_value - 1, __ATOMIC_RELAXED);
        co__spin_unlock(&s->_spin);
        return 0;
    }
    if (deadline == 0) {
        co__spin_unlock(&s->_spin);
        return errno = EAGAIN, -1;
    }
    co__waiter_t wl_, *w;
    w = co__waiter_get(&wl_);
    int r = co__wait_in(w, &s->_spin, &s->_waiters, deadline, "co_sem_acquire", s, CO__BY_THREADS);
    return r ? (errno = r, -1) : 0; /* 0: a unit was handed over */
}

int co_sem_release(co_sem_t *s)
{
    co__wlist_t wl = {0};
    co__spin_lock(&s->_spin);
    if (s->_bounded && s->_value + 1 > s->_initial) {
        co__spin_unlock(&s->_spin);
        return errno = EINVAL, -1;
    }
    if (!co__list_empty(&s->_waiters))
        co__grant(&s->_waiters, co__waiters_first(&s->_waiters), 0, NULL, &wl);
    else
        __atomic_store_n(&s->_value, s->_value + 1, __ATOMIC_RELAXED);
    co__spin_unlock(&s->_spin);
    co__wake_list(&wl);
    return 0;
}

long co_sem_value(const co_sem_t *s)
{
    return __atomic_load_n(&s->_value, __ATOMIC_RELAXED);
}

/* --------------------------------------------------------------- event */

void co_event_init(co_event_t *e)
{
    *e = (co_event_t)CO_EVENT_INIT;
}

int co_event_destroy(co_event_t *e)
{
    return busy_if_waited(&e->_spin, &e->_waiters);
}

void co_event_set(co_event_t *e)
{
    co__wlist_t wl = {0};
    co__spin_lock(&e->_spin);
    __atomic_store_n(&e->_set, 1, __ATOMIC_RELEASE);
    while (!co__list_empty(&e->_waiters)) co__grant(&e->_waiters, co__waiters_first(&e->_waiters), 0, NULL, &wl);
    co__spin_unlock(&e->_spin);
    co__wake_list(&wl);
}

void co_event_clear(co_event_t *e)
{
    co__spin_lock(&e->_spin);
    __atomic_store_n(&e->_set, 0, __ATOMIC_RELAXED);
    co__spin_unlock(&e->_spin);
}

bool co_event_is_set(const co_event_t *e)
{
    return __atomic_load_n(&e->_set, __ATOMIC_ACQUIRE) != 0;
}

int co_event_wait(co_event_t *e, int64_t deadline)
{
    if (__atomic_load_n(&e->_set, __ATOMIC_ACQUIRE)) return 0;
    if (deadline == 0) return errno = ETIMEDOUT, -1;
    co__spin_lock(&e->_spin);
    if (e->_set) {
        co__spin_unlock(&e->_spin);
        return 0;
    }
    co__waiter_t wl_, *w;
    w = co__waiter_get(&wl_);
    int r = co__wait_in(w, &e->_spin, &e->_waiters, deadline, "co_event_wait", e, CO__BY_THREADS);
    return r ? (errno = r, -1) : 0;
}

/* ----------------------------------------------------------- condition */

void co_cond_init(co_cond_t *c, co_lock_t *lock)
{
    CO__CHECK(lock != NULL, "co_cond_init: NULL lock");
    *c = (co_cond_t)CO_COND_INIT(lock);
}

int co_cond_destroy(co_cond_t *c)
{
    return busy_if_waited(&c->_spin, &c->_waiters);
}

int co_cond_wait(co_cond_t *c, int64_t deadline)
{
    CO__CHECK(c->_lock != NULL, "co_cond_wait: condition %p has no lock (not initialised?)", (void *)c);
    CO__CHECK(co__lock_owned(c->_lock), "co_cond_wait: the caller does not hold the condition's lock");
    co__waiter_t wl_, *w;
    co__spin_lock(&c->_spin);
    w = co__waiter_get(&wl_);
    co__waiters_push(&c->_waiters, w);
    co__spin_unlock(&c->_spin);
    /* Queued first, then the lock goes: a notify in between finds us. */
    co_lock_release(c->_lock);
    co__spin_lock(&c->_spin);
    int r = co__wait_block(w, &c->_spin, &c->_waiters, deadline, "co_cond_wait", c, CO__BY_THREADS, true);
    if (r) co__spin_unlock(&c->_spin);
    co__lock_retake(c->_lock);
    return r ? (errno = r, -1) : 0;
}

int co_cond_wait_for(co_cond_t *c, bool (*pred)(void *arg), void *arg, int64_t deadline)
{
    while (!pred(arg)) {
        if (co_cond_wait(c, deadline) < 0) {
            int e = errno;
            if (pred(arg)) return 0;
            return errno = e, -1;
        }
    }
    return 0;
}

size_t co_cond_notify(co_cond_t *c, size_t n)
{
    co__wlist_t wl = {0};
    size_t woken = 0;
    co__spin_lock(&c->_spin);
    while (woken < n && !co__list_empty(&c->_waiters)) {
        co__grant(&c->_waiters, co__waiters_first(&c->_waiters), 0, NULL, &wl);
        woken++;
    }
    co__spin_unlock(&c->_spin);
    co__wake_list(&wl);
    return woken;
}

size_t co_cond_notify_all(co_cond_t *c)
{
    return co_cond_notify(c, SIZE_MAX);
}

/* ------------------------------------------------------------- barrier */

void co_barrier_init(co_barrier_t *b, unsigned parties)
{
    CO__CHECK(parties >= 1, "co_barrier_init: a barrier needs at least one party");
    *b = (co_barrier_t)CO_BARRIER_INIT(parties);
}

int co_barrier_destroy(co_barrier_t *b)
{
    return busy_if_waited(&b->_spin, &b->_waiters);
}

/* Fails every waiter with EPIPE.  Spin lock held. */
static void barrier_break(co_barrier_t *b, co__wlist_t *wl, bool broken)
{
    while (!co__list_empty(&b->_waiters)) co__grant(&b->_waiters, co__waiters_first(&b->_waiters), EPIPE, NULL, wl);
    __atomic_store_n(&b->_count, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&b->_broken, broken, __ATOMIC_RELAXED);
}

int co_barrier_wait(co_barrier_t *b, int64_t deadline)
{
    CO__CHECK(b->_parties >= 1, "co_barrier_wait: barrier %p was not initialised", (void *)b);
    co__wlist_t wl = {0};
    co__spin_lock(&b->_spin);
    if (b->_broken) {
        co__spin_unlock(&b->_spin);
        return errno = EPIPE, -1;
    }
    unsigned index = b->_count;
    __atomic_store_n(&b->_count, index + 1, __ATOMIC_RELAXED);
    if (index + 1 == b->_parties) { /* the last one: release the round */
        while (!co__list_empty(&b->_waiters)) co__grant(&b->_waiters, co__waiters_first(&b->_waiters), 0, NULL, &wl);
        __atomic_store_n(&b->_count, 0, __ATOMIC_RELAXED);
        co__spin_unlock(&b->_spin);
        co__wake_list(&wl);
        return (int)index;
    }
    co__waiter_t wl_, *w;
    w = co__waiter_get(&wl_);
    w->key = index;
    co__waiters_push(&b->_waiters, w);
    int r = co__wait_block(w, &b->_spin, &b->_waiters, deadline, "co_barrier_wait", b, CO__BY_THREADS, true);
    if (r == 0) return w->result ? (errno = w->result, -1) : (int)w->key;
    /* Our wait failed: nobody else can complete this round. */
    barrier_break(b, &wl, true);
    co__spin_unlock(&b->_spin);
    co__wake_list(&wl);
    return errno = r, -1;
}

void co_barrier_reset(co_barrier_t *b)
{
    co__wlist_t wl = {0};
    co__spin_lock(&b->_spin);
    barrier_break(b, &wl, false);
    co__spin_unlock(&b->_spin);
    co__wake_list(&wl);
}

void co_barrier_abort(co_barrier_t *b)
{
    co__wlist_t wl = {0};
    co__spin_lock(&b->_spin);
    barrier_break(b, &wl, true);
    co__spin_unlock(&b->_spin);
    co__wake_list(&wl);
}

unsigned co_barrier_waiting(const co_barrier_t *b)
{
    return __atomic_load_n(&b->_count, __ATOMIC_RELAXED);
}

bool co_barrier_broken(const co_barrier_t *b)
{
    return __atomic_load_n(&b->_broken, __ATOMIC_RELAXED) != 0;
}
