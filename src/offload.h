/* Blocking work off the hub (offload.c): a pool of worker threads runs
 * jobs (name lookups: glibc's getaddrinfo has no non-blocking form) while
 * the caller waits, and holds the caller's deadline on every thread.
 *
 * Limits.  At most CO__OFFLOAD_LIVE_MAX workers run jobs whose callers
 * still wait; more jobs queue.  A job whose caller gave up (deadline,
 * kill) is abandoned: still queued, it is dropped without running; already
 * running, its worker no longer counts against that limit, so a job that
 * hangs (a lookup during a resolver outage) cannot starve the ones after
 * it.  Stuck workers are bounded too: CO__OFFLOAD_THREADS_MAX threads in
 * all.  With that many stuck, new jobs wait in the queue until one comes
 * back, and their callers get their deadline. */
#ifndef COGENT_OFFLOAD_H
#define COGENT_OFFLOAD_H

#include "core.h"
#include "wait.h"

#define CO__OFFLOAD_LIVE_MAX    4
#define CO__OFFLOAD_THREADS_MAX 32

typedef struct co__job {
    void (*run)(struct co__job *j);  /* on a worker thread */
    void (*drop)(struct co__job *j); /* frees an abandoned job: after run, or instead of it */
    /* private to offload.c */
    co__lnode_t qnode;  /* the queue (pool lock) */
    unsigned state;     /* queued, running, done (pool lock) */
    bool abandoned;     /* its caller left (pool lock) */
    unsigned spin;      /* guards the two below (the waiting protocol) */
    bool done;          /* run has returned */
    co__list_t waiters; /* the caller's node */
} co__job_t;

/* Runs j->run(j) on a worker thread while the caller waits: a coroutine
 * parks; a thread without a hub sleeps on a futex (it gets no hub for
 * it), or, with no deadline to hold, runs the job itself.
 * 0: done, the caller owns j again.
 * ETIMEDOUT / ECANCELED: j is the pool's from now on, which calls j->drop
 * (at once if no worker had started it, else after run).
 * EAGAIN: no worker exists or could be started; j was never queued and
 * the caller still owns it.
 * Switches: yes. */
int co__offload(co__job_t *j, int64_t deadline, const char *what);

/* Workers alive, and those among them running an abandoned job (tests,
 * dumps). */
void co__offload_counts(unsigned *workers, unsigned *stuck);

/* The fork path: the workers are gone in the child, with their jobs. */
void co__offload_fork_prepare(void);
void co__offload_fork_parent(void);
void co__offload_fork_child(void);

#endif
