//! The dispatcher's "upcalls disabled" state (book ch. 4.14): the one switch
//! that says dispatcher code — the thread scheduler, and later the run
//! upcall — is running and must not be entered again.
//!
//! Owns only that flag. It stands in for the dispatcher frame's `disabled`
//! flag (`kpi::dispatcher::DispatcherShared::disabled`) once the kernel maps
//! the frame (CPU driver III); then the kernel reads it too, and
//! [`disable`]/[`enable`] become stores to the frame. Nothing else may
//! change here: callers must not assume it is an atomic in memory of ours.

use core::sync::atomic::{AtomicBool, Ordering};

/// The dispatcher frame's disabled flag once the kernel maps the frame
/// (CPU driver III). One dispatcher runs on one core, so the atomic only
/// keeps the compiler from caching it; `Acquire`/`Release` order the runtime
/// state accesses between [`disable`] and [`enable`].
static DISABLED: AtomicBool = AtomicBool::new(false);

/// Disables upcalls; whether this call did it (false: they already were,
/// so the caller is inside dispatcher code and must not use its state).
pub fn disable() -> bool {
    !DISABLED.swap(true, Ordering::Acquire)
}

/// Enables upcalls again.
pub fn enable() {
    DISABLED.store(false, Ordering::Release);
}

/// Whether upcalls are disabled.
pub fn is_disabled() -> bool {
    DISABLED.load(Ordering::Relaxed)
}
