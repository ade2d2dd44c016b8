/* The one fork path.
 *
 * fork() copies the calling thread only.  Every module that keeps state
 * shared between threads (a lock, a list of threads, a poller) must give
 * the child a usable copy, and the order matters: the lower layers first,
 * so that each step can rely on the ones below it.  One pthread_atfork
 * registration calls the modules in this fixed order:
 *
 *   prepare (parent, before fork): take the global locks, top layer first,
 *     so that no other thread is inside a section the child would copy
 *     half-done;
 *   parent (after fork): release them, in the opposite order;
 *   child (after fork, one thread):
 *     1. helper threads    none exist any more; the process is single-threaded
 *     2. stacks            slab free lists whole; lock released
 *     3. coroutine pool    lock released
 *     4. hub               the forking thread's hub gets a new poller and
 *                          doorbell; other hubs leave the registry.  A
 *                          fork made by co_process_start drops the hub
 *                          first (process.c): that child starts clean
 *     5. fd table          other threads' waiters and registrations dropped,
 *                          this hub's poller watches again what it watched
 *     6. actors            lock released
 *     7. lock-order graph  lock released
 *     8. offload pool      no workers, no queued jobs
 *     9. name lookups      the /etc/hosts table's lock released
 *    10. signals           this hub's waiters kept, the dispatcher restarted
 *    11. debugging aids    the dumper and the monitor restarted if they ran
 *    12. future records    the pool's lock released
 *    13. threads           the forking thread is the main thread; every
 *                          other thread's record says it is gone
 *    14. thread pools      no workers (they start again on demand); queued
 *                          tasks cancelled, running ones failed
 *    15. processes         the parent's children are not the child's: their
 *                          records dropped, the descriptors cogent made for
 *                          them and for itself (pools) closed
 *
 * What the child inherits and keeps: its own coroutines (copies, as in
 * gevent), the fd table's knowledge of its descriptors, held locks (a lock
 * held by a thread that does not exist in the child stays held: see
 * docs/conventions.md). */
#include <pthread.h>

#include "internal.h"
#include "net.h"
#include "process.h"

static void prepare(void)
{
    co__process_fork_prepare();
    co__executor_fork_prepare();
    co__thread_fork_prepare();
    co__future_fork_prepare();
    co__debug_fork_prepare();
    co__signal_fork_prepare();
    co__dns_fork_prepare();
    co__offload_fork_prepare();
    co__lockdep_fork_prepare();
    co__actor_fork_prepare();
    co__hub_fork_prepare();
    co__coro_fork_prepare();
    co__stack_fork_prepare();
}

static void parent(void)
{
    co__stack_fork_parent();
    co__coro_fork_parent();
    co__hub_fork_parent();
    co__actor_fork_parent();
    co__lockdep_fork_parent();
    co__offload_fork_parent();
    co__dns_fork_parent();
    co__signal_fork_parent();
    co__debug_fork_parent();
    co__future_fork_parent();
    co__thread_fork_parent();
    co__executor_fork_parent();
    co__process_fork_parent();
}

static void child(void)
{
    co__helper_fork_child();
    co__stack_fork_child();
    co__coro_fork_child();
    co__process_fork_clean();
    co__hub_fork_child();
    co__fd_fork_child(co__tls.hub);
    co__actor_fork_child();
    co__lockdep_fork_child();
    co__offload_fork_child();
    co__dns_fork_child();
    co__signal_fork_child();
    co__debug_fork_child();
    co__future_fork_child();
    co__thread_fork_child();
    co__executor_fork_child();
    co__process_fork_child();
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void register_handlers(void)
{
    CO__CHECK(pthread_atfork(prepare, parent, child) == 0, "pthread_atfork failed");
}

void co__fork_init(void)
{
    pthread_once(&once, register_handlers);
}
