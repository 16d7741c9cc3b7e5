//! The one domain the kernel makes itself: init, from the first boot
//! module, with its CSpace (book ch. 4.9), its address space, and a
//! dispatcher whose DCB is filled as `Setup` would. Every later domain is
//! made by user space from capabilities.

use kpi::args::ArgsPage;
use kpi::bootinfo::{BootInfo, RegionKind};
use kpi::dispatcher::{RegisterSave, SPSR_EL0T};
use kpi::error::{Context, Error, ErrorCode};
use kpi::vspace::{ARGS_VADDR, BOOTINFO_VADDR, DISPFRAME_VADDR, INIT_DISPFRAME_SIZE, STACK_SIZE, STACK_TOP};

use cpu_driver::bootalloc::BootAlloc;
use cpu_driver::bootimage::{Image, Module};
use cpu_driver::elf;
use cpu_driver::paging::{self, Attributes, PAGE_SIZE, TableAlloc};

use caps::mdb::Mdb;
use caps::types::{CTE_SIZE, L2_SLOTS};
use caps::{Cap, ObjType, Rights};
use kpi::cspace::*;
use platform::BOARD;

use super::cspace::{self, Cte};
use super::dispatch::{self, Asids, Dcb, HELD_FRAME, HELD_ROOT, HELD_VROOT};
use super::mm::{self, Tables};

/// The boot image and where it sits physically, for init's bootinfo.
pub struct BootModules<'a> {
    pub base_pa: u64,
    pub image: Image<'a>,
}

fn user_pages(alloc: &mut BootAlloc, root: u64, va: u64, len: u64, attrs: Attributes) -> Result<u64, Error> {
    let pages = len.div_ceil(PAGE_SIZE);
    let pa = alloc.alloc(pages, PAGE_SIZE).ok_or(ErrorCode::OutOfMemory)?;
    // SAFETY: pages just taken from the boot allocator.
    unsafe { mm::zero_phys(pa, pages * PAGE_SIZE) };
    paging::map(&mut Tables(alloc), root, va, pa, pages * PAGE_SIZE, attrs, false)
        .map_err(ErrorCode::from)
        .context(ErrorCode::Map)?;
    Ok(pa)
}

/// Creates init from an ELF boot module: segments with the permissions
/// they ask for, a stack, the arguments page, the bootinfo page, its
/// CSpace and its dispatcher, runnable. Returns the dispatcher.
pub fn create_init(
    alloc: &mut BootAlloc,
    mdb: &mut Mdb,
    asids: &Asids,
    module: &Module<'_>,
    boot: &BootModules<'_>,
) -> Result<Dcb, Error> {
    let prog = elf::parse(module.data).map_err(|e| {
        log::error!("module '{}': {e}", module.name);
        Error::new(ErrorCode::BadElf)
    })?;
    let root = Tables(alloc).alloc_table().ok_or(ErrorCode::OutOfMemory)?;
    for seg in prog.segments() {
        let (start, end) = seg.pages();
        let attrs = match (seg.write, seg.exec) {
            (_, true) => Attributes::USER_RX,
            (true, false) => Attributes::USER_RW,
            (false, false) => Attributes::USER_RO,
        };
        let pa = user_pages(alloc, root, start, end - start, attrs).context(ErrorCode::DomainCreate)?;
        let file = &module.data[seg.offset as usize..(seg.offset + seg.filesz) as usize];
        // SAFETY: `pa` is the start of the pages just allocated for this
        // segment; the file bytes land at the segment's offset in them.
        unsafe { mm::copy_to_phys(pa + (seg.vaddr - start), file) };
        if seg.exec {
            mm::sync_icache(pa, end - start);
        }
    }
    user_pages(alloc, root, STACK_TOP - STACK_SIZE, STACK_SIZE, Attributes::USER_RW)
        .context(ErrorCode::DomainCreate)?;

    let args = ArgsPage::from_cmdline(module.args, BOOTINFO_VADDR).context(ErrorCode::DomainCreate)?;
    let args_pa = user_pages(alloc, root, ARGS_VADDR, PAGE_SIZE, Attributes::USER_RO)?;
    // SAFETY: the page just allocated for the arguments.
    unsafe { mm::copy_to_phys(args_pa, args.as_bytes()) };

    // Allocate first: bootinfo must describe memory as init will find it.
    let bi_pa = user_pages(alloc, root, BOOTINFO_VADDR, PAGE_SIZE, Attributes::USER_RO)?;
    let disp = alloc.alloc(1, PAGE_SIZE).ok_or(ErrorCode::OutOfMemory)?;
    let frame = alloc.alloc(INIT_DISPFRAME_SIZE / PAGE_SIZE, PAGE_SIZE).ok_or(ErrorCode::OutOfMemory)?;
    // SAFETY: pages just taken from the boot allocator.
    unsafe {
        mm::zero_phys(disp, PAGE_SIZE);
        mm::zero_phys(frame, INIT_DISPFRAME_SIZE);
    }
    paging::map(&mut Tables(alloc), root, DISPFRAME_VADDR, frame, INIT_DISPFRAME_SIZE, Attributes::USER_RW, false)
        .map_err(ErrorCode::from)
        .context(ErrorCode::Map)?;
    let dcb = Dcb(disp);
    {
        let cs = InitCSpace::build(alloc, mdb, dcb)?;
        cs.put(
            mdb,
            ROOTCN_SLOT_TASKCN,
            TASKCN_SLOT_ARGSPAGE,
            Cap { rights: Rights::READ, ..Cap::new(ObjType::Frame, args_pa, PAGE_SIZE) },
        );
        cs.put(
            mdb,
            ROOTCN_SLOT_TASKCN,
            TASKCN_SLOT_BOOTINFO,
            Cap { rights: Rights::READ, ..Cap::new(ObjType::Frame, bi_pa, PAGE_SIZE) },
        );
        cs.put(mdb, ROOTCN_SLOT_TASKCN, TASKCN_SLOT_KERNELCAP, Cap::new(ObjType::Kernel, 0, 0));
        cs.put(mdb, ROOTCN_SLOT_TASKCN, TASKCN_SLOT_IRQ, Cap::new(ObjType::IrqTable, 0, 0));
        let dev = BOARD.console.regs;
        let dev_base = dev.base & !(PAGE_SIZE - 1);
        let dev_size = (dev.base + dev.size).next_multiple_of(PAGE_SIZE) - dev_base;
        cs.put(mdb, ROOTCN_SLOT_TASKCN, TASKCN_SLOT_DEV, Cap::new(ObjType::DevFrame, dev_base, dev_size));
        // Its dispatcher, the dispatcher frame and an endpoint to it; the
        // DCB holds its own copies of the frame and the VSpace root.
        let vroot = Cap::new(ObjType::VNodeL0, root, PAGE_SIZE);
        dispatch::install_held(mdb, dcb, HELD_VROOT, vroot);
        let frame_cap = Cap::new(ObjType::Frame, frame, INIT_DISPFRAME_SIZE);
        dispatch::install_held(mdb, dcb, HELD_FRAME, frame_cap);
        let disp_cap = Cap::new(ObjType::Dispatcher, disp, caps::types::DISPATCHER_SIZE);
        cs.put(mdb, ROOTCN_SLOT_TASKCN, TASKCN_SLOT_DISPATCHER, disp_cap);
        cs.put(mdb, ROOTCN_SLOT_TASKCN, TASKCN_SLOT_DISPFRAME, frame_cap);
        let ep = caps::retype::check(
            &disp_cap,
            &caps::retype::Request { new_type: ObjType::EndPointLmp, offset: 0, objsize: 0, count: 1 },
        )
        .map_err(|_| ErrorCode::DomainCreate)?
        .nth(&disp_cap, 0);
        cs.put(mdb, ROOTCN_SLOT_TASKCN, TASKCN_SLOT_SELFEP, ep);
        cs.put(mdb, ROOTCN_SLOT_PAGECN, PAGECN_SLOT_VROOT, vroot);
        // BASE_PAGE_CN: one base page of RAM per slot, for init's first
        // allocations (slot and slab allocators) before its memory manager.
        let pages = alloc.alloc(L2_SLOTS, PAGE_SIZE).ok_or(ErrorCode::OutOfMemory)?;
        for i in 0..L2_SLOTS {
            cs.put(mdb, ROOTCN_SLOT_BASE_PAGE_CN, i as usize, Cap::new(ObjType::Ram, pages + i * PAGE_SIZE, PAGE_SIZE));
        }

        let mut bi = BootInfo::new();
        // Nothing may be dropped silently: init would lose memory or modules.
        let mut fits = true;
        for (i, m) in boot.image.modules().enumerate() {
            let base = boot.base_pa + m.offset as u64;
            let size = (m.data.len() as u64).next_multiple_of(PAGE_SIZE);
            fits &= i < L2_SLOTS as usize;
            if fits {
                let cap = Cap {
                    rights: Rights::READ | Rights::GRANT | Rights::IDENTIFY,
                    ..Cap::new(ObjType::Frame, base, size)
                };
                cs.put(mdb, ROOTCN_SLOT_MODULECN, i, cap);
            }
            fits &= bi.add_region(base, size, RegionKind::Module, i as u32);
            fits &= bi.add_module(base, m.data.len() as u64, m.name, m.args);
        }
        // Last: free RAM is what no boot allocation took.
        for (i, r) in alloc.free().iter().enumerate() {
            fits &= i < L2_SLOTS as usize;
            if fits {
                cs.put(mdb, ROOTCN_SLOT_SUPERCN, i, Cap::new(ObjType::Ram, r.start, r.size()));
            }
            fits &= bi.add_region(r.start, r.size(), RegionKind::Free, i as u32);
        }
        if !fits {
            log::error!("bootinfo or init's CSpace cannot hold every memory region, module name and command line");
            return Err(Error::new(ErrorCode::TooLong).context(ErrorCode::DomainCreate));
        }
        // SAFETY: BootInfo is repr(C), one page, all integers; the page was
        // just allocated for it.
        unsafe {
            let bytes = core::slice::from_raw_parts(&bi as *const BootInfo as *const u8, PAGE_SIZE as usize);
            mm::copy_to_phys(bi_pa, bytes);
        }
    }

    let asid = asids.alloc()?;
    dispatch::setup_boot(dcb, asid, root, DISPFRAME_VADDR, module.name);
    let mut save = RegisterSave::default();
    save.x[0] = ARGS_VADDR;
    save.sp = STACK_TOP;
    save.pc = prog.entry;
    save.spsr = SPSR_EL0T;
    // Init starts disabled, as `MakeRunnable` starts every dispatcher.
    dispatch::set_initial(dcb, save);
    Ok(dcb)
}

/// Init's CSpace (book ch. 4.9), made by the kernel at boot: an L1 CNode
/// whose first slots hold the well-known L2 CNodes.
struct InitCSpace {
    /// Physical base of each L2 CNode, by root slot.
    l2: [u64; ROOTCN_SLOTS_USER],
}

impl InitCSpace {
    const L2_SIZE: u64 = L2_SLOTS * CTE_SIZE;

    fn build(alloc: &mut BootAlloc, mdb: &mut Mdb, dcb: Dcb) -> Result<InitCSpace, Error> {
        let l1_size = caps::types::L1_MIN_SLOTS * CTE_SIZE;
        let l1 = alloc.alloc(l1_size / PAGE_SIZE, PAGE_SIZE).ok_or(ErrorCode::OutOfMemory)?;
        // SAFETY: pages just taken from the boot allocator for this CNode.
        unsafe { cspace::init_cnode(l1, l1_size) };
        let root = Cap::new(ObjType::L1CNode, l1, l1_size);
        dispatch::install_held(mdb, dcb, HELD_ROOT, root);
        let mut cs = InitCSpace { l2: [0; ROOTCN_SLOTS_USER] };
        for slot in 0..ROOTCN_SLOTS_USER {
            let pa = alloc.alloc(Self::L2_SIZE / PAGE_SIZE, PAGE_SIZE).ok_or(ErrorCode::OutOfMemory)?;
            // SAFETY: as above.
            unsafe { cspace::init_cnode(pa, Self::L2_SIZE) };
            cs.l2[slot] = pa;
            Self::install(mdb, l1 + slot as u64 * CTE_SIZE, Cap::new(ObjType::L2CNode, pa, Self::L2_SIZE));
        }
        cs.put(mdb, ROOTCN_SLOT_TASKCN, TASKCN_SLOT_ROOTCN, root);
        Ok(cs)
    }

    fn install(mdb: &mut Mdb, pa: u64, cap: Cap) {
        // SAFETY: a slot of a CNode made above, still empty.
        unsafe { cspace::put(mdb, pa, Cte::new(cap)) };
    }

    /// Puts `cap` in slot `slot` of the L2 CNode at root slot `cn`.
    fn put(&self, mdb: &mut Mdb, cn: usize, slot: usize, cap: Cap) {
        Self::install(mdb, self.l2[cn] + slot as u64 * CTE_SIZE, cap);
    }
}
