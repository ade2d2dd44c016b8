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
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_WORKERS 4
#define IDLE_MS     10000 /* a worker with nothing to do for this long exits */

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static co__job_t *queue_head, *queue_tail;
static unsigned nworkers, nidle;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void finish(co__job_t *j)
{
    co__wlist_t wl = {0};
    co__spin_lock(&j->spin);
    j->done = true;
    bool abandoned = j->abandoned;
    if (j->head) co__grant(&j->head, &j->tail, j->head, 0, NULL, &wl);
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
        while (!queue_head) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += IDLE_MS / 1000;
            nidle++;
            int r = pthread_cond_timedwait(&pool_cond, &pool_lock, &ts);
            nidle--;
            if (r == ETIMEDOUT && !queue_head) {
                nworkers--;
                __atomic_fetch_sub(&co__helper_threads, 1, __ATOMIC_RELAXED);
                pthread_mutex_unlock(&pool_lock);
                return NULL;
            }
        }
        co__job_t *j = queue_head;
        queue_head = j->next;
        if (!queue_head) queue_tail = NULL;
        pthread_mutex_unlock(&pool_lock);
        j->run(j);
        finish(j);
        pthread_mutex_lock(&pool_lock);
    }
}

static void fork_child(void)
{
    /* The workers are gone in the child; queued jobs with them. */
    pthread_mutex_init(&pool_lock, NULL);
    pthread_cond_init(&pool_cond, NULL);
    queue_head = queue_tail = NULL;
    nworkers = nidle = 0;
}

static void register_fork(void)
{
    pthread_atfork(NULL, NULL, fork_child);
}

/* Queues j, starting a worker if none is idle.  0 or an errno. */
static int submit(co__job_t *j)
{
    pthread_once(&fork_once, register_fork);
    pthread_mutex_lock(&pool_lock);
    j->next = NULL;
    if (queue_tail)
        queue_tail->next = j;
    else
        queue_head = j;
    queue_tail = j;
    int err = 0;
    if (nidle == 0 && nworkers < MAX_WORKERS) {
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&a, 256 * 1024);
        pthread_t t;
        /* Workers wake only the callers of their jobs: for the deadlock
         * check they are helpers, not threads that could release a lock. */
        __atomic_fetch_add(&co__helper_threads, 1, __ATOMIC_RELAXED);
        err = pthread_create(&t, &a, worker, NULL);
        pthread_attr_destroy(&a);
        if (err == 0) {
            nworkers++;
        } else {
            __atomic_fetch_sub(&co__helper_threads, 1, __ATOMIC_RELAXED);
        }
    }
    if (nworkers == 0) {
        /* Nobody will ever run it: take it back.  It is alone in the
         * queue, since workers only exit once the queue is empty. */
        queue_head = queue_tail = NULL;
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
    j->head = j->tail = NULL;
    int err = submit(j);
    if (err) return err;
    co__waiter_t w;
    co__spin_lock(&j->spin);
    if (j->done) {
        co__spin_unlock(&j->spin);
        return 0;
    }
    co__waiter_prepare(&w);
    h->nexternal++; /* a worker will end this wait */
    int r = co__wait_in(&w, &j->spin, &j->head, &j->tail, deadline, what, j);
    h->nexternal--;
    if (r == 0) return 0;
    /* Timed out or killed, w unlinked: hand j to the worker, unless it
     * finished in the meantime. */
    co__spin_lock(&j->spin);
    bool done = j->done;
    if (!done) j->abandoned = true;
    co__spin_unlock(&j->spin);
    return done ? 0 : r;
}

/* --------------------------------------------------------- name lookups */

typedef struct gai_job {
    co__job_t job;
    char *node, *service;
    struct addrinfo hints;
    bool has_hints;
    struct addrinfo *res;
    int rc, err;
} gai_job_t;

static void gai_run(co__job_t *j)
{
    gai_job_t *g = (gai_job_t *)j;
    errno = 0;
    g->rc = getaddrinfo(g->node, g->service, g->has_hints ? &g->hints : NULL, &g->res);
    g->err = errno;
}

static void gai_drop(co__job_t *j)
{
    gai_job_t *g = (gai_job_t *)j;
    if (g->rc == 0 && g->res) freeaddrinfo(g->res);
    free(g->node);
    free(g->service);
    free(g);
}

int co_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res,
                   int64_t deadline)
{
    if (!res || (!node && !service)) return EAI_NONAME;
    *res = NULL;
    if (!co__tls.hub) return getaddrinfo(node, service, hints, res);
    gai_job_t *g = calloc(1, sizeof *g);
    if (!g) return EAI_MEMORY;
    g->job.run = gai_run;
    g->job.drop = gai_drop;
    if ((node && !(g->node = strdup(node))) || (service && !(g->service = strdup(service)))) {
        gai_drop(&g->job);
        return EAI_MEMORY;
    }
    if (hints) {
        g->hints = *hints;
        g->hints.ai_addr = NULL;
        g->hints.ai_canonname = NULL;
        g->hints.ai_next = NULL;
        g->has_hints = true;
    }
    int r = co__offload(&g->job, deadline, "co_getaddrinfo");
    if (r) {
        if (r == EAGAIN) gai_drop(&g->job); /* never queued */
        errno = r;
        return EAI_SYSTEM;
    }
    int rc = g->rc;
    if (rc == 0) *res = g->res;
    g->res = NULL;
    if (rc == EAI_SYSTEM) errno = g->err;
    gai_drop(&g->job);
    return rc;
}

typedef struct gni_job {
    co__job_t job;
    struct sockaddr_storage sa;
    socklen_t salen;
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    socklen_t hostlen, servlen;
    int flags, rc, err;
} gni_job_t;

static void gni_run(co__job_t *j)
{
    gni_job_t *g = (gni_job_t *)j;
    errno = 0;
    g->rc = getnameinfo((struct sockaddr *)&g->sa, g->salen, g->hostlen ? g->host : NULL, g->hostlen,
                        g->servlen ? g->serv : NULL, g->servlen, g->flags);
    g->err = errno;
}

static void gni_drop(co__job_t *j)
{
    free(j);
}

int co_getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen, char *serv,
                   socklen_t servlen, int flags, int64_t deadline)
{
    if (!co__tls.hub) return getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
    if (!sa || salen > sizeof(struct sockaddr_storage)) return EAI_FAMILY;
    gni_job_t *g = calloc(1, sizeof *g);
    if (!g) return EAI_MEMORY;
    g->job.run = gni_run;
    g->job.drop = gni_drop;
    memcpy(&g->sa, sa, salen);
    g->salen = salen;
    g->hostlen = host ? (hostlen < NI_MAXHOST ? hostlen : NI_MAXHOST) : 0;
    g->servlen = serv ? (servlen < NI_MAXSERV ? servlen : NI_MAXSERV) : 0;
    g->flags = flags;
    int r = co__offload(&g->job, deadline, "co_getnameinfo");
    if (r) {
        if (r == EAGAIN) free(g);
        errno = r;
        return EAI_SYSTEM;
    }
    int rc = g->rc;
    if (rc == 0) {
        if (host && hostlen) memcpy(host, g->host, g->hostlen);
        if (serv && servlen) memcpy(serv, g->serv, g->servlen);
    } else if (rc == EAI_SYSTEM) {
        errno = g->err;
    }
    free(g);
    return rc;
}
