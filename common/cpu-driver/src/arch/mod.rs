//! The hardware half of the CPU driver: boot, memory, exceptions, dispatch.

mod boot;
pub mod console;
mod core;
mod cspace;
mod dispatch;
mod domain;
mod exception;
mod invoke;
mod irq;
mod lmp;
mod mm;
mod power;

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0, CurrentEL, Readable};
use cpu_driver::bootalloc::{BootAlloc, Range};
use cpu_driver::bootimage::Image;
use cpu_driver::{KERNEL_BASE, exit_status};
use platform::gic::{self, Gic};
use platform::{BOARD, devicetree};

use self::core::PerCore;
use self::domain::BootModules;

/// Stops boot with a reason.
fn boot_failed(why: ::core::fmt::Arguments<'_>) -> ! {
    log::error!("boot failed: {why}");
    power::exit(exit_status::BOOT_FAILED)
}

/// Where the kernel self-test reads: in the kernel half, above any RAM.
const SELFTEST_FAULT_ADDR: u64 = KERNEL_BASE + 0x0000_7f00_0000_0000;

/// Rust entry at EL1 in the high half, on the boot stack, with the early
/// tables live. `dtb` is the device tree's physical address.
#[unsafe(no_mangle)]
extern "C" fn kernel_main(dtb: u64, entry_el: u64) -> ! {
    let reset_ticks = CNTPCT_EL0.get();
    console::init();
    log::info!(
        "AOS CPU driver on {} ({}): entered at EL{entry_el}, running at EL{}",
        BOARD.name,
        BOARD.description,
        CurrentEL.read(CurrentEL::EL)
    );

    let tree = if dtb == 0 || !dtb.is_multiple_of(8) {
        Err(fdt::FdtError::BadPtr)
    } else {
        // SAFETY: the boot protocol passes the tree's physical address; the
        // early map covers the first 4 GiB, where the loaders put it, and
        // `from_ptr` checks magic and size before reading further.
        unsafe { fdt::Fdt::from_ptr((KERNEL_BASE + dtb) as *const u8) }
    };
    let fdt = match tree {
        Ok(f) => f,
        Err(_) => boot_failed(format_args!("no valid device tree at {dtb:#x}")),
    };
    let facts = devicetree::read(&fdt);
    power::configure(facts.has_arg("semihosting"), facts.psci.ok());
    let mut ram = [Range::default(); devicetree::MEMORY_MAX];
    for (r, m) in ram.iter_mut().zip(facts.memory()) {
        *r = Range::new(m.base, m.size);
    }
    let ram = &ram[..facts.memory().len()];
    if ram.is_empty() {
        boot_failed(format_args!("the device tree lists no memory"));
    }
    let mut alloc = BootAlloc::new();
    for r in ram {
        alloc.add(*r);
    }
    // QEMU's boot stub and anything else below the image stay untouched.
    let [_, _, data] = mm::image_sections();
    alloc.reserve(Range { start: BOARD.ram.base, end: data.end });
    alloc.reserve(Range::new(dtb, fdt.total_size() as u64));
    let Some(initrd) = facts.initrd.map(|r| Range::new(r.base, r.size)) else {
        boot_failed(format_args!("no boot image: the device tree has no /chosen initrd"))
    };
    alloc.reserve(initrd);

    if let Err(e) = mm::build_kernel_tables(&mut alloc, ram) {
        boot_failed(format_args!("building the kernel's tables: {e:?}"));
    }
    log::info!(
        "kernel tables built; RAM {} MiB, {} MiB free",
        ram.iter().map(|r| r.size()).sum::<u64>() >> 20,
        alloc.free_bytes() >> 20
    );

    // SAFETY: the initrd is RAM the loader filled and we reserved above; the
    // direct map covers it and nothing writes it.
    let blob = unsafe { ::core::slice::from_raw_parts(mm::phys(initrd.start), initrd.size() as usize) };
    if initrd.start % 4096 != 0 {
        boot_failed(format_args!("boot image at {:#x} is not page-aligned", initrd.start));
    }
    let image = match Image::parse(blob) {
        Ok(i) => i,
        Err(e) => boot_failed(format_args!("boot image: {e}")),
    };
    let Some(init) = image.modules().next() else { boot_failed(format_args!("the boot image has no modules")) };

    // Per-core state first: init's CSpace root lives in it, and database
    // entries must not move once inserted.
    core::init_boot_core(PerCore::new(0, alloc, gic::quantum()));
    let this = core::this_core();
    let boot = BootModules { base_pa: initrd.start, image };
    let created =
        domain::create_init(&mut this.alloc.borrow_mut(), &mut this.mdb.borrow_mut(), &this.asids, &init, &boot);
    let init_dcb = match created {
        Ok(d) => d,
        Err(e) => boot_failed(format_args!("creating init from module '{}': {e}", init.name)),
    };
    let quantum = this.quantum;
    // SAFETY: the kernel tables map the board's GIC frames as device memory
    // at KERNEL_BASE + pa for the kernel's lifetime.
    let gic = unsafe { Gic::new(KERNEL_BASE) };
    if let Err(e) = gic.init_core() {
        boot_failed(format_args!("interrupt controller: {e}"));
    }
    this.enqueue(init_dcb);
    let save = this.schedule();
    log::info!(
        "starting init '{}' ({} ticks since reset at {} Hz; {} KiB left for init)",
        init_dcb.name(),
        reset_ticks,
        CNTFRQ_EL0.get(),
        this.alloc.borrow().free_bytes() >> 10
    );
    if facts.has_arg("selftest=kernel-fault") {
        log::info!("selftest: reading unmapped kernel address {SELFTEST_FAULT_ADDR:#x}");
        // SAFETY: deliberately not sound: this read faults (nothing is
        // mapped there), which is what the self-test exercises. The fault
        // handler reports and ends the machine; the read never completes.
        unsafe { ::core::ptr::read_volatile(SELFTEST_FAULT_ADDR as *const u64) };
    }
    if facts.has_arg("selftest=stack-overflow") {
        log::info!("selftest: recursing until the kernel stack overflows");
        selftest_recurse(0);
    }
    gic::start_timer(quantum);
    // SAFETY: `save` is init's initial state in per-core memory that lives
    // forever; its TTBR0 is installed.
    unsafe { boot::resume_el0(save) }
}

/// Uses 512 bytes of stack per level, without end: the stack-overflow
/// self-test. (`black_box` keeps the compiler from seeing through it.)
#[inline(never)]
fn selftest_recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 512];
    frame[0] = depth as u8;
    let frame = ::core::hint::black_box(frame);
    if ::core::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    selftest_recurse(depth + 1) + u64::from(frame[0])
}

#[panic_handler]
fn panic(info: &::core::panic::PanicInfo<'_>) -> ! {
    console::emergency(format_args!("\nkernel {}: PANIC: {info}\n", core::id()));
    power::exit(exit_status::KERNEL_PANIC)
}
