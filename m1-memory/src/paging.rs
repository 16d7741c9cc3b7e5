//! Page-table mapping (book ch. 3.13-3.15): `map_fixed_attr` builds this
//! domain's tables from VNode capabilities and remembers them in a shadow
//! tree, one [`Table`] per VNode, so later mappings reuse them.
//!
//! It owns the shadow tree and the VNode capabilities it made. It gets RAM
//! and slots from [`Resources`] and never refills its own slab: the caller
//! asks [`PagingState::tables_needed`] first and grows the slab until it
//! holds that many plus [`REFILL_TABLES`] (what mapping the refill's own
//! frame can take), so no map runs out of shadow tables half-way.

use aos::cap::{self, CapRef, ObjType};
use aos::kpi::vspace::{USER_END, USER_MIN};
use aos::slab::{Entry, GrowError, Idx, Slab};
use api::MapFlags;

use crate::Error;

pub const PAGE: u64 = 4096;
pub const BLOCK: u64 = 2 << 20;
const ENTRIES: usize = 512;
/// Shadow tables mapping one refill chunk can need: an L1, an L2 and an
/// L3 table (a chunk never crosses a 2 MiB boundary).
pub const REFILL_TABLES: usize = 3;

/// A shadow entry: empty, covered by a mapping, in use by mappings the
/// kernel made before us, or a table (slab index + `TABLE`).
const EMPTY: u32 = 0;
const MAPPED: u32 = 1;
const FOREIGN: u32 = 2;
const TABLE: u32 = 3;
/// The first entry of a mapping: this bit plus the address of its mapping
/// capability (level 2), so unmapping can find it.
const MAPPING: u32 = 1 << 31;

/// One page table: its capability and what each of its entries holds.
pub struct Table {
    cap: CapRef,
    entries: [u32; ENTRIES],
}

/// What a mapping needs besides the shadow tree.
pub trait Resources {
    /// An empty capability slot.
    fn slot(&mut self) -> Result<CapRef, Error>;
    /// Adds a CNode's worth of slots.
    fn refill_slots(&mut self) -> Result<(), Error>;
    /// A slot back, after its capability was deleted.
    fn free_slot(&mut self, slot: CapRef);
    /// A new page table of `ty`, and the RAM capability it was retyped from.
    fn vnode(&mut self, ty: ObjType) -> Result<(CapRef, CapRef), Error>;
    /// Deletes a page table made by [`Resources::vnode`] that was never
    /// used, and returns its RAM.
    fn drop_vnode(&mut self, vnode: CapRef, ram: CapRef);
}

pub struct PagingState {
    tables: Slab<Table>,
    /// The shadow of the L0 table.
    root: Idx,
}

/// The table index of `va` at `level` (0..=3).
fn index(va: u64, level: u32) -> usize {
    ((va >> (39 - 9 * level)) & 0x1ff) as usize
}

/// One step of a mapping: `count` entries of the table at `level`
/// (2: 2 MiB blocks, 3: pages) from `va`, `offset` bytes into the frame.
#[derive(Clone, Copy, Debug)]
struct Run {
    va: u64,
    offset: u64,
    count: u64,
    level: u32,
}

impl Run {
    fn bytes(&self) -> u64 {
        self.count * if self.level == 2 { BLOCK } else { PAGE }
    }
}

impl PagingState {
    /// Shadows the L0 table `vroot`, whose entry 0 holds the kernel-made
    /// mappings of the program image, stack, arguments and bootinfo.
    pub fn new(vroot: CapRef, first: &'static mut [core::mem::MaybeUninit<Entry<Table>>]) -> Result<Self, GrowError> {
        let mut tables = Slab::new();
        tables.grow(first)?;
        let mut root_table = Table { cap: vroot, entries: [EMPTY; ENTRIES] };
        root_table.entries[0] = FOREIGN;
        let root = tables.alloc(root_table).map_err(|_| GrowError::BadChunk)?;
        Ok(PagingState { tables, root })
    }

    /// A state that shadows nothing yet, to be placed where it will live
    /// and started there with [`PagingState::start_empty`] (a state is
    /// too large to build on a small stack and move).
    pub const fn unstarted() -> Self {
        PagingState { tables: Slab::new(), root: Idx::from_raw(0) }
    }

    /// Starts an [`PagingState::unstarted`] state in place as the shadow of
    /// the empty L0 table `vroot`: another domain's, being built (M2's
    /// spawn), where nothing is mapped yet.
    pub fn start_empty(
        &mut self,
        vroot: CapRef,
        first: &'static mut [core::mem::MaybeUninit<Entry<Table>>],
    ) -> Result<(), GrowError> {
        self.tables.clear();
        self.tables.grow(first)?;
        let root = Table { cap: vroot, entries: [EMPTY; ENTRIES] };
        self.root = self.tables.alloc(root).map_err(|_| GrowError::BadChunk)?;
        Ok(())
    }

    /// Forgets everything, in place: the state is unstarted again, and
    /// the memory its shadow tables were in is the caller's.
    pub fn forget(&mut self) {
        self.tables.clear();
        self.root = Idx::from_raw(0);
    }

    pub fn tables_free(&self) -> usize {
        self.tables.free_count()
    }

    pub fn tables_used(&self) -> usize {
        self.tables.used()
    }

    /// Whether the shadow slab can take another chunk.
    pub fn slab_has_room(&self) -> bool {
        self.tables.has_room()
    }

    pub fn grow(&mut self, mem: &'static mut [core::mem::MaybeUninit<Entry<Table>>]) -> Result<(), GrowError> {
        self.tables.grow(mem)
    }

    /// The child table in `entry` of `t`, if there is one.
    fn child(&self, t: Idx, entry: usize) -> Result<Option<Idx>, u32> {
        match self.tables.get(t).entries[entry] {
            EMPTY => Ok(None),
            e if (TABLE..MAPPING).contains(&e) => Ok(Some(Idx::from_raw(e - TABLE))),
            e => Err(e),
        }
    }

    /// The run that maps `[va + off, va + bytes)` next: inside one table,
    /// blocks where `large`, the alignment and the length allow and no L3
    /// table is in the way, pages otherwise.
    fn next_run(&self, va: u64, pa: u64, off: u64, bytes: u64, large: bool) -> Run {
        let v = va + off;
        let left = bytes - off;
        if large && v.is_multiple_of(BLOCK) && (pa + off).is_multiple_of(BLOCK) && left >= BLOCK && !self.has_l3(v) {
            let room = (ENTRIES - index(v, 2)) as u64;
            let fit = (left / BLOCK).min(room);
            // A run of blocks stops before an L2 entry that has an L3 table.
            let count = (1..fit).take_while(|k| !self.has_l3(v + k * BLOCK)).count() as u64 + 1;
            Run { va: v, offset: off, count, level: 2 }
        } else {
            let room = (ENTRIES - index(v, 3)) as u64;
            Run { va: v, offset: off, count: (left / PAGE).min(room), level: 3 }
        }
    }

    /// Calls `f` with each run of a mapping, in order.
    fn runs(
        &self,
        va: u64,
        pa: u64,
        bytes: u64,
        large: bool,
        mut f: impl FnMut(Run) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut off = 0;
        while off < bytes {
            let run = self.next_run(va, pa, off, bytes, large);
            f(run)?;
            off += run.bytes();
        }
        Ok(())
    }

    /// Whether the L2 entry covering `va` holds an L3 table.
    fn has_l3(&self, va: u64) -> bool {
        let mut t = self.root;
        for level in 0..3 {
            match self.child(t, index(va, level)) {
                Ok(Some(c)) => t = c,
                _ => return false,
            }
        }
        true
    }

    /// Page tables a mapping of `bytes` at `va` would create; an error if
    /// any page of it is taken.
    pub fn tables_needed(&self, va: u64, pa: u64, bytes: u64, flags: MapFlags) -> Result<usize, Error> {
        let mut needed = 0;
        // The last missing table counted at each level, by the address bits
        // above it: consecutive runs share their missing parents.
        let mut counted: [Option<u64>; 4] = [None; 4];
        self.runs(va, pa, bytes, flags.contains(MapFlags::LARGE), |run| {
            // Walk down to the run's table; missing tables will be made.
            let mut t = Some(self.root);
            for level in 0..run.level {
                let missing = match t {
                    None => true,
                    Some(cur) => match self.child(cur, index(run.va, level)) {
                        Ok(c) => {
                            t = c;
                            c.is_none()
                        }
                        Err(_) => return Err(Error::AlreadyMapped { vaddr: run.va }),
                    },
                };
                if missing {
                    let key = run.va >> (39 - 9 * level);
                    let depth = level as usize + 1;
                    if counted[depth] != Some(key) {
                        counted[depth] = Some(key);
                        needed += 1;
                    }
                }
            }
            if let Some(t) = t {
                let first = index(run.va, run.level);
                let table = &self.tables.get(t).entries[first..first + run.count as usize];
                if let Some(k) = table.iter().position(|&e| e != EMPTY) {
                    let size = if run.level == 2 { BLOCK } else { PAGE };
                    return Err(Error::AlreadyMapped { vaddr: run.va + k as u64 * size });
                }
            }
            Ok(())
        })?;
        Ok(needed)
    }

    /// Maps `bytes` of `frame` (physical base `pa`) at `va`. The caller has
    /// checked the range with [`PagingState::tables_needed`] and grown the
    /// slab to hold that many tables. On failure every mapping this call
    /// made is removed again; tables it made stay for later use.
    pub fn map(
        &mut self,
        res: &mut impl Resources,
        va: u64,
        frame: CapRef,
        pa: u64,
        bytes: u64,
        flags: MapFlags,
    ) -> Result<(), Error> {
        check_range(va, bytes)?;
        let rights = (flags & MapFlags::READ_WRITE.union(MapFlags::EXECUTE)).bits() as u8;
        let large = flags.contains(MapFlags::LARGE);
        let mut off = 0;
        while off < bytes {
            let run = self.next_run(va, pa, off, bytes, large);
            if let Err(e) = self.map_run(res, frame, run, rights) {
                self.unmap(res, va, off);
                return Err(e);
            }
            off += run.bytes();
        }
        Ok(())
    }

    fn map_run(&mut self, res: &mut impl Resources, frame: CapRef, run: Run, rights: u8) -> Result<(), Error> {
        let table = self.walk_or_make(res, run.va, run.level)?;
        let first = index(run.va, run.level);
        let slot = res.slot()?;
        let vnode = self.tables.get(table).cap;
        if let Err(code) =
            cap::map(vnode, frame, first as u16, run.count as u16, rights, run.offset, cap::Dest::at(slot))
        {
            res.free_slot(slot);
            return Err(Error::Kernel { code, doing: "mapping a frame" });
        }
        let entries = &mut self.tables.get_mut(table).entries[first..first + run.count as usize];
        entries.fill(MAPPED);
        entries[0] = MAPPING | slot.addr;
        Ok(())
    }

    /// Removes every mapping that starts in `[va, va + bytes)`, deleting
    /// its mapping capability. Tables stay.
    pub fn unmap(&mut self, res: &mut impl Resources, va: u64, bytes: u64) {
        let mut v = va;
        while v < va + bytes {
            let Some((table, level)) = self.leaf(v) else {
                v = (v + PAGE).next_multiple_of(PAGE);
                continue;
            };
            let size = if level == 2 { BLOCK } else { PAGE };
            let first = index(v, level);
            let e = self.tables.get(table).entries[first];
            if e & MAPPING != 0 {
                let slot = CapRef { addr: e & !MAPPING, level: 2 };
                if cap::unmap(slot).is_ok() {
                    res.free_slot(slot);
                }
                let entries = &mut self.tables.get_mut(table).entries;
                entries[first] = EMPTY;
                for entry in &mut entries[first + 1..] {
                    if *entry != MAPPED {
                        break;
                    }
                    *entry = EMPTY;
                }
            }
            v += size;
        }
    }

    /// The table whose entry maps `va` (an L2 holding a block, or an L3),
    /// and its level.
    fn leaf(&self, va: u64) -> Option<(Idx, u32)> {
        let mut t = self.root;
        for level in 0..3 {
            match self.child(t, index(va, level)) {
                Ok(Some(c)) => t = c,
                Ok(None) => return None,
                Err(_) => return (level == 2).then_some((t, 2)),
            }
        }
        Some((t, 3))
    }

    /// The table at `level` covering `va`, making missing tables on the way.
    fn walk_or_make(&mut self, res: &mut impl Resources, va: u64, level: u32) -> Result<Idx, Error> {
        let mut t = self.root;
        for l in 0..level {
            let e = index(va, l);
            t = match self.child(t, e) {
                Ok(Some(c)) => c,
                Ok(None) => self.make_table(res, t, e, l + 1)?,
                Err(_) => return Err(Error::AlreadyMapped { vaddr: va }),
            };
        }
        Ok(t)
    }

    fn make_table(&mut self, res: &mut impl Resources, parent: Idx, entry: usize, level: u32) -> Result<Idx, Error> {
        let ty = [ObjType::VNodeL0, ObjType::VNodeL1, ObjType::VNodeL2, ObjType::VNodeL3][level as usize];
        if self.tables.free_count() == 0 {
            return Err(Error::Internal("paging: shadow slab empty despite the reserve"));
        }
        let (vnode, ram) = res.vnode(ty)?;
        let slot = match res.slot() {
            Ok(s) => s,
            Err(e) => {
                res.drop_vnode(vnode, ram);
                return Err(e);
            }
        };
        let parent_cap = self.tables.get(parent).cap;
        if let Err(code) =
            cap::map(parent_cap, vnode, entry as u16, 1, MapFlags::READ_WRITE.bits() as u8, 0, cap::Dest::at(slot))
        {
            res.free_slot(slot);
            res.drop_vnode(vnode, ram);
            return Err(Error::Kernel { code, doing: "mapping a page table" });
        }
        let Ok(idx) = self.tables.alloc(Table { cap: vnode, entries: [EMPTY; ENTRIES] }) else {
            unreachable!("a free shadow table was checked above")
        };
        self.tables.get_mut(parent).entries[entry] = TABLE + idx.to_raw();
        Ok(idx)
    }
}

/// `bytes` rounded up to whole pages; `None` if that is zero or wraps.
pub fn round_to_pages(bytes: u64) -> Option<u64> {
    bytes.checked_next_multiple_of(PAGE).filter(|&b| b > 0)
}

/// The physical base of `frame`, checked to be a Frame or DevFrame of at
/// least `bytes`: what every mapping of it needs first.
pub fn frame_base(frame: CapRef, bytes: u64) -> Result<u64, Error> {
    let id = cap::identify(frame).map_err(|code| Error::Kernel { code, doing: "identifying the frame" })?;
    if !matches!(id.objtype, Some(ObjType::Frame | ObjType::DevFrame)) {
        return Err(Error::NotAFrame);
    }
    if bytes > id.size {
        return Err(Error::FrameTooSmall { bytes, frame: id.size });
    }
    Ok(id.base)
}

/// Checks a user range: page-aligned, non-empty, inside user space.
pub fn check_range(va: u64, bytes: u64) -> Result<(), Error> {
    let end = va.checked_add(bytes);
    if !va.is_multiple_of(PAGE)
        || bytes == 0
        || !bytes.is_multiple_of(PAGE)
        || va < USER_MIN
        || end.is_none_or(|e| e > USER_END)
    {
        return Err(Error::BadRange { vaddr: va, bytes });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::MaybeUninit;
    use std::boxed::Box;
    use std::vec::Vec;

    fn chunk(n: usize) -> &'static mut [MaybeUninit<Entry<Table>>] {
        Box::leak((0..n).map(|_| MaybeUninit::uninit()).collect::<Vec<_>>().into_boxed_slice())
    }

    fn state() -> PagingState {
        PagingState::new(CapRef::slot(1, 0), chunk(8)).unwrap()
    }

    const VA: u64 = 1 << 39;

    #[test]
    fn counts_the_tables_a_mapping_needs() {
        let p = state();
        let rw = MapFlags::READ_WRITE;
        assert_eq!(p.tables_needed(VA, 0, PAGE, rw).unwrap(), 3, "L1, L2, L3");
        // 4 MiB of pages from 2 MiB below a 1 GiB boundary: two L3 tables
        // under two L2 tables.
        let va = VA + (1 << 30) - BLOCK;
        assert_eq!(p.tables_needed(va, 0, 2 * BLOCK, rw).unwrap(), 3 + 1 + 1);
        // The same as blocks: no L3 tables.
        assert_eq!(p.tables_needed(va, 0, 2 * BLOCK, rw | MapFlags::LARGE).unwrap(), 2 + 1);
        // Misaligned physical memory forbids blocks.
        assert_eq!(p.tables_needed(VA, PAGE, BLOCK, rw | MapFlags::LARGE).unwrap(), 3);
    }

    #[test]
    fn the_kernels_own_mappings_are_off_limits() {
        let p = state();
        assert!(matches!(
            p.tables_needed(0x40_0000, 0, PAGE, MapFlags::READ),
            Err(Error::AlreadyMapped { vaddr: 0x40_0000 })
        ));
    }

    #[test]
    fn runs_never_cross_a_table() {
        let p = state();
        let va = VA + BLOCK - 3 * PAGE;
        let mut runs = Vec::new();
        p.runs(va, 0, 3 * PAGE + BLOCK + 2 * PAGE, false, |r| {
            runs.push((r.va, r.count, r.level));
            Ok(())
        })
        .unwrap();
        assert_eq!(runs, [(va, 3, 3), (VA + BLOCK, 512, 3), (VA + 2 * BLOCK, 2, 3)]);
        let mut runs = Vec::new();
        p.runs(va, BLOCK - 3 * PAGE, 3 * PAGE + 2 * BLOCK, true, |r| {
            runs.push((r.va, r.count, r.level));
            Ok(())
        })
        .unwrap();
        assert_eq!(runs, [(va, 3, 3), (VA + BLOCK, 2, 2)], "pages up to the boundary, then blocks");
    }

    #[test]
    fn ranges_are_checked() {
        assert!(check_range(VA, PAGE).is_ok());
        for (va, bytes) in [(VA + 1, PAGE), (VA, 0), (VA, 100), (0, PAGE), (USER_END - PAGE, 2 * PAGE), (!0xfff, PAGE)]
        {
            assert!(matches!(check_range(va, bytes), Err(Error::BadRange { .. })), "{va:#x} + {bytes:#x}");
        }
    }
}
