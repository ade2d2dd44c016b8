/* Context switch for the AArch64 procedure call standard (AAPCS64).
 *
 * void *co__switch(void **save_sp  (x0),
 *                  void  *load_sp  (x1),
 *                  void  *value    (x2),
 *                  uintptr_t land  (x3));
 *
 * With `land` non-zero, co__fiber_switch_end() runs on the new stack right
 * after the swap (see switch_x86_64.S).
 *
 * AAPCS64 section 6.1: x19-x28, x29 (fp), sp and the low 64 bits of v8-v15
 * (d8-d15) are callee-saved; x30 (lr) holds where we return.  FPCR carries
 * the rounding mode and must look unchanged to the caller, so it is saved
 * too.  Everything else is caller-saved.
 *
 * Frame (176 bytes, see src/arch.h), low to high, 8 bytes a slot:
 *   [0..9] x19..x28  [10] x29  [11] x30  [12..19] d8..d15  [20] fpcr  [21] pad
 */

/* Push the frame above (SP stays 16-aligned). */
.macro SAVE_FRAME
    sub     sp, sp, #176
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8,  d9,  [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x9, fpcr
    str     x9, [sp, #160]
.endm

/* Pop it again on whichever stack SP now points into. */
.macro RESTORE_FRAME
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8,  d9,  [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    ldr     x9, [sp, #160]
    msr     fpcr, x9
    add     sp, sp, #176
.endm

    .text
    .globl  co__switch
    .hidden co__switch
    .type   co__switch, %function
    .p2align 4
co__switch:
    .cfi_startproc
#if defined(__ARM_FEATURE_BTI_DEFAULT)
    bti     c
#endif
    SAVE_FRAME
    mov     x9, sp
    str     x9, [x0]            /* *save_sp = our frame */
    mov     x19, x2             /* the value, in a register already saved */

    mov     sp, x1              /* now on the target's stack */
    cbz     x3, 5f
    bl      co__fiber_switch_end
5:
    mov     x0, x19             /* the value handed over is the return value */
    RESTORE_FRAME
    ret                         /* to x30: the target's caller, or boot */
    .cfi_endproc
    .size   co__switch, .-co__switch

/* void *co_fiber_switch(co_fiber_t *target (x0), void *value (x1));
 *
 * The public fiber switch (see switch_x86_64.S for why it is assembly):
 * the same frame as co__switch, with C halves before and after the stack
 * swap:  {x0, x1} = co__fiber_switch_begin(target, sp): the SP to load,
 *        and whether co__fiber_switch_end() must run on the new stack. */
    .globl  co_fiber_switch
    .type   co_fiber_switch, %function
    .p2align 4
co_fiber_switch:
    .cfi_startproc
#if defined(__ARM_FEATURE_BTI_DEFAULT)
    bti     c
#endif
    SAVE_FRAME
    mov     x19, x1             /* the value rides in a callee-saved register */
    mov     x1, sp
    bl      co__fiber_switch_begin  /* x0: SP to load, x1: call end? */
    mov     x9, sp
    cmp     x0, x9
    b.eq    1f                  /* switching to ourselves */
    mov     sp, x0              /* now on the target's stack */
    cbz     x1, 1f
    bl      co__fiber_switch_end
1:
    mov     x0, x19             /* the value handed over */
    RESTORE_FRAME
    ret
    .cfi_endproc
    .size   co_fiber_switch, .-co_fiber_switch

/* First code of a fresh context: entry in x19, its argument in x20, the
 * first switch's value in x0.  SP is 16-aligned. */
    .globl  co__ctx_boot
    .hidden co__ctx_boot
    .type   co__ctx_boot, %function
    .p2align 4
co__ctx_boot:
    .cfi_startproc
    .cfi_undefined x30          /* outermost frame: unwinders stop here */
#if defined(__ARM_FEATURE_BTI_DEFAULT)
    bti     c
#endif
    mov     x1, x0              /* entry(arg, value) */
    mov     x0, x20
    mov     x29, #0
    blr     x19
    brk     #0x3c               /* entry must never return */
    .cfi_endproc
    .size   co__ctx_boot, .-co__ctx_boot

    .section .note.GNU-stack,"",%progbits
