//! ARM PrimeCell GPIO (PL061), ARM DDI 0190: the GPIO block of QEMU `virt`.
//!
//! The data register is address-masked: bits [9:2] of the offset select the
//! pins a read or write touches, so `data[mask]` with `mask = 1 << pin`
//! changes exactly one pin and `data[0xff]` reads all eight.

use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_structs! {
    /// The PL061 register block.
    pub Pl061Regs {
        /// Masked data: entry `m` reads and writes the pins set in `m`.
        (0x000 => pub data: [ReadWrite<u32>; 256]),
        /// Direction: 1 = output.
        (0x400 => pub dir: ReadWrite<u32>),
        (0x404 => pub is: ReadWrite<u32>),
        (0x408 => pub ibe: ReadWrite<u32>),
        (0x40c => pub iev: ReadWrite<u32>),
        (0x410 => pub ie: ReadWrite<u32>),
        (0x414 => pub ris: ReadOnly<u32>),
        (0x418 => pub mis: ReadOnly<u32>),
        (0x41c => pub ic: WriteOnly<u32>),
        (0x420 => pub afsel: ReadWrite<u32>),
        (0x424 => @END),
    }
}

/// Offset of the data-register word that reads every pin at once.
pub const DATA_ALL_OFFSET: usize = 0x3fc;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn offsets_match_the_manual() {
        assert_eq!(offset_of!(Pl061Regs, data), 0x000);
        assert_eq!(offset_of!(Pl061Regs, dir), 0x400);
        assert_eq!(offset_of!(Pl061Regs, ie), 0x410);
        assert_eq!(offset_of!(Pl061Regs, afsel), 0x420);
        assert_eq!(DATA_ALL_OFFSET, 0xff << 2);
    }
}
