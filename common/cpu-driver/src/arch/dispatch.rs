//! Dispatchers (book ch. 4.12–4.16): the dispatcher control block (DCB)
//! kept in each Dispatcher object, this core's run queue, and activation:
//! what happens to a domain's registers when it is switched away from and
//! back to, and when it faults.
//!
//! Owns the DCB layout and every DCB field, the run queue and the ASIDs.
//! It reads and writes the dispatcher frame (user memory) only through
//! [`Frame`], treating every value there as untrusted. Capability rules stay
//! in `invoke`; this module only installs copies into the DCB's own CTEs.
//!
//! A DCB lives in the 4 KiB of its Dispatcher object: the kernel's state in
//! the first half, three kernel-held CTEs (CSpace root, VSpace root, frame)
//! in the second. The two halves are never covered by one Rust reference:
//! the database rewrites CTE links through raw addresses at any time.

use core::cell::Cell;
use core::mem::offset_of;

use caps::mdb::{Id, Mdb};
use caps::types::CTE_SIZE;
use caps::{Cap, Rights};
use kpi::ErrorCode;
use kpi::dispatcher::{DispatcherShared, FpuSave, NAME_LEN, RegisterSave, SHARED_SIZE, UPCALL_RUN};
use kpi::invocation::DispatcherState;

use super::cspace::{self, Cte};
use super::mm;

/// Where the held CTEs start in a DCB, and which is which.
const HELD_BASE: u64 = 2048;
pub const HELD_ROOT: u64 = 0;
pub const HELD_VROOT: u64 = 1;
pub const HELD_FRAME: u64 = 2;
const HELD_COUNT: u64 = 3;

/// The kernel's half of a DCB.
#[repr(C)]
struct DcbState {
    /// FP/SIMD state, saved when another dispatcher takes the core.
    fpu: FpuSave,
    tpidr_el0: u64,
    state: DispatcherState,
    /// Run-queue links: physical addresses of DCBs, 0 for none.
    next: u64,
    prev: u64,
    /// TTBR0 while it runs: ASID << 48 | L0 table.
    ttbr0: u64,
    frame_va: u64,
    /// Raw `CapRef` of the slot the next capability sent to it goes to.
    recv_slot: u64,
    /// Switched away since it last ran: it gets a run upcall if enabled.
    upcall_due: bool,
    /// Set up but never made runnable: the first `MakeRunnable` loads the
    /// frame's disabled area.
    fresh: bool,
    name: [u8; NAME_LEN],
}

const _: () = assert!(core::mem::size_of::<DcbState>() as u64 <= HELD_BASE);
const _: () = assert!(HELD_BASE + HELD_COUNT * CTE_SIZE <= caps::types::DISPATCHER_SIZE);

/// A DCB, named by the physical address of its Dispatcher object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dcb(pub u64);

impl Dcb {
    /// The kernel half. Short-lived borrows only; never held across a
    /// database operation (which may write the held CTEs, outside it).
    fn st(self) -> &'static mut DcbState {
        // SAFETY: `self.0` is the base of a live Dispatcher object (the
        // callers get it from a Dispatcher or endpoint capability, or from
        // the run queue, which holds only live DCBs). Its first half is
        // kernel memory only this module touches, one event at a time.
        unsafe { &mut *(mm::phys(self.0) as *mut DcbState) }
    }

    /// Physical address of held CTE `which`.
    #[inline]
    pub fn held_pa(self, which: u64) -> u64 {
        debug_assert!(which < HELD_COUNT);
        // A DCB is a page-aligned object: the held CTEs lie inside it.
        self.0 | (HELD_BASE + which * CTE_SIZE)
    }

    pub fn held_id(self, which: u64) -> Id {
        cspace::id_of(self.held_pa(which))
    }

    /// Held capability `which`, by reference: the fast paths read a field
    /// or two, and a `Cap` copy is a call to `memcpy` in this soft-float
    /// kernel. Not kept across a database operation.
    #[inline]
    pub fn held(self, which: u64) -> &'static Cap {
        // SAFETY: a held CTE of a live DCB; the kernel runs one event at a
        // time and the caller drops the reference before changing it.
        &unsafe { cspace::cte_at(self.held_pa(which)) }.cap
    }

    /// Its CSpace root's CTE (where capability addresses resolve from).
    pub fn root_id(self) -> Id {
        self.held_id(HELD_ROOT)
    }

    pub fn state(self) -> DispatcherState {
        self.st().state
    }

    pub fn frame_va(self) -> u64 {
        self.st().frame_va
    }

    /// Where its registers are: the frame's disabled area (the book's
    /// resume slot) if its `disabled` flag is set, else the enabled area
    /// (the activation slot). The exception entry saves there by the same
    /// rule, and the exit restores from there (forcing EL0 in SPSR).
    ///
    /// The frame is user memory: every value read from it is untrusted, and
    /// on one core nothing else writes it while the kernel runs.
    pub fn regs(self) -> &'static mut RegisterSave {
        regs_at(self.frame_kva())
    }

    /// The frame's kernel address, which the exception entry reads.
    pub fn frame_kva(self) -> u64 {
        mm::phys(self.held(HELD_FRAME).base) as u64
    }

    pub fn name(self) -> &'static str {
        let n = &self.st().name;
        let len = n.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        core::str::from_utf8(&n[..len]).unwrap_or("?")
    }

    pub fn recv_slot(self) -> u64 {
        self.st().recv_slot
    }

    pub fn set_recv_slot(self, raw: u64) {
        self.st().recv_slot = raw;
    }

    /// Its dispatcher frame.
    #[inline]
    pub fn frame(self) -> Frame {
        Frame(self.held(HELD_FRAME).base)
    }
}

/// A dispatcher frame: user memory. Every read is volatile and every value
/// untrusted (the domain may write it at any time, from any thread).
#[derive(Clone, Copy)]
pub struct Frame(u64);

impl Frame {
    fn ptr(self) -> *mut DispatcherShared {
        mm::phys(self.0) as *mut DispatcherShared
    }

    /// A field of the shared part, by its offset.
    pub fn at<T>(self, offset: usize) -> *mut T {
        self.ptr().cast::<u8>().wrapping_add(offset).cast()
    }

    fn read<T: Copy>(p: *const T) -> T {
        // SAFETY: `p` points into a live frame of at least SHARED_SIZE bytes
        // (checked at Setup; the DCB holds a copy of the frame capability, so
        // the memory stays a frame while the DCB lives). Any bit pattern is a
        // valid value of the integer types read here.
        unsafe { core::ptr::read_volatile(p) }
    }

    fn write<T: Copy>(p: *mut T, v: T) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile(p, v) }
    }

    pub fn disabled(self) -> bool {
        Self::read(self.at::<u32>(offset_of!(DispatcherShared, disabled))) != 0
    }

    pub fn set_disabled(self, on: bool) {
        Self::write(self.at(offset_of!(DispatcherShared, disabled)), u32::from(on));
    }

    pub fn haswork(self) -> bool {
        Self::read(self.at::<u32>(offset_of!(DispatcherShared, haswork))) != 0
    }

    pub fn set_haswork(self) {
        Self::write(self.at(offset_of!(DispatcherShared, haswork)), 1);
    }

    fn upcall_entry(self) -> u64 {
        Self::read(self.at(offset_of!(DispatcherShared, upcall_entry)))
    }

    fn fault_entry(self) -> u64 {
        Self::read(self.at(offset_of!(DispatcherShared, fault_entry)))
    }

    fn upcall_stack(self) -> u64 {
        Self::read(self.at(offset_of!(DispatcherShared, upcall_stack)))
    }

    fn name(self) -> [u8; NAME_LEN] {
        Self::read(self.at(offset_of!(DispatcherShared, name)))
    }

    fn set_trap_save(self, s: &RegisterSave) {
        Self::write(self.at(offset_of!(DispatcherShared, trap_save)), *s);
    }

    /// The frame's bytes `[off, off + len)`, physical; `None` if outside.
    #[inline]
    pub fn region(self, frame_size: u64, off: u64, len: u64) -> Option<u64> {
        let end = off.checked_add(len)?;
        (off >= SHARED_SIZE as u64 && end <= frame_size).then_some(self.0 + off)
    }
}

/// The save area the `disabled` flag of the frame at kernel address `kva`
/// names (see [`Dcb::regs`]).
#[inline]
pub fn regs_at(kva: u64) -> &'static mut RegisterSave {
    let frame = kva as *mut DispatcherShared;
    // SAFETY: `kva` is a live dispatcher frame in the direct map (the DCB
    // holds a copy of its capability); its fields are plain integers, so any
    // contents are values; the reference lasts for this kernel entry, while
    // EL0 cannot run on this core.
    unsafe {
        if core::ptr::read_volatile(&raw const (*frame).disabled) != 0 {
            &mut (*frame).disabled_save
        } else {
            &mut (*frame).enabled_save
        }
    }
}

/// This core's runnable dispatchers, round robin. The running one, while
/// runnable, is at the head.
pub struct RunQueue {
    head: Cell<u64>,
    tail: Cell<u64>,
}

impl RunQueue {
    pub const fn new() -> Self {
        RunQueue { head: Cell::new(0), tail: Cell::new(0) }
    }

    pub fn head(&self) -> Option<Dcb> {
        match self.head.get() {
            0 => None,
            pa => Some(Dcb(pa)),
        }
    }

    pub fn push_back(&self, d: Dcb) {
        let st = d.st();
        st.next = 0;
        st.prev = self.tail.get();
        match self.tail.get() {
            0 => self.head.set(d.0),
            t => Dcb(t).st().next = d.0,
        }
        self.tail.set(d.0);
    }

    pub fn push_front(&self, d: Dcb) {
        let st = d.st();
        st.prev = 0;
        st.next = self.head.get();
        match self.head.get() {
            0 => self.tail.set(d.0),
            h => Dcb(h).st().prev = d.0,
        }
        self.head.set(d.0);
    }

    /// Takes `d` out; it must be in the queue.
    pub fn remove(&self, d: Dcb) {
        let (prev, next) = (d.st().prev, d.st().next);
        match prev {
            0 => self.head.set(next),
            p => Dcb(p).st().next = next,
        }
        match next {
            0 => self.tail.set(prev),
            n => Dcb(n).st().prev = prev,
        }
        d.st().next = 0;
        d.st().prev = 0;
    }

    /// The head goes to the back: the next one's turn.
    pub fn rotate(&self) {
        if let Some(h) = self.head()
            && self.tail.get() != h.0
        {
            self.remove(h);
            self.push_back(h);
        }
    }
}

/// Address-space identifiers: 8 bits (TCR_EL1.AS = 0); 0 is never handed
/// out. A fresh ASID's old TLB entries are flushed when it is taken, so
/// reuse after a dispatcher is gone is safe.
pub struct Asids(Cell<[u64; 4]>);

impl Asids {
    pub const fn new() -> Self {
        Asids(Cell::new([1, 0, 0, 0]))
    }

    pub fn alloc(&self) -> Result<u64, ErrorCode> {
        let mut bits = self.0.get();
        let (w, b) = bits
            .iter()
            .enumerate()
            .find_map(|(w, &word)| (word != u64::MAX).then(|| (w, (!word).trailing_zeros())))
            .ok_or(ErrorCode::OutOfAsids)?;
        bits[w] |= 1 << b;
        self.0.set(bits);
        let asid = (w * 64) as u64 + u64::from(b);
        // SAFETY: TLB maintenance only: drops whatever an earlier holder of
        // this ASID left cached.
        unsafe {
            core::arch::asm!("dsb ishst", "tlbi aside1, {}", "dsb ish", "isb", in(reg) asid << 48, options(nostack))
        };
        Ok(asid)
    }

    pub fn free(&self, asid: u64) {
        let mut bits = self.0.get();
        if asid != 0 && asid < 256 {
            bits[asid as usize / 64] &= !(1 << (asid % 64));
        }
        self.0.set(bits);
    }
}

/// What `setup` is given, already checked by the invocation.
pub struct SetupArgs {
    pub root: Cap,
    pub vroot: Cap,
    pub frame: Cap,
    pub frame_va: u64,
}

/// Fills a new DCB: copies of the three capabilities go into its held
/// CTEs, an ASID, its name from the frame. It stays `Stopped`.
pub fn setup(mdb: &mut Mdb, asids: &Asids, d: Dcb, a: SetupArgs) -> Result<(), ErrorCode> {
    if d.state() != DispatcherState::New {
        return Err(ErrorCode::DispatcherState);
    }
    if a.frame.size < SHARED_SIZE as u64 || !a.frame.rights.contains(Rights::WRITE) {
        return Err(ErrorCode::InvalidArgument);
    }
    let asid = asids.alloc()?;
    for (which, cap) in [(HELD_ROOT, a.root), (HELD_VROOT, a.vroot), (HELD_FRAME, a.frame)] {
        let copy = caps::retype::copy(&cap).map_err(|_| ErrorCode::InvalidArgument)?;
        install_held(mdb, d, which, copy);
    }
    let name = d.frame().name();
    let st = d.st();
    st.name = name.map(|b| if b == 0 || b.is_ascii_graphic() || b == b' ' { b } else { b'?' });
    st.ttbr0 = asid << 48 | a.vroot.base;
    st.frame_va = a.frame_va;
    st.state = DispatcherState::Stopped;
    st.recv_slot = 0;
    st.upcall_due = false;
    st.fresh = true;
    Ok(())
}

/// Puts `cap` into held CTE `which` of `d` (empty) and the database.
pub fn install_held(mdb: &mut Mdb, d: Dcb, which: u64, cap: Cap) {
    // SAFETY: a held CTE of a live DCB, empty (new objects are zeroed, and
    // teardown empties them).
    unsafe { cspace::put(mdb, d.held_pa(which), Cte::held(cap)) };
}

/// Sets the kernel-made init's fields that `setup` would: used at boot,
/// where the held CTEs are filled by the boot code.
pub fn setup_boot(d: Dcb, asid: u64, vroot: u64, frame_va: u64, name: &str) {
    let st = d.st();
    let n = name.as_bytes();
    let len = n.len().min(NAME_LEN);
    st.name = [0; NAME_LEN];
    st.name[..len].copy_from_slice(&n[..len]);
    st.ttbr0 = asid << 48 | vroot;
    st.frame_va = frame_va;
    st.state = DispatcherState::Stopped;
}

/// The state init starts in: the frame's disabled area, `disabled` set.
pub fn set_initial(d: Dcb, s: RegisterSave) {
    d.frame().set_disabled(true);
    *d.regs() = s;
}

pub fn set_state(d: Dcb, s: DispatcherState) {
    d.st().state = s;
}

/// Marks `d` as switched away from: its next run may be an upcall.
pub fn mark_upcall_due(d: Dcb) {
    d.st().upcall_due = true;
}

/// Before the first run of a dispatcher set up by `Setup`: it starts from
/// the state its creator wrote into the frame's disabled area, with
/// `disabled` set. Later `MakeRunnable`s continue where it stopped.
pub fn first_start(d: Dcb) {
    if core::mem::take(&mut d.st().fresh) {
        d.frame().set_disabled(true);
    }
}

/// Prepares `d` to run now (book ch. 4.14): if it was switched away from
/// while enabled (its state is in the enabled area) and has an upcall
/// entry, it is upcalled with `disabled` set; otherwise it continues from
/// the area its flag names.
pub fn activate(d: Dcb) {
    let st = d.st();
    if !st.upcall_due {
        return;
    }
    st.upcall_due = false;
    let f = d.frame();
    let entry = f.upcall_entry();
    if f.disabled() || entry == 0 {
        return;
    }
    enter(d, entry, [st.frame_va, UPCALL_RUN, 0]);
}

/// Sets `disabled` and makes the disabled area a call of `entry` with
/// `args` on the upcall stack (the enabled area keeps what was running).
fn enter(d: Dcb, entry: u64, args: [u64; 3]) {
    let f = d.frame();
    let stack = f.upcall_stack();
    f.set_disabled(true);
    let r = d.regs();
    r.x[..3].copy_from_slice(&args);
    r.pc = entry;
    r.sp = stack;
    r.spsr = 0;
}

/// Delivers a fault to `d`'s fault entry if it has one and is enabled: the
/// state at the fault goes to `trap_save`. `false` if the domain cannot
/// handle it (the caller ends it).
pub fn deliver_fault(d: Dcb, esr: u64, far: u64) -> bool {
    let f = d.frame();
    let entry = f.fault_entry();
    if f.disabled() || entry == 0 {
        return false;
    }
    f.set_trap_save(d.regs());
    enter(d, entry, [d.st().frame_va, esr, far]);
    true
}

/// The save area of `d`'s own frame that user address `va` names, if it
/// names one exactly: its offset in the frame.
pub fn frame_area(d: Dcb, va: u64) -> Option<usize> {
    let off = va.checked_sub(d.frame_va())?;
    [
        offset_of!(DispatcherShared, enabled_save),
        offset_of!(DispatcherShared, disabled_save),
        offset_of!(DispatcherShared, trap_save),
    ]
    .into_iter()
    .find(|&a| a as u64 == off)
}

/// `Syscall::Resume` of a save area of `d`'s own frame (see
/// [`frame_area`]): read through the kernel's mapping, not the domain's,
/// and not copied at all if it is the enabled area.
pub fn resume_from_frame(d: Dcb, area: usize) {
    let f = d.frame();
    if area == offset_of!(DispatcherShared, enabled_save) {
        f.set_disabled(false);
    } else {
        resume_with(d, Frame::read(f.at(area)));
    }
}

/// Continues `d` with a state its runtime chose (`Syscall::Resume`), with
/// `disabled` cleared: the state goes to the enabled area.
pub fn resume_with(d: Dcb, s: RegisterSave) {
    d.frame().set_disabled(false);
    *d.regs() = s;
}

/// Makes `d` the running dispatcher's successor on this core's hardware:
/// FP/SIMD and TLS registers, and its address space.
pub fn switch_hw(from: Option<Dcb>, to: Dcb) {
    if let Some(f) = from {
        let st = f.st();
        // SAFETY: saves this core's FP/SIMD registers into the outgoing
        // DCB, memory the kernel owns; the kernel itself never uses them.
        unsafe { fpu_save(&mut st.fpu) };
        st.tpidr_el0 = aarch64_cpu::registers::TPIDR_EL0.get();
    }
    let st = to.st();
    // SAFETY: loads the incoming DCB's saved FP/SIMD state; the kernel is
    // built soft-float, so nothing of its own is lost.
    unsafe { fpu_restore(&st.fpu) };
    aarch64_cpu::registers::TPIDR_EL0.set(st.tpidr_el0);
    // EL0 reads its dispatcher frame's address here (read-only to it), as
    // Barrelfish's `curdispatcher()` does.
    aarch64_cpu::registers::TPIDRRO_EL0.set(st.frame_va);
    mm::switch_user_tables(st.ttbr0);
}

/// Ends `d`'s life on this core's scheduler side: its ASID is free again.
pub fn release_asid(asids: &Asids, d: Dcb) {
    asids.free(d.st().ttbr0 >> 48);
    d.st().ttbr0 = 0;
}

use aarch64_cpu::registers::{Readable, Writeable};

unsafe extern "C" {
    fn fpu_save(to: *mut FpuSave);
    fn fpu_restore(from: *const FpuSave);
}

// The kernel is built soft-float; these two are the only kernel code that
// touches the FP/SIMD registers, hence the explicit extension.
core::arch::global_asm!(
    r#"
.arch_extension fp
.arch_extension simd
.section .text.fpu, "ax"
.global fpu_save
fpu_save:
    stp     q0, q1, [x0, #0]
    stp     q2, q3, [x0, #32]
    stp     q4, q5, [x0, #64]
    stp     q6, q7, [x0, #96]
    stp     q8, q9, [x0, #128]
    stp     q10, q11, [x0, #160]
    stp     q12, q13, [x0, #192]
    stp     q14, q15, [x0, #224]
    stp     q16, q17, [x0, #256]
    stp     q18, q19, [x0, #288]
    stp     q20, q21, [x0, #320]
    stp     q22, q23, [x0, #352]
    stp     q24, q25, [x0, #384]
    stp     q26, q27, [x0, #416]
    stp     q28, q29, [x0, #448]
    stp     q30, q31, [x0, #480]
    mrs     x1, fpcr
    mrs     x2, fpsr
    add     x0, x0, #512
    stp     x1, x2, [x0]
    ret
.global fpu_restore
fpu_restore:
    ldp     q0, q1, [x0, #0]
    ldp     q2, q3, [x0, #32]
    ldp     q4, q5, [x0, #64]
    ldp     q6, q7, [x0, #96]
    ldp     q8, q9, [x0, #128]
    ldp     q10, q11, [x0, #160]
    ldp     q12, q13, [x0, #192]
    ldp     q14, q15, [x0, #224]
    ldp     q16, q17, [x0, #256]
    ldp     q18, q19, [x0, #288]
    ldp     q20, q21, [x0, #320]
    ldp     q22, q23, [x0, #352]
    ldp     q24, q25, [x0, #384]
    ldp     q26, q27, [x0, #416]
    ldp     q28, q29, [x0, #448]
    ldp     q30, q31, [x0, #480]
    add     x0, x0, #512
    ldp     x1, x2, [x0]
    msr     fpcr, x1
    msr     fpsr, x2
    ret
"#
);
