//! NXP i.MX UART (i.MX 8M Plus RM ch. 16.2), the console of the i.MX 8M Plus
//! EVK. Registers are 32 bits wide; only the low 16 bits carry meaning.

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields! [u32,
    /// Receiver register.
    pub URXD [
        /// The byte in RX_DATA is valid.
        CHARRDY OFFSET(15) NUMBITS(1) [],
        ERR OFFSET(14) NUMBITS(1) [],
        RX_DATA OFFSET(0) NUMBITS(8) []
    ],
    /// Transmitter register.
    pub UTXD [
        TX_DATA OFFSET(0) NUMBITS(8) []
    ],
    /// Control register 1.
    pub UCR1 [
        TRDYEN OFFSET(13) NUMBITS(1) [],
        RRDYEN OFFSET(9) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ],
    /// Control register 2.
    pub UCR2 [
        /// Ignore RTS.
        IRTS OFFSET(14) NUMBITS(1) [],
        /// 8-bit words.
        WS OFFSET(5) NUMBITS(1) [],
        TXEN OFFSET(2) NUMBITS(1) [],
        RXEN OFFSET(1) NUMBITS(1) [],
        /// Software reset; reads 1 once the reset has completed.
        SRST OFFSET(0) NUMBITS(1) []
    ],
    /// Status register 1.
    pub USR1 [
        TRDY OFFSET(13) NUMBITS(1) [],
        RRDY OFFSET(9) NUMBITS(1) []
    ],
    /// Status register 2.
    pub USR2 [
        TXFE OFFSET(14) NUMBITS(1) [],
        TXDC OFFSET(3) NUMBITS(1) [],
        ORE OFFSET(1) NUMBITS(1) [],
        /// Receive data ready.
        RDR OFFSET(0) NUMBITS(1) []
    ],
    /// Test register.
    pub UTS [
        TXEMPTY OFFSET(6) NUMBITS(1) [],
        RXEMPTY OFFSET(5) NUMBITS(1) [],
        TXFULL OFFSET(4) NUMBITS(1) [],
        RXFULL OFFSET(3) NUMBITS(1) []
    ]
];

register_structs! {
    /// The i.MX UART register block.
    pub ImxUartRegs {
        (0x00 => pub urxd: ReadOnly<u32, URXD::Register>),
        (0x04 => _reserved0),
        (0x40 => pub utxd: WriteOnly<u32, UTXD::Register>),
        (0x44 => _reserved1),
        (0x80 => pub ucr1: ReadWrite<u32, UCR1::Register>),
        (0x84 => pub ucr2: ReadWrite<u32, UCR2::Register>),
        (0x88 => pub ucr3: ReadWrite<u32>),
        (0x8c => pub ucr4: ReadWrite<u32>),
        (0x90 => pub ufcr: ReadWrite<u32>),
        (0x94 => pub usr1: ReadWrite<u32, USR1::Register>),
        (0x98 => pub usr2: ReadWrite<u32, USR2::Register>),
        (0x9c => pub uesc: ReadWrite<u32>),
        (0xa0 => pub utim: ReadWrite<u32>),
        (0xa4 => pub ubir: ReadWrite<u32>),
        (0xa8 => pub ubmr: ReadWrite<u32>),
        (0xac => pub ubrc: ReadOnly<u32>),
        (0xb0 => pub onems: ReadWrite<u32>),
        (0xb4 => pub uts: ReadWrite<u32, UTS::Register>),
        (0xb8 => pub umcr: ReadWrite<u32>),
        (0xbc => @END),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn offsets_match_the_manual() {
        assert_eq!(offset_of!(ImxUartRegs, urxd), 0x00);
        assert_eq!(offset_of!(ImxUartRegs, utxd), 0x40);
        assert_eq!(offset_of!(ImxUartRegs, ucr1), 0x80);
        assert_eq!(offset_of!(ImxUartRegs, ucr2), 0x84);
        assert_eq!(offset_of!(ImxUartRegs, usr1), 0x94);
        assert_eq!(offset_of!(ImxUartRegs, usr2), 0x98);
        assert_eq!(offset_of!(ImxUartRegs, uts), 0xb4);
    }
}
