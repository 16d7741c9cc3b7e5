//! The M3 suite (book ch. 5.17) on every QEMU board. The in-guest groups
//! (grading/guest/src/m3.rs, run by `m3test` through the RPC API) end with
//! verdicts this reads; from outside, on the console, it checks what only
//! the server, the helpers and the machine show:
//! - every number and string a client sent reached the server's grading
//!   hooks, and each string's fingerprint is the one the runner computes
//!   for the string the suite defines (not the one the guest printed);
//! - the 200 numbers sent while another client died mid-call all arrived;
//! - each refusal gives its own reason;
//! - lines from many domains printing in pieces at once are all whole;
//! - 16 memeaters each checked their memory and every message of 15 peers;
//! - two hogs in turn got the same amount before the quota refused them;
//! - a character typed on the host's console reaches `serial_getchar`;
//! - init gets all memory back, and QEMU's exit status.

use std::collections::HashMap;
use std::time::Duration;

use grading::m3::{CHATTER_LINES, CHATTERS, MEMEATERS, NUMBERS, STRING_LENGTHS, fnv1a, string_byte};

use super::cpu_driver::NOTHING_TO_RUN;
use super::{Check, Target, Transcript, boot_trials, once, stage_image};
use crate::machine::Machine;
use crate::{CheckResult, Trial, ensure};

/// Fewest checks each group makes; fewer means the group stopped early.
const GROUPS: [(&str, usize); 8] =
    [("rpc", 15), ("ram", 8), ("process", 11), ("terminal", 2), ("dies", 5), ("quota", 6), ("many", 2), ("getchar", 1)];

/// The character the runner types.
const TYPED: u8 = b'Q';

#[derive(Debug)]
struct Run {
    transcript: String,
    exit: Option<i32>,
}

impl Transcript for Run {
    fn transcript(&self) -> &str {
        &self.transcript
    }
}

fn grading_boot(t: &Target) -> Result<Run, String> {
    let mut m = Machine::boot(t.menu("grading")?)?;
    let typed = m.expect("m3: type a character", Duration::from_secs(600)).and_then(|_| m.send(&[TYPED]));
    let status = typed.and_then(|()| m.wait_exit(Duration::from_secs(120)));
    Ok(Run { transcript: m.transcript(), exit: status.ok().and_then(|s| s.code()) })
}

/// Lines starting with `prefix`, the prefix cut off.
fn after<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.lines().filter_map(move |l| l.strip_prefix(prefix))
}

fn numbers(run: &Run) -> CheckResult {
    let seen: Vec<&str> = after(&run.transcript, "grading: number ").collect();
    for n in NUMBERS {
        let want = format!("{n:#x}");
        ensure!(seen.contains(&want.as_str()), "the server never saw number {want}");
    }
    for k in 0..200u64 {
        let want = format!("{:#x}", 0xd1e5_0000 + k);
        ensure!(
            seen.iter().filter(|s| **s == want).count() == 1,
            "number {want}, sent while another client died, did not arrive exactly once"
        );
    }
    Ok(())
}

fn strings(run: &Run) -> CheckResult {
    let seen: Vec<&str> = after(&run.transcript, "grading: string of ").collect();
    for len in STRING_LENGTHS {
        let s: Vec<u8> = (0..len).map(|i| string_byte(len, i)).collect();
        let want = format!("{len} bytes, fnv {:#018x}", fnv1a(&s));
        ensure!(seen.contains(&want.as_str()), "the server never saw the {len}-byte string intact (want {want})");
    }
    let multi = "ü€😀".repeat(20);
    let want = format!("{} bytes, fnv {:#018x}", multi.len(), fnv1a(multi.as_bytes()));
    ensure!(seen.contains(&want.as_str()), "the multi-byte string did not arrive intact");
    // The crasher's 1000 bytes never all came: only the suite's did.
    let thousands = seen.iter().filter(|s| s.starts_with("1000 ")).count();
    ensure!(thousands == 1, "{thousands} strings of 1000 bytes arrived; the crasher's half string counted as whole");
    Ok(())
}

fn refusals(run: &Run) -> CheckResult {
    let t = &run.transcript;
    for (line, reason) in [
        ("m3: ram of zero bytes refused: ", "arguments are not acceptable"),
        ("m3: ram of an alignment of 3 refused: ", "arguments are not acceptable"),
        ("m3: ram of 1 TiB refused: ", "quota"),
        ("m3: spawn of no such program refused: ", "could not be spawned"),
        ("m3: spawn of empty refused: ", "could not be spawned"),
        ("m3: spawn of core 1 refused: ", "no such core"),
    ] {
        let l = t.lines().find(|l| l.starts_with(line)).ok_or(format!("no line {line:?}"))?;
        ensure!(l.contains(reason), "refused for another reason than {reason:?}: {l}");
    }
    Ok(())
}

/// Every line a chatter printed is whole, and each of its lines came once.
fn whole_lines(run: &Run) -> CheckResult {
    let mut count: HashMap<(usize, usize), usize> = HashMap::new();
    for l in run.transcript.lines().filter(|l| l.contains("chatter ") && !l.contains("grading: spawn")) {
        let parsed = (|| {
            let rest = l.strip_prefix("chatter ")?;
            let (k, rest) = rest.split_once(" line ")?;
            let (n, rest) = rest.split_once(':')?;
            let (k, n): (usize, usize) = (k.parse().ok()?, n.parse().ok()?);
            let body: String = (0..8).map(|j| format!(" {k}{k}{k}-{j}")).collect();
            (rest == format!("{body} end")).then_some((k, n))
        })();
        let key = parsed.ok_or(format!("a broken chatter line: {l:?}"))?;
        *count.entry(key).or_default() += 1;
    }
    for k in 0..CHATTERS {
        for n in 0..CHATTER_LINES {
            let c = count.get(&(k, n)).copied().unwrap_or(0);
            ensure!(c == 1, "chatter {k} line {n} appeared {c} times");
        }
    }
    ensure!(
        run.transcript.lines().any(|l| l == "m3: this line went out one putchar at a time"),
        "the line sent a character at a time is not whole"
    );
    Ok(())
}

fn memeaters(run: &Run) -> CheckResult {
    for k in 0..MEMEATERS {
        let line = run
            .transcript
            .lines()
            .find(|l| l.starts_with(&format!("memeater {k}: ")))
            .ok_or(format!("memeater {k} never reported"))?;
        let peers = MEMEATERS - 1;
        ensure!(
            line.contains(&format!("received intact from {peers} peers, 0 bad; all data checked")),
            "memeater {k}: {line}"
        );
    }
    Ok(())
}

fn hogs(run: &Run) -> CheckResult {
    let lines: Vec<&str> = after(&run.transcript, "hog: ").collect();
    ensure!(lines.len() == 2, "{} hog reports, expected 2", lines.len());
    let mib = |l: &str| l.split(' ').next().and_then(|n| n.parse::<u64>().ok());
    let (a, b) = (mib(lines[0]).ok_or("unreadable hog line")?, mib(lines[1]).ok_or("unreadable hog line")?);
    ensure!(a == b, "the second hog got {b} MiB, the first {a}: the first's memory did not all come back");
    ensure!(a >= 8, "a hog got only {a} MiB");
    for l in lines {
        ensure!(l.contains("quota"), "a hog was stopped by something else than its quota: {l}");
    }
    Ok(())
}

fn crasher(run: &Run) -> CheckResult {
    let t = &run.transcript;
    ensure!(t.contains("crasher: sent 3 of the fragments"), "the crasher did not send its half string");
    ensure!(t.contains("domain 'crasher' faulted"), "the crasher did not die by its fault");
    let g = after(t, "garbage: ").collect::<Vec<_>>().join("\n");
    ensure!(g == "11 of 11 malformed messages refused; the channel works after them: true", "the hostile client: {g}");
    Ok(())
}

fn getchar(run: &Run) -> CheckResult {
    let want = format!("m3: got character {TYPED:#04x}");
    ensure!(run.transcript.lines().any(|l| l == want), "no line {want:?}: the typed character did not arrive");
    Ok(())
}

fn counted(run: &Run) -> CheckResult {
    let l = after(&run.transcript, "grading: served ").next().ok_or("the server's counts were not printed")?;
    let nums: Vec<u64> = l.split(' ').filter_map(|w| w.parse().ok()).collect();
    ensure!(nums.len() == 2 && nums.iter().all(|&n| n > 0), "the name and PID hooks did not run: {l}");
    Ok(())
}

fn finish(run: &Run) -> CheckResult {
    let t = &run.transcript;
    ensure!(t.contains("m3: done"), "m3test did not finish");
    ensure!(t.contains("init: all their memory is free again"), "memory did not all come back to init");
    ensure!(t.contains("init: done"), "init did not finish");
    ensure!(!t.contains("PANIC"), "the kernel panicked");
    ensure!(!t.contains("panic:"), "a domain panicked");
    ensure!(run.exit == Some(NOTHING_TO_RUN), "QEMU exit status {:?}", run.exit);
    Ok(())
}

/// The stage's own image: init serves hello and exits.
fn default_image(t: &Target) -> CheckResult {
    stage_image(t, "grading: ", |text| {
        let hello = text.lines().find(|l| l.starts_with("hello: ")).ok_or("hello printed nothing")?;
        ensure!(
            hello == "hello: Hello, world through the terminal service (I am Some(Ok(\"hello\")); Ok(1) processes run)",
            "hello's line: {hello}"
        );
        ensure!(text.contains("init: 1 processes ended, 1 of them with bye"), "hello did not say bye");
        ensure!(text.contains("init: all their memory is free again"), "memory did not come back");
        Ok(())
    })
}

/// Every check for every target.
pub fn checks(targets: &[Target]) -> Vec<Trial> {
    let mut all = Vec::new();
    for t in targets {
        let name = |n: &str| format!("m3::{}::{n}", t.label);
        let tt = t.clone();
        let run = once(move || grading_boot(&tt));
        let console: [(&str, Check<Run>); 10] = [
            ("every_number_reaches_the_server", numbers),
            ("every_string_reaches_the_server_intact", strings),
            ("refusals_give_their_reasons", refusals),
            ("lines_of_many_domains_are_never_mixed", whole_lines),
            ("sixteen_memeaters_check_memory_and_each_others_messages", memeaters),
            ("a_hog_stops_at_its_quota_and_its_memory_comes_back", hogs),
            ("a_client_dies_mid_call_and_garbage_is_refused", crasher),
            ("a_typed_character_reaches_getchar", getchar),
            ("the_name_and_pid_hooks_ran", counted),
            ("init_gets_all_memory_back_and_the_machine_stops", finish),
        ];
        boot_trials(&mut all, &name, run, "m3", &GROUPS, &console);
        let tt = t.clone();
        all.push(Trial::test(name("stage_image_serves_the_menu_and_exits"), move || Ok(default_image(&tt)?)));
    }
    all
}
