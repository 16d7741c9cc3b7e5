//! The M3 suite's driver: a spawned domain that runs the groups of
//! `grading::m3` (all, or those named on its command line) against the RPC
//! channels of this runtime.

#![cfg_attr(target_os = "none", no_std, no_main)]

m3_lmp::main!(run);

/// Room for the longest test string.
struct Scratch(core::cell::UnsafeCell<[u8; 64 << 10]>);
// SAFETY: only the main thread of this program uses it, once.
unsafe impl Sync for Scratch {}
static SCRATCH: Scratch = Scratch(core::cell::UnsafeCell::new([0; 64 << 10]));

fn run(args: &aos::Args) -> i32 {
    let Some(me) = m3_lmp::rt::own_pid(args) else {
        aos::println!("m3test: no AOS_PID in the environment");
        return 1;
    };
    let mut only = [""; grading::m3::GROUPS.len()];
    let mut n = 0;
    for a in args.iter().skip(1).take(only.len()) {
        only[n] = a;
        n += 1;
    }
    // SAFETY: `run` is entered once, by the main thread; nothing else
    // names SCRATCH.
    let scratch = unsafe { &mut *SCRATCH.0.get() };
    grading::m3::run(&m3_lmp::rpc::channels(), me, scratch, &only[..n]);
    aos::println!("m3: done");
    0
}
