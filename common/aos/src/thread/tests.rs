//! The thread scheduler, mutexes and condition variables, driven on the
//! host: by hand for exact decisions, through the test machine for whole
//! programs, and by random operation sequences against the invariants.

extern crate std;

use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::machine::{Env, check};
use super::sync::{Condvar, Mutex};
use super::*;

fn switch(from: Option<Tid>, to: Tid) -> Next {
    Next::Switch { from, to }
}

/// A step that joins `children` in order, then exits with 0.
fn join_all<const N: usize, W>(env: &mut Env<N, W>, children: &[Tid], k: &mut usize, codes: &mut Vec<i32>) -> Next {
    if *k == children.len() {
        return env.sched.thread_exit(0).unwrap();
    }
    match env.sched.thread_join(children[*k]).unwrap() {
        Blocking::Done(code) => {
            codes.push(code);
            *k += 1;
            Next::Continue
        }
        // Called again with the same `k` when it runs again.
        Blocking::Blocked(next) => next,
    }
}

#[test]
fn hundred_threads_created_and_joined() {
    struct W {
        children: Vec<Tid>,
        codes: Vec<i32>,
    }
    let mut env: Env<101, W> = Env::new(W { children: vec![], codes: vec![] });
    let mut created = false;
    let mut k = 0;
    let main = env
        .spawn(move |env, _| {
            if !created {
                created = true;
                for n in 0..100 {
                    // Half the children exit before main joins them, half after.
                    let mut yielded = n % 2 == 0;
                    let t = env
                        .spawn(move |env, _| {
                            if yielded {
                                env.sched.thread_exit(n * 3).unwrap()
                            } else {
                                yielded = true;
                                env.sched.thread_yield().unwrap()
                            }
                        })
                        .unwrap();
                    env.w.children.push(t);
                }
                assert_eq!(env.sched.live_count(), 101);
                assert_eq!(env.sched.thread_create(0, 0), Err(ThreadError::TableFull));
                return Next::Continue;
            }
            let children = env.w.children.clone();
            let mut codes = core::mem::take(&mut env.w.codes);
            let next = join_all(env, &children, &mut k, &mut codes);
            env.w.codes = codes;
            next
        })
        .unwrap();
    env.run(10_000, |_| false);
    assert_eq!(env.w.codes, (0..100).map(|n| n * 3).collect::<Vec<_>>());
    assert_eq!(env.sched.state(main), ThreadState::Exited(0));
    assert_eq!(env.sched.live_count(), 1, "every joined slot is free");
    for &t in &env.w.children {
        assert_eq!(env.sched.state(t), ThreadState::Free);
        assert_eq!(env.sched.context(t), Err(ThreadError::NoSuchThread));
    }
    // The freed slots take new threads, under new names.
    let fresh: Vec<Tid> = (0..100).map(|_| env.sched.thread_create(0, 0).unwrap()).collect();
    assert!(fresh.iter().all(|t| !env.w.children.contains(t)));
    assert_eq!(env.sched.thread_create(0, 0), Err(ThreadError::TableFull));
}

#[test]
fn yield_is_round_robin() {
    let mut env: Env<8, ()> = Env::new(());
    let mut ts = vec![];
    for _ in 0..4 {
        let mut left = 3;
        ts.push(
            env.spawn(move |env, _| {
                if left == 0 {
                    return env.sched.thread_exit(0).unwrap();
                }
                left -= 1;
                env.sched.thread_yield().unwrap()
            })
            .unwrap(),
        );
    }
    assert_eq!(env.sched.run_queue().collect::<Vec<_>>(), ts, "created threads queue in order");
    env.run(100, |_| false);
    let expected: Vec<Tid> = ts.iter().cycle().take(16).copied().collect();
    assert_eq!(env.trace, expected);
}

#[test]
fn yield_alone_continues_and_upcall_rotates() {
    let mut s = Scheduler::<4>::new();
    assert_eq!(s.thread_yield(), Err(ThreadError::NoCurrent));
    assert_eq!(s.run_upcall(), Next::Idle { from: None });
    let a = s.thread_create(1, 0).unwrap();
    assert_eq!(s.run_upcall(), switch(None, a));
    assert_eq!(s.thread_yield(), Ok(Next::Continue));
    assert_eq!(s.run_upcall(), Next::Continue, "a preempted lone thread resumes");
    let b = s.thread_create(2, 0).unwrap();
    let c = s.thread_create(3, 0).unwrap();
    assert_eq!(s.run_upcall(), switch(Some(a), b));
    assert_eq!(s.run_queue().collect::<Vec<_>>(), [c, a]);
    assert_eq!(s.thread_yield(), Ok(switch(Some(b), c)));
    assert_eq!(s.run_upcall(), switch(Some(c), a));
    assert_eq!(s.state(a), ThreadState::Running);
    assert_eq!((s.context(a), s.context(b), s.context(c)), (Ok(1), Ok(2), Ok(3)));
}

#[test]
fn idle_when_nothing_runs_and_woken_from_the_upcall() {
    let mut s = Scheduler::<4>::new();
    let t = s.thread_create(0, 0x1000).unwrap();
    assert_eq!(s.run_upcall(), switch(None, t));
    let mut q = WaitQueue::new();
    assert_eq!(s.thread_block(&mut q), Ok(Next::Idle { from: Some(t) }));
    assert_eq!((s.current(), s.state(t), q.len()), (None, ThreadState::Blocked, 1));
    assert_eq!(s.run_upcall(), Next::Idle { from: None }, "a spurious upcall finds nothing");
    assert_eq!(s.thread_block(&mut q), Err(ThreadError::NoCurrent));
    // The upcall delivers an event: no thread runs while it wakes one.
    assert_eq!(s.wake_one(&mut q), Some(t));
    assert_eq!(s.wake_one(&mut q), None);
    assert_eq!(s.run_upcall(), switch(None, t));
    assert_eq!(s.tls(t), Ok(0x1000));
    s.set_tls(t, 0x2000).unwrap();
    assert_eq!(s.tls(t), Ok(0x2000));
}

#[test]
fn wake_all_keeps_queue_order() {
    let mut s = Scheduler::<8>::new();
    let ts: Vec<Tid> = (0..5).map(|i| s.thread_create(i, 0).unwrap()).collect();
    let mut q = WaitQueue::new();
    assert_eq!(s.run_upcall(), switch(None, ts[0]));
    for i in 0..4 {
        assert_eq!(s.thread_block(&mut q), Ok(switch(Some(ts[i]), ts[i + 1])));
    }
    assert_eq!(s.waiters(&q).collect::<Vec<_>>(), ts[..4]);
    assert_eq!(s.wake_all(&mut q), 4);
    assert!(q.is_empty());
    assert_eq!(s.run_queue().collect::<Vec<_>>(), ts[..4]);
}

#[test]
fn join_and_detach_rules() {
    let mut s = Scheduler::<8>::new();
    let a = s.thread_create(0, 0).unwrap();
    let b = s.thread_create(0, 0).unwrap();
    let c = s.thread_create(0, 0).unwrap();
    assert_eq!(s.thread_join(b), Err(ThreadError::NoCurrent));
    assert_eq!(s.run_upcall(), switch(None, a));
    assert_eq!(s.thread_join(a), Err(ThreadError::JoinSelf));
    assert_eq!(s.thread_join(Tid::from_raw(u32::MAX)), Err(ThreadError::NoSuchThread));
    s.thread_detach(c).unwrap();
    assert!(s.is_detached(c));
    assert_eq!(s.thread_join(c), Err(ThreadError::Detached));
    assert_eq!(s.thread_detach(c), Err(ThreadError::Detached));
    assert_eq!(s.thread_yield(), Ok(switch(Some(a), b)));
    // b exits before anyone joins: it waits, exited, for its joiner.
    assert_eq!(s.thread_exit(7), Ok(switch(None, c)));
    assert_eq!(s.state(b), ThreadState::Exited(7));
    // c is detached: its slot is free as soon as it exits.
    assert_eq!(s.thread_exit(9), Ok(switch(None, a)));
    assert_eq!(s.state(c), ThreadState::Free);
    assert_eq!(s.thread_join(c), Err(ThreadError::NoSuchThread));
    // Joining an exited thread answers at once and frees it.
    assert_eq!(s.thread_join(b), Ok(Blocking::Done(7)));
    assert_eq!(s.thread_join(b), Err(ThreadError::NoSuchThread), "joined already");
    assert_eq!(s.thread_detach(b), Err(ThreadError::NoSuchThread));
    assert_eq!(s.live_count(), 1);

    // Joining a live thread blocks until it exits; one joiner only.
    let d = s.thread_create(0, 0).unwrap();
    let e = s.thread_create(0, 0).unwrap();
    assert_eq!(s.thread_join(d), Ok(Blocking::Blocked(switch(Some(a), d))));
    assert_eq!((s.state(a), s.joiner(d)), (ThreadState::Blocked, Some(a)));
    assert_eq!(s.thread_yield(), Ok(switch(Some(d), e)));
    assert_eq!(s.thread_join(d), Err(ThreadError::JoinerExists));
    assert_eq!(s.thread_detach(d), Err(ThreadError::JoinerExists));
    assert_eq!(s.thread_exit(1), Ok(switch(None, d)));
    assert_eq!(s.thread_exit(5), Ok(switch(None, a)), "exit wakes the joiner");
    assert_eq!(s.thread_join(d), Ok(Blocking::Done(5)), "the retried join collects the code");
    assert_eq!(s.thread_join(e), Ok(Blocking::Done(1)));
    assert_eq!(s.live_count(), 1);

    // Detaching an exited thread frees it.
    let f = s.thread_create(0, 0).unwrap();
    assert_eq!(s.thread_yield(), Ok(switch(Some(a), f)));
    assert_eq!(s.thread_exit(3), Ok(switch(None, a)));
    s.thread_detach(f).unwrap();
    assert_eq!(s.state(f), ThreadState::Free);
    // The last thread exits: nothing left to run.
    assert_eq!(s.thread_exit(0), Ok(Next::Idle { from: None }));
    assert_eq!(s.thread_exit(0), Err(ThreadError::NoCurrent));
}

#[test]
fn stale_ids_are_refused_after_slot_reuse() {
    let mut s = Scheduler::<1>::new();
    let a = s.thread_create(10, 20).unwrap();
    assert_eq!(s.run_upcall(), switch(None, a));
    s.thread_detach(a).unwrap();
    assert_eq!(s.thread_exit(0), Ok(Next::Idle { from: None }));
    let b = s.thread_create(11, 21).unwrap();
    assert_eq!(a.index(), b.index());
    assert_ne!(a, b);
    assert_eq!(Tid::from_raw(b.to_raw()), b);
    assert_eq!(s.state(a), ThreadState::Free);
    assert_eq!((s.context(a), s.tls(a)), (Err(ThreadError::NoSuchThread), Err(ThreadError::NoSuchThread)));
    assert_eq!(s.set_context(a, 1), Err(ThreadError::NoSuchThread));
    assert_eq!((s.context(b), s.tls(b)), (Ok(11), Ok(21)));
}

#[test]
fn mutex_rules() {
    let mut s = Scheduler::<4>::new();
    let mut m = Mutex::new();
    assert_eq!(m.lock(&mut s), Err(ThreadError::NoCurrent));
    let a = s.thread_create(0, 0).unwrap();
    let b = s.thread_create(0, 0).unwrap();
    assert_eq!(s.run_upcall(), switch(None, a));
    assert_eq!(m.unlock(&mut s), Err(ThreadError::NotOwner), "unlocking a free mutex");
    assert_eq!(m.lock(&mut s), Ok(Next::Continue));
    assert_eq!(m.lock(&mut s), Err(ThreadError::AlreadyOwner));
    assert_eq!(m.try_lock(&s), Err(ThreadError::AlreadyOwner));
    assert_eq!(s.thread_yield(), Ok(switch(Some(a), b)));
    assert_eq!(m.unlock(&mut s), Err(ThreadError::NotOwner), "unlock by a non-owner");
    assert_eq!(m.owner(), Some(a));
    assert_eq!(m.try_lock(&s), Ok(false));
    let mut cv = Condvar::new();
    assert_eq!(cv.wait(&mut m, &mut s), Err(ThreadError::NotOwner));
    assert_eq!(m.lock(&mut s), Ok(switch(Some(b), a)));
    assert_eq!(m.waiters().len(), 1);
    // Hand-off: b owns it before it runs, and a cannot take it back.
    assert_eq!(m.unlock(&mut s), Ok(Some(b)));
    assert_eq!((m.owner(), s.state(b)), (Some(b), ThreadState::Runnable));
    assert_eq!(m.try_lock(&s), Ok(false));
    assert_eq!(m.lock(&mut s), Ok(switch(Some(a), b)));
    assert_eq!(m.unlock(&mut s), Ok(Some(a)));
    assert_eq!(m.unlock(&mut s), Err(ThreadError::NotOwner));
    assert_eq!(s.thread_yield(), Ok(switch(Some(b), a)));
    assert_eq!(m.unlock(&mut s), Ok(None));
    assert_eq!(m.try_lock(&s), Ok(true));
    assert_eq!(m.owner(), Some(a));
}

#[test]
fn condvar_wait_releases_and_signal_contends() {
    let mut s = Scheduler::<4>::new();
    let (mut m, mut cv) = (Mutex::new(), Condvar::new());
    let a = s.thread_create(0, 0).unwrap();
    let b = s.thread_create(0, 0).unwrap();
    let c = s.thread_create(0, 0).unwrap();
    assert_eq!(cv.signal(&mut s), None);
    assert_eq!(s.run_upcall(), switch(None, a));
    assert_eq!(m.lock(&mut s), Ok(Next::Continue));
    assert_eq!(cv.wait(&mut m, &mut s), Ok(switch(Some(a), b)));
    assert_eq!(m.owner(), None, "wait released the mutex");
    assert_eq!(m.lock(&mut s), Ok(Next::Continue));
    assert_eq!(cv.wait(&mut m, &mut s), Ok(switch(Some(b), c)));
    assert_eq!(s.waiters(cv.waiters()).collect::<Vec<_>>(), [a, b]);
    // c signals while holding the mutex: a wakes, but must contend for it.
    assert_eq!(m.lock(&mut s), Ok(Next::Continue));
    assert_eq!(cv.broadcast(&mut s), 2);
    assert_eq!(s.run_queue().collect::<Vec<_>>(), [a, b]);
    assert_eq!(s.thread_yield(), Ok(switch(Some(c), a)));
    assert_eq!(m.lock(&mut s), Ok(switch(Some(a), b)), "a re-locks and queues behind c");
    assert_eq!(m.lock(&mut s), Ok(switch(Some(b), c)));
    assert_eq!(m.unlock(&mut s), Ok(Some(a)));
    assert_eq!(s.thread_exit(0), Ok(switch(None, a)));
    assert_eq!(m.owner(), Some(a), "a returns from its wait holding the mutex");
    assert_eq!(m.unlock(&mut s), Ok(Some(b)));
}

/// Threads lock, hold the mutex across a yield, and unlock, several rounds
/// each: acquisitions must follow the order of lock calls exactly (FIFO
/// hand-off, no barging), and no two threads may hold it at once.
fn contended_mutex(preempt_every: usize) {
    #[derive(Default)]
    struct W {
        m: Mutex,
        holder: Option<Tid>,
        attempts: Vec<Tid>,
        acquired: Vec<Tid>,
    }
    let mut env: Env<32, W> = Env::new(W::default());
    env.preempt_every = preempt_every;
    for _ in 0..20 {
        let (mut pc, mut rounds) = (0, 0);
        env.spawn(move |env, me| match pc {
            0 => {
                env.w.attempts.push(me);
                pc = 1;
                env.w.m.lock(&mut env.sched).unwrap()
            }
            1 => {
                assert_eq!(env.w.m.owner(), Some(me));
                assert_eq!(env.w.holder.replace(me), None, "two threads hold the mutex");
                env.w.acquired.push(me);
                pc = 2;
                env.sched.thread_yield().unwrap()
            }
            2 => {
                assert_eq!(env.w.holder.take(), Some(me));
                rounds += 1;
                pc = if rounds == 3 { 3 } else { 0 };
                let next_owner = env.w.m.unlock(&mut env.sched).unwrap();
                assert_eq!(next_owner, env.w.m.owner());
                // Lock again at once: must queue behind the waiters.
                if pc == 0 && next_owner.is_some() {
                    env.w.attempts.push(me);
                    pc = 1;
                    let next = env.w.m.lock(&mut env.sched).unwrap();
                    assert_ne!(next, Next::Continue, "barged past a waiter");
                    return next;
                }
                Next::Continue
            }
            _ => env.sched.thread_exit(0).unwrap(),
        })
        .unwrap();
    }
    env.run(10_000, |_| false);
    assert_eq!(env.w.acquired.len(), 60);
    assert_eq!(env.w.acquired, env.w.attempts, "acquisitions in the order of lock calls");
    assert_eq!(env.w.m.owner(), None);
    assert!(env.w.m.waiters().is_empty());
}

#[test]
fn contended_mutex_is_handed_off_in_fifo_order() {
    for p in [0, 1, 2, 3, 5, 7] {
        contended_mutex(p);
    }
}

/// Producers and consumers over a bounded buffer with one mutex and two
/// condition variables, in the Barrelfish style: a woken waiter re-locks,
/// then rechecks its condition.
fn producer_consumer(producers: usize, consumers: usize, items: u32, cap: usize, preempt_every: usize) {
    #[derive(Default)]
    struct W {
        m: Mutex,
        not_full: Condvar,
        not_empty: Condvar,
        buf: VecDeque<u32>,
        cap: usize,
        total: usize,
        taken: usize,
        consumed: Vec<u32>,
        threads: Vec<Tid>,
        codes: Vec<i32>,
    }
    // pc: 0 lock, 1 holding the mutex, 2 re-lock after a wait, 3 exit.
    fn producer(p: u32, items: u32) -> impl FnMut(&mut Env<16, W>, Tid) -> Next {
        let (mut pc, mut k) = (0, 0);
        move |env, me| match pc {
            0 | 2 => {
                pc = 1;
                env.w.m.lock(&mut env.sched).unwrap()
            }
            1 => {
                let w = &mut env.w;
                assert_eq!(w.m.owner(), Some(me));
                if w.buf.len() == w.cap {
                    pc = 2;
                    return w.not_full.wait(&mut w.m, &mut env.sched).unwrap();
                }
                w.buf.push_back(p * 1000 + k);
                assert!(w.buf.len() <= w.cap, "the buffer overflowed");
                k += 1;
                w.not_empty.signal(&mut env.sched);
                w.m.unlock(&mut env.sched).unwrap();
                pc = if k == items { 3 } else { 0 };
                Next::Continue
            }
            _ => env.sched.thread_exit(p as i32).unwrap(),
        }
    }
    fn consumer(c: i32) -> impl FnMut(&mut Env<16, W>, Tid) -> Next {
        let mut pc = 0;
        move |env, me| match pc {
            0 | 2 => {
                pc = 1;
                env.w.m.lock(&mut env.sched).unwrap()
            }
            1 => {
                let w = &mut env.w;
                assert_eq!(w.m.owner(), Some(me));
                if let Some(x) = w.buf.pop_front() {
                    w.consumed.push(x);
                    w.taken += 1;
                    w.not_full.signal(&mut env.sched);
                    if w.taken == w.total {
                        // Nothing more will come: release the other consumers.
                        w.not_empty.broadcast(&mut env.sched);
                    }
                } else if w.taken == w.total {
                    pc = 3;
                } else {
                    pc = 2;
                    return w.not_empty.wait(&mut w.m, &mut env.sched).unwrap();
                }
                if pc == 1 {
                    pc = 0;
                }
                w.m.unlock(&mut env.sched).unwrap();
                Next::Continue
            }
            _ => env.sched.thread_exit(100 + c).unwrap(),
        }
    }
    let w = W { cap, total: producers * items as usize, ..W::default() };
    let mut env: Env<16, W> = Env::new(w);
    env.preempt_every = preempt_every;
    let mut started = false;
    let mut k = 0;
    env.spawn(move |env, _| {
        if !started {
            started = true;
            for c in 0..consumers {
                let t = env.spawn(consumer(c as i32)).unwrap();
                env.w.threads.push(t);
            }
            for p in 0..producers {
                let t = env.spawn(producer(p as u32, items)).unwrap();
                env.w.threads.push(t);
            }
            return Next::Continue;
        }
        let threads = env.w.threads.clone();
        let mut codes = core::mem::take(&mut env.w.codes);
        let next = join_all(env, &threads, &mut k, &mut codes);
        env.w.codes = codes;
        next
    })
    .unwrap();
    env.run(100_000, |_| false);
    let w = &env.w;
    let mut expected: Vec<i32> = (0..consumers as i32).map(|c| 100 + c).collect();
    expected.extend(0..producers as i32);
    assert_eq!(w.codes, expected, "every thread finished");
    assert!(w.buf.is_empty());
    let mut all = w.consumed.clone();
    all.sort_unstable();
    let mut want: Vec<u32> = (0..producers as u32).flat_map(|p| (0..items).map(move |k| p * 1000 + k)).collect();
    want.sort_unstable();
    assert_eq!(all, want, "every item consumed exactly once");
    for p in 0..producers as u32 {
        let mine: Vec<u32> = w.consumed.iter().copied().filter(|x| x / 1000 == p).collect();
        assert!(mine.is_sorted(), "a producer's items leave the FIFO buffer in order");
    }
    assert!(w.not_full.waiters().is_empty() && w.not_empty.waiters().is_empty());
    assert_eq!(w.m.owner(), None);
    assert_eq!(env.sched.live_count(), 1, "only main is left, exited");
}

#[test]
fn condvar_producer_consumer_over_a_bounded_buffer() {
    for p in [0, 1, 2, 3, 5, 7, 11] {
        producer_consumer(3, 4, 20, 3, p);
        producer_consumer(1, 1, 30, 1, p);
        producer_consumer(4, 2, 10, 2, p);
    }
}

// ---- random operation sequences ----

const QUEUES: usize = 2;

#[derive(Clone, Debug)]
enum Op {
    Create,
    Yield,
    Upcall,
    Block(usize),
    WakeOne(usize),
    WakeAll(usize),
    Exit(i32),
    Join(usize),
    Detach(usize),
    Lock(usize),
    TryLock(usize),
    Unlock(usize),
    Wait(usize, usize),
    Signal(usize),
    Broadcast(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let q = 0..QUEUES;
    prop_oneof![
        3 => Just(Op::Create),
        2 => Just(Op::Yield),
        2 => Just(Op::Upcall),
        1 => q.clone().prop_map(Op::Block),
        1 => q.clone().prop_map(Op::WakeOne),
        1 => q.clone().prop_map(Op::WakeAll),
        1 => (0..4i32).prop_map(Op::Exit),
        2 => (0..64usize).prop_map(Op::Join),
        1 => (0..64usize).prop_map(Op::Detach),
        3 => q.clone().prop_map(Op::Lock),
        1 => q.clone().prop_map(Op::TryLock),
        3 => q.clone().prop_map(Op::Unlock),
        2 => (q.clone(), q.clone()).prop_map(|(c, m)| Op::Wait(c, m)),
        1 => q.clone().prop_map(Op::Signal),
        1 => q.prop_map(Op::Broadcast),
    ]
}

struct World {
    s: Scheduler<6>,
    qs: [WaitQueue; QUEUES],
    ms: [Mutex; QUEUES],
    cs: [Condvar; QUEUES],
    /// Every thread ever created (stale ones too).
    tids: Vec<Tid>,
    /// The expected owner and FIFO of each mutex.
    owners: [Option<Tid>; QUEUES],
    lines: [VecDeque<Tid>; QUEUES],
}

/// What a refused operation must leave unchanged.
type Snapshot = (Option<Tid>, Vec<Tid>, Vec<(ThreadState, bool, Option<Tid>)>, Vec<Vec<Tid>>, Vec<Option<Tid>>);

fn snapshot(w: &World) -> Snapshot {
    let threads = w.tids.iter().map(|&t| (w.s.state(t), w.s.is_detached(t), w.s.joiner(t))).collect();
    let mut queues: Vec<Vec<Tid>> = w.qs.iter().map(|q| w.s.waiters(q).collect()).collect();
    queues.extend(w.ms.iter().map(|m| w.s.waiters(m.waiters()).collect()));
    queues.extend(w.cs.iter().map(|c| w.s.waiters(c.waiters()).collect()));
    (w.s.current(), w.s.run_queue().collect(), threads, queues, w.ms.iter().map(Mutex::owner).collect())
}

fn pick(w: &World, k: usize) -> Tid {
    if w.tids.is_empty() { Tid::from_raw(u32::MAX) } else { w.tids[k % w.tids.len()] }
}

fn apply(w: &mut World, op: &Op) {
    let me = w.s.current();
    let before = snapshot(w);
    let needs_current = !matches!(op, Op::Create | Op::Upcall | Op::WakeOne(_) | Op::WakeAll(_) | Op::Detach(_))
        && !matches!(op, Op::Signal(_) | Op::Broadcast(_));
    let r: Result<Next, ThreadError> = match *op {
        Op::Create => w.s.thread_create(0, 0).map(|t| {
            w.tids.push(t);
            Next::Continue
        }),
        Op::Yield => w.s.thread_yield(),
        Op::Upcall => {
            let next = w.s.run_upcall();
            if let Next::Switch { from, .. } | Next::Idle { from } = next {
                assert_eq!(from, me, "the upcall saves the preempted thread");
            }
            Ok(next)
        }
        Op::Block(q) => w.s.thread_block(&mut w.qs[q]),
        Op::WakeOne(q) => Ok({
            let _ = w.s.wake_one(&mut w.qs[q]);
            Next::Continue
        }),
        Op::WakeAll(q) => Ok({
            w.s.wake_all(&mut w.qs[q]);
            Next::Continue
        }),
        Op::Exit(code) => w.s.thread_exit(code),
        Op::Join(k) => {
            let t = pick(w, k);
            w.s.thread_join(t).map(|b| match b {
                Blocking::Done(_) => Next::Continue,
                Blocking::Blocked(next) => next,
            })
        }
        Op::Detach(k) => {
            let t = pick(w, k);
            w.s.thread_detach(t).map(|()| Next::Continue)
        }
        Op::Lock(m) => {
            let r = w.ms[m].lock(&mut w.s);
            if let Some(me) = me {
                match w.owners[m] {
                    None => {
                        assert_eq!(r, Ok(Next::Continue));
                        w.owners[m] = Some(me);
                    }
                    Some(o) if o == me => assert_eq!(r, Err(ThreadError::AlreadyOwner)),
                    Some(_) => {
                        assert!(matches!(r, Ok(Next::Switch { .. } | Next::Idle { .. })));
                        w.lines[m].push_back(me);
                    }
                }
            }
            r
        }
        Op::TryLock(m) => {
            let r = w.ms[m].try_lock(&w.s);
            if let Some(me) = me {
                let want = match w.owners[m] {
                    None => Ok(true),
                    Some(o) if o == me => Err(ThreadError::AlreadyOwner),
                    Some(_) => Ok(false),
                };
                assert_eq!(r, want);
                if r == Ok(true) {
                    w.owners[m] = Some(me);
                }
            }
            r.map(|_| Next::Continue)
        }
        Op::Unlock(m) => {
            let r = w.ms[m].unlock(&mut w.s);
            if me.is_some() {
                if w.owners[m] == me {
                    w.owners[m] = w.lines[m].pop_front();
                    assert_eq!(r, Ok(w.owners[m]), "the first waiter gets the mutex");
                } else {
                    assert_eq!(r, Err(ThreadError::NotOwner));
                }
            }
            r.map(|_| Next::Continue)
        }
        Op::Wait(c, m) => {
            let r = w.cs[c].wait(&mut w.ms[m], &mut w.s);
            if me.is_some() {
                if w.owners[m] == me {
                    w.owners[m] = w.lines[m].pop_front();
                    assert_eq!(w.ms[m].owner(), w.owners[m]);
                    assert!(matches!(r, Ok(Next::Switch { .. } | Next::Idle { .. })));
                } else {
                    assert_eq!(r, Err(ThreadError::NotOwner));
                }
            }
            r
        }
        Op::Signal(c) => Ok({
            let _ = w.cs[c].signal(&mut w.s);
            Next::Continue
        }),
        Op::Broadcast(c) => Ok({
            w.cs[c].broadcast(&mut w.s);
            Next::Continue
        }),
    };
    match r {
        Err(e) => {
            if me.is_none() && needs_current {
                assert_eq!(e, ThreadError::NoCurrent, "{op:?}");
            }
            assert!(snapshot(w) == before, "a refused {op:?} ({e}) changed something");
        }
        Ok(next) => {
            assert!(me.is_some() || !needs_current, "{op:?} without a running thread");
            check(&w.s, me, next);
        }
    }
    invariants(w);
}

fn invariants(w: &World) {
    let s = &w.s;
    let live: Vec<Tid> = w.tids.iter().copied().filter(|&t| s.state(t) != ThreadState::Free).collect();
    assert_eq!(live.len(), s.live_count());
    // Exactly one thread runs, or none and the dispatcher is idle.
    let running: Vec<Tid> = live.iter().copied().filter(|&t| s.state(t) == ThreadState::Running).collect();
    assert_eq!(running, s.current().into_iter().collect::<Vec<_>>());
    // The run queue holds exactly the runnable threads.
    let runq: Vec<Tid> = s.run_queue().collect();
    assert_eq!(runq.len(), s.runnable_count());
    assert_eq!(live.iter().filter(|&&t| s.state(t) == ThreadState::Runnable).count(), runq.len());
    // Every Tid is in at most one queue; blocked ones in exactly one.
    let mut seen: Vec<Tid> = runq.clone();
    for t in &runq {
        assert_eq!(s.state(*t), ThreadState::Runnable);
    }
    let queues = w.qs.iter().chain(w.ms.iter().map(Mutex::waiters)).chain(w.cs.iter().map(Condvar::waiters));
    for q in queues {
        let members: Vec<Tid> = s.waiters(q).collect();
        assert_eq!(members.len(), q.len());
        for t in members {
            assert_eq!(s.state(t), ThreadState::Blocked, "{t} in a wait queue");
            seen.push(t);
        }
    }
    for &t in &live {
        if let Some(j) = s.joiner(t) {
            assert!(!s.is_detached(t));
            if !matches!(s.state(t), ThreadState::Exited(_)) {
                assert_eq!(s.state(j), ThreadState::Blocked, "{j} joins {t}, which runs");
                seen.push(j);
            }
        }
    }
    let n = seen.len();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), n, "a thread in two queues");
    let blocked = live.iter().filter(|&&t| s.state(t) == ThreadState::Blocked).count();
    assert_eq!(blocked, n - runq.len(), "a blocked thread in no queue");
    // Mutexes: the owner never waits for its own mutex; a free mutex has no
    // waiters (hand-off); the queue is the model's FIFO.
    for (m, mutex) in w.ms.iter().enumerate() {
        assert_eq!(mutex.owner(), w.owners[m]);
        let line: Vec<Tid> = s.waiters(mutex.waiters()).collect();
        assert_eq!(line, w.lines[m].iter().copied().collect::<Vec<_>>());
        if let Some(o) = mutex.owner() {
            assert!(!line.contains(&o), "the owner of mutex {m} waits for it");
        } else {
            assert!(line.is_empty(), "a free mutex with waiters");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_every_invariant(ops in proptest::collection::vec(op(), 1..200)) {
        let mut w = World {
            s: Scheduler::new(),
            qs: Default::default(),
            ms: Default::default(),
            cs: Default::default(),
            tids: Vec::new(),
            owners: [None; QUEUES],
            lines: Default::default(),
        };
        invariants(&w);
        for op in &ops {
            apply(&mut w, op);
        }
    }
}
