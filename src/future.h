/* Futures (future.c): the struct, shared with the executors that run
 * tasks behind them.  The public half is co_future_* in cogent.h.
 *
 * A future is shared by whoever completes it (an executor's worker, or
 * the code holding a promise) and whoever waits on it, so it is
 * reference-counted: one reference per handle given out, one held by an
 * executor until it has completed or dropped the task, one per pending
 * callback and per as_completed set.  Its spin lock guards the state
 * change and the lists of waiters, listeners (multi-future waits) and
 * callbacks; the state itself is also readable without it. */
#ifndef COGENT_FUTURE_H
#define COGENT_FUTURE_H

#include "core.h"
#include "wait.h"

struct co__future_cb;

struct co_future {
    unsigned spin;
    unsigned state; /* atomic: co_future_state_t */
    int refs;       /* atomic */
    bool task;      /* completed by an executor (a worker owes it): never "nothing could complete it" */
    int error;      /* 0, an errno value, or ECANCELED once cancelled */
    char *msg;      /* malloc'd, or NULL */
    void *value;
    size_t size;               /* bytes of a set_bytes result (value points at the copy) */
    co__list_t waiters;        /* co__waiter_t: single-future waits */
    co__list_t listeners;      /* multi-future waits (co_futures_wait, as_completed) */
    struct co__future_cb *cbs; /* callbacks, oldest first */
    struct co__future_cb *cbs_tail;
    /* The executor's part (executor.c), unused by promises. */
    co__lnode_t qnode; /* its pool's queue (the pool's spin lock) */
    bool queued;       /* on that queue (the pool's spin lock) */
    co_fn fn;
    void *arg;
    void (*arg_free)(void *arg); /* frees arg with the future (map's chunks) */
    void *pool;
};

/* A new future for a task run by an executor: two references, the
 * handle's and the executor's.  NULL with errno ENOMEM. */
co_future_t *co__future_task(co_fn fn, void *arg);
/* Completes a running (or pending) future with a value or, err > 0, an
 * error and a message (copied).  The executor's side of set_result and
 * set_error.  0, or EALREADY if it was complete (cancelled meanwhile). */
int co__future_complete(co_future_t *f, void *value, int err, const char *msg);
/* Drops a reference (the executor's); the last one frees f. */
void co__future_unref(co_future_t *f);
void co__future_ref(co_future_t *f);

/* co_future_wait, cancellably or not (a wait that must not lose what it
 * waits for).  0 or an errno value.  Switches: yes, unless complete. */
int co__future_wait(co_future_t *f, int64_t deadline, bool cancellable);

/* Frees a record co__future_task made that was never handed out. */
void co__future_discard(co_future_t *f);

/* The fork path: the record pool's lock is held across fork(). */
void co__future_fork_prepare(void);
void co__future_fork_parent(void);
void co__future_fork_child(void);

/* The fork path (executor.c, for the tasks its workers ran or had
 * queued): completes f in the child — cancelled, or done with err and
 * msg — waking only the
 * forking thread's own waiters and running only its own callbacks; the
 * others belong to threads that do not exist there. */
void co__future_fork_fail(co_future_t *f, co_future_state_t state, int err, const char *msg);

#endif
