//! Keeps values in every general-purpose register across many timer
//! interrupts and checks none changed: the interrupt path must save and
//! restore the whole register file.

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::println;

aos::main!(run);

fn run(_: &aos::Args) -> i32 {
    let freq: u64;
    #[cfg(target_os = "none")]
    // SAFETY: reading the counter frequency has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, cntfrq_el0", out(reg) freq)
    };
    #[cfg(not(target_os = "none"))]
    {
        freq = 1;
    }
    // Spin for 100 ms of counter time: about ten 10 ms quanta.
    let deadline = aos::start_ticks() + freq / 10;
    let mut rounds = 0u64;
    let mut bad = 0u64;
    while now() < deadline {
        bad += check_registers();
        rounds += 1;
    }
    if bad == 0 {
        println!("preempt: registers intact over {rounds} rounds");
        0
    } else {
        println!("preempt: FAILED: {bad} rounds saw a register change");
        1
    }
}

fn now() -> u64 {
    #[cfg(target_os = "none")]
    {
        let t;
        // SAFETY: the kernel lets EL0 read the counter.
        unsafe { core::arch::asm!("mrs {}, cntpct_el0", out(reg) t) };
        t
    }
    #[cfg(not(target_os = "none"))]
    u64::MAX
}

/// Fills every general-purpose register (x0–x29) with a known value,
/// spins, and counts registers that changed. x19 and x29 are reserved by
/// the compiler, so they are saved and restored around the block.
fn check_registers() -> u64 {
    #[cfg(target_os = "none")]
    {
        let bad: u64;
        // SAFETY: only registers and 16 bytes below SP (pushed and popped
        // here) are touched; every clobbered register is declared, and the
        // reserved x19/x29 are restored before the block ends.
        unsafe {
            core::arch::asm!(
                "stp x29, x19, [sp, #-16]!",
                "mov x0, #0x100", "add x1, x0, #1", "add x2, x0, #2", "add x3, x0, #3", "add x4, x0, #4",
                "add x5, x0, #5", "add x6, x0, #6", "add x7, x0, #7", "add x8, x0, #8", "add x9, x0, #9",
                "add x10, x0, #10", "add x11, x0, #11", "add x12, x0, #12", "add x13, x0, #13", "add x14, x0, #14",
                "add x15, x0, #15", "add x16, x0, #16", "add x17, x0, #17", "add x18, x0, #18", "add x19, x0, #19",
                "add x20, x0, #20", "add x21, x0, #21", "add x22, x0, #22", "add x23, x0, #23", "add x24, x0, #24",
                "add x25, x0, #25", "add x26, x0, #26", "add x27, x0, #27", "add x28, x0, #28", "add x29, x0, #29",
                "mov x30, #20000",
                "1: subs x30, x30, #1",
                "b.ne 1b",
                "cmp x0, #0x100", "cinc x30, x30, ne",
                "cmp x1, #0x101", "cinc x30, x30, ne", "cmp x2, #0x102", "cinc x30, x30, ne",
                "cmp x3, #0x103", "cinc x30, x30, ne", "cmp x4, #0x104", "cinc x30, x30, ne",
                "cmp x5, #0x105", "cinc x30, x30, ne", "cmp x6, #0x106", "cinc x30, x30, ne",
                "cmp x7, #0x107", "cinc x30, x30, ne", "cmp x8, #0x108", "cinc x30, x30, ne",
                "cmp x9, #0x109", "cinc x30, x30, ne", "cmp x10, #0x10a", "cinc x30, x30, ne",
                "cmp x11, #0x10b", "cinc x30, x30, ne", "cmp x12, #0x10c", "cinc x30, x30, ne",
                "cmp x13, #0x10d", "cinc x30, x30, ne", "cmp x14, #0x10e", "cinc x30, x30, ne",
                "cmp x15, #0x10f", "cinc x30, x30, ne", "cmp x16, #0x110", "cinc x30, x30, ne",
                "cmp x17, #0x111", "cinc x30, x30, ne", "cmp x18, #0x112", "cinc x30, x30, ne",
                "cmp x19, #0x113", "cinc x30, x30, ne", "cmp x20, #0x114", "cinc x30, x30, ne",
                "cmp x21, #0x115", "cinc x30, x30, ne", "cmp x22, #0x116", "cinc x30, x30, ne",
                "cmp x23, #0x117", "cinc x30, x30, ne", "cmp x24, #0x118", "cinc x30, x30, ne",
                "cmp x25, #0x119", "cinc x30, x30, ne", "cmp x26, #0x11a", "cinc x30, x30, ne",
                "cmp x27, #0x11b", "cinc x30, x30, ne", "cmp x28, #0x11c", "cinc x30, x30, ne",
                "cmp x29, #0x11d", "cinc x30, x30, ne",
                "ldp x29, x19, [sp], #16",
                lateout("x30") bad,
                out("x0") _, out("x1") _, out("x2") _, out("x3") _, out("x4") _, out("x5") _, out("x6") _,
                out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
                out("x14") _, out("x15") _, out("x16") _, out("x17") _, out("x18") _, out("x20") _,
                out("x21") _, out("x22") _, out("x23") _, out("x24") _, out("x25") _, out("x26") _,
                out("x27") _, out("x28") _,
            );
        }
        bad
    }
    #[cfg(not(target_os = "none"))]
    0
}
