//! The start-up of every domain init spawns from M3 on (the book's
//! `barrelfish_init_onthread` and `barrelfish_libc_glue_init`): threads,
//! the init channel, memory from the memory server, the terminal, and a
//! `bye` when `main` returns. Programs name their main function with
//! [`crate::main!`].
//!
//! Owns only the order of these steps and the thread stacks' pool.

use crate::proto::Kind;
use crate::{mem, rpc};

/// Threads a program may spawn besides its main thread.
pub const THREADS: usize = 4;
static STACKS: aos::thread::Stacks<THREADS> = aos::thread::Stacks::new();

/// Sends output through the terminal service; false (the kernel prints
/// it) if the channel cannot take it now, e.g. from inside a call.
fn terminal(bytes: &[u8]) -> bool {
    rpc::serial_channel().print(bytes).is_ok()
}

/// Sets the domain up, runs `main`, says `bye` with its status.
pub fn run(args: &aos::Args, main: fn(&aos::Args) -> i32) -> i32 {
    if let Err(e) = aos::thread::init(&STACKS) {
        aos::println!("runtime: starting threads: {e}");
        return 120;
    }
    if let Err(e) = rpc::init() {
        aos::println!("runtime: connecting to init: {e}");
        return 121;
    }
    if let Err(e) = mem::init() {
        aos::println!("runtime: setting memory up: {e}");
        return 122;
    }
    aos::io::set_output(terminal);
    let status = main(args);
    let _ = rpc::init_channel().notify(Kind::Bye, &status.to_le_bytes());
    // Init reclaims the process on `bye`; until it does, nothing is left
    // to run here.
    status
}

/// This process's PID, from `AOS_PID` in its environment.
pub fn own_pid(args: &aos::Args) -> Option<api::Pid> {
    u32::from_str_radix(args.var("AOS_PID")?.trim_start_matches("0x"), 16).ok()
}
