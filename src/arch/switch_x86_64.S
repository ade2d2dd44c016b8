/* Context switch for the System V x86-64 ABI.
 *
 * void *co__switch(void **save_sp  (rdi),
 *                  void  *load_sp  (rsi),
 *                  void  *value    (rdx),
 *                  uintptr_t land  (rcx));
 *
 * With `land` non-zero, co__fiber_switch_end() runs on the new stack right
 * after the swap (sanitizer bookkeeping, freeing a dead fiber's stack):
 * whoever starts a switch also finishes it, whichever entry the target was
 * suspended in.
 *
 * The ABI (System V AMD64 psABI, section 3.2.1 and 3.2.3) makes rbx, rbp,
 * r12-r15 and rsp callee-saved, and says the control bits of MXCSR and the
 * x87 control word are preserved across calls.  Everything else is
 * caller-saved, so the C compiler has already spilled it around this call.
 *
 * Frame (see src/arch.h, checked by _Static_assert there), low to high:
 *   0(rsp)  mxcsr (4 bytes) | x87 control word (2 bytes) | 0 (2 bytes)
 *   8(rsp)  r15    16 r14    24 r13    32 r12    40 rbx    48 rbp
 *   56(rsp) return address (pushed by the caller's `call`)
 */
#include "layout.h"

#if defined(__CET__) && (__CET__ & 1)
#define ENDBR endbr64
#else
#define ENDBR
#endif

/* The integer half of the frame (rbp is pushed first, so it is on top of
 * the return address: the frame table in src/arch.h). */
.macro PUSH_CALLEE_SAVED
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
.endm

/* Pops r15..r12; rbx and rbp follow separately (rbx carries the value). */
.macro POP_R15_TO_R12
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
.endm

    .text
    .globl  co__switch
    .hidden co__switch
    .type   co__switch, @function
    .p2align 4
co__switch:
    .cfi_startproc
    ENDBR
    PUSH_CALLEE_SAVED
    pushq   $0                  /* room for the two FPU control words */
    stmxcsr (%rsp)              /* SSE control/status (rounding, masks) */
    fnstcw  4(%rsp)             /* x87 control word (precision, rounding) */
    /* Read back each word at the size it was stored (a wider load would
     * stall store forwarding), to compare with the target's. */
    movl    (%rsp), %r8d
    movzwl  4(%rsp), %r9d
    movq    %rsp, (%rdi)        /* *save_sp = our frame */
    movq    %rdx, %rbx          /* the value, in a register already saved */

    movq    %rsi, %rsp          /* now on the target's stack */
    cmpl    (%rsp), %r8d        /* loading them is slow (ldmxcsr serialises) */
    jne     3f                  /* and they almost never differ */
    cmpw    4(%rsp), %r9w
    jne     3f
4:
    testq   %rcx, %rcx
    jz      5f
    call    co__fiber_switch_end    /* SP is 16-aligned here */
5:
    addq    $8, %rsp
    POP_R15_TO_R12
    movq    %rbx, %rax          /* the value handed over is the return value */
    popq    %rbx
    popq    %rbp
    ret                         /* to the target's co__switch caller (or boot) */
3:
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    jmp     4b
    .cfi_endproc
    .size   co__switch, .-co__switch

/* void *co_fiber_switch(co_fiber_t *target (rdi), void *value (rsi));
 *
 * The public fiber switch, in assembly so that the switch happens at the
 * user's own call: the frame is the same as co__switch's, but the return
 * into the other fiber is an indirect jump.  A `ret` here would be
 * predicted to return to *our* caller and mispredict on every switch
 * between different call sites (about 15 ns on the machines we measured);
 * the indirect-branch predictor learns the alternation instead.
 *
 * The C halves (src/fiber.c) do the checks and bookkeeping:
 *   {rax, rdx} = co__fiber_switch_begin(co_fiber_t *target, void *sp)
 *       rax: the stack pointer to load (sp itself: no switch)
 *       rdx: non-zero if co__fiber_switch_end must run on the new stack
 *            before its registers are restored (sanitizer builds only)
 */
    .globl  co_fiber_switch
    .type   co_fiber_switch, @function
    .p2align 4
co_fiber_switch:
    .cfi_startproc
    ENDBR
    PUSH_CALLEE_SAVED
    pushq   $0                  /* SP is now 16-aligned: C calls are fine */
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsi, %rbx          /* the value rides in a callee-saved register */
#if CO__ASM_FAST
    /* Fast path: a live raw (or main) fiber, from a guard-page or thread
     * stack.  Anything else goes to the C checks below. */
    movq    co__tls@gottpoff(%rip), %r8     /* co__tls, from the thread pointer */
    movq    %fs:CO__OFF_THREAD_CUR(%r8), %rax   /* from = t->cur */
    testq   %rax, %rax
    jz      2f                  /* thread not set up yet */
    testq   %rdi, %rdi
    jz      2f
    cmpq    %rdi, %rax
    je      2f
    cmpb    $CO__KIND_RAW, CO__OFF_FIBER_KIND(%rdi)
    ja      2f                  /* a generator's or coroutine's fiber */
    cmpb    $CO__STATE_DEAD, CO__OFF_FIBER_STATE(%rdi)
    je      2f
    cmpb    $CO__MODE_CANARY, CO__OFF_FIBER_MODE(%rax)
    je      2f                  /* the canary is checked in C */
    movb    $CO__STATE_SUSPENDED, CO__OFF_FIBER_STATE(%rax)
    movb    $CO__STATE_RUNNING, CO__OFF_FIBER_STATE(%rdi)
    movq    %rdi, %fs:CO__OFF_THREAD_CUR(%r8)
    movq    %rax, %fs:CO__OFF_THREAD_PREV(%r8)
    movl    (%rsp), %r9d        /* our FPU control words (see co__switch) */
    movzwl  4(%rsp), %r10d
    movq    %rsp, CO__OFF_FIBER_SP(%rax)
    movq    CO__OFF_FIBER_SP(%rdi), %rsp    /* now on the target's stack */
    movq    %rbx, %rax
    cmpl    (%rsp), %r9d
    jne     1f
    cmpw    4(%rsp), %r10w
    je      5f                  /* same control words: no slow reload */
    jmp     1f
2:
#endif
    movq    %rsp, %rsi
    call    co__fiber_switch_begin
    cmpq    %rax, %rsp
    je      1f                  /* switching to ourselves */
    movq    %rax, %rsp          /* now on the target's stack */
    testq   %rdx, %rdx
    jz      1f
    call    co__fiber_switch_end
1:
    movq    %rbx, %rax          /* the value handed over */
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
5:
    addq    $8, %rsp
    POP_R15_TO_R12
    popq    %rbx
    popq    %rbp
    popq    %rcx
    jmpq    *%rcx
    .cfi_endproc
    .size   co_fiber_switch, .-co_fiber_switch

/* First code of a fresh context.  co__ctx_init left entry in r12 and its
 * argument in r13; the value handed over by the first switch is in rax.
 * SP is 16-aligned here, so the call below is ABI-conformant. */
    .globl  co__ctx_boot
    .hidden co__ctx_boot
    .type   co__ctx_boot, @function
    .p2align 4
co__ctx_boot:
    .cfi_startproc
    .cfi_undefined rip          /* outermost frame: unwinders stop here */
    ENDBR
    movq    %r13, %rdi          /* entry(arg, value) */
    movq    %rax, %rsi
    xorl    %ebp, %ebp
    callq   *%r12
    ud2                         /* entry must never return */
    .cfi_endproc
    .size   co__ctx_boot, .-co__ctx_boot

    .section .note.GNU-stack,"",@progbits

#if defined(__CET__) && (__CET__ & 1)
/* Mark the object IBT-compatible (every indirect target has endbr64) so
 * that linking it does not strip the property from the whole library.
 * Shadow stacks are NOT claimed: a context switch changes stacks. */
    .section .note.gnu.property,"a"
    .p2align 3
    .long   4                   /* name size */
    .long   16                  /* descriptor size */
    .long   5                   /* NT_GNU_PROPERTY_TYPE_0 */
    .asciz  "GNU"
    .long   0xc0000002          /* GNU_PROPERTY_X86_FEATURE_1_AND */
    .long   4
    .long   1                   /* IBT */
    .p2align 3
#endif
