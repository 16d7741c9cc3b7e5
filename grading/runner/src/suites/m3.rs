//! The M3 suite (book ch. 5.17) on every QEMU board: the stage's own image.

use std::time::Duration;

use super::cpu_driver::NOTHING_TO_RUN;
use super::{Target, with_transcript};
use crate::machine::Machine;
use crate::{CheckResult, Trial, ensure};

/// The stage's own image: init serves two hellos and exits.
fn default_image(t: &Target) -> CheckResult {
    let mut m = Machine::boot(t.menu("menu")?)?;
    let status = m.wait_exit(Duration::from_secs(60)).map_err(|e| format!("{e}\n{}", m.transcript()))?;
    let text = m.transcript();
    let r = (|| {
        ensure!(text.contains("init: all their memory is free again"), "memory did not come back");
        ensure!(status.code() == Some(NOTHING_TO_RUN), "QEMU exit status {:?}", status.code());
        Ok(())
    })();
    with_transcript(&text, r)
}

/// Every check for every target.
pub fn checks(targets: &[Target]) -> Vec<Trial> {
    let mut all = Vec::new();
    for t in targets {
        let name = |n: &str| format!("m3::{}::{n}", t.label);
        let tt = t.clone();
        all.push(Trial::test(name("stage_image_serves_the_menu_and_exits"), move || Ok(default_image(&tt)?)));
    }
    all
}
