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
 * What a context holds, from Procedure Call Standard for the Arm 64-bit
 * Architecture (AAPCS64), section 6.1.1 "General-purpose Registers" and
 * section 6.1.2 "SIMD and Floating-Point Registers":
 *
 *   callee-saved (in the frame)        caller-saved (not in the frame)
 *   x19-x28, x29 (fp), sp              x0-x18, NZCV
 *   x30 (lr): where we return          v0-v7, v16-v31, the top 64 bits
 *   d8-d15 (low 64 bits of v8-v15)       of v8-v15
 *   FPCR (control: rounding, FZ, DN,   FPSR (the cumulative exception
 *     trap enables)                      flags, and QC)
 *
 * FPCR is "a global register" that only support functions such as
 * fesetround may change, so an ordinary call (and a switch, which looks
 * like one to each side) leaves it as it was: saved in the frame.  FPSR's
 * flags "are not preserved across a public interface": they are the
 * thread's and follow it across switches, never saved or restored.
 *
 * Frame (slot numbers in layout.h, checked by _Static_assert in arch.h),
 * 8 bytes a slot, 176 bytes, from the saved SP up:
 *   [0..9] x19..x28  [10] x29  [11] x30  [12..19] d8..d15  [20] fpcr  [21] pad
 */
#include "layout.h"

#define SLOT(n) ((n) * 8) /* a slot's offset from the frame's SP */

#if defined(__ARM_FEATURE_BTI_DEFAULT)
#define BTI_C bti c /* landing pad for calls through a register (blr) */
#else
#define BTI_C
#endif

/* Builds the frame below SP (SP stays 16-aligned); leaves our FPCR in x9
 * for the comparison with the target's. */
.macro SAVE_FRAME
    sub     sp, sp, #SLOT(CO__FRAME_SLOTS)
    .cfi_adjust_cfa_offset SLOT(CO__FRAME_SLOTS)
    stp     x19, x20, [sp, #SLOT(CO__SLOT_X19)]
    stp     x21, x22, [sp, #SLOT(CO__SLOT_X21)]
    stp     x23, x24, [sp, #SLOT(CO__SLOT_X23)]
    stp     x25, x26, [sp, #SLOT(CO__SLOT_X25)]
    stp     x27, x28, [sp, #SLOT(CO__SLOT_X27)]
    stp     x29, x30, [sp, #SLOT(CO__SLOT_FP)]
    stp     d8,  d9,  [sp, #SLOT(CO__SLOT_D8)]
    stp     d10, d11, [sp, #SLOT(CO__SLOT_D10)]
    stp     d12, d13, [sp, #SLOT(CO__SLOT_D12)]
    stp     d14, d15, [sp, #SLOT(CO__SLOT_D14)]
    mrs     x9, fpcr
    str     x9, [sp, #SLOT(CO__SLOT_FPCR)]
    .cfi_rel_offset x29, SLOT(CO__SLOT_FP)
    .cfi_rel_offset x30, SLOT(CO__SLOT_LR)
    .cfi_rel_offset x19, SLOT(CO__SLOT_X19)
    .cfi_rel_offset x20, SLOT(CO__SLOT_X19) + 8
    .cfi_rel_offset x21, SLOT(CO__SLOT_X21)
    .cfi_rel_offset x22, SLOT(CO__SLOT_X21) + 8
    .cfi_rel_offset x23, SLOT(CO__SLOT_X23)
    .cfi_rel_offset x24, SLOT(CO__SLOT_X23) + 8
    .cfi_rel_offset x25, SLOT(CO__SLOT_X25)
    .cfi_rel_offset x26, SLOT(CO__SLOT_X25) + 8
    .cfi_rel_offset x27, SLOT(CO__SLOT_X27)
    .cfi_rel_offset x28, SLOT(CO__SLOT_X27) + 8
.endm

/* Restores everything but FPCR from the frame SP points at (x0 and x1
 * are left alone) and pops it. */
.macro RESTORE_FRAME
    ldp     x19, x20, [sp, #SLOT(CO__SLOT_X19)]
    ldp     x21, x22, [sp, #SLOT(CO__SLOT_X21)]
    ldp     x23, x24, [sp, #SLOT(CO__SLOT_X23)]
    ldp     x25, x26, [sp, #SLOT(CO__SLOT_X25)]
    ldp     x27, x28, [sp, #SLOT(CO__SLOT_X27)]
    ldp     x29, x30, [sp, #SLOT(CO__SLOT_FP)]
    ldp     d8,  d9,  [sp, #SLOT(CO__SLOT_D8)]
    ldp     d10, d11, [sp, #SLOT(CO__SLOT_D10)]
    ldp     d12, d13, [sp, #SLOT(CO__SLOT_D12)]
    ldp     d14, d15, [sp, #SLOT(CO__SLOT_D14)]
    add     sp, sp, #SLOT(CO__FRAME_SLOTS)
    .cfi_adjust_cfa_offset -SLOT(CO__FRAME_SLOTS)
    .cfi_same_value x29
    .cfi_same_value x30
    .cfi_same_value x19
    .cfi_same_value x20
    .cfi_same_value x21
    .cfi_same_value x22
    .cfi_same_value x23
    .cfi_same_value x24
    .cfi_same_value x25
    .cfi_same_value x26
    .cfi_same_value x27
    .cfi_same_value x28
.endm

/* On the target's stack, with our FPCR in x9: jumps to \differs if the
 * target's saved FPCR (left in x10) is another.  Writing FPCR can stall
 * the pipeline on some cores; it almost never differs. */
.macro CHECK_FPCR differs
    ldr     x10, [sp, #SLOT(CO__SLOT_FPCR)]
    cmp     x9, x10
    b.ne    \differs
.endm

/* The rare case: make the target's FPCR (in x10) current and count it in
 * co__fpu_loads (arch.h; read by the tests).  FPSR is not touched: its
 * exception flags stay the thread's.  Uses x11-x13 only. */
.macro LOAD_FPCR
    msr     fpcr, x10
    mrs     x11, tpidr_el0                              /* the thread pointer */
    adrp    x12, :gottprel:co__fpu_loads                /* co__fpu_loads's offset */
    ldr     x12, [x12, #:gottprel_lo12:co__fpu_loads]   /* from it (initial-exec) */
    ldr     x13, [x11, x12]
    add     x13, x13, #1
    str     x13, [x11, x12]
.endm

    .text
    .globl  co__switch
    .hidden co__switch
    .type   co__switch, %function
    .p2align 4
co__switch:
    .cfi_startproc
    BTI_C
    SAVE_FRAME
    mov     x10, sp
    str     x10, [x0]                   /* *save_sp = our frame */
    mov     x19, x2                     /* the value, in a register already saved */
    mov     sp, x1                      /* now on the target's stack */
    CHECK_FPCR .Lswitch_fpcr_differs
.Lswitch_fpcr_ready:
    cbz     x3, .Lswitch_restore        /* land? */
    bl      co__fiber_switch_end
.Lswitch_restore:
    mov     x0, x19                     /* the value handed over is the return value */
    .cfi_remember_state
    RESTORE_FRAME
    ret                                 /* to x30: the target's caller, or boot */
    .cfi_restore_state
.Lswitch_fpcr_differs:
    LOAD_FPCR
    b       .Lswitch_fpcr_ready
    .cfi_endproc
    .size   co__switch, .-co__switch

/* void *co_fiber_switch(co_fiber_t *target (x0), void *value (x1));
 *
 * The public fiber switch (see switch_x86_64.S for why it is assembly):
 * the same frame as co__switch, with C halves before and after the stack
 * swap:  {x0, x1} = co__fiber_switch_begin(target, sp): the SP to load,
 *        and whether co__fiber_switch_end() must run on the new stack.
 * It returns with `ret`, unlike the x86-64 version's indirect jump: with
 * BTI, `br x30` to a caller's return address (no landing pad) would
 * fault, and `ret` is exempt. */
    .globl  co_fiber_switch
    .type   co_fiber_switch, %function
    .p2align 4
co_fiber_switch:
    .cfi_startproc
    BTI_C
    SAVE_FRAME
    mov     x19, x1                     /* the value rides in a callee-saved register */
    mov     x1, sp
    bl      co__fiber_switch_begin      /* x0: SP to load, x1: call end? */
    mov     x9, sp
    cmp     x0, x9
    b.eq    .Lfiber_resume              /* switching to ourselves: nothing to load */
    ldr     x9, [sp, #SLOT(CO__SLOT_FPCR)]  /* our FPCR again (the call clobbered x9) */
    mov     sp, x0                      /* now on the target's stack */
    CHECK_FPCR .Lfiber_fpcr_differs
.Lfiber_fpcr_ready:
    cbz     x1, .Lfiber_resume
    bl      co__fiber_switch_end
.Lfiber_resume:
    mov     x0, x19                     /* the value handed over */
    .cfi_remember_state
    RESTORE_FRAME
    ret
    .cfi_restore_state
.Lfiber_fpcr_differs:
    LOAD_FPCR                           /* keeps x1 */
    b       .Lfiber_fpcr_ready
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
    BTI_C                       /* reached by `ret` (which BTI does not check): harmless */
    mov     x1, x0              /* entry(arg, value) */
    mov     x0, x20
    mov     x29, #0             /* no caller frame to chain to */
    blr     x19
    brk     #0x3c               /* entry must never return */
    .cfi_endproc
    .size   co__ctx_boot, .-co__ctx_boot

    .section .note.GNU-stack,"",%progbits

#if defined(__ARM_FEATURE_BTI_DEFAULT)
/* Mark the object BTI-compatible (every function here starts with a
 * landing pad) so that linking it into a library built with
 * -mbranch-protection does not strip the property from the whole library.
 * PAC is NOT claimed: these functions do not sign their return addresses.
 * A switch returns with another context's saved x30, which would have to
 * be signed with that context's SP, and a fresh context's first "return"
 * address (co__ctx_boot, written by C in co__ctx_init) is not signed at
 * all.  GCS (guarded control stacks) is not claimed either: a switch
 * changes stacks. */
    .section .note.gnu.property,"a"
    .p2align 3
    .word   4                   /* name size */
    .word   16                  /* descriptor size */
    .word   5                   /* NT_GNU_PROPERTY_TYPE_0 */
    .asciz  "GNU"
    .word   0xc0000000          /* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
    .word   4                   /* data size */
    .word   1                   /* GNU_PROPERTY_AARCH64_FEATURE_1_BTI (bit 0) */
    .word   0                   /* descriptor padded to 8 bytes */
#endif
