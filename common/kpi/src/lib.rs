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

/// Declares a fieldless enum numbered densely in declaration order,
/// together with `ALL` (every variant, in that order) and `from_raw`, so the
/// list of variants is written once and cannot fall out of step.
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

            /// The variant numbered `raw`, if there is one: an index into
            /// `ALL`, as the numbering is dense (checked below).
            pub const fn from_raw(raw: $repr) -> Option<$name> {
                let i = raw.wrapping_sub(Self::ALL[0] as $repr) as usize;
                if i < Self::ALL.len() { Some(Self::ALL[i]) } else { None }
            }
        }

        const _: () = {
            let mut i = 0;
            while i < $name::ALL.len() {
                assert!($name::ALL[i] as usize == $name::ALL[0] as usize + i, "numbering must be dense and in order");
                i += 1;
            }
        };
    };
}

pub mod args;
pub mod bootinfo;
pub mod cspace;
pub mod dispatcher;
pub mod error;
pub mod invocation;
pub mod lmp;
pub mod objtype;
pub mod syscall;
pub mod vspace;

pub use error::{Error, ErrorCode};

/// Size of a base page.
pub const BASE_PAGE_SIZE: usize = 4096;
