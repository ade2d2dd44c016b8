/* What the condition variable needs from locks (lock.c), and lock-order
 * checking (lockdep.c), called by lock.c on every acquisition and release
 * while it is on. */
#ifndef COGENT_LOCK_H
#define COGENT_LOCK_H

#include "actor.h"
#include "core.h"

/* Retakes l whatever happens (no deadline, not a cancellation point).
 * Switches: yes. */
void co__lock_retake(co_lock_t *l);
/* True if the caller owns l. */
bool co__lock_owned(const co_lock_t *l);

extern bool co__lockdep_on;
static inline bool co__lockdep(void)
{
    return __atomic_load_n(&co__lockdep_on, __ATOMIC_RELAXED);
}
/* l was just taken / is about to be released by self; l is destroyed. */
void co__lockdep_acquired(co__actor_t *self, const co_lock_t *l, const char *file, int line);
void co__lockdep_released(co__actor_t *self, const co_lock_t *l);
void co__lockdep_forget(const co_lock_t *l);
/* The fork path: the graph's lock is held across fork(). */
void co__lockdep_fork_prepare(void);
void co__lockdep_fork_parent(void);
void co__lockdep_fork_child(void);

#endif
