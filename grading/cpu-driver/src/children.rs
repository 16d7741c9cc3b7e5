//! Child dispatchers for the suite's programs: dispatchers init makes from
//! its own RAM that share its CSpace and address space, each with a frame
//! of its own and a stack the program provides. Owns the slot plan of one
//! L2 CNode (below) and one L0 entry's worth of address space for frames.
//!
//! Slots of the CNode: 0–2 the L1/L2/L3 tables, 3–5 their mappings,
//! `10 + i` child `i`'s frame, `30 + i` its dispatcher, `50 + i` the
//! frame's mapping. Slots from [`FREE_SLOTS`] on are the program's.
//!
//! Also the suite's LMP conventions: every dispatcher frame's second half
//! is its receive ring ([`RING_OFF`], [`RING_SIZE`]), and children run on
//! [`ChildStacks`].

use core::cell::UnsafeCell;

use aos::cap::{self, CapRef, Dest, ObjType};
use aos::dispatcher::Dispatcher;
use aos::kpi::ErrorCode;
use aos::kpi::cspace::*;
use aos::kpi::dispatcher::{DispatcherShared, RegisterSave};
use aos::lmp::Ring;

/// Where every frame's LMP ring lies: its second half.
pub const RING_OFF: u64 = 2048;
pub const RING_SIZE: u64 = 2048;

/// Mints `ep`, an endpoint retyped from a dispatcher, into `dest` with
/// every right and the suite's ring as its buffer.
pub fn mint_ring(ep: CapRef, dest: Dest) -> Result<(), ErrorCode> {
    cap::mint(ep, dest, 0x1f, Some((RING_OFF as u32, RING_SIZE as u32)))
}

/// The ring in the frame mapped at `frame_va`.
pub fn ring(frame_va: u64) -> Ring {
    // SAFETY: the suite's frames are mapped read-write for the program's
    // life, and their second half holds only the ring.
    unsafe { Ring::new(frame_va, RING_OFF, RING_SIZE) }
}

/// Init's ring (its frame is at `DISPFRAME_VADDR`).
pub fn init_ring() -> Ring {
    ring(aos::kpi::vspace::DISPFRAME_VADDR)
}

/// Bytes of a child's stack.
pub const STACK: usize = 16 * 1024;

/// `N` stacks for child dispatchers (a program's `static`).
#[repr(C, align(16))]
pub struct ChildStacks<const N: usize>(UnsafeCell<[[u8; STACK]; N]>);

// SAFETY: only the stacks' addresses are handed out; each stack is memory
// of the one child that runs on it, never referenced from Rust.
unsafe impl<const N: usize> Sync for ChildStacks<N> {}

impl<const N: usize> ChildStacks<N> {
    pub const fn new() -> Self {
        ChildStacks(UnsafeCell::new([[0; STACK]; N]))
    }

    /// The top (initial SP) of stack `i`.
    pub fn top(&self, i: usize) -> u64 {
        assert!(i < N, "stack {i} of {N}");
        self.0.get() as u64 + ((i + 1) * STACK) as u64
    }
}

impl<const N: usize> Default for ChildStacks<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Most children one set holds.
pub const MAX: u8 = 16;
/// The first slot the plan leaves to the program.
pub const FREE_SLOTS: u8 = 70;
/// Bytes of RAM a set takes from the offset it is given.
pub const RAM_BYTES: u64 = 0x30000;

/// A set of children.
pub struct Children {
    cn: u32,
    /// Frames are mapped from here, one page per child.
    frames_va: u64,
    /// RAM offset where dispatcher objects start.
    pub dcb_offset: u64,
}

/// A child's entry: `(frame address, argument)`, never returns.
pub type Entry = extern "C" fn(u64, u64) -> !;

impl Children {
    /// Retypes tables, `count` frames and `count` dispatchers from `ram` at
    /// `offset` (`RAM_BYTES` of it) and maps the tables under L0 entry
    /// `l0_entry` (which must be unused).
    pub fn new(ram: CapRef, offset: u64, cn: u32, l0_entry: u16, count: u8) -> Result<Children, ErrorCode> {
        if count > MAX {
            return Err(ErrorCode::InvalidArgument);
        }
        let d = |i: u8| Dest::l2(cn, u32::from(i));
        let s = |i: u8| CapRef::slot(cn, i);
        let l0 = CapRef::slot(ROOTCN_SLOT_PAGECN as u32, PAGECN_SLOT_VROOT as u8);
        cap::retype(ram, d(0), ObjType::VNodeL1, offset, 0, 1)?;
        cap::retype(ram, d(1), ObjType::VNodeL2, offset + 0x1000, 0, 1)?;
        cap::retype(ram, d(2), ObjType::VNodeL3, offset + 0x2000, 0, 1)?;
        cap::retype(ram, d(10), ObjType::Frame, offset + 0x10000, 0x1000, u64::from(count))?;
        cap::retype(ram, d(30), ObjType::Dispatcher, offset + 0x20000, 0, u64::from(count))?;
        cap::map(l0, s(0), l0_entry, 1, 3, 0, d(3))?;
        cap::map(s(0), s(1), 0, 1, 3, 0, d(4))?;
        cap::map(s(1), s(2), 0, 1, 3, 0, d(5))?;
        Ok(Children { cn, frames_va: u64::from(l0_entry) << 39, dcb_offset: offset + 0x20000 })
    }

    pub fn frame_va(&self, i: u8) -> u64 {
        self.frames_va + u64::from(i) * 0x1000
    }

    pub fn frame(&self, i: u8) -> CapRef {
        CapRef::slot(self.cn, 10 + i)
    }

    pub fn dispatcher(&self, i: u8) -> Dispatcher {
        Self::dispatcher_in(self.cn, i)
    }

    /// Child `i`'s dispatcher in a set planned in CNode `cn`, for code (a
    /// child's) that has no `Children` at hand.
    pub const fn dispatcher_in(cn: u32, i: u8) -> Dispatcher {
        Dispatcher(CapRef::slot(cn, 30 + i))
    }

    /// The shared part of child `i`'s frame (mapped once `make` ran).
    pub fn shared(&self, i: u8) -> *mut DispatcherShared {
        self.frame_va(i) as *mut DispatcherShared
    }

    /// Maps child `i`'s frame, writes its name and first state (`entry`
    /// with `(frame, arg)` on the stack ending at `stack_top`) and sets its
    /// dispatcher up on init's CSpace and VSpace. It stays stopped.
    pub fn make(&self, i: u8, name: &str, entry: Entry, arg: u64, stack_top: u64) -> Result<Dispatcher, ErrorCode> {
        let l3 = CapRef::slot(self.cn, 2);
        cap::map(l3, self.frame(i), u16::from(i), 1, 3, 0, Dest::l2(self.cn, u32::from(50 + i)))?;
        let va = self.frame_va(i);
        // SAFETY: the page was just mapped read-write and only this child
        // will use it.
        unsafe {
            let f = &mut *self.shared(i);
            let n = name.as_bytes();
            let len = n.len().min(f.name.len());
            f.name[..len].copy_from_slice(&n[..len]);
            f.disabled_save = RegisterSave { pc: entry as *const () as u64, sp: stack_top, ..RegisterSave::default() };
            f.disabled_save.x[0] = va;
            f.disabled_save.x[1] = arg;
        }
        let disp = self.dispatcher(i);
        let root = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_ROOTCN as u8);
        let vroot = CapRef::slot(ROOTCN_SLOT_PAGECN as u32, PAGECN_SLOT_VROOT as u8);
        disp.setup(root, vroot, self.frame(i), va)?;
        Ok(disp)
    }
}
