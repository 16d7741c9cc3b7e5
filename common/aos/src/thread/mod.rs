//! User-level threads on a dispatcher (book ch. 4.12–4.14): the thread
//! scheduler's decisions as pure logic, which the run upcall and the thread
//! calls of the runtime drive.
//!
//! Owns one dispatcher's thread table: every thread's state, the FIFO run
//! queue, which slots are free, who is joining whom, and the rules of the
//! wait queues that mutexes ([`Mutex`]), condition variables ([`Condvar`])
//! and waitsets block threads on. It may not touch stacks, registers,
//! TPIDR_EL0, the dispatcher frame or the kernel: a thread's saved context
//! is architecture code's business. Each thread carries two opaque words for
//! that code — `context` (where it keeps the thread's registers and stack)
//! and `tls` (the value TPIDR_EL0 holds while the thread runs) — and this
//! module only stores them.
//!
//! Every operation that can stop the calling thread answers with a [`Next`]:
//! what the caller, the arch code, must do now (carry on, switch threads, or
//! give the core back to the kernel). Nothing here ever switches itself, so
//! all of it runs and is tested on the host. Operations that cannot stop the
//! caller (create, wake, detach, unlock, signal) return their result and the
//! caller carries on: a woken thread waits in the run queue until the running
//! one yields, blocks or exits, or a run upcall preempts it.
//!
//! A blocking operation completes in one of two ways, fixed per operation:
//! by *hand-off* (mutex lock: when the thread runs again it owns the mutex)
//! or by *retry* (join, condition-variable re-lock, `event_dispatch`: when
//! the thread runs again its wrapper calls again). [`Blocking`] marks the
//! second kind.
//!
//! One dispatcher runs on one core, and the scheduler runs only with upcalls
//! disabled (the resume bit of ch. 4.14), so it is never entered twice at
//! once: plain `&mut self`, no lock, no atomics. The arch code keeps the
//! [`Scheduler`] where only disabled code reaches it.
//!
//! That arch code is [`runtime`] (the calls programs make, re-exported here:
//! [`spawn`], [`join`], [`Mutex`], ...) and `context` (the register-level
//! switch). The pure mutex and condition variable are [`sync::Mutex`] and
//! [`sync::Condvar`]; [`Mutex`] and [`Condvar`] here are the runtime's
//! wrappers that programs use.

mod context;
pub mod runtime;
pub mod sync;

#[cfg(test)]
pub(crate) mod machine;
#[cfg(test)]
mod tests;

pub use runtime::{
    Condvar, MAX_THREADS, Mutex, MutexGuard, STACK_SIZE, Stack, Stacks, TLS_WORDS, current, detach, exit, init, join,
    preemptions, spawn, tls_get, tls_set, yield_now,
};

/// A thread's name: its slot in the table and the slot's generation.
///
/// The generation changes each time the slot is freed, so a `Tid` kept after
/// its thread was joined (or exited detached) is recognised as stale instead
/// of naming whichever thread reuses the slot. Generations wrap after 65536
/// reuses of one slot; slots are reused least-recently-freed first, which
/// makes that as late as the table allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tid {
    index: u16,
    generation: u16,
}

impl Tid {
    /// The slot: an index the arch code may use for arrays parallel to the
    /// table (stacks, save areas).
    pub const fn index(self) -> usize {
        self.index as usize
    }

    /// How many times the slot was freed before this thread took it.
    pub const fn generation(self) -> u16 {
        self.generation
    }

    /// The id as one word, for keeping it where only integers fit.
    pub const fn to_raw(self) -> u32 {
        (self.generation as u32) << 16 | self.index as u32
    }

    /// An id from [`Tid::to_raw`]; any other value names no thread and every
    /// operation refuses it.
    pub const fn from_raw(raw: u32) -> Tid {
        Tid { index: raw as u16, generation: (raw >> 16) as u16 }
    }
}

impl core::fmt::Display for Tid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "thread {}.{}", self.index, self.generation)
    }
}

/// Where a thread is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// No thread: the slot is free (also the answer for a stale [`Tid`]).
    Free,
    /// Waiting in the run queue.
    Runnable,
    /// The one thread the dispatcher is running.
    Running,
    /// In a wait queue (a mutex's, a condition variable's, a waitset's, or
    /// one the caller owns), or waiting to join a thread.
    Blocked,
    /// Finished with this code; the slot is kept until a join collects it.
    Exited(i32),
}

/// What the arch code must do after an operation.
#[must_use = "the dispatcher must carry out the scheduler's decision"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The thread that was running goes on: a thread call returns to its
    /// caller; the run upcall resumes the enabled save area.
    Continue,
    /// Stop running `from`, run `to` (its context and TLS word say how).
    ///
    /// `from` is the thread whose state must be saved because it will run
    /// again (it is runnable or blocked): from a thread call its live
    /// registers, from the run upcall the enabled save area. `None` when
    /// nothing needs saving: no thread was running, or it exited.
    Switch { from: Option<Tid>, to: Tid },
    /// Nothing is runnable. Save `from` as for [`Next::Switch`], then give
    /// the core back to the kernel with upcalls enabled: the next run upcall
    /// comes when an event may have made a thread runnable.
    Idle { from: Option<Tid> },
}

/// The answer of an operation that either completes now or blocks the
/// caller and is called again when the caller runs again.
#[must_use = "a blocked caller must carry out the scheduler's decision"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocking<T> {
    /// Done; the caller carries on ([`Next::Continue`]).
    Done(T),
    /// The caller is blocked: carry out the decision, and when the caller
    /// runs again, call the operation again.
    Blocked(Next),
}

/// Why a thread operation was refused. A refused operation changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadError {
    /// Every slot of the table holds a thread.
    TableFull,
    /// The id names no thread: never created, joined already, or exited
    /// while detached.
    NoSuchThread,
    /// The operation acts on the calling thread, and none is running (it was
    /// called from the upcall or from an idle dispatcher).
    NoCurrent,
    /// A thread cannot join itself: it would wait for ever.
    JoinSelf,
    /// The thread is detached: nobody may join it.
    Detached,
    /// Another thread is already joining this one.
    JoinerExists,
    /// Unlocking, or waiting with, a mutex the caller does not hold.
    NotOwner,
    /// Locking a mutex the caller already holds (it is not recursive).
    AlreadyOwner,
    /// The thread runtime is not running: `thread::init` was not called.
    NotStarted,
    /// `thread::init` was called already.
    AlreadyStarted,
    /// There are no threads here: the host has no dispatcher to run them.
    Unsupported,
    /// Every stack the program gave the runtime holds a thread.
    NoStack,
    /// Called with upcalls disabled, from the dispatcher's own code, which
    /// must not re-enter the runtime.
    Disabled,
    /// A thread-local word index at or past `TLS_WORDS`.
    BadTlsIndex,
}

impl core::fmt::Display for ThreadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ThreadError::TableFull => "the thread table is full",
            ThreadError::NoSuchThread => "no such thread (never created, joined, or exited detached)",
            ThreadError::NoCurrent => "no thread is running on this dispatcher",
            ThreadError::JoinSelf => "a thread cannot join itself",
            ThreadError::Detached => "the thread is detached",
            ThreadError::JoinerExists => "another thread is already joining this thread",
            ThreadError::NotOwner => "the calling thread does not hold the mutex",
            ThreadError::AlreadyOwner => "the calling thread already holds the mutex",
            ThreadError::NotStarted => "the thread runtime is not running (thread::init was not called)",
            ThreadError::AlreadyStarted => "the thread runtime is running already",
            ThreadError::Unsupported => "threads run only on AOS, not on the host",
            ThreadError::NoStack => "every thread stack is in use",
            ThreadError::Disabled => "thread call with upcalls disabled (from dispatcher code)",
            ThreadError::BadTlsIndex => "no such thread-local word",
        })
    }
}

/// A FIFO of slots linked through the table (one link per thread: a thread
/// is in at most one queue at a time, so one suffices and no memory is
/// needed). Shared by the scheduler's own queues and [`WaitQueue`].
#[derive(Debug, Default)]
struct Fifo {
    head: Option<u16>,
    tail: Option<u16>,
    len: u16,
}

impl Fifo {
    const EMPTY: Fifo = Fifo { head: None, tail: None, len: 0 };
}

/// Threads blocked on something the caller owns (Barrelfish's thread queue):
/// a mutex, a condition variable, a waitset, or anything else that wakes
/// threads. FIFO: threads wake in the order they blocked.
///
/// It holds two slot numbers; the links live in the [`Scheduler`] whose
/// threads it queues, so a queue must only ever be used with one scheduler.
/// Not `Clone`: a copy would let one thread be woken twice. Dropping a queue
/// that still holds threads leaves them blocked for ever.
#[derive(Debug, Default)]
pub struct WaitQueue(Fifo);

impl WaitQueue {
    pub const fn new() -> WaitQueue {
        WaitQueue(Fifo::EMPTY)
    }

    /// Threads waiting.
    pub fn len(&self) -> usize {
        self.0.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.0.head.is_none()
    }
}

#[derive(Debug)]
struct Thread {
    state: ThreadState,
    generation: u16,
    /// The next slot in whichever queue this thread is in (run, wait, free).
    next: Option<u16>,
    context: usize,
    tls: usize,
    detached: bool,
    /// The thread that called join on this one. It stays recorded after the
    /// exit woke it, until its retried join collects the code.
    joiner: Option<Tid>,
}

impl Thread {
    const FREE: Thread = Thread {
        state: ThreadState::Free,
        generation: 0,
        next: None,
        context: 0,
        tls: 0,
        detached: false,
        joiner: None,
    };
}

fn push(threads: &mut [Thread], q: &mut Fifo, i: u16) {
    debug_assert!(threads[i as usize].next.is_none() && q.tail != Some(i), "{i} queued twice");
    match q.tail {
        Some(t) => threads[t as usize].next = Some(i),
        None => q.head = Some(i),
    }
    q.tail = Some(i);
    q.len += 1;
}

fn pop(threads: &mut [Thread], q: &mut Fifo) -> Option<u16> {
    let i = q.head?;
    q.head = threads[i as usize].next.take();
    if q.head.is_none() {
        q.tail = None;
    }
    q.len -= 1;
    Some(i)
}

fn iter<'a>(threads: &'a [Thread], q: &'a Fifo) -> impl Iterator<Item = u16> + 'a {
    core::iter::successors(q.head, move |&i| threads[i as usize].next)
}

/// The thread scheduler of one dispatcher, with room for `N` threads
/// (at most 65535).
///
/// The run queue is FIFO and the running thread is not in it: yielding or
/// being preempted puts the running thread at the back and runs the front,
/// which gives round robin; a created or woken thread joins the back.
#[derive(Debug)]
pub struct Scheduler<const N: usize> {
    threads: [Thread; N],
    current: Option<u16>,
    run_queue: Fifo,
    /// Free slots, least recently freed first (see [`Tid`]).
    free: Fifo,
}

impl<const N: usize> Scheduler<N> {
    /// An empty table. The domain's first thread is made with
    /// [`Scheduler::thread_create`] and started by [`Scheduler::run_upcall`].
    pub const fn new() -> Self {
        const { assert!(N > 0 && N <= u16::MAX as usize, "a scheduler holds 1 to 65535 threads") };
        let mut threads = [const { Thread::FREE }; N];
        let mut i = 0;
        while i + 1 < N {
            threads[i].next = Some((i + 1) as u16);
            i += 1;
        }
        let free = Fifo { head: Some(0), tail: Some((N - 1) as u16), len: N as u16 };
        Scheduler { threads, current: None, run_queue: Fifo::EMPTY, free }
    }

    fn tid(&self, i: u16) -> Tid {
        Tid { index: i, generation: self.threads[i as usize].generation }
    }

    /// The slot of a live thread (anything but free).
    fn slot(&self, t: Tid) -> Result<u16, ThreadError> {
        match self.threads.get(t.index()) {
            Some(th) if th.generation == t.generation && th.state != ThreadState::Free => Ok(t.index),
            _ => Err(ThreadError::NoSuchThread),
        }
    }

    fn running(&self) -> Result<u16, ThreadError> {
        self.current.ok_or(ThreadError::NoCurrent)
    }

    /// The running thread, if any.
    pub fn current(&self) -> Option<Tid> {
        self.current.map(|i| self.tid(i))
    }

    /// The state of `t`; [`ThreadState::Free`] if `t` is stale.
    pub fn state(&self, t: Tid) -> ThreadState {
        self.slot(t).map_or(ThreadState::Free, |i| self.threads[i as usize].state)
    }

    /// The arch code's context word of `t`.
    pub fn context(&self, t: Tid) -> Result<usize, ThreadError> {
        Ok(self.threads[self.slot(t)? as usize].context)
    }

    pub fn set_context(&mut self, t: Tid, context: usize) -> Result<(), ThreadError> {
        let i = self.slot(t)?;
        self.threads[i as usize].context = context;
        Ok(())
    }

    /// The thread-local storage word of `t`: what TPIDR_EL0 holds while it
    /// runs (Barrelfish's `thread_get_tls`).
    pub fn tls(&self, t: Tid) -> Result<usize, ThreadError> {
        Ok(self.threads[self.slot(t)? as usize].tls)
    }

    /// Changes the TLS word; if `t` is running, the caller writes TPIDR_EL0
    /// too (Barrelfish's `thread_set_tls`).
    pub fn set_tls(&mut self, t: Tid, tls: usize) -> Result<(), ThreadError> {
        let i = self.slot(t)?;
        self.threads[i as usize].tls = tls;
        Ok(())
    }

    /// Whether `t` is a live detached thread.
    pub fn is_detached(&self, t: Tid) -> bool {
        self.slot(t).is_ok_and(|i| self.threads[i as usize].detached)
    }

    /// The thread that called join on `t`, if any (still recorded after
    /// `t`'s exit woke it, until it collects the code).
    pub fn joiner(&self, t: Tid) -> Option<Tid> {
        let i = self.slot(t).ok()?;
        self.threads[i as usize].joiner
    }

    /// The joiner of slot `i`, unless it has gone: a joiner that exited
    /// without collecting the code must not keep others from joining.
    fn live_joiner(&self, i: u16) -> Option<Tid> {
        self.threads[i as usize].joiner.filter(|&j| self.slot(j).is_ok())
    }

    /// Threads the table holds.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Threads in any state but free (exited ones not yet joined count).
    pub fn live_count(&self) -> usize {
        N - self.free.len as usize
    }

    /// Threads in the run queue (the running one is not).
    pub fn runnable_count(&self) -> usize {
        self.run_queue.len as usize
    }

    /// The run queue, front first.
    pub fn run_queue(&self) -> impl Iterator<Item = Tid> + '_ {
        iter(&self.threads, &self.run_queue).map(|i| self.tid(i))
    }

    /// The threads in `q`, first to wake first. `q` must belong to this
    /// scheduler.
    pub fn waiters<'a>(&'a self, q: &'a WaitQueue) -> impl Iterator<Item = Tid> + 'a {
        iter(&self.threads, &q.0).map(|i| self.tid(i))
    }

    fn make_runnable(&mut self, i: u16) {
        self.threads[i as usize].state = ThreadState::Runnable;
        push(&mut self.threads, &mut self.run_queue, i);
    }

    /// Runs the front of the run queue after the running thread stopped
    /// (`current` already cleared).
    fn switch_from(&mut self, from: Option<Tid>) -> Next {
        debug_assert!(self.current.is_none());
        match pop(&mut self.threads, &mut self.run_queue) {
            Some(i) => {
                self.threads[i as usize].state = ThreadState::Running;
                self.current = Some(i);
                Next::Switch { from, to: self.tid(i) }
            }
            None => Next::Idle { from },
        }
    }

    /// Puts the running thread at the back of the run queue and runs the
    /// front; [`Next::Continue`] if nothing else is runnable.
    fn rotate(&mut self, i: u16) -> Next {
        if self.run_queue.head.is_none() {
            return Next::Continue;
        }
        self.current = None;
        self.make_runnable(i);
        self.switch_from(Some(self.tid(i)))
    }

    fn free_slot(&mut self, i: u16) {
        let th = &mut self.threads[i as usize];
        let generation = th.generation.wrapping_add(1);
        *th = Thread { generation, ..Thread::FREE };
        push(&mut self.threads, &mut self.free, i);
    }

    /// Makes a runnable thread at the back of the run queue (Barrelfish's
    /// `thread_create`). The arch code has prepared `context` so that
    /// switching to the thread starts it; `tls` is its TPIDR_EL0 value.
    /// The caller, if any, carries on.
    pub fn thread_create(&mut self, context: usize, tls: usize) -> Result<Tid, ThreadError> {
        let i = pop(&mut self.threads, &mut self.free).ok_or(ThreadError::TableFull)?;
        let th = &mut self.threads[i as usize];
        th.context = context;
        th.tls = tls;
        self.make_runnable(i);
        Ok(self.tid(i))
    }

    /// The running thread goes to the back of the run queue and the front
    /// runs (Barrelfish's `thread_yield`); [`Next::Continue`] if it is the
    /// only runnable thread.
    pub fn thread_yield(&mut self) -> Result<Next, ThreadError> {
        let i = self.running()?;
        Ok(self.rotate(i))
    }

    /// The run upcall's decision (Barrelfish's `thread_run_disabled`): the
    /// dispatcher was activated, by preemption or because an event arrived.
    /// A thread that was running was preempted — its registers are in the
    /// enabled save area — and goes to the back of the run queue, so threads
    /// share the dispatcher's time round robin. Call it after delivering the
    /// upcall's events (which may have woken threads), and at start-up.
    pub fn run_upcall(&mut self) -> Next {
        match self.current {
            Some(i) => self.rotate(i),
            None => self.switch_from(None),
        }
    }

    /// Blocks the running thread on `q` (Barrelfish's `thread_block`). It
    /// runs again after a [`Scheduler::wake_one`] or
    /// [`Scheduler::wake_all`] on `q` reaches it.
    pub fn thread_block(&mut self, q: &mut WaitQueue) -> Result<Next, ThreadError> {
        let i = self.running()?;
        self.current = None;
        self.threads[i as usize].state = ThreadState::Blocked;
        push(&mut self.threads, &mut q.0, i);
        Ok(self.switch_from(Some(self.tid(i))))
    }

    /// Makes the first thread of `q` runnable (Barrelfish's
    /// `thread_unblock_one`). Callable from the upcall, with no thread
    /// running.
    pub fn wake_one(&mut self, q: &mut WaitQueue) -> Option<Tid> {
        let i = pop(&mut self.threads, &mut q.0)?;
        debug_assert_eq!(self.threads[i as usize].state, ThreadState::Blocked, "woke a thread that was not blocked");
        self.make_runnable(i);
        Some(self.tid(i))
    }

    /// Makes every thread of `q` runnable, in queue order; how many.
    pub fn wake_all(&mut self, q: &mut WaitQueue) -> usize {
        let mut n = 0;
        while self.wake_one(q).is_some() {
            n += 1;
        }
        n
    }

    /// Ends the running thread with `code` (Barrelfish's `thread_exit`). A
    /// thread joining it becomes runnable. A detached thread's slot is freed
    /// at once; the arch code may reuse its stack only once it has switched
    /// away, which is what the answer tells it to do next.
    pub fn thread_exit(&mut self, code: i32) -> Result<Next, ThreadError> {
        let i = self.running()?;
        self.current = None;
        if let Some(j) = self.threads[i as usize].joiner {
            // A joiner is blocked until this exit: nothing else wakes it.
            self.make_runnable(j.index);
        }
        if self.threads[i as usize].detached {
            self.free_slot(i);
        } else {
            self.threads[i as usize].state = ThreadState::Exited(code);
        }
        Ok(self.switch_from(None))
    }

    /// Waits for `t` to exit and collects its code, freeing its slot
    /// (Barrelfish's `thread_join`). If `t` has not exited, the caller blocks
    /// and calls again when it runs (after `t`'s exit); a thread has at most
    /// one joiner.
    pub fn thread_join(&mut self, t: Tid) -> Result<Blocking<i32>, ThreadError> {
        let me = self.running()?;
        let i = self.slot(t)?;
        if i == me {
            return Err(ThreadError::JoinSelf);
        }
        let me_tid = self.tid(me);
        if self.threads[i as usize].detached {
            return Err(ThreadError::Detached);
        }
        if self.live_joiner(i).is_some_and(|j| j != me_tid) {
            return Err(ThreadError::JoinerExists);
        }
        if let ThreadState::Exited(code) = self.threads[i as usize].state {
            self.free_slot(i);
            return Ok(Blocking::Done(code));
        }
        self.threads[i as usize].joiner = Some(me_tid);
        self.current = None;
        self.threads[me as usize].state = ThreadState::Blocked;
        Ok(Blocking::Blocked(self.switch_from(Some(me_tid))))
    }

    /// Lets `t` free its own slot when it exits, or frees it now if it has
    /// exited (Barrelfish's `thread_detach`). Nobody may join it afterwards.
    pub fn thread_detach(&mut self, t: Tid) -> Result<(), ThreadError> {
        let i = self.slot(t)?;
        if self.threads[i as usize].detached {
            return Err(ThreadError::Detached);
        }
        if self.live_joiner(i).is_some() {
            return Err(ThreadError::JoinerExists);
        }
        if let ThreadState::Exited(_) = self.threads[i as usize].state {
            self.free_slot(i);
        } else {
            let th = &mut self.threads[i as usize];
            th.detached = true;
            th.joiner = None;
        }
        Ok(())
    }
}

impl<const N: usize> Default for Scheduler<N> {
    fn default() -> Self {
        Self::new()
    }
}
