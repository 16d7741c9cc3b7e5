//! Capability invocations (`kpi::invocation`) as typed calls. Each returns
//! the kernel's error code on refusal; nothing changes when one fails.

pub use kpi::invocation::{CapRef, Command, Dest};
pub use kpi::objtype::ObjType;

use kpi::ErrorCode;
use kpi::syscall::Syscall;

/// What `identify` reveals about a capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub objtype: Option<ObjType>,
    /// Rights bits (kpi: read 1, write 2, execute 4, grant 8, identify 16).
    pub rights: u8,
    pub owner: u8,
    pub base: u64,
    pub size: u64,
}

impl core::fmt::Display for Identity {
    /// A debug dump: `Frame 0x40000000..0x40002000 rw--i owner 0`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.objtype {
            Some(t) => write!(f, "{t:?}")?,
            None => f.write_str("unknown type")?,
        }
        write!(f, " {:#x}..{:#x} ", self.base, self.base.saturating_add(self.size))?;
        for (bit, c) in [(1, "r"), (2, "w"), (4, "x"), (8, "g"), (16, "i")] {
            f.write_str(if self.rights & bit != 0 { c } else { "-" })?;
        }
        write!(f, " owner {}", self.owner)
    }
}

/// An L2 CNode, named by its slot in the root CNode: where a domain's
/// capabilities live and new ones go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CNodeRef {
    /// The root-CNode slot holding this CNode.
    pub l1: u32,
}

impl CNodeRef {
    /// The capability in slot `slot`.
    pub const fn slot(self, slot: u8) -> CapRef {
        CapRef::slot(self.l1, slot)
    }

    /// Slot `slot` as a destination for new capabilities.
    pub const fn dest(self, slot: u32) -> Dest {
        Dest::l2(self.l1, slot)
    }

    /// The CNode's own capability (level 1).
    pub const fn cap(self) -> CapRef {
        CapRef::l2_cnode(self.l1)
    }
}

/// Invokes `cap` with `cmd` and five arguments; returns x1..x3.
pub fn invoke(cap: CapRef, cmd: Command, args: [u64; 5]) -> Result<[u64; 3], ErrorCode> {
    invoke_raw(cap.to_raw(), cmd as u64, args)
}

/// The raw syscall, for tests that send what no wrapper would.
pub fn invoke_raw(cap: u64, cmd: u64, args: [u64; 5]) -> Result<[u64; 3], ErrorCode> {
    #[cfg(target_os = "none")]
    {
        let (x0, x1, x2, x3): (u64, u64, u64, u64);
        // SAFETY: `svc #0` enters the kernel, which for Invoke preserves
        // every register but x0-x3 and touches only kernel memory.
        unsafe {
            core::arch::asm!(
                "svc #0",
                inout("x0") Syscall::Invoke as u64 => x0,
                inout("x1") cap => x1,
                inout("x2") cmd => x2,
                inout("x3") args[0] => x3,
                in("x4") args[1], in("x5") args[2], in("x6") args[3], in("x7") args[4],
                options(nostack)
            );
        }
        match x0 {
            0 => Ok([x1, x2, x3]),
            e => Err(crate::syscall::error(e)),
        }
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = (cap, cmd, args, Syscall::Invoke);
        Err(ErrorCode::InvalidSyscall)
    }
}

pub fn identify(cap: CapRef) -> Result<Identity, ErrorCode> {
    let [a, base, size] = invoke(cap, Command::Identify, [0; 5])?;
    Ok(Identity { objtype: ObjType::from_raw(a as u8), rights: (a >> 8) as u8, owner: (a >> 16) as u8, base, size })
}

/// Retypes `count` objects of `objsize` bytes (0: the type's size) at
/// `offset` into `src`, into consecutive slots from `dest`.
pub fn retype(
    src: CapRef,
    dest: Dest,
    new_type: ObjType,
    offset: u64,
    objsize: u64,
    count: u64,
) -> Result<u64, ErrorCode> {
    invoke(src, Command::Retype, [dest.to_raw(), new_type as u64, offset, objsize, count]).map(|r| r[0])
}

/// Whether anything but `src` itself and `except` reaches
/// `[offset, offset + size)` of the RAM capability `src`'s memory (a
/// descendant that types memory there, or another copy of `src`): whether
/// the range is free once `except` is deleted. Changes nothing.
pub fn retype_check(src: CapRef, except: Option<CapRef>, offset: u64, size: u64) -> Result<bool, ErrorCode> {
    let except = except.map_or(0, CapRef::to_raw);
    invoke(src, Command::RetypeCheck, [except, offset, size, 0, 0]).map(|r| r[0] != 0)
}

pub fn copy(src: CapRef, dest: Dest) -> Result<(), ErrorCode> {
    invoke(src, Command::Copy, [dest.to_raw(), 0, 0, 0, 0]).map(drop)
}

/// A copy with at most `rights`; for an endpoint, `buffer` (offset, size)
/// sets its receive buffer.
pub fn mint(src: CapRef, dest: Dest, rights: u8, buffer: Option<(u32, u32)>) -> Result<(), ErrorCode> {
    let (off, size) = buffer.unwrap_or((0, 0));
    invoke(src, Command::Mint, [dest.to_raw(), u64::from(rights), u64::from(off), u64::from(size), 0]).map(drop)
}

/// Deletes `cap`. Deleting the last copy of a CNode deletes its contents
/// too, in steps: the kernel answers `Retry` while work remains, and this
/// repeats the call.
pub fn delete(cap: CapRef) -> Result<(), ErrorCode> {
    loop {
        match invoke(cap, Command::Delete, [0; 5]) {
            Err(ErrorCode::Retry) => continue,
            r => return r.map(drop),
        }
    }
}

/// Maps `count` entries of `src` (from `offset`) into the table `vnode`
/// starting at `entry`, with `rights`; the mapping capability goes to
/// `mapping`. Unmapping is deleting that capability.
pub fn map(
    vnode: CapRef,
    src: CapRef,
    entry: u16,
    count: u16,
    rights: u8,
    offset: u64,
    mapping: Dest,
) -> Result<(), ErrorCode> {
    let packed = u64::from(entry) | u64::from(count) << 16 | u64::from(rights) << 32;
    invoke(vnode, Command::Map, [src.to_raw(), packed, offset, mapping.to_raw(), 0]).map(drop)
}

/// Removes a mapping (deletes its mapping capability).
pub fn unmap(mapping: CapRef) -> Result<(), ErrorCode> {
    delete(mapping)
}

/// Changes a mapping's rights (never beyond those it was made with).
pub fn modify_flags(mapping: CapRef, rights: u8) -> Result<(), ErrorCode> {
    invoke(mapping, Command::ModifyFlags, [u64::from(rights), 0, 0, 0, 0]).map(drop)
}

/// Makes the empty, larger L1 CNode `new_root` this domain's CSpace root,
/// moving every slot into it; `root` names (a copy of) the current root.
pub fn resize_root(root: CapRef, new_root: CapRef) -> Result<(), ErrorCode> {
    invoke(root, Command::Resize, [new_root.to_raw(), 0, 0, 0, 0]).map(drop)
}

/// Asks the kernel to check its capability invariants (needs the Kernel
/// capability); returns how many capabilities it holds.
pub fn debug_check(kernel: CapRef) -> Result<u64, ErrorCode> {
    invoke(kernel, Command::DebugCheck, [0; 5]).map(|r| r[0])
}

/// Capabilities one `Revoke` call deletes at most (the kernel's batch).
pub const REVOKE_BATCH: u64 = 64;

/// Deletes every copy and descendant of `cap`, repeating while the kernel
/// says work remains; returns how many capabilities went.
pub fn revoke(cap: CapRef) -> Result<u64, ErrorCode> {
    let mut total = 0;
    loop {
        match invoke(cap, Command::Revoke, [0; 5]) {
            Ok([n, ..]) => return Ok(total + n),
            // The kernel deleted a full batch and wants another call.
            Err(ErrorCode::Retry) => total += REVOKE_BATCH,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn identities_print_as_a_dump() {
        let id =
            Identity { objtype: Some(ObjType::Frame), rights: 1 | 2 | 16, owner: 0, base: 0x4000_0000, size: 0x2000 };
        assert_eq!(id.to_string(), "Frame 0x40000000..0x40002000 rw--i owner 0");
        let odd = Identity { objtype: None, rights: 0, owner: 1, base: 0, size: 0 };
        assert_eq!(odd.to_string(), "unknown type 0x0..0x0 ----- owner 1");
    }

    #[test]
    fn cnode_refs_name_slots_and_destinations() {
        let cn = CNodeRef { l1: 5 };
        assert_eq!(cn.slot(7), CapRef::slot(5, 7));
        assert_eq!(cn.dest(9), Dest::l2(5, 9));
        assert_eq!(cn.cap().level, 1);
    }
}
