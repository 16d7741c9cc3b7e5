//! Address spaces (book ch. 4.6-4.7): which virtual addresses are free,
//! for init's own space ([`OwnVSpace`]) and for a child being built or
//! running ([`ChildVSpace`]).
//!
//! Both keep their free ranges in M1's `AddressRanges` (the address-ordered
//! tree with size classes the physical manager uses), so allocation and
//! freeing are O(log n) and freed ranges merge. Every mapping is recorded,
//! fixed ones too: a fixed mapping first takes its range out of the tree,
//! and a range not wholly free is refused before anything changes.
//!
//! Page tables come from M1's shadow-table code (`m1_memory::paging`): for
//! init through its memory system, for a child through a second
//! `PagingState` whose tables and mapping capabilities go into the
//! child's own PAGECN, retyped from the child's memory.

use core::mem::MaybeUninit;

use aos::cap::{self, CapRef, Dest, ObjType};
use aos::kpi::vspace::USER_END;
use aos::slab;
use api::{MapFlags, Paging};
use m1_memory::Memory;
use m1_memory::mm::{AddressRanges, Node};
use m1_memory::paging::{BLOCK, PAGE, PagingState, Resources, Table, check_range, frame_base, round_to_pages};

use crate::Error;
use crate::layout::{Layout, Region};

/// Init's allocatable addresses: level-0 entry 4 (2 TiB) up. Below are
/// the program (entry 0), the graders' fixed mappings (entry 1) and M1's
/// slab refills (entry 2).
pub const OWN_VADDR: core::ops::Range<u64> = (4 << 39)..USER_END;
/// A child's allocatable addresses: level-0 entries 1 to 255. Entry 0
/// holds what spawn maps at fixed addresses (image, stack, arguments,
/// frames); from entry 256 up the child maps on its own (M3).
pub const CHILD_VADDR: core::ops::Range<u64> = (1 << 39)..(256 << 39);

/// Bytes of one node refill for init's tree.
const NODE_CHUNK: u64 = 16 << 10;
/// Nodes kept free: one operation needs at most one.
const NODES_LOW: usize = 4;

/// The alignment a mapping of `bytes` with `flags` is placed at: 2 MiB
/// where blocks are asked for and the size allows them.
fn placement(bytes: u64, flags: MapFlags) -> u64 {
    if flags.contains(MapFlags::LARGE) && bytes >= BLOCK { BLOCK } else { PAGE }
}

fn round(bytes: u64) -> Result<u64, Error> {
    round_to_pages(bytes).ok_or(Error::Memory(m1_memory::Error::BadRange { vaddr: 0, bytes }))
}

/// Init's own address space above [`OWN_VADDR`]'s start.
pub struct OwnVSpace {
    ranges: AddressRanges,
}

impl OwnVSpace {
    pub const fn new() -> Self {
        OwnVSpace { ranges: AddressRanges::new() }
    }

    /// Makes all of [`OWN_VADDR`] free.
    pub fn init(&mut self, mem: &mut Memory) -> Result<(), Error> {
        self.grow(mem)?;
        self.ranges.add(OWN_VADDR.start, OWN_VADDR.end - OWN_VADDR.start)?;
        Ok(())
    }

    /// Tops the tree's nodes up from frames the memory system maps for
    /// good (like its own slabs).
    fn grow(&mut self, mem: &mut Memory) -> Result<(), Error> {
        while self.ranges.nodes_free() < NODES_LOW {
            if !self.ranges.node_slab_has_room() {
                return Err(Error::Internal("address-range slab holds its most chunks"));
            }
            let chunk = mem.slab_chunk(NODE_CHUNK)?;
            self.ranges.grow_nodes(slab::carve::<Node>(chunk)).map_err(|_| Error::Internal("node chunk refused"))?;
        }
        Ok(())
    }

    pub fn contains(&self, vaddr: u64, bytes: u64) -> bool {
        vaddr >= OWN_VADDR.start && vaddr.checked_add(bytes).is_some_and(|e| e <= OWN_VADDR.end)
    }

    pub fn alloc(&mut self, mem: &mut Memory, bytes: u64, align: u64) -> Result<u64, Error> {
        self.grow(mem)?;
        Ok(self.ranges.alloc(round(bytes)?, align)?)
    }

    /// Maps `bytes` of `frame` at a free address and returns it.
    pub fn map_frame(&mut self, mem: &mut Memory, frame: CapRef, bytes: u64, flags: MapFlags) -> Result<u64, Error> {
        let bytes = round(bytes)?;
        let va = self.alloc(mem, bytes, placement(bytes, flags))?;
        if let Err(e) = mem.map_fixed_attr(va, frame, bytes, flags) {
            self.ranges.free(va, bytes).map_err(|_| Error::Internal("freeing a range just allocated"))?;
            return Err(e.into());
        }
        Ok(va)
    }

    /// Maps at `vaddr`, which must lie in [`OWN_VADDR`] and be free.
    pub fn map_fixed(
        &mut self,
        mem: &mut Memory,
        vaddr: u64,
        frame: CapRef,
        bytes: u64,
        flags: MapFlags,
    ) -> Result<(), Error> {
        let bytes = round(bytes)?;
        self.grow(mem)?;
        self.ranges.take(vaddr, bytes).map_err(|_| Error::Memory(m1_memory::Error::AlreadyMapped { vaddr }))?;
        if let Err(e) = mem.map_fixed_attr(vaddr, frame, bytes, flags) {
            self.ranges.free(vaddr, bytes).map_err(|_| Error::Internal("freeing a range just taken"))?;
            return Err(e.into());
        }
        Ok(())
    }

    /// Unmaps a range a map call returned and frees its addresses.
    pub fn unmap(&mut self, mem: &mut Memory, vaddr: u64, bytes: u64) -> Result<(), Error> {
        let bytes = round(bytes)?;
        // Outside it, freeing would add addresses the tree never held
        // (init's program, M1's refills) to those it hands out.
        if !self.contains(vaddr, bytes) {
            return Err(Error::Memory(m1_memory::Error::BadRange { vaddr, bytes }));
        }
        self.grow(mem)?;
        self.ranges.free(vaddr, bytes)?;
        mem.unmap(vaddr, bytes)?;
        Ok(())
    }
}

impl Default for OwnVSpace {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes of the shadow memory a child's state lives in: its shadow page
/// tables, then its address-range nodes.
pub const SHADOW_BYTES: u64 = 64 << 10;
const SHADOW_TABLE_BYTES: usize = 48 << 10;
/// Page tables below the L0 table a child's RAM holds room for.
pub const CHILD_TABLES: u64 = 32;

/// A child's address space, as its parent builds it: the shadow tables,
/// the free ranges, the shared paging-state page, and where the child's
/// page tables and mapping capabilities come from. It lives in the
/// process table and is started in place ([`ChildVSpace::start`]): it is
/// too large to build on init's stack and move.
pub struct ChildVSpace {
    paging: PagingState,
    ranges: AddressRanges,
    /// The parent's mapping of the child's paging-state page; `None` while
    /// not started.
    layout: Option<&'static mut Layout>,
    res: ChildResources,
}

/// Page tables from the child's RAM, slots from its PAGECN.
struct ChildResources {
    ram: CapRef,
    /// Offset in `ram` of the next page-table page, and where they end.
    next_table: u64,
    tables_end: u64,
    /// The parent's root slot where the child's PAGECN is visible.
    pagecn: u32,
    /// PAGECN slots in use (slot 0 is the L0 table).
    used: [u64; 4],
}

impl ChildVSpace {
    pub const fn new() -> Self {
        ChildVSpace {
            paging: PagingState::unstarted(),
            ranges: AddressRanges::new(),
            layout: None,
            res: ChildResources { ram: CapRef::slot(0, 0), next_table: 0, tables_end: 0, pagecn: 0, used: [0; 4] },
        }
    }

    pub fn is_started(&self) -> bool {
        self.layout.is_some()
    }

    /// Forgets the child (before init unmaps the memory the state used).
    pub fn stop(&mut self) {
        self.layout = None;
        self.paging.forget();
        self.ranges.clear();
    }

    /// Starts the state for the empty L0 table in slot 0 of the PAGECN the
    /// parent sees at root slot `pagecn`. Tables are retyped from `ram` at
    /// `[tables, tables + CHILD_TABLES pages)`; the shadow lives in
    /// `shadow` ([`SHADOW_BYTES`]); `layout` is the parent's mapping of the
    /// child's paging-state page.
    pub fn start(
        &mut self,
        pagecn: u32,
        ram: CapRef,
        tables: u64,
        shadow: &'static mut [MaybeUninit<u8>],
        layout: &'static mut Layout,
    ) -> Result<(), Error> {
        if shadow.len() as u64 != SHADOW_BYTES {
            return Err(Error::Internal("shadow memory of the wrong size"));
        }
        let (t, n) = shadow.split_at_mut(SHADOW_TABLE_BYTES);
        self.paging
            .start_empty(CapRef::slot(pagecn, 0), slab::carve::<Table>(t))
            .map_err(|_| Error::Internal("shadow table chunk refused"))?;
        self.ranges.clear();
        self.ranges.grow_nodes(slab::carve::<Node>(n)).map_err(|_| Error::Internal("range chunk refused"))?;
        self.ranges.add(CHILD_VADDR.start, CHILD_VADDR.end - CHILD_VADDR.start)?;
        layout.init();
        self.layout = Some(layout);
        self.res = ChildResources {
            ram,
            next_table: tables,
            tables_end: tables + CHILD_TABLES * PAGE,
            pagecn,
            used: [1, 0, 0, 0],
        };
        Ok(())
    }

    /// Maps `bytes` of `frame` at `vaddr` in the child; entry 0 addresses
    /// (below [`CHILD_VADDR`]) are spawn's fixed layout, the rest must be
    /// free in the tree.
    pub fn map_fixed(&mut self, vaddr: u64, frame: CapRef, bytes: u64, flags: MapFlags) -> Result<(), Error> {
        crate::spawn::failpoint()?;
        let bytes = round(bytes)?;
        check_range(vaddr, bytes)?;
        let tracked = vaddr >= CHILD_VADDR.start;
        if tracked {
            self.ranges.take(vaddr, bytes).map_err(|_| Error::Memory(m1_memory::Error::AlreadyMapped { vaddr }))?;
        }
        let r = self.map_at(vaddr, frame, bytes, flags);
        if r.is_err() && tracked {
            let _ = self.ranges.free(vaddr, bytes);
        }
        r
    }

    /// Maps `bytes` of `frame` at a free address of the child's and
    /// returns it.
    pub fn map_frame(&mut self, frame: CapRef, bytes: u64, flags: MapFlags) -> Result<u64, Error> {
        let bytes = round(bytes)?;
        let va = self.ranges.alloc(bytes, placement(bytes, flags))?;
        match self.map_at(va, frame, bytes, flags) {
            Ok(()) => Ok(va),
            Err(e) => {
                let _ = self.ranges.free(va, bytes);
                Err(e)
            }
        }
    }

    fn map_at(&mut self, va: u64, frame: CapRef, bytes: u64, flags: MapFlags) -> Result<(), Error> {
        let base = frame_base(frame, bytes)?;
        let needed = self.paging.tables_needed(va, base, bytes, flags)? as u64;
        let left = (self.res.tables_end - self.res.next_table) / PAGE;
        if needed > left || needed as usize > self.paging.tables_free() {
            return Err(Error::ChildFull("page tables"));
        }
        let layout = self.layout.as_deref_mut().ok_or(Error::Internal("mapping into a child not started"))?;
        if !layout.push(Region { vaddr: va, bytes, flags: flags.bits(), _reserved: 0 }) {
            return Err(Error::ChildFull("paging-state page"));
        }
        let r = self.paging.map(&mut self.res, va, frame, base, bytes, flags);
        if r.is_err() {
            layout.pop();
        }
        Ok(r?)
    }
}

impl Default for ChildVSpace {
    fn default() -> Self {
        Self::new()
    }
}

impl Resources for ChildResources {
    fn slot(&mut self) -> Result<CapRef, m1_memory::Error> {
        let w = self
            .used
            .iter()
            .position(|w| *w != u64::MAX)
            .ok_or(m1_memory::Error::Slot(aos::slot::SlotError::Exhausted))?;
        let bit = (!self.used[w]).trailing_zeros();
        self.used[w] |= 1 << bit;
        Ok(CapRef::slot(self.pagecn, (w * 64) as u8 + bit as u8))
    }

    fn refill_slots(&mut self) -> Result<(), m1_memory::Error> {
        // A child's PAGECN is one CNode; when it is full, mapping fails.
        Err(m1_memory::Error::Slot(aos::slot::SlotError::Exhausted))
    }

    fn free_slot(&mut self, slot: CapRef) {
        let i = slot.l2_index() as usize;
        self.used[i / 64] &= !(1 << (i % 64));
    }

    fn vnode(&mut self, ty: ObjType) -> Result<(CapRef, CapRef), m1_memory::Error> {
        if self.next_table >= self.tables_end {
            return Err(m1_memory::Error::Mm(m1_memory::mm::MmError::OutOfMemory));
        }
        let slot = self.slot()?;
        let dest = Dest::l2(self.pagecn, slot.l2_index());
        if let Err(code) = cap::retype(self.ram, dest, ty, self.next_table, 0, 1) {
            self.free_slot(slot);
            return Err(m1_memory::Error::Kernel { code, doing: "retyping a child's page table" });
        }
        self.next_table += PAGE;
        Ok((slot, self.ram))
    }

    fn drop_vnode(&mut self, vnode: CapRef, _ram: CapRef) {
        // Its page of the child's RAM stays used until the child goes.
        if cap::delete(vnode).is_ok() {
            self.free_slot(vnode);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spawn::FIXED_VADDR;
    use aos::kpi::vspace::{ARGS_VADDR, DISPFRAME_VADDR, PAGING_STATE_VADDR, STACK_SIZE, STACK_TOP};

    #[test]
    fn blocks_are_placed_on_block_boundaries_only_when_asked_and_large_enough() {
        let rw = MapFlags::READ_WRITE;
        assert_eq!(placement(BLOCK, rw | MapFlags::LARGE), BLOCK);
        assert_eq!(placement(64 << 20, rw | MapFlags::LARGE), BLOCK);
        assert_eq!(placement(BLOCK - PAGE, rw | MapFlags::LARGE), PAGE, "smaller than a block");
        assert_eq!(placement(64 << 20, rw), PAGE, "not asked");
    }

    #[test]
    fn sizes_round_up_to_pages_and_zero_is_refused() {
        assert_eq!(round(1).unwrap(), PAGE);
        assert_eq!(round(PAGE).unwrap(), PAGE);
        assert_eq!(round(PAGE + 1).unwrap(), 2 * PAGE);
        assert!(round(0).is_err());
        assert!(round(u64::MAX).is_err(), "rounding would wrap");
    }

    #[test]
    fn the_fixed_layout_is_disjoint_from_what_allocators_hand_out() {
        let fixed = [
            (STACK_TOP - STACK_SIZE, STACK_SIZE),
            (DISPFRAME_VADDR, aos::kpi::vspace::INIT_DISPFRAME_SIZE),
            (PAGING_STATE_VADDR, PAGE),
            (ARGS_VADDR, PAGE),
        ];
        for (i, &(va, bytes)) in fixed.iter().enumerate() {
            assert!(check_range(va, bytes).is_ok(), "{va:#x} is a user range");
            assert!(FIXED_VADDR.start <= va && va + bytes <= FIXED_VADDR.end, "{va:#x} is kept from segments");
            assert!(va + bytes <= CHILD_VADDR.start, "{va:#x} lies below the child's allocations");
            for &(other, obytes) in &fixed[i + 1..] {
                assert!(va + bytes <= other || other + obytes <= va, "{va:#x} and {other:#x} overlap");
            }
        }
    }
}
