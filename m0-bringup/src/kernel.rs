//! Target-only half of M0: entry, vectors, hardware access.

mod boot;

use core::fmt::Write;
use core::sync::atomic::{AtomicU8, Ordering};

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0, Readable};
use m0_bringup::led::Led;
use m0_bringup::shell::{self, Hal, Power, PowerFailure};
use m0_bringup::uart::Uart;
use platform::psci::{self, Conduit, NoPsci, PsciError};
use platform::{BOARD, GpioKind, UartKind};

/// The conduit found at boot, for the panic path (0 = none, 1 = hvc,
/// 2 = smc). Plain loads and stores only: with the MMU off all memory is
/// Device memory, where exclusive (read-modify-write) accesses may fault.
static CONDUIT: AtomicU8 = AtomicU8::new(0);

fn console() -> Uart<'static> {
    let base = BOARD.console.regs.base as usize;
    // SAFETY: the MMU is off, so the board's physical register address is
    // where the UART answers; the block is only ever accessed through
    // volatile cells, and M0 runs on one core with interrupts masked.
    unsafe {
        match BOARD.console.kind {
            UartKind::Pl011 => Uart::Pl011(&*(base as *const _)),
            UartKind::ImxUart => Uart::Imx(&*(base as *const _)),
            UartKind::Lpuart => Uart::Lpuart(&*(base as *const _)),
        }
    }
}

fn led() -> Led<'static> {
    let base = BOARD.led.regs.base as usize;
    let pin = BOARD.led.pin;
    // SAFETY: as for `console`: the board's GPIO block at its physical
    // address, accessed through volatile cells from one core.
    unsafe {
        match BOARD.led.kind {
            GpioKind::Pl061 => Led::Pl061 { regs: &*(base as *const _), pin },
            GpioKind::ImxGpio => Led::Imx { regs: &*(base as *const _), pin },
        }
    }
}

/// Calls PSCI with the SMC calling convention; returns x0.
fn psci_call(conduit: Conduit, function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = u64::from(function);
    // SAFETY: a PSCI call with the SMCCC register convention: arguments in
    // x0-x3, result in x0, x1-x17 may be clobbered by the firmware. It
    // touches no memory of ours. `use_smc` picks the instruction.
    unsafe {
        core::arch::asm!(
            "cbz {use_smc}, 1f",
            "smc #0",
            "b 2f",
            "1: hvc #0",
            "2:",
            use_smc = in(reg) u64::from(conduit == Conduit::Smc),
            inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
            out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
            out("x15") _, out("x16") _, out("x17") _,
            options(nostack)
        );
    }
    x0 as i64
}

fn stored_conduit() -> Option<Conduit> {
    match CONDUIT.load(Ordering::Relaxed) {
        1 => Some(Conduit::Hvc),
        2 => Some(Conduit::Smc),
        _ => None,
    }
}

/// The board as the shell sees it.
struct Board {
    uart: Uart<'static>,
    led: Led<'static>,
    psci: Result<Conduit, NoPsci>,
}

impl Write for Board {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.uart.puts(s);
        Ok(())
    }
}

impl Hal for Board {
    fn board(&self) -> &'static str {
        BOARD.name
    }
    fn poll_key(&mut self) -> Option<u8> {
        self.uart.getc()
    }
    fn set_led(&mut self, on: bool) {
        self.led.set(on);
    }
    fn led_is_on(&self) -> bool {
        self.led.is_on()
    }
    fn ticks(&self) -> u64 {
        CNTPCT_EL0.get()
    }
    fn tick_hz(&self) -> u64 {
        CNTFRQ_EL0.get()
    }
    fn power(&mut self, action: Power) -> PowerFailure {
        let conduit = match self.psci {
            Ok(c) => c,
            Err(why) => return PowerFailure::Unavailable(why),
        };
        let function = match action {
            Power::Off => psci::function::SYSTEM_OFF,
            Power::Reset => psci::function::SYSTEM_RESET,
        };
        PowerFailure::Refused(PsciError::from_code(psci_call(conduit, function, 0, 0, 0)))
    }
}

/// Reads the device tree the boot loader passed in x0 (arm64 boot protocol).
fn device_tree(dtb: usize) -> Option<fdt::Fdt<'static>> {
    if dtb == 0 || !dtb.is_multiple_of(8) {
        return None;
    }
    // SAFETY: a non-null, aligned pointer from the boot protocol; `from_ptr`
    // checks the magic and reads the size from the header before building a
    // slice, and nothing writes the tree while M0 runs.
    unsafe { fdt::Fdt::from_ptr(dtb as *const u8).ok() }
}

/// Rust entry, called by `boot.rs` at EL1 (or EL3, unsupported) with the MMU
/// off, a stack, and zeroed bss.
#[unsafe(no_mangle)]
extern "C" fn m0_main(dtb: usize, entry_el: u64) -> ! {
    let start_ticks = CNTPCT_EL0.get();
    let uart = console();
    uart.init();
    let mut board = Board { uart, led: led(), psci: Err(NoPsci::NoDeviceTree) };
    let tree = device_tree(dtb);
    let _ = writeln!(
        board,
        "\nAOS M0 on {} ({}): entered at EL{}, running at EL{}",
        BOARD.name,
        BOARD.description,
        entry_el,
        current_el()
    );
    if entry_el != 1 && entry_el != 2 {
        let _ = writeln!(board, "error: M0 must be entered at EL2 or EL1; boot it as an arm64 Image. Halting.");
        halt();
    }
    board.psci = match &tree {
        Some(t) => psci::conduit_from_fdt(t),
        None => Err(NoPsci::NoDeviceTree),
    };
    match board.psci {
        Ok(c) => {
            CONDUIT.store(if c == Conduit::Hvc { 1 } else { 2 }, Ordering::Relaxed);
            let (major, minor) = psci::version(psci_call(c, psci::function::PSCI_VERSION, 0, 0, 0) as u32);
            let _ = writeln!(board, "PSCI {major}.{minor} via {} (from the device tree)", c.name());
        }
        Err(why) => {
            let _ = writeln!(board, "warning: shutdown and reboot unavailable: {why}");
        }
    }
    if let Some(mem) = tree.as_ref().and_then(|t| t.find_node("/memory")).and_then(|n| n.reg()) {
        for r in mem {
            let size = r.size.unwrap_or(0);
            let _ = writeln!(
                board,
                "RAM {:#x}..{:#x} ({} MiB)",
                r.starting_address as usize,
                r.starting_address as usize + size,
                size >> 20
            );
        }
    }
    board.led.init();
    board.led.set(false);
    // Counter ticks since reset; under `-icount shift=0` one tick is
    // 1e9 / CNTFRQ guest instructions, which makes these boot-cost figures.
    let shell_ticks = CNTPCT_EL0.get();
    let _ = writeln!(
        board,
        "timer {} Hz; ticks since reset: {start_ticks} at Rust entry, {shell_ticks} at the shell\ntype 'help' for commands",
        board.tick_hz(),
    );
    shell::run(&mut board)
}

fn current_el() -> u64 {
    aarch64_cpu::registers::CurrentEL.read(aarch64_cpu::registers::CurrentEL::EL)
}

/// Waits forever, cheaply.
fn halt() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}

/// Powers off if PSCI is known, so a failed image ends QEMU instead of
/// hanging it; otherwise halts.
fn power_off_or_halt() -> ! {
    if let Some(c) = stored_conduit() {
        psci_call(c, psci::function::SYSTEM_OFF, 0, 0, 0);
    }
    halt()
}

/// Any exception in M0 is a bug: report it and stop.
#[unsafe(no_mangle)]
extern "C" fn m0_exception(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    const KINDS: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];
    const ORIGINS: [&str; 4] = ["EL1 with SP_EL0", "EL1 with SP_EL1", "lower EL (AArch64)", "lower EL (AArch32)"];
    let mut uart = console();
    let _ = writeln!(
        uart,
        "\nm0: unexpected {} exception from {}: ESR {esr:#x} (class {:#x}), ELR {elr:#x}, FAR {far:#x}",
        KINDS[(kind & 3) as usize],
        ORIGINS[((kind >> 2) & 3) as usize],
        esr >> 26
    );
    power_off_or_halt()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut uart = console();
    let _ = writeln!(uart, "\nm0: panic: {info}");
    power_off_or_halt()
}
