//! Grading suites, one module per stage.

use std::sync::{Arc, OnceLock};

use crate::qemu::QemuConfig;
use crate::{CheckResult, Trial, ensure};

pub mod cpu_driver;
pub mod m0;
pub mod m1;
pub mod m2;
pub mod m3;

/// One QEMU configuration a suite runs against.
#[derive(Clone, Debug)]
pub struct Target {
    /// Label in check names, e.g. `qemu-virt-el2`.
    pub label: String,
    /// The stage's default image.
    pub config: QemuConfig,
    /// For stages booted from `menu.lst` files: one configuration per menu,
    /// by menu name.
    pub menus: Vec<(String, QemuConfig)>,
}

impl Target {
    /// The configuration of a menu, or why there is none.
    pub fn menu(&self, name: &str) -> Result<&QemuConfig, String> {
        self.menus.iter().find(|(n, _)| n == name).map(|(_, c)| c).ok_or_else(|| format!("no image for menu '{name}'"))
    }
}

/// `boot`, run once however many checks ask for its result: the checks of
/// a suite share one grading boot.
pub fn once<T: Send + Sync + 'static>(
    boot: impl Fn() -> Result<T, String> + Send + Sync + 'static,
) -> impl Fn() -> Result<Arc<T>, String> + Clone + Send + 'static {
    let cell: Arc<OnceLock<Result<Arc<T>, String>>> = Arc::new(OnceLock::new());
    let boot = Arc::new(boot);
    move || cell.get_or_init(|| boot().map(Arc::new)).clone()
}

/// Checks the in-guest verdict of `group` of `stage` (`m1: ok GROUP/...`
/// lines and `m1: GROUP done: N passed, 0 failed`): no failure, the
/// verdict agrees with the checks printed, and at least `min` ran.
pub fn group_verdict(text: &str, stage: &str, group: &str, min: usize) -> CheckResult {
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("{stage}: FAILED {group}/"))).collect();
    ensure!(failed.is_empty(), "failed checks:\n{}", failed.join("\n"));
    let verdict = format!("{stage}: {group} done: ");
    let line = text.lines().find(|l| l.starts_with(&verdict)).ok_or(format!("group {group} never finished"))?;
    let ok = text.lines().filter(|l| l.starts_with(&format!("{stage}: ok {group}/"))).count();
    ensure!(line.ends_with(&format!("{ok} passed, 0 failed")), "verdict {line:?} disagrees with the {ok} checks seen");
    ensure!(ok >= min, "only {ok} checks ran in group {group}, expected at least {min}");
    Ok(())
}

/// A grading boot's result, as the shared trial builders see it.
pub trait Transcript: Send + Sync + 'static {
    fn transcript(&self) -> &str;
}

/// A check of one grading boot's result.
pub type Check<R> = fn(&R) -> CheckResult;

/// Adds to `all` a trial per in-guest group of `stage` (its verdict, at
/// least `min` checks) and one per console check, all on the one boot
/// `run` gives; `name` makes a trial's full name.
pub fn boot_trials<R: Transcript>(
    all: &mut Vec<Trial>,
    name: &dyn Fn(&str) -> String,
    run: impl Fn() -> Result<Arc<R>, String> + Clone + Send + 'static,
    stage: &'static str,
    groups: &[(&'static str, usize)],
    console: &[(&str, Check<R>)],
) {
    for &(g, min) in groups {
        let run = run.clone();
        all.push(Trial::test(name(&format!("group_{g}")), move || {
            let run = run()?;
            Ok(with_transcript(run.transcript(), group_verdict(run.transcript(), stage, g, min))?)
        }));
    }
    for &(n, check) in console {
        let run = run.clone();
        all.push(Trial::test(name(n), move || {
            let run = run()?;
            Ok(with_transcript(run.transcript(), check(&run))?)
        }));
    }
}

/// Boots a stage's own image (menu `menu`) and waits for QEMU to exit;
/// `check` then looks at the transcript. The image must not have run the
/// grading suite (no line contains `grading_mark`), and QEMU must exit
/// with nothing left to run.
pub fn stage_image(t: &Target, grading_mark: &str, check: impl FnOnce(&str) -> CheckResult) -> CheckResult {
    let mut m = crate::machine::Machine::boot(t.menu("menu")?)?;
    let status = m.wait_exit(std::time::Duration::from_secs(60)).map_err(|e| format!("{e}\n{}", m.transcript()))?;
    let text = m.transcript();
    let r = check(&text).and_then(|()| {
        ensure!(!text.contains(grading_mark), "grading ran in the stage's own image");
        ensure!(status.code() == Some(cpu_driver::NOTHING_TO_RUN), "QEMU exit status {:?}", status.code());
        Ok(())
    });
    with_transcript(&text, r)
}

/// A failure with the console transcript appended.
pub fn with_transcript(text: &str, r: CheckResult) -> CheckResult {
    r.map_err(|e| format!("{e}\n--- console transcript ---\n{text}"))
}
