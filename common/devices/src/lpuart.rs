//! NXP Low-Power UART (i.MX 8X RM ch. 16.13), the console of the course's
//! Toradex Colibri i.MX 8X board (LPUART3).

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields! [u32,
    /// Status register.
    pub STAT [
        /// Transmit data register empty: DATA may be written.
        TDRE OFFSET(23) NUMBITS(1) [],
        /// Transmission complete.
        TC OFFSET(22) NUMBITS(1) [],
        /// Receive data register full: DATA holds a byte.
        RDRF OFFSET(21) NUMBITS(1) [],
        IDLE OFFSET(20) NUMBITS(1) [],
        /// Receiver overrun (write 1 to clear).
        OR OFFSET(19) NUMBITS(1) []
    ],
    /// Control register.
    pub CTRL [
        TE OFFSET(19) NUMBITS(1) [],
        RE OFFSET(18) NUMBITS(1) []
    ],
    /// Data register.
    pub DATA [
        /// The receive buffer is empty.
        RXEMPT OFFSET(12) NUMBITS(1) [],
        DATA OFFSET(0) NUMBITS(8) []
    ]
];

register_structs! {
    /// The LPUART register block.
    pub LpuartRegs {
        (0x00 => pub verid: ReadOnly<u32>),
        (0x04 => pub param: ReadOnly<u32>),
        (0x08 => pub global: ReadWrite<u32>),
        (0x0c => pub pincfg: ReadWrite<u32>),
        (0x10 => pub baud: ReadWrite<u32>),
        (0x14 => pub stat: ReadWrite<u32, STAT::Register>),
        (0x18 => pub ctrl: ReadWrite<u32, CTRL::Register>),
        (0x1c => pub data: ReadWrite<u32, DATA::Register>),
        (0x20 => pub match_: ReadWrite<u32>),
        (0x24 => pub modir: ReadWrite<u32>),
        (0x28 => pub fifo: ReadWrite<u32>),
        (0x2c => pub water: ReadWrite<u32>),
        (0x30 => @END),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn offsets_match_the_manual() {
        // Book ch. 2.11: STAT at base + 0x14, DATA at base + 0x1c.
        assert_eq!(offset_of!(LpuartRegs, stat), 0x14);
        assert_eq!(offset_of!(LpuartRegs, data), 0x1c);
        assert_eq!(offset_of!(LpuartRegs, ctrl), 0x18);
        assert_eq!(STAT::TDRE.mask << STAT::TDRE.shift, 1 << 23);
    }
}
