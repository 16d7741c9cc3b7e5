//! A capability's value and the relations between capabilities.

use core::cmp::Ordering;

use bitflags::bitflags;
use kpi::objtype::ObjType;

use crate::types::{self, can_derive};

bitflags! {
    /// What a capability lets its holder do. `mint` can only remove rights.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Rights: u8 {
        const READ = 1 << 0;
        const WRITE = 1 << 1;
        const EXECUTE = 1 << 2;
        /// May be given away (sent over a channel).
        const GRANT = 1 << 3;
        /// May be identified (its type and range revealed).
        const IDENTIFY = 1 << 4;
    }
}

impl Rights {
    pub const ALL: Rights = Rights::all();
}

/// Type-specific data. Part of a capability's identity: two capabilities
/// are copies only if this is equal too.
///
/// `repr(C, u8)` with `None` first gives the layout a defined tag, 0 for
/// `None`, so all-zero memory is a valid empty capability table entry and
/// the kernel can initialise a CNode with one `memset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, PartialOrd, Ord)]
#[repr(C, u8)]
pub enum Extra {
    #[default]
    None,
    /// An LMP endpoint: where in the receiver's dispatcher frame its
    /// buffer lies (set by mint).
    Endpoint { offset: u32, size: u32 },
    /// A mapping: which table, which first entry, how many entries, and the
    /// offset into the mapped object.
    Mapping { table: u64, entry: u16, count: u16, offset: u64 },
    /// An interrupt destination vector.
    IrqVector(u32),
}

/// Bits of a capability's remote relations (book ch. 13.1): whether other
/// cores hold copies, descendants or ancestors of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Remote {
    pub copies: bool,
    pub descendants: bool,
    pub ancestors: bool,
}

/// A capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    pub objtype: ObjType,
    pub rights: Rights,
    /// Physical base of the object (0 for types without memory).
    pub base: u64,
    /// Bytes of the object (for endpoints: the dispatcher's).
    pub size: u64,
    pub extra: Extra,
    /// The core that owns every copy of this capability (ch. 13.1).
    pub owner: u8,
    pub remote: Remote,
}

impl Cap {
    /// A capability with all rights, owned by core 0.
    pub const fn new(objtype: ObjType, base: u64, size: u64) -> Cap {
        Cap {
            objtype,
            rights: Rights::ALL,
            base,
            size,
            extra: Extra::None,
            owner: 0,
            remote: Remote { copies: false, descendants: false, ancestors: false },
        }
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    pub fn overlaps(&self, other: &Cap) -> bool {
        self.base < other.end() && other.base < self.end()
    }

    fn contains(&self, other: &Cap) -> bool {
        self.base <= other.base && other.end() <= self.end()
    }

    /// Copies refer to the same object: same type, range and type data.
    /// (Rights may differ: a minted copy may have fewer.)
    pub fn is_copy(&self, other: &Cap) -> bool {
        self.objtype == other.objtype && self.base == other.base && self.size == other.size && self.extra == other.extra
    }

    /// Whether `other` was, or could have been, derived from `self`.
    pub fn is_ancestor_of(&self, other: &Cap) -> bool {
        if self.is_copy(other) || !can_derive(self.objtype, other.objtype) || !self.contains(other) {
            return false;
        }
        // A same-type descendant is a strictly smaller piece.
        self.objtype != other.objtype || self.size > other.size
    }

    /// The order of the derivation database: by base, larger first (so an
    /// ancestor precedes its descendants), then by type rank and type, then
    /// type data. Copies compare equal.
    pub fn order_key(&self) -> (u64, core::cmp::Reverse<u64>, u8, u8, Extra) {
        (self.base, core::cmp::Reverse(self.size), types::rank(self.objtype), self.objtype as u8, self.extra)
    }

    /// How `self` sorts against `other` by [`Cap::order_key`], without
    /// building the keys: every level of every database search compares,
    /// and the base alone nearly always settles it.
    #[inline]
    pub fn order_cmp(&self, other: &Cap) -> Ordering {
        if self.base != other.base {
            return self.base.cmp(&other.base);
        }
        if self.size != other.size {
            return other.size.cmp(&self.size);
        }
        (types::rank(self.objtype), self.objtype as u8)
            .cmp(&(types::rank(other.objtype), other.objtype as u8))
            .then_with(|| self.extra.cmp(&other.extra))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_zero_bytes_are_an_empty_capability() {
        // SAFETY: every field of Cap has a valid all-zero bit pattern: ObjType
        // Null is 0, Rights is a u8 set, Extra is repr(C, u8) with None = 0,
        // integers and bools are zero; the test checks the values read back.
        let c: Cap = unsafe { core::mem::zeroed() };
        assert_eq!(c.objtype, ObjType::Null);
        assert_eq!(c.rights, Rights::empty());
        assert_eq!(c.extra, Extra::None);
        assert_eq!((c.base, c.size, c.owner), (0, 0, 0));
        assert_eq!(c.remote, Remote::default());
    }

    #[test]
    fn copies_ancestors_and_descendants() {
        let ram = Cap::new(ObjType::Ram, 0x1000_0000, 0x10_0000);
        let frame = Cap::new(ObjType::Frame, 0x1000_0000, 0x1000);
        let half = Cap::new(ObjType::Ram, 0x1000_0000, 0x8_0000);
        let same = Cap { rights: Rights::READ, ..ram };
        assert!(ram.is_copy(&same), "rights do not change identity");
        assert!(!ram.is_ancestor_of(&same));
        assert!(ram.is_ancestor_of(&frame) && ram.is_ancestor_of(&half));
        assert!(half.is_ancestor_of(&frame));
        assert!(!frame.is_ancestor_of(&ram));
        let whole_frame = Cap::new(ObjType::Frame, ram.base, ram.size);
        assert!(ram.is_ancestor_of(&whole_frame), "a different type over the same range descends");
        let outside = Cap::new(ObjType::Frame, 0x2000_0000, 0x1000);
        assert!(!ram.is_ancestor_of(&outside));
        let disp = Cap::new(ObjType::Dispatcher, 0x1000_0000, 0x1000);
        let ep = Cap {
            extra: Extra::Endpoint { offset: 0, size: 512 },
            ..Cap::new(ObjType::EndPointLmp, disp.base, disp.size)
        };
        let ep2 = Cap { extra: Extra::Endpoint { offset: 512, size: 512 }, ..ep };
        assert!(disp.is_ancestor_of(&ep) && !ep.is_copy(&ep2) && !ep.is_ancestor_of(&ep2));
        assert!(ram.order_key() < half.order_key() || ram.order_key() < whole_frame.order_key());
        assert!(ram.order_key() < whole_frame.order_key(), "the ancestor sorts first");
        assert!(half.order_key() > ram.order_key());
    }

    fn small_cap() -> impl proptest::strategy::Strategy<Value = Cap> {
        use proptest::prelude::*;
        // Few values for each field, so ties reach every later field.
        let extra = prop_oneof![
            Just(Extra::None),
            (0u32..2, 0u32..2).prop_map(|(offset, size)| Extra::Endpoint { offset, size }),
            (0u64..2, 0u16..2, 0u16..2, 0u64..2).prop_map(|(table, entry, count, offset)| Extra::Mapping {
                table,
                entry,
                count,
                offset
            }),
            (0u32..2).prop_map(Extra::IrqVector),
        ];
        (0u64..3, prop_oneof![Just(0u64), Just(1), Just(u64::MAX)], 0..ObjType::COUNT, extra)
            .prop_map(|(base, size, ty, extra)| Cap { extra, ..Cap::new(ObjType::from_raw(ty).unwrap(), base, size) })
    }

    proptest::proptest! {
        #[test]
        fn order_cmp_is_the_order_of_order_key(a in small_cap(), b in small_cap()) {
            proptest::prop_assert_eq!(a.order_cmp(&b), a.order_key().cmp(&b.order_key()));
        }
    }
}
