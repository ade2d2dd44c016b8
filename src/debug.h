/* Debugging aids (debug.c): the dumper thread and the blocking monitor;
 * and the cooperative signal waits (signal.c), which share their kind of
 * state: process-wide handlers and a helper thread. */
#ifndef COGENT_DEBUG_H
#define COGENT_DEBUG_H

#include <stdio.h>

#include "core.h"

/* Set once by thread.c: appends to a dump the threads cogent started that
 * have no hub (hubs describe themselves), so that co_dump names them. */
extern void (*co__dump_threads)(FILE *f);

/* The fork path: locks are held across fork(); in the child the helper
 * threads that were running (dumper, monitor) are started again. */
void co__debug_fork_prepare(void);
void co__debug_fork_parent(void);
void co__debug_fork_child(void);

/* Signals (signal.c): the fork path. */
void co__signal_fork_prepare(void);
void co__signal_fork_parent(void);
void co__signal_fork_child(void);

#endif
