/* The hub: one per thread, created on first use.
 *
 * It owns a FIFO run queue, a heap of deadlines, a poller and an inbox.
 * There is no separate scheduler stack: a coroutine that blocks calls
 * co__schedule, which picks the next runnable coroutine (polling timers,
 * I/O and the inbox when the queue runs dry, or every POLL_EVERY picks
 * for fairness) and switches straight to it.  The thread's own stack is
 * the main coroutine, so main() spawns and joins without an event loop.
 *
 * Other threads talk to a hub only through its inbox: a lock-free stack
 * of messages (wake, kill, watch) plus an eventfd that rings when the
 * stack goes from empty to non-empty. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compact.h"
#include "fork.h"
#include "helper.h"
#include "hub.h"
#include "scope.h"
#include "switch.h"
#include "sys.h"

#define POLL_EVERY 64 /* picks between two looks at timers and I/O when busy */
#ifndef CO__PREFETCH_STACK_LINES
#define CO__PREFETCH_STACK_LINES 12 /* cache lines from a resumed stack pointer up: its innermost frames */
#endif

void (*co__hub_exit_hook)(co__hub_t *h);

static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

/* The registry: every hub of the process, for dumps and the monitor. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static co__list_t hubs;

static void hub_thread_exit(void *arg);
static void make_key(void)
{
    CO__CHECK(pthread_key_create(&exit_key, hub_thread_exit) == 0, "pthread_key_create failed");
}

void co__hub_each(void (*fn)(co__hub_t *h, void *arg), void *arg)
{
    pthread_mutex_lock(&reg_lock);
    for (co__lnode_t *n = hubs.head; n; n = n->next) fn(CO__CONTAINER(n, co__hub_t, reg), arg);
    pthread_mutex_unlock(&reg_lock);
}

/* ----------------------------------------------------- hub-local queues */

size_t co__parkq_wake(co__hub_t *h, co__parkq_t *q, size_t n)
{
    size_t woken = 0;
    while (woken < n && !co__list_empty(&q->list)) {
        co__parknode_t *w = CO__CONTAINER(q->list.head, co__parknode_t, node);
        co__parkq_remove(q, w);
        co__wake(h, w->co, w->seq, 0);
        woken++;
    }
    return woken;
}

/* ---------------------------------------------------------- creation */

co__hub_t *co__hub_get(void)
{
    co__thread_t *t = co__thread();
    if (t->hub) return t->hub;
    pthread_once(&key_once, make_key);
    co__fork_init();
    co__hub_t *h = calloc(1, sizeof *h);
    CO__CHECK(h != NULL, "out of memory creating the hub");
    h->thr = t;
    h->tid = (pid_t)syscall(SYS_gettid);
    co_coro_t *m = &h->main;
    co__coro_init_main(m, h, t->cur);
    h->current = m;
    h->running = m;
    h->now = co_now();
    atomic_init(&h->refs, CO__HUB_BIAS);
    atomic_init(&h->inbox, NULL);

    const char *which = getenv("COGENT_POLLER");
    h->poller.ops = (which && !strcmp(which, "poll")) ? &co__poller_poll : &co__poller_epoll;
    if (which && *which && strcmp(which, "poll") != 0 && strcmp(which, "epoll") != 0)
        fprintf(stderr, "cogent: ignoring COGENT_POLLER=%s (want epoll or poll)\n", which);
    CO__CHECK(h->poller.ops->create(&h->poller) == 0, "cannot create the %s poller: %s", h->poller.ops->name,
              strerror(errno));
    h->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    CO__CHECK(h->evfd >= 0, "cannot create the hub's eventfd: %s", strerror(errno));
    CO__CHECK(h->poller.ops->add(&h->poller, h->evfd, CO__POLL_IN, NULL) == 0, "cannot watch the hub's eventfd: %s",
              strerror(errno));
    t->hub = h;
    pthread_setspecific(exit_key, h);
    pthread_mutex_lock(&reg_lock);
    co__list_push(&hubs, &h->reg);
    pthread_mutex_unlock(&reg_lock);
    return h;
}

const char *co_hub_poller(void)
{
    return co__hub()->poller.ops->name;
}

void co_hub_stats(co_hub_stats_t *st)
{
    co__hub_t *h = co__tls.hub;
    memset(st, 0, sizeof *st);
    if (!h) return;
    st->switches = h->switches;
    st->coroutines = h->ncoros;
    st->runnable = h->nrunq;
    st->timers = h->timers.n;
}

void co__hub_unref(co__hub_t *h)
{
    if (atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) != 1) return;
    /* The eventfd lives as long as the memory: a sender holding a
     * reference may still ring it after the thread has exited. */
    co__sys_close_own(h->evfd);
    free(h);
}

/* ---------------------------------------------------------- run queue */

static inline co_coro_t *pop(co__hub_t *h)
{
    co__snode_t *n = co__fifo_pop(&h->runq);
    if (!n) return NULL;
    h->nrunq--;
    /* With many runnable, the next ones' records and stacks are rarely in
     * the cache or the TLB any more (a million released at once: each
     * resumes on a stack last touched long ago).  Fetch ahead in two
     * steps, so nothing here waits for memory: the next one's record was
     * fetched at the previous pick, so its stack pointer can be read now
     * and the top of its stack (the frames it resumes through) fetched;
     * the one after it gets its record fetched, for the next pick. */
    co__snode_t *a = h->runq.head;
    if (a) {
        const co_coro_t *ca = CO__CONTAINER(a, co_coro_t, rq);
        /* Not the one running now (a yield queues itself before this
         * pick): its `resume` is stale until it switches away, and may
         * name a fiber freed since.  A new one gets its stack at its first
         * run. */
        const co_fiber_t *f = ca->resume;
        if (ca != h->current && f->state != CO__F_NEW)
            for (uintptr_t i = 0, sp = (uintptr_t)f->sp; i < CO__PREFETCH_STACK_LINES; i++)
                __builtin_prefetch((const void *)(sp + 64 * i)); /* (integers: the one running now has no sp) */
        co__snode_t *b = a->next;
        if (b) {
            __builtin_prefetch(b);
            __builtin_prefetch(CO__CONTAINER(b, co_coro_t, rq));
        }
    }
    return CO__CONTAINER(n, co_coro_t, rq);
}

noreturn void co__hub_reentered(const co__hub_t *h)
{
    co__panic("a cogent call was made from a signal handler that interrupted thread %d while its hub waited for "
              "events; cogent's calls are not async-signal-safe: wait for the signal with co_signal_wait instead "
              "(docs/conventions.md)",
              (int)h->tid);
}

void co__wake(co__hub_t *h, co_coro_t *co, uint64_t seq, int result)
{
    co__hub_check(h);
    if (co->state != CO__C_PARKED || co->park_seq != seq) return; /* stale */
    co->wake_result = result;
    if (co__timer_armed(&co->timer)) co__timers_remove(&h->timers, &co->timer);
    co__ready(h, co);
}

/* -------------------------------------------------------------- inbox */

bool co__hub_send(co__hub_t *to, co__msg_t *m)
{
    co__msg_t *head = atomic_load_explicit(&to->inbox, memory_order_relaxed);
    do {
        if (head == CO__INBOX_CLOSED) return false;
        m->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&to->inbox, &head, m, memory_order_release, memory_order_relaxed));
    if (head == NULL) {
        /* First message since the hub last emptied the inbox: ring.  When
         * the poller reports the ring, the hub reads the eventfd before
         * taking the stack, so a ring is never lost between the two; a
         * stack it takes without a ring (its busy-time check) at worst
         * leaves one ring for a spurious, harmless wake-up. */
        uint64_t one = 1;
        ssize_t w = co__sys_write(to->evfd, &one, sizeof one);
        (void)w; /* EAGAIN: the counter is saturated, the hub is awake anyway */
    }
    return true;
}

/* Runs the handlers of a list taken from the inbox, oldest first (the
 * stack is newest first). */
static void handle_messages(co__hub_t *h, co__msg_t *list)
{
    co__msg_t *fifo = NULL;
    while (list) {
        co__msg_t *n = list->next;
        list->next = fifo;
        fifo = list;
        list = n;
    }
    while (fifo) {
        co__msg_t *m = fifo;
        fifo = m->next;
        m->handle(h, m);
    }
}

static void drain_inbox(co__hub_t *h)
{
    handle_messages(h, atomic_exchange_explicit(&h->inbox, NULL, memory_order_acquire));
}

/* ------------------------------------------------------------- events */

static void fire_timers(co__hub_t *h)
{
    co__timer_t *t = co__timers_first(&h->timers);
    if (!t) return;
    int64_t now = h->now;
    while ((t = co__timers_first(&h->timers)) && t->deadline <= now) {
        co__timers_remove(&h->timers, t);
        co_coro_t *co = (co_coro_t *)((char *)t - offsetof(co_coro_t, timer));
        co__wake(h, co, co->park_seq, ETIMEDOUT);
    }
}

/* ------------------------------------------------- signals (patch-io) */

bool (*co__hub_signal_hook)(co__hub_t *h);

void co__hub_signal(void)
{
    co__hub_t *h = co__tls.hub;
    if (!h) return;
    int saved = errno;
    /* Only this thread's handlers write it, and only this thread reads it. */
    __atomic_store_n(&h->sig_count, __atomic_load_n(&h->sig_count, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    /* The doorbell: a poller wait that began after poll_events looked at
     * the count (the handler ran in between) ends at once. */
    uint64_t one = 1;
    ssize_t w = co__sys_write(h->evfd, &one, sizeof one);
    (void)w;
    errno = saved;
}

static inline bool signals_pending(co__hub_t *h)
{
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return __atomic_load_n(&h->sig_count, __ATOMIC_RELAXED) != h->sig_seen;
}

static void signals_deliver(co__hub_t *h)
{
    unsigned n = __atomic_load_n(&h->sig_count, __ATOMIC_RELAXED);
    bool (*hook)(co__hub_t *) = __atomic_load_n(&co__hub_signal_hook, __ATOMIC_ACQUIRE);
    if (!hook || hook(h)) h->sig_seen = n;
}

/* Looks at I/O, the inbox and timers, waiting up to timeout_ms. */
static void poll_events(co__hub_t *h, int timeout_ms)
{
    bool inbox = atomic_load_explicit(&h->inbox, memory_order_relaxed) != NULL;
    bool sig = signals_pending(h); /* (patch-io) a handler ran: do not wait */
    if (sig) timeout_ms = 0;
    if (timeout_ms != 0 || h->nparked[CO__BY_IO] > 0) {
        if (inbox) timeout_ms = 0;
        if (timeout_ms) __atomic_store_n(&h->idle, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&h->in_poll, true, __ATOMIC_RELAXED);
        __atomic_signal_fence(__ATOMIC_SEQ_CST); /* ordered for a handler on this thread */
        int n = h->poller.ops->wait(&h->poller, timeout_ms);
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        __atomic_store_n(&h->in_poll, false, __ATOMIC_RELAXED);
        if (timeout_ms) __atomic_store_n(&h->idle, 0, __ATOMIC_RELAXED);
        CO__CHECK(n >= 0, "the %s poller failed: %s", h->poller.ops->name, strerror(errno));
        for (int i = 0; i < n; i++) {
            co__poll_event_t *e = &h->poller.events[i];
            if (e->data == NULL) { /* the doorbell */
                uint64_t v;
                ssize_t r = co__sys_read(h->evfd, &v, sizeof v);
                (void)r;
                inbox = true;
            } else {
                co__pollee_t *p = e->data;
                p->ready(h, p, e->events);
            }
        }
    }
    if (inbox) drain_inbox(h);
    h->now = co_now();
    fire_timers(h);
    if (sig || signals_pending(h)) signals_deliver(h); /* (patch-io) */
}

static void deadlock(co__hub_t *h)
{
    co_coro_t *m = &h->main;
    size_t others = 0;
    for (co__lnode_t *n = h->all.head; n; n = n->next)
        if (CO__CONTAINER(n, co_coro_t, all)->state == CO__C_PARKED) others++;
    if (h->exiting)
        fprintf(stderr,
                "cogent: thread %d exits with %zu coroutine%s that cannot finish (blocked, nothing can wake "
                "them); their stacks are released without unwinding\n",
                (int)h->tid, h->ncoros, h->ncoros == 1 ? "" : "s");
    else
        fprintf(stderr,
                "cogent: deadlock: the main coroutine of thread %d waits in %s, and nothing can wake it "
                "(%zu other coroutine%s blocked, no timer, no I/O, no other thread); failing with EDEADLK\n",
                (int)h->tid, m->wait_what ? m->wait_what : "a blocking call", others, others == 1 ? "" : "s");
    co__wake(h, m, m->park_seq, EDEADLK);
}

/* The slow half of picking: a look at timers, I/O and the inbox every
 * POLL_EVERY picks, or waiting when nothing is runnable.  Out of line so
 * that the common path of co__schedule stays a few instructions. */
static __attribute__((noinline, cold)) co_coro_t *pick_slow(co__hub_t *h)
{
    h->since_poll = 0;
    if (!co__fifo_empty(&h->runq)) {
        poll_events(h, 0);
        /* Busy: freed stacks' memory goes back a trickle at a time (a hub
         * that is never idle still returns it, without a burst of system
         * calls while a million coroutines end). */
        if (CO__UNLIKELY(co__stack_dirty())) co__stack_trim(4);
        return pop(h);
    }
    for (;;) {
        int timeout = -1;
        co__timer_t *t = co__timers_first(&h->timers);
        if (t) {
            timeout = co__ms_until(t->deadline);
        } else if (h->nparked[CO__BY_IO] == 0 && h->nparked[CO__BY_MESSAGE] == 0 &&
                   atomic_load_explicit(&h->inbox, memory_order_relaxed) == NULL && h->main.state == CO__C_PARKED &&
                   (h->nparked[CO__BY_THREADS] == 0 || !co__multithreaded())) {
            /* Nothing runnable, no deadline, no fd, no other thread owes
             * us anything (and none exists that could release a lock or
             * fill a queue we wait on): whoever is parked here stays
             * parked forever. */
            deadlock(h);
        }
        if (co__fifo_empty(&h->runq)) {
            /* Idle: give the memory of freed stacks back, a batch at a
             * time, looking at events between batches. */
            if (timeout != 0 && co__stack_dirty()) {
                co__stack_trim(CO__STACK_TRIM_BATCH);
                timeout = 0;
            }
            poll_events(h, timeout);
        }
        if (!co__fifo_empty(&h->runq)) return pop(h);
    }
}

void co__schedule(co__hub_t *h, bool dying)
{
    co__hub_check(h);
    co_coro_t *self = h->current;
    co_coro_t *next;
    do {
        if (CO__LIKELY(!co__fifo_empty(&h->runq) && ++h->since_poll < POLL_EVERY))
            next = pop(h);
        else
            next = pick_slow(h);
        /* A new coroutine gets its stack now, at its first run; one that
         * cannot (killed before it started, or no memory) has finished
         * without running: pick again. */
    } while (CO__UNLIKELY(next->state == CO__C_NEW) && !co__coro_start(h, next));
    next->state = CO__C_RUNNING;
    h->current = next;
    /* For the monitor thread: plain stores on x86 and cheap elsewhere. */
    __atomic_store_n(&h->ticks, h->ticks + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&h->running, next, __ATOMIC_RELEASE);
    if (next == self) return;
    h->switches++;
    co_fiber_t *from = h->thr->cur;
    self->resume = from;
    co__fiber_transfer(from, next->resume, NULL, dying);
}

int co__park(co__hub_t *h, int64_t deadline, const char *what, int waker, bool cancellable)
{
    co_coro_t *self = h->current;
    if (cancellable) deadline = co__deadline_min(deadline, co__scope_of(self)); /* timeout scopes (scope.h) */
    /* A park that does not happen still ends the caller's sequence: a
     * waker that read it before (a watch, a grant) can only be stale. */
    if (cancellable && atomic_load_explicit(&self->killed, memory_order_relaxed)) return self->park_seq++, ECANCELED;
    if (!co__no_deadline(deadline)) {
        if (deadline <= co_now()) return self->park_seq++, ETIMEDOUT; /* any other negative value too */
        if (co__timers_add(&h->timers, &self->timer, deadline) < 0) return self->park_seq++, ENOMEM;
    }
    self->state = CO__C_PARKED;
    self->park_since = h->now;
    self->wake_result = 0;
    self->cancellable = cancellable;
    self->wait_what = what;
    h->nparked[waker]++;
    co__schedule(h, false);
    h->nparked[waker]--;
    self->park_seq++; /* every wake-up aimed at this park is now stale */
    self->wait_what = NULL;
    if (co__timer_armed(&self->timer)) co__timers_remove(&h->timers, &self->timer);
    return self->wake_result;
}

/* -------------------------------------------------------- thread exit */

static void hub_thread_exit(void *arg)
{
    co__hub_t *h = arg;
    co__thread_t *t = &co__tls;
    /* pthread_exit or pthread_cancel acted on in a spawned coroutine: its
     * stack was unwound up to its first frame and abandoned, which cogent
     * cannot repair (its wait nodes, its place in lists).  cogent's own
     * calls are never cancellation points, so this takes the program's
     * own code in a coroutine. */
    CO__CHECK(h->current == &h->main && h->main.state == CO__C_RUNNING,
              "thread %d is ending (pthread_exit or pthread_cancel) inside coroutine #%" PRIu64
              " of its hub; a thread with a hub may only end from its main coroutine (docs/coroutine.md)",
              (int)h->tid, h->current->id);
    h->exiting = true;
    co__coro_exit_all(h);
    /* No coroutine is left: close the inbox and answer what is in it. */
    handle_messages(h, atomic_exchange_explicit(&h->inbox, CO__INBOX_CLOSED, memory_order_acq_rel));
    pthread_mutex_lock(&reg_lock);
    co__list_remove(&hubs, &h->reg);
    pthread_mutex_unlock(&reg_lock);
    void (*exit_hook)(co__hub_t *) = __atomic_load_n(&co__hub_exit_hook, __ATOMIC_ACQUIRE);
    if (exit_hook) exit_hook(h);
    h->poller.ops->destroy(&h->poller);
    co__timers_destroy(&h->timers);
    t->hub = NULL;
    co__stack_thread_exit();
    co__coro_thread_exit(); /* last: the messages above may have recycled records */
    /* Merge the thread's own count into the shared one; the bias goes. */
    /* Read once, before: once the count is merged, another thread may
     * drop the last reference and free h. */
    int64_t delta = (int64_t)h->local_refs - CO__HUB_BIAS;
    if (atomic_fetch_add_explicit(&h->refs, delta, memory_order_acq_rel) + delta == 0) {
        co__sys_close_own(h->evfd);
        free(h);
    }
}

/* Ends the calling thread's hub now, as its exit would (thread.c: a
 * thread started by cogent is joined only once its coroutines ended). */
void co__hub_thread_end(void)
{
    co__hub_t *h = co__tls.hub;
    if (!h) return;
    pthread_setspecific(exit_key, NULL);
    hub_thread_exit(h);
}

/* --------------------------------------------------------------- fork */

void co__hub_fork_prepare(void)
{
    pthread_mutex_lock(&reg_lock);
}

void co__hub_fork_parent(void)
{
    pthread_mutex_unlock(&reg_lock);
}

/* After fork() the child has only the forking thread.  Its hub keeps its
 * coroutines (copies of the parent's, as gevent's do after fork) but must
 * not share the parent's epoll instance or eventfd: both are made anew.
 * Messages other threads had queued are dropped, and the child holds no
 * references from them: those threads do not exist in the child; nor do
 * their hubs, which leave the registry. */
void co__hub_fork_child(void)
{
    co__hub_t *h = co__tls.hub;
    hubs = (co__list_t){0};
    if (h) {
        co__list_push(&hubs, &h->reg);
        h->poller.ops->destroy(&h->poller);
        co__sys_close_own(h->evfd);
        CO__CHECK(h->poller.ops->create(&h->poller) == 0, "fork: cannot create the %s poller: %s", h->poller.ops->name,
                  strerror(errno));
        h->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        CO__CHECK(h->evfd >= 0, "fork: cannot create the hub's eventfd: %s", strerror(errno));
        CO__CHECK(h->poller.ops->add(&h->poller, h->evfd, CO__POLL_IN, NULL) == 0,
                  "fork: cannot watch the hub's eventfd: %s", strerror(errno));
        atomic_store_explicit(&h->inbox, NULL, memory_order_relaxed);
        /* Coroutines parked on another thread's message stay parked (and
         * counted): that thread is gone, but a kill still ends them. */
        h->tid = (pid_t)syscall(SYS_gettid);
        co__compact_fork_child(h);
    }
    pthread_mutex_unlock(&reg_lock);
}
