//! A hostile domain: many random capability invocations — random addresses,
//! levels, commands and arguments, biased towards values that reach deep
//! into the checks — then the kernel's own invariant check. Arguments:
//! `hostile [SEED [COUNT]]` (defaults below); the seed and count are
//! printed so any failure can be replayed.

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::cap::{self, CapRef, Command, ObjType};
use aos::kpi::cspace::{ROOTCN_SLOT_TASKCN, TASKCN_SLOT_KERNELCAP};
use aos::kpi::lmp::send_word;
use aos::println;
use grading::Rng;

aos::main!(run);

const DEFAULT_SEED: u64 = 0x00c0_ffee_2026_1125;
const DEFAULT_COUNT: u64 = 100_000;

/// What a hostile caller passes.
trait Hostile {
    /// Mostly plausible values, sometimes anything.
    fn value(&mut self, plausible: u64) -> u64;
}

impl Hostile for Rng {
    fn value(&mut self, plausible: u64) -> u64 {
        match self.next_u64() % 8 {
            0 => self.next_u64(),
            1 => 0,
            2 => (self.next_u64() % 64) << 12,
            _ => self.next_u64() % plausible,
        }
    }
}

fn parse(s: Option<&str>, default: u64) -> u64 {
    s.and_then(|s| s.strip_prefix("0x").map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok()))
        .unwrap_or(default)
}

/// SUPERCN slot 0: the first RAM capability.
const PROTECTED: CapRef = CapRef::slot(aos::kpi::cspace::ROOTCN_SLOT_SUPERCN as u32, 0);

/// Root CNode slots the fuzzer aims at most: where init's capabilities are.
const BUSY: [u32; 6] = [0, 1, 3, 5, 6, 8];
/// The one root slot it never touches: SLOT_ALLOC2, which keeps a copy of
/// the Kernel capability for the final check.
const SAFE: u32 = kpi_safe();

const fn kpi_safe() -> u32 {
    aos::kpi::cspace::ROOTCN_SLOT_SLOT_ALLOC2 as u32
}

fn run(args: &aos::Args) -> i32 {
    let seed = parse(args.get(1), DEFAULT_SEED).max(1);
    let count = parse(args.get(2), DEFAULT_COUNT);
    println!("hostile: seed {seed:#x}, {count} invocations");
    let kernel = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_KERNELCAP as u8);
    let safe_kernel = CapRef::slot(SAFE, 0);
    if let Err(e) = cap::copy(kernel, cap::Dest::l2(SAFE, 0)) {
        println!("hostile: cannot keep a Kernel capability: {e:?}");
        return 2;
    }
    let mut rng = Rng(seed);
    let mut succeeded = 0u64;
    let mut done = 0u64;
    let mut outcomes = [0u64; 32];
    let mut per_command = [0u64; aos::kpi::invocation::Command::ALL.len()];
    while done < count {
        let l1 = match rng.next_u64() % 4 {
            0 => rng.value(16) as u32,
            _ => BUSY[(rng.next_u64() % BUSY.len() as u64) as usize],
        };
        let l2 = rng.value(40) as u32;
        let level = match rng.next_u64() % 16 {
            0 => rng.next_u64() % 256,
            1 => 1,
            _ => 2,
        };
        let target = match rng.next_u64() % 32 {
            0 => rng.next_u64(),
            _ => u64::from((l1 << 8) | (l2 & 0xff)) | level << 32,
        };
        let dest_cnode = match rng.next_u64() % 8 {
            0 => rng.value(16) as u32,
            _ => [5u32, 6][(rng.next_u64() % 2) as usize],
        };
        // TASKCN holds the Kernel capability (a revoke there would also take
        // the kept copy) and SAFE holds the kept copy.
        let target_l1 = (target as u32) >> 8;
        if [0, SAFE].contains(&l1) || [0, SAFE].contains(&target_l1) || dest_cnode == SAFE {
            continue;
        }
        let commands = Command::ALL.len() as u64;
        let mut cmd = if rng.next_u64().is_multiple_of(16) { rng.next_u64() } else { rng.next_u64() % commands };
        // A dispatcher made runnable would run whatever its frame holds and
        // could outlive this program; everything else about dispatchers is
        // fair game.
        if cmd == Command::MakeRunnable as u64 {
            continue;
        }
        let mut target = target;
        // A quarter of the calls retype from the first RAM capability, so
        // objects keep being made; that capability itself is never copied,
        // deleted or revoked (a revoke of a copy would take it too), or the
        // run would soon have nothing left to make anything from.
        let mut structured = None;
        if rng.next_u64().is_multiple_of(4) {
            target = PROTECTED.to_raw();
            cmd = 1;
        } else if target == PROTECTED.to_raw() && cmd != 0 && cmd != 1 {
            continue;
        } else if rng.next_u64().is_multiple_of(64) {
            // Now and then a dispatcher with everything it needs, set up
            // (never made runnable), an endpoint to it with a buffer, and a
            // receive slot, in random slots: the random calls around it then
            // find live dispatchers and endpoints to stop, send to, delete
            // and revoke. Only the last call of the chain counts.
            let slot =
                |rng: &mut Rng| CapRef::slot([5u32, 6][(rng.next_u64() % 2) as usize], (rng.next_u64() % 64) as u8);
            let (disp, frame, ep, minted) = (slot(&mut rng), slot(&mut rng), slot(&mut rng), slot(&mut rng));
            let dest_of = |r: CapRef| cap::Dest::l2(r.l1_index(), r.l2_index()).to_raw();
            let off = |rng: &mut Rng| (rng.next_u64() % (48 << 20)) & !0xfff;
            let calls = [
                (PROTECTED, Command::Retype, [dest_of(disp), ObjType::Dispatcher as u64, off(&mut rng), 0, 1]),
                (PROTECTED, Command::Retype, [dest_of(frame), ObjType::Frame as u64, off(&mut rng), 0x1000, 1]),
                (
                    disp,
                    Command::Setup,
                    [CapRef::slot(0, 2).to_raw(), CapRef::slot(1, 0).to_raw(), frame.to_raw(), 0, 0],
                ),
                (disp, Command::Retype, [dest_of(ep), ObjType::EndPointLmp as u64, 0, 0, 1]),
            ];
            for (t, c, a) in calls {
                let _ = cap::invoke_raw(t.to_raw(), c as u64, a);
            }
            let _ = cap::invoke_raw(disp.to_raw(), Command::SetRecvSlot as u64, [slot(&mut rng).to_raw(), 0, 0, 0, 0]);
            target = ep.to_raw();
            cmd = Command::Mint as u64;
            structured = Some([dest_of(minted), 0x1f, 2048, 2048, 0]);
        } else if rng.next_u64().is_multiple_of(8) {
            // Dispatcher and LMP calls on whatever the allocation CNodes hold
            // (random retypes put dispatchers, endpoints and frames there),
            // with arguments that sometimes line up: init's own CSpace and
            // VSpace roots, a frame from the same CNodes.
            let pick =
                |rng: &mut Rng| CapRef::slot([5u32, 6][(rng.next_u64() % 2) as usize], (rng.next_u64() % 64) as u8);
            target = pick(&mut rng).to_raw();
            let root = CapRef::slot(0, 2).to_raw();
            let vroot = CapRef::slot(1, 0).to_raw();
            let dest = |rng: &mut Rng| {
                CapRef::l2_cnode([5u32, 6][(rng.next_u64() % 2) as usize]).to_raw() | (rng.next_u64() % 64) << 40
            };
            let (c, args) = match rng.next_u64() % 8 {
                0 => {
                    // Often with a fresh frame (if the slot is free).
                    let frame = pick(&mut rng);
                    if rng.next_u64().is_multiple_of(2) {
                        let off = (rng.next_u64() % (48 << 20)) & !0xfff;
                        let d = cap::Dest::l2(frame.l1_index(), frame.l2_index());
                        let _ = cap::invoke_raw(
                            PROTECTED.to_raw(),
                            Command::Retype as u64,
                            [d.to_raw(), ObjType::Frame as u64, off, 0x1000, 1],
                        );
                    }
                    (Command::Setup as u64, [root, vroot, frame.to_raw(), rng.next_u64() & 0xffff_f000, 0])
                }
                1 => (Command::Stop as u64, [0; 5]),
                2 => (Command::Properties as u64, [0; 5]),
                3 => (Command::SetRecvSlot as u64, [pick(&mut rng).to_raw(), 0, 0, 0, 0]),
                // A dispatcher from the RAM, an endpoint from a dispatcher, a
                // buffer for an endpoint.
                4 => {
                    target = PROTECTED.to_raw();
                    let off = (rng.next_u64() % (48 << 20)) & !0xfff;
                    (Command::Retype as u64, [dest(&mut rng), ObjType::Dispatcher as u64, off, 0, 1])
                }
                5 => (Command::Retype as u64, [dest(&mut rng), ObjType::EndPointLmp as u64, 0, 0, 1]),
                6 => (Command::Mint as u64, [dest(&mut rng), 0x1f, 2048, 2048, 0]),
                _ => (
                    send_word((rng.next_u64() % 16) as usize, rng.next_u64() % 8),
                    [pick(&mut rng).to_raw(), 1, 2, 3, 4],
                ),
            };
            cmd = c;
            structured = Some(args);
        } else if rng.next_u64().is_multiple_of(6) {
            // Map a random capability of the allocation CNodes into another
            // (random retypes put page tables and frames there), or change a
            // mapping's rights: random calls alone almost never line up.
            let pick =
                |rng: &mut Rng| CapRef::slot([5u32, 6][(rng.next_u64() % 2) as usize], (rng.next_u64() % 64) as u8);
            target = pick(&mut rng).to_raw();
            if rng.next_u64().is_multiple_of(2) {
                // Make something mappable: a page table or a small frame.
                let kinds = [
                    (ObjType::VNodeL3, 0u64),
                    (ObjType::VNodeL2, 0),
                    (ObjType::Frame, 0x1000),
                    (ObjType::Frame, 0x2000),
                ];
                let (ty, size) = kinds[(rng.next_u64() % kinds.len() as u64) as usize];
                target = PROTECTED.to_raw();
                cmd = 1;
                let dest =
                    CapRef::l2_cnode([5u32, 6][(rng.next_u64() % 2) as usize]).to_raw() | (rng.next_u64() % 64) << 40;
                structured = Some([dest, ty as u64, (rng.next_u64() % (48 << 20)) & !0x1fff, size, 1]);
            } else if rng.next_u64().is_multiple_of(3) {
                cmd = 8;
                structured = Some([1, 0, 0, 0, 0]);
            } else {
                cmd = 7;
                let packed = (rng.next_u64() % 512) | (1 << 16) | ([1u64, 3][(rng.next_u64() % 2) as usize] << 32);
                let dest =
                    CapRef::l2_cnode([5u32, 6][(rng.next_u64() % 2) as usize]).to_raw() | (rng.next_u64() % 64) << 40;
                structured = Some([pick(&mut rng).to_raw(), packed, 0, dest, 0]);
            }
        }
        // Operating on whole CNodes (level 1: deleting them, or copying them
        // and revoking a copy, which takes the original too) empties the
        // CSpace quickly and leaves only address errors to test: keep it rare.
        // The two allocation CNodes, where random retypes put what the
        // structured calls below use, are never deleted or copied whole.
        if level == 1 && cmd != 0 && ([5, 6].contains(&l1) || !rng.next_u64().is_multiple_of(64)) {
            continue;
        }
        let dest = match rng.next_u64() % 8 {
            // Sometimes the root CNode itself (through TASKCN's copy).
            0 => cap::Dest { cnode: CapRef::slot(0, 2), slot: rng.value(300) as u32 }.to_raw(),
            _ => CapRef::l2_cnode(dest_cnode).to_raw() | rng.value(64) << 40,
        };
        let a = structured.unwrap_or([
            dest,
            rng.value(22),
            rng.value(1 << 22) & !0xfff,
            rng.value(1 << 16) & !0xfff,
            1 + rng.value(3),
        ]);
        match cap::invoke_raw(target, cmd, a) {
            Ok(_) => {
                succeeded += 1;
                if let Some(n) = per_command.get_mut((cmd & 0xff) as usize) {
                    *n += 1;
                }
            }
            Err(e) => outcomes[(e as usize).min(outcomes.len() - 1)] += 1,
        }
        done += 1;
    }
    for c in aos::kpi::invocation::Command::ALL {
        println!("hostile: {} {c:?} accepted", per_command[c as usize]);
    }
    for (code, n) in outcomes.iter().enumerate().filter(|(_, n)| **n > 0) {
        let name = aos::kpi::ErrorCode::from_raw(code as u64).map_or("?", |c| c.description());
        println!("hostile: {n} refused with {name}");
    }
    match cap::debug_check(safe_kernel) {
        Ok(n) => {
            println!(
                "hostile: {count} invocations, {succeeded} accepted; kernel invariants hold over {n} capabilities"
            );
            0
        }
        Err(e) => {
            println!("hostile: FAILED {count} invocations, {succeeded} accepted; invariant check: {e:?}");
            1
        }
    }
}
