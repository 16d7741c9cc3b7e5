//! Init's memory system: the RAM manager, the slot allocator, and the
//! paging state wired together, with the refills between them ordered so
//! none recurses (book ch. 3.14).
//!
//! Every public operation first calls [`Memory::refill`], which tops up,
//! in this order:
//! 1. slots, from a RAM allocation (needs one slot and the manager's node
//!    reserve, both above their low-water marks);
//! 2. the manager's nodes, from a frame mapped by the paging code (needs
//!    slots, nodes and shadow tables, all still above their marks);
//! 3. shadow tables, the same way.
//!
//! Each refill needs less of every resource than its mark guarantees, so
//! a refill never finds its own resource empty. A mapping that needs many
//! tables reserves them all before it starts.

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use aos::cap::{self, CNodeRef, CapRef, Dest, ObjType};
use aos::kpi::ErrorCode;
use aos::kpi::bootinfo::{BootInfo, RegionKind};
use aos::kpi::cspace::*;
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
/// three tables), another slot refill, and the operation itself.
const NODES_LOW: usize = 8 * NODES_PER_OP;

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
        let slot = self.slots.alloc().map_err(|_| ErrorCode::OutOfMemory)?;
        match cap::retype(src, dest(slot), ObjType::Ram, offset, size, 1) {
            Ok(_) => Ok(slot),
            Err(e) => {
                self.slots.free(slot).expect("just allocated");
                Err(e)
            }
        }
    }

    fn delete(&mut self, cap: CapRef) -> Result<(), ErrorCode> {
        cap::delete(cap)?;
        // A slot the allocator did not hand out (a boot capability) stays out.
        let _ = self.slots.free(cap);
        Ok(())
    }
}

fn dest(slot: CapRef) -> Dest {
    Dest::l2(slot.l1_index(), slot.l2_index())
}

pub struct Memory {
    mm: MemoryManager<KernelRam>,
    paging: PagingState,
    next_refill_va: u64,
    slab_refills: u64,
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

impl Memory {
    /// Builds init's memory system from its bootinfo: the slot allocator
    /// over the SLOT_ALLOC CNodes, the manager over every free RAM region.
    /// Once per domain; a second call answers `AlreadyInitialised`.
    pub fn init(bi: &BootInfo) -> Result<&'static mut Memory, Error> {
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
        let memory = memory.write(Memory { mm, paging, next_refill_va: REFILL_VADDR.start, slab_refills: 0 });
        for r in bi.regions().iter().filter(|r| r.kind == RegionKind::Free && r.slot != u32::MAX) {
            let Ok(slot) = u8::try_from(r.slot) else { continue };
            memory.mm.add(CapRef::slot(ROOTCN_SLOT_SUPERCN as u32, slot)).map_err(Error::Mm)?;
        }
        memory.refill()?;
        Ok(memory)
    }

    /// Tops up slots, manager nodes and shadow tables (see the module
    /// comment for the order).
    fn refill(&mut self) -> Result<(), Error> {
        self.refill_tables(0)?;
        while self.mm.caps().slots.needs_refill() {
            Resources::refill_slots(&mut self.mm)?;
        }
        while self.mm.nodes_free() < NODES_LOW {
            let mem = self.map_chunk(NODE_CHUNK)?;
            self.mm.grow_nodes(slab::carve(mem)).map_err(|_| Error::Internal("node slab has no room for chunks"))?;
        }
        Ok(())
    }

    /// Grows the shadow-table slab until `needed` tables plus one refill's
    /// worth are free.
    fn refill_tables(&mut self, needed: usize) -> Result<(), Error> {
        while self.paging.tables_free() < needed + REFILL_TABLES {
            let mem = self.map_chunk(TABLE_CHUNK)?;
            self.paging.grow(slab::carve(mem)).map_err(|_| Error::Internal("table slab has no room for chunks"))?;
        }
        Ok(())
    }

    /// A fresh frame of `bytes`, mapped read-write in the refill region.
    fn map_chunk(&mut self, bytes: u64) -> Result<&'static mut [MaybeUninit<u8>], Error> {
        let va = self.next_refill_va.next_multiple_of(bytes);
        if va + bytes > REFILL_VADDR.end {
            return Err(Error::Internal("refill region used up"));
        }
        let frame = self.frame_alloc(bytes)?;
        self.mm.caps().overhead += bytes;
        let pa = cap::identify(frame).map_err(|code| Error::Kernel { code, doing: "identifying a frame" })?.base;
        self.paging.map(&mut self.mm, va, frame, pa, bytes, MapFlags::READ_WRITE)?;
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
        let ram = self.mm.alloc(bytes).map_err(Error::Mm)?;
        let size = cap::identify(ram).map_err(|code| Error::Kernel { code, doing: "identifying RAM" })?.size;
        let slot = self.mm.caps().slots.alloc().map_err(Error::Slot)?;
        if let Err(code) = cap::retype(ram, dest(slot), ObjType::Frame, 0, size, 1) {
            let _ = self.mm.caps().slots.free(slot);
            let _ = self.mm.free(ram);
            return Err(Error::Kernel { code, doing: "retyping RAM into a frame" });
        }
        Ok(slot)
    }

    pub fn stats(&self) -> AllocStats {
        AllocStats {
            mm_slab_capacity: self.mm.node_capacity() as u64,
            slab_refills: self.slab_refills,
            slots_free: self.mm.caps_ref().slots.free_count() as u64,
            slot_refills: self.mm.caps_ref().slots.refills(),
            // The L0 table is the kernel's; count the ones made here.
            page_tables: self.paging.tables_used() as u64 - 1,
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

    fn vnode(&mut self, ty: ObjType) -> Result<CapRef, Error> {
        let ram = self.alloc(paging::PAGE).map_err(Error::Mm)?;
        let slot = Resources::slot(self)?;
        cap::retype(ram, dest(slot), ty, 0, 0, 1).map_err(|code| {
            let _ = self.caps().slots.free(slot);
            let _ = self.free(ram);
            Error::Kernel { code, doing: "retyping RAM into a page table" }
        })?;
        self.caps().overhead += paging::PAGE;
        Ok(slot)
    }
}

impl api::MemoryManager for Memory {
    type Error = Error;

    fn add(&mut self, ram: CapRef) -> Result<(), Error> {
        self.refill()?;
        self.mm.add(ram).map_err(Error::Mm)
    }

    fn alloc_aligned(&mut self, size: u64, align: u64) -> Result<CapRef, Error> {
        self.refill()?;
        self.mm.alloc_aligned(size, align).map_err(Error::Mm)
    }

    fn free(&mut self, ram: CapRef) -> Result<(), Error> {
        self.refill()?;
        self.mm.free(ram).map_err(Error::Mm)
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
        let bytes = bytes.checked_next_multiple_of(paging::PAGE).ok_or(Error::BadRange { vaddr, bytes })?;
        paging::check_range(vaddr, bytes)?;
        if vaddr < REFILL_VADDR.end && REFILL_VADDR.start < vaddr + bytes {
            return Err(Error::Reserved { vaddr });
        }
        let id = cap::identify(frame).map_err(|code| Error::Kernel { code, doing: "identifying the frame" })?;
        if !matches!(id.objtype, Some(ObjType::Frame | ObjType::DevFrame)) {
            return Err(Error::NotAFrame);
        }
        if bytes > id.size {
            return Err(Error::FrameTooSmall { bytes, frame: id.size });
        }
        self.refill()?;
        let needed = self.paging.tables_needed(vaddr, id.base, bytes, flags)?;
        self.refill_tables(needed)?;
        // Enough manager nodes and slots for every table and mapping.
        let runs = bytes.div_ceil(paging::BLOCK) as usize + 2;
        while self.mm.nodes_free() < NODES_LOW + (needed + runs / 64 + 2) * NODES_PER_OP {
            let mem = self.map_chunk(NODE_CHUNK)?;
            self.mm.grow_nodes(slab::carve(mem)).map_err(|_| Error::Internal("node slab has no room for chunks"))?;
        }
        self.paging.map(&mut self.mm, vaddr, frame, id.base, bytes, flags)
    }
}

impl api::SlotAllocator for Memory {
    type Error = Error;

    fn slot_alloc(&mut self) -> Result<CapRef, Error> {
        self.refill()?;
        self.mm.caps().slots.alloc().map_err(Error::Slot)
    }

    fn slot_free(&mut self, slot: CapRef) -> Result<(), Error> {
        self.mm.caps().slots.free(slot).map_err(Error::Slot)
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
