//! User-level threads on one dispatcher (book ch. 4.12–4.16): the runtime's
//! spawn, join, exit, detach, mutex, condition variable, thread-local words
//! and context switch, each checked for what a program can observe. Prints
//! `threads: ok NAME` per check.

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};

use aos::println;
use aos::thread::{self, Condvar, Mutex, Stacks, ThreadError, Tid};
use cpu_driver_programs::Checks;

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
