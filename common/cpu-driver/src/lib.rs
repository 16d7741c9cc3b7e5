//! The CPU driver (book ch. 4.3): the kernel, one instance per core. It runs
//! each exception to completion on a single kernel stack with interrupts
//! off, and never allocates after boot.
//!
//! This library holds the kernel's logic that needs no hardware, each
//! module tested on the host: translation tables ([`paging`]), the boot
//! allocator ([`bootalloc`]), the boot image format ([`bootimage`]) and
//! exception decoding ([`esr`]); ELF checks live in `aos-elf`, shared with
//! spawn. The binary
//! (`src/main.rs` and `src/arch/`) is the glue to the hardware.

#![cfg_attr(not(test), no_std)]

#[cfg(all(not(test), not(target_os = "none")))]
extern crate std;

pub use aos_elf as elf;

pub mod bootalloc;
pub mod bootimage;
pub mod esr;
pub mod paging;

/// Where the kernel sees physical memory: `KERNEL_BASE + pa` (TTBR1).
pub const KERNEL_BASE: u64 = 0xffff_0000_0000_0000;

/// How the kernel ends the machine (QEMU's exit status under semihosting),
/// so a runner can tell outcomes apart without reading the console.
pub mod exit_status {
    /// Every domain ended; nothing is left to run.
    pub const NOTHING_TO_RUN: u32 = 3;
    /// The kernel hit a bug (panic or an exception in the kernel).
    pub const KERNEL_PANIC: u32 = 2;
    /// Boot could not complete (bad device tree, boot image or init).
    pub const BOOT_FAILED: u32 = 4;
}
