/* Threads (thread.c): what the executor needs of them, the exit hook and
 * the fork path.  The public half is co_thread_* in cogent.h. */
#ifndef COGENT_THREAD_H
#define COGENT_THREAD_H

#include "core.h"
#include "wait.h"

/* co_thread_new with one more choice: block_signals starts the thread with
 * every signal blocked (pool workers: the program's signals go to its own
 * threads, and a task's system calls never fail with EINTR because of
 * them).  NULL with errno as co_thread_new. */
co_thread_t *co__thread_start(co_fn fn, void *arg, const co_thread_opts_t *opts, bool block_signals);

/* The executor's step of the exit hook (set once by executor.c): shuts
 * down every pool whose workers are not daemons, so that the joins that
 * follow can end.  Runs on the thread calling exit(). */
extern void (*co__thread_exit_pools)(void);

/* At normal exit, before the exit hook waits for t (a non-daemon thread),
 * it calls fn(arg) once, on the exiting thread: for threads that would
 * otherwise wait for work for ever (a hub pool's).  Set it before the
 * thread can be waited for. */
void co__thread_on_exit(co_thread_t *t, void (*fn)(void *arg), void *arg);

/* True if t is the calling thread. */
bool co__thread_is_self(const co_thread_t *t);
/* Takes a reference on t (give it back with co_thread_free). */
void co__thread_ref(co_thread_t *t);
/* Waits until t has finished, cancellably or not (a pool being freed
 * must see its workers end).  0 or an errno value (ETIMEDOUT,
 * ECANCELED). */
int co__thread_wait(co_thread_t *t, int64_t deadline, bool cancellable);

/* The fork path: the registry lock is held across fork(); in the child
 * every thread but the forking one is gone (its record says so), and the
 * forking thread is the main thread. */
void co__thread_fork_prepare(void);
void co__thread_fork_parent(void);
void co__thread_fork_child(void);

/* In a fork child, a list of waiters holds nodes of threads that no
 * longer exist (their stacks are copies nobody will run): those are
 * dropped unread beyond their links; the forking thread's own coroutines
 * are granted `result` onto wl.  Spin lock held (or the child's single
 * thread).  Used by thread.c, future.c and executor.c. */
static inline void co__waiters_fork_filter(co__list_t *l, int result, co__wlist_t *wl)
{
    co__hub_t *mine = co__tls.hub;
    co__lnode_t *n = l->head;
    while (n) {
        co__lnode_t *next = n->next;
        co__waiter_t *w = co__waiter_of(n);
        if (w->co && mine && w->hub == mine)
            co__grant(l, w, result, NULL, wl);
        else
            co__waiters_remove(l, w);
        n = next;
    }
}

#endif
