//! `menu.lst` (book ch. 4.8): which kernel boots and which modules the boot
//! image carries, each with its command line. Supported lines:
//!
//! ```text
//! title TEXT              # shown nowhere; documents the image
//! kernel NAME [ARGS...]   # exactly once
//! module NAME [ARGS...]   # the first module is init
//! # comment
//! ```
//!
//! A module's command line is the whole line after `module`, program name
//! first, passed on verbatim: the kernel (for init) and spawn split it as a
//! shell would, with quotes and backslash escapes (`kpi::args`), so spacing
//! inside quotes survives.

/// A parsed menu.
#[derive(Debug, PartialEq, Eq)]
pub struct Menu {
    pub title: Option<String>,
    pub kernel: String,
    /// The kernel's own arguments (its boot arguments).
    pub kernel_args: String,
    /// (program name, command line).
    pub modules: Vec<(String, String)>,
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
                let name = name.rsplit('/').next().unwrap_or(name);
                modules.push((name.to_owned(), rest.to_owned()));
            }
            other => return Err(format!("line {at}: unknown directive '{other}' (title, kernel, module)")),
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
        assert_eq!(
            m.modules,
            [("init".to_owned(), "/sbin/init  a   b".to_owned()), ("hello".to_owned(), "hello".to_owned())]
        );
    }

    #[test]
    fn names_the_bad_line() {
        assert_eq!(
            parse("kernel k\nmodul x\n").unwrap_err(),
            "line 2: unknown directive 'modul' (title, kernel, module)"
        );
        assert!(parse("module x\n").unwrap_err().contains("no 'kernel'"));
        assert!(parse("kernel k\n").unwrap_err().contains("no 'module'"));
        assert!(parse("kernel a\nkernel b\nmodule m\n").unwrap_err().contains("line 2"));
        assert!(parse("kernel k\nmodule\n").unwrap_err().contains("line 2: 'module' needs"));
    }
}
