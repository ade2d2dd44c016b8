/* The switch every hub and generator transfer goes through, inline so
 * that the scheduler and the generators pay no extra call.  Included by
 * fiber.c, hub.c and gen.c. */
#ifndef COGENT_SWITCH_H
#define COGENT_SWITCH_H

#include "arch.h"
#include "fiber.h"
#include "stack.h"

#if CO_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#if CO_TSAN
#if !defined(__clang__)
#error "TSan builds of cogent need clang: co__fiber_switch_end must be free of instrumentation"
#endif
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

/* Canary-mode stacks: the stack pointer is checked on every switch away,
 * the zero zone at the bottom on the first switch away, then on one in
 * CO__CANARY_EVERY, and when the fiber ends.  The zone lies on the stack's lowest page, which nothing
 * else touches: reading it on every switch cost a second page (a TLB and
 * a cache miss) per switch, for a million coroutines as much as the
 * switch itself. */
#define CO__CANARY_EVERY 8
static inline void co__check_stack(co_fiber_t *f)
{
    if (f->stack.mode != CO_STACK_CANARY) return; /* guard page, or a thread's own stack */
    /* The first switch away included: it maps that page (the zero page)
     * once, early, as every check did before. */
    if (CO__UNLIKELY(++f->canary_tick % CO__CANARY_EVERY == 1) && CO__UNLIKELY(co__canary_broken(&f->stack)))
        co__stack_overflow(f, "its canary was overwritten");
    const char *sp = __builtin_frame_address(0);
    if (CO__UNLIKELY(sp < f->stack.lo || sp > f->stack.lo + f->stack.size))
        co__stack_overflow(f, "the stack pointer left the stack");
}

/* Everything a switch does before the stack pointer changes. */
static inline __attribute__((always_inline)) void co__before_switch(co__thread_t *t, co_fiber_t *from, co_fiber_t *to,
                                                                    bool dying)
{
    co__check_stack(from);
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
    /* The switch itself is told to TSan in co__fiber_switch_end, on the new
     * stack: nothing instrumented may run between the two. */
    if (!from->tsan) from->tsan = __tsan_get_current_fiber();
    if (!to->tsan) to->tsan = __tsan_create_fiber(0);
#endif
}

/* Suspends `from` (running) and runs `to` with `value`; returns what is
 * handed back when `from` resumes.  With `dying`, from has ended: it is
 * marked dead, its stack is freed on the other side, and this never
 * returns.  The landing (freeing that stack, telling the sanitizers) runs
 * on the new stack inside the switch itself.  Switches: yes. */
static inline void *co__fiber_transfer(co_fiber_t *from, co_fiber_t *to, void *value, bool dying)
{
    co__thread_t *t = &co__tls;
    co__before_switch(t, from, to, dying);
    return co__switch(&from->sp, to->sp, value, dying || CO_ASAN || CO_TSAN);
}

#endif
