//! ARM PrimeCell UART (PL011), ARM DDI 0183: the console of QEMU `virt`.

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields! [u32,
    /// Data register: write to transmit, read to take the oldest received byte.
    pub DR [
        DATA OFFSET(0) NUMBITS(8) [],
        FE OFFSET(8) NUMBITS(1) [],
        PE OFFSET(9) NUMBITS(1) [],
        BE OFFSET(10) NUMBITS(1) [],
        OE OFFSET(11) NUMBITS(1) []
    ],
    /// Flag register.
    pub FR [
        /// Transmit FIFO empty.
        TXFE OFFSET(7) NUMBITS(1) [],
        /// Receive FIFO full.
        RXFF OFFSET(6) NUMBITS(1) [],
        /// Transmit FIFO full: do not write DR.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty: nothing to read.
        RXFE OFFSET(4) NUMBITS(1) [],
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    /// Line control register.
    pub LCR_H [
        /// Stick parity.
        SPS OFFSET(7) NUMBITS(1) [],
        WLEN OFFSET(5) NUMBITS(2) [
            FiveBit = 0,
            SixBit = 1,
            SevenBit = 2,
            EightBit = 3
        ],
        /// FIFO enable.
        FEN OFFSET(4) NUMBITS(1) [],
        STP2 OFFSET(3) NUMBITS(1) [],
        EPS OFFSET(2) NUMBITS(1) [],
        PEN OFFSET(1) NUMBITS(1) [],
        BRK OFFSET(0) NUMBITS(1) []
    ],
    /// Control register.
    pub CR [
        RXE OFFSET(9) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ],
    /// Interrupt bits, shared by IMSC, RIS, MIS and ICR.
    pub INT [
        OE OFFSET(10) NUMBITS(1) [],
        BE OFFSET(9) NUMBITS(1) [],
        PE OFFSET(8) NUMBITS(1) [],
        FE OFFSET(7) NUMBITS(1) [],
        RT OFFSET(6) NUMBITS(1) [],
        TX OFFSET(5) NUMBITS(1) [],
        RX OFFSET(4) NUMBITS(1) []
    ]
];

register_structs! {
    /// The PL011 register block.
    pub Pl011Regs {
        (0x000 => pub dr: ReadWrite<u32, DR::Register>),
        (0x004 => pub rsr_ecr: ReadWrite<u32>),
        (0x008 => _reserved0),
        (0x018 => pub fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x020 => pub ilpr: ReadWrite<u32>),
        (0x024 => pub ibrd: ReadWrite<u32>),
        (0x028 => pub fbrd: ReadWrite<u32>),
        (0x02c => pub lcr_h: ReadWrite<u32, LCR_H::Register>),
        (0x030 => pub cr: ReadWrite<u32, CR::Register>),
        (0x034 => pub ifls: ReadWrite<u32>),
        (0x038 => pub imsc: ReadWrite<u32, INT::Register>),
        (0x03c => pub ris: ReadOnly<u32, INT::Register>),
        (0x040 => pub mis: ReadOnly<u32, INT::Register>),
        (0x044 => pub icr: WriteOnly<u32, INT::Register>),
        (0x048 => pub dmacr: ReadWrite<u32>),
        (0x04c => @END),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn offsets_match_the_manual() {
        assert_eq!(offset_of!(Pl011Regs, dr), 0x000);
        assert_eq!(offset_of!(Pl011Regs, fr), 0x018);
        assert_eq!(offset_of!(Pl011Regs, ibrd), 0x024);
        assert_eq!(offset_of!(Pl011Regs, lcr_h), 0x02c);
        assert_eq!(offset_of!(Pl011Regs, cr), 0x030);
        assert_eq!(offset_of!(Pl011Regs, imsc), 0x038);
        assert_eq!(offset_of!(Pl011Regs, icr), 0x044);
        assert_eq!(core::mem::size_of::<Pl011Regs>(), 0x04c);
    }
}
