//! The capability model (book ch. 3.3–3.5, 3.9, 3.13) as pure logic: no
//! hardware, no allocation, tested exhaustively on the host.
//!
//! - [`types`]: one table of object types drives sizes, retype sources and
//!   which types derive from which;
//! - [`cap`]: a capability's value (type, memory, rights, type-specific
//!   data, owner core and remote relations) and the relations between two
//!   capabilities — copy, ancestor, descendant;
//! - [`retype`]: the rules for making new capabilities from old ones;
//! - [`map`]: which capability may be mapped into which page table and how
//!   (book Table 3.1, with 2 MiB and 1 GiB blocks);
//! - [`mdb`]: the derivation database, an augmented balanced tree threaded
//!   through capability table entries, so its memory is the CNodes users
//!   retyped and every query is logarithmic plus its output.
//!
//! The kernel owns the table entries and invokes these functions; nothing
//! here knows about CSpace addressing or page-table memory.

#![no_std]

pub mod cap;
pub mod map;
pub mod mdb;
pub mod retype;
pub mod types;

pub use cap::{Cap, Extra, Rights};
pub use kpi::objtype::ObjType;

/// Why a capability operation is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapError {
    /// The source type cannot be retyped into the requested type.
    IllegalRetype,
    /// Size, count or offset out of range, or arithmetic overflow.
    InvalidSize,
    /// The new object would not be aligned as its type requires.
    Misaligned,
    /// The requested range already holds a descendant of the source.
    Overlap,
    /// The capability lacks a right the operation needs.
    Rights,
    /// This type cannot be mapped into that table, or not this way.
    IllegalMapping,
    /// The page-table entries asked for do not fit in the table.
    EntriesOutOfRange,
    /// The operation is not defined for this type.
    WrongType,
}
