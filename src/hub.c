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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "sys.h"
#include "switch.h"

#define POLL_EVERY 64 /* picks between two looks at timers and I/O when busy */

static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void hub_thread_exit(void *arg);
static void fork_child(void);
static void make_key(void)
{
    CO__CHECK(pthread_key_create(&exit_key, hub_thread_exit) == 0, "pthread_key_create failed");
    CO__CHECK(pthread_atfork(NULL, NULL, fork_child) == 0, "pthread_atfork failed");
}

/* After fork() the child has only the forking thread.  Its hub keeps its
 * coroutines (copies of the parent's, as gevent's do after fork) but must
 * not share the parent's epoll instance or eventfd: both are made anew.
 * Messages other threads had queued are dropped, and the child holds no
 * references from them: those threads do not exist in the child. */
static void fork_child(void)
{
    co__hub_t *h = co__tls.hub;
    if (!h) {
        co__fd_fork_child(NULL);
        return;
    }
    h->poller.ops->destroy(&h->poller);
    co__sys_close(h->evfd);
    CO__CHECK(h->poller.ops->create(&h->poller) == 0, "fork: cannot create the %s poller: %s", h->poller.ops->name,
              strerror(errno));
    h->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    CO__CHECK(h->evfd >= 0, "fork: cannot create the hub's eventfd: %s", strerror(errno));
    CO__CHECK(h->poller.ops->add(&h->poller, h->evfd, CO__POLL_IN, NULL) == 0,
              "fork: cannot watch the hub's eventfd: %s", strerror(errno));
    atomic_store_explicit(&h->inbox, NULL, memory_order_relaxed);
    h->nexternal = 0;
    h->tid = (pid_t)syscall(SYS_gettid);
    co__fd_fork_child(h);
}

/* --------------------------------------------------------- wait lists */

void co__waitq_push(co__waitq_t *q, co__wnode_t *n, co_coro_t *co)
{
    n->co = co;
    n->seq = co->park_seq;
    n->next = NULL;
    n->prev = q->tail;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    n->linked = true;
}

void co__waitq_remove(co__waitq_t *q, co__wnode_t *n)
{
    if (!n->linked) return;
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail = n->prev;
    n->linked = false;
}

size_t co__waitq_wake(co__hub_t *h, co__waitq_t *q, size_t n)
{
    size_t woken = 0;
    while (woken < n && q->head) {
        co__wnode_t *w = q->head;
        co__waitq_remove(q, w);
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
    co__hub_t *h = calloc(1, sizeof *h);
    CO__CHECK(h != NULL, "out of memory creating the hub");
    h->thr = t;
    h->tid = (pid_t)syscall(SYS_gettid);
    co_coro_t *m = &h->main;
    m->is_main = true;
    m->hub = h;
    m->state = CO__C_RUNNING;
    m->resume = t->cur;
    m->timer.index = SIZE_MAX;
    m->id = co__new_id();
    atomic_init(&m->refs, 1);
    strcpy(m->name_buf, "main");
    m->name = m->name_buf;
    m->actor = co__actor_adopt_thread(m);
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
    co__debug_hub_created(h);
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
    co__sys_close(h->evfd);
    free(h);
}

/* ---------------------------------------------------------- run queue */

static inline co_coro_t *pop(co__hub_t *h)
{
    co_coro_t *co = h->runq_head;
    if (co) {
        h->runq_head = co->next;
        if (!h->runq_head) h->runq_tail = NULL;
        h->nrunq--;
    }
    return co;
}

void co__wake(co__hub_t *h, co_coro_t *co, uint64_t seq, int result)
{
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

static void drain_inbox(co__hub_t *h)
{
    co__msg_t *list = atomic_exchange_explicit(&h->inbox, NULL, memory_order_acquire);
    /* The stack is newest first: reverse to handle messages in order. */
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
        co__coro_message(h, m);
    }
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

/* Looks at I/O, the inbox and timers, waiting up to timeout_ms. */
static void poll_events(co__hub_t *h, int timeout_ms)
{
    bool inbox = atomic_load_explicit(&h->inbox, memory_order_relaxed) != NULL;
    if (timeout_ms != 0 || h->nio > 0) {
        if (inbox) timeout_ms = 0;
        if (timeout_ms) __atomic_store_n(&h->idle, 1, __ATOMIC_RELAXED);
        int n = h->poller.ops->wait(&h->poller, timeout_ms);
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
                co__fd_event(h, e->data, e->events);
            }
        }
    }
    if (inbox) drain_inbox(h);
    h->now = co_now();
    fire_timers(h);
}

static void deadlock(co__hub_t *h)
{
    co_coro_t *m = &h->main;
    size_t others = 0;
    for (co_coro_t *c = h->all; c; c = c->all_next)
        if (c->state == CO__C_PARKED) others++;
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
    if (h->runq_head) {
        poll_events(h, 0);
        return pop(h);
    }
    for (;;) {
        int timeout = -1;
        co__timer_t *t = co__timers_first(&h->timers);
        if (t) {
            timeout = co__ms_until(t->deadline);
        } else if (h->nio == 0 && h->nexternal == 0 && atomic_load_explicit(&h->inbox, memory_order_relaxed) == NULL &&
                   h->main.state == CO__C_PARKED && (h->nsync == 0 || !co__multithreaded())) {
            /* Nothing runnable, no deadline, no fd, no other thread owes
             * us anything (and none exists that could release a lock or
             * fill a queue we wait on): whoever is parked here stays
             * parked forever. */
            deadlock(h);
        }
        if (!h->runq_head) poll_events(h, timeout);
        if (h->runq_head) return pop(h);
    }
}

void co__schedule(co__hub_t *h, bool dying)
{
    co_coro_t *self = h->current;
    co_coro_t *next;
    if (CO__LIKELY(h->runq_head != NULL && ++h->since_poll < POLL_EVERY))
        next = pop(h);
    else
        next = pick_slow(h);
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

int co__park(co__hub_t *h, int64_t deadline, const char *what, bool cancellable)
{
    co_coro_t *self = h->current;
    if (cancellable && atomic_load_explicit(&self->killed, memory_order_relaxed)) return ECANCELED;
    if (deadline >= 0) {
        if (deadline <= co_now()) return ETIMEDOUT;
        if (co__timers_add(&h->timers, &self->timer, deadline) < 0) return ENOMEM;
    }
    self->state = CO__C_PARKED;
    self->park_since = h->now;
    self->wake_result = 0;
    self->cancellable = cancellable;
    self->wait_what = what;
    co__schedule(h, false);
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
    h->exiting = true;
    co__coro_exit_all(h);
    /* No coroutine is left: close the inbox and answer what is in it. */
    co__msg_t *list = atomic_exchange_explicit(&h->inbox, CO__INBOX_CLOSED, memory_order_acq_rel);
    while (list) {
        co__msg_t *m = list;
        list = m->next;
        co__coro_message(h, m);
    }
    co__debug_hub_exiting(h);
    co__fd_hub_exit(h);
    h->poller.ops->destroy(&h->poller);
    co__timers_destroy(&h->timers);
    if (h->main.actor) co__actor_release(h->main.actor);
    h->main.actor = NULL;
    t->hub = NULL;
    co__stack_thread_exit();
    co__coro_thread_exit(); /* last: the messages above may have recycled records */
    /* Merge the thread's own count into the shared one; the bias goes. */
    int64_t left = atomic_fetch_add_explicit(&h->refs, (int64_t)h->local_refs - CO__HUB_BIAS, memory_order_acq_rel) +
                   (int64_t)h->local_refs - CO__HUB_BIAS;
    if (left == 0) {
        co__sys_close(h->evfd);
        free(h);
    }
}
