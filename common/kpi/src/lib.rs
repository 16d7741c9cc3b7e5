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

/// Declares a fieldless enum with explicit numbers together with `ALL`
/// (every variant, in declaration order) and `from_raw`, so the list of
/// variants is written once and cannot fall out of step.
macro_rules! numbered_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $repr:ident {
            $($(#[$vmeta:meta])* $variant:ident = $value:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[repr($repr)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$($value),*].len()] = [$($name::$variant),*];

            /// The variant numbered `raw`, if there is one.
            pub const fn from_raw(raw: $repr) -> Option<$name> {
                match raw {
                    $($value => Some($name::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

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
