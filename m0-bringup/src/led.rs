//! The user LED (book ch. 2.13): one GPIO pin set as an output, driven high
//! for on. State is read back from the GPIO block, not remembered, so what
//! the shell reports is what the pin does.

use devices::imx_gpio::ImxGpioRegs;
use devices::pl061::Pl061Regs;
use tock_registers::interfaces::{Readable, Writeable};

/// An LED on a GPIO pin.
// No `Debug`: formatting would read registers, and reading URXD pops a byte.
pub enum Led<'a> {
    Pl061 { regs: &'a Pl061Regs, pin: u32 },
    Imx { regs: &'a ImxGpioRegs, pin: u32 },
}

impl Led<'_> {
    fn mask(&self) -> u32 {
        match self {
            Led::Pl061 { pin, .. } | Led::Imx { pin, .. } => 1 << pin,
        }
    }

    /// Makes the pin an output, leaving the other pins alone.
    pub fn init(&self) {
        let m = self.mask();
        match self {
            Led::Pl061 { regs, .. } => regs.dir.set(regs.dir.get() | m),
            Led::Imx { regs, .. } => regs.gdir.set(regs.gdir.get() | m),
        }
    }

    pub fn set(&self, on: bool) {
        let m = self.mask();
        match self {
            // The address mask selects only our pin: no read-modify-write.
            Led::Pl061 { regs, .. } => regs.data[m as usize].set(if on { m } else { 0 }),
            Led::Imx { regs, .. } => {
                let dr = regs.dr.get();
                regs.dr.set(if on { dr | m } else { dr & !m });
            }
        }
    }

    pub fn is_on(&self) -> bool {
        let m = self.mask();
        match self {
            Led::Pl061 { regs, .. } => regs.data[m as usize].get() & m != 0,
            Led::Imx { regs, .. } => regs.dr.get() & m != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;
    use devices::fake::FakeDevice;

    #[test]
    fn imx_led_touches_only_its_pin() {
        let dev = FakeDevice::<ImxGpioRegs>::new();
        let dr = offset_of!(ImxGpioRegs, dr);
        dev.poke(dr, 0x8000_0001);
        let led = Led::Imx { regs: dev.regs(), pin: 23 };
        led.init();
        assert_eq!(dev.peek(offset_of!(ImxGpioRegs, gdir)), 1 << 23);
        led.set(true);
        assert!(led.is_on());
        assert_eq!(dev.peek(dr), 0x8000_0001 | 1 << 23);
        led.set(false);
        assert!(!led.is_on());
        assert_eq!(dev.peek(dr), 0x8000_0001);
    }

    #[test]
    fn pl061_led_writes_through_the_address_mask() {
        let dev = FakeDevice::<Pl061Regs>::new();
        let led = Led::Pl061 { regs: dev.regs(), pin: 2 };
        led.init();
        assert_eq!(dev.peek(offset_of!(Pl061Regs, dir)), 1 << 2);
        led.set(true);
        // The write lands in the data word whose address bits [9:2] are the mask.
        assert_eq!(dev.peek((1 << 2) << 2), 1 << 2);
        assert!(led.is_on());
        led.set(false);
        assert!(!led.is_on());
    }
}
