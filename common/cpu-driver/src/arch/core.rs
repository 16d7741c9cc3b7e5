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

use super::cspace::KernelCte;
use super::domain::{DOMAINS_MAX, Domains};
use super::invoke::Resume;
use super::mm;

/// What one core's CPU driver knows. `repr(C)`: the exception entry reads
/// `current_save` at offset 0.
#[repr(C)]
pub struct PerCore {
    /// Where the running domain's registers are saved on the next entry
    /// from EL0. Written only by [`PerCore::switch_to`].
    current_save: Cell<*mut RegisterSave>,
    pub id: u32,
    pub alloc: RefCell<BootAlloc>,
    pub domains: RefCell<Domains>,
    /// The CSpace root of each domain, by domain slot: kept here rather
    /// than in `Domain` so no `&mut Domains` covers entries the database
    /// rewrites (they must also lie in the kernel image, which this does).
    pub roots: [KernelCte; DOMAINS_MAX],
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
            current_save: Cell::new(core::ptr::null_mut()),
            id,
            alloc: RefCell::new(alloc),
            domains: RefCell::new(Domains::new()),
            roots: [const { KernelCte::empty() }; DOMAINS_MAX],
            resume: RefCell::new(Resume::EMPTY),
            mdb: RefCell::new(Mdb::new()),
            ticks: Cell::new(0),
            quantum,
        }
    }

    /// Makes domain `next` the running one: its address space, and its save
    /// area for the next entry from EL0. Returns the state to resume.
    pub fn switch_to(&self, doms: &mut Domains, next: usize) -> *const RegisterSave {
        doms.current = next;
        // The slots live inside this core's static PerCore: the pointer
        // stays valid for the rest of the run.
        let save = &mut doms.slots[next].save as *mut RegisterSave;
        if save != self.current_save.get() {
            mm::switch_user_tables(doms.slots[next].ttbr0);
            self.current_save.set(save);
        }
        save
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
