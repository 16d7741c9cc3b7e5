//! The generic timer as EL0 reads it (the kernel lets it): the counter and
//! its frequency, for timeouts and benchmarks. On the host both read as a
//! counter standing still at 0, ticking at 1 Hz.

/// The physical counter, after earlier instructions completed (`isb`), so
/// a measurement does not start or end early.
pub fn counter() -> u64 {
    #[cfg(target_os = "none")]
    {
        let t;
        // SAFETY: reading CNTPCT_EL0, which the kernel lets EL0 read, has no
        // side effects.
        unsafe { core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) t, options(nomem, nostack)) };
        t
    }
    #[cfg(not(target_os = "none"))]
    0
}

/// Counter ticks per second.
pub fn frequency() -> u64 {
    #[cfg(target_os = "none")]
    {
        let f;
        // SAFETY: reading CNTFRQ_EL0 has no side effects.
        unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
        f
    }
    #[cfg(not(target_os = "none"))]
    1
}

/// The virtual timer, which the kernel lets EL0 program: a device user
/// space can own. Its interrupt (INTID 27, `platform::gic`) reaches a domain
/// only through an IRQ route (`aos::irq`). One per core, shared by every
/// dispatcher on it.
pub mod virtual_timer {
    /// Fires once, `ticks` counter ticks from now.
    pub fn arm(ticks: u64) {
        #[cfg(target_os = "none")]
        // SAFETY: writes CNTV_TVAL_EL0 and CNTV_CTL_EL0 (enable, unmasked),
        // which the kernel lets EL0 write; no memory is touched.
        unsafe {
            core::arch::asm!("msr cntv_tval_el0, {}", "msr cntv_ctl_el0, {}", "isb", in(reg) ticks, in(reg) 1u64, options(nomem, nostack));
        }
        #[cfg(not(target_os = "none"))]
        let _ = ticks;
    }

    /// Stops it, which also lowers its interrupt line.
    pub fn disarm() {
        #[cfg(target_os = "none")]
        // SAFETY: as in `arm`.
        unsafe {
            core::arch::asm!("msr cntv_ctl_el0, xzr", "isb", options(nomem, nostack));
        }
    }
}

/// Runs `f` (`count` operations) and prints one benchmark sample in the
/// format `cargo xtask bench` reads: `bench: NAME TICKS COUNT`, or
/// `bench: FAILED NAME` if `f` reports a failure. Returns `f`'s verdict.
pub fn measure(name: &str, count: u64, f: impl FnOnce() -> bool) -> bool {
    let t0 = counter();
    let ok = f();
    let t1 = counter();
    if ok {
        crate::println!("bench: {name} {} {count}", t1 - t0);
    } else {
        crate::println!("bench: FAILED {name}");
    }
    ok
}
