/* Thread pools (executor.c): what the future layer and the fork path ask
 * of them.  The public half is co_pool_* in cogent.h. */
#ifndef COGENT_EXECUTOR_H
#define COGENT_EXECUTOR_H

#include "future.h"

/* f, a task of a pool (f->pool), was just cancelled: if it is still
 * queued it leaves the queue (room for a waiting submitter) and the
 * pool's reference on it is dropped.  Called by co_future_cancel without
 * any lock held. */
void co__pool_cancelled(co_future_t *f);

/* The fork path: every pool's spin lock (and the registry's lock) is held
 * across fork(); in the child the pools lose their workers, their queued
 * tasks are cancelled and the tasks other workers ran fail with
 * EOWNERDEAD; new workers start on demand. */
void co__executor_fork_prepare(void);
void co__executor_fork_parent(void);
void co__executor_fork_child(void);

#endif
