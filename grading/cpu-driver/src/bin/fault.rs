//! Commits the fault named by its argument, so the suite can check the
//! kernel reports it, ends only this domain, and keeps running.

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::println;

aos::main!(run);

/// A word in the data segment: readable and writable, never executable.
#[cfg(target_os = "none")]
static mut DATA_WORD: u32 = 0xd503_201f; // a NOP, were it executable

fn run(args: &aos::Args) -> i32 {
    let kind = args.get(1).unwrap_or("");
    println!("fault: committing '{kind}'");
    #[cfg(target_os = "none")]
    commit(kind);
    println!(
        "fault: unknown kind '{kind}' (null, exec-data, write-text, undefined, misaligned-sp, misaligned-pc, svc-immediate)"
    );
    1
}

#[cfg(target_os = "none")]
fn commit(kind: &str) {
    match kind {
        // Each arm commits the fault it is named after, on purpose: the
        // kernel must end this domain at the faulting instruction and keep
        // running, so no arm completes and nothing unsound is observed.
        // SAFETY: reads address 0, which is never mapped; it faults.
        "null" => unsafe {
            let p = core::ptr::null::<u64>();
            core::ptr::read_volatile(p);
        },
        // SAFETY: jumps into a data page, which is mapped non-executable.
        "exec-data" => unsafe {
            let f: extern "C" fn() = core::mem::transmute(core::ptr::addr_of_mut!(DATA_WORD));
            f();
        },
        // SAFETY: writes to this program's text, mapped read-only.
        "write-text" => unsafe {
            let text = run as *const () as *mut u32;
            core::ptr::write_volatile(text, 0);
        },
        // SAFETY: a permanently undefined instruction; it traps.
        "undefined" => unsafe { core::arch::asm!("udf #0") },
        // SAFETY: only registers change, and SP is restored if the load
        // does not fault (see below).
        "misaligned-sp" => unsafe {
            // A load through an SP that is not 16-byte aligned: an SP
            // alignment fault where SCTLR_EL1.SA0 is honoured. SP is put
            // back, so a platform that does not check continues cleanly.
            core::arch::asm!("mov x9, sp", "sub x10, x9, #4", "mov sp, x10", "ldr x10, [sp]", "mov sp, x9", out("x9") _, out("x10") _)
        },
        // SAFETY: the branch target is misaligned, so the fetch faults
        // before anything executes there.
        "misaligned-pc" => unsafe {
            // A branch to an address that is not 4-byte aligned.
            let target = (run as *const () as usize + 2) as u64;
            core::arch::asm!("br {}", in(reg) target)
        },
        // SAFETY: an SVC the kernel does not accept; it ends the domain.
        "svc-immediate" => unsafe { core::arch::asm!("svc #42") },
        _ => return,
    }
    println!("fault: '{kind}' did not fault");
    if kind == "misaligned-sp" {
        // QEMU (10.0) does not implement SP alignment checking.
        println!("fault: this platform does not check SP alignment");
    }
}
