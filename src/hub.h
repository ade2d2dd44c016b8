/* The hub (hub.c): one per thread, created on first use.  A run queue, a
 * heap of deadlines, a poller, an inbox for other threads' messages, and
 * the park/wake primitives every blocking call is built on. */
#ifndef COGENT_HUB_H
#define COGENT_HUB_H

#include "core.h"
#include "coro.h"
#include "poller.h"

/* A message from another thread to a hub's inbox.  The sender fills in
 * `handle`, which runs on the receiving hub's thread when the hub drains
 * its inbox, and embeds this header in a struct of its own: the inbox
 * knows no message kinds.  Who frees the message is the handler's
 * business. */
typedef struct co__msg {
    struct co__msg *next;
    void (*handle)(co__hub_t *h, struct co__msg *m);
} co__msg_t;

/* What a hub's poller watches for a layer above (fd.c's entries): the
 * poller reports it with its events, and the hub calls `ready` on its own
 * thread.  The hub knows nothing else of it. */
typedef struct co__pollee {
    void (*ready)(co__hub_t *h, struct co__pollee *p, unsigned events);
} co__pollee_t;

/* Who can end a park other than its deadline and a kill.  The deadlock
 * check asks: with nothing runnable, no timer, and every parked coroutine
 * waiting on something only this hub could end, nothing ever will. */
enum {
    CO__BY_HUB = 0, /* only this hub's own coroutines (joins, groups, yields) */
    CO__BY_IO,      /* the poller: an fd becoming ready */
    CO__BY_THREADS, /* any thread that reaches the object (locks, queues, events) */
    CO__BY_MESSAGE, /* another thread owes this hub a message (a watch, a job) */
};

struct co__hub {
    /* What every pick, park and wake touches, together at the start (the
     * poller's event array below is two kilobytes). */
    co__thread_t *thr;
    co_coro_t *current;
    /* Compact coroutines' stack and copier (compact.c), made on first use:
     * while NULL, no switch or wait looks at a coroutine's compact part. */
    struct co__shared *shared;
    co__fifo_t runq;
    size_t nrunq;
    uint32_t since_poll;
    bool in_poll; /* waiting in the poller: a hub call now comes from a signal handler */
    bool exiting;
    size_t nparked[4]; /* parked coroutines by CO__BY_* */
    uint64_t switches;
    uint64_t ticks;     /* atomic (relaxed): picks made; the monitor watches it */
    co_coro_t *running; /* atomic (release): h->current, for other threads */
    int64_t now;        /* co_now() at the last look at timers */
    size_t ncoros;      /* spawned, not yet finished */
    size_t local_refs;
    co__list_t all; /* live spawned coroutines */
    co__timers_t timers;
    co_coro_t main;             /* the thread's own stack as a coroutine */
    int evfd;                   /* the inbox doorbell */
    _Atomic(co__msg_t *) inbox; /* Treiber stack; CO__INBOX_CLOSED after exit */
    /* Biased reference count: while the thread lives, `refs` holds
     * CO__HUB_BIAS plus what other threads took, and the thread counts its
     * own coroutines in `local_refs` without atomics; at exit the two are
     * merged and the last reference frees the hub. */
    _Atomic int64_t refs;
    unsigned idle;      /* atomic: 1 while waiting in the poller */
    co__lnode_t reg;    /* the process's hub registry (reg_lock) */
    uint64_t mon_ticks; /* the monitor thread's own notes */
    int64_t mon_since;
    bool mon_reported;
    pid_t tid;
    /* (patch-io) Signal handlers that ran on this thread, counted from the
     * handler (co__hub_signal), and the count co__hub_signal_hook last
     * finished with. */
    unsigned sig_count;
    unsigned sig_seen;
    co__poller_t poller;
};

#define CO__INBOX_CLOSED ((co__msg_t *)(uintptr_t)1)
#define CO__HUB_BIAS     ((int64_t)1 << 40)

/* The calling thread's hub, created on first use; aborts if it cannot be
 * created (no fds or memory left for an epoll fd and an eventfd). */
co__hub_t *co__hub_get(void);
static inline co__hub_t *co__hub(void)
{
    co__hub_t *h = co__tls.hub;
    return CO__LIKELY(h != NULL) ? h : co__hub_get();
}

/* Parks the running coroutine until co__wake, the deadline, or (when
 * cancellable) a kill; `waker` (CO__BY_*) says who else can end it, for
 * the deadlock check.  Returns 0 when woken, else ETIMEDOUT, ECANCELED,
 * EDEADLK (nothing could ever wake the main coroutine) or ENOMEM (the
 * deadline could not be armed).  A killed coroutine parking cancellably
 * gets ECANCELED without parking; a deadline already passed (any
 * negative value but -1 included) gives ETIMEDOUT without parking.
 * Wakers target (co, co->park_seq) as read before the park.
 * Switches: yes. */
int co__park(co__hub_t *h, int64_t deadline, const char *what, int waker, bool cancellable);
/* Aborts with a message: a hub operation was called while the hub waits in
 * its poller, which only a signal handler can do (cogent's calls are not
 * async-signal-safe; co_signal_wait is the way). */
noreturn void co__hub_reentered(const co__hub_t *h);
static inline void co__hub_check(const co__hub_t *h)
{
    if (CO__UNLIKELY(__atomic_load_n(&h->in_poll, __ATOMIC_RELAXED))) co__hub_reentered(h);
}

/* Makes co (parked on h, the calling thread's hub) runnable with its park
 * returning `result`; ignored unless it is parked with park_seq == seq. */
void co__wake(co__hub_t *h, co_coro_t *co, uint64_t seq, int result);
/* Wakes (with 0) and unlinks up to n coroutines of q, oldest first.
 * Returns how many were woken. */
size_t co__parkq_wake(co__hub_t *h, co__parkq_t *q, size_t n);
/* Appends a runnable coroutine to h's run queue (a new one stays NEW). */
static inline void co__ready(co__hub_t *h, co_coro_t *co)
{
    if (co->state != CO__C_NEW) co->state = CO__C_READY;
    co__fifo_push(&h->runq, &co->rq);
    h->nrunq++;
}
/* Gives up the CPU: the running coroutine, already parked or queued by the
 * caller (or finished when `dying`), is switched away from; returns when
 * it runs again (never when dying).  Switches: yes. */
void co__schedule(co__hub_t *h, bool dying);

/* Sends m to hub `to` from any thread; m->handle runs on to's thread.
 * Returns false if that hub's thread has exited: then m was not sent. */
bool co__hub_send(co__hub_t *to, co__msg_t *m);
/* Takes / drops a reference on h from any thread (keeps its memory and
 * eventfd alive for a send); the last one frees the hub. */
static inline void co__hub_ref(co__hub_t *h)
{
    atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
}
void co__hub_unref(co__hub_t *h);

/* (patch-io) A signal handler ran on the calling thread.  If the thread
 * has a hub, the hub calls co__hub_signal_hook at its next look at events,
 * and a poller wait in progress ends at once (the doorbell rings).
 * Async-signal-safe; errno is preserved. */
void co__hub_signal(void);
/* Set by the layer that turns signals into EINTR (patch_core.c; NULL: no
 * one).  Runs on the hub's thread, from the scheduler, once handlers have
 * run since it last returned true; false means something is still to be
 * delivered, and the hub looks again at its next pick rather than wait. */
extern bool (*co__hub_signal_hook)(co__hub_t *h);

/* What a layer above must undo when a hub goes away (fd.c: its pollers
 * stop watching the hub's descriptors); set once, before the first hub
 * that needs it exits.  Runs on the exiting hub's thread. */
extern void (*co__hub_exit_hook)(co__hub_t *h);

/* Ends the calling thread's hub now, exactly as its exit would (its
 * coroutines are killed and run to their end), from its main coroutine;
 * the thread may get a new hub later.  No-op without a hub.  Switches:
 * yes.  (thread.c: a thread cogent started is joined only after this.) */
void co__hub_thread_end(void);

/* Calls fn(h, arg) for every hub of the process, with the registry
 * locked: fn must not create or end a hub, nor block. */
void co__hub_each(void (*fn)(co__hub_t *h, void *arg), void *arg);

/* The fork path (fork.c): the registry lock is held across fork(); in the
 * child, the forking thread's hub gets a new poller and doorbell, keeps
 * its coroutines and forgets other threads' messages and hubs. */
void co__hub_fork_prepare(void);
void co__hub_fork_parent(void);
void co__hub_fork_child(void);

#endif
