//! The boot allocator: the only allocator the kernel ever has. At boot it
//! starts from the RAM the device tree lists, removes what is in use (kernel
//! image, device tree, boot image, QEMU's boot stub), and hands out pages
//! for the kernel's tables, init's image, stack and pages. When boot ends,
//! what is left becomes init's free memory in bootinfo; the kernel never
//! allocates again (later stages get kernel objects from memory users retype).

/// A physical range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub fn new(start: u64, size: u64) -> Self {
        Range { start, end: start.saturating_add(size) }
    }

    pub fn size(&self) -> u64 {
        self.end - self.start
    }
}

/// Most free ranges tracked.
pub const RANGES_MAX: usize = 32;
const PAGE: u64 = 4096;

/// Free physical memory, page-granular.
#[derive(Clone, Debug)]
pub struct BootAlloc {
    free: [Range; RANGES_MAX],
    count: usize,
    /// Bytes handed out so far.
    pub allocated: u64,
}

impl Default for BootAlloc {
    fn default() -> Self {
        Self::new()
    }
}

impl BootAlloc {
    pub const fn new() -> Self {
        BootAlloc { free: [Range { start: 0, end: 0 }; RANGES_MAX], count: 0, allocated: 0 }
    }

    /// Adds RAM, shrunk to whole pages. Overlaps with ranges already added
    /// are dropped rather than counted twice. False if the table is full.
    pub fn add(&mut self, r: Range) -> bool {
        let r = Range { start: r.start.next_multiple_of(PAGE), end: r.end & !(PAGE - 1) };
        if r.start >= r.end {
            return true;
        }
        self.reserve(r);
        if self.count == RANGES_MAX {
            return false;
        }
        self.free[self.count] = r;
        self.count += 1;
        self.free[..self.count].sort_unstable_by_key(|r| r.start);
        // Coalesce neighbours so contiguous RAM allocates as one.
        let mut n = 0;
        for i in 0..self.count {
            let cur = self.free[i];
            if n > 0 && self.free[n - 1].end == cur.start {
                self.free[n - 1].end = cur.end;
            } else {
                self.free[n] = cur;
                n += 1;
            }
        }
        self.count = n;
        true
    }

    /// Removes `r` (widened to whole pages) from the free ranges.
    pub fn reserve(&mut self, r: Range) {
        let r = Range { start: r.start & !(PAGE - 1), end: r.end.next_multiple_of(PAGE) };
        let mut out = [Range::default(); RANGES_MAX];
        let mut n = 0;
        for f in &self.free[..self.count] {
            for piece in
                [Range { start: f.start, end: f.end.min(r.start) }, Range { start: f.start.max(r.end), end: f.end }]
            {
                if piece.start < piece.end && n < RANGES_MAX {
                    out[n] = piece;
                    n += 1;
                }
            }
        }
        self.free = out;
        self.count = n;
    }

    /// `pages` contiguous pages aligned to `align` bytes (a power of two, at
    /// least a page), from the lowest range that has them.
    pub fn alloc(&mut self, pages: u64, align: u64) -> Option<u64> {
        let size = pages.checked_mul(PAGE)?;
        let align = align.max(PAGE);
        for f in &self.free[..self.count] {
            let start = f.start.checked_next_multiple_of(align)?;
            if start.checked_add(size).is_some_and(|end| end <= f.end) {
                self.reserve(Range::new(start, size));
                self.allocated += size;
                return Some(start);
            }
        }
        None
    }

    /// What is still free.
    pub fn free(&self) -> &[Range] {
        &self.free[..self.count]
    }

    pub fn free_bytes(&self) -> u64 {
        self.free().iter().map(Range::size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_and_allocates_without_overlap() {
        let mut a = BootAlloc::new();
        assert!(a.add(Range::new(0x4000_0000, 0x2000_0000)));
        a.reserve(Range::new(0x4020_0000, 0x12345)); // kernel image
        a.reserve(Range::new(0x4800_0000, 0x10_0000)); // device tree
        assert_eq!(a.free_bytes(), 0x2000_0000 - 0x13000 - 0x10_0000);
        let p = a.alloc(1, PAGE).unwrap();
        assert_eq!(p, 0x4000_0000);
        let big = a.alloc(512, 2 << 20).unwrap();
        assert_eq!(big % (2 << 20), 0);
        assert!(big >= 0x4021_3000 || big + (2 << 20) <= 0x4020_0000);
        assert_eq!(a.allocated, PAGE + (2 << 20));
        for r in a.free() {
            assert!(r.start < r.end && r.start % PAGE == 0 && r.end % PAGE == 0);
            assert!(!(r.start < p + PAGE && p < r.end));
            assert!(!(r.start < big + (2 << 20) && big < r.end));
        }
    }

    #[test]
    fn exhaustion_and_odd_input() {
        let mut a = BootAlloc::new();
        assert!(a.add(Range::new(0x1001, 0x3000))); // shrinks to 0x2000..0x4000
        assert_eq!(a.free(), [Range { start: 0x2000, end: 0x4000 }]);
        assert!(a.add(Range::new(0x2000, 0x1000)), "an overlap is not counted twice");
        assert_eq!(a.free_bytes(), 0x2000);
        assert_eq!(a.alloc(3, PAGE), None);
        assert!(a.alloc(2, PAGE).is_some());
        assert_eq!(a.alloc(1, PAGE), None);
        assert_eq!(a.alloc(u64::MAX, PAGE), None);
        assert!(a.add(Range::new(0x10, 0x10)), "less than a page is ignored");
        assert_eq!(a.free_bytes(), 0);
    }
}
