/* Futures: one type for every executor and for promises.
 *
 * States: pending -> running -> done, or pending -> cancelled; done and
 * cancelled are final.  The state word is written under the spin lock and
 * read without it (acquire), so a caller that finds the future complete
 * reads its result without taking any lock.
 *
 * Completing a future, under its spin lock: the result is stored, every
 * waiter is granted (wait.c's protocol: a coroutine of any hub, or a
 * thread's futex), every listener's collector is told, and the callback
 * list is taken; after the lock is dropped the waiters are woken and the
 * callbacks delivered.
 *
 * Multi-future waits (co_futures_wait, as_completed) do not put one
 * waiter node on each future: a waiter sleeps on one word only.  They
 * make a collector (a spin lock, one waiter, a FIFO of futures that
 * completed) and hang a listener on each future; completing a future
 * pushes the listener onto its collector's FIFO and grants the collector's
 * waiter, all under the future's spin lock (lock order: future, then
 * collector).  Leaving, the waiter unlinks the listeners still hanging
 * under each future's spin lock: one that is no longer linked has been
 * fully delivered, since delivery happens inside that lock.
 *
 * Callbacks run where their owner can expect them (docs/future.md): one
 * added on a thread with a hub goes to that hub's inbox and runs in a
 * coroutine of its own; one added by a thread without a hub runs on the
 * completing thread, as concurrent.futures does. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "executor.h"
#include "future.h"
#include "thread.h"

typedef struct co__future_cb {
    struct co__future_cb *next;
    co__msg_t msg; /* to the owner's hub */
    co_future_fn fn;
    void *arg;
    co_future_t *f;    /* referenced until the callback has run */
    co__hub_t *hub;    /* the owner's hub (referenced), or NULL: the completing thread runs it */
    co__thread_t *thr; /* the owner's thread (the fork path keeps its own) */
} cb_t;

typedef struct collector {
    unsigned spin;
    co__list_t waiters; /* at most one: the collector's owner */
    co__fifo_t ready;   /* listeners whose future completed */
    co__thread_t *thr;  /* the owner's thread (the fork path) */
} collector_t;

typedef struct listener {
    co__lnode_t node;  /* on f->listeners (f's spin lock) */
    co__snode_t ready; /* on the collector's ready FIFO (its spin lock) */
    co_future_t *f;
    collector_t *c;
    bool linked;
} listener_t;

static inline unsigned state_of(const co_future_t *f)
{
    return __atomic_load_n(&f->state, __ATOMIC_ACQUIRE);
}

static inline bool complete_state(unsigned st)
{
    return st >= CO_FUTURE_DONE;
}

/* ------------------------------------------------------------ lifetime */

void co__future_ref(co_future_t *f)
{
    __atomic_fetch_add(&f->refs, 1, __ATOMIC_RELAXED);
}

/* Future records are pooled, as coroutine records are: a thread keeps up
 * to CACHE_MAX freed ones for its next futures, hands the surplus to a
 * process-wide pool CACHE_MAX at a time (one lock for the lot), and new
 * ones are made CHUNK at a time.  Records are never returned to malloc.
 * Measured on the pool throughput figure: a batch of 10,000 futures
 * freed and made again made glibc give the heap top back and fault it in
 * again every batch (a fifth of the submitter's time with malloc and
 * free themselves). */
#define CHUNK     64
#define CACHE_MAX 1024

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static co_future_t *pool; /* linked through qnode.next */
static CO__TLS __thread co_future_t *cache;
static CO__TLS __thread size_t ncache;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static inline co_future_t *next_of(const co_future_t *f)
{
    return (co_future_t *)(void *)f->qnode.next;
}

/* A thread exits: its cache goes to the pool. */
static void cache_exit(void *unused)
{
    (void)unused;
    if (!cache) return;
    co_future_t *last = cache;
    while (next_of(last)) last = next_of(last);
    pthread_mutex_lock(&pool_lock);
    last->qnode.next = (co__lnode_t *)(void *)pool;
    pool = cache;
    pthread_mutex_unlock(&pool_lock);
    cache = NULL;
    ncache = 0;
}

static void make_cache_key(void)
{
    CO__CHECK(pthread_key_create(&cache_key, cache_exit) == 0, "pthread_key_create failed");
}

static co_future_t *record_alloc(void)
{
    co_future_t *f = cache;
    if (CO__LIKELY(f != NULL)) {
        cache = next_of(f);
        ncache--;
        return f;
    }
    pthread_once(&cache_once, make_cache_key);
    pthread_setspecific(cache_key, (void *)1); /* flush the cache when this thread exits */
    pthread_mutex_lock(&pool_lock);
    while (ncache < CHUNK && pool) {
        co_future_t *p = pool;
        pool = next_of(p);
        p->qnode.next = (co__lnode_t *)(void *)cache;
        cache = p;
        ncache++;
    }
    pthread_mutex_unlock(&pool_lock);
    if (!cache) {
        co_future_t *chunk = malloc(CHUNK * sizeof *chunk);
        if (!chunk) return NULL;
        for (size_t i = 1; i < CHUNK; i++) {
            chunk[i].qnode.next = (co__lnode_t *)(void *)cache;
            cache = &chunk[i];
            ncache++;
        }
        return &chunk[0];
    }
    f = cache;
    cache = next_of(f);
    ncache--;
    return f;
}

static void record_free(co_future_t *f)
{
    f->qnode.next = (co__lnode_t *)(void *)cache;
    cache = f;
    if (++ncache <= CACHE_MAX) return;
    /* The surplus (all but the newest) goes to the pool at once. */
    co_future_t *rest = next_of(f), *last = rest;
    while (next_of(last)) last = next_of(last);
    f->qnode.next = NULL;
    ncache = 1;
    pthread_mutex_lock(&pool_lock);
    last->qnode.next = (co__lnode_t *)(void *)pool;
    pool = rest;
    pthread_mutex_unlock(&pool_lock);
}

void co__future_fork_prepare(void)
{
    pthread_mutex_lock(&pool_lock);
}

void co__future_fork_parent(void)
{
    pthread_mutex_unlock(&pool_lock);
}

void co__future_fork_child(void)
{
    pthread_mutex_unlock(&pool_lock);
}

void co__future_unref(co_future_t *f)
{
    if (__atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    if (f->arg_free) f->arg_free(f->arg);
    free(f->msg);
    if (f->size) free(f->value);
    record_free(f);
}

void co__future_discard(co_future_t *f)
{
    record_free(f);
}

co_future_t *co_future_new(void)
{
    co_future_t *f = record_alloc();
    if (!f) return errno = ENOMEM, NULL;
    memset(f, 0, sizeof *f);
    f->refs = 1;
    return f;
}

co_future_t *co__future_task(co_fn fn, void *arg)
{
    co_future_t *f = record_alloc();
    if (!f) return errno = ENOMEM, NULL;
    /* Every field, without a memset of the whole struct: this is on the
     * path of every submit. */
    f->spin = 0;
    f->state = CO_FUTURE_PENDING;
    f->refs = 2;
    f->task = true;
    f->error = 0;
    f->msg = NULL;
    f->value = NULL;
    f->size = 0;
    f->waiters = (co__list_t){0};
    f->listeners = (co__list_t){0};
    f->cbs = f->cbs_tail = NULL;
    f->queued = false;
    f->fn = fn;
    f->arg = arg;
    f->arg_free = NULL;
    f->pool = NULL;
    return f;
}

/* A check for a programming error (freeing what someone waits on), made
 * without the spin lock: taking it would cost the caller a cache-line
 * transfer per future (the completing thread wrote the line last), and a
 * waiter racing with the free is the same error, caught or not.  Hidden
 * from ThreadSanitizer for that reason. */
__attribute__((no_sanitize("thread"))) static bool waited_on(const co_future_t *f)
{
    return *(co__lnode_t *const volatile *)&f->waiters.head != NULL;
}

void co_future_free(co_future_t *f)
{
    if (!f) return;
    /* A second free of the same handle finds no reference left (unless the
     * record was reused meanwhile: a stale handle, as documented). */
    CO__CHECK(__atomic_load_n(&f->refs, __ATOMIC_RELAXED) > 0, "co_future_free: future %p was already freed",
              (void *)f);
    CO__CHECK(!waited_on(f), "co_future_free: future %p is being waited on", (void *)f);
    co__future_unref(f);
}

/* ---------------------------------------------------------- callbacks */

static void cb_run(cb_t *cb)
{
    co_future_t *f = cb->f;
    cb->fn(f, cb->arg);
    free(cb);
    co__future_unref(f);
}

static void *cb_coro(void *arg)
{
    cb_run(arg);
    return NULL;
}

/* On the owner's hub: a callback arrived.  It runs in a coroutine of its
 * own, so that it may block like any coroutine.  During the thread's exit
 * nothing would run a new coroutine (they are being ended), and the
 * message is handled inside the scheduler or after the inbox closed, where
 * a callback that blocks would re-enter it: a worker of the default thread
 * pool runs it instead, where it may block as on any thread. */
static void cb_arrived(co__hub_t *h, co__msg_t *m)
{
    cb_t *cb = CO__CONTAINER(m, cb_t, msg);
    if (h->exiting) {
        co_pool_t *p = co_pool_default();
        co_future_t *f = p ? co_pool_submit(p, cb_coro, cb, -1) : NULL;
        if (f) {
            co_future_free(f);
            return;
        }
        /* No pool (out of memory, or the process is exiting and the pool
         * is shut): here, on the exiting thread, as a last resort. */
        cb_run(cb);
        return;
    }
    co_coro_t *c = co_spawn_with(cb_coro, cb, &(co_spawn_opts_t){.name = "future callback"});
    CO__CHECK(c != NULL, "out of memory for a coroutine to run a future's callback");
    co_detach(c);
}

static void deliver(cb_t *cb)
{
    co__hub_t *h = cb->hub;
    if (!h) {
        cb_run(cb);
        return;
    }
    cb->msg.handle = cb_arrived;
    bool sent = co__hub_send(h, &cb->msg);
    co__hub_unref(h);      /* held from registration through the doorbell */
    if (!sent) cb_run(cb); /* the owner's thread has exited: run it here */
}

static void deliver_all(cb_t *cbs)
{
    while (cbs) {
        cb_t *next = cbs->next;
        deliver(cbs);
        cbs = next;
    }
}

int co_future_add_done_callback(co_future_t *f, co_future_fn fn, void *arg)
{
    CO__CHECK(f != NULL, "co_future_add_done_callback: NULL future");
    if (!fn) return errno = EINVAL, -1;
    if (complete_state(state_of(f))) {
        fn(f, arg);
        return 0;
    }
    cb_t *cb = malloc(sizeof *cb);
    if (!cb) return errno = ENOMEM, -1;
    co__hub_t *h = co__tls.hub;
    *cb = (cb_t){.fn = fn, .arg = arg, .f = f, .hub = h, .thr = &co__tls};
    co__spin_lock(&f->spin);
    if (complete_state(f->state)) {
        co__spin_unlock(&f->spin);
        free(cb);
        fn(f, arg);
        return 0;
    }
    co__future_ref(f);
    if (h) co__hub_ref(h);
    if (f->cbs_tail)
        f->cbs_tail->next = cb;
    else
        f->cbs = cb;
    f->cbs_tail = cb;
    co__spin_unlock(&f->spin);
    return 0;
}

/* ---------------------------------------------------------- completion */

/* Tells a listener's collector that its future completed.  f's spin lock
 * held; takes the collector's. */
static void notify(listener_t *l, co__wlist_t *wl)
{
    collector_t *c = l->c;
    co__spin_lock(&c->spin);
    co__fifo_push(&c->ready, &l->ready);
    if (!co__list_empty(&c->waiters)) co__grant(&c->waiters, co__waiters_first(&c->waiters), 0, NULL, wl);
    co__spin_unlock(&c->spin);
}

/* Moves f to a final state with what it holds; f's spin lock held on
 * entry, dropped on return; then wakes and delivers. */
static void finish_locked(co_future_t *f, unsigned state)
{
    co__wlist_t wl = {0};
    while (!co__list_empty(&f->waiters)) co__grant(&f->waiters, co__waiters_first(&f->waiters), 0, NULL, &wl);
    co__lnode_t *n;
    while ((n = co__list_pop(&f->listeners))) {
        listener_t *l = CO__CONTAINER(n, listener_t, node);
        l->linked = false;
        notify(l, &wl);
    }
    cb_t *cbs = f->cbs;
    f->cbs = f->cbs_tail = NULL;
    __atomic_store_n(&f->state, state, __ATOMIC_RELEASE);
    co__spin_unlock(&f->spin);
    co__wake_list(&wl);
    deliver_all(cbs);
}

/* Completes f unless it already is.  value/size: the result; err > 0: an
 * error with msg (owned: freed if not used).  0 or EALREADY. */
static int complete(co_future_t *f, void *value, size_t size, int err, char *msg)
{
    co__spin_lock(&f->spin);
    if (complete_state(f->state)) {
        co__spin_unlock(&f->spin);
        free(msg);
        return EALREADY;
    }
    f->value = value;
    f->size = size;
    f->error = err;
    f->msg = msg;
    finish_locked(f, CO_FUTURE_DONE);
    return 0;
}

int co__future_complete(co_future_t *f, void *value, int err, const char *msg)
{
    char *m = err && msg ? strdup(msg) : NULL;
    return complete(f, err ? NULL : value, 0, err, m);
}

int co_future_set_result(co_future_t *f, void *value)
{
    CO__CHECK(f != NULL, "co_future_set_result: NULL future");
    int r = complete(f, value, 0, 0, NULL);
    return r ? (errno = r, -1) : 0;
}

int co_future_set_bytes(co_future_t *f, const void *data, size_t len)
{
    CO__CHECK(f != NULL, "co_future_set_bytes: NULL future");
    CO__CHECK(data != NULL || len == 0, "co_future_set_bytes: NULL data");
    if (complete_state(state_of(f))) return errno = EALREADY, -1;
    /* One byte more, so that an empty result still owns a buffer. */
    void *copy = malloc(len + 1);
    if (!copy) return errno = ENOMEM, -1;
    if (len) memcpy(copy, data, len);
    ((char *)copy)[len] = '\0';
    co__spin_lock(&f->spin);
    if (complete_state(f->state)) {
        co__spin_unlock(&f->spin);
        free(copy);
        return errno = EALREADY, -1;
    }
    f->value = copy;
    f->size = len + 1; /* the stored size counts the terminator, so that 0 means "not bytes" */
    f->error = 0;
    finish_locked(f, CO_FUTURE_DONE);
    return 0;
}

int co_future_set_error(co_future_t *f, int err, const char *msg)
{
    CO__CHECK(f != NULL, "co_future_set_error: NULL future");
    if (err <= 0) return errno = EINVAL, -1;
    if (complete_state(state_of(f))) return errno = EALREADY, -1;
    char *m = msg ? strdup(msg) : NULL;
    int r = complete(f, NULL, 0, err, m);
    return r ? (errno = r, -1) : 0;
}

int co_future_set_running(co_future_t *f)
{
    CO__CHECK(f != NULL, "co_future_set_running: NULL future");
    co__spin_lock(&f->spin);
    unsigned st = f->state;
    if (st == CO_FUTURE_PENDING) __atomic_store_n(&f->state, CO_FUTURE_RUNNING, __ATOMIC_RELEASE);
    co__spin_unlock(&f->spin);
    if (st == CO_FUTURE_PENDING) return 0;
    return errno = st == CO_FUTURE_CANCELLED ? ECANCELED : EALREADY, -1;
}

int co_future_cancel(co_future_t *f)
{
    CO__CHECK(f != NULL, "co_future_cancel: NULL future");
    co__spin_lock(&f->spin);
    unsigned st = f->state;
    if (st != CO_FUTURE_PENDING) {
        co__spin_unlock(&f->spin);
        if (st == CO_FUTURE_CANCELLED) return 0;
        return errno = st == CO_FUTURE_RUNNING ? EBUSY : EALREADY, -1;
    }
    f->error = ECANCELED;
    co__future_ref(f); /* f may lose its last other reference to a callback */
    finish_locked(f, CO_FUTURE_CANCELLED);
    if (f->pool) co__pool_cancelled(f);
    co__future_unref(f);
    return 0;
}

/* --------------------------------------------------------------- state */

co_future_state_t co_future_state(const co_future_t *f)
{
    CO__CHECK(f != NULL, "co_future_state: NULL future");
    return (co_future_state_t)state_of(f);
}

bool co_future_done(const co_future_t *f)
{
    return complete_state(co_future_state(f));
}

bool co_future_running(const co_future_t *f)
{
    return co_future_state(f) == CO_FUTURE_RUNNING;
}

bool co_future_cancelled(const co_future_t *f)
{
    return co_future_state(f) == CO_FUTURE_CANCELLED;
}

size_t co_future_size(const co_future_t *f)
{
    CO__CHECK(f != NULL, "co_future_size: NULL future");
    if (!complete_state(state_of(f)) || !f->size) return 0;
    return f->size - 1;
}

int co_future_error(const co_future_t *f, const char **msg)
{
    CO__CHECK(f != NULL, "co_future_error: NULL future");
    bool done = complete_state(state_of(f));
    if (msg) *msg = done ? f->msg : NULL;
    return done ? f->error : 0;
}

/* ------------------------------------------------------------- waiting */

/* Who can complete f, for the deadlock check: a task's worker always
 * will; a promise only if some other thread can reach it. */
static int waker_of(const co_future_t *f)
{
    return f->task ? CO__BY_MESSAGE : CO__BY_THREADS;
}

#define SPIN_NS 20000 /* how long a waiter polls before it sleeps */

/* A task on another core often completes within microseconds: poll for
 * it briefly before sleeping, which saves the waker a system call and the
 * waiter the scheduler's wake-up latency (both many microseconds on a
 * virtual machine).  Only when another thread can complete it, and for a
 * coroutine only when its hub has nothing else to run.  True if f
 * completed meanwhile. */
static bool spin_for(const co_future_t *f)
{
    if (co__single_threaded()) return false;
    co__hub_t *h = co__tls.hub;
    if (h && (h->nrunq > 0 || h->nparked[CO__BY_IO] > 0)) return false;
    int64_t end = 0;
    for (unsigned i = 0;; i++) {
        if (complete_state(state_of(f))) return true;
        if ((i & 63) == 0) {
            int64_t now = co__mono_ns();
            if (!end)
                end = now + SPIN_NS;
            else if (now >= end)
                return false;
        }
        co__cpu_relax();
    }
}

int co__future_wait(co_future_t *f, int64_t deadline, bool cancellable)
{
    if (complete_state(state_of(f))) return 0;
    if (deadline == 0) return ETIMEDOUT;
    if (spin_for(f)) return 0;
    co__spin_lock(&f->spin);
    if (complete_state(f->state)) {
        co__spin_unlock(&f->spin);
        return 0;
    }
    co__waiter_t wnode, *w = co__waiter_get(&wnode); /* in the record if compact */
    co__waiters_push(&f->waiters, w);
    int r = co__wait_block(w, &f->spin, &f->waiters, deadline, "co_future_wait", f, waker_of(f), cancellable);
    if (r) co__spin_unlock(&f->spin);
    return r;
}

int co_future_wait(co_future_t *f, int64_t deadline)
{
    CO__CHECK(f != NULL, "co_future_wait: NULL future");
    int r = co__future_wait(f, deadline, true);
    return r ? (errno = r, -1) : 0;
}

int co_future_result(co_future_t *f, int64_t deadline, void **value)
{
    if (co_future_wait(f, deadline) < 0) return -1;
    if (f->error) return errno = f->error, -1;
    if (value) *value = f->value;
    return 0;
}

/* ---------------------------------------------- several futures at once */

static void collector_init(collector_t *c)
{
    *c = (collector_t){.thr = &co__tls};
}

/* Hangs l on f unless f is complete.  True if it did. */
static bool listen_on(listener_t *l, co_future_t *f, collector_t *c)
{
    l->f = f;
    l->c = c;
    co__spin_lock(&f->spin);
    bool pending = !complete_state(f->state);
    if (pending) {
        co__list_push(&f->listeners, &l->node);
        l->linked = true;
    } else {
        l->linked = false;
    }
    co__spin_unlock(&f->spin);
    return pending;
}

/* Takes l off its future, if it still hangs there; once this returns,
 * nobody touches l or its collector on l's behalf. */
static void unlisten_from(listener_t *l)
{
    co_future_t *f = l->f;
    co__spin_lock(&f->spin);
    if (l->linked) {
        co__list_remove(&f->listeners, &l->node);
        l->linked = false;
    }
    co__spin_unlock(&f->spin);
}

/* Waits for the next completion the collector hears of.  The listener,
 * or NULL with *err set (ETIMEDOUT, ECANCELED, EDEADLK). */
static listener_t *collect(collector_t *c, int64_t deadline, int waker, int *err)
{
    co__spin_lock(&c->spin);
    co__snode_t *n = co__fifo_pop(&c->ready);
    if (n) {
        co__spin_unlock(&c->spin);
        return CO__CONTAINER(n, listener_t, ready);
    }
    if (deadline == 0) {
        co__spin_unlock(&c->spin);
        *err = ETIMEDOUT;
        return NULL;
    }
    co__waiter_t wnode, *w = co__waiter_get(&wnode); /* in the record if compact */
    int r = co__wait_in(w, &c->spin, &c->waiters, deadline, "co_futures_wait", c, waker);
    if (r) {
        *err = r;
        return NULL;
    }
    co__spin_lock(&c->spin);
    n = co__fifo_pop(&c->ready);
    co__spin_unlock(&c->spin);
    CO__CHECK(n != NULL, "co_futures_wait: woken without a completed future");
    return CO__CONTAINER(n, listener_t, ready);
}

static bool is_error(const co_future_t *f)
{
    return state_of(f) == CO_FUTURE_DONE && f->error != 0;
}

/* Does `when` hold, with `done` of n complete and `failed` with errors? */
static bool holds(co_wait_when_t when, size_t done, size_t failed, size_t n)
{
    switch (when) {
    case CO_FIRST_COMPLETED:
        return done > 0;
    case CO_FIRST_ERROR:
        return failed > 0 || done == n;
    default:
        return done == n;
    }
}

int co_futures_wait(co_future_t *const *fs, size_t n, co_wait_when_t when, int64_t deadline)
{
    CO__CHECK(fs != NULL || n == 0, "co_futures_wait: NULL array of %zu futures", n);
    if (when != CO_FIRST_COMPLETED && when != CO_FIRST_ERROR && when != CO_ALL_COMPLETED) return errno = EINVAL, -1;
    size_t done = 0, failed = 0;
    int waker = CO__BY_THREADS;
    for (size_t i = 0; i < n; i++) {
        CO__CHECK(fs[i] != NULL, "co_futures_wait: NULL future at %zu", i);
        if (complete_state(state_of(fs[i]))) {
            done++;
            failed += is_error(fs[i]);
        }
        if (fs[i]->task) waker = CO__BY_MESSAGE;
    }
    if (n == 0 || holds(when, done, failed, n)) return (int)done;
    if (deadline == 0) return errno = ETIMEDOUT, -1;

    /* The listeners and the collector are reached by completing threads
     * while we wait: on the heap when our stack moves (compact) or when
     * there are many. */
    struct {
        collector_t c;
        listener_t small[16];
    } local, *box = &local;
    listener_t *ls = local.small;
    if (n > 16 || co__compact_running()) {
        box = malloc(sizeof *box + (n > 16 ? n * sizeof *ls : 0));
        if (!box) return errno = ENOMEM, -1;
        ls = n > 16 ? (listener_t *)(box + 1) : box->small;
    }
    collector_t *cp = &box->c;
    collector_init(cp);
    done = failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!listen_on(&ls[i], fs[i], cp)) {
            done++;
            failed += is_error(fs[i]);
        }
    }
    int err = 0;
    while (!holds(when, done, failed, n)) {
        listener_t *l = collect(cp, deadline, waker, &err);
        if (!l) break;
        done++;
        failed += is_error(l->f);
    }
    for (size_t i = 0; i < n; i++) unlisten_from(&ls[i]);
    if (box != &local) free(box);
    return err ? (errno = err, -1) : (int)done;
}

struct co_as_completed {
    collector_t c;
    size_t n, left;
    co__fifo_t first; /* futures complete at creation, in input order */
    listener_t ls[];
};

co_as_completed_t *co_as_completed_new(co_future_t *const *fs, size_t n)
{
    CO__CHECK(fs != NULL || n == 0, "co_as_completed_new: NULL array of %zu futures", n);
    co_as_completed_t *ac = malloc(sizeof *ac + n * sizeof ac->ls[0]);
    if (!ac) return errno = ENOMEM, NULL;
    collector_init(&ac->c);
    ac->n = ac->left = n;
    ac->first = (co__fifo_t){0};
    for (size_t i = 0; i < n; i++) {
        CO__CHECK(fs[i] != NULL, "co_as_completed_new: NULL future at %zu", i);
        co__future_ref(fs[i]);
        if (!listen_on(&ac->ls[i], fs[i], &ac->c)) co__fifo_push(&ac->first, &ac->ls[i].ready);
    }
    return ac;
}

co_future_t *co_as_completed_next(co_as_completed_t *ac, int64_t deadline)
{
    CO__CHECK(ac != NULL, "co_as_completed_next: NULL set");
    if (ac->left == 0) return errno = ENOENT, NULL;
    co__snode_t *n = co__fifo_pop(&ac->first);
    listener_t *l;
    if (n) {
        l = CO__CONTAINER(n, listener_t, ready);
    } else {
        int waker = CO__BY_THREADS, err = 0;
        for (size_t i = 0; i < ac->n; i++)
            if (ac->ls[i].f->task) waker = CO__BY_MESSAGE; /* fixed at creation: read without a lock */
        l = collect(&ac->c, deadline, waker, &err);
        if (!l) return errno = err, NULL;
    }
    ac->left--;
    return l->f;
}

void co_as_completed_free(co_as_completed_t *ac)
{
    if (!ac) return;
    for (size_t i = 0; i < ac->n; i++) unlisten_from(&ac->ls[i]);
    for (size_t i = 0; i < ac->n; i++) co__future_unref(ac->ls[i].f);
    free(ac);
}

/* ---------------------------------------------------------------- fork */

void co__future_fork_fail(co_future_t *f, co_future_state_t state, int err, const char *msg)
{
    f->spin = 0; /* held, at worst, by a thread the child does not have */
    if (complete_state(f->state)) return;
    co__wlist_t wl = {0};
    f->error = err;
    f->msg = msg ? strdup(msg) : NULL;
    co__waiters_fork_filter(&f->waiters, 0, &wl);
    co__lnode_t *n = f->listeners.head;
    while (n) {
        co__lnode_t *next = n->next;
        listener_t *l = CO__CONTAINER(n, listener_t, node);
        co__list_remove(&f->listeners, n);
        l->linked = false;
        if (l->c->thr == &co__tls) {
            l->c->spin = 0;
            notify(l, &wl);
        }
        n = next;
    }
    cb_t *cbs = f->cbs, *mine = NULL, **tail = &mine;
    f->cbs = f->cbs_tail = NULL;
    while (cbs) {
        cb_t *next = cbs->next;
        if (cbs->thr == &co__tls) {
            cbs->next = NULL;
            *tail = cbs;
            tail = &cbs->next;
        } else {
            free(cbs); /* its owner does not exist here; neither does the reference it holds on a hub */
            __atomic_fetch_sub(&f->refs, 1, __ATOMIC_RELAXED);
        }
        cbs = next;
    }
    __atomic_store_n(&f->state, state, __ATOMIC_RELEASE);
    co__wake_list(&wl);
    deliver_all(mine);
}
