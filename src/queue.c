/* Queues: FIFO (a ring), LIFO (a stack) and priority (a binary heap, FIFO
 * among equals by a sequence number), bounded or not, with close and
 * joinable task counting.
 *
 * Hand-offs keep cancellation exact.  A put that finds a getter waiting
 * gives it the item directly (the queue is empty then); a get that makes
 * room moves the oldest waiting putter's item in.  Both happen under the
 * spin lock, so a waiter that is cancelled or times out either leaves
 * without having touched the queue, or returns success with the hand-off
 * done: no item is lost or duplicated, none is half put. */
#include <errno.h>
#include <stdlib.h>

#include "wait.h"

typedef struct qent {
    void *item;
    int64_t prio;
    uint64_t seq;
} qent_t;

struct co_queue {
    unsigned spin;
    co_queue_kind_t kind;
    size_t maxsize;
    int (*cmp)(const void *a, const void *b, void *ctx);
    void *cmp_ctx;
    unsigned closed;   /* atomic for readers */
    size_t n;          /* atomic for readers */
    size_t unfinished; /* atomic for readers */
    /* storage: a ring of items (FIFO, LIFO uses it as a stack) or a heap */
    void **ring;
    qent_t *heap;
    size_t cap, first;
    uint64_t seq;
    co__list_t getters;
    co__list_t putters;
    co__list_t joiners;
};

co_queue_t *co_queue_new(const co_queue_opts_t *opts)
{
    co_queue_opts_t o = opts ? *opts : (co_queue_opts_t){0};
    if (o.kind != CO_QUEUE_FIFO && o.kind != CO_QUEUE_LIFO && o.kind != CO_QUEUE_PRIORITY) return errno = EINVAL, NULL;
    if (o.cmp && o.kind != CO_QUEUE_PRIORITY) return errno = EINVAL, NULL;
    co_queue_t *q = calloc(1, sizeof *q);
    if (!q) return errno = ENOMEM, NULL;
    q->kind = o.kind;
    q->maxsize = o.maxsize;
    q->cmp = o.cmp;
    q->cmp_ctx = o.cmp_ctx;
    return q;
}

void co_queue_free(co_queue_t *q, void (*drop)(void *item))
{
    if (!q) return;
    CO__CHECK(co__list_empty(&q->getters) && co__list_empty(&q->putters) && co__list_empty(&q->joiners),
              "co_queue_free: queue %p has waiters", (void *)q);
    if (drop) {
        for (size_t i = 0; i < q->n; i++) {
            if (q->kind == CO_QUEUE_PRIORITY)
                drop(q->heap[i].item);
            else
                drop(q->ring[(q->first + i) & (q->cap - 1)]);
        }
    }
    free(q->ring);
    free(q->heap);
    free(q);
}

/* ------------------------------------------------------------- storage */

static bool before(const co_queue_t *q, const qent_t *a, const qent_t *b)
{
    if (q->cmp) {
        int c = q->cmp(a->item, b->item, q->cmp_ctx);
        if (c) return c < 0;
    } else if (a->prio != b->prio)
        return a->prio < b->prio;
    return a->seq < b->seq;
}

/* Capacities are powers of two: ring positions wrap with a mask, not a
 * division, inside the spin lock. */
static int grow(co_queue_t *q)
{
    size_t cap = q->cap ? q->cap * 2 : 8;
    if (q->kind == CO_QUEUE_PRIORITY) {
        qent_t *h = realloc(q->heap, cap * sizeof *h);
        if (!h) return ENOMEM;
        q->heap = h;
    } else {
        void **r = malloc(cap * sizeof *r);
        if (!r) return ENOMEM;
        for (size_t i = 0; i < q->n; i++) r[i] = q->ring[(q->first + i) & (q->cap - 1)];
        free(q->ring);
        q->ring = r;
        q->first = 0;
    }
    q->cap = cap;
    return 0;
}

/* Adds an item (room checked by the caller).  0 or ENOMEM. */
static int store(co_queue_t *q, void *item, int64_t prio)
{
    if (q->n == q->cap) {
        int e = grow(q);
        if (e) return e;
    }
    if (q->kind == CO_QUEUE_PRIORITY) {
        size_t i = q->n;
        qent_t e = {item, prio, q->seq++};
        while (i > 0) {
            size_t parent = (i - 1) / 2;
            if (!before(q, &e, &q->heap[parent])) break;
            q->heap[i] = q->heap[parent];
            i = parent;
        }
        q->heap[i] = e;
    } else {
        q->ring[(q->first + q->n) & (q->cap - 1)] = item;
    }
    __atomic_store_n(&q->n, q->n + 1, __ATOMIC_RELAXED);
    return 0;
}

/* Removes the next item (the queue is not empty). */
static void *take(co_queue_t *q)
{
    void *item;
    size_t n = q->n - 1;
    if (q->kind == CO_QUEUE_FIFO) {
        item = q->ring[q->first];
        q->first = (q->first + 1) & (q->cap - 1);
    } else if (q->kind == CO_QUEUE_LIFO) {
        item = q->ring[(q->first + n) & (q->cap - 1)];
    } else {
        item = q->heap[0].item;
        qent_t last = q->heap[n];
        size_t i = 0;
        for (;;) {
            size_t c = 2 * i + 1;
            if (c >= n) break;
            if (c + 1 < n && before(q, &q->heap[c + 1], &q->heap[c])) c++;
            if (!before(q, &q->heap[c], &last)) break;
            q->heap[i] = q->heap[c];
            i = c;
        }
        if (n) q->heap[i] = last;
    }
    __atomic_store_n(&q->n, n, __ATOMIC_RELAXED);
    return item;
}

/* ------------------------------------------------------------ put, get */

static inline void count_task(co_queue_t *q)
{
    __atomic_store_n(&q->unfinished, q->unfinished + 1, __ATOMIC_RELAXED);
}

static int put(co_queue_t *q, void *item, int64_t prio, int64_t deadline)
{
    co__wlist_t wl = {0};
    co__spin_lock(&q->spin);
    if (q->closed) {
        co__spin_unlock(&q->spin);
        return EPIPE;
    }
    if (!co__list_empty(&q->getters)) { /* then the queue is empty: hand it over */
        co__grant(&q->getters, co__waiters_first(&q->getters), 0, item, &wl);
        count_task(q);
        co__spin_unlock(&q->spin);
        co__wake_list(&wl);
        return 0;
    }
    if (!q->maxsize || q->n < q->maxsize) {
        int e = store(q, item, prio);
        if (!e) count_task(q);
        co__spin_unlock(&q->spin);
        return e;
    }
    if (deadline == 0) {
        co__spin_unlock(&q->spin);
        return EAGAIN;
    }
    co__waiter_t wl_, *w;
    w = co__waiter_get(&wl_);
    w->item = item;
    w->key = prio;
    int r = co__wait_in(w, &q->spin, &q->putters, deadline, "co_queue_put", q, CO__BY_THREADS);
    return r ? r : w->result; /* granted: moved in by a get, or EPIPE at close */
}

int co_queue_put(co_queue_t *q, void *item, int64_t deadline)
{
    int r = put(q, item, 0, deadline);
    return r ? (errno = r, -1) : 0;
}

int co_queue_put_prio(co_queue_t *q, void *item, int64_t prio, int64_t deadline)
{
    int r = put(q, item, prio, deadline);
    return r ? (errno = r, -1) : 0;
}

int co_queue_put_nowait(co_queue_t *q, void *item)
{
    return co_queue_put(q, item, 0);
}

int co_queue_get(co_queue_t *q, void **item, int64_t deadline)
{
    co__wlist_t wl = {0};
    co__spin_lock(&q->spin);
    if (q->n > 0) {
        void *it = take(q);
        if (!co__list_empty(&q->putters)) { /* room now: the oldest waiting putter's item goes in */
            co__waiter_t *p = co__waiters_first(&q->putters);
            int e = store(q, p->item, p->key);
            CO__CHECK(e == 0, "co_queue_get: storing into the room just made failed");
            count_task(q);
            co__grant(&q->putters, p, 0, NULL, &wl);
        }
        co__spin_unlock(&q->spin);
        co__wake_list(&wl);
        if (item) *item = it;
        return 0;
    }
    if (q->closed) {
        co__spin_unlock(&q->spin);
        return errno = EPIPE, -1;
    }
    if (deadline == 0) {
        co__spin_unlock(&q->spin);
        return errno = EAGAIN, -1;
    }
    co__waiter_t wl_, *w;
    w = co__waiter_get(&wl_);
    int r = co__wait_in(w, &q->spin, &q->getters, deadline, "co_queue_get", q, CO__BY_THREADS);
    if (!r) r = w->result; /* granted: an item, or EPIPE at close */
    if (r) return errno = r, -1;
    if (item) *item = w->item;
    return 0;
}

int co_queue_get_nowait(co_queue_t *q, void **item)
{
    return co_queue_get(q, item, 0);
}

void co_queue_close(co_queue_t *q)
{
    co__wlist_t wl = {0};
    co__spin_lock(&q->spin);
    __atomic_store_n(&q->closed, 1, __ATOMIC_RELAXED);
    while (!co__list_empty(&q->getters)) co__grant(&q->getters, co__waiters_first(&q->getters), EPIPE, NULL, &wl);
    while (!co__list_empty(&q->putters)) co__grant(&q->putters, co__waiters_first(&q->putters), EPIPE, NULL, &wl);
    co__spin_unlock(&q->spin);
    co__wake_list(&wl);
}

bool co_queue_closed(const co_queue_t *q)
{
    return __atomic_load_n(&q->closed, __ATOMIC_RELAXED) != 0;
}

size_t co_queue_size(const co_queue_t *q)
{
    return __atomic_load_n(&q->n, __ATOMIC_RELAXED);
}

bool co_queue_empty(const co_queue_t *q)
{
    return co_queue_size(q) == 0;
}

bool co_queue_full(const co_queue_t *q)
{
    return q->maxsize && co_queue_size(q) >= q->maxsize;
}

/* ---------------------------------------------------------- joinable */

int co_queue_task_done(co_queue_t *q)
{
    co__wlist_t wl = {0};
    co__spin_lock(&q->spin);
    if (q->unfinished == 0) {
        co__spin_unlock(&q->spin);
        return errno = EINVAL, -1;
    }
    __atomic_store_n(&q->unfinished, q->unfinished - 1, __ATOMIC_RELAXED);
    if (q->unfinished == 0)
        while (!co__list_empty(&q->joiners)) co__grant(&q->joiners, co__waiters_first(&q->joiners), 0, NULL, &wl);
    co__spin_unlock(&q->spin);
    co__wake_list(&wl);
    return 0;
}

int co_queue_join(co_queue_t *q, int64_t deadline)
{
    co__spin_lock(&q->spin);
    if (q->unfinished == 0) {
        co__spin_unlock(&q->spin);
        return 0;
    }
    if (deadline == 0) {
        co__spin_unlock(&q->spin);
        return errno = ETIMEDOUT, -1;
    }
    co__waiter_t wl_, *w;
    w = co__waiter_get(&wl_);
    int r = co__wait_in(w, &q->spin, &q->joiners, deadline, "co_queue_join", q, CO__BY_THREADS);
    return r ? (errno = r, -1) : 0;
}

size_t co_queue_unfinished(const co_queue_t *q)
{
    return __atomic_load_n(&q->unfinished, __ATOMIC_RELAXED);
}
