//! `chatter K LINES`: prints LINES lines, each made of many `print!`
//! pieces, so that lines of several chatters would mix if the terminal
//! service wrote anything but whole lines.

#![cfg_attr(target_os = "none", no_std, no_main)]

m3_lmp::main!(run);

fn run(args: &aos::Args) -> i32 {
    let k: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    let lines: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    for l in 0..lines {
        aos::print!("chatter {k} line {l}:");
        for j in 0..8 {
            aos::print!(" {k}{k}{k}-{j}");
            if j % 3 == 0 {
                let _ = aos::syscall::yield_now();
            }
        }
        aos::println!(" end");
    }
    0
}
