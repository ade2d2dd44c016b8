/* Blocking work off the hub (offload.c): a small pool of worker threads
 * runs jobs (name lookups: glibc's getaddrinfo has no non-blocking form)
 * while the coroutine that asked is parked. */
#ifndef COGENT_OFFLOAD_H
#define COGENT_OFFLOAD_H

#include "core.h"
#include "wait.h"

typedef struct co__job {
    void (*run)(struct co__job *j);  /* on a worker thread */
    void (*drop)(struct co__job *j); /* frees an abandoned job after run */
    /* private to offload.c */
    co__snode_t qnode;
    unsigned spin;
    bool done, abandoned;
    co__list_t waiters;
} co__job_t;

/* Runs j->run(j) on a worker thread, parking the caller until it is done
 * (a thread without a hub runs it itself).  0: done, the caller owns j.
 * ETIMEDOUT / ECANCELED / EAGAIN (no thread could be started): j is the
 * pool's, which calls j->drop after run (EAGAIN: never queued, the
 * caller still owns j).  Switches: yes. */
int co__offload(co__job_t *j, int64_t deadline, const char *what);

/* The fork path: the workers are gone in the child, with their jobs. */
void co__offload_fork_prepare(void);
void co__offload_fork_parent(void);
void co__offload_fork_child(void);

#endif
