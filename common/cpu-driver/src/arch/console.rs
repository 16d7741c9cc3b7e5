//! The kernel console and the `log` backend. One console per core would
//! interleave output; the lock keeps each message whole. Interrupts are off
//! in the kernel, so the lock never waits on its own holder.

use core::fmt::Write;

use platform::BOARD;
use platform::console::Console;
use spin::Mutex;

use cpu_driver::KERNEL_BASE;

static CONSOLE: Mutex<Option<Console>> = Mutex::new(None);

/// Brings the console up at its direct-map address.
pub fn init() {
    // SAFETY: the early and final tables map the board's devices at
    // KERNEL_BASE + pa as device memory; this is the only console.
    let c = unsafe { Console::new(BOARD.console.kind, (KERNEL_BASE + BOARD.console.regs.base) as usize) };
    c.init();
    *CONSOLE.lock() = Some(c);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Writes formatted text.
pub fn print(args: core::fmt::Arguments<'_>) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        let _ = c.write_fmt(args);
    }
}

/// Writes raw bytes (user output), `\n` as CR LF.
pub fn write_bytes(bytes: &[u8]) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        for &b in bytes {
            if b == b'\n' {
                c.putc(b'\r');
            }
            c.putc(b);
        }
    }
}

/// Prints even if the lock is held (panics and faults in the kernel).
pub fn emergency(args: core::fmt::Arguments<'_>) {
    // SAFETY: as in `init`; used only on the way to power-off, where a
    // second writer interleaving output is the lesser evil.
    let mut c = unsafe { Console::new(BOARD.console.kind, (KERNEL_BASE + BOARD.console.regs.base) as usize) };
    let _ = c.write_fmt(args);
}

#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => { $crate::arch::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let core = super::core::id();
        match record.level() {
            log::Level::Info => print(format_args!("kernel {core}: {}\n", record.args())),
            level => print(format_args!("kernel {core}: {level}: {}\n", record.args())),
        }
    }
    fn flush(&self) {}
}
