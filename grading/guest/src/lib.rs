//! The grading hooks the stages call (book ch. 3.16) and the in-guest
//! suites behind them, generic over the milestone traits of `api`.
//!
//! The hooks do nothing unless init's command line asks for grading:
//! `grading` runs every group, `grading=mm,early` the named ones (groups:
//! mm, early, late, ram). So the
//! image `cargo xtask run` boots and the one the grader boots differ only
//! in their `menu.lst`.
//!
//! Output is one line per check, `m1: ok GROUP/NAME` or
//! `m1: FAILED GROUP/NAME: DETAIL`, and one verdict line per group,
//! `m1: GROUP done: N passed, M failed`, which the host runner reads.
//! Owns only the checks; it changes the system only through the traits.

#![no_std]

use core::fmt::{Arguments, Debug};
use core::sync::atomic::{AtomicU8, Ordering};

pub mod m1;
pub mod m2;
pub mod m3;

/// A small deterministic generator (xorshift64) for the suites' sizes,
/// orders and random calls: the same seed gives the same run on every
/// board. Not for anything that needs good randomness.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value below `n` (slightly biased for large `n`; fine for tests).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Init's bootinfo, for checks that need the machine's memory map.
static BOOTINFO: spin::Once<&'static aos::kpi::bootinfo::BootInfo> = spin::Once::new();

/// Groups enabled by init's command line, one bit each.
static ENABLED: AtomicU8 = AtomicU8::new(0);

/// The test groups, by the name used on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// `test_mm`: the memory manager alone, right after it is set up.
    Mm = 1,
    /// `test_early`: slots, slabs and mapping.
    Early = 2,
    /// `test_late`: exhaustion, recovery and endurance.
    Late = 4,
    /// `test_ram_alloc`: the RAM allocator installed in `aos::ram`.
    Ram = 8,
}

impl Group {
    pub const ALL: [Group; 4] = [Group::Mm, Group::Early, Group::Late, Group::Ram];

    pub fn name(self) -> &'static str {
        match self {
            Group::Mm => "mm",
            Group::Early => "early",
            Group::Late => "late",
            Group::Ram => "ram",
        }
    }
}

/// Which groups a command-line word enables: `grading` (all) or
/// `grading=a,b`; `None` if the word is not about grading or names an
/// unknown group.
pub fn parse_arg(word: &str) -> Option<u8> {
    if word == "grading" {
        return Some(Group::ALL.iter().map(|g| *g as u8).sum());
    }
    let list = word.strip_prefix("grading=")?;
    let mut bits = 0;
    for name in list.split(',') {
        bits |= *Group::ALL.iter().find(|g| g.name() == name)? as u8;
    }
    Some(bits)
}

/// Reads init's command line for grading words (`grading_setup_bsp_init`).
/// An unknown group is reported, not ignored.
pub fn setup_bsp_init(args: &aos::Args) {
    let mut bits = 0;
    for word in args.iter().filter(|w| w.starts_with("grading")) {
        match parse_arg(word) {
            Some(b) => bits |= b,
            None => aos::println!("grading: unknown argument {word:?}; groups are mm, early, late, ram"),
        }
    }
    ENABLED.store(bits, Ordering::Relaxed);
    if let Some(bi) = args.bootinfo() {
        BOOTINFO.call_once(|| bi);
    }
}

fn enabled(g: Group) -> bool {
    ENABLED.load(Ordering::Relaxed) & g as u8 != 0
}

/// `grading_test_mm`: runs after the memory manager is set up.
pub fn test_mm<M: api::MemoryManager>(mm: &mut M) {
    if enabled(Group::Mm) {
        let mut c = Checks::new(Group::Mm);
        m1::test_mm(&mut c, mm);
        c.verdict();
    }
}

/// `grading_test_early`: runs once paging works.
pub fn test_early<S: api::M1>(sys: &mut S) {
    if enabled(Group::Early) {
        let mut c = Checks::new(Group::Early);
        m1::test_early(&mut c, sys);
        c.verdict();
    }
}

/// `grading_test_late`: runs last, after init's own work.
pub fn test_late<S: api::M1>(sys: &mut S) {
    if enabled(Group::Late) {
        let mut c = Checks::new(Group::Late);
        m1::test_late(&mut c, sys);
        c.verdict();
    }
}

/// Seconds [`inspection_point`] holds the machine still.
pub const INSPECTION_SECONDS: u64 = 3;

/// Gives the host runner time to stop QEMU and read physical memory after
/// the line just printed (`xp` over QMP): spins, yielding, for
/// [`INSPECTION_SECONDS`] of counter time. Only when grading.
pub fn inspection_point() {
    if ENABLED.load(Ordering::Relaxed) == 0 {
        return;
    }
    yield_until(INSPECTION_SECONDS, || false);
}

/// Yields until `done` says so or `seconds` of counter time have passed;
/// whether `done` did. Waiting by yielding lets the domains being waited
/// for run.
pub fn yield_until(seconds: u64, mut done: impl FnMut() -> bool) -> bool {
    let (freq, start) = (aos::time::frequency(), aos::time::counter());
    while aos::time::counter().wrapping_sub(start) < seconds * freq {
        if done() {
            return true;
        }
        let _ = aos::syscall::yield_now();
    }
    false
}

/// `test_ram_alloc`: runs where nothing holds the memory system, so the
/// hook `aos::ram` calls can reach it.
pub fn test_ram_alloc() {
    if enabled(Group::Ram) {
        let mut c = Checks::new(Group::Ram);
        m1::test_ram_alloc(&mut c);
        c.verdict();
    }
}

/// A group's checks and their counts.
pub struct Checks {
    /// The stage and group, as in `m1: ok early/...`.
    stage: &'static str,
    group: &'static str,
    passed: u32,
    failed: u32,
}

impl Checks {
    fn new(group: Group) -> Self {
        Self::named("m1", group.name())
    }

    /// Checks of another stage's group.
    pub fn named(stage: &'static str, group: &'static str) -> Self {
        Checks { stage, group, passed: 0, failed: 0 }
    }

    /// Reports one check; `detail` is printed only if it failed.
    pub fn ok(&mut self, name: &str, pass: bool, detail: Arguments<'_>) -> bool {
        if pass {
            self.passed += 1;
            aos::println!("{}: ok {}/{name}", self.stage, self.group);
        } else {
            self.failed += 1;
            aos::println!("{}: FAILED {}/{name}: {detail}", self.stage, self.group);
        }
        pass
    }

    /// Checks that `got` equals `want`.
    pub fn is<T: Debug + PartialEq>(&mut self, name: &str, got: T, want: T) -> bool {
        let pass = got == want;
        self.ok(name, pass, format_args!("got {got:?}, want {want:?}"))
    }

    pub fn verdict(&self) {
        aos::println!("{}: {} done: {} passed, {} failed", self.stage, self.group, self.passed, self.failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_words_select_groups() {
        assert_eq!(parse_arg("grading"), Some(15));
        assert_eq!(parse_arg("grading=mm"), Some(1));
        assert_eq!(parse_arg("grading=late,early"), Some(6));
        assert_eq!(parse_arg("grading=mm,bogus"), None);
        assert_eq!(parse_arg("grading="), None);
        assert_eq!(parse_arg("gradings"), None);
    }
}
