//! User-level threads on one dispatcher (book ch. 4.12–4.16): the runtime's
//! spawn, join, exit, detach, mutex, condition variable, thread-local words
//! and context switch, each checked for what a program can observe; then
//! preemption by the run upcall, with threads that never yield. Prints
//! `threads: ok NAME` per check.

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};

use aos::println;
use aos::thread::{self, Condvar, Mutex, Stacks, ThreadError, Tid};
use cpu_driver_programs::{Checks, ms};

aos::main!(run);

/// Room for 100 threads at once and a few more.
const POOL: usize = 104;
static STACKS: Stacks<POOL> = Stacks::new();

/// A thread's result that turns a refused call into a code no check wants.
fn code(r: Result<i32, ThreadError>) -> i32 {
    r.unwrap_or(-1000)
}

fn run(_: &aos::Args) -> i32 {
    let mut c = Checks::new("threads");
    let main = thread::init(&STACKS);
    c.ok("init makes the caller thread 0", main.is_ok_and(|t| t.index() == 0), format_args!("{main:?}"));
    if main.is_err() {
        return 1;
    }
    c.is("init a second time is refused", thread::init(&STACKS), Err(ThreadError::AlreadyStarted));
    c.is("current() is the main thread", thread::current(), main);

    create_and_join(&mut c);
    join_rules(&mut c);
    exhaust_and_detach(&mut c);
    mutex_contention(&mut c);
    mutex_rules(&mut c);
    bounded_buffer(&mut c);
    tls(&mut c);
    fp_registers(&mut c);
    preemption_between_threads(&mut c);
    mutex_without_yields(&mut c);
    registers_survive_preemption(&mut c);
    tls_survives_preemption(&mut c);

    if c.failed == 0 {
        println!("threads: all checks passed");
        0
    } else {
        println!("threads: {} checks failed", c.failed);
        1
    }
}

fn yields_then_returns(arg: u64) -> i32 {
    thread::yield_now();
    (arg * 3 + 1) as i32
}

fn create_and_join(c: &mut Checks) {
    let mut tids = [None; 100];
    for (i, t) in tids.iter_mut().enumerate() {
        *t = thread::spawn(yields_then_returns, i as u64).ok();
    }
    let created = tids.iter().filter(|t| t.is_some()).count();
    c.is("100 threads created at once", created, 100);
    let mut wrong = 0;
    for (i, t) in tids.iter().enumerate() {
        if t.map(thread::join) != Some(Ok(i as i32 * 3 + 1)) {
            wrong += 1;
        }
    }
    c.is("100 threads joined, each with its own exit code", wrong, 0);
}

static EXITED_EARLY: AtomicBool = AtomicBool::new(false);

fn exits_at_once(_: u64) -> i32 {
    EXITED_EARLY.store(true, Relaxed);
    7
}

fn exits_from_deep_inside(arg: u64) -> i32 {
    fn deeper(n: u64) -> i32 {
        if n == 0 {
            thread::exit(42)
        }
        deeper(n - 1) + 1
    }
    deeper(arg)
}

fn joins_itself(_: u64) -> i32 {
    match thread::current() {
        Ok(me) => match thread::join(me) {
            Err(ThreadError::JoinSelf) => 0,
            _ => 1,
        },
        Err(_) => 2,
    }
}

fn join_rules(c: &mut Checks) {
    let t = thread::spawn(exits_at_once, 0);
    for _ in 0..10 {
        if EXITED_EARLY.load(Relaxed) {
            break;
        }
        thread::yield_now();
    }
    c.ok("a spawned thread ran and exited before anyone joined it", EXITED_EARLY.load(Relaxed), format_args!(""));
    let t = t.unwrap_or(Tid::from_raw(u32::MAX));
    c.is("join of an already-exited thread returns its code", thread::join(t), Ok(7));
    c.is("join of a stale Tid (joined already) is refused", thread::join(t), Err(ThreadError::NoSuchThread));
    c.is(
        "a Tid that never named a thread is refused",
        thread::join(Tid::from_raw(u32::MAX)),
        Err(ThreadError::NoSuchThread),
    );
    let me = thread::current().unwrap_or(Tid::from_raw(u32::MAX));
    c.is("the main thread cannot join itself", thread::join(me), Err(ThreadError::JoinSelf));
    let t = thread::spawn(joins_itself, 0).map(thread::join);
    c.is("a spawned thread cannot join itself", t, Ok(Ok(0)));
    let t = thread::spawn(exits_from_deep_inside, 5).map(thread::join);
    c.is("thread::exit deep in a call chain ends the thread with its code", t, Ok(Ok(42)));
    c.is("tls index past TLS_WORDS is refused", thread::tls_get(thread::TLS_WORDS), Err(ThreadError::BadTlsIndex));
}

static DETACHED_RAN: AtomicU64 = AtomicU64::new(0);

fn counts(_: u64) -> i32 {
    DETACHED_RAN.fetch_add(1, Relaxed);
    0
}

fn exhaust_and_detach(c: &mut Checks) {
    let mut tids = [None; POOL + 1];
    let mut n = 0;
    let mut last = Ok(Tid::from_raw(0));
    while n < tids.len() {
        last = thread::spawn(yields_then_returns, 0);
        match last {
            Ok(t) => tids[n] = Some(t),
            Err(_) => break,
        }
        n += 1;
    }
    c.ok(
        "spawning past the stack pool is refused with NoStack",
        n == POOL && last == Err(ThreadError::NoStack),
        format_args!("{n} threads, then {last:?}"),
    );
    let joined = tids.iter().flatten().filter(|&&t| thread::join(t) == Ok(1)).count();
    c.is("and every one of them joins", joined, n);

    // Three times the pool, one at a time: only works if an exited detached
    // thread's stack comes back.
    let mut spawned = 0;
    let mut join_refused = true;
    for _ in 0..3 * POOL {
        let Ok(t) = thread::spawn(counts, 0) else { break };
        spawned += 1;
        join_refused &= thread::detach(t).is_ok() && thread::join(t) == Err(ThreadError::Detached);
        thread::yield_now();
    }
    c.is("detached threads free their stacks at exit (3x the pool, one at a time)", spawned, 3 * POOL);
    c.is("every detached thread ran", DETACHED_RAN.load(Relaxed), 3 * POOL as u64);
    c.ok("joining a detached thread is refused", join_refused, format_args!(""));
}

static COUNTER: Mutex<u64> = Mutex::new(0);
/// Lock attempts so far, by every thread: a change seen inside the critical
/// section means another thread ran there.
static ATTEMPTS: AtomicU64 = AtomicU64::new(0);
static INTERLEAVED: AtomicU64 = AtomicU64::new(0);
static HOLDER: AtomicU64 = AtomicU64::new(0);
static INTRUSIONS: AtomicU64 = AtomicU64::new(0);
const INCREMENTS: u64 = 1000;

fn increments(arg: u64) -> i32 {
    for _ in 0..INCREMENTS {
        ATTEMPTS.fetch_add(1, Relaxed);
        let Ok(mut g) = COUNTER.lock() else { return -1 };
        HOLDER.store(arg + 1, Relaxed);
        let seen = ATTEMPTS.load(Relaxed);
        // Read, let others run, write back: a lost update if they got in.
        let v = *g;
        thread::yield_now();
        *g = v + 1;
        if ATTEMPTS.load(Relaxed) != seen {
            INTERLEAVED.fetch_add(1, Relaxed);
        }
        if HOLDER.load(Relaxed) != arg + 1 {
            INTRUSIONS.fetch_add(1, Relaxed);
        }
        if g.unlock().is_err() {
            return -2;
        }
    }
    0
}

fn mutex_contention(c: &mut Checks) {
    let mut tids = [None; 100];
    for (i, t) in tids.iter_mut().enumerate() {
        *t = thread::spawn(increments, i as u64).ok();
    }
    let ok = tids.iter().filter(|t| t.map(thread::join) == Some(Ok(0))).count();
    c.is("100 threads each add 1000 under the mutex, yielding inside", ok, 100);
    let total = COUNTER.lock().map(|g| *g);
    c.is("the count is exact", total, Ok(100 * INCREMENTS));
    let n = INTERLEAVED.load(Relaxed);
    c.ok("yields inside the critical section ran other threads", n > 0, format_args!("never interleaved"));
    c.is("and none of them got into the critical section", INTRUSIONS.load(Relaxed), 0);
}

static HELD: Mutex<()> = Mutex::new(());

fn tries_held(_: u64) -> i32 {
    match HELD.try_lock() {
        Ok(None) => 0,
        Ok(Some(_)) => 1,
        Err(_) => 2,
    }
}

fn mutex_rules(c: &mut Checks) {
    let g = HELD.lock();
    c.ok("lock of a free mutex", g.is_ok(), format_args!("{:?}", g.as_ref().err()));
    c.is("locking it again from its owner is refused", HELD.lock().err(), Some(ThreadError::AlreadyOwner));
    let t = thread::spawn(tries_held, 0).map(thread::join);
    c.is("try_lock of a held mutex from another thread fails without blocking", t, Ok(Ok(0)));
    drop(g);
    let again = HELD.try_lock().map(|g| g.is_some());
    c.is("after the guard drops, try_lock succeeds", again, Ok(true));
}

const CAP: usize = 4;
const PRODUCERS: u64 = 4;
const CONSUMERS: u64 = 5;
const PER_PRODUCER: u64 = 250;
const ITEMS: u64 = PRODUCERS * PER_PRODUCER;

struct Ring {
    buf: [u64; CAP],
    head: usize,
    len: usize,
}

static RING: Mutex<Ring> = Mutex::new(Ring { buf: [0; CAP], head: 0, len: 0 });
static NOT_FULL: Condvar = Condvar::new();
static NOT_EMPTY: Condvar = Condvar::new();
static SEEN: [AtomicU8; ITEMS as usize] = [const { AtomicU8::new(0) }; ITEMS as usize];
static CONSUMED_SUM: AtomicU64 = AtomicU64::new(0);
static OVERFLOWS: AtomicU64 = AtomicU64::new(0);

fn producer(p: u64) -> i32 {
    code((|| {
        for k in 0..PER_PRODUCER {
            let item = p * PER_PRODUCER + k;
            let mut g = RING.lock()?;
            while g.len == CAP {
                g = NOT_FULL.wait(g)?;
            }
            let at = (g.head + g.len) % CAP;
            g.buf[at] = item;
            g.len += 1;
            NOT_EMPTY.signal();
            drop(g);
            if k % 3 == 0 {
                thread::yield_now();
            }
        }
        Ok(0)
    })())
}

fn consumer(_: u64) -> i32 {
    code((|| {
        for k in 0..ITEMS / CONSUMERS {
            let mut g = RING.lock()?;
            while g.len == 0 {
                g = NOT_EMPTY.wait(g)?;
            }
            let item = g.buf[g.head];
            g.head = (g.head + 1) % CAP;
            g.len -= 1;
            NOT_FULL.signal();
            drop(g);
            match SEEN.get(item as usize) {
                Some(s) => {
                    s.fetch_add(1, Relaxed);
                }
                None => {
                    OVERFLOWS.fetch_add(1, Relaxed);
                }
            }
            CONSUMED_SUM.fetch_add(item + 1, Relaxed);
            if k % 2 == 0 {
                thread::yield_now();
            }
        }
        Ok(0)
    })())
}

fn bounded_buffer(c: &mut Checks) {
    let mut tids = [None; (PRODUCERS + CONSUMERS) as usize];
    // Consumers first, so they find the buffer empty and wait.
    for (i, t) in tids.iter_mut().enumerate() {
        let i = i as u64;
        *t = if i < CONSUMERS { thread::spawn(consumer, i) } else { thread::spawn(producer, i - CONSUMERS) }.ok();
    }
    let ok = tids.iter().filter(|t| t.map(thread::join) == Some(Ok(0))).count();
    c.is("bounded buffer: 4 producers and 5 consumers all finish", ok, (PRODUCERS + CONSUMERS) as usize);
    let once = SEEN.iter().filter(|s| s.load(Relaxed) == 1).count() as u64;
    c.ok(
        "every item was consumed exactly once",
        once == ITEMS && OVERFLOWS.load(Relaxed) == 0,
        format_args!("{once} of {ITEMS} once, {} out of range", OVERFLOWS.load(Relaxed)),
    );
    c.is("the consumed checksum matches the produced one", CONSUMED_SUM.load(Relaxed), ITEMS * (ITEMS + 1) / 2);
    let left = RING.lock().map(|g| g.len);
    c.is("and the buffer is empty", left, Ok(0));
}

/// Sets every TLS word to a value of its own, yields, and checks they stayed
/// (other threads set theirs meanwhile). 0 when all is well.
fn tls_keeper(arg: u64) -> i32 {
    let fresh = (0..thread::TLS_WORDS).all(|i| thread::tls_get(i) == Ok(0));
    if !fresh {
        return 1;
    }
    for i in 0..thread::TLS_WORDS {
        if thread::tls_set(i, (arg as usize) << 8 | i).is_err() {
            return 2;
        }
    }
    for _ in 0..5 {
        thread::yield_now();
        if (0..thread::TLS_WORDS).any(|i| thread::tls_get(i) != Ok((arg as usize) << 8 | i)) {
            return 3;
        }
    }
    0
}

fn tls(c: &mut Checks) {
    let set = thread::tls_set(0, 0xfeed);
    let mut tids = [None; 10];
    for (i, t) in tids.iter_mut().enumerate() {
        *t = thread::spawn(tls_keeper, i as u64 + 1).ok();
    }
    thread::yield_now();
    let ok = tids.iter().filter(|t| t.map(thread::join) == Some(Ok(0))).count();
    c.is("TLS words start at 0, differ per thread and survive switches", ok, 10);
    c.is("the main thread's TLS word survives its threads", (set, thread::tls_get(0)), (Ok(()), Ok(0xfeed)));
}

/// Called by the assembly of `fp_keeper`.
extern "C" fn yield_from_asm() {
    thread::yield_now();
}

/// Puts values of its own in d8–d15, yields twice from inside the same asm
/// block (so the compiler cannot move them), and counts registers changed.
fn fp_keeper(arg: u64) -> i32 {
    #[cfg(target_os = "none")]
    {
        let bad: u64;
        let base = (arg + 1) << 20;
        // SAFETY: the block calls an `extern "C"` function, so it declares
        // the C ABI's clobbers (which include v8–v15: the compiler saves this
        // function's d8–d15 itself); x20 and x21 are callee-saved and named
        // as operands; sp is left as it was and 16-byte aligned for the call.
        unsafe {
            core::arch::asm!(
                "fmov d8, x20",
                "add x9, x20, #1", "fmov d9, x9",
                "add x9, x20, #2", "fmov d10, x9",
                "add x9, x20, #3", "fmov d11, x9",
                "add x9, x20, #4", "fmov d12, x9",
                "add x9, x20, #5", "fmov d13, x9",
                "add x9, x20, #6", "fmov d14, x9",
                "add x9, x20, #7", "fmov d15, x9",
                "bl {y}",
                "bl {y}",
                "mov x21, #0",
                "fmov x9, d8", "add x10, x20, #0", "cmp x9, x10", "cinc x21, x21, ne",
                "fmov x9, d9", "add x10, x20, #1", "cmp x9, x10", "cinc x21, x21, ne",
                "fmov x9, d10", "add x10, x20, #2", "cmp x9, x10", "cinc x21, x21, ne",
                "fmov x9, d11", "add x10, x20, #3", "cmp x9, x10", "cinc x21, x21, ne",
                "fmov x9, d12", "add x10, x20, #4", "cmp x9, x10", "cinc x21, x21, ne",
                "fmov x9, d13", "add x10, x20, #5", "cmp x9, x10", "cinc x21, x21, ne",
                "fmov x9, d14", "add x10, x20, #6", "cmp x9, x10", "cinc x21, x21, ne",
                "fmov x9, d15", "add x10, x20, #7", "cmp x9, x10", "cinc x21, x21, ne",
                y = sym yield_from_asm,
                in("x20") base,
                out("x21") bad,
                clobber_abi("C"),
            );
        }
        bad as i32
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = (arg, yield_from_asm as extern "C" fn());
        0
    }
}

fn fp_registers(c: &mut Checks) {
    let mut tids = [None; 8];
    for (i, t) in tids.iter_mut().enumerate() {
        *t = thread::spawn(fp_keeper, i as u64).ok();
    }
    // Main takes part too, between the threads' yields.
    let mine = fp_keeper(100);
    let ok = tids.iter().filter(|t| t.map(thread::join) == Some(Ok(0))).count();
    c.is("d8-d15 survive switches in every thread", (ok, mine), (8, 0));
}

const SPINNERS: usize = 3;
static SPIN_COUNT: [AtomicU64; SPINNERS] = [const { AtomicU64::new(0) }; SPINNERS];
static SPIN_STOP: AtomicBool = AtomicBool::new(false);
/// The spinner that counted last (index + 1), and how often that changed.
static SPIN_LAST: AtomicU64 = AtomicU64::new(0);
static SPIN_HANDOVERS: AtomicU64 = AtomicU64::new(0);

/// Counts until told to stop; never yields, blocks or makes a thread call.
fn spinner(i: u64) -> i32 {
    while !SPIN_STOP.load(Relaxed) {
        SPIN_COUNT[i as usize].fetch_add(1, Relaxed);
        if SPIN_LAST.swap(i + 1, Relaxed) != i + 1 {
            SPIN_HANDOVERS.fetch_add(1, Relaxed);
        }
    }
    0
}

fn preemption_between_threads(c: &mut Checks) {
    let before = thread::preemptions();
    let mut tids = [None; SPINNERS];
    for (i, t) in tids.iter_mut().enumerate() {
        *t = thread::spawn(spinner, i as u64).ok();
    }
    // Main spins too, without a thread call: only preemption lets the
    // spinners run at all, and only preemption gets main back.
    let everyone_ran = || SPIN_COUNT.iter().all(|n| n.load(Relaxed) > 0);
    let deadline = aos::time::counter() + ms(2000);
    while !(everyone_ran() && SPIN_HANDOVERS.load(Relaxed) >= 2 * SPINNERS as u64) && aos::time::counter() < deadline {
        core::hint::spin_loop();
    }
    let counts: [u64; SPINNERS] = core::array::from_fn(|i| SPIN_COUNT[i].load(Relaxed));
    let handovers = SPIN_HANDOVERS.load(Relaxed);
    SPIN_STOP.store(true, Relaxed);
    let ok = tids.iter().filter(|t| t.map(thread::join) == Some(Ok(0))).count();
    c.ok(
        "threads that spin without yielding all run while main spins too",
        counts.iter().all(|&n| n > 0),
        format_args!("counts {counts:?}"),
    );
    c.ok(
        "and take turns with each other",
        handovers >= 2 * SPINNERS as u64,
        format_args!("{handovers} handovers between spinners"),
    );
    let preempted = thread::preemptions() - before;
    println!("threads: spinners: {preempted} preemptions, {handovers} handovers, counts {counts:?}");
    c.ok("run upcalls switched threads", preempted >= SPINNERS as u64, format_args!("{preempted} switches"));
    c.is("every spinner stops when told and joins", ok, SPINNERS);
}

const P_THREADS: usize = 8;
const P_INCREMENTS: u64 = 100;
/// Microseconds of spinning between reading and writing the counter, and
/// outside the critical section: a thread is inside it 90% of the time, so
/// the first ticks land there while the others, not yet started, are
/// runnable (later the mutex's hand-off queues them all while one holds it,
/// and the scheduler has nobody to switch to).
const P_INSIDE_US: u64 = 200;
const P_OUTSIDE_US: u64 = 20;
static P_COUNTER: Mutex<u64> = Mutex::new(0);
static P_ATTEMPTS: AtomicU64 = AtomicU64::new(0);
static P_HOLDER: AtomicU64 = AtomicU64::new(0);
static P_INTERLEAVED: AtomicU64 = AtomicU64::new(0);
static P_INTRUSIONS: AtomicU64 = AtomicU64::new(0);

/// Spins for `us` microseconds of counter time, without a thread call.
fn busy(us: u64) {
    let end = aos::time::counter() + aos::time::frequency() * us / 1_000_000;
    while aos::time::counter() < end {
        core::hint::spin_loop();
    }
}

/// As `increments`, but the only thread calls are lock and unlock: other
/// threads get in only by preemption.
fn increments_without_yielding(arg: u64) -> i32 {
    for _ in 0..P_INCREMENTS {
        P_ATTEMPTS.fetch_add(1, Relaxed);
        let Ok(mut g) = P_COUNTER.lock() else { return -1 };
        P_HOLDER.store(arg + 1, Relaxed);
        let seen = P_ATTEMPTS.load(Relaxed);
        // Read, spin, write back: a lost update if anyone else got in.
        let v = core::hint::black_box(*g);
        busy(P_INSIDE_US);
        *g = v + 1;
        if P_ATTEMPTS.load(Relaxed) != seen {
            P_INTERLEAVED.fetch_add(1, Relaxed);
        }
        if P_HOLDER.load(Relaxed) != arg + 1 {
            P_INTRUSIONS.fetch_add(1, Relaxed);
        }
        if g.unlock().is_err() {
            return -2;
        }
        busy(P_OUTSIDE_US);
    }
    0
}

fn mutex_without_yields(c: &mut Checks) {
    let (t0, p0) = (aos::time::counter(), thread::preemptions());
    let mut tids = [None; P_THREADS];
    for (i, t) in tids.iter_mut().enumerate() {
        *t = thread::spawn(increments_without_yielding, i as u64).ok();
    }
    let ok = tids.iter().filter(|t| t.map(thread::join) == Some(Ok(0))).count();
    c.is("8 threads that never yield add under a mutex, every lock and unlock succeeds", ok, P_THREADS);
    let total = P_COUNTER.lock().map(|g| *g);
    c.is("the preempted count is exact", total, Ok(P_THREADS as u64 * P_INCREMENTS));
    let n = P_INTERLEAVED.load(Relaxed);
    println!(
        "threads: mutex without yields: {n} critical sections saw other threads run; {} preemptions in {} ms",
        thread::preemptions() - p0,
        (aos::time::counter() - t0) * 1000 / aos::time::frequency()
    );
    c.ok("holders were preempted inside the critical section", n > 0, format_args!("never interleaved"));
    c.is("and no other thread got in meanwhile", P_INTRUSIONS.load(Relaxed), 0);
}

/// Loop iterations of each of a round's two spins.
const REG_LOOPS: u64 = 200_000;
const REG_THREADS: usize = 4;
static REG_DEADLINE: AtomicU64 = AtomicU64::new(0);
static REG_ROUNDS: AtomicU64 = AtomicU64::new(0);

/// One round: fills x0–x30, v0–v31 (both halves), FPCR's rounding mode and
/// FPSR's flags with values from `seed`, spins twice without a call (the
/// loop counter is x17 in the first spin and x30 in the second, so each
/// general-purpose register keeps its value across at least one), and
/// counts the registers that changed. x19 and x29 are reserved by the
/// compiler: they are saved and restored around the block.
fn register_round(seed: u64) -> u64 {
    #[cfg(target_os = "none")]
    {
        let bad: u64;
        // SAFETY: only registers and 64 bytes below SP (pushed and popped
        // here) are touched; every clobbered register is declared, the
        // reserved x19/x29 and the FP environment are restored before the
        // block ends, and no FP arithmetic runs while FPCR is changed.
        unsafe {
            core::arch::asm!(
                "stp x29, x19, [sp, #-16]!",
                "sub sp, sp, #48",
                "str xzr, [sp]",                    // mismatches
                "str x0, [sp, #8]",                 // seed
                "mrs x9, fpcr", "str x9, [sp, #16]",
                "mrs x9, fpsr", "str x9, [sp, #24]",
                "str x1, [sp, #32]",                // loop count
                "ubfiz x9, x0, #22, #2", "msr fpcr, x9",
                "and x9, x0, #0x1f", "msr fpsr, x9",
                ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
                "add x9, x0, #(64 + \\n)",
                "fmov d\\n, x9",
                "mvn x10, x9",
                "mov v\\n\\().d[1], x10",
                ".endr",
                ".irp n, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,18,19,20,21,22,23,24,25,26,27,28,29,30",
                "add x\\n, x0, #\\n",
                ".endr",
                "ldr x17, [sp, #32]",
                "1: subs x17, x17, #1",
                "b.ne 1b",
                "add x17, x0, #30", "cmp x30, x17", "ldr x17, [sp]", "cinc x17, x17, ne", "str x17, [sp]",
                "add x17, x0, #17",
                "ldr x30, [sp, #32]",
                "2: subs x30, x30, #1",
                "b.ne 2b",
                ".irp n, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29",
                "add x30, x0, #\\n", "cmp x\\n, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                ".endr",
                "ldr x30, [sp, #8]", "cmp x0, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
                "add x9, x0, #(64 + \\n)",
                "fmov x10, d\\n", "cmp x9, x10", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "mvn x9, x9",
                "mov x10, v\\n\\().d[1]", "cmp x9, x10", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                ".endr",
                "mrs x9, fpcr", "ubfiz x10, x0, #22, #2", "cmp x9, x10",
                "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "mrs x9, fpsr", "and x10, x0, #0x1f", "cmp x9, x10",
                "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "ldr x9, [sp, #16]", "msr fpcr, x9",
                "ldr x9, [sp, #24]", "msr fpsr, x9",
                "ldr x30, [sp]",
                "add sp, sp, #48",
                "ldp x29, x19, [sp], #16",
                inout("x0") seed => _,
                inout("x1") REG_LOOPS => _,
                lateout("x30") bad,
                out("x2") _, out("x3") _, out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _,
                out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                out("x15") _, out("x16") _, out("x17") _, out("x18") _, out("x20") _, out("x21") _,
                out("x22") _, out("x23") _, out("x24") _, out("x25") _, out("x26") _, out("x27") _,
                out("x28") _,
                out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _, out("v6") _,
                out("v7") _, out("v8") _, out("v9") _, out("v10") _, out("v11") _, out("v12") _, out("v13") _,
                out("v14") _, out("v15") _, out("v16") _, out("v17") _, out("v18") _, out("v19") _,
                out("v20") _, out("v21") _, out("v22") _, out("v23") _, out("v24") _, out("v25") _,
                out("v26") _, out("v27") _, out("v28") _, out("v29") _, out("v30") _, out("v31") _,
            );
        }
        bad
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = (seed, REG_LOOPS);
        0
    }
}

/// Rounds of `register_round` until the deadline; the registers that
/// changed, summed (saturating into the exit code).
fn register_keeper(arg: u64) -> i32 {
    // Seeds differ in every register and in the FP environment's bits.
    let seed = 0x10_0000 * (arg + 1) + arg;
    let mut bad = 0u64;
    while aos::time::counter() < REG_DEADLINE.load(Relaxed) {
        bad += register_round(seed);
        REG_ROUNDS.fetch_add(1, Relaxed);
    }
    bad.min(i32::MAX as u64) as i32
}

fn registers_survive_preemption(c: &mut Checks) {
    let before = thread::preemptions();
    REG_DEADLINE.store(aos::time::counter() + ms(300), Relaxed);
    let mut tids = [None; REG_THREADS];
    for (i, t) in tids.iter_mut().enumerate() {
        *t = thread::spawn(register_keeper, i as u64 + 1).ok();
    }
    // Main keeps registers of its own, so it is preempted mid-round too.
    let mine = register_keeper(0);
    let codes: [Option<Result<i32, ThreadError>>; REG_THREADS] = core::array::from_fn(|i| tids[i].map(thread::join));
    let ok = codes.iter().filter(|&&r| r == Some(Ok(0))).count();
    c.ok(
        "x0-x30, v0-v31, FPCR and FPSR of spinning threads survive preemption",
        ok == REG_THREADS && mine == 0,
        format_args!("main {mine} changed; threads {codes:?}"),
    );
    let preempted = thread::preemptions() - before;
    let rounds = REG_ROUNDS.load(Relaxed);
    println!("threads: registers: {preempted} preemptions over {rounds} rounds");
    c.ok(
        "over many preemptions and rounds",
        preempted >= 10 && rounds >= 2 * (REG_THREADS as u64 + 1),
        format_args!("{preempted} switches, {rounds} rounds"),
    );
}

const TLS_THREADS: usize = 4;
static TLS_DEADLINE: AtomicU64 = AtomicU64::new(0);

/// Sets its TLS words and checks them in a loop without thread calls
/// until the deadline; the number of wrong reads.
fn tls_spinner(arg: u64) -> i32 {
    let want = |i: usize| (arg as usize) << 16 | 0xa0 | i;
    for i in 0..thread::TLS_WORDS {
        if thread::tls_set(i, want(i)).is_err() {
            return -1;
        }
    }
    let mut wrong = 0;
    while aos::time::counter() < TLS_DEADLINE.load(Relaxed) {
        for i in 0..thread::TLS_WORDS {
            if thread::tls_get(i) != Ok(want(i)) {
                wrong += 1;
            }
        }
    }
    wrong
}

fn tls_survives_preemption(c: &mut Checks) {
    let before = thread::preemptions();
    TLS_DEADLINE.store(aos::time::counter() + ms(200), Relaxed);
    let mut tids = [None; TLS_THREADS];
    for (i, t) in tids.iter_mut().enumerate() {
        *t = thread::spawn(tls_spinner, i as u64 + 1).ok();
    }
    // Main checks its own word (set by `tls`) meanwhile, without a call.
    let mut main_wrong = 0u64;
    while aos::time::counter() < TLS_DEADLINE.load(Relaxed) {
        if thread::tls_get(0) != Ok(0xfeed) {
            main_wrong += 1;
        }
    }
    let codes: [Option<Result<i32, ThreadError>>; TLS_THREADS] = core::array::from_fn(|i| tids[i].map(thread::join));
    let ok = codes.iter().filter(|&&r| r == Some(Ok(0))).count();
    let preempted = thread::preemptions() - before;
    println!("threads: TLS: {preempted} preemptions");
    c.ok(
        "TLS words survive preemption in every spinning thread and in main",
        ok == TLS_THREADS && main_wrong == 0 && preempted >= 5,
        format_args!("main {main_wrong} wrong reads; threads {codes:?}; {preempted} switches"),
    );
}
