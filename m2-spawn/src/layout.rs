//! The paging-state page (book ch. 4.10, extra challenge): the regions a
//! parent mapped in a child's address space, shared with the child at
//! `kpi::vspace::PAGING_STATE_VADDR`, read-only there. The parent appends
//! a region before it maps it and publishes it with the count (release),
//! so a child that reads the count (acquire) sees every region up to it
//! and never maps over one. Regions are never removed while the child
//! lives: the parent maps into a child only while building it and for
//! frames it shares for good.
//!
//! A child must not trust the page: [`Layout::regions`] bounds the count.

use core::sync::atomic::{AtomicU32, Ordering};

use api::MapFlags;

pub const LAYOUT_MAGIC: u64 = u64::from_le_bytes(*b"AOSVSPC\0");
/// Regions one page holds.
pub const REGIONS_MAX: usize = (4096 - 16) / 24;

/// One mapped region of the child's address space.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    pub vaddr: u64,
    pub bytes: u64,
    /// `api::MapFlags` bits.
    pub flags: u32,
    pub _reserved: u32,
}

impl Region {
    pub fn end(&self) -> u64 {
        self.vaddr.saturating_add(self.bytes)
    }

    pub fn flags(&self) -> MapFlags {
        MapFlags::from_bits_truncate(self.flags)
    }

    pub fn contains(&self, va: u64) -> bool {
        (self.vaddr..self.end()).contains(&va)
    }
}

/// The page.
#[repr(C)]
pub struct Layout {
    pub magic: u64,
    count: AtomicU32,
    _reserved: u32,
    regions: [Region; REGIONS_MAX],
}

const _: () = assert!(core::mem::size_of::<Layout>() <= 4096);

impl Default for Layout {
    fn default() -> Self {
        Self::new()
    }
}

impl Layout {
    pub const fn new() -> Self {
        const NONE: Region = Region { vaddr: 0, bytes: 0, flags: 0, _reserved: 0 };
        Layout { magic: LAYOUT_MAGIC, count: AtomicU32::new(0), _reserved: 0, regions: [NONE; REGIONS_MAX] }
    }

    /// Starts an empty page in place (the parent, on a fresh frame).
    pub fn init(&mut self) {
        self.magic = LAYOUT_MAGIC;
        self.count.store(0, Ordering::Relaxed);
    }

    /// Records a region; false if the page is full.
    pub fn push(&mut self, r: Region) -> bool {
        let n = self.count.load(Ordering::Relaxed) as usize;
        if n == REGIONS_MAX {
            return false;
        }
        self.regions[n] = r;
        self.count.store(n as u32 + 1, Ordering::Release);
        true
    }

    /// Withdraws the last region (a mapping that failed after its region
    /// was published).
    pub fn pop(&mut self) {
        let n = self.count.load(Ordering::Relaxed);
        self.count.store(n.saturating_sub(1), Ordering::Release);
    }

    /// The regions published so far (none if the page is not one).
    pub fn regions(&self) -> &[Region] {
        if self.magic != LAYOUT_MAGIC {
            return &[];
        }
        let n = (self.count.load(Ordering::Acquire) as usize).min(REGIONS_MAX);
        &self.regions[..n]
    }

    /// The region holding `va`, if any.
    pub fn find(&self, va: u64) -> Option<Region> {
        self.regions().iter().copied().find(|r| r.contains(va))
    }

    /// The running child's own page.
    #[cfg(target_os = "none")]
    pub fn own() -> &'static Layout {
        // SAFETY: spawn maps the paging-state page read-only at this
        // address for the child's lifetime; `regions` checks the magic and
        // bounds the count, and the parent only appends.
        unsafe { &*(aos::kpi::vspace::PAGING_STATE_VADDR as *const Layout) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;

    fn empty() -> Box<Layout> {
        Box::new(Layout::new())
    }

    #[test]
    fn regions_are_published_in_order_until_the_page_is_full() {
        let mut page = empty();
        let r = |i: u64| Region { vaddr: 0x40_0000 + i * 0x1000, bytes: 0x1000, flags: 1, _reserved: 0 };
        for i in 0..REGIONS_MAX as u64 {
            assert!(page.push(r(i)));
        }
        assert!(!page.push(r(999)), "full");
        assert_eq!(page.regions().len(), REGIONS_MAX);
        assert_eq!(page.find(0x40_0000 + 5 * 0x1000 + 8), Some(r(5)));
        assert_eq!(page.find(0x10), None);
    }

    #[test]
    fn a_page_without_the_magic_or_with_a_hostile_count_shows_what_is_safe() {
        let mut page = empty();
        page.count.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(page.regions().len(), REGIONS_MAX, "count bounded");
        page.magic = 0;
        assert!(page.regions().is_empty());
    }
}
