/* Fibers: stackful coroutines switched explicitly (greenlet's model).
 *
 * Every switch goes through one of two doors sharing one frame layout:
 * co__fiber_transfer (src/switch.h, for the hub and generators) and the
 * public co_fiber_switch (assembly, with its C halves here).  Either way
 * the stack being left has its canary checked, the sanitizers are told
 * which stack comes next, and co__fiber_switch_end, running on the new
 * stack, frees the stack of a fiber that just ended (a fiber cannot free
 * the stack it is running on). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "fiber.h"
#include "switch.h"
#include "arch/layout.h"

/* The assembly fast path of co_fiber_switch reads these. */
_Static_assert(offsetof(co_fiber_t, sp) == CO__OFF_FIBER_SP, "layout.h: fiber sp");
_Static_assert(offsetof(co_fiber_t, stack.mode) == CO__OFF_FIBER_MODE, "layout.h: fiber stack mode");
_Static_assert(offsetof(co_fiber_t, state) == CO__OFF_FIBER_STATE, "layout.h: fiber state");
_Static_assert(offsetof(co_fiber_t, kind) == CO__OFF_FIBER_KIND, "layout.h: fiber kind");
_Static_assert(offsetof(co_fiber_t, owner) == CO__OFF_FIBER_OWNER, "layout.h: fiber owner");
_Static_assert(offsetof(co__thread_t, cur) == CO__OFF_THREAD_CUR, "layout.h: thread cur");
_Static_assert(offsetof(co__thread_t, prev) == CO__OFF_THREAD_PREV, "layout.h: thread prev");
_Static_assert(CO__F_SUSPENDED == CO__STATE_SUSPENDED && CO__F_RUNNING == CO__STATE_RUNNING &&
                   CO__F_DEAD == CO__STATE_DEAD,
               "layout.h: fiber states");
_Static_assert(CO__K_RAW == CO__KIND_RAW && CO__K_MAIN < CO__K_RAW && CO__K_GEN > CO__K_RAW && CO__K_CORO > CO__K_RAW,
               "layout.h: fiber kinds");
_Static_assert(CO_STACK_CANARY == CO__MODE_CANARY, "layout.h: canary mode");

CO__TLS __thread co__thread_t co__tls;
CO__TLS __thread unsigned long co__fpu_loads; /* src/arch.h */

static void release_dead(co__thread_t *t)
{
    co_fiber_t *d = t->dead;
    t->dead = NULL;
    co__fiber_release(d);
    if (d->cls && d->cls->released) d->cls->released(d);
}

/* Runs on the stack just switched to, first thing (co__fiber_switch_end). */
static inline void landed(co__thread_t *t, co_fiber_t *self)
{
#if CO_ASAN
    const void *lo;
    size_t size;
    __sanitizer_finish_switch_fiber(self->asan_fake, &lo, &size);
    /* Learn the bounds of stacks we did not allocate (a thread's own). */
    co_fiber_t *from = t->prev;
    if (from && !from->asan_lo && from->state != CO__F_DEAD) {
        from->asan_lo = lo;
        from->asan_size = size;
    }
#else
    (void)self;
#endif
    if (CO__UNLIKELY(t->dead != NULL)) release_dead(t);
}

/* First code on a fresh fiber's stack (called by co__ctx_boot). */
static void fiber_main(void *arg, void *value)
{
    co_fiber_t *f = arg;
    void *r = f->fn(f, value); /* (the switch that started us has landed) */
    /* Ended: hand r to the nearest ancestor still alive. */
    co_fiber_t *p = f->parent;
    while (p && p->state == CO__F_DEAD) p = p->parent;
    CO__CHECK(p != NULL, "fiber %p ended with no live parent to return to", (void *)f);
    co__fiber_transfer(f, p, r, true);
    __builtin_unreachable();
}

int co__fiber_init(co_fiber_t *f, co_fiber_fn fn, void *ud, size_t stack_size)
{
    if (!fn) return errno = EINVAL, -1;
    co__fiber_prepare(f, fn, ud);
    return co__fiber_attach(f, stack_size);
}

int co__fiber_attach(co_fiber_t *f, size_t stack_size)
{
    if (co__stack_get(&f->stack, stack_size) < 0) return -1;
    co__fiber_frame(f);
    return 0;
}

void co__fiber_frame(co_fiber_t *f)
{
    /* The canary word is at the bottom, the first frame at the top. */
    f->sp = co__ctx_init(f->stack.lo, f->stack.size - f->stack.color, fiber_main, f);
#if CO_ASAN
    f->asan_fake = NULL;
    f->asan_lo = f->stack.lo;
    f->asan_size = f->stack.size;
#endif
#if CO_TSAN
    f->tsan = NULL;
#endif
}

void co__fiber_release(co_fiber_t *f)
{
#if CO_TSAN
    if (f->tsan && f->kind != CO__K_MAIN) __tsan_destroy_fiber(f->tsan);
    f->tsan = NULL;
#endif
    if (f->stack.lo && f->stack.mode != CO__STACK_SHARED) {
        if (f->state == CO__F_DEAD && f->stack.mode == CO_STACK_CANARY) {
            /* Ended normally: the canary is checked one last time. */
            if (co__canary_broken(&f->stack)) co__stack_overflow(f, "its canary was overwritten (found when it ended)");
        }
        co__stack_put(&f->stack);
    }
}

/* ------------------------------------------------------- public API */

co_fiber_t *co_fiber_new(co_fiber_fn fn, void *ud, const co_fiber_opts_t *opts)
{
    co__thread_t *t = co__thread();
    co_fiber_t *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->kind = CO__K_RAW;
    if (co__fiber_init(f, fn, ud, opts ? opts->stack_size : 0) < 0) {
        free(f);
        return NULL;
    }
    f->parent = t->cur;
    return f;
}

void co_fiber_free(co_fiber_t *f)
{
    if (!f) return;
    co__thread_t *t = co__thread();
    CO__CHECK(f->kind == CO__K_RAW, "co_fiber_free: %p is not a fiber made by co_fiber_new", (void *)f);
    CO__CHECK(f->owner == t, "co_fiber_free: fiber %p belongs to another thread", (void *)f);
    for (co_fiber_t *p = t->cur; p; p = p->parent)
        CO__CHECK(p != f, "co_fiber_free: fiber %p is running or would be resumed when the current one ends",
                  (void *)f);
    if (t->dead == f) t->dead = NULL;
    co__fiber_release(f);
    free(f);
}

/* The C halves of co_fiber_switch (src/arch/switch_*.S).  begin returns
 * the stack pointer to load (the caller's own: no switch) and whether the
 * assembly must call end on the new stack: no fiber is ever dying at a
 * co_fiber_switch, so only the sanitizers need it. */
typedef struct co__begin {
    void *sp;
    uintptr_t call_end;
} co__begin_t;
co__begin_t co__fiber_switch_begin(co_fiber_t *target, void *sp);
void co__fiber_switch_end(void);

co__begin_t co__fiber_switch_begin(co_fiber_t *target, void *sp)
{
    co__thread_t *t = co__thread();
    CO__CHECK(target != NULL, "co_fiber_switch: NULL target");
    CO__CHECK(target->state != CO__F_DEAD, "co_fiber_switch: fiber %p has ended", (void *)target);
    CO__CHECK(target->owner == t, "co_fiber_switch: fiber %p belongs to another thread (fibers never move)",
              (void *)target);
    CO__CHECK(t->cur->stack.mode != CO__STACK_SHARED,
              "co_fiber_switch: called from a compact coroutine, whose stack moves while it is switched away: "
              "fibers need coroutines with stacks of their own (docs/stacks.md)");
    co_fiber_t *from = t->cur;
    if (target == from) return (co__begin_t){sp, 0};
    CO__CHECK(target->kind != CO__K_CORO && target->kind != CO__K_GEN,
              "co_fiber_switch: %p is a coroutine or generator (use co_join / co_gen_send)", (void *)target);
    uintptr_t call_end = CO_ASAN || CO_TSAN;
    co__before_switch(t, from, target, false);
    from->sp = sp;
    return (co__begin_t){target->sp, call_end};
}

/* Out of line so that it is instrumented as usual. */
static __attribute__((noinline)) void land_after_tsan(co__thread_t *t)
{
    landed(t, t->cur);
}

/* Runs on the new stack before its registers are restored.  Not
 * instrumented by TSan: its own entry/exit hooks would straddle the
 * fiber switch it announces. */
#if CO_TSAN && defined(__clang__)
__attribute__((disable_sanitizer_instrumentation))
#endif
void co__fiber_switch_end(void)
{
    co__thread_t *t = &co__tls;
#if CO_TSAN
    __tsan_switch_to_fiber(t->cur->tsan, 0);
#endif
    land_after_tsan(t);
}

co_fiber_t *co_fiber_current(void)
{
    return co__thread()->cur;
}

co_fiber_t *co_fiber_parent(const co_fiber_t *f)
{
    return f->parent;
}

int co_fiber_set_parent(co_fiber_t *f, co_fiber_t *parent)
{
    if (!f || !parent || parent->state == CO__F_DEAD) return errno = EINVAL, -1;
    for (co_fiber_t *p = parent; p; p = p->parent)
        if (p == f) return errno = EINVAL, -1;
    f->parent = parent;
    return 0;
}

bool co_fiber_started(const co_fiber_t *f)
{
    return f->state != CO__F_NEW;
}

bool co_fiber_ended(const co_fiber_t *f)
{
    return f->state == CO__F_DEAD;
}

void *co_fiber_data(const co_fiber_t *f)
{
    return f->ud;
}
