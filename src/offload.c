/* Blocking work off the hub: a small pool of worker threads runs jobs
 * (name lookups: getaddrinfo and getnameinfo have no non-blocking form in
 * glibc) while the coroutine that asked is parked.
 *
 * A job is shared by the caller and a worker.  The caller waits on it with
 * wait.c's protocol; the worker grants it when done.  A caller that times
 * out or is killed abandons the job: the worker then frees it (j->drop)
 * after running it, so nothing leaks and nobody writes to a stack that
 * has moved on. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "fork.h"
#include "helper.h"
#include "offload.h"

#define MAX_WORKERS 4
#define IDLE_MS     10000 /* a worker with nothing to do for this long exits */

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static co__fifo_t queue;
static unsigned nworkers, nidle;

static void finish(co__job_t *j)
{
    co__wlist_t wl = {0};
    co__spin_lock(&j->spin);
    j->done = true;
    bool abandoned = j->abandoned;
    if (!co__list_empty(&j->waiters)) co__grant(&j->waiters, co__waiters_first(&j->waiters), 0, NULL, &wl);
    co__spin_unlock(&j->spin);
    /* After the grant the waiter owns j: touch nothing but the list. */
    co__wake_list(&wl);
    if (abandoned) j->drop(j);
}

static void *worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool_lock);
    for (;;) {
        while (co__fifo_empty(&queue)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += IDLE_MS / 1000;
            nidle++;
            int r = pthread_cond_timedwait(&pool_cond, &pool_lock, &ts);
            nidle--;
            if (r == ETIMEDOUT && co__fifo_empty(&queue)) {
                nworkers--;
                pthread_mutex_unlock(&pool_lock);
                return NULL;
            }
        }
        co__job_t *j = CO__CONTAINER(co__fifo_pop(&queue), co__job_t, qnode);
        pthread_mutex_unlock(&pool_lock);
        j->run(j);
        finish(j);
        pthread_mutex_lock(&pool_lock);
    }
}

/* Queues j, starting a worker if none is idle.  0 or an errno. */
static int submit(co__job_t *j)
{
    co__fork_init();
    pthread_mutex_lock(&pool_lock);
    co__fifo_push(&queue, &j->qnode);
    int err = 0;
    if (nidle == 0 && nworkers < MAX_WORKERS) {
        /* Workers wake only the callers of their jobs: for the deadlock
         * check they are helpers, not threads that could release a lock. */
        err = co__helper_start("offload", worker, NULL, 256 * 1024);
        if (err == 0) nworkers++;
    }
    if (nworkers == 0) {
        /* Nobody will ever run it: take it back.  It is alone in the
         * queue, since workers only exit once the queue is empty. */
        queue = (co__fifo_t){0};
        err = EAGAIN;
    } else {
        err = 0;
        pthread_cond_signal(&pool_cond);
    }
    pthread_mutex_unlock(&pool_lock);
    return err;
}

int co__offload(co__job_t *j, int64_t deadline, const char *what)
{
    co__hub_t *h = co__tls.hub;
    if (!h) {
        j->run(j);
        return 0;
    }
    j->spin = 0;
    j->done = j->abandoned = false;
    j->waiters = (co__list_t){0};
    int err = submit(j);
    if (err) return err;
    co__waiter_t w;
    co__spin_lock(&j->spin);
    if (j->done) {
        co__spin_unlock(&j->spin);
        return 0;
    }
    co__waiter_prepare(&w);
    int r = co__wait_in(&w, &j->spin, &j->waiters, deadline, what, j, CO__BY_MESSAGE); /* a worker ends it */
    if (r == 0) return 0;
    /* Timed out or killed, w unlinked: hand j to the worker, unless it
     * finished in the meantime. */
    co__spin_lock(&j->spin);
    bool done = j->done;
    if (!done) j->abandoned = true;
    co__spin_unlock(&j->spin);
    return done ? 0 : r;
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
 * were other threads' coroutines, gone too). */
void co__offload_fork_child(void)
{
    pthread_cond_init(&pool_cond, NULL);
    queue = (co__fifo_t){0};
    nworkers = nidle = 0;
    pthread_mutex_unlock(&pool_lock);
}
