//! Init for milestone 2 (book ch. 4.22): sets up M1's memory system and
//! spawn on top, then either runs the M2 suite (`grading` on its command
//! line) or spawns every other boot module with its `menu.lst` command
//! line, waits for them all to exit, reclaims them, and exits.

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::println;
use api::{MemoryManager, Spawner};
use m2_spawn::System;

aos::main!(run);

fn run(args: &aos::Args) -> i32 {
    let Some(bi) = args.bootinfo() else {
        println!("init: no bootinfo");
        return 1;
    };
    let mut sys = match System::init(bi) {
        Ok(s) => s,
        Err(e) => {
            println!("init: setting up memory and spawn: {e}");
            return 1;
        }
    };
    println!("init: {} MiB of {} MiB free; spawning", sys.free_bytes() >> 20, sys.total_bytes() >> 20);
    if args.iter().any(|a| a == "grading") {
        grading::m2::run(&mut *sys, bi);
        println!("init: done");
        return 0;
    }
    // Free memory plus what the memory system keeps for its own
    // bookkeeping (which spawning may grow): what reclaim must restore.
    let available = |sys: &System| sys.free_bytes() + sys.overhead_bytes();
    let before = available(&sys);
    let mut started = 0;
    for m in bi.modules().iter().skip(1) {
        let Some((name, _)) = bi.module_text(m) else { continue };
        match sys.spawn_load_by_name(name) {
            Ok(pid) => {
                println!("init: spawned {name} as process {pid:#x}");
                started += 1;
            }
            Err(e) => println!("init: cannot spawn {name}: {e}"),
        }
    }
    let mut reaped = 0;
    while reaped < started {
        match sys.reap() {
            Ok(n) => reaped += n,
            Err(e) => {
                println!("init: reclaiming: {e}");
                return 1;
            }
        }
        let _ = aos::syscall::yield_now();
    }
    let after = available(&sys);
    if after == before {
        println!("init: {started} processes ran and were reclaimed; all their memory is free again");
    } else {
        println!(
            "init: {started} processes ran and were reclaimed, but {} KiB did not come back",
            (before - after) >> 10
        );
    }
    println!("init: done");
    0
}
