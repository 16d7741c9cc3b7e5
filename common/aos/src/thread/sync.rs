//! Mutexes and condition variables for the threads of one dispatcher
//! (Barrelfish's `thread_mutex` and `thread_cond`), built only on the
//! scheduler's public wait-queue operations.
//!
//! Owns who holds each mutex and the order of its waiters; owns nothing of
//! the threads themselves. Like the scheduler, it runs with upcalls disabled
//! and needs no lock of its own.
//!
//! A mutex is handed off: unlocking makes the first waiter the owner before
//! it even runs, so a thread that unlocks and locks again at once queues
//! behind the waiters instead of barging past them, and waiters acquire in
//! the order they asked. A mutex whose owner exits stays held.

use super::{Next, Scheduler, ThreadError, Tid, WaitQueue};

/// A non-recursive mutex with FIFO hand-off.
#[derive(Debug, Default)]
pub struct Mutex {
    owner: Option<Tid>,
    waiters: WaitQueue,
}

impl Mutex {
    pub const fn new() -> Mutex {
        Mutex { owner: None, waiters: WaitQueue::new() }
    }

    /// The thread that holds it.
    pub fn owner(&self) -> Option<Tid> {
        self.owner
    }

    /// Threads waiting for it, next owner first.
    pub fn waiters(&self) -> &WaitQueue {
        &self.waiters
    }

    /// Takes the mutex for the running thread (`thread_mutex_lock`). If it is
    /// held, the caller blocks; when the caller runs again it holds the
    /// mutex (hand-off): nothing to retry.
    pub fn lock<const N: usize>(&mut self, sched: &mut Scheduler<N>) -> Result<Next, ThreadError> {
        let me = sched.current().ok_or(ThreadError::NoCurrent)?;
        match self.owner {
            None => {
                self.owner = Some(me);
                Ok(Next::Continue)
            }
            Some(o) if o == me => Err(ThreadError::AlreadyOwner),
            Some(_) => sched.thread_block(&mut self.waiters),
        }
    }

    /// Takes the mutex if it is free (`thread_mutex_trylock`); whether it did.
    pub fn try_lock<const N: usize>(&mut self, sched: &Scheduler<N>) -> Result<bool, ThreadError> {
        let me = sched.current().ok_or(ThreadError::NoCurrent)?;
        match self.owner {
            None => {
                self.owner = Some(me);
                Ok(true)
            }
            Some(o) if o == me => Err(ThreadError::AlreadyOwner),
            Some(_) => Ok(false),
        }
    }

    /// Releases the mutex held by the running thread
    /// (`thread_mutex_unlock`), handing it to the first waiter, which becomes
    /// runnable. The new owner, if any. The caller carries on.
    pub fn unlock<const N: usize>(&mut self, sched: &mut Scheduler<N>) -> Result<Option<Tid>, ThreadError> {
        let me = sched.current().ok_or(ThreadError::NoCurrent)?;
        if self.owner != Some(me) {
            return Err(ThreadError::NotOwner);
        }
        self.owner = sched.wake_one(&mut self.waiters);
        Ok(self.owner)
    }
}

/// A condition variable (`thread_cond`).
///
/// A woken waiter becomes runnable and then contends for the mutex like any
/// other thread, as in Barrelfish's `thread_cond_wait`: waiting is a retry
/// operation whose second half is [`Mutex::lock`]. It does not move waiters
/// onto the mutex's queue ("wait morphing"), which would make `signal` need
/// the mutex; the price is that a thread signalled while the mutex is held
/// runs once only to block on the mutex. Either way, a waiter must recheck
/// its condition after re-locking: another thread may have got the mutex
/// first and changed it.
#[derive(Debug, Default)]
pub struct Condvar {
    waiters: WaitQueue,
}

impl Condvar {
    pub const fn new() -> Condvar {
        Condvar { waiters: WaitQueue::new() }
    }

    /// Threads waiting, first to wake first.
    pub fn waiters(&self) -> &WaitQueue {
        &self.waiters
    }

    /// Releases `mutex` (which the running thread must hold) and blocks on
    /// this variable, as one step (`thread_cond_wait`): no signal can fall
    /// between the two. When the caller runs again it does *not* hold
    /// `mutex`: its wrapper calls [`Mutex::lock`] before returning.
    pub fn wait<const N: usize>(&mut self, mutex: &mut Mutex, sched: &mut Scheduler<N>) -> Result<Next, ThreadError> {
        let me = sched.current().ok_or(ThreadError::NoCurrent)?;
        if mutex.owner != Some(me) {
            return Err(ThreadError::NotOwner);
        }
        mutex.unlock(sched)?;
        sched.thread_block(&mut self.waiters)
    }

    /// Wakes the first waiter (`thread_cond_signal`); which one. Callable
    /// with or without the mutex held, and from the upcall.
    pub fn signal<const N: usize>(&mut self, sched: &mut Scheduler<N>) -> Option<Tid> {
        sched.wake_one(&mut self.waiters)
    }

    /// Wakes every waiter, in the order they waited (`thread_cond_broadcast`);
    /// how many.
    pub fn broadcast<const N: usize>(&mut self, sched: &mut Scheduler<N>) -> usize {
        sched.wake_all(&mut self.waiters)
    }
}
