//! Waitsets and event dispatch (book ch. 5.6): which event sources have a
//! handler registered, which have an event waiting for its handler, and in
//! what order handlers run — Barrelfish's `waitset`, `event_closure`
//! (`MKCLOSURE`) and `event_dispatch`, as pure logic.
//!
//! Owns the state of each source added to it (a channel end, later a UMP
//! poller or a timer) and the FIFO of pending sources; through a
//! [`WaitQueue`] of the thread scheduler, the threads blocked in
//! [`Waitset::event_dispatch`]. It may not touch the channels themselves:
//! whoever owns a channel calls [`Waitset::trigger`] when the channel has
//! something (for LMP, the upcall's poll of endpoints), and nothing here
//! knows what an event carries. It runs with upcalls disabled, like the
//! scheduler, and needs no lock.
//!
//! A source is in one of four states ([`SourceState`]): idle, registered
//! (a closure waits for an event), pending (event and closure: queued for
//! dispatch), or latched (an event came while no closure was registered).
//! Events are remembered, never dropped: the classic lost wake-up is a
//! message arriving between a handler's run and its re-registration, and a
//! latched event makes that registration pending at once. Events coalesce:
//! a trigger says "look at this source", not "one message", so a handler
//! should take everything there is or re-register — and a channel layer that
//! leaves messages behind must trigger again after re-registration (as
//! Barrelfish's `lmp_chan_register_recv` does when the endpoint is not
//! empty).
//!
//! [`rt`] carries this out for the threads of the running dispatcher:
//! waitsets threads block on, the default waitset, and LMP rings as event
//! sources.

use crate::thread::{Blocking, Scheduler, ThreadError, Tid, WaitQueue};

pub mod rt;

/// A handler and its argument, run once when its source has an event
/// (Barrelfish's `struct event_closure`, made by `MKCLOSURE`).
#[derive(Clone, Copy, Debug)]
pub struct Closure {
    pub func: fn(usize),
    pub arg: usize,
}

impl Closure {
    /// `MKCLOSURE(func, arg)`.
    pub const fn new(func: fn(usize), arg: usize) -> Closure {
        Closure { func, arg }
    }

    /// Runs the handler.
    pub fn call(self) {
        (self.func)(self.arg)
    }
}

/// An event source's name in its waitset: slot and generation, so a removed
/// source's id is refused rather than naming the next source in its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceId {
    index: u16,
    generation: u16,
}

impl SourceId {
    /// The slot, for tables parallel to the waitset.
    pub const fn index(self) -> usize {
        self.index as usize
    }
}

/// Where a source stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceState {
    /// No closure, no event.
    Idle,
    /// A closure waits for an event.
    Registered,
    /// An event and a closure: queued for [`Waitset::event_dispatch`].
    Pending,
    /// An event came while no closure was registered; registering makes the
    /// source pending at once.
    Latched,
}

/// Why a waitset operation was refused. A refused operation changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitsetError {
    /// Every source slot is in use.
    Full,
    /// The id names no source of this waitset (never added, or removed).
    UnknownSource,
    /// The source already has a closure registered (registered or pending).
    AlreadyRegistered,
    /// The source has no closure registered (idle or latched).
    NotRegistered,
    /// Blocking the caller failed: no thread is running; or, for the
    /// runtime's waitsets ([`rt`]), the thread runtime refused the call.
    Thread(ThreadError),
    /// An LMP receiver ([`rt::LmpRecv`]) is bound to a ring already.
    AlreadyBound,
    /// An LMP receiver is not bound to a ring.
    NotBound,
}

impl From<ThreadError> for WaitsetError {
    fn from(e: ThreadError) -> WaitsetError {
        WaitsetError::Thread(e)
    }
}

impl core::fmt::Display for WaitsetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WaitsetError::Full => f.write_str("the waitset has no free source slot"),
            WaitsetError::UnknownSource => f.write_str("no such event source in this waitset"),
            WaitsetError::AlreadyRegistered => f.write_str("the event source already has a closure registered"),
            WaitsetError::NotRegistered => f.write_str("the event source has no closure registered"),
            WaitsetError::Thread(e) => write!(f, "thread runtime: {e}"),
            WaitsetError::AlreadyBound => f.write_str("the LMP receiver is bound to a ring already"),
            WaitsetError::NotBound => f.write_str("the LMP receiver is not bound to a ring"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Source {
    live: bool,
    generation: u16,
    closure: Option<Closure>,
    /// An event arrived and no closure has consumed it yet.
    event: bool,
    /// Links in the pending FIFO (only while pending).
    prev: Option<u16>,
    next: Option<u16>,
}

impl Source {
    const FREE: Source = Source { live: false, generation: 0, closure: None, event: false, prev: None, next: None };

    fn state(&self) -> SourceState {
        match (self.closure.is_some(), self.event) {
            (false, false) => SourceState::Idle,
            (true, false) => SourceState::Registered,
            (true, true) => SourceState::Pending,
            (false, true) => SourceState::Latched,
        }
    }
}

/// A set of up to `S` event sources (at most 65535) and the threads waiting
/// for their events.
///
/// Every [`Waitset`] method that wakes or blocks threads takes the
/// dispatcher's [`Scheduler`]; it must always be the same one, the one whose
/// threads wait here.
#[derive(Debug)]
pub struct Waitset<const S: usize> {
    sources: [Source; S],
    /// Pending sources, oldest event first.
    head: Option<u16>,
    tail: Option<u16>,
    pending: u16,
    /// Threads blocked in `event_dispatch`.
    waiters: WaitQueue,
}

impl<const S: usize> Waitset<S> {
    pub const fn new() -> Self {
        const { assert!(S > 0 && S <= u16::MAX as usize, "a waitset holds 1 to 65535 sources") };
        Waitset { sources: [Source::FREE; S], head: None, tail: None, pending: 0, waiters: WaitQueue::new() }
    }

    fn slot(&self, id: SourceId) -> Result<u16, WaitsetError> {
        match self.sources.get(id.index()) {
            Some(s) if s.live && s.generation == id.generation => Ok(id.index),
            _ => Err(WaitsetError::UnknownSource),
        }
    }

    fn id(&self, i: u16) -> SourceId {
        SourceId { index: i, generation: self.sources[i as usize].generation }
    }

    fn enqueue(&mut self, i: u16) {
        self.sources[i as usize].prev = self.tail;
        self.sources[i as usize].next = None;
        match self.tail {
            Some(t) => self.sources[t as usize].next = Some(i),
            None => self.head = Some(i),
        }
        self.tail = Some(i);
        self.pending += 1;
    }

    fn unlink(&mut self, i: u16) {
        let Source { prev, next, .. } = self.sources[i as usize];
        match prev {
            Some(p) => self.sources[p as usize].next = next,
            None => self.head = next,
        }
        match next {
            Some(n) => self.sources[n as usize].prev = prev,
            None => self.tail = prev,
        }
        self.sources[i as usize].prev = None;
        self.sources[i as usize].next = None;
        self.pending -= 1;
    }

    /// A source became pending: it joins the back of the FIFO and wakes one
    /// thread blocked in `event_dispatch`. One per event is enough, since a
    /// dispatch consumes one event, and a woken thread that finds the event
    /// taken by another blocks again.
    fn make_pending<const N: usize>(&mut self, i: u16, sched: &mut Scheduler<N>) -> Option<Tid> {
        self.enqueue(i);
        sched.wake_one(&mut self.waiters)
    }

    /// Adds an idle source (Barrelfish's `waitset_chanstate_init`).
    pub fn add_source(&mut self) -> Result<SourceId, WaitsetError> {
        let i = self.sources.iter().position(|s| !s.live).ok_or(WaitsetError::Full)?;
        let s = &mut self.sources[i];
        *s = Source { live: true, generation: s.generation, ..Source::FREE };
        Ok(self.id(i as u16))
    }

    /// Removes a source, whatever its state: its closure and event are
    /// dropped and its id becomes unknown.
    pub fn remove_source(&mut self, id: SourceId) -> Result<(), WaitsetError> {
        let i = self.slot(id)?;
        if self.sources[i as usize].state() == SourceState::Pending {
            self.unlink(i);
        }
        let s = &mut self.sources[i as usize];
        *s = Source { generation: s.generation.wrapping_add(1), ..Source::FREE };
        Ok(())
    }

    /// The state of a source.
    pub fn state(&self, id: SourceId) -> Result<SourceState, WaitsetError> {
        Ok(self.sources[self.slot(id)? as usize].state())
    }

    /// Registers the one-shot `closure` on a source (Barrelfish's
    /// `waitset_chan_register`, what `lmp_chan_register_recv` calls). If an
    /// event is latched the source becomes pending at once, waking a thread
    /// blocked in `event_dispatch`: the one woken, if any.
    pub fn register<const N: usize>(
        &mut self,
        id: SourceId,
        closure: Closure,
        sched: &mut Scheduler<N>,
    ) -> Result<Option<Tid>, WaitsetError> {
        let i = self.slot(id)?;
        let s = &mut self.sources[i as usize];
        if s.closure.is_some() {
            return Err(WaitsetError::AlreadyRegistered);
        }
        s.closure = Some(closure);
        Ok(if s.event { self.make_pending(i, sched) } else { None })
    }

    /// Takes the closure back (`waitset_chan_deregister`). A pending source's
    /// event stays, latched, for the next registration.
    pub fn deregister(&mut self, id: SourceId) -> Result<Closure, WaitsetError> {
        let i = self.slot(id)?;
        let closure = self.sources[i as usize].closure.ok_or(WaitsetError::NotRegistered)?;
        if self.sources[i as usize].event {
            self.unlink(i);
        }
        self.sources[i as usize].closure = None;
        Ok(closure)
    }

    /// An event arrived on a source (`waitset_chan_trigger`). A registered
    /// source becomes pending, behind those already pending, and wakes a
    /// thread blocked in `event_dispatch` (the one woken, if any); an idle
    /// one latches the event; a pending or latched one already has an event,
    /// and this one coalesces with it. Callable from the upcall.
    pub fn trigger<const N: usize>(
        &mut self,
        id: SourceId,
        sched: &mut Scheduler<N>,
    ) -> Result<Option<Tid>, WaitsetError> {
        let i = self.slot(id)?;
        let s = &mut self.sources[i as usize];
        if s.event {
            return Ok(None);
        }
        s.event = true;
        Ok(if s.closure.is_some() { self.make_pending(i, sched) } else { None })
    }

    /// Takes the oldest pending source, deregisters its closure (one-shot:
    /// the source is idle again) and returns it; `None` if nothing is
    /// pending (`event_dispatch_non_block`). The caller runs the closure,
    /// after leaving the disabled section: handlers run as ordinary thread
    /// code and may register again on this waitset.
    pub fn event_dispatch_non_block(&mut self) -> Option<Closure> {
        let i = self.head?;
        self.unlink(i);
        let s = &mut self.sources[i as usize];
        s.event = false;
        let closure = s.closure.take();
        debug_assert!(closure.is_some(), "a pending source has a closure");
        closure
    }

    /// As [`Waitset::event_dispatch_non_block`], but with nothing pending the
    /// running thread blocks on the waitset until a source becomes pending,
    /// and then calls again (`event_dispatch`). With no running thread (in
    /// the upcall) and nothing pending, it fails with
    /// [`ThreadError::NoCurrent`].
    pub fn event_dispatch<const N: usize>(
        &mut self,
        sched: &mut Scheduler<N>,
    ) -> Result<Blocking<Closure>, WaitsetError> {
        match self.event_dispatch_non_block() {
            Some(closure) => Ok(Blocking::Done(closure)),
            None => Ok(Blocking::Blocked(sched.thread_block(&mut self.waiters)?)),
        }
    }

    /// Pending sources, next to dispatch first.
    pub fn pending(&self) -> impl Iterator<Item = SourceId> + '_ {
        core::iter::successors(self.head, move |&i| self.sources[i as usize].next).map(|i| self.id(i))
    }

    /// How many sources are pending.
    pub fn pending_count(&self) -> usize {
        self.pending as usize
    }

    /// Threads blocked in `event_dispatch`, first to wake first.
    pub fn waiters(&self) -> &WaitQueue {
        &self.waiters
    }

    /// Sources the waitset can hold.
    pub const fn capacity(&self) -> usize {
        S
    }
}

impl<const S: usize> Default for Waitset<S> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
