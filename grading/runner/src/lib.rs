//! The grading runner: the host half of every grading suite.
//!
//! It boots a stage image in QEMU ([`qemu`]), talks to the guest console
//! with send/expect and timeouts ([`machine`]), reads device registers and
//! machine events through QMP ([`qmp`]), and runs suites of named checks,
//! printing libtest-style lines ([`report`]). Suites live in [`suites`], one
//! module per milestone; each check boots its own machine so checks cannot
//! disturb each other and can run in parallel.
//!
//! It may not build images (that is `xtask`'s job: it hands over paths) and
//! it must not trust what the guest says about itself where the outside
//! world can be asked instead (exit status, device state, QMP events).

pub mod machine;
pub mod qemu;
pub mod qmp;
pub mod suites;

pub use libtest_mimic::{self, Trial};

/// A check's verdict: `Err` carries what went wrong, for the report.
pub type CheckResult = Result<(), String>;

/// Fails a check with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}
