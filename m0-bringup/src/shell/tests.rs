use super::*;
use platform::psci::NoPsci;
use std::cell::Cell;
use std::collections::VecDeque;

fn edit(bytes: &[u8]) -> (LineEditor, String, Vec<Feed>) {
    let mut ed = LineEditor::new();
    let mut echo = String::new();
    let feeds = bytes.iter().map(|&b| ed.feed(b, &mut echo)).collect();
    (ed, echo, feeds)
}

#[test]
fn printable_bytes_are_kept_and_echoed_until_cr_or_lf() {
    for end in [b'\r', b'\n'] {
        let (ed, echo, feeds) = edit(&[b'h', b'i', b' ', b'!', end]);
        assert_eq!(ed.line().text, "hi !");
        assert_eq!(echo, "hi !\n");
        assert_eq!(feeds.last(), Some(&Feed::Line));
        assert!(feeds[..4].iter().all(|f| *f == Feed::Pending));
    }
}

#[test]
fn cr_lf_ends_one_line_not_two() {
    let mut ed = LineEditor::new();
    let mut echo = String::new();
    assert_eq!(ed.feed(b'a', &mut echo), Feed::Pending);
    assert_eq!(ed.feed(b'\r', &mut echo), Feed::Line);
    ed.clear();
    assert_eq!(ed.feed(b'\n', &mut echo), Feed::Pending, "LF right after CR is part of the same end");
    assert_eq!(ed.feed(b'\n', &mut echo), Feed::Line, "a second LF is an empty line");
    assert_eq!(ed.line().text, "");
}

#[test]
fn backspace_and_delete_erase_and_stop_at_empty() {
    let (ed, echo, _) = edit(b"ab\x08c\x7f\x7f\x7f\x08d");
    assert_eq!(ed.line().text, "d");
    assert_eq!(echo, "ab\x08 \x08c\x08 \x08\x08 \x08d", "no erase echoed past the prompt");
}

#[test]
fn ctrl_c_abandons_the_line() {
    let (ed, echo, feeds) = edit(b"led on\x03");
    assert_eq!(feeds.last(), Some(&Feed::Cancelled));
    assert_eq!(ed.line().text, "");
    assert!(echo.ends_with("^C\n"));
}

#[test]
fn over_long_lines_keep_what_fits_and_count_the_rest() {
    let input: Vec<u8> = (0..LINE_MAX + 10).map(|i| b'a' + (i % 26) as u8).collect();
    let (ed, echo, _) = edit(&input);
    let line = ed.line();
    assert_eq!(line.text.len(), LINE_MAX);
    assert_eq!(line.text.as_bytes(), &input[..LINE_MAX]);
    assert_eq!(line.truncated, 10);
    assert_eq!(echo.len(), LINE_MAX, "dropped bytes are not echoed");
    // Erasing makes room again.
    let mut ed = ed;
    let mut echo = String::new();
    ed.feed(0x7f, &mut echo);
    ed.feed(b'Z', &mut echo);
    assert!(ed.line().text.ends_with('Z'));
}

#[test]
fn control_nul_and_high_bytes_are_dropped_and_counted() {
    let (ed, echo, _) = edit(&[b'o', 0x00, 0x01, 0x80, 0xff, 0xc3, 0xa9, 0x07, b'k']);
    let line = ed.line();
    assert_eq!(line.text, "ok");
    assert_eq!(line.ignored, 7);
    assert_eq!(echo, "ok");
}

#[test]
fn escape_sequences_are_swallowed_whole() {
    // Up arrow, F1 (SS3), Ctrl-Right with parameters, and a lone ESC x.
    let (ed, echo, _) = edit(b"a\x1b[Ab\x1bOPc\x1b[1;5Cd\x1bxe");
    assert_eq!(ed.line().text, "abcde");
    assert_eq!(echo, "abcde");
    assert_eq!(ed.line().ignored, 0);
}

#[test]
fn control_bytes_break_out_of_escape_sequences() {
    // An unfinished sequence cannot swallow Enter or Ctrl-C.
    let (_, _, feeds) = edit(b"x\x1b[12\r");
    assert_eq!(feeds.last(), Some(&Feed::Line));
    let (_, _, feeds) = edit(b"x\x1b\x03");
    assert_eq!(feeds.last(), Some(&Feed::Cancelled));
    let (ed, _, _) = edit(b"ab\x1b[\x7fc");
    assert_eq!(ed.line().text, "ac", "DEL inside a sequence still erases");
}

#[test]
fn tab_is_a_space() {
    let (ed, _, _) = edit(b"echo\tx");
    assert_eq!(ed.line().text, "echo x");
}

#[test]
fn parses_every_command() {
    assert_eq!(parse("help"), Ok(Some(Command::Help)));
    assert_eq!(parse("  hello  "), Ok(Some(Command::Hello)));
    assert_eq!(parse("echo a  b"), Ok(Some(Command::Echo("a  b"))));
    assert_eq!(parse("echo"), Ok(Some(Command::Echo(""))));
    assert_eq!(parse("led on"), Ok(Some(Command::Led(LedAction::On))));
    assert_eq!(parse("led   off "), Ok(Some(Command::Led(LedAction::Off))));
    assert_eq!(parse("led toggle"), Ok(Some(Command::Led(LedAction::Toggle))));
    assert_eq!(parse("led blink"), Ok(Some(Command::Led(LedAction::Blink(None)))));
    assert_eq!(parse("led blink 3"), Ok(Some(Command::Led(LedAction::Blink(Some(3))))));
    assert_eq!(parse("led blink 3600"), Ok(Some(Command::Led(LedAction::Blink(Some(BLINK_MAX))))));
    assert_eq!(parse("shutdown"), Ok(Some(Command::Shutdown)));
    assert_eq!(parse("reboot"), Ok(Some(Command::Reboot)));
    assert_eq!(parse(""), Ok(None));
    assert_eq!(parse("   "), Ok(None));
}

#[test]
fn rejects_bad_commands_with_reasons() {
    assert_eq!(parse("HELP"), Err(ParseError::Unknown("HELP")));
    assert_eq!(parse("frobnicate now"), Err(ParseError::Unknown("frobnicate")));
    assert_eq!(parse("hello there"), Err(ParseError::NoArguments("hello")));
    assert_eq!(parse("shutdown -h"), Err(ParseError::NoArguments("shutdown")));
    assert_eq!(parse("led"), Err(ParseError::LedUsage));
    assert_eq!(parse("led sparkle"), Err(ParseError::LedUsage));
    assert_eq!(parse("led on now"), Err(ParseError::LedUsage));
    assert_eq!(parse("led blink 3 4"), Err(ParseError::LedUsage));
    for bad in ["0", "3601", "-1", "abc", "99999999999"] {
        assert_eq!(parse(&format!("led blink {bad}")), Err(ParseError::BadBlinkCount(bad)));
    }
    let msg = ParseError::Unknown("x").to_string();
    assert!(msg.contains("'x'") && msg.contains("help"));
}

/// A board made of memory: a clock that advances on every read, a key that
/// arrives at a set time, and a record of LED edges.
struct Fake {
    out: String,
    keys: VecDeque<u8>,
    key_at: Option<u64>,
    now: Cell<u64>,
    step: u64,
    led: bool,
    edges: Vec<(u64, bool)>,
    power: Vec<Power>,
    failure: PowerFailure,
}

impl Fake {
    fn new() -> Self {
        Fake {
            out: String::new(),
            keys: VecDeque::new(),
            key_at: None,
            now: Cell::new(0),
            step: 997,
            led: false,
            edges: Vec::new(),
            power: Vec::new(),
            failure: PowerFailure::Refused(PsciError::NotSupported),
        }
    }
}

impl Write for Fake {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.out.push_str(s);
        Ok(())
    }
}

impl Hal for Fake {
    fn board(&self) -> &'static str {
        "fake-board"
    }
    fn poll_key(&mut self) -> Option<u8> {
        if self.key_at.is_some_and(|t| self.now.get() >= t) {
            self.key_at = None;
            return Some(b'x');
        }
        self.keys.pop_front()
    }
    fn set_led(&mut self, on: bool) {
        if on != self.led {
            self.edges.push((self.now.get(), on));
        }
        self.led = on;
    }
    fn led_is_on(&self) -> bool {
        self.led
    }
    fn ticks(&self) -> u64 {
        // The clock moves each time it is read.
        self.now.set(self.now.get() + self.step);
        self.now.get()
    }
    fn tick_hz(&self) -> u64 {
        1_000_000
    }
    fn power(&mut self, action: Power) -> PowerFailure {
        self.power.push(action);
        self.failure
    }
}

#[test]
fn hello_and_echo() {
    let mut hal = Fake::new();
    execute(Command::Hello, &mut hal);
    assert_eq!(hal.out, "Hello, world! This is AOS M0 on fake-board.\n");
    hal.out.clear();
    execute(parse("echo  one   two three ").unwrap().unwrap(), &mut hal);
    assert_eq!(hal.out, "one two three\n");
    hal.out.clear();
    execute(Command::Echo(""), &mut hal);
    assert_eq!(hal.out, "\n");
}

#[test]
fn help_lists_every_command() {
    let mut hal = Fake::new();
    execute(Command::Help, &mut hal);
    for c in ["help", "hello", "echo", "led on|off|toggle", "led blink", "shutdown", "reboot"] {
        assert!(hal.out.contains(c), "help lacks {c}");
    }
}

#[test]
fn led_on_off_toggle_drive_the_pin() {
    let mut hal = Fake::new();
    execute(Command::Led(LedAction::On), &mut hal);
    assert!(hal.led);
    execute(Command::Led(LedAction::Toggle), &mut hal);
    assert!(!hal.led);
    execute(Command::Led(LedAction::Toggle), &mut hal);
    assert!(hal.led);
    execute(Command::Led(LedAction::Off), &mut hal);
    assert!(!hal.led);
    assert_eq!(hal.out, "LED on\nLED off\nLED on\nLED off\n");
}

#[test]
fn blink_n_times_at_one_hertz() {
    let mut hal = Fake::new();
    execute(Command::Led(LedAction::Blink(Some(3))), &mut hal);
    let ons: Vec<u64> = hal.edges.iter().filter(|e| e.1).map(|e| e.0).collect();
    assert_eq!(ons.len(), 3, "edges: {:?}", hal.edges);
    for pair in ons.windows(2) {
        let period = pair[1] - pair[0];
        // One second at 1 MHz, to within one clock step of polling.
        assert!(period.abs_diff(1_000_000) <= 2 * hal.step, "period {period}");
    }
    assert!(!hal.led, "LED ends off");
    assert!(hal.out.contains("blinked 3 time(s)"), "{}", hal.out);
}

#[test]
fn blink_without_count_runs_until_a_key_and_consumes_it() {
    let mut hal = Fake::new();
    hal.key_at = Some(4_200_000);
    execute(Command::Led(LedAction::Blink(None)), &mut hal);
    let ons = hal.edges.iter().filter(|e| e.1).count();
    assert_eq!(ons, 5, "4.2 s at 1 Hz: the fifth blink is under way");
    assert!(!hal.led);
    assert!(hal.out.contains("stopped by a key after 4 blink(s)"), "{}", hal.out);
    assert_eq!(hal.poll_key(), None, "the key was consumed");
}

#[test]
fn power_commands_call_psci_and_report_failure() {
    let mut hal = Fake::new();
    execute(Command::Shutdown, &mut hal);
    execute(Command::Reboot, &mut hal);
    assert_eq!(hal.power, [Power::Off, Power::Reset]);
    assert!(hal.out.contains("PSCI refused: NOT_SUPPORTED"), "{}", hal.out);
    hal.failure = PowerFailure::Unavailable(NoPsci::NoNode);
    hal.out.clear();
    execute(Command::Shutdown, &mut hal);
    assert!(hal.out.contains("no /psci node"), "{}", hal.out);
}

#[test]
fn handle_line_reports_losses_then_runs() {
    let mut hal = Fake::new();
    handle_line(Line { text: "hello", truncated: 5, ignored: 2 }, &mut hal);
    let lines: Vec<&str> = hal.out.lines().collect();
    assert!(lines[0].starts_with("warning: line longer than 128"), "{lines:?}");
    assert!(lines[0].ends_with("dropped 5"));
    assert!(lines[1].contains("ignored 2 byte(s)"));
    assert!(lines[2].starts_with("Hello"));
    hal.out.clear();
    handle_line(Line { text: "bogus", truncated: 0, ignored: 0 }, &mut hal);
    assert_eq!(hal.out, "error: unknown command 'bogus'; type 'help' for the list\n");
    hal.out.clear();
    handle_line(Line { text: "", truncated: 0, ignored: 0 }, &mut hal);
    assert_eq!(hal.out, "", "an empty line just gets a new prompt");
}
