//! Console output: `print!`/`println!` buffer a line and hand it to the
//! kernel in as few `Print` calls as fit.

use core::fmt::{self, Write};

use kpi::syscall::PRINT_MAX;

use crate::syscall;

/// Writes a string, split into `PRINT_MAX` pieces.
pub fn print_str(s: &str) {
    for chunk in s.as_bytes().chunks(PRINT_MAX) {
        let _ = syscall::print_raw(chunk.as_ptr() as u64, chunk.len() as u64);
    }
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
            let _ = syscall::print_raw(self.buf.as_ptr() as u64, self.len as u64);
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
