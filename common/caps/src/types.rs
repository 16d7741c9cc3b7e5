//! The table of object types. Every rule about a type — how big it is,
//! what it may be retyped from, whether it types memory, what derives from
//! it — is read from [`info`], so the rules are written once.

use kpi::objtype::ObjType;

pub const BASE_PAGE: u64 = 4096;
/// Bytes of one capability table entry in a CNode (the kernel asserts its
/// entry type fits).
pub const CTE_SIZE: u64 = kpi::cspace::CTE_SIZE;
/// Slots of an L2 CNode (book ch. 3.9).
pub const L2_SLOTS: u64 = kpi::cspace::L2_CNODE_SLOTS as u64;
/// Least slots of an L1 CNode.
pub const L1_MIN_SLOTS: u64 = kpi::cspace::L1_CNODE_MIN_SLOTS as u64;
/// Most slots of an L1 CNode: 4096 L2 CNodes, a million slots, so zeroing
/// a root at retype and rehoming its entries at resize stay bounded.
pub const L1_MAX_SLOTS: u64 = kpi::cspace::L1_CNODE_MAX_SLOTS as u64;
pub const VNODE_SIZE: u64 = 4096;
pub const DISPATCHER_SIZE: u64 = 4096;
pub const KCB_SIZE: u64 = 4096;

/// How big objects of a type are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Always this many bytes.
    Fixed(u64),
    /// Chosen at retype: from `min` to `max`, a multiple of `granule`.
    Variable { min: u64, max: u64, granule: u64 },
    /// The object occupies no memory of its own.
    None,
}

/// What the kit knows about a type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeInfo {
    pub objtype: ObjType,
    pub size: Size,
    /// Types a retype may start from.
    pub retype_from: &'static [ObjType],
    /// For mapping types: the type whose mappings they record.
    pub maps: Option<ObjType>,
}

const fn t(objtype: ObjType, size: Size, retype_from: &'static [ObjType], maps: Option<ObjType>) -> TypeInfo {
    TypeInfo { objtype, size, retype_from, maps }
}

use ObjType::*;

const PAGES: Size = Size::Variable { min: BASE_PAGE, max: u64::MAX, granule: BASE_PAGE };

/// Every type, indexed by its number.
pub const TABLE: [TypeInfo; ObjType::COUNT as usize] = [
    t(Null, Size::None, &[], None),
    t(Ram, PAGES, &[Ram], None),
    t(Frame, PAGES, &[Ram, Frame], None),
    t(DevFrame, PAGES, &[DevFrame], None),
    t(
        L1CNode,
        Size::Variable { min: L1_MIN_SLOTS * CTE_SIZE, max: L1_MAX_SLOTS * CTE_SIZE, granule: BASE_PAGE },
        &[Ram],
        None,
    ),
    t(L2CNode, Size::Fixed(L2_SLOTS * CTE_SIZE), &[Ram], None),
    t(VNodeL0, Size::Fixed(VNODE_SIZE), &[Ram], None),
    t(VNodeL1, Size::Fixed(VNODE_SIZE), &[Ram], None),
    t(VNodeL2, Size::Fixed(VNODE_SIZE), &[Ram], None),
    t(VNodeL3, Size::Fixed(VNODE_SIZE), &[Ram], None),
    t(Dispatcher, Size::Fixed(DISPATCHER_SIZE), &[Ram], None),
    t(EndPointLmp, Size::None, &[Dispatcher], None),
    t(Kernel, Size::None, &[], None),
    t(IrqTable, Size::None, &[], None),
    t(IrqDest, Size::None, &[], None),
    t(KernelControlBlock, Size::Fixed(KCB_SIZE), &[Ram], None),
    t(FrameMapping, Size::None, &[], Some(Frame)),
    t(DevFrameMapping, Size::None, &[], Some(DevFrame)),
    t(VNodeL0Mapping, Size::None, &[], Some(VNodeL0)),
    t(VNodeL1Mapping, Size::None, &[], Some(VNodeL1)),
    t(VNodeL2Mapping, Size::None, &[], Some(VNodeL2)),
    t(VNodeL3Mapping, Size::None, &[], Some(VNodeL3)),
];

/// The table entry of a type.
pub fn info(ty: ObjType) -> &'static TypeInfo {
    &TABLE[ty as usize]
}

/// Whether capabilities of this type give memory a type: two such
/// capabilities may only overlap if one derives from the other.
pub fn types_memory(ty: ObjType) -> bool {
    !matches!(info(ty).size, Size::None)
}

/// Whether `ty` records a mapping (FrameMapping, VNodeL3Mapping, ...).
pub fn is_mapping(ty: ObjType) -> bool {
    info(ty).maps.is_some()
}

/// The mapping type that records a mapping of `ty`, if `ty` can be mapped.
pub fn mapping_type(ty: ObjType) -> Option<ObjType> {
    TABLE.iter().find(|i| i.maps == Some(ty)).map(|i| i.objtype)
}

/// Whether a capability of type `child` can derive (by retypes, splits or
/// mapping) from one of type `parent`.
pub fn can_derive(parent: ObjType, child: ObjType) -> bool {
    if parent == child {
        // Only variable-size memory splits into smaller pieces of itself.
        return matches!(info(parent).size, Size::Variable { .. });
    }
    if let Some(mapped) = info(child).maps {
        return mapped == parent || can_derive(parent, mapped);
    }
    // Walk the retype sources of `child` back towards `parent`; the table
    // has no cycles other than self-loops, so this ends.
    info(child).retype_from.iter().any(|&src| src != child && (src == parent || can_derive(parent, src)))
}

/// Sort rank: ancestors before descendants when ranges start together.
pub fn rank(ty: ObjType) -> u8 {
    match ty {
        Ram => 0,
        Frame | DevFrame | L1CNode | L2CNode | VNodeL0 | VNodeL1 | VNodeL2 | VNodeL3 | Dispatcher
        | KernelControlBlock => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_indexed_by_type_number() {
        for (i, info) in TABLE.iter().enumerate() {
            assert_eq!(info.objtype as usize, i);
        }
    }

    #[test]
    fn derivation_follows_the_book() {
        assert!(can_derive(Ram, Frame));
        assert!(can_derive(Ram, Ram));
        assert!(can_derive(Frame, Frame));
        assert!(can_derive(Ram, FrameMapping), "RAM -> Frame -> mapping");
        assert!(can_derive(Ram, EndPointLmp), "RAM -> Dispatcher -> endpoint");
        assert!(can_derive(VNodeL3, VNodeL3Mapping));
        assert!(!can_derive(Frame, Ram), "no way back to RAM");
        assert!(!can_derive(Ram, DevFrame), "device memory is not RAM");
        assert!(!can_derive(L2CNode, L2CNode), "fixed-size objects do not split");
        assert!(!can_derive(Frame, VNodeL0));
        assert!(!can_derive(Kernel, IrqDest));
        assert_eq!(mapping_type(Frame), Some(FrameMapping));
        assert_eq!(mapping_type(Ram), None);
        for ty in TABLE.iter().map(|i| i.objtype) {
            for &src in info(ty).retype_from {
                assert!(rank(src) <= rank(ty), "{src:?} sorts after {ty:?}");
            }
        }
    }
}
