//! The LMP source on the host: binding, registration against a ring that
//! holds messages, and the poll, over a ring in host memory that the test
//! fills as the kernel would, and the pure scheduler. Nothing here goes
//! through `call_sched` (the host has no dispatcher): the tests drive the
//! functions the public calls run disabled.

extern crate std;

use std::boxed::Box;
use std::vec;

use kpi::lmp::{HEADER_BYTES, SLOT_BYTES, SlotHeader};

use super::*;
use crate::thread::{Scheduler, ThreadState, Tid};

const SLOTS: u64 = 4;

/// Stands in for the kernel: appends messages to a ring in host memory.
struct Kernel {
    base: *mut u64,
}

impl Kernel {
    /// Ring memory that lives for the rest of the test process, and the
    /// receiver's view of it.
    fn new() -> (Kernel, Ring) {
        let bytes = HEADER_BYTES + SLOTS * SLOT_BYTES;
        let mem = Box::leak(vec![0u64; (bytes / 8) as usize].into_boxed_slice());
        let base = mem.as_mut_ptr();
        // SAFETY: `bytes` of leaked memory, used only as this ring.
        let ring = unsafe { Ring::new(base as u64, 0, bytes) };
        (Kernel { base }, ring)
    }

    /// Appends a one-word message, as the kernel's LMP send does.
    fn deliver(&self, word: u64) {
        // SAFETY: the ring's leaked memory; head and tail are words 0, 1,
        // and the slot written lies inside the ring. Single-threaded.
        unsafe {
            let tail = self.base.add(1).read_volatile();
            let first = (kpi::lmp::slot_offset(tail, SLOTS) / 8) as usize;
            self.base.add(first).write_volatile(SlotHeader { words: 1, cap: false }.to_raw());
            self.base.add(first + 1).write_volatile(word);
            self.base.add(1).write_volatile(tail + 1);
        }
    }
}

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

/// Runs `f` on a waitset's pure state (each test owns its waitsets).
fn with<R>(ws: &Waitset, f: impl FnOnce(&mut RawWaitset) -> R) -> R {
    // SAFETY: the waitset is this test's alone, and no other reference to
    // its state lives during `f`.
    f(unsafe { &mut *ws.raw.get() })
}

fn take(rx: &LmpRecv) -> Option<Message> {
    // SAFETY: the receiver is this test's alone.
    unsafe { &mut *rx.bound.get() }.as_mut().and_then(|b| b.ring.recv())
}

fn nop(_: usize) {}

/// A scheduler with one running thread.
fn one_thread() -> (Scheduler<4>, Tid) {
    let mut s = Scheduler::new();
    let t = s.thread_create(0, 0).unwrap();
    assert_eq!(s.run_upcall(), Next::Switch { from: None, to: t });
    (s, t)
}

#[test]
fn binding_adds_an_idle_source_once() {
    let (ws, rx) = (leak(Waitset::new()), leak(LmpRecv::new()));
    let mut list = Receivers::new();
    assert!(!list.any());
    let (_, ring) = Kernel::new();
    let id = rx.bind_in(&mut list, ring, ws).unwrap();
    assert!(list.any());
    assert_eq!(with(ws, |w| w.state(id)), Ok(SourceState::Idle));
    let (_, again) = Kernel::new();
    assert_eq!(rx.bind_in(&mut list, again, ws).err(), Some(WaitsetError::AlreadyBound));
    assert!(rx.unbind_in(&mut list).is_ok());
    assert!(!list.any(), "unbinding stops the poll");
    assert_eq!(with(ws, |w| w.state(id)), Err(WaitsetError::UnknownSource));
    assert_eq!(rx.unbind_in(&mut list).err(), Some(WaitsetError::NotBound));
    let (mut s, _) = one_thread();
    assert_eq!(rx.register_in(Closure::new(nop, 0), &mut s), Err(WaitsetError::NotBound));
}

#[test]
fn the_list_refuses_more_receivers_than_it_holds() {
    let ws = leak(Waitset::new());
    let mut list = Receivers::new();
    for _ in 0..MAX_LMP_RECV {
        assert!(leak(LmpRecv::new()).bind_in(&mut list, Kernel::new().1, ws).is_ok());
    }
    let rx = leak(LmpRecv::new());
    assert_eq!(rx.bind_in(&mut list, Kernel::new().1, ws).err(), Some(WaitsetError::Full));
    assert!(rx.bound_ref().is_err(), "a refused bind leaves it unbound");
}

#[test]
fn a_message_before_registration_is_found_by_register_not_latched_by_the_poll() {
    let (ws, rx) = (leak(Waitset::new()), leak(LmpRecv::new()));
    let mut list = Receivers::new();
    let (k, ring) = Kernel::new();
    let id = rx.bind_in(&mut list, ring, ws).unwrap();
    let (mut s, _) = one_thread();
    k.deliver(7);
    assert_eq!(list.poll(&mut s), 0, "nothing registered: nothing to trigger");
    assert_eq!(with(ws, |w| w.state(id)), Ok(SourceState::Idle));
    rx.register_in(Closure::new(nop, 1), &mut s).unwrap();
    assert_eq!(with(ws, |w| w.state(id)), Ok(SourceState::Pending), "the ring is the latch");
    assert_eq!(with(ws, |w| w.event_dispatch_non_block()).map(|c| c.arg), Some(1));
    assert_eq!(take(rx).map(|m| m.words[0]), Some(7));
}

#[test]
fn the_poll_wakes_a_thread_blocked_in_event_dispatch() {
    let (ws, rx) = (leak(Waitset::new()), leak(LmpRecv::new()));
    let mut list = Receivers::new();
    let (k, ring) = Kernel::new();
    rx.bind_in(&mut list, ring, ws).unwrap();
    let (mut s, t) = one_thread();
    rx.register_in(Closure::new(nop, 2), &mut s).unwrap();
    assert_eq!(list.poll(&mut s), 0, "an empty ring triggers nothing");
    let blocked = with(ws, |w| w.event_dispatch(&mut s)).unwrap();
    assert!(matches!(blocked, Blocking::Blocked(Next::Idle { from: Some(x) }) if x == t));
    k.deliver(1);
    assert_eq!(list.poll(&mut s), 1);
    assert_eq!(s.state(t), ThreadState::Runnable);
    assert_eq!(s.run_upcall(), Next::Switch { from: None, to: t });
    let got = with(ws, |w| w.event_dispatch(&mut s)).unwrap();
    assert!(matches!(got, Blocking::Done(c) if c.arg == 2));
    assert_eq!(list.poll(&mut s), 0, "one-shot: no closure, no trigger, though the message is still there");
}

#[test]
fn a_handler_that_leaves_messages_runs_again_after_registering() {
    let (ws, rx) = (leak(Waitset::new()), leak(LmpRecv::new()));
    let mut list = Receivers::new();
    let (k, ring) = Kernel::new();
    let id = rx.bind_in(&mut list, ring, ws).unwrap();
    let (mut s, _) = one_thread();
    k.deliver(10);
    k.deliver(11);
    let mut got = vec![];
    for _ in 0..2 {
        rx.register_in(Closure::new(nop, 0), &mut s).unwrap();
        assert_eq!(with(ws, |w| w.state(id)), Ok(SourceState::Pending));
        assert!(with(ws, |w| w.event_dispatch_non_block()).is_some());
        got.push(take(rx).unwrap().words[0]);
    }
    assert_eq!(got, [10, 11]);
    rx.register_in(Closure::new(nop, 0), &mut s).unwrap();
    assert_eq!(with(ws, |w| w.state(id)), Ok(SourceState::Registered), "empty ring: waits");
}

#[test]
fn two_waitsets_do_not_see_each_others_messages() {
    let (ws1, ws2) = (leak(Waitset::new()), leak(Waitset::new()));
    let (rx1, rx2) = (leak(LmpRecv::new()), leak(LmpRecv::new()));
    let mut list = Receivers::new();
    let (_, ring1) = Kernel::new();
    let (k2, ring2) = Kernel::new();
    rx1.bind_in(&mut list, ring1, ws1).unwrap();
    rx2.bind_in(&mut list, ring2, ws2).unwrap();
    let mut s = Scheduler::<4>::new();
    let a = s.thread_create(0, 0).unwrap();
    let b = s.thread_create(0, 0).unwrap();
    assert_eq!(s.run_upcall(), Next::Switch { from: None, to: a });
    rx1.register_in(Closure::new(nop, 1), &mut s).unwrap();
    rx2.register_in(Closure::new(nop, 2), &mut s).unwrap();
    assert!(matches!(with(ws1, |w| w.event_dispatch(&mut s)), Ok(Blocking::Blocked(_))));
    assert_eq!(s.current(), Some(b));
    assert!(matches!(with(ws2, |w| w.event_dispatch(&mut s)), Ok(Blocking::Blocked(_))));
    k2.deliver(5);
    assert_eq!(list.poll(&mut s), 1);
    assert_eq!((s.state(a), s.state(b)), (ThreadState::Blocked, ThreadState::Runnable));
    assert_eq!(with(ws1, |w| w.pending_count()), 0);
    assert_eq!(with(ws2, |w| w.event_dispatch_non_block()).map(|c| c.arg), Some(2));
}
