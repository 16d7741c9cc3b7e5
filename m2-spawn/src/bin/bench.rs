//! M2 costs for `cargo xtask bench m2` (and the side-by-side with Linux in
//! `cargo xtask bench`), in the CPU driver benchmark's output format
//! (`bench: NAME TICKS COUNT`):
//! - `spawn-to-first-instruction`: from just before the spawn call to the
//!   child's first instruction. The child (`first`) gets the start time
//!   as its argument and prints the sample itself; formatting that
//!   argument (a few hundred instructions) is inside the figure.
//! - `spawn-exit`: spawning `quiet`, which exits at once, until init has
//!   seen it exit and reclaimed it (Linux: fork, exec, wait).

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::fmt::Write;

use aos::println;
use aos::time::{counter, measure};
use api::{ProcState, Spawner};
use m2_spawn::System;

aos::main!(run);

const REPS: u32 = 12;

/// Yields until `pid` exited, then reclaims it.
fn wait_and_reap(sys: &mut System, pid: api::Pid) -> bool {
    while sys.state(pid).ok() == Some(ProcState::Running) {
        let _ = aos::syscall::yield_now();
    }
    sys.stop(pid).is_ok()
}

fn run(args: &aos::Args) -> i32 {
    println!("bench: counter-frequency {} Hz", aos::time::frequency());
    let Some(bi) = args.bootinfo() else { return 1 };
    let mut sys = match System::init(bi) {
        Ok(s) => s,
        Err(e) => {
            println!("bench: FAILED setting up spawn: {e}");
            return 1;
        }
    };
    let mut all = true;
    for _ in 0..REPS {
        let mut line = heapless::String::<32>::new();
        let t0 = counter();
        let _ = write!(line, "first {t0}");
        match sys.spawn_load_cmdline(&line) {
            Ok(pid) => all &= wait_and_reap(&mut sys, pid),
            Err(e) => {
                println!("bench: FAILED spawn-to-first-instruction: {e}");
                all = false;
            }
        }
        all &=
            measure("spawn-exit", 1, || sys.spawn_load_by_name("quiet").is_ok_and(|pid| wait_and_reap(&mut sys, pid)));
    }
    if all { 0 } else { 1 }
}
