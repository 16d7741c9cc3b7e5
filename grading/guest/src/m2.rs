//! The M2 suite (book ch. 4.21-4.22) against `api::M2`: spawning several
//! processes, a large frame in both address spaces, the ELF magic of a
//! mapped module, arguments, stopping a process, endurance, and
//! malformed modules. Each group prints `m2: ok GROUP/NAME` lines and a
//! verdict; what only the console shows (the children's own output, the
//! printer falling silent, the refusal reasons) the host runner checks.
//!
//! Memory must come back exactly: "available" is the manager's free bytes
//! plus what it keeps for its own bookkeeping (which may grow once).

use aos::cap::CapRef;
use aos::kpi::bootinfo::BootInfo;
use aos::kpi::cspace::ROOTCN_SLOT_MODULECN;
use api::{M2, MapFlags, Pid, ProcState};

use crate::m1::avail;
use crate::{Checks, INSPECTION_SECONDS, yield_until};

/// The word at byte offset `o` of the shared frame: written by the parent
/// in the first half, by the child in the second.
pub const PARENT_SEED: u64 = 0x9a7e_0000_0000_0001;
pub const CHILD_SEED: u64 = 0xc41d_0000_0000_0002;
/// The shared frame's size (the issue's 64 MiB).
pub const BIG_BYTES: u64 = 64 << 20;
/// The malformed modules the grading menu carries, by corruption.
pub const MALFORMED: [&str; 8] = [
    "bad-truncated",
    "bad-machine",
    "bad-overlap",
    "bad-huge-memsz",
    "bad-entry",
    "bad-empty",
    "bad-magic",
    "bad-stack",
];
/// Spawn/exit cycles of the endurance group.
pub const CYCLES: u32 = 1000;
/// Processes started at once.
pub const AT_ONCE: u32 = 6;

/// Yields until `pid` exited or `seconds` passed; whether it exited.
fn wait_exit<S: M2>(s: &mut S, pid: Pid, seconds: u64) -> bool {
    yield_until(seconds, || s.state(pid).ok() == Some(ProcState::Exited))
}

/// Yields for `seconds` of counter time.
fn pause(seconds: u64) {
    yield_until(seconds, || false);
}

fn module_slot(bi: &BootInfo, name: &str) -> Option<(CapRef, u64)> {
    let (i, m, ..) = bi.find_module(name)?;
    Some((CapRef::slot(ROOTCN_SLOT_MODULECN as u32, u8::try_from(i).ok()?), m.size))
}

/// One group of checks.
type Group<S> = fn(&mut Checks, &mut S, &BootInfo);

/// Runs every group. `bi` is init's bootinfo.
pub fn run<S: M2>(s: &mut S, bi: &BootInfo) {
    let start = avail(s);
    let groups: [(&str, Group<S>); 7] = [
        ("vspace", vspace),
        ("spawn", spawn_several),
        ("args", args),
        ("bigframe", bigframe),
        ("stop", stop),
        ("malformed", malformed),
        ("cycles", cycles),
    ];
    for (name, group) in groups {
        let mut c = Checks::named("m2", name);
        group(&mut c, s, bi);
        c.verdict();
    }
    let mut c = Checks::named("m2", "final");
    let end = avail(s);
    c.is("after every group, the memory available is what it was at the start", end, start);
    let mut left = 0;
    s.for_each(&mut |_| left += 1);
    c.is("no process is left in the table", left, 0);
    c.verdict();
}

/// `paging_alloc`, `map_frame_attr` across many L3 tables, unmap, and the
/// ELF magic of a module mapped with them.
fn vspace<S: M2>(c: &mut Checks, s: &mut S, bi: &BootInfo) {
    let start = avail(s);
    let a = s.paging_alloc(3 * 4096, 4096);
    let b = s.paging_alloc(4096, 2 << 20);
    c.ok("paging_alloc returns page-aligned ranges", a.as_ref().is_ok_and(|a| a % 4096 == 0), format_args!("{a:?}"));
    c.ok("paging_alloc honours a 2 MiB alignment", b.as_ref().is_ok_and(|b| b % (2 << 20) == 0), format_args!("{b:?}"));
    if let (Ok(a), Ok(b)) = (&a, &b) {
        c.ok("two allocations do not overlap", *a + 3 * 4096 <= *b || *b + 4096 <= *a, format_args!("{a:#x}, {b:#x}"));
        c.ok("an allocated range is given back", s.unmap(*a, 3 * 4096).is_ok(), format_args!("unmap failed"));
        c.ok("and again is refused", s.unmap(*a, 3 * 4096).is_err(), format_args!("a second unmap succeeded"));
        let _ = s.unmap(*b, 4096);
    }
    c.ok("a zero-sized allocation is refused", s.paging_alloc(0, 4096).is_err(), format_args!("accepted"));
    // Unmapping what no map call returned: the program's own first page.
    let code = aos::kpi::vspace::USER_MIN;
    c.ok("unmapping the program's own pages is refused", s.unmap(code, 4096).is_err(), format_args!("accepted"));
    // SAFETY: reads the first word of this program's own text, mapped by
    // the kernel for the program's lifetime.
    let still = unsafe { (code as *const u32).read_volatile() };
    c.ok("and they stay mapped", still != 0, format_args!("read {still:#x}"));

    // A 5 MiB frame spans three L3 tables when mapped with pages.
    let bytes = 5 << 20;
    let ram = s.alloc(bytes).ok();
    let frame = ram.and_then(|r| to_frame(s, r, bytes));
    if let (Some(frame), Some(ram)) = (frame, ram) {
        let va = s.map_frame_attr(frame, bytes, MapFlags::READ_WRITE);
        c.ok("map_frame_attr maps 5 MiB of pages", va.is_ok(), format_args!("{va:?}"));
        if let Ok(va) = va {
            let words = (bytes / 8) as usize;
            // SAFETY: `bytes` at `va` were just mapped read-write to a
            // frame only this group holds.
            let m = unsafe { core::slice::from_raw_parts_mut(va as *mut u64, words) };
            for (i, w) in m.iter_mut().enumerate() {
                *w = PARENT_SEED ^ i as u64;
            }
            let bad = m.iter().enumerate().filter(|&(i, w)| *w != PARENT_SEED ^ i as u64).count();
            c.is("every word of the 5 MiB mapping reads back", bad, 0);
            c.ok("it unmaps", s.unmap(va, bytes).is_ok(), format_args!("unmap failed"));
        }
        let freed = free_frame(s, frame, ram);
        c.ok("the frame's memory goes back", freed, format_args!("free failed"));
    } else {
        c.ok("a 5 MiB frame can be made", false, format_args!("allocation failed"));
    }

    // The ELF magic of the `hello` module, through a mapping of its frame.
    match module_slot(bi, "hello") {
        Some((frame, size)) => {
            let va = s.map_frame_attr(frame, size, MapFlags::READ);
            c.ok("a boot module maps read-only", va.is_ok(), format_args!("{va:?}"));
            if let Ok(va) = va {
                // SAFETY: the module's first bytes, just mapped read-only.
                let head = unsafe { core::slice::from_raw_parts(va as *const u8, 4) };
                aos::println!(
                    "m2: module hello starts with {:02x} {:02x} {:02x} {:02x}",
                    head[0],
                    head[1],
                    head[2],
                    head[3]
                );
                c.is("it starts with the ELF magic", head, b"\x7fELF".as_slice());
                let _ = s.unmap(va, size);
            }
        }
        None => {
            c.ok("the menu carries a hello module", false, format_args!("none"));
        }
    }
    c.is("the group's memory came back", avail(s), start);
}

/// A Frame of `bytes` retyped from `ram`, in a fresh slot.
fn to_frame<S: M2>(s: &mut S, ram: CapRef, bytes: u64) -> Option<CapRef> {
    let slot = s.slot_alloc().ok()?;
    let dest = aos::cap::Dest::l2(slot.l1_index(), slot.l2_index());
    match aos::cap::retype(ram, dest, aos::cap::ObjType::Frame, 0, bytes, 1) {
        Ok(_) => Some(slot),
        Err(_) => {
            let _ = s.slot_free(slot);
            None
        }
    }
}

/// Deletes a frame made by [`to_frame`] and frees its RAM.
fn free_frame<S: M2>(s: &mut S, frame: CapRef, ram: CapRef) -> bool {
    let deleted = aos::cap::delete(frame).is_ok();
    let _ = s.slot_free(frame);
    deleted && s.free(ram).is_ok()
}

fn spawn_several<S: M2>(c: &mut Checks, s: &mut S, _bi: &BootInfo) {
    let start = avail(s);
    let mut pids = [0; AT_ONCE as usize];
    let mut started = 0;
    for (k, pid) in pids.iter_mut().enumerate() {
        let line = [
            "hello at-once 0",
            "hello at-once 1",
            "hello at-once 2",
            "hello at-once 3",
            "hello at-once 4",
            "hello at-once 5",
        ][k];
        match s.spawn_load_cmdline(line) {
            Ok(p) => {
                aos::println!("m2: at-once pid {p:#x}");
                *pid = p;
                started += 1;
            }
            Err(e) => {
                c.ok("spawn", false, format_args!("{line}: {e}"));
            }
        }
    }
    c.is("every spawn succeeded", started, AT_ONCE);
    let distinct = (0..pids.len()).all(|i| pids[i + 1..].iter().all(|p| *p != pids[i]));
    c.ok("each process has its own PID", distinct, format_args!("{pids:?}"));
    let mut listed = 0;
    s.for_each(&mut |p| {
        if p.name == "hello" && pids.contains(&p.pid) {
            listed += 1;
        }
    });
    c.is("the table lists them all", listed, AT_ONCE);
    let exited = pids.iter().filter(|&&p| wait_exit(s, p, 20)).count() as u32;
    c.is("they all run and exit", exited, AT_ONCE);
    c.is("reap reclaims them", s.reap().ok(), Some(AT_ONCE as usize));
    c.ok("a reaped PID names nothing", s.state(pids[0]).is_err(), format_args!("still there"));
    c.is("their memory came back", avail(s), start);

    // Fill the table: the spawn after the last one that fits is refused
    // with nothing taken, and all of them are reclaimed.
    let mut held = 0usize;
    let refused = loop {
        let before = avail(s);
        match s.spawn_load_by_name("quiet") {
            Ok(_) => held += 1,
            Err(e) => break Some((e, before == avail(s))),
        }
        if held > 1000 {
            break None;
        }
    };
    c.ok("the table fills up", refused.is_some() && held >= AT_ONCE as usize, format_args!("{held} spawned"));
    if let Some((e, unchanged)) = refused {
        aos::println!("m2: spawn {} refused: {e}", held + 1);
        c.ok("the spawn that does not fit takes nothing", unchanged, format_args!("memory changed"));
    }
    let mut reaped = 0;
    yield_until(30, || {
        reaped += s.reap().unwrap_or(0);
        reaped >= held
    });
    c.is("every process of the full table exits and is reaped", reaped, held);
    c.is("and the memory came back", avail(s), start);
}

fn args<S: M2>(c: &mut Checks, s: &mut S, _bi: &BootInfo) {
    let start = avail(s);
    // The host runner checks what hello prints for these.
    for line in [r#"hello 'one two' "three \"four\"" five\ six 'seven\eight' "" end"#, "hello"] {
        let r = s.spawn_load_cmdline(line);
        c.ok("spawn with a quoted command line", r.is_ok(), format_args!("{line}: {:?}", r.as_ref().err()));
        if let Ok(pid) = r {
            c.ok("it exits", wait_exit(s, pid, 20), format_args!("still running"));
            let _ = s.reap();
        }
    }
    let by_name = s.spawn_load_by_name("hello");
    c.ok(
        "spawn_load_by_name uses the menu's command line",
        by_name.is_ok(),
        format_args!("{:?}", by_name.as_ref().err()),
    );
    if let Ok(pid) = by_name {
        wait_exit(s, pid, 20);
        let _ = s.reap();
    }
    for bad in ["hello 'open", "hello trailing\\", "nosuchprogram a b", ""] {
        let r = s.spawn_load_cmdline(bad);
        c.ok("a malformed command line or unknown module is refused", r.is_err(), format_args!("{bad:?} spawned"));
        if let Err(e) = r {
            aos::println!("m2: {bad:?} refused: {e}");
        }
    }
    c.is("nothing leaked", avail(s), start);
}

fn bigframe<S: M2>(c: &mut Checks, s: &mut S, _bi: &BootInfo) {
    let start = avail(s);
    let Ok(ram) = s.alloc_aligned(BIG_BYTES, 2 << 20) else {
        c.ok("64 MiB of RAM", false, format_args!("allocation failed"));
        return;
    };
    let Some(frame) = to_frame(s, ram, BIG_BYTES) else {
        c.ok("a 64 MiB frame", false, format_args!("retype failed"));
        return;
    };
    let va = s.map_frame_attr(frame, BIG_BYTES, MapFlags::READ_WRITE | MapFlags::LARGE);
    c.ok("the frame maps in init", va.is_ok(), format_args!("{va:?}"));
    let pid = s.spawn_load_by_name("bigframe");
    c.ok("bigframe spawns", pid.is_ok(), format_args!("{:?}", pid.as_ref().err()));
    if let (Ok(va), Ok(pid)) = (va, pid) {
        let words = (BIG_BYTES / 8) as usize;
        // SAFETY: the frame was just mapped read-write at `va`; the child
        // gets it only below, and writes only the second half.
        let m = unsafe { core::slice::from_raw_parts_mut(va as *mut u64, words) };
        let (mine, theirs) = m.split_at_mut(words / 2);
        for (i, w) in mine.iter_mut().enumerate() {
            *w = PARENT_SEED ^ (i as u64 * 8);
        }
        let child_va = s.map_frame_in(pid, frame, BIG_BYTES, MapFlags::READ_WRITE | MapFlags::LARGE);
        c.ok("the same frame maps in the child", child_va.is_ok(), format_args!("{child_va:?}"));
        c.ok("the child checks it and exits", wait_exit(s, pid, 60), format_args!("still running"));
        let bad = theirs.iter().enumerate().filter(|&(i, w)| *w != CHILD_SEED ^ ((i + words / 2) as u64 * 8)).count();
        c.is("every word the child wrote reads back in init", bad, 0);
        // The host reads the frame's physical memory while the machine
        // holds still: one frame, both halves, seen from outside.
        if let Ok(id) = aos::cap::identify(frame) {
            aos::println!("m2: shared frame at physical {:#x}, {:#x} bytes", id.base, id.size);
            pause(INSPECTION_SECONDS);
        }
        let _ = s.reap();
        let _ = s.unmap(va, BIG_BYTES);
    }
    c.ok("the frame goes back", free_frame(s, frame, ram), format_args!("free failed"));
    c.is("nothing leaked", avail(s), start);
}

fn stop<S: M2>(c: &mut Checks, s: &mut S, _bi: &BootInfo) {
    let start = avail(s);
    let pid = s.spawn_load_by_name("printer");
    c.ok("the printer spawns", pid.is_ok(), format_args!("{:?}", pid.as_ref().err()));
    let Ok(pid) = pid else { return };
    pause(3);
    c.is("it is still running", s.state(pid).ok(), Some(ProcState::Running));
    let r = s.stop(pid);
    aos::println!("m2: printer stopped");
    c.ok("stop succeeds", r.is_ok(), format_args!("{r:?}"));
    c.ok("its PID names nothing", s.state(pid).is_err(), format_args!("still there"));
    c.ok("stopping it again is refused", s.stop(pid).is_err(), format_args!("stopped twice"));
    pause(3);
    aos::println!("m2: printer window closed");
    c.is("its memory came back", avail(s), start);
}

fn malformed<S: M2>(c: &mut Checks, s: &mut S, _bi: &BootInfo) {
    let start = avail(s);
    let mut count = 0;
    s.for_each(&mut |_| count += 1);
    for name in MALFORMED {
        let r = s.spawn_load_by_name(name);
        c.ok("a malformed module is refused", r.is_err(), format_args!("{name} spawned"));
        if let Err(e) = r {
            aos::println!("m2: {name} refused: {e}");
        }
        c.is("and leaks nothing", avail(s), start);
    }
    let mut after = 0;
    s.for_each(&mut |_| after += 1);
    c.is("no process was added", after, count);

    // A spawn stopped after each of its steps in turn gives back all.
    if !s.inject_spawn_failure(0) {
        c.ok("the implementation can stop a spawn half way", false, format_args!("no failure injection"));
        return;
    }
    let mut steps = 0;
    let mut leaks = 0;
    let mut first_leak = None;
    for n in 1..200u32 {
        s.inject_spawn_failure(n);
        match s.spawn_load_cmdline("quiet") {
            Err(_) => {
                steps += 1;
                let mut now = 0;
                s.for_each(&mut |_| now += 1);
                if avail(s) != start || now != count {
                    leaks += 1;
                    first_leak.get_or_insert(n);
                }
            }
            Ok(pid) => {
                // Past the last step: the spawn went through.
                s.inject_spawn_failure(0);
                wait_exit(s, pid, 20);
                let _ = s.reap();
                break;
            }
        }
    }
    s.inject_spawn_failure(0);
    aos::println!("m2: a spawn was stopped after each of its {steps} steps");
    c.ok("a spawn has many steps to stop at", steps >= 20, format_args!("only {steps}"));
    c.is("stopping after any of them leaks nothing", (leaks, first_leak), (0, None));
}

fn cycles<S: M2>(c: &mut Checks, s: &mut S, _bi: &BootInfo) {
    // One cycle first: bookkeeping may grow once, and is counted.
    let mut ok = 0;
    let start = avail(s);
    for _ in 0..CYCLES {
        let Ok(pid) = s.spawn_load_by_name("quiet") else { break };
        if !wait_exit(s, pid, 20) || s.reap().ok() != Some(1) {
            break;
        }
        ok += 1;
    }
    c.is("every spawn/exit cycle completed", ok, CYCLES);
    c.is("free memory is back at its starting value", avail(s), start);
}
