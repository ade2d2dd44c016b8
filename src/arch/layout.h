/* Offsets and constants the assembly fast path of co_fiber_switch reads.
 * Included by the .S files and by src/fiber.c, which checks every value
 * against the C structures with _Static_assert. */
#ifndef COGENT_ARCH_LAYOUT_H
#define COGENT_ARCH_LAYOUT_H

#define CO__OFF_FIBER_SP    0  /* co_fiber_t.sp */
#define CO__OFF_FIBER_MODE  24 /* co_fiber_t.stack.mode */
#define CO__OFF_FIBER_STATE 56 /* co_fiber_t.state */
#define CO__OFF_FIBER_KIND  57 /* co_fiber_t.kind */
#define CO__OFF_THREAD_CUR  0  /* co__thread_t.cur */
#define CO__OFF_THREAD_PREV 16 /* co__thread_t.prev */

#define CO__STATE_SUSPENDED 1 /* CO__F_SUSPENDED */
#define CO__STATE_RUNNING   2 /* CO__F_RUNNING */
#define CO__STATE_DEAD      3 /* CO__F_DEAD */
#define CO__KIND_RAW        1 /* CO__K_RAW; CO__K_MAIN is 0 */
#define CO__MODE_CANARY     2 /* CO_STACK_CANARY */

/* Sanitizer builds always take the C path (it tells the tools). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CO__ASM_FAST 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CO__ASM_FAST 0
#endif
#endif
#ifndef CO__ASM_FAST
#define CO__ASM_FAST 1
#endif

#endif
