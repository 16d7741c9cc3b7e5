//! Kernel costs in counter ticks for `cargo xtask bench`. Output lines:
//! `bench: counter-frequency HZ` and `bench: NAME TICKS COUNT` — one sample:
//! COUNT operations took TICKS counter ticks (under icount, ticks convert to
//! instructions exactly). Every benchmark but boot is repeated `REPS`
//! times; the host discards the first samples as warm-up and reports
//! median, minimum, maximum and 90th percentile.

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

use aos::cap::{self, CapRef, Dest, ObjType};
use aos::dispatcher;
use aos::kpi::ErrorCode;
use aos::kpi::bootinfo::RegionKind;
use aos::kpi::cspace::*;
use aos::kpi::dispatcher::DispatcherShared;
use aos::lmp::{Endpoint, Message, SEND_DEFAULT};
use aos::println;
use aos::thread;
use aos::time::{counter, measure};
use cpu_driver_programs::children::{self, ChildStacks, Children};

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
    if !all {
        return 1;
    }
    if dispatchers(ram).is_err() { 1 } else { 0 }
}

// Children for the dispatch benchmarks: in SEGCN, frames under L0 entry 3,
// from RAM at 220 MiB.
const ECHO: u8 = 0;
const YIELDER: u8 = 1;
const UPCALLED: u8 = 2;
const FAULTER: u8 = 3;
const KIDS: u8 = 4;
const KIDS_CN: u32 = ROOTCN_SLOT_SEGCN as u32;
const INIT_EP: u8 = children::FREE_SLOTS;
const ECHO_EP: u8 = children::FREE_SLOTS + 1;
/// Where the faulting child reads: nothing is mapped there.
const FAULT_ADDR: u64 = 0x18;

static STACKS: ChildStacks<{ KIDS as usize + 2 }> = ChildStacks::new();

fn stack_top(i: usize) -> u64 {
    STACKS.top(i)
}

/// Echo's one-way accounting: counter ticks from send to receipt, summed.
static ONE_WAY_TICKS: AtomicU64 = AtomicU64::new(0);
static FAULTER_DONE: AtomicBool = AtomicBool::new(false);
static FAULTER_OK: AtomicBool = AtomicBool::new(false);
static THREAD_STOP: AtomicBool = AtomicBool::new(false);
static THREAD_STACKS: thread::Stacks<1> = thread::Stacks::new();

/// Replies to every message at once with an empty one; a one-word message
/// carries its send time, and the time to receipt is added up.
extern "C" fn echo_main(frame: u64, _: u64) -> ! {
    let mut ring = children::ring(frame);
    let reply = Endpoint(CapRef::slot(KIDS_CN, INIT_EP));
    let mut m = Message::default();
    loop {
        ring.recv_blocking_into(&mut m);
        if m.len == 1 {
            ONE_WAY_TICKS.fetch_add(counter() - m.words[0], SeqCst);
        }
        while reply.send(&[], SEND_DEFAULT) == Err(ErrorCode::LmpBufferFull) {
            let _ = aos::syscall::yield_now();
        }
    }
}

extern "C" fn yielder_main(_: u64, _: u64) -> ! {
    loop {
        let _ = aos::syscall::yield_now();
    }
}

/// Enabled, yields for ever; each time it is dispatched again it is
/// upcalled, and the upcall resumes it.
extern "C" fn upcalled_main(frame: u64, _: u64) -> ! {
    // SAFETY: this child's own frame, mapped read-write.
    unsafe {
        let f = &mut *(frame as *mut DispatcherShared);
        f.upcall_entry = resume_upcall as *const () as u64;
        f.upcall_stack = stack_top(KIDS as usize);
    }
    dispatcher::enable();
    loop {
        let _ = aos::syscall::yield_now();
    }
}

extern "C" fn resume_upcall(frame: u64, _: u64) -> ! {
    // SAFETY: the frame's enabled area, which the kernel just filled.
    let _ = dispatcher::resume(unsafe { &raw const (*(frame as *const DispatcherShared)).enabled_save });
    aos::syscall::exit(3)
}

/// Measures its own faults: each is delivered to the handler, which skips
/// the load and resumes.
extern "C" fn faulter_main(frame: u64, _: u64) -> ! {
    // SAFETY: this child's own frame.
    unsafe {
        let f = &mut *(frame as *mut DispatcherShared);
        f.fault_entry = skip_fault as *const () as u64;
        f.upcall_stack = stack_top(KIDS as usize + 1);
    }
    dispatcher::enable();
    let mut ok = true;
    for _ in 0..REPS {
        ok &= measure("fault-upcall-resume", ROUNDS, || {
            for _ in 0..ROUNDS {
                // SAFETY: faults on purpose; the handler skips the load.
                let _ = unsafe { core::ptr::read_volatile(FAULT_ADDR as *const u64) };
            }
            true
        });
    }
    FAULTER_OK.store(ok, SeqCst);
    FAULTER_DONE.store(true, SeqCst);
    aos::syscall::exit(0)
}

extern "C" fn skip_fault(frame: u64, _esr: u64, _far: u64) -> ! {
    // SAFETY: the frame's trap area, filled by the kernel at the fault.
    let trap = unsafe { &mut (*(frame as *mut DispatcherShared)).trap_save };
    trap.pc += 4;
    let _ = dispatcher::resume(trap);
    aos::syscall::exit(3)
}

fn thread_yielder(_: u64) -> i32 {
    while !THREAD_STOP.load(SeqCst) {
        thread::yield_now();
    }
    0
}

/// LMP, dispatcher switches, upcalls and thread switches.
fn dispatchers(ram: CapRef) -> Result<(), ErrorCode> {
    let kids = Children::new(ram, 220 << 20, KIDS_CN, 3, KIDS)?;
    let s = |i: u8| CapRef::slot(KIDS_CN, i);
    let d = |i: u8| Dest::l2(KIDS_CN, u32::from(i));
    let init_disp = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_DISPATCHER as u8);
    cap::retype(init_disp, d(INIT_EP + 10), ObjType::EndPointLmp, 0, 0, 1)?;
    children::mint_ring(s(INIT_EP + 10), d(INIT_EP))?;
    let echo = kids.make(ECHO, "echo", echo_main, 0, stack_top(usize::from(ECHO)))?;
    cap::retype(echo.0, d(ECHO_EP + 10), ObjType::EndPointLmp, 0, 0, 1)?;
    children::mint_ring(s(ECHO_EP + 10), d(ECHO_EP))?;
    echo.make_runnable()?;
    let mut ring = children::init_ring();
    let to_echo = Endpoint(s(ECHO_EP));
    let mut ok = true;
    let mut m = Message::default();
    let to_self = Endpoint(s(INIT_EP));
    for _ in 0..REPS {
        ok &= measure("lmp-send-recv-self", ROUNDS, || {
            (0..ROUNDS).all(|_| to_self.send(&[], 0).is_ok() && ring.recv_into(&mut m))
        });
    }
    for _ in 0..REPS {
        ok &= measure("ipc-round-trip", ROUNDS, || {
            (0..ROUNDS).all(|_| {
                to_echo.send(&[], SEND_DEFAULT).is_ok() && {
                    ring.recv_blocking_into(&mut m);
                    m.len == 0
                }
            })
        });
        ONE_WAY_TICKS.store(0, SeqCst);
        ok &= (0..ROUNDS).all(|_| {
            to_echo.send(&[counter()], SEND_DEFAULT).is_ok() && {
                ring.recv_blocking_into(&mut m);
                m.len == 0
            }
        });
        println!("bench: lmp-one-way {} {ROUNDS}", ONE_WAY_TICKS.load(SeqCst));
    }
    echo.stop()?;

    let yielder = kids.make(YIELDER, "yielder", yielder_main, 0, stack_top(usize::from(YIELDER)))?;
    yielder.make_runnable()?;
    for _ in 0..REPS {
        ok &= measure("yield-to-dispatcher", 2 * ROUNDS, || (0..ROUNDS).all(|_| aos::syscall::yield_now().is_ok()));
    }
    yielder.stop()?;

    let upcalled = kids.make(UPCALLED, "upcalled", upcalled_main, 0, stack_top(usize::from(UPCALLED)))?;
    upcalled.make_runnable()?;
    for _ in 0..REPS {
        ok &=
            measure("yield-to-upcalled-dispatcher", ROUNDS, || (0..ROUNDS).all(|_| aos::syscall::yield_now().is_ok()));
    }
    upcalled.stop()?;

    let faulter = kids.make(FAULTER, "faulter", faulter_main, 0, stack_top(usize::from(FAULTER)))?;
    faulter.make_runnable()?;
    while !FAULTER_DONE.load(SeqCst) {
        let _ = aos::syscall::yield_now();
    }
    ok &= FAULTER_OK.load(SeqCst);

    ok &= thread::init(&THREAD_STACKS).is_ok();
    let t = thread::spawn(thread_yielder, 0);
    ok &= t.is_ok();
    for _ in 0..REPS {
        ok &= measure("thread-switch", 2 * ROUNDS, || {
            (0..ROUNDS).for_each(|_| thread::yield_now());
            true
        });
    }
    THREAD_STOP.store(true, SeqCst);
    ok &= t.is_ok_and(|t| thread::join(t) == Ok(0));
    if ok { Ok(()) } else { Err(ErrorCode::InvalidArgument) }
}
