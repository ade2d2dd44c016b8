/* Coroutines (coro.c) and groups (group.c): fibers scheduled by their
 * thread's hub.  The struct lives here so that the hub, the waiting
 * protocol and the debugging aids can read a coroutine's state. */
#ifndef COGENT_CORO_H
#define COGENT_CORO_H

#include "core.h"
#include "fiber.h"
#include "list.h"
#include "timer.h"

struct co__msg;
struct co__actor;

enum { CO__C_NEW = 0, CO__C_READY, CO__C_RUNNING, CO__C_PARKED, CO__C_DONE };
enum { CO__H_OWNED = 0, CO__H_DETACHED, CO__H_JOINED };

/* A hub-local queue of parked coroutines (a coroutine's joiners, a
 * group's waiters): only coroutines of one hub, touched only on its
 * thread, so no lock.  Nodes live on the waiters' stacks: push before
 * parking, remove after, whatever woke you.  (Objects shared between
 * threads queue co__waiter_t nodes instead: wait.h.) */
typedef struct co__parknode {
    co__lnode_t node;
    co_coro_t *co;
    uint64_t seq; /* the park the node was pushed for */
    bool linked;
} co__parknode_t;
typedef struct co__parkq {
    co__list_t list;
} co__parkq_t;

struct co_coro {
    co_fiber_t fiber;   /* first; its own stack (unused by a main coroutine) */
    co_fiber_t *resume; /* the fiber to switch to when it runs again */
    co__hub_t *hub;
    co__snode_t rq;  /* the hub's run queue; the free pool */
    co__lnode_t all; /* the hub's list of live coroutines */
    uint64_t id;
    char *name; /* NULL, name_buf, or malloc'd */
    char name_buf[24];
    co_fn fn;
    void *arg;
    void *result;
    size_t stack_req;            /* the stack size asked for; the stack comes at its first run */
    struct co__compact *compact; /* compact.c's part of a compact coroutine; NULL: a stack of its own */
    int start_error;             /* ENOMEM: no stack could be had at its first run; it never ran */
    uint8_t state;               /* CO__C_*; touched only by its hub's thread */
    bool is_main;
    atomic_uchar handle; /* CO__H_* */
    atomic_bool killed;  /* sticky cancellation */
    atomic_int refs;     /* 2 at spawn: the running coroutine + the handle */
    /* the current wait */
    uint64_t park_seq; /* bumped after every park: stale wake-ups carry an old one */
    int wake_result;   /* 0, ETIMEDOUT, ECANCELED, EDEADLK */
    bool cancellable;
    const char *wait_what;
    const void *wait_obj; /* the sync object or coroutine waited on */
    int64_t park_since;   /* h->now when it parked (dumps) */
    co__timer_t timer;
    /* who waits for it to finish */
    co__parkq_t joiners; /* same hub */
    /* Other hubs' waiters: a lock-free stack of watch messages that turns
     * into CO__DONE when the coroutine is reaped (see coro.c). */
    _Atomic(struct co__msg *) watchers;
    /* group membership (group.c) */
    co_group_t *group;
    co__lnode_t gnode; /* in the group's running or done list */
    /* debugging (docs/debugging.md) */
    const char *spawn_file; /* where it was spawned, if known */
    int spawn_line;
    struct co__actor *actor; /* actor.c's slice: lock ownership, made on first lock */
};

#define CO__DONE ((struct co__msg *)(uintptr_t)1) /* co_coro_t.watchers once finished */

/* True once co has finished and been reaped: its result is readable from
 * any thread. */
static inline bool co__done(const co_coro_t *co)
{
    return atomic_load_explicit(&((co_coro_t *)co)->watchers, memory_order_acquire) == CO__DONE;
}

/* The park node of coroutine `self`: `local` (on its stack) unless it is
 * compact, whose stack moves while it is parked: then the node in its
 * record (compact.c). */
co__parknode_t *co__compact_parknode(co_coro_t *c);
static inline co__parknode_t *co__parknode_get(co__parknode_t *local, co_coro_t *self)
{
    return CO__UNLIKELY(self->compact != NULL) ? co__compact_parknode(self) : local;
}

static inline void co__parkq_push(co__parkq_t *q, co__parknode_t *n, co_coro_t *co)
{
    n->co = co;
    n->seq = co->park_seq;
    co__list_push(&q->list, &n->node);
    n->linked = true;
}
static inline void co__parkq_remove(co__parkq_t *q, co__parknode_t *n)
{
    if (!n->linked) return;
    co__list_remove(&q->list, &n->node);
    n->linked = false;
}

/* COGENT_CHECK_HANDLES: how many given-up records wait before reuse so
 * that a stale handle is caught (0: off; docs/debugging.md). */
extern size_t co__check_handles;

/* A process-wide unique coroutine id. */
uint64_t co__new_id(void);
/* A new coroutine is about to run for the first time (the hub, just
 * before switching to it): gives it its stack.  Returns false if it must
 * not run after all: it was killed before it started, or no stack could
 * be had (ENOMEM for its joiners); it has then finished, without a stack
 * and without running. */
bool co__coro_start(co__hub_t *h, co_coro_t *c);
/* Makes the main coroutine of a new hub (hub.c calls it at creation). */
void co__coro_init_main(co_coro_t *m, co__hub_t *h, co_fiber_t *thread_fiber);
/* Ends every coroutine of an exiting hub (killed, run to their end);
 * releases without unwinding those that can never end.  On the hub's
 * thread, from its main coroutine.  Switches: yes. */
void co__coro_exit_all(co__hub_t *h);
/* Hands this thread's cached coroutine structs to the global pool. */
void co__coro_thread_exit(void);
/* The fork path: the global pool's lock is held across fork(). */
void co__coro_fork_prepare(void);
void co__coro_fork_parent(void);
void co__coro_fork_child(void);

/* Records that layers above hang on a coroutine (actor.c's lock-owner
 * record) are dropped through this hook when the coroutine ends or its
 * hub exits, so that this layer never names the one above.  Set once,
 * before the first record is made. */
extern void (*co__coro_drop_actor)(struct co__actor *a);

/* group.c: a member finished (on its hub, before the switch away). */
void co__group_member_done(co_coro_t *co);
/* group.c: a member is joined or detached by its owner: leaves the group. */
void co__group_member_leave(co_coro_t *co);

#endif
