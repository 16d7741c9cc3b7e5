//! Register save areas and the dispatcher frame (book ch. 4.14). The
//! kernel saves a domain's registers in a [`RegisterSave`] on every entry
//! from EL0; its assembly uses the offsets asserted here.
//!
//! Activation: when the kernel dispatches a domain whose `disabled` flag
//! is clear and which has an `upcall_entry`, it first copies the state it
//! last saved into `enabled_save`, sets `disabled`, and enters
//! `upcall_entry` with `x0` = the frame's user address, `x1` =
//! [`UPCALL_RUN`] and SP = `upcall_stack`. A fault from EL0 with
//! `disabled` clear and a `fault_entry` goes to `trap_save` and enters
//! `fault_entry` with `x0` = the frame, `x1` = ESR, `x2` = FAR. Otherwise
//! (disabled, or no entry) the domain simply continues where it was.
//!
//! FP/SIMD registers and TPIDR_EL0 are the dispatcher's own across all of
//! this: the kernel swaps them only when another dispatcher takes the core.
//! While a dispatcher runs, TPIDRRO_EL0 holds its frame's user address.

use core::mem::size_of;

/// The general-purpose state of an EL0 thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegisterSave {
    /// x0–x30.
    pub x: [u64; 31],
    /// SP_EL0.
    pub sp: u64,
    /// ELR_EL1: where the thread resumes.
    pub pc: u64,
    /// SPSR_EL1: its PSTATE.
    pub spsr: u64,
}

/// Byte offsets the exception assembly relies on.
pub const SAVE_SP: usize = 31 * 8;
pub const SAVE_PC: usize = 32 * 8;
pub const SAVE_SPSR: usize = 33 * 8;
pub const SAVE_SIZE: usize = 34 * 8;

const _: () = assert!(size_of::<RegisterSave>() == SAVE_SIZE);

/// Bytes of [`DispatcherShared`]: where a frame's free space starts.
pub const SHARED_SIZE: usize = size_of::<DispatcherShared>();

// Half a page stays free for LMP buffers.
const _: () = assert!(SHARED_SIZE <= 2048);

/// SPSR for a fresh EL0 thread: AArch64 EL0t, interrupts unmasked.
pub const SPSR_EL0T: u64 = 0;

/// FP/SIMD state: the kernel keeps one per dispatcher in its DCB (switched
/// with the dispatcher, not at every entry: the kernel never touches these
/// registers), and the thread runtime one per preempted thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FpuSave {
    pub q: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
}

/// Bytes of a dispatcher's name.
pub const NAME_LEN: usize = 32;

/// `x1` of a run upcall.
pub const UPCALL_RUN: u64 = 0;

/// SPSR bits a user-supplied state may set: the condition flags. Anything
/// else (exception level, interrupt masks) the kernel forces.
pub const SPSR_USER_MASK: u64 = 0xf000_0000;

/// The part of a dispatcher shared between the kernel and the domain
/// (activation and resume, ch. 4.14). It starts the dispatcher frame;
/// LMP receive buffers may follow it (from [`SHARED_SIZE`] on).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DispatcherShared {
    /// Non-zero while the domain runs its upcall or dispatcher code.
    pub disabled: u32,
    /// Non-zero if the domain has work (messages, threads) pending.
    pub haswork: u32,
    /// Entry for upcalls (`run`).
    pub upcall_entry: u64,
    /// Entry for exceptions delivered to the domain.
    pub fault_entry: u64,
    /// SP for both entries (the runtime's dispatcher stack, top).
    pub upcall_stack: u64,
    /// The domain's name for kernel reports, read once by `Setup`
    /// (printable ASCII up to the first NUL).
    pub name: [u8; NAME_LEN],
    /// Where state goes when the domain is preempted while enabled.
    pub enabled_save: RegisterSave,
    /// Where state goes when it is preempted while disabled.
    pub disabled_save: RegisterSave,
    /// State at a fault, for the fault handler.
    pub trap_save: RegisterSave,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn save_area_layout_matches_the_assembly() {
        assert_eq!(offset_of!(RegisterSave, x), 0);
        assert_eq!(offset_of!(RegisterSave, sp), SAVE_SP);
        assert_eq!(offset_of!(RegisterSave, pc), SAVE_PC);
        assert_eq!(offset_of!(RegisterSave, spsr), SAVE_SPSR);
        assert_eq!(SAVE_SIZE % 16, 0, "the kernel stack stays 16-byte aligned");
    }

    #[test]
    fn dispatcher_shared_layout() {
        assert_eq!(offset_of!(DispatcherShared, disabled), 0);
        assert_eq!(offset_of!(DispatcherShared, upcall_entry), 8);
        assert_eq!(offset_of!(DispatcherShared, fault_entry), 16);
        assert_eq!(offset_of!(DispatcherShared, upcall_stack), 24);
        assert_eq!(offset_of!(DispatcherShared, name), 32);
        assert_eq!(offset_of!(DispatcherShared, enabled_save), 64);
        assert_eq!(offset_of!(DispatcherShared, disabled_save), 64 + SAVE_SIZE);
        assert_eq!(offset_of!(DispatcherShared, trap_save), 64 + 2 * SAVE_SIZE);
        assert_eq!(size_of::<FpuSave>(), 32 * 16 + 16);
        assert_eq!(SHARED_SIZE, 64 + 3 * SAVE_SIZE);
    }
}
