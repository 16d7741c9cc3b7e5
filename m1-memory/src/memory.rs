//! Init's memory system: the RAM manager, the slot allocator, and the
//! paging state wired together, with the refills between them ordered so
//! none recurses (book ch. 3.14). It lives in static memory behind a lock
//! ([`with`]) and is the domain's RAM allocator (`aos::ram`).
//!
//! Before an operation, [`Memory::refill`] tops up, in this order:
//! 1. slots, from a RAM allocation (needs one slot and one manager node,
//!    both above their low-water marks);
//! 2. the manager's nodes, from a frame mapped by the paging code (needs
//!    slots, nodes and shadow tables, all still above their marks);
//! 3. shadow tables, the same way.
//!
//! Each refill needs less of every resource than its mark guarantees, so
//! a refill never finds its own resource empty. A mapping that needs many
//! tables reserves them all before it starts. When memory runs out a
//! refill fails; `free` runs first and refills after, and the other
//! operations go ahead if what they need themselves is there, so a full
//! memory never stops the frees that would make room.

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use aos::cap::{self, CNodeRef, CapRef, Dest, ObjType};
use aos::kpi::ErrorCode;
use aos::kpi::bootinfo::{BootInfo, RegionKind};
use aos::kpi::cspace::*;
use aos::ram::RamError;
use aos::slab::{self, Entry};
use aos::slot::{self, SlotAllocator};
use api::{AllocStats, MapFlags};

use crate::Error;
use crate::mm::{CapInfo, MemoryManager, MmError, NODES_PER_OP, Node, RamCaps};
use crate::paging::{self, PagingState, REFILL_TABLES, Resources, Table};

/// Virtual addresses of the frames that refill the slabs: level-0 entry 2
/// (1 TiB up), away from the program (entry 0) and the graders (entry 1).
pub const REFILL_VADDR: core::ops::Range<u64> = (2 << 39)..(3 << 39);
/// Bytes of one refill frame, per slab. A chunk never crosses 2 MiB.
const NODE_CHUNK: u64 = 16 << 10;
const TABLE_CHUNK: u64 = 64 << 10;
/// Manager nodes to keep: one refill's allocations (a frame and up to
/// three tables), another slot refill, and the operation itself, with room
/// to spare.
const NODES_LOW: usize = 16 * NODES_PER_OP;

/// The capability operations the manager runs: retype into slots from the
/// slot allocator, which this owns.
pub struct KernelRam {
    pub slots: SlotAllocator,
    /// Bytes allocated for the memory system's own use (see
    /// `api::MemoryManager::overhead_bytes`).
    pub overhead: u64,
}

impl RamCaps for KernelRam {
    type Cap = CapRef;

    fn identify(&mut self, cap: CapRef) -> Result<CapInfo, ErrorCode> {
        let id = cap::identify(cap)?;
        Ok(CapInfo { base: id.base, size: id.size, is_ram: id.objtype == Some(ObjType::Ram) })
    }

    fn retype_ram(&mut self, src: CapRef, offset: u64, size: u64) -> Result<CapRef, ErrorCode> {
        self.in_new_slot(|dest| cap::retype(src, dest, ObjType::Ram, offset, size, 1).map(drop))
    }

    fn covered_by_others(&mut self, src: CapRef, except: CapRef, offset: u64, size: u64) -> Result<bool, ErrorCode> {
        cap::retype_check(src, Some(except), offset, size)
    }

    fn copy_cap(&mut self, cap: CapRef) -> Result<CapRef, ErrorCode> {
        self.in_new_slot(|dest| cap::copy(cap, dest))
    }

    fn delete(&mut self, cap: CapRef) -> Result<(), ErrorCode> {
        cap::delete(cap)?;
        // A slot the allocator did not hand out (a boot capability) stays out.
        let _ = self.slots.free(cap);
        Ok(())
    }
}

impl KernelRam {
    /// Makes a capability with `make` in a fresh slot. On failure the slot
    /// goes back, unless the kernel found it occupied: someone put a
    /// capability there behind the allocator's back, so it stays out.
    fn in_new_slot(&mut self, make: impl FnOnce(Dest) -> Result<(), ErrorCode>) -> Result<CapRef, ErrorCode> {
        let slot = self.slots.alloc().map_err(|_| ErrorCode::OutOfMemory)?;
        match make(Dest::at(slot)) {
            Ok(()) => Ok(slot),
            Err(ErrorCode::SlotInUse) => Err(ErrorCode::SlotInUse),
            Err(e) => {
                self.slots.free(slot).expect("just allocated");
                Err(e)
            }
        }
    }
}

pub struct Memory {
    mm: MemoryManager<KernelRam>,
    paging: PagingState,
    next_refill_va: u64,
    slab_refills: u64,
    /// Page tables made for the refill region.
    refill_tables_made: u64,
}

/// The slabs' first memory, before anything can be mapped.
struct Boot {
    nodes: [MaybeUninit<Entry<Node>>; 64],
    tables: [MaybeUninit<Entry<Table>>; 4],
    memory: MaybeUninit<Memory>,
}
static mut BOOT: Boot = Boot {
    nodes: [const { MaybeUninit::uninit() }; 64],
    tables: [const { MaybeUninit::uninit() }; 4],
    memory: MaybeUninit::uninit(),
};
static BOOT_TAKEN: AtomicBool = AtomicBool::new(false);

/// The domain's memory system, once [`Memory::init`] made it.
static MEMORY: spin::Mutex<Option<&'static mut Memory>> = spin::Mutex::new(None);

/// Runs `f` with the memory system. Inside `f`, the RAM hook of `aos`
/// answers `Busy`: the system is already in use on this call chain.
pub fn with<R>(f: impl FnOnce(&mut Memory) -> R) -> Result<R, Error> {
    let mut guard = MEMORY.try_lock().ok_or(Error::Busy)?;
    let memory = guard.as_deref_mut().ok_or(Error::NotInitialised)?;
    Ok(f(memory))
}

fn ram_error(e: Error) -> RamError {
    match e {
        Error::Busy => RamError::Busy,
        Error::NotInitialised => RamError::NotInstalled,
        Error::Mm(MmError::OutOfMemory) => RamError::OutOfMemory,
        _ => RamError::Refused,
    }
}

fn hook_alloc(bytes: u64, align: u64) -> Result<CapRef, RamError> {
    with(|m| api::MemoryManager::alloc_aligned(m, bytes, align)).and_then(|r| r).map_err(ram_error)
}

fn hook_free(cap: CapRef) -> Result<(), RamError> {
    with(|m| api::MemoryManager::free(m, cap)).and_then(|r| r).map_err(ram_error)
}

impl Memory {
    /// Builds init's memory system from its bootinfo: the slot allocator
    /// over the SLOT_ALLOC CNodes, the manager over every free RAM region;
    /// then installs it as the domain's RAM allocator (`aos::ram`). Reach
    /// it with [`with`]. Once per domain; a second call answers
    /// `AlreadyInitialised`.
    pub fn init(bi: &BootInfo) -> Result<(), Error> {
        if BOOT_TAKEN.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyInitialised);
        }
        let boot = &raw mut BOOT;
        // SAFETY: BOOT_TAKEN makes this the only reference ever made to
        // BOOT, which nothing else names.
        let Boot { nodes, tables, memory } = unsafe { &mut *boot };
        let mut slots = SlotAllocator::new();
        for cn in [ROOTCN_SLOT_SLOT_ALLOC0, ROOTCN_SLOT_SLOT_ALLOC1, ROOTCN_SLOT_SLOT_ALLOC2] {
            slots.add_cnode(CNodeRef { l1: cn as u32 }, 0).map_err(Error::Slot)?;
        }
        let mut mm = MemoryManager::new(KernelRam { slots, overhead: 0 });
        mm.grow_nodes(nodes).map_err(|_| Error::Internal("growing the boot node slab"))?;
        let vroot = CapRef::slot(ROOTCN_SLOT_PAGECN as u32, PAGECN_SLOT_VROOT as u8);
        let paging = PagingState::new(vroot, tables).map_err(|_| Error::Internal("boot table slab"))?;
        let memory = memory.write(Memory {
            mm,
            paging,
            next_refill_va: REFILL_VADDR.start,
            slab_refills: 0,
            refill_tables_made: 0,
        });
        for r in bi.regions().iter().filter(|r| r.kind == RegionKind::Free && r.slot != u32::MAX) {
            let Ok(slot) = u8::try_from(r.slot) else { continue };
            memory.mm.add(CapRef::slot(ROOTCN_SLOT_SUPERCN as u32, slot)).map_err(Error::Mm)?;
        }
        memory.refill()?;
        *MEMORY.lock() = Some(memory);
        aos::ram::ram_alloc_set(aos::ram::RamHooks { alloc: hook_alloc, free: hook_free });
        Ok(())
    }

    /// Tops up slots, manager nodes and shadow tables, in the order of the
    /// module comment.
    fn refill(&mut self) -> Result<(), Error> {
        while self.mm.caps().slots.needs_refill() {
            Resources::refill_slots(&mut self.mm)?;
        }
        while self.mm.nodes_free() < NODES_LOW {
            self.grow_nodes()?;
        }
        self.refill_tables(0)
    }

    /// Refills, but lets an operation that needs at most `nodes` manager
    /// nodes and `slots` slots go ahead when a refill fails and what it
    /// needs is there: a full memory must not stop frees that would make
    /// room.
    fn prepare(&mut self, nodes: usize, slots: usize) -> Result<(), Error> {
        match self.refill() {
            Err(e) if self.mm.nodes_free() < nodes || self.mm.caps_ref().slots.free_count() < slots => Err(e),
            _ => Ok(()),
        }
    }

    fn grow_nodes(&mut self) -> Result<(), Error> {
        if !self.mm.node_slab_has_room() {
            return Err(Error::Internal("node slab holds its most chunks"));
        }
        let mem = self.map_chunk(NODE_CHUNK)?;
        self.mm.grow_nodes(slab::carve(mem)).map_err(|_| Error::Internal("node slab refused a chunk"))
    }

    /// Grows the shadow-table slab until `needed` tables plus one refill's
    /// worth are free.
    fn refill_tables(&mut self, needed: usize) -> Result<(), Error> {
        while self.paging.tables_free() < needed + REFILL_TABLES {
            if !self.paging.slab_has_room() {
                return Err(Error::Internal("table slab holds its most chunks"));
            }
            let mem = self.map_chunk(TABLE_CHUNK)?;
            self.paging.grow(slab::carve(mem)).map_err(|_| Error::Internal("table slab refused a chunk"))?;
        }
        Ok(())
    }

    /// A fresh frame of `bytes`, mapped read-write in the refill region.
    fn map_chunk(&mut self, bytes: u64) -> Result<&'static mut [MaybeUninit<u8>], Error> {
        let va = self.next_refill_va.next_multiple_of(bytes);
        if va + bytes > REFILL_VADDR.end {
            return Err(Error::Internal("refill region used up"));
        }
        let (frame, ram, pa) = self.new_frame(bytes)?;
        let tables = self.paging.tables_used();
        if let Err(e) = self.paging.map(&mut self.mm, va, frame, pa, bytes, MapFlags::READ_WRITE) {
            self.drop_frame(frame, ram);
            return Err(e);
        }
        self.refill_tables_made += (self.paging.tables_used() - tables) as u64;
        self.mm.caps().overhead += bytes;
        self.next_refill_va = va + bytes;
        self.slab_refills += 1;
        // SAFETY: `[va, va + bytes)` was just mapped read-write to a frame
        // nobody else holds, in the refill region only this code maps, and
        // is never unmapped: it lives as long as the domain.
        Ok(unsafe { core::slice::from_raw_parts_mut(va as *mut MaybeUninit<u8>, bytes as usize) })
    }

    /// A Frame capability of `bytes` (`frame_alloc`), retyped from RAM the
    /// manager hands out; the RAM capability stays as its parent.
    pub fn frame_alloc(&mut self, bytes: u64) -> Result<CapRef, Error> {
        self.prepare(NODES_PER_OP, 2)?;
        self.new_frame(bytes).map(|(frame, _, _)| frame)
    }

    /// A frame, its RAM capability, and its physical address.
    fn new_frame(&mut self, bytes: u64) -> Result<(CapRef, CapRef, u64), Error> {
        let bytes = bytes.checked_next_multiple_of(paging::PAGE).ok_or(Error::Mm(MmError::InvalidSize))?;
        let (frame, ram) = self.mm.new_object(ObjType::Frame, bytes, "retyping RAM into a frame")?;
        match cap::identify(frame) {
            Ok(id) => Ok((frame, ram, id.base)),
            Err(code) => {
                self.drop_frame(frame, ram);
                Err(Error::Kernel { code, doing: "identifying a frame" })
            }
        }
    }

    /// Undoes [`Memory::new_frame`].
    fn drop_frame(&mut self, frame: CapRef, ram: CapRef) {
        if cap::delete(frame).is_ok() {
            let _ = self.mm.caps().slots.free(frame);
            let _ = self.mm.free(ram);
        }
    }

    /// Removes the mappings that start in `[vaddr, vaddr + bytes)` and
    /// deletes their mapping capabilities; page tables stay.
    pub fn unmap(&mut self, vaddr: u64, bytes: u64) -> Result<(), Error> {
        check_user_range(vaddr, bytes)?;
        self.paging.unmap(&mut self.mm, vaddr, bytes);
        Ok(())
    }

    /// A fresh frame of `bytes` mapped read-write for good in the
    /// refill region: memory for another component's slabs (M2's address
    /// ranges), which like the memory system's own is never given back.
    pub fn slab_chunk(&mut self, bytes: u64) -> Result<&'static mut [MaybeUninit<u8>], Error> {
        self.refill()?;
        self.map_chunk(bytes)
    }

    /// Keeps the slot allocator out of the root slots from `from` up, for
    /// a component that puts CNodes there itself (M2's spawn).
    pub fn leave_root_slots(&mut self, from: u32) -> Result<(), Error> {
        self.mm.caps().slots.leave_root_slots(from).map_err(Error::Slot)
    }

    pub fn stats(&self) -> AllocStats {
        AllocStats {
            mm_slab_capacity: self.mm.node_capacity() as u64,
            slab_refills: self.slab_refills,
            slots_free: self.mm.caps_ref().slots.free_count() as u64,
            slot_refills: self.mm.caps_ref().slots.refills(),
            // The L0 table is the kernel's; the refill region's tables are
            // the memory system's own.
            page_tables: self.paging.tables_used() as u64 - 1 - self.refill_tables_made,
        }
    }
}

/// Checks a range a client maps or unmaps: a user range, clear of the
/// refill region the memory system keeps for itself.
fn check_user_range(vaddr: u64, bytes: u64) -> Result<(), Error> {
    paging::check_range(vaddr, bytes)?;
    if vaddr < REFILL_VADDR.end && REFILL_VADDR.start < vaddr + bytes {
        return Err(Error::Reserved { vaddr });
    }
    Ok(())
}

impl MemoryManager<KernelRam> {
    /// A new `ty` object of `bytes` from RAM the manager hands out, in a
    /// fresh slot, and that RAM capability, which stays as its parent. On
    /// failure the RAM goes back.
    fn new_object(&mut self, ty: ObjType, bytes: u64, doing: &'static str) -> Result<(CapRef, CapRef), Error> {
        if self.caps().slots.needs_refill() {
            Resources::refill_slots(self)?;
        }
        let ram = self.alloc(bytes).map_err(Error::Mm)?;
        match self.caps().in_new_slot(|dest| cap::retype(ram, dest, ty, 0, bytes, 1).map(drop)) {
            Ok(object) => Ok((object, ram)),
            Err(code) => {
                let _ = self.free(ram);
                Err(Error::Kernel { code, doing })
            }
        }
    }
}

/// RAM and slots for page tables, straight from the manager.
impl Resources for MemoryManager<KernelRam> {
    fn slot(&mut self) -> Result<CapRef, Error> {
        if self.caps().slots.needs_refill() {
            self.refill_slots()?;
        }
        self.caps().slots.alloc().map_err(Error::Slot)
    }

    fn refill_slots(&mut self) -> Result<(), Error> {
        let ram = self.alloc(slot::REFILL_BYTES).map_err(Error::Mm)?;
        if let Err(e) = self.caps().slots.refill(ram) {
            let _ = self.free(ram);
            return Err(Error::Slot(e));
        }
        self.caps().overhead += slot::REFILL_BYTES;
        Ok(())
    }

    fn free_slot(&mut self, slot: CapRef) {
        let _ = self.caps().slots.free(slot);
    }

    fn vnode(&mut self, ty: ObjType) -> Result<(CapRef, CapRef), Error> {
        let made = self.new_object(ty, paging::PAGE, "retyping RAM into a page table")?;
        self.caps().overhead += paging::PAGE;
        Ok(made)
    }

    fn drop_vnode(&mut self, vnode: CapRef, ram: CapRef) {
        if cap::delete(vnode).is_ok() {
            let _ = self.caps().slots.free(vnode);
            if self.free(ram).is_ok() {
                self.caps().overhead -= paging::PAGE;
            }
        }
    }
}

impl api::MemoryManager for Memory {
    type Error = Error;

    fn add(&mut self, ram: CapRef) -> Result<(), Error> {
        self.prepare(NODES_PER_OP, 0)?;
        self.mm.add(ram).map_err(Error::Mm)
    }

    fn alloc_aligned(&mut self, size: u64, align: u64) -> Result<CapRef, Error> {
        self.prepare(NODES_PER_OP, 1)?;
        self.mm.alloc_aligned(size, align).map_err(Error::Mm)
    }

    fn free(&mut self, ram: CapRef) -> Result<(), Error> {
        // Free first: it needs no slot, and a refill may need the memory.
        let r = self.mm.free(ram).map_err(Error::Mm);
        let _ = self.refill();
        r
    }

    fn free_bytes(&self) -> u64 {
        self.mm.free_bytes()
    }

    fn total_bytes(&self) -> u64 {
        self.mm.total_bytes()
    }

    fn overhead_bytes(&self) -> u64 {
        self.mm.caps_ref().overhead
    }
}

impl api::Paging for Memory {
    type Error = Error;

    fn map_fixed_attr(&mut self, vaddr: u64, frame: CapRef, bytes: u64, flags: MapFlags) -> Result<(), Error> {
        let bytes = paging::round_to_pages(bytes).ok_or(Error::BadRange { vaddr, bytes })?;
        check_user_range(vaddr, bytes)?;
        let base = paging::frame_base(frame, bytes)?;
        self.refill()?;
        let needed = self.paging.tables_needed(vaddr, base, bytes, flags)?;
        self.refill_tables(needed)?;
        // Manager nodes for every table's RAM and every slot refill on the
        // way (a run takes a slot, a table three).
        let runs = bytes.div_ceil(paging::BLOCK) as usize + 2;
        let slot_refills = (3 * needed + runs) / slot::LOW_WATER + 1;
        while self.mm.nodes_free() < NODES_LOW + (needed + slot_refills) * NODES_PER_OP {
            self.grow_nodes()?;
        }
        self.paging.map(&mut self.mm, vaddr, frame, base, bytes, flags)
    }
}

impl api::SlotAllocator for Memory {
    type Error = Error;

    fn slot_alloc(&mut self) -> Result<CapRef, Error> {
        self.prepare(0, 1)?;
        self.mm.caps().slots.alloc().map_err(Error::Slot)
    }

    /// Takes back an empty slot; one still holding a capability is
    /// refused, since handing it out again would make every retype into it
    /// fail.
    fn slot_free(&mut self, slot: CapRef) -> Result<(), Error> {
        match cap::identify(slot) {
            Err(ErrorCode::SlotEmpty) => self.mm.caps().slots.free(slot).map_err(Error::Slot),
            Ok(_) => Err(Error::SlotNotEmpty),
            Err(code) => Err(Error::Kernel { code, doing: "checking the slot is empty" }),
        }
    }
}

impl api::M1 for Memory {
    fn stats(&self) -> AllocStats {
        Memory::stats(self)
    }
}

impl From<MmError> for Error {
    fn from(e: MmError) -> Self {
        Error::Mm(e)
    }
}
