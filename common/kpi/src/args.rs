//! The arguments page: one read-only page the kernel (later: spawn) maps
//! into a new domain, whose address arrives in `x0` at the entry point. It
//! carries the command-line arguments from `menu.lst` and, for init, the
//! address of [`BootInfo`](crate::bootinfo::BootInfo).
//!
//! Strings are stored NUL-terminated and located by offset, so the page
//! means the same at any address. Readers validate every offset: the page is
//! written by the parent, which a child need not trust.

use core::mem::size_of;

use crate::BASE_PAGE_SIZE;
use crate::error::ErrorCode;

pub const ARGS_MAGIC: u64 = u64::from_le_bytes(*b"AOSARGS\0");
/// Most arguments a domain can be given.
pub const ARGS_MAX: usize = 128;
const HEADER: usize = 8 + 8 + 4 + 4 + 4 * ARGS_MAX;
/// Bytes for the argument strings, terminators included.
pub const STRINGS_SIZE: usize = BASE_PAGE_SIZE - HEADER;

/// The arguments page, exactly one base page.
#[repr(C)]
#[derive(Clone)]
pub struct ArgsPage {
    pub magic: u64,
    /// User virtual address of the bootinfo page, 0 if none.
    pub bootinfo: u64,
    pub argc: u32,
    /// Environment strings (`NAME=value`), after the arguments.
    pub envc: u32,
    /// Offsets in `strings` of each argument's first byte, then of each
    /// environment string's (`argv[argc..argc + envc]`).
    pub argv: [u32; ARGS_MAX],
    pub strings: [u8; STRINGS_SIZE],
}

const _: () = assert!(size_of::<ArgsPage>() == BASE_PAGE_SIZE);

impl ArgsPage {
    /// An empty, valid page.
    pub const fn new() -> Self {
        ArgsPage { magic: ARGS_MAGIC, bootinfo: 0, argc: 0, envc: 0, argv: [0; ARGS_MAX], strings: [0; STRINGS_SIZE] }
    }

    /// Builds a page from arguments; fails if they do not fit or contain NUL.
    pub fn build<'a>(args: impl IntoIterator<Item = &'a str>, bootinfo: u64) -> Result<Self, ErrorCode> {
        let mut page = ArgsPage::new();
        page.bootinfo = bootinfo;
        let mut used = 0usize;
        for arg in args {
            let bytes = arg.as_bytes();
            if page.argc as usize == ARGS_MAX || used + bytes.len() + 1 > STRINGS_SIZE {
                return Err(ErrorCode::TooLong);
            }
            if bytes.contains(&0) {
                return Err(ErrorCode::InvalidArgument);
            }
            page.argv[page.argc as usize] = used as u32;
            page.strings[used..used + bytes.len()].copy_from_slice(bytes);
            used += bytes.len() + 1;
            page.argc += 1;
        }
        Ok(page)
    }

    /// Builds a page from a command line as `menu.lst` or a shell writes it
    /// (book ch. 4.17): words separated by whitespace; `'...'` keeps
    /// everything inside as it is; `"..."` too, except that `\"` and `\\`
    /// stand for `"` and `\`; outside quotes a backslash makes the next
    /// character literal. Quotes join with what touches them (`a'b c'd` is
    /// one word), and `''` is an empty word. An unterminated quote, a
    /// trailing backslash or a NUL is `InvalidArgument`; too much for the
    /// page is `TooLong`.
    pub fn from_cmdline(cmdline: &str, bootinfo: u64) -> Result<Self, ErrorCode> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mode {
            Between,
            Word,
            Single,
            Double,
        }
        let mut page = ArgsPage::new();
        page.bootinfo = bootinfo;
        let mut used = 0usize;
        let mut mode = Mode::Between;
        let mut chars = cmdline.chars();
        // Appends to the current word, starting one if needed.
        let push = |page: &mut ArgsPage, used: &mut usize, start: bool, c: Option<char>| {
            if start {
                if page.argc as usize == ARGS_MAX {
                    return Err(ErrorCode::TooLong);
                }
                if *used + 1 > STRINGS_SIZE {
                    return Err(ErrorCode::TooLong);
                }
                page.argv[page.argc as usize] = *used as u32;
                page.argc += 1;
                // The terminator of the new word, moved along as it grows.
                page.strings[*used] = 0;
                *used += 1;
            }
            if let Some(c) = c {
                if c == '\0' {
                    return Err(ErrorCode::InvalidArgument);
                }
                let mut buf = [0u8; 4];
                let bytes = c.encode_utf8(&mut buf).as_bytes();
                if *used + bytes.len() > STRINGS_SIZE {
                    return Err(ErrorCode::TooLong);
                }
                // Overwrite the terminator, then put it back after the bytes.
                let at = *used - 1;
                page.strings[at..at + bytes.len()].copy_from_slice(bytes);
                page.strings[at + bytes.len()] = 0;
                *used += bytes.len();
            }
            Ok(())
        };
        while let Some(c) = chars.next() {
            let starting = mode == Mode::Between;
            match (mode, c) {
                (Mode::Between, c) if c.is_whitespace() => {}
                (Mode::Word, c) if c.is_whitespace() => mode = Mode::Between,
                (Mode::Between | Mode::Word, '\'') => {
                    push(&mut page, &mut used, starting, None)?;
                    mode = Mode::Single;
                }
                (Mode::Between | Mode::Word, '"') => {
                    push(&mut page, &mut used, starting, None)?;
                    mode = Mode::Double;
                }
                (Mode::Between | Mode::Word, '\\') => {
                    let next = chars.next().ok_or(ErrorCode::InvalidArgument)?;
                    push(&mut page, &mut used, starting, Some(next))?;
                    mode = Mode::Word;
                }
                (Mode::Between | Mode::Word, c) => {
                    push(&mut page, &mut used, starting, Some(c))?;
                    mode = Mode::Word;
                }
                (Mode::Single, '\'') => mode = Mode::Word,
                (Mode::Single, c) => push(&mut page, &mut used, false, Some(c))?,
                (Mode::Double, '"') => mode = Mode::Word,
                (Mode::Double, '\\') => match chars.next() {
                    Some(e @ ('"' | '\\')) => push(&mut page, &mut used, false, Some(e))?,
                    Some(other) => {
                        push(&mut page, &mut used, false, Some('\\'))?;
                        push(&mut page, &mut used, false, Some(other))?;
                    }
                    None => return Err(ErrorCode::InvalidArgument),
                },
                (Mode::Double, c) => push(&mut page, &mut used, false, Some(c))?,
            }
        }
        if matches!(mode, Mode::Single | Mode::Double) {
            return Err(ErrorCode::InvalidArgument);
        }
        Ok(page)
    }

    /// Argument `i`, if the page is well formed there.
    pub fn arg(&self, i: usize) -> Option<&str> {
        if self.magic != ARGS_MAGIC || i >= self.argc as usize {
            return None;
        }
        self.string(i)
    }

    /// All well-formed arguments, in order; stops at the first bad one.
    pub fn args(&self) -> impl Iterator<Item = &str> {
        (0..ARGS_MAX).map_while(move |i| self.arg(i))
    }

    /// The string at `argv[i]`, if the page is well formed there.
    fn string(&self, i: usize) -> Option<&str> {
        let start = *self.argv.get(i)? as usize;
        let rest = self.strings.get(start..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        core::str::from_utf8(&rest[..len]).ok()
    }

    /// Environment string `i` (`NAME=value`), if the page is well formed
    /// there.
    pub fn env(&self, i: usize) -> Option<&str> {
        if self.magic != ARGS_MAGIC || i >= self.envc as usize {
            return None;
        }
        self.string((self.argc as usize).checked_add(i)?)
    }

    /// The environment, in order; stops at the first bad string.
    pub fn envs(&self) -> impl Iterator<Item = &str> {
        (0..ARGS_MAX).map_while(move |i| self.env(i))
    }

    /// Appends an environment string (`NAME=value`, no NUL) after the
    /// arguments and any earlier ones.
    pub fn push_env(&mut self, var: &str) -> Result<(), ErrorCode> {
        let n = self.argc as usize + self.envc as usize;
        if var.as_bytes().contains(&0) || !var.contains('=') {
            return Err(ErrorCode::InvalidArgument);
        }
        if n >= ARGS_MAX {
            return Err(ErrorCode::TooLong);
        }
        // Strings are stored in order: the free space starts after the last.
        let used = match n.checked_sub(1) {
            None => 0,
            Some(last) => self.argv[last] as usize + self.string(last).ok_or(ErrorCode::InvalidArgument)?.len() + 1,
        };
        if used + var.len() + 1 > STRINGS_SIZE {
            return Err(ErrorCode::TooLong);
        }
        self.strings[used..used + var.len()].copy_from_slice(var.as_bytes());
        self.strings[used + var.len()] = 0;
        self.argv[n] = used as u32;
        self.envc += 1;
        Ok(())
    }

    /// The page as bytes, for copying into a frame.
    pub fn as_bytes(&self) -> &[u8; BASE_PAGE_SIZE] {
        // SAFETY: ArgsPage is repr(C), exactly one page (asserted above),
        // made only of integers and byte arrays with no padding between
        // them, so every byte is initialised.
        unsafe { &*(self as *const ArgsPage as *const [u8; BASE_PAGE_SIZE]) }
    }
}

impl Default for ArgsPage {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::offset_of;
    use std::vec::Vec;

    #[test]
    fn layout() {
        assert_eq!(offset_of!(ArgsPage, magic), 0);
        assert_eq!(offset_of!(ArgsPage, bootinfo), 8);
        assert_eq!(offset_of!(ArgsPage, argc), 16);
        assert_eq!(offset_of!(ArgsPage, argv), 24);
        assert_eq!(offset_of!(ArgsPage, strings), 24 + 4 * ARGS_MAX);
    }

    #[test]
    fn round_trips_arguments() {
        let page = ArgsPage::build(["init", "a b", "", "ünïcode"], 0x1234).unwrap();
        assert_eq!(page.args().collect::<Vec<_>>(), ["init", "a b", "", "ünïcode"]);
        assert_eq!(page.bootinfo, 0x1234);
        assert_eq!(page.arg(4), None);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let many: Vec<&str> = (0..=ARGS_MAX).map(|_| "x").collect();
        assert_eq!(ArgsPage::build(many, 0).err(), Some(ErrorCode::TooLong));
        let long = "y".repeat(STRINGS_SIZE);
        assert_eq!(ArgsPage::build([long.as_str()], 0).err(), Some(ErrorCode::TooLong));
        let fits = "y".repeat(STRINGS_SIZE - 1);
        assert!(ArgsPage::build([fits.as_str()], 0).is_ok());
        assert_eq!(ArgsPage::build(["a\0b"], 0).err(), Some(ErrorCode::InvalidArgument));
    }

    fn split(cmdline: &str) -> Result<Vec<std::string::String>, ErrorCode> {
        ArgsPage::from_cmdline(cmdline, 0).map(|p| p.args().map(std::string::String::from).collect())
    }

    #[test]
    fn command_lines_split_like_a_shell() {
        assert_eq!(split("hello  world\t x").unwrap(), ["hello", "world", "x"]);
        assert_eq!(split("  ").unwrap(), Vec::<std::string::String>::new());
        assert_eq!(split("say 'a b  c' \"d \\\"e\\\" f\"").unwrap(), ["say", "a b  c", "d \"e\" f"]);
        assert_eq!(split("a\\ b c\\'d").unwrap(), ["a b", "c'd"]);
        assert_eq!(split("a'b c'd \"\" ''").unwrap(), ["ab cd", "", ""]);
        assert_eq!(split("'it''s' \"\\n\"").unwrap(), ["its", "\\n"], "unknown escapes in double quotes stay");
        assert_eq!(split("ünï 'cödé'").unwrap(), ["ünï", "cödé"]);
        assert_eq!(split("'open").err(), Some(ErrorCode::InvalidArgument));
        assert_eq!(split("\"open").err(), Some(ErrorCode::InvalidArgument));
        assert_eq!(split("trailing\\").err(), Some(ErrorCode::InvalidArgument));
        assert_eq!(split("nul\0here").err(), Some(ErrorCode::InvalidArgument));
        let many = "x ".repeat(ARGS_MAX + 1);
        assert_eq!(split(&many).err(), Some(ErrorCode::TooLong));
        let long = "y".repeat(STRINGS_SIZE);
        assert_eq!(split(&long).err(), Some(ErrorCode::TooLong));
        let fits = "y".repeat(STRINGS_SIZE - 1);
        assert_eq!(split(&fits).unwrap().len(), 1);
    }

    /// Quotes `arg` so the splitter gives it back: one of three styles.
    fn quote(arg: &str, style: u8) -> std::string::String {
        let mut q = std::string::String::new();
        match style % 3 {
            0 => {
                for c in arg.chars() {
                    if c.is_whitespace() || "'\"\\".contains(c) {
                        q.push('\\');
                    }
                    q.push(c);
                }
                if arg.is_empty() {
                    q.push_str("''");
                }
            }
            1 => {
                q.push('"');
                for c in arg.chars() {
                    if c == '"' || c == '\\' {
                        q.push('\\');
                    }
                    q.push(c);
                }
                q.push('"');
            }
            _ => {
                // Single quotes cannot hold a single quote: close, escape, reopen.
                q.push('\'');
                for c in arg.chars() {
                    if c == '\'' {
                        q.push_str("'\\''");
                    } else {
                        q.push(c);
                    }
                }
                q.push('\'');
            }
        }
        q
    }

    proptest::proptest! {
        #[test]
        fn quoted_arguments_come_back_intact(
            args in proptest::collection::vec("[^\\x00]{0,12}", 0..12),
            styles in proptest::collection::vec(0u8..3, 12),
        ) {
            let line: Vec<_> = args.iter().zip(&styles).map(|(a, s)| quote(a, *s)).collect();
            let line = line.join(" ");
            proptest::prop_assert_eq!(split(&line).unwrap(), args);
        }

        /// Whatever a line splits into, quoting those words again and
        /// splitting gives the same words: the splitter and its inverse agree
        /// on arbitrary input, not only on lines made by `quote`.
        #[test]
        fn any_line_that_splits_splits_again_the_same(line in "\\PC{0,64}", style in 0u8..3) {
            if let Ok(args) = split(&line) {
                let again: Vec<_> = args.iter().map(|a| quote(a, style)).collect();
                proptest::prop_assert_eq!(split(&again.join(" ")).unwrap(), args);
            }
        }
    }

    #[test]
    fn hostile_pages_read_as_fewer_arguments() {
        let mut page = ArgsPage::build(["ok", "fine"], 0).unwrap();
        page.argc = u32::MAX;
        let args: Vec<_> = page.args().collect();
        assert_eq!(args.len(), ARGS_MAX, "a lying argc is bounded by ARGS_MAX");
        assert_eq!(args[..2], ["ok", "fine"]);
        page.argv[0] = u32::MAX;
        assert_eq!(page.arg(0), None);
        page.strings = [b'z'; STRINGS_SIZE];
        assert_eq!(page.arg(1), None, "no terminator");
        page.magic = 0;
        assert_eq!(page.args().count(), 0);
    }

    #[test]
    fn environment_strings_follow_the_arguments() {
        let mut page = ArgsPage::from_cmdline("prog 'a b' c", 0).unwrap();
        page.push_env("AOS_PID=0x3").unwrap();
        page.push_env("EMPTY=").unwrap();
        assert_eq!(page.args().collect::<Vec<_>>(), ["prog", "a b", "c"], "arguments unchanged");
        assert_eq!(page.envs().collect::<Vec<_>>(), ["AOS_PID=0x3", "EMPTY="]);
        assert_eq!(page.push_env("no-equals"), Err(ErrorCode::InvalidArgument));
        assert_eq!(page.push_env("NUL=a\0b"), Err(ErrorCode::InvalidArgument));
        assert_eq!(page.envs().count(), 2, "a refused string is not added");
        let mut empty = ArgsPage::new();
        empty.push_env("ONLY=1").unwrap();
        assert_eq!(empty.envs().collect::<Vec<_>>(), ["ONLY=1"]);
        assert_eq!(empty.args().count(), 0);
    }

    #[test]
    fn the_environment_is_bounded_by_the_page() {
        let mut page = ArgsPage::new();
        let long = std::format!("V={}", "x".repeat(1000));
        let mut n = 0;
        while page.push_env(&long).is_ok() {
            n += 1;
        }
        assert_eq!(n, STRINGS_SIZE / 1003);
        assert_eq!(page.push_env(&long), Err(ErrorCode::TooLong), "nothing written on refusal");
        assert_eq!(page.envs().count(), n);
        // A hostile count is bounded too, and adding to such a page is
        // refused, not a panic.
        page.envc = u32::MAX;
        assert!(page.envs().count() <= ARGS_MAX);
        assert_eq!(page.push_env("A=1"), Err(ErrorCode::TooLong));
    }
}
