//! The M1 suite (book ch. 3.16-3.18): every "How to do well" point of
//! ch. 3.17 as checks against `api::MemoryManager`, `api::Paging` and
//! `api::SlotAllocator`, plus the capability system's own view of the
//! results (`identify`) and the kernel's invariant check.
//!
//! Expected values come from the requests and from bootinfo, never from
//! the implementation's answers.

use aos::cap::{self, CapRef, Dest, ObjType};
use aos::kpi::bootinfo::RegionKind;
use aos::kpi::cspace::{CTE_SIZE, L1_CNODE_MIN_SLOTS, L2_CNODE_BYTES, ROOTCN_SLOT_TASKCN, TASKCN_SLOT_KERNELCAP};
use api::{GRADING_VADDR, M1, MapFlags, MemoryManager};

use crate::{Checks, Rng};

/// Init's demonstration frame holds, in each 64-bit word, the word's
/// physical address XOR this; the runner reads it back over QMP.
pub const DEMO_SEED: u64 = 0x5eed_0000_a0a0_0001;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const PAGE: u64 = 4 * KIB;

/// Physical ranges of the free RAM bootinfo reported, for feasibility.
fn free_regions() -> impl Iterator<Item = (u64, u64)> {
    crate::BOOTINFO
        .get()
        .into_iter()
        .flat_map(|bi| bi.regions().iter())
        .filter(|r| r.kind == RegionKind::Free)
        .map(|r| (r.base, r.base + r.size))
}

/// Whether any free RAM region could hold `size` bytes at `align`.
fn feasible(size: u64, align: u64) -> bool {
    free_regions().any(|(b, e)| b.next_multiple_of(align) + size <= e)
}

/// Bytes free plus bytes the implementation keeps for itself: what every
/// client free must restore.
pub(crate) fn avail<M: MemoryManager>(m: &M) -> u64 {
    m.free_bytes() + m.overhead_bytes()
}

fn ident(c: CapRef) -> Option<cap::Identity> {
    cap::identify(c).ok()
}

pub fn test_mm<M: MemoryManager>(c: &mut Checks, mm: &mut M) {
    let start = avail(mm);
    c.ok("the manager holds the free RAM bootinfo reports", mm.total_bytes() > 0, format_args!("total 0"));

    // Sizes from 4 KiB to 64 MiB, including ones that are not powers of two.
    let sizes = [4 * KIB, 8 * KIB, 12 * KIB, 20 * KIB, 64 * KIB, MIB + 4 * KIB, 2 * MIB, 16 * MIB, 64 * MIB];
    let mut got = [None; 9];
    for (i, &size) in sizes.iter().enumerate() {
        let r = mm.alloc(size);
        let id = r.as_ref().ok().and_then(|&c| ident(c));
        let ok = id.is_some_and(|id| id.objtype == Some(ObjType::Ram) && id.size == size && id.base % PAGE == 0);
        let name = check_name(format_args!("alloc of {} gives RAM of exactly that size", Human(size)));
        c.ok(&name, ok, format_args!("{r:?} {id:?}"));
        got[i] = id.map(|id| (id.base, id.size));
    }
    let disjoint = got
        .iter()
        .flatten()
        .enumerate()
        .all(|(i, a)| got.iter().flatten().skip(i + 1).all(|b| a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0));
    c.ok("allocations never overlap", disjoint, format_args!("{got:?}"));
    let sum: u64 = sizes.iter().sum();
    c.is("free bytes drop by what was allocated", start - avail(mm), sum);
    c.is("rounding: 1 byte takes a page", mm.alloc(1).ok().and_then(ident).map(|i| i.size), Some(PAGE));
    c.is(
        "rounding: a page and a byte take two",
        mm.alloc(PAGE + 1).ok().and_then(ident).map(|i| i.size),
        Some(2 * PAGE),
    );

    // Alignments from 4 KiB to 1 GiB, where some free region allows.
    let mut align = PAGE;
    while align <= GIB {
        for size in [PAGE, 3 * PAGE] {
            let r = mm.alloc_aligned(size, align);
            let name = check_name(format_args!("alloc of {} at {} alignment", Human(size), Human(align)));
            match r {
                Ok(cap) => {
                    let id = ident(cap);
                    let ok = id.is_some_and(|id| id.base % align == 0 && id.size == size);
                    c.ok(&name, ok, format_args!("{id:?}"));
                    let _ = mm.free(cap);
                }
                Err(e) => {
                    c.ok(&name, !feasible(size, align), format_args!("refused ({e}) though bootinfo has room"));
                }
            }
        }
        align <<= 1;
    }

    // Invalid requests: clear errors, nothing allocated.
    let before = avail(mm);
    c.ok("size 0 is refused", mm.alloc(0).is_err(), format_args!("accepted"));
    c.ok("alignment 3 is refused", mm.alloc_aligned(PAGE, 3).is_err(), format_args!("accepted"));
    c.ok("alignment 0 is refused", mm.alloc_aligned(PAGE, 0).is_err(), format_args!("accepted"));
    c.ok("more than all memory is refused", mm.alloc(mm.total_bytes() + PAGE).is_err(), format_args!("accepted"));
    c.ok("2^63 bytes is refused", mm.alloc(1 << 63).is_err(), format_args!("accepted"));
    c.ok("u64::MAX bytes is refused", mm.alloc(u64::MAX).is_err(), format_args!("accepted"));
    c.is("refusals allocate nothing", avail(mm), before);

    // Free and reuse.
    let a = mm.alloc(64 * KIB);
    let freed = a.as_ref().ok().map(|&cap| mm.free(cap).is_ok());
    c.is("free", freed, Some(true));
    c.is("free gives the bytes back", avail(mm), before);
    let again = a.as_ref().ok().map(|&cap| mm.free(cap).is_err());
    c.is("double free is refused", again, Some(true));
    c.is("double free changes nothing", avail(mm), before);

    // Freeing what is not RAM from the manager is refused and loses nothing.
    let l0 = CapRef::slot(aos::kpi::cspace::ROOTCN_SLOT_PAGECN as u32, 0);
    c.ok("freeing a page table is refused", mm.free(l0).is_err(), format_args!("accepted"));
    c.ok(
        "and the page table is still there",
        ident(l0).is_some_and(|i| i.objtype == Some(ObjType::VNodeL0)),
        format_args!("gone"),
    );
    let boot_page = CapRef::slot(aos::kpi::cspace::ROOTCN_SLOT_BASE_PAGE_CN as u32, 0);
    c.ok("freeing RAM the manager never had is refused", mm.free(boot_page).is_err(), format_args!("accepted"));
    c.ok("and that RAM capability is still there", ident(boot_page).is_some(), format_args!("gone"));
    c.ok("freeing an empty slot is refused", mm.free(CapRef::slot(200, 7)).is_err(), format_args!("accepted"));

    // Interleaved frees, then everything back.
    let mut rng = Rng(0x1234_5678);
    let mut caps = [None; 128];
    for slot in caps.iter_mut() {
        *slot = mm.alloc((1 + rng.below(16)) * PAGE).ok();
    }
    c.ok("128 allocations of 4-64 KiB", caps.iter().all(Option::is_some), format_args!("some failed"));
    let mut ok = true;
    for i in (0..128).step_by(2) {
        ok &= caps[i].take().is_some_and(|cap| mm.free(cap).is_ok());
    }
    for slot in caps.iter_mut().step_by(2) {
        *slot = mm.alloc((1 + rng.below(32)) * PAGE).ok();
        ok &= slot.is_some();
    }
    c.ok("every other freed and allocated again", ok, format_args!("a free or an alloc failed"));
    let mut order: [usize; 128] = core::array::from_fn(|i| i);
    for i in (1..128).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let all_freed = order.iter().all(|&i| caps[i].take().is_none_or(|cap| mm.free(cap).is_ok()));
    c.ok("freeing all in random order", all_freed, format_args!("a free failed"));
    c.is("every byte is back", avail(mm), before);
}

/// `4 KiB`, `2 MiB`, `1 GiB`, or bytes.
struct Human(u64);
impl core::fmt::Display for Human {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            n if n >= GIB && n % GIB == 0 => write!(f, "{} GiB", n / GIB),
            n if n >= MIB && n % MIB == 0 => write!(f, "{} MiB", n / MIB),
            n if n >= KIB && n % KIB == 0 => write!(f, "{} KiB", n / KIB),
            n => write!(f, "{n} B"),
        }
    }
}

/// A check's name built from `args` (cut if it runs past 96 bytes).
fn check_name(args: core::fmt::Arguments<'_>) -> heapless::String<96> {
    let mut n = heapless::String::new();
    let _ = core::fmt::Write::write_fmt(&mut n, args);
    n
}

/// Most slots the slot check holds at once.
const SLOTS_MAX: usize = 2048;

/// Where the suite maps next: a cursor through [`GRADING_VADDR`].
struct Va(u64);
impl Va {
    fn take(&mut self, bytes: u64, align: u64) -> u64 {
        let va = self.0.next_multiple_of(align);
        self.0 = va + bytes;
        va
    }
}

/// Writes a pattern derived from `seed` and the address to every word of
/// `[va, va + bytes)`.
fn fill(va: u64, bytes: u64, seed: u64) {
    for a in (va..va + bytes).step_by(8) {
        // SAFETY: the caller mapped `[va, va + bytes)` read-write just
        // before; a wrong mapping faults and the suite's runner sees it.
        unsafe { (a as *mut u64).write_volatile(a ^ seed) };
    }
}

/// The first address in `[va, va + bytes)` not holding `fill`'s pattern.
fn first_bad(va: u64, bytes: u64, seed: u64) -> Option<u64> {
    (va..va + bytes).step_by(8).find(|&a| {
        // SAFETY: as in `fill`: mapped by the caller, readable.
        unsafe { (a as *const u64).read_volatile() != a ^ seed }
    })
}

/// A Frame of `bytes` at `align`, retyped from RAM the manager gave.
fn frame<S: M1>(sys: &mut S, bytes: u64, align: u64) -> Option<CapRef> {
    let ram = sys.alloc_aligned(bytes, align).ok()?;
    let slot = sys.slot_alloc().ok()?;
    cap::retype(ram, Dest::l2(slot.l1_index(), slot.l2_index()), ObjType::Frame, 0, bytes, 1).ok()?;
    Some(slot)
}

pub fn test_early<S: M1>(c: &mut Checks, sys: &mut S) {
    // Slots: more than the allocator holds at the start, so it must
    // refill; all distinct, empty, and reusable once freed.
    let stats0 = sys.stats();
    let want = (stats0.slots_free as usize + 300).min(SLOTS_MAX);
    let mut slots = [0u32; SLOTS_MAX];
    let mut n = 0;
    while n < want {
        match sys.slot_alloc() {
            Ok(s) => slots[n] = s.addr,
            Err(_) => break,
        }
        n += 1;
    }
    c.is("more slot allocations than were free at the start", n, want);
    let stats1 = sys.stats();
    c.ok(
        "the slot allocator refilled with new CNodes",
        stats1.slot_refills > stats0.slot_refills && n > 256,
        format_args!("{stats0:?} -> {stats1:?}"),
    );
    let mut sorted = slots;
    sorted[..n].sort_unstable();
    c.ok("no slot handed out twice", sorted[..n].windows(2).all(|w| w[0] != w[1]), format_args!("duplicates"));
    let as_ref = |addr: u32| CapRef { addr, level: 2 };
    let empty = slots[..n].iter().all(|&s| cap::identify(as_ref(s)) == Err(aos::kpi::ErrorCode::SlotEmpty));
    c.ok("every slot handed out is empty", empty, format_args!("an occupied slot"));
    let freed = slots[..n].iter().all(|&s| sys.slot_free(as_ref(s)).is_ok());
    c.ok("all of them freed", freed, format_args!("a free failed"));
    let again = sys.slot_alloc().ok();
    c.ok(
        "a freed slot is handed out again",
        again.is_some_and(|s| sorted[..n].binary_search(&s.addr).is_ok()),
        format_args!("{again:?}"),
    );
    if let Some(s) = again {
        let _ = sys.slot_free(s);
        c.ok("freeing a free slot is refused", sys.slot_free(s).is_err(), format_args!("accepted"));
    }

    // Memory for every kind of object init makes (ch. 3.17's first point):
    // RAM from the manager, retyped, identified, deleted, returned.
    let before = avail(sys);
    let kinds = [
        (ObjType::Frame, 4 * KIB),
        (ObjType::Frame, 2 * MIB),
        (ObjType::L1CNode, L1_CNODE_MIN_SLOTS as u64 * CTE_SIZE),
        (ObjType::L2CNode, L2_CNODE_BYTES),
        (ObjType::VNodeL0, PAGE),
        (ObjType::VNodeL1, PAGE),
        (ObjType::VNodeL2, PAGE),
        (ObjType::VNodeL3, PAGE),
        (ObjType::Dispatcher, PAGE),
    ];
    for (ty, size) in kinds {
        let name = check_name(format_args!("RAM for a {ty:?} of {}", Human(size)));
        let ram = sys.alloc_aligned(size, size.min(2 * MIB)).ok();
        let slot = sys.slot_alloc().ok();
        let made = match (ram, slot) {
            (Some(r), Some(s)) => cap::retype(r, Dest::l2(s.l1_index(), s.l2_index()), ty, 0, size, 1).is_ok(),
            _ => false,
        };
        let id = slot.and_then(ident);
        let right = id.is_some_and(|i| i.objtype == Some(ty) && i.size == size);
        c.ok(&name, made && right, format_args!("{id:?}"));
        if let Some(s) = slot.filter(|_| made) {
            let _ = cap::delete(s);
        }
        if let Some(s) = slot {
            let _ = sys.slot_free(s);
        }
        if let Some(r) = ram {
            let _ = sys.free(r);
        }
    }
    c.is("and all that memory is back", avail(sys), before);

    // Slab refill: many free regions need many manager nodes.
    let before = avail(sys);
    let cap0 = sys.stats().mm_slab_capacity;
    let mut rams = [None; 1200];
    for r in rams.iter_mut() {
        *r = sys.alloc(PAGE).ok();
    }
    c.ok("1200 page allocations", rams.iter().all(Option::is_some), format_args!("some failed"));
    // Free every other page: each leaves a separate free region.
    let ok = rams.iter_mut().step_by(2).all(|r| r.take().is_some_and(|r| sys.free(r).is_ok()));
    c.ok("600 frees leaving holes", ok, format_args!("a free failed"));
    let cap1 = sys.stats().mm_slab_capacity;
    c.ok("the node slab grew past its first buffer", cap1 > cap0, format_args!("{cap0} -> {cap1}"));
    let ok = rams.iter_mut().all(|r| r.take().is_none_or(|r| sys.free(r).is_ok()));
    c.ok("the rest freed", ok, format_args!("a free failed"));
    c.is("the holes coalesced: every byte is back", avail(sys), before);

    // Partial frees: pieces of an allocation come back one by one.
    partial_frees(c, sys);

    // Mapping.
    let mut va = Va(GRADING_VADDR.start);
    let rw = MapFlags::READ_WRITE;
    let f = frame(sys, PAGE, PAGE);
    let at = va.take(PAGE, PAGE);
    let r = f.map(|f| sys.map_fixed_attr(at, f, PAGE, rw).is_ok());
    c.is("map a frame at a fixed address", r, Some(true));
    if r == Some(true) {
        fill(at, PAGE, 1);
        c.is("write and read it back", first_bad(at, PAGE, 1), None);
    }
    if let Some(f) = f {
        c.ok(
            "mapping the same page again is refused",
            sys.map_fixed_attr(at, f, PAGE, rw).is_err(),
            format_args!("accepted"),
        );
    }

    // Frames of different sizes side by side in one leaf table.
    let sizes = [PAGE, 2 * PAGE, 3 * PAGE, 4 * PAGE, 8 * PAGE, 16 * PAGE, 5 * PAGE];
    let mut placed = [(0u64, 0u64); 7];
    let mut ok = true;
    for (i, &s) in sizes.iter().enumerate() {
        let at = va.take(s, PAGE);
        ok &= frame(sys, s, PAGE).is_some_and(|f| sys.map_fixed_attr(at, f, s, rw).is_ok());
        placed[i] = (at, s);
    }
    let same_table = placed.iter().all(|&(a, s)| a >> 21 == GRADING_VADDR.start >> 21 && (a + s - 1) >> 21 == a >> 21);
    c.ok("frames of 7 sizes mapped in one leaf table", ok && same_table, format_args!("{placed:?}"));
    for (i, &(a, s)) in placed.iter().enumerate() {
        fill(a, s, 0x100 + i as u64);
    }
    let bad = placed.iter().enumerate().find_map(|(i, &(a, s))| first_bad(a, s, 0x100 + i as u64));
    c.is("each holds its own bytes", bad, None);

    // A range whose head is taken and whose tail is free is refused whole:
    // the tail stays unmapped, so it can be mapped afterwards.
    let (last, last_size) = placed[6];
    let tail = va.take(2 * PAGE, PAGE);
    let f2 = frame(sys, 4 * PAGE, PAGE);
    let r = f2.map(|f| sys.map_fixed_attr(last + last_size - 2 * PAGE, f, 4 * PAGE, rw).is_err());
    c.is("a mapping over taken and free pages is refused", r, Some(true));
    c.is("the taken pages keep their bytes", first_bad(last, last_size, 0x106), None);
    let f3 = frame(sys, 2 * PAGE, PAGE);
    let r = f3.map(|f| sys.map_fixed_attr(tail, f, 2 * PAGE, rw).is_ok());
    c.is("and the free pages were left unmapped", r, Some(true));

    // Across an L3 boundary (2 MiB) and an L2 boundary (1 GiB).
    let l3_edge = va.take(4 * MIB, 2 * MIB) + 2 * MIB - 8 * PAGE;
    cross(c, sys, "across a 2 MiB boundary", l3_edge, 16 * PAGE, 2);
    let l2_edge = GRADING_VADDR.start + GIB - 2 * MIB - 4 * PAGE;
    cross(c, sys, "across a 1 GiB boundary", l2_edge, 4 * MIB, 3);

    // Superpages: a 2 MiB frame at 2 MiB alignment as one block entry.
    let t0 = sys.stats().page_tables;
    let big = frame(sys, 2 * MIB, 2 * MIB);
    let at = GRADING_VADDR.start + 4 * GIB;
    let r = big.map(|f| sys.map_fixed_attr(at, f, 2 * MIB, rw | MapFlags::LARGE));
    c.ok("map a 2 MiB frame as a superpage", matches!(r, Some(Ok(()))), format_args!("{r:?}"));
    let t1 = sys.stats().page_tables;
    // A fresh 1 GiB region needs only its L2 table for a block; pages
    // would need an L3 table as well.
    c.is("it took an L2 table and no L3 table", t1 - t0, 1);
    fill(at, 2 * MIB, 7);
    c.is("the superpage holds its bytes", first_bad(at, 2 * MIB, 7), None);
    let small = frame(sys, PAGE, PAGE);
    let r = small.map(|f| sys.map_fixed_attr(at + 16 * PAGE, f, PAGE, rw).is_err());
    c.is("a page inside the superpage is refused", r, Some(true));
    // Without LARGE the same kind of frame takes pages.
    let big2 = frame(sys, 2 * MIB, 2 * MIB);
    let t2 = sys.stats().page_tables;
    let r = big2.map(|f| sys.map_fixed_attr(at + 2 * MIB, f, 2 * MIB, rw).is_ok());
    c.is("the same frame mapped without LARGE", r, Some(true));
    c.is("took one L3 table", sys.stats().page_tables - t2, 1);
    // Superpages over 64 MiB: blocks, the frame spans many tables' worth.
    let huge = frame(sys, 64 * MIB, 2 * MIB);
    let at = GRADING_VADDR.start + 8 * GIB;
    let r = huge.map(|f| sys.map_fixed_attr(at, f, 64 * MIB, rw | MapFlags::LARGE).is_ok());
    c.is("a 64 MiB frame as 32 superpages", r, Some(true));
    if r == Some(true) {
        fill(at, 64 * MIB, 9);
        c.is("every byte of it reads back", first_bad(at, 64 * MIB, 9), None);
    }
    // 64 MiB in pages: 32 L3 tables.
    let huge = frame(sys, 64 * MIB, PAGE);
    let at = GRADING_VADDR.start + 12 * GIB;
    let t3 = sys.stats().page_tables;
    let r = huge.map(|f| sys.map_fixed_attr(at, f, 64 * MIB, rw).is_ok());
    c.is("a 64 MiB frame as pages", r, Some(true));
    c.is("it took an L2 table and 32 L3 tables", sys.stats().page_tables - t3, 33);
    if r == Some(true) {
        fill(at, 64 * MIB, 11);
        c.is("every byte of that reads back", first_bad(at, 64 * MIB, 11), None);
    }

    // Refusals, each changing nothing.
    let f = frame(sys, 2 * PAGE, PAGE);
    let free = va.take(16 * PAGE, PAGE);
    if let Some(f) = f {
        c.ok("misaligned address refused", sys.map_fixed_attr(free + 8, f, PAGE, rw).is_err(), format_args!("ok"));
        c.ok(
            "more bytes than the frame refused",
            sys.map_fixed_attr(free, f, 3 * PAGE, rw).is_err(),
            format_args!("ok"),
        );
        c.ok("zero bytes refused", sys.map_fixed_attr(free, f, 0, rw).is_err(), format_args!("ok"));
        c.ok(
            "the program's own pages refused",
            sys.map_fixed_attr(0x40_0000, f, PAGE, rw).is_err(),
            format_args!("ok"),
        );
        c.ok(
            "kernel addresses refused",
            sys.map_fixed_attr(0xffff_0000_0000_0000, f, PAGE, rw).is_err(),
            format_args!("ok"),
        );
        c.ok(
            "a range wrapping around refused",
            sys.map_fixed_attr(!0xfff, f, 2 * PAGE, rw).is_err(),
            format_args!("ok"),
        );
        c.ok(
            "write and execute together refused",
            sys.map_fixed_attr(free, f, PAGE, rw | MapFlags::EXECUTE).is_err(),
            format_args!("ok"),
        );
        let r = sys.map_fixed_attr(free, f, 2 * PAGE, rw);
        c.ok("after the refusals the range maps", r.is_ok(), format_args!("{r:?}"));
    }
    if let Ok(ram) = sys.alloc(PAGE) {
        c.ok(
            "mapping RAM (not a frame) refused",
            sys.map_fixed_attr(free + 8 * PAGE, ram, PAGE, rw).is_err(),
            format_args!("ok"),
        );
        let _ = sys.free(ram);
    }
}

fn partial_frees<S: M1>(c: &mut Checks, sys: &mut S) {
    let before = avail(sys);
    let Ok(whole) = sys.alloc(64 * KIB) else {
        c.ok("partial frees: allocate 64 KiB", false, format_args!("failed"));
        return;
    };
    let mut pieces = [None; 16];
    let mut ok = true;
    for (i, p) in pieces.iter_mut().enumerate() {
        let slot = sys.slot_alloc().ok();
        ok &= slot.is_some_and(|s| {
            cap::retype(whole, Dest::l2(s.l1_index(), s.l2_index()), ObjType::Ram, i as u64 * PAGE, PAGE, 1).is_ok()
        });
        *p = slot;
    }
    c.ok("partial frees: split 64 KiB into 16 pages", ok, format_args!("a retype failed"));
    let r = pieces[3].map(|p| sys.free(p).is_err());
    c.is("a piece cannot come back while the whole still covers it", r, Some(true));
    c.is("and it still counts as allocated", avail(sys), before - 64 * KIB);
    c.ok(
        "the refused piece keeps its capability",
        pieces[3].and_then(ident).is_some_and(|i| i.size == PAGE),
        format_args!("gone"),
    );
    c.ok("the whole cannot come back while its pieces live", sys.free(whole).is_err(), format_args!("accepted"));
    c.is("delete the whole", cap::delete(whole), Ok(()));
    let mut rng = Rng(77);
    let mut order: [usize; 16] = core::array::from_fn(|i| i);
    for i in (1..16).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let ok = order.iter().all(|&i| pieces[i].take().is_none_or(|p| sys.free(p).is_ok()));
    c.ok("then the 16 pieces come back in any order", ok, format_args!("a free failed"));
    c.is("all 64 KiB are free again", avail(sys), before);

    // A copy kept by the client holds the memory: neither comes back while
    // the other lives.
    let Ok(ram) = sys.alloc(8 * KIB) else { return };
    let copy = sys.slot_alloc().ok();
    let copied = copy.is_some_and(|s| cap::copy(ram, Dest::l2(s.l1_index(), s.l2_index())).is_ok());
    c.ok("copy an allocation", copied, format_args!("{copy:?}"));
    c.ok("freeing it while the copy lives is refused", sys.free(ram).is_err(), format_args!("accepted"));
    c.ok("so is freeing the copy", copy.is_some_and(|s| sys.free(s).is_err()), format_args!("accepted"));
    c.is("the memory still counts as allocated", avail(sys), before - 8 * KIB);
    c.ok(
        "both capabilities are still there",
        ident(ram).is_some() && copy.and_then(ident).is_some(),
        format_args!("gone"),
    );
    let deleted = copy.map(cap::delete);
    c.is("delete the copy", deleted, Some(Ok(())));
    c.ok("now the allocation comes back", sys.free(ram).is_ok(), format_args!("refused"));
    c.is("with every byte", avail(sys), before);
    if let Some(s) = copy {
        let _ = sys.slot_free(s);
    }
}

fn cross<S: M1>(c: &mut Checks, sys: &mut S, name: &str, at: u64, bytes: u64, seed: u64) {
    let f = frame(sys, bytes, PAGE);
    let r = f.map(|f| sys.map_fixed_attr(at, f, bytes, MapFlags::READ_WRITE));
    c.ok(name, matches!(r, Some(Ok(()))), format_args!("{r:?}"));
    if matches!(r, Some(Ok(()))) {
        fill(at, bytes, seed);
        c.is(&check_name(format_args!("{name}: all {} read back", Human(bytes))), first_bad(at, bytes, seed), None);
    }
}

pub fn test_late<S: M1>(c: &mut Checks, sys: &mut S) {
    let start = avail(sys);
    // Exhaustion with large pieces, then smaller ones down to pages.
    let mut held = [None; 2048];
    let mut n = 0;
    for size in [16 * MIB, MIB, 64 * KIB, PAGE] {
        while n < held.len() {
            match sys.alloc(size) {
                Ok(cap) => {
                    held[n] = Some(cap);
                    n += 1;
                }
                Err(_) => break,
            }
        }
    }
    let left = sys.free_bytes();
    c.ok(
        "allocating until refused uses up the memory",
        n < held.len() && left < MIB,
        format_args!("{n} allocations, {left} bytes still free of {start}"),
    );
    c.ok("when exhausted, a page is refused", sys.alloc(PAGE).is_err(), format_args!("accepted"));
    // Back in an order that leaves holes first: every free must work
    // while memory is still scarce.
    let ok = held.iter_mut().step_by(2).all(|h| h.take().is_none_or(|cap| sys.free(cap).is_ok()));
    c.ok("freeing every other piece while memory is scarce", ok, format_args!("a free failed"));
    let ok = held.iter_mut().all(|h| h.take().is_none_or(|cap| sys.free(cap).is_ok()));
    c.ok("freeing the rest", ok, format_args!("a free failed"));
    c.is("full recovery: every byte is free again", avail(sys), start);
    let big = sys.alloc((start / 2) & !(PAGE - 1));
    c.ok("and half the memory comes back as one piece", big.is_ok(), format_args!("{big:?}"));
    if let Ok(b) = big {
        let _ = sys.free(b);
    }

    // Equal amounts allocated and freed, many times, never run out.
    let mut rng = Rng(99);
    let mut ring = [None; 64];
    let mut failures = 0;
    for i in 0..20_000usize {
        let k = i % ring.len();
        if let Some(cap) = ring[k].take() {
            failures += u32::from(sys.free(cap).is_err());
        }
        let size = (1 + rng.below(64)) * PAGE;
        let align = PAGE << rng.below(6);
        match sys.alloc_aligned(size, align) {
            Ok(cap) => ring[k] = Some(cap),
            Err(_) => failures += 1,
        }
    }
    for cap in ring.iter_mut().filter_map(Option::take) {
        failures += u32::from(sys.free(cap).is_err());
    }
    c.is("20000 alloc/free pairs of mixed sizes never fail", failures, 0);
    c.is("and leave every byte free", avail(sys), start);

    random_clients(c, sys);

    let kernel = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_KERNELCAP as u8);
    let inv = cap::debug_check(kernel);
    c.ok("the kernel's capability invariants hold", inv.is_ok(), format_args!("{inv:?}"));
}

/// The RAM allocator init installed (`ram_alloc_set`): what any code in
/// the domain gets from `aos::ram`, checked against `identify`.
pub fn test_ram_alloc(c: &mut Checks) {
    use aos::ram::{self, RamError};
    let a = ram::ram_alloc(12 * KIB);
    let ida = a.ok().and_then(ident);
    c.ok(
        "ram_alloc gives RAM of the size asked",
        ida.is_some_and(|i| i.objtype == Some(ObjType::Ram) && i.size == 12 * KIB && i.base % PAGE == 0),
        format_args!("{a:?} {ida:?}"),
    );
    let b = ram::ram_alloc_aligned(64 * KIB, MIB);
    let idb = b.ok().and_then(ident);
    c.ok(
        "ram_alloc_aligned honours the alignment",
        idb.is_some_and(|i| i.size == 64 * KIB && i.base % MIB == 0),
        format_args!("{b:?} {idb:?}"),
    );
    let disjoint = match (ida, idb) {
        (Some(x), Some(y)) => x.base + x.size <= y.base || y.base + y.size <= x.base,
        _ => false,
    };
    c.ok("the two do not overlap", disjoint, format_args!("{ida:?} {idb:?}"));
    c.is("size 0 is refused", ram::ram_alloc(0), Err(RamError::Refused));
    c.is("alignment 3 is refused", ram::ram_alloc_aligned(PAGE, 3), Err(RamError::Refused));
    c.is("more than all memory is out of memory", ram::ram_alloc(1 << 50), Err(RamError::OutOfMemory));
    for (name, r) in [("free the first", a), ("free the second", b)] {
        c.is(name, r.map(ram::ram_free), Ok(Ok(())));
    }
    c.ok("a double free is refused", a.is_ok_and(|a| ram::ram_free(a).is_err()), format_args!("accepted"));
    let installed = ram::ram_alloc_set(ram::RamHooks { alloc: |_, _| Err(RamError::Busy), free: |_| Ok(()) });
    c.is("the allocator is installed once; a second one is refused", installed, false);
}

/// What the random client holds: an allocation from the manager, a page
/// retyped out of one, or a copy of one.
#[derive(Clone, Copy, Debug)]
enum Held {
    Alloc { cap: CapRef, size: u64, deps: u32, alive: bool },
    Piece { cap: CapRef, parent: usize },
    Copy { cap: CapRef, parent: usize },
}

/// A client doing what clients do, at random: allocate, free, retype a
/// page out of an allocation, copy one, drop pieces and copies, drop an
/// allocation but keep its pieces. Every answer of the manager is checked
/// against what the client knows must happen, and the manager's count of
/// free bytes against the client's own.
fn random_clients<S: M1>(c: &mut Checks, sys: &mut S) {
    const N: usize = 96;
    let start = avail(sys);
    let mut held: [Option<Held>; N] = [None; N];
    let mut rng = Rng(0x5eed);
    // Bytes the manager has out, and bytes lost to it because the client
    // deleted an allocation instead of freeing it.
    let (mut out, mut leaked) = (0u64, 0u64);
    let mut wrong = 0u32;
    let mut first_wrong = None;
    // How often the interesting cases came up: a free refused because a
    // piece or copy lived, a piece of a dropped allocation freed.
    let (mut refused, mut orphans_freed) = (0u32, 0u32);
    let slot_dest = |s: CapRef| Dest::l2(s.l1_index(), s.l2_index());
    for step in 0..3000u32 {
        let k = rng.below(N as u64) as usize;
        let expect_ok: Option<bool>;
        match held[k] {
            None if rng.below(3) > 0 => {
                let size = (1 + rng.below(16)) * PAGE;
                let r = sys.alloc_aligned(size, PAGE << rng.below(4));
                expect_ok = Some(r.is_ok());
                if let Ok(cap) = r {
                    held[k] = Some(Held::Alloc { cap, size, deps: 0, alive: true });
                    out += size;
                }
            }
            None => {
                // Retype a page out of, or copy, some live allocation.
                let p = rng.below(N as u64) as usize;
                let Some(Held::Alloc { cap: parent, size, alive: true, .. }) = held[p] else { continue };
                let Ok(slot) = sys.slot_alloc() else { continue };
                let copy = rng.below(2) == 0;
                let r = if copy {
                    cap::copy(parent, slot_dest(slot))
                } else {
                    let off = rng.below(size / PAGE) * PAGE;
                    cap::retype(parent, slot_dest(slot), ObjType::Ram, off, PAGE, 1).map(drop)
                };
                // A page may already be taken by another piece.
                if r.is_err() {
                    let _ = sys.slot_free(slot);
                    continue;
                }
                if let Some(Held::Alloc { deps, .. }) = &mut held[p] {
                    *deps += 1;
                }
                held[k] =
                    Some(if copy { Held::Copy { cap: slot, parent: p } } else { Held::Piece { cap: slot, parent: p } });
                continue;
            }
            Some(Held::Alloc { cap, size, deps, alive: true }) => {
                if rng.below(4) == 0 && deps > 0 {
                    // Drop the allocation, keep its pieces and copies.
                    expect_ok = Some(true);
                    let r = cap::delete(cap);
                    if r.is_ok() {
                        let _ = sys.slot_free(cap);
                        held[k] = Some(Held::Alloc { cap, size, deps, alive: false });
                        leaked += size;
                        out -= size;
                    } else {
                        wrong += 1;
                    }
                } else {
                    // Free: refused exactly while pieces or copies live.
                    let r = sys.free(cap);
                    expect_ok = Some((deps == 0) == r.is_ok());
                    refused += u32::from(r.is_err());
                    if r.is_ok() {
                        held[k] = None;
                        out -= size;
                    }
                }
            }
            Some(Held::Alloc { alive: false, .. }) => continue,
            Some(Held::Piece { cap, parent }) | Some(Held::Copy { cap, parent }) => {
                let is_piece = matches!(held[k], Some(Held::Piece { .. }));
                let parent_alive = matches!(held[parent], Some(Held::Alloc { alive: true, .. }));
                let removed;
                if is_piece && !parent_alive && rng.below(2) == 0 {
                    // A piece of a dropped allocation comes back on its own,
                    // unless a copy of the allocation still reaches it.
                    let copy_alive =
                        held.iter().any(|h| matches!(h, Some(Held::Copy { parent: q, .. }) if *q == parent));
                    let r = sys.free(cap);
                    expect_ok = Some(r.is_ok() != copy_alive);
                    removed = r.is_ok();
                    if removed {
                        leaked -= PAGE;
                        orphans_freed += 1;
                    }
                } else {
                    removed = cap::delete(cap).is_ok() && sys.slot_free(cap).is_ok();
                    expect_ok = Some(removed);
                }
                if removed {
                    held[k] = None;
                    if let Some(Held::Alloc { deps, alive, .. }) = &mut held[parent] {
                        *deps -= 1;
                        if *deps == 0 && !*alive {
                            held[parent] = None;
                        }
                    }
                }
            }
        }
        if expect_ok == Some(false) {
            wrong += 1;
            first_wrong.get_or_insert((step, k, held[k]));
        }
        if avail(sys) != start - out - leaked {
            wrong += 1;
            first_wrong.get_or_insert((step, k, held[k]));
        }
    }
    c.ok(
        "3000 random client steps: every answer as expected, free bytes tracked",
        wrong == 0,
        format_args!("{wrong} wrong, first at {first_wrong:?}"),
    );
    c.ok(
        "the steps refused frees of covered memory and freed pieces of dropped allocations",
        refused > 0 && orphans_freed > 0,
        format_args!("{refused} refused, {orphans_freed} pieces freed"),
    );
    // Clean up: pieces and copies first, then allocations.
    let mut ok = true;
    for h in held.iter_mut() {
        if let Some(Held::Piece { cap, parent }) | Some(Held::Copy { cap, parent }) = *h {
            let _ = parent;
            ok &= cap::delete(cap).is_ok() && sys.slot_free(cap).is_ok();
            *h = None;
        }
    }
    for h in held.iter_mut() {
        if let Some(Held::Alloc { cap, size, alive: true, .. }) = *h {
            ok &= sys.free(cap).is_ok();
            out -= size;
        }
        *h = None;
    }
    c.ok("and everything the client still held goes back", ok && out == 0, format_args!("{out} bytes unaccounted"));
    c.is("every byte but those the client deleted is free", avail(sys), start - leaked);
}
