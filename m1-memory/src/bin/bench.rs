//! M1 costs for `cargo xtask bench m1`, in the output format of the CPU
//! driver's benchmark (`bench: NAME TICKS COUNT`, one sample per line):
//! alloc and free with 10^4 regions outstanding, a 4 KiB map through
//! `map_fixed_attr`, and the raw retype both are built on.

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::cap::{self, CapRef, Dest, ObjType};
use aos::kpi::bootinfo::RegionKind;
use aos::kpi::cspace::ROOTCN_SLOT_SUPERCN;
use aos::println;
use aos::time::measure;
use api::{MapFlags, MemoryManager, Paging, SlotAllocator};
use m1_memory::Memory;

aos::main!(run);

const REPS: u32 = 12;
/// Operations per sample.
const N: usize = 50;
/// Regions kept allocated while alloc and free are measured.
const OUTSTANDING: usize = 10_000;
const PAGE: u64 = 4096;
/// Pages mapped per sample.
const MAP_N: usize = 40;
/// Where the mapping benchmark maps: level-0 entry 4 (2 TiB), its own.
const MAP_VADDR: u64 = 4 << 39;

fn run(args: &aos::Args) -> i32 {
    println!("bench: counter-frequency {} Hz", aos::time::frequency());
    let Some(bi) = args.bootinfo() else { return 1 };
    if let Err(e) = Memory::init(bi) {
        println!("bench: FAILED setting up memory: {e}");
        return 1;
    }
    m1_memory::with(|mem| measure_all(bi, mem)).unwrap_or(1)
}

fn measure_all(bi: &aos::kpi::bootinfo::BootInfo, mem: &mut Memory) -> i32 {
    // 2 * OUTSTANDING pages, every other one freed again: OUTSTANDING
    // allocations and as many free regions between them.
    static mut HELD: [Option<CapRef>; 2 * OUTSTANDING] = [None; 2 * OUTSTANDING];
    let held = &raw mut HELD;
    // SAFETY: the only reference to HELD, in the only thread, made once.
    let held = unsafe { &mut *held };
    for h in held.iter_mut() {
        *h = mem.alloc(PAGE).ok();
    }
    let filled = held.iter().all(Option::is_some);
    let freed = held.iter_mut().step_by(2).all(|h| h.take().is_some_and(|c| mem.free(c).is_ok()));
    if !filled || !freed {
        println!("bench: FAILED making {OUTSTANDING} outstanding regions");
        return 1;
    }
    // The raw retype, on the root capability the manager splits, at memory
    // the manager has free (taken and given back just before).
    let probe = mem.alloc(4 << 20).ok();
    let base = probe.and_then(|c| cap::identify(c).ok()).map(|i| i.base);
    if let Some(p) = probe {
        let _ = mem.free(p);
    }
    let Some(base) = base else { return 1 };
    let Some(region) = bi
        .regions()
        .iter()
        .find(|r| r.kind == RegionKind::Free && r.slot != u32::MAX && (r.base..r.base + r.size).contains(&base))
    else {
        return 1;
    };
    let root = CapRef::slot(ROOTCN_SLOT_SUPERCN as u32, region.slot as u8);
    let offset = base - region.base;
    // Page tables for the mapping benchmark exist before it starts.
    let warm = mem.frame_alloc(PAGE).ok();
    if warm.is_none_or(|f| mem.map_fixed_attr(MAP_VADDR + 511 * PAGE, f, PAGE, MapFlags::READ_WRITE).is_err()) {
        println!("bench: FAILED preparing page tables");
        return 1;
    }
    let mut slots = [None; N];
    for s in slots.iter_mut() {
        *s = mem.slot_alloc().ok();
    }
    let slots: [CapRef; N] = core::array::from_fn(|i| slots[i].unwrap_or(CapRef::slot(0, 0)));
    let mut caps = [None; N];
    // Each repetition maps these frames again at new addresses, all in
    // one leaf table (REPS * MAP_N < 511).
    let mut frames = [None; MAP_N];
    for f in frames.iter_mut() {
        *f = mem.frame_alloc(PAGE).ok();
    }
    let mut all = true;
    for rep in 0..REPS {
        all = all
            && measure("retype-ram-to-4k-ram", N as u64, || {
                slots.iter().enumerate().all(|(i, &s)| {
                    cap::retype(root, Dest::at(s), ObjType::Ram, offset + i as u64 * PAGE, PAGE, 1).is_ok()
                })
            })
            && slots.iter().all(|&s| cap::delete(s).is_ok())
            && measure("mm-alloc-4k-10k-outstanding", N as u64, || {
                caps.iter_mut().all(|c| {
                    *c = mem.alloc(PAGE).ok();
                    c.is_some()
                })
            })
            && measure("mm-free-4k-10k-outstanding", N as u64, || {
                caps.iter_mut().all(|c| c.take().is_some_and(|c| mem.free(c).is_ok()))
            })
            && measure("mm-alloc-64k-aligned-64k", N as u64, || {
                caps.iter_mut().all(|c| {
                    *c = mem.alloc_aligned(64 << 10, 64 << 10).ok();
                    c.is_some()
                })
            })
            && measure("mm-free-64k", N as u64, || {
                caps.iter_mut().all(|c| c.take().is_some_and(|c| mem.free(c).is_ok()))
            })
            && measure("map-fixed-4k", MAP_N as u64, || {
                let base = MAP_VADDR + u64::from(rep) * (MAP_N as u64) * PAGE;
                frames[..MAP_N].iter().enumerate().all(|(i, f)| {
                    f.is_some_and(|f| mem.map_fixed_attr(base + i as u64 * PAGE, f, PAGE, MapFlags::READ_WRITE).is_ok())
                })
            });
    }
    if all { 0 } else { 1 }
}
