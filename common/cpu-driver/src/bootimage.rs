//! The boot image: the modules `menu.lst` lists (book ch. 4.8), packed by
//! `cargo xtask image` into one blob that QEMU or U-Boot loads as the
//! initrd; the kernel finds it through the device tree's `/chosen`
//! `linux,initrd-start`/`-end`.
//!
//! Layout, all little-endian:
//! - header: magic `AOSMODS\0`, version (u32) = 1, module count (u32);
//! - one 32-byte entry per module: data offset and size (u64 each), name
//!   offset and length, arguments offset and length (u32 each), all relative
//!   to the blob;
//! - the strings;
//! - module data, each starting on a 4 KiB boundary, so a module can later
//!   be handed out as a Frame capability.
//!
//! The parser trusts nothing: every offset is checked against the blob.

pub const MAGIC: [u8; 8] = *b"AOSMODS\0";
pub const VERSION: u32 = 1;
pub const HEADER_SIZE: usize = 16;
pub const ENTRY_SIZE: usize = 32;
pub const DATA_ALIGN: usize = 4096;
/// Most modules an image may hold.
pub const MODULES_MAX: usize = kpi::bootinfo::MODULES_MAX;

/// One module in a parsed image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module<'a> {
    pub name: &'a str,
    /// The whole command line from `menu.lst`, program path first.
    pub args: &'a str,
    /// Offset of the data in the blob (4 KiB-aligned).
    pub offset: usize,
    pub data: &'a [u8],
}

/// What is wrong with a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadImage {
    TooShort,
    Magic,
    Version(u32),
    TooManyModules(u32),
    /// Module `n` has an offset or length outside the blob, or unaligned.
    Bounds(usize),
    /// Module `n` has a name or arguments that are not UTF-8.
    Text(usize),
    /// Module `n`'s data overlaps the header, a string or another module.
    Overlap(usize),
}

impl core::fmt::Display for BadImage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BadImage::TooShort => f.write_str("shorter than its header"),
            BadImage::Magic => f.write_str("no AOSMODS magic"),
            BadImage::Version(v) => write!(f, "version {v}, expected {VERSION}"),
            BadImage::TooManyModules(n) => write!(f, "{n} modules, at most {MODULES_MAX}"),
            BadImage::Bounds(i) => write!(f, "module {i} lies outside the image or is unaligned"),
            BadImage::Text(i) => write!(f, "module {i} has a name or arguments that are not UTF-8"),
            BadImage::Overlap(i) => write!(f, "module {i}'s data overlaps the header, a string or another module"),
        }
    }
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o.checked_add(8)?)?.try_into().ok()?))
}

/// A validated image.
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    blob: &'a [u8],
    count: usize,
}

impl<'a> Image<'a> {
    /// Checks the whole blob; afterwards every module can be read.
    pub fn parse(blob: &'a [u8]) -> Result<Image<'a>, BadImage> {
        if blob.len() < HEADER_SIZE {
            return Err(BadImage::TooShort);
        }
        if blob[..8] != MAGIC {
            return Err(BadImage::Magic);
        }
        let version = u32_at(blob, 8).ok_or(BadImage::TooShort)?;
        if version != VERSION {
            return Err(BadImage::Version(version));
        }
        let count = u32_at(blob, 12).ok_or(BadImage::TooShort)?;
        if count as usize > MODULES_MAX {
            return Err(BadImage::TooManyModules(count));
        }
        let image = Image { blob, count: count as usize };
        for i in 0..image.count {
            image.read(i)?;
        }
        // Module data must own its bytes: it will be handed out as memory.
        let table_end = HEADER_SIZE + image.count * ENTRY_SIZE;
        let addr = |s: &str| s.as_ptr() as usize - blob.as_ptr() as usize;
        for (i, m) in image.modules().enumerate() {
            let data = m.offset..m.offset + m.data.len();
            if m.data.is_empty() {
                continue;
            }
            let overlaps = |start: usize, len: usize| len > 0 && start < data.end && data.start < start + len;
            if data.start < table_end
                || image.modules().enumerate().any(|(j, o)| {
                    overlaps(addr(o.name), o.name.len())
                        || overlaps(addr(o.args), o.args.len())
                        || (j != i && overlaps(o.offset, o.data.len()))
                })
            {
                return Err(BadImage::Overlap(i));
            }
        }
        Ok(image)
    }

    fn read(&self, i: usize) -> Result<Module<'a>, BadImage> {
        let e = HEADER_SIZE + i * ENTRY_SIZE;
        let b = self.blob;
        let bounds = BadImage::Bounds(i);
        let off = u64_at(b, e).ok_or(bounds)? as usize;
        let size = u64_at(b, e + 8).ok_or(bounds)? as usize;
        let text = |o: usize| -> Result<&'a str, BadImage> {
            let start = u32_at(b, o).ok_or(bounds)? as usize;
            let len = u32_at(b, o + 4).ok_or(bounds)? as usize;
            let bytes = b.get(start..start.checked_add(len).ok_or(bounds)?).ok_or(bounds)?;
            core::str::from_utf8(bytes).map_err(|_| BadImage::Text(i))
        };
        let name = text(e + 16)?;
        let args = text(e + 24)?;
        if !off.is_multiple_of(DATA_ALIGN) {
            return Err(bounds);
        }
        let data = b.get(off..off.checked_add(size).ok_or(bounds)?).ok_or(bounds)?;
        Ok(Module { name, args, offset: off, data })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn modules(&self) -> impl Iterator<Item = Module<'a>> + '_ {
        // Every entry was checked by `parse`.
        (0..self.count).filter_map(|i| self.read(i).ok())
    }

    pub fn find(&self, name: &str) -> Option<Module<'a>> {
        self.modules().find(|m| m.name == name)
    }
}

#[cfg(not(target_os = "none"))]
use std::vec::Vec;

/// Packs modules (name, command line, bytes) into a blob.
#[cfg(not(target_os = "none"))]
pub fn pack(modules: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut strings = Vec::new();
    let mut texts = Vec::new();
    for (name, args, _) in modules {
        let base = HEADER_SIZE + modules.len() * ENTRY_SIZE;
        texts.push((base + strings.len(), name.len(), base + strings.len() + name.len(), args.len()));
        strings.extend_from_slice(name.as_bytes());
        strings.extend_from_slice(args.as_bytes());
    }
    let mut blob = Vec::new();
    blob.extend_from_slice(&MAGIC);
    blob.extend_from_slice(&VERSION.to_le_bytes());
    blob.extend_from_slice(&(modules.len() as u32).to_le_bytes());
    let mut data_off = (HEADER_SIZE + modules.len() * ENTRY_SIZE + strings.len()).next_multiple_of(DATA_ALIGN);
    for ((_, _, data), (n_off, n_len, a_off, a_len)) in modules.iter().zip(&texts) {
        blob.extend_from_slice(&(data_off as u64).to_le_bytes());
        blob.extend_from_slice(&(data.len() as u64).to_le_bytes());
        for v in [*n_off, *n_len, *a_off, *a_len] {
            blob.extend_from_slice(&(v as u32).to_le_bytes());
        }
        data_off = (data_off + data.len()).next_multiple_of(DATA_ALIGN);
    }
    blob.extend_from_slice(&strings);
    for (_, _, data) in modules {
        blob.resize(blob.len().next_multiple_of(DATA_ALIGN), 0);
        blob.extend_from_slice(data);
    }
    blob
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_parses() {
        let init = vec![0x7f, b'E', b'L', b'F', 1, 2, 3];
        let blob = pack(&[("init", "init a b", &init), ("hello", "hello", &[9; 5000])]);
        let img = Image::parse(&blob).unwrap();
        assert_eq!(img.len(), 2);
        let m = img.find("init").unwrap();
        assert_eq!((m.args, m.data), ("init a b", &init[..]));
        assert_eq!(m.offset % DATA_ALIGN, 0);
        let h = img.find("hello").unwrap();
        assert_eq!(h.data.len(), 5000);
        assert_eq!(h.offset % DATA_ALIGN, 0);
        assert!(img.find("nope").is_none());
        assert!(Image::parse(&pack(&[])).unwrap().is_empty());
    }

    #[test]
    fn rejects_every_corruption() {
        let blob = pack(&[("init", "init", &[1, 2, 3])]);
        assert_eq!(Image::parse(&blob[..10]).err(), Some(BadImage::TooShort));
        let mut b = blob.clone();
        b[0] = b'X';
        assert_eq!(Image::parse(&b).err(), Some(BadImage::Magic));
        let mut b = blob.clone();
        b[8] = 2;
        assert_eq!(Image::parse(&b).err(), Some(BadImage::Version(2)));
        let mut b = blob.clone();
        b[12..16].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(Image::parse(&b).err(), Some(BadImage::TooManyModules(1000)));
        let mut b = blob.clone();
        b[12..16].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(Image::parse(&b).err(), Some(BadImage::Bounds(_) | BadImage::Text(_))));
        // Data size beyond the end, offset overflow, unaligned data, name out of range, bad UTF-8.
        let e = HEADER_SIZE;
        for (at, value) in [(e + 8, u64::MAX), (e, u64::MAX - 1), (e, 4097)] {
            let mut b = blob.clone();
            b[at..at + 8].copy_from_slice(&value.to_le_bytes());
            assert_eq!(Image::parse(&b).err(), Some(BadImage::Bounds(0)), "field at {at} = {value:#x}");
        }
        let mut b = blob.clone();
        b[e + 20..e + 24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Image::parse(&b).err(), Some(BadImage::Bounds(0)));
        let mut b = blob.clone();
        let name_at = u32::from_le_bytes(b[e + 16..e + 20].try_into().unwrap()) as usize;
        b[name_at] = 0xff;
        assert_eq!(Image::parse(&b).err(), Some(BadImage::Text(0)));
    }

    #[test]
    fn rejects_overlapping_module_data() {
        let blob = pack(&[("a", "a", &[1; 5000]), ("b", "b", &[2; 10])]);
        let e = HEADER_SIZE;
        // b's data moved onto a's.
        let mut b = blob.clone();
        b[e + ENTRY_SIZE..e + ENTRY_SIZE + 8].copy_from_slice(&(DATA_ALIGN as u64).to_le_bytes());
        assert_eq!(Image::parse(&b).err(), Some(BadImage::Overlap(0)));
        // a's data starting at 0, over the header and the strings.
        let mut b = blob.clone();
        b[e..e + 8].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(Image::parse(&b).err(), Some(BadImage::Overlap(0)));
        // A name pointing into a module's data.
        let mut b = blob.clone();
        b[e + ENTRY_SIZE + 16..e + ENTRY_SIZE + 20].copy_from_slice(&(DATA_ALIGN as u32).to_le_bytes());
        assert_eq!(Image::parse(&b).err(), Some(BadImage::Overlap(0)));
    }

    #[test]
    fn random_corruption_never_panics() {
        let blob = pack(&[("init", "init x", &[7; 100]), ("b", "b", &[1; 10])]);
        let mut x: u64 = 99;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut b = blob.clone();
            let at = (x as usize) % 128;
            b[at] = (x >> 32) as u8;
            let len = if x & 1 == 0 { b.len() } else { (x >> 40) as usize % b.len() };
            if let Ok(img) = Image::parse(&b[..len]) {
                assert_eq!(img.modules().count(), img.len());
            }
        }
    }
}
