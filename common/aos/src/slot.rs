//! The slot allocator (book ch. 3.10): which capability slots of this
//! domain's L2 CNodes are free. A bitmap per CNode, the CNodes in a fixed
//! table indexed by root slot, and a bitmap of the CNodes with free slots:
//! allocating and freeing take a few bit scans, whatever the number of
//! CNodes, and never need memory themselves.
//!
//! It owns the slots of the CNodes it was given and the root-CNode slots
//! from `ROOTCN_SLOTS_USER` up, where it puts the CNodes it makes. It never
//! asks for RAM: its owner checks [`SlotAllocator::needs_refill`] and hands
//! [`SlotAllocator::refill`] a RAM capability while enough slots remain for
//! getting that capability (ch. 3.14's ordering rule).

use kpi::ErrorCode;
use kpi::cspace::{
    L1_CNODE_MIN_SLOTS, L2_CNODE_BYTES, L2_CNODE_SLOTS, ROOTCN_SLOT_TASKCN, ROOTCN_SLOTS_USER, TASKCN_SLOT_ROOTCN,
};
use kpi::invocation::{CapRef, Dest};
use kpi::objtype::ObjType;

use crate::cap::{self, CNodeRef};

/// Slots of the root CNode the kernel makes (the smallest L1 CNode). The
/// allocator does not resize the root; past this, refills fail.
pub const ROOT_SLOTS: usize = L1_CNODE_MIN_SLOTS;
/// Most CNodes one allocator manages: every slot of the root.
pub const CNODES_MAX: usize = ROOT_SLOTS;
/// Free slots below which the owner should refill: enough for the RAM
/// allocation that feeds the refill and a few more operations.
pub const LOW_WATER: usize = 16;
/// Bytes of RAM a refill needs: one L2 CNode.
pub const REFILL_BYTES: u64 = L2_CNODE_BYTES;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotError {
    /// Every slot is taken and no refill happened.
    Exhausted,
    /// The root CNode has no slot left for another L2 CNode.
    RootFull,
    /// The slot is not one this allocator hands out, or is already free.
    NotAllocated,
    /// The kernel refused making a CNode.
    Kernel(ErrorCode),
}

impl core::fmt::Display for SlotError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SlotError::Exhausted => f.write_str("no free capability slot"),
            SlotError::RootFull => f.write_str("the root CNode has no slot for another L2 CNode"),
            SlotError::NotAllocated => f.write_str("freeing a slot this allocator did not hand out"),
            SlotError::Kernel(e) => write!(f, "making a CNode: {e}"),
        }
    }
}

#[derive(Clone, Copy)]
struct CNodeSlots {
    l1: u32,
    /// Slots below this were in use before the allocator took the CNode.
    first: u16,
    /// Bit set: slot free.
    free_bits: [u64; L2_CNODE_SLOTS / 64],
    free: u16,
}

pub struct SlotAllocator {
    cnodes: [CNodeSlots; CNODES_MAX],
    count: usize,
    free: usize,
    /// Bit `i` set: `cnodes[i]` has a free slot.
    has_free: [u64; CNODES_MAX / 64],
    /// `cnodes` index + 1 of the CNode at each root slot (0: none).
    by_l1: [u16; ROOT_SLOTS],
    /// The next root slot for a new CNode.
    next_root_slot: u32,
    /// Root slots from here up are someone else's (see `leave_root_slots`).
    root_end: u32,
    refills: u64,
}

const EMPTY: CNodeSlots = CNodeSlots { l1: 0, first: 0, free_bits: [0; 4], free: 0 };

impl SlotAllocator {
    pub const fn new() -> Self {
        SlotAllocator {
            cnodes: [EMPTY; CNODES_MAX],
            count: 0,
            free: 0,
            has_free: [0; CNODES_MAX / 64],
            by_l1: [0; ROOT_SLOTS],
            next_root_slot: ROOTCN_SLOTS_USER as u32,
            root_end: ROOT_SLOTS as u32,
            refills: 0,
        }
    }

    /// Manages the slots from `first` up of an existing L2 CNode.
    pub fn add_cnode(&mut self, cnode: CNodeRef, first: usize) -> Result<(), SlotError> {
        let l1 = cnode.l1 as usize;
        if self.count == CNODES_MAX || l1 >= ROOT_SLOTS || self.by_l1[l1] != 0 {
            return Err(SlotError::RootFull);
        }
        let first = first.min(L2_CNODE_SLOTS);
        let mut c = CNodeSlots { l1: cnode.l1, first: first as u16, ..EMPTY };
        for s in first..L2_CNODE_SLOTS {
            c.free_bits[s / 64] |= 1 << (s % 64);
        }
        c.free = (L2_CNODE_SLOTS - first) as u16;
        self.free += c.free as usize;
        self.cnodes[self.count] = c;
        if c.free > 0 {
            self.has_free[self.count / 64] |= 1 << (self.count % 64);
        }
        self.by_l1[l1] = self.count as u16 + 1;
        self.count += 1;
        Ok(())
    }

    pub fn free_count(&self) -> usize {
        self.free
    }

    /// CNodes made by [`SlotAllocator::refill`] so far.
    pub fn refills(&self) -> u64 {
        self.refills
    }

    pub fn needs_refill(&self) -> bool {
        self.free < LOW_WATER
    }

    pub fn alloc(&mut self) -> Result<CapRef, SlotError> {
        if self.free == 0 {
            return Err(SlotError::Exhausted);
        }
        let (w, word) = self.has_free.iter().enumerate().find(|(_, w)| **w != 0).expect("free count matches bits");
        let i = w * 64 + word.trailing_zeros() as usize;
        let c = &mut self.cnodes[i];
        let (sw, sword) = c.free_bits.iter().enumerate().find(|(_, w)| **w != 0).expect("free count matches bits");
        let bit = sword.trailing_zeros() as usize;
        c.free_bits[sw] &= !(1 << bit);
        c.free -= 1;
        if c.free == 0 {
            self.has_free[i / 64] &= !(1 << (i % 64));
        }
        self.free -= 1;
        Ok(CapRef::slot(c.l1, (sw * 64 + bit) as u8))
    }

    /// Returns an empty slot.
    pub fn free(&mut self, slot: CapRef) -> Result<(), SlotError> {
        let (l1, s) = (slot.l1_index(), slot.l2_index() as usize);
        let Some(i) = (slot.level == 2 && (l1 as usize) < ROOT_SLOTS)
            .then(|| (self.by_l1[l1 as usize] as usize).checked_sub(1))
            .flatten()
        else {
            return Err(SlotError::NotAllocated);
        };
        let c = &mut self.cnodes[i];
        if s < c.first as usize || c.free_bits[s / 64] & (1 << (s % 64)) != 0 {
            return Err(SlotError::NotAllocated);
        }
        c.free_bits[s / 64] |= 1 << (s % 64);
        c.free += 1;
        self.has_free[i / 64] |= 1 << (i % 64);
        self.free += 1;
        Ok(())
    }

    /// Leaves the root slots from `from` up to another user (spawn puts
    /// its children's CNodes there to reach their slots); refills stop
    /// below them. Refused if a refill has taken one already.
    pub fn leave_root_slots(&mut self, from: u32) -> Result<(), SlotError> {
        if from < self.next_root_slot || from > self.root_end {
            return Err(SlotError::RootFull);
        }
        self.root_end = from;
        Ok(())
    }

    /// Makes a new L2 CNode from `ram` (at least [`REFILL_BYTES`]) in the
    /// next free root slot and adds its slots. `ram` stays allocated as the
    /// CNode's parent.
    pub fn refill(&mut self, ram: CapRef) -> Result<(), SlotError> {
        if self.count == CNODES_MAX || self.next_root_slot >= self.root_end {
            return Err(SlotError::RootFull);
        }
        let root = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_ROOTCN as u8);
        let l1 = self.next_root_slot;
        cap::retype(ram, Dest { cnode: root, slot: l1 }, ObjType::L2CNode, 0, 0, 1).map_err(SlotError::Kernel)?;
        self.next_root_slot += 1;
        self.add_cnode(CNodeRef { l1 }, 0)?;
        self.refills += 1;
        Ok(())
    }
}

impl Default for SlotAllocator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::HashSet;
    use std::vec::Vec;

    #[test]
    fn hands_out_each_slot_once_and_reuses_freed_ones() {
        let mut a = SlotAllocator::new();
        a.add_cnode(CNodeRef { l1: 5 }, 10).unwrap();
        a.add_cnode(CNodeRef { l1: 6 }, 0).unwrap();
        assert_eq!(a.free_count(), 246 + 256);
        let mut seen = HashSet::new();
        for _ in 0..502 {
            let s = a.alloc().unwrap();
            assert!(s.l1_index() == 6 || s.l2_index() >= 10, "{s:?} was in use before");
            assert!(seen.insert(s), "{s:?} handed out twice");
        }
        assert_eq!(a.alloc(), Err(SlotError::Exhausted));
        assert!(a.needs_refill());
        let some = CapRef::slot(5, 77);
        a.free(some).unwrap();
        assert_eq!(a.free(some), Err(SlotError::NotAllocated), "double free");
        assert_eq!(a.alloc(), Ok(some));
    }

    #[test]
    fn a_slot_freed_in_a_full_cnode_is_found_among_many() {
        let mut a = SlotAllocator::new();
        for l1 in 10..60 {
            a.add_cnode(CNodeRef { l1 }, 0).unwrap();
        }
        let all: Vec<CapRef> = (0..50 * 256).map(|_| a.alloc().unwrap()).collect();
        assert_eq!(a.alloc(), Err(SlotError::Exhausted));
        let back = CapRef::slot(37, 200);
        assert!(all.contains(&back));
        a.free(back).unwrap();
        assert_eq!(a.alloc(), Ok(back), "the only free slot, in the 28th CNode");
        assert_eq!(a.add_cnode(CNodeRef { l1: ROOT_SLOTS as u32 }, 0), Err(SlotError::RootFull), "no such root slot");
        assert_eq!(a.free(CapRef::slot(ROOT_SLOTS as u32, 0)), Err(SlotError::NotAllocated));
    }

    #[test]
    fn refuses_foreign_slots() {
        let mut a = SlotAllocator::new();
        a.add_cnode(CNodeRef { l1: 5 }, 10).unwrap();
        assert_eq!(a.free(CapRef::slot(9, 1)), Err(SlotError::NotAllocated), "another CNode");
        assert_eq!(a.free(CapRef::slot(5, 3)), Err(SlotError::NotAllocated), "below the first free slot: never ours");
        assert_eq!(a.free(CapRef::l2_cnode(5)), Err(SlotError::NotAllocated), "a CNode, not a slot");
        assert_eq!(a.add_cnode(CNodeRef { l1: 5 }, 0), Err(SlotError::RootFull), "added twice");
    }

    #[test]
    fn root_slots_left_to_others_are_never_refilled() {
        let mut a = SlotAllocator::new();
        let user = ROOTCN_SLOTS_USER as u32;
        assert_eq!(a.leave_root_slots(user - 1), Err(SlotError::RootFull), "below the allocator's next slot");
        a.leave_root_slots(user + 1).unwrap();
        assert_eq!(a.leave_root_slots(user + 2), Err(SlotError::RootFull), "slots already left cannot come back");
        a.leave_root_slots(user).unwrap();
        // The refill is refused before it would ask the kernel.
        assert_eq!(a.refill(CapRef::slot(3, 0)), Err(SlotError::RootFull));
    }
}
