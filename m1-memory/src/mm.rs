//! The physical memory manager's allocation logic (`libmm`, book ch.
//! 3.10-3.11): which RAM to hand out, carved by retype from the root RAM
//! capabilities it was given.
//!
//! It owns those root capabilities, the record of which of their memory is
//! free, and the slab its bookkeeping nodes live in. It reaches the kernel
//! only through [`RamCaps`], so the glue supplies real invocations and the
//! tests a model kernel. It never allocates memory or slots itself (the glue
//! refills its slab, see [`NODES_PER_OP`]) and deletes no capability but the
//! ones `free` is handed, and those only once the kernel has shown that
//! their memory really comes back.
//!
//! Free regions are indexed twice. An address-ordered AA tree finds the
//! neighbours a freed range coalesces with, and shows whether a range is
//! already free, in O(log n). Lists segregated by size class
//! (floor(log2 size)) with a bitmap of the non-empty ones let `alloc` take a
//! region that is certain to fit with one bit scan instead of a search.
//! Nodes are named by slab index, so none of this needs `unsafe`.
//!
//! [`AddressRanges`] is the same index on its own, without roots or
//! capabilities: the free ranges of a virtual address space.

use core::fmt;
use core::mem::MaybeUninit;

use aos::kpi::ErrorCode;
use aos::slab::{Entry, GrowError, Idx, Slab};

/// The granule of everything the manager hands out.
pub const PAGE_SIZE: u64 = 4096;

/// Most root regions one manager holds.
pub const MAX_ROOTS: usize = 64;

/// The most slab nodes one `add`, `alloc` or `free` (and
/// [`AddressRanges::take`]) consumes, net; each refuses with `NoNodes`,
/// before anything changes, unless this many are free.
///
/// 1: `alloc` and `take` cut one range out of one free region, leaving at
/// most a head and a tail (one region becomes two); `free` either widens a
/// neighbour, merges two neighbours (gives one back), or creates one region;
/// `add` creates one region (in [`AddressRanges`], merges like `free`). Tree
/// and list updates relink existing nodes and need none.
pub const NODES_PER_OP: usize = 1;

/// Size classes: class `k` holds regions of `2^k` up to `2^(k+1)` bytes;
/// the top class also takes everything larger.
const CLASS_MIN: u32 = 12;
const CLASS_MAX: u32 = 48;
const CLASSES: usize = (CLASS_MAX - CLASS_MIN + 1) as usize;

/// Deeper than any AA tree the slab can hold; `check` stops there rather
/// than follow a cycle forever.
const DEPTH_MAX: usize = 128;

/// What `identify` reveals about a capability, as far as the manager cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapInfo {
    pub base: u64,
    pub size: u64,
    pub is_ram: bool,
}

/// The capability operations the manager needs; the glue implements them
/// with invocations, the tests with a model kernel.
pub trait RamCaps {
    type Cap: Copy + Eq + fmt::Debug;
    /// Base and size of a capability's memory, and whether it is RAM.
    fn identify(&mut self, cap: Self::Cap) -> Result<CapInfo, ErrorCode>;
    /// Retypes `size` bytes at `offset` into `src` (a RAM capability) into a
    /// new RAM capability in a fresh slot. Refused with
    /// [`ErrorCode::RetypeOverlap`] if a live descendant of `src` overlaps.
    fn retype_ram(&mut self, src: Self::Cap, offset: u64, size: u64) -> Result<Self::Cap, ErrorCode>;
    /// A copy of `cap` in a fresh slot. The manager hands out a whole root
    /// this way: the kernel refuses to retype RAM into RAM of the same size
    /// ([`ErrorCode::IllegalRetype`]), since that would be a copy.
    fn copy_cap(&mut self, cap: Self::Cap) -> Result<Self::Cap, ErrorCode>;
    /// Deletes a capability (and frees its slot).
    fn delete(&mut self, cap: Self::Cap) -> Result<(), ErrorCode>;
    /// Whether any capability derived from `src` other than `except` itself
    /// overlaps `[offset, offset + size)` of `src`'s memory: what would make
    /// a retype of that range refuse with RetypeOverlap once `except` is
    /// deleted. Changes nothing. (Kernel: `Command::RetypeCheck`.)
    fn covered_by_others(
        &mut self,
        src: Self::Cap,
        except: Self::Cap,
        offset: u64,
        size: u64,
    ) -> Result<bool, ErrorCode>;
}

/// Why the manager refused. On every error its bookkeeping is as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    /// A capability operation failed.
    Kernel(ErrorCode),
    InvalidSize,
    InvalidAlignment,
    OutOfMemory,
    NotAllocated,
    /// Another capability (a copy the client kept, or the allocation this
    /// piece was retyped from) still covers the memory; the capability was
    /// left as it was. Free or delete that other capability first, then free
    /// this one again.
    StillInUse,
    NotRam,
    Misaligned,
    Overlap,
    TooManyRegions,
    NoNodes,
}

impl From<ErrorCode> for MmError {
    fn from(code: ErrorCode) -> Self {
        MmError::Kernel(code)
    }
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmError::Kernel(code) => write!(f, "a capability operation failed: {}", code.description()),
            MmError::InvalidSize => f.write_str("the size is zero or too large to round up to whole pages"),
            MmError::InvalidAlignment => f.write_str("the alignment is not a power of two"),
            MmError::OutOfMemory => f.write_str("no free region holds a range of that size and alignment"),
            MmError::NotAllocated => f.write_str("the capability's memory is not memory this manager handed out"),
            MmError::StillInUse => f.write_str(
                "another capability still covers the memory; free or delete it first, then free this one again",
            ),
            MmError::NotRam => f.write_str("the capability is not a RAM capability"),
            MmError::Misaligned => f.write_str("the region's base or size is not a multiple of 4 KiB"),
            MmError::Overlap => f.write_str("the region overlaps one the manager already holds"),
            MmError::TooManyRegions => f.write_str("the manager already holds as many root regions as it can"),
            MmError::NoNodes => f.write_str("the manager's node slab is too low for an operation; grow it first"),
        }
    }
}

impl core::error::Error for MmError {}

/// A free region: a node of the address tree and of one size-class list.
pub struct Node {
    base: u64,
    size: u64,
    left: Option<Idx>,
    right: Option<Idx>,
    level: u8,
    prev: Option<Idx>,
    next: Option<Idx>,
}

/// Bytes of slab memory one node takes, for sizing the chunks given to
/// [`MemoryManager::grow_nodes`].
pub const fn node_bytes() -> usize {
    core::mem::size_of::<Entry<Node>>()
}

fn class(size: u64) -> usize {
    ((63 - size.leading_zeros()).clamp(CLASS_MIN, CLASS_MAX) - CLASS_MIN) as usize
}

/// ceil(log2(x)) for x >= 1.
fn ceil_log2(x: u64) -> u32 {
    64 - (x - 1).leading_zeros()
}

/// The free regions, without knowledge of roots or capabilities.
struct Regions {
    nodes: Slab<Node>,
    tree: Option<Idx>,
    heads: [Option<Idx>; CLASSES],
    /// Bit `k` set iff `heads[k]` is non-empty.
    nonempty: u64,
    count: usize,
    bytes: u64,
}

impl Regions {
    const fn new() -> Self {
        Regions { nodes: Slab::new(), tree: None, heads: [None; CLASSES], nonempty: 0, count: 0, bytes: 0 }
    }

    /// What `new` makes, in place (the slab is too large to move).
    fn clear(&mut self) {
        self.nodes.clear();
        self.tree = None;
        self.heads = [None; CLASSES];
        self.nonempty = 0;
        self.count = 0;
        self.bytes = 0;
    }

    fn node(&self, i: Idx) -> &Node {
        self.nodes.get(i)
    }

    fn node_mut(&mut self, i: Idx) -> &mut Node {
        self.nodes.get_mut(i)
    }

    fn level(&self, t: Option<Idx>) -> u8 {
        t.map_or(0, |i| self.node(i).level)
    }

    fn end(&self, i: Idx) -> u64 {
        let n = self.node(i);
        n.base + n.size
    }

    // The AA tree (Andersson 1993), keyed by base. Keys are unique because
    // free regions are disjoint and never empty.

    fn skew(&mut self, t: Idx) -> Idx {
        match self.node(t).left {
            Some(l) if self.node(l).level == self.node(t).level => {
                self.node_mut(t).left = self.node(l).right;
                self.node_mut(l).right = Some(t);
                l
            }
            _ => t,
        }
    }

    fn split(&mut self, t: Idx) -> Idx {
        let level = self.node(t).level;
        match self.node(t).right {
            Some(r) if self.level(self.node(r).right) == level => {
                self.node_mut(t).right = self.node(r).left;
                let rn = self.node_mut(r);
                rn.left = Some(t);
                rn.level += 1;
                r
            }
            _ => t,
        }
    }

    /// Inserts the detached level-1 node `x` under `t`; returns the new
    /// subtree root.
    fn tree_insert(&mut self, t: Option<Idx>, x: Idx) -> Idx {
        self.insert_below(t, x).0
    }

    /// What a node's parent looks at when it skews and splits: its own
    /// level, and its right child and that child's level.
    fn shape(&self, t: Idx) -> (u8, Option<Idx>, u8) {
        let n = self.node(t);
        (n.level, n.right, self.level(n.right))
    }

    /// [`Regions::tree_insert`], also telling whether the subtree's root
    /// changed in a way its parent's skew or split could see. If not, the
    /// parent's invariants still hold and it needs no work: an insertion
    /// then costs a descent and a short climb instead of a skew and a
    /// split on every level.
    fn insert_below(&mut self, t: Option<Idx>, x: Idx) -> (Idx, bool) {
        let Some(t) = t else { return (x, true) };
        let before = self.shape(t);
        let changed = if self.node(x).base < self.node(t).base {
            let (l, changed) = self.insert_below(self.node(t).left, x);
            self.node_mut(t).left = Some(l);
            changed
        } else {
            let (r, changed) = self.insert_below(self.node(t).right, x);
            self.node_mut(t).right = Some(r);
            changed
        };
        if !changed {
            return (t, false);
        }
        let s = self.skew(t);
        let s = self.split(s);
        (s, s != t || self.shape(s) != before)
    }

    /// Restores the AA invariants at `t` after a removal below it.
    fn rebalance(&mut self, t: Idx) -> Idx {
        let n = self.node(t);
        let want = self.level(n.left).min(self.level(n.right)) + 1;
        // If `t` keeps its level, the removal below changed nothing the
        // skews and splits would fix: children only lost levels, and each
        // child subtree is already valid. This keeps a removal's cost down
        // to a level check per node on the path.
        if want >= n.level {
            return t;
        }
        {
            self.node_mut(t).level = want;
            if let Some(r) = self.node(t).right
                && self.node(r).level > want
            {
                self.node_mut(r).level = want;
            }
        }
        let t = self.skew(t);
        if let Some(r) = self.node(t).right {
            let r = self.skew(r);
            self.node_mut(t).right = Some(r);
            if let Some(rr) = self.node(r).right {
                let rr = self.skew(rr);
                self.node_mut(r).right = Some(rr);
            }
        }
        let t = self.split(t);
        if let Some(r) = self.node(t).right {
            let r = self.split(r);
            self.node_mut(t).right = Some(r);
        }
        t
    }

    /// Detaches the leftmost node under `t`: (what remains, that node).
    fn take_min(&mut self, t: Idx) -> (Option<Idx>, Idx) {
        match self.node(t).left {
            None => (self.node(t).right, t),
            Some(l) => {
                let (rest, min) = self.take_min(l);
                self.node_mut(t).left = rest;
                (Some(self.rebalance(t)), min)
            }
        }
    }

    /// Detaches node `x` from under `t`. The standard algorithm copies the
    /// successor's key into `x`; here the successor node itself takes `x`'s
    /// place, because the class lists name nodes, not keys.
    fn tree_remove(&mut self, t: Option<Idx>, x: Idx) -> Option<Idx> {
        let t = t?;
        let t = if t == x {
            let n = self.node(x);
            match (n.left, n.right) {
                // A node without a left child is at level 1, and so is its
                // right child, which is then a leaf: it can take x's place.
                (None, r) => return r,
                (l, None) => return l,
                (Some(l), Some(r)) => {
                    let level = n.level;
                    let (rest, s) = self.take_min(r);
                    let sn = self.node_mut(s);
                    sn.left = Some(l);
                    sn.right = rest;
                    sn.level = level;
                    s
                }
            }
        } else if self.node(x).base < self.node(t).base {
            let l = self.tree_remove(self.node(t).left, x);
            self.node_mut(t).left = l;
            t
        } else {
            let r = self.tree_remove(self.node(t).right, x);
            self.node_mut(t).right = r;
            t
        };
        Some(self.rebalance(t))
    }

    /// The region with the greatest base below `key`.
    fn before(&self, key: u64) -> Option<Idx> {
        let (mut t, mut best) = (self.tree, None);
        while let Some(i) = t {
            if self.node(i).base < key {
                best = Some(i);
                t = self.node(i).right;
            } else {
                t = self.node(i).left;
            }
        }
        best
    }

    /// The region with the least base at or above `key`.
    fn at_or_after(&self, key: u64) -> Option<Idx> {
        let (mut t, mut best) = (self.tree, None);
        while let Some(i) = t {
            if self.node(i).base >= key {
                best = Some(i);
                t = self.node(i).left;
            } else {
                t = self.node(i).right;
            }
        }
        best
    }

    // Size-class lists.

    fn link(&mut self, i: Idx) {
        let k = class(self.node(i).size);
        let head = self.heads[k];
        let n = self.node_mut(i);
        n.prev = None;
        n.next = head;
        if let Some(h) = head {
            self.node_mut(h).prev = Some(i);
        }
        self.heads[k] = Some(i);
        self.nonempty |= 1 << k;
    }

    fn unlink(&mut self, i: Idx) {
        let n = self.node(i);
        let (k, prev, next) = (class(n.size), n.prev, n.next);
        match prev {
            Some(p) => self.node_mut(p).next = next,
            None => self.heads[k] = next,
        }
        if let Some(x) = next {
            self.node_mut(x).prev = prev;
        }
        if self.heads[k].is_none() {
            self.nonempty &= !(1 << k);
        }
    }

    // Regions as a whole.

    /// Records a new free region. The caller has checked that a node is
    /// free ([`Regions::has_reserve`]): by then the kernel may have acted,
    /// and this cannot be undone.
    fn insert(&mut self, base: u64, size: u64) {
        let node = Node { base, size, left: None, right: None, level: 1, prev: None, next: None };
        let Ok(i) = self.nodes.alloc(node) else {
            panic!("mm: no node, although the reserve was checked");
        };
        self.tree = Some(self.tree_insert(self.tree, i));
        self.link(i);
        self.count += 1;
        self.bytes += size;
    }

    fn remove(&mut self, i: Idx) {
        self.unlink(i);
        self.tree = self.tree_remove(self.tree, i);
        let n = self.nodes.free(i);
        self.count -= 1;
        self.bytes -= n.size;
    }

    /// Moves and resizes a region in place. The caller guarantees that no
    /// other region lies between the old and the new base, so the tree
    /// order holds without relinking.
    fn reshape(&mut self, i: Idx, base: u64, size: u64) {
        let old = self.node(i).size;
        let moves = class(old) != class(size);
        if moves {
            self.unlink(i);
        }
        let n = self.node_mut(i);
        n.base = base;
        n.size = size;
        if moves {
            self.link(i);
        }
        self.bytes = self.bytes - old + size;
    }

    /// Where in region `i` an `align`-aligned range of `size` bytes starts.
    fn fit(&self, i: Idx, size: u64, align: u64) -> Option<u64> {
        let addr = self.node(i).base.checked_next_multiple_of(align)?;
        (addr.checked_add(size)? <= self.end(i)).then_some(addr)
    }

    /// A region holding an aligned range, and the range's start.
    ///
    /// A region of `need = size + align - PAGE_SIZE` bytes holds an aligned
    /// range wherever it starts (its base is page aligned), and so does any
    /// region in a class at or above ceil(log2(need)): the first non-empty
    /// such class answers in O(1). Failing that, regions in the classes
    /// from floor(log2(size)) up are tried one by one for a lucky
    /// alignment: linear in those classes' lengths, and only when no region
    /// is certain to fit. Smaller classes hold only regions below `size`.
    fn find(&self, size: u64, align: u64) -> Option<(Idx, u64)> {
        let sure = size.checked_add(align - PAGE_SIZE).map_or(u32::MAX, ceil_log2).max(CLASS_MIN);
        if sure <= CLASS_MAX {
            let above = self.nonempty & (!0 << (sure - CLASS_MIN));
            if above != 0
                && let Some(i) = self.heads[above.trailing_zeros() as usize]
                && let Some(addr) = self.fit(i, size, align)
            {
                return Some((i, addr));
            }
        }
        let below = (sure - 1).min(CLASS_MAX);
        let last = below.checked_sub(CLASS_MIN)? as usize;
        for k in class(size)..=last {
            let mut cur = self.heads[k];
            while let Some(i) = cur {
                if let Some(addr) = self.fit(i, size, align) {
                    return Some((i, addr));
                }
                cur = self.node(i).next;
            }
        }
        None
    }

    /// Takes `[addr, addr + size)` out of region `i`, keeping what remains
    /// on either side.
    fn carve(&mut self, i: Idx, addr: u64, size: u64) {
        let (base, end) = (self.node(i).base, self.end(i));
        let tail = addr + size;
        match (addr > base, tail < end) {
            (true, true) => {
                self.reshape(i, base, addr - base);
                self.insert(tail, end - tail);
            }
            (true, false) => self.reshape(i, base, addr - base),
            (false, true) => self.reshape(i, tail, end - tail),
            (false, false) => self.remove(i),
        }
    }

    fn find_exact(&self, base: u64) -> Option<Idx> {
        self.at_or_after(base).filter(|&i| self.node(i).base == base)
    }

    /// Whether one operation's worth of nodes ([`NODES_PER_OP`]) is free.
    fn has_reserve(&self) -> bool {
        self.nodes.free_count() >= NODES_PER_OP
    }

    /// Whether any byte of `[base, end)` is free. Only the last region
    /// starting below `end` can overlap: every earlier one ends before it
    /// starts.
    fn overlaps(&self, base: u64, end: u64) -> bool {
        self.before(end).is_some_and(|p| self.end(p) > base)
    }

    /// The region holding all of `[base, end)` (`base < end`), if one does.
    fn containing(&self, base: u64, end: u64) -> Option<Idx> {
        // The last region starting at or below `base`; `base < end` keeps
        // `base + 1` from wrapping.
        self.before(base + 1).filter(|&i| self.end(i) >= end)
    }

    /// Records `[base, base + size)`, none of which is free, as free,
    /// merged with the regions touching it that lie in `[lo, hi)`: a
    /// neighbour beyond the bounds stays a region of its own. Takes a node
    /// only when it merges with neither neighbour; the caller has checked
    /// [`Regions::has_reserve`].
    fn release(&mut self, base: u64, size: u64, lo: u64, hi: u64) {
        let end = base + size;
        let pred = self.before(base).filter(|&p| self.end(p) == base && self.node(p).base >= lo);
        let succ = self.at_or_after(end).filter(|&s| self.node(s).base == end && end < hi);
        match (pred, succ) {
            (Some(p), Some(s)) => {
                let (pbase, psize, ssize) = (self.node(p).base, self.node(p).size, self.node(s).size);
                self.remove(s);
                self.reshape(p, pbase, psize + size + ssize);
            }
            (Some(p), None) => {
                let (pbase, psize) = (self.node(p).base, self.node(p).size);
                self.reshape(p, pbase, psize + size);
            }
            (None, Some(s)) => {
                let ssize = self.node(s).size;
                self.reshape(s, base, size + ssize);
            }
            (None, None) => self.insert(base, size),
        }
    }

    /// Checks the tree, the lists and the counters, and shows every region
    /// to `visit` in address order.
    fn check(&self, visit: &mut dyn FnMut(u64, u64) -> Result<(), &'static str>) -> Result<(), &'static str> {
        let mut walk = Walk { count: 0, bytes: 0, prev_end: None };
        self.check_subtree(self.tree, 0, &mut walk, visit)?;
        if walk.count != self.count || walk.count != self.nodes.used() {
            return Err("the tree, the region count and the slab disagree on the number of regions");
        }
        if walk.bytes != self.bytes {
            return Err("the free byte count is not the sum of the free regions");
        }
        let mut listed = 0;
        for k in 0..CLASSES {
            if (self.nonempty >> k & 1 == 1) != self.heads[k].is_some() {
                return Err("the class bitmap does not match the non-empty class lists");
            }
            let (mut prev, mut cur) = (None, self.heads[k]);
            while let Some(i) = cur {
                listed += 1;
                if listed > self.count {
                    return Err("the class lists hold more entries than there are regions");
                }
                let n = self.node(i);
                if n.prev != prev {
                    return Err("a class list's back link is wrong");
                }
                if class(n.size) != k {
                    return Err("a region is in the wrong size class");
                }
                if self.find_exact(n.base) != Some(i) {
                    return Err("a listed region is not in the tree");
                }
                (prev, cur) = (cur, n.next);
            }
        }
        if self.nonempty >> CLASSES != 0 {
            return Err("the class bitmap has bits beyond the last class");
        }
        if listed != self.count {
            return Err("a region is in no class list");
        }
        Ok(())
    }

    fn check_subtree(
        &self,
        t: Option<Idx>,
        depth: usize,
        walk: &mut Walk,
        visit: &mut dyn FnMut(u64, u64) -> Result<(), &'static str>,
    ) -> Result<(), &'static str> {
        let Some(i) = t else { return Ok(()) };
        if depth > DEPTH_MAX {
            return Err("the tree is deeper than a balanced tree can be (a cycle?)");
        }
        let n = self.node(i);
        if n.level == 0 {
            return Err("a tree node has level 0");
        }
        if n.left.is_some() && self.level(n.left) + 1 != n.level {
            return Err("AA: a left child is not exactly one level below its parent");
        }
        if let Some(r) = n.right {
            let rl = self.node(r).level;
            if rl != n.level && rl + 1 != n.level {
                return Err("AA: a right child is neither level with nor one below its parent");
            }
            if self.level(self.node(r).right) >= n.level {
                return Err("AA: two horizontal links in a row");
            }
        }
        if n.level > 1 && (n.left.is_none() || n.right.is_none()) {
            return Err("AA: a node above level 1 lacks a child");
        }
        self.check_subtree(n.left, depth + 1, walk, visit)?;
        if n.size == 0 {
            return Err("an empty free region");
        }
        let end = n.base.checked_add(n.size).ok_or("a free region ends beyond the address space")?;
        if walk.prev_end.is_some_and(|e| e > n.base) {
            return Err("free regions overlap or are out of address order");
        }
        walk.prev_end = Some(end);
        walk.count += 1;
        walk.bytes += n.size;
        visit(n.base, n.size)?;
        self.check_subtree(n.right, depth + 1, walk, visit)
    }
}

struct Walk {
    count: usize,
    bytes: u64,
    prev_end: Option<u64>,
}

/// A RAM capability added with [`MemoryManager::add`] and its memory.
#[derive(Clone, Copy)]
struct Root<Cap> {
    base: u64,
    size: u64,
    cap: Cap,
}

impl<Cap> Root<Cap> {
    fn end(&self) -> u64 {
        self.base + self.size
    }
}

/// Hands out RAM from the root capabilities it was given.
pub struct MemoryManager<C: RamCaps> {
    caps: C,
    /// `roots[..nroots]` are `Some`, sorted by base and disjoint.
    roots: [Option<Root<C::Cap>>; MAX_ROOTS],
    nroots: usize,
    total: u64,
    free: Regions,
}

impl<C: RamCaps> MemoryManager<C> {
    /// A manager with no memory and no nodes: grow its slab, then add RAM.
    pub const fn new(caps: C) -> Self {
        MemoryManager { caps, roots: [const { None }; MAX_ROOTS], nroots: 0, total: 0, free: Regions::new() }
    }

    pub fn caps(&mut self) -> &mut C {
        &mut self.caps
    }

    pub fn caps_ref(&self) -> &C {
        &self.caps
    }

    pub fn free_bytes(&self) -> u64 {
        self.free.bytes
    }

    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    pub fn free_region_count(&self) -> usize {
        self.free.count
    }

    pub fn root_count(&self) -> usize {
        self.nroots
    }

    /// Nodes available before the slab must grow.
    pub fn nodes_free(&self) -> usize {
        self.free.nodes.free_count()
    }

    /// Nodes the slab holds, used or free.
    pub fn node_capacity(&self) -> usize {
        self.free.nodes.capacity()
    }

    /// Whether the node slab takes another chunk (it holds at most
    /// [`aos::slab::CHUNKS_MAX`]).
    pub fn node_slab_has_room(&self) -> bool {
        self.free.nodes.has_room()
    }

    /// Gives the node slab more memory (see [`aos::slab::carve`] and
    /// [`node_bytes`]).
    pub fn grow_nodes(&mut self, mem: &'static mut [MaybeUninit<Entry<Node>>]) -> Result<(), GrowError> {
        self.free.nodes.grow(mem)
    }

    fn root(&self, k: usize) -> Root<C::Cap> {
        self.roots[k].expect("roots below nroots are present")
    }

    fn root_index(&self, addr: u64) -> Option<usize> {
        let above = self.roots[..self.nroots].partition_point(|r| r.as_ref().is_some_and(|r| r.base <= addr));
        let k = above.checked_sub(1)?;
        (addr < self.root(k).end()).then_some(k)
    }

    /// Refuses before anything changes if one operation could run out of
    /// nodes half way, after the kernel has acted.
    fn reserve(&self) -> Result<(), MmError> {
        if self.free.has_reserve() { Ok(()) } else { Err(MmError::NoNodes) }
    }

    /// Adds a RAM capability's memory, all of it free. Its base and size
    /// must be page multiples (and base + size must not wrap: `InvalidSize`).
    pub fn add(&mut self, cap: C::Cap) -> Result<(), MmError> {
        let info = self.caps.identify(cap)?;
        if !info.is_ram {
            return Err(MmError::NotRam);
        }
        if !info.base.is_multiple_of(PAGE_SIZE) || !info.size.is_multiple_of(PAGE_SIZE) {
            return Err(MmError::Misaligned);
        }
        let end = info.base.checked_add(info.size).filter(|_| info.size > 0).ok_or(MmError::InvalidSize)?;
        let at = self.roots[..self.nroots].partition_point(|r| r.as_ref().is_some_and(|r| r.base < info.base));
        let overlaps_prev = at > 0 && self.root(at - 1).end() > info.base;
        let overlaps_next = at < self.nroots && self.root(at).base < end;
        if overlaps_prev || overlaps_next {
            return Err(MmError::Overlap);
        }
        if self.nroots == MAX_ROOTS {
            return Err(MmError::TooManyRegions);
        }
        self.reserve()?;
        self.roots[at..=self.nroots].rotate_right(1);
        self.roots[at] = Some(Root { base: info.base, size: info.size, cap });
        self.nroots += 1;
        self.total += info.size;
        // Never merged with a neighbouring root's free memory, even if
        // adjacent: each range must be retyped from the one root it is in.
        self.free.insert(info.base, info.size);
        Ok(())
    }

    /// [`MemoryManager::alloc_aligned`] at page alignment.
    pub fn alloc(&mut self, size: u64) -> Result<C::Cap, MmError> {
        self.alloc_aligned(size, PAGE_SIZE)
    }

    /// A new RAM capability for at least `size` bytes (rounded up to whole
    /// pages) at an address that is a multiple of `align` (a power of two;
    /// at least a page).
    pub fn alloc_aligned(&mut self, size: u64, align: u64) -> Result<C::Cap, MmError> {
        if size == 0 {
            return Err(MmError::InvalidSize);
        }
        let size = size.checked_next_multiple_of(PAGE_SIZE).ok_or(MmError::InvalidSize)?;
        if !align.is_power_of_two() {
            return Err(MmError::InvalidAlignment);
        }
        let align = align.max(PAGE_SIZE);
        self.reserve()?;
        let (i, addr) = self.free.find(size, align).ok_or(MmError::OutOfMemory)?;
        let root = self.root(self.root_index(addr).expect("free memory lies in a root"));
        let cap = if addr == root.base && size == root.size {
            self.caps.copy_cap(root.cap)?
        } else {
            self.caps.retype_ram(root.cap, addr - root.base, size)?
        };
        self.free.carve(i, addr, size);
        Ok(cap)
    }

    /// Returns the memory of `cap`, which must be all or a page-aligned
    /// piece of an allocation, and deletes `cap`.
    ///
    /// If another capability still covers any of the memory (a copy the
    /// client kept, or the allocation the piece was retyped from), nothing
    /// happens and the answer is `StillInUse`: `cap` stays as it was, and so
    /// does the memory. Free or delete the other capability first, then free
    /// this one again. The kernel answers that question without changing
    /// anything ([`RamCaps::covered_by_others`]); `cap` is deleted only once
    /// it is known that its memory then comes back. If the query or the
    /// delete fails, the kernel's error is returned and nothing has changed.
    pub fn free(&mut self, cap: C::Cap) -> Result<(), MmError> {
        let info = self.caps.identify(cap)?;
        if !info.is_ram {
            return Err(MmError::NotRam);
        }
        let (base, size) = (info.base, info.size);
        let aligned = size > 0 && base.is_multiple_of(PAGE_SIZE) && size.is_multiple_of(PAGE_SIZE);
        let end = base.checked_add(size).filter(|_| aligned).ok_or(MmError::NotAllocated)?;
        let k = self.root_index(base).ok_or(MmError::NotAllocated)?;
        let root = self.root(k);
        if end > root.end() || cap == root.cap {
            return Err(MmError::NotAllocated);
        }
        if self.free.overlaps(base, end) {
            return Err(MmError::NotAllocated);
        }
        self.reserve()?;
        if self.caps.covered_by_others(root.cap, cap, base - root.base, size)? {
            return Err(MmError::StillInUse);
        }
        self.caps.delete(cap)?;
        // Never merged across a root boundary: each range must be retyped
        // from the one root it is in.
        self.free.release(base, size, root.base, root.end());
        Ok(())
    }

    /// Verifies every invariant of the bookkeeping; for tests and debugging.
    #[doc(hidden)]
    pub fn check(&self) -> Result<(), &'static str> {
        let mut total = 0u64;
        for k in 0..MAX_ROOTS {
            let Some(r) = self.roots[k] else {
                if k < self.nroots {
                    return Err("a root below the root count is missing");
                }
                continue;
            };
            if k >= self.nroots {
                return Err("a root beyond the root count");
            }
            if r.size == 0 || !r.base.is_multiple_of(PAGE_SIZE) || !r.size.is_multiple_of(PAGE_SIZE) {
                return Err("a root is empty or not page aligned");
            }
            if r.base.checked_add(r.size).is_none() {
                return Err("a root ends beyond the address space");
            }
            if k > 0 && self.root(k - 1).end() > r.base {
                return Err("roots overlap or are out of order");
            }
            total += r.size;
        }
        if total != self.total {
            return Err("the total byte count is not the sum of the roots");
        }
        let mut prev: Option<(u64, u64)> = None;
        self.free.check(&mut |base, size| {
            if !base.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
                return Err("a free region is not page aligned");
            }
            let root = self.root(self.root_index(base).ok_or("a free region lies outside every root")?);
            if base + size > root.end() {
                return Err("a free region crosses the end of its root");
            }
            if prev.is_some_and(|(pbase, pend)| pend == base && pbase >= root.base) {
                return Err("two adjacent free regions in one root were not coalesced");
            }
            prev = Some((base, base + size));
            Ok(())
        })?;
        if self.free.bytes > self.total {
            return Err("more bytes free than the roots hold");
        }
        Ok(())
    }
}

/// Why [`AddressRanges`] refused. On every error it is as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeError {
    /// Fewer than [`NODES_PER_OP`] nodes are free; grow the slab first.
    NoNodes,
    /// A base or size not a multiple of a page, or an alignment that is not
    /// a power of two.
    Misaligned,
    /// Empty, or running past the end of the address space.
    InvalidSize,
    /// `add`: part of the range is free already.
    Overlap,
    /// `take`: part of the range is not free.
    NotFree,
    /// `free`: part of the range is free already.
    NotAllocated,
    /// `alloc`: no free range holds one of that size and alignment.
    OutOfSpace,
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RangeError::NoNodes => "the node slab is too low for an operation; grow it first",
            RangeError::Misaligned => {
                "the base or size is not a multiple of 4 KiB, or the alignment not a power of two"
            }
            RangeError::InvalidSize => "the range is empty or runs past the end of the address space",
            RangeError::Overlap => "the range overlaps one that is free already",
            RangeError::NotFree => "the range is not wholly free",
            RangeError::NotAllocated => "part of the range is free already",
            RangeError::OutOfSpace => "no free range holds one of that size and alignment",
        })
    }
}

impl core::error::Error for RangeError {}

/// Free ranges of an address space with nothing behind them: the free-region
/// index of [`MemoryManager`] without roots or capabilities, for a virtual
/// address allocator (`paging_alloc`). Touching free ranges always merge.
///
/// Every range is page aligned and ends below 2^64, so the top page of the
/// address space can never be free. Like [`MemoryManager`] it never
/// allocates: every mutating operation refuses with `NoNodes`, before it
/// changes anything, unless [`NODES_PER_OP`] nodes are free. Errors in the
/// arguments and in the request itself come before `NoNodes`, since growing
/// the slab would not fix them; `OutOfSpace` comes after, as in
/// [`MemoryManager::alloc_aligned`].
pub struct AddressRanges {
    free: Regions,
}

impl Default for AddressRanges {
    fn default() -> Self {
        AddressRanges::new()
    }
}

/// `[base, base + size)` as `(base, end)` if both are page multiples and
/// the range is neither empty nor wraps.
fn page_range(base: u64, size: u64) -> Result<(u64, u64), RangeError> {
    if !base.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
        return Err(RangeError::Misaligned);
    }
    let end = base.checked_add(size).filter(|_| size > 0).ok_or(RangeError::InvalidSize)?;
    Ok((base, end))
}

impl AddressRanges {
    /// Nothing free and no nodes: grow the slab, then add ranges.
    pub const fn new() -> Self {
        AddressRanges { free: Regions::new() }
    }

    /// Gives the node slab more memory (see [`aos::slab::carve`] and
    /// [`node_bytes`]).
    pub fn grow_nodes(&mut self, mem: &'static mut [MaybeUninit<Entry<Node>>]) -> Result<(), GrowError> {
        self.free.nodes.grow(mem)
    }

    /// Forgets every range and every node chunk, in place, as `new` would
    /// make it (too large to build on a small stack and move).
    pub fn clear(&mut self) {
        self.free.clear();
    }

    /// Nodes available before the slab must grow.
    pub fn nodes_free(&self) -> usize {
        self.free.nodes.free_count()
    }

    /// Whether the node slab takes another chunk.
    pub fn node_slab_has_room(&self) -> bool {
        self.free.nodes.has_room()
    }

    fn reserve(&self) -> Result<(), RangeError> {
        if self.free.has_reserve() { Ok(()) } else { Err(RangeError::NoNodes) }
    }

    /// Makes `[base, base + size)` free, merged with the free ranges it
    /// touches. `Overlap` if any of it is free already.
    pub fn add(&mut self, base: u64, size: u64) -> Result<(), RangeError> {
        self.give(base, size, RangeError::Overlap)
    }

    /// Gives back `[base, base + size)`, merged with the free ranges it
    /// touches. `NotAllocated` if any of it is free already. Whether the
    /// range was ever added is not known here: freeing space never added
    /// adds it.
    pub fn free(&mut self, base: u64, size: u64) -> Result<(), RangeError> {
        self.give(base, size, RangeError::NotAllocated)
    }

    /// `add` and `free`, which differ only in what an overlap means.
    fn give(&mut self, base: u64, size: u64, overlap: RangeError) -> Result<(), RangeError> {
        let (base, end) = page_range(base, size)?;
        if self.free.overlaps(base, end) {
            return Err(overlap);
        }
        self.reserve()?;
        // No roots, so no bounds: a page-aligned end is below u64::MAX, and
        // every touching neighbour merges.
        self.free.release(base, size, 0, u64::MAX);
        Ok(())
    }

    /// Takes a free range of at least `size` bytes (rounded up to whole
    /// pages) at a multiple of `align` (a power of two; a page at least,
    /// smaller ones are raised to a page) and returns its base. Which range
    /// is taken follows the policy of [`MemoryManager::alloc_aligned`], not
    /// lowest address first.
    pub fn alloc(&mut self, size: u64, align: u64) -> Result<u64, RangeError> {
        if size == 0 {
            return Err(RangeError::InvalidSize);
        }
        let size = size.checked_next_multiple_of(PAGE_SIZE).ok_or(RangeError::InvalidSize)?;
        if !align.is_power_of_two() {
            return Err(RangeError::Misaligned);
        }
        self.reserve()?;
        let (i, addr) = self.free.find(size, align.max(PAGE_SIZE)).ok_or(RangeError::OutOfSpace)?;
        self.free.carve(i, addr, size);
        Ok(addr)
    }

    /// Takes exactly `[base, base + size)`, which must all be free (for a
    /// mapping at a fixed address); `NotFree` otherwise.
    pub fn take(&mut self, base: u64, size: u64) -> Result<(), RangeError> {
        let (base, end) = page_range(base, size)?;
        let i = self.free.containing(base, end).ok_or(RangeError::NotFree)?;
        self.reserve()?;
        self.free.carve(i, base, size);
        Ok(())
    }

    /// Whether every byte of `[base, base + size)` is free; false for an
    /// empty or wrapping range.
    pub fn is_free(&self, base: u64, size: u64) -> bool {
        base.checked_add(size).filter(|_| size > 0).is_some_and(|end| self.free.containing(base, end).is_some())
    }

    pub fn free_bytes(&self) -> u64 {
        self.free.bytes
    }

    /// Number of free ranges.
    pub fn count(&self) -> usize {
        self.free.count
    }

    /// The free ranges as `(base, size)`, in address order. Each step is a
    /// tree search from the root, O(log n), so iterating needs no stack.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let regions = &self.free;
        core::iter::successors(regions.at_or_after(0), move |&i| regions.at_or_after(regions.end(i)))
            .map(move |i| (regions.node(i).base, regions.node(i).size))
    }

    /// Verifies every invariant of the bookkeeping; for tests and debugging.
    pub fn check(&self) -> Result<(), &'static str> {
        let mut prev_end = None;
        self.free.check(&mut |base, size| {
            if !base.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
                return Err("a free range is not page aligned");
            }
            if prev_end == Some(base) {
                return Err("two touching free ranges were not merged");
            }
            prev_end = Some(base + size);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::boxed::Box;
    use std::collections::{BTreeMap, BTreeSet};
    use std::vec::Vec;
    use std::{format, vec};

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    /// The code injected faults fail with, distinct from anything the model
    /// kernel says on its own.
    const FAULT: ErrorCode = ErrorCode::InvalidCommand;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct Cap(u32);

    struct Object {
        /// Shared by copies: what "derived from" refers to.
        obj: u32,
        /// The objects this one was retyped from, root first.
        ancestors: Vec<u32>,
        base: u64,
        size: u64,
        ram: bool,
    }

    impl Object {
        fn end(&self) -> u64 {
            self.base + self.size
        }
    }

    /// A model kernel: root and derived RAM capabilities, copies, the
    /// no-overlap rule of retype and the query that asks it in advance, plus
    /// fault injection. Client operations (`split`, `copy`, `kill`) bypass
    /// the injected faults.
    #[derive(Default)]
    struct Fake {
        caps: BTreeMap<u32, Object>,
        /// Derived capabilities by base, for overlap queries.
        derived: BTreeSet<(u64, u32)>,
        widest: u64,
        next: u32,
        fail_identify: Option<ErrorCode>,
        /// (calls to let through first, code)
        fail_retype: Option<(u32, ErrorCode)>,
        fail_delete: Option<(u32, ErrorCode)>,
        fail_covered: Option<(u32, ErrorCode)>,
    }

    fn take_fault(slot: &mut Option<(u32, ErrorCode)>) -> Option<ErrorCode> {
        match slot {
            Some((0, code)) => {
                let code = *code;
                *slot = None;
                Some(code)
            }
            Some((n, _)) => {
                *n -= 1;
                None
            }
            None => None,
        }
    }

    impl Fake {
        fn insert(&mut self, o: Object) -> Cap {
            self.next += 1;
            let id = self.next;
            if !o.ancestors.is_empty() {
                self.derived.insert((o.base, id));
                self.widest = self.widest.max(o.size);
            }
            self.caps.insert(id, o);
            Cap(id)
        }

        fn new_obj(&mut self) -> u32 {
            self.next += 1;
            self.next
        }

        /// A root capability (as handed out at boot).
        fn root(&mut self, base: u64, size: u64) -> Cap {
            let obj = self.new_obj();
            self.insert(Object { obj, ancestors: vec![], base, size, ram: true })
        }

        /// A capability to something other than RAM (a device frame).
        fn device(&mut self, base: u64, size: u64) -> Cap {
            let obj = self.new_obj();
            self.insert(Object { obj, ancestors: vec![], base, size, ram: false })
        }

        fn live(&self, c: Cap) -> bool {
            self.caps.contains_key(&c.0)
        }

        fn range(&self, c: Cap) -> (u64, u64) {
            let o = &self.caps[&c.0];
            (o.base, o.end())
        }

        fn derived_count(&self) -> usize {
            self.derived.len()
        }

        /// The rule behind retype's RetypeOverlap: whether a live
        /// capability derived from object `obj`, other than `except`,
        /// overlaps `[base, end)`.
        fn covered(&self, obj: u32, base: u64, end: u64, except: Option<Cap>) -> bool {
            let from = base.saturating_sub(self.widest);
            self.derived.range((from, 0)..(end, 0)).any(|&(_, id)| {
                let o = &self.caps[&id];
                o.end() > base && o.ancestors.contains(&obj) && except != Some(Cap(id))
            })
        }

        /// The client retypes part of one of its RAM capabilities.
        fn split(&mut self, src: Cap, offset: u64, size: u64) -> Result<Cap, ErrorCode> {
            let s = self.caps.get(&src.0).ok_or(ErrorCode::SlotEmpty)?;
            if !s.ram {
                return Err(ErrorCode::WrongCapType);
            }
            if size == 0 || !offset.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
                return Err(ErrorCode::InvalidArgument);
            }
            if offset.checked_add(size).is_none_or(|e| e > s.size) {
                return Err(ErrorCode::InvalidArgument);
            }
            if offset == 0 && size == s.size {
                // As the kernel: that would be a copy.
                return Err(ErrorCode::IllegalRetype);
            }
            let (base, end) = (s.base + offset, s.base + offset + size);
            if self.covered(s.obj, base, end, None) {
                return Err(ErrorCode::RetypeOverlap);
            }
            let mut ancestors = s.ancestors.clone();
            ancestors.push(s.obj);
            let obj = self.new_obj();
            Ok(self.insert(Object { obj, ancestors, base, size, ram: true }))
        }

        /// The client copies a capability.
        fn copy(&mut self, c: Cap) -> Cap {
            let o = &self.caps[&c.0];
            let dup = Object { obj: o.obj, ancestors: o.ancestors.clone(), base: o.base, size: o.size, ram: o.ram };
            self.insert(dup)
        }

        /// The client deletes a capability.
        fn kill(&mut self, c: Cap) -> Result<(), ErrorCode> {
            let o = self.caps.remove(&c.0).ok_or(ErrorCode::SlotEmpty)?;
            self.derived.remove(&(o.base, c.0));
            Ok(())
        }

        /// A capability the manager did not hand out, over memory of `root`
        /// (as a client holding the root could make).
        fn forge(&mut self, root: Cap, base: u64, size: u64) -> Cap {
            let offset = base - self.caps[&root.0].base;
            self.split(root, offset, size).unwrap()
        }
    }

    impl RamCaps for Fake {
        type Cap = Cap;

        fn identify(&mut self, cap: Cap) -> Result<CapInfo, ErrorCode> {
            if let Some(code) = self.fail_identify.take() {
                return Err(code);
            }
            let o = self.caps.get(&cap.0).ok_or(ErrorCode::SlotEmpty)?;
            Ok(CapInfo { base: o.base, size: o.size, is_ram: o.ram })
        }

        fn retype_ram(&mut self, src: Cap, offset: u64, size: u64) -> Result<Cap, ErrorCode> {
            if let Some(code) = take_fault(&mut self.fail_retype) {
                return Err(code);
            }
            self.split(src, offset, size)
        }

        fn copy_cap(&mut self, cap: Cap) -> Result<Cap, ErrorCode> {
            if let Some(code) = take_fault(&mut self.fail_retype) {
                return Err(code);
            }
            if !self.live(cap) {
                return Err(ErrorCode::SlotEmpty);
            }
            Ok(self.copy(cap))
        }

        fn delete(&mut self, cap: Cap) -> Result<(), ErrorCode> {
            if let Some(code) = take_fault(&mut self.fail_delete) {
                return Err(code);
            }
            self.kill(cap)
        }

        fn covered_by_others(&mut self, src: Cap, except: Cap, offset: u64, size: u64) -> Result<bool, ErrorCode> {
            if let Some(code) = take_fault(&mut self.fail_covered) {
                return Err(code);
            }
            let s = self.caps.get(&src.0).ok_or(ErrorCode::SlotEmpty)?;
            if !s.ram {
                return Err(ErrorCode::WrongCapType);
            }
            if offset.checked_add(size).is_none_or(|e| e > s.size) {
                return Err(ErrorCode::InvalidArgument);
            }
            let (obj, base) = (s.obj, s.base + offset);
            // As the kernel: other copies of `src` count too.
            let copies = self.caps.iter().any(|(&id, o)| id != src.0 && Cap(id) != except && o.obj == obj);
            Ok(copies || self.covered(obj, base, base + size, Some(except)))
        }
    }

    /// xorshift64*: reproducible randomness without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                v.swap(i, self.below(i as u64 + 1) as usize);
            }
        }
    }

    fn chunk(n: usize) -> &'static mut [MaybeUninit<Entry<Node>>] {
        Box::leak((0..n).map(|_| MaybeUninit::uninit()).collect::<Vec<_>>().into_boxed_slice())
    }

    type Mm = MemoryManager<Fake>;

    fn manager(nodes: usize) -> Mm {
        let mut m = MemoryManager::new(Fake::default());
        if nodes > 0 {
            m.grow_nodes(chunk(nodes)).unwrap();
        }
        m
    }

    fn add_root(m: &mut Mm, base: u64, size: u64) -> Cap {
        let c = m.caps().root(base, size);
        m.add(c).unwrap();
        c
    }

    fn range(m: &mut Mm, c: Cap) -> (u64, u64) {
        m.caps().range(c)
    }

    fn ok(m: &Mm) {
        if let Err(e) = m.check() {
            panic!("invariant broken: {e}");
        }
    }

    fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
        a.0 < b.1 && b.0 < a.1
    }

    /// Allocates and checks what came back against the roots and `live`.
    fn alloc_checked(m: &mut Mm, roots: &[(u64, u64)], live: &[(u64, u64)], size: u64, align: u64) -> Cap {
        let c = m.alloc_aligned(size, align).unwrap_or_else(|e| panic!("alloc {size:#x} align {align:#x}: {e}"));
        let r = range(m, c);
        assert_eq!(r.1 - r.0, size.next_multiple_of(PAGE_SIZE), "size rounded up to pages, no more");
        assert_eq!(r.0 % align.max(PAGE_SIZE), 0, "aligned");
        assert!(roots.iter().any(|&(b, s)| b <= r.0 && r.1 <= b + s), "inside one root");
        assert!(!live.iter().any(|&l| overlaps(l, r)), "{r:x?} overlaps a live allocation");
        ok(m);
        c
    }

    #[test]
    fn sizes_and_alignments() {
        let roots = [(GIB, 16 * GIB), (0x8000, 3 * MIB)];
        let mut m = manager(1024);
        for &(b, s) in &roots {
            add_root(&mut m, b, s);
        }
        let sizes = [1, 4096, 4097, 8192, 12288, 65536, MIB, 3 * MIB + 5, 17 * MIB, 64 * MIB];
        let aligns = [1, 2, 4096, 8192, 1 << 16, 1 << 21, 1 << 26, GIB];
        let (mut caps, mut live) = (vec![], vec![]);
        for &size in &sizes {
            for &align in &aligns {
                let c = alloc_checked(&mut m, &roots, &live, size, align);
                live.push(range(&mut m, c));
                caps.push(c);
            }
        }
        let used: u64 = live.iter().map(|r| r.1 - r.0).sum();
        assert_eq!(m.free_bytes(), m.total_bytes() - used);
        for c in caps {
            m.free(c).unwrap();
            ok(&m);
        }
        assert_eq!(m.free_bytes(), m.total_bytes());
        assert_eq!(m.free_region_count(), 2);
    }

    #[test]
    fn fallback_finds_a_lucky_alignment() {
        // The one region is 1 MiB at a 1 MiB boundary: its class cannot
        // promise a 1 MiB-aligned MiB, but it holds one.
        let mut m = manager(8);
        add_root(&mut m, 5 * MIB, MIB);
        let c = m.alloc_aligned(MIB, MIB).unwrap();
        assert_eq!(range(&mut m, c), (5 * MIB, 6 * MIB));
        assert_eq!((m.free_bytes(), m.free_region_count()), (0, 0));
        ok(&m);
        // 3 pages at an 8 KiB boundary inside 4 KiB + 16 KiB: only the
        // fallback looks at the 16 KiB region's class.
        let mut m = manager(8);
        add_root(&mut m, 0x1_1000, 0x5000);
        assert_eq!(m.alloc_aligned(0x4000, 0x8000), Err(MmError::OutOfMemory));
        let c = m.alloc_aligned(0x3000, 0x2000).unwrap();
        assert_eq!(range(&mut m, c), (0x1_2000, 0x1_5000));
        assert_eq!(m.free_region_count(), 2);
        ok(&m);
    }

    #[test]
    fn interleaved_frees_reuse_memory() {
        let roots = [(0x4000_0000, 32 * MIB)];
        let mut m = manager(256);
        add_root(&mut m, roots[0].0, roots[0].1);
        let mut rng = Rng(7);
        let mut live: Vec<(Cap, (u64, u64))> = vec![];
        for round in 0..2000 {
            if live.len() < 40 && (rng.below(3) != 0 || live.is_empty()) {
                let size = (1 + rng.below(64)) * PAGE_SIZE - rng.below(PAGE_SIZE);
                let align = 1 << (12 + rng.below(8));
                let ranges: Vec<_> = live.iter().map(|l| l.1).collect();
                let c = alloc_checked(&mut m, &roots, &ranges, size, align);
                live.push((c, range(&mut m, c)));
            } else {
                let (c, _) = live.swap_remove(rng.below(live.len() as u64) as usize);
                m.free(c).unwrap();
                ok(&m);
            }
            let used: u64 = live.iter().map(|l| l.1.1 - l.1.0).sum();
            assert_eq!(m.free_bytes() + used, m.total_bytes(), "round {round}");
        }
    }

    #[test]
    fn exhaustion_then_freeing_everything_coalesces_per_root() {
        // The second root starts where the first ends: their free memory
        // must stay two regions.
        let roots = [(0x1000_0000, 16 * MIB), (0x1100_0000, 8 * MIB), (0x3000_0000, 5 * MIB + 0x3000)];
        let mut m = manager(4096);
        for &(b, s) in &roots {
            add_root(&mut m, b, s);
        }
        assert_eq!(m.root_count(), 3);
        assert_eq!(m.free_region_count(), 3);
        let mut rng = Rng(99);
        let mut caps = vec![];
        loop {
            match m.alloc((1 + rng.below(256)) * PAGE_SIZE) {
                Ok(c) => caps.push(c),
                Err(MmError::OutOfMemory) => break,
                Err(e) => panic!("{e}"),
            }
        }
        while let Ok(c) = m.alloc(PAGE_SIZE) {
            caps.push(c);
        }
        assert_eq!(m.free_bytes(), 0, "a page was free but not found");
        assert_eq!(m.free_region_count(), 0);
        ok(&m);
        rng.shuffle(&mut caps);
        for c in caps {
            m.free(c).unwrap();
            ok(&m);
        }
        assert_eq!(m.free_bytes(), m.total_bytes());
        assert_eq!(m.free_region_count(), 3, "one region per root");
        assert_eq!(m.caps().derived_count(), 0, "every capability handed out was deleted");
    }

    #[test]
    fn equal_allocs_and_frees_never_run_out() {
        let mut m = manager(64);
        add_root(&mut m, 0x8000_0000, 64 * MIB);
        let mut rng = Rng(3);
        let mut fifo = std::collections::VecDeque::new();
        for i in 0..100_000 {
            let size = (1 + rng.below(256)) * PAGE_SIZE;
            let align = 1 << (12 + rng.below(6));
            let c = m.alloc_aligned(size, align).unwrap_or_else(|e| panic!("step {i}: {e}"));
            fifo.push_back(c);
            if fifo.len() > 16 {
                m.free(fifo.pop_front().unwrap()).unwrap();
            }
        }
        for c in fifo {
            m.free(c).unwrap();
        }
        ok(&m);
        assert_eq!((m.free_bytes(), m.free_region_count()), (m.total_bytes(), 1));
    }

    #[test]
    fn many_regions_stay_balanced() {
        let n = 20_000u64;
        let mut m = manager(n as usize);
        add_root(&mut m, 0, n * PAGE_SIZE);
        let caps: Vec<_> = (0..n).map(|_| m.alloc(PAGE_SIZE).unwrap()).collect();
        let (odd, even): (Vec<_>, Vec<_>) = caps.into_iter().enumerate().partition(|(i, _)| i % 2 == 1);
        for (_, c) in odd {
            m.free(c).unwrap();
        }
        assert_eq!(m.free_region_count(), n as usize / 2);
        ok(&m);
        let mut even: Vec<_> = even.into_iter().map(|(_, c)| c).collect();
        Rng(5).shuffle(&mut even);
        for (i, c) in even.into_iter().enumerate() {
            m.free(c).unwrap();
            if i % 1000 == 0 {
                ok(&m);
            }
        }
        ok(&m);
        assert_eq!(m.free_region_count(), 1);
    }

    #[test]
    fn partial_frees_in_random_order_coalesce() {
        let mut rng = Rng(11);
        for _ in 0..50 {
            let mut m = manager(16);
            add_root(&mut m, 0x10_0000, MIB);
            let filler = m.alloc(0x3000).unwrap();
            let a = m.alloc(0x1_0000).unwrap();
            let (base, _) = range(&mut m, a);
            let before = m.free_bytes();
            // Cut the whole allocation into random pieces, then drop it.
            let mut pieces = vec![];
            let mut off = 0;
            while off < 16 {
                let len = (1 + rng.below(5)).min(16 - off);
                pieces.push(m.caps().split(a, off * PAGE_SIZE, len * PAGE_SIZE).unwrap());
                off += len;
            }
            m.caps().kill(a).unwrap();
            rng.shuffle(&mut pieces);
            let mut freed = 0;
            for p in pieces {
                let (b, e) = range(&mut m, p);
                assert!(base <= b && e <= base + 0x1_0000);
                m.free(p).unwrap();
                freed += e - b;
                assert_eq!(m.free_bytes(), before + freed);
                ok(&m);
            }
            m.free(filler).unwrap();
            assert_eq!((m.free_bytes(), m.free_region_count()), (MIB, 1));
        }
    }

    #[test]
    fn a_piece_freed_while_its_allocation_lives_is_still_in_use() {
        let mut m = manager(16);
        add_root(&mut m, 0x10_0000, MIB);
        let a = m.alloc(0x1_0000).unwrap();
        let piece = m.caps().split(a, 0x4000, 0x4000).unwrap();
        let (free, derived) = (m.free_bytes(), m.caps().derived_count());
        assert_eq!(m.free(piece), Err(MmError::StillInUse));
        assert!(m.caps().live(piece), "the piece is left as it was");
        assert_eq!(m.free_bytes(), free, "its memory is still allocated");
        // The piece covers part of the allocation in turn.
        assert_eq!(m.free(a), Err(MmError::StillInUse));
        assert!(m.caps().live(a));
        assert_eq!((m.free_bytes(), m.caps().derived_count()), (free, derived), "nothing changed");
        ok(&m);
        // Nothing else may be handed out over it.
        let b = m.alloc(MIB - 0x1_0000).unwrap();
        let (bb, be) = range(&mut m, b);
        assert!(!overlaps((bb, be), range(&mut m, a)));
        m.free(b).unwrap();
        // Once the client deletes the piece, the allocation frees whole.
        m.caps().kill(piece).unwrap();
        m.free(a).unwrap();
        assert_eq!((m.free_bytes(), m.free_region_count()), (MIB, 1));
        assert_eq!(m.caps().derived_count(), 0);
        ok(&m);

        // The other way round: the client deletes the allocation and frees
        // the pieces it cut from it.
        let a = m.alloc(0x1_0000).unwrap();
        let p = m.caps().split(a, 0, 0x8000).unwrap();
        let q = m.caps().split(a, 0x8000, 0x8000).unwrap();
        assert_eq!(m.free(p), Err(MmError::StillInUse));
        assert!(m.caps().live(p));
        assert_eq!(m.free_bytes(), MIB - 0x1_0000);
        m.caps().kill(a).unwrap();
        m.free(p).unwrap();
        assert!(!m.caps().live(p));
        assert_eq!(m.free_bytes(), MIB - 0x8000);
        m.free(q).unwrap();
        assert_eq!((m.free_bytes(), m.free_region_count()), (MIB, 1));
        assert_eq!(m.caps().derived_count(), 0);
        ok(&m);
    }

    #[test]
    fn refused_pieces_keep_their_capabilities_and_come_back_once_the_whole_is_gone() {
        let mut rng = Rng(17);
        for _ in 0..20 {
            let mut m = manager(16);
            add_root(&mut m, 0x10_0000, MIB);
            // A 64 KiB allocation split into pages; each is freed while the
            // whole still covers it, in random order.
            let a = m.alloc(0x1_0000).unwrap();
            let (base, _) = range(&mut m, a);
            let mut pages: Vec<Cap> = (0..16).map(|i| m.caps().split(a, i * PAGE_SIZE, PAGE_SIZE).unwrap()).collect();
            let (free, regions, derived) = (m.free_bytes(), m.free_region_count(), m.caps().derived_count());
            rng.shuffle(&mut pages);
            for &p in &pages {
                assert_eq!(m.free(p), Err(MmError::StillInUse));
                assert!(m.caps().live(p), "a refused piece keeps its capability");
            }
            assert_eq!((m.free_bytes(), m.free_region_count()), (free, regions));
            assert_eq!(m.caps().derived_count(), derived);
            ok(&m);
            // The client deletes the whole; now every piece frees, in
            // another random order, and they coalesce into one region.
            m.caps().kill(a).unwrap();
            rng.shuffle(&mut pages);
            for (n, &p) in pages.iter().enumerate() {
                let (b, e) = range(&mut m, p);
                assert!(base <= b && e <= base + 0x1_0000);
                m.free(p).unwrap();
                assert!(!m.caps().live(p));
                assert_eq!(m.free_bytes(), free + (n as u64 + 1) * PAGE_SIZE);
                ok(&m);
            }
            assert_eq!((m.free_bytes(), m.free_region_count()), (MIB, 1));
            assert_eq!(m.caps().derived_count(), 0);
        }
    }

    #[test]
    fn still_covered_memory_is_not_handed_out_until_freed() {
        let mut m = manager(16);
        add_root(&mut m, 0x10_0000, 0x4000);
        // The whole root: handed out as a copy, since a retype of all of it
        // would be refused.
        let a = m.alloc(0x4000).unwrap();
        assert_eq!(range(&mut m, a), (0x10_0000, 0x10_4000));
        let piece = m.caps().split(a, 0, 0x2000).unwrap();
        assert_eq!(m.free(piece), Err(MmError::StillInUse), "the copy still reaches it");
        assert_eq!(m.free(a), Err(MmError::StillInUse), "the piece still covers part of it");
        m.caps().kill(a).unwrap();
        // Nothing comes back by itself: the piece still holds its memory.
        assert_eq!(m.free_bytes(), 0);
        assert_eq!(m.alloc(0x2000), Err(MmError::OutOfMemory));
        m.free(piece).unwrap();
        assert_eq!(m.free_bytes(), 0x2000, "the rest stays allocated: a's memory was never freed");
        let b = m.alloc(0x2000).unwrap();
        assert_eq!(range(&mut m, b), (0x10_0000, 0x10_2000));
        ok(&m);
    }

    #[test]
    fn a_whole_root_comes_and_goes_as_a_copy() {
        let mut m = manager(16);
        add_root(&mut m, 0x10_0000, 0x4000);
        let a = m.alloc(0x4000).unwrap();
        assert_eq!((m.free_bytes(), m.free_region_count()), (0, 0));
        m.free(a).unwrap();
        assert_eq!((m.free_bytes(), m.free_region_count()), (0x4000, 1));
        assert!(!m.caps().live(a));
        ok(&m);
    }

    #[test]
    fn a_copy_kept_by_the_client_is_still_in_use() {
        for kill_original in [true, false] {
            let mut m = manager(16);
            add_root(&mut m, 0x10_0000, MIB);
            let a = m.alloc(0x2000).unwrap();
            let copy = m.caps().copy(a);
            // Each covers the other's memory: both are refused, both stay.
            assert_eq!(m.free(a), Err(MmError::StillInUse));
            assert_eq!(m.free(copy), Err(MmError::StillInUse));
            assert!(m.caps().live(a) && m.caps().live(copy));
            assert_eq!(m.free_bytes(), MIB - 0x2000);
            ok(&m);
            // The client deletes one; the other then frees.
            let (gone, kept) = if kill_original { (a, copy) } else { (copy, a) };
            m.caps().kill(gone).unwrap();
            m.free(kept).unwrap();
            assert!(!m.caps().live(kept));
            assert_eq!((m.free_bytes(), m.free_region_count()), (MIB, 1));
            assert_eq!(m.caps().derived_count(), 0);
            ok(&m);
        }

        // A copy of a piece: the allocation and the copy both cover it.
        let mut m = manager(16);
        add_root(&mut m, 0x10_0000, MIB);
        let a = m.alloc(0x1_0000).unwrap();
        let p = m.caps().split(a, 0, 0x8000).unwrap();
        let kept = m.caps().copy(p);
        let q = m.caps().split(a, 0x8000, 0x8000).unwrap();
        assert_eq!(m.free(p), Err(MmError::StillInUse));
        m.caps().kill(a).unwrap();
        assert_eq!(m.free(p), Err(MmError::StillInUse), "the copy still covers it");
        assert_eq!(m.free(kept), Err(MmError::StillInUse), "and it the copy");
        m.free(q).unwrap();
        assert_eq!(m.free_bytes(), MIB - 0x8000);
        m.caps().kill(kept).unwrap();
        m.free(p).unwrap();
        assert_eq!((m.free_bytes(), m.free_region_count()), (MIB, 1));
        ok(&m);
    }

    #[test]
    fn double_and_foreign_frees_are_not_allocated() {
        let mut m = manager(16);
        let root = add_root(&mut m, 0x10_0000, MIB);
        let a = m.alloc(0x4000).unwrap();
        let (base, _) = range(&mut m, a);
        m.free(a).unwrap();
        // The same name again: its slot is empty, and the kernel says so.
        assert_eq!(m.free(a), Err(MmError::Kernel(ErrorCode::SlotEmpty)));
        // Another capability to memory that is already free.
        let again = m.caps().forge(root, base, 0x4000);
        assert_eq!(m.free(again), Err(MmError::NotAllocated));
        assert!(m.caps().live(again), "a refused capability is left alone");
        m.caps().kill(again).unwrap();
        // Partly free. The model kernel, like the real one, makes no such
        // capability from the root; one from elsewhere stands in.
        let b = m.alloc(0x2000).unwrap();
        let (bb, _) = range(&mut m, b);
        let straddle = m.caps().root(bb + 0x1000, 0x2000);
        assert_eq!(m.free(straddle), Err(MmError::NotAllocated));
        assert!(m.caps().live(straddle));
        m.caps().kill(straddle).unwrap();
        // Memory outside every root.
        let other = m.caps().root(0x4000_0000, MIB);
        let outside = m.caps().split(other, 0, 0x1000).unwrap();
        assert_eq!(m.free(outside), Err(MmError::NotAllocated));
        assert!(m.caps().live(outside));
        // A root's own capability, even when all of it is allocated.
        let rest = m.alloc(MIB - 0x2000).unwrap();
        assert_eq!(m.free_bytes(), 0);
        assert_eq!(m.free(root), Err(MmError::NotAllocated));
        assert!(m.caps().live(root));
        // A capability crossing from one root into the next.
        let mut m2 = manager(4);
        let big = m2.caps().root(0x10_0000, 2 * MIB);
        let lo = m2.caps().split(big, 0, MIB).unwrap();
        let hi = m2.caps().split(big, MIB, MIB).unwrap();
        m2.add(lo).unwrap();
        m2.add(hi).unwrap();
        let _lo_all = m2.alloc(MIB).unwrap();
        let _hi_all = m2.alloc(MIB).unwrap();
        let across = m2.caps().copy(big);
        assert_eq!(m2.free(across), Err(MmError::NotAllocated));
        ok(&m2);
        m.free(b).unwrap();
        m.free(rest).unwrap();
        assert_eq!(m.free_bytes(), m.total_bytes());
        ok(&m);
    }

    #[test]
    fn non_ram_capabilities_are_refused() {
        let mut m = manager(4);
        let dev = m.caps().device(0x900_0000, 0x1000);
        assert_eq!(m.add(dev), Err(MmError::NotRam));
        add_root(&mut m, 0x10_0000, MIB);
        assert_eq!(m.free(dev), Err(MmError::NotRam));
        assert!(m.caps().live(dev));
        assert_eq!((m.root_count(), m.total_bytes()), (1, MIB));
        ok(&m);
    }

    #[test]
    fn bad_sizes_and_alignments() {
        let mut m = manager(4);
        add_root(&mut m, 0x10_0000, MIB);
        assert_eq!(m.alloc(0), Err(MmError::InvalidSize));
        assert_eq!(m.alloc(u64::MAX), Err(MmError::InvalidSize));
        assert_eq!(m.alloc(u64::MAX - PAGE_SIZE + 2), Err(MmError::InvalidSize));
        for align in [0, 3, 4095, 4097, 3 << 20] {
            assert_eq!(m.alloc_aligned(PAGE_SIZE, align), Err(MmError::InvalidAlignment), "align {align}");
        }
        assert_eq!(m.alloc(2 * MIB), Err(MmError::OutOfMemory));
        assert_eq!(m.alloc(u64::MAX - PAGE_SIZE + 1), Err(MmError::OutOfMemory));
        assert_eq!(m.alloc_aligned(PAGE_SIZE, 1 << 63), Err(MmError::OutOfMemory));
        assert_eq!(m.alloc_aligned(1 << 62, 1 << 63), Err(MmError::OutOfMemory));
        assert_eq!(m.alloc_aligned(PAGE_SIZE, 2 * MIB), Err(MmError::OutOfMemory));
        assert_eq!(m.free_bytes(), MIB);
        assert_eq!(m.caps().derived_count(), 0);
        ok(&m);
    }

    #[test]
    fn add_checks_and_keeps_roots_in_order() {
        let mut m = manager(80);
        for (base, size) in [(0x1_0800, 0x1000), (0x1_0000, 0x1800), (0x1_0000, 0)] {
            let c = m.caps().root(base, size);
            let want = if size == 0 { MmError::InvalidSize } else { MmError::Misaligned };
            assert_eq!(m.add(c), Err(want));
        }
        let c = m.caps().root(u64::MAX - 0xfff, 0x1000);
        assert_eq!(m.add(c), Err(MmError::InvalidSize));
        add_root(&mut m, 0x30_0000, MIB);
        add_root(&mut m, 0x10_0000, MIB);
        add_root(&mut m, 0x20_0000, MIB); // touching both: allowed
        for (base, size) in [(0x30_0000, MIB), (0x3f_f000, 0x2000), (0xf_f000, 0x2000), (0, 64 * MIB)] {
            let c = m.caps().root(base, size);
            assert_eq!(m.add(c), Err(MmError::Overlap), "{base:#x}+{size:#x}");
        }
        assert_eq!((m.root_count(), m.total_bytes(), m.free_region_count()), (3, 3 * MIB, 3));
        ok(&m);
        for i in 3..MAX_ROOTS as u64 {
            add_root(&mut m, GIB + i * MIB, PAGE_SIZE);
        }
        let c = m.caps().root(2 * GIB, PAGE_SIZE);
        assert_eq!(m.add(c), Err(MmError::TooManyRegions));
        assert_eq!(m.root_count(), MAX_ROOTS);
        ok(&m);
        // Allocations come from the right root: exhaust all and look.
        let mut got = vec![];
        while let Ok(c) = m.alloc(PAGE_SIZE) {
            got.push(range(&mut m, c));
        }
        assert_eq!(got.len() as u64, m.total_bytes() / PAGE_SIZE);
    }

    #[test]
    fn injected_faults_change_nothing() {
        let mut m = manager(16);
        add_root(&mut m, 0x10_0000, MIB);
        let a = m.alloc(0x3000).unwrap();
        let b = m.alloc(0x1000).unwrap();
        let (free, regions, derived) = (m.free_bytes(), m.free_region_count(), m.caps().derived_count());
        let same = |m: &mut Mm| {
            ok(m);
            assert_eq!((m.free_bytes(), m.free_region_count()), (free, regions));
            assert_eq!(m.caps().derived_count(), derived, "no capability made or deleted");
            assert!(m.caps().live(a) && m.caps().live(b), "the client's capabilities are left alone");
        };

        m.caps().fail_retype = Some((0, FAULT));
        assert_eq!(m.alloc(0x1000), Err(MmError::Kernel(FAULT)));
        same(&mut m);

        m.caps().fail_identify = Some(FAULT);
        assert_eq!(m.free(a), Err(MmError::Kernel(FAULT)));
        same(&mut m);

        // The query fails: nothing is known, nothing is deleted.
        m.caps().fail_covered = Some((0, FAULT));
        assert_eq!(m.free(a), Err(MmError::Kernel(FAULT)));
        same(&mut m);

        // The query fails on memory another capability covers: the same.
        let copy = m.caps().copy(b);
        m.caps().fail_covered = Some((0, FAULT));
        assert_eq!(m.free(b), Err(MmError::Kernel(FAULT)));
        assert!(m.caps().live(copy));
        m.caps().kill(copy).unwrap();
        same(&mut m);

        // The query says the memory comes back, but the delete fails.
        m.caps().fail_delete = Some((0, FAULT));
        assert_eq!(m.free(b), Err(MmError::Kernel(FAULT)));
        same(&mut m);
        assert_eq!((m.caps().fail_covered, m.caps().fail_delete), (None, None), "each fault was hit");

        // After all that the manager still works, and nothing was lost.
        m.free(a).unwrap();
        m.free(b).unwrap();
        let d = m.alloc(0x1000).unwrap();
        m.free(d).unwrap();
        ok(&m);
        assert_eq!((m.free_bytes(), m.free_region_count()), (MIB, 1));
        assert_eq!(m.caps().derived_count(), 0);
    }

    #[test]
    fn without_nodes_nothing_changes() {
        let mut m = manager(0);
        assert_eq!(m.nodes_free(), 0);
        let root = m.caps().root(0x10_0000, MIB);
        assert_eq!(m.add(root), Err(MmError::NoNodes));
        assert_eq!(m.root_count(), 0);
        m.grow_nodes(chunk(1)).unwrap();
        m.add(root).unwrap();
        assert_eq!(m.nodes_free(), 0);
        // Even an exact fit, which would need no node, is refused: the
        // check comes before the search.
        assert_eq!(m.alloc(PAGE_SIZE), Err(MmError::NoNodes));
        assert_eq!(m.alloc(MIB), Err(MmError::NoNodes));
        assert_eq!(m.caps().derived_count(), 0, "no retype happened");
        assert_eq!(m.free_bytes(), MIB);
        ok(&m);
        m.grow_nodes(chunk(1)).unwrap();
        let a = m.alloc(0x2000).unwrap();
        let b = m.alloc(0x2000).unwrap();
        assert_eq!((range(&mut m, a).0, range(&mut m, b).0), (0x10_0000, 0x10_2000));
        assert_eq!(m.nodes_free(), 1, "carving from the front of a region takes no node");
        let c = m.alloc_aligned(PAGE_SIZE, 0x1_0000).unwrap();
        assert_eq!(range(&mut m, c).0, 0x11_0000);
        assert_eq!((m.nodes_free(), m.free_region_count()), (0, 2), "a head and a tail");
        // Freeing `a` would need a node: `b` keeps it from merging.
        let free = m.free_bytes();
        assert_eq!(m.free(a), Err(MmError::NoNodes), "refused before the kernel acts");
        assert!(m.caps().live(a));
        assert_eq!(m.free_bytes(), free);
        ok(&m);
        m.grow_nodes(chunk(3)).unwrap();
        for x in [a, c, b] {
            m.free(x).unwrap();
        }
        assert_eq!((m.free_bytes(), m.free_region_count(), m.nodes_free()), (MIB, 1, 4));
        assert!(node_bytes() >= core::mem::size_of::<Node>());
    }

    #[test]
    fn no_operation_takes_more_than_nodes_per_op() {
        let mut m = manager(4096);
        add_root(&mut m, 0, 64 * MIB);
        add_root(&mut m, 64 * MIB, 16 * MIB);
        let mut rng = Rng(1234);
        let mut live = vec![];
        let mut most = 0;
        for _ in 0..20_000 {
            let before = m.nodes_free();
            if rng.below(2) == 0 || live.is_empty() {
                let size = (1 + rng.below(300)) * PAGE_SIZE;
                match m.alloc_aligned(size, 1 << (12 + rng.below(10))) {
                    Ok(c) => live.push(c),
                    Err(MmError::OutOfMemory) => {}
                    Err(e) => panic!("{e}"),
                }
            } else {
                let c = live.swap_remove(rng.below(live.len() as u64) as usize);
                m.free(c).unwrap();
            }
            let used = before.saturating_sub(m.nodes_free());
            assert!(used <= NODES_PER_OP, "an operation took {used} nodes");
            most = most.max(used);
        }
        // The bound is tight: some operation takes all of it.
        assert_eq!(most, NODES_PER_OP, "the bound is reached");
        ok(&m);
    }

    #[test]
    fn errors_read_as_sentences() {
        let all = [
            MmError::Kernel(ErrorCode::RetypeOverlap),
            MmError::InvalidSize,
            MmError::InvalidAlignment,
            MmError::OutOfMemory,
            MmError::NotAllocated,
            MmError::StillInUse,
            MmError::NotRam,
            MmError::Misaligned,
            MmError::Overlap,
            MmError::TooManyRegions,
            MmError::NoNodes,
        ];
        let texts: BTreeSet<_> = all.iter().map(|e| format!("{e}")).collect();
        assert_eq!(texts.len(), all.len(), "each error reads differently");
        assert!(format!("{}", MmError::from(ErrorCode::RetypeOverlap)).contains("already has a type"));
    }

    mod address_ranges {
        use super::*;
        use proptest::prelude::*;

        const P: u64 = PAGE_SIZE;
        /// The base of the last page, which no free range can hold.
        const TOP: u64 = u64::MAX - P + 1;

        fn ranges(nodes: usize) -> AddressRanges {
            let mut r = AddressRanges::new();
            if nodes > 0 {
                r.grow_nodes(chunk(nodes)).unwrap();
            }
            r
        }

        fn list(r: &AddressRanges) -> Vec<(u64, u64)> {
            r.iter().collect()
        }

        fn ok(r: &AddressRanges) {
            if let Err(e) = r.check() {
                panic!("invariant broken: {e}");
            }
        }

        /// Runs `op`, which must fail with `want` and change nothing.
        fn refused<T: std::fmt::Debug>(
            r: &mut AddressRanges,
            want: RangeError,
            op: impl FnOnce(&mut AddressRanges) -> Result<T, RangeError>,
        ) {
            let (before, nodes) = (list(r), r.nodes_free());
            assert_eq!(op(r).unwrap_err(), want);
            assert_eq!((list(r), r.nodes_free()), (before, nodes), "a refused operation changed something");
            ok(r);
        }

        #[test]
        fn clear_forgets_ranges_and_nodes() {
            let mut r = ranges(4);
            r.add(0x1_0000, 4 * P).unwrap();
            r.alloc(P, P).unwrap();
            r.clear();
            assert_eq!((r.count(), r.free_bytes(), r.nodes_free()), (0, 0, 0));
            assert_eq!(r.add(0x1_0000, P), Err(RangeError::NoNodes), "the old chunk is gone too");
            r.grow_nodes(chunk(2)).unwrap();
            r.add(0x1_0000, P).unwrap();
            assert_eq!(list(&r), [(0x1_0000, P)]);
            ok(&r);
        }

        #[test]
        fn add_merges_with_touching_ranges() {
            let mut r = ranges(8);
            assert_eq!((r.count(), r.free_bytes(), r.nodes_free()), (0, 0, 8));
            r.add(0x1_0000, 0x2000).unwrap();
            r.add(0x2_0000, P).unwrap();
            assert_eq!(list(&r), [(0x1_0000, 0x2000), (0x2_0000, P)]);
            assert_eq!(r.nodes_free(), 6);
            // Fills the gap exactly: the three become one, a node comes back.
            r.add(0x1_2000, 0xe000).unwrap();
            assert_eq!(list(&r), [(0x1_0000, 0x1_1000)]);
            assert_eq!(r.nodes_free(), 7);
            // Touching below and above widens the range in place.
            r.add(0xf000, P).unwrap();
            r.add(0x2_1000, 0x3000).unwrap();
            assert_eq!(list(&r), [(0xf000, 0x1_5000)]);
            assert_eq!((r.count(), r.free_bytes(), r.nodes_free()), (1, 0x1_5000, 7));
            ok(&r);
        }

        #[test]
        fn add_refuses_bad_and_overlapping_ranges() {
            let mut r = ranges(8);
            r.add(0x1_0000, 0x1_0000).unwrap();
            refused(&mut r, RangeError::Misaligned, |r| r.add(0x800, P));
            refused(&mut r, RangeError::Misaligned, |r| r.add(0, 0x800));
            refused(&mut r, RangeError::InvalidSize, |r| r.add(0, 0));
            refused(&mut r, RangeError::InvalidSize, |r| r.add(TOP, P));
            for (base, size) in
                [(0x1_0000, 0x1_0000), (0xf000, 0x2000), (0x1_f000, 0x2000), (0x8000, 0x2_0000), (0x1_4000, P)]
            {
                refused(&mut r, RangeError::Overlap, |r| r.add(base, size));
            }
        }

        #[test]
        fn alloc_rounds_aligns_and_runs_out() {
            let mut r = ranges(16);
            r.add(0x10_0000, MIB).unwrap();
            // Alignments below a page are raised to one.
            let a = r.alloc(1, 1).unwrap();
            assert_eq!(a % P, 0);
            assert!(!r.is_free(a, P));
            assert_eq!(r.free_bytes(), MIB - P);
            let b = r.alloc(P + 1, 0x1_0000).unwrap();
            assert_eq!(b % 0x1_0000, 0);
            assert!(!r.is_free(b, 2 * P) && b + 2 * P <= 0x20_0000 && b >= 0x10_0000);
            assert_eq!(r.free_bytes(), MIB - 3 * P);
            ok(&r);
            refused(&mut r, RangeError::InvalidSize, |r| r.alloc(0, P));
            refused(&mut r, RangeError::InvalidSize, |r| r.alloc(u64::MAX, P));
            for align in [0, 3, 4095, 4097, 3 << 20] {
                refused(&mut r, RangeError::Misaligned, |r| r.alloc(P, align));
            }
            refused(&mut r, RangeError::OutOfSpace, |r| r.alloc(MIB, P));
            refused(&mut r, RangeError::OutOfSpace, |r| r.alloc(P, 2 * MIB));
            refused(&mut r, RangeError::OutOfSpace, |r| r.alloc(P, 1 << 63));
            refused(&mut r, RangeError::OutOfSpace, |r| r.alloc(1 << 62, 1 << 63));
            // Exhausts the rest a page at a time: no page twice, none left.
            let mut got = BTreeSet::from([a, b, b + P]);
            while let Ok(x) = r.alloc(P, P) {
                assert!(got.insert(x), "{x:#x} handed out twice");
            }
            assert_eq!(got.len() as u64, MIB / P);
            assert!(got.iter().all(|&x| (0x10_0000..0x20_0000).contains(&x)));
            assert_eq!((r.free_bytes(), r.count()), (0, 0));
            ok(&r);
        }

        #[test]
        fn take_removes_exactly_the_range() {
            let mut r = ranges(8);
            r.add(0x1_0000, 0x1_0000).unwrap();
            r.take(0x1_4000, 0x2000).unwrap();
            assert_eq!(list(&r), [(0x1_0000, 0x4000), (0x1_6000, 0xa000)]);
            r.take(0x1_0000, P).unwrap();
            r.take(0x1_f000, P).unwrap();
            assert_eq!(list(&r), [(0x1_1000, 0x3000), (0x1_6000, 0x9000)]);
            r.take(0x1_1000, 0x3000).unwrap();
            assert_eq!(list(&r), [(0x1_6000, 0x9000)]);
            ok(&r);
            r.add(0x3_0000, 0x2000).unwrap();
            for (base, size) in [
                (0x1_4000, P),        // taken
                (0x1_5000, 0x2000),   // half taken
                (0x1_e000, 0x2000),   // runs past the end
                (0x1_6000, 0x1_c000), // spans two free ranges and the gap
                (0x10_0000, P),       // never added
                (0, P),
            ] {
                refused(&mut r, RangeError::NotFree, |r| r.take(base, size));
            }
            refused(&mut r, RangeError::Misaligned, |r| r.take(0x1_6800, P));
            refused(&mut r, RangeError::Misaligned, |r| r.take(0x1_6000, 0x800));
            refused(&mut r, RangeError::InvalidSize, |r| r.take(0x1_6000, 0));
            refused(&mut r, RangeError::InvalidSize, |r| r.take(TOP, P));
            r.take(0x1_6000, 0x9000).unwrap();
            r.take(0x3_0000, 0x2000).unwrap();
            assert_eq!((r.count(), r.free_bytes(), r.nodes_free()), (0, 0, 8));
            ok(&r);
        }

        #[test]
        fn free_merges_and_refuses_double_frees() {
            let mut r = ranges(8);
            // At address 0: no range lies below, none can wrap round to it.
            r.add(0, 0x1_0000).unwrap();
            r.take(0, 0x1_0000).unwrap();
            assert_eq!(r.count(), 0);
            r.free(0x4000, P).unwrap();
            r.free(0x6000, P).unwrap();
            assert_eq!(list(&r), [(0x4000, P), (0x6000, P)]);
            r.free(0x5000, P).unwrap();
            assert_eq!(list(&r), [(0x4000, 0x3000)]);
            r.free(0x3000, P).unwrap();
            r.free(0x7000, P).unwrap();
            assert_eq!(list(&r), [(0x3000, 0x5000)]);
            assert_eq!(r.nodes_free(), 7);
            for (base, size) in [(0x4000, P), (0x2000, 0x2000), (0x7000, 0x2000), (0, 0x1_0000), (0x3000, 0x5000)] {
                refused(&mut r, RangeError::NotAllocated, |r| r.free(base, size));
            }
            refused(&mut r, RangeError::Misaligned, |r| r.free(0x800, P));
            refused(&mut r, RangeError::Misaligned, |r| r.free(0, 0x1800));
            refused(&mut r, RangeError::InvalidSize, |r| r.free(0, 0));
            refused(&mut r, RangeError::InvalidSize, |r| r.free(TOP, P));
            r.free(0, 0x3000).unwrap();
            r.free(0x8000, 0x8000).unwrap();
            assert_eq!(list(&r), [(0, 0x1_0000)]);
            assert_eq!(r.nodes_free(), 7);
            ok(&r);
        }

        #[test]
        fn without_nodes_nothing_changes() {
            let mut r = ranges(0);
            assert!(r.node_slab_has_room());
            refused(&mut r, RangeError::NoNodes, |r| r.add(0x1_0000, 0x1_0000));
            r.grow_nodes(chunk(1)).unwrap();
            r.add(0x1_0000, 0x1_0000).unwrap();
            assert_eq!(r.nodes_free(), 0);
            // Even what would need no node is refused: the check comes
            // before the search.
            refused(&mut r, RangeError::NoNodes, |r| r.alloc(P, P));
            refused(&mut r, RangeError::NoNodes, |r| r.take(0x1_0000, P));
            refused(&mut r, RangeError::NoNodes, |r| r.add(0x2_0000, P));
            refused(&mut r, RangeError::NoNodes, |r| r.free(0x4_0000, P));
            // Errors no node would cure come first.
            refused(&mut r, RangeError::Overlap, |r| r.add(0x1_0000, P));
            refused(&mut r, RangeError::NotAllocated, |r| r.free(0x1_0000, P));
            refused(&mut r, RangeError::NotFree, |r| r.take(0x4_0000, P));
            refused(&mut r, RangeError::InvalidSize, |r| r.alloc(0, P));
            r.grow_nodes(chunk(1)).unwrap();
            assert_eq!(r.alloc(P, P), Ok(0x1_0000));
            assert_eq!(r.nodes_free(), 1, "cutting from the front of a range takes no node");
            r.take(0x1_8000, P).unwrap();
            assert_eq!((r.nodes_free(), r.count()), (0, 2), "a head and a tail");
            // This free would only widen a range, but is refused all the same.
            refused(&mut r, RangeError::NoNodes, |r| r.free(0x1_0000, P));
            r.grow_nodes(chunk(2)).unwrap();
            r.free(0x1_0000, P).unwrap();
            r.free(0x1_8000, P).unwrap();
            assert_eq!((list(&r), r.nodes_free()), (vec![(0x1_0000, 0x1_0000)], 3));
        }

        #[test]
        fn is_free_answers_for_any_range() {
            let mut r = ranges(4);
            r.add(0x1_0000, 0x4000).unwrap();
            r.add(0x2_0000, 0x4000).unwrap();
            assert!(r.is_free(0x1_0000, 0x4000));
            assert!(r.is_free(0x1_0800, 0x100), "unaligned, but inside");
            assert!(r.is_free(0x2_3fff, 1));
            for (base, size) in [
                (0x1_3000, 0x2000),
                (0xf000, 0x2000),
                (0x1_4000, P),
                (0x1_0000, 0x1_4000),
                (0x1_0000, 0),
                (u64::MAX, 2),
                (0, P),
            ] {
                assert!(!r.is_free(base, size), "{base:#x}+{size:#x}");
            }
        }

        #[test]
        fn the_top_of_the_address_space() {
            let mut r = ranges(4);
            // Ends where the last page starts: as high as a range goes.
            r.add(TOP - 4 * P, 4 * P).unwrap();
            ok(&r);
            refused(&mut r, RangeError::OutOfSpace, |r| r.alloc(P, 1 << 63));
            refused(&mut r, RangeError::OutOfSpace, |r| r.alloc(8 * P, P));
            // Every page-aligned range past the end wraps.
            refused(&mut r, RangeError::InvalidSize, |r| r.take(TOP - P, 2 * P));
            refused(&mut r, RangeError::InvalidSize, |r| r.free(TOP - P, 2 * P));
            assert!(!r.is_free(TOP - P, 2 * P));
            assert!(!r.is_free(TOP, P));
            r.take(TOP - P, P).unwrap();
            assert_eq!(r.alloc(3 * P, P), Ok(TOP - 4 * P));
            assert_eq!(r.count(), 0);
            r.free(TOP - 3 * P, P).unwrap();
            r.free(TOP - P, P).unwrap();
            r.add(TOP - 2 * P, P).unwrap();
            r.free(TOP - 4 * P, P).unwrap();
            assert_eq!(list(&r), [(TOP - 4 * P, 4 * P)]);
            ok(&r);
        }

        #[test]
        fn pages_freed_in_any_order_merge_into_one_range() {
            let n = 4000;
            let mut r = ranges(n / 2 + 1);
            r.add(GIB, n as u64 * P).unwrap();
            let mut pages: Vec<u64> = (0..n).map(|_| r.alloc(P, P).unwrap()).collect();
            assert_eq!(pages.iter().collect::<BTreeSet<_>>().len(), n);
            assert_eq!(r.count(), 0);
            Rng(21).shuffle(&mut pages);
            for (i, &p) in pages.iter().enumerate() {
                r.free(p, P).unwrap();
                if i % 500 == 0 {
                    ok(&r);
                }
            }
            ok(&r);
            assert_eq!(list(&r), [(GIB, n as u64 * P)]);
        }

        #[test]
        fn errors_read_as_sentences() {
            let all = [
                RangeError::NoNodes,
                RangeError::Misaligned,
                RangeError::InvalidSize,
                RangeError::Overlap,
                RangeError::NotFree,
                RangeError::NotAllocated,
                RangeError::OutOfSpace,
            ];
            let texts: BTreeSet<_> = all.iter().map(|e| format!("{e}")).collect();
            assert_eq!(texts.len(), all.len(), "each error reads differently");
        }

        /// Pages in the model's window.
        const PAGES: u64 = 256;
        /// Where the window lies: at the bottom of the address space, at an
        /// ordinary place, and ending as high as a range can.
        const WINDOWS: [u64; 3] = [0, 0x10_0000_0000, TOP - PAGES * P];

        #[derive(Clone, Debug)]
        enum Op {
            Add {
                page: u64,
                pages: u64,
            },
            Free {
                page: u64,
                pages: u64,
            },
            /// Frees something `alloc` or `take` handed out, if it is
            /// still out.
            FreeHeld(usize),
            Take {
                page: u64,
                pages: u64,
            },
            Alloc {
                pages: u64,
                trim: u64,
                align_log2: u32,
            },
            /// An argument error of kind `kind` near `page`.
            Bad {
                kind: u8,
                page: u64,
            },
            Grow(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            let range = |most: u64| (0..PAGES, 1..=most);
            prop_oneof![
                2 => range(64).prop_map(|(page, pages)| Op::Add { page, pages }),
                2 => range(32).prop_map(|(page, pages)| Op::Free { page, pages }),
                4 => any::<usize>().prop_map(Op::FreeHeld),
                3 => range(8).prop_map(|(page, pages)| Op::Take { page, pages }),
                5 => (1u64..=24, 0..P, 0u32..=21)
                    .prop_map(|(pages, trim, align_log2)| Op::Alloc { pages, trim, align_log2 }),
                1 => (200u64..=300).prop_map(|pages| Op::Alloc { pages, trim: 0, align_log2: 12 }),
                1 => (0u8..7, 0..PAGES).prop_map(|(kind, page)| Op::Bad { kind, page }),
                2 => (1usize..4).prop_map(Op::Grow),
            ]
        }

        /// The window's free pages.
        struct Model {
            base: u64,
            free: Vec<bool>,
            /// What `alloc` and `take` handed out, as (base, size).
            held: Vec<(u64, u64)>,
        }

        impl Model {
            fn pages(&self, base: u64, size: u64) -> std::ops::Range<usize> {
                let first = ((base - self.base) / P) as usize;
                first..first + (size / P) as usize
            }

            fn all(&self, base: u64, size: u64, free: bool) -> bool {
                self.pages(base, size).all(|p| self.free[p] == free)
            }

            fn any_free(&self, base: u64, size: u64) -> bool {
                !self.all(base, size, false)
            }

            fn set(&mut self, base: u64, size: u64, free: bool) {
                for p in self.pages(base, size) {
                    self.free[p] = free;
                }
            }

            /// The maximal runs of free pages, as (base, size).
            fn ranges(&self) -> Vec<(u64, u64)> {
                let mut out: Vec<(u64, u64)> = vec![];
                for (p, _) in self.free.iter().enumerate().filter(|(_, f)| **f) {
                    let addr = self.base + p as u64 * P;
                    match out.last_mut() {
                        Some((b, s)) if *b + *s == addr => *s += P,
                        _ => out.push((addr, P)),
                    }
                }
                out
            }

            fn fits(&self, size: u64, align: u64) -> bool {
                // Offsets, not addresses: the top window ends near 2^64.
                (0..PAGES)
                    .map(|p| p * P)
                    .filter(|off| (self.base + off).is_multiple_of(align))
                    .any(|off| off + size <= PAGES * P && self.all(self.base + off, size, true))
            }
        }

        /// A range in the window from a page and a length, cut at its end.
        fn clip(m: &Model, page: u64, pages: u64) -> (u64, u64) {
            (m.base + page * P, pages.min(PAGES - page) * P)
        }

        fn give(r: &mut AddressRanges, m: &mut Model, base: u64, size: u64, add: bool) -> Result<(), RangeError> {
            let nodes = r.nodes_free();
            let got = if add { r.add(base, size) } else { r.free(base, size) };
            let want = if m.any_free(base, size) {
                Err(if add { RangeError::Overlap } else { RangeError::NotAllocated })
            } else if nodes < NODES_PER_OP {
                Err(RangeError::NoNodes)
            } else {
                Ok(())
            };
            assert_eq!(got, want, "{} {base:#x}+{size:#x}", if add { "add" } else { "free" });
            if got.is_ok() {
                m.set(base, size, true);
            }
            got
        }

        fn step(r: &mut AddressRanges, m: &mut Model, op: &Op) -> Result<(), RangeError> {
            let nodes = r.nodes_free();
            match *op {
                Op::Add { page, pages } => {
                    let (base, size) = clip(m, page, pages);
                    give(r, m, base, size, true)
                }
                Op::Free { page, pages } => {
                    let (base, size) = clip(m, page, pages);
                    give(r, m, base, size, false)
                }
                Op::FreeHeld(which) => {
                    if m.held.is_empty() {
                        return Ok(());
                    }
                    let (base, size) = m.held.swap_remove(which % m.held.len());
                    let got = give(r, m, base, size, false);
                    if got == Err(RangeError::NoNodes) {
                        m.held.push((base, size));
                    }
                    got
                }
                Op::Take { page, pages } => {
                    let (base, size) = clip(m, page, pages);
                    let got = r.take(base, size);
                    let want = if !m.all(base, size, true) {
                        Err(RangeError::NotFree)
                    } else if nodes < NODES_PER_OP {
                        Err(RangeError::NoNodes)
                    } else {
                        Ok(())
                    };
                    assert_eq!(got, want, "take {base:#x}+{size:#x}");
                    if got.is_ok() {
                        m.set(base, size, false);
                        m.held.push((base, size));
                    }
                    got
                }
                Op::Alloc { pages, trim, align_log2 } => {
                    let (size, align) = (pages * P - trim, 1u64 << align_log2);
                    let (rounded, align) = (pages * P, align.max(P));
                    let got = r.alloc(size, align);
                    match got {
                        Ok(a) => {
                            assert!(nodes >= NODES_PER_OP);
                            assert_eq!(a % align, 0, "{a:#x} not aligned to {align:#x}");
                            assert!(a >= m.base && a - m.base + rounded <= PAGES * P, "{a:#x} outside");
                            assert!(m.all(a, rounded, true), "{a:#x}+{rounded:#x} handed out but not all free");
                            m.set(a, rounded, false);
                            m.held.push((a, rounded));
                        }
                        Err(RangeError::NoNodes) => assert!(nodes < NODES_PER_OP),
                        Err(RangeError::OutOfSpace) => {
                            assert!(nodes >= NODES_PER_OP);
                            assert!(!m.fits(rounded, align), "{rounded:#x} at {align:#x} fits but was refused");
                        }
                        Err(e) => panic!("alloc {size:#x} at {align:#x}: {e}"),
                    }
                    got.map(drop)
                }
                Op::Bad { kind, page } => {
                    let base = m.base + page * P;
                    let (got, want) = match kind {
                        0 => (r.add(base + 0x800, P), RangeError::Misaligned),
                        1 => (r.free(base, P + 0x800), RangeError::Misaligned),
                        2 => (r.take(base + 0x800, P), RangeError::Misaligned),
                        3 => (r.alloc(P, 3 << 12).map(drop), RangeError::Misaligned),
                        4 => (r.add(base, 0), RangeError::InvalidSize),
                        5 => (r.free(base, 0), RangeError::InvalidSize),
                        _ => (r.take(base, 0), RangeError::InvalidSize),
                    };
                    assert_eq!(got, Err(want), "{op:?}");
                    got
                }
                Op::Grow(n) => {
                    r.grow_nodes(chunk(n)).unwrap();
                    Ok(())
                }
            }
        }

        fn run(window: usize, ops: Vec<Op>) {
            let base = WINDOWS[window];
            let mut m = Model { base, free: vec![false; PAGES as usize], held: vec![] };
            let mut r = ranges(2);
            for op in ops {
                let (before, nodes) = (list(&r), r.nodes_free());
                let got = step(&mut r, &mut m, &op);
                if got.is_err() {
                    assert_eq!((list(&r), r.nodes_free()), (before, nodes), "refused {op:?} changed something");
                }
                let used = nodes.saturating_sub(r.nodes_free());
                assert!(used <= NODES_PER_OP, "{op:?} took {used} nodes");
                if let Err(e) = r.check() {
                    panic!("after {op:?}: {e}");
                }
                let want = m.ranges();
                assert_eq!(list(&r), want, "after {op:?}");
                assert_eq!(r.count(), want.len());
                assert_eq!(r.free_bytes(), want.iter().map(|w| w.1).sum::<u64>());
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            #[test]
            fn agrees_with_a_page_model(window in 0..WINDOWS.len(), ops in proptest::collection::vec(op(), 1..200)) {
                run(window, ops);
            }
        }
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        /// Candidate roots: two adjacent, one overlapping the first, one at
        /// an odd page, one misaligned, one small.
        const POOL: [(u64, u64); 6] = [
            (0x1000_0000, MIB),
            (0x1010_0000, 2 * MIB),
            (0x1008_0000, 0x1_0000),
            (0x2000_3000, 0x4_0000),
            (0x3000_0800, 0x1000),
            (0x4000_0000, 0x1_2000),
        ];

        #[derive(Clone, Debug)]
        enum Op {
            Add(usize),
            Alloc {
                pages: u64,
                trim: u64,
                align_log2: u32,
            },
            Free(usize),
            /// The client cuts a piece out of a capability it holds.
            Split {
                which: usize,
                off: u64,
                len: u64,
            },
            Copy(usize),
            /// The client deletes a capability without telling the manager.
            Drop(usize),
            /// Frees a capability to any range (of its own root, not of
            /// the manager's): not handed out unless all of it is allocated.
            Foreign {
                page: u64,
                pages: u64,
            },
            FaultyAlloc {
                pages: u64,
            },
            /// Frees with the query (or else the delete) failing after
            /// `skip` calls.
            FaultyFree {
                which: usize,
                on_query: bool,
                skip: u32,
            },
            Grow(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                1 => (0..POOL.len()).prop_map(Op::Add),
                8 => (1u64..=64, 0u64..PAGE_SIZE, 12u32..=21)
                    .prop_map(|(pages, trim, align_log2)| Op::Alloc { pages, trim, align_log2 }),
                1 => (65u64..=300).prop_map(|pages| Op::Alloc { pages, trim: 0, align_log2: 12 }),
                6 => any::<usize>().prop_map(Op::Free),
                3 => (any::<usize>(), 0u64..64, 1u64..64).prop_map(|(which, off, len)| Op::Split { which, off, len }),
                1 => any::<usize>().prop_map(Op::Copy),
                1 => any::<usize>().prop_map(Op::Drop),
                1 => (0u64..1024, 1u64..16).prop_map(|(page, pages)| Op::Foreign { page, pages }),
                1 => (1u64..=16).prop_map(|pages| Op::FaultyAlloc { pages }),
                1 => (any::<usize>(), any::<bool>(), 0u32..2)
                    .prop_map(|(which, on_query, skip)| Op::FaultyFree { which, on_query, skip }),
                2 => (1usize..8).prop_map(Op::Grow),
            ]
        }

        /// What the manager should believe: the roots added and the pages
        /// allocated; plus the capabilities the client holds.
        #[derive(Default)]
        struct Model {
            roots: Vec<(u64, u64)>,
            used: BTreeSet<u64>,
            held: Vec<Cap>,
        }

        impl Model {
            fn free_bytes(&self) -> u64 {
                self.roots.iter().map(|r| r.1).sum::<u64>() - self.used.len() as u64 * PAGE_SIZE
            }

            fn is_free(&self, a: u64) -> bool {
                self.roots.iter().any(|&(b, s)| b <= a && a < b + s) && !self.used.contains(&a)
            }

            fn fits(&self, size: u64, align: u64) -> bool {
                self.roots.iter().any(|&(b, s)| {
                    let mut a = b.next_multiple_of(align);
                    while a + size <= b + s {
                        if self.used.range(a..a + size).next().is_none() {
                            return true;
                        }
                        a += align;
                    }
                    false
                })
            }

            fn pick(&self, which: usize) -> Option<Cap> {
                (!self.held.is_empty()).then(|| self.held[which % self.held.len()])
            }
        }

        fn alloc(m: &mut Mm, model: &mut Model, size: u64, align: u64, faulty: bool) {
            let nodes = m.nodes_free();
            let rounded = size.next_multiple_of(PAGE_SIZE);
            match m.alloc_aligned(size, align) {
                Ok(c) => {
                    assert!(nodes >= NODES_PER_OP);
                    let (b, e) = range(m, c);
                    assert_eq!((e - b, b % align), (rounded, 0));
                    for a in (b..e).step_by(PAGE_SIZE as usize) {
                        assert!(model.is_free(a), "{a:#x} handed out but not free");
                        model.used.insert(a);
                    }
                    model.held.push(c);
                }
                Err(MmError::NoNodes) => assert!(nodes < NODES_PER_OP),
                Err(MmError::OutOfMemory) => {
                    assert!(nodes >= NODES_PER_OP);
                    assert!(!model.fits(rounded, align), "{rounded:#x} at {align:#x} fits but was refused");
                }
                Err(MmError::Kernel(FAULT)) if faulty => {}
                Err(e) => panic!("alloc: {e}"),
            }
        }

        fn free(m: &mut Mm, model: &mut Model, c: Cap, faulty: bool) {
            let nodes = m.nodes_free();
            let r = range(m, c);
            let shared = model.held.iter().any(|&o| o != c && m.caps().live(o) && overlaps(m.caps().range(o), r));
            let in_one_root = model.roots.iter().any(|&(b, s)| b <= r.0 && r.1 <= b + s);
            let allocated = (r.0..r.1).step_by(PAGE_SIZE as usize).all(|a| model.used.contains(&a));
            if !in_one_root || !allocated {
                assert_eq!(m.free(c), Err(MmError::NotAllocated), "{r:x?}");
                assert!(m.caps().live(c), "a refused capability is left alone");
                return;
            }
            let derived = m.caps().derived_count();
            match m.free(c) {
                Ok(()) => {
                    assert!(!shared, "freed memory another capability covers");
                    assert!(nodes >= NODES_PER_OP);
                    assert!(!m.caps().live(c), "a freed capability is deleted");
                    for a in (r.0..r.1).step_by(PAGE_SIZE as usize) {
                        assert!(model.used.remove(&a), "{a:#x} freed but was not allocated");
                    }
                    return;
                }
                Err(MmError::StillInUse) => {
                    assert!(shared, "no other capability covers {r:x?}");
                    assert!(nodes >= NODES_PER_OP);
                }
                Err(MmError::NoNodes) => assert!(nodes < NODES_PER_OP),
                Err(MmError::Kernel(FAULT)) if faulty => {}
                Err(e) => panic!("free: {e}"),
            }
            // Refused: the capability and its memory are as they were.
            assert!(m.caps().live(c), "a refused capability is left alone");
            assert_eq!(m.caps().derived_count(), derived, "a refused free deleted something");
        }

        fn run(ops: Vec<Op>) {
            let mut m = manager(3);
            let mut model = Model::default();
            for &(base, size) in &POOL[..2] {
                add_root(&mut m, base, size);
                model.roots.push((base, size));
            }
            for op in ops {
                let nodes = m.nodes_free();
                match op {
                    Op::Add(i) => {
                        let (base, size) = POOL[i];
                        let c = m.caps().root(base, size);
                        let want = if base % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 {
                            Err(MmError::Misaligned)
                        } else if model.roots.iter().any(|&(b, s)| overlaps((b, b + s), (base, base + size))) {
                            Err(MmError::Overlap)
                        } else if nodes < NODES_PER_OP {
                            Err(MmError::NoNodes)
                        } else {
                            Ok(())
                        };
                        assert_eq!(m.add(c), want);
                        if want.is_ok() {
                            model.roots.push((base, size));
                        }
                    }
                    Op::Alloc { pages, trim, align_log2 } => {
                        alloc(&mut m, &mut model, pages * PAGE_SIZE - trim, 1 << align_log2, false)
                    }
                    Op::Free(which) => {
                        if let Some(c) = model.pick(which) {
                            free(&mut m, &mut model, c, false);
                        }
                    }
                    Op::Split { which, off, len } => {
                        if let Some(c) = model.pick(which) {
                            let (b, e) = range(&mut m, c);
                            let pages = (e - b) / PAGE_SIZE;
                            let off = off % pages;
                            let len = 1 + (len - 1) % (pages - off);
                            if let Ok(p) = m.caps().split(c, off * PAGE_SIZE, len * PAGE_SIZE) {
                                model.held.push(p);
                            }
                        }
                    }
                    Op::Copy(which) => {
                        if let Some(c) = model.pick(which) {
                            let dup = m.caps().copy(c);
                            model.held.push(dup);
                        }
                    }
                    Op::Drop(which) => {
                        if let Some(c) = model.pick(which) {
                            m.caps().kill(c).unwrap();
                        }
                    }
                    Op::Foreign { page, pages } => {
                        let c = m.caps().root(POOL[0].0 + page * PAGE_SIZE, pages * PAGE_SIZE);
                        free(&mut m, &mut model, c, false);
                    }
                    Op::FaultyAlloc { pages } => {
                        m.caps().fail_retype = Some((0, FAULT));
                        alloc(&mut m, &mut model, pages * PAGE_SIZE, PAGE_SIZE, true);
                    }
                    Op::FaultyFree { which, on_query, skip } => {
                        if let Some(c) = model.pick(which) {
                            if on_query {
                                m.caps().fail_covered = Some((skip, FAULT));
                            } else {
                                m.caps().fail_delete = Some((skip, FAULT));
                            }
                            free(&mut m, &mut model, c, true);
                        }
                    }
                    Op::Grow(n) => m.grow_nodes(chunk(n)).unwrap(),
                }
                let fake = m.caps();
                (fake.fail_retype, fake.fail_delete, fake.fail_covered) = (None, None, None);
                model.held.retain(|&c| m.caps().live(c));
                let used = nodes.saturating_sub(m.nodes_free());
                assert!(used <= NODES_PER_OP, "{op:?} took {used} nodes");
                if let Err(e) = m.check() {
                    panic!("after {op:?}: {e}");
                }
                assert_eq!(m.free_bytes(), model.free_bytes(), "after {op:?}");
                assert_eq!(m.total_bytes(), model.roots.iter().map(|r| r.1).sum::<u64>());
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            #[test]
            fn agrees_with_a_page_model(ops in proptest::collection::vec(op(), 1..150)) {
                run(ops);
            }
        }
    }
}
