//! Well-known CSpace slots (book ch. 4.9): where a new domain finds its own
//! capabilities. The root (L1) CNode holds L2 CNodes at the `ROOTCN_SLOT_*`
//! slots; the task CNode holds the `TASKCN_SLOT_*` capabilities.

/// Bytes of one capability table entry (slot) in a CNode.
pub const CTE_SIZE: u64 = 128;
/// Slots in an L2 CNode.
pub const L2_CNODE_SLOTS: usize = 256;
/// Bytes of an L2 CNode.
pub const L2_CNODE_BYTES: u64 = L2_CNODE_SLOTS as u64 * CTE_SIZE;
/// Least slots of a root (L1) CNode; init's root has this many.
pub const L1_CNODE_MIN_SLOTS: usize = 256;
/// Most slots a root (L1) CNode may have: a retype or resize past it is
/// refused, which keeps the kernel's work on one root CNode bounded.
pub const L1_CNODE_MAX_SLOTS: usize = 4096;

/// Root CNode slots.
pub const ROOTCN_SLOT_TASKCN: usize = 0;
pub const ROOTCN_SLOT_PAGECN: usize = 1;
pub const ROOTCN_SLOT_BASE_PAGE_CN: usize = 2;
pub const ROOTCN_SLOT_SUPERCN: usize = 3;
pub const ROOTCN_SLOT_SEGCN: usize = 4;
pub const ROOTCN_SLOT_SLOT_ALLOC0: usize = 5;
pub const ROOTCN_SLOT_SLOT_ALLOC1: usize = 6;
pub const ROOTCN_SLOT_SLOT_ALLOC2: usize = 7;
pub const ROOTCN_SLOT_MODULECN: usize = 8;
/// First slot free for the domain's own use.
pub const ROOTCN_SLOTS_USER: usize = 9;

/// Task CNode slots.
pub const TASKCN_SLOT_TASKCN: usize = 0;
pub const TASKCN_SLOT_DISPATCHER: usize = 1;
pub const TASKCN_SLOT_ROOTCN: usize = 2;
pub const TASKCN_SLOT_DISPFRAME: usize = 4;
pub const TASKCN_SLOT_IRQ: usize = 5;
pub const TASKCN_SLOT_IO: usize = 6;
pub const TASKCN_SLOT_BOOTINFO: usize = 7;
pub const TASKCN_SLOT_KERNELCAP: usize = 8;
pub const TASKCN_SLOT_TRACEBUF: usize = 9;
pub const TASKCN_SLOT_ARGSPAGE: usize = 10;
pub const TASKCN_SLOT_MON_URPC: usize = 11;
pub const TASKCN_SLOT_SESSIONID: usize = 12;
pub const TASKCN_SLOT_INHERITCN: usize = 13;
pub const TASKCN_SLOT_PROC_MNG: usize = 14;
pub const TASKCN_SLOT_SELFEP: usize = 15;
pub const TASKCN_SLOT_INITEP: usize = 16;
pub const TASKCN_SLOT_DEV: usize = 17;
/// First task-CNode slot free for the domain's own use.
pub const TASKCN_SLOTS_USER: usize = 18;

/// PAGECN slot 0 holds the domain's L0 page table.
pub const PAGECN_SLOT_VROOT: usize = 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_distinct_and_fit() {
        let root = [
            ROOTCN_SLOT_TASKCN,
            ROOTCN_SLOT_PAGECN,
            ROOTCN_SLOT_BASE_PAGE_CN,
            ROOTCN_SLOT_SUPERCN,
            ROOTCN_SLOT_SEGCN,
            ROOTCN_SLOT_SLOT_ALLOC0,
            ROOTCN_SLOT_SLOT_ALLOC1,
            ROOTCN_SLOT_SLOT_ALLOC2,
            ROOTCN_SLOT_MODULECN,
        ];
        let task = [
            TASKCN_SLOT_TASKCN,
            TASKCN_SLOT_DISPATCHER,
            TASKCN_SLOT_ROOTCN,
            TASKCN_SLOT_DISPFRAME,
            TASKCN_SLOT_IRQ,
            TASKCN_SLOT_IO,
            TASKCN_SLOT_BOOTINFO,
            TASKCN_SLOT_KERNELCAP,
            TASKCN_SLOT_TRACEBUF,
            TASKCN_SLOT_ARGSPAGE,
            TASKCN_SLOT_MON_URPC,
            TASKCN_SLOT_SESSIONID,
            TASKCN_SLOT_INHERITCN,
            TASKCN_SLOT_PROC_MNG,
            TASKCN_SLOT_SELFEP,
            TASKCN_SLOT_INITEP,
            TASKCN_SLOT_DEV,
        ];
        for set in [&root[..], &task[..]] {
            for (i, a) in set.iter().enumerate() {
                assert!(*a < L2_CNODE_SLOTS);
                assert!(set[i + 1..].iter().all(|b| a != b), "slot {a} used twice");
            }
        }
        assert!(root.iter().all(|s| *s < ROOTCN_SLOTS_USER));
        assert!(task.iter().all(|s| *s < TASKCN_SLOTS_USER));
    }
}
