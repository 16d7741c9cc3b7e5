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

/// A measurement: counter ticks over a number of operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Measured {
    ticks: u64,
    count: u64,
}

/// What each benchmark name measures, in the order they are printed.
const NAMES: &[(&str, &str)] = &[
    ("reset-to-init-first-instruction", "reset to init's first instruction"),
    ("null-syscall", "null syscall round trip"),
    ("retype-ram-to-4k-frame", "retype RAM into a 4 KiB frame"),
    ("map-4k-page", "map a 4 KiB page"),
    ("unmap-4k-page", "unmap a 4 KiB page"),
    ("delete-frame", "delete a frame"),
    ("retype-ram-to-2m-frame", "retype RAM into a 2 MiB frame"),
    ("map-2m-block", "map a 2 MiB block"),
    ("unmap-2m-block", "unmap a 2 MiB block"),
    ("revoke-100-descendants", "revoke a 100-descendant tree"),
];

/// Runs the CPU driver's benchmark image once; returns the counter
/// frequency and its `bench:` measurements.
fn run_once(config: &QemuConfig) -> Result<(u64, BTreeMap<String, Measured>), String> {
    let mut m = Machine::boot(config)?;
    m.wait_exit(Duration::from_secs(300))?;
    let text = m.transcript();
    if text.contains("bench: FAILED") {
        return Err(format!("a benchmark failed:\n{text}"));
    }
    let mut freq = None;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("bench: ") else { continue };
        match rest.split_whitespace().collect::<Vec<_>>()[..] {
            ["counter-frequency", hz, "Hz"] => freq = hz.parse().ok(),
            [name, ticks, count] => {
                let bad = || format!("bad bench line {line:?}");
                let ticks = ticks.parse().map_err(|_| bad())?;
                let count = count.parse().map_err(|_| bad())?;
                out.insert(name.to_owned(), Measured { ticks, count });
            }
            _ => return Err(format!("bad bench line {line:?}")),
        }
    }
    let freq = freq.ok_or_else(|| format!("the benchmark printed no counter frequency:\n{text}"))?;
    Ok((freq, out))
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

    let (freq, first) = run_once(&config)?;
    let (_, second) = run_once(&config)?;
    let version = grading_runner::qemu::installed_version().map_or("unknown".into(), |(a, b)| format!("{a}.{b}"));
    println!(
        "QEMU {version}, -machine {},dtb-randomness=off -cpu {} -icount shift=0,sleep=off -rtc clock=vm",
        q.machine, q.cpu
    );
    println!("counter {freq} Hz: one tick = {} instructions\n", 1e9 / freq as f64);
    println!("{:<40} {:>10} {:>8} {:>16}", "benchmark", "ticks", "ops", "instructions/op");
    let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
    let unknown = first.keys().filter(|k| !known.contains(&k.as_str()));
    let rows = NAMES.iter().map(|(n, d)| (*n, *d)).chain(unknown.map(|k| (k.as_str(), k.as_str())));
    for (name, description) in rows {
        if let Some(m) = first.get(name) {
            let per_op = m.ticks as f64 * 1e9 / freq as f64 / m.count.max(1) as f64;
            println!("{description:<40} {:>10} {:>8} {per_op:>16.1}", m.ticks, m.count);
        }
    }
    if first == second {
        println!("\ntwo runs gave identical figures");
        Ok(())
    } else {
        Err(format!("two runs under icount differ: {first:?} vs {second:?}"))
    }
}
