//! Waitsets on the host: dispatch order, one-shot closures, latched events,
//! errors, threads blocked in `event_dispatch` (through the thread test
//! machine), and random operation sequences against a model.

extern crate std;

use core::cell::RefCell;
use std::collections::VecDeque;
use std::thread_local;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::thread::machine::Env;
use crate::thread::{Next, ThreadState};

thread_local! {
    /// Arguments of the closures run, in order (per test: tests run on
    /// separate host threads).
    static LOG: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn record(arg: usize) {
    LOG.with(|l| l.borrow_mut().push(arg));
}

fn take_log() -> Vec<usize> {
    LOG.with(|l| core::mem::take(&mut *l.borrow_mut()))
}

fn rec(arg: usize) -> Closure {
    Closure::new(record, arg)
}

fn sources<const S: usize>(ws: &mut Waitset<S>, n: usize) -> Vec<SourceId> {
    (0..n).map(|_| ws.add_source().unwrap()).collect()
}

fn drain<const S: usize>(ws: &mut Waitset<S>) {
    while let Some(c) = ws.event_dispatch_non_block() {
        c.call();
    }
}

#[test]
fn dispatch_follows_the_order_of_events() {
    let mut s = Scheduler::<2>::new();
    let mut ws = Waitset::<8>::new();
    let ids = sources(&mut ws, 4);
    for (k, &id) in ids.iter().enumerate() {
        assert_eq!(ws.register(id, rec(k), &mut s), Ok(None));
        assert_eq!(ws.state(id), Ok(SourceState::Registered));
    }
    for k in [2, 0, 3, 1] {
        assert_eq!(ws.trigger(ids[k], &mut s), Ok(None), "nobody waits");
    }
    assert_eq!(ws.pending().collect::<Vec<_>>(), [ids[2], ids[0], ids[3], ids[1]]);
    assert_eq!(ws.pending_count(), 4);
    drain(&mut ws);
    assert_eq!(take_log(), [2, 0, 3, 1]);
    for &id in &ids {
        assert_eq!(ws.state(id), Ok(SourceState::Idle), "one-shot: dispatch deregisters");
    }
}

#[test]
fn busy_sources_take_turns() {
    // Every source always has more to say: its handler re-registers and the
    // channel triggers again at once. FIFO dispatch makes them take turns,
    // and a source that speaks once waits behind at most one turn.
    let mut s = Scheduler::<2>::new();
    let mut ws = Waitset::<8>::new();
    let ids = sources(&mut ws, 4);
    for (k, &id) in ids[..3].iter().enumerate() {
        ws.register(id, rec(k), &mut s).unwrap();
        ws.trigger(id, &mut s).unwrap();
    }
    ws.register(ids[3], rec(3), &mut s).unwrap();
    for round in 0..30 {
        if round == 10 {
            ws.trigger(ids[3], &mut s).unwrap();
        }
        let c = ws.event_dispatch_non_block().unwrap();
        c.call();
        if c.arg != 3 {
            let id = ids[c.arg];
            assert_eq!(ws.trigger(id, &mut s), Ok(None));
            assert_eq!(ws.state(id), Ok(SourceState::Latched));
            ws.register(id, c, &mut s).unwrap();
            assert_eq!(ws.pending().last(), Some(id), "re-registered behind the others");
        }
    }
    let log = take_log();
    let quiet = log.iter().position(|&a| a == 3).unwrap();
    assert!((10..=13).contains(&quiet), "the quiet source waited {quiet}");
    let busy: Vec<usize> = log.iter().copied().filter(|&a| a != 3).collect();
    assert_eq!(busy, [0, 1, 2].iter().copied().cycle().take(29).collect::<Vec<_>>());
}

#[test]
fn closures_are_one_shot() {
    let mut s = Scheduler::<2>::new();
    let mut ws = Waitset::<2>::new();
    let id = ws.add_source().unwrap();
    ws.register(id, rec(5), &mut s).unwrap();
    ws.trigger(id, &mut s).unwrap();
    ws.event_dispatch_non_block().unwrap().call();
    assert_eq!(ws.state(id), Ok(SourceState::Idle));
    assert_eq!(ws.deregister(id).unwrap_err(), WaitsetError::NotRegistered);
    ws.trigger(id, &mut s).unwrap();
    assert_eq!(ws.state(id), Ok(SourceState::Latched));
    assert!(ws.event_dispatch_non_block().is_none(), "no closure: nothing to run");
    assert_eq!(take_log(), [5]);
}

#[test]
fn an_event_before_registration_is_kept() {
    let mut s = Scheduler::<2>::new();
    let mut ws = Waitset::<4>::new();
    let [a, b] = sources(&mut ws, 2)[..] else { unreachable!() };
    ws.register(b, rec(2), &mut s).unwrap();
    assert_eq!(ws.trigger(a, &mut s), Ok(None));
    assert_eq!((ws.state(a), ws.pending_count()), (Ok(SourceState::Latched), 0));
    ws.trigger(b, &mut s).unwrap();
    // Registering a latched source makes it pending at once, behind b.
    ws.register(a, rec(1), &mut s).unwrap();
    assert_eq!(ws.state(a), Ok(SourceState::Pending));
    assert_eq!(ws.pending().collect::<Vec<_>>(), [b, a]);
    drain(&mut ws);
    assert_eq!(take_log(), [2, 1]);
}

#[test]
fn events_coalesce() {
    let mut s = Scheduler::<2>::new();
    let mut ws = Waitset::<4>::new();
    let [a, b] = sources(&mut ws, 2)[..] else { unreachable!() };
    ws.register(a, rec(1), &mut s).unwrap();
    for _ in 0..3 {
        ws.trigger(a, &mut s).unwrap();
        ws.trigger(b, &mut s).unwrap();
    }
    assert_eq!(ws.pending_count(), 1);
    ws.register(b, rec(2), &mut s).unwrap();
    drain(&mut ws);
    assert_eq!(take_log(), [1, 2], "three triggers, one run each");
}

#[test]
fn deregistering_keeps_the_event_and_the_order() {
    let mut s = Scheduler::<2>::new();
    let mut ws = Waitset::<4>::new();
    let ids = sources(&mut ws, 3);
    for (k, &id) in ids.iter().enumerate() {
        ws.register(id, rec(k), &mut s).unwrap();
    }
    let c = ws.deregister(ids[2]).unwrap();
    assert_eq!((c.arg, ws.state(ids[2])), (2, Ok(SourceState::Idle)));
    ws.register(ids[2], c, &mut s).unwrap();
    for &id in &ids {
        ws.trigger(id, &mut s).unwrap();
    }
    // Take the middle one out of the queue: its event stays, latched.
    assert_eq!(ws.deregister(ids[1]).unwrap().arg, 1);
    assert_eq!(ws.state(ids[1]), Ok(SourceState::Latched));
    assert_eq!(ws.pending().collect::<Vec<_>>(), [ids[0], ids[2]]);
    assert_eq!(ws.deregister(ids[1]).unwrap_err(), WaitsetError::NotRegistered);
    ws.register(ids[1], rec(11), &mut s).unwrap();
    assert_eq!(ws.pending().collect::<Vec<_>>(), [ids[0], ids[2], ids[1]]);
    drain(&mut ws);
    assert_eq!(take_log(), [0, 2, 11]);
}

#[test]
fn errors_are_clear_and_change_nothing() {
    let mut s = Scheduler::<2>::new();
    let mut ws = Waitset::<2>::new();
    let [a, b] = sources(&mut ws, 2)[..] else { unreachable!() };
    assert_eq!(ws.add_source(), Err(WaitsetError::Full));
    ws.register(a, rec(1), &mut s).unwrap();
    assert_eq!(ws.register(a, rec(9), &mut s), Err(WaitsetError::AlreadyRegistered));
    ws.trigger(a, &mut s).unwrap();
    assert_eq!(ws.register(a, rec(9), &mut s), Err(WaitsetError::AlreadyRegistered), "pending");
    assert_eq!(ws.deregister(b).unwrap_err(), WaitsetError::NotRegistered);
    ws.trigger(b, &mut s).unwrap();
    assert_eq!(ws.deregister(b).unwrap_err(), WaitsetError::NotRegistered, "latched");
    // Removing a pending source takes it out of the queue; its id dies.
    ws.remove_source(a).unwrap();
    assert_eq!(ws.pending_count(), 0);
    for r in [ws.state(a).map(|_| ()), ws.remove_source(a), ws.trigger(a, &mut s).map(|_| ())] {
        assert_eq!(r, Err(WaitsetError::UnknownSource));
    }
    assert_eq!(ws.register(a, rec(1), &mut s).unwrap_err(), WaitsetError::UnknownSource);
    assert_eq!(ws.deregister(a).unwrap_err(), WaitsetError::UnknownSource);
    let c = ws.add_source().unwrap();
    assert_eq!(c.index(), a.index(), "the slot is reused");
    assert_ne!(c, a, "under a new name");
    assert_eq!((ws.state(c), ws.state(b)), (Ok(SourceState::Idle), Ok(SourceState::Latched)));
    assert!(take_log().is_empty());
}

#[test]
fn event_dispatch_blocks_only_a_running_thread() {
    let mut s = Scheduler::<2>::new();
    let mut ws = Waitset::<2>::new();
    let id = ws.add_source().unwrap();
    // In the upcall (no thread running): a pending event is still handed out.
    assert_eq!(ws.event_dispatch(&mut s).unwrap_err(), WaitsetError::Thread(ThreadError::NoCurrent));
    ws.register(id, rec(3), &mut s).unwrap();
    ws.trigger(id, &mut s).unwrap();
    let Ok(Blocking::Done(c)) = ws.event_dispatch(&mut s) else { panic!("a pending event") };
    assert_eq!(c.arg, 3);
    // A thread with nothing to dispatch blocks on the waitset.
    let t = s.thread_create(0, 0).unwrap();
    assert_eq!(s.run_upcall(), Next::Switch { from: None, to: t });
    let Ok(Blocking::Blocked(next)) = ws.event_dispatch(&mut s) else { panic!("nothing pending") };
    assert_eq!(next, Next::Idle { from: Some(t) });
    assert_eq!(s.waiters(ws.waiters()).collect::<Vec<_>>(), [t]);
    // Registering alone wakes nobody; the event does.
    assert_eq!(ws.register(id, rec(4), &mut s), Ok(None));
    assert_eq!(ws.trigger(id, &mut s), Ok(Some(t)));
    assert_eq!(s.state(t), ThreadState::Runnable);
    assert!(ws.waiters().is_empty());
}

#[test]
fn a_thread_blocked_in_event_dispatch_is_woken_by_trigger() {
    struct W {
        ws: Waitset<4>,
        src: SourceId,
        idles: usize,
    }
    let mut ws = Waitset::new();
    let src = ws.add_source().unwrap();
    let mut env: Env<4, W> = Env::new(W { ws, src, idles: 0 });
    let (mut registered, mut handled) = (false, 0);
    let t = env
        .spawn(move |env, _| {
            let w = &mut env.w;
            if !registered {
                registered = true;
                w.ws.register(w.src, rec(40 + handled), &mut env.sched).unwrap();
                return Next::Continue;
            }
            match w.ws.event_dispatch(&mut env.sched).unwrap() {
                Blocking::Done(c) => {
                    c.call();
                    handled += 1;
                    registered = false;
                    if handled == 3 { env.sched.thread_exit(0).unwrap() } else { Next::Continue }
                }
                Blocking::Blocked(next) => next,
            }
        })
        .unwrap();
    env.run(100, |env| {
        // The dispatcher went idle: the thread must be waiting on the waitset.
        let w = &mut env.w;
        if env.sched.state(t) != ThreadState::Blocked {
            return false;
        }
        assert_eq!(env.sched.waiters(w.ws.waiters()).collect::<Vec<_>>(), [t]);
        w.idles += 1;
        assert_eq!(w.ws.trigger(w.src, &mut env.sched), Ok(Some(t)), "the event wakes the blocked thread");
        true
    });
    assert_eq!(env.w.idles, 3);
    assert_eq!(take_log(), [40, 41, 42]);
    assert_eq!(env.sched.state(t), ThreadState::Exited(0));
    // Steps: per event one register, one blocking dispatch, one retry.
    assert_eq!(env.trace.len(), 9);
}

/// Several threads run `event_dispatch` loops over several sources, one of
/// them stealing with the non-blocking variant; events come in batches
/// whenever the dispatcher idles. Every event must be handled exactly once,
/// and the dispatcher must never idle with an event pending while a thread
/// waits for one (a lost wake-up).
fn dispatch_loops(threads: usize, preempt_every: usize) {
    const STOP: usize = 100;
    struct W {
        ws: Waitset<8>,
        ids: Vec<SourceId>,
        stop: SourceId,
        script: VecDeque<Vec<usize>>,
        expected: Vec<usize>,
        handled: Vec<usize>,
    }
    let mut ws = Waitset::new();
    let ids: Vec<SourceId> = (0..5).map(|_| ws.add_source().unwrap()).collect();
    let stop = ws.add_source().unwrap();
    let script: VecDeque<Vec<usize>> =
        [vec![0], vec![1, 2], vec![3, 4, 0, 1], vec![2, 2, 2], vec![4], vec![0, 1, 2, 3, 4], vec![3, 1]].into();
    let w = W { ws, ids, stop, script, expected: vec![0; 5], handled: vec![0; 5] };
    let mut env: Env<8, W> = Env::new(w);
    env.preempt_every = preempt_every;
    for k in 0..5 {
        let id = env.w.ids[k];
        env.w.ws.register(id, rec(k), &mut env.sched).unwrap();
    }
    let stop_closure = rec(STOP);
    env.w.ws.register(stop, stop_closure, &mut env.sched).unwrap();
    let mut tids = vec![];
    for n in 0..threads {
        let mut turn = 0usize;
        tids.push(
            env.spawn(move |env, _| {
                let w = &mut env.w;
                turn += 1;
                let got = if n == 0 && turn.is_multiple_of(2) {
                    match w.ws.event_dispatch_non_block() {
                        Some(c) => c,
                        None => return Next::Continue,
                    }
                } else {
                    match w.ws.event_dispatch(&mut env.sched).unwrap() {
                        Blocking::Done(c) => c,
                        Blocking::Blocked(next) => return next,
                    }
                };
                if got.arg == STOP {
                    // Pass the stop on to the next thread, then leave.
                    w.ws.register(w.stop, got, &mut env.sched).unwrap();
                    w.ws.trigger(w.stop, &mut env.sched).unwrap();
                    return env.sched.thread_exit(0).unwrap();
                }
                got.call();
                w.handled[got.arg] += 1;
                // The handler re-registers, as an LMP receive handler does.
                w.ws.register(w.ids[got.arg], got, &mut env.sched).unwrap();
                Next::Continue
            })
            .unwrap(),
        );
    }
    env.run(10_000, |env| {
        let w = &mut env.w;
        let waiting = !w.ws.waiters().is_empty();
        assert!(w.ws.pending_count() == 0 || !waiting, "idle with an event pending and a thread waiting");
        let batch = match w.script.pop_front() {
            Some(b) => b,
            None if waiting => vec![STOP],
            None => return false,
        };
        for k in batch {
            let id = if k == STOP { w.stop } else { w.ids[k] };
            if k != STOP && w.ws.state(id) == Ok(SourceState::Registered) {
                w.expected[k] += 1;
            }
            w.ws.trigger(id, &mut env.sched).unwrap();
        }
        true
    });
    assert_eq!(env.w.handled, env.w.expected, "threads {threads}, preempt {preempt_every}");
    // Duplicates within a batch coalesce: 16 of the script's 18 triggers.
    assert_eq!(env.w.expected.iter().sum::<usize>(), 16);
    assert_eq!(take_log().len(), 16, "every closure run once");
    for t in tids {
        assert_eq!(env.sched.state(t), ThreadState::Exited(0), "every thread was stopped");
    }
    assert!(env.w.ws.waiters().is_empty());
}

#[test]
fn several_threads_dispatch_every_event_exactly_once() {
    for threads in [1, 2, 3] {
        for p in [0, 1, 2, 3, 5] {
            dispatch_loops(threads, p);
        }
    }
}

// ---- random operation sequences against a model ----

#[derive(Clone, Debug)]
enum Op {
    Add,
    Remove(usize),
    Register(usize),
    Deregister(usize),
    Trigger(usize),
    DispatchNonBlock,
    Dispatch,
    Create,
    Upcall,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Add),
        1 => (0..16usize).prop_map(Op::Remove),
        3 => (0..16usize).prop_map(Op::Register),
        1 => (0..16usize).prop_map(Op::Deregister),
        4 => (0..16usize).prop_map(Op::Trigger),
        2 => Just(Op::DispatchNonBlock),
        3 => Just(Op::Dispatch),
        1 => Just(Op::Create),
        2 => Just(Op::Upcall),
    ]
}

/// What the model knows of one source.
#[derive(Clone, Copy, Debug, Default)]
struct M {
    live: bool,
    closure: Option<usize>,
    event: bool,
}

struct World {
    s: Scheduler<4>,
    ws: Waitset<4>,
    ids: Vec<SourceId>,
    model: Vec<M>,
    fifo: VecDeque<usize>,
    next_arg: usize,
}

impl World {
    fn take(&mut self, arg: usize) {
        let k = self.fifo.pop_front().expect("the model has a pending source");
        assert_eq!(self.model[k].closure, Some(arg), "the oldest pending closure");
        self.model[k] = M { live: true, ..M::default() };
    }

    /// A model source became pending.
    fn pend(&mut self, k: usize, woke: Option<Tid>) {
        self.fifo.push_back(k);
        if let Some(t) = woke {
            assert_eq!(self.s.state(t), ThreadState::Runnable);
        }
    }
}

fn apply(w: &mut World, op: &Op) {
    let pick = |w: &World, k: usize| if w.ids.is_empty() { None } else { Some(k % w.ids.len()) };
    let waiting = w.ws.waiters().len();
    match *op {
        Op::Add => match w.ws.add_source() {
            Ok(id) => {
                w.ids.push(id);
                w.model.push(M { live: true, ..M::default() });
            }
            Err(e) => {
                assert_eq!(e, WaitsetError::Full);
                assert_eq!(w.model.iter().filter(|m| m.live).count(), w.ws.capacity());
            }
        },
        Op::Remove(k) => {
            let Some(k) = pick(w, k) else { return };
            let r = w.ws.remove_source(w.ids[k]);
            if w.model[k].live {
                r.unwrap();
                w.fifo.retain(|&x| x != k);
                w.model[k] = M::default();
            } else {
                assert_eq!(r, Err(WaitsetError::UnknownSource));
            }
        }
        Op::Register(k) => {
            let Some(k) = pick(w, k) else { return };
            let arg = w.next_arg;
            w.next_arg += 1;
            let r = w.ws.register(w.ids[k], rec(arg), &mut w.s);
            let m = w.model[k];
            match (m.live, m.closure) {
                (false, _) => assert_eq!(r, Err(WaitsetError::UnknownSource)),
                (true, Some(_)) => assert_eq!(r, Err(WaitsetError::AlreadyRegistered)),
                (true, None) => {
                    let woke = r.unwrap();
                    w.model[k].closure = Some(arg);
                    if m.event {
                        w.pend(k, woke);
                        assert_eq!(woke.is_some(), waiting > 0, "a latched event wakes a waiter");
                    } else {
                        assert_eq!(woke, None);
                    }
                }
            }
        }
        Op::Deregister(k) => {
            let Some(k) = pick(w, k) else { return };
            let r = w.ws.deregister(w.ids[k]);
            let m = w.model[k];
            match (m.live, m.closure) {
                (false, _) => assert_eq!(r.unwrap_err(), WaitsetError::UnknownSource),
                (true, None) => assert_eq!(r.unwrap_err(), WaitsetError::NotRegistered),
                (true, Some(arg)) => {
                    assert_eq!(r.unwrap().arg, arg);
                    w.model[k].closure = None;
                    w.fifo.retain(|&x| x != k);
                }
            }
        }
        Op::Trigger(k) => {
            let Some(k) = pick(w, k) else { return };
            let r = w.ws.trigger(w.ids[k], &mut w.s);
            let m = w.model[k];
            if !m.live {
                assert_eq!(r, Err(WaitsetError::UnknownSource));
                return;
            }
            let woke = r.unwrap();
            if !m.event {
                w.model[k].event = true;
                if m.closure.is_some() {
                    w.pend(k, woke);
                    assert_eq!(woke.is_some(), waiting > 0, "a new pending event wakes a waiter");
                    return;
                }
            }
            assert_eq!(woke, None, "latched or coalesced: nobody wakes");
        }
        Op::DispatchNonBlock => match w.ws.event_dispatch_non_block() {
            Some(c) => w.take(c.arg),
            None => assert!(w.fifo.is_empty()),
        },
        Op::Dispatch => {
            let me = w.s.current();
            match w.ws.event_dispatch(&mut w.s) {
                Ok(Blocking::Done(c)) => w.take(c.arg),
                Ok(Blocking::Blocked(next)) => {
                    assert!(w.fifo.is_empty());
                    crate::thread::machine::check(&w.s, me, next);
                    assert_eq!(w.s.waiters(w.ws.waiters()).last(), me);
                }
                Err(e) => {
                    assert!(w.fifo.is_empty() && me.is_none());
                    assert_eq!(e, WaitsetError::Thread(ThreadError::NoCurrent));
                }
            }
        }
        Op::Create => {
            let _ = w.s.thread_create(0, 0);
        }
        Op::Upcall => {
            let me = w.s.current();
            let next = w.s.run_upcall();
            crate::thread::machine::check(&w.s, me, next);
        }
    }
}

fn invariants(w: &World) {
    let pending: Vec<SourceId> = w.ws.pending().collect();
    assert_eq!(pending, w.fifo.iter().map(|&k| w.ids[k]).collect::<Vec<_>>(), "pending in FIFO order");
    assert_eq!(pending.len(), w.ws.pending_count());
    for (k, m) in w.model.iter().enumerate() {
        let want = match (m.live, m.closure.is_some(), m.event) {
            (false, ..) => Err(WaitsetError::UnknownSource),
            (true, false, false) => Ok(SourceState::Idle),
            (true, true, false) => Ok(SourceState::Registered),
            (true, true, true) => Ok(SourceState::Pending),
            (true, false, true) => Ok(SourceState::Latched),
        };
        assert_eq!(w.ws.state(w.ids[k]), want);
    }
    // Threads block only here, so every blocked thread waits on the waitset.
    let waiters: Vec<Tid> = w.s.waiters(w.ws.waiters()).collect();
    assert_eq!(waiters.len(), w.ws.waiters().len());
    for &t in &waiters {
        assert_eq!(w.s.state(t), ThreadState::Blocked);
    }
    // No lost wake-up: while an event is pending and a thread waits, some
    // thread is on its way to dispatching it.
    if !pending.is_empty() && !waiters.is_empty() {
        assert!(w.s.current().is_some() || w.s.runnable_count() > 0, "an event pending, its waiters asleep");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_model(ops in proptest::collection::vec(op(), 1..200)) {
        let mut w = World {
            s: Scheduler::new(),
            ws: Waitset::new(),
            ids: Vec::new(),
            model: Vec::new(),
            fifo: VecDeque::new(),
            next_arg: 0,
        };
        for op in &ops {
            apply(&mut w, op);
            invariants(&w);
        }
    }
}
