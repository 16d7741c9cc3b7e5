//! The Linux peer of the kit's benchmark program: runs as `/init` of an
//! initramfs on Debian's arm64 kernel in the same QEMU configuration and
//! prints the same `bench: NAME TICKS COUNT` lines from the generic counter
//! (`CNTVCT_EL0`, which Linux lets EL0 read), then powers the machine off.
//!
//! Pairs with the kit: null syscall (`getppid`), map and unmap of a 4 KiB
//! page (`mmap` with `MAP_POPULATE`, `munmap`), reset to the first
//! instruction of `main` of the first user program; and, for the spawn
//! benchmark the kit does not have yet, fork + exec + wait of busybox.

use std::ffi::CString;

/// Samples of each benchmark (as in the kit's benchmark program).
const REPS: u32 = 12;
const ROUNDS: u64 = 1_000;
const N: usize = 50;

fn counter() -> (u64, u64) {
    #[cfg(target_arch = "aarch64")]
    {
        let (t, f): (u64, u64);
        // SAFETY: reading the virtual counter and its frequency has no side
        // effects; Linux enables EL0 access to both.
        unsafe { std::arch::asm!("isb", "mrs {}, cntvct_el0", "mrs {}, cntfrq_el0", out(reg) t, out(reg) f) };
        (t, f)
    }
    #[cfg(not(target_arch = "aarch64"))]
    (0, 1)
}

fn measure(name: &str, count: u64, f: impl FnOnce() -> bool) -> bool {
    let (t0, _) = counter();
    let ok = f();
    let (t1, _) = counter();
    if ok {
        println!("bench: {name} {} {count}", t1 - t0);
    } else {
        println!("bench: FAILED {name}");
    }
    ok
}

fn map_pages(pages: &mut [*mut libc::c_void]) -> bool {
    pages.iter_mut().all(|p| {
        // SAFETY: an anonymous private mapping of one page, populated now.
        *p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        *p != libc::MAP_FAILED
    })
}

fn unmap_pages(pages: &[*mut libc::c_void]) -> bool {
    // SAFETY: each pointer is a page mapped by `map_pages`.
    pages.iter().all(|&p| unsafe { libc::munmap(p, 4096) } == 0)
}

fn fork_exec_wait() -> bool {
    let path = CString::new("/bin/busybox").expect("no NUL");
    let arg = CString::new("true").expect("no NUL");
    let argv = [path.as_ptr(), arg.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: fork in a single-threaded process; the child only calls
    // execve and _exit, both async-signal-safe.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    pid > 0 && unsafe { libc::waitpid(pid, &mut status, 0) } == pid && status == 0
}

/// Round trips of one byte between this process and a child over two
/// pipes (the peer of an IPC round trip).
fn pipe_ping_pong(rounds: u64) -> bool {
    let (mut to_child, mut to_parent) = ([0i32; 2], [0i32; 2]);
    // SAFETY: creating pipes into local arrays.
    if unsafe { libc::pipe(to_child.as_mut_ptr()) } != 0 || unsafe { libc::pipe(to_parent.as_mut_ptr()) } != 0 {
        return false;
    }
    let mut byte = [0u8; 1];
    // SAFETY: fork in a single-threaded process; the child only reads,
    // writes and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        for _ in 0..rounds {
            // SAFETY: reading and writing one byte on our pipes.
            unsafe {
                libc::read(to_child[0], byte.as_mut_ptr().cast(), 1);
                libc::write(to_parent[1], byte.as_ptr().cast(), 1);
            }
        }
        // SAFETY: ending the child.
        unsafe { libc::_exit(0) };
    }
    let ok = (0..rounds).all(|_| {
        // SAFETY: as above, in the parent.
        unsafe {
            libc::write(to_child[1], byte.as_ptr().cast(), 1) == 1
                && libc::read(to_parent[0], byte.as_mut_ptr().cast(), 1) == 1
        }
    });
    let mut status = 0;
    // SAFETY: waiting for the child, closing our pipes.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
        for fd in to_child.into_iter().chain(to_parent) {
            libc::close(fd);
        }
    }
    ok && status == 0
}

/// Touches fresh anonymous pages: one demand fault each.
fn demand_faults(pages: usize) -> Option<*mut libc::c_void> {
    // SAFETY: an anonymous private mapping, not populated.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            pages * 4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p)
}

fn main() {
    let (start, freq) = counter();
    println!("bench: counter-frequency {freq} Hz");
    println!("bench: reset-to-init-first-instruction {start} 1");
    let mut pages = [std::ptr::null_mut(); N];
    let mut all = true;
    for _ in 0..REPS {
        all = all
            && measure("null-syscall", ROUNDS, || (0..ROUNDS).all(|_| std::os::unix::process::parent_id() == 0))
            // SAFETY: sched_yield has no memory effects.
            && measure("yield", ROUNDS, || (0..ROUNDS).all(|_| unsafe { libc::sched_yield() } == 0))
            && measure("ipc-round-trip", 100, || pipe_ping_pong(100))
            && match demand_faults(N) {
                Some(p) => {
                    let ok = measure("page-fault", N as u64, || {
                        for i in 0..N {
                            // SAFETY: one byte in each page of the mapping just made.
                            unsafe { (p as *mut u8).add(i * 4096).write_volatile(1) };
                        }
                        true
                    });
                    // SAFETY: unmapping what demand_faults mapped.
                    ok && unsafe { libc::munmap(p, N * 4096) } == 0
                }
                None => false,
            }
            && measure("map-4k-page", N as u64, || map_pages(&mut pages))
            && measure("unmap-4k-page", N as u64, || unmap_pages(&pages))
            && measure("spawn-exit", 1, fork_exec_wait);
    }
    if !all {
        println!("bench: FAILED");
    }
    // SAFETY: syncing and powering off is what an init does at the end.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
}
