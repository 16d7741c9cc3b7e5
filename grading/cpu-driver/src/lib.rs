//! What the suite's guest programs share: named checks printed as
//! `PROGRAM: ok NAME` or `PROGRAM: FAILED NAME: DETAIL`, the lines the
//! grading runner reads (this file owns only that format), child
//! dispatchers ([`children`]) and the slots the programs use ([`alloc0`]).

#![no_std]

pub mod children;

/// The first slot-allocation CNode, where the programs put what they make
/// (init's own slot allocator is not running in these programs).
pub mod alloc0 {
    use aos::cap::{CapRef, Dest};

    /// Its root-CNode slot.
    pub const A0: u32 = aos::kpi::cspace::ROOTCN_SLOT_SLOT_ALLOC0 as u32;

    /// Slot `i` of it.
    pub const fn s(i: u8) -> CapRef {
        CapRef::slot(A0, i)
    }

    /// Slot `i` of it as a destination.
    pub const fn d(i: u8) -> Dest {
        Dest::l2(A0, i as u32)
    }
}

use core::fmt::{Arguments, Debug};

use aos::kpi::ErrorCode;
use aos::println;

/// A program's checks and how many failed.
pub struct Checks {
    program: &'static str,
    pub failed: u32,
}

impl Checks {
    pub const fn new(program: &'static str) -> Self {
        Checks { program, failed: 0 }
    }

    /// Reports one check; `detail` is printed only if it failed.
    pub fn ok(&mut self, name: &str, pass: bool, detail: Arguments<'_>) {
        if pass {
            println!("{}: ok {name}", self.program);
        } else {
            println!("{}: FAILED {name}: {detail}", self.program);
            self.failed += 1;
        }
    }

    /// Checks that `got` equals `want`.
    pub fn is<T: Debug + PartialEq>(&mut self, name: &str, got: T, want: T) {
        let pass = got == want;
        self.ok(name, pass, format_args!("got {got:?}, want {want:?}"));
    }

    /// Checks that `got` is the error `want`.
    pub fn err<T: Debug>(&mut self, name: &str, got: Result<T, ErrorCode>, want: ErrorCode) {
        let pass = matches!(&got, Err(e) if *e == want);
        self.ok(name, pass, format_args!("got {got:?}, want {want:?}"));
    }
}

/// Counter ticks in `n` milliseconds.
pub fn ms(n: u64) -> u64 {
    aos::time::frequency() * n / 1000
}
