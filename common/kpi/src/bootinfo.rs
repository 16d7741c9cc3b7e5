//! Bootinfo (book ch. 4.8): the kernel's description of the machine for
//! init — physical memory regions and the boot modules from `menu.lst`.
//! One read-only page mapped into init, its address in the arguments page.

use core::mem::size_of;

use crate::BASE_PAGE_SIZE;

pub const BOOTINFO_MAGIC: u64 = u64::from_le_bytes(*b"AOSBOOT\0");
pub const REGIONS_MAX: usize = 64;
pub const MODULES_MAX: usize = 32;
pub const NAMES_SIZE: usize =
    BASE_PAGE_SIZE - 16 - REGIONS_MAX * size_of::<MemRegion>() - MODULES_MAX * size_of::<Module>();

/// What a physical region holds.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Free RAM, for init's memory manager.
    Free = 1,
    /// A boot module's bytes.
    Module = 2,
    /// The kernel image, its boot-time allocations and the boot image.
    Kernel = 3,
}

/// A physical memory region.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    pub base: u64,
    pub size: u64,
    pub kind: RegionKind,
    /// Slot of the region's capability in init's CSpace (SUPERCN for free
    /// RAM, MODULECN for modules), or `u32::MAX` if none.
    pub slot: u32,
}

/// A boot module: physical location, name and arguments in `names`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module {
    pub base: u64,
    pub size: u64,
    pub name_off: u16,
    pub name_len: u16,
    pub args_off: u16,
    pub args_len: u16,
}

/// The bootinfo page.
#[repr(C)]
#[derive(Clone)]
pub struct BootInfo {
    pub magic: u64,
    pub regions_count: u32,
    pub modules_count: u32,
    pub regions: [MemRegion; REGIONS_MAX],
    pub modules: [Module; MODULES_MAX],
    pub names: [u8; NAMES_SIZE],
}

const _: () = assert!(size_of::<BootInfo>() == BASE_PAGE_SIZE);

const NO_REGION: MemRegion = MemRegion { base: 0, size: 0, kind: RegionKind::Kernel, slot: u32::MAX };
const NO_MODULE: Module = Module { base: 0, size: 0, name_off: 0, name_len: 0, args_off: 0, args_len: 0 };

impl BootInfo {
    pub const fn new() -> Self {
        BootInfo {
            magic: BOOTINFO_MAGIC,
            regions_count: 0,
            modules_count: 0,
            regions: [NO_REGION; REGIONS_MAX],
            modules: [NO_MODULE; MODULES_MAX],
            names: [0; NAMES_SIZE],
        }
    }

    /// Adds a region whose capability is in `slot` (`u32::MAX`: none);
    /// false if the table is full.
    pub fn add_region(&mut self, base: u64, size: u64, kind: RegionKind, slot: u32) -> bool {
        let n = self.regions_count as usize;
        if n == REGIONS_MAX {
            return false;
        }
        self.regions[n] = MemRegion { base, size, kind, slot };
        self.regions_count += 1;
        true
    }

    /// Adds a module; false if a table is full.
    pub fn add_module(&mut self, base: u64, size: u64, name: &str, args: &str) -> bool {
        let n = self.modules_count as usize;
        let used = self.modules[..n].iter().map(|m| (m.args_off + m.args_len) as usize).max().unwrap_or(0);
        let need = name.len() + args.len();
        if n == MODULES_MAX || used + need > NAMES_SIZE {
            return false;
        }
        self.names[used..used + name.len()].copy_from_slice(name.as_bytes());
        self.names[used + name.len()..used + need].copy_from_slice(args.as_bytes());
        self.modules[n] = Module {
            base,
            size,
            name_off: used as u16,
            name_len: name.len() as u16,
            args_off: (used + name.len()) as u16,
            args_len: args.len() as u16,
        };
        self.modules_count += 1;
        true
    }

    pub fn regions(&self) -> &[MemRegion] {
        &self.regions[..(self.regions_count as usize).min(REGIONS_MAX)]
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules[..(self.modules_count as usize).min(MODULES_MAX)]
    }

    fn text(&self, off: u16, len: u16) -> Option<&str> {
        let bytes = self.names.get(off as usize..off as usize + len as usize)?;
        core::str::from_utf8(bytes).ok()
    }

    /// A module's name and argument string.
    pub fn module_text(&self, m: &Module) -> Option<(&str, &str)> {
        Some((self.text(m.name_off, m.name_len)?, self.text(m.args_off, m.args_len)?))
    }

    /// The first module named `name`: its index (its MODULECN slot), the
    /// module, and its name and argument string as [`Self::module_text`]
    /// gives them. Modules whose text is not UTF-8 are skipped.
    pub fn find_module(&self, name: &str) -> Option<(usize, &Module, &str, &str)> {
        self.modules().iter().enumerate().find_map(|(i, m)| {
            let (n, args) = self.module_text(m)?;
            (n == name).then_some((i, m, n, args))
        })
    }
}

impl Default for BootInfo {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn layout() {
        assert_eq!(size_of::<MemRegion>(), 24);
        assert_eq!(size_of::<Module>(), 24);
        assert_eq!(offset_of!(BootInfo, regions), 16);
        assert_eq!(offset_of!(BootInfo, modules), 16 + 24 * REGIONS_MAX);
        assert_eq!(offset_of!(BootInfo, names), 16 + 24 * (REGIONS_MAX + MODULES_MAX));
    }

    #[test]
    fn regions_and_modules_round_trip_and_fill_up() {
        let mut bi = BootInfo::new();
        assert!(bi.add_region(0x4000_0000, 0x1000, RegionKind::Free, 3));
        assert!(bi.add_module(0x4800_0000, 77, "init", "init one two"));
        assert!(bi.add_module(0x4800_1000, 5, "hello", ""));
        assert_eq!((bi.regions()[0].size, bi.regions()[0].slot), (0x1000, 3));
        assert_eq!(bi.module_text(&bi.modules()[0]), Some(("init", "init one two")));
        assert_eq!(bi.module_text(&bi.modules()[1]), Some(("hello", "")));
        for _ in 1..REGIONS_MAX {
            assert!(bi.add_region(0, 0, RegionKind::Free, u32::MAX));
        }
        assert!(!bi.add_region(0, 0, RegionKind::Free, u32::MAX));
        let long = "n".repeat(NAMES_SIZE);
        assert!(!bi.add_module(0, 0, &long, ""));
    }

    #[test]
    fn modules_are_found_by_name_first_match_wins() {
        let mut bi = BootInfo::new();
        assert!(bi.add_module(0x4800_0000, 77, "init", "init"));
        assert!(bi.add_module(0x4800_1000, 5, "hello", "hello a"));
        assert!(bi.add_module(0x4800_2000, 6, "hello", "hello b"));
        let (i, m, name, args) = bi.find_module("hello").unwrap();
        assert_eq!((i, m.size, name, args), (1, 5, "hello", "hello a"));
        assert!(bi.find_module("hell").is_none(), "whole names only");
        assert!(bi.find_module("absent").is_none());
        bi.names[bi.modules[0].name_off as usize] = 0xff;
        assert!(bi.find_module("init").is_none(), "a name that is not UTF-8 matches nothing");
    }
}
