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
 * What a context holds, from System V Application Binary Interface, AMD64
 * Architecture Processor Supplement, section 3.2.1 "Registers" (Figure 3.4,
 * "Register Usage", and the text below it):
 *
 *   callee-saved (in the frame)        caller-saved (not in the frame)
 *   rbx rbp r12 r13 r14 r15, rsp       rax rcx rdx rsi rdi r8-r11
 *   MXCSR control bits 6-15            MXCSR status bits 0-5 (the flags)
 *   x87 control word                   x87 status word, xmm0-15, st0-7
 *
 * ("The control bits of the MXCSR register are callee-saved (preserved
 * across calls), while the status bits are caller-saved.  The x87 status
 * word register is caller-saved, whereas the x87 control word is
 * callee-saved.")  The C compiler has already spilled whatever
 * caller-saved state it still needs around the call; the exception flags
 * are the thread's and simply stay where they are across a switch.
 *
 * Frame (slot numbers in layout.h, checked by _Static_assert in arch.h),
 * 8 bytes a slot, from the saved SP up:
 *
 *   SLOT(FPU) +0   MXCSR as stmxcsr stored it (its status bits are ignored)
 *             +4   x87 control word
 *   SLOT(R15) r15   SLOT(R14) r14   SLOT(R13) r13   SLOT(R12) r12
 *   SLOT(RBX) rbx   SLOT(RBP) rbp
 *   SLOT(RET) return address (pushed by the caller's `call`)
 */
#include "layout.h"

#define SLOT(n) ((n) * 8) /* a slot's offset from the frame's SP */

/* The caller's call pushes the return address, so it must be the top slot
 * and everything else lies below it (arch.h checks the same in C). */
#if CO__SLOT_RET != CO__FRAME_SLOTS - 1
#error "layout.h: the return address must be the top slot of the x86-64 frame"
#endif

#if defined(__CET__) && (__CET__ & 1)
#define ENDBR endbr64
#else
#define ENDBR
#endif

/* Builds the frame below the return address the call pushed.  Leaves SP
 * 16-byte aligned (it was 8 off at the call), so C may be called. */
.macro SAVE_FRAME
    subq    $SLOT(CO__SLOT_RET), %rsp
    .cfi_adjust_cfa_offset SLOT(CO__SLOT_RET)
    stmxcsr SLOT(CO__SLOT_FPU)(%rsp)        /* only a store exists for MXCSR */
    fnstcw  SLOT(CO__SLOT_FPU)+4(%rsp)      /* x87 control word (no status) */
    movq    %r15, SLOT(CO__SLOT_R15)(%rsp)
    movq    %r14, SLOT(CO__SLOT_R14)(%rsp)
    movq    %r13, SLOT(CO__SLOT_R13)(%rsp)
    movq    %r12, SLOT(CO__SLOT_R12)(%rsp)
    movq    %rbx, SLOT(CO__SLOT_RBX)(%rsp)
    movq    %rbp, SLOT(CO__SLOT_RBP)(%rsp)
    .cfi_rel_offset %r15, SLOT(CO__SLOT_R15)
    .cfi_rel_offset %r14, SLOT(CO__SLOT_R14)
    .cfi_rel_offset %r13, SLOT(CO__SLOT_R13)
    .cfi_rel_offset %r12, SLOT(CO__SLOT_R12)
    .cfi_rel_offset %rbx, SLOT(CO__SLOT_RBX)
    .cfi_rel_offset %rbp, SLOT(CO__SLOT_RBP)
.endm

/* Moves SP to the target's frame, \sp, and jumps to \differs if its FP
 * control state differs from ours.  Only the control bits are compared:
 * the status flags are the thread's (see the top of this file), and
 * comparing them made every switch take the slow load once two contexts
 * had seen different exceptions.  Leaves, for LOAD_FPU_CONTROL:
 *   r8d   our MXCSR, with the thread's current status flags
 *   r10d  our MXCSR xor the target's saved one */
.macro SWITCH_STACK sp, differs
    /* Read our own words back at the width they were stored: a wider load
     * over two narrower stores defeats store forwarding (5 ns measured). */
    movl    SLOT(CO__SLOT_FPU)(%rsp), %r8d
    movzwl  SLOT(CO__SLOT_FPU)+4(%rsp), %r9d
    movq    \sp, %rsp                       /* now on the target's stack */
    movl    SLOT(CO__SLOT_FPU)(%rsp), %r10d
    xorl    %r8d, %r10d                     /* the MXCSR bits that differ... */
    testl   $CO__MXCSR_CONTROL, %r10d       /* ...among the control bits? */
    jnz     \differs
    cmpw    SLOT(CO__SLOT_FPU)+4(%rsp), %r9w
    jne     \differs
.endm

/* The rare case: make the target's control state current (ldmxcsr
 * serialises, hence the compare above).  MXCSR gets the target's control
 * bits and keeps the thread's status flags, never a stale saved copy. */
.macro LOAD_FPU_CONTROL
    andl    $CO__MXCSR_CONTROL, %r10d       /* the control bits that differ */
    xorl    %r8d, %r10d                     /* flipped in ours: target's control, current flags */
    movl    %r10d, SLOT(CO__SLOT_FPU)(%rsp) /* ldmxcsr loads from memory only; this frame is */
    ldmxcsr SLOT(CO__SLOT_FPU)(%rsp)        /* being popped, so its slot is free to reuse */
    fldcw   SLOT(CO__SLOT_FPU)+4(%rsp)      /* control word only: the x87 status word stays */
    movq    co__fpu_loads@gottpoff(%rip), %r11  /* ++co__fpu_loads (arch.h): this */
    incq    %fs:(%r11)                          /* thread's count, for the tests */
.endm

/* Restores the callee-saved registers from the frame SP points at (rax is
 * left alone) and leaves SP at the return address. */
.macro RESTORE_FRAME
    movq    SLOT(CO__SLOT_R15)(%rsp), %r15
    movq    SLOT(CO__SLOT_R14)(%rsp), %r14
    movq    SLOT(CO__SLOT_R13)(%rsp), %r13
    movq    SLOT(CO__SLOT_R12)(%rsp), %r12
    movq    SLOT(CO__SLOT_RBX)(%rsp), %rbx
    movq    SLOT(CO__SLOT_RBP)(%rsp), %rbp
    addq    $SLOT(CO__SLOT_RET), %rsp
    .cfi_adjust_cfa_offset -SLOT(CO__SLOT_RET)
    .cfi_same_value %r15
    .cfi_same_value %r14
    .cfi_same_value %r13
    .cfi_same_value %r12
    .cfi_same_value %rbx
    .cfi_same_value %rbp
.endm

    .text
    .globl  co__switch
    .hidden co__switch
    .type   co__switch, @function
    .p2align 4
co__switch:
    .cfi_startproc
    ENDBR
    SAVE_FRAME
    movq    %rsp, (%rdi)                /* *save_sp = our frame */
    movq    %rdx, %rbx                  /* the value, in a register already saved */
    SWITCH_STACK %rsi, .Lswitch_fpu_differs
.Lswitch_fpu_ready:
    testq   %rcx, %rcx                  /* land? */
    jz      .Lswitch_restore
    call    co__fiber_switch_end        /* on the new stack, SP 16-aligned */
.Lswitch_restore:
    movq    %rbx, %rax                  /* the value handed over is the return value */
    .cfi_remember_state
    RESTORE_FRAME
    ret                                 /* to the target's co__switch caller (or boot) */
    .cfi_restore_state
.Lswitch_fpu_differs:
    LOAD_FPU_CONTROL
    jmp     .Lswitch_fpu_ready
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
    SAVE_FRAME
    movq    %rsi, %rbx                  /* the value rides in a callee-saved register */
#if CO__ASM_FAST
    /* Fast path: a live raw (or main) fiber, from a guard-page or thread
     * stack, everything the C half would do done here.  Anything else
     * goes to the C checks. */
    movq    co__tls@gottpoff(%rip), %r8             /* co__tls's offset from %fs */
    movq    %fs:CO__OFF_THREAD_CUR(%r8), %rax       /* from = t->cur */
    testq   %rax, %rax
    jz      .Lfiber_slow                /* thread not set up yet */
    testq   %rdi, %rdi
    jz      .Lfiber_slow                /* NULL target: C reports it */
    cmpq    %rdi, %rax
    je      .Lfiber_slow                /* to ourselves */
    cmpb    $CO__KIND_RAW, CO__OFF_FIBER_KIND(%rdi)
    ja      .Lfiber_slow                /* a generator's or coroutine's fiber */
    cmpb    $CO__STATE_DEAD, CO__OFF_FIBER_STATE(%rdi)
    je      .Lfiber_slow                /* ended: C reports it */
    movq    %fs:0, %r9                  /* the thread pointer (the TCB points at itself) */
    addq    %r8, %r9                    /* &co__tls */
    cmpq    %r9, CO__OFF_FIBER_OWNER(%rdi)
    jne     .Lfiber_slow                /* another thread's fiber: C reports it */
    cmpb    $CO__MODE_CANARY, CO__OFF_FIBER_MODE(%rax)
    jae     .Lfiber_slow                /* canary (checked in C) or shared (refused in C) */
    movb    $CO__STATE_SUSPENDED, CO__OFF_FIBER_STATE(%rax)
    movb    $CO__STATE_RUNNING, CO__OFF_FIBER_STATE(%rdi)
    movq    %rdi, %fs:CO__OFF_THREAD_CUR(%r8)       /* t->cur = target */
    movq    %rax, %fs:CO__OFF_THREAD_PREV(%r8)      /* t->prev = from */
    movq    %rsp, CO__OFF_FIBER_SP(%rax)            /* from->sp = our frame */
    SWITCH_STACK CO__OFF_FIBER_SP(%rdi), .Lfiber_fpu_differs
#else
    jmp     .Lfiber_slow
#endif
.Lfiber_resume:
    movq    %rbx, %rax                  /* the value handed over */
    .cfi_remember_state
    RESTORE_FRAME
    popq    %rcx                        /* the return address, taken by an */
    .cfi_adjust_cfa_offset -8
    .cfi_register %rip, %rcx
    jmpq    *%rcx                       /* indirect jump (see above) */
    .cfi_restore_state
#if CO__ASM_FAST
.Lfiber_fpu_differs:
    LOAD_FPU_CONTROL
    jmp     .Lfiber_resume
#endif
.Lfiber_slow:
    movq    %rsp, %rsi
    call    co__fiber_switch_begin
    cmpq    %rax, %rsp
    je      .Lfiber_resume              /* switching to ourselves: nothing to load */
    SWITCH_STACK %rax, .Lfiber_slow_fpu_differs
.Lfiber_slow_fpu_ready:
    testq   %rdx, %rdx                  /* call end? (kept in rdx by the above) */
    jz      .Lfiber_resume
    call    co__fiber_switch_end
    jmp     .Lfiber_resume
.Lfiber_slow_fpu_differs:
    LOAD_FPU_CONTROL
    jmp     .Lfiber_slow_fpu_ready
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
    ENDBR                       /* co_fiber_switch reaches it by an indirect jump */
    movq    %r13, %rdi          /* entry(arg, value) */
    movq    %rax, %rsi
    xorl    %ebp, %ebp          /* no caller frame to chain to */
    callq   *%r12
    ud2                         /* entry must never return */
    .cfi_endproc
    .size   co__ctx_boot, .-co__ctx_boot

    .section .note.GNU-stack,"",@progbits

#if defined(__CET__) && (__CET__ & 1)
/* Mark the object IBT-compatible (every function entry has endbr64) so
 * that linking it does not strip the property from the whole library.
 * Shadow stacks are NOT claimed: a context switch changes stacks.
 * Caveat: co_fiber_switch returns with an indirect jump to its caller's
 * return address, which has no endbr64; with IBT enforced that jump
 * would fault.  Linux does not enforce IBT for user space today. */
    .section .note.gnu.property,"a"
    .p2align 3
    .long   4                   /* name size */
    .long   16                  /* descriptor size */
    .long   5                   /* NT_GNU_PROPERTY_TYPE_0 */
    .asciz  "GNU"
    .long   0xc0000002          /* GNU_PROPERTY_X86_FEATURE_1_AND */
    .long   4                   /* data size */
    .long   1                   /* GNU_PROPERTY_X86_FEATURE_1_IBT */
    .p2align 3                  /* descriptor padded to 8 bytes */
#endif
