//! Leaving the machine: PSCI SYSTEM_OFF, or semihosting SYS_EXIT when the
//! boot arguments say `semihosting` (the grading runner and `cargo xtask
//! run` enable it), so QEMU's exit status carries the kernel's verdict.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use platform::psci::{self, Conduit};

static SEMIHOSTING: AtomicBool = AtomicBool::new(false);
/// 0 none, 1 hvc, 2 smc.
static CONDUIT: AtomicU8 = AtomicU8::new(0);

pub fn configure(semihosting: bool, conduit: Option<Conduit>) {
    SEMIHOSTING.store(semihosting, Ordering::Relaxed);
    CONDUIT.store(
        match conduit {
            None => 0,
            Some(Conduit::Hvc) => 1,
            Some(Conduit::Smc) => 2,
        },
        Ordering::Relaxed,
    );
}

/// Calls PSCI with the SMC calling convention; returns x0.
pub fn psci_call(conduit: Conduit, function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = u64::from(function);
    // SAFETY: an SMCCC call: arguments in x0-x3, result in x0, x1-x17 may be
    // clobbered by the firmware; it touches no memory of ours.
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

/// Ends the machine with `status` (0 = success). Without semihosting the
/// status can only be printed: PSCI SYSTEM_OFF exits QEMU with 0.
pub fn exit(status: u32) -> ! {
    if SEMIHOSTING.load(Ordering::Relaxed) {
        let block = [0x20026u64, u64::from(status)]; // ADP_Stopped_ApplicationExit
        // SAFETY: semihosting SYS_EXIT (0x18) with x1 pointing at its
        // two-word parameter block; QEMU ends the machine and does not
        // return. Enabled only when QEMU runs with semihosting on.
        unsafe {
            core::arch::asm!("hlt #0xf000", in("x0") 0x18u64, in("x1") block.as_ptr(), options(nostack));
        }
    }
    let conduit = match CONDUIT.load(Ordering::Relaxed) {
        1 => Some(Conduit::Hvc),
        2 => Some(Conduit::Smc),
        _ => None,
    };
    if let Some(c) = conduit {
        psci_call(c, psci::function::SYSTEM_OFF, 0, 0, 0);
    }
    loop {
        aarch64_cpu::asm::wfe();
    }
}
