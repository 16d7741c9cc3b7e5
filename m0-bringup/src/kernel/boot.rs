//! Entry from the boot loader (arm64 Image protocol: MMU off, x0 = device
//! tree) and the exception vector table.
//!
//! Entered at EL2 (QEMU `virt,virtualization=on`, `imx8mp-evk`, U-Boot on
//! the Colibri) the code configures EL1 and drops to it; entered at EL1
//! (plain `virt`) it goes straight on. Either way Rust starts at EL1 with
//! FP/SIMD enabled, a stack, zeroed bss and VBAR_EL1 set.

core::arch::global_asm!(
    r#"
.section .text.head, "ax"
.global _start
_start:
    /* arm64 Image header (Linux Documentation/arch/arm64/booting.rst). */
    b       primary_entry           /* code0 */
    .long   0                       /* code1 */
    .quad   TEXT_OFFSET             /* text_offset: load at 2 MiB base + this */
    .quad   __image_size            /* image_size, bss and stack included */
    .quad   0x2                     /* flags: little endian, 4 KiB pages */
    .quad   0, 0, 0                 /* res2-res4 */
    .ascii  "ARM\x64"               /* magic */
    .long   0                       /* res5 */

primary_entry:
    mov     x19, x0                 /* device tree */
    mrs     x20, CurrentEL
    lsr     x20, x20, #2            /* entry exception level */

    /* Only the boot core runs M0; others wait forever. */
    mrs     x1, mpidr_el1
    and     x1, x1, #0xffffff
    cbnz    x1, park

    cmp     x20, #2
    b.ne    el1_entry

    /* EL2 -> EL1. EL1 is AArch64, nothing traps to EL2. */
    mov     x1, #(1 << 31)          /* HCR_EL2.RW */
    msr     hcr_el2, x1
    mov     x1, #3                  /* CNTHCTL_EL2.EL1PCTEN | EL1PCEN */
    msr     cnthctl_el2, x1
    msr     cntvoff_el2, xzr
    mov     x1, #0x33ff             /* CPTR_EL2: RES1 bits, TFP = 0 */
    msr     cptr_el2, x1
    msr     hstr_el2, xzr
    ldr     x1, =0x30d00800         /* SCTLR_EL1: RES1 bits, MMU and caches off */
    msr     sctlr_el1, x1
    mov     x1, #0x3c5              /* SPSR_EL2: EL1h, DAIF masked */
    msr     spsr_el2, x1
    adr     x1, el1_entry
    msr     elr_el2, x1
    eret

el1_entry:
    cmp     x20, #3
    b.eq    1f
    mov     x1, #(3 << 20)          /* CPACR_EL1.FPEN: no FP/SIMD traps */
    msr     cpacr_el1, x1
    adr     x1, m0_vectors
    msr     vbar_el1, x1
    isb
1:
    ldr     x1, =__stack_top
    mov     sp, x1
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
2:  cmp     x1, x2
    b.hs    3f
    stp     xzr, xzr, [x1], #16
    b       2b
3:
    mov     x0, x19
    mov     x1, x20
    bl      m0_main
park:
    wfe
    b       park

/* 16 entries of 0x80 bytes: {{current EL SP0, current EL SPx, lower EL
 * AArch64, lower EL AArch32}} x {{sync, IRQ, FIQ, SError}}. Each passes
 * its index, ESR, ELR and FAR to m0_exception, which does not return. */
.macro vector index
    .balign 0x80
    mov     x0, #\index
    mrs     x1, esr_el1
    mrs     x2, elr_el1
    mrs     x3, far_el1
    b       m0_exception
.endm

.section .text.vectors, "ax"
.balign 0x800
m0_vectors:
    vector 0
    vector 1
    vector 2
    vector 3
    vector 4
    vector 5
    vector 6
    vector 7
    vector 8
    vector 9
    vector 10
    vector 11
    vector 12
    vector 13
    vector 14
    vector 15
"#
);
