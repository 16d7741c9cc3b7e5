//! AArch64 translation tables, as pure logic: 4 KiB granule, 48-bit virtual
//! addresses, four levels (L0–L3), 1 GiB and 2 MiB blocks where alignment
//! allows. The kernel uses it at boot for its own TTBR1 tables and for
//! init's TTBR0 tables; the host tests build tables in memory and walk them.
//!
//! It owns descriptor encoding and the walk; it does not own memory: tables
//! come from a [`TableAlloc`], which on the target hands out zeroed pages of
//! the boot allocator reached through the kernel's direct map.

/// Entries per table.
pub const ENTRIES: usize = 512;
pub type Table = [u64; ENTRIES];

pub const PAGE_SIZE: u64 = 4096;
pub const L2_BLOCK: u64 = 2 << 20;
pub const L1_BLOCK: u64 = 1 << 30;
/// Bits of virtual address a table tree translates.
pub const VA_BITS: u32 = 48;

const VALID: u64 = 1 << 0;
/// At L0–L2: points to a table. At L3: a page (must be set).
const TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_SHIFT: u64 = 2;
const AP_EL0: u64 = 1 << 6;
const AP_RO: u64 = 1 << 7;
const SH_INNER: u64 = 3 << 8;
const AF: u64 = 1 << 10;
const NG: u64 = 1 << 11;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// MAIR_EL1 index of each memory type.
const MAIR_NORMAL: u64 = 0;
const MAIR_DEVICE: u64 = 1;
/// MAIR_EL1: index 0 Normal write-back read/write-allocate, index 1
/// Device-nGnRE. Descriptors refer to these indices.
pub const MAIR_VALUE: u64 = 0xff | (0x04 << 8);

/// Memory type of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    Normal,
    Device,
}

/// Everything a leaf descriptor says about a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub memory: Memory,
    pub write: bool,
    pub exec: bool,
    /// Accessible from EL0. The kernel can never execute user pages (PXN).
    pub user: bool,
    /// Valid for every ASID (kernel mappings); user mappings are not global.
    pub global: bool,
}

impl Attributes {
    pub const KERNEL_RW: Attributes =
        Attributes { memory: Memory::Normal, write: true, exec: false, user: false, global: true };
    pub const KERNEL_RO: Attributes = Attributes { write: false, ..Self::KERNEL_RW };
    pub const KERNEL_RX: Attributes = Attributes { write: false, exec: true, ..Self::KERNEL_RW };
    pub const KERNEL_DEVICE: Attributes = Attributes { memory: Memory::Device, ..Self::KERNEL_RW };
    pub const USER_RW: Attributes =
        Attributes { memory: Memory::Normal, write: true, exec: false, user: true, global: false };
    pub const USER_RO: Attributes = Attributes { write: false, ..Self::USER_RW };
    pub const USER_RX: Attributes = Attributes { write: false, exec: true, ..Self::USER_RW };

    fn bits(self) -> u64 {
        let mut d = AF | SH_INNER;
        d |= match self.memory {
            Memory::Normal => MAIR_NORMAL,
            Memory::Device => MAIR_DEVICE,
        } << ATTR_SHIFT;
        if !self.write {
            d |= AP_RO;
        }
        if self.user {
            d |= AP_EL0 | PXN;
            if !self.exec {
                d |= UXN;
            }
        } else {
            d |= UXN;
            if !self.exec {
                d |= PXN;
            }
        }
        if !self.global {
            d |= NG;
        }
        d
    }

    fn from_bits(d: u64) -> Attributes {
        let user = d & AP_EL0 != 0;
        Attributes {
            memory: if (d >> ATTR_SHIFT) & 7 == MAIR_DEVICE { Memory::Device } else { Memory::Normal },
            write: d & AP_RO == 0,
            exec: if user { d & UXN == 0 } else { d & PXN == 0 },
            user,
            global: d & NG == 0,
        }
    }
}

/// The descriptor of a leaf (page at level 3, block at levels 1 and 2)
/// mapping `pa` with `attrs`.
pub fn leaf_descriptor(pa: u64, attrs: Attributes, level: u32) -> u64 {
    let kind = if level == 3 { TABLE_OR_PAGE } else { 0 };
    (pa & ADDR_MASK) | attrs.bits() | VALID | kind
}

/// The descriptor of a table entry pointing at the table at `pa`.
pub fn table_descriptor(pa: u64) -> u64 {
    (pa & ADDR_MASK) | VALID | TABLE_OR_PAGE
}

/// The physical address a valid table, page or block descriptor points
/// to (a block's low bits below its size are zero by construction).
pub fn output_address(descriptor: u64) -> u64 {
    descriptor & ADDR_MASK
}

/// Whether a descriptor is valid (maps something).
pub fn is_valid(descriptor: u64) -> bool {
    descriptor & VALID != 0
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Address or size not page-aligned, or the range wraps or leaves the
    /// 48-bit space.
    Misaligned,
    /// Part of the range is mapped already (at this virtual address).
    AlreadyMapped(u64),
    /// The allocator has no page for another table.
    OutOfTables,
    /// A writable and executable mapping was asked for.
    WriteAndExecute,
}

impl From<MapError> for kpi::ErrorCode {
    fn from(e: MapError) -> Self {
        match e {
            MapError::Misaligned => kpi::ErrorCode::Misaligned,
            MapError::AlreadyMapped(_) => kpi::ErrorCode::AlreadyMapped,
            MapError::OutOfTables => kpi::ErrorCode::OutOfMemory,
            MapError::WriteAndExecute => kpi::ErrorCode::InvalidArgument,
        }
    }
}

/// Where tables come from and how they are reached.
pub trait TableAlloc {
    /// A zeroed page for a table; its physical address.
    fn alloc_table(&mut self) -> Option<u64>;
    /// The table at a physical address.
    fn table(&mut self, pa: u64) -> &mut Table;
}

/// Index of `va` in the table at `level`.
fn index(va: u64, level: u32) -> usize {
    ((va >> (39 - 9 * level)) & 0x1ff) as usize
}

fn level_size(level: u32) -> u64 {
    1 << (39 - 9 * level)
}

/// Maps `size` bytes at `va` (only its low 48 bits count, so TTBR1
/// addresses work as they are) to `pa`. Blocks are used where `blocks` and
/// alignment allow. On error, part of the range may be mapped.
pub fn map(
    alloc: &mut impl TableAlloc,
    root: u64,
    va: u64,
    pa: u64,
    size: u64,
    attrs: Attributes,
    blocks: bool,
) -> Result<(), MapError> {
    if attrs.write && attrs.exec {
        return Err(MapError::WriteAndExecute);
    }
    let va = va & ((1 << VA_BITS) - 1);
    if !(va | pa | size).is_multiple_of(PAGE_SIZE)
        || va.checked_add(size).is_none_or(|end| end > 1 << VA_BITS)
        || pa.checked_add(size).is_none_or(|end| end > ADDR_MASK + PAGE_SIZE)
    {
        return Err(MapError::Misaligned);
    }
    let mut done = 0;
    while done < size {
        let (v, p, left) = (va + done, pa + done, size - done);
        let leaf_level = if blocks && (v | p) % L1_BLOCK == 0 && left >= L1_BLOCK {
            1
        } else if blocks && (v | p) % L2_BLOCK == 0 && left >= L2_BLOCK {
            2
        } else {
            3
        };
        let mut table = root;
        for level in 0..leaf_level {
            let i = index(v, level);
            let entry = alloc.table(table)[i];
            table = if entry & VALID == 0 {
                let next = alloc.alloc_table().ok_or(MapError::OutOfTables)?;
                alloc.table(table)[i] = table_descriptor(next);
                next
            } else if entry & TABLE_OR_PAGE != 0 {
                entry & ADDR_MASK
            } else {
                return Err(MapError::AlreadyMapped(v));
            };
        }
        let i = index(v, leaf_level);
        let slot = &mut alloc.table(table)[i];
        if *slot & VALID != 0 {
            return Err(MapError::AlreadyMapped(v));
        }
        *slot = leaf_descriptor(p, attrs, leaf_level);
        done += level_size(leaf_level);
    }
    Ok(())
}

/// What a virtual address translates to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub pa: u64,
    /// Level of the leaf: 1 (1 GiB block), 2 (2 MiB block) or 3 (page).
    pub level: u32,
    pub attrs: Attributes,
}

/// Walks the tables like the MMU does.
pub fn walk(alloc: &mut impl TableAlloc, root: u64, va: u64) -> Option<Translation> {
    let va = va & ((1 << VA_BITS) - 1);
    let mut table = root;
    for level in 0..4 {
        let entry = alloc.table(table)[index(va, level)];
        if entry & VALID == 0 {
            return None;
        }
        let is_table = entry & TABLE_OR_PAGE != 0;
        if level < 3 && is_table {
            table = entry & ADDR_MASK;
            continue;
        }
        if level == 0 || (level == 3 && !is_table) {
            return None; // no blocks at L0; L3 needs the page bit
        }
        let size = level_size(level);
        let base = entry & ADDR_MASK & !(size - 1);
        return Some(Translation { pa: base + (va & (size - 1)), level, attrs: Attributes::from_bits(entry) });
    }
    None
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::HashMap;
    use std::vec::Vec;

    /// Tables in a hash map under made-up physical addresses.
    struct Fake {
        tables: HashMap<u64, std::boxed::Box<Table>>,
        next: u64,
        limit: usize,
    }

    impl Fake {
        fn new() -> (Self, u64) {
            let mut f = Fake { tables: HashMap::new(), next: 0x1_0000_0000, limit: usize::MAX };
            let root = f.alloc_table().unwrap();
            (f, root)
        }
    }

    impl TableAlloc for Fake {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.tables.len() >= self.limit {
                return None;
            }
            let pa = self.next;
            self.next += PAGE_SIZE;
            self.tables.insert(pa, std::boxed::Box::new([0; ENTRIES]));
            Some(pa)
        }
        fn table(&mut self, pa: u64) -> &mut Table {
            self.tables.get_mut(&pa).expect("descriptor points at a table we made")
        }
    }

    const KBASE: u64 = 0xffff_0000_0000_0000;

    #[test]
    fn kernel_direct_map_with_wx_image_walks_back() {
        let (mut f, root) = Fake::new();
        // RAM 0x4000_0000..0x6000_0000 with an image at 0x4020_0000.
        let ram = (0x4000_0000u64, 0x2000_0000u64);
        let text = (0x4020_0000u64, 0x3000u64);
        let rodata = (0x4020_3000u64, 0x1000u64);
        let data = (0x4020_4000u64, 0x2000u64);
        map(&mut f, root, KBASE + ram.0, ram.0, text.0 - ram.0, Attributes::KERNEL_RW, true).unwrap();
        map(&mut f, root, KBASE + text.0, text.0, text.1, Attributes::KERNEL_RX, true).unwrap();
        map(&mut f, root, KBASE + rodata.0, rodata.0, rodata.1, Attributes::KERNEL_RO, true).unwrap();
        map(&mut f, root, KBASE + data.0, data.0, data.1, Attributes::KERNEL_RW, true).unwrap();
        let rest = data.0 + data.1;
        map(&mut f, root, KBASE + rest, rest, ram.0 + ram.1 - rest, Attributes::KERNEL_RW, true).unwrap();
        map(&mut f, root, KBASE + 0x0900_0000, 0x0900_0000, 0x1000, Attributes::KERNEL_DEVICE, true).unwrap();

        // Every page of RAM translates to itself with the right attributes.
        for pa in (ram.0..ram.0 + ram.1).step_by(PAGE_SIZE as usize) {
            let t = walk(&mut f, root, KBASE + pa + 0x123).unwrap();
            assert_eq!(t.pa, pa + 0x123);
            let want = if (text.0..text.0 + text.1).contains(&pa) {
                Attributes::KERNEL_RX
            } else if (rodata.0..rodata.0 + rodata.1).contains(&pa) {
                Attributes::KERNEL_RO
            } else {
                Attributes::KERNEL_RW
            };
            assert_eq!(t.attrs, want, "page {pa:#x}");
            assert!(!(t.attrs.write && t.attrs.exec));
        }
        // Blocks where possible: the 2 MiB below the image and above it.
        assert_eq!(walk(&mut f, root, KBASE + 0x4000_0000).unwrap().level, 2);
        assert_eq!(walk(&mut f, root, KBASE + 0x4060_0000).unwrap().level, 2);
        assert_eq!(walk(&mut f, root, KBASE + 0x4020_0000).unwrap().level, 3);
        let dev = walk(&mut f, root, KBASE + 0x0900_0010).unwrap();
        assert_eq!((dev.pa, dev.attrs.memory), (0x0900_0010, Memory::Device));
        assert_eq!(walk(&mut f, root, KBASE + 0x0900_1000), None);
        assert_eq!(walk(&mut f, root, KBASE + ram.0 + ram.1), None);
        assert_eq!(
            walk(&mut f, root, 0x4000_0000),
            Some(walk(&mut f, root, KBASE + 0x4000_0000).unwrap()),
            "only the low 48 bits index the tables"
        );
    }

    #[test]
    fn gigabyte_blocks_and_user_pages() {
        let (mut f, root) = Fake::new();
        map(&mut f, root, 0x4000_0000, 0x4000_0000, L1_BLOCK, Attributes::KERNEL_RW, true).unwrap();
        assert_eq!(walk(&mut f, root, 0x7fff_ffff).unwrap().level, 1);
        let (mut f, root) = Fake::new();
        map(&mut f, root, 0x40_0000, 0x8000_0000, 0x3000, Attributes::USER_RX, true).unwrap();
        let t = walk(&mut f, root, 0x40_2abc).unwrap();
        assert_eq!(t.pa, 0x8000_2abc);
        assert_eq!(t.attrs, Attributes::USER_RX);
        assert!(!t.attrs.global);
        // Blocks are not used when not asked for.
        map(&mut f, root, 0x4000_0000, 0x4000_0000, L2_BLOCK, Attributes::USER_RW, false).unwrap();
        assert_eq!(walk(&mut f, root, 0x4000_0000).unwrap().level, 3);
    }

    #[test]
    fn descriptor_bits_follow_the_architecture() {
        // User RW data: AP[2:1] = 01, UXN and PXN set, nG, AF, inner shareable.
        let d = Attributes::USER_RW.bits();
        assert_eq!((d >> 6) & 3, 0b01);
        assert_ne!(d & UXN, 0);
        assert_ne!(d & PXN, 0, "the kernel never executes user memory");
        assert_ne!(d & NG, 0);
        // Kernel text: read-only, executable at EL1 only.
        let d = Attributes::KERNEL_RX.bits();
        assert_eq!((d >> 6) & 3, 0b10);
        assert_eq!(d & PXN, 0);
        assert_ne!(d & UXN, 0);
        assert_eq!((Attributes::KERNEL_DEVICE.bits() >> 2) & 7, 1);
        for a in [
            Attributes::KERNEL_RW,
            Attributes::KERNEL_RO,
            Attributes::KERNEL_RX,
            Attributes::KERNEL_DEVICE,
            Attributes::USER_RW,
            Attributes::USER_RO,
            Attributes::USER_RX,
        ] {
            assert_eq!(Attributes::from_bits(a.bits()), a);
        }
    }

    #[test]
    fn descriptor_builders_match_what_map_writes() {
        let (mut f, root) = Fake::new();
        map(&mut f, root, 0x40_0000, 0x8000_0000, 0x1000, Attributes::USER_RX, false).unwrap();
        let l1 = f.table(root)[0] & ADDR_MASK;
        assert_eq!(f.table(root)[0], table_descriptor(l1));
        let l2 = f.table(l1)[0] & ADDR_MASK;
        let l3 = f.table(l2)[2] & ADDR_MASK;
        assert_eq!(f.table(l3)[0], leaf_descriptor(0x8000_0000, Attributes::USER_RX, 3));
        assert!(is_valid(f.table(l3)[0]) && !is_valid(f.table(l3)[1]));
        assert_eq!(leaf_descriptor(0x4000_0000, Attributes::USER_RW, 1) & 3, 1, "a block, not a table");
    }

    #[test]
    fn rejects_bad_requests() {
        let (mut f, root) = Fake::new();
        let rw = Attributes::USER_RW;
        assert_eq!(map(&mut f, root, 0x1001, 0x2000, 0x1000, rw, true), Err(MapError::Misaligned));
        assert_eq!(map(&mut f, root, 0x1000, 0x2000, 0x800, rw, true), Err(MapError::Misaligned));
        assert_eq!(map(&mut f, root, 0xffff_ffff_f000, 0, 0x2000, rw, true), Err(MapError::Misaligned));
        let wx = Attributes { exec: true, ..rw };
        assert_eq!(map(&mut f, root, 0x1000, 0x2000, 0x1000, wx, true), Err(MapError::WriteAndExecute));
        map(&mut f, root, 0x20_0000, 0x4000_0000, L2_BLOCK, rw, true).unwrap();
        assert_eq!(
            map(&mut f, root, 0x20_1000, 0x5000_0000, 0x1000, rw, true),
            Err(MapError::AlreadyMapped(0x20_1000))
        );
        assert_eq!(
            map(&mut f, root, 0x20_0000, 0x5000_0000, 0x1000, rw, true),
            Err(MapError::AlreadyMapped(0x20_0000))
        );
        map(&mut f, root, 0x1000, 0x9000, 0x1000, rw, true).unwrap();
        assert_eq!(map(&mut f, root, 0x0, 0x9000, 0x2000, rw, true), Err(MapError::AlreadyMapped(0x1000)));
        let (mut f, root) = Fake::new();
        f.limit = 2;
        assert_eq!(map(&mut f, root, 0x1000, 0x1000, 0x1000, rw, true), Err(MapError::OutOfTables));
    }

    #[test]
    fn many_random_ranges_walk_back() {
        // A deterministic spread of page runs at assorted alignments.
        let (mut f, root) = Fake::new();
        let mut x: u64 = 0x2026_1125;
        let mut mapped = Vec::new();
        let mut va = 0x1000u64;
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let pages = 1 + x % 700;
            let pa = ((x >> 20) % (1 << 35)) & !(PAGE_SIZE - 1);
            map(&mut f, root, va, pa, pages * PAGE_SIZE, Attributes::USER_RO, true).unwrap();
            mapped.push((va, pa, pages));
            va += (pages + 1 + x % 3) * PAGE_SIZE;
        }
        for (va, pa, pages) in mapped {
            for p in [0, pages / 2, pages - 1] {
                let t = walk(&mut f, root, va + p * PAGE_SIZE).unwrap();
                assert_eq!(t.pa, pa + p * PAGE_SIZE);
            }
            assert_eq!(walk(&mut f, root, va + pages * PAGE_SIZE), None, "guard page after {va:#x}");
        }
    }
}
