/* The context switch: one assembly file per ABI, this one contract.
 *
 * A suspended context is nothing but a stack pointer.  Everything the ABI
 * says a callee must preserve is pushed on the suspended stack itself, in
 * the frame layout below, so switching is: save, store SP, load SP, restore.
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

#include "arch/layout.h"

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "cogent: no context switch for this architecture (x86-64 and aarch64 only)"
#endif

/* The frame (slot numbers in src/arch/layout.h, which the assembly uses
 * as its offsets), lowest address (the saved SP) first, 8 bytes a slot:
 *
 * x86-64:  [0] MXCSR (low 4 bytes; only its control bits count)
 *              | x87 control word (next 2 bytes)
 *          [1] r15  [2] r14  [3] r13  [4] r12  [5] rbx  [6] rbp
 *          [7] return address (pushed by the call to the switch)
 *   A fresh context puts co__ctx_boot in [7], entry in r12, arg in r13.
 *
 * aarch64: [0..9] x19..x28  [10] x29 (fp)  [11] x30 (lr, where ret goes)
 *          [12..19] d8..d15  [20] fpcr  [21] padding   (176 bytes)
 *   A fresh context puts co__ctx_boot in lr, entry in x19, arg in x20.
 *
 * Floating-point state: only the *control* half is part of a context
 * (rounding mode, exception masks, flush-to-zero: callee-saved in both
 * ABIs).  The exception *status* flags (MXCSR bits 0-5, the x87 status
 * word, FPSR) belong to the thread and follow it across switches like
 * any caller-saved register: a switch never changes a flag the program
 * can see.  The switch loads the target's control state only when it
 * differs from the current one (loading it is slow on some cores), and
 * then keeps the current status flags. */
#if defined(__x86_64__)
_Static_assert(CO__SLOT_RET == CO__FRAME_SLOTS - 1, "x86-64: the caller's call pushes the top slot");
_Static_assert(((1u << CO__SLOT_FPU) | (1u << CO__SLOT_R15) | (1u << CO__SLOT_R14) | (1u << CO__SLOT_R13) |
                (1u << CO__SLOT_R12) | (1u << CO__SLOT_RBX) | (1u << CO__SLOT_RBP) | (1u << CO__SLOT_RET)) ==
                   (1u << CO__FRAME_SLOTS) - 1,
               "x86-64: every frame slot holds exactly one thing");
_Static_assert(CO__SLOT_ENTRY == CO__SLOT_R12 && CO__SLOT_ARG == CO__SLOT_R13,
               "x86-64: co__ctx_boot reads entry from r12 and arg from r13");
_Static_assert((CO__MXCSR_CONTROL & 0x3f) == 0 && (CO__MXCSR_CONTROL | 0x3f) == 0xffff,
               "MXCSR: control is bits 6-15, status bits 0-5");
#elif defined(__aarch64__)
/* ldp/stp move two neighbouring slots: each pair's first slot is named. */
_Static_assert(CO__SLOT_X19 == 0 && CO__SLOT_X21 == CO__SLOT_X19 + 2 && CO__SLOT_X23 == CO__SLOT_X21 + 2 &&
                   CO__SLOT_X25 == CO__SLOT_X23 + 2 && CO__SLOT_X27 == CO__SLOT_X25 + 2 &&
                   CO__SLOT_FP == CO__SLOT_X27 + 2 && CO__SLOT_LR == CO__SLOT_FP + 1,
               "aarch64: x19..x30 fill slots 0..11 in pairs");
_Static_assert(CO__SLOT_D8 == CO__SLOT_LR + 1 && CO__SLOT_D10 == CO__SLOT_D8 + 2 && CO__SLOT_D12 == CO__SLOT_D10 + 2 &&
                   CO__SLOT_D14 == CO__SLOT_D12 + 2 && CO__SLOT_FPCR == CO__SLOT_D14 + 2 &&
                   CO__FRAME_SLOTS == CO__SLOT_FPCR + 2,
               "aarch64: d8..d15, fpcr and one padding slot follow");
_Static_assert(CO__SLOT_ENTRY == CO__SLOT_X19 && CO__SLOT_ARG == CO__SLOT_X19 + 1 && CO__SLOT_RET == CO__SLOT_LR &&
                   CO__SLOT_FPU == CO__SLOT_FPCR,
               "aarch64: co__ctx_boot reads entry from x19 and arg from x20");
#endif

/* The frame must keep the stack 16-byte aligned where the ABI wants it. */
_Static_assert((CO__FRAME_SLOTS * 8) % 16 == 0, "the switch frame must keep SP 16-byte aligned");

/* Switches on this thread that found the target's FP control state
 * different from the current one and loaded it (the slow path).  Only
 * counted, never read by the library: tests check that status flags
 * alone never cause a load. */
extern __thread __attribute__((tls_model("initial-exec"))) unsigned long co__fpu_loads;

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
     * promises a function on entry.  The new context inherits the
     * creator's FP control state; status flags are not stored (the switch
     * ignores them: they stay the thread's). */
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    sp[CO__SLOT_FPU] = (uint64_t)(mxcsr & CO__MXCSR_CONTROL) | ((uint64_t)fpucw << 32);
#elif defined(__aarch64__)
    /* FPCR is all control (the status flags live in FPSR, not saved). */
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
