//! Takes memory from the memory server a MiB at a time until it is
//! refused, says how much it got and why it stopped, holds it for three
//! seconds and exits (the quota check of the M3 suite).

#![cfg_attr(target_os = "none", no_std, no_main)]

use api::AosRpc;

m3_lmp::main!(run);

fn run(_: &aos::Args) -> i32 {
    let m = m3_lmp::rpc::memory_channel();
    let mut mib = 0u64;
    let why = loop {
        match m.get_ram_cap(1 << 20, 0) {
            Ok(_) => mib += 1,
            Err(e) => break e,
        }
        if mib > 4096 {
            aos::println!("hog: 4 GiB and no refusal");
            return 1;
        }
    };
    aos::println!("hog: {mib} MiB, then refused: {why}");
    grading::yield_until(3, || false);
    0
}
