//! How a board is run under QEMU: one place builds every command line, for
//! interactive runs (`cargo xtask run`) and for graded runs alike.

use std::path::{Path, PathBuf};
use std::process::Command;

use platform::Board;

/// Where the guest console goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleMode {
    /// The terminal: console on stdio with the QEMU monitor a `Ctrl-A c`
    /// away, `Ctrl-A x` to quit.
    Interactive,
    /// Pipes for a program, plus a QMP socket at this path.
    Piped { qmp: PathBuf },
}

/// One QEMU configuration.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    pub board: &'static Board,
    /// A raw arm64 Image.
    pub image: PathBuf,
    /// Device tree for boards QEMU has none for.
    pub dtb: Option<PathBuf>,
    /// The boot image (modules), loaded as the initrd.
    pub initrd: Option<PathBuf>,
    /// Kernel command line (`/chosen/bootargs`).
    pub append: Option<String>,
    /// Let the guest end QEMU with an exit status (semihosting SYS_EXIT).
    pub semihosting: bool,
    /// Exit instead of resetting when the guest resets (a panicking Linux).
    pub no_reboot: bool,
    pub smp: u32,
    /// `virt` only: emulate EL2 (and EL3's PSCI over smc), so the kernel is
    /// entered at EL2.
    pub el2: bool,
    /// Wait for gdb on tcp::1234 before the first instruction.
    pub gdb: bool,
    /// Deterministic instruction counting: `-icount shift=0,sleep=off`,
    /// no random seeds in the device tree, no host clock.
    pub icount: bool,
    /// RAM in MiB instead of the board's default. Only boards whose device
    /// tree QEMU writes see the difference (ours describe the board's RAM).
    pub memory_mib: Option<u64>,
}

impl QemuConfig {
    pub fn new(board: &'static Board, image: &Path, dtb: Option<&Path>) -> Self {
        QemuConfig {
            board,
            image: image.to_owned(),
            dtb: dtb.map(Path::to_owned),
            initrd: None,
            append: None,
            semihosting: false,
            no_reboot: false,
            smp: 1,
            el2: false,
            gdb: false,
            icount: false,
            memory_mib: None,
        }
    }

    /// The exception level the kernel is entered at, as QEMU documents it
    /// for a raw Image: EL2 where the machine emulates it, else EL1.
    pub fn entry_el(&self) -> u32 {
        if self.el2 || self.board.qemu.is_some_and(|q| !q.provides_dtb) { 2 } else { 1 }
    }

    /// The QEMU command line, or why this configuration cannot run.
    pub fn command(&self, console: &ConsoleMode) -> Result<Command, String> {
        let q = self.board.qemu.ok_or_else(|| {
            format!(
                "{} cannot be booted here: no emulator models it; the image builds and boots on the board itself",
                self.board.name
            )
        })?;
        if self.el2 && !q.machine.starts_with("virt") {
            return Err(format!("--el2 applies to qemu-virt only; {} always enters at EL2", self.board.name));
        }
        if self.smp == 0 || self.smp > 8 {
            return Err(format!("--smp {} is out of range (1 to 8)", self.smp));
        }
        if !q.provides_dtb && self.dtb.is_none() {
            return Err(format!("{} needs a device tree (-dtb) and none was given", self.board.name));
        }
        let mut machine = q.machine.to_owned();
        if self.el2 {
            machine.push_str(",virtualization=on");
        }
        if self.icount && q.provides_dtb {
            machine.push_str(",dtb-randomness=off");
        }
        let mut cmd = Command::new("qemu-system-aarch64");
        cmd.args(["-machine", &machine, "-cpu", q.cpu])
            .args(["-m", &format!("{}M", self.memory_mib.unwrap_or(q.memory_mib))])
            .args(["-smp", &self.smp.to_string()])
            .args(["-nodefaults", "-no-user-config", "-display", "none", "-nic", "none"])
            .arg("-kernel")
            .arg(&self.image);
        if let Some(dtb) = &self.dtb {
            cmd.arg("-dtb").arg(dtb);
        }
        if let Some(initrd) = &self.initrd {
            cmd.arg("-initrd").arg(initrd);
        }
        if let Some(append) = &self.append {
            cmd.args(["-append", append]);
        }
        if self.semihosting {
            cmd.args(["-semihosting-config", "enable=on,target=native"]);
        }
        if self.no_reboot {
            cmd.arg("-no-reboot");
        }
        for _ in 0..self.board.console.index {
            cmd.args(["-serial", "null"]);
        }
        match console {
            ConsoleMode::Interactive => {
                cmd.args(["-serial", "mon:stdio"]);
            }
            ConsoleMode::Piped { qmp } => {
                cmd.args(["-serial", "stdio"]);
                cmd.arg("-qmp").arg(format!("unix:{},server=on,wait=off", qmp.display()));
                // Start paused: the runner resumes the machine over QMP once
                // connected, so even an image that ends at once cannot race
                // the connection.
                if !self.gdb {
                    cmd.arg("-S");
                }
            }
        }
        if self.icount {
            cmd.args(["-icount", "shift=0,sleep=off", "-rtc", "clock=vm"]);
        }
        if self.gdb {
            cmd.args(["-s", "-S"]);
        }
        Ok(cmd)
    }
}

/// The installed QEMU's version, from `qemu-system-aarch64 --version`.
pub fn installed_version() -> Option<(u32, u32)> {
    let out = Command::new("qemu-system-aarch64").arg("--version").output().ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// The installed QEMU's full version ("10.0.2"), for reports.
pub fn installed_version_text() -> Option<String> {
    let out = Command::new("qemu-system-aarch64").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text.split("version ").nth(1)?;
    Some(rest.split_whitespace().next()?.to_owned())
}

/// Parses "QEMU emulator version 10.0.2 (...)".
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.split("version ").nth(1)?;
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn virt_console_is_the_first_serial() {
        let cfg = QemuConfig::new(&platform::QEMU_VIRT, Path::new("k.img"), None);
        let a = args(&cfg.command(&ConsoleMode::Piped { qmp: "/tmp/q".into() }).unwrap());
        let serials: Vec<_> = a.windows(2).filter(|w| w[0] == "-serial").map(|w| w[1].as_str()).collect();
        assert_eq!(serials, ["stdio"]);
        assert!(a.contains(&"virt,gic-version=3".to_owned()));
        assert!(a.contains(&"unix:/tmp/q,server=on,wait=off".to_owned()));
        assert!(a.contains(&"-S".to_owned()), "graded runs start paused until QMP is connected");
        assert_eq!(cfg.entry_el(), 1);
    }

    #[test]
    fn imx8mp_console_is_uart2_and_needs_a_dtb() {
        let cfg = QemuConfig::new(&platform::IMX8MP_EVK, Path::new("k.img"), None);
        assert!(cfg.command(&ConsoleMode::Interactive).unwrap_err().contains("device tree"));
        let cfg = QemuConfig::new(&platform::IMX8MP_EVK, Path::new("k.img"), Some(Path::new("b.dtb")));
        let a = args(&cfg.command(&ConsoleMode::Interactive).unwrap());
        let serials: Vec<_> = a.windows(2).filter(|w| w[0] == "-serial").map(|w| w[1].as_str()).collect();
        assert_eq!(serials, ["null", "mon:stdio"]);
        assert_eq!(cfg.entry_el(), 2);
    }

    #[test]
    fn el2_icount_and_gdb_options() {
        let mut cfg = QemuConfig::new(&platform::QEMU_VIRT, Path::new("k.img"), None);
        cfg.el2 = true;
        cfg.icount = true;
        cfg.gdb = true;
        let a = args(&cfg.command(&ConsoleMode::Interactive).unwrap());
        assert!(a.contains(&"virt,gic-version=3,virtualization=on,dtb-randomness=off".to_owned()));
        assert!(a.windows(2).any(|w| w == ["-icount", "shift=0,sleep=off"]));
        assert!(a.windows(2).any(|w| w == ["-rtc", "clock=vm"]));
        assert!(a.windows(2).any(|w| w == ["-s", "-S"]));
        assert_eq!(cfg.entry_el(), 2);
    }

    #[test]
    fn boot_image_command_line_and_semihosting() {
        let mut cfg = QemuConfig::new(&platform::QEMU_VIRT, Path::new("k.img"), None);
        cfg.initrd = Some("mods.img".into());
        cfg.append = Some("semihosting".into());
        cfg.semihosting = true;
        let a = args(&cfg.command(&ConsoleMode::Interactive).unwrap());
        assert!(a.windows(2).any(|w| w == ["-initrd", "mods.img"]));
        assert!(a.windows(2).any(|w| w == ["-append", "semihosting"]));
        assert!(a.windows(2).any(|w| w == ["-semihosting-config", "enable=on,target=native"]));
    }

    #[test]
    fn refuses_what_cannot_run() {
        let cfg = QemuConfig::new(&platform::IMX8X_COLIBRI, Path::new("k.img"), None);
        assert!(cfg.command(&ConsoleMode::Interactive).unwrap_err().contains("cannot be booted here"));
        let mut cfg = QemuConfig::new(&platform::IMX8MP_EVK, Path::new("k.img"), Some(Path::new("b.dtb")));
        cfg.el2 = true;
        assert!(cfg.command(&ConsoleMode::Interactive).unwrap_err().contains("--el2"));
        let mut cfg = QemuConfig::new(&platform::QEMU_VIRT, Path::new("k.img"), None);
        cfg.smp = 0;
        assert!(cfg.command(&ConsoleMode::Interactive).is_err());
    }

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)\n"), Some((10, 0)));
        assert_eq!(parse_version("QEMU emulator version 7.2.15\n"), Some((7, 2)));
        assert_eq!(parse_version("garbage"), None);
    }
}
