//! System calls. `svc #0` with the call number in `x0` and arguments in
//! `x1`–`x6`; the kernel returns an [`ErrorCode`](crate::ErrorCode) in `x0`
//! (0 = success) and a value in `x1`. Registers other than `x0` and `x1` are
//! preserved. Any other `svc` immediate is a fault, not a call.

numbered_enum! {
    /// Syscall numbers (`x0`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Syscall: u64 {
        /// Does nothing and returns: the null syscall of benchmarks.
        Null = 0,
        /// `x1` = address, `x2` = length: writes bytes to the console.
        Print = 1,
        /// Gives up the rest of the time slice. `x1` = 0, or a dispatcher
        /// capability (`CapRef::to_raw`): that dispatcher, if runnable, runs
        /// next (the book's yield to a named dispatcher).
        Yield = 2,
        /// `x1` = status: ends the calling domain.
        Exit = 3,
        /// Invokes a capability (`kpi::invocation`).
        Invoke = 4,
        /// Gives the core back until there is work: returns at once if the
        /// dispatcher frame's `haswork` is set, else the dispatcher sleeps
        /// until an LMP message (or interrupt) arrives for it.
        Wait = 5,
        /// `x1` = address of a `RegisterSave` in the caller's address space:
        /// clears the frame's `disabled` flag and continues with exactly
        /// that state (the runtime's way to resume a preempted thread).
        Resume = 6,
    }
}

/// The only `svc` immediate the kernel accepts.
pub const SVC_IMMEDIATE: u16 = 0;

/// Longest single `Print`; longer writes are split by the runtime.
pub const PRINT_MAX: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_unknown_ones_do_not() {
        for s in Syscall::ALL {
            assert_eq!(Syscall::from_raw(s as u64), Some(s));
        }
        assert_eq!(Syscall::from_raw(7), None);
        assert_eq!(Syscall::from_raw(u64::MAX), None);
        assert_eq!(Syscall::Print as u64, 1);
    }
}
