//! Deliberately malformed boot modules, for `corrupt` lines in `menu.lst`:
//! a real program's ELF with one property made wrong, so a grading suite can
//! check that spawn refuses each with a clear reason.
//!
//! Each corruption checks that its input is a sound ELF64 little-endian
//! AArch64 executable, reads the layout with goblin, and patches a copy in
//! place. Everything it does not mean to break stays as the linker wrote it,
//! so a loader has exactly one thing to object to. Pure: no files, no I/O.
//!
//! All but one break the ELF itself. `stack` makes a well-formed ELF that
//! asks for addresses spawn keeps for the stack: the ELF checker accepts
//! it, and spawn must refuse it for its own reason.

use goblin::elf::Elf;
use goblin::elf::header::{EM_AARCH64, EM_X86_64, ET_EXEC};
use goblin::elf::program_header::PT_LOAD;
use goblin::elf64::header::SIZEOF_EHDR;
use goblin::elf64::program_header::SIZEOF_PHDR;

const PAGE: u64 = 4096;

// Byte offsets of the fields patched (ELF-64 Object File Format).
const E_MACHINE: usize = 18;
const E_ENTRY: usize = 24;
const P_VADDR: usize = 16;
const P_PADDR: usize = 24;
const P_MEMSZ: usize = 40;

/// A way to break a program's ELF; named as on a `corrupt` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Truncated,
    Machine,
    Overlap,
    HugeMemsz,
    Entry,
    Empty,
    Magic,
    Stack,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Truncated,
        Kind::Machine,
        Kind::Overlap,
        Kind::HugeMemsz,
        Kind::Entry,
        Kind::Empty,
        Kind::Magic,
        Kind::Stack,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Truncated => "truncated",
            Kind::Machine => "machine",
            Kind::Overlap => "overlap",
            Kind::HugeMemsz => "huge-memsz",
            Kind::Entry => "entry",
            Kind::Empty => "empty",
            Kind::Magic => "magic",
            Kind::Stack => "stack",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// All names, comma-separated, for error messages.
    pub fn names() -> String {
        Kind::ALL.map(Kind::name).join(", ")
    }

    pub fn apply(self, elf: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Kind::Truncated => truncated(elf),
            Kind::Machine => machine(elf),
            Kind::Overlap => overlap(elf),
            Kind::HugeMemsz => huge_memsz(elf),
            Kind::Entry => entry(elf),
            Kind::Empty => empty(elf),
            Kind::Magic => magic(elf),
            Kind::Stack => stack(elf),
        }
    }
}

/// A PT_LOAD program header, and where it lies in the file.
#[derive(Clone, Copy, Debug)]
struct Load {
    /// File offset of the program header itself.
    at: usize,
    offset: u64,
    filesz: u64,
    vaddr: u64,
    memsz: u64,
}

/// What the corruptions need to know about a checked input.
struct Layout {
    /// End of the program header table in the file.
    phdrs_end: u64,
    /// PT_LOAD headers in table order.
    loads: Vec<Load>,
}

/// Checks that `elf` is what the corruptions expect, so each breaks exactly
/// one thing rather than compounding a defect already there.
fn layout(elf: &[u8]) -> Result<Layout, String> {
    let parsed = Elf::parse(elf).map_err(|e| format!("not an ELF file: {e}"))?;
    let h = &parsed.header;
    if !parsed.is_64 || !parsed.little_endian {
        return Err("not a 64-bit little-endian ELF".into());
    }
    if h.e_machine != EM_AARCH64 {
        return Err(format!("machine {}, not AArch64 ({EM_AARCH64})", h.e_machine));
    }
    if h.e_type != ET_EXEC {
        return Err(format!("type {}, not an executable ({ET_EXEC})", h.e_type));
    }
    if usize::from(h.e_phentsize) != SIZEOF_PHDR {
        return Err(format!("program header size {}, not {SIZEOF_PHDR}", h.e_phentsize));
    }
    let phdrs_end = h
        .e_phoff
        .checked_add(u64::from(h.e_phnum) * SIZEOF_PHDR as u64)
        .filter(|&end| end <= elf.len() as u64)
        .ok_or("program headers lie outside the file")?;
    let mut loads = Vec::new();
    for (i, p) in parsed.program_headers.iter().enumerate() {
        if p.p_type != PT_LOAD {
            continue;
        }
        if p.p_offset.checked_add(p.p_filesz).is_none_or(|end| end > elf.len() as u64) {
            return Err(format!("program header {i}: segment bytes already lie outside the file"));
        }
        let at = h.e_phoff as usize + i * SIZEOF_PHDR;
        loads.push(Load { at, offset: p.p_offset, filesz: p.p_filesz, vaddr: p.p_vaddr, memsz: p.p_memsz });
    }
    if loads.is_empty() {
        return Err("no PT_LOAD segment".into());
    }
    Ok(Layout { phdrs_end, loads })
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Cut in the middle of the first segment's file bytes, past the headers:
/// the loader can read every header but must notice the segment is short.
pub fn truncated(elf: &[u8]) -> Result<Vec<u8>, String> {
    let l = layout(elf)?;
    let first = l.loads[0];
    let end = first.offset + first.filesz;
    let start = first.offset.max(l.phdrs_end).max(SIZEOF_EHDR as u64);
    // Two bytes at least, so the cut lies strictly inside the segment.
    if end < start + 2 {
        return Err(format!(
            "the first PT_LOAD segment ({:#x}..{end:#x} in the file) has under 2 bytes past the headers to cut between",
            first.offset
        ));
    }
    let cut = start + (end - start) / 2;
    Ok(elf[..cut as usize].to_vec())
}

/// e_machine becomes x86-64.
pub fn machine(elf: &[u8]) -> Result<Vec<u8>, String> {
    layout(elf)?;
    let mut b = elf.to_vec();
    b[E_MACHINE..E_MACHINE + 2].copy_from_slice(&EM_X86_64.to_le_bytes());
    Ok(b)
}

/// The second segment moves into the first one's first page. Its address
/// keeps the page offset its file offset dictates, so the shared page is the
/// only defect a page-granular loader sees. (Congruence modulo a larger
/// p_align, 64 KiB as linked, is not kept: the kernel checks pages only.)
pub fn overlap(elf: &[u8]) -> Result<Vec<u8>, String> {
    let l = layout(elf)?;
    let [first, second, ..] = l.loads[..] else {
        return Err(format!("needs two PT_LOAD segments, has {}", l.loads.len()));
    };
    if first.memsz == 0 {
        return Err("the first PT_LOAD segment occupies no memory: nothing to overlap".into());
    }
    let vaddr = (first.vaddr & !(PAGE - 1)) + second.offset % PAGE;
    let mut b = elf.to_vec();
    put_u64(&mut b, second.at + P_VADDR, vaddr);
    put_u64(&mut b, second.at + P_PADDR, vaddr);
    Ok(b)
}

/// The last segment moves to the bottom of the stack's range
/// (`kpi::vspace`), keeping its page offset: a sound ELF whose memory
/// collides with what spawn maps for every program.
pub fn stack(elf: &[u8]) -> Result<Vec<u8>, String> {
    use kpi::vspace::{STACK_SIZE, STACK_TOP};
    let l = layout(elf)?;
    let last = *l.loads.last().expect("layout() found one");
    let vaddr = STACK_TOP - STACK_SIZE + last.offset % PAGE;
    let others_end = l.loads[..l.loads.len() - 1].iter().map(|s| s.vaddr + s.memsz).max().unwrap_or(0);
    if others_end > STACK_TOP - STACK_SIZE {
        return Err("another segment already reaches the stack's range".into());
    }
    let mut b = elf.to_vec();
    put_u64(&mut b, last.at + P_VADDR, vaddr);
    put_u64(&mut b, last.at + P_PADDR, vaddr);
    Ok(b)
}

/// The first segment's memory size becomes 1 TiB, past any image limit.
pub fn huge_memsz(elf: &[u8]) -> Result<Vec<u8>, String> {
    let l = layout(elf)?;
    let mut b = elf.to_vec();
    put_u64(&mut b, l.loads[0].at + P_MEMSZ, 1 << 40);
    Ok(b)
}

/// e_entry becomes the page after the page-rounded end of the highest
/// segment: mapped by nothing.
pub fn entry(elf: &[u8]) -> Result<Vec<u8>, String> {
    let l = layout(elf)?;
    let mut top = 0u64;
    for s in &l.loads {
        top = top.max(s.vaddr.checked_add(s.memsz).ok_or("a PT_LOAD segment wraps the address space")?);
    }
    let outside = top
        .checked_next_multiple_of(PAGE)
        .and_then(|t| t.checked_add(PAGE))
        .ok_or("segments reach the top of the address space: no address lies past them")?;
    let mut b = elf.to_vec();
    put_u64(&mut b, E_ENTRY, outside);
    Ok(b)
}

/// A zero-length module. The input is still checked, so a menu naming
/// something that is not a program fails here like the other kinds.
pub fn empty(elf: &[u8]) -> Result<Vec<u8>, String> {
    layout(elf)?;
    Ok(Vec::new())
}

/// The first magic byte 0x7f becomes 0x00.
pub fn magic(elf: &[u8]) -> Result<Vec<u8>, String> {
    layout(elf)?;
    let mut b = elf.to_vec();
    b[0] = 0;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpu_driver::elf::BadElf;

    /// (p_flags, p_offset, p_vaddr, p_filesz, p_memsz)
    type Seg = (u32, u64, u64, u64, u64);
    const TEXT: Seg = (5, 0x1000, 0x40_0000, 0x800, 0x800);
    const DATA: Seg = (6, 0x2000, 0x40_2000, 0x100, 0x200);
    const ENTRY: u64 = 0x40_0010;
    const PHDR1: usize = 64 + SIZEOF_PHDR;

    /// A small valid executable: ELF header, program headers for `segs`
    /// right after it, each segment's file bytes a recognisable pattern.
    fn build(segs: &[Seg]) -> Vec<u8> {
        let len = segs.iter().map(|s| s.1 + s.3).max().unwrap_or(0x1000) as usize;
        let mut b = vec![0u8; len];
        // A segment may start at offset 0 and hold the headers: the pattern
        // begins after them.
        let headers = 64 + segs.len() * SIZEOF_PHDR;
        for &(_, offset, _, filesz, _) in segs {
            let from = (offset as usize).max(headers);
            for (i, byte) in b[from..(offset + filesz) as usize].iter_mut().enumerate() {
                *byte = 0x80 | ((from + i) as u8 & 0x7f);
            }
        }
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // ELFCLASS64
        b[5] = 1; // ELFDATA2LSB
        b[6] = 1; // EV_CURRENT
        b[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        b[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&ENTRY.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[52..54].copy_from_slice(&(SIZEOF_EHDR as u16).to_le_bytes());
        b[54..56].copy_from_slice(&(SIZEOF_PHDR as u16).to_le_bytes());
        b[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, &(flags, offset, vaddr, filesz, memsz)) in segs.iter().enumerate() {
            let p = 64 + i * SIZEOF_PHDR;
            b[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            b[p + 4..p + 8].copy_from_slice(&flags.to_le_bytes());
            for (field, v) in [(8, offset), (16, vaddr), (24, vaddr), (32, filesz), (40, memsz), (48, PAGE)] {
                put_u64(&mut b, p + field, v);
            }
        }
        b
    }

    fn sample() -> Vec<u8> {
        build(&[TEXT, DATA])
    }

    /// Same length, and equal outside `changed`.
    fn same_except(good: &[u8], bad: &[u8], changed: std::ops::Range<usize>) {
        assert_eq!(good.len(), bad.len());
        for (i, (g, b)) in good.iter().zip(bad).enumerate() {
            assert!(g == b || changed.contains(&i), "byte {i:#x} changed outside {changed:x?}");
        }
        assert_ne!(good[changed.clone()], bad[changed], "the intended field is unchanged");
    }

    #[test]
    fn sample_is_a_program_the_kernel_accepts() {
        let p = cpu_driver::elf::parse(&sample()).unwrap();
        assert_eq!(p.segments().len(), 2);
        assert_eq!(layout(&sample()).unwrap().loads.len(), 2);
    }

    #[test]
    fn truncated_cuts_inside_the_first_segment() {
        let good = sample();
        let bad = truncated(&good).unwrap();
        let n = bad.len() as u64;
        assert!((TEXT.1 + 1..TEXT.1 + TEXT.3).contains(&n), "cut at {n:#x}");
        assert!(n as usize >= PHDR1 + SIZEOF_PHDR, "program headers intact");
        assert_eq!(bad[..], good[..bad.len()]);
    }

    #[test]
    fn truncated_stays_past_headers_in_the_first_segment() {
        // The usual layout where the first segment starts at offset 0 and
        // holds the headers: the cut must still leave them whole.
        let good = build(&[(5, 0, 0x40_0000, 0x100, 0x100), (6, 0x1000, 0x40_1000, 0x10, 0x10)]);
        let n = truncated(&good).unwrap().len();
        assert!((PHDR1 + SIZEOF_PHDR..0x100).contains(&n), "cut at {n:#x}");
        let tiny = build(&[(5, 0, 0x40_0000, 0x79, 0x79)]);
        assert!(truncated(&tiny).unwrap_err().contains("under 2 bytes"));
    }

    #[test]
    fn machine_is_x86_64() {
        let good = sample();
        let bad = machine(&good).unwrap();
        assert_eq!(Elf::parse(&bad).unwrap().header.e_machine, 62);
        same_except(&good, &bad, E_MACHINE..E_MACHINE + 2);
    }

    #[test]
    fn overlap_shares_a_page_and_keeps_congruence() {
        let good = sample();
        let bad = overlap(&good).unwrap();
        let e = Elf::parse(&bad).unwrap();
        let (a, b) = (&e.program_headers[0], &e.program_headers[1]);
        let pages =
            |p: &goblin::elf::ProgramHeader| (p.p_vaddr & !(PAGE - 1))..(p.p_vaddr + p.p_memsz).next_multiple_of(PAGE);
        let (pa, pb) = (pages(a), pages(b));
        assert!(pa.start < pb.end && pb.start < pa.end, "{pa:x?} and {pb:x?} share no page");
        assert_eq!(b.p_vaddr % PAGE, b.p_offset % PAGE);
        assert_eq!(b.p_paddr, b.p_vaddr);
        same_except(&good, &bad, PHDR1 + P_VADDR..PHDR1 + P_PADDR + 8);
        assert!(overlap(&build(&[TEXT])).unwrap_err().contains("two PT_LOAD"));
    }

    #[test]
    fn huge_memsz_is_one_tebibyte() {
        let good = sample();
        let bad = huge_memsz(&good).unwrap();
        assert_eq!(Elf::parse(&bad).unwrap().program_headers[0].p_memsz, 1 << 40);
        same_except(&good, &bad, 64 + P_MEMSZ..64 + P_MEMSZ + 8);
    }

    #[test]
    fn entry_lies_outside_every_segment() {
        let good = sample();
        let bad = entry(&good).unwrap();
        let e = Elf::parse(&bad).unwrap();
        assert_eq!(e.entry % PAGE, 0);
        assert_eq!(e.entry, 0x40_4000, "one page past the page-rounded end of DATA");
        assert!(e.program_headers.iter().all(|p| !(p.p_vaddr..p.p_vaddr + p.p_memsz).contains(&e.entry)));
        same_except(&good, &bad, E_ENTRY..E_ENTRY + 8);
    }

    #[test]
    fn empty_and_magic() {
        let good = sample();
        assert!(empty(&good).unwrap().is_empty());
        let bad = magic(&good).unwrap();
        assert_eq!(bad[0], 0);
        same_except(&good, &bad, 0..1);
        assert!(Elf::parse(&bad).is_err());
    }

    #[test]
    fn stack_is_a_sound_elf_that_reaches_into_the_stack() {
        use kpi::vspace::{STACK_SIZE, STACK_TOP};
        let good = sample();
        let bad = stack(&good).unwrap();
        let prog = cpu_driver::elf::parse(&bad).expect("the ELF checker accepts it");
        let last = prog.segments().last().unwrap();
        let (start, end) = last.pages();
        assert!(start < STACK_TOP && STACK_TOP - STACK_SIZE < end, "{start:#x}..{end:#x} misses the stack");
        assert_eq!(good.len(), bad.len());
    }

    #[test]
    fn the_kernel_refuses_each_for_the_intended_reason() {
        let good = sample();
        // `stack` is a sound ELF: spawn, not the checker, refuses it.
        let want = |k: Kind| match k {
            Kind::Truncated => Some(BadElf::SegmentFile(0)),
            Kind::Machine => Some(BadElf::NotAarch64(62)),
            Kind::Overlap => Some(BadElf::Overlap(0, 1)),
            Kind::HugeMemsz => Some(BadElf::SegmentSize(0)),
            Kind::Entry => Some(BadElf::EntryOutsideCode(0x40_4000)),
            Kind::Empty => Some(BadElf::TooShort),
            Kind::Magic => Some(BadElf::Magic),
            Kind::Stack => None,
        };
        for k in Kind::ALL {
            let Some(want) = want(k) else { continue };
            assert_eq!(cpu_driver::elf::parse(&k.apply(&good).unwrap()), Err(want), "{}", k.name());
        }
    }

    #[test]
    fn refuses_what_is_not_an_aarch64_executable() {
        let x86 = machine(&sample()).unwrap();
        let mut dynamic = sample();
        dynamic[16] = 3; // ET_DYN
        for k in Kind::ALL {
            assert!(k.apply(b"#!/bin/sh\necho not an elf\n").unwrap_err().contains("not an ELF"), "{}", k.name());
            assert!(k.apply(&[]).is_err(), "{}", k.name());
            assert!(k.apply(&x86).unwrap_err().contains("not AArch64"), "{}", k.name());
            assert!(k.apply(&dynamic).unwrap_err().contains("not an executable"), "{}", k.name());
            assert!(k.apply(&build(&[])).unwrap_err().contains("no PT_LOAD"), "{}", k.name());
        }
    }

    #[test]
    fn names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(k));
        }
        assert_eq!(Kind::from_name("bogus"), None);
        assert_eq!(Kind::names(), "truncated, machine, overlap, huge-memsz, entry, empty, magic, stack");
    }
}
