//! Everything that enters the kernel after boot: syscalls, faults and
//! interrupts from EL0, and (as bugs) exceptions from EL1. Each is handled
//! to completion; the return value says which domain state to resume.
//!
//! User input is never trusted: syscall numbers, pointers and lengths are
//! checked, and a faulting domain is reported and ended — the kernel goes on.

use aarch64_cpu::registers::{ESR_EL1, FAR_EL1, Readable};
use caps::ObjType;
use kpi::ErrorCode;
use kpi::dispatcher::RegisterSave;
use kpi::invocation::{CapRef, Command, DispatcherState};
use kpi::syscall::{PRINT_MAX, SVC_IMMEDIATE, Syscall};

use super::core::this_core;
use super::dispatch::{self, Dcb};
use cpu_driver::esr::{Class, Syndrome};
use cpu_driver::exit_status;
use platform::gic;

use super::{console, invoke, irq, lmp, mm, power};

/// Vector index bits: 0 sync, 1 IRQ, 2 FIQ, 3 SError; +8 from EL0 AArch64,
/// +12 from EL0 AArch32, below 8 from EL1.
const KIND_SYNC: u64 = 0;
const KIND_IRQ: u64 = 1;
const KIND_FIQ: u64 = 2;

/// Entry from EL0. The assembly has already saved the dispatcher's
/// registers into its frame (`PerCore::current_regs`).
#[unsafe(no_mangle)]
extern "C" fn el0_exception(kind: u64) -> *const RegisterSave {
    let core = this_core();
    let cur = core.current();
    match (kind >= 12, kind & 3) {
        (false, KIND_SYNC) => sync(cur),
        (false, KIND_IRQ) => interrupt(true, cur),
        (false, KIND_FIQ) => {}
        _ => {
            let esr = ESR_EL1.get();
            end(cur, "SError or AArch32 exception", Syndrome(esr));
        }
    }
    core.schedule()
}

fn sync(cur: Dcb) {
    let core = this_core();
    let esr = Syndrome(ESR_EL1.get());
    if esr.class() != Class::Svc64 {
        if !dispatch::deliver_fault(cur, esr.0, FAR_EL1.get()) {
            end(cur, "faulted", esr);
        }
        return;
    }
    if esr.svc_immediate() != SVC_IMMEDIATE {
        end(cur, "used an unknown SVC immediate", esr);
        return;
    }
    let save = core.current_regs();
    let (nr, a1, a2) = (save.x[0], save.x[1], save.x[2]);
    let result: Result<u64, ErrorCode> = match Syscall::from_raw(nr) {
        Some(Syscall::Null) => Ok(0),
        Some(Syscall::Print) => print(a1, a2).map(|()| a2),
        Some(Syscall::Yield) => yield_to(cur, a1),
        Some(Syscall::Exit) => {
            log::info!(
                "domain '{}' exited with status {} after {} timer interrupts",
                cur.name(),
                a1 as i64,
                core.ticks.get()
            );
            core.unqueue(cur, DispatcherState::Ended);
            return;
        }
        Some(Syscall::Invoke) => {
            let args: [u64; 7] = core::array::from_fn(|i| save.x[i + 1]);
            let r = if args[1] & 0xff == Command::LmpSend as u64 {
                lmp::send(cur, &args, &save.x[4..4 + kpi::lmp::LMP_WORDS]).map(|()| [0; 3])
            } else {
                invoke::invoke(&mut core.mdb.borrow_mut(), cur, &core.resume, &args)
            };
            match r {
                Ok(v) => {
                    save.x[0] = 0;
                    save.x[1..4].copy_from_slice(&v);
                }
                Err(e) => {
                    save.x[0] = e as u64;
                    save.x[1..4].fill(0);
                }
            }
            return;
        }
        Some(Syscall::Wait) => {
            set_result(save, Ok(0));
            if !cur.frame().haswork() {
                core.unqueue(cur, DispatcherState::Waiting);
            }
            return;
        }
        Some(Syscall::Resume) => {
            // The usual cases name a save area of the caller's own frame:
            // the enabled one needs no copy, the others a kernel-side one.
            if let Some(area) = dispatch::frame_area(cur, a1) {
                dispatch::resume_from_frame(cur, area);
                return;
            }
            match read_user_save(a1) {
                Ok(s) => {
                    dispatch::resume_with(cur, s);
                    return;
                }
                Err(e) => Err(e),
            }
        }
        None => Err(ErrorCode::InvalidSyscall),
    };
    set_result(save, result);
}

/// `Syscall::Yield`: to the named dispatcher if there is one and it can
/// run, else to the next in turn.
fn yield_to(cur: Dcb, target: u64) -> Result<u64, ErrorCode> {
    let core = this_core();
    if target == 0 {
        core.runq.rotate();
        return Ok(0);
    }
    let r = CapRef::from_raw(target).ok_or(ErrorCode::BadCapAddr)?;
    let cap = invoke::lookup_cap(cur, r)?;
    if cap.objtype != ObjType::Dispatcher {
        return Err(ErrorCode::WrongCapType);
    }
    core.yield_to(cur, Dcb(cap.base));
    Ok(0)
}

/// Reads a `RegisterSave` from the caller's address space, each page
/// checked readable by EL0.
fn read_user_save(va: u64) -> Result<RegisterSave, ErrorCode> {
    let mut s = RegisterSave::default();
    // SAFETY: RegisterSave is plain integers; any bytes are a valid value.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(&mut s as *mut RegisterSave as *mut u8, core::mem::size_of::<RegisterSave>())
    };
    copy_from_user(va, bytes)?;
    Ok(s)
}

/// Copies user bytes at `va` into `out`, page by page, each page checked
/// readable by EL0 in the current address space.
fn copy_from_user(va: u64, out: &mut [u8]) -> Result<(), ErrorCode> {
    let mut done = 0;
    user_chunks(va, out.len() as u64, |bytes| {
        out[done..done + bytes.len()].copy_from_slice(bytes);
        done += bytes.len();
    })
}

/// Calls `f` on the bytes of `[va, va + len)` in the current address
/// space, one page's worth at a time, each page checked readable by EL0
/// (`BadUserAddress` at the first that is not; earlier chunks were seen).
fn user_chunks(va: u64, len: u64, mut f: impl FnMut(&[u8])) -> Result<(), ErrorCode> {
    let end = va.checked_add(len).ok_or(ErrorCode::BadUserAddress)?;
    let mut at = va;
    while at < end {
        // The end of the page holding `at`, or `end` if sooner; written so
        // the last page of the address space cannot overflow.
        let chunk_end = at + (0x1000 - (at & 0xfff)).min(end - at);
        let pa = mm::user_readable(at).ok_or(ErrorCode::BadUserAddress)?;
        // SAFETY: `pa` is RAM the calling domain can read (checked just now
        // with an EL0 translation), in the direct map; the chunk stays in
        // its page.
        f(unsafe { core::slice::from_raw_parts(mm::phys(pa), (chunk_end - at) as usize) });
        at = chunk_end;
    }
    Ok(())
}

fn set_result(save: &mut RegisterSave, r: Result<u64, ErrorCode>) {
    match r {
        Ok(v) => {
            save.x[0] = 0;
            save.x[1] = v;
        }
        Err(e) => {
            save.x[0] = e as u64;
            save.x[1] = 0;
        }
    }
}

/// Writes user bytes to the console, page by page, each page checked to be
/// readable by EL0 in the caller's address space.
fn print(ptr: u64, len: u64) -> Result<(), ErrorCode> {
    if len > PRINT_MAX as u64 {
        return Err(ErrorCode::TooLong);
    }
    // Every page is checked before any byte is written: all or nothing.
    user_chunks(ptr, len, |_| {})?;
    user_chunks(ptr, len, console::write_bytes)
}

/// Reports a fault in dispatcher `d` that it cannot handle, and ends it.
fn end(d: Dcb, what: &str, esr: Syndrome) {
    let save = d.regs();
    log::error!(
        "domain '{}' {what}: {esr}; FAR {:#x}, ELR {:#x}, SP {:#x}; domain ended",
        d.name(),
        FAR_EL1.get(),
        save.pc,
        save.sp
    );
    this_core().unqueue(d, DispatcherState::Ended);
}

/// Takes the pending interrupt: the kernel's timer (the quantum of `cur`,
/// if `running`, is over), or one routed to user space.
pub fn interrupt(running: bool, cur: Dcb) {
    let core = this_core();
    let Some(intid) = gic::ack() else { return };
    if intid == gic::TIMER_INTID {
        gic::rearm(core.quantum);
        core.ticks.set(core.ticks.get() + 1);
        // Its quantum is over: its thread scheduler gets to run too.
        if running {
            dispatch::mark_upcall_due(cur);
        }
        core.runq.rotate();
        irq::retry_pending(&core.irqs);
    } else if !irq::deliver(&core.irqs, intid) {
        log::warn!("interrupt {intid} has no route; masked");
    }
    gic::eoi(intid);
}

/// An exception taken in the kernel itself: a kernel bug. Report and stop.
#[unsafe(no_mangle)]
extern "C" fn el1_exception(frame: &RegisterSave, kind: u64) -> ! {
    let esr = Syndrome(ESR_EL1.get());
    let far = FAR_EL1.get();
    let what = if kind == super::boot::OVERFLOW_KIND {
        format_args!("kernel stack overflow (x0 lost)")
    } else {
        format_args!("exception in the kernel (vector {kind})")
    };
    console::emergency(format_args!(
        "\nkernel {}: PANIC: {what}: {esr}\n  FAR {far:#018x}  ELR {:#018x}  SP {:#018x}  SPSR {:#x}\n",
        super::core::id(),
        frame.pc,
        frame.sp,
        frame.spsr
    ));
    for (i, pair) in frame.x.chunks(2).enumerate() {
        match pair {
            [a, b] => console::emergency(format_args!("  x{:<2} {a:#018x}  x{:<2} {b:#018x}\n", 2 * i, 2 * i + 1)),
            [a] => console::emergency(format_args!("  x{:<2} {a:#018x}\n", 2 * i)),
            _ => {}
        }
    }
    power::exit(exit_status::KERNEL_PANIC)
}
