/* Threads cogent starts for itself (helper.c): the dumper, the blocking
 * monitor, the offload workers.  One function starts them all, names them
 * (shown by ps -L, top -H, gdb) and counts them, because the deadlock
 * check must tell them apart from the program's own threads: a helper
 * never releases a lock or fills a queue of the program's. */
#ifndef COGENT_HELPER_H
#define COGENT_HELPER_H

#include <pthread.h>

#include "core.h"

/* Starts a detached helper thread running fn(arg), named "cogent-<name>"
 * (at most 15 bytes in all; longer names are cut), with every signal
 * blocked (signals belong to the program's threads) and the given stack
 * size (0: the default).  It is counted until fn returns.  0, or an errno
 * value (EAGAIN, ENOMEM). */
int co__helper_start(const char *name, void *(*fn)(void *), void *arg, size_t stack_size);
/* Helper threads alive now. */
unsigned co__helper_count(void);

/* True once the process has been seen with a thread other than its first
 * and cogent's helpers: someone else might release a lock or fill a queue
 * a parked coroutine waits on.  Sticky; checked through /proc only while
 * it is false. */
bool co__multithreaded(void);

/* The fork path: the child has one thread and no helpers (fork.c restarts
 * those that must run). */
void co__helper_fork_child(void);

#endif
