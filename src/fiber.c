/* Fibers: stackful coroutines switched explicitly (greenlet's model).
 *
 * Every switch in cogent, hub or raw, goes through co__fiber_transfer: it
 * checks the canary of the stack it leaves, tells the sanitizers which
 * stack comes next, and frees the stack of a fiber that just ended (a
 * fiber cannot free the stack it is running on, so the one that lands
 * does it). */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

#if CO_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#if CO_TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

CO__TLS __thread co__thread_t co__tls;

static void release_dead(co__thread_t *t)
{
    co_fiber_t *d = t->dead;
    t->dead = NULL;
    co__fiber_release(d);
    if (d->kind == CO__K_CORO) co__coro_reap((co_coro_t *)d);
}

/* Runs on the stack just switched to, first thing. */
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

static void check_stack(const co_fiber_t *f)
{
    if (!f->stack.lo) return; /* a thread's own stack */
    if (CO__UNLIKELY(*(const uint64_t *)f->stack.lo != CO__CANARY))
        co__stack_overflow(f, "its canary was overwritten");
    const char *sp = __builtin_frame_address(0);
    if (CO__UNLIKELY(sp < f->stack.lo || sp > f->stack.lo + f->stack.size))
        co__stack_overflow(f, "the stack pointer left the stack");
}

void *co__fiber_transfer(co_fiber_t *from, co_fiber_t *to, void *value, bool dying)
{
    co__thread_t *t = &co__tls;
    check_stack(from);
    if (dying) {
        from->state = CO__F_DEAD;
        t->dead = from;
    } else {
        from->state = CO__F_SUSPENDED;
    }
    to->state = CO__F_RUNNING;
    t->cur = to;
    t->prev = from;
#if CO_ASAN
    /* A dying fiber passes NULL: ASan may drop its fake frames. */
    __sanitizer_start_switch_fiber(dying ? NULL : &from->asan_fake, to->asan_lo, to->asan_size);
#endif
#if CO_TSAN
    if (!from->tsan) from->tsan = __tsan_get_current_fiber();
    if (!to->tsan) to->tsan = __tsan_create_fiber(0);
    __tsan_switch_to_fiber(to->tsan, 0);
#endif
    void *v = co__switch(&from->sp, to->sp, value);
    /* Resumed: t->cur == from again. */
    landed(t, from);
    return v;
}

/* First code on a fresh fiber's stack (called by co__ctx_boot). */
static void fiber_main(void *arg, void *value)
{
    co_fiber_t *f = arg;
    co__thread_t *t = &co__tls;
    landed(t, f);
    void *r = f->fn(f, value);
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
    if (co__stack_get(&f->stack, stack_size) < 0) return -1;
    f->fn = fn;
    f->ud = ud;
    f->state = CO__F_NEW;
    f->parent = NULL;
    /* The canary word is at the bottom, the first frame at the top. */
    f->sp = co__ctx_init(f->stack.lo, f->stack.size, fiber_main, f);
#if CO_ASAN
    f->asan_fake = NULL;
    f->asan_lo = f->stack.lo;
    f->asan_size = f->stack.size;
#endif
#if CO_TSAN
    f->tsan = NULL;
#endif
    return 0;
}

void co__fiber_release(co_fiber_t *f)
{
#if CO_TSAN
    if (f->tsan && f->kind != CO__K_MAIN) __tsan_destroy_fiber(f->tsan);
    f->tsan = NULL;
#endif
    if (f->stack.lo) {
        if (f->state == CO__F_DEAD) {
            /* Ended normally: the canary is checked one last time. */
            if (*(const uint64_t *)f->stack.lo != CO__CANARY)
                co__stack_overflow(f, "its canary was overwritten (found when it ended)");
        }
        co__stack_put(&f->stack);
    }
}

/* ------------------------------------------------------- public API */

co_fiber_t *co_fiber_new(co_fiber_fn fn, void *ud, size_t stack_size)
{
    co__thread_t *t = co__thread();
    co_fiber_t *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->kind = CO__K_RAW;
    if (co__fiber_init(f, fn, ud, stack_size) < 0) {
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
    for (co_fiber_t *p = t->cur; p; p = p->parent)
        CO__CHECK(p != f, "co_fiber_free: fiber %p is running or would be resumed when the current one ends",
                  (void *)f);
    if (t->dead == f) t->dead = NULL;
    co__fiber_release(f);
    free(f);
}

void *co_fiber_switch(co_fiber_t *target, void *value)
{
    co__thread_t *t = co__thread();
    CO__CHECK(target != NULL, "co_fiber_switch: NULL target");
    CO__CHECK(target->state != CO__F_DEAD, "co_fiber_switch: fiber %p has ended", (void *)target);
    if (target == t->cur) return value;
    CO__CHECK(target->kind != CO__K_CORO && target->kind != CO__K_GEN,
              "co_fiber_switch: %p is a coroutine or generator (use co_join / co_gen_send)", (void *)target);
    return co__fiber_transfer(t->cur, target, value, false);
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
