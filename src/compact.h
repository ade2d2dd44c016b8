/* Compact coroutines (compact.c): coroutines that run on a stack their hub
 * shares between them and, while suspended, keep only the part of it they
 * use, copied aside to a buffer of the right size (libaco's copy-stack;
 * greenlet does the same).  docs/stacks.md says how and when to use them.
 * The hub's switch knows nothing of them: a compact coroutine's resume
 * fiber is its own while its frames are on the shared stack, and the
 * hub's copier while they are not.
 *
 * The shared stack has one owner at a time, the compact coroutine whose
 * frames are on it.  Copies are lazy: a compact coroutine that switches to
 * one with a stack of its own stays the owner, and its frames are copied
 * out only when another compact coroutine needs the stack.  Copying onto
 * the stack one runs on is impossible, so a switch to a compact coroutine
 * whose frames are aside goes through the hub's copier, a small fiber on
 * a stack of its own that evicts the owner, restores the next and
 * switches to it.
 *
 * Because a compact coroutine's stack memory moves while it is suspended,
 * nothing of cogent's that another party touches then may live on it: its
 * wait nodes are in its record's compact part (co__compact_waiter,
 * co__compact_parknode), and a wait on an object found on the shared
 * stack aborts (co__compact_check). */
#ifndef COGENT_COMPACT_H
#define COGENT_COMPACT_H

#include "core.h"
#include "hub.h"

struct co__waiter;

/* The process default for co_spawn_opts_t.compact == CO_COMPACT_DEFAULT
 * (COGENT_COMPACT=1: compact), read once: one load on the spawn path. */
extern int co__compact_env; /* -1: not read yet */
bool co__compact_default_slow(void);
static inline bool co__compact_default(void)
{
    int v = __atomic_load_n(&co__compact_env, __ATOMIC_RELAXED);
    return CO__LIKELY(v == 0) ? false : v > 0 ? true : co__compact_default_slow();
}
/* Makes c (being spawned on h) compact: its compact part, and the hub's
 * shared stack on first use.  0, or ENOMEM / EINVAL (stack_size larger
 * than the shared stack). */
int co__compact_init(co__hub_t *h, co_coro_t *c, size_t stack_size);
/* Frees c's compact part (c has ended; the shared stack is not its any
 * more). */
void co__compact_free(co_coro_t *c);
/* The hub's shared stack and copier go (the hub's thread exits; no
 * compact coroutine is left). */
void co__compact_hub_exit(co__hub_t *h);
/* In a fork child, for h (the forking thread's hub). */
void co__compact_fork_child(co__hub_t *h);

/* (The wait nodes of a compact coroutine, in its record's compact part:
 * co__compact_waiter in wait.h, co__compact_parknode in coro.h.) */
/* Aborts if obj lies on h's shared stack: an object there would be
 * touched by others while its owner is suspended and its memory moved. */
void co__compact_check_slow(const co__hub_t *h, const void *obj, const char *what);
static inline void co__compact_check(const co__hub_t *h, const void *obj, const char *what)
{
    if (CO__UNLIKELY(h->shared != NULL)) co__compact_check_slow(h, obj, what);
}

#endif
