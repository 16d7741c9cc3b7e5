//! Polling console drivers (book ch. 2.11–2.12): wait until the transmitter
//! has room, write a byte; read a byte if one has arrived. No interrupts, no
//! DMA. One type covers the three UART IPs the boards carry.

use devices::imx_uart::{ImxUartRegs, UCR1, UCR2, URXD, USR1, UTXD};
use devices::lpuart::{CTRL, DATA, LpuartRegs, STAT};
use devices::pl011::{CR, DR, FR, Pl011Regs};
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};

/// A console UART, by IP.
// No `Debug`: formatting would read registers, and reading URXD pops a byte.
pub enum Uart<'a> {
    Pl011(&'a Pl011Regs),
    Imx(&'a ImxUartRegs),
    Lpuart(&'a LpuartRegs),
}

impl Uart<'_> {
    /// Makes sure transmitter and receiver are on. Firmware normally leaves
    /// them configured (U-Boot on the real boards); QEMU's direct kernel boot
    /// does not, so enable them without touching the line settings firmware
    /// chose. In particular the PL011's LCR_H is left alone: changing FEN
    /// flushes the receive FIFO and would lose keys typed during boot.
    pub fn init(&self) {
        match self {
            Uart::Pl011(r) => r.cr.modify(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET),
            Uart::Imx(r) => {
                r.ucr2.modify(UCR2::SRST::SET + UCR2::TXEN::SET + UCR2::RXEN::SET + UCR2::WS::SET + UCR2::IRTS::SET);
                r.ucr1.modify(UCR1::UARTEN::SET);
            }
            Uart::Lpuart(r) => r.ctrl.modify(CTRL::TE::SET + CTRL::RE::SET),
        }
    }

    /// Sends one byte, waiting while the transmitter is full.
    pub fn putc(&self, byte: u8) {
        match self {
            Uart::Pl011(r) => {
                while r.fr.is_set(FR::TXFF) {
                    core::hint::spin_loop();
                }
                r.dr.write(DR::DATA.val(byte.into()));
            }
            Uart::Imx(r) => {
                while !r.usr1.is_set(USR1::TRDY) {
                    core::hint::spin_loop();
                }
                r.utxd.write(UTXD::TX_DATA.val(byte.into()));
            }
            Uart::Lpuart(r) => {
                while !r.stat.is_set(STAT::TDRE) {
                    core::hint::spin_loop();
                }
                r.data.write(DATA::DATA.val(byte.into()));
            }
        }
    }

    /// Takes one received byte, if any. Never waits.
    pub fn getc(&self) -> Option<u8> {
        match self {
            Uart::Pl011(r) => (!r.fr.is_set(FR::RXFE)).then(|| r.dr.read(DR::DATA) as u8),
            Uart::Imx(r) => {
                // Reading URXD pops the byte; CHARRDY says it was real.
                if !r.usr2.is_set(devices::imx_uart::USR2::RDR) {
                    return None;
                }
                let v = r.urxd.extract();
                v.is_set(URXD::CHARRDY).then(|| v.read(URXD::RX_DATA) as u8)
            }
            Uart::Lpuart(r) => {
                if !r.stat.is_set(STAT::RDRF) {
                    return None;
                }
                let v = r.data.extract();
                (!v.is_set(DATA::RXEMPT)).then(|| v.read(DATA::DATA) as u8)
            }
        }
    }

    /// Sends a string, turning `\n` into `\r\n` for terminals.
    pub fn puts(&self, s: &str) {
        for b in s.bytes() {
            if b == b'\n' {
                self.putc(b'\r');
            }
            self.putc(b);
        }
    }
}

impl core::fmt::Write for Uart<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.puts(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The drivers against register blocks in host memory: what they write
    //! is what the manual says a byte on the wire takes.
    use super::*;
    use core::mem::offset_of;
    use devices::fake::FakeDevice;

    #[test]
    fn pl011_sends_and_receives() {
        let dev = FakeDevice::<Pl011Regs>::new();
        let uart = Uart::Pl011(dev.regs());
        uart.init();
        let cr = CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET;
        assert_eq!(dev.peek(offset_of!(Pl011Regs, cr)), cr.value);
        uart.putc(b'Z');
        assert_eq!(dev.peek(offset_of!(Pl011Regs, dr)), u32::from(b'Z'));
        // RXFE clear: the byte in DR is a received one.
        assert_eq!(uart.getc(), Some(b'Z'));
        dev.poke(offset_of!(Pl011Regs, fr), FR::RXFE::SET.value);
        assert_eq!(Uart::Pl011(dev.regs()).getc(), None);
    }

    #[test]
    fn imx_uart_needs_rdr_and_charrdy() {
        let dev = FakeDevice::<ImxUartRegs>::new();
        let uart = Uart::Imx(dev.regs());
        uart.init();
        assert_eq!(dev.peek(offset_of!(ImxUartRegs, ucr1)) & 1, 1, "UARTEN");
        assert_eq!(dev.peek(offset_of!(ImxUartRegs, ucr2)) & 0b110, 0b110, "TXEN and RXEN");
        assert_eq!(uart.getc(), None, "RDR clear: nothing to read");
        dev.poke(offset_of!(ImxUartRegs, usr2), devices::imx_uart::USR2::RDR::SET.value);
        dev.poke(offset_of!(ImxUartRegs, urxd), 0x41);
        assert_eq!(Uart::Imx(dev.regs()).getc(), None, "without CHARRDY the byte is not valid");
        dev.poke(offset_of!(ImxUartRegs, urxd), (1 << 15) | 0x41);
        assert_eq!(Uart::Imx(dev.regs()).getc(), Some(b'A'));
        dev.poke(offset_of!(ImxUartRegs, usr1), USR1::TRDY::SET.value);
        Uart::Imx(dev.regs()).putc(b'x');
        assert_eq!(dev.peek(offset_of!(ImxUartRegs, utxd)), u32::from(b'x'));
    }

    #[test]
    fn lpuart_waits_for_rdrf() {
        let dev = FakeDevice::<LpuartRegs>::new();
        assert_eq!(Uart::Lpuart(dev.regs()).getc(), None);
        dev.poke(offset_of!(LpuartRegs, stat), (STAT::RDRF::SET + STAT::TDRE::SET).value);
        dev.poke(offset_of!(LpuartRegs, data), u32::from(b'q'));
        let uart = Uart::Lpuart(dev.regs());
        assert_eq!(uart.getc(), Some(b'q'));
        uart.putc(b'x');
        assert_eq!(dev.peek(offset_of!(LpuartRegs, data)), u32::from(b'x'));
    }
}
