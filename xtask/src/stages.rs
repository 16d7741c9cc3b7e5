//! The staged milestones the kit boots, in order. Adding a stage is one
//! entry here plus its crate and its grading suite.

use grading_runner::Trial;
use grading_runner::suites::m0::Target;

/// A milestone stage.
#[derive(Debug)]
pub struct Stage {
    /// The name on the command line (`m0`).
    pub name: &'static str,
    /// Its cargo package and kernel binary.
    pub package: &'static str,
    pub bin: &'static str,
    /// Its grading suite, over the QEMU targets it runs on.
    pub suite: fn(&[Target]) -> Vec<Trial>,
}

/// Every stage, least complete first.
pub static ALL: &[Stage] =
    &[Stage { name: "m0", package: "m0-bringup", bin: "m0-kernel", suite: grading_runner::suites::m0::checks }];

/// A stage by name; `None` is the most complete stage.
pub fn find(name: Option<&str>) -> Result<&'static Stage, String> {
    match name {
        None => Ok(ALL.last().expect("at least one stage")),
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
    fn default_is_the_last_stage_and_unknown_names_fail() {
        assert_eq!(find(None).unwrap().name, ALL.last().unwrap().name);
        assert_eq!(find(Some("m0")).unwrap().package, "m0-bringup");
        let e = find(Some("m9")).unwrap_err();
        assert!(e.contains("unknown stage 'm9'") && e.contains("m0"), "{e}");
    }
}
