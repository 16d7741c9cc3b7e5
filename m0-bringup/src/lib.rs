//! Milestone 0 (book ch. 2): the logic of a mini-kernel that talks over the
//! UART, blinks the LED and powers the board off or resets it through PSCI.
//!
//! Everything here is plain Rust that builds and is unit-tested on the host:
//! the line editor and command interpreter ([`shell`]), the PSCI function
//! numbers and the device-tree lookup of the conduit ([`psci`]), and the
//! polling drivers ([`uart`], [`led`]) over the register maps in `devices`.
//! The kernel binary (`src/main.rs`) adds only what needs the hardware: the
//! boot assembly, the `hvc`/`smc` call, the timer and the exception vectors.
//! It may not name an address: those come from `platform::BOARD`.

#![cfg_attr(not(test), no_std)]

pub mod led;
pub mod psci;
pub mod shell;
pub mod uart;
