//! Init for milestone 3 (book ch. 5): sets up M1's memory and M2's spawn,
//! becomes the server of every channel (memory, terminal, processes), and
//! spawns every other boot module with its `menu.lst` command line (or
//! only those listed by `start=a,b` on its own command line). It
//! serves them until every process has ended, then checks that all their
//! memory came back and exits. With `grading` on its command line the
//! server's grading hooks print what it received.

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::println;
use api::{MemoryManager, Spawner};
use m2_spawn::System;
use m3_lmp::server::Server;

aos::main!(run);

/// Init's own threads: the main thread only; the runtime is needed for
/// the waitset the server blocks in.
static STACKS: aos::thread::Stacks<0> = aos::thread::Stacks::new();
/// The server is far larger than init's stack.
static SERVER: spin::Mutex<Server> = spin::Mutex::new(Server::new());

fn run(args: &aos::Args) -> i32 {
    let Some(bi) = args.bootinfo() else {
        println!("init: no bootinfo");
        return 1;
    };
    if args.iter().any(|a| a == "grading") {
        grading::m3::enable();
    }
    let mut sys = match System::init(bi) {
        Ok(s) => s,
        Err(e) => {
            println!("init: setting up memory and spawn: {e}");
            return 1;
        }
    };
    if let Err(e) = aos::thread::init(&STACKS) {
        println!("init: starting the thread runtime: {e}");
        return 1;
    }
    let mut server = SERVER.lock();
    if let Err(e) = server.start(&mut sys) {
        println!("init: starting the server: {e}");
        return 1;
    }
    let available = |sys: &System| sys.free_bytes() + sys.overhead_bytes();
    let before = available(&sys);
    println!("init: {} MiB of {} MiB free; serving", sys.free_bytes() >> 20, sys.total_bytes() >> 20);
    let start = args.iter().find_map(|a| a.strip_prefix("start="));
    for m in bi.modules().iter().skip(1) {
        let Some((name, _)) = bi.module_text(m) else { continue };
        if start.is_some_and(|list| !list.split(',').any(|n| n == name)) {
            continue;
        }
        match sys.spawn_load_by_name(name) {
            Ok(pid) => {
                if let Err(e) = server.add(&sys, pid) {
                    println!("init: cannot serve {name}: {e}");
                    let _ = sys.stop(pid);
                }
            }
            Err(e) => println!("init: cannot spawn {name}: {e}"),
        }
    }
    server.serve(&mut sys, |s, _| s.clients() == 0);
    let after = available(&sys);
    grading::m3::report_counts();
    println!("init: {} processes ended, {} of them with bye", server.ended, server.byes);
    if after == before {
        println!("init: all their memory is free again");
    } else {
        println!("init: {} KiB did not come back", before.abs_diff(after) >> 10);
    }
    println!("init: done");
    0
}
