//! The user runtime (Barrelfish's `libaos`, start): what every domain links.
//!
//! It owns the entry point (`_start`: the kernel passes the arguments page
//! in `x0`), the syscall stubs, console printing, access to arguments and
//! bootinfo, and the panic handler, which reports and ends the domain. A
//! program is a `fn(&Args) -> i32` named with [`main!`]; the value it
//! returns is its exit status.
//!
//! On the host the crate compiles (so programs build and lint there) but
//! every syscall answers `InvalidSyscall`: there is no kernel to ask.

#![no_std]

pub mod args;
pub mod cap;
pub mod dispatcher;
pub mod io;
pub mod irq;
pub mod lmp;
pub mod ram;
pub mod slab;
pub mod slot;
pub mod syscall;
pub mod thread;
pub mod time;
pub mod waitset;

pub use args::Args;
pub use kpi;

/// Declares the program's entry function: `aos::main!(run);` with
/// `fn run(args: &aos::Args) -> i32`.
#[macro_export]
macro_rules! main {
    ($f:path) => {
        #[cfg(target_os = "none")]
        #[unsafe(no_mangle)]
        fn aos_main(args: &$crate::Args) -> i32 {
            $f(args)
        }

        #[cfg(not(target_os = "none"))]
        fn main() {
            let _: fn(&$crate::Args) -> i32 = $f;
            eprintln!("this program runs on AOS: boot it with `cargo xtask run`");
            std::process::exit(2);
        }
    };
}

#[cfg(target_os = "none")]
mod rt {
    use core::sync::atomic::{AtomicU64, Ordering};

    use kpi::args::ArgsPage;

    use crate::{Args, syscall};

    /// The counter value at the program's first instruction.
    static START_TICKS: AtomicU64 = AtomicU64::new(0);

    core::arch::global_asm!(
        r#"
.section .text._start, "ax"
.global _start
_start:
    mrs     x1, cntpct_el0      /* first instruction: a timestamp for benchmarks */
    bl      aos_rt_start
    brk     #0
"#
    );

    unsafe extern "Rust" {
        fn aos_main(args: &Args) -> i32;
    }

    #[unsafe(no_mangle)]
    extern "C" fn aos_rt_start(page: *const ArgsPage, ticks: u64) -> ! {
        START_TICKS.store(ticks, Ordering::Relaxed);
        // SAFETY: the kernel maps the arguments page read-only at the
        // address it passes in x0 for the domain's lifetime; `Args` checks
        // its contents before use.
        let args = Args::new(unsafe { &*page });
        // Every dispatcher starts disabled (book ch. 4.14). The runtime has
        // no upcall entry yet, so the kernel resumes it in place either way;
        // enabled is the state its thread calls expect outside themselves.
        crate::dispatcher::enable();
        // SAFETY: `aos_main` is defined by the program through `aos::main!`.
        let status = unsafe { aos_main(&args) };
        syscall::exit(status)
    }

    /// Counter ticks at the first instruction of this program.
    pub fn start_ticks() -> u64 {
        START_TICKS.load(Ordering::Relaxed)
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        crate::println!("panic: {info}");
        syscall::exit(101)
    }
}

/// Counter ticks at this program's first instruction (0 on the host).
pub fn start_ticks() -> u64 {
    #[cfg(target_os = "none")]
    return rt::start_ticks();
    #[cfg(not(target_os = "none"))]
    0
}
