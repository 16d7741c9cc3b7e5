//! Retype and mint: the rules for making capabilities from capabilities.
//! Whether memory is free of other types (the no-overlap rule) needs the
//! derivation database: see [`crate::mdb::Mdb::retype_conflict`].

use kpi::objtype::ObjType;

use crate::CapError;
use crate::cap::{Cap, Extra, Remote, Rights};
use crate::types::{self, BASE_PAGE, Size};

/// Most objects one retype may create: the kernel's work per invocation
/// stays bounded.
pub const COUNT_MAX: u64 = types::L2_SLOTS;

/// A retype request: `count` objects of `objsize` bytes (0: the type's own
/// size) starting `offset` bytes into the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub new_type: ObjType,
    pub offset: u64,
    pub objsize: u64,
    pub count: u64,
}

/// A checked retype: where the new objects go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub new_type: ObjType,
    /// Base of the first new object.
    pub base: u64,
    pub objsize: u64,
    pub count: u64,
}

impl Plan {
    /// The memory the new objects cover, `[start, end)`.
    pub fn range(&self) -> (u64, u64) {
        (self.base, self.base + self.objsize * self.count)
    }

    /// The `i`-th new capability.
    pub fn nth(&self, src: &Cap, i: u64) -> Cap {
        let extra = match self.new_type {
            ObjType::EndPointLmp => Extra::Endpoint { offset: 0, size: 0 },
            _ => Extra::None,
        };
        let (base, size) =
            if self.objsize == 0 { (src.base, src.size) } else { (self.base + i * self.objsize, self.objsize) };
        Cap {
            objtype: self.new_type,
            rights: src.rights,
            base,
            size,
            extra,
            owner: src.owner,
            remote: Remote::default(),
        }
    }
}

/// Checks a retype of `src` by type, size, count, offset and alignment.
pub fn check(src: &Cap, req: &Request) -> Result<Plan, CapError> {
    let info = types::info(req.new_type);
    if !info.retype_from.contains(&src.objtype) {
        return Err(CapError::IllegalRetype);
    }
    if req.count == 0 || req.count > COUNT_MAX {
        return Err(CapError::InvalidSize);
    }
    let objsize = match info.size {
        Size::Fixed(s) if req.objsize == 0 || req.objsize == s => s,
        Size::Fixed(_) => return Err(CapError::InvalidSize),
        Size::Variable { min, max, granule }
            if (min..=max).contains(&req.objsize) && req.objsize.is_multiple_of(granule) =>
        {
            req.objsize
        }
        Size::Variable { .. } => return Err(CapError::InvalidSize),
        // Objects without memory (endpoints) stand for the whole source.
        Size::None if req.objsize == 0 && req.offset == 0 => 0,
        Size::None => return Err(CapError::InvalidSize),
    };
    let total = objsize.checked_mul(req.count).ok_or(CapError::InvalidSize)?;
    let end = req.offset.checked_add(total).ok_or(CapError::InvalidSize)?;
    if end > src.size {
        return Err(CapError::InvalidSize);
    }
    let base = src.base.checked_add(req.offset).ok_or(CapError::InvalidSize)?;
    if objsize != 0 && !base.is_multiple_of(BASE_PAGE) {
        return Err(CapError::Misaligned);
    }
    if req.new_type == src.objtype && objsize == src.size {
        // The "new" capability would be a copy: that is `copy`'s job.
        return Err(CapError::IllegalRetype);
    }
    Ok(Plan { new_type: req.new_type, base, objsize, count: req.count })
}

/// A copy of `src` (same object, same rights, no remote state).
///
/// Mapping capabilities cannot be copied: each stands for page-table
/// entries that exist once, and deleting any copy clears them. A second
/// copy would outlive its entries and keep naming a table that may since
/// have been freed and retyped, so writing through it (ModifyFlags,
/// Delete) would corrupt whatever now owns that memory.
pub fn copy(src: &Cap) -> Result<Cap, CapError> {
    if types::is_mapping(src.objtype) {
        return Err(CapError::WrongType);
    }
    let mut new = *src;
    new.remote = Remote::default();
    Ok(new)
}

/// The furthest a receive buffer may reach into a dispatcher frame (the
/// largest frame the kit gives a dispatcher is far smaller).
pub const ENDPOINT_BUFFER_END: u64 = 1 << 20;

/// Mint: a copy with fewer (never more) rights, or for an endpoint, one
/// with its receive buffer set.
pub fn mint(src: &Cap, rights: Rights, endpoint_buffer: Option<(u32, u32)>) -> Result<Cap, CapError> {
    let mut new = copy(src)?;
    new.rights = src.rights & rights;
    match (src.objtype, endpoint_buffer) {
        (_, None) => {}
        (ObjType::EndPointLmp, Some((offset, size))) => {
            // The buffer lies in the dispatcher's frame, whose size only the
            // dispatcher knows: a send checks it there. Here only its bound.
            if size == 0 || u64::from(offset) + u64::from(size) > ENDPOINT_BUFFER_END {
                return Err(CapError::InvalidSize);
            }
            new.extra = Extra::Endpoint { offset, size };
        }
        _ => return Err(CapError::WrongType),
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ObjType::*;

    const RAM: Cap = Cap::new(Ram, 0x4000_0000, 0x100_0000);

    fn req(new_type: ObjType, offset: u64, objsize: u64, count: u64) -> Request {
        Request { new_type, offset, objsize, count }
    }

    #[test]
    fn retypes_ram_into_every_kernel_object() {
        let p = check(&RAM, &req(Frame, 0x1000, 0x2000, 3)).unwrap();
        assert_eq!(p.range(), (0x4000_1000, 0x4000_7000));
        assert_eq!(p.nth(&RAM, 2).base, 0x4000_5000);
        for ty in [L2CNode, VNodeL0, VNodeL1, VNodeL2, VNodeL3, Dispatcher, KernelControlBlock] {
            let p = check(&RAM, &req(ty, 0, 0, 2)).unwrap();
            assert_eq!(
                p.objsize,
                match types::info(ty).size {
                    Size::Fixed(s) => s,
                    _ => 0,
                }
            );
        }
        assert!(check(&RAM, &req(L1CNode, 0, types::L1_MIN_SLOTS * types::CTE_SIZE, 1)).is_ok());
        let largest = types::L1_MAX_SLOTS * types::CTE_SIZE;
        assert!(check(&RAM, &req(L1CNode, 0, largest, 1)).is_ok());
        assert_eq!(
            check(&RAM, &req(L1CNode, 0, largest + BASE_PAGE, 1)),
            Err(CapError::InvalidSize),
            "a root CNode past the bound"
        );
        assert!(check(&RAM, &req(Ram, 0, 0x80_0000, 2)).is_ok(), "split in halves");
    }

    #[test]
    fn refuses_every_bad_retype() {
        use CapError::*;
        let frame = Cap::new(Frame, 0x4000_0000, 0x4000);
        let cases = [
            (RAM, req(DevFrame, 0, 0x1000, 1), IllegalRetype),
            (frame, req(Ram, 0, 0x1000, 1), IllegalRetype),
            (frame, req(VNodeL3, 0, 0, 1), IllegalRetype),
            (RAM, req(Kernel, 0, 0, 1), IllegalRetype),
            (RAM, req(FrameMapping, 0, 0, 1), IllegalRetype),
            (RAM, req(Frame, 0, 0x1000, 0), InvalidSize),
            (RAM, req(Frame, 0, 0x1000, COUNT_MAX + 1), InvalidSize),
            (RAM, req(Frame, 0, 0x1800, 1), InvalidSize),
            (RAM, req(Frame, 0, 0, 1), InvalidSize),
            (RAM, req(VNodeL0, 0, 0x2000, 1), InvalidSize),
            (RAM, req(Frame, 0x100_0000, 0x1000, 1), InvalidSize),
            (RAM, req(Frame, 0xff_f000, 0x1000, 2), InvalidSize),
            (RAM, req(Frame, u64::MAX - 0xfff, 0x1000, 1), InvalidSize),
            (RAM, req(Frame, 0, 0x1000, u64::MAX), InvalidSize),
            (RAM, req(Frame, 0x800, 0x1000, 1), Misaligned),
            (RAM, req(Ram, 0, RAM.size, 1), IllegalRetype),
            (frame, req(Frame, 0, 0x4000, 1), IllegalRetype),
        ];
        for (src, r, want) in cases {
            assert_eq!(check(&src, &r), Err(want), "{r:?} from {:?}", src.objtype);
        }
    }

    #[test]
    fn endpoints_from_dispatchers_and_mint() {
        let disp = Cap::new(Dispatcher, 0x4000_0000, 0x1000);
        let p = check(&disp, &req(EndPointLmp, 0, 0, 2)).unwrap();
        let ep = p.nth(&disp, 0);
        assert_eq!((ep.objtype, ep.base, ep.size), (EndPointLmp, disp.base, disp.size));
        assert!(disp.is_ancestor_of(&ep));
        assert_eq!(check(&disp, &req(EndPointLmp, 0x10, 0, 1)), Err(CapError::InvalidSize));
        let set = mint(&ep, Rights::ALL, Some((256, 512))).unwrap();
        assert_eq!(set.extra, Extra::Endpoint { offset: 256, size: 512 });
        assert!(!set.is_copy(&ep) && disp.is_ancestor_of(&set));
        let far = mint(&ep, Rights::ALL, Some((0x10000, 2048))).expect("a ring past the DCB's size: frames are larger");
        assert_eq!(far.extra, Extra::Endpoint { offset: 0x10000, size: 2048 });
        assert_eq!(mint(&ep, Rights::ALL, Some((0, 0))), Err(CapError::InvalidSize));
        assert_eq!(mint(&ep, Rights::ALL, Some(((ENDPOINT_BUFFER_END - 64) as u32, 128))), Err(CapError::InvalidSize));
        assert_eq!(mint(&RAM, Rights::ALL, Some((0, 1))), Err(CapError::WrongType));
        let ro = mint(&RAM, Rights::READ, None).unwrap();
        assert!(ro.is_copy(&RAM) && ro.rights == Rights::READ);
        let again = mint(&ro, Rights::ALL, None).unwrap();
        assert_eq!(again.rights, Rights::READ, "mint never adds rights");
    }

    #[test]
    fn mapping_capabilities_cannot_be_copied_or_minted() {
        let mapping = Cap {
            extra: Extra::Mapping { table: 0x8000, entry: 3, count: 1, offset: 0 },
            ..Cap::new(FrameMapping, 0x4000_0000, 0x1000)
        };
        assert_eq!(copy(&mapping), Err(CapError::WrongType));
        assert_eq!(mint(&mapping, Rights::READ, None), Err(CapError::WrongType));
        for ty in [DevFrameMapping, VNodeL0Mapping, VNodeL1Mapping, VNodeL2Mapping, VNodeL3Mapping] {
            assert_eq!(copy(&Cap::new(ty, 0x4000_0000, 0x1000)), Err(CapError::WrongType), "{ty:?}");
        }
        let frame = Cap::new(Frame, 0x4000_0000, 0x1000);
        assert_eq!(copy(&frame), Ok(frame), "other types copy unchanged");
    }
}
