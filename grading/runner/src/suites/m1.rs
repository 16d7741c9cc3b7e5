//! The M1 suite (book ch. 3.16-3.18) on every QEMU board: the in-guest
//! groups `mm`, `early`, `late` and `ram` (grading/guest/src/m1.rs) each
//! end with a verdict this reads, and from outside the guest:
//! - the bytes init wrote through its fixed mapping are read from guest
//!   *physical* memory over QMP (`xp`) while the machine is stopped, and
//!   must hold the pattern the runner computes for each address;
//! - the stage's own image (`cargo xtask run m1`) ends with QEMU's
//!   "nothing to run" exit status, after init's demonstration.
//!
//! The grading image boots once per target (with 2 GiB of RAM where QEMU
//! describes the memory itself, so a 1 GiB-aligned allocation is possible)
//! and its transcript is shared by the checks.

use std::time::Duration;

use grading::m1::DEMO_SEED;

use super::cpu_driver::NOTHING_TO_RUN;
use super::{Target, group_verdict, once, stage_image, with_transcript};
use crate::machine::Machine;
use crate::{CheckResult, Trial, ensure};

/// What one grading boot produced.
#[derive(Debug)]
struct Run {
    transcript: String,
    exit: Option<i32>,
    /// The physical-memory check's outcome.
    memory: Result<String, String>,
}

/// Fewest checks each group makes; fewer means the group stopped early.
const MIN_CHECKS: [(&str, usize); 4] = [("mm", 40), ("early", 50), ("late", 7), ("ram", 10)];

fn grading_boot(t: &Target) -> Result<Run, String> {
    let mut config = t.menu("grading")?.clone();
    if config.board.qemu.is_some_and(|q| q.provides_dtb) {
        config.memory_mib = Some(2048);
    }
    let mib = config.memory_mib.or(config.board.qemu.map(|q| q.memory_mib)).unwrap_or(0);
    let ram = (config.board.ram.base, config.board.ram.base + (mib << 20));
    let mut m = Machine::boot(&config)?;
    let wait = Duration::from_secs(120);
    m.expect("init: mapped ", wait).map_err(|e| format!("{e}\n{}", m.transcript()))?;
    let rest = m.expect(" words differ", wait).map_err(|e| format!("{e}\n{}", m.transcript()))?;
    // Stop the machine while init holds still, and read the frame.
    let memory = read_demo_frame(&mut m, &format!("init: mapped {rest}"), ram);
    let _ = m.qmp().execute("cont", serde_json::json!({}));
    let status = m.wait_exit(Duration::from_secs(300));
    let exit = status.ok().and_then(|s| s.code());
    Ok(Run { transcript: m.transcript(), exit, memory })
}

/// Parses "init: mapped 0x10000 bytes of frame 0x4a000000 at ..." and
/// checks sampled words of the frame in physical memory.
fn read_demo_frame(m: &mut Machine, seen: &str, ram: (u64, u64)) -> Result<String, String> {
    m.qmp().execute("stop", serde_json::json!({}))?;
    let line = seen.lines().rev().find(|l| l.contains("init: mapped ")).ok_or("no mapping line")?.to_owned();
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |after: &str| -> Result<u64, String> {
        let i = words.iter().position(|w| *w == after).ok_or_else(|| format!("no {after:?} in {line:?}"))?;
        let w = words.get(i + 1).ok_or("truncated line")?.trim_end_matches(',');
        u64::from_str_radix(w.trim_start_matches("0x"), 16).map_err(|e| format!("{w}: {e}"))
    };
    let bytes = num("mapped")?;
    let pa = num("frame")?;
    ensure!(bytes >= 4096 && bytes % 4096 == 0, "odd frame size {bytes:#x}");
    ensure!(pa % 4096 == 0, "frame address {pa:#x} not page-aligned");
    let (lo, hi) = ram;
    ensure!(pa >= lo && pa + bytes <= hi, "frame {pa:#x} outside RAM {lo:#x}..{hi:#x}");
    let mut checked = 0;
    for i in (0..bytes / 8).step_by(97) {
        let a = pa + i * 8;
        let got = m.qmp().read_u64(a)?;
        let want = a ^ DEMO_SEED;
        ensure!(got == want, "physical {a:#x} holds {got:#x}, the mapping should have put {want:#x} there");
        checked += 1;
    }
    Ok(format!("{checked} words of {bytes:#x} bytes at {pa:#x}"))
}

/// The stage's own image: init maps its frame, reads it back, exits.
fn default_image(t: &Target) -> CheckResult {
    stage_image(t, "m1: ", |text| {
        let line = text.lines().find(|l| l.starts_with("init: mapped ")).ok_or("init did not map its frame")?;
        ensure!(line.ends_with(", 0 words differ"), "read-back differed: {line}");
        ensure!(text.contains("init: done"), "init did not finish");
        Ok(())
    })
}

/// Every check for every target.
pub fn checks(targets: &[Target]) -> Vec<Trial> {
    let mut all = Vec::new();
    for t in targets {
        let name = |n: &str| format!("m1::{}::{n}", t.label);
        let tt = t.clone();
        let run = once(move || grading_boot(&tt));
        for (g, min) in MIN_CHECKS {
            let run = run.clone();
            let test = match g {
                "mm" => "memory_manager_sizes_alignments_frees_and_refusals",
                "early" => "slots_slabs_partial_frees_and_mappings",
                "late" => "exhaustion_full_recovery_and_endurance",
                _ => "ram_alloc_hook_is_installed",
            };
            all.push(Trial::test(name(test), move || {
                let run = run()?;
                Ok(with_transcript(&run.transcript, group_verdict(&run.transcript, "m1", g, min))?)
            }));
        }
        let r = run.clone();
        all.push(Trial::test(name("mapped_bytes_land_in_the_frames_physical_memory"), move || {
            let run = r()?;
            Ok(with_transcript(&run.transcript, run.memory.clone().map(drop))?)
        }));
        let r = run.clone();
        all.push(Trial::test(name("init_finishes_and_the_machine_stops_cleanly"), move || {
            let run = r()?;
            Ok(with_transcript(
                &run.transcript,
                (|| {
                    ensure!(run.transcript.contains("init: done"), "init did not finish");
                    ensure!(!run.transcript.contains("PANIC"), "the kernel panicked");
                    ensure!(!run.transcript.contains("panic:"), "init panicked");
                    ensure!(run.exit == Some(NOTHING_TO_RUN), "QEMU exit status {:?}", run.exit);
                    Ok(())
                })(),
            )?)
        }));
        let tt = t.clone();
        all.push(Trial::test(name("stage_image_maps_a_frame_and_exits"), move || Ok(default_image(&tt)?)));
    }
    all
}
