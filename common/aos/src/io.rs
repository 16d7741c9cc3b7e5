//! Console output: `print!`/`println!` buffer a line and hand it to the
//! kernel in as few `Print` calls as fit, or, once a terminal service is
//! installed ([`set_output`], M3 on), to that.

use core::fmt::{self, Write};

use kpi::syscall::PRINT_MAX;

use crate::syscall;

/// Where output goes instead of the kernel: a function that takes bytes
/// and says whether it took them (if not, the kernel prints them).
static OUTPUT: spin::Once<fn(&[u8]) -> bool> = spin::Once::new();

/// Sends this domain's output to `f` from now on (the book's
/// `_libc_terminal_write_func`); false if an output was installed already.
pub fn set_output(f: fn(&[u8]) -> bool) -> bool {
    let mut fresh = false;
    OUTPUT.call_once(|| {
        fresh = true;
        f
    });
    fresh
}

/// Writes bytes through the installed output, or the kernel.
fn write_bytes(b: &[u8]) {
    if OUTPUT.get().is_some_and(|f| f(b)) {
        return;
    }
    for chunk in b.chunks(PRINT_MAX) {
        let _ = syscall::print_raw(chunk.as_ptr() as u64, chunk.len() as u64);
    }
}

/// Writes a string.
pub fn print_str(s: &str) {
    write_bytes(s.as_bytes());
}

/// Collects formatted output and flushes it in large pieces.
pub struct Writer {
    buf: [u8; 256],
    len: usize,
}

impl Writer {
    pub const fn new() -> Self {
        Writer { buf: [0; 256], len: 0 }
    }

    pub fn flush(&mut self) {
        if self.len > 0 {
            write_bytes(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let mut w = Writer::new();
    let _ = w.write_fmt(args);
    w.flush();
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::io::_print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::io::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
