//! Reports the time from its parent's spawn call (the counter value in
//! its argument) to its own first instruction (`aos::start_ticks`), as a
//! `spawn-to-first-instruction` benchmark sample.

#![cfg_attr(target_os = "none", no_std, no_main)]

aos::main!(run);

fn run(args: &aos::Args) -> i32 {
    match args.get(1).and_then(|a| a.parse::<u64>().ok()) {
        Some(t0) if t0 <= aos::start_ticks() => {
            aos::println!("bench: spawn-to-first-instruction {} 1", aos::start_ticks() - t0);
            0
        }
        _ => {
            aos::println!("bench: FAILED spawn-to-first-instruction: no start time in {:?}", args.get(1));
            1
        }
    }
}
