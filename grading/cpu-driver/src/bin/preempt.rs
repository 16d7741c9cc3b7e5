//! Keeps values in every general-purpose register across many timer
//! interrupts and checks none changed: the interrupt path must save and
//! restore the whole register file.

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::println;

aos::main!(run);

fn run(_: &aos::Args) -> i32 {
    let freq = aos::time::frequency();
    // Spin for 100 ms of counter time: about ten 10 ms quanta.
    let deadline = aos::start_ticks() + freq / 10;
    let mut rounds = 0u64;
    let mut bad = 0u64;
    while aos::time::counter() < deadline {
        bad += check_registers(rounds);
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

/// Fills every general-purpose register (x0–x29) with values that differ
/// from round to round (so a register the kernel failed to save would come
/// back stale and differ), spins, and counts registers that changed. x19 and
/// x29 are reserved by the compiler, so they are saved and restored around
/// the block; the mismatch count lives on the stack.
fn check_registers(round: u64) -> u64 {
    #[cfg(target_os = "none")]
    {
        let bad: u64;
        let base = 0x1000 + (round % 4096) * 0x40;
        // SAFETY: only registers and 32 bytes below SP (pushed and popped
        // here) are touched; every clobbered register is declared, and the
        // reserved x19/x29 are restored before the block ends.
        unsafe {
            core::arch::asm!(
                "stp x29, x19, [sp, #-16]!",
                "str xzr, [sp, #-16]!",
                "add x1, x0, #1",
                "add x2, x0, #2",
                "add x3, x0, #3",
                "add x4, x0, #4",
                "add x5, x0, #5",
                "add x6, x0, #6",
                "add x7, x0, #7",
                "add x8, x0, #8",
                "add x9, x0, #9",
                "add x10, x0, #10",
                "add x11, x0, #11",
                "add x12, x0, #12",
                "add x13, x0, #13",
                "add x14, x0, #14",
                "add x15, x0, #15",
                "add x16, x0, #16",
                "add x17, x0, #17",
                "add x18, x0, #18",
                "add x20, x0, #20",
                "add x21, x0, #21",
                "add x22, x0, #22",
                "add x23, x0, #23",
                "add x24, x0, #24",
                "add x25, x0, #25",
                "add x26, x0, #26",
                "add x27, x0, #27",
                "add x28, x0, #28",
                "add x19, x0, #19",
                "add x29, x0, #29",
                "mov x30, #20000",
                "1: subs x30, x30, #1",
                "b.ne 1b",
                "add x30, x0, #1", "cmp x1, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #2", "cmp x2, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #3", "cmp x3, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #4", "cmp x4, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #5", "cmp x5, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #6", "cmp x6, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #7", "cmp x7, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #8", "cmp x8, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #9", "cmp x9, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #10", "cmp x10, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #11", "cmp x11, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #12", "cmp x12, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #13", "cmp x13, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #14", "cmp x14, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #15", "cmp x15, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #16", "cmp x16, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #17", "cmp x17, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #18", "cmp x18, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #19", "cmp x19, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #20", "cmp x20, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #21", "cmp x21, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #22", "cmp x22, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #23", "cmp x23, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #24", "cmp x24, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #25", "cmp x25, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #26", "cmp x26, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #27", "cmp x27, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #28", "cmp x28, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "add x30, x0, #29", "cmp x29, x30", "ldr x30, [sp]", "cinc x30, x30, ne", "str x30, [sp]",
                "ldr x30, [sp], #16",
                "ldp x29, x19, [sp], #16",
                inout("x0") base => _,
                lateout("x30") bad,
                out("x1") _, out("x2") _, out("x3") _, out("x4") _, out("x5") _, out("x6") _,
                out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
                out("x14") _, out("x15") _, out("x16") _, out("x17") _, out("x18") _, out("x20") _,
                out("x21") _, out("x22") _, out("x23") _, out("x24") _, out("x25") _, out("x26") _,
                out("x27") _, out("x28") _,
            );
        }
        bad
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = round;
        0
    }
}
