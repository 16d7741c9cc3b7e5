//! Register blocks in ordinary memory, for host tests of drivers: the test
//! plays the device, poking values (status bits, received bytes) that a
//! driver may only read, and peeking at what the driver wrote.
//!
//! A `&T` handed out by [`FakeDevice::regs`] must not be held across a
//! [`FakeDevice::poke`]: take a fresh one after poking, as a driver would
//! re-read a register.

extern crate alloc;

use alloc::vec::Vec;
use core::cell::Cell;
use core::marker::PhantomData;

/// Zeroed memory shaped like the register block `T`.
pub struct FakeDevice<T> {
    words: Vec<Cell<u32>>,
    _block: PhantomData<T>,
}

impl<T> Default for FakeDevice<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> FakeDevice<T> {
    pub fn new() -> Self {
        assert!(core::mem::size_of::<T>().is_multiple_of(4) && core::mem::align_of::<T>() <= 4, "blocks are u32 cells");
        let words = (0..core::mem::size_of::<T>() / 4).map(|_| Cell::new(0)).collect();
        FakeDevice { words, _block: PhantomData }
    }

    /// The block as a driver sees it.
    pub fn regs(&self) -> &T {
        // SAFETY: the vector holds exactly size_of::<T>() bytes of u32 cells,
        // aligned for u32, which is all a register block of 32-bit registers
        // needs; every bit pattern is a valid register value.
        unsafe { &*(self.words.as_ptr() as *const T) }
    }

    /// Sets the word at a byte offset, as the device would.
    pub fn poke(&self, offset: usize, value: u32) {
        self.words[offset / 4].set(value);
    }

    /// Reads the word at a byte offset, as the device would.
    pub fn peek(&self, offset: usize) -> u32 {
        self.words[offset / 4].get()
    }
}
