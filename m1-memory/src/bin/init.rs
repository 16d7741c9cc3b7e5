//! Init for milestone 1 (book ch. 3.16): builds the memory system from
//! bootinfo, runs the grading hooks around its own demonstration, and
//! exits. The demonstration is ch. 3.17's last point: a frame allocated
//! from the manager, mapped at a fixed address, written and read back.

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::cap;
use aos::println;
use api::{MapFlags, MemoryManager, Paging};
use m1_memory::Memory;

aos::main!(run);

/// Where init maps its demonstration frame: level-0 entry 3 (1.5 TiB),
/// clear of the program, the graders and the slab refills.
const DEMO_VADDR: u64 = 3 << 39;
const DEMO_BYTES: u64 = 64 << 10;
use grading::m1::DEMO_SEED;

fn run(args: &aos::Args) -> i32 {
    grading::setup_bsp_init(args);
    let Some(bi) = args.bootinfo() else {
        println!("init: no bootinfo");
        return 1;
    };
    if let Err(e) = Memory::init(bi) {
        println!("init: setting up memory: {e}");
        return 1;
    }
    let run = m1_memory::with(|mem| {
        println!("init: managing {} MiB of RAM, {} MiB free", mem.total_bytes() >> 20, mem.free_bytes() >> 20);
        grading::test_mm(mem);
        grading::test_early(mem);
        demo(mem)
    });
    if let Err(e) = run.and_then(|r| r) {
        println!("init: demonstration failed: {e}");
        return 1;
    }
    // Outside the memory system's lock: through the installed RAM hook.
    grading::test_ram_alloc();
    if let Err(e) = m1_memory::with(grading::test_late) {
        println!("init: {e}");
        return 1;
    }
    println!("init: done");
    0
}

/// Allocates a frame, maps it at [`DEMO_VADDR`], fills it and reads it back.
fn demo(mem: &mut Memory) -> Result<(), m1_memory::Error> {
    let frame = mem.frame_alloc(DEMO_BYTES)?;
    let pa = cap::identify(frame).map_err(|code| m1_memory::Error::Kernel { code, doing: "identifying" })?.base;
    mem.map_fixed_attr(DEMO_VADDR, frame, DEMO_BYTES, MapFlags::READ_WRITE)?;
    let words = (DEMO_BYTES / 8) as usize;
    // SAFETY: `DEMO_BYTES` at `DEMO_VADDR` were just mapped read-write to a
    // frame only this function holds.
    let mapped = unsafe { core::slice::from_raw_parts_mut(DEMO_VADDR as *mut u64, words) };
    for (i, w) in mapped.iter_mut().enumerate() {
        *w = (pa + 8 * i as u64) ^ DEMO_SEED;
    }
    let bad = mapped.iter().enumerate().filter(|&(i, w)| *w != (pa + 8 * i as u64) ^ DEMO_SEED).count();
    println!("init: mapped {DEMO_BYTES:#x} bytes of frame {pa:#x} at {DEMO_VADDR:#x}, {bad} words differ");
    grading::inspection_point();
    Ok(())
}
