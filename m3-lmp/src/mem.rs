//! A spawned domain's memory (book ch. 5.12): RAM from the memory server
//! through `get_ram_cap`, `frame_alloc` on top, slots, and mappings in the
//! domain's own part of its address space. Installed as the domain's RAM
//! allocator (`aos::ram`, the book's `ram_alloc_set`) at start-up.
//!
//! Owns the domain's slot allocator (the SLOT_ALLOC CNodes spawn made, then
//! CNodes it adds), its shadow page tables for [`OWN_VADDR`], and the
//! pages of BASE_PAGE_CN, used for its first page tables. It never touches
//! the addresses below [`OWN_VADDR`], which are spawn's and the parent's.
//!
//! Slots: a received capability needs an empty slot set beforehand, so the
//! allocator is topped up to [`SLOTS_LOW`] before every RAM request, from
//! RAM the server gives; receiving never finds it empty.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use aos::cap::{self, CNodeRef, CapRef, Dest, ObjType};
use aos::kpi::ErrorCode;
use aos::kpi::cspace::*;
use aos::ram::{RamError, RamHooks};
use aos::slab::{self, Entry};
use aos::slot::{self, SlotAllocator};
use api::MapFlags;
use m1_memory::paging::{self, BLOCK, PAGE, PagingState, REFILL_TABLES, Resources, Table};

use crate::rpc::{self, RpcError};

/// The part of the address space the domain maps on its own: level-0
/// entries 256 and up. Spawn and the parent map below (`m2_spawn::vspace`).
pub const OWN_VADDR: core::ops::Range<u64> = (256 << 39)..aos::kpi::vspace::USER_END;
const _: () = assert!(m2_spawn::vspace::CHILD_VADDR.end <= OWN_VADDR.start && OWN_VADDR.start.is_multiple_of(1 << 39));
/// Free slots kept before a capability is received.
pub const SLOTS_LOW: usize = 16;
/// Bytes of each chunk of shadow tables added after the first.
const TABLE_CHUNK: u64 = 64 << 10;

/// Why a memory operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    Rpc(RpcError),
    Paging(m1_memory::Error),
    Kernel {
        code: ErrorCode,
        doing: &'static str,
    },
    Slot(aos::slot::SlotError),
    /// The own part of the address space is used up.
    NoAddresses,
    /// Not set up ([`init`]), or used from inside itself.
    Busy,
}

impl core::fmt::Display for MemError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MemError::Rpc(e) => write!(f, "{e}"),
            MemError::Paging(e) => write!(f, "{e}"),
            MemError::Kernel { code, doing } => write!(f, "{code}, while {doing}"),
            MemError::Slot(e) => write!(f, "slots: {e}"),
            MemError::NoAddresses => f.write_str("no free addresses left"),
            MemError::Busy => f.write_str("the memory system is not set up or is in use further up"),
        }
    }
}

impl From<RpcError> for MemError {
    fn from(e: RpcError) -> Self {
        MemError::Rpc(e)
    }
}

impl From<m1_memory::Error> for MemError {
    fn from(e: m1_memory::Error) -> Self {
        MemError::Paging(e)
    }
}

fn kernel(doing: &'static str) -> impl Fn(ErrorCode) -> MemError {
    move |code| MemError::Kernel { code, doing }
}

/// RAM for the paging code and the slots: BASE_PAGE_CN first, then the
/// memory server.
struct Ram {
    slots: SlotAllocator,
    base_pages_used: u8,
    /// Bytes received from the server.
    received: u64,
}

impl Ram {
    /// A new slot, topping the allocator up first if it runs low.
    fn slot(&mut self) -> Result<CapRef, MemError> {
        if self.slots.free_count() < SLOTS_LOW {
            self.refill()?;
        }
        self.slots.alloc().map_err(MemError::Slot)
    }

    /// A new CNode's worth of slots, from the server's RAM. Uses two of the
    /// slots left (the RAM's, and the receive slot is the same one).
    fn refill(&mut self) -> Result<(), MemError> {
        let s = self.slots.alloc().map_err(MemError::Slot)?;
        let (ram, bytes) = rpc::init_channel().get_ram_into(slot::REFILL_BYTES, PAGE, s)?;
        self.received += bytes;
        self.slots.refill(ram).map_err(MemError::Slot)
    }

    /// RAM of `bytes` at `align` from the server, in a new slot.
    fn remote(&mut self, bytes: u64, align: u64) -> Result<(CapRef, u64), MemError> {
        let s = self.slot()?;
        match rpc::init_channel().get_ram_into(bytes, align, s) {
            Ok((cap, got)) => {
                self.received += got;
                Ok((cap, got))
            }
            Err(e) => {
                let _ = self.slots.free(s);
                Err(e.into())
            }
        }
    }

    /// A base page of RAM: from BASE_PAGE_CN while it lasts.
    fn page(&mut self) -> Result<CapRef, MemError> {
        if usize::from(self.base_pages_used) < m2_spawn::spawn::BASE_PAGES as usize {
            let i = self.base_pages_used;
            self.base_pages_used += 1;
            return Ok(CapRef::slot(ROOTCN_SLOT_BASE_PAGE_CN as u32, i));
        }
        Ok(self.remote(PAGE, PAGE)?.0)
    }
}

impl Resources for Ram {
    fn slot(&mut self) -> Result<CapRef, m1_memory::Error> {
        Ram::slot(self).map_err(|_| m1_memory::Error::Internal("no slot for a mapping"))
    }

    fn refill_slots(&mut self) -> Result<(), m1_memory::Error> {
        self.refill().map_err(|_| m1_memory::Error::Internal("no RAM for slots"))
    }

    fn free_slot(&mut self, slot: CapRef) {
        let _ = self.slots.free(slot);
    }

    fn vnode(&mut self, ty: ObjType) -> Result<(CapRef, CapRef), m1_memory::Error> {
        let ram = self.page().map_err(|_| m1_memory::Error::Internal("no RAM for a page table"))?;
        let s = Ram::slot(self).map_err(|_| m1_memory::Error::Internal("no slot for a page table"))?;
        cap::retype(ram, Dest::at(s), ty, 0, PAGE, 1)
            .map_err(|code| m1_memory::Error::Kernel { code, doing: "retyping RAM into a page table" })?;
        Ok((s, ram))
    }

    fn drop_vnode(&mut self, vnode: CapRef, _ram: CapRef) {
        if cap::delete(vnode).is_ok() {
            let _ = self.slots.free(vnode);
        }
    }
}

/// The domain's memory system.
pub struct Memory {
    ram: Ram,
    paging: PagingState,
    next_va: u64,
}

/// The first shadow tables, before anything can be mapped.
struct Boot(UnsafeCell<[MaybeUninit<Entry<Table>>; 8]>);
// SAFETY: handed out once (BOOT_TAKEN), never touched here afterwards.
unsafe impl Sync for Boot {}
static BOOT: Boot = Boot(UnsafeCell::new([const { MaybeUninit::uninit() }; 8]));
static BOOT_TAKEN: AtomicBool = AtomicBool::new(false);

static MEMORY: aos::thread::Mutex<Option<Memory>> = aos::thread::Mutex::new(None);

/// Runs `f` with the memory system (other threads wait); `Busy` if it is
/// in use further up this call chain or not set up.
pub fn with<R>(f: impl FnOnce(&mut Memory) -> Result<R, MemError>) -> Result<R, MemError> {
    let mut g = MEMORY.lock().map_err(|_| MemError::Busy)?;
    f(g.as_mut().ok_or(MemError::Busy)?)
}

/// Sets the memory system up and installs it as the RAM allocator. Once.
pub fn init() -> Result<(), MemError> {
    if BOOT_TAKEN.swap(true, Ordering::AcqRel) {
        return Err(MemError::Busy);
    }
    // SAFETY: BOOT_TAKEN makes this the only reference ever made to BOOT.
    let first = unsafe { &mut *BOOT.0.get() };
    let mut slots = SlotAllocator::new();
    for cn in [ROOTCN_SLOT_SLOT_ALLOC0, ROOTCN_SLOT_SLOT_ALLOC1, ROOTCN_SLOT_SLOT_ALLOC2] {
        slots.add_cnode(CNodeRef { l1: cn as u32 }, 0).map_err(MemError::Slot)?;
    }
    let vroot = CapRef::slot(ROOTCN_SLOT_PAGECN as u32, PAGECN_SLOT_VROOT as u8);
    let paging =
        PagingState::new(vroot, first).map_err(|_| MemError::Paging(m1_memory::Error::Internal("table slab")))?;
    *MEMORY.lock().map_err(|_| MemError::Busy)? =
        Some(Memory { ram: Ram { slots, base_pages_used: 0, received: 0 }, paging, next_va: OWN_VADDR.start });
    aos::ram::ram_alloc_set(RamHooks { alloc: hook_alloc, free: hook_free });
    Ok(())
}

fn hook_alloc(bytes: u64, align: u64) -> Result<CapRef, RamError> {
    with(|m| m.ram.remote(bytes, align).map(|(c, _)| c)).map_err(|e| match e {
        MemError::Busy => RamError::Busy,
        MemError::Rpc(RpcError::Refused(crate::proto::Refusal::OutOfMemory | crate::proto::Refusal::QuotaExceeded)) => {
            RamError::OutOfMemory
        }
        _ => RamError::Refused,
    })
}

/// The capability goes; the memory comes back to the server when the
/// domain ends (the server keeps no record of pieces, see the report).
fn hook_free(ram: CapRef) -> Result<(), RamError> {
    delete(ram).map_err(|_| RamError::Refused)
}

/// An empty slot of the domain's.
pub fn slot_alloc() -> Result<CapRef, MemError> {
    with(|m| m.ram.slot())
}

/// Gives back an empty slot.
pub fn slot_free(slot: CapRef) -> Result<(), MemError> {
    with(|m| m.ram.slots.free(slot).map_err(MemError::Slot))
}

/// A frame of at least `bytes` (whole pages), from the server's RAM
/// (`frame_alloc`); its capability and size.
pub fn frame_alloc(bytes: u64) -> Result<(CapRef, u64), MemError> {
    with(|m| m.frame_alloc(bytes))
}

/// Maps `bytes` of `frame` at a free address of the domain's own part and
/// returns it.
pub fn map_frame(frame: CapRef, bytes: u64, flags: MapFlags) -> Result<u64, MemError> {
    with(|m| m.map(frame, bytes, flags))
}

/// Removes the mappings made at `[va, va + bytes)`. The addresses are not
/// handed out again.
pub fn unmap(va: u64, bytes: u64) -> Result<(), MemError> {
    with(|m| {
        m.paging.unmap(&mut m.ram, va, bytes);
        Ok(())
    })
}

/// Deletes a capability this memory system gave (a frame from
/// [`frame_alloc`], RAM, a received capability) and frees its slot.
pub fn delete(cap: CapRef) -> Result<(), MemError> {
    with(|m| {
        cap::delete(cap).map_err(kernel("deleting a capability"))?;
        let _ = m.ram.slots.free(cap);
        Ok(())
    })
}

/// Bytes of RAM received from the server so far.
pub fn received_bytes() -> u64 {
    with(|m| Ok(m.ram.received)).unwrap_or(0)
}

impl Memory {
    fn frame_alloc(&mut self, bytes: u64) -> Result<(CapRef, u64), MemError> {
        let bytes = bytes.max(1).next_multiple_of(PAGE);
        let align = if bytes >= BLOCK { BLOCK } else { PAGE };
        let (ram, got) = self.ram.remote(bytes, align)?;
        let frame = self.ram.slot()?;
        let r =
            cap::retype(ram, Dest::at(frame), ObjType::Frame, 0, bytes, 1).map_err(kernel("retyping RAM into a frame"));
        // The frame keeps the memory; the RAM capability is not needed.
        let _ = cap::delete(ram);
        let _ = self.ram.slots.free(ram);
        if let Err(e) = r {
            let _ = self.ram.slots.free(frame);
            return Err(e);
        }
        Ok((frame, got.min(bytes)))
    }

    fn map(&mut self, frame: CapRef, bytes: u64, flags: MapFlags) -> Result<u64, MemError> {
        let bytes = paging::round_to_pages(bytes).ok_or(m1_memory::Error::BadRange { vaddr: self.next_va, bytes })?;
        let pa = paging::frame_base(frame, bytes)?;
        let align = if flags.contains(MapFlags::LARGE) && bytes >= BLOCK { BLOCK } else { PAGE };
        let va = self.next_va.next_multiple_of(align);
        let end = va.checked_add(bytes).filter(|&e| e <= OWN_VADDR.end).ok_or(MemError::NoAddresses)?;
        let needed = self.paging.tables_needed(va, pa, bytes, flags)?;
        self.grow_tables(needed)?;
        self.next_va = end;
        self.paging.map(&mut self.ram, va, frame, pa, bytes, flags)?;
        Ok(va)
    }

    /// Adds shadow tables until `needed` plus a chunk's own are free.
    fn grow_tables(&mut self, needed: usize) -> Result<(), MemError> {
        while self.paging.tables_free() < needed + REFILL_TABLES {
            let (frame, _) = self.frame_alloc(TABLE_CHUNK)?;
            let pa = paging::frame_base(frame, TABLE_CHUNK)?;
            let va = self.next_va.next_multiple_of(TABLE_CHUNK);
            self.next_va = va + TABLE_CHUNK;
            self.paging.map(&mut self.ram, va, frame, pa, TABLE_CHUNK, MapFlags::READ_WRITE)?;
            // SAFETY: the frame was just mapped read-write at `va`, only
            // here, for the domain's life (it is never unmapped).
            let mem = unsafe { core::slice::from_raw_parts_mut(va as *mut MaybeUninit<u8>, TABLE_CHUNK as usize) };
            self.paging
                .grow(slab::carve(mem))
                .map_err(|_| MemError::Paging(m1_memory::Error::Internal("table slab refused a chunk")))?;
        }
        Ok(())
    }
}
