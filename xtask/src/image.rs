//! Building a stage for a board: cargo for `aarch64-unknown-none` with the
//! board's feature, then `llvm-objcopy` to a raw arm64 Image, the format
//! every board's loader takes (QEMU `-kernel`, U-Boot `booti`).
//!
//! Each board builds in its own target directory so switching boards does
//! not rebuild the others.

use std::path::PathBuf;

use goblin::elf::Elf;
use goblin::elf::program_header::PT_LOAD;
use platform::{Board, TEXT_OFFSET};

use crate::stages::Stage;
use crate::{cargo, prereq, root, run_status};

pub const TARGET: &str = "aarch64-unknown-none";

/// A built stage image.
#[derive(Debug)]
pub struct Built {
    /// The linked kernel, with symbols, for gdb.
    pub elf: PathBuf,
    /// The raw arm64 Image to boot.
    pub image: PathBuf,
}

fn target_dir(board: &Board) -> PathBuf {
    root().join("target").join("boards").join(board.name)
}

fn images_dir() -> PathBuf {
    root().join("target").join("images")
}

/// Where the ELF of a stage built for a board is kept.
pub fn elf_copy_path(stage: &Stage, board: &Board) -> PathBuf {
    images_dir().join(format!("{}-{}.elf", stage.name, board.name))
}

/// Arguments for a cargo subcommand (`build`, `clippy`) over a stage's
/// kernel for one board.
pub fn cargo_args(subcommand: &str, stage: &Stage, board: &Board, release: bool) -> Vec<String> {
    let mut a: Vec<String> =
        [subcommand, "-p", stage.package, "--bin", stage.bin, "--target", TARGET, "--features", board.name]
            .iter()
            .map(|s| s.to_string())
            .collect();
    a.push("--target-dir".into());
    a.push(target_dir(board).display().to_string());
    if release {
        a.push("--release".into());
    }
    a
}

/// Builds the stage for the board and packs its Image.
pub fn build(stage: &Stage, board: &Board, release: bool) -> Result<Built, String> {
    run_status(cargo().args(cargo_args("build", stage, board, release)))
        .map_err(|e| format!("building {} for {}: {e}", stage.name, board.name))?;
    let profile = if release { "release" } else { "debug" };
    let linked = target_dir(board).join(TARGET).join(profile).join(stage.bin);
    std::fs::create_dir_all(images_dir()).map_err(|e| e.to_string())?;
    let elf = elf_copy_path(stage, board);
    std::fs::copy(&linked, &elf).map_err(|e| format!("copying {}: {e}", linked.display()))?;
    let image = images_dir().join(format!("{}-{}.img", stage.name, board.name));
    run_status(std::process::Command::new(prereq::llvm_objcopy()?).args(["-O", "binary"]).arg(&elf).arg(&image))?;
    Ok(Built { elf, image })
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
    if elf.entry != board.image_base {
        return Err(format!("entry {:#x}, but {} loads the image at {:#x}", elf.entry, board.name, board.image_base));
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
