//! The waitset runtime (book ch. 5.6): waitsets the threads of this
//! dispatcher block on, its default waitset (Barrelfish's
//! `get_default_waitset`), and LMP receive rings as event sources
//! (`lmp_chan_register_recv` and the endpoint poll).
//!
//! Owns each runtime [`Waitset`]'s pure [`super::Waitset`], each bound
//! [`LmpRecv`]'s ring, and the list of bound receivers the runtime polls.
//! All of it is touched only with upcalls disabled: through the thread
//! runtime's `call_sched`, or from the runtime itself (`poll_disabled`, from
//! its idle loop and its run upcall). It may not touch stacks, registers,
//! the scheduler's decisions or the kernel; of the dispatcher frame it
//! reads and clears `haswork`, nothing else. Closures run in the thread
//! that dispatched them, after the disabled region ends: a handler is
//! ordinary thread code and may block, send, or register again.
//!
//! The poll. Once a receiver is bound, `haswork` belongs to this module:
//! the poll clears it, then looks at every bound ring whose source has a
//! closure registered and triggers those that hold messages. A message that
//! arrives after the clear sets the flag again, so the next poll sees it:
//! the run upcall polls when the flag is set, and the idle loop polls before
//! every `Wait` (which returns at once with the flag set) and after it. So
//! no wake-up is lost. `event_dispatch` polls too before it looks for a
//! pending source. Before anything is bound, the poll does nothing and
//! leaves the flag to threads that clear, check and wait on their own.
//!
//! A ring is its own latch: the poll triggers only sources with a closure
//! registered, and registering ([`LmpRecv::register`]) triggers at once if
//! the ring holds messages. So a message that came before registration, or
//! one a handler left behind, runs the next closure registered, and a
//! closure never runs for an empty ring unless another thread took the
//! messages first.

use core::cell::UnsafeCell;

use super::{Closure, SourceId, SourceState, WaitsetError};
use crate::dispatcher;
use crate::lmp::{Message, Ring};
use crate::thread::runtime::call_sched;
use crate::thread::{Blocking, Next, Scheduler};

/// Sources one runtime waitset holds: enough for init's ring per process
/// (M3) and a few of its own.
pub const WAITSET_SOURCES: usize = 48;
/// LMP receivers bound at once, over all waitsets.
pub const MAX_LMP_RECV: usize = 40;

type RawWaitset = super::Waitset<WAITSET_SOURCES>;

/// A waitset of this dispatcher's threads: the pure [`super::Waitset`]
/// driven by the thread runtime. Meant to be a `static` (an [`LmpRecv`]
/// needs a `'static` one); [`default_waitset`] is one.
pub struct Waitset {
    /// Touched only with upcalls disabled.
    raw: UnsafeCell<RawWaitset>,
}

// SAFETY: `raw` is used only with upcalls disabled (inside `call_sched` or
// the runtime's poll), which no two threads of the dispatcher are in at once.
unsafe impl Sync for Waitset {}

static DEFAULT: Waitset = Waitset::new();

/// The dispatcher's default waitset (`get_default_waitset`).
pub fn default_waitset() -> &'static Waitset {
    &DEFAULT
}

/// Runs `f` on a waitset's pure state, disabled; its decision is carried
/// out. `raw` must be the waitset's cell.
fn with_raw<R>(
    raw: &UnsafeCell<RawWaitset>,
    f: impl FnOnce(&mut RawWaitset, &mut Scheduler<{ crate::thread::MAX_THREADS }>) -> Result<(R, Next), WaitsetError>,
) -> Result<R, WaitsetError> {
    call_sched(|sched| {
        // SAFETY: inside `call_sched` upcalls are disabled, so no other
        // reference to the waitset exists; this one ends before any switch.
        f(unsafe { &mut *raw.get() }, sched)
    })
}

impl Waitset {
    pub const fn new() -> Waitset {
        Waitset { raw: UnsafeCell::new(RawWaitset::new()) }
    }

    /// Adds an idle source.
    pub fn add_source(&self) -> Result<SourceId, WaitsetError> {
        with_raw(&self.raw, |ws, _| Ok((ws.add_source()?, Next::Continue)))
    }

    /// Removes a source with its closure and event.
    pub fn remove_source(&self, id: SourceId) -> Result<(), WaitsetError> {
        with_raw(&self.raw, |ws, _| Ok((ws.remove_source(id)?, Next::Continue)))
    }

    pub fn state(&self, id: SourceId) -> Result<SourceState, WaitsetError> {
        with_raw(&self.raw, |ws, _| Ok((ws.state(id)?, Next::Continue)))
    }

    /// Registers the one-shot `closure` on a source; pending at once if an
    /// event is latched.
    pub fn register(&self, id: SourceId, closure: Closure) -> Result<(), WaitsetError> {
        with_raw(&self.raw, |ws, sched| Ok((ws.register(id, closure, sched).map(drop)?, Next::Continue)))
    }

    /// Takes a source's closure back; its event, if any, stays latched.
    pub fn deregister(&self, id: SourceId) -> Result<Closure, WaitsetError> {
        with_raw(&self.raw, |ws, _| Ok((ws.deregister(id)?, Next::Continue)))
    }

    /// An event on a source, from any thread: a thread blocked in
    /// [`Waitset::event_dispatch`] becomes runnable, and runs when the caller
    /// yields, blocks, or is preempted.
    pub fn trigger(&self, id: SourceId) -> Result<(), WaitsetError> {
        with_raw(&self.raw, |ws, sched| Ok((ws.trigger(id, sched).map(drop)?, Next::Continue)))
    }

    /// Threads blocked in [`Waitset::event_dispatch`].
    pub fn blocked(&self) -> Result<usize, WaitsetError> {
        with_raw(&self.raw, |ws, _| Ok((ws.waiters().len(), Next::Continue)))
    }

    /// Runs the oldest pending closure, blocking the calling thread until a
    /// source is pending (`event_dispatch`). The closure runs in this
    /// thread with upcalls enabled.
    pub fn event_dispatch(&self) -> Result<(), WaitsetError> {
        loop {
            // Not `with_raw`: the poll makes references to this waitset
            // too, so ours is made only after it.
            let got = call_sched::<_, WaitsetError>(|sched| {
                poll_disabled(sched);
                // SAFETY: disabled (inside `call_sched`); the poll's
                // references to this waitset ended with it.
                let ws = unsafe { &mut *self.raw.get() };
                Ok(match ws.event_dispatch(sched)? {
                    Blocking::Done(closure) => (Some(closure), Next::Continue),
                    Blocking::Blocked(next) => (None, next),
                })
            })?;
            // Woken: a source became pending, but another thread may have
            // taken it first; then block again.
            if let Some(closure) = got {
                closure.call();
                return Ok(());
            }
        }
    }

    /// Runs the oldest pending closure, if any, without blocking
    /// (`event_dispatch_non_block`); whether one ran.
    pub fn event_dispatch_non_block(&self) -> Result<bool, WaitsetError> {
        let got = call_sched::<_, WaitsetError>(|sched| {
            poll_disabled(sched);
            // SAFETY: as in `event_dispatch`.
            let ws = unsafe { &mut *self.raw.get() };
            Ok((ws.event_dispatch_non_block(), Next::Continue))
        })?;
        Ok(got.map(Closure::call).is_some())
    }
}

impl Default for Waitset {
    fn default() -> Self {
        Self::new()
    }
}

/// A ring bound as a source of a waitset.
struct Bound {
    ring: Ring,
    ws: &'static Waitset,
    source: SourceId,
}

/// The receiving end of an LMP channel as an event source: a ring of this
/// dispatcher's frame, bound to a source of a waitset, which the runtime
/// polls. Meant to be a `static`, so handlers reach it.
pub struct LmpRecv {
    /// Touched only with upcalls disabled.
    bound: UnsafeCell<Option<Bound>>,
}

// SAFETY: `bound` is used only with upcalls disabled; the ring it holds is
// this dispatcher's memory, read only by the thread in the disabled region.
unsafe impl Sync for LmpRecv {}

impl LmpRecv {
    /// A receiver bound to nothing.
    pub const fn new() -> LmpRecv {
        LmpRecv { bound: UnsafeCell::new(None) }
    }

    /// Makes `ring` a new source of `ws` and starts polling it; returns the
    /// source (Barrelfish's channel setup with `waitset_chanstate_init`).
    /// The ring must be one nothing else receives from. Refused
    /// ([`WaitsetError::Full`]) when `MAX_LMP_RECV` are bound.
    pub fn bind(&'static self, ring: Ring, ws: &'static Waitset) -> Result<SourceId, WaitsetError> {
        call_sched(|_| {
            // SAFETY: disabled (inside `call_sched`); nothing else
            // references the list, which only disabled code touches.
            let list = unsafe { &mut *RECEIVERS.0.get() };
            Ok((self.bind_in(list, ring, ws)?, Next::Continue))
        })
    }

    /// Stops polling the ring and removes its source (closure and event
    /// go); returns the ring.
    pub fn unbind(&'static self) -> Result<Ring, WaitsetError> {
        call_sched(|_| {
            // SAFETY: as in `bind`.
            let list = unsafe { &mut *RECEIVERS.0.get() };
            Ok((self.unbind_in(list)?, Next::Continue))
        })
    }

    /// Registers the one-shot `closure` for the next message
    /// (`lmp_chan_register_recv`). If the ring holds messages already, the
    /// source is pending at once: a handler that leaves messages behind and
    /// registers again runs again.
    pub fn register(&self, closure: Closure) -> Result<(), WaitsetError> {
        call_sched(|sched| Ok((self.register_in(closure, sched)?, Next::Continue)))
    }

    /// Takes the closure back.
    pub fn deregister(&self) -> Result<Closure, WaitsetError> {
        call_sched(|_| {
            let b = self.bound_ref()?;
            // SAFETY: as in `with_raw`.
            let ws = unsafe { &mut *b.ws.raw.get() };
            Ok((ws.deregister(b.source)?, Next::Continue))
        })
    }

    /// Takes the oldest message, if any (`lmp_chan_recv`). Disabled, so two
    /// threads receiving from one ring each take a different message.
    pub fn recv(&self) -> Result<Option<Message>, WaitsetError> {
        call_sched(|_| {
            // SAFETY: disabled (inside `call_sched`), and no other reference
            // to `bound` exists there.
            let b = unsafe { &mut *self.bound.get() }.as_mut().ok_or(WaitsetError::NotBound)?;
            Ok((b.ring.recv(), Next::Continue))
        })
    }

    /// Messages waiting in the ring.
    pub fn pending(&self) -> Result<u64, WaitsetError> {
        call_sched(|_| Ok((self.bound_ref()?.ring.pending(), Next::Continue)))
    }

    /// The receiver's source in its waitset.
    pub fn source(&self) -> Result<SourceId, WaitsetError> {
        call_sched(|_| Ok((self.bound_ref()?.source, Next::Continue)))
    }

    /// The bound state. Disabled callers only, with no `&mut` to it live.
    fn bound_ref(&self) -> Result<&Bound, WaitsetError> {
        // SAFETY: the callers are disabled (see above), and nothing creates
        // a `&mut` to `bound` while this reference lives.
        unsafe { &*self.bound.get() }.as_ref().ok_or(WaitsetError::NotBound)
    }

    fn bind_in(
        &'static self,
        list: &mut Receivers,
        ring: Ring,
        ws: &'static Waitset,
    ) -> Result<SourceId, WaitsetError> {
        // SAFETY: disabled callers only; no other reference to `bound` or to
        // the waitset lives while these do.
        let (bound, raw) = unsafe { (&mut *self.bound.get(), &mut *ws.raw.get()) };
        if bound.is_some() {
            return Err(WaitsetError::AlreadyBound);
        }
        let at = list.0.iter().position(Option::is_none).ok_or(WaitsetError::Full)?;
        let source = raw.add_source()?;
        list.0[at] = Some(self);
        *bound = Some(Bound { ring, ws, source });
        Ok(source)
    }

    fn unbind_in(&'static self, list: &mut Receivers) -> Result<Ring, WaitsetError> {
        // SAFETY: as in `bind_in`.
        let b = unsafe { &mut *self.bound.get() }.take().ok_or(WaitsetError::NotBound)?;
        if let Some(at) = list.0.iter().position(|r| r.is_some_and(|r| core::ptr::eq(r, self))) {
            list.0[at] = None;
        }
        // SAFETY: as in `bind_in`.
        let raw = unsafe { &mut *b.ws.raw.get() };
        // The program may have removed the source itself already.
        let _ = raw.remove_source(b.source);
        Ok(b.ring)
    }

    fn register_in<const N: usize>(&self, closure: Closure, sched: &mut Scheduler<N>) -> Result<(), WaitsetError> {
        let b = self.bound_ref()?;
        // SAFETY: disabled callers only; the waitset is not `bound`.
        let raw = unsafe { &mut *b.ws.raw.get() };
        raw.register(b.source, closure, sched)?;
        if b.ring.pending() > 0 {
            raw.trigger(b.source, sched)?;
        }
        Ok(())
    }
}

impl Default for LmpRecv {
    fn default() -> Self {
        Self::new()
    }
}

/// The bound receivers, in no order.
struct Receivers([Option<&'static LmpRecv>; MAX_LMP_RECV]);

impl Receivers {
    const fn new() -> Receivers {
        Receivers([None; MAX_LMP_RECV])
    }

    fn any(&self) -> bool {
        self.0.iter().any(Option::is_some)
    }

    /// Triggers every registered source whose ring holds messages; how
    /// many. Disabled callers only.
    fn poll<const N: usize>(&self, sched: &mut Scheduler<N>) -> usize {
        let mut n = 0;
        for r in self.0.iter().flatten() {
            let Ok(b) = r.bound_ref() else { continue };
            // SAFETY: disabled; each reference ends with its iteration.
            let raw = unsafe { &mut *b.ws.raw.get() };
            if raw.state(b.source) == Ok(SourceState::Registered) && b.ring.pending() > 0 {
                n += usize::from(raw.trigger(b.source, sched).is_ok());
            }
        }
        n
    }
}

struct ReceiversCell(UnsafeCell<Receivers>);

// SAFETY: only disabled code touches the list (see `Waitset`).
unsafe impl Sync for ReceiversCell {}

static RECEIVERS: ReceiversCell = ReceiversCell(UnsafeCell::new(Receivers::new()));

/// The poll (module comment): with a receiver bound, clears `haswork` and
/// triggers every registered source whose ring holds messages. Called by
/// the thread runtime, disabled, with no reference to any waitset live.
pub(crate) fn poll_disabled<const N: usize>(sched: &mut Scheduler<N>) {
    // SAFETY: disabled (the caller's contract); nothing else references
    // the list now.
    let list = unsafe { &*RECEIVERS.0.get() };
    if !list.any() {
        return;
    }
    // Cleared before the rings are read: a message after this sets it again.
    dispatcher::clear_haswork();
    list.poll(sched);
}

#[cfg(test)]
mod tests;
