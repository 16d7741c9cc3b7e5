//! Building a stage for a board: cargo for `aarch64-unknown-none` with the
//! board's feature, then `llvm-objcopy` to a raw arm64 Image, the format
//! every board's loader takes (QEMU `-kernel`, U-Boot `booti`).
//!
//! Each board builds in its own target directory so switching boards does
//! not rebuild the others.

use std::collections::hash_map::{Entry, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use goblin::elf::Elf;
use goblin::elf::program_header::PT_LOAD;
use platform::{Board, TEXT_OFFSET};

use crate::stages::{Kind, Stage};
use crate::{cargo, menu, prereq, root, run_status};

/// Target of kernels that share the machine with user code: soft-float, so
/// the kernel never touches the FP/SIMD registers user programs own.
pub const KERNEL_TARGET: &str = "aarch64-unknown-none-softfloat";
/// Target of M0 and of user programs.
pub const TARGET: &str = "aarch64-unknown-none";
/// The CPU driver's package and binary.
const CPU_DRIVER: (&str, &str) = ("cpu-driver", "cpu-driver");

/// A built stage image.
#[derive(Clone, Debug)]
pub struct Built {
    /// The linked kernel, with symbols, for gdb.
    pub elf: PathBuf,
    /// The raw arm64 Image to boot.
    pub image: PathBuf,
}

fn target_dir(board: &Board) -> PathBuf {
    root().join("target").join("boards").join(board.name)
}

pub fn images_dir() -> PathBuf {
    root().join("target").join("images")
}

/// Where the ELF of a stage built for a board is kept.
pub fn elf_copy_path(stage: &Stage, board: &Board) -> PathBuf {
    images_dir().join(format!("{}-{}.elf", stage.name, board.name))
}

/// The kernel a stage boots: package, binary, target.
fn kernel_of(stage: &Stage) -> (&'static str, &'static str, &'static str) {
    match stage.kind {
        Kind::Bare { package, bin } => (package, bin, TARGET),
        Kind::Kernel { .. } => (CPU_DRIVER.0, CPU_DRIVER.1, KERNEL_TARGET),
    }
}

/// Arguments for a cargo subcommand (`build`, `clippy`) over a stage's
/// kernel for one board.
pub fn cargo_args(subcommand: &str, stage: &Stage, board: &Board, release: bool) -> Vec<String> {
    let (package, bin, target) = kernel_of(stage);
    let mut a: Vec<String> = [subcommand, "-p", package, "--bin", bin, "--target", target, "--features", board.name]
        .map(String::from)
        .to_vec();
    a.push("--target-dir".into());
    a.push(target_dir(board).display().to_string());
    if release {
        a.push("--release".into());
    }
    a
}

/// Arguments for a cargo subcommand over a stage's user programs.
pub fn program_args(subcommand: &str, programs: &str) -> Vec<String> {
    let dir = root().join("target").join("user").display().to_string();
    [subcommand, "-p", programs, "--bins", "--target", TARGET, "--release", "--target-dir", &dir]
        .map(String::from)
        .to_vec()
}

/// Builds the stage's kernel for the board and packs its Image.
pub fn build(stage: &Stage, board: &Board, release: bool) -> Result<Built, String> {
    run_status(cargo().args(cargo_args("build", stage, board, release)))
        .map_err(|e| format!("building {} for {}: {e}", stage.name, board.name))?;
    let (_, bin, target) = kernel_of(stage);
    let profile = if release { "release" } else { "debug" };
    let linked = target_dir(board).join(target).join(profile).join(bin);
    std::fs::create_dir_all(images_dir()).map_err(|e| e.to_string())?;
    let elf = elf_copy_path(stage, board);
    std::fs::copy(&linked, &elf).map_err(|e| format!("copying {}: {e}", linked.display()))?;
    let image = images_dir().join(format!("{}-{}.img", stage.name, board.name));
    run_status(std::process::Command::new(prereq::llvm_objcopy()?).args(["-O", "binary"]).arg(&elf).arg(&image))?;
    Ok(Built { elf, image })
}

/// The menus of a stage, by name (file stem), sorted.
pub fn menus(stage: &Stage) -> Result<Vec<String>, String> {
    let Kind::Kernel { menus, .. } = stage.kind else { return Ok(Vec::new()) };
    let dir = root().join(menus);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".lst")).map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// Builds a stage's user programs once per run; returns their directory.
fn programs_dir(programs: &str) -> Result<PathBuf, String> {
    static BUILT: Mutex<Vec<(String, Result<PathBuf, String>)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, r)) = built.iter().find(|(p, _)| p == programs) {
        return r.clone();
    }
    let r = run_status(cargo().args(program_args("build", programs)))
        .map_err(|e| format!("building {programs}: {e}"))
        .map(|()| root().join("target/user").join(TARGET).join("release"));
    built.push((programs.to_owned(), r.clone()));
    r
}

/// A packed boot image and the kernel arguments its menu gives.
#[derive(Clone, Debug)]
pub struct Packed {
    pub modules: PathBuf,
    pub kernel_args: String,
}

impl Packed {
    /// Points a QEMU configuration at this boot image, with semihosting so
    /// the kernel's verdict becomes QEMU's exit status.
    pub fn apply(&self, config: &mut grading_runner::qemu::QemuConfig) {
        config.initrd = Some(self.modules.clone());
        config.append = Some(format!("semihosting {}", self.kernel_args).trim_end().to_owned());
        config.semihosting = true;
    }
}

/// Packs the boot image a menu describes.
pub fn pack_menu(stage: &Stage, board: &Board, menu_name: &str) -> Result<Packed, String> {
    let Kind::Kernel { programs, menus, .. } = stage.kind else {
        return Err(format!("stage {} boots no menu", stage.name));
    };
    let path = root().join(menus).join(format!("{menu_name}.lst"));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let known = self::menus(stage).map(|m| m.join(", ")).unwrap_or_default();
        format!("menu '{menu_name}' ({}): {e}; menus: {known}", path.display())
    })?;
    let menu = menu::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if menu.kernel != CPU_DRIVER.1 {
        return Err(format!(
            "{}: kernel '{}' unknown; the kit's kernel is '{}'",
            path.display(),
            menu.kernel,
            CPU_DRIVER.1
        ));
    }
    let dir = programs_dir(programs)?;
    // Stripped once per program: a menu may name one many times.
    let mut stripped_of: HashMap<&str, Vec<u8>> = HashMap::new();
    let mut blobs = Vec::new();
    for m in &menu.modules {
        let (name, program) = (&m.name, &m.program);
        let bytes = match stripped_of.entry(program.as_str()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let file = dir.join(program);
                if !file.is_file() {
                    return Err(format!(
                        "{}: module '{name}': no such program '{program}' in {programs}",
                        path.display()
                    ));
                }
                // Modules carry no debug information: it would only cost
                // boot-image space and copying. gdb reads the unstripped
                // file in target/user.
                let stripped = images_dir().join(format!("{program}.stripped"));
                run_status(
                    std::process::Command::new(prereq::llvm_objcopy()?).arg("--strip-debug").arg(&file).arg(&stripped),
                )?;
                e.insert(std::fs::read(&stripped).map_err(|e| format!("{}: {e}", stripped.display()))?)
            }
        };
        // Corrupted after stripping, so the defect is in what the guest
        // loads; the shared stripped bytes stay intact.
        let bytes = match m.corrupt {
            Some(kind) => kind.apply(bytes).map_err(|e| {
                format!("{}: module '{name}': corrupting '{program}' as {}: {e}", path.display(), kind.name())
            })?,
            None => bytes.clone(),
        };
        blobs.push(bytes);
    }
    let modules: Vec<(&str, &str, &[u8])> =
        menu.modules.iter().zip(&blobs).map(|(m, b)| (m.name.as_str(), m.cmdline.as_str(), b.as_slice())).collect();
    let out = images_dir().join(format!("{}-{}-{menu_name}.modules", stage.name, board.name));
    std::fs::write(&out, cpu_driver::bootimage::pack(&modules)).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(Packed { modules: out, kernel_args: menu.kernel_args })
}

/// Checks a built image against what the board's loader expects: the arm64
/// Image header (booting.rst), and an ELF whose every loadable byte lies in
/// the window the header announces, at the board's load address.
pub fn check(board: &Board, built: &Built) -> Result<(), String> {
    let img = std::fs::read(&built.image).map_err(|e| format!("{}: {e}", built.image.display()))?;
    let elf_bytes = std::fs::read(&built.elf).map_err(|e| format!("{}: {e}", built.elf.display()))?;
    check_bytes(board, &img, &elf_bytes)
}

fn check_bytes(board: &Board, img: &[u8], elf_bytes: &[u8]) -> Result<(), String> {
    let u32_at = |o: usize| img.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |o: usize| img.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    let header = |what: &str| format!("image shorter than the 64-byte header ({what})");
    let magic = img.get(0x38..0x3c).ok_or_else(|| header("magic"))?;
    if magic != b"ARM\x64" {
        return Err(format!("no arm64 Image magic at 0x38: {magic:02x?}"));
    }
    let code0 = u32_at(0).ok_or_else(|| header("code0"))?;
    if code0 >> 26 != 0b000101 {
        return Err(format!("code0 {code0:#010x} is not a branch instruction"));
    }
    let text_offset = u64_at(8).ok_or_else(|| header("text_offset"))?;
    if text_offset != TEXT_OFFSET {
        return Err(format!("text_offset {text_offset:#x}, expected {TEXT_OFFSET:#x}"));
    }
    let image_size = u64_at(16).ok_or_else(|| header("image_size"))?;
    if image_size < img.len() as u64 {
        return Err(format!("image_size {image_size:#x} is smaller than the file ({:#x})", img.len()));
    }
    let elf = Elf::parse(elf_bytes).map_err(|e| format!("kernel ELF: {e}"))?;
    // The entry's physical (load) address; the kernel may run elsewhere
    // once its MMU is on.
    let entry_pa = elf
        .program_headers
        .iter()
        .find(|p| p.p_type == PT_LOAD && (p.p_vaddr..p.p_vaddr + p.p_memsz).contains(&elf.entry))
        .map(|p| elf.entry - p.p_vaddr + p.p_paddr);
    if entry_pa != Some(board.image_base) {
        return Err(format!(
            "entry loads at {entry_pa:x?}, but {} loads the image at {:#x}",
            board.name, board.image_base
        ));
    }
    let window = board.image_base..board.image_base + image_size;
    for ph in elf.program_headers.iter().filter(|p| p.p_type == PT_LOAD) {
        let end = ph.p_paddr + ph.p_memsz;
        if !(window.contains(&ph.p_paddr) && end <= window.end) {
            return Err(format!("segment {:#x}..{end:#x} outside the image window {window:x?}", ph.p_paddr));
        }
        // The Image is the file laid out from image_base: the segment's file
        // bytes must be where the loader will put them.
        let off = (ph.p_paddr - board.image_base) as usize;
        let file = &elf_bytes[ph.p_offset as usize..(ph.p_offset + ph.p_filesz) as usize];
        if ph.p_filesz > 0 && img.get(off..off + file.len()) != Some(file) {
            return Err(format!("segment at {:#x} differs between ELF and Image", ph.p_paddr));
        }
    }
    if !board.ram.contains(board.image_base) || window.end > board.ram.end() {
        return Err(format!("image window {window:x?} does not fit in {}'s RAM", board.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_headers() {
        let b = &platform::QEMU_VIRT;
        assert!(check_bytes(b, &[0; 16], &[]).unwrap_err().contains("shorter"));
        let mut img = vec![0u8; 64];
        assert!(check_bytes(b, &img, &[]).unwrap_err().contains("magic"));
        img[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert!(check_bytes(b, &img, &[]).unwrap_err().contains("branch"));
        img[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes());
        assert!(check_bytes(b, &img, &[]).unwrap_err().contains("text_offset"));
        img[8..16].copy_from_slice(&TEXT_OFFSET.to_le_bytes());
        assert!(check_bytes(b, &img, &[]).unwrap_err().contains("image_size"));
        img[16..24].copy_from_slice(&0x1000u64.to_le_bytes());
        assert!(check_bytes(b, &img, b"not an elf").unwrap_err().contains("ELF"));
    }
}
