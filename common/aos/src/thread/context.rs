//! A thread's saved registers, the switch between two threads, and the
//! run upcall's entry and exits: the only register-level code of the thread
//! runtime.
//!
//! Owns the layout of the context record ([`Context`]), the assembly that
//! saves one record and enters another, the first frame of a new thread,
//! the first and last instructions of the run upcall, and TPIDR_EL0. It
//! decides nothing: `runtime` says which records to switch between, and
//! calls in here only with upcalls disabled and no reference to the runtime
//! state live. It may not touch the scheduler or the frame's control words.
//!
//! The record is one shape for every kind of stop, a [`RegisterSave`] as
//! the kernel lays it out plus the FP/SIMD state and TPIDR_EL0 ([`FpTls`]),
//! and its `kind` says which parts are live:
//!
//! - [`ContextKind::Cooperative`]: the thread stopped in a thread call, so
//!   only what AAPCS64 makes callee-saved is live — x19–x29, x30 (the return
//!   address, also written to `pc`), sp, d8–d15 (the low halves of q8–q15),
//!   FPCR, FPSR — plus TPIDR_EL0. Entering it loads those and returns into
//!   the call, which then enables upcalls itself.
//! - [`ContextKind::Preempted`]: the kernel interrupted the thread while
//!   upcalls were enabled; the run upcall copied the frame's enabled save
//!   area and the still-live FP/SIMD registers and TPIDR_EL0 into the whole
//!   record. Entering it cannot be a `ret`: every register, sp and pc must
//!   become live at once, with upcalls enabled again in the same step. So
//!   the FP/SIMD state and TPIDR_EL0 are loaded first (the kernel leaves
//!   them alone), and the kernel's `Resume` syscall loads the rest and
//!   clears `disabled` atomically with the jump: no user-level critical
//!   section exists that an upcall could cut in two.
//!
//! Saving a thread in a switch always makes its record `Cooperative`; only
//! the run upcall makes one `Preempted`.

use core::mem::offset_of;

use kpi::dispatcher::{FpuSave, RegisterSave};

/// How a stopped thread's record must be entered (see the module comment).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContextKind {
    /// Stopped in a thread call: callee-saved registers only.
    Cooperative = 0,
    /// Interrupted by the kernel: every register.
    #[cfg_attr(not(target_os = "none"), expect(dead_code, reason = "made by the run upcall, on the target only"))]
    Preempted = 1,
}

/// What the kernel leaves live when it enters the run upcall: the
/// interrupted thread's FP/SIMD registers and TLS pointer. `repr(C)`: the
/// assembly below uses its offsets.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct FpTls {
    fpu: FpuSave,
    tpidr: u64,
}

/// A stopped thread's registers. `repr(C)`: the assembly below uses the
/// offsets of its fields.
#[repr(C)]
pub(crate) struct Context {
    kind: ContextKind,
    regs: RegisterSave,
    fp: FpTls,
}

impl Context {
    /// A record nothing has been saved in yet.
    pub const EMPTY: Context = Context {
        kind: ContextKind::Cooperative,
        regs: RegisterSave { x: [0; 31], sp: 0, pc: 0, spsr: 0 },
        fp: FpTls { fpu: FpuSave { q: [0; 32], fpcr: 0, fpsr: 0 }, tpidr: 0 },
    };

    /// The record of a thread that has not run: switching to it enters
    /// `aos_thread_trampoline` on the empty stack `stack_top` (16-byte
    /// aligned), with TPIDR_EL0 = `tls` and the default FP environment
    /// (FPCR 0: round to nearest, no traps).
    pub fn start(stack_top: usize, tls: usize) -> Context {
        let mut c = Context::EMPTY;
        let entry = trampoline();
        c.regs.x[30] = entry;
        c.regs.pc = entry;
        c.regs.sp = stack_top as u64;
        c.fp.tpidr = tls as u64;
        c
    }
}

/// Stores q0–q31, FPCR, FPSR and TPIDR_EL0 at `[$base]` (an [`FpTls`]),
/// using `$t1`, `$t2` as scratch.
#[cfg(target_os = "none")]
#[rustfmt::skip]
macro_rules! fp_tls_save {
    ($base:literal, $t1:literal, $t2:literal) => {
        concat!(
            "stp q0, q1, [", $base, ", #0]\n",
            "stp q2, q3, [", $base, ", #32]\n",
            "stp q4, q5, [", $base, ", #64]\n",
            "stp q6, q7, [", $base, ", #96]\n",
            "stp q8, q9, [", $base, ", #128]\n",
            "stp q10, q11, [", $base, ", #160]\n",
            "stp q12, q13, [", $base, ", #192]\n",
            "stp q14, q15, [", $base, ", #224]\n",
            "stp q16, q17, [", $base, ", #256]\n",
            "stp q18, q19, [", $base, ", #288]\n",
            "stp q20, q21, [", $base, ", #320]\n",
            "stp q22, q23, [", $base, ", #352]\n",
            "stp q24, q25, [", $base, ", #384]\n",
            "stp q26, q27, [", $base, ", #416]\n",
            "stp q28, q29, [", $base, ", #448]\n",
            "stp q30, q31, [", $base, ", #480]\n",
            "mrs ", $t1, ", fpcr\n",
            "mrs ", $t2, ", fpsr\n",
            "str ", $t1, ", [", $base, ", #512]\n",
            "str ", $t2, ", [", $base, ", #520]\n",
            "mrs ", $t1, ", tpidr_el0\n",
            "str ", $t1, ", [", $base, ", #528]\n",
        )
    };
}

/// Loads what `fp_tls_save!` stored.
#[cfg(target_os = "none")]
#[rustfmt::skip]
macro_rules! fp_tls_load {
    ($base:literal, $t1:literal, $t2:literal) => {
        concat!(
            "ldp q0, q1, [", $base, ", #0]\n",
            "ldp q2, q3, [", $base, ", #32]\n",
            "ldp q4, q5, [", $base, ", #64]\n",
            "ldp q6, q7, [", $base, ", #96]\n",
            "ldp q8, q9, [", $base, ", #128]\n",
            "ldp q10, q11, [", $base, ", #160]\n",
            "ldp q12, q13, [", $base, ", #192]\n",
            "ldp q14, q15, [", $base, ", #224]\n",
            "ldp q16, q17, [", $base, ", #256]\n",
            "ldp q18, q19, [", $base, ", #288]\n",
            "ldp q20, q21, [", $base, ", #320]\n",
            "ldp q22, q23, [", $base, ", #352]\n",
            "ldp q24, q25, [", $base, ", #384]\n",
            "ldp q26, q27, [", $base, ", #416]\n",
            "ldp q28, q29, [", $base, ", #448]\n",
            "ldp q30, q31, [", $base, ", #480]\n",
            "ldr ", $t1, ", [", $base, ", #512]\n",
            "ldr ", $t2, ", [", $base, ", #520]\n",
            "msr fpcr, ", $t1, "\n",
            "msr fpsr, ", $t2, "\n",
            "ldr ", $t1, ", [", $base, ", #528]\n",
            "msr tpidr_el0, ", $t1, "\n",
        )
    };
}

// The macros' fixed offsets, and the assembly's pairs: sp and pc after
// x30, fpsr after fpcr.
const _: () = {
    assert!(offset_of!(FpTls, fpu) == 0 && offset_of!(FpuSave, q) == 0);
    assert!(offset_of!(FpuSave, fpcr) == 512 && offset_of!(FpuSave, fpsr) == 520);
    assert!(offset_of!(FpTls, tpidr) == 528);
    assert!(size_of::<FpTls>().is_multiple_of(16), "the upcall keeps one on its stack");
    assert!(kpi::dispatcher::SAVE_SP == 31 * 8 && kpi::dispatcher::SAVE_PC == 32 * 8);
};

#[cfg(target_os = "none")]
core::arch::global_asm!(
    r#"
/* aos_thread_switch(save: *mut Context, load: *const Context): saves the
 * caller's callee-saved state in `save` (a Cooperative record), then enters
 * `load` as aos_thread_enter does. x2-x4 are caller-saved scratch. */
.section .text.aos_thread_switch, "ax"
.global aos_thread_switch
.balign 4
aos_thread_switch:
    str     xzr, [x0, #{KIND}]          /* Cooperative: resumed by a ret */
    add     x2, x0, #{X19}
    stp     x19, x20, [x2, #0]
    stp     x21, x22, [x2, #16]
    stp     x23, x24, [x2, #32]
    stp     x25, x26, [x2, #48]
    stp     x27, x28, [x2, #64]
    stp     x29, x30, [x2, #80]
    mov     x3, sp
    stp     x3, x30, [x2, #96]          /* sp, then pc = where it resumes */
    add     x2, x0, #{Q8}
    str     d8, [x2, #0]
    str     d9, [x2, #16]
    str     d10, [x2, #32]
    str     d11, [x2, #48]
    str     d12, [x2, #64]
    str     d13, [x2, #80]
    str     d14, [x2, #96]
    str     d15, [x2, #112]
    mrs     x3, fpcr
    mrs     x4, fpsr
    add     x2, x0, #{FPCR}
    stp     x3, x4, [x2]
    mrs     x3, tpidr_el0
    str     x3, [x0, #{TPIDR}]
    mov     x0, x1
    /* fall through */

/* aos_thread_enter(load: *const Context) -> !: runs the thread of `load`.
 * Cooperative: load its callee-saved state and return into its switch.
 * Preempted: aos_thread_resume on its FP/TLS part and its RegisterSave. */
.global aos_thread_enter
aos_thread_enter:
    ldr     x2, [x0, #{KIND}]
    cbnz    x2, 1f
    add     x2, x0, #{X19}
    ldp     x19, x20, [x2, #0]
    ldp     x21, x22, [x2, #16]
    ldp     x23, x24, [x2, #32]
    ldp     x25, x26, [x2, #48]
    ldp     x27, x28, [x2, #64]
    ldp     x29, x30, [x2, #80]
    ldr     x3, [x2, #96]
    mov     sp, x3
    add     x2, x0, #{Q8}
    ldr     d8, [x2, #0]
    ldr     d9, [x2, #16]
    ldr     d10, [x2, #32]
    ldr     d11, [x2, #48]
    ldr     d12, [x2, #64]
    ldr     d13, [x2, #80]
    ldr     d14, [x2, #96]
    ldr     d15, [x2, #112]
    add     x2, x0, #{FPCR}
    ldp     x3, x4, [x2]
    msr     fpcr, x3
    msr     fpsr, x4
    ldr     x3, [x0, #{TPIDR}]
    msr     tpidr_el0, x3
    ret
1:  add     x1, x0, #{REGS}
    add     x0, x0, #{FP}
    /* fall through */

/* aos_thread_resume(fp: *const FpTls, regs: *const RegisterSave) -> !:
 * loads the FP/SIMD registers and TPIDR_EL0, then Resume: the kernel loads
 * every other register from `regs` and clears `disabled` as it returns. */
.global aos_thread_resume
aos_thread_resume:
"#,
    fp_tls_load!("x0", "x2", "x3"),
    r#"
    mov     x0, #{RESUME}
    svc     #{SVC}
    brk     #1                          /* Resume refused our own record */

/* The run upcall's entry: x0 = frame, x1 = reason, sp = the upcall stack,
 * upcalls disabled. The interrupted thread's FP/SIMD registers and
 * TPIDR_EL0 are still live: they go onto this stack before any Rust code
 * can use them, and x2 points there. x3, x4 are in the enabled save area. */
.section .text.aos_thread_upcall, "ax"
.global aos_thread_upcall
.balign 4
aos_thread_upcall:
    sub     sp, sp, #{FP_SIZE}
"#,
    fp_tls_save!("sp", "x3", "x4"),
    r#"
    mov     x2, sp
    mov     x29, xzr
    mov     x30, xzr
    bl      aos_thread_run_upcall
    brk     #2

/* A new thread's first instruction: no caller frame (x29 = 0, lr = 0 end
 * backtraces), then the runtime's entry, which never returns. */
.section .text.aos_thread_trampoline, "ax"
.global aos_thread_trampoline
.balign 4
aos_thread_trampoline:
    mov     x29, xzr
    mov     x30, xzr
    bl      aos_thread_start
    brk     #0
"#,
    KIND = const offset_of!(Context, kind),
    REGS = const offset_of!(Context, regs),
    FP = const offset_of!(Context, fp),
    X19 = const offset_of!(Context, regs) + 19 * 8,
    Q8 = const offset_of!(Context, fp) + 8 * 16,
    FPCR = const offset_of!(Context, fp) + offset_of!(FpuSave, fpcr),
    TPIDR = const offset_of!(Context, fp) + offset_of!(FpTls, tpidr),
    FP_SIZE = const size_of::<FpTls>(),
    RESUME = const kpi::syscall::Syscall::Resume as u64,
    SVC = const kpi::syscall::SVC_IMMEDIATE,
);

#[cfg(target_os = "none")]
unsafe extern "C" {
    fn aos_thread_switch(save: *mut Context, load: *const Context);
    fn aos_thread_enter(load: *const Context) -> !;
    fn aos_thread_resume(fp: *const FpTls, regs: *const RegisterSave) -> !;
    fn aos_thread_upcall();
    fn aos_thread_trampoline();
}

fn trampoline() -> u64 {
    #[cfg(target_os = "none")]
    return aos_thread_trampoline as *const () as usize as u64;
    #[cfg(not(target_os = "none"))]
    0
}

/// The address the kernel enters for a run upcall (0 on the host: none).
pub(crate) fn upcall_entry() -> u64 {
    #[cfg(target_os = "none")]
    return aos_thread_upcall as *const () as usize as u64;
    #[cfg(not(target_os = "none"))]
    0
}

/// Saves the calling thread in `save` and runs the thread of `load`, of
/// either kind; returns when something later enters `save` again (at
/// once if they are the same record).
///
/// # Safety
///
/// Both point to live records; upcalls are disabled and no
/// reference to either record (or to anything the other thread's stack
/// holds) is live. `load` was filled by [`Context::start`], by a switch that
/// saved it, or by [`save_preempted`].
pub(crate) unsafe fn switch(save: *mut Context, load: *const Context) {
    #[cfg(target_os = "none")]
    // SAFETY: the caller guarantees both records are valid and unaliased;
    // `aos_thread_switch` preserves the callee-saved state AAPCS64 requires,
    // so to the compiler it is an ordinary call (which may touch any memory,
    // as the threads that run in between do).
    unsafe {
        aos_thread_switch(save, load)
    }
    #[cfg(not(target_os = "none"))]
    // On the host `thread::init` refuses, so no decision ever asks for a
    // switch and this is never reached.
    let _ = (save, load);
}

/// Runs the thread of `load` from the run upcall, abandoning the upcall's
/// stack.
///
/// # Safety
///
/// As for [`switch`]'s `load`; called from the run upcall (upcalls
/// disabled), whose state nothing needs any more.
#[cfg(target_os = "none")]
pub(crate) unsafe fn enter(load: *const Context) -> ! {
    // SAFETY: the caller guarantees the record is valid and unaliased; the
    // upcall's frames are never returned to.
    unsafe { aos_thread_enter(load) }
}

/// Continues the thread the run upcall interrupted, exactly as it was:
/// `fp` is what the upcall's entry saved, `regs` the enabled save area.
///
/// # Safety
///
/// Called from the run upcall with both pointing to that upcall's state.
#[cfg(target_os = "none")]
pub(crate) unsafe fn resume(fp: *const FpTls, regs: *const RegisterSave) -> ! {
    // SAFETY: both are valid; loading them and resuming is what the
    // interrupted thread expects to happen to it.
    unsafe { aos_thread_resume(fp, regs) }
}

/// Fills `save` as the record of a thread the run upcall interrupted: its
/// general-purpose state from the enabled save area `regs`, the rest from
/// what the upcall's entry saved (`fp`).
///
/// # Safety
///
/// `save` is the live record of that thread, unaliased; upcalls disabled.
#[cfg(target_os = "none")]
pub(crate) unsafe fn save_preempted(save: *mut Context, regs: &RegisterSave, fp: &FpTls) {
    // SAFETY: the caller guarantees `save` is valid and nothing else uses it.
    unsafe {
        (*save).kind = ContextKind::Preempted;
        (*save).regs = *regs;
        (*save).fp = *fp;
    }
}

/// TPIDR_EL0: the running thread's TLS pointer (0 on the host).
pub(crate) fn tpidr() -> usize {
    #[cfg(target_os = "none")]
    {
        let v: usize;
        // SAFETY: reading TPIDR_EL0 has no side effects.
        unsafe { core::arch::asm!("mrs {}, tpidr_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }
    #[cfg(not(target_os = "none"))]
    0
}

/// Sets TPIDR_EL0 for the running thread (switches set it from the record).
pub(crate) fn set_tpidr(v: usize) {
    #[cfg(target_os = "none")]
    // SAFETY: TPIDR_EL0 is an EL0 scratch register nothing but this runtime
    // gives a meaning to.
    unsafe {
        core::arch::asm!("msr tpidr_el0, {}", in(reg) v, options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(target_os = "none"))]
    let _ = v;
}
