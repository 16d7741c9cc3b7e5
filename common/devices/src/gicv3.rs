//! Arm GICv3 (IHI 0069): distributor and redistributor register frames.
//! The CPU interface is system registers (`ICC_*_EL1`) and lives with the
//! code that executes `mrs`/`msr`.

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields! [u32,
    /// Distributor control. Bit meanings differ with the security view;
    /// these are the non-secure (or single-security, DS=1) ones the kernel
    /// writes: group 1 enabled, affinity routing on.
    pub GICD_CTLR [
        RWP OFFSET(31) NUMBITS(1) [],
        ARE OFFSET(4) NUMBITS(1) [],
        ENABLE_GRP1A OFFSET(1) NUMBITS(1) [],
        ENABLE_GRP1 OFFSET(0) NUMBITS(1) []
    ],
    /// Redistributor wake control.
    pub GICR_WAKER [
        CHILDREN_ASLEEP OFFSET(2) NUMBITS(1) [],
        PROCESSOR_SLEEP OFFSET(1) NUMBITS(1) []
    ]
];

register_structs! {
    /// The distributor.
    pub GicdRegs {
        (0x0000 => pub ctlr: ReadWrite<u32, GICD_CTLR::Register>),
        (0x0004 => pub typer: ReadOnly<u32>),
        (0x0008 => pub iidr: ReadOnly<u32>),
        (0x000c => _reserved0),
        (0x0080 => pub igroupr: [ReadWrite<u32>; 32]),
        (0x0100 => pub isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => pub icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => _reserved1),
        (0x0400 => pub ipriorityr: [ReadWrite<u32>; 255]),
        (0x07fc => _reserved2),
        (0x0c00 => pub icfgr: [ReadWrite<u32>; 64]),
        (0x0d00 => _reserved3),
        /// GICD_IROUTER<n>, from SPI 32 on: the core an SPI goes to.
        (0x6100 => pub irouter: [ReadWrite<u64>; 988]),
        (0x7fe0 => @END),
    }
}

register_structs! {
    /// A redistributor's control frame (RD_base).
    pub GicrRdRegs {
        (0x0000 => pub ctlr: ReadWrite<u32>),
        (0x0004 => pub iidr: ReadOnly<u32>),
        (0x0008 => pub typer: ReadOnly<u64>),
        (0x0010 => pub statusr: ReadWrite<u32>),
        (0x0014 => pub waker: ReadWrite<u32, GICR_WAKER::Register>),
        (0x0018 => @END),
    }
}

register_structs! {
    /// A redistributor's SGI/PPI frame (RD_base + 64 KiB).
    pub GicrSgiRegs {
        (0x0000 => _reserved0),
        (0x0080 => pub igroupr0: ReadWrite<u32>),
        (0x0084 => _reserved1),
        (0x0100 => pub isenabler0: ReadWrite<u32>),
        (0x0104 => _reserved2),
        (0x0180 => pub icenabler0: WriteOnly<u32>),
        (0x0184 => _reserved3),
        (0x0400 => pub ipriorityr: [ReadWrite<u32>; 8]),
        (0x0420 => _reserved4),
        (0x0c00 => pub icfgr0: ReadWrite<u32>),
        (0x0c04 => pub icfgr1: ReadWrite<u32>),
        (0x0c08 => @END),
    }
}

/// Bytes between one core's redistributor and the next (RD + SGI frames).
pub const GICR_STRIDE: u64 = 0x2_0000;
/// Offset of the SGI/PPI frame within a redistributor.
pub const GICR_SGI_OFFSET: u64 = 0x1_0000;
/// GICR_TYPER.Last: this is the last redistributor.
pub const GICR_TYPER_LAST: u64 = 1 << 4;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn offsets_match_the_specification() {
        assert_eq!(offset_of!(GicdRegs, igroupr), 0x80);
        assert_eq!(offset_of!(GicdRegs, isenabler), 0x100);
        assert_eq!(offset_of!(GicdRegs, irouter), 0x6100);
        assert_eq!(offset_of!(GicdRegs, ipriorityr), 0x400);
        assert_eq!(offset_of!(GicdRegs, icfgr), 0xc00);
        assert_eq!(offset_of!(GicrRdRegs, typer), 0x08);
        assert_eq!(offset_of!(GicrRdRegs, waker), 0x14);
        assert_eq!(offset_of!(GicrSgiRegs, igroupr0), 0x80);
        assert_eq!(offset_of!(GicrSgiRegs, isenabler0), 0x100);
        assert_eq!(offset_of!(GicrSgiRegs, ipriorityr), 0x400);
        assert_eq!(offset_of!(GicrSgiRegs, icfgr1), 0xc04);
    }
}
