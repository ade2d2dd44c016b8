/* Blocking work off the hub: a pool of worker threads runs jobs (name
 * lookups: getaddrinfo and getnameinfo have no non-blocking form in
 * glibc) while the caller waits.
 *
 * A job is shared by its caller and a worker.  The caller waits on it with
 * wait.c's protocol (a coroutine parks, a thread without a hub sleeps on a
 * futex); the worker grants it when done.  A caller that times out or is
 * killed abandons the job: a job still queued leaves the queue and is
 * dropped (nobody wants its result, so it never runs); a running one is
 * the worker's to drop after run, so nothing leaks and nobody writes to a
 * stack that has moved on.
 *
 * Locks: pool_lock guards the queue, the counters and each job's state
 * and `abandoned` flag; a job's spin lock guards `done` and its waiter
 * list.  Order: pool_lock, then a job's spin lock.  A caller never holds
 * its job's spin lock when it takes pool_lock.
 *
 * Why abandoned jobs do not count: a lookup can hang for the resolver's
 * whole timeout (5 s times the attempts, per server) when the network
 * is down.  If hung workers counted against the limit, a few lookups that
 * nobody waits for any more would make every later job, a quick one
 * included, wait behind them.  So only workers whose caller still waits
 * count against CO__OFFLOAD_LIVE_MAX; stuck ones count only against the
 * hard cap CO__OFFLOAD_THREADS_MAX. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "fork.h"
#include "helper.h"
#include "offload.h"

#define IDLE_MS 10000 /* a worker with nothing to do for this long exits */

enum { J_QUEUED = 1, J_RUNNING, J_DONE };

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static co__list_t queue;
static unsigned nqueued;   /* jobs in the queue */
static unsigned nworkers;  /* threads alive, or being started */
static unsigned nstarting; /* started, not yet looking at the queue */
static unsigned nidle;     /* waiting for a job */
static unsigned nstuck;    /* running an abandoned job */

static void *worker(void *arg);

/* Starts workers for queued jobs that no idle or starting worker will
 * take, within both limits.  pool_lock held.  0, or the errno of a start
 * that failed. */
static int grow(void)
{
    while (nqueued > nidle + nstarting && nworkers - nstuck < CO__OFFLOAD_LIVE_MAX &&
           nworkers < CO__OFFLOAD_THREADS_MAX) {
        /* Workers wake only the callers of their jobs: for the deadlock
         * check they are helpers, not threads that could release a lock. */
        int err = co__helper_start("offload", worker, NULL, 256 * 1024);
        if (err) return err;
        nworkers++;
        nstarting++;
    }
    return 0;
}

/* The job's run has returned: its caller gets it, or, gone, the job is
 * dropped.  pool_lock held on entry and on return (dropped meanwhile). */
static void finish(co__job_t *j)
{
    j->state = J_DONE;
    bool abandoned = j->abandoned;
    co__wlist_t wl = {0};
    if (abandoned) {
        nstuck--;
    } else {
        co__spin_lock(&j->spin);
        j->done = true;
        if (!co__list_empty(&j->waiters)) co__grant(&j->waiters, co__waiters_first(&j->waiters), 0, NULL, &wl);
        co__spin_unlock(&j->spin);
    }
    /* From here the caller (granted, or about to see J_DONE) owns j:
     * touch nothing but the wake list. */
    pthread_mutex_unlock(&pool_lock);
    co__wake_list(&wl);
    if (abandoned) j->drop(j);
    pthread_mutex_lock(&pool_lock);
}

static void *worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool_lock);
    nstarting--;
    for (;;) {
        while (co__list_empty(&queue)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += IDLE_MS / 1000;
            nidle++;
            int r = pthread_cond_timedwait(&pool_cond, &pool_lock, &ts);
            nidle--;
            if (r == ETIMEDOUT && co__list_empty(&queue)) {
                nworkers--;
                pthread_mutex_unlock(&pool_lock);
                return NULL;
            }
        }
        co__job_t *j = CO__CONTAINER(co__list_pop(&queue), co__job_t, qnode);
        nqueued--;
        j->state = J_RUNNING;
        pthread_mutex_unlock(&pool_lock);
        j->run(j);
        pthread_mutex_lock(&pool_lock);
        finish(j);
    }
}

/* Queues j, starting a worker if needed.  0, or EAGAIN when no worker
 * exists or could be started (j is not queued then). */
static int submit(co__job_t *j)
{
    co__fork_init();
    pthread_mutex_lock(&pool_lock);
    co__list_push(&queue, &j->qnode);
    nqueued++;
    j->state = J_QUEUED;
    grow();
    if (nworkers == 0) {
        /* Nobody will ever run it: take it back. */
        co__list_remove(&queue, &j->qnode);
        nqueued--;
        pthread_mutex_unlock(&pool_lock);
        return EAGAIN;
    }
    /* A failed start with workers alive is not fatal: they will get to
     * the job, and the caller's deadline still holds. */
    pthread_cond_signal(&pool_cond);
    pthread_mutex_unlock(&pool_lock);
    return 0;
}

/* The caller's wait ended without a grant (r: its errno).  0 if the job
 * finished meanwhile (the caller owns it), else r with j the pool's. */
static int abandon(co__job_t *j, int r)
{
    pthread_mutex_lock(&pool_lock);
    switch (j->state) {
    case J_DONE:
        pthread_mutex_unlock(&pool_lock);
        return 0;
    case J_QUEUED:
        co__list_remove(&queue, &j->qnode);
        nqueued--;
        pthread_mutex_unlock(&pool_lock);
        j->drop(j);
        return r;
    default:
        j->abandoned = true;
        nstuck++;
        /* Its worker no longer counts: jobs queued behind it get one. */
        grow();
        pthread_mutex_unlock(&pool_lock);
        return r;
    }
}

int co__offload(co__job_t *j, int64_t deadline, const char *what)
{
    /* A thread without a hub and without a deadline has nothing to hold
     * and nothing else to run: the job runs right here, as the blocking
     * call it wraps would. */
    if (!co__tls.hub && co__no_deadline(deadline)) {
        j->run(j);
        return 0;
    }
    j->spin = 0;
    j->done = j->abandoned = false;
    j->state = 0;
    j->waiters = (co__list_t){0};
    int err = submit(j);
    if (err) return err;
    co__waiter_t wl_, *w;
    co__spin_lock(&j->spin);
    if (j->done) {
        co__spin_unlock(&j->spin);
        return 0;
    }
    w = co__waiter_get(&wl_);
    int r = co__wait_in(w, &j->spin, &j->waiters, deadline, what, j, CO__BY_MESSAGE); /* a worker ends it */
    return r == 0 ? 0 : abandon(j, r);
}

void co__offload_counts(unsigned *workers, unsigned *stuck)
{
    pthread_mutex_lock(&pool_lock);
    *workers = nworkers;
    *stuck = nstuck;
    pthread_mutex_unlock(&pool_lock);
}

/* ---------------------------------------------------------------- fork */

void co__offload_fork_prepare(void)
{
    pthread_mutex_lock(&pool_lock);
}

void co__offload_fork_parent(void)
{
    pthread_mutex_unlock(&pool_lock);
}

/* The workers are gone in the child; queued jobs with them (their callers
 * were other threads, gone too). */
void co__offload_fork_child(void)
{
    pthread_cond_init(&pool_cond, NULL);
    queue = (co__list_t){0};
    nqueued = nworkers = nstarting = nidle = nstuck = 0;
    pthread_mutex_unlock(&pool_lock);
}
