/* Fibers (fiber.c) and the per-thread state: a fiber is a stack and a
 * saved stack pointer; co_fiber_switch (assembly) and co__fiber_transfer
 * (switch.h) move between them.  Generators and coroutines are fibers
 * too; this layer calls back into them only through their class. */
#ifndef COGENT_FIBER_H
#define COGENT_FIBER_H

#include "core.h"
#include "stack.h"

enum { CO__F_NEW = 0, CO__F_SUSPENDED, CO__F_RUNNING, CO__F_DEAD };
enum { CO__K_MAIN = 0, CO__K_RAW, CO__K_GEN, CO__K_CORO };

/* A line built without stdio, for reports made inside a signal handler
 * (panic.c).  Async-signal-safe. */
typedef struct co__line {
    char buf[256];
    size_t n;
} co__line_t;
void co__line_str(co__line_t *l, const char *s);
void co__line_uint(co__line_t *l, uint64_t v, int base);

/* What a layer built on fibers tells the fiber layer about its own, so
 * that the fiber layer never names the layer above (NULL: a plain fiber). */
typedef struct co__fiber_class {
    /* An ended fiber's stack was released (on the next stack, at the
     * landing of the switch away from it). */
    void (*released)(co_fiber_t *f);
    /* Appends a description of f ("coroutine #3 \"name\"") for overflow
     * reports.  Async-signal-safe. */
    void (*describe)(const co_fiber_t *f, co__line_t *l);
} co__fiber_class_t;

struct co_fiber {
    void *sp; /* saved stack pointer while not running */
    co__stack_t stack;
    co_fiber_t *parent;
    co_fiber_fn fn;
    void *ud;
    uint8_t state;       /* CO__F_* */
    uint8_t kind;        /* CO__K_* (the assembly fast path reads it) */
    uint8_t canary_tick; /* canary mode: switches away, for the zone's check (switch.h) */
    const co__fiber_class_t *cls;
    struct co__thread *owner; /* the thread it belongs to (its co__tls) */
#if CO_ASAN
    void *asan_fake;
    const void *asan_lo;
    size_t asan_size;
#endif
#if CO_TSAN
    void *tsan;
#endif
};

typedef struct co__hub co__hub_t;
struct co__actor;

/* Per-thread state: one slice per module (libdill's layout). */
typedef struct co__thread {
    /* First, at fixed offsets: the assembly fast path reads them. */
    co_fiber_t *cur;       /* the fiber running now (NULL before init) */
    co_fiber_t *dead;      /* an ended fiber whose stack the next landing frees */
    co_fiber_t *prev;      /* the fiber the last switch left (sanitizer bookkeeping) */
    co_fiber_t main_fiber; /* the thread's own stack */
    co__hub_t *hub;        /* hub.c's slice: created on first use */
    co__stack_cache_t stacks;
    struct co__actor *actor; /* actor.c's slice: the lock owner of a thread without a hub */
} co__thread_t;

extern CO__TLS __thread co__thread_t co__tls;

/* How many freed stacks of this thread wait to be trimmed (stack.h). */
static inline size_t co__stack_dirty(void)
{
    return co__tls.stacks.ndirty;
}

/* Makes co__tls usable (main fiber, current fiber).  Cheap when done. */
static inline co__thread_t *co__thread(void)
{
    co__thread_t *t = &co__tls;
    if (CO__UNLIKELY(t->cur == NULL)) {
        t->main_fiber.state = CO__F_RUNNING;
        t->main_fiber.kind = CO__K_MAIN;
        t->main_fiber.owner = t;
        t->cur = &t->main_fiber;
    }
    return t;
}

/* Prepares a fiber that will run fn(f, value) when first switched to,
 * without a stack yet: co__fiber_attach gives it one before its first
 * switch (coroutines get theirs when they first run, so that a million
 * spawned ones do not hold a million stacks).  The parent is left NULL,
 * the kind and class are the caller's to set. */
static inline void co__fiber_prepare(co_fiber_t *f, co_fiber_fn fn, void *ud)
{
    f->fn = fn;
    f->ud = ud;
    f->state = CO__F_NEW;
    f->parent = NULL;
    f->cls = NULL;
    f->owner = co__thread();
    f->stack.lo = NULL;
    f->stack.mode = 0;
}
/* Gives a prepared fiber its stack of stack_size (0 = default) and its
 * first frame.  0, or -1 with errno EINVAL / ENOMEM. */
int co__fiber_attach(co_fiber_t *f, size_t stack_size);
/* Builds a new fiber's first frame at the top of f->stack (set by the
 * caller: a compact coroutine's is the hub's shared stack). */
void co__fiber_frame(co_fiber_t *f);
/* Both at once.  0, or -1 with errno EINVAL (fn NULL, bad size) / ENOMEM. */
int co__fiber_init(co_fiber_t *f, co_fiber_fn fn, void *ud, size_t stack_size);
/* co__fiber_transfer, the switch of the hub and generators: switch.h. */
/* Releases a fiber's stack (not running, not current).  Idempotent. */
void co__fiber_release(co_fiber_t *f);

#endif
