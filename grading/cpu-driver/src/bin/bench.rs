//! Kernel costs in counter ticks for `cargo xtask bench`. Output lines:
//! `bench: counter-frequency HZ` and `bench: NAME TICKS COUNT` — one sample:
//! COUNT operations took TICKS counter ticks (under icount, ticks convert to
//! instructions exactly). Every benchmark but boot is repeated `REPS`
//! times; the host discards the first samples as warm-up and reports
//! median, minimum, maximum and 90th percentile.

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::cap::{self, CapRef, Dest, ObjType};
use aos::kpi::bootinfo::RegionKind;
use aos::kpi::cspace::*;
use aos::println;
use aos::time::measure;

aos::main!(run);

/// Samples of each benchmark.
const REPS: u32 = 12;
/// Null syscalls per sample.
const ROUNDS: u64 = 1_000;
/// Objects per sample.
const N: u32 = 50;

fn slot(cn: usize, i: u32) -> CapRef {
    CapRef::slot(cn as u32, i as u8)
}

fn dest(cn: usize, i: u32) -> Dest {
    Dest::l2(cn as u32, i)
}

fn run(args: &aos::Args) -> i32 {
    println!("bench: counter-frequency {} Hz", aos::time::frequency());
    println!("bench: reset-to-init-first-instruction {} 1", aos::start_ticks());

    let Some(bi) = args.bootinfo() else { return 1 };
    let Some(r) = bi.regions().iter().find(|r| r.kind == RegionKind::Free && r.size >= 256 << 20) else {
        println!("bench: FAILED no 256 MiB of RAM");
        return 1;
    };
    let ram = slot(ROOTCN_SLOT_SUPERCN, r.slot);
    let (a0, a1, a2) = (ROOTCN_SLOT_SLOT_ALLOC0, ROOTCN_SLOT_SLOT_ALLOC1, ROOTCN_SLOT_SLOT_ALLOC2);
    let l0 = slot(ROOTCN_SLOT_PAGECN, PAGECN_SLOT_VROOT as u32);
    // Tables under L0 entry 1 (512 GiB up), away from init's own mappings.
    let tables_ok = cap::retype(ram, dest(a2, 0), ObjType::VNodeL1, 0, 0, 1).is_ok()
        && cap::retype(ram, dest(a2, 1), ObjType::VNodeL2, 0x1000, 0, 1).is_ok()
        && cap::retype(ram, dest(a2, 2), ObjType::VNodeL3, 0x2000, 0, 1).is_ok()
        && cap::map(l0, slot(a2, 0), 1, 1, 3, 0, dest(a2, 10)).is_ok()
        && cap::map(slot(a2, 0), slot(a2, 1), 0, 1, 3, 0, dest(a2, 11)).is_ok()
        && cap::map(slot(a2, 1), slot(a2, 2), 0, 1, 3, 0, dest(a2, 12)).is_ok();
    if !tables_ok {
        println!("bench: FAILED setting up page tables");
        return 1;
    }
    // 4 KiB frames from 1 MiB on, 2 MiB frames from 64 MiB on (aligned),
    // the revoked tree at 200 MiB: the same memory every repetition, since
    // each one deletes what it made.
    let frames_at = 1 << 20;
    let blocks_at = (r.base + (64 << 20)).next_multiple_of(2 << 20) - r.base;
    let tree_at = 200 << 20;
    let mut all = true;
    for _ in 0..REPS {
        all = all
            && measure("null-syscall", ROUNDS, || (0..ROUNDS).all(|_| aos::syscall::null().is_ok()))
            && measure("yield", ROUNDS, || (0..ROUNDS).all(|_| aos::syscall::yield_now().is_ok()))
            && measure("retype-ram-to-4k-frame", u64::from(N), || {
                (0..N).all(|i| {
                    cap::retype(ram, dest(a0, i), ObjType::Frame, frames_at + u64::from(i) * 0x1000, 0x1000, 1).is_ok()
                })
            })
            && measure("map-4k-page", u64::from(N), || {
                (0..N).all(|i| cap::map(slot(a2, 2), slot(a0, i), i as u16, 1, 3, 0, dest(a1, i)).is_ok())
            })
            && measure("unmap-4k-page", u64::from(N), || (0..N).all(|i| cap::unmap(slot(a1, i)).is_ok()))
            && measure("delete-frame", u64::from(N), || (0..N).all(|i| cap::delete(slot(a0, i)).is_ok()))
            && measure("retype-ram-to-2m-frame", 8, || {
                (0..8).all(|i| {
                    cap::retype(ram, dest(a0, i), ObjType::Frame, blocks_at + u64::from(i) * (2 << 20), 2 << 20, 1)
                        .is_ok()
                })
            })
            && measure("map-2m-block", 8, || {
                (0..8).all(|i| cap::map(slot(a2, 1), slot(a0, i), 1 + i as u16, 1, 3, 0, dest(a1, i)).is_ok())
            })
            && measure("unmap-2m-block", 8, || (0..8).all(|i| cap::unmap(slot(a1, i)).is_ok()))
            && (0..8).all(|i| cap::delete(slot(a0, i)).is_ok())
            && {
                // A 100-descendant tree: a 1 MiB RAM child split into 100 frames.
                cap::retype(ram, dest(a1, 200), ObjType::Ram, tree_at, 1 << 20, 1).is_ok()
                    && cap::retype(slot(a1, 200), dest(a0, 100), ObjType::Frame, 0, 0x1000, 100).is_ok()
                    && measure("revoke-100-descendants", 1, || cap::revoke(slot(a1, 200)).is_ok_and(|n| n == 100))
                    && cap::delete(slot(a1, 200)).is_ok()
            };
    }
    if all { 0 } else { 1 }
}
