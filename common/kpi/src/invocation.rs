//! Capability invocations: the `Invoke` syscall. A capability is named by
//! a [`CapRef`]: a 32-bit address resolved through the caller's L1 CNode
//! then an L2 CNode (level 2), or only through the L1 CNode (level 1: the
//! L2 CNode capability itself).
//!
//! Registers: `x0` = `Syscall::Invoke`, `x1` = the invoked capability
//! ([`CapRef::to_raw`]), `x2` = the [`Command`], `x3`–`x7` = arguments.
//! Results as for every syscall: error code in `x0`, a value in `x1`.

/// Bits of an address that index the L2 CNode.
pub const L2_BITS: u32 = 8;

/// A capability's place in a CSpace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CapRef {
    /// L1 slot in bits 31..8, L2 slot in bits 7..0.
    pub addr: u32,
    /// 1: the address names an L1 slot; 2: a slot in an L2 CNode.
    pub level: u8,
}

impl CapRef {
    /// The capability in `slot` of the L2 CNode at L1 slot `l1`.
    pub const fn slot(l1: u32, slot: u8) -> CapRef {
        CapRef { addr: (l1 << L2_BITS) | slot as u32, level: 2 }
    }

    /// The L2 CNode capability at L1 slot `l1`.
    pub const fn l2_cnode(l1: u32) -> CapRef {
        CapRef { addr: l1 << L2_BITS, level: 1 }
    }

    pub const fn l1_index(self) -> u32 {
        self.addr >> L2_BITS
    }

    pub const fn l2_index(self) -> u32 {
        self.addr & ((1 << L2_BITS) - 1)
    }

    /// Packed for a register: address in bits 31..0, level in 39..32.
    pub const fn to_raw(self) -> u64 {
        self.addr as u64 | (self.level as u64) << 32
    }

    /// Unpacks a register; `None` if the level is not 1 or 2 or unused bits
    /// are set.
    pub const fn from_raw(raw: u64) -> Option<CapRef> {
        let level = (raw >> 32) as u8;
        if raw >> 40 != 0 || (level != 1 && level != 2) {
            return None;
        }
        Some(CapRef { addr: raw as u32, level })
    }
}

/// Where a new capability goes: slot `slot` of the CNode capability
/// `cnode` names — an L2 CNode, or an L1 CNode (a CSpace root), whose slots
/// take the L2 CNodes a CSpace resolves through. Packed as
/// `cnode.to_raw() | slot << 40`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dest {
    pub cnode: CapRef,
    pub slot: u32,
}

impl Dest {
    /// Slot `slot` of the L2 CNode at L1 slot `l1`.
    pub const fn l2(l1: u32, slot: u32) -> Dest {
        Dest { cnode: CapRef::l2_cnode(l1), slot }
    }

    /// The slot a two-level `CapRef` names, as a destination.
    pub const fn at(slot: CapRef) -> Dest {
        Dest::l2(slot.l1_index(), slot.l2_index())
    }

    pub const fn to_raw(self) -> u64 {
        self.cnode.to_raw() | (self.slot as u64) << 40
    }

    /// Unpacks a register; `None` if the CNode reference or the slot is
    /// malformed.
    pub const fn from_raw(raw: u64) -> Option<Dest> {
        match CapRef::from_raw(raw & ((1 << 40) - 1)) {
            Some(cnode) => Some(Dest { cnode, slot: (raw >> 40) as u32 }),
            None => None,
        }
    }
}

numbered_enum! {
    /// Invocation commands (`x2`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Command: u64 {
        /// x1 = type | rights << 8, x2 = base... returned as: value = base; the
        /// full identity is written by `IdentifyInto` (CPU driver II).
        Identify = 0,
        /// args: dest (`Dest`), new type, offset, object size, count.
        Retype = 1,
        /// args: dest (`Dest`).
        Copy = 2,
        /// args: dest (`Dest`), rights, endpoint buffer offset, endpoint buffer size.
        Mint = 3,
        /// Deletes this copy.
        Delete = 4,
        /// Deletes every copy and descendant; may need repeating (returns
        /// `Retry` while work remains).
        Revoke = 5,
        /// On the Kernel capability only: checks the kernel's capability
        /// invariants (database order and balance, no unrelated overlap of typed
        /// memory); `x1` = number of capabilities. For tests.
        DebugCheck = 6,
        /// On a VNode: map a capability into it. args: the capability
        /// (`CapRef::to_raw`), `entry | count << 16 | rights << 32` (rights as
        /// in `Rights`), offset into the capability, dest (`Dest`) for the
        /// mapping capability. Deleting that mapping capability unmaps. An
        /// executable mapping is made coherent with the instruction cache,
        /// and one over `vspace::IMAGE_MAX` bytes is refused (`TooLong`).
        Map = 7,
        /// On a mapping capability: args: new rights (no more than it has).
        ModifyFlags = 8,
        /// On (a copy of) the caller's CSpace root: move every slot into the
        /// empty, larger L1 CNode named by the argument, which becomes the root.
        Resize = 9,
        /// On a RAM capability: does anything but this capability and
        /// `except` reach `[offset, offset + size)` of its memory: a
        /// descendant that types memory there, or another copy of this
        /// capability? args: except (`CapRef::to_raw`; 0: none), offset,
        /// size. `x1` = 1 if so, else 0. Changes nothing. A memory manager
        /// asks before deleting a capability handed back to it: if nothing
        /// else reaches the memory, it is free once that one is gone. Other
        /// copies of the invoked capability count, so a manager keeps one
        /// copy of each RAM capability it hands memory out of.
        RetypeCheck = 10,
        /// On a dispatcher not yet set up: args: CSpace root (an L1 CNode,
        /// `CapRef::to_raw`), VSpace root (an L0 VNode), dispatcher frame
        /// (a writable Frame holding a `DispatcherShared`), the frame's user
        /// address. The dispatcher keeps copies of the three.
        Setup = 11,
        /// On a dispatcher set up: joins the run queue. The first time it
        /// starts from the frame's `disabled_save`, with `disabled` set.
        MakeRunnable = 12,
        /// On a dispatcher: leaves the run queue (book ch. 4.20). It keeps
        /// its state; `MakeRunnable` continues it.
        Stop = 13,
        /// On a dispatcher: `x1` = its state (`DispatcherState`), `x2` = its
        /// frame's user address.
        Properties = 14,
        /// On a dispatcher: args: a slot (`CapRef::to_raw`) in its CSpace
        /// where the next capability sent to it goes; 0 clears it.
        SetRecvSlot = 15,
        /// On an LMP endpoint: send a message (see `kpi::lmp`).
        LmpSend = 16,
        /// On the IRQ table: route interrupt `intid` (a PPI or SPI, not the
        /// kernel's timer) to an LMP endpoint. args: intid, the endpoint
        /// (`CapRef::to_raw`, minted with a buffer), dest (`Dest`) for the
        /// new IrqDest capability. Each interrupt arrives as a one-word
        /// message (its intid) and stays masked until `IrqAck`; deleting
        /// the last IrqDest copy removes the route.
        IrqConnect = 17,
        /// On an IrqDest: the interrupt was handled; unmask it.
        IrqAck = 18,
    }
}

numbered_enum! {
    /// A dispatcher's state, as `Properties` reports it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum DispatcherState: u64 {
        /// Retyped, not yet set up.
        New = 0,
        /// Set up, not running: made so, or stopped.
        Stopped = 1,
        /// In the run queue (or running).
        Runnable = 2,
        /// Sleeping in `Wait` until work arrives.
        Waiting = 3,
        /// Exited or ended by a fault; it never runs again.
        Ended = 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_pack_and_unpack() {
        let r = CapRef::slot(5, 17);
        assert_eq!((r.l1_index(), r.l2_index(), r.level), (5, 17, 2));
        assert_eq!(CapRef::from_raw(r.to_raw()), Some(r));
        let c = CapRef::l2_cnode(9);
        assert_eq!(CapRef::from_raw(c.to_raw()), Some(c));
        assert_eq!(CapRef::from_raw(5), None, "level 0");
        assert_eq!(CapRef::from_raw(3 << 32), None, "level 3");
        assert_eq!(CapRef::from_raw(1 << 45 | 2 << 32), None, "stray bits");
        let d = Dest::l2(3, 255);
        assert_eq!(Dest::from_raw(d.to_raw()), Some(d));
        assert_eq!(Dest::at(CapRef::slot(3, 255)), d, "a slot as a destination");
        let root = Dest { cnode: CapRef::slot(0, 2), slot: 300 };
        assert_eq!(Dest::from_raw(root.to_raw()), Some(root));
        assert_eq!(Dest::from_raw(7 << 32), None, "bad level");
        for c in Command::ALL {
            assert_eq!(Command::from_raw(c as u64), Some(c));
        }
        assert_eq!(Command::from_raw(99), None);
    }
}
