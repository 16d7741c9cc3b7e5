//! Syscall stubs (ABI in `kpi::syscall`).

use kpi::ErrorCode;
use kpi::syscall::Syscall;

/// Issues syscall `nr` with two arguments; returns (`x0`, `x1`) as the
/// kernel left them. For tests that need numbers no wrapper would send.
pub fn raw(nr: u64, a1: u64, a2: u64) -> (u64, u64) {
    #[cfg(target_os = "none")]
    {
        let (x0, x1);
        // SAFETY: `svc #0` enters the kernel, which preserves every register
        // except x0 and x1 and touches only memory the arguments name after
        // checking it is ours.
        unsafe {
            core::arch::asm!("svc #0", inout("x0") nr => x0, inout("x1") a1 => x1, in("x2") a2, options(nostack));
        }
        (x0, x1)
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = (nr, a1, a2);
        (ErrorCode::InvalidSyscall as u64, 0)
    }
}

pub(crate) fn call(s: Syscall, a1: u64, a2: u64) -> Result<u64, ErrorCode> {
    match raw(s as u64, a1, a2) {
        (0, v) => Ok(v),
        (code, _) => Err(error(code)),
    }
}

/// The error a nonzero `x0` from the kernel names; a code this runtime
/// does not know reads as `InvalidArgument`.
pub(crate) fn error(code: u64) -> ErrorCode {
    ErrorCode::from_raw(code).unwrap_or(ErrorCode::InvalidArgument)
}

/// Does nothing in the kernel and comes back.
pub fn null() -> Result<(), ErrorCode> {
    call(Syscall::Null, 0, 0).map(drop)
}

/// Writes bytes to the console (at most `kpi::syscall::PRINT_MAX`).
pub fn print_raw(ptr: u64, len: u64) -> Result<(), ErrorCode> {
    call(Syscall::Print, ptr, len).map(drop)
}

pub fn yield_now() -> Result<(), ErrorCode> {
    call(Syscall::Yield, 0, 0).map(drop)
}

/// Ends the domain.
pub fn exit(status: i32) -> ! {
    let _ = call(Syscall::Exit, status as i64 as u64, 0);
    // The kernel does not return from Exit; if it ever did, stop here.
    loop {
        core::hint::spin_loop();
    }
}
