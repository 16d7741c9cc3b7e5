//! The kernel–user ABI (Barrelfish's `barrelfish_kpi`): everything the CPU
//! driver and user domains must agree on bit for bit.
//!
//! It owns numbers and layouts only — syscall numbers and registers, error
//! codes, object types, the dispatcher frame, the arguments page, bootinfo,
//! and the well-known CSpace slots of book ch. 4.9. Every shared structure is
//! `#[repr(C)]` and its layout is asserted by host tests, so a change that
//! would break the ABI fails `cargo test`. No code here runs in the kernel or
//! in user space beyond constructors and accessors.

#![no_std]

pub mod args;
pub mod bootinfo;
pub mod cspace;
pub mod dispatcher;
pub mod error;
pub mod invocation;
pub mod objtype;
pub mod syscall;
pub mod vspace;

pub use error::{Error, ErrorCode};

/// Size of a base page.
pub const BASE_PAGE_SIZE: usize = 4096;
