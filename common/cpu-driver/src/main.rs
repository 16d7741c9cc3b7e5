//! The CPU driver binary: boot, exceptions, dispatch. Target-only; on the
//! host it explains how it is built.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod arch;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("cpu-driver runs on aarch64 only: use `cargo xtask run cpu-driver [--board NAME]`");
    std::process::exit(2);
}
