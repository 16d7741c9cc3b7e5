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
        // SAFETY (all arms): each deliberately faults; that is the test. The
        // kernel must end this domain and keep running.
        "null" => unsafe {
            let p = core::ptr::null::<u64>();
            core::ptr::read_volatile(p);
        },
        "exec-data" => unsafe {
            let f: extern "C" fn() = core::mem::transmute(core::ptr::addr_of_mut!(DATA_WORD));
            f();
        },
        "write-text" => unsafe {
            let text = run as *const () as *mut u32;
            core::ptr::write_volatile(text, 0);
        },
        "undefined" => unsafe { core::arch::asm!("udf #0") },
        "misaligned-sp" => unsafe {
            // A load through an SP that is not 16-byte aligned: an SP
            // alignment fault where SCTLR_EL1.SA0 is honoured. SP is put
            // back, so a platform that does not check continues cleanly.
            core::arch::asm!("mov x9, sp", "sub x10, x9, #4", "mov sp, x10", "ldr x10, [sp]", "mov sp, x9", out("x9") _, out("x10") _)
        },
        "misaligned-pc" => unsafe {
            // A branch to an address that is not 4-byte aligned.
            let target = (run as *const () as usize + 2) as u64;
            core::arch::asm!("br {}", in(reg) target)
        },
        "svc-immediate" => unsafe { core::arch::asm!("svc #42") },
        _ => return,
    }
    println!("fault: '{kind}' did not fault");
    if kind == "misaligned-sp" {
        // QEMU (10.0) does not implement SP alignment checking.
        println!("fault: this platform does not check SP alignment");
    }
}
