//! A host machine for tests: it plays the arch code, carrying out every
//! [`Next`] the scheduler answers, so thread programs can be run as they
//! would on a dispatcher.
//!
//! A simulated thread is a step function: each call runs the thread up to
//! and including one scheduler operation and returns that operation's
//! decision; the function keeps its own program counter, so being "switched
//! back to" is being called again. The machine finds a thread's program
//! through the thread's context word, as the arch code will find its save
//! area, and checks after every step that the decision matches the
//! scheduler's state. Preemption (a run upcall between two steps) can be
//! switched on to vary interleavings; idle time is where tests inject
//! events.

extern crate std;

use std::boxed::Box;
use std::vec::Vec;

use super::{Next, Scheduler, ThreadError, ThreadState, Tid};

/// A simulated thread.
pub(crate) type Prog<const N: usize, W> = Box<dyn FnMut(&mut Env<N, W>, Tid) -> Next>;

/// TLS words are this plus the context, so the machine can check the
/// scheduler keeps them per thread.
const TLS_BASE: usize = 0x7000_0000;

/// Everything a step can see: the scheduler, the test's world, programs.
pub(crate) struct Env<const N: usize, W> {
    pub sched: Scheduler<N>,
    pub w: W,
    progs: Vec<Option<Prog<N, W>>>,
    /// Which thread ran each step, in order.
    pub trace: Vec<Tid>,
    /// Run upcalls between steps: every this many steps (0: never).
    pub preempt_every: usize,
}

impl<const N: usize, W> Env<N, W> {
    pub fn new(w: W) -> Self {
        Env { sched: Scheduler::new(), w, progs: Vec::new(), trace: Vec::new(), preempt_every: 0 }
    }

    /// `thread_create` with a program; its context word is its index in the
    /// program table.
    pub fn spawn(&mut self, prog: impl FnMut(&mut Env<N, W>, Tid) -> Next + 'static) -> Result<Tid, ThreadError> {
        let context = self.progs.len();
        let t = self.sched.thread_create(context, TLS_BASE + context)?;
        self.progs.push(Some(Box::new(prog)));
        Ok(t)
    }

    /// Runs until the dispatcher is idle and `on_idle` has no more events
    /// to deliver (it returns false); the number of steps. Panics past
    /// `max_steps`, which in these tests means a livelock.
    pub fn run(&mut self, max_steps: usize, mut on_idle: impl FnMut(&mut Env<N, W>) -> bool) -> usize {
        let mut steps = 0;
        let mut next = self.sched.run_upcall();
        self.check_upcall(None, next);
        loop {
            if let Next::Idle { .. } = next {
                if !on_idle(self) {
                    return steps;
                }
                next = self.sched.run_upcall();
                self.check_upcall(None, next);
                continue;
            }
            let t = self.sched.current().expect("a decision other than Idle leaves a thread running");
            assert_eq!(self.sched.state(t), ThreadState::Running);
            let context = self.sched.context(t).expect("the running thread is live");
            assert_eq!(self.sched.tls(t), Ok(TLS_BASE + context), "TLS word of {t}");
            let mut prog = self.progs[context].take().expect("a program for every context");
            self.trace.push(t);
            next = prog(self, t);
            self.progs[context] = Some(prog);
            check(&self.sched, Some(t), next);
            steps += 1;
            assert!(steps <= max_steps, "no progress after {max_steps} steps");
            if self.preempt_every != 0 && steps.is_multiple_of(self.preempt_every) && !matches!(next, Next::Idle { .. })
            {
                let before = self.sched.current();
                next = self.sched.run_upcall();
                self.check_upcall(before, next);
            }
        }
    }

    fn check_upcall(&self, before: Option<Tid>, next: Next) {
        check(&self.sched, before, next);
        if let Next::Switch { from, .. } | Next::Idle { from } = next {
            assert_eq!(from, before, "the upcall saves the preempted thread");
        }
    }
}

/// Checks a decision against the scheduler's state after it: `ran` is the
/// thread that made the call (or was running at the upcall).
pub(crate) fn check<const N: usize>(sched: &Scheduler<N>, ran: Option<Tid>, next: Next) {
    match next {
        Next::Continue => assert_eq!(sched.current(), ran, "Continue keeps the caller running"),
        Next::Switch { from, to } => {
            assert_eq!(sched.current(), Some(to), "Switch runs `to`");
            assert_ne!(from, Some(to), "a switch goes to another thread");
            if let Some(f) = from {
                assert_eq!(Some(f), ran, "only the caller is saved");
                assert!(
                    matches!(sched.state(f), ThreadState::Runnable | ThreadState::Blocked),
                    "{f} saved to run again"
                );
            }
        }
        Next::Idle { from } => {
            assert_eq!(sched.current(), None, "Idle leaves nothing running");
            assert_eq!(sched.runnable_count(), 0, "Idle only when nothing is runnable");
            if let Some(f) = from {
                assert_eq!(Some(f), ran);
                assert_eq!(sched.state(f), ThreadState::Blocked, "{f} saved to run again");
            }
        }
    }
    if let (Some(r), Next::Switch { from: None, .. } | Next::Idle { from: None }) = (ran, next) {
        assert!(
            matches!(sched.state(r), ThreadState::Exited(_) | ThreadState::Free),
            "{r} stopped without being saved, so it must have exited"
        );
    }
}
