/* Numbers the assembly and the C code must agree on, in one place:
 * included by the .S files, by src/arch.h (which checks the frame with
 * _Static_assert) and by src/fiber.c (which checks every offset against
 * the C structures).  Plain #defines only: the assembler reads this. */
#ifndef COGENT_ARCH_LAYOUT_H
#define COGENT_ARCH_LAYOUT_H

/* ------------------------------------------------- the switch frame
 * A suspended context's stack pointer points at this frame (slot 0, lowest
 * address); 8 bytes a slot.  The assembly addresses every slot as
 * CO__SLOT_x * 8 from SP, so these numbers *are* its layout. */
#if defined(__x86_64__)
#define CO__SLOT_FPU    0 /* MXCSR (low 4 bytes), x87 control word (next 2) */
#define CO__SLOT_R15    1
#define CO__SLOT_R14    2
#define CO__SLOT_R13    3
#define CO__SLOT_R12    4
#define CO__SLOT_RBX    5
#define CO__SLOT_RBP    6
#define CO__SLOT_RET    7 /* return address, pushed by the caller's `call` */
#define CO__FRAME_SLOTS 8
/* A fresh context (co__ctx_init): co__ctx_boot finds these here. */
#define CO__SLOT_ENTRY CO__SLOT_R12
#define CO__SLOT_ARG   CO__SLOT_R13
/* MXCSR bits 6-15: DAZ, the six exception masks, rounding control, FTZ.
 * Bits 0-5 are the sticky exception flags (IE DE ZE OE UE PE): status,
 * not control, and not part of a context (docs/internals.md). */
#define CO__MXCSR_CONTROL 0xffc0
#elif defined(__aarch64__)
#define CO__SLOT_X19    0 /* x19..x28: slots 0..9, saved in pairs (stp) */
#define CO__SLOT_X21    2
#define CO__SLOT_X23    4
#define CO__SLOT_X25    6
#define CO__SLOT_X27    8
#define CO__SLOT_FP     10 /* x29 */
#define CO__SLOT_LR     11 /* x30: where `ret` goes */
#define CO__SLOT_D8     12 /* d8..d15: slots 12..19, in pairs */
#define CO__SLOT_D10    14
#define CO__SLOT_D12    16
#define CO__SLOT_D14    18
#define CO__SLOT_FPCR   20 /* slot 21: padding, SP stays 16-aligned */
#define CO__FRAME_SLOTS 22
#define CO__SLOT_FPU    CO__SLOT_FPCR
#define CO__SLOT_RET    CO__SLOT_LR
#define CO__SLOT_ENTRY  CO__SLOT_X19       /* x19 */
#define CO__SLOT_ARG    (CO__SLOT_X19 + 1) /* x20 */
#endif

/* --------------------------------- what co_fiber_switch's fast path reads */
#define CO__OFF_FIBER_SP    0  /* co_fiber_t.sp */
#define CO__OFF_FIBER_MODE  24 /* co_fiber_t.stack.mode */
#define CO__OFF_FIBER_STATE 56 /* co_fiber_t.state */
#define CO__OFF_FIBER_KIND  57 /* co_fiber_t.kind */
#define CO__OFF_FIBER_OWNER 72 /* co_fiber_t.owner */
#define CO__OFF_THREAD_CUR  0  /* co__thread_t.cur */
#define CO__OFF_THREAD_PREV 16 /* co__thread_t.prev */

#define CO__STATE_SUSPENDED 1 /* CO__F_SUSPENDED */
#define CO__STATE_RUNNING   2 /* CO__F_RUNNING */
#define CO__STATE_DEAD      3 /* CO__F_DEAD */
#define CO__KIND_RAW        1 /* CO__K_RAW; CO__K_MAIN is 0 */
#define CO__MODE_CANARY     2 /* CO_STACK_CANARY; above it, CO__STACK_SHARED */

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
