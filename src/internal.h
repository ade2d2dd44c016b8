/* Every internal header, in layer order, for the files that use most of
 * them.  Each module's contract is in its own header:
 *
 *   core.h     public header, sanitizer switches, co__panic / CO__CHECK,
 *              the error conventions of each layer
 *   list.h     the intrusive lists (doubly linked; singly linked FIFO)
 *   arch.h     the context switch and its frame
 *   stack.h    stacks: get / put / overflow reports
 *   fiber.h    fibers, the per-thread state, fiber classes
 *   switch.h   the inline switch of the hub and generators
 *   timer.h    the deadline heap, deadline arithmetic
 *   poller.h   the poller backends' interface
 *   coro.h     the coroutine struct, hub-local park queues, groups' hooks
 *   hub.h      the hub: park / wake / schedule, inbox messages, registry
 *   futex.h    futex waits for threads without a hub
 *   helper.h   cogent's own helper threads
 *   wait.h     the waiting protocol: spin locks, waiters, grants
 *   actor.h    lock owners
 *   lock.h     lock internals for conditions, lock-order checking
 *   fd.h       the fd table: readiness waits, registrations
 *   io.h       the cooperative calls with options (for patch_core.c)
 *   offload.h  the worker pool for blocking calls (name lookups)
 *   net.h      sockets and names: Unix socket files, lookups without DNS
 *   debug.h    dumps and the monitor
 *   thread.h   threads cogent starts: the exit hook, the fork path
 *   future.h   the future struct, for the executors
 *   executor.h thread pools: cancellation, the fork path
 *   fork.h     the one fork path
 *   sys.h      raw system calls (never interposed by the patch library)
 */
#ifndef COGENT_INTERNAL_H
#define COGENT_INTERNAL_H

#include "core.h"
#include "list.h"
#include "arch.h"
#include "stack.h"
#include "fiber.h"
#include "timer.h"
#include "poller.h"
#include "coro.h"
#include "hub.h"
#include "futex.h"
#include "helper.h"
#include "wait.h"
#include "actor.h"
#include "lock.h"
#include "fd.h"
#include "io.h"
#include "offload.h"
#include "net.h"
#include "debug.h"
#include "thread.h"
#include "future.h"
#include "executor.h"
#include "fork.h"

#endif
