//! The RAM allocator hook (the book's `ram_alloc_set`): code that needs
//! RAM (a slot refill, later spawn and the thread stacks) asks here, and
//! whoever manages memory in this domain installs itself once at start-up.
//! In init that is the M1 memory system; from M3 on, other domains install
//! an RPC client of the memory server.
//!
//! Owns only the two function pointers; what stands behind them may take a
//! lock, so a hook called from inside that lock answers [`RamError::Busy`]
//! instead of deadlocking.

use kpi::invocation::CapRef;

/// Why the hook gave no RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RamError {
    /// Nothing was installed yet.
    NotInstalled,
    /// The allocator is in use further up this call chain.
    Busy,
    OutOfMemory,
    /// The allocator refused the request (bad size or alignment, a
    /// capability it did not hand out, ...).
    Refused,
}

impl core::fmt::Display for RamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RamError::NotInstalled => "no RAM allocator is installed",
            RamError::Busy => "the RAM allocator is busy further up this call chain",
            RamError::OutOfMemory => "out of memory",
            RamError::Refused => "the RAM allocator refused the request",
        })
    }
}

/// The installed allocator.
#[derive(Clone, Copy)]
pub struct RamHooks {
    /// `(bytes, alignment)` to a RAM capability.
    pub alloc: fn(u64, u64) -> Result<CapRef, RamError>,
    pub free: fn(CapRef) -> Result<(), RamError>,
}

static HOOKS: spin::Once<RamHooks> = spin::Once::new();

/// Installs the domain's RAM allocator; false if one already is.
pub fn ram_alloc_set(hooks: RamHooks) -> bool {
    let mut fresh = false;
    HOOKS.call_once(|| {
        fresh = true;
        hooks
    });
    fresh
}

/// RAM of at least `bytes` at a multiple of `align`.
pub fn ram_alloc_aligned(bytes: u64, align: u64) -> Result<CapRef, RamError> {
    (HOOKS.get().ok_or(RamError::NotInstalled)?.alloc)(bytes, align)
}

/// RAM of at least `bytes`, base-page aligned.
pub fn ram_alloc(bytes: u64) -> Result<CapRef, RamError> {
    ram_alloc_aligned(bytes, kpi::BASE_PAGE_SIZE as u64)
}

/// Gives RAM from [`ram_alloc`] back.
pub fn ram_free(cap: CapRef) -> Result<(), RamError> {
    (HOOKS.get().ok_or(RamError::NotInstalled)?.free)(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(bytes: u64, _align: u64) -> Result<CapRef, RamError> {
        if bytes > 100 { Err(RamError::OutOfMemory) } else { Ok(CapRef::slot(9, bytes as u8)) }
    }
    fn free(_: CapRef) -> Result<(), RamError> {
        Err(RamError::Refused)
    }
    fn other(_: u64, _: u64) -> Result<CapRef, RamError> {
        Err(RamError::Busy)
    }

    #[test]
    fn calls_go_to_the_first_installed_allocator() {
        assert_eq!(ram_alloc(5), Err(RamError::NotInstalled));
        assert_eq!(ram_free(CapRef::slot(9, 5)), Err(RamError::NotInstalled));
        assert!(ram_alloc_set(RamHooks { alloc, free }));
        assert!(!ram_alloc_set(RamHooks { alloc: other, free }), "installed once");
        assert_eq!(ram_alloc_aligned(7, 4096), Ok(CapRef::slot(9, 7)));
        assert_eq!(ram_alloc(1000), Err(RamError::OutOfMemory));
        assert_eq!(ram_free(CapRef::slot(9, 7)), Err(RamError::Refused));
    }
}
