//! The M0 suite (book ch. 2.15): boot banner, console I/O, every shell
//! command, bad input, the LED seen through QMP rather than the guest's own
//! words, PSCI shutdown seen as QEMU's exit status, reboot seen as a QMP
//! `RESET` event followed by a working shell.
//!
//! Every check boots its own machine. Expected values come from the book,
//! the issue and the QEMU configuration (which exception level and PSCI
//! conduit a board is entered with), never from the guest's output.

use std::time::{Duration, Instant};

use m0_bringup::shell::{BLINK_MAX, LINE_MAX, PROMPT};
use platform::GpioKind;

use super::Target;
use crate::machine::{Machine, TIMEOUT};
use crate::{CheckResult, Trial, ensure};

type CheckFn = fn(&mut Machine, &Target) -> CheckResult;

/// The checks, each booting to the first prompt before it runs.
const CHECKS: &[(&str, CheckFn)] = &[
    ("banner_names_board_and_exception_level", banner),
    ("psci_conduit_matches_how_the_board_was_entered", psci_conduit),
    ("help_lists_every_command", help),
    ("hello", hello),
    ("echo_prints_its_arguments", echo),
    ("led_on_off_toggle_seen_from_outside", led_on_off_toggle),
    ("led_blink_n_times_at_about_1hz", led_blink_n),
    ("led_blink_until_a_key_is_pressed", led_blink_until_key),
    ("led_bad_arguments_change_nothing", led_bad_arguments),
    ("shutdown_exits_qemu_with_status_0", shutdown),
    ("reboot_resets_and_the_shell_works_again", reboot),
    ("unknown_command_is_reported", unknown_command),
    ("empty_lines_just_prompt_again", empty_lines),
    ("overlong_line_is_truncated_and_reported", overlong_line),
    ("backspace_and_delete_edit_the_line", backspace),
    ("ctrl_c_abandons_the_line", ctrl_c),
    ("control_and_nul_bytes_are_ignored_with_a_note", control_bytes),
    ("bytes_above_0x7f_are_ignored_with_a_note", high_bytes),
    ("escape_sequences_are_swallowed", escape_sequences),
    ("random_input_flood_leaves_a_working_shell", flood),
];

/// Every M0 check for every target.
pub fn checks(targets: &[Target]) -> Vec<Trial> {
    let mut all = Vec::new();
    for t in targets {
        for &(name, f) in CHECKS {
            let target = t.clone();
            all.push(Trial::test(format!("m0::{}::{name}", t.label), move || {
                let mut m = Machine::boot(&target.config)?;
                m.prompt(PROMPT)?;
                let result = f(&mut m, &target);
                Ok(result.map_err(|e| format!("{e}\n--- console transcript ---\n{}", m.transcript()))?)
            }));
        }
        let target = t.clone();
        all.push(Trial::test(format!("m0::{}::typeahead_during_boot_is_kept", t.label), move || {
            Ok(typeahead(&target)?)
        }));
    }
    all
}

fn banner(m: &mut Machine, t: &Target) -> CheckResult {
    let text = m.transcript();
    let board = t.config.board;
    ensure!(text.contains(&format!("AOS M0 on {}", board.name)), "banner does not name {}", board.name);
    let el = format!("entered at EL{}", t.config.entry_el());
    ensure!(text.contains(&el), "banner does not say {el:?}");
    ensure!(text.contains("running at EL1"), "M0 must run at EL1");
    Ok(())
}

fn psci_conduit(m: &mut Machine, t: &Target) -> CheckResult {
    // QEMU answers PSCI on the conduit of the highest level it emulates
    // below the kernel: hvc when entered at EL1, smc when entered at EL2.
    let want = if t.config.entry_el() == 2 { "via smc" } else { "via hvc" };
    ensure!(m.transcript().contains(want), "expected PSCI {want}");
    Ok(())
}

fn help(m: &mut Machine, _: &Target) -> CheckResult {
    let out = m.run("help", PROMPT)?;
    for word in ["help", "hello", "echo", "led on", "off", "toggle", "blink", "shutdown", "reboot"] {
        ensure!(out.contains(word), "help does not mention {word:?}");
    }
    Ok(())
}

fn hello(m: &mut Machine, t: &Target) -> CheckResult {
    let out = m.run("hello", PROMPT)?;
    ensure!(out.starts_with("Hello"), "hello printed {out:?}");
    ensure!(out.contains(t.config.board.name), "hello does not name the board: {out:?}");
    Ok(())
}

fn echo(m: &mut Machine, _: &Target) -> CheckResult {
    let out = m.run("echo one  two   three", PROMPT)?;
    ensure!(out == "one two three\n", "echo printed {out:?}");
    let out = m.run("echo", PROMPT)?;
    ensure!(out == "\n", "bare echo printed {out:?}");
    Ok(())
}

/// The LED pin as the GPIO block holds it: (is an output, drives high).
fn led_state(m: &mut Machine, t: &Target) -> Result<(bool, bool), String> {
    let led = t.config.board.led;
    let bit = 1u32 << led.pin;
    let (dir, data) = match led.kind {
        GpioKind::Pl061 => (std::mem::offset_of!(devices::pl061::Pl061Regs, dir), devices::pl061::DATA_ALL_OFFSET),
        GpioKind::ImxGpio => (
            std::mem::offset_of!(devices::imx_gpio::ImxGpioRegs, gdir),
            std::mem::offset_of!(devices::imx_gpio::ImxGpioRegs, dr),
        ),
    };
    let dir = m.qmp().read_u32(led.regs.base + dir as u64)?;
    let data = m.qmp().read_u32(led.regs.base + data as u64)?;
    Ok((dir & bit != 0, data & bit != 0))
}

fn led_on_off_toggle(m: &mut Machine, t: &Target) -> CheckResult {
    ensure!(!led_state(m, t)?.1, "LED is lit before any command");
    for (cmd, want) in
        [("led on", true), ("led off", false), ("led toggle", true), ("led toggle", false), ("led on", true)]
    {
        m.run(cmd, PROMPT)?;
        let (output, lit) = led_state(m, t)?;
        ensure!(output, "after {cmd:?} the LED pin is not an output");
        ensure!(lit == want, "after {cmd:?} the GPIO says lit={lit}, expected {want}");
    }
    Ok(())
}

/// Samples the LED through QMP until `done` appears on the console;
/// returns the times the LED went on, and the final state. The LED must be
/// off when called, before the command that blinks it is sent, so the first
/// rising edge cannot be missed however fast the guest starts.
fn watch_led(m: &mut Machine, t: &Target, done: &str, limit: Duration) -> Result<(Vec<Duration>, bool), String> {
    let start = Instant::now();
    let mut last = false;
    let mut rises = Vec::new();
    loop {
        if m.seen(done).is_some() {
            return Ok((rises, led_state(m, t)?.1));
        }
        ensure!(start.elapsed() < limit, "no {done:?} within {limit:?}; LED rose {} times", rises.len());
        let lit = led_state(m, t)?.1;
        if lit && !last {
            rises.push(start.elapsed());
        }
        last = lit;
        std::thread::sleep(Duration::from_millis(15));
    }
}

fn led_blink_n(m: &mut Machine, t: &Target) -> CheckResult {
    ensure!(!led_state(m, t)?.1, "LED lit before blinking");
    m.send_line("led blink 3")?;
    let (rises, lit) = watch_led(m, t, "blinked 3", Duration::from_secs(20))?;
    ensure!(rises.len() == 3, "saw the LED go on {} times, asked for 3", rises.len());
    ensure!(!lit, "LED still lit after blinking");
    // About 1 Hz: the generic timer follows the host clock under TCG without
    // icount, so two periods take about two seconds.
    let period = (rises[2] - rises[0]).as_secs_f64() / 2.0;
    ensure!((0.75..=1.5).contains(&period), "blink period {period:.2}s is not about 1 s");
    m.prompt(PROMPT)?;
    Ok(())
}

fn led_blink_until_key(m: &mut Machine, t: &Target) -> CheckResult {
    ensure!(!led_state(m, t)?.1, "LED lit before blinking");
    m.send_line("led blink")?;
    let start = Instant::now();
    let mut last = false;
    let mut rises = 0;
    while rises < 2 {
        ensure!(start.elapsed() < Duration::from_secs(15), "LED went on only {rises} times in 15 s");
        let lit = led_state(m, t)?.1;
        rises += usize::from(lit && !last);
        last = lit;
        std::thread::sleep(Duration::from_millis(15));
    }
    m.send(b"q")?;
    m.expect("stopped by a key", TIMEOUT)?;
    m.prompt(PROMPT)?;
    ensure!(!led_state(m, t)?.1, "LED lit after blinking was stopped");
    // The key was consumed: the next command line starts clean.
    let out = m.run("hello", PROMPT)?;
    ensure!(out.starts_with("Hello"), "shell after blink printed {out:?}");
    Ok(())
}

fn led_bad_arguments(m: &mut Machine, t: &Target) -> CheckResult {
    m.run("led on", PROMPT)?;
    let over = (BLINK_MAX + 1).to_string();
    for bad in [
        "led",
        "led sparkle",
        "led on now",
        "led blink 0",
        "led blink -2",
        "led blink x",
        &*format!("led blink {over}"),
    ] {
        let out = m.run(bad, PROMPT)?;
        ensure!(out.starts_with("error: "), "{bad:?} printed {out:?}, expected an error");
        ensure!(led_state(m, t)?.1, "{bad:?} changed the LED");
    }
    Ok(())
}

fn shutdown(m: &mut Machine, _: &Target) -> CheckResult {
    m.send_line("shutdown")?;
    let status = m.wait_exit(Duration::from_secs(15))?;
    ensure!(status.code() == Some(0), "QEMU exited with {status}, expected status 0 from PSCI SYSTEM_OFF");
    Ok(())
}

fn reboot(m: &mut Machine, t: &Target) -> CheckResult {
    m.run("led on", PROMPT)?;
    m.send_line("reboot")?;
    m.expect(&format!("AOS M0 on {}", t.config.board.name), TIMEOUT)?;
    m.prompt(PROMPT)?;
    let events = m.qmp().event_names()?;
    ensure!(events.iter().any(|e| e == "RESET"), "QEMU reported no RESET event, only {events:?}");
    ensure!(m.running(), "QEMU exited instead of resetting");
    ensure!(!led_state(m, t)?.1, "LED still lit after a reset");
    let out = m.run("hello", PROMPT)?;
    ensure!(out.starts_with("Hello"), "after reboot hello printed {out:?}");
    Ok(())
}

fn unknown_command(m: &mut Machine, _: &Target) -> CheckResult {
    let out = m.run("frobnicate now", PROMPT)?;
    ensure!(out.starts_with("error: ") && out.contains("frobnicate"), "printed {out:?}");
    ensure!(out.lines().count() == 1, "one line of error expected: {out:?}");
    Ok(())
}

fn empty_lines(m: &mut Machine, _: &Target) -> CheckResult {
    for line in ["", "   "] {
        let out = m.run(line, PROMPT)?;
        ensure!(out.is_empty(), "{line:?} printed {out:?}");
    }
    // A tab is typed as a space: its echo is the only output.
    m.send(b"\t\r")?;
    let out = m.prompt(PROMPT)?;
    ensure!(out == " \n", "a lone tab printed {out:?}");
    Ok(())
}

fn overlong_line(m: &mut Machine, _: &Target) -> CheckResult {
    let words: String = (0..LINE_MAX).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let line = format!("echo {words}");
    m.send_line(&line)?;
    // The echo stops where the buffer is full.
    let echoed = m.expect("\n", TIMEOUT)?;
    ensure!(echoed == line[..LINE_MAX], "echoed {} characters, the buffer holds {LINE_MAX}", echoed.len());
    let out = m.prompt(PROMPT)?;
    ensure!(out.contains("truncated") || out.contains("longer than"), "no truncation warning: {out:?}");
    ensure!(out.contains(&format!("dropped {}", line.len() - LINE_MAX)), "wrong dropped count: {out:?}");
    ensure!(out.ends_with(&format!("{}\n", &line[5..LINE_MAX])), "the kept part did not run: {out:?}");
    Ok(())
}

fn backspace(m: &mut Machine, _: &Target) -> CheckResult {
    m.send(b"hellp\x7fo\r")?;
    let out = m.prompt(PROMPT)?;
    ensure!(out.contains("Hello"), "DEL did not erase: {out:?}");
    m.send(b"x\x08\x08\x08hello\r")?;
    let out = m.prompt(PROMPT)?;
    ensure!(out.contains("Hello"), "backspace past the start broke the line: {out:?}");
    ensure!(!out.contains("error"), "{out:?}");
    Ok(())
}

fn ctrl_c(m: &mut Machine, t: &Target) -> CheckResult {
    m.send(b"led on\x03")?;
    let out = m.prompt(PROMPT)?;
    ensure!(out.contains("^C"), "Ctrl-C not shown: {out:?}");
    ensure!(!led_state(m, t)?.1, "the abandoned 'led on' ran");
    let out = m.run("hello", PROMPT)?;
    ensure!(out.starts_with("Hello"), "{out:?}");
    Ok(())
}

fn control_bytes(m: &mut Machine, _: &Target) -> CheckResult {
    m.send(b"he\x01l\x00l\x02o\r")?;
    let out = m.prompt(PROMPT)?;
    ensure!(out.contains("ignored 3 byte(s)"), "no note about 3 dropped bytes: {out:?}");
    ensure!(out.contains("Hello"), "the printable part did not run: {out:?}");
    Ok(())
}

fn high_bytes(m: &mut Machine, _: &Target) -> CheckResult {
    m.send(b"\xff\xfeecho h\xc3\xa9llo\r")?;
    let out = m.prompt(PROMPT)?;
    ensure!(out.contains("ignored 4 byte(s)"), "no note about 4 dropped bytes: {out:?}");
    ensure!(out.ends_with("hllo\n"), "the ASCII part did not run: {out:?}");
    Ok(())
}

fn escape_sequences(m: &mut Machine, _: &Target) -> CheckResult {
    // Up, Left, F1, Ctrl-Right: what a terminal sends for those keys.
    m.send(b"\x1b[Ahel\x1b[Dl\x1bOPo\x1b[1;5C\r")?;
    let out = m.prompt(PROMPT)?;
    ensure!(out.contains("Hello"), "escape sequences leaked into the line: {out:?}");
    ensure!(!out.contains("ignored") && !out.contains("error"), "{out:?}");
    Ok(())
}

/// A fixed-seed xorshift stream: the same flood every run.
fn flood_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn flood(m: &mut Machine, t: &Target) -> CheckResult {
    const SEED: u64 = 0x00a0_5000_2026_1125;
    let bytes = flood_bytes(SEED, 4096);
    for chunk in bytes.chunks(256) {
        m.send(chunk)?;
    }
    m.send(b"\x03")?;
    m.send_line("hello")?;
    m.expect("Hello, world!", Duration::from_secs(30)).map_err(|e| format!("seed {SEED:#x}: {e}"))?;
    m.prompt(PROMPT)?;
    let text = m.transcript();
    ensure!(!text.contains("panic") && !text.contains("unexpected"), "seed {SEED:#x}: the kernel failed");
    ensure!(m.running(), "QEMU exited during the flood");
    ensure!(led_state(m, t).is_ok(), "QMP no longer answers");
    Ok(())
}

fn typeahead(t: &Target) -> CheckResult {
    let mut m = Machine::boot(&t.config)?;
    // Typed before the kernel has printed anything.
    m.send_line("hello")?;
    m.expect(&format!("AOS M0 on {}", t.config.board.name), TIMEOUT)?;
    m.expect("Hello, world!", TIMEOUT).map_err(|e| format!("keys typed during boot were lost: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_is_deterministic_and_varied() {
        let a = flood_bytes(1, 4096);
        assert_eq!(a, flood_bytes(1, 4096));
        assert_ne!(a, flood_bytes(2, 4096));
        let distinct: std::collections::HashSet<u8> = a.iter().copied().collect();
        assert!(distinct.len() > 200, "covers most byte values");
    }
}
