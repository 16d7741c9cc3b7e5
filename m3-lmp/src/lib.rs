//! Milestone 3 (book ch. 5): message passing. [`proto`] is the wire
//! protocol, [`chan`] the rings and the send loop over LMP, [`rpc`] the
//! client of Listing 5.1 (`api::AosRpc`), [`server`] init's side with the
//! memory server, terminal and process services, [`mem`] a spawned
//! domain's memory on top of the memory server, and [`rt`] the start-up
//! every spawned domain runs. The design is in report/m3-lmp.md.

#![no_std]

pub mod chan;
pub mod mem;
pub mod proto;
pub mod rpc;
pub mod rt;
pub mod server;

pub use aos;

/// Declares a spawned program's main function, run after the M3 runtime
/// is up: `m3_lmp::main!(run);` with `fn run(args: &aos::Args) -> i32`.
#[macro_export]
macro_rules! main {
    ($f:path) => {
        fn __m3_main(args: &$crate::aos::Args) -> i32 {
            $crate::rt::run(args, $f)
        }
        $crate::aos::main!(__m3_main);
    };
}
