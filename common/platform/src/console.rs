//! The kernel's console: polling output (and input) on the board's UART at
//! whatever virtual address the kernel mapped it. Deliberately small: the
//! kernel prints, and from the shell milestone on a user-space driver owns
//! the UART. (M0 has its own drivers, being the exercise that writes them.)

use devices::imx_uart::{ImxUartRegs, UCR1, UCR2, USR1, USR2};
use devices::lpuart::{CTRL, LpuartRegs, STAT};
use devices::pl011::{CR, FR, Pl011Regs};
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};

use crate::UartKind;

/// The console UART at a virtual address.
pub struct Console {
    kind: UartKind,
    base: usize,
}

impl Console {
    /// # Safety
    /// `base` must map the console registers of `kind` (device memory) for
    /// as long as the console is used, and only one `Console` may use them.
    pub const unsafe fn new(kind: UartKind, base: usize) -> Self {
        Console { kind, base }
    }

    fn pl011(&self) -> &Pl011Regs {
        // SAFETY: `new`'s contract: `base` maps this UART's registers.
        unsafe { &*(self.base as *const Pl011Regs) }
    }

    fn imx(&self) -> &ImxUartRegs {
        // SAFETY: as for `pl011`.
        unsafe { &*(self.base as *const ImxUartRegs) }
    }

    fn lpuart(&self) -> &LpuartRegs {
        // SAFETY: as for `pl011`.
        unsafe { &*(self.base as *const LpuartRegs) }
    }

    /// Turns transmitter and receiver on, leaving framing to firmware.
    pub fn init(&self) {
        match self.kind {
            UartKind::Pl011 => self.pl011().cr.modify(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET),
            UartKind::ImxUart => {
                let r = self.imx();
                r.ucr2.modify(UCR2::SRST::SET + UCR2::TXEN::SET + UCR2::RXEN::SET + UCR2::WS::SET + UCR2::IRTS::SET);
                r.ucr1.modify(UCR1::UARTEN::SET);
            }
            UartKind::Lpuart => self.lpuart().ctrl.modify(CTRL::TE::SET + CTRL::RE::SET),
        }
    }

    pub fn putc(&self, b: u8) {
        match self.kind {
            UartKind::Pl011 => {
                while self.pl011().fr.is_set(FR::TXFF) {
                    core::hint::spin_loop();
                }
                self.pl011().dr.set(b.into());
            }
            UartKind::ImxUart => {
                while !self.imx().usr1.is_set(USR1::TRDY) {
                    core::hint::spin_loop();
                }
                self.imx().utxd.set(b.into());
            }
            UartKind::Lpuart => {
                while !self.lpuart().stat.is_set(STAT::TDRE) {
                    core::hint::spin_loop();
                }
                self.lpuart().data.set(b.into());
            }
        }
    }

    /// A received byte, if any.
    pub fn getc(&self) -> Option<u8> {
        match self.kind {
            UartKind::Pl011 => (!self.pl011().fr.is_set(FR::RXFE)).then(|| self.pl011().dr.get() as u8),
            UartKind::ImxUart => self.imx().usr2.is_set(USR2::RDR).then(|| self.imx().urxd.get() as u8),
            UartKind::Lpuart => self.lpuart().stat.is_set(STAT::RDRF).then(|| self.lpuart().data.get() as u8),
        }
    }
}

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.putc(b'\r');
            }
            self.putc(b);
        }
        Ok(())
    }
}
