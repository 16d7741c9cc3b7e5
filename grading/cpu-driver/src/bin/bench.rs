//! Boot and syscall cost, in counter ticks, for `cargo xtask bench`.
//! Output lines: `bench: NAME VALUE UNIT`.

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::println;

aos::main!(run);

const ROUNDS: u64 = 10_000;

fn counter() -> (u64, u64) {
    #[cfg(target_os = "none")]
    {
        let (t, f);
        // SAFETY: reading the counter and its frequency has no side effects.
        unsafe { core::arch::asm!("isb", "mrs {}, cntpct_el0", "mrs {}, cntfrq_el0", out(reg) t, out(reg) f) };
        (t, f)
    }
    #[cfg(not(target_os = "none"))]
    (0, 1)
}

fn run(_: &aos::Args) -> i32 {
    let (_, freq) = counter();
    println!("bench: counter-frequency {freq} Hz");
    println!("bench: reset-to-init-first-instruction {} ticks", aos::start_ticks());
    let (t0, _) = counter();
    for _ in 0..ROUNDS {
        let _ = aos::syscall::null();
    }
    let (t1, _) = counter();
    println!("bench: null-syscall-x{ROUNDS} {} ticks", t1 - t0);
    0
}
