/* The context switch: one assembly file per ABI, this one contract.
 *
 * A suspended context is nothing but a stack pointer.  Everything the ABI
 * says a callee must preserve is pushed on the suspended stack itself, in
 * the frame layout below, so switching is: push, store SP, load SP, pop.
 *
 *   void *co__switch(void **save_sp, void *load_sp, void *value, uintptr_t land);
 *
 * Saves the caller's context, stores its stack pointer in *save_sp, resumes
 * the context whose stack pointer is load_sp, and makes the co__switch call
 * that suspended *that* context return `value`.  A fresh context (built by
 * co__ctx_init) does not return from co__switch: it enters
 * entry(arg, value) on its own stack; entry must never return.
 */
#ifndef COGENT_ARCH_H
#define COGENT_ARCH_H

#include <stddef.h>
#include <stdint.h>

typedef void (*co__ctx_entry_fn)(void *arg, void *value);

/* Implemented in src/arch/switch_<abi>.S.  With `land`, the switch calls
 * co__fiber_switch_end() (src/fiber.c) on the new stack before resuming. */
void *co__switch(void **save_sp, void *load_sp, void *value, uintptr_t land);
/* Lands in a fresh context: calls entry(arg, value); traps if it returns. */
void co__ctx_boot(void);

#if defined(__x86_64__)
/* Frame, lowest address (the saved SP) first, 8 bytes a slot:
 *   [0] mxcsr (low 4 bytes) | x87 control word (next 2 bytes)
 *   [1] r15  [2] r14  [3] r13  [4] r12  [5] rbx  [6] rbp
 *   [7] return address
 * A fresh context puts co__ctx_boot in [7], entry in r12 and arg in r13. */
#define CO__FRAME_SLOTS 8
#define CO__SLOT_FPU    0
#define CO__SLOT_ENTRY  4 /* r12 */
#define CO__SLOT_ARG    3 /* r13 */
#define CO__SLOT_RET    7
#elif defined(__aarch64__)
/* Frame, lowest address first, 8 bytes a slot (176 bytes, 16-aligned):
 *   [0..9]  x19..x28   [10] x29 (fp)  [11] x30 (lr, where ret goes)
 *   [12..19] d8..d15   [20] fpcr      [21] padding
 * A fresh context puts co__ctx_boot in lr, entry in x19 and arg in x20. */
#define CO__FRAME_SLOTS 22
#define CO__SLOT_FPU    20
#define CO__SLOT_ENTRY  0 /* x19 */
#define CO__SLOT_ARG    1 /* x20 */
#define CO__SLOT_RET    11
#else
#error "cogent: no context switch for this architecture (x86-64 and aarch64 only)"
#endif

/* The frame must keep the stack 16-byte aligned where the ABI wants it. */
_Static_assert((CO__FRAME_SLOTS * 8) % 16 == 0, "the switch frame must keep SP 16-byte aligned");

/* Builds a fresh context at the top of [lo, lo+size) that will run
 * entry(arg, value) when first switched to.  Returns its stack pointer. */
static inline void *co__ctx_init(void *lo, size_t size, co__ctx_entry_fn entry, void *arg)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    /* Only the slots below are read: the other callee-saved registers
     * start with whatever the frame holds (co__ctx_boot clears the frame
     * pointer itself). */
    uint64_t *sp = (uint64_t *)(top - CO__FRAME_SLOTS * 8);
#if defined(__x86_64__)
    /* The final `ret` pops slot 7, so co__ctx_boot starts with SP == top,
     * 16-aligned: its own `call` then gives entry the alignment the ABI
     * promises a function on entry. */
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    sp[CO__SLOT_FPU] = (uint64_t)mxcsr | ((uint64_t)fpucw << 32);
#elif defined(__aarch64__)
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    sp[CO__SLOT_FPU] = fpcr;
#endif
    sp[CO__SLOT_ENTRY] = (uint64_t)(uintptr_t)entry;
    sp[CO__SLOT_ARG] = (uint64_t)(uintptr_t)arg;
    sp[CO__SLOT_RET] = (uint64_t)(uintptr_t)co__ctx_boot;
    return sp;
}

#endif
