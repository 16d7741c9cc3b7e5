//! Everything that enters the kernel after boot: syscalls, faults and
//! interrupts from EL0, and (as bugs) exceptions from EL1. Each is handled
//! to completion; the return value says which domain state to resume.
//!
//! User input is never trusted: syscall numbers, pointers and lengths are
//! checked, and a faulting domain is reported and ended — the kernel goes on.

use aarch64_cpu::registers::{ESR_EL1, FAR_EL1, Readable};
use kpi::ErrorCode;
use kpi::dispatcher::RegisterSave;
use kpi::syscall::{PRINT_MAX, SVC_IMMEDIATE, Syscall};

use cpu_driver::esr::{Class, Syndrome};
use cpu_driver::exit_status;

use super::core::this_core;
use super::domain::{Domains, State};
use platform::gic;

use super::{console, invoke, mm, power};

/// Vector index bits: 0 sync, 1 IRQ, 2 FIQ, 3 SError; +8 from EL0 AArch64,
/// +12 from EL0 AArch32, below 8 from EL1.
const KIND_SYNC: u64 = 0;
const KIND_IRQ: u64 = 1;
const KIND_FIQ: u64 = 2;

/// Entry from EL0. The assembly has already saved the domain's registers
/// into its save area in `Domains`; they are reached only through `doms`.
#[unsafe(no_mangle)]
extern "C" fn el0_exception(kind: u64) -> *const RegisterSave {
    let core = this_core();
    let mut doms = core.domains.borrow_mut();
    match (kind >= 12, kind & 3) {
        (false, KIND_SYNC) => sync(&mut doms),
        (false, KIND_IRQ) => irq(&mut doms),
        (false, KIND_FIQ) => {}
        _ => {
            let esr = ESR_EL1.get();
            fault(&mut doms, "SError or AArch32 exception", Syndrome(esr));
        }
    }
    resume_next(&mut doms)
}

/// Picks what runs next; powers off if nothing can.
fn resume_next(doms: &mut Domains) -> *const RegisterSave {
    let cur = doms.current;
    let next = if doms.slots[cur].state == State::Runnable { Some(cur) } else { doms.next_runnable() };
    let Some(next) = next else {
        log::info!("no domain left to run; powering off");
        power::exit(exit_status::NOTHING_TO_RUN);
    };
    this_core().switch_to(doms, next)
}

fn sync(doms: &mut Domains) {
    let esr = Syndrome(ESR_EL1.get());
    if esr.class() != Class::Svc64 {
        fault(doms, "faulted", esr);
        return;
    }
    if esr.svc_immediate() != SVC_IMMEDIATE {
        fault(doms, "used an unknown SVC immediate", esr);
        return;
    }
    let cur = doms.current;
    let save = &mut doms.slots[cur].save;
    let (nr, a1, a2) = (save.x[0], save.x[1], save.x[2]);
    let result: Result<u64, ErrorCode> = match Syscall::from_raw(nr) {
        Some(Syscall::Null) => Ok(0),
        Some(Syscall::Print) => print(a1, a2).map(|()| a2),
        Some(Syscall::Yield) => {
            set_result(&mut doms.slots[cur].save, Ok(0));
            if let Some(next) = doms.next_runnable() {
                doms.current = next;
            }
            return;
        }
        Some(Syscall::Exit) => {
            let d = &mut doms.slots[cur];
            log::info!(
                "domain '{}' exited with status {} after {} timer interrupts",
                d.name(),
                a1 as i64,
                this_core().ticks.get()
            );
            d.state = State::Exited;
            return;
        }
        Some(Syscall::Invoke) => {
            let d = &mut doms.slots[cur];
            let args: [u64; 7] = core::array::from_fn(|i| d.save.x[i + 1]);
            let root = this_core().roots[cur].id();
            match invoke::invoke(&mut this_core().mdb.borrow_mut(), root, &this_core().resume, args) {
                Ok(v) => {
                    d.save.x[0] = 0;
                    d.save.x[1..4].copy_from_slice(&v);
                }
                Err(e) => {
                    d.save.x[0] = e as u64;
                    d.save.x[1..4].fill(0);
                }
            }
            return;
        }
        None => Err(ErrorCode::InvalidSyscall),
    };
    set_result(&mut doms.slots[cur].save, result);
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
    let end = ptr.checked_add(len).ok_or(ErrorCode::BadUserAddress)?;
    // The end of the page holding `va`, or `end` if sooner; written so the
    // last page of the address space cannot overflow.
    let chunk_end = |va: u64| va + (0x1000 - (va & 0xfff)).min(end - va);
    let mut va = ptr;
    while va < end {
        mm::user_readable(va).ok_or(ErrorCode::BadUserAddress)?;
        va = chunk_end(va);
    }
    let mut va = ptr;
    while va < end {
        let chunk_end = chunk_end(va);
        let pa = mm::user_readable(va).ok_or(ErrorCode::BadUserAddress)?;
        // SAFETY: `pa` is RAM the calling domain can read (checked just now
        // with an EL0 translation), reached through the kernel's direct map;
        // the chunk does not cross its page.
        let bytes = unsafe { core::slice::from_raw_parts(mm::phys(pa), (chunk_end - va) as usize) };
        console::write_bytes(bytes);
        va = chunk_end;
    }
    Ok(())
}

/// Reports a fault in the current domain and ends it.
fn fault(doms: &mut Domains, what: &str, esr: Syndrome) {
    let cur = doms.current;
    let d = &mut doms.slots[cur];
    log::error!(
        "domain '{}' {what}: {esr}; FAR {:#x}, ELR {:#x}, SP {:#x}; domain ended",
        d.name(),
        FAR_EL1.get(),
        d.save.pc,
        d.save.sp
    );
    d.state = State::Exited;
}

fn irq(doms: &mut Domains) {
    let core = this_core();
    let Some(intid) = gic::ack() else { return };
    if intid == gic::TIMER_INTID {
        gic::rearm(core.quantum);
        core.ticks.set(core.ticks.get() + 1);
        if let Some(next) = doms.next_runnable() {
            doms.current = next;
        }
    } else {
        log::warn!("unexpected interrupt {intid}");
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
