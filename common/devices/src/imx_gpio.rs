//! NXP i.MX GPIO block (i.MX 8M Plus RM ch. 8.3; i.MX 8X RM "GPIO"): one
//! instance drives 32 pins. Used by the i.MX 8M Plus EVK and the i.MX 8X
//! (Colibri) boards, which carry the same IP.

use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_structs! {
    /// The i.MX GPIO register block.
    pub ImxGpioRegs {
        /// Data: the level driven on output pins.
        (0x00 => pub dr: ReadWrite<u32>),
        /// Direction: 1 = output.
        (0x04 => pub gdir: ReadWrite<u32>),
        /// Pad status: the level seen on each pin.
        (0x08 => pub psr: ReadOnly<u32>),
        (0x0c => pub icr1: ReadWrite<u32>),
        (0x10 => pub icr2: ReadWrite<u32>),
        (0x14 => pub imr: ReadWrite<u32>),
        (0x18 => pub isr: ReadWrite<u32>),
        (0x1c => pub edge_sel: ReadWrite<u32>),
        (0x20 => @END),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn offsets_match_the_manual() {
        assert_eq!(offset_of!(ImxGpioRegs, dr), 0x00);
        assert_eq!(offset_of!(ImxGpioRegs, gdir), 0x04);
        assert_eq!(offset_of!(ImxGpioRegs, psr), 0x08);
        assert_eq!(offset_of!(ImxGpioRegs, edge_sel), 0x1c);
    }
}
