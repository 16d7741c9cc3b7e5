//! Dispatchers and LMP (CPU driver III): init makes dispatchers of its own
//! from capabilities (sharing its CSpace and address space, each with its
//! own stack and frame) and checks scheduling, stop, activation and
//! upcalls, fault delivery, FP/SIMD state, LMP ping-pong, the full-buffer
//! path and capability transfer. The runner also reads the kernel's
//! report of a child that faults without a handler.

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use aos::cap::{self, CapRef, Dest, ObjType};
use aos::dispatcher::{self, Dispatcher};
use aos::kpi::ErrorCode;
use aos::kpi::cspace::*;
use aos::kpi::dispatcher::DispatcherShared;
use aos::kpi::invocation::DispatcherState;
use aos::lmp::{Endpoint, LMP_WORDS, Message, Ring, SEND_DEFAULT, SEND_SYNC, SEND_YIELD};
use aos::println;
use cpu_driver_programs::alloc0::{A0, d, s};
use cpu_driver_programs::children::{self, ChildStacks, Children, Entry, RING_OFF, init_ring};
use cpu_driver_programs::{Checks, ms};

aos::main!(run);

/// Slots a 2 KiB ring holds (64-byte header, 128-byte slots).
const RING_SLOTS: u64 = 15;

// Children, by index: frame, dispatcher and endpoint slots follow from it.
const SPIN: u8 = 0;
const SELF_STOP: u8 = 1;
const ECHO: u8 = 2;
const UPCALL: u8 = 3;
const FAULT: u8 = 4;
const NO_HANDLER: u8 = 5;
const FP: u8 = 6;
const DOOMED: u8 = 7;
const CHILDREN: u8 = 8;

const fn ep_slot(i: u8) -> u8 {
    children::FREE_SLOTS + i
}
/// An endpoint to init, with init's ring.
const INIT_EP: u8 = 90;
/// Where IrqDest capabilities go.
const IRQ_DEST: u8 = 130;
/// The console UART's registers: an entry of the children's L3 table, far
/// past their frames, and the slot of that mapping.
const UART_ENTRY: u16 = 100;
const FRAMES_VA_UART: u64 = (2 << 39) + UART_ENTRY as u64 * 0x1000;
const UART_MAPPING: u8 = 132;
/// An L2 CNode made to be deleted with last copies inside.
const DOOMED_CN: u8 = 140;
/// Where in the RAM it comes from (past everything else made here).
const DOOMED_CN_OFF: u64 = 0x40000;
/// RAM for a dispatcher whose last capability lies in its own CSpace root,
/// and where that RAM, the root, the dispatcher and its frame go.
const CYCLE_RAM_OFF: u64 = 0x80000;
const CYCLE_RAM: u8 = 141;
const CYCLE_ROOT: u8 = 142;
const CYCLE_DISP: u8 = 143;
const CYCLE_FRAME: u8 = 144;
/// RAM offset and slots for a dispatcher on a VSpace root of its own.
const OWN_VSPACE_OFF: u64 = 0xa0000;
const OWN_VROOT: u8 = 150;
const OWN_L1: u8 = 151;
const OWN_DISP: u8 = 152;
const OWN_FRAME: u8 = 153;
const OWN_L1_MAPPING: u8 = 154;
const OWN_EP: u8 = 155;
/// Where capability transfers land, and their sources.
const RECV: u8 = 100;
const RECV_2: u8 = 101;
const SRC_RAM: u8 = 110;
const SRC_FRAME: u8 = 111;

static STACKS: ChildStacks<{ CHILDREN as usize + 2 }> = ChildStacks::new();

fn stack_top(i: usize) -> u64 {
    STACKS.top(i)
}

// What the children do, seen by init.
static SPIN_COUNT: AtomicU64 = AtomicU64::new(0);
static SELF_STOP_COUNT: AtomicU64 = AtomicU64::new(0);
static UPCALL_COUNT: AtomicU64 = AtomicU64::new(0);
static UPCALL_SAW_DISABLED: AtomicU64 = AtomicU64::new(0);
static UPCALL_BODY: AtomicU64 = AtomicU64::new(0);
static FAULT_ESR: AtomicU64 = AtomicU64::new(0);
static FAULT_FAR: AtomicU64 = AtomicU64::new(0);
static FAULT_DONE: AtomicU64 = AtomicU64::new(0);
static FP_BAD: AtomicU64 = AtomicU64::new(u64::MAX);
static DOOMED_COUNT: AtomicU64 = AtomicU64::new(0);
static DOOMED_QUIT: AtomicU64 = AtomicU64::new(0);

/// The SUPERCN slot of the RAM everything here is made from.
static RAM_SLOT: AtomicU64 = AtomicU64::new(0);

fn ram_cap() -> CapRef {
    CapRef::slot(ROOTCN_SLOT_SUPERCN as u32, RAM_SLOT.load(SeqCst) as u8)
}

/// Where the fault child reads: unmapped (below the lowest user address).
const FAULT_ADDR: u64 = 0x18;

/// Spins (no syscalls) for `ticks` of counter time.
fn spin_for(ticks: u64) {
    let end = aos::time::counter() + ticks;
    while aos::time::counter() < end {
        core::hint::spin_loop();
    }
}

fn shared(va: u64) -> *mut DispatcherShared {
    va as *mut DispatcherShared
}

/// Makes child `i` (see `Children::make`), as a check.
fn make_child(c: &mut Checks, k: &Children, i: u8, name: &str, entry: Entry) -> Dispatcher {
    let made = k.make(i, name, entry, 0, stack_top(usize::from(i)));
    c.ok("make and set up a child dispatcher", made.is_ok(), format_args!("{made:?}"));
    k.dispatcher(i)
}

fn run(args: &aos::Args) -> i32 {
    let mut c = Checks::new("dispatch");
    let Some(bi) = args.bootinfo() else { return 1 };
    let Some(r) = bi.regions().iter().find(|r| r.kind == aos::kpi::bootinfo::RegionKind::Free && r.size >= 8 << 20)
    else {
        println!("dispatch: FAILED no 8 MiB of RAM");
        return 1;
    };
    let ram = CapRef::slot(ROOTCN_SLOT_SUPERCN as u32, r.slot as u8);
    RAM_SLOT.store(u64::from(r.slot), SeqCst);
    let kids = match Children::new(ram, 0, A0, 2, CHILDREN) {
        Ok(k) => k,
        Err(e) => {
            println!("dispatch: FAILED making room for children: {e:?}");
            return 1;
        }
    };
    c.is(
        "retype capabilities to transfer",
        [
            cap::retype(ram, d(SRC_RAM), ObjType::Ram, children::RAM_BYTES, 0x4000, 1),
            cap::retype(ram, d(SRC_FRAME), ObjType::Frame, children::RAM_BYTES + 0x8000, 0x2000, 1),
        ],
        [Ok(1), Ok(1)],
    );

    refusals(&mut c, &kids);
    preemption_and_stop(&mut c, &kids);
    lmp(&mut c, &kids);
    upcalls(&mut c, &kids);
    interrupts(&mut c);
    uart_interrupt(&mut c);
    fp_state(&mut c, &kids);
    teardown(&mut c, &kids);
    last_copies_in_a_deleted_cnode(&mut c, &kids);
    dispatcher_in_its_own_cspace(&mut c);
    vspace_goes_with_dispatcher(&mut c);

    if c.failed == 0 {
        println!("dispatch: all checks passed");
        0
    } else {
        println!("dispatch: {} checks FAILED", c.failed);
        1
    }
}

fn refusals(c: &mut Checks, k: &Children) {
    let disp = k.dispatcher(SPIN);
    let root = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_ROOTCN as u8);
    let vroot = CapRef::slot(ROOTCN_SLOT_PAGECN as u32, PAGECN_SLOT_VROOT as u8);
    c.is("a new dispatcher reports state New", disp.properties().map(|p| p.state), Ok(Some(DispatcherState::New)));
    c.err("make_runnable before setup is refused", disp.make_runnable(), ErrorCode::DispatcherState);
    c.err("stop before setup is refused", disp.stop(), ErrorCode::DispatcherState);
    c.err("setup with a RAM cap as frame", disp.setup(root, vroot, s(SRC_RAM), 0), ErrorCode::WrongCapType);
    c.err("setup with the VSpace as CSpace", disp.setup(vroot, vroot, k.frame(SPIN), 0), ErrorCode::WrongCapType);
    c.err("setup with a CNode as VSpace", disp.setup(root, root, k.frame(SPIN), 0), ErrorCode::WrongCapType);
    c.err("setup naming an empty slot", disp.setup(root, vroot, s(200), 0), ErrorCode::SlotEmpty);
    c.err("dispatcher invocations on a frame", Dispatcher(k.frame(SPIN)).make_runnable(), ErrorCode::WrongCapType);
    c.err("yield to a frame", dispatcher::yield_to(k.frame(SPIN)), ErrorCode::WrongCapType);
    c.is("a refused setup leaves it New", disp.properties().map(|p| p.state), Ok(Some(DispatcherState::New)));
}

extern "C" fn spin_main(_frame: u64, _: u64) -> ! {
    loop {
        SPIN_COUNT.fetch_add(1, SeqCst);
    }
}

extern "C" fn self_stop_main(_frame: u64, _: u64) -> ! {
    SELF_STOP_COUNT.fetch_add(1, SeqCst);
    let me = Children::dispatcher_in(A0, SELF_STOP);
    let _ = me.stop();
    // Runs again only when init makes it runnable.
    loop {
        SELF_STOP_COUNT.fetch_add(1, SeqCst);
    }
}

fn preemption_and_stop(c: &mut Checks, k: &Children) {
    let spin = make_child(c, k, SPIN, "spin", spin_main);
    let setup_again = spin.setup(
        CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_ROOTCN as u8),
        CapRef::slot(ROOTCN_SLOT_PAGECN as u32, PAGECN_SLOT_VROOT as u8),
        k.frame(SPIN),
        k.frame_va(SPIN),
    );
    c.err("a second setup is refused", setup_again, ErrorCode::DispatcherState);
    c.is("after setup the child is Stopped", spin.properties().map(|p| p.state), Ok(Some(DispatcherState::Stopped)));
    c.is("properties report the frame address", spin.properties().map(|p| p.frame_va), Ok(k.frame_va(SPIN)));
    c.is("make the spinning child runnable", spin.make_runnable(), Ok(()));
    c.is("it is Runnable", spin.properties().map(|p| p.state), Ok(Some(DispatcherState::Runnable)));
    // Init spins without a syscall: only the timer can let the child run,
    // and only the timer can bring init back to check.
    let before = SPIN_COUNT.load(SeqCst);
    spin_for(ms(60));
    let during = SPIN_COUNT.load(SeqCst);
    c.ok("a spinning child runs while init spins (preemption)", during > before, format_args!("{before} -> {during}"));
    spin_for(ms(60));
    let later = SPIN_COUNT.load(SeqCst);
    c.ok("and init keeps getting turns too", later > during, format_args!("{during} -> {later}"));

    let y0 = SPIN_COUNT.load(SeqCst);
    c.is("yield to the named child", dispatcher::yield_to(spin.0), Ok(()));
    let y1 = SPIN_COUNT.load(SeqCst);
    c.ok("it ran before init came back", y1 > y0, format_args!("{y0} -> {y1}"));

    c.is("stop the running child", spin.stop(), Ok(()));
    c.is("it is Stopped", spin.properties().map(|p| p.state), Ok(Some(DispatcherState::Stopped)));
    let stopped = SPIN_COUNT.load(SeqCst);
    spin_for(ms(40));
    let _ = aos::syscall::yield_now();
    c.is("a stopped child does not run", SPIN_COUNT.load(SeqCst), stopped);
    c.is("stop twice is fine", spin.stop(), Ok(()));
    c.is("make it runnable again", spin.make_runnable(), Ok(()));
    spin_for(ms(40));
    let resumed = SPIN_COUNT.load(SeqCst);
    c.ok("it continues from where it stopped", resumed > stopped, format_args!("{stopped} -> {resumed}"));
    c.is("stop it for the rest of the run", spin.stop(), Ok(()));

    let me = make_child(c, k, SELF_STOP, "self-stop", self_stop_main);
    c.is("start a child that stops itself", me.make_runnable(), Ok(()));
    let _ = aos::syscall::yield_now();
    spin_for(ms(30));
    c.is("it stopped itself", me.properties().map(|p| p.state), Ok(Some(DispatcherState::Stopped)));
    c.is("after one step", SELF_STOP_COUNT.load(SeqCst), 1);
    c.is("resume the self-stopped child", me.make_runnable(), Ok(()));
    spin_for(ms(30));
    c.ok(
        "its stop call returned and it went on",
        SELF_STOP_COUNT.load(SeqCst) > 1,
        format_args!("{}", SELF_STOP_COUNT.load(SeqCst)),
    );
    c.is("stop it", me.stop(), Ok(()));
}

/// Echo: for a plain message, sends back every word complemented; for one
/// with a capability, the identity of the slot named in word 0.
extern "C" fn echo_main(frame: u64, _: u64) -> ! {
    let mut ring = children::ring(frame);
    let reply = Endpoint(s(INIT_EP));
    loop {
        dispatcher::clear_haswork();
        while let Some(m) = ring.recv() {
            let mut out = [0u64; LMP_WORDS];
            let len = if m.cap {
                match cap::identify(CapRef::from_raw(m.words[0]).unwrap_or(s(255))) {
                    Ok(id) => {
                        out[..3].copy_from_slice(&[id.objtype.map_or(u64::MAX, |t| t as u64), id.base, id.size]);
                        3
                    }
                    Err(e) => {
                        out[0] = u64::MAX - e as u64;
                        1
                    }
                }
            } else {
                for (o, w) in out.iter_mut().zip(m.words()) {
                    *o = !w;
                }
                m.len
            };
            while reply.send(&out[..len], SEND_DEFAULT) == Err(ErrorCode::LmpBufferFull) {
                let _ = aos::syscall::yield_now();
            }
        }
        let _ = dispatcher::wait();
    }
}

fn message(i: u64, len: usize) -> [u64; LMP_WORDS] {
    core::array::from_fn(|j| if j < len { i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (j as u64) << 56 } else { 0 })
}

fn lmp(c: &mut Checks, k: &Children) {
    let init_disp = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_DISPATCHER as u8);
    c.is(
        "an endpoint to init, from its dispatcher",
        cap::retype(init_disp, d(120), ObjType::EndPointLmp, 0, 0, 1),
        Ok(1),
    );
    c.err(
        "an endpoint buffer must end within the bound of any dispatcher frame",
        cap::mint(s(120), d(INIT_EP), 0x1f, Some((RING_OFF as u32, (1 << 20) as u32))),
        ErrorCode::InvalidArgument,
    );
    c.is("mint it with init's ring", children::mint_ring(s(120), d(INIT_EP)), Ok(()));
    c.err("an unminted endpoint has no buffer", Endpoint(s(120)).send(&[1], 0), ErrorCode::LmpBadBuffer);
    let mut ring = init_ring();
    c.is("init's ring holds 15 messages", ring.capacity(), RING_SLOTS);

    // To itself, without a switch: the plain path.
    c.is("send to oneself", Endpoint(s(INIT_EP)).send(&[7, 8, 9], 0), Ok(()));
    let got = ring.recv();
    c.is("and receive it", got.map(|m| (m.len, m.words[..3] == [7, 8, 9], m.cap)), Some((3, true, false)));
    c.is("the ring is empty again", ring.recv(), None);
    c.err("15 words are too many", Endpoint(s(INIT_EP)).send(&[0; 15], 0), ErrorCode::TooLong);
    c.err(
        "a send word with unknown flags",
        cap::invoke_raw(s(INIT_EP).to_raw(), aos::kpi::lmp::send_word(1, 0x80), [0; 5]),
        ErrorCode::InvalidArgument,
    );
    c.err("a send on a frame", Endpoint(s(SRC_FRAME)).send(&[1], 0), ErrorCode::WrongCapType);

    let echo = make_child(c, k, ECHO, "echo", echo_main);
    c.is("an endpoint to echo", cap::retype(echo.0, d(121), ObjType::EndPointLmp, 0, 0, 1), Ok(1));
    c.is("minted with echo's ring", children::mint_ring(s(121), d(ep_slot(ECHO))), Ok(()));
    let to_echo = Endpoint(s(ep_slot(ECHO)));
    c.is("start echo", echo.make_runnable(), Ok(()));
    let _ = aos::syscall::yield_now();
    c.is("with nothing to do, echo waits", echo.properties().map(|p| p.state), Ok(Some(DispatcherState::Waiting)));

    // Ping-pong: every word of every message checked.
    let mut bad = 0u64;
    let mut first_bad = None;
    for i in 0..10_000u64 {
        let len = (i % (LMP_WORDS as u64 + 1)) as usize;
        let msg = message(i, len);
        if to_echo.send(&msg[..len], SEND_DEFAULT).is_err() {
            bad += 1;
            continue;
        }
        let m = ring.recv_blocking();
        let ok = m.len == len && !m.cap && m.words().iter().zip(&msg).all(|(r, w)| *r == !w);
        if !ok {
            bad += 1;
            first_bad.get_or_insert((i, m));
        }
    }
    c.ok("10^4 LMP round trips, every payload intact", bad == 0, format_args!("{bad} bad, first {first_bad:?}"));

    // The yield flags, with the spinner runnable too. A timer tick inside
    // an attempt could reorder things, so of three attempts two must show
    // the expected order; a wrong order shows in every attempt.
    let spin = k.dispatcher(SPIN);
    c.is("the spinner runs again", spin.make_runnable(), Ok(()));
    let mut directed = 0;
    let mut plain = 0;
    for i in 0..3 {
        let before = SPIN_COUNT.load(SeqCst);
        let sent = to_echo.send(&[i], SEND_YIELD | SEND_SYNC).is_ok();
        let answered = ring.pending() == 1;
        directed += u32::from(sent && answered && SPIN_COUNT.load(SeqCst) == before);
        let _ = ring.recv_blocking();
        let sent = to_echo.send(&[i], 0).is_ok();
        plain += u32::from(sent && ring.pending() == 0);
        let _ = ring.recv_blocking();
    }
    c.ok("a directed yield runs the receiver before anyone else", directed >= 2, format_args!("{directed} of 3"));
    c.ok("without a yield flag the sender carries on", plain >= 2, format_args!("{plain} of 3"));
    // Let echo finish and sleep, so the queue is init, then the spinner.
    let _ = aos::syscall::yield_now();
    c.is("echo sleeps again", echo.properties().map(|p| p.state), Ok(Some(DispatcherState::Waiting)));
    let before = SPIN_COUNT.load(SeqCst);
    c.is("an undirected yield", to_echo.send(&[9], SEND_YIELD), Ok(()));
    let after = SPIN_COUNT.load(SeqCst);
    c.ok("lets the next in turn (the spinner) run first", after > before, format_args!("{before} -> {after}"));
    c.is("and the receiver before the sender comes back", ring.pending(), 1);
    let _ = ring.recv_blocking();
    c.is("stop the spinner again", spin.stop(), Ok(()));

    // The full-buffer path: echo stopped, its ring fills, and the send that
    // does not fit changes nothing.
    c.is("stop echo", echo.stop(), Ok(()));
    let echo_ring = k.frame_va(ECHO) + RING_OFF;
    // SAFETY: echo's frame is mapped in this shared address space; its
    // ring header is two words.
    let tail = || unsafe { ((echo_ring + 8) as *const u64).read_volatile() };
    let mut sent = 0;
    let full = loop {
        match to_echo.send(&message(1000 + sent, 14), 0) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        if sent > 100 {
            break ErrorCode::InvalidArgument;
        }
    };
    c.is("a full ring refuses the send as transient", full, ErrorCode::LmpBufferFull);
    c.is("after exactly its capacity", sent, RING_SLOTS);
    let t = tail();
    c.err("the refused send again", to_echo.send(&[1, 2, 3], 0), ErrorCode::LmpBufferFull);
    c.is("and the refusal wrote nothing", tail(), t);
    c.is(
        "echo stays stopped though it has work",
        echo.properties().map(|p| p.state),
        Ok(Some(DispatcherState::Stopped)),
    );
    c.is("restart echo", echo.make_runnable(), Ok(()));
    let mut intact = 0;
    for k in 0..sent {
        let m = ring.recv_blocking();
        let want = message(1000 + k, 14);
        intact += u64::from(m.len == 14 && m.words.iter().zip(&want).all(|(r, w)| *r == !w));
    }
    c.is("every queued message answered, in order", intact, sent);
    c.is("the retry now succeeds", to_echo.send(&[5], SEND_DEFAULT), Ok(()));
    c.is("answered", ring.recv_blocking().words(), &[!5u64][..]);

    // Capability transfer.
    let id_of = |r: CapRef| cap::identify(r).map(|i| (i.objtype.map(|t| t as u64), i.base, i.size));
    c.err(
        "a capability with no receive slot set",
        to_echo.send_cap(&[s(RECV).to_raw()], s(SRC_RAM), SEND_DEFAULT),
        ErrorCode::LmpNoRecvSlot,
    );
    c.is("is not sent", ring.pending(), 0);
    c.is("and stays with the sender", id_of(s(SRC_RAM)).is_ok(), true);
    c.is("echo's receive slot", echo.set_recv_slot(Some(s(SRC_FRAME))), Ok(()));
    c.err(
        "into an occupied slot",
        to_echo.send_cap(&[s(SRC_FRAME).to_raw()], s(SRC_RAM), SEND_DEFAULT),
        ErrorCode::LmpNoRecvSlot,
    );
    c.is("the occupied slot keeps its capability", id_of(s(SRC_FRAME)).map(|t| t.0), Ok(Some(ObjType::Frame as u64)));
    c.err(
        "a receive slot that cannot exist",
        cap::invoke_raw(echo.0.to_raw(), cap::Command::SetRecvSlot as u64, [7 << 32, 0, 0, 0, 0]),
        ErrorCode::BadCapAddr,
    );
    for (name, src, ty) in [
        ("transfer a RAM capability", SRC_RAM, ObjType::Ram),
        ("transfer a Frame capability", SRC_FRAME, ObjType::Frame),
        ("transfer an EndPoint capability", INIT_EP, ObjType::EndPointLmp),
    ] {
        let _ = cap::delete(s(RECV));
        c.is("set echo's receive slot", echo.set_recv_slot(Some(s(RECV))), Ok(()));
        c.is(name, to_echo.send_cap(&[s(RECV).to_raw()], s(src), SEND_DEFAULT), Ok(()));
        let m = ring.recv_blocking();
        let want = id_of(s(src)).map(|(t, b, sz)| [t.unwrap_or(0), b, sz]);
        c.is("echo identified what arrived", Ok::<_, ErrorCode>(m.words[..3].try_into().unwrap_or([0; 3])), want);
        c.is("of the right type", m.words[0], ty as u64);
        c.is("the sender keeps its copy", id_of(s(src)).map(|t| t.0), Ok(Some(ty as u64)));
    }
    c.err(
        "the receive slot is used up by a transfer",
        to_echo.send_cap(&[s(RECV_2).to_raw()], s(SRC_RAM), SEND_DEFAULT),
        ErrorCode::LmpNoRecvSlot,
    );
    // The transferred endpoint works: echo's copy of init's endpoint.
    c.is("send on the endpoint that was transferred", Endpoint(s(RECV)).send(&[42], 0), Ok(()));
    c.is("arrives in init's ring", ring.recv().map(|m| m.words[0]), Some(42));
    c.is("stop echo", echo.stop(), Ok(()));
}

/// Waits for a message for at most `ms` milliseconds of counter time.
fn recv_within(ring: &mut Ring, ms_: u64) -> Option<Message> {
    let end = aos::time::counter() + ms(ms_);
    while aos::time::counter() < end {
        if let Some(m) = ring.recv() {
            return Some(m);
        }
        let _ = aos::syscall::yield_now();
    }
    ring.recv()
}

/// The virtual timer's interrupt, routed to init's endpoint.
fn interrupts(c: &mut Checks) {
    use aos::irq;
    use aos::time::virtual_timer;
    const VTIMER: u32 = 27;
    let table = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_IRQ as u8);
    let mut ring = init_ring();
    c.is("init's ring is empty", ring.pending(), 0);
    c.err("an SGI cannot be routed", irq::connect(table, 5, s(INIT_EP), d(IRQ_DEST)), ErrorCode::InvalidArgument);
    c.err("nor the kernel's own timer", irq::connect(table, 30, s(INIT_EP), d(IRQ_DEST)), ErrorCode::InvalidArgument);
    c.err(
        "nor an interrupt the GIC lacks",
        irq::connect(table, 5000, s(INIT_EP), d(IRQ_DEST)),
        ErrorCode::InvalidArgument,
    );
    c.err("to a frame", irq::connect(table, VTIMER, s(SRC_FRAME), d(IRQ_DEST)), ErrorCode::WrongCapType);
    c.err("to an unminted endpoint", irq::connect(table, VTIMER, s(120), d(IRQ_DEST)), ErrorCode::LmpBadBuffer);
    c.err(
        "with a frame as the table",
        irq::connect(s(SRC_FRAME), VTIMER, s(INIT_EP), d(IRQ_DEST)),
        ErrorCode::WrongCapType,
    );
    let dest = irq::connect(table, VTIMER, s(INIT_EP), d(IRQ_DEST));
    c.ok("route the virtual timer to init's endpoint", dest.is_ok(), format_args!("{dest:?}"));
    let Ok(dest) = dest else { return };
    c.is("the IrqDest capability", cap::identify(dest.0).map(|i| i.objtype), Ok(Some(ObjType::IrqDest)));
    c.err("a second route for it", irq::connect(table, VTIMER, s(INIT_EP), d(IRQ_DEST + 1)), ErrorCode::SlotInUse);
    c.err("ack on a frame", irq::IrqDest(s(SRC_FRAME)).ack(), ErrorCode::WrongCapType);

    let mut got = 0;
    let mut early = 0;
    for _ in 0..5 {
        let armed = aos::time::counter();
        virtual_timer::arm(ms(5));
        let m = ring.recv_blocking();
        early += u64::from(aos::time::counter() < armed + ms(5));
        got += u64::from(m.len == 1 && m.words[0] == u64::from(VTIMER) && !m.cap);
        virtual_timer::disarm();
        let _ = dest.ack();
    }
    c.is("five timer interrupts arrive as messages naming the interrupt", got, 5);
    c.is("none before the timer was due", early, 0);

    virtual_timer::arm(ms(2));
    c.is("an interrupt not yet acknowledged", recv_within(&mut ring, 50).map(|m| m.words[0]), Some(u64::from(VTIMER)));
    virtual_timer::arm(ms(2));
    c.is("stays masked: the next firing is held back", recv_within(&mut ring, 20), None);
    c.is("acknowledge it", dest.ack(), Ok(()));
    c.is("and the held-back one arrives", recv_within(&mut ring, 50).map(|m| m.words[0]), Some(u64::from(VTIMER)));
    virtual_timer::disarm();
    let _ = dest.ack();

    c.is("a copy of the IrqDest", cap::copy(dest.0, d(IRQ_DEST + 1)), Ok(()));
    c.is("delete one copy", cap::delete(dest.0), Ok(()));
    virtual_timer::arm(ms(2));
    c.is("the route stays while a copy does", recv_within(&mut ring, 50).map(|m| m.words[0]), Some(u64::from(VTIMER)));
    virtual_timer::disarm();
    c.is("delete the last copy", cap::delete(s(IRQ_DEST + 1)), Ok(()));
    virtual_timer::arm(ms(2));
    c.is("the route is gone: nothing arrives", recv_within(&mut ring, 30), None);
    virtual_timer::disarm();
    let again = irq::connect(table, VTIMER, s(INIT_EP), d(IRQ_DEST));
    c.ok("the interrupt can be routed again", again.is_ok(), format_args!("{again:?}"));
    if let Ok(again) = again {
        let _ = cap::delete(again.0);
    }
}

/// A device interrupt through the distributor (an SPI): the console UART's
/// transmit interrupt, on qemu-virt, whose PL011 at 0x0900_0000 is SPI 1
/// (INTID 33). The kernel writes the console by polling and never enables
/// the UART's interrupts, so this program owns them. Other boards' UARTs
/// differ: there this prints a note and checks nothing.
fn uart_interrupt(c: &mut Checks) {
    use aos::irq;
    const PL011: u64 = 0x0900_0000;
    const INTID: u32 = 33;
    const IMSC: u64 = 0x38;
    const ICR: u64 = 0x44;
    const TXIM: u32 = 1 << 5;
    const UART_VA: u64 = FRAMES_VA_UART;
    let dev = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_DEV as u8);
    if cap::identify(dev).map(|i| i.base) != Ok(PL011) {
        println!("dispatch: note: no PL011 console here; the SPI route is checked on qemu-virt");
        return;
    }
    let l3 = CapRef::slot(A0, 2);
    c.is("map the console UART's registers", cap::map(l3, dev, UART_ENTRY, 1, 3, 0, d(UART_MAPPING)), Ok(()));
    let reg = |off: u64| (UART_VA + off) as *mut u32;
    let table = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_IRQ as u8);
    let dest = irq::connect(table, INTID, s(INIT_EP), d(IRQ_DEST));
    c.ok("route the UART's SPI to init's endpoint", dest.is_ok(), format_args!("{dest:?}"));
    let Ok(dest) = dest else { return };
    let mut ring = init_ring();
    c.is("nothing arrives while the UART's interrupt is masked", recv_within(&mut ring, 20), None);
    // SAFETY: the UART's registers, mapped as device memory just above;
    // only its interrupt mask is changed, which the kernel does not use.
    unsafe { reg(IMSC).write_volatile(reg(IMSC).read_volatile() | TXIM) };
    println!("dispatch: transmitting with the UART's transmit interrupt enabled");
    let got = recv_within(&mut ring, 50).map(|m| (m.len, m.words[0]));
    // SAFETY: as above: mask it again and clear it.
    unsafe {
        reg(IMSC).write_volatile(reg(IMSC).read_volatile() & !TXIM);
        reg(ICR).write_volatile(TXIM);
    }
    c.is("the UART's interrupt arrives as a message naming SPI 33", got, Some((1, u64::from(INTID))));
    c.is("acknowledge it", dest.ack(), Ok(()));
    println!("dispatch: transmitting with it masked again");
    c.is("masked at the UART, nothing more arrives", recv_within(&mut ring, 20), None);
    c.is("remove the route", cap::delete(dest.0), Ok(()));
    let _ = cap::delete(s(UART_MAPPING));
}

/// Enables upcalls and counts; the run upcall counts and resumes it.
extern "C" fn upcall_main(frame: u64, _: u64) -> ! {
    // SAFETY: this child's own frame, mapped read-write.
    unsafe {
        let f = &mut *shared(frame);
        f.upcall_entry = upcall_entry as *const () as u64;
        f.upcall_stack = stack_top(CHILDREN as usize);
    }
    dispatcher::enable();
    loop {
        UPCALL_BODY.fetch_add(1, SeqCst);
    }
}

extern "C" fn upcall_entry(frame: u64, reason: u64) -> ! {
    if dispatcher::is_disabled() && reason == aos::kpi::dispatcher::UPCALL_RUN {
        UPCALL_SAW_DISABLED.fetch_add(1, SeqCst);
    }
    UPCALL_COUNT.fetch_add(1, SeqCst);
    // SAFETY: the frame's enabled area, which the kernel just filled.
    let e = dispatcher::resume(unsafe { &raw const (*shared(frame)).enabled_save });
    println!("dispatch: FAILED resume returned {e:?}");
    aos::syscall::exit(3)
}

/// Faults with a handler that records and skips the faulting load.
extern "C" fn fault_main(frame: u64, _: u64) -> ! {
    // SAFETY: this child's own frame.
    unsafe {
        let f = &mut *shared(frame);
        f.fault_entry = fault_entry as *const () as u64;
        f.upcall_stack = stack_top(CHILDREN as usize + 1);
    }
    dispatcher::enable();
    // SAFETY: deliberately faults: nothing is mapped at FAULT_ADDR. The
    // handler skips the load, so the value is never used.
    let _ = unsafe { core::ptr::read_volatile(FAULT_ADDR as *const u64) };
    FAULT_DONE.store(1, SeqCst);
    aos::syscall::exit(0)
}

extern "C" fn fault_entry(frame: u64, esr: u64, far: u64) -> ! {
    FAULT_ESR.store(esr, SeqCst);
    FAULT_FAR.store(far, SeqCst);
    // SAFETY: the frame's trap area, filled by the kernel at the fault.
    let trap = unsafe { &mut (*shared(frame)).trap_save };
    trap.pc += 4;
    let e = dispatcher::resume(trap);
    println!("dispatch: FAILED resume returned {e:?}");
    aos::syscall::exit(3)
}

extern "C" fn no_handler_main(_: u64, _: u64) -> ! {
    // SAFETY: deliberately faults with no handler: the kernel ends us.
    let _ = unsafe { core::ptr::read_volatile(FAULT_ADDR as *const u64) };
    aos::syscall::exit(0)
}

fn upcalls(c: &mut Checks, k: &Children) {
    let up = make_child(c, k, UPCALL, "upcall", upcall_main);
    c.is("start a child with a run upcall", up.make_runnable(), Ok(()));
    spin_for(ms(100));
    let b0 = UPCALL_BODY.load(SeqCst);
    spin_for(ms(40));
    let b1 = UPCALL_BODY.load(SeqCst);
    c.is("stop it", up.stop(), Ok(()));
    let n = UPCALL_COUNT.load(SeqCst);
    c.ok("preempted while enabled, it is upcalled", n >= 2, format_args!("{n} upcalls"));
    c.is("with upcalls disabled and reason 'run'", UPCALL_SAW_DISABLED.load(SeqCst), n);
    c.ok("resume returns to the body each time", b1 > b0, format_args!("{b0} -> {b1}"));

    let f = make_child(c, k, FAULT, "fault-handler", fault_main);
    c.is("start a child that faults with a handler", f.make_runnable(), Ok(()));
    spin_for(ms(30));
    c.is("its handler got FAR", FAULT_FAR.load(SeqCst), FAULT_ADDR);
    c.is("and ESR: a data abort from EL0", (FAULT_ESR.load(SeqCst) >> 26) & 0x3f, 0x24);
    c.is("and resumed after the fault", FAULT_DONE.load(SeqCst), 1);
    c.is("then it exited", f.properties().map(|p| p.state), Ok(Some(DispatcherState::Ended)));

    let g = make_child(c, k, NO_HANDLER, "no-handler", no_handler_main);
    c.is("start a child that faults with no handler", g.make_runnable(), Ok(()));
    spin_for(ms(30));
    c.is("the kernel ended it", g.properties().map(|p| p.state), Ok(Some(DispatcherState::Ended)));
    c.err("an ended dispatcher cannot run again", g.make_runnable(), ErrorCode::DispatcherState);
}

/// Fills v0–v31 with a pattern from `seed`, spins across several
/// preemptions, and counts registers that changed.
fn fp_check(seed: u64, rounds: u64) -> u64 {
    #[cfg(target_os = "none")]
    {
        let mut bad = 0u64;
        for _ in 0..rounds {
            let changed: u64;
            // SAFETY: registers only; every clobbered one is declared.
            unsafe {
                core::arch::asm!(
                    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
                    "add x9, {seed}, #\\n",
                    "dup v\\n\\().2d, x9",
                    ".endr",
                    "mov x10, #60000",
                    "1: subs x10, x10, #1",
                    "b.ne 1b",
                    "mov {changed}, #0",
                    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
                    "add x9, {seed}, #\\n",
                    "umov x10, v\\n\\().d[1]",
                    "cmp x9, x10",
                    "cinc {changed}, {changed}, ne",
                    ".endr",
                    seed = in(reg) seed,
                    changed = out(reg) changed,
                    out("x9") _, out("x10") _,
                    out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _, out("v6") _,
                    out("v7") _, out("v8") _, out("v9") _, out("v10") _, out("v11") _, out("v12") _, out("v13") _,
                    out("v14") _, out("v15") _, out("v16") _, out("v17") _, out("v18") _, out("v19") _,
                    out("v20") _, out("v21") _, out("v22") _, out("v23") _, out("v24") _, out("v25") _,
                    out("v26") _, out("v27") _, out("v28") _, out("v29") _, out("v30") _, out("v31") _,
                );
            }
            bad += changed;
        }
        bad
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = (seed, rounds);
        0
    }
}

extern "C" fn fp_main(_: u64, _: u64) -> ! {
    FP_BAD.store(fp_check(0x5000, 400), SeqCst);
    aos::syscall::exit(0)
}

fn fp_state(c: &mut Checks, k: &Children) {
    let fp = make_child(c, k, FP, "fp", fp_main);
    c.is("start a child that checks its FP/SIMD registers", fp.make_runnable(), Ok(()));
    let mine = fp_check(0x1000, 400);
    while FP_BAD.load(SeqCst) == u64::MAX {
        let _ = aos::syscall::yield_now();
    }
    c.is("init's FP/SIMD registers survive the switches", mine, 0);
    c.is("and the child's", FP_BAD.load(SeqCst), 0);
}

fn teardown(c: &mut Checks, k: &Children) {
    let kernel = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_KERNELCAP as u8);
    let echo = k.dispatcher(ECHO);
    c.is("delete echo's last dispatcher capability", cap::delete(echo.0), Ok(()));
    c.err("its endpoints went with it", cap::identify(s(ep_slot(ECHO))), ErrorCode::SlotEmpty);
    c.err("the unminted one too", cap::identify(s(121)), ErrorCode::SlotEmpty);
    c.is("sending to it is impossible now", Endpoint(s(ep_slot(ECHO))).send(&[1], 0), Err(ErrorCode::SlotEmpty));
    let spin = k.dispatcher(SPIN);
    c.is("delete the stopped spinner", cap::delete(spin.0), Ok(()));
    let before = SPIN_COUNT.load(SeqCst);
    spin_for(ms(30));
    c.is("it never runs again", SPIN_COUNT.load(SeqCst), before);
    let ended = k.dispatcher(NO_HANDLER);
    let ram = ram_cap();
    let dcb_off = k.dcb_offset + u64::from(NO_HANDLER) * 0x1000;
    c.err(
        "a dispatcher's memory cannot be retyped while it exists",
        cap::retype(ram, d(200), ObjType::Frame, dcb_off, 0x1000, 1),
        ErrorCode::RetypeOverlap,
    );
    c.is("delete an ended one", cap::delete(ended.0), Ok(()));
    c.is("its memory can be retyped again", cap::retype(ram, d(200), ObjType::Frame, dcb_off, 0x1000, 1), Ok(1));
    let init_disp = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_DISPATCHER as u8);
    c.is("a copy of init's own dispatcher", cap::copy(init_disp, d(201)), Ok(()));
    c.is("deleting a copy is fine", cap::delete(s(201)), Ok(()));
    c.err("init cannot delete its own last dispatcher capability", cap::delete(init_disp), ErrorCode::DispatcherState);
    let checked = cap::debug_check(kernel);
    c.ok("the kernel's capability invariants hold", checked.is_ok(), format_args!("{checked:?}"));
}

/// Counts until told to quit, then exits (so a dispatcher that wrongly
/// survives does not keep the machine running).
extern "C" fn doomed_main(_: u64, _: u64) -> ! {
    while DOOMED_QUIT.load(SeqCst) == 0 {
        DOOMED_COUNT.fetch_add(1, SeqCst);
    }
    aos::syscall::exit(0)
}

/// A CNode whose last copy is deleted takes the last copies inside it
/// with everything their deletion implies: a dispatcher ends, a route goes.
fn last_copies_in_a_deleted_cnode(c: &mut Checks, k: &Children) {
    use aos::irq;
    let kernel = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_KERNELCAP as u8);
    let table = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_IRQ as u8);
    let cn = s(DOOMED_CN);
    let inside = |slot: u32| Dest { cnode: cn, slot };
    c.is("a CNode to delete", cap::retype(ram_cap(), d(DOOMED_CN), ObjType::L2CNode, DOOMED_CN_OFF, 0, 1), Ok(1));
    let doomed = make_child(c, k, DOOMED, "doomed", doomed_main);
    c.is("start a counting child", doomed.make_runnable(), Ok(()));
    spin_for(ms(30));
    c.ok("it counts", DOOMED_COUNT.load(SeqCst) > 0, format_args!("{}", DOOMED_COUNT.load(SeqCst)));
    c.is(
        "its dispatcher's last copy into the CNode",
        [cap::copy(doomed.0, inside(0)), cap::delete(doomed.0)],
        [Ok(()); 2],
    );
    let dest = irq::connect(table, 27, s(INIT_EP), d(IRQ_DEST));
    c.ok("route the virtual timer again", dest.is_ok(), format_args!("{dest:?}"));
    if let Ok(dest) = dest {
        c.is(
            "the IrqDest's last copy into the CNode",
            [cap::copy(dest.0, inside(1)), cap::delete(dest.0)],
            [Ok(()); 2],
        );
    }
    c.is("delete the CNode's last copy", cap::delete(cn), Ok(()));
    let before = DOOMED_COUNT.load(SeqCst);
    spin_for(ms(30));
    let after = DOOMED_COUNT.load(SeqCst);
    c.is("the dispatcher whose last copy went with the CNode never runs again", after, before);
    DOOMED_QUIT.store(1, SeqCst);
    let again = irq::connect(table, 27, s(INIT_EP), d(IRQ_DEST));
    c.ok("the route whose last IrqDest went with the CNode is gone", again.is_ok(), format_args!("{again:?}"));
    if let Ok(again) = again {
        let _ = cap::delete(again.0);
    }
    let checked = cap::debug_check(kernel);
    c.ok("the kernel's capability invariants hold after it", checked.is_ok(), format_args!("{checked:?}"));
}

/// A dispatcher whose last capability lies in its own CSpace root, which
/// it holds the last copy of: a revoke of the RAM both came from ends it.
fn dispatcher_in_its_own_cspace(c: &mut Checks) {
    let kernel = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_KERNELCAP as u8);
    let vroot = CapRef::slot(ROOTCN_SLOT_PAGECN as u32, PAGECN_SLOT_VROOT as u8);
    let ram = s(CYCLE_RAM);
    c.is(
        "RAM, a CSpace root, a dispatcher and a frame from it",
        [
            cap::retype(ram_cap(), d(CYCLE_RAM), ObjType::Ram, CYCLE_RAM_OFF, 0x10000, 1),
            cap::retype(ram, d(CYCLE_ROOT), ObjType::L1CNode, 0, 0x8000, 1),
            cap::retype(ram, d(CYCLE_DISP), ObjType::Dispatcher, 0x8000, 0, 1),
            cap::retype(ram, d(CYCLE_FRAME), ObjType::Frame, 0x9000, 0x1000, 1),
        ],
        [Ok(1); 4],
    );
    let disp = Dispatcher(s(CYCLE_DISP));
    c.is("set it up on that root", disp.setup(s(CYCLE_ROOT), vroot, s(CYCLE_FRAME), 0), Ok(()));
    c.is(
        "its last capability into its root, whose copy goes too",
        [cap::copy(disp.0, Dest { cnode: s(CYCLE_ROOT), slot: 0 }), cap::delete(disp.0), cap::delete(s(CYCLE_ROOT))],
        [Ok(()); 3],
    );
    let revoked = cap::revoke(ram);
    c.ok("revoke the RAM", revoked.is_ok(), format_args!("{revoked:?}"));
    let checked = cap::debug_check(kernel);
    c.ok("the kernel's capability invariants hold after that", checked.is_ok(), format_args!("{checked:?}"));
    c.is(
        "and all of the RAM can be retyped again",
        cap::retype(ram, d(CYCLE_ROOT), ObjType::Frame, 0, 0x10000, 1),
        Ok(1),
    );
}

/// Deleting a dispatcher's last copy while the last copy of its VSpace
/// root, which it holds, still maps a table: the root's entries go with it,
/// with their mapping capabilities, and the dispatcher's endpoints too.
fn vspace_goes_with_dispatcher(c: &mut Checks) {
    let root = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_ROOTCN as u8);
    let at = |off: u64| OWN_VSPACE_OFF + off;
    c.is(
        "a VSpace root with a table mapped, a dispatcher and a frame",
        [
            cap::retype(ram_cap(), d(OWN_VROOT), ObjType::VNodeL0, at(0), 0, 1),
            cap::retype(ram_cap(), d(OWN_L1), ObjType::VNodeL1, at(0x1000), 0, 1),
            cap::retype(ram_cap(), d(OWN_DISP), ObjType::Dispatcher, at(0x2000), 0, 1),
            cap::retype(ram_cap(), d(OWN_FRAME), ObjType::Frame, at(0x3000), 0x1000, 1),
        ],
        [Ok(1); 4],
    );
    c.is("map the table", cap::map(s(OWN_VROOT), s(OWN_L1), 0, 1, 3, 0, d(OWN_L1_MAPPING)), Ok(()));
    let disp = Dispatcher(s(OWN_DISP));
    c.is("set the dispatcher up on that VSpace root", disp.setup(root, s(OWN_VROOT), s(OWN_FRAME), 0), Ok(()));
    c.is("an endpoint to it", cap::retype(disp.0, d(OWN_EP), ObjType::EndPointLmp, 0, 0, 1), Ok(1));
    c.is("its VSpace root's last copy is the one it holds", cap::delete(s(OWN_VROOT)), Ok(()));
    c.is("deleting the dispatcher's last copy takes its VSpace along", cap::delete(disp.0), Ok(()));
    c.err("the table's mapping in it went too", cap::identify(s(OWN_L1_MAPPING)), ErrorCode::SlotEmpty);
    c.is(
        "the VSpace root's memory is free",
        cap::retype(ram_cap(), d(OWN_VROOT), ObjType::VNodeL0, at(0), 0, 1),
        Ok(1),
    );
    let _ = cap::delete(s(OWN_VROOT));
    c.err("with its endpoint", cap::identify(s(OWN_EP)), ErrorCode::SlotEmpty);
}
