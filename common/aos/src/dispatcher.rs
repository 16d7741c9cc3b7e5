//! The calling dispatcher and dispatchers as capabilities (book ch. 4.12–4.16).
//!
//! Owns the user side of the dispatcher frame's control words (`disabled`,
//! `haswork`, the upcall entries; layout in `kpi::dispatcher`) and the
//! dispatcher invocations. The frame of the dispatcher running now is found
//! through TPIDRRO_EL0, which the kernel sets on every switch; nothing here
//! keeps a global (on the host, where there is no frame, one flag stands in
//! for `disabled` so the thread runtime's logic can be tested).

use kpi::ErrorCode;
use kpi::dispatcher::{DispatcherShared, RegisterSave};
use kpi::invocation::{CapRef, Command, DispatcherState};
use kpi::syscall::Syscall;

use crate::cap;

/// The running dispatcher's frame (its user address).
pub fn current_frame() -> *mut DispatcherShared {
    #[cfg(target_os = "none")]
    {
        let va: u64;
        // SAFETY: reads a system register EL0 may read; no memory touched.
        unsafe { core::arch::asm!("mrs {}, tpidrro_el0", out(reg) va, options(nomem, nostack, preserves_flags)) };
        va as *mut DispatcherShared
    }
    #[cfg(not(target_os = "none"))]
    core::ptr::null_mut()
}

#[cfg(target_os = "none")]
/// A word of the running dispatcher's frame, by byte offset.
fn word<T>(offset: usize) -> *mut T {
    current_frame().cast::<u8>().wrapping_add(offset).cast()
}

/// Whether upcalls are disabled (the book's resume bit).
#[inline]
pub fn is_disabled() -> bool {
    #[cfg(target_os = "none")]
    {
        let p = word::<u32>(core::mem::offset_of!(DispatcherShared, disabled));
        // SAFETY: the kernel maps the running dispatcher's frame read-write
        // for as long as it runs, at the address in TPIDRRO_EL0.
        unsafe { p.read_volatile() != 0 }
    }
    #[cfg(not(target_os = "none"))]
    host::DISABLED.load(core::sync::atomic::Ordering::Relaxed)
}

/// Disables upcalls: until [`enable`], a preemption resumes this code where
/// it was instead of entering the run upcall. Returns whether this call
/// disabled them (false: they already were, so the caller is inside
/// dispatcher code and must not use its state).
#[inline]
pub fn disable() -> bool {
    let was = is_disabled();
    set_disabled(true);
    !was
}

/// Enables upcalls again.
#[inline]
pub fn enable() {
    set_disabled(false);
}

#[inline]
fn set_disabled(on: bool) {
    use core::sync::atomic::{Ordering, compiler_fence};
    // The accesses of the disabled region stay inside it.
    compiler_fence(Ordering::SeqCst);
    #[cfg(target_os = "none")]
    {
        let p = word::<u32>(core::mem::offset_of!(DispatcherShared, disabled));
        // SAFETY: as in `is_disabled`.
        unsafe { p.write_volatile(u32::from(on)) };
    }
    #[cfg(not(target_os = "none"))]
    host::DISABLED.store(on, Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
}

/// On the host there is no frame: a flag of our own stands in for it, so
/// the runtime's logic runs in host tests.
#[cfg(not(target_os = "none"))]
mod host {
    pub static DISABLED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
}

/// Installs the run upcall: the kernel enters `entry` with SP = `stack_top`
/// (16-byte aligned) whenever it gives the dispatcher the core back with
/// upcalls enabled. Call it with upcalls disabled, so no upcall sees half
/// of it. A no-op on the host.
pub fn set_run_upcall(entry: u64, stack_top: u64) {
    #[cfg(target_os = "none")]
    {
        let stack = word::<u64>(core::mem::offset_of!(DispatcherShared, upcall_stack));
        let at = word::<u64>(core::mem::offset_of!(DispatcherShared, upcall_entry));
        // SAFETY: as in `is_disabled`.
        unsafe {
            stack.write_volatile(stack_top);
            at.write_volatile(entry);
        }
    }
    #[cfg(not(target_os = "none"))]
    let _ = (entry, stack_top);
}

/// Whether the kernel delivered work (an LMP message) since the last
/// [`clear_haswork`].
pub fn haswork() -> bool {
    #[cfg(target_os = "none")]
    {
        let p = word::<u32>(core::mem::offset_of!(DispatcherShared, haswork));
        // SAFETY: as in `is_disabled`.
        unsafe { p.read_volatile() != 0 }
    }
    #[cfg(not(target_os = "none"))]
    false
}

/// Clear before looking for work; then [`wait`] cannot miss a message that
/// arrives in between (the kernel sets the flag with every delivery).
pub fn clear_haswork() {
    #[cfg(target_os = "none")]
    {
        let p = word::<u32>(core::mem::offset_of!(DispatcherShared, haswork));
        // SAFETY: as in `is_disabled`.
        unsafe { p.write_volatile(0) };
    }
}

/// Sleeps until work arrives (returns at once if `haswork` is set).
pub fn wait() -> Result<(), ErrorCode> {
    crate::syscall::call(Syscall::Wait, 0, 0).map(drop)
}

/// Gives the rest of the time slice to `to`, if it is runnable.
pub fn yield_to(to: CapRef) -> Result<(), ErrorCode> {
    crate::syscall::call(Syscall::Yield, to.to_raw(), 0).map(drop)
}

/// Continues with exactly `state`, upcalls enabled: how a run or fault
/// upcall returns to the code it interrupted. Returns only on error (a
/// `state` the kernel cannot read).
pub fn resume(state: *const RegisterSave) -> ErrorCode {
    match crate::syscall::call(Syscall::Resume, state as u64, 0) {
        Err(e) => e,
        Ok(_) => ErrorCode::InvalidArgument,
    }
}

/// What `Properties` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Properties {
    pub state: Option<DispatcherState>,
    pub frame_va: u64,
}

/// A dispatcher capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dispatcher(pub CapRef);

impl Dispatcher {
    /// Gives a new dispatcher its CSpace root (an L1 CNode), VSpace root (an
    /// L0 VNode) and frame, mapped at `frame_va` in that VSpace.
    pub fn setup(self, root: CapRef, vroot: CapRef, frame: CapRef, frame_va: u64) -> Result<(), ErrorCode> {
        cap::invoke(self.0, Command::Setup, [root.to_raw(), vroot.to_raw(), frame.to_raw(), frame_va, 0]).map(drop)
    }

    /// Lets it run: the first time from its frame's `disabled_save`.
    pub fn make_runnable(self) -> Result<(), ErrorCode> {
        cap::invoke(self.0, Command::MakeRunnable, [0; 5]).map(drop)
    }

    /// Takes it off the core until the next `make_runnable`.
    pub fn stop(self) -> Result<(), ErrorCode> {
        cap::invoke(self.0, Command::Stop, [0; 5]).map(drop)
    }

    pub fn properties(self) -> Result<Properties, ErrorCode> {
        let [state, frame_va, _] = cap::invoke(self.0, Command::Properties, [0; 5])?;
        Ok(Properties { state: DispatcherState::from_raw(state), frame_va })
    }

    /// Where the next capability sent to it goes (`None` clears it).
    pub fn set_recv_slot(self, slot: Option<CapRef>) -> Result<(), ErrorCode> {
        cap::invoke(self.0, Command::SetRecvSlot, [slot.map_or(0, CapRef::to_raw), 0, 0, 0, 0]).map(drop)
    }
}
