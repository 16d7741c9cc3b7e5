//! Milestone 1 (book ch. 3): physical memory managed in user space over RAM
//! capabilities. [`mm`] decides which memory to hand out and splits it with
//! retype; [`paging`] builds page tables from VNode capabilities;
//! [`memory`] wires both to the slot and slab allocators of `aos` and
//! implements the milestone API (`api::M1`) the grading suite tests.

#![no_std]

pub mod memory;
pub mod mm;
pub mod paging;

use aos::kpi::ErrorCode;
use aos::slot::SlotError;

pub use memory::{Memory, with};
use mm::MmError;

/// Why a memory operation failed. The operation itself changed nothing
/// when one is returned (the memory system may still have refilled its
/// own slabs and slots on the way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Mm(MmError),
    Slot(SlotError),
    /// The kernel refused an invocation made while `doing` something.
    Kernel {
        code: ErrorCode,
        doing: &'static str,
    },
    /// A page of the range is mapped already.
    AlreadyMapped {
        vaddr: u64,
    },
    /// Not page-aligned, empty, or outside user space.
    BadRange {
        vaddr: u64,
        bytes: u64,
    },
    /// The range overlaps addresses the memory system keeps for itself.
    Reserved {
        vaddr: u64,
    },
    NotAFrame,
    /// A slot handed back to the slot allocator still holds a capability.
    SlotNotEmpty,
    FrameTooSmall {
        bytes: u64,
        frame: u64,
    },
    AlreadyInitialised,
    NotInitialised,
    /// The memory system is in use further up this call chain.
    Busy,
    /// A bug in this crate, not the caller's fault.
    Internal(&'static str),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::Mm(e) => write!(f, "memory manager: {e}"),
            Error::Slot(e) => write!(f, "slot allocator: {e}"),
            Error::Kernel { code, doing } => write!(f, "{code}, while {doing}"),
            Error::AlreadyMapped { vaddr } => write!(f, "{vaddr:#x} is already mapped"),
            Error::BadRange { vaddr, bytes } => {
                write!(f, "{bytes:#x} bytes at {vaddr:#x} is not a page-aligned, non-empty user range")
            }
            Error::Reserved { vaddr } => write!(f, "{vaddr:#x}: the range overlaps the slab refill region"),
            Error::NotAFrame => f.write_str("only Frame and DevFrame capabilities can be mapped"),
            Error::SlotNotEmpty => f.write_str("the slot still holds a capability; delete it first"),
            Error::FrameTooSmall { bytes, frame } => write!(f, "mapping {bytes:#x} bytes of a {frame:#x}-byte frame"),
            Error::AlreadyInitialised => f.write_str("the memory system is set up once per domain"),
            Error::NotInitialised => f.write_str("the memory system is not set up yet"),
            Error::Busy => f.write_str("the memory system is in use further up this call chain"),
            Error::Internal(what) => write!(f, "internal error: {what}"),
        }
    }
}
