//! The board's GICv3 and the EL1 physical timer, for a kernel at EL1:
//! distributor on with affinity routing, this core's redistributor awake,
//! the timer's PPI in group 1 and enabled, the system-register CPU
//! interface on; enabling other PPIs and SPIs for this core;
//! acknowledging and ending interrupts; arming the timer.
//!
//! The kernel says where it mapped the GIC (`va_offset + pa`); this module
//! knows the board's frames but not the kernel's address space.

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTKCTL_EL1, CNTP_CTL_EL0, CNTP_TVAL_EL0, MPIDR_EL1, Readable, Writeable};
use devices::gicv3::{
    GICD_CTLR, GICR_SGI_OFFSET, GICR_STRIDE, GICR_TYPER_LAST, GICR_WAKER, GicdRegs, GicrRdRegs, GicrSgiRegs,
};
use tock_registers::interfaces::ReadWriteable;

use crate::BOARD;

/// The EL1 physical timer's interrupt (PPI 14).
pub const TIMER_INTID: u32 = 30;
/// INTIDs at and above this are special (spurious and the like).
const SPECIAL: u32 = 1020;
/// The first PPI and the first SPI: below 16 are SGIs (between cores).
pub const FIRST_PPI: u32 = 16;
pub const FIRST_SPI: u32 = 32;

/// The GIC as a kernel mapped it.
#[derive(Clone, Copy, Debug)]
pub struct Gic {
    va_offset: u64,
}

impl Gic {
    /// # Safety
    /// `va_offset + pa` must map the board's distributor and redistributor
    /// frames as device memory for as long as the `Gic` is used.
    pub const unsafe fn new(va_offset: u64) -> Self {
        Gic { va_offset }
    }

    fn gicd(&self) -> &GicdRegs {
        // SAFETY: `new`'s contract: the distributor is mapped here.
        unsafe { &*((self.va_offset + BOARD.gic.distributor.base) as *const GicdRegs) }
    }

    /// Finds this core's redistributor by affinity.
    fn redistributor(&self) -> Option<u64> {
        let mpidr = MPIDR_EL1.get();
        let affinity = (mpidr & 0xff_ffff) | ((mpidr >> 32 & 0xff) << 24);
        let mut base = self.va_offset + BOARD.gic.redistributors.base;
        let end = base + BOARD.gic.redistributors.size;
        while base < end {
            // SAFETY: within the mapped redistributor region.
            let rd = unsafe { &*(base as *const GicrRdRegs) };
            let typer = rd.typer.get();
            if typer >> 32 == affinity {
                return Some(base);
            }
            if typer & GICR_TYPER_LAST != 0 {
                break;
            }
            base += GICR_STRIDE;
        }
        None
    }

    fn sgi_frame(&self) -> Option<&GicrSgiRegs> {
        let rd = self.redistributor()?;
        // SAFETY: the SGI/PPI frame follows the RD frame within the region.
        Some(unsafe { &*((rd + GICR_SGI_OFFSET) as *const GicrSgiRegs) })
    }

    /// One past the highest SPI the distributor implements.
    pub fn intid_limit(&self) -> u32 {
        let lines = self.gicd().typer.get() & 0x1f;
        ((lines + 1) * 32).min(SPECIAL)
    }

    /// Prepares a PPI or SPI for delivery to this core (group 1, middle
    /// priority; an SPI routed here) and enables or disables it.
    pub fn set_enabled(&self, intid: u32, on: bool) -> Result<(), &'static str> {
        let (word, bit) = ((intid / 32) as usize, 1u32 << (intid % 32));
        let shift = (intid % 4) * 8;
        if (FIRST_PPI..FIRST_SPI).contains(&intid) {
            let sgi = self.sgi_frame().ok_or("no GIC redistributor for this core")?;
            if on {
                sgi.igroupr0.set(sgi.igroupr0.get() | bit);
                let prio = &sgi.ipriorityr[(intid / 4) as usize];
                prio.set((prio.get() & !(0xff << shift)) | (0x80 << shift));
                sgi.isenabler0.set(bit);
            } else {
                sgi.icenabler0.set(bit);
            }
        } else if (FIRST_SPI..self.intid_limit()).contains(&intid) {
            let d = self.gicd();
            if on {
                d.igroupr[word].set(d.igroupr[word].get() | bit);
                let prio = &d.ipriorityr[(intid / 4) as usize];
                prio.set((prio.get() & !(0xff << shift)) | (0x80 << shift));
                let mpidr = MPIDR_EL1.get();
                d.irouter[(intid - FIRST_SPI) as usize].set((mpidr & 0xff_ffff) | (mpidr >> 32 & 0xff) << 32);
                d.isenabler[word].set(bit);
            } else {
                d.icenabler[word].set(bit);
            }
        } else {
            return Err("not a PPI or SPI of this GIC");
        }
        Ok(())
    }

    /// Brings up the GIC for this core and enables the timer interrupt.
    pub fn init_core(&self) -> Result<(), &'static str> {
        let d = self.gicd();
        d.ctlr.modify(GICD_CTLR::ARE::SET + GICD_CTLR::ENABLE_GRP1::SET + GICD_CTLR::ENABLE_GRP1A::SET);
        while d.ctlr.is_set(GICD_CTLR::RWP) {
            core::hint::spin_loop();
        }
        let rd_base = self.redistributor().ok_or("no GIC redistributor for this core")?;
        // SAFETY: as in `redistributor`.
        let rd = unsafe { &*(rd_base as *const GicrRdRegs) };
        rd.waker.modify(GICR_WAKER::PROCESSOR_SLEEP::CLEAR);
        while rd.waker.is_set(GICR_WAKER::CHILDREN_ASLEEP) {
            core::hint::spin_loop();
        }
        self.set_enabled(TIMER_INTID, true)?;
        // SAFETY: ICC_SRE_EL1.SRE enables the system-register interface (EL2 was
        // told to allow it at boot), then priority mask, binary point and group 1
        // enable; these affect only interrupt delivery to this core.
        unsafe {
            core::arch::asm!(
                "mrs {t}, S3_0_C12_C12_5",
                "orr {t}, {t}, #1",
                "msr S3_0_C12_C12_5, {t}",
                "isb",
                "mov {t}, #0xff",
                "msr S3_0_C4_C6_0, {t}",
                "msr S3_0_C12_C12_3, xzr",
                "mov {t}, #1",
                "msr S3_0_C12_C12_7, {t}",
                "isb",
                t = out(reg) _,
                options(nostack)
            );
        }
        Ok(())
    }
}

/// Acknowledges the highest-priority pending interrupt; `None` if spurious.
pub fn ack() -> Option<u32> {
    let iar: u64;
    // SAFETY: reading ICC_IAR1_EL1 acknowledges an interrupt; no memory access.
    unsafe { core::arch::asm!("mrs {}, S3_0_C12_C12_0", out(reg) iar, options(nostack)) };
    let intid = (iar & 0xff_ffff) as u32;
    (intid < SPECIAL).then_some(intid)
}

/// Ends an acknowledged interrupt.
pub fn eoi(intid: u32) {
    // SAFETY: writing ICC_EOIR1_EL1 for an acknowledged INTID.
    unsafe { core::arch::asm!("msr S3_0_C12_C12_1, {}", in(reg) u64::from(intid), options(nostack)) };
}

/// Counter ticks per quantum: 10 ms.
pub fn quantum() -> u64 {
    (CNTFRQ_EL0.get() / 100).max(1)
}

/// The EL1 virtual timer's interrupt (PPI 11): EL0 may program that timer,
/// and its interrupt reaches user space only through an IRQ route.
pub const VIRTUAL_TIMER_INTID: u32 = 27;

/// Lets EL0 read the counter (benchmarks use it) and program the virtual
/// timer (a device user space can own), and arms the kernel's timer.
pub fn start_timer(ticks: u64) {
    CNTKCTL_EL1.write(CNTKCTL_EL1::EL0PCTEN::SET + CNTKCTL_EL1::EL0VCTEN::SET + CNTKCTL_EL1::EL0VTEN::SET);
    rearm(ticks);
}

pub fn rearm(ticks: u64) {
    CNTP_TVAL_EL0.set(ticks);
    CNTP_CTL_EL0.write(CNTP_CTL_EL0::ENABLE::SET + CNTP_CTL_EL0::IMASK::CLEAR);
}
