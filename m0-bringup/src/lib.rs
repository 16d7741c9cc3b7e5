//! Milestone 0 (book ch. 2): the logic of a mini-kernel that talks over the
//! UART, blinks the LED and powers the board off or resets it through PSCI.
//!
//! Everything here is plain Rust that builds and is unit-tested on the host:
//! the line editor and command interpreter ([`shell`]) and the polling
//! drivers ([`uart`], [`led`]) over the register maps in `devices`. PSCI's
//! numbers and the device-tree lookup of its conduit come from
//! `platform::psci`; making the call is M0's.
//! The kernel binary (`src/main.rs`) adds only what needs the hardware: the
//! boot assembly, the `hvc`/`smc` call, the timer and the exception vectors.
//! It may not name an address: those come from `platform::BOARD`.

#![cfg_attr(not(test), no_std)]

pub mod led;
pub mod shell;
pub mod uart;
