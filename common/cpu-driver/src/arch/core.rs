//! Per-core state, reached through TPIDR_EL1. Each core owns its
//! `PerCore`; no core touches another's, so nothing here is shared mutable
//! state between cores. Interrupts are off in the kernel and every event
//! runs to completion, so `RefCell` borrows never overlap on a core.

use core::cell::{Cell, RefCell, UnsafeCell};
use core::mem::MaybeUninit;

use aarch64_cpu::registers::{Readable, TPIDR_EL1, Writeable};
use caps::mdb::Mdb;
use cpu_driver::bootalloc::BootAlloc;

use kpi::dispatcher::RegisterSave;

use cpu_driver::exit_status;
use kpi::invocation::DispatcherState;

use super::dispatch::{self, Asids, Dcb, RunQueue};
use super::invoke::Resume;
use super::irq::Routes;
use super::power;

/// What one core's CPU driver knows. `repr(C)`: the exception entry reads
/// `current_frame` at offset 0.
#[repr(C)]
pub struct PerCore {
    /// The running dispatcher's frame (kernel address): the exception entry
    /// saves into its enabled or disabled area by its flag. Written only by
    /// [`PerCore::schedule`].
    current_frame: Cell<u64>,
    pub id: u32,
    pub alloc: RefCell<BootAlloc>,
    /// The dispatcher whose frame `current_frame` names (0: none yet).
    current: Cell<u64>,
    pub runq: RunQueue,
    pub asids: Asids,
    /// Dispatchers sleeping in `Wait`.
    pub waiting: Cell<u32>,
    /// Interrupts routed to user space.
    pub irqs: Routes,
    /// A bounded delete's progress, for the call that repeats it.
    pub resume: RefCell<Resume>,
    /// The derivation database of this core's capabilities.
    pub mdb: RefCell<Mdb>,
    /// Timer interrupts taken.
    pub ticks: Cell<u64>,
    /// Counter ticks per scheduling quantum.
    pub quantum: u64,
}

impl PerCore {
    pub fn new(id: u32, alloc: BootAlloc, quantum: u64) -> Self {
        PerCore {
            current_frame: Cell::new(0),
            id,
            alloc: RefCell::new(alloc),
            current: Cell::new(0),
            runq: RunQueue::new(),
            asids: Asids::new(),
            waiting: Cell::new(0),
            irqs: Routes::new(),
            resume: RefCell::new(Resume::EMPTY),
            mdb: RefCell::new(Mdb::new()),
            ticks: Cell::new(0),
            quantum,
        }
    }

    /// The dispatcher that entered the kernel (or last ran).
    pub fn current(&self) -> Dcb {
        Dcb(self.current.get())
    }

    /// Where the exception entry saved the current dispatcher's registers.
    pub fn current_regs(&self) -> &'static mut RegisterSave {
        dispatch::regs_at(self.current_frame.get())
    }

    /// Runs the head of the run queue: its hardware state if it is not the
    /// one that ran last, then activation (a run upcall if due). Returns the
    /// state to resume. Powers off if nothing can ever run again.
    pub fn schedule(&self) -> *const RegisterSave {
        let next = match self.runq.head() {
            Some(next) => next,
            None => self.idle(),
        };
        let prev = self.current.get();
        if next.0 != prev {
            let from = (prev != 0).then_some(Dcb(prev));
            if let Some(f) = from {
                dispatch::mark_upcall_due(f);
            }
            dispatch::switch_hw(from, next);
            self.current.set(next.0);
            self.current_frame.set(next.frame_kva());
        }
        dispatch::activate(next);
        dispatch::regs_at(self.current_frame.get())
    }

    /// With nothing runnable: idles until an interrupt makes something
    /// runnable, or powers off if nothing ever can. Out of line, so the
    /// path every syscall takes through `schedule` stays short.
    #[cold]
    #[inline(never)]
    fn idle(&self) -> Dcb {
        loop {
            if let Some(next) = self.runq.head() {
                return next;
            }
            if self.waiting.get() == 0 {
                log::info!("no domain left to run; powering off");
                power::exit(exit_status::NOTHING_TO_RUN);
            }
            if !self.irqs.any() {
                log::info!("every dispatcher waits for a message and none can come; powering off");
                power::exit(exit_status::NOTHING_TO_RUN);
            }
            // Idle until an interrupt: routed ones wake their receivers.
            // Interrupts stay masked in the kernel; WFI wakes on a pending one.
            // SAFETY: waits for an interrupt; no memory is touched.
            unsafe { core::arch::asm!("dsb sy", "wfi", options(nostack)) };
            super::exception::interrupt(false, self.current());
        }
    }

    /// A directed yield from `from`: `to` runs next, `from` right behind
    /// it, if `to` is another dispatcher that can run; else the next in
    /// turn. Shared by `Syscall::Yield` and a synchronous LMP send.
    #[inline(always)]
    pub fn yield_to(&self, from: Dcb, to: Dcb) {
        if to != from && to.state() == DispatcherState::Runnable {
            self.runq.remove(to);
            self.runq.push_front(to);
        } else {
            self.runq.rotate();
        }
    }

    /// Takes `d` off the run queue if it is on it, into state `to`. Keeps
    /// `waiting` counting the dispatchers in `Waiting`, here and in
    /// [`PerCore::enqueue`], the only ways into and out of it.
    pub fn unqueue(&self, d: Dcb, to: DispatcherState) {
        match d.state() {
            DispatcherState::Runnable => self.runq.remove(d),
            DispatcherState::Waiting => self.waiting.set(self.waiting.get() - 1),
            _ => {}
        }
        if to == DispatcherState::Waiting {
            self.waiting.set(self.waiting.get() + 1);
        }
        dispatch::set_state(d, to);
    }

    /// Puts a stopped or waiting `d` on the run queue, at the back.
    pub fn enqueue(&self, d: Dcb) {
        match d.state() {
            DispatcherState::Stopped => {}
            DispatcherState::Waiting => self.waiting.set(self.waiting.get() - 1),
            _ => return,
        }
        dispatch::set_state(d, DispatcherState::Runnable);
        self.runq.push_back(d);
    }
}

struct Slot(UnsafeCell<MaybeUninit<PerCore>>);

// SAFETY: the boot core's slot is written once, by the boot core, before
// TPIDR_EL1 points at it, and only ever used by that core afterwards.
unsafe impl Sync for Slot {}

static BOOT_CORE: Slot = Slot(UnsafeCell::new(MaybeUninit::uninit()));

/// Installs the boot core's state and points TPIDR_EL1 at it.
pub fn init_boot_core(state: PerCore) {
    // SAFETY: called once on the boot core before any `this_core()`.
    let ptr = unsafe { (*BOOT_CORE.0.get()).write(state) as *const PerCore };
    TPIDR_EL1.set(ptr as u64);
}

/// This core's state.
pub fn this_core() -> &'static PerCore {
    let ptr = TPIDR_EL1.get() as *const PerCore;
    assert!(!ptr.is_null(), "per-core state used before boot set it up");
    // SAFETY: TPIDR_EL1 is set only by `init_boot_core` to a PerCore that
    // lives for the rest of the run; user space cannot write TPIDR_EL1.
    unsafe { &*ptr }
}

/// This core's number, or 0 before per-core state exists (early logging).
pub fn id() -> u32 {
    let ptr = TPIDR_EL1.get() as *const PerCore;
    if ptr.is_null() { 0 } else { this_core().id }
}
