//! The M0 mini shell (book ch. 2.12–2.14): a line editor fed one byte at a
//! time, a command parser, and an interpreter that reaches the hardware only
//! through [`Hal`], so every behaviour here runs in host tests against a fake.
//!
//! Input rules, chosen so that no byte sequence can hang the shell or garble
//! the prompt:
//! - printable ASCII is kept and echoed, up to [`LINE_MAX`] bytes; the rest
//!   of an over-long line is dropped and the user told when it ends;
//! - CR or LF ends a line (CR LF counts once); backspace and DEL erase;
//!   Ctrl-C abandons the line; tab is a space;
//! - ANSI escape sequences (arrow keys and the like) are swallowed whole,
//!   but a control byte inside one still acts (Enter, Ctrl-C, backspace);
//! - NUL, other control characters and bytes >= 0x80 are dropped, and the
//!   user is told how many when the line ends.

use core::fmt::{self, Write};

use platform::psci::PsciError;

/// Longest command line kept, in bytes.
pub const LINE_MAX: usize = 128;

/// Most blinks one `led blink N` may ask for (an hour at 1 Hz).
pub const BLINK_MAX: u32 = 3600;

/// The prompt printed before each line.
pub const PROMPT: &str = "m0> ";

/// What a byte did to the line being edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// The line goes on.
    Pending,
    /// The line is complete: read it with [`LineEditor::line`].
    Line,
    /// Ctrl-C: the line was abandoned.
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC: one more byte decides.
    Start,
    /// Inside `ESC [` or `ESC O`: parameters until a final byte.
    Sequence,
}

/// A completed line and what was lost typing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub text: &'a str,
    /// Printable bytes dropped because the line was full.
    pub truncated: usize,
    /// Bytes dropped as not printable ASCII.
    pub ignored: usize,
}

/// Collects one command line from raw terminal bytes, echoing as it goes.
#[derive(Debug)]
pub struct LineEditor {
    buf: [u8; LINE_MAX],
    len: usize,
    truncated: usize,
    ignored: usize,
    escape: Escape,
    after_cr: bool,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    pub const fn new() -> Self {
        Self { buf: [0; LINE_MAX], len: 0, truncated: 0, ignored: 0, escape: Escape::None, after_cr: false }
    }

    /// Takes one byte; echo goes to `echo` (`\n` for a line end).
    pub fn feed(&mut self, byte: u8, echo: &mut impl Write) -> Feed {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        // A control byte always acts, even inside an escape sequence (as in
        // ECMA-48), so Ctrl-C and Enter cannot be swallowed by a stray ESC.
        let control = byte < 0x20 || byte == 0x7f;
        match self.escape {
            Escape::Start if !control => {
                self.escape = if byte == b'[' || byte == b'O' { Escape::Sequence } else { Escape::None };
                return Feed::Pending;
            }
            Escape::Sequence if !control => {
                // Parameter and intermediate bytes go on; a final byte ends
                // the sequence; anything else ends it and is dropped.
                if !(0x20..=0x3f).contains(&byte) {
                    self.escape = Escape::None;
                }
                return Feed::Pending;
            }
            Escape::Start | Escape::Sequence => self.escape = Escape::None,
            Escape::None => {}
        }
        match byte {
            b'\n' if after_cr => Feed::Pending,
            b'\r' | b'\n' => {
                self.after_cr = byte == b'\r';
                let _ = echo.write_char('\n');
                Feed::Line
            }
            0x08 | 0x7f => {
                if self.len > 0 {
                    self.len -= 1;
                    let _ = echo.write_str("\x08 \x08");
                }
                Feed::Pending
            }
            0x03 => {
                let _ = echo.write_str("^C\n");
                self.clear();
                Feed::Cancelled
            }
            0x1b => {
                self.escape = Escape::Start;
                Feed::Pending
            }
            b'\t' | 0x20..=0x7e => {
                let byte = if byte == b'\t' { b' ' } else { byte };
                if self.len < LINE_MAX {
                    self.buf[self.len] = byte;
                    self.len += 1;
                    let _ = echo.write_char(byte as char);
                } else {
                    self.truncated += 1;
                }
                Feed::Pending
            }
            _ => {
                self.ignored += 1;
                Feed::Pending
            }
        }
    }

    /// The line so far (complete after [`Feed::Line`]).
    pub fn line(&self) -> Line<'_> {
        // Only printable ASCII enters the buffer, so this cannot fail.
        let text = core::str::from_utf8(&self.buf[..self.len]).unwrap_or("");
        Line { text, truncated: self.truncated, ignored: self.ignored }
    }

    /// Starts a new line. Escape and CR-LF state carry over: they belong to
    /// the byte stream, not to the line.
    pub fn clear(&mut self) {
        self.len = 0;
        self.truncated = 0;
        self.ignored = 0;
    }
}

/// What `led` should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedAction {
    On,
    Off,
    Toggle,
    /// Blink this many times, or until a key is pressed if `None`.
    Blink(Option<u32>),
}

/// A parsed command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Help,
    Hello,
    /// The words after `echo`, as typed.
    Echo(&'a str),
    Led(LedAction),
    Shutdown,
    Reboot,
}

/// Why a line is not a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError<'a> {
    Unknown(&'a str),
    /// The command takes no arguments.
    NoArguments(&'static str),
    LedUsage,
    BadBlinkCount(&'a str),
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unknown(w) => write!(f, "unknown command '{w}'; type 'help' for the list"),
            ParseError::NoArguments(c) => write!(f, "'{c}' takes no arguments"),
            ParseError::LedUsage => f.write_str("usage: led on|off|toggle|blink [N]"),
            ParseError::BadBlinkCount(w) => {
                write!(f, "led blink: '{w}' is not a count from 1 to {BLINK_MAX}")
            }
        }
    }
}

/// Parses a line; `Ok(None)` for a blank one.
pub fn parse(line: &str) -> Result<Option<Command<'_>>, ParseError<'_>> {
    let line = line.trim();
    let (word, rest) = match line.split_once(' ') {
        Some((w, r)) => (w, r.trim_start()),
        None => (line, ""),
    };
    let bare =
        |c: Command<'static>, name| if rest.is_empty() { Ok(Some(c)) } else { Err(ParseError::NoArguments(name)) };
    match word {
        "" => Ok(None),
        "help" => bare(Command::Help, "help"),
        "hello" => bare(Command::Hello, "hello"),
        "shutdown" => bare(Command::Shutdown, "shutdown"),
        "reboot" => bare(Command::Reboot, "reboot"),
        "echo" => Ok(Some(Command::Echo(rest))),
        "led" => {
            let mut args = rest.split_whitespace();
            let action = match (args.next(), args.next(), args.next()) {
                (Some("on"), None, _) => LedAction::On,
                (Some("off"), None, _) => LedAction::Off,
                (Some("toggle"), None, _) => LedAction::Toggle,
                (Some("blink"), None, _) => LedAction::Blink(None),
                (Some("blink"), Some(n), None) => match n.parse::<u32>() {
                    Ok(n @ 1..=BLINK_MAX) => LedAction::Blink(Some(n)),
                    _ => return Err(ParseError::BadBlinkCount(n)),
                },
                _ => return Err(ParseError::LedUsage),
            };
            Ok(Some(Command::Led(action)))
        }
        other => Err(ParseError::Unknown(other)),
    }
}

/// PSCI power actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Off,
    Reset,
}

/// Why a power action returned instead of happening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerFailure {
    /// No PSCI could be found; the reason says why.
    Unavailable(platform::psci::NoPsci),
    /// The firmware refused.
    Refused(PsciError),
}

/// The hardware the shell needs. Output goes through [`fmt::Write`]; a `\n`
/// written there reaches the terminal as CR LF.
pub trait Hal: Write {
    /// Board name for messages.
    fn board(&self) -> &'static str;
    /// A received byte, if any; never waits.
    fn poll_key(&mut self) -> Option<u8>;
    fn set_led(&mut self, on: bool);
    fn led_is_on(&self) -> bool;
    /// The generic timer's count and frequency.
    fn ticks(&self) -> u64;
    fn tick_hz(&self) -> u64;
    /// Returns only if the action did not happen.
    fn power(&mut self, action: Power) -> PowerFailure;
}

const HELP: &str = "\
commands:
  help                 this list
  hello                say hello
  echo [WORDS...]      print WORDS
  led on|off|toggle    switch the LED
  led blink [N]        blink about once a second, N times (1-3600);
                       without N until a key is pressed
  shutdown             power off (PSCI SYSTEM_OFF)
  reboot               reset the board (PSCI SYSTEM_RESET)
keys: backspace/delete erase, Ctrl-C abandons the line
";

/// Runs one parsed command.
pub fn execute(cmd: Command<'_>, hal: &mut impl Hal) {
    // Output errors cannot be reported anywhere else; the console is it.
    let _ = match cmd {
        Command::Help => hal.write_str(HELP),
        Command::Hello => {
            let board = hal.board();
            writeln!(hal, "Hello, world! This is AOS M0 on {board}.")
        }
        Command::Echo(words) => {
            let mut first = true;
            for w in words.split_whitespace() {
                if !first {
                    let _ = hal.write_char(' ');
                }
                first = false;
                let _ = hal.write_str(w);
            }
            hal.write_char('\n')
        }
        Command::Led(LedAction::On) => led(hal, true),
        Command::Led(LedAction::Off) => led(hal, false),
        Command::Led(LedAction::Toggle) => {
            let on = !hal.led_is_on();
            led(hal, on)
        }
        Command::Led(LedAction::Blink(n)) => blink(hal, n),
        Command::Shutdown | Command::Reboot => {
            let (action, what) = match cmd {
                Command::Shutdown => (Power::Off, "powering off"),
                _ => (Power::Reset, "resetting"),
            };
            let _ = writeln!(hal, "{what}...");
            match hal.power(action) {
                PowerFailure::Unavailable(why) => writeln!(hal, "error: {what} needs PSCI, but {why}"),
                PowerFailure::Refused(e) => writeln!(hal, "error: PSCI refused: {e}"),
            }
        }
    };
}

fn led(hal: &mut impl Hal, on: bool) -> fmt::Result {
    hal.set_led(on);
    writeln!(hal, "LED {}", if hal.led_is_on() { "on" } else { "off" })
}

/// Blinks at about 1 Hz (half a second on, half off) from the generic timer.
/// Any key stops it; the key is consumed. The LED ends off.
fn blink(hal: &mut impl Hal, count: Option<u32>) -> fmt::Result {
    let half = (hal.tick_hz() / 2).max(1);
    match count {
        Some(n) => writeln!(hal, "blinking {n} times (any key stops)")?,
        None => writeln!(hal, "blinking until a key is pressed")?,
    }
    let mut done = 0u32;
    let mut deadline = hal.ticks();
    let stopped = 'blink: loop {
        if count.is_some_and(|n| done >= n) {
            break false;
        }
        for on in [true, false] {
            hal.set_led(on);
            deadline += half;
            while hal.ticks() < deadline {
                if hal.poll_key().is_some() {
                    break 'blink true;
                }
                core::hint::spin_loop();
            }
        }
        done += 1;
    };
    hal.set_led(false);
    if stopped {
        writeln!(hal, "stopped by a key after {done} blink(s); LED off")
    } else {
        writeln!(hal, "blinked {done} time(s); LED off")
    }
}

/// Runs the shell loop forever: prompt, read a line, report what was lost,
/// execute.
pub fn run(hal: &mut impl Hal) -> ! {
    let mut editor = LineEditor::new();
    loop {
        let _ = hal.write_str(PROMPT);
        loop {
            let Some(byte) = hal.poll_key() else {
                core::hint::spin_loop();
                continue;
            };
            match editor.feed(byte, hal) {
                Feed::Pending => continue,
                Feed::Cancelled => break,
                Feed::Line => {
                    handle_line(editor.line(), hal);
                    editor.clear();
                    break;
                }
            }
        }
    }
}

/// Reports dropped input, then parses and executes one line.
pub fn handle_line(line: Line<'_>, hal: &mut impl Hal) {
    if line.truncated > 0 {
        let _ = writeln!(
            hal,
            "warning: line longer than {LINE_MAX} characters; kept the first {LINE_MAX}, dropped {}",
            line.truncated
        );
    }
    if line.ignored > 0 {
        let _ = writeln!(hal, "note: ignored {} byte(s) that are not printable ASCII", line.ignored);
    }
    match parse(line.text) {
        Ok(Some(cmd)) => execute(cmd, hal),
        Ok(None) => {}
        Err(e) => {
            let _ = writeln!(hal, "error: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
