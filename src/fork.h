/* The one fork path (fork.c): a single pthread_atfork registration that
 * calls each module's prepare, parent and child step in a fixed order
 * (libuv's uv_loop_fork does the same for its modules). */
#ifndef COGENT_FORK_H
#define COGENT_FORK_H

/* Registers the fork handlers once; every module that keeps state a fork
 * child must repair calls it when it first sets that state up. */
void co__fork_init(void);

#endif
