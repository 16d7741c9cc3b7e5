//! `cargo xtask bench`: the kit's benchmarks under deterministic
//! instruction counting. A benchmark image prints `bench: NAME VALUE UNIT`
//! lines; under `-icount shift=0,sleep=off` one guest instruction is one
//! virtual nanosecond, so counter ticks convert to instructions as
//! `ticks * 1e9 / CNTFRQ`. Each image runs twice and the figures must agree.
//!
//! This is the first version (CPU driver I): reset to init's first
//! instruction and the null syscall round trip, on `qemu-virt`. The
//! benchmark-harness issue grows it (Linux peer, CSV, figures).

use std::collections::BTreeMap;
use std::time::Duration;

use grading_runner::machine::Machine;
use grading_runner::qemu::QemuConfig;

use crate::stages::{self, Kind};
use crate::{image, prereq};

/// Runs the CPU driver's benchmark image once; returns its `bench:` lines.
fn run_once(config: &QemuConfig) -> Result<BTreeMap<String, (u64, String)>, String> {
    let mut m = Machine::boot(config)?;
    m.wait_exit(Duration::from_secs(300))?;
    let mut out = BTreeMap::new();
    for line in m.transcript().lines() {
        let Some(rest) = line.strip_prefix("bench: ") else { continue };
        let parts: Vec<&str> = rest.split_whitespace().collect();
        if let [name, value, unit] = parts[..] {
            let v = value.parse().map_err(|_| format!("bad bench line {line:?}"))?;
            out.insert(name.to_owned(), (v, unit.to_owned()));
        }
    }
    if out.is_empty() {
        return Err(format!("the benchmark printed no results:\n{}", m.transcript()));
    }
    Ok(out)
}

pub fn run() -> Result<(), String> {
    prereq::rust()?;
    let board = &platform::QEMU_VIRT;
    let q = board.qemu.ok_or("qemu-virt has no QEMU description")?;
    prereq::qemu(q.min_version)?;
    let stage = stages::find(Some("cpu-driver"))?;
    let Kind::Kernel { .. } = stage.kind else { return Err("cpu-driver is not a kernel stage".into()) };
    let built = image::build(stage, board, true)?;
    let mut config = QemuConfig::new(board, &built.image, None);
    image::pack_menu(stage, board, "bench")?.apply(&mut config);
    config.icount = true;

    let first = run_once(&config)?;
    let second = run_once(&config)?;
    let freq = first.get("counter-frequency").map(|(v, _)| *v).ok_or("no counter-frequency line")?;
    let to_instructions = |ticks: u64| ticks as f64 * 1e9 / freq as f64;
    let version = grading_runner::qemu::installed_version().map_or("unknown".into(), |(a, b)| format!("{a}.{b}"));
    println!(
        "QEMU {version}, -machine {},dtb-randomness=off -cpu {} -icount shift=0,sleep=off -rtc clock=vm",
        q.machine, q.cpu
    );
    println!("counter {freq} Hz: one tick = {} instructions\n", 1e9 / freq as f64);
    println!("{:<40} {:>14} {:>16}", "benchmark", "ticks", "instructions");
    let mut rows = Vec::new();
    if let Some((t, _)) = first.get("reset-to-init-first-instruction") {
        rows.push(("reset to init's first instruction", *t, to_instructions(*t)));
    }
    if let Some((t, _)) = first.get("null-syscall-x10000") {
        rows.push(("null syscall round trip (per call)", *t, to_instructions(*t) / 10_000.0));
    }
    for (name, ticks, instr) in &rows {
        println!("{name:<40} {ticks:>14} {instr:>16.1}");
    }
    if first == second {
        println!("\ntwo runs gave identical figures");
        Ok(())
    } else {
        Err(format!("two runs under icount differ: {first:?} vs {second:?}"))
    }
}
