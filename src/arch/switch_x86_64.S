/* Context switch for the System V x86-64 ABI.
 *
 * void *co__switch(void **save_sp  (rdi),
 *                  void  *load_sp  (rsi),
 *                  void  *value    (rdx));
 *
 * The ABI (System V AMD64 psABI, section 3.2.1 and 3.2.3) makes rbx, rbp,
 * r12-r15 and rsp callee-saved, and says the control bits of MXCSR and the
 * x87 control word are preserved across calls.  Everything else is
 * caller-saved, so the C compiler has already spilled it around this call.
 *
 * Frame (see src/arch.h, checked by _Static_assert there), low to high:
 *   0(rsp)  mxcsr (4 bytes) | x87 control word (2 bytes) | pad
 *   8(rsp)  r15    16 r14    24 r13    32 r12    40 rbx    48 rbp
 *   56(rsp) return address (pushed by the caller's `call`)
 */
#if defined(__CET__) && (__CET__ & 1)
#define ENDBR endbr64
#else
#define ENDBR
#endif

    .text
    .globl  co__switch
    .hidden co__switch
    .type   co__switch, @function
    .p2align 4
co__switch:
    .cfi_startproc
    ENDBR
    pushq   %rbp                /* callee-saved integer registers */
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    subq    $8, %rsp            /* room for the two FPU control words */
    stmxcsr (%rsp)              /* SSE control/status (rounding, masks) */
    fnstcw  4(%rsp)             /* x87 control word (precision, rounding) */
    movq    %rsp, (%rdi)        /* *save_sp = our frame */

    movq    %rsi, %rsp          /* now on the target's stack */
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    movq    %rdx, %rax          /* the value handed over is the return value */
    ret                         /* to the target's co__switch caller (or boot) */
    .cfi_endproc
    .size   co__switch, .-co__switch

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
