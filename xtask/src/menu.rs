//! `menu.lst` (book ch. 4.8): which kernel boots and which modules the boot
//! image carries, each with its command line. Supported lines:
//!
//! ```text
//! title TEXT                           # shown nowhere; documents the image
//! kernel NAME [ARGS...]                # exactly once
//! module NAME [ARGS...]                # the first module is init
//! corrupt KIND PROGRAM NAME [ARGS...]  # PROGRAM's ELF broken as KIND
//! # comment
//! ```
//!
//! A module's command line is the whole line after `module`, program name
//! first, passed on verbatim: the kernel (for init) and spawn split it as a
//! shell would, with quotes and backslash escapes (`kpi::args`), so spacing
//! inside quotes survives. The module's name is the last path component of
//! that first word.
//!
//! A `corrupt` line packs program PROGRAM's ELF, made malformed as KIND
//! (`corrupt::Kind`: truncated, machine, overlap, huge-memsz, entry, empty,
//! magic, stack), as a module named NAME; its command line is everything from NAME
//! on, verbatim as for `module`. Grading suites spawn these to check that
//! malformed programs are refused.

use crate::corrupt;

/// One boot module.
#[derive(Debug, PartialEq, Eq)]
pub struct Module {
    /// Name in the boot image, what spawn looks up.
    pub name: String,
    /// Command line, the name (as written) first.
    pub cmdline: String,
    /// The user program whose binary is packed.
    pub program: String,
    /// How that binary is broken first, if at all.
    pub corrupt: Option<corrupt::Kind>,
}

/// A parsed menu.
#[derive(Debug, PartialEq, Eq)]
pub struct Menu {
    pub title: Option<String>,
    pub kernel: String,
    /// The kernel's own arguments (its boot arguments).
    pub kernel_args: String,
    pub modules: Vec<Module>,
}

/// The first word of `s` and the rest, leading whitespace removed.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    s.split_once(char::is_whitespace).map_or((s, ""), |(w, r)| (w, r.trim_start()))
}

/// The last path component: `/sbin/init` is module `init`.
fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Parses a menu; errors name the line.
pub fn parse(text: &str) -> Result<Menu, String> {
    let mut title = None;
    let mut kernel = None;
    let mut kernel_args = String::new();
    let mut modules = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = line.split_once(char::is_whitespace).map_or((line, ""), |(w, r)| (w, r.trim()));
        let at = n + 1;
        match word {
            "title" => title = Some(rest.to_owned()),
            "kernel" => {
                if kernel.is_some() {
                    return Err(format!("line {at}: a second 'kernel' line"));
                }
                let mut words = rest.split_whitespace();
                let name = words.next().ok_or(format!("line {at}: 'kernel' needs a name"))?;
                kernel = Some(name.to_owned());
                kernel_args = words.collect::<Vec<_>>().join(" ");
            }
            "module" => {
                let name = rest.split_whitespace().next().ok_or(format!("line {at}: 'module' needs a program name"))?;
                let name = base_name(name);
                modules.push(Module {
                    name: name.to_owned(),
                    cmdline: rest.to_owned(),
                    program: name.to_owned(),
                    corrupt: None,
                });
            }
            "corrupt" => {
                let (kind, after) = split_word(rest);
                let (program, cmdline) = split_word(after);
                let name = cmdline.split_whitespace().next();
                let Some(name) = name.filter(|_| !kind.is_empty() && !program.is_empty()) else {
                    return Err(format!("line {at}: 'corrupt' needs KIND PROGRAM NAME [ARGS...]"));
                };
                let kind = corrupt::Kind::from_name(kind)
                    .ok_or_else(|| format!("line {at}: unknown corruption '{kind}' ({})", corrupt::Kind::names()))?;
                modules.push(Module {
                    name: base_name(name).to_owned(),
                    cmdline: cmdline.to_owned(),
                    program: base_name(program).to_owned(),
                    corrupt: Some(kind),
                });
            }
            other => return Err(format!("line {at}: unknown directive '{other}' (title, kernel, module, corrupt)")),
        }
    }
    let kernel = kernel.ok_or("no 'kernel' line")?;
    if modules.is_empty() {
        return Err("no 'module' line: the first module is init".into());
    }
    Ok(Menu { title, kernel, kernel_args, modules })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_menu() {
        let m =
            parse("title t\n# c\nkernel cpu-driver loglevel=3\n\nmodule /sbin/init  a   b\nmodule hello\n").unwrap();
        assert_eq!(m.title.as_deref(), Some("t"));
        assert_eq!(m.kernel, "cpu-driver");
        assert_eq!(m.kernel_args, "loglevel=3");
        let got: Vec<_> = m.modules.iter().map(|m| (m.name.as_str(), m.cmdline.as_str())).collect();
        assert_eq!(got, [("init", "/sbin/init  a   b"), ("hello", "hello")]);
        assert!(m.modules.iter().all(|m| m.program == m.name && m.corrupt.is_none()));
    }

    #[test]
    fn parses_corrupt_lines() {
        let m = parse(
            "kernel k\nmodule init\ncorrupt  overlap /bin/hello  bad-overlap x \"y  z\"\ncorrupt empty hello e\n",
        )
        .unwrap();
        assert_eq!(
            m.modules[1],
            Module {
                name: "bad-overlap".into(),
                cmdline: "bad-overlap x \"y  z\"".into(),
                program: "hello".into(),
                corrupt: Some(corrupt::Kind::Overlap),
            }
        );
        assert_eq!((m.modules[2].name.as_str(), m.modules[2].cmdline.as_str()), ("e", "e"));
        assert_eq!(m.modules[2].corrupt, Some(corrupt::Kind::Empty));
    }

    #[test]
    fn names_the_bad_corrupt_line() {
        assert_eq!(
            parse("kernel k\nmodule init\ncorrupt bogus hello h\n").unwrap_err(),
            "line 3: unknown corruption 'bogus' (truncated, machine, overlap, huge-memsz, entry, empty, magic, stack)"
        );
        for line in ["corrupt", "corrupt machine", "corrupt machine hello", "corrupt machine hello  "] {
            assert_eq!(
                parse(&format!("kernel k\nmodule init\n{line}\n")).unwrap_err(),
                "line 3: 'corrupt' needs KIND PROGRAM NAME [ARGS...]",
                "{line:?}"
            );
        }
    }

    #[test]
    fn names_the_bad_line() {
        assert_eq!(
            parse("kernel k\nmodul x\n").unwrap_err(),
            "line 2: unknown directive 'modul' (title, kernel, module, corrupt)"
        );
        assert!(parse("module x\n").unwrap_err().contains("no 'kernel'"));
        assert!(parse("kernel k\n").unwrap_err().contains("no 'module'"));
        assert!(parse("kernel a\nkernel b\nmodule m\n").unwrap_err().contains("line 2"));
        assert!(parse("kernel k\nmodule\n").unwrap_err().contains("line 2: 'module' needs"));
    }
}
