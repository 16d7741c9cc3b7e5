//! The M2 suite (book ch. 4.21-4.22) on every QEMU board. The in-guest
//! groups (grading/guest/src/m2.rs) end with verdicts this reads; from
//! outside, on the console, it checks what only the children and the
//! machine show:
//! - each argument of a quoted command line arrives as the runner splits
//!   it by hand, and the menu's own command line too;
//! - the ELF magic printed from a mapped module;
//! - the child's half of the 64 MiB frame and its view of its paging state;
//! - the printer ticks before it is stopped and never after;
//! - the 64 MiB frame init and a child share, read from guest physical
//!   memory over QMP while the machine is stopped: init's half and the
//!   child's half hold the patterns each wrote;
//! - each malformed module is refused for its own reason;
//! - QEMU's exit status once init is done.

use std::time::Duration;

use grading::m2::MALFORMED;

use super::cpu_driver::NOTHING_TO_RUN;
use super::{Check, Target, Transcript, boot_trials, once, stage_image, with_transcript};
use crate::machine::Machine;
use crate::{CheckResult, Trial, ensure};

/// Fewest checks each group makes; fewer means the group stopped early.
const GROUPS: [(&str, usize); 8] = [
    ("vspace", 13),
    ("spawn", 11),
    ("args", 9),
    ("bigframe", 6),
    ("stop", 6),
    ("malformed", 19),
    ("cycles", 2),
    ("final", 2),
];

#[derive(Debug)]
struct Run {
    transcript: String,
    exit: Option<i32>,
    /// The physical-memory check of the shared frame.
    memory: Result<String, String>,
}

impl Transcript for Run {
    fn transcript(&self) -> &str {
        &self.transcript
    }
}

fn grading_boot(t: &Target) -> Result<Run, String> {
    let config = t.menu("grading")?;
    let mib = config.memory_mib.or(config.board.qemu.map(|q| q.memory_mib)).unwrap_or(0);
    let ram = (config.board.ram.base, config.board.ram.base + (mib << 20));
    let mut m = Machine::boot(config)?;
    let memory = match m.expect("m2: shared frame at physical ", Duration::from_secs(300)) {
        Ok(_) => {
            let r = m.expect(" bytes", Duration::from_secs(10)).and_then(|rest| read_shared_frame(&mut m, &rest, ram));
            let _ = m.qmp().execute("cont", serde_json::json!({}));
            r
        }
        Err(e) => Err(e),
    };
    let status = m.wait_exit(Duration::from_secs(600));
    Ok(Run { transcript: m.transcript(), exit: status.ok().and_then(|s| s.code()), memory })
}

/// Stops the machine and reads sampled words of the frame both init and
/// the child wrote ("0x... , 0x..." after the line's prefix): init's half
/// holds `PARENT_SEED ^ offset`, the child's `CHILD_SEED ^ offset`.
fn read_shared_frame(m: &mut Machine, rest: &str, ram: (u64, u64)) -> Result<String, String> {
    use grading::m2::{BIG_BYTES, CHILD_SEED, PARENT_SEED};
    m.qmp().execute("stop", serde_json::json!({}))?;
    let mut nums = rest.split(", ").map(|w| u64::from_str_radix(w.trim().trim_start_matches("0x"), 16));
    let (Some(Ok(pa)), Some(Ok(bytes))) = (nums.next(), nums.next()) else {
        return Err(format!("cannot parse the frame line's {rest:?}"));
    };
    ensure!(bytes == BIG_BYTES, "the shared frame is {bytes:#x} bytes, not {BIG_BYTES:#x}");
    ensure!(pa % (2 << 20) == 0, "frame {pa:#x} is not 2 MiB-aligned, as it was asked to be");
    ensure!(pa >= ram.0 && pa + bytes <= ram.1, "frame {pa:#x} outside RAM {:#x}..{:#x}", ram.0, ram.1);
    let mut checked = 0;
    // 257 samples across the frame, both halves, unaligned to any power of two.
    for k in 0..257u64 {
        let off = (k * (bytes / 257)) & !7;
        let seed = if off < bytes / 2 { PARENT_SEED } else { CHILD_SEED };
        let got = m.qmp().read_u64(pa + off)?;
        ensure!(got == seed ^ off, "physical {:#x} holds {got:#x}, expected {:#x}", pa + off, seed ^ off);
        checked += 1;
    }
    Ok(format!("{checked} words of {bytes:#x} bytes at {pa:#x}"))
}

/// Whether `lines` appear in the transcript in this order (others may
/// come between).
fn in_order(text: &str, lines: &[String]) -> CheckResult {
    let mut want = lines.iter().peekable();
    for l in text.lines() {
        if want.peek().is_some_and(|w| l == w.as_str()) {
            want.next();
        }
    }
    match want.next() {
        None => Ok(()),
        Some(missing) => Err(format!("expected the line {missing:?} (after the ones before it: {lines:#?})")),
    }
}

/// What hello prints for `argv`, each argument quoted as Rust quotes it.
fn hello_lines(argv: &[&str]) -> Vec<String> {
    let mut v = vec![format!("hello: {} arguments", argv.len())];
    v.extend(argv.iter().enumerate().map(|(i, a)| format!("hello: argv[{i}] = {a:?}")));
    v
}

fn arguments(run: &Run) -> CheckResult {
    // hello 'one two' "three \"four\"" five\ six 'seven\eight' "" end
    in_order(
        &run.transcript,
        &hello_lines(&["hello", "one two", "three \"four\"", "five six", "seven\\eight", "", "end"]),
    )?;
    in_order(&run.transcript, &hello_lines(&["hello"]))?;
    in_order(&run.transcript, &hello_lines(&["hello", "from", "the", "menu"]))?;
    for k in 0..6 {
        in_order(&run.transcript, &hello_lines(&["hello", "at-once", &k.to_string()]))?;
    }
    // Each process is told its own PID in its environment.
    let pids: Vec<&str> = run.transcript.lines().filter_map(|l| l.strip_prefix("m2: at-once pid ")).collect();
    ensure!(pids.len() == 6, "{} PIDs reported for the six processes started at once", pids.len());
    for pid in pids {
        let env = format!("hello: envp[0] = \"AOS_PID={pid}\"");
        ensure!(run.transcript.lines().filter(|l| *l == env).count() == 1, "no process printed {env:?} exactly once");
    }
    for bad in ["\"hello 'open\"", "\"hello trailing\\\\\"", "\"nosuchprogram a b\"", "\"\""] {
        ensure!(run.transcript.contains(&format!("m2: {bad} refused: ")), "no refusal reported for {bad}");
    }
    Ok(())
}

fn magic(run: &Run) -> CheckResult {
    let line =
        run.transcript.lines().find(|l| l.starts_with("m2: module hello starts with ")).ok_or("no magic line")?;
    let bytes: Vec<u8> = line
        .trim_start_matches("m2: module hello starts with ")
        .split(' ')
        .map(|b| u8::from_str_radix(b, 16).map_err(|e| format!("{line:?}: {e}")))
        .collect::<Result<_, _>>()?;
    ensure!(bytes == [0x7f, b'E', b'L', b'F'], "the module starts with {bytes:02x?}, not the ELF magic");
    Ok(())
}

fn bigframe(run: &Run) -> CheckResult {
    let text = &run.transcript;
    ensure!(
        text.contains("bigframe: paging state lists code, stack and arguments: true"),
        "the child's paging-state page does not show its own regions"
    );
    let words = (grading::m2::BIG_BYTES / 16).to_string();
    let line =
        text.lines().find(|l| l.starts_with("bigframe: ") && l.contains("shared frame")).ok_or("no check line")?;
    ensure!(line.starts_with(&format!("bigframe: {words} words ")), "the child checked a different size: {line}");
    ensure!(line.ends_with(", 0 differ"), "the child saw other bytes than init wrote: {line}");
    ensure!(
        text.contains("bigframe: mapped a page of its own at 0x"),
        "the child could not map memory itself from its BASE_PAGE_CN into its own L0 table"
    );
    Ok(())
}

fn full_table(run: &Run) -> CheckResult {
    let line = run
        .transcript
        .lines()
        .find(|l| l.starts_with("m2: spawn ") && l.contains(" refused: "))
        .ok_or("no spawn was refused when the table was full")?;
    ensure!(line.ends_with("the process table is full"), "refused for another reason: {line}");
    Ok(())
}

fn printer_stops(run: &Run) -> CheckResult {
    let text = &run.transcript;
    let stopped = text.find("m2: printer stopped").ok_or("the printer was never stopped")?;
    let closed = text.find("m2: printer window closed").ok_or("the stop group did not finish")?;
    let before = text[..stopped].matches("printer: tick ").count();
    let after = text[stopped..closed].matches("printer: tick ").count();
    ensure!(before >= 2, "only {before} ticks before the stop (it prints one a second for 3 s)");
    ensure!(after == 0, "{after} ticks after the printer was stopped");
    Ok(())
}

fn refusals(run: &Run) -> CheckResult {
    // Each corruption's own reason (the wording of the ELF checker).
    let reasons = [
        "outside the file",
        "machine 62",
        "share a page",
        "too small or too large",
        "not in an executable segment",
        "shorter than an ELF header",
        "no ELF magic",
        "reaches into the addresses spawn keeps",
    ];
    for (name, reason) in MALFORMED.iter().zip(reasons) {
        let line = run
            .transcript
            .lines()
            .find(|l| l.starts_with(&format!("m2: {name} refused: ")))
            .ok_or(format!("{name} was not refused"))?;
        ensure!(line.contains(reason), "{name} refused for another reason than {reason:?}: {line}");
    }
    Ok(())
}

/// The stage's own image: init spawns the menu's programs and exits.
fn default_image(t: &Target) -> CheckResult {
    stage_image(t, "m2: ", |text| {
        in_order(text, &hello_lines(&["hello", "Hello, world", "from", "a child's", "arguments!"]))?;
        ensure!(
            text.contains("init: 2 processes ran and were reclaimed; all their memory is free again"),
            "init did not reclaim both children, or memory did not come back"
        );
        Ok(())
    })
}

/// Every check for every target.
pub fn checks(targets: &[Target]) -> Vec<Trial> {
    let mut all = Vec::new();
    for t in targets {
        let name = |n: &str| format!("m2::{}::{n}", t.label);
        let tt = t.clone();
        let run = once(move || grading_boot(&tt));
        let console: [(&str, Check<Run>); 6] = [
            ("a_spawn_past_a_full_table_is_refused_as_such", full_table),
            ("arguments_arrive_as_split_by_hand", arguments),
            ("a_mapped_module_starts_with_the_elf_magic", magic),
            ("the_child_reads_and_writes_the_64_mib_frame", bigframe),
            ("a_stopped_printer_prints_no_more", printer_stops),
            ("malformed_modules_are_refused_for_their_own_reason", refusals),
        ];
        boot_trials(&mut all, &name, run.clone(), "m2", &GROUPS, &console);
        let r = run.clone();
        all.push(Trial::test(name("both_halves_of_the_shared_frame_are_in_its_physical_memory"), move || {
            let run = r()?;
            Ok(with_transcript(&run.transcript, run.memory.clone().map(drop))?)
        }));
        let r = run.clone();
        all.push(Trial::test(name("init_finishes_and_the_machine_stops_cleanly"), move || {
            let run = r()?;
            let check = (|| {
                ensure!(run.transcript.contains("init: done"), "init did not finish");
                ensure!(!run.transcript.contains("PANIC"), "the kernel panicked");
                ensure!(!run.transcript.contains("panic:"), "a domain panicked");
                ensure!(run.exit == Some(NOTHING_TO_RUN), "QEMU exit status {:?}", run.exit);
                Ok(())
            })();
            Ok(with_transcript(&run.transcript, check)?)
        }));
        let tt = t.clone();
        all.push(Trial::test(name("stage_image_spawns_the_menu_and_exits"), move || Ok(default_image(&tt)?)));
    }
    all
}
