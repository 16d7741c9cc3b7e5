//! The boot driver's half of memory management: the final kernel tables
//! (TTBR1: all RAM direct-mapped at KERNEL_BASE + pa, the kernel image with
//! W^X per section, the board's devices as device memory) and helpers to
//! reach physical memory through the direct map.

use cpu_driver::KERNEL_BASE;
use cpu_driver::bootalloc::{BootAlloc, Range};
use cpu_driver::paging::{self, Attributes, PAGE_SIZE, Table, TableAlloc};
use platform::BOARD;

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __image_end: u8;
    static __stack_guard: u8;
    static __stack_bottom: u8;
}

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64 - KERNEL_BASE
}

/// Physical extents of the kernel image's sections: (text, rodata, data+bss+stack).
pub fn image_sections() -> [Range; 3] {
    // SAFETY: linker-defined symbols; only their addresses are used.
    let (start, text_end, rodata_end, end) =
        unsafe { (sym(&__image_start), sym(&__text_end), sym(&__rodata_end), sym(&__image_end)) };
    [Range { start, end: text_end }, Range { start: text_end, end: rodata_end }, Range { start: rodata_end, end }]
}

/// Physical extent of the unmapped guard below the kernel stack.
pub fn stack_guard() -> Range {
    // SAFETY: linker-defined symbols; only their addresses are used.
    unsafe { Range { start: sym(&__stack_guard), end: sym(&__stack_bottom) } }
}

/// A kernel pointer to physical memory. Physical addresses fit in 48
/// bits, so the sum cannot wrap (checked in debug builds only: this is on
/// every fast path).
#[inline]
pub fn phys(pa: u64) -> *mut u8 {
    debug_assert!(pa >> 48 == 0, "physical address {pa:#x} out of range");
    KERNEL_BASE.wrapping_add(pa) as *mut u8
}

/// Copies bytes to physical memory through the direct map.
///
/// # Safety
/// `[pa, pa + bytes.len())` must be RAM the caller owns (allocated from the
/// boot allocator and not yet handed to anyone).
pub unsafe fn copy_to_phys(pa: u64, bytes: &[u8]) {
    // SAFETY: the caller owns the destination; the direct map covers RAM.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), phys(pa), bytes.len()) };
}

/// Zeroes physical memory through the direct map: with `DC ZVA`, a whole
/// block (64 bytes on the Cortex-A cores here) per instruction, where the
/// CPU allows it; with stores otherwise and for unaligned ends. Retyping
/// kernel objects and loading init spend most of their time here.
///
/// # Safety
/// As for [`copy_to_phys`].
pub unsafe fn zero_phys(pa: u64, len: u64) {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack, preserves_flags)) };
    let start = phys(pa) as u64;
    let end = start + len;
    let block = 4u64 << (dczid & 0xf);
    let (first, last) = (start.next_multiple_of(block), end & !(block - 1));
    // DZP (bit 4) set: DC ZVA is prohibited.
    if dczid & 0x10 != 0 || first >= last {
        // SAFETY: the caller owns the range; the direct map covers RAM.
        unsafe { core::ptr::write_bytes(start as *mut u8, 0, len as usize) };
        return;
    }
    // SAFETY: as above, for the unaligned head and tail.
    unsafe {
        core::ptr::write_bytes(start as *mut u8, 0, (first - start) as usize);
        core::ptr::write_bytes(last as *mut u8, 0, (end - last) as usize);
    }
    let mut at = first;
    while at < last {
        // SAFETY: zeroes the aligned block at `at`, inside the caller's
        // range; normal memory in the direct map. Later barriers (a map's
        // `dsb ishst`) order it like any store.
        unsafe { core::arch::asm!("dc zva, {}", in(reg) at, options(nostack, preserves_flags)) };
        at += block;
    }
}

/// Makes instructions written through the direct map visible to fetches.
pub fn sync_icache(pa: u64, len: u64) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nostack, nomem)) };
    let dline = 4u64 << ((ctr >> 16) & 0xf); // DminLine: log2 of words
    let mut line = pa & !(dline - 1);
    while line < pa + len {
        // SAFETY: cleaning data-cache lines to the point of unification
        // only writes back data; the address is mapped (direct map).
        unsafe { core::arch::asm!("dc cvau, {}", in(reg) KERNEL_BASE + line, options(nostack)) };
        line += dline;
    }
    // SAFETY: barriers and instruction-cache invalidation have no memory
    // effects beyond making the writes above visible to instruction fetch.
    unsafe { core::arch::asm!("dsb ish", "ic iallu", "dsb ish", "isb", options(nostack)) };
}

/// Page tables from the boot allocator, reached through the direct map.
pub struct Tables<'a>(pub &'a mut BootAlloc);

impl TableAlloc for Tables<'_> {
    fn alloc_table(&mut self) -> Option<u64> {
        let pa = self.0.alloc(1, PAGE_SIZE)?;
        // SAFETY: a page just taken from the boot allocator.
        unsafe { zero_phys(pa, PAGE_SIZE) };
        Some(pa)
    }

    fn table(&mut self, pa: u64) -> &mut Table {
        // SAFETY: only table pages allocated above are passed back in (the
        // walker follows descriptors we wrote), aligned and owned by the
        // kernel for its lifetime; the direct map covers them.
        unsafe { &mut *(phys(pa) as *mut Table) }
    }
}

/// Builds the kernel's final TTBR1 tables and switches to them.
pub fn build_kernel_tables(alloc: &mut BootAlloc, ram: &[Range]) -> Result<u64, paging::MapError> {
    let mut t = Tables(alloc);
    let root = t.alloc_table().ok_or(paging::MapError::OutOfTables)?;
    let [text, rodata, data] = image_sections();
    let image = Range { start: text.start, end: data.end };
    for r in ram {
        // RAM around the image: read-write, never executable.
        for piece in
            [Range { start: r.start, end: r.end.min(image.start) }, Range { start: r.start.max(image.end), end: r.end }]
        {
            if piece.start < piece.end {
                paging::map(
                    &mut t,
                    root,
                    KERNEL_BASE + piece.start,
                    piece.start,
                    piece.size(),
                    Attributes::KERNEL_RW,
                    true,
                )?;
            }
        }
    }
    // Data, bss and stack, around the stack's guard, which stays unmapped.
    let guard = stack_guard();
    let below = Range { start: data.start, end: guard.start };
    let above = Range { start: guard.end, end: data.end };
    for (section, attrs) in [
        (text, Attributes::KERNEL_RX),
        (rodata, Attributes::KERNEL_RO),
        (below, Attributes::KERNEL_RW),
        (above, Attributes::KERNEL_RW),
    ] {
        if section.start < section.end {
            paging::map(&mut t, root, KERNEL_BASE + section.start, section.start, section.size(), attrs, true)?;
        }
    }
    for dev in [BOARD.console.regs, BOARD.led.regs, BOARD.gic.distributor, BOARD.gic.redistributors] {
        let start = dev.base & !(PAGE_SIZE - 1);
        let end = (dev.base + dev.size).next_multiple_of(PAGE_SIZE);
        paging::map(&mut t, root, KERNEL_BASE + start, start, end - start, Attributes::KERNEL_DEVICE, true)?;
    }
    // An empty table: TTBR1 during the break, and TTBR0 until init's tables.
    let empty = t.alloc_table().ok_or(paging::MapError::OutOfTables)?;
    // Break-before-make: the live TTBR1 maps the same addresses with 1 GiB
    // blocks that the new one maps with smaller entries, and both must not
    // be in the TLB at once (TLB conflict). `replace_ttbr1` runs from its
    // identity-mapped (physical) alias through the early TTBR0, installs the
    // empty table, flushes, then installs the new root.
    let replace = super::boot::replace_ttbr1 as unsafe extern "C" fn(u64, u64) as usize as u64 - KERNEL_BASE;
    // SAFETY: `replace_ttbr1` is position-independent, uses no stack and no
    // kernel data, and is reachable at its physical address through the
    // early identity map (still in TTBR0). The new tables map everything the
    // kernel touches at the same addresses as the early ones.
    unsafe {
        let replace: extern "C" fn(u64, u64) = core::mem::transmute(replace as usize);
        replace(root, empty);
    }
    // SAFETY: the identity map is no longer needed: park TTBR0 on the empty
    // table and drop every early entry (they were global) from the TLB.
    unsafe {
        core::arch::asm!(
            "msr ttbr0_el1, {empty}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            empty = in(reg) empty,
            options(nostack)
        );
    }
    Ok(root)
}

/// Installs a domain's TTBR0 (ASID in the top bits).
pub fn switch_user_tables(ttbr0: u64) {
    // SAFETY: TTBR0 only maps user space; the kernel runs from TTBR1. The
    // DSB makes table stores visible to the walker first (Arm ARM: a walk is
    // guaranteed to see them only after a DSB). ASIDs keep other domains'
    // TLB entries apart, so no flush is needed.
    unsafe { core::arch::asm!("dsb ishst", "msr ttbr0_el1, {}", "isb", in(reg) ttbr0, options(nostack)) };
}

/// Translates a user address for an EL0 read with the current TTBR0;
/// `None` if EL0 could not read it.
pub fn user_readable(va: u64) -> Option<u64> {
    let par: u64;
    // SAFETY: AT S1E0R performs a translation as EL0 would and only writes
    // PAR_EL1; it cannot fault.
    unsafe {
        core::arch::asm!("at s1e0r, {va}", "isb", "mrs {par}, par_el1", va = in(reg) va, par = out(reg) par, options(nostack))
    };
    (par & 1 == 0).then_some((par & 0x0000_ffff_ffff_f000) | (va & 0xfff))
}
