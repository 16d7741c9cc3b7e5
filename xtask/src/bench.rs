//! `cargo xtask bench`: the kit's benchmarks under deterministic
//! instruction counting. A benchmark image prints `bench: NAME VALUE UNIT`
//! lines; under `-icount shift=0,sleep=off` one guest instruction is one
//! virtual nanosecond, so counter ticks convert to instructions as
//! `ticks * 1e9 / CNTFRQ`. Each image runs twice and the figures must agree.
//!
//! Each benchmark prints one line per sample (`bench: NAME TICKS COUNT`);
//! the first [`WARMUP`] samples of a benchmark are discarded (book ch. 14.8)
//! and the rest summarised as median, minimum, maximum and 90th percentile
//! of instructions per operation. The results go to the terminal, to
//! `report/data/bench-<board>.csv`, `report/figures/bench-<board>.svg`,
//! and into the performance chapter between its `bench:begin` and
//! `bench:end` markers.
//!
//! Adding a benchmark: print one more `bench:` line from a benchmark
//! program, and give its name a description in [`NAMES`].

use std::collections::BTreeMap;
use std::time::Duration;

use grading_runner::machine::Machine;
use grading_runner::qemu::QemuConfig;

use crate::stages::{self, Kind};
use crate::{image, linux, prereq, root};

/// A measurement: counter ticks over a number of operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Measured {
    ticks: u64,
    count: u64,
}

/// Samples discarded from the start of each benchmark.
const WARMUP: usize = 2;

/// Instructions per operation, summarised over the kept samples.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Summary {
    samples: usize,
    median: f64,
    min: f64,
    max: f64,
    p90: f64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summarise(samples: &[Measured], freq: u64) -> Summary {
    let kept = if samples.len() > WARMUP { &samples[WARMUP..] } else { samples };
    let mut v: Vec<f64> = kept.iter().map(|m| m.ticks as f64 * 1e9 / freq as f64 / m.count.max(1) as f64).collect();
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    Summary { samples: v.len(), median, min: v[0], max: v[v.len() - 1], p90: percentile(&v, 90.0) }
}

/// What each benchmark name measures, in the order they are printed.
const NAMES: &[(&str, &str)] = &[
    ("reset-to-init-first-instruction", "reset to init's first instruction"),
    ("null-syscall", "null syscall round trip"),
    ("yield", "yield (one domain: back to itself)"),
    ("retype-ram-to-4k-frame", "retype RAM into a 4 KiB frame"),
    ("map-4k-page", "map a 4 KiB page"),
    ("unmap-4k-page", "unmap a 4 KiB page"),
    ("delete-frame", "delete a frame"),
    ("retype-ram-to-2m-frame", "retype RAM into a 2 MiB frame"),
    ("map-2m-block", "map a 2 MiB block"),
    ("unmap-2m-block", "unmap a 2 MiB block"),
    ("revoke-100-descendants", "revoke a 100-descendant tree"),
    ("lmp-send-recv-self", "LMP send to oneself and receive (no switch)"),
    ("ipc-round-trip", "LMP null round trip (send, switch, reply, switch)"),
    ("lmp-one-way", "LMP one way: send to receipt, with a switch"),
    ("yield-to-dispatcher", "yield to another dispatcher (one switch)"),
    ("yield-to-upcalled-dispatcher", "yield round trip to an enabled dispatcher (its run upcall resumes it)"),
    ("fault-upcall-resume", "page fault delivered as an upcall, resumed"),
    ("thread-switch", "user-level thread switch (yield)"),
    ("retype-ram-to-4k-ram", "raw retype: 4 KiB of RAM from the root capability"),
    ("mm-alloc-4k-10k-outstanding", "mm alloc 4 KiB, 10^4 regions outstanding"),
    ("mm-free-4k-10k-outstanding", "mm free 4 KiB, 10^4 regions outstanding"),
    ("mm-alloc-64k-aligned-64k", "mm alloc 64 KiB at 64 KiB alignment"),
    ("mm-free-64k", "mm free 64 KiB"),
    ("map-fixed-4k", "map_fixed_attr of a 4 KiB frame (tables exist)"),
    ("spawn-to-first-instruction", "spawn call to the child's first instruction"),
    ("spawn-exit", "spawn a program that exits at once, to its reclaim"),
    ("rpc-null-round-trip", "null RPC to init through the channel layer (M3)"),
    ("lmp-raw-round-trip", "raw LMP null round trip between two domains (M3)"),
    ("get-ram-cap-4k", "get_ram_cap of 4 KiB from the memory server"),
    ("get-ram-cap-1m", "get_ram_cap of 1 MiB from the memory server"),
    ("send-string-104-fragments", "send_string of 104 bytes as one fragment"),
    ("send-string-104-frame", "send_string of 104 bytes in the transfer frame"),
    ("send-string-312-fragments", "send_string of 312 bytes as three fragments"),
    ("send-string-312-frame", "send_string of 312 bytes in the transfer frame"),
    ("send-string-416-fragments", "send_string of 416 bytes as four fragments"),
    ("send-string-416-frame", "send_string of 416 bytes in the transfer frame"),
    ("send-string-1k-fragments", "send_string of 1 KiB as ten fragments"),
    ("send-string-1k-frame", "send_string of 1 KiB in the transfer frame"),
];

/// Runs the CPU driver's benchmark image once; returns the counter
/// frequency and its `bench:` measurements.
fn run_once(config: &QemuConfig) -> Result<(u64, BTreeMap<String, Vec<Measured>>), String> {
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
                out.entry(name.to_owned()).or_insert_with(Vec::new).push(Measured { ticks, count });
            }
            _ => return Err(format!("bad bench line {line:?}")),
        }
    }
    let freq = freq.ok_or_else(|| format!("the benchmark printed no counter frequency:\n{text}"))?;
    Ok((freq, out))
}

pub fn run(stage: Option<&str>, wall: bool) -> Result<(), String> {
    match stage {
        None | Some("cpu-driver") => {}
        Some("m1") => return run_stage("m1", "m1-memory", wall),
        Some("m2") => return run_stage("m2", "m2-spawn", wall),
        Some("m3") => return run_stage("m3", "m3-lmp", wall),
        Some(s) => {
            stages::find(Some(s))?;
            return Err(format!(
                "stage '{s}' has no benchmark program yet; stages with benchmarks: cpu-driver, m1, m2, m3 (M0's boot cost is in its banner: cargo xtask run m0 --icount)"
            ));
        }
    }
    let (board, q, config) = bench_config("cpu-driver", wall)?;

    let (freq, mut first) = run_once(&config)?;
    // Only icount runs are compared, so wall mode boots each image once.
    let mut second = if wall { None } else { Some(run_once(&config)?.1) };
    // Spawn costs come from M2's benchmark image, booted the same way, so
    // the side-by-side with Linux's fork and exec is from this run too.
    let (_, _, spawn_config) = bench_config("m2", wall)?;
    for run in std::iter::once(&mut first).chain(second.as_mut()) {
        let (spawn_freq, spawn) = run_once(&spawn_config)?;
        if spawn_freq != freq {
            return Err(format!(
                "the M2 benchmark ran with a {spawn_freq} Hz counter, the CPU driver's with {freq} Hz"
            ));
        }
        run.extend(spawn);
    }
    let version = grading_runner::qemu::installed_version_text().unwrap_or_else(|| "unknown".into());
    let method = if wall {
        format!(
            "QEMU {version}, `-machine {} -cpu {}`, no icount: wall-clock nanoseconds on this host; counter {freq} Hz; first {WARMUP} samples of each benchmark discarded",
            q.machine, q.cpu
        )
    } else {
        format!(
            "QEMU {version}, `-machine {},dtb-randomness=off -cpu {} -icount shift=0,sleep=off -rtc clock=vm`, release build; counter {freq} Hz ({} instructions a tick); first {WARMUP} samples of each benchmark discarded",
            q.machine,
            q.cpu,
            1e9 / freq as f64
        )
    };
    let unit = if wall { "nanoseconds per operation" } else { "instructions per operation" };
    println!("{method}\n");
    let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
    let unknown = first.keys().filter(|k| !known.contains(&k.as_str()));
    let rows: Vec<(&str, &str, Summary)> = NAMES
        .iter()
        .map(|(n, d)| (*n, *d))
        .chain(unknown.map(|k| (k.as_str(), k.as_str())))
        .filter_map(|(n, d)| first.get(n).map(|m| (n, d, summarise(m, freq))))
        .collect();
    let (table, csv) = tabulate(&rows, unit);
    if wall {
        println!("\nwall-clock figures depend on the host and its load; nothing written to the report");
        return Ok(());
    }
    if let Some(second) = &second
        && *second != first
    {
        return Err(format!("two runs under icount differ: {first:?} vs {second:?}"));
    }
    println!("\ntwo runs gave identical figures");

    // The Linux peer in the same QEMU configuration.
    let peer = match linux::prepare() {
        Ok((kernel, initramfs)) => {
            let mut c = QemuConfig::new(board, &kernel, None);
            c.initrd = Some(initramfs);
            c.append = Some("console=ttyAMA0 quiet panic=-1".into());
            c.no_reboot = true;
            c.icount = true;
            let (lfreq, one) = run_once(&c)?;
            let (_, two) = run_once(&c)?;
            Some((lfreq, one, two))
        }
        Err(e) => {
            eprintln!("xtask: no Linux peer: {e}");
            None
        }
    };
    let mut side = String::new();
    if let Some((lfreq, one, two)) = &peer {
        let same = one == two;
        let note = if same {
            "two runs identical".to_owned()
        } else {
            let worst = one
                .iter()
                .flat_map(|(k, v)| {
                    v.iter().zip(two.get(k).into_iter().flatten()).map(|(a, b)| a.ticks.abs_diff(b.ticks))
                })
                .max()
                .unwrap_or(0);
            format!("two runs differ by at most {worst} counter ticks per sample")
        };
        let dash = || "—".to_owned();
        side.push_str(&format!(
            "\nSide by side with Linux (Debian's arm64 kernel, static musl peer as `/init`, same QEMU flags; Linux: {note}). Medians, instructions per operation:\n\n"
        ));
        side.push_str("| benchmark | kit | Linux | kit / Linux | seL4 (reference) |\n|---|---|---|---|---|\n");
        println!("\n{:<48} {:>12} {:>12} {:>10} {:>8}", "side by side (medians)", "kit", "Linux", "kit/Linux", "seL4");
        let pairs = [
            ("reset-to-init-first-instruction", "reset to the first user program", None),
            ("null-syscall", "null syscall", Some(91)),
            ("yield", "yield", Some(330)),
            ("ipc-round-trip", "IPC round trip (Linux: pipe ping-pong)", Some(408)),
            ("page-fault", "demand page fault (seL4: user fault round trip)", Some(1131)),
            ("map-4k-page", "map a 4 KiB page (Linux: mmap, populated)", Some(562)),
            ("unmap-4k-page", "unmap a 4 KiB page (Linux: munmap)", None),
            ("spawn-exit", "spawn to exit (Linux: fork, exec, wait)", None),
        ];
        for (name, description, sel4) in pairs {
            let ours = first.get(name).map(|m| summarise(m, freq).median);
            let theirs = one.get(name).map(|m| summarise(m, *lfreq).median);
            let fmt = |v: Option<f64>| v.map_or_else(dash, |v| format!("{v:.0}"));
            let ratio = match (ours, theirs) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => dash(),
            };
            let sel4 = sel4.map_or_else(dash, |v: u32| v.to_string());
            println!("{description:<48} {:>12} {:>12} {ratio:>10} {sel4:>8}", fmt(ours), fmt(theirs));
            side.push_str(&format!("| {description} | {} | {} | {ratio} | {sel4} |\n", fmt(ours), fmt(theirs)));
        }
        side.push_str("\nseL4: sel4bench at seL4 1326364, release, fastpath, non-MCS, one core, measured in the same QEMU configuration (IPC round trip 408 = Call one-way 192 + ReplyRecv 216).\n");
        let mut lcsv = String::from(CSV_HEADER);
        for (name, samples) in one {
            lcsv.push_str(&csv_line(name, &summarise(samples, *lfreq)));
        }
        let data = root().join("report/data");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let path = data.join(format!("bench-{}-linux.csv", board.name));
        std::fs::write(&path, lcsv).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let data = root().join("report/data");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let csv_path = data.join(format!("bench-{}.csv", board.name));
    std::fs::write(&csv_path, csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    let figures = root().join("report/figures");
    std::fs::create_dir_all(&figures).map_err(|e| e.to_string())?;
    let svg_path = figures.join(format!("bench-{}.svg", board.name));
    let bars: Vec<(&str, Summary)> = rows.iter().map(|(_, d, s)| (*d, *s)).collect();
    figure(&svg_path, &bars, &format!("CPU driver on {} (QEMU {version}, icount)", board.name))?;
    let section = format!(
        "{method}. Two runs gave identical figures.\n\n{table}\n![instructions per operation](figures/bench-{}.svg)\n{side}",
        board.name
    );
    regenerate(&root().join("report/performance.md"), &section)?;
    println!("wrote {}, {} and the performance chapter's table", csv_path.display(), svg_path.display());
    Ok(())
}

/// The QEMU configuration of a stage's `bench` menu on qemu-virt, deterministic
/// unless `wall`, with the prerequisites checked and the image built.
fn bench_config(stage: &str, wall: bool) -> Result<(&'static platform::Board, platform::Qemu, QemuConfig), String> {
    prereq::rust()?;
    let board = &platform::QEMU_VIRT;
    let q = board.qemu.ok_or("qemu-virt has no QEMU description")?;
    prereq::qemu(q.min_version)?;
    let stage = stages::find(Some(stage))?;
    let Kind::Kernel { .. } = stage.kind else { return Err(format!("{} is not a kernel stage", stage.name)) };
    let built = image::build(stage, board, true)?;
    let mut config = QemuConfig::new(board, &built.image, None);
    image::pack_menu(stage, board, "bench")?.apply(&mut config);
    config.icount = !wall;
    Ok((board, q, config))
}

const CSV_HEADER: &str = "benchmark,samples,median,min,max,p90\n";

fn csv_line(name: &str, s: &Summary) -> String {
    format!("{name},{},{:.1},{:.1},{:.1},{:.1}\n", s.samples, s.median, s.min, s.max, s.p90)
}

/// Prints `(name, description, summary)` rows on the terminal and returns
/// them as a Markdown table and as CSV.
fn tabulate(rows: &[(&str, &str, Summary)], unit: &str) -> (String, String) {
    let width = rows.iter().map(|(_, d, _)| d.len()).chain([unit.len()]).max().unwrap_or(0);
    let mut table = String::from("| benchmark | samples | median | min | max | p90 |\n|---|---|---|---|---|---|\n");
    let mut csv = String::from(CSV_HEADER);
    println!("{unit:<width$} {:>7} {:>12} {:>12} {:>12} {:>12}", "samples", "median", "min", "max", "p90");
    for (name, description, s) in rows {
        println!(
            "{description:<width$} {:>7} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
            s.samples, s.median, s.min, s.max, s.p90
        );
        table.push_str(&format!(
            "| {description} | {} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            s.samples, s.median, s.min, s.max, s.p90
        ));
        csv.push_str(&csv_line(name, s));
    }
    (table, csv)
}

/// A milestone's benchmark image (its `bench` menu) on qemu-virt: the same
/// method, its table written into the milestone's report chapter
/// (`report/<chapter>.md`) and `report/data/bench-<board>-<stage>.csv`.
fn run_stage(name: &str, chapter: &str, wall: bool) -> Result<(), String> {
    let (board, q, config) = bench_config(name, wall)?;
    let (freq, first) = run_once(&config)?;
    if let Some(unknown) = first.keys().find(|k| !NAMES.iter().any(|(n, _)| n == k)) {
        return Err(format!("benchmark '{unknown}' has no description in xtask's NAMES"));
    }
    let rows: Vec<(&str, &str, Summary)> =
        NAMES.iter().filter_map(|&(n, d)| first.get(n).map(|m| (n, d, summarise(m, freq)))).collect();
    let unit = if wall { "nanoseconds per operation" } else { "instructions per operation" };
    let (table, csv) = tabulate(&rows, unit);
    if wall {
        println!("\nwall-clock figures depend on the host and its load; nothing written to the report");
        return Ok(());
    }
    let (_, second) = run_once(&config)?;
    if first != second {
        return Err(format!("two runs under icount differ: {first:?} vs {second:?}"));
    }
    println!("\ntwo runs gave identical figures");
    let version = grading_runner::qemu::installed_version_text().unwrap_or_else(|| "unknown".into());
    let method = format!(
        "QEMU {version}, `-machine {},dtb-randomness=off -cpu {} -icount shift=0,sleep=off -rtc clock=vm`, {} MiB, release build; counter {freq} Hz; first {WARMUP} samples of each benchmark discarded; two runs gave identical figures",
        q.machine, q.cpu, q.memory_mib
    );
    let data = root().join("report/data");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let csv_path = data.join(format!("bench-{}-{name}.csv", board.name));
    std::fs::write(&csv_path, csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    let chapter = root().join("report").join(format!("{chapter}.md"));
    regenerate(&chapter, &format!("{method}.\n\n{table}"))?;
    println!("wrote {} and the table in {}", csv_path.display(), chapter.display());
    Ok(())
}

/// Draws one horizontal bar per benchmark (median, log scale, since the
/// figures span four orders of magnitude) with a line from minimum to
/// maximum.
fn figure(path: &std::path::Path, rows: &[(&str, Summary)], title: &str) -> Result<(), String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    let n = rows.len();
    let root = SVGBackend::new(path, (960, 80 + 34 * n as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let top = rows.iter().map(|(_, s)| s.max).fold(100.0, f64::max) * 3.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(290)
        .build_cartesian_2d((10f64..top).log_scale(), (0..n).into_segmented())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => rows.get(*i).map_or(String::new(), |r| r.0.to_owned()),
            _ => String::new(),
        })
        .x_desc("instructions per operation (log scale)")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (_, s))| {
            let mut bar = Rectangle::new(
                [(10.0, SegmentValue::Exact(i)), (s.median, SegmentValue::Exact(i + 1))],
                BLUE.mix(0.5).filled(),
            );
            bar.set_margin(5, 5, 0, 0);
            bar
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (_, s))| {
            PathElement::new(
                vec![(s.min, SegmentValue::CenterOf(i)), (s.max, SegmentValue::CenterOf(i))],
                BLACK.stroke_width(2),
            )
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (_, s))| {
            Text::new(format!("{:.0}", s.median), (s.max * 1.15, SegmentValue::CenterOf(i)), ("sans-serif", 13))
        }))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// Replaces the text between the `bench:begin` and `bench:end` markers.
fn regenerate(path: &std::path::Path, section: &str) -> Result<(), String> {
    const BEGIN: &str = "<!-- bench:begin (generated by cargo xtask bench; edits here are overwritten) -->";
    const END: &str = "<!-- bench:end -->";
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        return Err(format!("{} has no bench:begin/bench:end markers", path.display()));
    };
    if e < b {
        return Err(format!("{}: bench:end comes before bench:begin", path.display()));
    }
    let new = format!("{}{BEGIN}\n{section}{}", &text[..b], &text[e..]);
    std::fs::write(path, new).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_discard_warmup_and_rank() {
        let m = |ticks| Measured { ticks, count: 1 };
        // One tick is 16 instructions at 62.5 MHz.
        let samples: Vec<_> = [1000, 900, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100].map(m).to_vec();
        let s = summarise(&samples, 62_500_000);
        assert_eq!(s.samples, 10, "two warm-up samples dropped");
        assert_eq!((s.min, s.max), (160.0, 1600.0));
        assert_eq!(s.median, 880.0, "mean of the 5th and 6th of ten");
        assert_eq!(s.p90, 1440.0, "nearest rank: the 9th of ten");
        assert_eq!(percentile(&[1.0], 90.0), 1.0);
    }

    #[test]
    fn regenerates_only_between_markers() {
        let dir = std::env::temp_dir().join(format!("bench-regen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("perf.md");
        let begin = "<!-- bench:begin (generated by cargo xtask bench; edits here are overwritten) -->";
        std::fs::write(&p, format!("head\n{begin}\nold\n<!-- bench:end -->\ntail\n")).unwrap();
        regenerate(&p, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("head\n{begin}\nnew\n<!-- bench:end -->\ntail\n"));
        std::fs::write(&p, "no markers").unwrap();
        assert!(regenerate(&p, "x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
