//! Which capability may be mapped into which page table, and how (book
//! ch. 3.13, Table 3.1): a table of the next level into a table; a Frame or
//! DevFrame into the last level as 4 KiB pages, into L2 as 2 MiB blocks,
//! into L1 as 1 GiB blocks. Nothing else — an L0 table cannot take a frame,
//! a table cannot take a table of the wrong level — so every page table a
//! user builds is a valid one.

use kpi::objtype::ObjType;

use crate::CapError;
use crate::cap::{Cap, Extra, Remote, Rights};
use crate::types;

/// Entries in a translation table.
pub const ENTRIES: u16 = 512;

/// A mapping request into the table capability `table`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// First table entry.
    pub entry: u16,
    /// Entries to fill.
    pub count: u16,
    /// Offset into the mapped object.
    pub offset: u64,
    /// Rights the mapping grants (READ always; WRITE and EXECUTE if asked).
    pub rights: Rights,
}

/// What a checked mapping writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Level of the table written (0–3).
    pub level: u8,
    /// Physical address of the first entry's target.
    pub pa: u64,
    /// Bytes each entry covers (4 KiB, 2 MiB, 1 GiB), or the table size for
    /// table entries.
    pub entry_size: u64,
    /// Whether the entries point to tables (else pages or blocks).
    pub table: bool,
    /// The mapping capability that records this mapping.
    pub mapping: Cap,
}

fn level(ty: ObjType) -> Option<u8> {
    match ty {
        ObjType::VNodeL0 => Some(0),
        ObjType::VNodeL1 => Some(1),
        ObjType::VNodeL2 => Some(2),
        ObjType::VNodeL3 => Some(3),
        _ => None,
    }
}

/// Checks mapping `src` into `table` as `req` asks.
pub fn check(table: &Cap, src: &Cap, req: &Request) -> Result<Plan, CapError> {
    let l = level(table.objtype).ok_or(CapError::WrongType)?;
    let (entry_size, is_table) = match (l, src.objtype) {
        (_, t) if level(t) == Some(l + 1) => (types::VNODE_SIZE, true),
        (1, ObjType::Frame | ObjType::DevFrame) => (1 << 30, false),
        (2, ObjType::Frame | ObjType::DevFrame) => (2 << 20, false),
        (3, ObjType::Frame | ObjType::DevFrame) => (types::BASE_PAGE, false),
        _ => return Err(CapError::IllegalMapping),
    };
    if req.count == 0 || u32::from(req.entry) + u32::from(req.count) > u32::from(ENTRIES) {
        return Err(CapError::EntriesOutOfRange);
    }
    if is_table && (req.count != 1 || req.offset != 0) {
        return Err(CapError::IllegalMapping);
    }
    if !table.rights.contains(Rights::WRITE) || !src.rights.contains(Rights::READ) {
        return Err(CapError::Rights);
    }
    // Tables are mapped for the MMU only; frames with at most their rights.
    let rights = if is_table { Rights::READ | Rights::WRITE } else { req.rights | Rights::READ };
    if !is_table && !src.rights.contains(rights) {
        return Err(CapError::Rights);
    }
    if !is_table && rights.contains(Rights::WRITE | Rights::EXECUTE) {
        return Err(CapError::Rights);
    }
    let len = entry_size * u64::from(req.count);
    let end = req.offset.checked_add(len).ok_or(CapError::InvalidSize)?;
    if end > src.size {
        return Err(CapError::InvalidSize);
    }
    let pa = src.base + req.offset;
    if !pa.is_multiple_of(entry_size) {
        return Err(CapError::Misaligned);
    }
    let mapping_type = types::mapping_type(src.objtype).ok_or(CapError::IllegalMapping)?;
    let mapping = Cap {
        objtype: mapping_type,
        rights,
        base: pa,
        size: len,
        extra: Extra::Mapping { table: table.base, entry: req.entry, count: req.count, offset: req.offset },
        owner: src.owner,
        remote: Remote::default(),
    };
    Ok(Plan { level: l, pa, entry_size, table: is_table, mapping })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ObjType::*;

    fn vnode(ty: ObjType) -> Cap {
        Cap::new(ty, 0x4000_0000, 0x1000)
    }

    fn req(entry: u16, count: u16, offset: u64, rights: Rights) -> Request {
        Request { entry, count, offset, rights }
    }

    const RW: Rights = Rights::READ.union(Rights::WRITE);

    #[test]
    fn table_3_1_aarch64_rows() {
        let frame_1g = Cap::new(Frame, 0x8000_0000, 1 << 30);
        let frame_2m = Cap::new(Frame, 0x4020_0000, 2 << 20);
        let frame_8k = Cap::new(Frame, 0x4000_2000, 0x2000);
        let l0 = vnode(VNodeL0);
        let l1 = vnode(VNodeL1);
        let l2 = vnode(VNodeL2);
        let l3 = vnode(VNodeL3);
        assert!(check(&l0, &l1, &req(0, 1, 0, RW)).unwrap().table);
        assert!(check(&l1, &l2, &req(5, 1, 0, RW)).unwrap().table);
        assert!(check(&l2, &l3, &req(511, 1, 0, RW)).unwrap().table);
        let p = check(&l1, &frame_1g, &req(2, 1, 0, RW)).unwrap();
        assert_eq!((p.level, p.entry_size, p.pa), (1, 1 << 30, 0x8000_0000));
        let p = check(&l2, &frame_2m, &req(1, 1, 0, RW)).unwrap();
        assert_eq!(p.entry_size, 2 << 20);
        let p = check(&l3, &frame_8k, &req(510, 2, 0, RW)).unwrap();
        assert_eq!((p.mapping.objtype, p.mapping.size), (FrameMapping, 0x2000));
        assert_eq!(
            check(&l3, &frame_8k, &req(511, 2, 0, RW)),
            Err(CapError::EntriesOutOfRange),
            "8 KiB only if all PTEs fit"
        );
        assert_eq!(check(&l1, &l1, &req(0, 1, 0, RW)), Err(CapError::IllegalMapping), "an L1 in an L1");
        assert_eq!(check(&l0, &frame_1g, &req(0, 1, 0, RW)), Err(CapError::IllegalMapping), "no L0 blocks");
        assert_eq!(check(&l3, &l2, &req(0, 1, 0, RW)), Err(CapError::IllegalMapping), "tables only one level down");
        assert_eq!(check(&l2, &frame_8k, &req(0, 1, 0, RW)), Err(CapError::InvalidSize), "a 2 MiB block needs 2 MiB");
        let dev = Cap::new(DevFrame, 0x0900_0000, 0x1000);
        assert_eq!(check(&l3, &dev, &req(0, 1, 0, RW)).unwrap().mapping.objtype, DevFrameMapping);
        assert_eq!(check(&frame_8k, &frame_8k, &req(0, 1, 0, RW)), Err(CapError::WrongType));
    }

    #[test]
    fn rights_alignment_and_offsets() {
        let l3 = vnode(VNodeL3);
        let frame = Cap::new(Frame, 0x4000_0000, 0x4000);
        let ro = Cap { rights: Rights::READ, ..frame };
        assert_eq!(check(&l3, &ro, &req(0, 1, 0, RW)), Err(CapError::Rights), "no write through a read-only frame");
        assert!(check(&l3, &ro, &req(0, 1, 0, Rights::READ)).is_ok());
        let wx = Rights::READ | Rights::WRITE | Rights::EXECUTE;
        assert_eq!(check(&l3, &frame, &req(0, 1, 0, wx)), Err(CapError::Rights), "W^X");
        let l3_ro = Cap { rights: Rights::READ, ..l3 };
        assert_eq!(check(&l3_ro, &frame, &req(0, 1, 0, RW)), Err(CapError::Rights), "the table must be writable");
        assert_eq!(check(&l3, &frame, &req(0, 1, 0x800, RW)), Err(CapError::Misaligned));
        assert_eq!(check(&l3, &frame, &req(0, 4, 0x1000, RW)), Err(CapError::InvalidSize));
        assert_eq!(check(&l3, &frame, &req(0, 1, u64::MAX, RW)), Err(CapError::InvalidSize));
        assert_eq!(check(&l3, &frame, &req(0, 0, 0, RW)), Err(CapError::EntriesOutOfRange));
        let p = check(&l3, &frame, &req(7, 2, 0x2000, RW)).unwrap();
        assert_eq!(p.pa, 0x4000_2000);
        assert!(frame.is_ancestor_of(&p.mapping), "deleting the frame finds its mappings");
        let unaligned_2m = Cap::new(Frame, 0x4000_1000, 4 << 20);
        assert_eq!(check(&vnode(VNodeL2), &unaligned_2m, &req(0, 1, 0, RW)), Err(CapError::Misaligned));
    }
}
