//! Entry from the boot loader and the exception vectors.
//!
//! The boot path (arm64 Image protocol: MMU off, `x0` = device tree):
//! park all but the boot core; drop from EL2 to EL1 if entered at EL2;
//! zero bss; build a tiny early translation table — the first 4 GiB in
//! 1 GiB blocks, device memory below RAM, normal memory from RAM up — used
//! both as identity map (TTBR0) and as high-half map (TTBR1); turn the MMU
//! on; jump to the high-half alias; set stack and vectors; call
//! `kernel_main`. Rust then builds the real tables (`mm.rs`).
//!
//! Every entry from EL0 saves the full register state straight into the
//! current domain's `kpi::dispatcher::RegisterSave` (its address is the
//! first word of the per-core state TPIDR_EL1 points at) and calls
//! `el0_exception`, which returns the state to resume; `resume_el0`
//! restores it, resets the kernel stack (events run to completion) and
//! `eret`s. Entries from EL1 are kernel bugs: they are saved on the kernel
//! stack and `el1_exception` reports them.

use kpi::dispatcher::{SAVE_PC, SAVE_SIZE, SAVE_SP};

core::arch::global_asm!(
    r#"
.section .text.head, "ax"
.global _start
_start:
    b       primary_entry
    .long   0
    .quad   TEXT_OFFSET
    .quad   __image_size
    .quad   0x2
    .quad   0, 0, 0
    .ascii  "ARM\x64"
    .long   0

primary_entry:
    mov     x19, x0
    mrs     x20, CurrentEL
    lsr     x20, x20, #2
    mrs     x1, mpidr_el1
    and     x1, x1, #0xffffff
    cbnz    x1, park
    cmp     x20, #2
    b.ne    2f

    /* EL1 reads MPIDR/MIDR through these: give it the real values. */
    mrs     x1, midr_el1
    msr     vpidr_el2, x1
    mrs     x1, mpidr_el1
    msr     vmpidr_el2, x1

    /* EL2 -> EL1: let EL1 use the GIC system registers, the physical
     * counter and timer, and FP; trap nothing to EL2. */
    mrs     x1, id_aa64pfr0_el1
    ubfx    x1, x1, #24, #4
    cbz     x1, 1f
    mov     x1, #0xf                /* ICC_SRE_EL2: SRE|DFB|DIB|Enable */
    msr     S3_4_C12_C9_5, x1
    isb
1:  mov     x1, #(1 << 31)          /* HCR_EL2.RW */
    msr     hcr_el2, x1
    mov     x1, #3                  /* CNTHCTL_EL2.EL1PCTEN|EL1PCEN */
    msr     cnthctl_el2, x1
    msr     cntvoff_el2, xzr
    mov     x1, #0x33ff             /* CPTR_EL2: TFP = 0 */
    msr     cptr_el2, x1
    msr     hstr_el2, xzr
    ldr     x1, =0x30d00800
    msr     sctlr_el1, x1
    mov     x1, #0x3c5              /* EL1h, DAIF masked */
    msr     spsr_el2, x1
    adr     x1, 2f
    msr     elr_el2, x1
    eret

2:  cmp     x20, #3
    b.eq    park                    /* EL3: not a boot protocol we accept */
    /* Registers whose reset values are unknown and that the kernel relies
     * on: interrupts masked, SP_EL1 selected, no per-core state yet, no
     * debug, no user thread pointer. */
    msr     daifset, #0xf
    msr     spsel, #1
    msr     tpidr_el1, xzr
    msr     tpidr_el0, xzr
    msr     tpidrro_el0, xzr
    msr     mdscr_el1, xzr
    mov     x1, #(3 << 20)          /* CPACR_EL1.FPEN: EL0 may use FP/SIMD */
    msr     cpacr_el1, x1

    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
3:  cmp     x1, x2
    b.hs    4f
    stp     xzr, xzr, [x1], #16
    b       3b

4:  adrp    x1, boot_l0
    adrp    x2, boot_l1
    orr     x3, x2, #3
    str     x3, [x1]
    mov     x4, #0
    ldr     x6, =RAM_GIB
5:  lsl     x5, x4, #30
    cmp     x4, x6
    b.lo    6f
    ldr     x7, =0x701              /* normal: AF | inner shareable | block */
    b       7f
6:  ldr     x7, =0x0060000000000405 /* device: UXN|PXN | AF | AttrIdx 1 | block */
7:  orr     x5, x5, x7
    str     x5, [x2, x4, lsl #3]
    add     x4, x4, #1
    cmp     x4, #4
    b.lo    5b

    /* Tables and bss were written with the MMU (and caches) off; drop any
     * stale lines over them so cacheable walks and loads see memory. */
    mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4
    mov     x4, #4
    lsl     x3, x4, x3              /* data cache line size */
    sub     x4, x3, #1
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    bic     x1, x1, x4
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
9:  dc      ivac, x1
    add     x1, x1, x3
    cmp     x1, x2
    b.lo    9b
    dsb     sy

    ldr     x1, ={mair}
    msr     mair_el1, x1
    mrs     x1, id_aa64mmfr0_el1
    and     x1, x1, #0xf
    cmp     x1, #5
    b.ls    8f
    mov     x1, #5                  /* at most 48-bit physical addresses */
8:  lsl     x1, x1, #32
    ldr     x2, ={tcr}
    orr     x1, x1, x2
    msr     tcr_el1, x1
    adrp    x1, boot_l0
    msr     ttbr0_el1, x1
    msr     ttbr1_el1, x1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x1, ={sctlr}
    msr     sctlr_el1, x1
    isb
    ldr     x1, =high_entry
    br      x1

high_entry:
    ldr     x1, =__stack_top
    mov     sp, x1
    ldr     x1, =kernel_vectors
    msr     vbar_el1, x1
    isb
    mov     x0, x19
    mov     x1, x20
    bl      kernel_main
park:
    wfe
    b       park

/* replace_ttbr1(root: x0, empty: x1), called at its physical address
 * through the identity map: break (empty TTBR1, flush), then make. Uses
 * no stack and touches no kernel data while TTBR1 is empty. */
.global replace_ttbr1
replace_ttbr1:
    dsb     ishst
    msr     ttbr1_el1, x1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    msr     ttbr1_el1, x0
    isb
    ret

.section .bss.boot_tables, "aw", %nobits
.balign 4096
boot_l0: .skip 4096
boot_l1: .skip 4096

.section .text.vectors, "ax"
/* Stores x2-x29 at their RegisterSave offsets from \base. */
.macro save_x2_x29 base
    stp     x2, x3, [\base, #16]
    stp     x4, x5, [\base, #32]
    stp     x6, x7, [\base, #48]
    stp     x8, x9, [\base, #64]
    stp     x10, x11, [\base, #80]
    stp     x12, x13, [\base, #96]
    stp     x14, x15, [\base, #112]
    stp     x16, x17, [\base, #128]
    stp     x18, x19, [\base, #144]
    stp     x20, x21, [\base, #160]
    stp     x22, x23, [\base, #176]
    stp     x24, x25, [\base, #192]
    stp     x26, x27, [\base, #208]
    stp     x28, x29, [\base, #224]
.endm

/* From EL1: a kernel bug. Save on the kernel stack and report, unless
 * the frame would land in the guard below the stack (bit 16 of SP clear,
 * see link.ld): then the stack overflowed and pushing would fault again.
 * The test needs a register; x0 is folded into SP and back, untouched. */
.macro vector_el1 index
    .balign 0x80
    sub     sp, sp, #{save_size}
    add     sp, sp, x0              /* sp' = sp + x0 */
    sub     x0, sp, x0              /* x0 = sp */
    tbz     x0, #{stack_bit}, el1_overflow
    sub     x0, sp, x0              /* x0 = x0 again */
    sub     sp, sp, x0              /* sp = sp again */
    stp     x0, x1, [sp, #0]
    mov     x1, #\index
    b       el1_save
.endm
/* From EL0: save straight into the running dispatcher's frame, whose
 * address is the first word of this core's PerCore (TPIDR_EL1): into its
 * enabled or its disabled area, by its disabled flag (book ch. 4.14). */
.macro vector_el0 index
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\index
    b       el0_save
.endm

.balign 0x800
.global kernel_vectors
kernel_vectors:
    vector_el1 0
    vector_el1 1
    vector_el1 2
    vector_el1 3
    vector_el1 4
    vector_el1 5
    vector_el1 6
    vector_el1 7
    vector_el0 8
    vector_el0 9
    vector_el0 10
    vector_el0 11
    vector_el0 12
    vector_el0 13
    vector_el0 14
    vector_el0 15

el0_save:
    mrs     x0, tpidr_el1
    ldr     x0, [x0]                /* the running dispatcher's frame */
    str     x2, [sp, #-16]!
    ldr     w2, [x0, #{frame_disabled}]
    add     x0, x0, #{frame_enabled}
    cbz     w2, 1f                  /* enabled: the activation slot */
    add     x0, x0, #{save_size}    /* disabled: the resume slot after it */
1:  ldr     x2, [sp], #16
    save_x2_x29 x0
    ldp     x2, x3, [sp], #16       /* the user's x0 and x1 */
    stp     x2, x3, [x0, #0]
    mrs     x2, sp_el0
    stp     x30, x2, [x0, #{save_sp} - 8]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x2, x3, [x0, #{save_pc}]
    mov     x0, x1
    bl      el0_exception
    b       resume_el0

el1_save:
    save_x2_x29 sp
    add     x2, sp, #{save_size}
    stp     x30, x2, [sp, #{save_sp} - 8]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x2, x3, [sp, #{save_pc}]
    mov     x0, sp
    bl      el1_exception
    b       park

/* The kernel stack overflowed (x0: the SP that would have been used).
 * Report from a stack of its own; x0's value is lost. */
el1_overflow:
    msr     sp_el0, x0
    /* A fault while reporting on the emergency stack can come back here
     * (whether it does depends on that stack's bit 16): then just stop.
     * TPIDRRO_EL0 holds x1 meanwhile; EL0 never runs again. */
    msr     tpidrro_el0, x1
    ldr     x1, =emergency_stack
    cmp     x0, x1
    b.lo    1f
    ldr     x1, =emergency_stack_top
    cmp     x0, x1
    b.lo    park
1:  ldr     x0, =emergency_stack_top
    mov     sp, x0
    mrs     x1, tpidrro_el0
    sub     sp, sp, #{save_size}
    stp     x0, x1, [sp, #0]
    save_x2_x29 sp
    mrs     x2, sp_el0
    add     x2, x2, #{save_size}    /* the SP before the frame, as el1_save reports */
    stp     x30, x2, [sp, #{save_sp} - 8]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x2, x3, [sp, #{save_pc}]
    mov     x0, sp
    mov     x1, #{overflow_kind}
    bl      el1_exception
    b       park

.section .bss.emergency_stack, "aw", %nobits
.balign 16
emergency_stack:
    .skip 16384
emergency_stack_top:

.section .text.vectors, "ax"
/* x0: the RegisterSave to resume at EL0. */
.global resume_el0
resume_el0:
    ldp     x2, x3, [x0, #{save_pc}]
    msr     elr_el1, x2
    and     x3, x3, #{spsr_user}    /* user memory: only the flags are theirs */
    msr     spsr_el1, x3
    ldp     x30, x2, [x0, #{save_sp} - 8]
    msr     sp_el0, x2
    ldp     x28, x29, [x0, #224]
    ldp     x26, x27, [x0, #208]
    ldp     x24, x25, [x0, #192]
    ldp     x22, x23, [x0, #176]
    ldp     x20, x21, [x0, #160]
    ldp     x18, x19, [x0, #144]
    ldp     x16, x17, [x0, #128]
    ldp     x14, x15, [x0, #112]
    ldp     x12, x13, [x0, #96]
    ldp     x10, x11, [x0, #80]
    ldp     x8, x9, [x0, #64]
    ldp     x6, x7, [x0, #48]
    ldp     x4, x5, [x0, #32]
    ldp     x2, x3, [x0, #16]
    ldr     x1, =__stack_top
    mov     sp, x1
    ldp     x0, x1, [x0, #0]
    eret
"#,
    mair = const cpu_driver::paging::MAIR_VALUE,
    tcr = const TCR,
    sctlr = const SCTLR,
    save_size = const SAVE_SIZE,
    save_sp = const SAVE_SP,
    save_pc = const SAVE_PC,
    spsr_user = const kpi::dispatcher::SPSR_USER_MASK,
    frame_disabled = const core::mem::offset_of!(kpi::dispatcher::DispatcherShared, disabled),
    frame_enabled = const core::mem::offset_of!(kpi::dispatcher::DispatcherShared, enabled_save),
    stack_bit = const STACK_BIT,
    overflow_kind = const OVERFLOW_KIND,
);

/// The bit of SP that is 1 on the kernel stack and 0 in its guard (link.ld).
const STACK_BIT: u32 = 16;
/// The `kind` `el1_exception` gets for a kernel stack overflow, past the
/// sixteen vector numbers.
pub const OVERFLOW_KIND: u64 = 16;

/// TCR_EL1 without IPS: 48-bit VA for TTBR0 and TTBR1 (T0SZ = T1SZ = 16),
/// 4 KiB granules, table walks inner/outer write-back cacheable and inner
/// shareable.
const TCR: u64 = 16 | (1 << 8) | (1 << 10) | (3 << 12) | (16 << 16) | (1 << 24) | (1 << 26) | (3 << 28) | (2 << 30);

/// SCTLR_EL1: RES1 bits, MMU, data and instruction caches, SP alignment
/// checks at EL1 and EL0.
const SCTLR: u64 = 0x30d0_0800 | 1 | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 12);

unsafe extern "C" {
    /// Restores `save` and returns to EL0. Never returns here.
    pub fn resume_el0(save: *const kpi::dispatcher::RegisterSave) -> !;
    /// Replaces TTBR1 with break-before-make; must be called at its
    /// physical address (see `mm::build_kernel_tables`).
    pub fn replace_ttbr1(root: u64, empty: u64);
}
