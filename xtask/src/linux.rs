//! The Linux peer for `cargo xtask bench`: Debian's arm64 kernel and a
//! static busybox, fetched at run time with apt (never committed; cached in
//! `target/linux-peer/`), and an initramfs whose `/init` is the
//! `linux-peer` program built for `aarch64-unknown-linux-musl`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cargo, cpio, prereq, root, run_status};

pub const TARGET: &str = "aarch64-unknown-linux-musl";

fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!("{:?} failed: {}", cmd.get_program(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Debian's arm64 kernel Image and busybox, fetched once.
fn fetch(cache: &Path) -> Result<(PathBuf, PathBuf), String> {
    let tree = cache.join("root");
    let busybox = tree.join("bin/busybox");
    let kernel = || -> Option<PathBuf> {
        std::fs::read_dir(tree.join("boot"))
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))
    };
    if let (Some(k), true) = (kernel(), busybox.is_file()) {
        return Ok((k, busybox));
    }
    let apt = Path::new("/usr/bin/apt-get").exists() && Path::new("/usr/bin/dpkg").exists();
    if !apt {
        return Err("the Linux peer needs Debian's apt to fetch linux-image-arm64 and busybox-static (arm64)".into());
    }
    std::fs::create_dir_all(cache).map_err(|e| e.to_string())?;
    let foreign = output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    if !foreign.split_whitespace().any(|a| a == "arm64") {
        eprintln!("xtask: adding the arm64 architecture to dpkg to fetch the Linux peer");
        run_status(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
        run_status(Command::new("apt-get").args(["update", "-q"]))?;
    }
    let mut deps = output(Command::new("apt-cache").args(["depends", "linux-image-arm64:arm64"]))?;
    if !deps.contains("Depends: linux-image-") {
        run_status(Command::new("apt-get").args(["update", "-q"]))?;
        deps = output(Command::new("apt-cache").args(["depends", "linux-image-arm64:arm64"]))?;
    }
    let image = deps
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: ").filter(|d| d.starts_with("linux-image-")))
        .ok_or("apt knows no linux-image-arm64:arm64")?
        .to_owned();
    eprintln!("xtask: fetching {image} and busybox-static:arm64 with apt");
    run_status(Command::new("apt-get").current_dir(cache).args(["download", "-q", &image, "busybox-static:arm64"]))?;
    for deb in std::fs::read_dir(cache).map_err(|e| e.to_string())?.filter_map(|e| e.ok()).map(|e| e.path()) {
        if deb.extension().is_some_and(|e| e == "deb") {
            run_status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
            let _ = std::fs::remove_file(&deb);
        }
    }
    match (kernel(), busybox.is_file()) {
        (Some(k), true) => Ok((k, busybox)),
        _ => Err("the fetched packages hold no kernel image or busybox".into()),
    }
}

/// Builds the peer and the initramfs; returns (kernel image, initramfs).
pub fn prepare() -> Result<(PathBuf, PathBuf), String> {
    let cache = root().join("target/linux-peer");
    let (kernel, busybox) = fetch(&cache)?;
    prereq::rust_target(TARGET)?;
    run_status(cargo().args(["build", "-q", "-p", "linux-peer", "--release", "--target", TARGET]))?;
    let peer = root().join("target").join(TARGET).join("release/peer");
    let init = std::fs::read(&peer).map_err(|e| format!("{}: {e}", peer.display()))?;
    let bb = std::fs::read(&busybox).map_err(|e| format!("{}: {e}", busybox.display()))?;
    let archive = cpio::archive(&[
        cpio::Entry { path: "bin", mode: cpio::DIR, data: &[] },
        cpio::Entry { path: "bin/busybox", mode: cpio::EXEC, data: &bb },
        cpio::Entry { path: "init", mode: cpio::EXEC, data: &init },
    ]);
    let rd = cache.join("initramfs.cpio");
    std::fs::write(&rd, archive).map_err(|e| format!("{}: {e}", rd.display()))?;
    Ok((kernel, rd))
}
