/* Processes (process.c): what the other process modules (pipes, shared
 * objects, the process pool) and the fork path need from it.  The public
 * half is co_process_* in cogent.h; docs/process.md. */
#ifndef COGENT_PROCESS_H
#define COGENT_PROCESS_H

#include <stdnoreturn.h>
#include <sys/types.h>

#include "core.h"

/* The fork path (fork.c).  prepare/parent: the registry's lock is held
 * across fork().  In the child:
 *  - co__process_fork_clean runs before the hub's step: a fork made by
 *    co_process_start (or a pool) drops the forking thread's hub, whose
 *    coroutines are the parent's, so that the child's code starts on a
 *    clean hub (made on first use) and no copy of a parent's coroutine
 *    ever runs; its poller and doorbell descriptors are closed;
 *  - co__process_fork_child runs last: the parent's children are not the
 *    child's, so their records are dropped and the descriptors cogent
 *    made for them (pidfds, stdio pipes) are closed, with every
 *    descriptor registered with co__process_own_fd. */
void co__process_fork_prepare(void);
void co__process_fork_parent(void);
void co__process_fork_clean(void);
void co__process_fork_child(void);

/* Descriptors cogent made for its own use that no forked child may keep
 * (a pool's channels to its workers, the tracker's pipe): closed in every
 * fork child.  Never fail: a descriptor that cannot be recorded is only
 * left open in children. */
void co__process_own_fd(int fd);
void co__process_disown_fd(int fd);

/* Work done when a process ends normally -- exit(), a return from main,
 * or the return of a co_process_start child's function -- most recent
 * first: the process module terminates daemon children and waits for the
 * others; the shared-object module unlinks the names it created.  Up to
 * eight hooks; registering one twice is a no-op. */
void co__process_at_end(void (*fn)(void));
/* True once the process has begun to end normally (the hooks above run):
 * pools stop replacing workers. */
bool co__process_exiting(void);

/* Ends a child made by co_process_start: runs the end
 * hooks, flushes stdio and _exits with code & 0xff.  The parent's atexit
 * handlers do not run (as Python's os._exit after a Process's target). */
noreturn void co__process_end(int code);

/* The thread id of the caller, cached per thread and per process. */
pid_t co__gettid(void);

#endif
