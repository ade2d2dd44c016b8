/* Objects shared between processes (pwait.c, shm.c, psync.c, pqueue.c,
 * pmap.c): how a wait crosses processes, robust locks, and the shared
 * memory every such object lives in.  docs/ipc.md has the user's side.
 *
 * Waiting across processes.  Every shared object keeps its state under a
 * robust process-shared mutex, plus futex words in the shared memory that
 * change whenever a waiter may have something to look at.  A thread
 * without a hub sleeps on such a word with FUTEX_WAIT (not the private
 * kind: the word is shared).  A coroutine must not block its thread: it
 * hands the word and the value it saw to one of the process's "cogent-
 * pwait" helper threads, which sleeps on up to 127 words at once with
 * futex_waitv(2) (Linux 5.16) and grants the coroutine through the
 * waiting protocol (wait.h) when its word changes -- a message to the
 * coroutine's hub.  Without futex_waitv each helper sleeps on one word.
 *
 * Robustness.  The kernel marks a robust mutex whose owner died
 * (FUTEX_OWNER_DIED) and wakes a waiter; the next to take it gets
 * EOWNERDEAD.  Every object is written so that a process dying anywhere
 * in its section leaves it repairable: state changes commit with one
 * final store, and wakers wake before they unlock, so a waker that dies
 * mid-wake died holding the lock and its successor, told EOWNERDEAD,
 * wakes everyone.  Waits also look again every CO__PWAIT_RECHECK ms, so
 * a waiter is never stranded for longer than that by anything the lock
 * does not see. */
#ifndef COGENT_PSHARED_H
#define COGENT_PSHARED_H

#include <pthread.h>
#include <sys/types.h>

#include "core.h"

/* --------------------------------------------------------- waiting */

#define CO__PWAIT_RECHECK 500 /* ms */

/* Waits until the shared word *addr is no longer val, the deadline, or
 * (a coroutine) a kill: a coroutine parks, its helper thread watches the
 * word; a thread without a hub sleeps on it.  Returns 0 when the word
 * changed, was woken, or CO__PWAIT_RECHECK passed (the caller looks again
 * in any case), else ETIMEDOUT, ECANCELED (only if cancellable), or
 * EAGAIN (no helper thread could be started).  `what` names the call for
 * dumps.  Switches: yes. */
int co__pwait(const unsigned *addr, unsigned val, int64_t deadline, bool cancellable, const char *what);
/* Wakes up to n sleepers (of every process) on the shared word. */
void co__pwake(const unsigned *addr, int n);
/* Bumps the word and wakes every sleeper on it: the waker's half of a
 * state change.  Call with the object's mutex held. */
void co__pwake_all(unsigned *seq);

/* The fork path (called from process.c's step): helpers are gone; those
 * with waiters left (this hub's) are started again. */
void co__pwait_fork_prepare(void);
void co__pwait_fork_parent(void);
void co__pwait_fork_child(void);

/* ------------------------------------------------------ robust locks */

/* Initialises a robust, process-shared mutex in shared memory. */
void co__rmutex_init(pthread_mutex_t *m);
/* Takes m, waiting until the deadline: a coroutine parks, a thread
 * blocks.  0; EOWNERDEAD: taken, and its previous owner died holding it
 * (already marked consistent: the caller repairs what it protects);
 * EAGAIN (deadline 0), ETIMEDOUT, ECANCELED (if cancellable), EAGAIN
 * (no helper thread could be started).  `spin`: try a little
 * before waiting (internal locks, held for a few instructions).
 * Switches: yes. */
int co__rmutex_lock(pthread_mutex_t *m, int64_t deadline, bool spin, bool cancellable, const char *what);
/* Takes m for an internal section, whatever it takes (no deadline, not
 * cancellable): only sections of a few instructions hold such a lock.
 * Returns true if the previous owner died (EOWNERDEAD): repair. */
bool co__rmutex_enter(pthread_mutex_t *m, const char *what);
void co__rmutex_unlock(pthread_mutex_t *m);

/* Who the caller is, for locks that check their owner: the process, the
 * thread, and the coroutine (0 outside a hub's coroutine). */
typedef struct co__powner {
    pid_t pid, tid;
    uint64_t co;
} co__powner_t;
co__powner_t co__powner_self(void);
static inline bool co__powner_eq(const co__powner_t *a, const co__powner_t *b)
{
    return a->pid == b->pid && a->tid == b->tid && a->co == b->co;
}

/* ---------------------------------------------------- shared memory */

enum {
    CO__SHM_LOCK = 1,
    CO__SHM_RLOCK,
    CO__SHM_SEM,
    CO__SHM_EVENT,
    CO__SHM_COND,
    CO__SHM_BARRIER,
    CO__SHM_QUEUE,
    CO__SHM_VALUE,
    CO__SHM_MAP,
    CO__SHM_NKINDS
};

#define CO__SHM_MAGIC    0x53474f43u /* "COGS" */
#define CO__SHM_VERSION  1
#define CO__SHM_NAME_MAX 200

/* The start of every shared object's memory. */
typedef struct co__shm_hdr {
    uint32_t magic;
    uint16_t version;
    uint16_t kind;
    uint64_t size;   /* of the mapping */
    int32_t creator; /* pid */
    uint32_t _pad;
    char name[CO__SHM_NAME_MAX + 8]; /* as given to _new ("" when anonymous) */
} co__shm_hdr_t;

/* Makes a mapping of `size` bytes (zero-filled) for an object of `kind`:
 * anonymous (shared with children forked later) when opts or its name is
 * NULL, else a file in /dev/shm that appears only once init(obj, arg)
 * has filled it in (so an opener never sees half an object).  Returns the
 * mapping, or NULL with errno: EINVAL (a bad name), EEXIST, ENAMETOOLONG,
 * EACCES, ENOSPC, ENOMEM. */
void *co__shm_create(int kind, size_t size, const co_shm_opts_t *opts, void (*init)(void *obj, void *arg), void *arg);
/* Maps the named object; NULL with ENOENT, EINVAL (not an object of that
 * kind, or of another cogent version), EACCES, ENOMEM. */
void *co__shm_open(int kind, const char *name);
/* Unmaps it; the creator's call also removes the name. */
void co__shm_free(void *obj);
/* The fork path: the names this process created are its own (the child
 * does not remove them); the list's lock is held across fork(). */
void co__shm_fork_prepare(void);
void co__shm_fork_parent(void);
void co__shm_fork_child(void);

#endif
