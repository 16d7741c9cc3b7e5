//! The stages the kit boots, in order. Adding a stage is one entry here
//! plus its crate and its grading suite.

use grading_runner::Trial;
use grading_runner::suites::Target;

/// How a stage's image is made.
#[derive(Debug)]
pub enum Kind {
    /// A self-contained kernel binary (M0).
    Bare { package: &'static str, bin: &'static str },
    /// The CPU driver plus user programs from `programs`, packed into a boot
    /// image by one of the `menu.lst` files in `menus` (relative to the root).
    Kernel { programs: &'static str, menus: &'static str, default_menu: &'static str },
}

/// A stage.
#[derive(Debug)]
pub struct Stage {
    /// The name on the command line (`m0`).
    pub name: &'static str,
    pub kind: Kind,
    /// A milestone of the course (the default stage is the last milestone);
    /// otherwise a test stage of common code.
    pub milestone: bool,
    /// Its grading suite, over the QEMU targets it runs on.
    pub suite: fn(&[Target]) -> Vec<Trial>,
}

impl Stage {
    /// The packages whose host tests belong to this stage.
    pub fn host_packages(&self) -> Vec<&'static str> {
        match self.kind {
            Kind::Bare { package, .. } => vec![package, "devices", "platform"],
            Kind::Kernel { programs, .. } => {
                vec!["cpu-driver", "kpi", "aos", "api", "grading", "devices", "platform", programs]
            }
        }
    }
}

/// Every stage, least complete first.
pub static ALL: &[Stage] = &[
    Stage {
        name: "m0",
        kind: Kind::Bare { package: "m0-bringup", bin: "m0-kernel" },
        milestone: true,
        suite: grading_runner::suites::m0::checks,
    },
    Stage {
        name: "cpu-driver",
        kind: Kind::Kernel { programs: "cpu-driver-programs", menus: "grading/cpu-driver/menus", default_menu: "args" },
        milestone: false,
        suite: grading_runner::suites::cpu_driver::checks,
    },
    Stage {
        name: "m1",
        kind: Kind::Kernel { programs: "m1-memory", menus: "m1-memory", default_menu: "menu" },
        milestone: true,
        suite: grading_runner::suites::m1::checks,
    },
    Stage {
        name: "m2",
        kind: Kind::Kernel { programs: "m2-spawn", menus: "m2-spawn", default_menu: "menu" },
        milestone: true,
        suite: grading_runner::suites::m2::checks,
    },
    Stage {
        name: "m3",
        kind: Kind::Kernel { programs: "m3-lmp", menus: "m3-lmp", default_menu: "menu" },
        milestone: true,
        suite: grading_runner::suites::m3::checks,
    },
];

/// A stage by name; `None` is the most complete milestone.
pub fn find(name: Option<&str>) -> Result<&'static Stage, String> {
    match name {
        None => Ok(ALL.iter().rev().find(|s| s.milestone).expect("at least one milestone")),
        Some(n) => ALL.iter().find(|s| s.name == n).ok_or_else(|| {
            let names: Vec<_> = ALL.iter().map(|s| s.name).collect();
            format!("unknown stage '{n}'; stages built so far: {}", names.join(", "))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_last_milestone_and_unknown_names_fail() {
        let last = ALL.iter().rev().find(|s| s.milestone).unwrap();
        assert_eq!(find(None).unwrap().name, last.name);
        assert!(matches!(find(Some("m0")).unwrap().kind, Kind::Bare { package: "m0-bringup", .. }));
        assert_eq!(find(Some("cpu-driver")).unwrap().name, "cpu-driver");
        let e = find(Some("m9")).unwrap_err();
        assert!(e.contains("unknown stage 'm9'") && e.contains("m0"), "{e}");
    }
}
