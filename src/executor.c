/* Thread pools (concurrent.futures.ThreadPoolExecutor) and the default
 * pool behind co_pool_run.
 *
 * A task is its future (future.h): queuing never allocates beyond it.
 * Submitters push tasks onto a lock-free stack (the inbox, one
 * compare-and-swap on a cache line of its own); workers, under the pool's
 * spin lock, drain it onto a FIFO, oldest first, and take the oldest task.
 * Under the same lock live three lists of waiters (wait.c's protocol):
 * sleeping workers, submitters waiting for room in a bounded queue (they
 * queue under the lock), joiners.
 *
 * Who takes a task.  After its push a submit reads two counts: workers
 * that will look at the queue again (polling for work, just woken, or
 * finishing a task while nothing is queued) — then nothing more is
 * needed; else sleeping workers — it wakes one; else, below max_workers,
 * it starts one (Python's rule: idle workers are reused before new ones
 * start).  A worker going to sleep counts itself idle, then stops
 * counting itself available, then looks at the inbox, all sequentially
 * consistent with the submit's push and reads: a task is never left with
 * nobody to take it.
 *
 * Every task is in exactly one place — the inbox, the FIFO, a worker's
 * hands, or dropped: cancel drains the inbox and takes the task off the
 * FIFO (future.c calls co__pool_cancelled); a task a worker already took
 * is dropped by the worker when it finds it cancelled
 * (co_future_set_running fails).  Whoever takes a task off the queue
 * owns the pool's reference on its future and drops it when done.
 *
 * Workers are program threads (co__thread_start: named, listed by
 * co_thread_enumerate, non-daemon unless the pool is), not cogent helpers:
 * a task may release a lock or fill a queue the program waits on, which
 * the deadlock check must know (helper.c counts them as such).  The
 * default pool's are named "cogent-pool_<i>": a pool that outlives any one
 * piece of work, as the test harness expects of cogent's threads. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "executor.h"
#include "fork.h"
#include "thread.h"

#define WORK_SPIN_NS 50000 /* how long an idle worker polls for work before it sleeps */
#define NAME_MAX_LEN 200

typedef struct slot {
    _Alignas(64) co_thread_t *thread; /* the worker (a reference), NULL if none */
    co_future_t *running;             /* the task it runs (the fork path; spin lock) */
    uint64_t completed;               /* atomic: tasks it ran (its own line: no sharing) */
} slot_t;

struct co_pool { // NOLINT(clang-analyzer-optin.performance.Padding): cache lines kept apart on purpose
    /* The submitters' side, on a cache line of its own: a submit writes
     * only this line (and its future), never the spin lock, so that it
     * does not wait for workers taking tasks (measured: ~25% of a
     * submitter's time went to that lock's contention when submits went
     * through it).  Polling workers read it, and nqueued. */
    _Alignas(64) co_future_t *inbox; /* tasks submitted, newest first (a Treiber stack) */
    /* What a submit reads after its push, rarely written: it stays in
     * every submitter's cache. */
    _Alignas(64) size_t navail; /* atomic: workers that will look at the queue again before they sleep
                                 * (polling, or finishing a task while nothing is queued: counted before
                                 * its result is published, so that a caller who submits its next task as
                                 * soon as it sees a result finds this worker, and starts no other) */
    size_t nidle;               /* atomic: sleeping workers (changed under the spin lock) */
    unsigned shut;              /* atomic */
    unsigned broken;            /* atomic */
    /* The workers' side, under the spin lock. */
    _Alignas(64) unsigned spin;
    size_t nqueued;     /* atomic for readers: tasks queued (in the inbox too if the pool is bounded) */
    co__list_t queue;   /* co_future_t.qnode, oldest first (the inbox drained into it) */
    co__list_t idle;    /* sleeping workers */
    co__list_t putters; /* submitters waiting for room; w.item = their task */
    co__list_t joiners; /* co_pool_join */
    size_t nworkers;    /* started (or starting) and not yet ended; written under the lock, read without by submit */
    int broken_err;
    unsigned next_index; /* for worker names */
    size_t max_workers, max_queue;
    int (*init)(void *arg);
    void *init_arg;
    size_t stack_size;
    bool daemon;
    bool is_default;
    char *name;
    slot_t *slots; /* max_workers */
    co__lnode_t reg;
};

/* Every pool, for the exit hook and the fork path. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static co__list_t pools;
static unsigned long next_pool = 1;

/* The task a worker runs now (co_task_fail). */
typedef struct task_ctx {
    bool active;
    int err;
    char *msg;
} task_ctx_t;
static CO__TLS __thread task_ctx_t task;

static size_t ncpus = 1; /* online CPUs, read when the first pool is made */

static void exit_pools(void);
static pthread_once_t hook_once = PTHREAD_ONCE_INIT;
static void set_hooks(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    ncpus = n > 1 ? (size_t)n : 1;
    __atomic_store_n(&co__thread_exit_pools, exit_pools, __ATOMIC_RELEASE);
}

static size_t default_workers(void)
{
    return ncpus + 4 < 32 ? ncpus + 4 : 32;
}

/* ---------------------------------------------------------- the queue */

/* What wake_one's grant hands a sleeping worker: "you are counted
 * available"; shutdown's hands NULL. */
#define WOKEN ((void *)&woken_marker)
static const char woken_marker;

static inline size_t queued(const co_pool_t *p)
{
    return __atomic_load_n(&p->nqueued, __ATOMIC_RELAXED);
}
static inline void queued_add(co_pool_t *p, long d)
{
    __atomic_fetch_add(&p->nqueued, (size_t)d, __ATOMIC_RELAXED);
}

/* Moves what submitters pushed onto the queue, oldest first.  Spin lock
 * held. */
static void drain_inbox(co_pool_t *p)
{
    if (!__atomic_load_n(&p->inbox, __ATOMIC_RELAXED)) return;
    co_future_t *f = __atomic_exchange_n(&p->inbox, NULL, __ATOMIC_SEQ_CST), *fifo = NULL;
    long n = 0;
    while (f) { /* newest first: reverse it */
        co_future_t *next = (co_future_t *)f->qnode.next;
        f->qnode.next = (co__lnode_t *)fifo;
        fifo = f;
        f = next;
        n++;
    }
    /* An unbounded pool counts its tasks here, not at submit: one locked
     * instruction less on the submitters' line per task. */
    if (!p->max_queue) queued_add(p, n);
    while (fifo) {
        co_future_t *next = (co_future_t *)fifo->qnode.next;
        co__list_push(&p->queue, &fifo->qnode);
        fifo = next;
    }
}

/* Pushes a submitted task (no lock): one compare-and-swap. */
static void push_inbox(co_pool_t *p, co_future_t *f)
{
    co_future_t *head = __atomic_load_n(&p->inbox, __ATOMIC_RELAXED);
    do f->qnode.next = (co__lnode_t *)head;
    while (!__atomic_compare_exchange_n(&p->inbox, &head, f, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
}

/* Queues a task under the spin lock (a waiting submitter's). */
static void enqueue(co_pool_t *p, co_future_t *f)
{
    co__list_push(&p->queue, &f->qnode);
    f->queued = true;
    queued_add(p, 1);
}

static co_future_t *dequeue(co_pool_t *p)
{
    drain_inbox(p);
    co__lnode_t *n = co__list_pop(&p->queue);
    if (!n) return NULL;
    co_future_t *f = CO__CONTAINER(n, co_future_t, qnode);
    f->queued = false;
    queued_add(p, -1);
    return f;
}

static inline void workers_add(co_pool_t *p, long d)
{
    /* Sequentially consistent with the inbox's exchange and a submit's
     * push and load: a submit that sees all workers busy has its task seen
     * by the last one out (worker's exit path). */
    __atomic_store_n(&p->nworkers, p->nworkers + (size_t)d, __ATOMIC_SEQ_CST);
}

/* Room was made: the oldest waiting submitter's task goes in.  Spin lock
 * held. */
static void admit_putter(co_pool_t *p, co__wlist_t *wl)
{
    if (co__list_empty(&p->putters)) return;
    co__waiter_t *w = co__waiters_first(&p->putters);
    enqueue(p, w->item);
    co__grant(&p->putters, w, 0, w->item, wl);
}

/* Takes every queued task out (shutdown with cancel, a broken pool, the
 * fork path).  Spin lock held. */
static co__list_t take_all(co_pool_t *p)
{
    drain_inbox(p);
    co__list_t all = p->queue;
    size_t n = 0;
    for (co__lnode_t *e = all.head; e; e = e->next, n++) CO__CONTAINER(e, co_future_t, qnode)->queued = false;
    p->queue = (co__list_t){0};
    queued_add(p, -(long)n);
    return all;
}

/* Drops tasks taken off the queue: cancelled, or failed with err. */
static void drop_all(co__list_t *all, int err, const char *msg)
{
    co__lnode_t *n;
    while ((n = co__list_pop(all))) {
        co_future_t *f = CO__CONTAINER(n, co_future_t, qnode);
        if (err)
            co__future_complete(f, NULL, err, msg);
        else
            co_future_cancel(f);
        co__future_unref(f);
    }
}

void co__pool_cancelled(co_future_t *f)
{
    co_pool_t *p = f->pool;
    co__wlist_t wl = {0};
    co__spin_lock(&p->spin);
    drain_inbox(p);
    bool was = f->queued;
    if (was) {
        co__list_remove(&p->queue, &f->qnode);
        f->queued = false;
        queued_add(p, -1);
        admit_putter(p, &wl);
    }
    co__spin_unlock(&p->spin);
    co__wake_list(&wl);
    if (was) co__future_unref(f);
}

/* Wakes every idle worker empty-handed (shutdown, broken).  Spin lock
 * held. */
static void wake_idle(co_pool_t *p, co__wlist_t *wl)
{
    while (!co__list_empty(&p->idle)) co__grant(&p->idle, co__waiters_first(&p->idle), 0, NULL, wl);
    __atomic_store_n(&p->nidle, 0, __ATOMIC_SEQ_CST);
}

/* Fails every waiting submitter.  Spin lock held. */
static void fail_putters(co_pool_t *p, int err, co__wlist_t *wl)
{
    while (!co__list_empty(&p->putters)) co__grant(&p->putters, co__waiters_first(&p->putters), err, NULL, wl);
}

/* The last worker has ended: joiners may go.  Spin lock held. */
static void maybe_release_joiners(co_pool_t *p, co__wlist_t *wl)
{
    if (p->nworkers == 0 && (p->shut || p->broken))
        while (!co__list_empty(&p->joiners)) co__grant(&p->joiners, co__waiters_first(&p->joiners), 0, NULL, wl);
}

/* ------------------------------------------------------------ workers */

static void broken_msg(const co_pool_t *p, char *buf, size_t n)
{
    snprintf(buf, n, "thread pool '%s' is broken: a worker's initializer failed: %s", p->name, strerror(p->broken_err));
}

/* A worker's initializer failed: the pool is broken for good. */
static void break_pool(co_pool_t *p, int err)
{
    co__wlist_t wl = {0};
    co__list_t all = {0};
    co__spin_lock(&p->spin);
    if (!p->broken) {
        p->broken_err = err;
        __atomic_store_n(&p->broken, 1, __ATOMIC_RELAXED);
        all = take_all(p);
        fail_putters(p, ENOTRECOVERABLE, &wl);
        wake_idle(p, &wl);
    }
    co__spin_unlock(&p->spin);
    co__wake_list(&wl);
    char msg[512];
    broken_msg(p, msg, sizeof msg);
    drop_all(&all, ENOTRECOVERABLE, msg);
}

static inline size_t avail(co_pool_t *p)
{
    return __atomic_load_n(&p->navail, __ATOMIC_ACQUIRE);
}
static inline void avail_add(co_pool_t *p, long d)
{
    __atomic_fetch_add(&p->navail, (size_t)d, __ATOMIC_SEQ_CST);
}

/* Runs one task the worker took (it owns the pool's reference).  True if
 * the worker counted itself available (before the result went out). */
static bool run_task(co_pool_t *p, slot_t *me, co_future_t *f)
{
    bool counted = false;
    if (co_future_set_running(f) == 0) {
        task = (task_ctx_t){.active = true};
        void *v = f->fn(f->arg);
        task.active = false;
        if (!queued(p) && !__atomic_load_n(&p->inbox, __ATOMIC_RELAXED)) {
            avail_add(p, 1); /* only when the queue is empty: a backlog needs no such promise */
            counted = true;
        }
        __atomic_fetch_add(&me->completed, 1, __ATOMIC_RELAXED); /* counted before anyone sees the result */
        co__future_complete(f, v, task.err, task.msg);
        free(task.msg);
        task.msg = NULL;
    }
    co__future_unref(f);
    return counted;
}

/* Polls for work (or the end) for a while.  True if there is some. */
static bool poll_work(co_pool_t *p)
{
    int64_t end = 0;
    for (unsigned i = 0;; i++) {
        if (__atomic_load_n(&p->inbox, __ATOMIC_RELAXED) || queued(p) || __atomic_load_n(&p->shut, __ATOMIC_RELAXED) ||
            __atomic_load_n(&p->broken, __ATOMIC_RELAXED))
            return true;
        if ((i & 63) == 0) {
            int64_t now = co__mono_ns();
            if (!end)
                end = now + WORK_SPIN_NS;
            else if (now >= end)
                return false;
        }
        co__cpu_relax();
    }
}

static void *worker(void *arg)
{
    co_pool_t *p = arg;
    co_thread_t *me = co_thread_current();
    co__thread_ref(me);
    co__wlist_t wl = {0};
    co__spin_lock(&p->spin);
    size_t slot = 0;
    while (p->slots[slot].thread) slot++; /* there is one: nworkers <= max_workers */
    p->slots[slot].thread = me;
    co__spin_unlock(&p->spin);
    if (p->init) {
        int e = p->init(p->init_arg);
        if (e) break_pool(p, e);
    }
    slot_t *me_slot = &p->slots[slot];
    co_future_t *f = NULL;
    bool polled = false, counted = false;
    co__spin_lock(&p->spin);
    for (;;) {
        if (f) { /* the last task ran */
            me_slot->running = NULL;
            f = NULL;
            polled = false;
        }
        /* Nothing runs on a broken pool, not even a task that reached the
         * inbox after the break took the queue (its submit saw the pool
         * whole): the last worker out fails it. */
        if (CO__UNLIKELY(p->broken)) break;
        if ((f = dequeue(p))) {
            if (counted) avail_add(p, -1);
            admit_putter(p, &wl);
            me_slot->running = f;
            co__spin_unlock(&p->spin);
            co__wake_list(&wl);
            counted = run_task(p, me_slot, f);
            co__spin_lock(&p->spin);
            continue;
        }
        if (p->shut || p->broken) break;
        if (!polled && (counted || avail(p) + 1 < ncpus)) {
            /* Tasks often come in quick succession: a worker that polls
             * for a moment takes the next one without a futex wake-up.
             * Not more pollers than cores but one, though: a core must
             * stay for whoever submits (on 2 cores, 2 pollers made the
             * submitter wait for a core, and the throughput figure fell
             * from 5-6 to 4 M tasks/s). */
            if (!counted) avail_add(p, 1);
            counted = true;
            co__spin_unlock(&p->spin);
            poll_work(p);
            co__spin_lock(&p->spin);
            polled = true;
            continue;
        }
        /* Going to sleep.  A submitter pushes and then reads navail and
         * nidle; we count ourselves idle, uncount ourselves available
         * (in that order: it never finds us in neither count) and then
         * look at the inbox, all sequentially consistent: either we see
         * its task or it sees us idle and wakes us. */
        __atomic_store_n(&p->nidle, __atomic_load_n(&p->nidle, __ATOMIC_RELAXED) + 1, __ATOMIC_SEQ_CST);
        if (counted) avail_add(p, -1);
        counted = false;
        if (__atomic_load_n(&p->inbox, __ATOMIC_SEQ_CST)) {
            __atomic_store_n(&p->nidle, __atomic_load_n(&p->nidle, __ATOMIC_RELAXED) - 1, __ATOMIC_SEQ_CST);
            continue;
        }
        co__waiter_t wnode, *w = co__waiter_get(&wnode); /* in the record if compact */
        co__waiters_push(&p->idle, w);
        /* Only a submit, shutdown or a break ends it (the granter
         * uncounts us); the program's other threads owe it. */
        int r = co__wait_block(w, &p->spin, &p->idle, -1, "an idle pool worker", p, CO__BY_MESSAGE, false);
        CO__CHECK(r == 0, "pool worker: idle wait failed (%d)", r);
        counted = w->item == WOKEN; /* wake_one counted us available */
        co__spin_lock(&p->spin);
        polled = false;
    }
    if (counted) avail_add(p, -1);
    me_slot->running = NULL;
    workers_add(p, -1);
    /* The last worker out fails what was submitted while the pool
     * stopped (a submit that saw it still counted relies on it). */
    co__list_t left = {0};
    if (p->nworkers == 0) left = take_all(p);
    int why = p->broken ? ENOTRECOVERABLE : EPIPE;
    char msg[512] = "submitted while the pool was stopping";
    if (why == ENOTRECOVERABLE) broken_msg(p, msg, sizeof msg); /* now: once joiners hear, p may go */
    maybe_release_joiners(p, &wl);
    co__spin_unlock(&p->spin);
    co__wake_list(&wl);
    drop_all(&left, why, msg);
    return NULL;
}

/* Starts a worker (counted in nworkers by the caller). */
static int start_worker(co_pool_t *p, unsigned index)
{
    char name[NAME_MAX_LEN + 16];
    snprintf(name, sizeof name, "%s_%u", p->name, index);
    co_thread_opts_t o = {.name = name, .stack_size = p->stack_size, .daemon = p->daemon};
    co_thread_t *t = co__thread_start(worker, p, &o, true);
    if (!t) return errno;
    co_thread_free(t); /* the worker holds its own reference, in its slot */
    return 0;
}

/* ------------------------------------------------------------- pools */

co_pool_t *co_pool_new(const co_pool_opts_t *opts)
{
    co_pool_opts_t o = opts ? *opts : (co_pool_opts_t){0};
    if (o.name && strlen(o.name) > NAME_MAX_LEN) return errno = EINVAL, NULL;
    if (o.stack_size && o.stack_size < CO_STACK_MIN) return errno = EINVAL, NULL;
    co__fork_init();
    pthread_once(&hook_once, set_hooks);
    co_pool_t *p = aligned_alloc(64, sizeof *p);
    if (!p) return errno = ENOMEM, NULL;
    memset(p, 0, sizeof *p);
    p->max_workers = o.max_workers ? o.max_workers : default_workers();
    if (p->max_workers > CO_POOL_MAX_WORKERS)
        p->max_workers = CO_POOL_MAX_WORKERS; /* and slots below cannot overflow */
    p->max_queue = o.max_queue;
    p->init = o.init;
    p->init_arg = o.init_arg;
    p->stack_size = o.stack_size;
    p->daemon = o.daemon;
    p->slots = aligned_alloc(64, p->max_workers * sizeof *p->slots); /* a multiple of 64: slot_t is aligned so */
    if (p->slots) memset(p->slots, 0, p->max_workers * sizeof *p->slots);
    pthread_mutex_lock(&reg_lock);
    unsigned long n = next_pool++;
    pthread_mutex_unlock(&reg_lock);
    char buf[32];
    snprintf(buf, sizeof buf, "ThreadPool-%lu", n);
    p->name = strdup(o.name ? o.name : buf);
    if (!p->slots || !p->name) {
        free(p->slots);
        free(p->name);
        free(p);
        return errno = ENOMEM, NULL;
    }
    pthread_mutex_lock(&reg_lock);
    co__list_push(&pools, &p->reg);
    pthread_mutex_unlock(&reg_lock);
    return p;
}

/* Wakes one sleeping worker (it takes the task itself).  The caller saw
 * nidle > 0; if nobody sleeps by the time we hold the lock, the worker
 * that counted itself idle saw the inbox and went for it instead (it
 * counts and looks under this lock), so no new worker is needed either:
 * it takes the oldest task, and the next after its current one. */
static void wake_one(co_pool_t *p)
{
    co__wlist_t wl = {0};
    co__spin_lock(&p->spin);
    if (!co__list_empty(&p->idle)) {
        /* It counts as available from now on (the grant tells it so):
         * later submits leave it alone instead of waking another for
         * every task while it gets going (measured: with 2 workers on 2
         * cores, the second woken for nearly every task). */
        avail_add(p, 1);
        co__grant(&p->idle, co__waiters_first(&p->idle), 0, WOKEN, &wl);
        __atomic_store_n(&p->nidle, __atomic_load_n(&p->nidle, __ATOMIC_RELAXED) - 1, __ATOMIC_SEQ_CST);
    }
    co__spin_unlock(&p->spin);
    co__wake_list(&wl);
}

/* f was pushed, but no worker is around to take it: start one, if the
 * pool may.  0, or EAGAIN when no worker exists and none could start (f
 * was then taken back), EPIPE / ENOTRECOVERABLE when the pool stopped
 * meanwhile and f never ran. */
static int start_for(co_pool_t *p, co_future_t *f)
{
    co__wlist_t wl = {0};
    co__spin_lock(&p->spin);
    int stopped = p->shut ? EPIPE : p->broken ? ENOTRECOVERABLE : 0;
    bool start = !stopped && p->nworkers < p->max_workers;
    unsigned index = 0;
    if (start) {
        workers_add(p, 1);
        index = p->next_index++;
    }
    int err = 0;
    if (!start && (stopped && p->nworkers == 0)) err = stopped;
    co__spin_unlock(&p->spin);
    if (start && (err = start_worker(p, index)) != 0) {
        co__spin_lock(&p->spin);
        workers_add(p, -1);
        maybe_release_joiners(p, &wl);
        if (p->nworkers > 0) err = 0; /* not fatal: the others will get to f */
        co__spin_unlock(&p->spin);
        co__wake_list(&wl);
        if (err) err = EAGAIN;
    }
    if (!err) return 0;
    /* Nobody would ever run f: take it back if it is still queued. */
    co__spin_lock(&p->spin);
    drain_inbox(p);
    bool queued_still = f->queued;
    if (queued_still) {
        co__list_remove(&p->queue, &f->qnode);
        f->queued = false;
        queued_add(p, -1);
    }
    co__spin_unlock(&p->spin);
    return queued_still ? err : 0;
}

static co_future_t *submit(co_pool_t *p, co_fn fn, void *arg, void (*arg_free)(void *), int64_t deadline)
{
    CO__CHECK(p != NULL, "co_pool_submit: NULL pool");
    if (!fn) return errno = EINVAL, NULL;
    int err = __atomic_load_n(&p->shut, __ATOMIC_ACQUIRE)     ? EPIPE
              : __atomic_load_n(&p->broken, __ATOMIC_ACQUIRE) ? ENOTRECOVERABLE
                                                              : 0;
    if (err) return errno = err, NULL;
    co_future_t *f = co__future_task(fn, arg);
    if (!f) return NULL;
    f->pool = p;
    f->arg_free = arg_free;
    f->queued = true;
    if (p->max_queue && __atomic_fetch_add(&p->nqueued, 1, __ATOMIC_RELAXED) >= p->max_queue) {
        queued_add(p, -1);
        /* Full: wait for room under the spin lock, where workers admit
         * waiting submitters as they take tasks. */
        co__spin_lock(&p->spin);
        err = p->shut ? EPIPE : p->broken ? ENOTRECOVERABLE : 0;
        if (!err && queued(p) >= p->max_queue) {
            if (deadline == 0) {
                err = EAGAIN;
            } else {
                co__waiter_t wnode, *w = co__waiter_get(&wnode); /* in the record if compact */
                w->item = f;
                err = co__wait_in(w, &p->spin, &p->putters, deadline, "co_pool_submit", p, CO__BY_MESSAGE);
                if (!err) err = w->result; /* moved in by a worker, or EPIPE / ENOTRECOVERABLE */
                if (err) {
                    co__future_discard(f);
                    return errno = err, NULL;
                }
                return f; /* a worker made the room and took it in: workers exist */
            }
        }
        if (err) {
            co__spin_unlock(&p->spin);
            co__future_discard(f);
            return errno = err, NULL;
        }
        enqueue(p, f);
        co__spin_unlock(&p->spin);
    } else {
        push_inbox(p, f); /* counted in nqueued when drained (unbounded), or above */
    }
    /* Someone must take it: a worker that will look at the queue again
     * (polling, or finishing a task), else a sleeping one, else a new
     * one.  The loads are ordered after the push (see the worker's side). */
    if (__atomic_load_n(&p->navail, __ATOMIC_SEQ_CST) > 0) return f;
    if (__atomic_load_n(&p->nidle, __ATOMIC_SEQ_CST) > 0) {
        wake_one(p);
        return f;
    }
    /* All workers busy and no room for another (read without the lock:
     * only shutdown lowers the count, and then the last worker out fails
     * what is left): the task waits for one of them. */
    if (__atomic_load_n(&p->nworkers, __ATOMIC_SEQ_CST) >= p->max_workers) return f;
    err = start_for(p, f);
    if (!err) return f;
    f->arg_free = NULL; /* the caller keeps its argument */
    co__future_discard(f);
    return errno = err, NULL;
}

co_future_t *co_pool_submit(co_pool_t *p, co_fn fn, void *arg, int64_t deadline)
{
    if (!p && !(p = co_pool_default())) return NULL;
    return submit(p, fn, arg, NULL, deadline);
}

int co_task_fail(int err, const char *msg)
{
    if (err <= 0 || !task.active) return errno = EINVAL, -1;
    char *m = msg ? strdup(msg) : NULL;
    free(task.msg);
    task.err = err;
    task.msg = m;
    return 0;
}

void co_pool_shutdown(co_pool_t *p, bool cancel_pending)
{
    CO__CHECK(p != NULL, "co_pool_shutdown: NULL pool");
    co__wlist_t wl = {0};
    co__list_t all = {0};
    co__spin_lock(&p->spin);
    __atomic_store_n(&p->shut, 1, __ATOMIC_RELAXED);
    if (cancel_pending) all = take_all(p);
    fail_putters(p, EPIPE, &wl);
    wake_idle(p, &wl); /* an idle worker means an empty queue: they can end */
    maybe_release_joiners(p, &wl);
    co__spin_unlock(&p->spin);
    co__wake_list(&wl);
    drop_all(&all, 0, NULL);
}

static bool own_worker(co_pool_t *p)
{
    co_thread_t *me = co_thread_current();
    co__spin_lock(&p->spin);
    bool mine = false;
    for (size_t i = 0; i < p->max_workers; i++) mine |= p->slots[i].thread == me;
    co__spin_unlock(&p->spin);
    return mine;
}

static int join(co_pool_t *p, int64_t deadline, bool cancellable)
{
    if (own_worker(p)) return EDEADLK;
    co__spin_lock(&p->spin);
    if (!p->shut && !p->broken) {
        co__spin_unlock(&p->spin);
        return EINVAL;
    }
    if (p->nworkers > 0) {
        if (deadline == 0) {
            co__spin_unlock(&p->spin);
            return ETIMEDOUT;
        }
        co__waiter_t wnode, *w = co__waiter_get(&wnode); /* in the record if compact */
        co__waiters_push(&p->joiners, w);
        int r = co__wait_block(w, &p->spin, &p->joiners, deadline, "co_pool_join", p, CO__BY_MESSAGE, cancellable);
        if (r) {
            co__spin_unlock(&p->spin);
            return r;
        }
        co__spin_lock(&p->spin);
    }
    /* Every worker has left its loop; wait until each thread has ended
     * (its hub too), so that none is left behind. */
    size_t n = 0;
    co_thread_t **ts = malloc(p->max_workers * sizeof(co_thread_t *));
    CO__CHECK(ts != NULL, "co_pool_join: out of memory");
    for (size_t i = 0; i < p->max_workers; i++) {
        if (p->slots[i].thread) {
            ts[n] = p->slots[i].thread;
            co__thread_ref(ts[n++]);
        }
    }
    co__spin_unlock(&p->spin);
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        if (!r) r = co__thread_wait(ts[i], deadline, cancellable);
        co_thread_free(ts[i]);
    }
    free(ts);
    return r;
}

int co_pool_join(co_pool_t *p, int64_t deadline)
{
    CO__CHECK(p != NULL, "co_pool_join: NULL pool");
    int r = join(p, deadline, true);
    return r ? (errno = r, -1) : 0;
}

void co_pool_free(co_pool_t *p)
{
    if (!p) return;
    CO__CHECK(!p->is_default, "co_pool_free: the default pool is never freed");
    CO__CHECK(!own_worker(p), "co_pool_free: called from a worker of pool '%s'", p->name);
    co_pool_shutdown(p, false);
    int r = join(p, -1, false);
    CO__CHECK(r == 0, "co_pool_free: waiting for the workers of '%s' failed (%d)", p->name, r);
    pthread_mutex_lock(&reg_lock);
    co__list_remove(&pools, &p->reg);
    pthread_mutex_unlock(&reg_lock);
    for (size_t i = 0; i < p->max_workers; i++) co_thread_free(p->slots[i].thread);
    free(p->slots);
    free(p->name);
    free(p);
}

void co_pool_stats(co_pool_t *p, co_pool_stats_t *st)
{
    CO__CHECK(p != NULL && st != NULL, "co_pool_stats: NULL argument");
    co__spin_lock(&p->spin);
    drain_inbox(p); /* counts what it holds */
    st->workers = p->nworkers;
    st->idle = __atomic_load_n(&p->nidle, __ATOMIC_RELAXED) + avail(p);
    st->queued = queued(p);
    st->completed = 0;
    for (size_t i = 0; i < p->max_workers; i++)
        st->completed += __atomic_load_n(&p->slots[i].completed, __ATOMIC_RELAXED);
    co__spin_unlock(&p->spin);
}

/* ----------------------------------------------------------------- map */

typedef struct chunk {
    co_fn fn;
    size_t n;
    size_t failed_at; /* the item whose call failed, or n */
    void **items;     /* n items, then n results */
} chunk_t;

static void *chunk_run(void *arg)
{
    chunk_t *c = arg;
    void **res = c->items + c->n;
    for (size_t i = 0; i < c->n; i++) {
        res[i] = c->fn(c->items[i]);
        if (task.err) { /* co_task_fail: the chunk fails with it */
            c->failed_at = i;
            break;
        }
    }
    return NULL;
}

/* Cancels and drops futures in flight (ring[first..last)). */
static void abandon(co_future_t **ring, size_t window, size_t first, size_t last)
{
    for (size_t i = first; i < last; i++) {
        co_future_t *f = ring[i % window];
        co_future_cancel(f);
        co_future_free(f);
    }
}

int co_pool_map(co_pool_t *p, co_fn fn, void *const *items, size_t n, void **results, size_t *ndone, int64_t deadline,
                const co_map_opts_t *opts)
{
    CO__CHECK((items && results) || n == 0, "co_pool_map: NULL items or results");
    if (ndone) *ndone = 0;
    if (!p && !(p = co_pool_default())) return -1;
    if (!fn) return errno = EINVAL, -1;
    size_t window = opts && opts->window ? opts->window : 2 * p->max_workers;
    size_t per = opts && opts->chunksize ? opts->chunksize : 1;
    size_t nchunks = n / per + (n % per != 0);
    if (window > nchunks) window = nchunks;
    if (window == 0) window = 1;
    co_future_t **ring = calloc(window, sizeof(co_future_t *));
    if (!ring) return errno = ENOMEM, -1;
    size_t sent = 0, taken = 0, done = 0;
    int err = 0;
    while (taken < nchunks) {
        while (sent < nchunks && sent - taken < window) {
            size_t first = sent * per, cnt = n - first < per ? n - first : per;
            /* The chunk copies its items and keeps its results: a task
             * still running when map gives up touches only its own. */
            chunk_t *c = malloc(sizeof *c + 2 * cnt * sizeof(void *));
            if (!c) {
                err = ENOMEM;
                break;
            }
            *c = (chunk_t){.fn = fn, .n = cnt, .failed_at = cnt, .items = (void **)(c + 1)};
            memcpy(c->items, items + first, cnt * sizeof(void *));
            co_future_t *f = submit(p, chunk_run, c, free, deadline);
            if (!f) {
                err = errno;
                free(c);
                break;
            }
            ring[sent++ % window] = f;
        }
        if (err) break;
        co_future_t *f = ring[taken % window];
        CO__CHECK(f != NULL, "co_pool_map: lost a task");
        if (co_future_wait(f, deadline) < 0) {
            err = errno;
            break;
        }
        chunk_t *c = f->arg;
        /* A failed chunk holds the results before its failed item; one
         * that never ran (cancelled, a broken pool) none. */
        size_t good = !f->error ? c->n : c->failed_at < c->n ? c->failed_at : 0;
        memcpy(results + taken * per, c->items + c->n, good * sizeof(void *));
        done += good;
        if (f->error) {
            err = f->error;
            co_future_free(f);
            taken++;
            break;
        }
        co_future_free(f);
        taken++;
    }
    abandon(ring, window, taken, sent);
    free(ring);
    if (ndone) *ndone = done;
    return err ? (errno = err, -1) : 0;
}

/* ------------------------------------------------------- default pool */

static co_pool_t *default_pool;
static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t env_size(void)
{
    const char *v = getenv("COGENT_POOL_SIZE");
    if (!v || !*v) return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (*end || errno || n < 1 || n > 1024) {
        fprintf(stderr, "cogent: ignoring COGENT_POOL_SIZE=%s (want a number of threads, 1 to 1024)\n", v);
        return 0;
    }
    return (size_t)n;
}

co_pool_t *co_pool_default(void)
{
    co_pool_t *p = __atomic_load_n(&default_pool, __ATOMIC_ACQUIRE);
    if (CO__LIKELY(p != NULL)) return p;
    pthread_mutex_lock(&default_lock);
    if (!(p = default_pool)) {
        p = co_pool_new(&(co_pool_opts_t){.max_workers = env_size(), .name = "cogent-pool"});
        if (p) {
            p->is_default = true;
            __atomic_store_n(&default_pool, p, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&default_lock);
    return p;
}

int co_pool_run(co_pool_t *p, co_fn fn, void *arg, int64_t deadline, void **result)
{
    if (!p && !(p = co_pool_default())) return -1;
    co_future_t *f = co_pool_submit(p, fn, arg, deadline);
    if (!f) return -1;
    int r = co_future_result(f, deadline, result);
    int e = errno;
    if (r < 0 && !co_future_done(f)) co_future_cancel(f); /* started: it finishes on its own */
    co_future_free(f);
    return r < 0 ? (errno = e, -1) : 0;
}

/* ---------------------------------------------------------- exit, fork */

/* The exit hook's first step (thread.c): pools whose workers are waited
 * for stop taking tasks; their queues drain. */
static void exit_pools(void)
{
    /* Shutting a pool down without cancelling takes only its spin lock
     * and wakes its idle workers: safe under the registry's lock, which
     * keeps the pools from being freed meanwhile. */
    pthread_mutex_lock(&reg_lock);
    for (co__lnode_t *n = pools.head; n; n = n->next) {
        co_pool_t *p = CO__CONTAINER(n, co_pool_t, reg);
        if (!p->daemon) co_pool_shutdown(p, false);
    }
    pthread_mutex_unlock(&reg_lock);
}

void co__executor_fork_prepare(void)
{
    pthread_mutex_lock(&reg_lock);
    for (co__lnode_t *n = pools.head; n; n = n->next) co__spin_lock(&CO__CONTAINER(n, co_pool_t, reg)->spin);
}

void co__executor_fork_parent(void)
{
    for (co__lnode_t *n = pools.head; n; n = n->next) co__spin_unlock(&CO__CONTAINER(n, co_pool_t, reg)->spin);
    pthread_mutex_unlock(&reg_lock);
}

/* The workers do not exist in the child (unless the forking thread is
 * one, in the middle of a task: it goes on as the pool's only worker).
 * Queued tasks are cancelled there — the parent runs them — and tasks
 * other workers were running fail with EOWNERDEAD.  The pool is usable:
 * workers start again on demand. */
void co__executor_fork_child(void)
{
    co__wlist_t wl = {0};
    co__list_t cancelled = {0};
    co__list_t lost = {0};
    co_thread_t *me = co_thread_current();
    for (co__lnode_t *n = pools.head; n; n = n->next) {
        co_pool_t *p = CO__CONTAINER(n, co_pool_t, reg);
        co__list_t q = take_all(p);
        while (!co__list_empty(&q)) co__list_push(&cancelled, co__list_pop(&q));
        co__waiters_fork_filter(&p->idle, 0, &wl);
        co__waiters_fork_filter(&p->putters, EAGAIN, &wl);
        p->nidle = p->navail = 0;
        workers_add(p, -(long)p->nworkers);
        for (size_t i = 0; i < p->max_workers; i++) {
            slot_t *s = &p->slots[i];
            if (s->thread == me) {
                workers_add(p, 1);
                continue;
            }
            if (s->running) co__list_push(&lost, &s->running->qnode);
            co_thread_free(s->thread);
            *s = (slot_t){0};
        }
        co__waiters_fork_filter(&p->joiners, 0, &wl);
        co__spin_unlock(&p->spin);
    }
    pthread_mutex_unlock(&reg_lock);
    co__wake_list(&wl);
    co__lnode_t *n;
    while ((n = co__list_pop(&cancelled))) {
        co_future_t *f = CO__CONTAINER(n, co_future_t, qnode);
        co__future_fork_fail(f, CO_FUTURE_CANCELLED, ECANCELED, NULL);
        co__future_unref(f);
    }
    while ((n = co__list_pop(&lost))) {
        co_future_t *f = CO__CONTAINER(n, co_future_t, qnode);
        co__future_fork_fail(f, CO_FUTURE_DONE, EOWNERDEAD,
                             "the worker running this task does not exist in the fork child");
        co__future_unref(f);
    }
}
