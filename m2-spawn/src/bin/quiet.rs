//! Exits at once: the smallest process, for spawn/exit cycles.

#![cfg_attr(target_os = "none", no_std, no_main)]

aos::main!(run);

fn run(_: &aos::Args) -> i32 {
    0
}
