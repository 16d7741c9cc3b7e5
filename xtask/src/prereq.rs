//! Prerequisites, checked before use and installed where we may: the Rust
//! target and components (explicitly, since `RUSTUP_AUTO_INSTALL=0` may be
//! set), QEMU new enough for every board, gdb-multiarch. When we may not
//! install (not root, not Debian), the exact commands are printed instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{root, run_status};

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sysroot() -> Result<PathBuf, String> {
    let s = output(Command::new("rustc").current_dir(root()).args(["--print", "sysroot"]))
        .ok_or("cannot run `rustc --print sysroot`: is the toolchain of rust-toolchain.toml installed? run `rustup toolchain install`")?;
    Ok(PathBuf::from(s.trim()))
}

fn host_triple() -> Result<String, String> {
    let v = output(Command::new("rustc").current_dir(root()).arg("-vV")).ok_or("cannot run `rustc -vV`")?;
    v.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| "`rustc -vV` printed no host".into())
}

/// The llvm-objcopy of the llvm-tools component.
pub fn llvm_objcopy() -> Result<PathBuf, String> {
    let p = sysroot()?.join("lib/rustlib").join(host_triple()?).join("bin/llvm-objcopy");
    if p.exists() { Ok(p) } else { Err(format!("{} missing: run `rustup component add llvm-tools`", p.display())) }
}

/// Makes sure the aarch64 targets and the components the kit uses exist.
pub fn rust() -> Result<(), String> {
    let sysroot = sysroot()?;
    let rustlib = sysroot.join("lib/rustlib");
    let host = host_triple()?;
    for target in [crate::image::TARGET, crate::image::KERNEL_TARGET] {
        if !rustlib.join(target).join("lib").is_dir() {
            install_rust(&["target", "add", target])?;
        }
    }
    let components: [(&str, PathBuf); 4] = [
        ("rust-src", rustlib.join("src/rust")),
        ("llvm-tools", rustlib.join(&host).join("bin/llvm-objcopy")),
        ("clippy", sysroot.join("bin/cargo-clippy")),
        ("rustfmt", sysroot.join("bin/rustfmt")),
    ];
    let missing: Vec<&str> = components.iter().filter(|(_, p)| !p.exists()).map(|(c, _)| *c).collect();
    if !missing.is_empty() {
        let mut args = vec!["component", "add"];
        args.extend(missing);
        install_rust(&args)?;
    }
    Ok(())
}

/// Makes sure one more Rust target is installed (the bench's Linux peer).
pub fn rust_target(target: &str) -> Result<(), String> {
    if sysroot()?.join("lib/rustlib").join(target).join("lib").is_dir() {
        return Ok(());
    }
    install_rust(&["target", "add", target])
}

fn install_rust(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(root()).args(args);
    eprintln!("xtask: installing: rustup {}", args.join(" "));
    run_status(&mut cmd).map_err(|e| format!("{e}\nrun `rustup {}` in {} yourself", args.join(" "), root().display()))
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0")
}

fn os_release(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|l| l.strip_prefix(&format!("{key}=")).map(|v| v.trim_matches('"').to_owned()))
}

/// Makes sure `qemu-system-aarch64` is at least `min`.
pub fn qemu(min: (u32, u32)) -> Result<(), String> {
    let found = grading_runner::qemu::installed_version();
    if found.is_some_and(|v| v >= min) {
        return Ok(());
    }
    let have = found.map_or("none".to_owned(), |(a, b)| format!("{a}.{b}"));
    let need = format!("QEMU >= {}.{} is needed (found {have})", min.0, min.1);
    let debian = os_release("ID").as_deref() == Some("debian") && Path::new("/usr/bin/apt-get").exists();
    if !debian {
        return Err(format!("{need}: install qemu-system-aarch64 >= {}.{} from your distribution", min.0, min.1));
    }
    let codename = os_release("VERSION_CODENAME").unwrap_or_default();
    let plan = InstallPlan::for_release(&codename)?;
    if !is_root() {
        return Err(format!("{need}. As root, run:\n{}", plan.shell_commands()));
    }
    eprintln!(
        "xtask: {need}; installing qemu-system-arm{}",
        plan.suite.as_deref().map(|s| format!(" from {s}")).unwrap_or_default()
    );
    if let Some((path, text)) = &plan.source {
        eprintln!("xtask: writing {path}");
        std::fs::write(path, text).map_err(|e| format!("writing {path}: {e}"))?;
    }
    let apt = |args: &[String]| {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        run_status(&mut c)
    };
    apt(&["update".into(), "-q".into()])?;
    apt(&plan.install_args())?;
    match grading_runner::qemu::installed_version() {
        Some(v) if v >= min => Ok(()),
        v => Err(format!("after installing, QEMU is {v:?}, still older than {}.{}", min.0, min.1)),
    }
}

/// How to get a new enough QEMU on a Debian release.
#[derive(Debug)]
struct InstallPlan {
    /// The suite to install from, when not the release itself.
    suite: Option<String>,
    /// An apt source to add first: path and deb822 text.
    source: Option<(String, String)>,
}

impl InstallPlan {
    /// Debian 12 ships QEMU 7.2; its backports suite carries a current one.
    /// The backports source reuses the mirror and key of the system's own
    /// Debian source, unless some source already names the suite.
    fn for_release(codename: &str) -> Result<InstallPlan, String> {
        if codename != "bookworm" {
            return Ok(InstallPlan { suite: None, source: None });
        }
        let suite = format!("{codename}-backports");
        let mut sources = vec![PathBuf::from("/etc/apt/sources.list")];
        if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
            sources.extend(dir.filter_map(|e| e.ok()).map(|e| e.path()));
        }
        let texts: Vec<String> = sources.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect();
        if texts.iter().any(|t| t.split_whitespace().any(|w| w == suite)) {
            return Ok(InstallPlan { suite: Some(suite), source: None });
        }
        let (uri, signed_by) = texts.iter().find_map(|t| main_debian_source(t, codename)).ok_or_else(|| {
            format!("found no apt source for Debian {codename} to derive {suite} from; add {suite} to apt's sources")
        })?;
        let mut text = format!("Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: main\n");
        if let Some(key) = signed_by {
            text.push_str(&format!("Signed-By: {key}\n"));
        }
        let path = "/etc/apt/sources.list.d/aos-kit-backports.sources".to_owned();
        Ok(InstallPlan { suite: Some(suite), source: Some((path, text)) })
    }

    fn install_args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["install", "-y", "-q", "--no-install-recommends"].map(String::from).to_vec();
        if let Some(s) = &self.suite {
            a.extend(["-t".into(), s.clone()]);
        }
        a.push("qemu-system-arm".into());
        a
    }

    /// The same steps as shell commands, for someone to run as root.
    fn shell_commands(&self) -> String {
        let mut out = String::new();
        if let Some((path, text)) = &self.source {
            out.push_str(&format!("  cat > {path} <<'EOF'\n{text}EOF\n"));
        }
        out.push_str("  apt-get update\n");
        out.push_str(&format!("  apt-get {}", self.install_args().join(" ")));
        out
    }
}

/// The URI (and key) of the apt source serving `codename` itself, from a
/// one-line (`deb URI SUITE ...`) or deb822 (`URIs:`/`Suites:`) file.
fn main_debian_source(text: &str, codename: &str) -> Option<(String, Option<String>)> {
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"deb") {
            let rest: Vec<&str> = words[1..].iter().copied().filter(|w| !w.starts_with('[')).collect();
            if rest.len() >= 2 && rest[1] == codename {
                return Some((rest[0].to_owned(), None));
            }
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()));
        let suites = field("Suites:")?;
        if suites.split_whitespace().any(|s| s == codename) {
            let uri = field("URIs:")?.split_whitespace().next()?.to_owned();
            return Some((uri, field("Signed-By:")));
        }
    }
    None
}

/// Makes sure gdb-multiarch exists.
pub fn gdb() -> Result<(), String> {
    if output(Command::new("gdb-multiarch").arg("--version")).is_some() {
        return Ok(());
    }
    if is_root() && Path::new("/usr/bin/apt-get").exists() {
        eprintln!("xtask: installing gdb-multiarch");
        return run_status(Command::new("apt-get").env("DEBIAN_FRONTEND", "noninteractive").args([
            "install",
            "-y",
            "-q",
            "gdb-multiarch",
        ]));
    }
    Err("gdb-multiarch is needed: `apt-get install gdb-multiarch` (as root)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_plans_name_every_step() {
        let plan = InstallPlan {
            suite: Some("bookworm-backports".into()),
            source: Some(("/etc/apt/x.sources".into(), "Types: deb\n".into())),
        };
        let sh = plan.shell_commands();
        assert!(sh.contains("cat > /etc/apt/x.sources <<'EOF'\nTypes: deb\nEOF"), "{sh}");
        assert!(sh.contains("apt-get update"));
        assert!(
            sh.ends_with("apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-system-arm"),
            "{sh}"
        );
        let plain = InstallPlan::for_release("trixie").unwrap();
        assert_eq!(plain.install_args().last().map(String::as_str), Some("qemu-system-arm"));
        assert!(!plain.install_args().contains(&"-t".to_owned()));
    }

    #[test]
    fn finds_the_main_source_in_both_formats() {
        let one_line = "# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n";
        assert_eq!(main_debian_source(one_line, "bookworm"), Some(("http://mirror.example/debian".into(), None)));
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/k.gpg\n\nTypes: deb\nURIs: http://sec.example\nSuites: bookworm-security\n";
        assert_eq!(
            main_debian_source(deb822, "bookworm"),
            Some(("http://mirror.example/debian".into(), Some("/usr/share/keyrings/k.gpg".into())))
        );
        assert_eq!(main_debian_source("Suites: bookworm-security\nURIs: x\n", "bookworm"), None);
        assert_eq!(main_debian_source(one_line, "trixie"), None);
    }
}
