//! Checking and describing a program's ELF image before it is mapped: the
//! kernel checks init at boot, and spawn (M2) every later program, with
//! this same code, so both refuse the same images for the same reasons.
//! `goblin` supplies the ELF types; `plain` copies them out of the module
//! bytes without an allocator and without trusting alignment.
//!
//! Everything is validated: identification, machine, type, program-header
//! bounds, each loadable segment (file bytes inside the file, size limits,
//! user address range, page congruence, no write+execute) and that no two
//! segments share a page, and that the entry point lies in an executable
//! segment. A malformed image yields a reason, never a panic.

#![no_std]

use goblin::elf::header::{EI_CLASS, EI_DATA, ELFCLASS64, ELFDATA2LSB, ELFMAG, EM_AARCH64, ET_EXEC, SELFMAG};
use goblin::elf::program_header::{PF_R, PF_W, PF_X, PT_LOAD};
use goblin::elf64::header::{Header, SIZEOF_EHDR};
use goblin::elf64::program_header::{ProgramHeader, SIZEOF_PHDR};
use kpi::vspace::{IMAGE_MAX, USER_END, USER_MIN};

const PAGE: u64 = 4096;
/// Most loadable segments accepted.
pub const SEGMENTS_MAX: usize = 8;

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadElf {
    TooShort,
    Magic,
    NotElf64LittleEndian,
    NotAarch64(u16),
    NotExecutable(u16),
    ProgramHeaders,
    TooManySegments,
    /// Segment `n`: file bytes outside the file.
    SegmentFile(usize),
    /// Segment `n`: memory size smaller than file size, or too large.
    SegmentSize(usize),
    /// Segment `n`: outside the user address range.
    SegmentAddress(usize),
    /// Segment `n`: offset and address differ modulo the page size.
    SegmentAlignment(usize),
    /// Segment `n` is writable and executable.
    WriteAndExecute(usize),
    /// Segments share a page.
    Overlap(usize, usize),
    NoSegments,
    EntryOutsideCode(u64),
}

impl core::fmt::Display for BadElf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BadElf::TooShort => f.write_str("shorter than an ELF header"),
            BadElf::Magic => f.write_str("no ELF magic"),
            BadElf::NotElf64LittleEndian => f.write_str("not a 64-bit little-endian ELF"),
            BadElf::NotAarch64(m) => write!(f, "machine {m}, not AArch64 ({EM_AARCH64})"),
            BadElf::NotExecutable(t) => write!(f, "type {t}, not an executable"),
            BadElf::ProgramHeaders => f.write_str("program headers lie outside the file"),
            BadElf::TooManySegments => write!(f, "more than {SEGMENTS_MAX} loadable segments"),
            BadElf::SegmentFile(i) => write!(f, "segment {i}: file bytes lie outside the file"),
            BadElf::SegmentSize(i) => write!(f, "segment {i}: memory size too small or too large"),
            BadElf::SegmentAddress(i) => write!(f, "segment {i}: outside the user address range"),
            BadElf::SegmentAlignment(i) => write!(f, "segment {i}: offset and address not page-congruent"),
            BadElf::WriteAndExecute(i) => write!(f, "segment {i}: writable and executable"),
            BadElf::Overlap(a, b) => write!(f, "segments {a} and {b} share a page"),
            BadElf::NoSegments => f.write_str("no loadable segments"),
            BadElf::EntryOutsideCode(e) => write!(f, "entry point {e:#x} is not in an executable segment"),
        }
    }
}

/// A loadable segment, checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    pub write: bool,
    pub exec: bool,
}

impl Segment {
    /// The page-aligned virtual range the segment occupies.
    pub fn pages(&self) -> (u64, u64) {
        let start = self.vaddr & !(PAGE - 1);
        (start, (self.vaddr + self.memsz).next_multiple_of(PAGE))
    }
}

/// A checked program image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Program {
    pub entry: u64,
    segments: [Segment; SEGMENTS_MAX],
    count: usize,
}

impl Program {
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }
}

/// Checks `image` and lists what to map.
pub fn parse(image: &[u8]) -> Result<Program, BadElf> {
    if image.len() < SIZEOF_EHDR {
        return Err(BadElf::TooShort);
    }
    if image[..SELFMAG] != ELFMAG[..] {
        return Err(BadElf::Magic);
    }
    let mut h = Header::default();
    plain::copy_from_bytes(&mut h, &image[..SIZEOF_EHDR]).map_err(|_| BadElf::TooShort)?;
    if h.e_ident[EI_CLASS] != ELFCLASS64 || h.e_ident[EI_DATA] != ELFDATA2LSB {
        return Err(BadElf::NotElf64LittleEndian);
    }
    if h.e_machine != EM_AARCH64 {
        return Err(BadElf::NotAarch64(h.e_machine));
    }
    if h.e_type != ET_EXEC {
        return Err(BadElf::NotExecutable(h.e_type));
    }
    if h.e_phentsize as usize != SIZEOF_PHDR {
        return Err(BadElf::ProgramHeaders);
    }
    let phoff = h.e_phoff as usize;
    let phlen = (h.e_phnum as usize).checked_mul(SIZEOF_PHDR).ok_or(BadElf::ProgramHeaders)?;
    let table =
        image.get(phoff..phoff.checked_add(phlen).ok_or(BadElf::ProgramHeaders)?).ok_or(BadElf::ProgramHeaders)?;

    let mut prog = Program { entry: h.e_entry, segments: [Segment::default(); SEGMENTS_MAX], count: 0 };
    for raw in table.chunks_exact(SIZEOF_PHDR) {
        let mut ph = ProgramHeader::default();
        plain::copy_from_bytes(&mut ph, raw).map_err(|_| BadElf::ProgramHeaders)?;
        if ph.p_type != PT_LOAD || ph.p_memsz == 0 {
            continue;
        }
        let i = prog.count;
        if i == SEGMENTS_MAX {
            return Err(BadElf::TooManySegments);
        }
        let file_end = ph.p_offset.checked_add(ph.p_filesz).ok_or(BadElf::SegmentFile(i))?;
        if file_end > image.len() as u64 {
            return Err(BadElf::SegmentFile(i));
        }
        if ph.p_filesz > ph.p_memsz || ph.p_memsz > IMAGE_MAX {
            return Err(BadElf::SegmentSize(i));
        }
        let end = ph.p_vaddr.checked_add(ph.p_memsz).ok_or(BadElf::SegmentAddress(i))?;
        if ph.p_vaddr < USER_MIN || end > USER_END {
            return Err(BadElf::SegmentAddress(i));
        }
        if ph.p_vaddr % PAGE != ph.p_offset % PAGE {
            return Err(BadElf::SegmentAlignment(i));
        }
        let (write, exec) = (ph.p_flags & PF_W != 0, ph.p_flags & PF_X != 0);
        if write && exec {
            return Err(BadElf::WriteAndExecute(i));
        }
        let _readable = ph.p_flags & PF_R != 0; // every mapped page is readable on AArch64
        let seg =
            Segment { vaddr: ph.p_vaddr, memsz: ph.p_memsz, offset: ph.p_offset, filesz: ph.p_filesz, write, exec };
        let (s, e) = seg.pages();
        for (j, other) in prog.segments().iter().enumerate() {
            let (os, oe) = other.pages();
            if s < oe && os < e {
                return Err(BadElf::Overlap(j, i));
            }
        }
        prog.segments[i] = seg;
        prog.count += 1;
    }
    if prog.count == 0 {
        return Err(BadElf::NoSegments);
    }
    let total: u64 = prog.segments().iter().map(|s| s.pages().1 - s.pages().0).sum();
    if total > IMAGE_MAX {
        return Err(BadElf::SegmentSize(0));
    }
    if !prog.segments().iter().any(|s| s.exec && (s.vaddr..s.vaddr + s.memsz).contains(&prog.entry)) {
        return Err(BadElf::EntryOutsideCode(prog.entry));
    }
    Ok(prog)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// A loadable segment: (vaddr, memsz, offset, filesz, flags).
    type Seg = (u64, u64, u64, u64, u32);

    /// An executable image with the given segments and entry point.
    fn image(segments: &[Seg], entry: u64) -> Vec<u8> {
        let mut b = vec![0u8; 0x3000];
        b[..4].copy_from_slice(&ELFMAG[..]);
        b[EI_CLASS] = ELFCLASS64;
        b[EI_DATA] = ELFDATA2LSB;
        b[6] = 1;
        b[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        b[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[52..54].copy_from_slice(&(SIZEOF_EHDR as u16).to_le_bytes());
        b[54..56].copy_from_slice(&(SIZEOF_PHDR as u16).to_le_bytes());
        b[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for (i, &(vaddr, memsz, offset, filesz, flags)) in segments.iter().enumerate() {
            let p = 64 + i * SIZEOF_PHDR;
            b[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            b[p + 4..p + 8].copy_from_slice(&flags.to_le_bytes());
            b[p + 8..p + 16].copy_from_slice(&offset.to_le_bytes());
            b[p + 16..p + 24].copy_from_slice(&vaddr.to_le_bytes());
            b[p + 24..p + 32].copy_from_slice(&vaddr.to_le_bytes());
            b[p + 32..p + 40].copy_from_slice(&filesz.to_le_bytes());
            b[p + 40..p + 48].copy_from_slice(&memsz.to_le_bytes());
        }
        b
    }

    const TEXT: Seg = (0x40_0000, 0x800, 0x1000, 0x800, PF_R | PF_X);
    const DATA: Seg = (0x40_1000, 0x3000, 0x2000, 0x100, PF_R | PF_W);

    #[test]
    fn accepts_a_well_formed_program() {
        let p = parse(&image(&[TEXT, DATA], 0x40_0010)).unwrap();
        assert_eq!(p.entry, 0x40_0010);
        assert_eq!(p.segments().len(), 2);
        assert!(p.segments()[0].exec && !p.segments()[0].write);
        assert_eq!(p.segments()[1].pages(), (0x40_1000, 0x40_4000));
    }

    #[test]
    fn refuses_each_malformation() {
        let good = image(&[TEXT, DATA], 0x40_0010);
        assert_eq!(parse(&good[..40]), Err(BadElf::TooShort));
        let mut b = good.clone();
        b[1] = b'X';
        assert_eq!(parse(&b), Err(BadElf::Magic));
        let mut b = good.clone();
        b[EI_CLASS] = 1;
        assert_eq!(parse(&b), Err(BadElf::NotElf64LittleEndian));
        let mut b = good.clone();
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        assert_eq!(parse(&b), Err(BadElf::NotAarch64(62)));
        let mut b = good.clone();
        b[16..18].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(parse(&b), Err(BadElf::NotExecutable(3)));
        let mut b = good.clone();
        b[32..40].copy_from_slice(&0xffff_ffff_ffff_fff0u64.to_le_bytes());
        assert_eq!(parse(&b), Err(BadElf::ProgramHeaders));
        let cases: [(&[Seg], u64, BadElf); 9] = [
            (&[(0x40_0000, 0x800, 0x1000, 0x9000, PF_X)], 0x40_0000, BadElf::SegmentFile(0)),
            (&[(0x40_0000, 0x10, 0x1000, 0x800, PF_X)], 0x40_0000, BadElf::SegmentSize(0)),
            (&[(0x40_0000, IMAGE_MAX + 1, 0x1000, 0, PF_X)], 0x40_0000, BadElf::SegmentSize(0)),
            (&[(0, 0x800, 0x1000, 0x800, PF_X)], 0, BadElf::SegmentAddress(0)),
            (&[(u64::MAX - 0xfff, 0x2000, 0x1000, 0, PF_X)], 0x40_0000, BadElf::SegmentAddress(0)),
            (&[(0x40_0100, 0x800, 0x1000, 0x800, PF_X)], 0x40_0100, BadElf::SegmentAlignment(0)),
            (&[(0x40_0000, 0x800, 0x1000, 0x800, PF_X | PF_W)], 0x40_0000, BadElf::WriteAndExecute(0)),
            (&[TEXT, (0x40_0000, 0x100, 0x2000, 0, PF_R | PF_W)], 0x40_0000, BadElf::Overlap(0, 1)),
            (&[TEXT, DATA], 0x40_1000, BadElf::EntryOutsideCode(0x40_1000)),
        ];
        for (segs, entry, want) in cases {
            assert_eq!(parse(&image(segs, entry)), Err(want));
        }
        assert_eq!(parse(&image(&[], 0x40_0000)), Err(BadElf::NoSegments));
    }

    #[test]
    fn random_corruption_never_panics() {
        let good = image(&[TEXT, DATA], 0x40_0010);
        let mut x: u64 = 7;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut b = good.clone();
            for k in 0..4 {
                let at = ((x >> (k * 16)) as usize) % 200;
                b[at] = (x >> (k * 8)) as u8;
            }
            if let Ok(p) = parse(&b) {
                assert!(p.segments().iter().all(|s| s.vaddr >= USER_MIN && !(s.write && s.exec)));
            }
        }
    }
}
