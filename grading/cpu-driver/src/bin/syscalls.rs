//! Hostile syscall arguments: each must come back as the documented error,
//! and valid calls must still work afterwards.

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::kpi::ErrorCode;
use aos::kpi::syscall::PRINT_MAX;
use aos::println;
use aos::syscall::{self, raw};

aos::main!(run);

fn expect(name: &str, got: u64, want: u64, failures: &mut u32) {
    if got == want {
        println!("syscalls: ok {name}");
    } else {
        println!("syscalls: FAILED {name}: got {got}, want {want}");
        *failures += 1;
    }
}

fn run(_: &aos::Args) -> i32 {
    let mut failures = 0;
    let bad_addr = ErrorCode::BadUserAddress as u64;
    // One past the highest syscall number the ABI defines.
    let unknown = aos::kpi::syscall::Syscall::ALL.iter().map(|s| *s as u64).max().unwrap_or(0) + 1;
    expect("the first unknown number", raw(unknown, 0, 0).0, ErrorCode::InvalidSyscall as u64, &mut failures);
    expect("unknown number u64::MAX", raw(u64::MAX, 1, 2).0, ErrorCode::InvalidSyscall as u64, &mut failures);
    expect("print from a kernel address", raw(1, 0xffff_0000_4020_0000, 16).0, bad_addr, &mut failures);
    expect("print from address 0", raw(1, 0, 8).0, bad_addr, &mut failures);
    expect("print from an unmapped address", raw(1, 0x10_0000_0000, 8).0, bad_addr, &mut failures);
    expect("print with a wrapping length", raw(1, 0x40_0000, u64::MAX).0, ErrorCode::TooLong as u64, &mut failures);
    expect(
        "print from the last page of the address space",
        raw(1, 0xffff_ffff_ffff_f000, 1).0,
        bad_addr,
        &mut failures,
    );
    expect(
        "print ending at the top of the address space",
        raw(1, 0xffff_ffff_ffff_fff0, 16).0,
        bad_addr,
        &mut failures,
    );
    let stack = [b'x'; 8];
    let len = PRINT_MAX as u64 + 1;
    expect(
        "print longer than PRINT_MAX",
        raw(1, stack.as_ptr() as u64, len).0,
        ErrorCode::TooLong as u64,
        &mut failures,
    );
    // The arguments page is mapped; the page above it is not.
    let args_end = aos::kpi::vspace::ARGS_VADDR + 4096;
    expect("print running off a mapped page", raw(1, args_end - 4, 8).0, bad_addr, &mut failures);
    let resume = aos::kpi::syscall::Syscall::Resume as u64;
    expect("resume from address 0", raw(resume, 0, 0).0, bad_addr, &mut failures);
    expect("resume from a kernel address", raw(resume, 0xffff_0000_4020_0000, 0).0, bad_addr, &mut failures);
    expect("resume from the top of the address space", raw(resume, u64::MAX - 8, 0).0, bad_addr, &mut failures);
    expect("resume from a state running off a mapped page", raw(resume, args_end - 64, 0).0, bad_addr, &mut failures);
    let yield_nr = aos::kpi::syscall::Syscall::Yield as u64;
    expect(
        "yield to a malformed capability address",
        raw(yield_nr, 7 << 32, 0).0,
        ErrorCode::BadCapAddr as u64,
        &mut failures,
    );
    expect(
        "yield to an empty slot",
        raw(yield_nr, aos::cap::CapRef::slot(5, 200).to_raw(), 0).0,
        ErrorCode::SlotEmpty as u64,
        &mut failures,
    );
    expect("null syscall", raw(0, 0, 0).0, 0, &mut failures);
    expect("yield", syscall::yield_now().map_or(1, |_| 0), 0, &mut failures);
    expect("print zero bytes", raw(1, 0, 0).0, 0, &mut failures);
    if failures == 0 {
        println!("syscalls: all checks passed");
        0
    } else {
        println!("syscalls: {failures} checks failed");
        1
    }
}
