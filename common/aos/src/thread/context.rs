//! A thread's saved registers and the switch between two threads: the only
//! register-level code of the thread runtime.
//!
//! Owns the layout of the context record ([`Context`]), the assembly that
//! saves one record and loads another, the first frame of a new thread, and
//! TPIDR_EL0. It decides nothing: `runtime` says which records to switch
//! between, and calls [`switch`] only with upcalls disabled and no reference
//! to the runtime state live. It may not touch the scheduler.
//!
//! The record is one shape for every kind of stop, a [`RegisterSave`] and an
//! [`FpuSave`] as the kernel lays them out, so that a second kind fits
//! without moving anything:
//!
//! - [`ContextKind::Cooperative`] (the only kind today): the thread stopped
//!   in a thread call, so only what AAPCS64 makes callee-saved is live —
//!   x19–x29, x30 (the return address, also written to `pc`), sp, d8–d15
//!   (the low halves of q8–q15), FPCR, FPSR — plus TPIDR_EL0. Everything else
//!   in the record is stale. [`switch`] loads it and returns into the call.
//! - `Preempted` (planned, CPU driver III): the kernel preempted the thread
//!   while upcalls were enabled and the run upcall copied the enabled save
//!   area and the FPU state into the whole record. Switching to it cannot be
//!   a `ret`: every register, sp and pc must become live at once, which is
//!   the kernel's `Resume` syscall on the record's `regs` and `fpu` (it also
//!   re-enables upcalls atomically). [`switch`] will branch on `kind`; saving
//!   a thread that runs again always makes it `Cooperative`.

use core::mem::offset_of;

use kpi::dispatcher::{FpuSave, RegisterSave};

/// How a stopped thread's record must be resumed (see the module comment).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContextKind {
    /// Stopped in a thread call: callee-saved registers only.
    Cooperative = 0,
}

/// A stopped thread's registers. `repr(C)`: the assembly below uses the
/// offsets of its fields.
#[repr(C)]
pub(crate) struct Context {
    kind: ContextKind,
    regs: RegisterSave,
    fpu: FpuSave,
    tpidr: u64,
}

impl Context {
    /// A record nothing has been saved in yet.
    pub const EMPTY: Context = Context {
        kind: ContextKind::Cooperative,
        regs: RegisterSave { x: [0; 31], sp: 0, pc: 0, spsr: 0 },
        fpu: FpuSave { q: [0; 32], fpcr: 0, fpsr: 0 },
        tpidr: 0,
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
        c.tpidr = tls as u64;
        c
    }
}

#[cfg(target_os = "none")]
core::arch::global_asm!(
    r#"
/* aos_thread_switch(save: *mut Context, load: *const Context): saves the
 * caller's callee-saved state in `save`, loads `load`'s and returns into
 * the thread it belongs to. x2-x4 are caller-saved scratch. */
.section .text.aos_thread_switch, "ax"
.global aos_thread_switch
.balign 4
aos_thread_switch:
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

    add     x2, x1, #{X19}
    ldp     x19, x20, [x2, #0]
    ldp     x21, x22, [x2, #16]
    ldp     x23, x24, [x2, #32]
    ldp     x25, x26, [x2, #48]
    ldp     x27, x28, [x2, #64]
    ldp     x29, x30, [x2, #80]
    ldr     x3, [x2, #96]
    mov     sp, x3
    add     x2, x1, #{Q8}
    ldr     d8, [x2, #0]
    ldr     d9, [x2, #16]
    ldr     d10, [x2, #32]
    ldr     d11, [x2, #48]
    ldr     d12, [x2, #64]
    ldr     d13, [x2, #80]
    ldr     d14, [x2, #96]
    ldr     d15, [x2, #112]
    add     x2, x1, #{FPCR}
    ldp     x3, x4, [x2]
    msr     fpcr, x3
    msr     fpsr, x4
    ldr     x3, [x1, #{TPIDR}]
    msr     tpidr_el0, x3
    ret

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
    X19 = const offset_of!(Context, regs) + 19 * 8,
    Q8 = const offset_of!(Context, fpu) + 8 * 16,
    FPCR = const offset_of!(Context, fpu) + offset_of!(FpuSave, fpcr),
    TPIDR = const offset_of!(Context, tpidr),
);

// The assembly stores sp and pc as a pair after x30, and fpsr after fpcr.
const _: () = {
    assert!(kpi::dispatcher::SAVE_SP == 31 * 8 && kpi::dispatcher::SAVE_PC == 32 * 8);
    assert!(offset_of!(FpuSave, fpsr) == offset_of!(FpuSave, fpcr) + 8);
    assert!(offset_of!(FpuSave, q) == 0);
};

#[cfg(target_os = "none")]
unsafe extern "C" {
    fn aos_thread_switch(save: *mut Context, load: *const Context);
    fn aos_thread_trampoline();
}

fn trampoline() -> u64 {
    #[cfg(target_os = "none")]
    return aos_thread_trampoline as *const () as usize as u64;
    #[cfg(not(target_os = "none"))]
    0
}

/// Saves the calling thread in `save` and runs the thread of `load`;
/// returns when some later switch loads `save` again (at once if they are
/// the same record).
///
/// # Safety
///
/// Both point to live records; upcalls are disabled and no reference to
/// either record (or to anything the other thread's stack holds) is live.
/// `load` was filled by [`Context::start`] or by a switch that saved it.
pub(crate) unsafe fn switch(save: *mut Context, load: *const Context) {
    #[cfg(target_os = "none")]
    // SAFETY: the caller guarantees both records are valid and unaliased;
    // `aos_thread_switch` preserves the callee-saved state AAPCS64 requires,
    // so to the compiler it is an ordinary call (which may touch any memory,
    // as the threads that run in between do).
    unsafe {
        match (*load).kind {
            ContextKind::Cooperative => aos_thread_switch(save, load),
        }
    }
    #[cfg(not(target_os = "none"))]
    // On the host `thread::init` refuses, so no decision ever asks for a
    // switch and this is never reached.
    let _ = (save, load);
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
