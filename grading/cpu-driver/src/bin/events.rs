//! Waitsets on real threads and LMP as an event source (book ch. 5.6):
//! `aos::waitset::rt` checked for what a program can observe. Threads
//! blocked in `event_dispatch` run closures other threads trigger; a child
//! dispatcher's LMP messages run closures in threads blocked in
//! `event_dispatch` while this dispatcher sleeps in `Wait` (the child reads
//! our state before it sends); 1000 messages are handled once each, in
//! order, by a handler that takes one and registers again; events that
//! arrive before registration are kept; waitsets do not take each other's
//! events; and a message wakes its thread while another thread spins.
//! Prints `events: ok NAME` per check.

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

use aos::cap::{self, CapRef, ObjType};
use aos::dispatcher::Dispatcher;
use aos::kpi::ErrorCode;
use aos::kpi::cspace::*;
use aos::kpi::invocation::DispatcherState;
use aos::lmp::{Endpoint, SEND_YIELD};
use aos::println;
use aos::thread::{self, Stacks, Tid};
use aos::waitset::rt::{self, LmpRecv, Waitset};
use aos::waitset::{Closure, SourceState};
use cpu_driver_programs::Checks;
use cpu_driver_programs::alloc0::{A0, d, s};
use cpu_driver_programs::children::{self, ChildStacks, Children, init_ring};

aos::main!(run);

/// The child that sends, and the endpoint to init it sends on.
const SENDER: u8 = 0;
const INIT_EP_RAW: u8 = children::FREE_SLOTS;
const INIT_EP: u8 = children::FREE_SLOTS + 1;
/// Messages of the in-order batch.
const BATCH: u64 = 1000;

static STACKS: Stacks<8> = Stacks::new();

static CHILD_STACK: ChildStacks<1> = ChildStacks::new();

// The child's script: it runs step `n` once `GO` reaches `n`, then sets
// `DONE` to `n`. Steps that wait first until init's dispatcher reports
// `Waiting` count that in `SAW_WAITING`.
static GO: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static SAW_WAITING: AtomicU64 = AtomicU64::new(0);
static SEND_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Steps of the child's script, and the first word of the messages each
/// sends.
const STEP_WAKE: u64 = 1;
const STEP_BATCH: u64 = 2;
const STEP_EARLY: u64 = 3;
const STEP_OTHER_WS: u64 = 4;
const STEP_SPIN: u64 = 5;

fn send(to: Endpoint, words: &[u64], flags: u64) {
    loop {
        match to.send(words, flags) {
            Ok(()) => return,
            Err(ErrorCode::LmpBufferFull) => {
                let _ = aos::syscall::yield_now();
            }
            Err(_) => {
                SEND_ERRORS.fetch_add(1, SeqCst);
                return;
            }
        }
    }
}

/// Yields until init's dispatcher sleeps in `Wait`; counts that it saw it.
fn until_init_waits() {
    let init = Dispatcher(CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_DISPATCHER as u8));
    for _ in 0..1_000_000 {
        if init.properties().map(|p| p.state) == Ok(Some(DispatcherState::Waiting)) {
            SAW_WAITING.fetch_add(1, SeqCst);
            return;
        }
        let _ = aos::syscall::yield_now();
    }
}

extern "C" fn sender_main(_frame: u64, _: u64) -> ! {
    let to_init = Endpoint(s(INIT_EP));
    let mut step = 0;
    loop {
        while GO.load(SeqCst) <= step {
            let _ = aos::syscall::yield_now();
        }
        step += 1;
        match step {
            STEP_WAKE | STEP_OTHER_WS => {
                until_init_waits();
                send(to_init, &[step, 0xe0 + step], SEND_YIELD);
            }
            // No yield: the ring fills, so init's handler finds messages
            // left behind nearly every time.
            STEP_BATCH => (0..BATCH).for_each(|i| send(to_init, &[step, i], 0)),
            STEP_EARLY | STEP_SPIN => send(to_init, &[step, 0xe0 + step], 0),
            _ => {}
        }
        DONE.store(step, SeqCst);
    }
}

/// Per closure argument: the thread that ran it (raw id + 1, 0 if none)
/// and how often it ran.
const ARGS: usize = 64;
static RAN_BY: [AtomicU64; ARGS] = [const { AtomicU64::new(0) }; ARGS];
static RUNS: [AtomicU64; ARGS] = [const { AtomicU64::new(0) }; ARGS];

fn record(arg: usize) {
    let me = thread::current().map_or(0, |t| u64::from(t.to_raw()) + 1);
    RAN_BY[arg % ARGS].store(me, SeqCst);
    RUNS[arg % ARGS].fetch_add(1, SeqCst);
}

fn ran_in(arg: usize) -> Option<Tid> {
    match RAN_BY[arg].load(SeqCst) {
        0 => None,
        n => Some(Tid::from_raw((n - 1) as u32)),
    }
}

fn runs(arg: usize) -> u64 {
    RUNS[arg].load(SeqCst)
}

static WS_A: Waitset = Waitset::new();
static WS_B: Waitset = Waitset::new();

fn waitset(i: u64) -> &'static Waitset {
    match i {
        0 => rt::default_waitset(),
        1 => &WS_A,
        _ => &WS_B,
    }
}

/// A thread that dispatches one event on waitset `i` and exits: 0 if it
/// did.
fn dispatch_once(i: u64) -> i32 {
    match waitset(i).event_dispatch() {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Yields until `n` threads are blocked on `ws` (or gives up).
fn until_blocked(ws: &Waitset, n: usize) -> bool {
    for _ in 0..1000 {
        if ws.blocked() == Ok(n) {
            return true;
        }
        thread::yield_now();
    }
    false
}

fn run(args: &aos::Args) -> i32 {
    let mut c = Checks::new("events");
    let main = thread::init(&STACKS);
    c.ok("the thread runtime starts", main.is_ok(), format_args!("{main:?}"));
    if main.is_err() {
        return 1;
    }
    triggers_between_threads(&mut c);
    event_before_registration(&mut c);
    two_waitsets(&mut c);
    let Some(kids) = start_sender(&mut c, args) else { return 1 };
    let ring = init_ring();
    let bound = RX.bind(ring, rt::default_waitset());
    c.ok("bind init's ring to the default waitset", bound.is_ok(), format_args!("{bound:?}"));
    lmp_wakes_a_blocked_thread(&mut c);
    lmp_batch_in_order(&mut c);
    lmp_before_registration(&mut c);
    lmp_to_one_waitset_only(&mut c);
    lmp_while_another_thread_spins(&mut c);
    c.ok("unbind the ring", RX.unbind().is_ok(), format_args!(""));
    c.is("the child's sends all succeeded", SEND_ERRORS.load(SeqCst), 0);
    c.is("stop the child", kids.dispatcher(SENDER).stop(), Ok(()));

    if c.failed == 0 {
        println!("events: all checks passed");
        0
    } else {
        println!("events: {} checks FAILED", c.failed);
        1
    }
}

fn triggers_between_threads(c: &mut Checks) {
    let Ok(id) = WS_A.add_source() else {
        c.ok("add a source", false, format_args!("refused"));
        return;
    };
    c.is("register a closure", WS_A.register(id, Closure::new(record, 1)), Ok(()));
    c.is("with nothing pending, non-blocking dispatch runs nothing", WS_A.event_dispatch_non_block(), Ok(false));
    let t = thread::spawn(dispatch_once, 1);
    c.ok("a thread blocks in event_dispatch", until_blocked(&WS_A, 1), format_args!("{:?}", WS_A.blocked()));
    c.is("and runs nothing before the trigger", runs(1), 0);
    c.is("another thread triggers the source", WS_A.trigger(id), Ok(()));
    c.is("the blocked thread wakes, runs the closure and returns", t.map(thread::join), Ok(Ok(0)));
    c.ok(
        "the closure ran once, in the thread that was blocked",
        runs(1) == 1 && t.is_ok_and(|t| ran_in(1) == Some(t)),
        format_args!("{} runs, in {:?}, want {t:?}", runs(1), ran_in(1)),
    );
    c.is("one-shot: the source is idle again", WS_A.state(id), Ok(SourceState::Idle));
    let _ = WS_A.remove_source(id);
}

fn event_before_registration(c: &mut Checks) {
    let Ok(id) = WS_A.add_source() else {
        c.ok("add a source", false, format_args!("refused"));
        return;
    };
    c.is("trigger a source with no closure", WS_A.trigger(id), Ok(()));
    c.is("the event is latched", WS_A.state(id), Ok(SourceState::Latched));
    c.is("register after the event", WS_A.register(id, Closure::new(record, 2)), Ok(()));
    c.is("the source is pending at once", WS_A.state(id), Ok(SourceState::Pending));
    c.is("an early event is not lost: dispatch runs its closure", WS_A.event_dispatch_non_block(), Ok(true));
    c.is("once", (runs(2), WS_A.event_dispatch_non_block()), (1, Ok(false)));
    let _ = WS_A.remove_source(id);
}

fn two_waitsets(c: &mut Checks) {
    let (Ok(a), Ok(b)) = (WS_A.add_source(), WS_B.add_source()) else {
        c.ok("add sources", false, format_args!("refused"));
        return;
    };
    let _ = WS_A.register(a, Closure::new(record, 3));
    let _ = WS_B.register(b, Closure::new(record, 4));
    let ta = thread::spawn(dispatch_once, 1);
    let tb = thread::spawn(dispatch_once, 2);
    let both = until_blocked(&WS_A, 1) && until_blocked(&WS_B, 1);
    c.ok("a thread blocks on each of two waitsets", both, format_args!("{:?} {:?}", WS_A.blocked(), WS_B.blocked()));
    c.is("trigger the second waitset's source", WS_B.trigger(b), Ok(()));
    c.is("its thread returns", tb.map(thread::join), Ok(Ok(0)));
    c.ok(
        "having run the closure",
        runs(4) == 1 && tb.is_ok_and(|t| ran_in(4) == Some(t)),
        format_args!("{} runs in {:?}", runs(4), ran_in(4)),
    );
    (0..20).for_each(|_| thread::yield_now());
    c.is("the other waitset's thread stays blocked, its closure not run", (WS_A.blocked(), runs(3)), (Ok(1), 0));
    c.is("trigger the first", WS_A.trigger(a), Ok(()));
    c.is("its thread runs its own closure", (ta.map(thread::join), runs(3), ran_in(3).is_some()), (Ok(Ok(0)), 1, true));
    let _ = (WS_A.remove_source(a), WS_B.remove_source(b));
}

/// Makes the sending child with an endpoint to init's ring, and starts it.
fn start_sender(c: &mut Checks, args: &aos::Args) -> Option<Children> {
    let bi = args.bootinfo()?;
    let r = bi.regions().iter().find(|r| r.kind == aos::kpi::bootinfo::RegionKind::Free && r.size >= 8 << 20)?;
    let ram = CapRef::slot(ROOTCN_SLOT_SUPERCN as u32, r.slot as u8);
    let kids = Children::new(ram, 0, A0, 2, 1);
    c.ok("make room for a child dispatcher", kids.is_ok(), format_args!("{:?}", kids.as_ref().err()));
    let kids = kids.ok()?;
    let init_disp = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_DISPATCHER as u8);
    c.is("an endpoint to init", cap::retype(init_disp, d(INIT_EP_RAW), ObjType::EndPointLmp, 0, 0, 1), Ok(1));
    c.is("minted with init's ring", children::mint_ring(s(INIT_EP_RAW), d(INIT_EP)), Ok(()));
    let made = kids.make(SENDER, "sender", sender_main, 0, CHILD_STACK.top(0));
    c.ok("make the sending child", made.is_ok(), format_args!("{made:?}"));
    c.is("start it", kids.dispatcher(SENDER).make_runnable(), Ok(()));
    Some(kids)
}

static RX: LmpRecv = LmpRecv::new();

/// The words of the last message a handler took.
static LAST: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// Takes one message, records it and the thread (as `record(arg)`).
fn take_one(arg: usize) {
    if let Ok(Some(m)) = RX.recv() {
        LAST[0].store(m.words[0], SeqCst);
        LAST[1].store(m.words[1], SeqCst);
    }
    record(arg);
}

fn last() -> [u64; 2] {
    [LAST[0].load(SeqCst), LAST[1].load(SeqCst)]
}

fn lmp_wakes_a_blocked_thread(c: &mut Checks) {
    c.is("register a receive handler", RX.register(Closure::new(take_one, 10)), Ok(()));
    let t = thread::spawn(dispatch_once, 0);
    GO.store(STEP_WAKE, SeqCst);
    // Main blocks too: every thread waits, and the dispatcher sleeps.
    c.is("a thread blocked in event_dispatch returns after the child's message", t.map(thread::join), Ok(Ok(0)));
    c.is("the child saw this dispatcher Waiting before it sent", SAW_WAITING.load(SeqCst), 1);
    c.ok(
        "the handler ran once, in that thread, and took the message",
        runs(10) == 1 && t.is_ok_and(|t| ran_in(10) == Some(t)) && last() == [STEP_WAKE, 0xe0 + STEP_WAKE],
        format_args!("{} runs in {:?} (want {t:?}), took {:?}", runs(10), ran_in(10), last()),
    );
}

static NEXT: AtomicU64 = AtomicU64::new(0);
static OUT_OF_ORDER: AtomicU64 = AtomicU64::new(0);
static LEFT_BEHIND: AtomicU64 = AtomicU64::new(0);
static EMPTY_RUNS: AtomicU64 = AtomicU64::new(0);
static REREGISTER_FAILED: AtomicBool = AtomicBool::new(false);

/// Takes exactly one message, checks its place in the batch, and registers
/// again, leaving any others in the ring.
fn batch_handler(_: usize) {
    match RX.recv() {
        Ok(Some(m)) if m.words[0] == STEP_BATCH && m.words[1] == NEXT.load(SeqCst) => {
            NEXT.fetch_add(1, SeqCst);
        }
        Ok(Some(_)) => {
            OUT_OF_ORDER.fetch_add(1, SeqCst);
        }
        _ => {
            EMPTY_RUNS.fetch_add(1, SeqCst);
        }
    }
    if RX.pending().is_ok_and(|n| n > 0) {
        LEFT_BEHIND.fetch_add(1, SeqCst);
    }
    if NEXT.load(SeqCst) < BATCH && RX.register(Closure::new(batch_handler, 0)).is_err() {
        REREGISTER_FAILED.store(true, SeqCst);
    }
}

fn dispatch_batch(_: u64) -> i32 {
    let ws = rt::default_waitset();
    while NEXT.load(SeqCst) < BATCH && !REREGISTER_FAILED.load(SeqCst) && OUT_OF_ORDER.load(SeqCst) == 0 {
        if ws.event_dispatch().is_err() {
            return 1;
        }
    }
    0
}

fn lmp_batch_in_order(c: &mut Checks) {
    let _ = RX.register(Closure::new(batch_handler, 0));
    let t = thread::spawn(dispatch_batch, 0);
    GO.store(STEP_BATCH, SeqCst);
    c.is("a dispatch loop in a thread ends", t.map(thread::join), Ok(Ok(0)));
    let (next, bad) = (NEXT.load(SeqCst), OUT_OF_ORDER.load(SeqCst));
    c.ok(
        "1000 messages handled once each, in order, one per handler run",
        next == BATCH && bad == 0 && !REREGISTER_FAILED.load(SeqCst),
        format_args!("{next} in order, {bad} out of order, re-register failed {}", REREGISTER_FAILED.load(SeqCst)),
    );
    let (left, empty) = (LEFT_BEHIND.load(SeqCst), EMPTY_RUNS.load(SeqCst));
    println!("events: batch: {left} handler runs left messages behind, {empty} found the ring empty");
    c.ok("handlers that left messages behind ran again", left > 0, format_args!("never left any"));
    c.is("and none ran for an empty ring", empty, 0);
    for _ in 0..100_000 {
        if DONE.load(SeqCst) >= STEP_BATCH {
            break;
        }
        let _ = aos::syscall::yield_now();
    }
    c.is(
        "the child finished the batch and nothing extra arrived",
        (DONE.load(SeqCst), RX.pending()),
        (STEP_BATCH, Ok(0)),
    );
}

fn lmp_before_registration(c: &mut Checks) {
    GO.store(STEP_EARLY, SeqCst);
    // No handler registered: let the child run until its message is in.
    for _ in 0..100_000 {
        if RX.pending().is_ok_and(|n| n > 0) {
            break;
        }
        let _ = aos::syscall::yield_now();
    }
    let id = RX.source();
    c.is("a message arrives while no handler is registered", RX.pending(), Ok(1));
    c.is(
        "its source is idle: the ring holds the event",
        id.and_then(|id| rt::default_waitset().state(id)),
        Ok(SourceState::Idle),
    );
    c.is("register after it came", RX.register(Closure::new(take_one, 11)), Ok(()));
    c.is("the source is pending at once", id.and_then(|id| rt::default_waitset().state(id)), Ok(SourceState::Pending));
    c.is("event_dispatch runs the handler without blocking", rt::default_waitset().event_dispatch(), Ok(()));
    c.is("on the early message", (runs(11), last()), (1, [STEP_EARLY, 0xe0 + STEP_EARLY]));
}

fn lmp_to_one_waitset_only(c: &mut Checks) {
    let Ok(a) = WS_A.add_source() else {
        c.ok("add a source", false, format_args!("refused"));
        return;
    };
    let _ = WS_A.register(a, Closure::new(record, 20));
    let ta = thread::spawn(dispatch_once, 1);
    let _ = RX.register(Closure::new(take_one, 21));
    let tl = thread::spawn(dispatch_once, 0);
    c.ok(
        "one thread blocks on another waitset, one on the LMP source's",
        until_blocked(&WS_A, 1) && until_blocked(rt::default_waitset(), 1),
        format_args!(""),
    );
    GO.store(STEP_OTHER_WS, SeqCst);
    c.is("the LMP source's thread returns after the child's message", tl.map(thread::join), Ok(Ok(0)));
    c.is("the child saw this dispatcher Waiting again", SAW_WAITING.load(SeqCst), 2);
    c.ok(
        "its handler ran there, on the message",
        runs(21) == 1 && tl.is_ok_and(|t| ran_in(21) == Some(t)) && last() == [STEP_OTHER_WS, 0xe0 + STEP_OTHER_WS],
        format_args!("{} runs in {:?}, took {:?}", runs(21), ran_in(21), last()),
    );
    c.is("the other waitset's thread stays blocked", (WS_A.blocked(), runs(20)), (Ok(1), 0));
    let _ = WS_A.trigger(a);
    c.is("until its own source is triggered", (ta.map(thread::join), runs(20)), (Ok(Ok(0)), 1));
    let _ = WS_A.remove_source(a);
}

static SPIN_STOP: AtomicBool = AtomicBool::new(false);

/// Spins without a thread call until the handler has run or 2 s passed;
/// 0 if the handler stopped it.
fn spinner(_: u64) -> i32 {
    let end = aos::time::counter() + aos::time::frequency() * 2;
    while !SPIN_STOP.load(SeqCst) {
        if aos::time::counter() > end {
            return 1;
        }
    }
    0
}

fn stop_spinner(arg: usize) {
    take_one(arg);
    SPIN_STOP.store(true, SeqCst);
}

fn lmp_while_another_thread_spins(c: &mut Checks) {
    let _ = RX.register(Closure::new(stop_spinner, 30));
    let tl = thread::spawn(dispatch_once, 0);
    let _ = until_blocked(rt::default_waitset(), 1);
    let spin = thread::spawn(spinner, 0);
    GO.store(STEP_SPIN, SeqCst);
    c.is(
        "a message wakes its thread while another thread spins (the run upcall polls)",
        spin.map(thread::join),
        Ok(Ok(0)),
    );
    c.is(
        "the handler ran once on it",
        (tl.map(thread::join), runs(30), last()),
        (Ok(Ok(0)), 1, [STEP_SPIN, 0xe0 + STEP_SPIN]),
    );
}
