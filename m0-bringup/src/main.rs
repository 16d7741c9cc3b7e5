//! The M0 kernel image: boot assembly, exception vectors, the PSCI call and
//! the timer, glued to the shell in the library. Runs with the MMU off, so
//! physical addresses from `platform::BOARD` are used as they are.
//!
//! On the host this binary only says how to build it for a board.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("m0-kernel runs on aarch64 only: use `cargo xtask run m0 [--board NAME]`");
    std::process::exit(2);
}
