//! Prints a numbered tick every second until stopped (book ch. 4.20).

#![cfg_attr(target_os = "none", no_std, no_main)]

aos::main!(run);

fn run(_: &aos::Args) -> i32 {
    let freq = aos::time::frequency();
    let mut next = aos::time::counter();
    for tick in 0u64.. {
        aos::println!("printer: tick {tick}");
        next += freq;
        while aos::time::counter() < next {
            let _ = aos::syscall::yield_now();
        }
    }
    0
}
