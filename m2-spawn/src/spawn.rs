//! Building a process from a boot module (book ch. 4.8-4.18) and taking it
//! apart again (ch. 4.20).
//!
//! Every object of a process (its CNodes, page tables, frames, dispatcher,
//! the RAM in its BASE_PAGE_CN) is retyped from one RAM capability, sized
//! from the ELF before anything is made. Init keeps that capability, a
//! copy of the dispatcher (to stop it), and the child's PAGECN at a root
//! slot of its own (to map into the child later). Reclaiming is therefore
//! one revoke of the RAM and one free: whatever a spawn got to before it
//! failed, and whatever a process did before it exited or was stopped.
//!
//! Init reaches the child's CNodes through *windows*: root slots of its
//! own CNode ([`WINDOW_BASE`] up, left alone by its slot allocator) where
//! it puts a copy of a child L2 CNode, so that `CapRef::slot(window, i)`
//! names slot `i` of the child's CNode. TASKCN, SEGCN and BASE_PAGE_CN are
//! visible only while a spawn runs; each process's PAGECN for its
//! lifetime.

use core::sync::atomic::{AtomicU32, Ordering};

use aos::cap::{self, CapRef, Dest, ObjType};
use aos::dispatcher::Dispatcher;
use aos::kpi::args::ArgsPage;
use aos::kpi::cspace::*;
use aos::kpi::dispatcher::{DispatcherShared, NAME_LEN, RegisterSave, SPSR_EL0T};
use aos::kpi::vspace::{ARGS_VADDR, CHILD_DISPFRAME_SIZE, DISPFRAME_VADDR, PAGING_STATE_VADDR, STACK_SIZE, STACK_TOP};
use aos_elf::Program;
use api::{MapFlags, MemoryManager, Pid, SlotAllocator};
use m1_memory::Memory;
use m1_memory::paging::PAGE;

use crate::Error;
use crate::layout::Layout;
use crate::vspace::{CHILD_TABLES, ChildVSpace, OwnVSpace, SHADOW_BYTES};

/// Processes the table holds at once.
pub const PROCS_MAX: usize = 32;
/// Root slots of init's CNode that spawn uses: one per table entry for
/// that child's PAGECN, and three for the CNodes a spawn fills.
pub const WINDOWS: u32 = PROCS_MAX as u32 + 3;
pub const WINDOW_BASE: u32 = L1_CNODE_MIN_SLOTS as u32 - WINDOWS;
const WIN_TASKCN: u32 = WINDOW_BASE;
const WIN_SEGCN: u32 = WINDOW_BASE + 1;
const WIN_BASE_PAGE_CN: u32 = WINDOW_BASE + 2;

/// The window holding the PAGECN of the process at table slot `index`.
fn pagecn_window(index: usize) -> u32 {
    WINDOW_BASE + 3 + index as u32
}

/// RAM capabilities of a base page each in the child's BASE_PAGE_CN, for
/// its first page tables and slab chunks before it can ask a memory
/// server (M3). A quarter of the CNode: each one is a capability the
/// kernel deletes at reclaim, and a full CNode made reclaim four times
/// slower (see the report).
pub const BASE_PAGES: u64 = 64;
/// SEGCN slots: the ELF segments' frames from 0, then these.
const SEGCN_STACK: u32 = 16;
const SEGCN_PAGING_STATE: u32 = 17;
/// The child's L2 CNodes, by root slot. SUPERCN and MODULECN stay empty:
/// a child owns no boot memory and no modules.
const CHILD_L2: [usize; 7] = [
    ROOTCN_SLOT_TASKCN,
    ROOTCN_SLOT_PAGECN,
    ROOTCN_SLOT_BASE_PAGE_CN,
    ROOTCN_SLOT_SEGCN,
    ROOTCN_SLOT_SLOT_ALLOC0,
    ROOTCN_SLOT_SLOT_ALLOC1,
    ROOTCN_SLOT_SLOT_ALLOC2,
];
const L1_BYTES: u64 = L1_CNODE_MIN_SLOTS as u64 * CTE_SIZE;

/// The addresses spawn maps for every program (stack and the guard page
/// below it, dispatcher frame, paging-state page, arguments, and the
/// bootinfo page init has there): no segment may reach into them.
pub const FIXED_VADDR: core::ops::Range<u64> = (STACK_TOP - STACK_SIZE - PAGE)..(ARGS_VADDR + PAGE);
const _: () = assert!(aos::kpi::vspace::USER_MIN < FIXED_VADDR.start && FIXED_VADDR.end <= 1 << 39);

/// The first segment of `prog` that reaches into [`FIXED_VADDR`] or above
/// level-0 entry 0 (where a child's own allocations go).
pub fn segment_in_fixed_layout(prog: &Program) -> Option<usize> {
    prog.segments().iter().position(|s| {
        let (start, end) = s.pages();
        (start < FIXED_VADDR.end && FIXED_VADDR.start < end) || end > crate::vspace::CHILD_VADDR.start
    })
}

/// Bytes of RAM a process built from `prog` takes.
pub fn ram_bytes(prog: &Program) -> u64 {
    let segments: u64 = prog.segments().iter().map(|s| s.pages().1 - s.pages().0).sum();
    L1_BYTES
        + CHILD_L2.len() as u64 * L2_CNODE_BYTES
        + 4 * PAGE // L0 table, dispatcher, arguments, paging state
        + CHILD_DISPFRAME_SIZE
        + STACK_SIZE
        + BASE_PAGES * PAGE
        + SHADOW_BYTES
        + CHILD_TABLES * PAGE
        + segments
}

/// Where a later stage finds a child's pieces while spawn builds it.
pub struct ChildCaps {
    /// The process's index in the table (`pid` modulo the generation).
    pub index: usize,
    /// The child's TASKCN through init's window: slot `i` of it is
    /// `CapRef::slot(taskcn, i)`.
    pub taskcn: u32,
}

/// What a later stage adds to every child before it first runs (M3: the
/// ends of its channel to init). It may fill the child's TASKCN and
/// returns a capability init keeps for the process, in one of init's
/// slots, which reclaim empties and frees.
pub type SpawnHook = fn(&mut Memory, &ChildCaps) -> Result<Option<CapRef>, Error>;

/// A process in the table: what init holds of it.
pub struct Process {
    name: [u8; NAME_LEN],
    name_len: usize,
    /// The RAM everything of the process is retyped from, and how much of
    /// it is used.
    ram: Option<CapRef>,
    ram_bytes: u64,
    next: u64,
    /// Init's copy of the dispatcher.
    disp: Option<CapRef>,
    /// Init's copy of the child's L1 CNode; only while building.
    l1: Option<CapRef>,
    /// Init's slot for the frame holding the child's shadow state, and
    /// where init maps it.
    shadow: Option<CapRef>,
    shadow_va: Option<u64>,
    /// Where init maps the child's paging-state page.
    layout_va: Option<u64>,
    vspace: ChildVSpace,
    /// Whether the temporary windows hold this process's CNodes.
    building: bool,
    /// The process's table slot, and the window of its PAGECN.
    index: usize,
    pagecn: u32,
    /// What the spawn hook gave init to keep.
    kept: Option<CapRef>,
}

impl crate::proc::Vacant for Process {
    const VACANT: Process = Process {
        name: [0; NAME_LEN],
        name_len: 0,
        ram: None,
        ram_bytes: 0,
        next: 0,
        disp: None,
        l1: None,
        shadow: None,
        shadow_va: None,
        layout_va: None,
        vspace: ChildVSpace::new(),
        building: false,
        index: 0,
        pagecn: 0,
        kept: None,
    };
}

impl Process {
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }

    pub fn dispatcher(&self) -> Option<Dispatcher> {
        self.disp.map(Dispatcher)
    }

    /// What the spawn hook gave init to keep for this process.
    pub fn kept(&self) -> Option<CapRef> {
        self.kept
    }

    /// The child's address space, once spawn has started it.
    pub fn vspace(&mut self) -> Option<&mut ChildVSpace> {
        self.vspace.is_started().then_some(&mut self.vspace)
    }

    /// `bytes` of the process's RAM, at the returned offset.
    fn take(&mut self, bytes: u64) -> Result<u64, Error> {
        let at = self.next;
        if at + bytes > self.ram_bytes {
            return Err(Error::Internal("the process's RAM plan is too small"));
        }
        self.next += bytes;
        Ok(at)
    }

    fn ram(&self) -> Result<CapRef, Error> {
        self.ram.ok_or(Error::Internal("no RAM yet"))
    }

    /// Retypes `count` `ty` objects of `bytes` each from the process's RAM
    /// into consecutive slots from `dest`; `bytes` is 0 for the fixed-size
    /// types spawn makes (tables, dispatchers), which are a page each.
    fn make(&mut self, dest: Dest, ty: ObjType, bytes: u64, count: u64, doing: &'static str) -> Result<(), Error> {
        failpoint()?;
        let size = if bytes == 0 { PAGE } else { bytes };
        let at = self.take(size * count)?;
        cap::retype(self.ram()?, dest, ty, at, bytes, count).map_err(|code| Error::Kernel { code, doing })?;
        Ok(())
    }
}

/// Steps until an injected failure; 0: none armed.
static FAIL_AFTER: AtomicU32 = AtomicU32::new(0);

/// Makes the `steps`-th step of the next spawns fail (0: none), so a test
/// can stop a spawn after every step in turn and see it leave nothing
/// behind. A step is an object made, a frame filled, or a child mapping.
pub fn inject_failure(steps: u32) {
    FAIL_AFTER.store(steps, Ordering::Relaxed);
}

/// Counts a step; the armed one fails.
pub(crate) fn failpoint() -> Result<(), Error> {
    match FAIL_AFTER.load(Ordering::Relaxed) {
        0 => Ok(()),
        1 => {
            FAIL_AFTER.store(0, Ordering::Relaxed);
            Err(Error::Injected)
        }
        n => {
            FAIL_AFTER.store(n - 1, Ordering::Relaxed);
            Ok(())
        }
    }
}

/// Init's copy of the root CNode, for placing CNodes at root slots.
fn own_root() -> CapRef {
    CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_ROOTCN as u8)
}

/// Maps `frame` in init, lets `f` fill its first `bytes`, and unmaps it.
fn fill(
    mem: &mut Memory,
    own: &mut OwnVSpace,
    frame: CapRef,
    bytes: u64,
    f: impl FnOnce(&mut [u8]),
) -> Result<(), Error> {
    failpoint()?;
    let va = own.map_frame(mem, frame, bytes, MapFlags::READ_WRITE)?;
    // SAFETY: `bytes` at `va` were just mapped read-write to `frame`, a
    // new object of the child's that nothing runs on yet; the slice ends
    // before the unmap below.
    let mem_slice = unsafe { core::slice::from_raw_parts_mut(va as *mut u8, bytes as usize) };
    f(mem_slice);
    own.unmap(mem, va, bytes)
}

/// Builds a process from `image`, already checked as `prog`, with the
/// arguments `args`, and starts it. On failure the caller reclaims `p`.
pub fn build(
    mem: &mut Memory,
    own: &mut OwnVSpace,
    p: &mut Process,
    prog: &Program,
    image: &[u8],
    args: &ArgsPage,
    hook: Option<SpawnHook>,
) -> Result<(), Error> {
    p.ram_bytes = ram_bytes(prog);
    p.ram = Some(mem.alloc(p.ram_bytes)?);

    // The CSpace (ch. 4.9): an L1 CNode, kept in one of init's slots while
    // building, with the L2 CNodes at their root slots.
    let l1 = mem.slot_alloc()?;
    p.l1 = Some(l1);
    p.building = true;
    p.make(Dest::at(l1), ObjType::L1CNode, L1_BYTES, 1, "making the L1 CNode")?;
    for slot in CHILD_L2 {
        let window = match slot {
            ROOTCN_SLOT_TASKCN => Some(WIN_TASKCN),
            ROOTCN_SLOT_SEGCN => Some(WIN_SEGCN),
            ROOTCN_SLOT_BASE_PAGE_CN => Some(WIN_BASE_PAGE_CN),
            ROOTCN_SLOT_PAGECN => Some(p.pagecn),
            _ => None,
        };
        let child = Dest { cnode: l1, slot: slot as u32 };
        match window {
            Some(w) => {
                p.make(Dest { cnode: own_root(), slot: w }, ObjType::L2CNode, L2_CNODE_BYTES, 1, "making an L2 CNode")?;
                cap::copy(CapRef::l2_cnode(w), child)
                    .map_err(|code| Error::Kernel { code, doing: "placing an L2 CNode" })?;
            }
            None => p.make(child, ObjType::L2CNode, L2_CNODE_BYTES, 1, "making an L2 CNode")?,
        }
    }
    p.make(Dest::l2(p.pagecn, PAGECN_SLOT_VROOT as u32), ObjType::VNodeL0, 0, 1, "making the L0 table")?;

    // The paging state: shadow tables and ranges in a frame init maps,
    // the shared page in the child's SEGCN, mapped in both.
    let shadow = mem.slot_alloc()?;
    p.shadow = Some(shadow);
    p.make(Dest::at(shadow), ObjType::Frame, SHADOW_BYTES, 1, "making the shadow frame")?;
    let shadow_va = own.map_frame(mem, shadow, SHADOW_BYTES, MapFlags::READ_WRITE)?;
    p.shadow_va = Some(shadow_va);
    let layout_frame = CapRef::slot(WIN_SEGCN, SEGCN_PAGING_STATE as u8);
    p.make(Dest::l2(WIN_SEGCN, SEGCN_PAGING_STATE), ObjType::Frame, PAGE, 1, "making the paging-state page")?;
    let layout_va = own.map_frame(mem, layout_frame, PAGE, MapFlags::READ_WRITE)?;
    p.layout_va = Some(layout_va);
    let tables = p.take(CHILD_TABLES * PAGE)?;
    // SAFETY: init mapped the shadow frame and the paging-state page
    // read-write just above; they stay mapped until `reclaim`, which drops
    // the ChildVSpace (the only user of both slices) before unmapping.
    let (shadow_mem, layout) = unsafe {
        (
            core::slice::from_raw_parts_mut(shadow_va as *mut core::mem::MaybeUninit<u8>, SHADOW_BYTES as usize),
            &mut *(layout_va as *mut Layout),
        )
    };
    let (pagecn, ram) = (p.pagecn, p.ram()?);
    p.vspace.start(pagecn, ram, tables, shadow_mem, layout)?;
    p.vspace.map_fixed(PAGING_STATE_VADDR, layout_frame, PAGE, MapFlags::READ)?;

    // The segments, each in a frame of its own with its permissions.
    for (i, seg) in prog.segments().iter().enumerate() {
        let (start, end) = seg.pages();
        let frame = CapRef::slot(WIN_SEGCN, i as u8);
        p.make(Dest::l2(WIN_SEGCN, i as u32), ObjType::Frame, end - start, 1, "making a segment frame")?;
        let file = &image[seg.offset as usize..(seg.offset + seg.filesz) as usize];
        let at = (seg.vaddr - start) as usize;
        fill(mem, own, frame, end - start, |m| {
            m[..at].fill(0);
            m[at..at + file.len()].copy_from_slice(file);
            m[at + file.len()..].fill(0);
        })?;
        let flags = match (seg.write, seg.exec) {
            (_, true) => MapFlags::READ | MapFlags::EXECUTE,
            (true, false) => MapFlags::READ_WRITE,
            (false, false) => MapFlags::READ,
        };
        p.vspace.map_fixed(start, frame, end - start, flags)?;
    }

    // The stack, with nothing mapped below it (a guard) or right above.
    let stack = CapRef::slot(WIN_SEGCN, SEGCN_STACK as u8);
    p.make(Dest::l2(WIN_SEGCN, SEGCN_STACK), ObjType::Frame, STACK_SIZE, 1, "making the stack")?;
    fill(mem, own, stack, STACK_SIZE, |m| m.fill(0))?;
    p.vspace.map_fixed(STACK_TOP - STACK_SIZE, stack, STACK_SIZE, MapFlags::READ_WRITE)?;

    // The arguments page (ch. 4.17).
    let argpage = CapRef::slot(WIN_TASKCN, TASKCN_SLOT_ARGSPAGE as u8);
    p.make(Dest::l2(WIN_TASKCN, TASKCN_SLOT_ARGSPAGE as u32), ObjType::Frame, PAGE, 1, "making the arguments page")?;
    fill(mem, own, argpage, PAGE, |m| m.copy_from_slice(args.as_bytes()))?;
    p.vspace.map_fixed(ARGS_VADDR, argpage, PAGE, MapFlags::READ)?;

    // The dispatcher and its frame (ch. 4.16), starting disabled at the
    // entry point with the arguments page in x0.
    let disp = CapRef::slot(WIN_TASKCN, TASKCN_SLOT_DISPATCHER as u8);
    let frame = CapRef::slot(WIN_TASKCN, TASKCN_SLOT_DISPFRAME as u8);
    p.make(Dest::l2(WIN_TASKCN, TASKCN_SLOT_DISPATCHER as u32), ObjType::Dispatcher, 0, 1, "making the dispatcher")?;
    p.make(
        Dest::l2(WIN_TASKCN, TASKCN_SLOT_DISPFRAME as u32),
        ObjType::Frame,
        CHILD_DISPFRAME_SIZE,
        1,
        "making the dispatcher frame",
    )?;
    let (name, name_len) = (p.name, p.name_len);
    let entry = prog.entry;
    fill(mem, own, frame, CHILD_DISPFRAME_SIZE, |m| {
        m.fill(0);
        let mut shared = DispatcherShared::default();
        shared.name[..name_len].copy_from_slice(&name[..name_len]);
        shared.disabled = 1;
        shared.disabled_save = RegisterSave { pc: entry, sp: STACK_TOP, spsr: SPSR_EL0T, ..RegisterSave::default() };
        shared.disabled_save.x[0] = ARGS_VADDR;
        // SAFETY: DispatcherShared is repr(C) plain integers; the frame is
        // larger than it.
        let bytes = unsafe {
            core::slice::from_raw_parts(&shared as *const DispatcherShared as *const u8, size_of::<DispatcherShared>())
        };
        m[..bytes.len()].copy_from_slice(bytes);
    })?;
    p.vspace.map_fixed(DISPFRAME_VADDR, frame, CHILD_DISPFRAME_SIZE, MapFlags::READ_WRITE)?;
    let kernel = |doing| move |code| Error::Kernel { code, doing };
    cap::copy(l1, Dest::l2(WIN_TASKCN, TASKCN_SLOT_ROOTCN as u32)).map_err(kernel("placing the root CNode"))?;
    cap::retype(disp, Dest::l2(WIN_TASKCN, TASKCN_SLOT_SELFEP as u32), ObjType::EndPointLmp, 0, 0, 1)
        .map_err(kernel("making the self endpoint"))?;
    p.make(Dest::l2(WIN_BASE_PAGE_CN, 0), ObjType::Ram, PAGE, BASE_PAGES, "filling BASE_PAGE_CN")?;

    if let Some(hook) = hook {
        failpoint()?;
        p.kept = hook(mem, &ChildCaps { index: p.index, taskcn: WIN_TASKCN })?;
    }
    let keep = mem.slot_alloc()?;
    p.disp = Some(keep);
    cap::copy(disp, Dest::at(keep)).map_err(kernel("copying the dispatcher"))?;
    Dispatcher(disp)
        .setup(l1, CapRef::slot(p.pagecn, PAGECN_SLOT_VROOT as u8), frame, DISPFRAME_VADDR)
        .map_err(kernel("setting the dispatcher up"))?;
    close_windows(mem, p)?;
    Dispatcher(keep).make_runnable().map_err(kernel("making the dispatcher runnable"))
}

/// Drops init's views of the CNodes only a spawn needs, and its copy of
/// the L1 CNode: the child holds the CNodes; init keeps none it does not
/// need.
fn close_windows(mem: &mut Memory, p: &mut Process) -> Result<(), Error> {
    if p.building {
        for w in [WIN_TASKCN, WIN_SEGCN, WIN_BASE_PAGE_CN] {
            match cap::delete(CapRef::l2_cnode(w)) {
                Ok(()) | Err(aos::kpi::ErrorCode::SlotEmpty) => {}
                Err(code) => return Err(Error::Kernel { code, doing: "closing a window" }),
            }
        }
        p.building = false;
    }
    if let Some(l1) = p.l1 {
        empty(mem, l1, "dropping init's copy of the L1 CNode")?;
        p.l1 = None;
    }
    Ok(())
}

/// Deletes what init's `slot` holds, if anything, and frees the slot.
fn empty(mem: &mut Memory, slot: CapRef, doing: &'static str) -> Result<(), Error> {
    match cap::delete(slot) {
        Ok(()) | Err(aos::kpi::ErrorCode::SlotEmpty) => {}
        Err(code) => return Err(Error::Kernel { code, doing }),
    }
    Ok(mem.slot_free(slot)?)
}

impl Process {
    /// Sets a vacant entry up for process `pid` named `name` (cut to what
    /// a dispatcher's name holds); nothing is made yet.
    pub fn reset(&mut self, pid: Pid, name: &str) {
        let n = name.floor_char_boundary(NAME_LEN - 1);
        self.name = [0; NAME_LEN];
        self.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        self.name_len = n;
        self.ram_bytes = 0;
        self.next = 0;
        self.index = crate::proc::index_of(pid);
        self.pagecn = pagecn_window(self.index);
    }

    /// Stops the process and gives everything it had back: init's
    /// mappings of its state, every capability retyped from its RAM (one
    /// revoke, in the kernel's bounded steps), init's slots, and the RAM.
    /// On an error the parts not yet undone stay recorded, and calling
    /// again continues.
    pub fn reclaim(&mut self, mem: &mut Memory, own: &mut OwnVSpace) -> Result<(), Error> {
        if let Some(d) = self.disp {
            // An ended dispatcher refuses; either way it runs no more.
            let _ = Dispatcher(d).stop();
        }
        self.vspace.stop();
        if let Some(va) = self.layout_va {
            own.unmap(mem, va, PAGE)?;
            self.layout_va = None;
        }
        if let Some(va) = self.shadow_va {
            own.unmap(mem, va, SHADOW_BYTES)?;
            self.shadow_va = None;
        }
        close_windows(mem, self)?;
        if let Some(ram) = self.ram {
            cap::revoke(ram).map_err(|code| Error::Kernel { code, doing: "revoking the process's RAM" })?;
        }
        // The revoke emptied init's slots that held the process's objects.
        if let Some(slot) = self.disp {
            empty(mem, slot, "dropping init's copy of the dispatcher")?;
            self.disp = None;
        }
        if let Some(slot) = self.shadow {
            empty(mem, slot, "dropping the shadow frame")?;
            self.shadow = None;
        }
        if let Some(slot) = self.kept {
            empty(mem, slot, "dropping what the spawn hook kept")?;
            self.kept = None;
        }
        if let Some(ram) = self.ram {
            mem.free(ram)?;
            self.ram = None;
        }
        Ok(())
    }
}
