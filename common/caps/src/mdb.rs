//! The derivation database: every capability of a core in one balanced
//! search tree, ordered so copies sit together and ancestors precede their
//! descendants, and augmented with each subtree's highest end address so
//! "which capabilities overlap this range" is answered in O(log n + k).
//!
//! The tree is an AA tree (Andersson 1993), chosen over red-black and
//! treaps for its few cases (two rotations, skew and split) and because its
//! height is bounded deterministically: no input can unbalance it, which a
//! kernel needs when users choose what is inserted. It is *intrusive*: the
//! links live in the capability table entries, reached through [`Store`],
//! so its memory is the CNodes users retyped and it never allocates.
//!
//! Recursion depth is the tree height, at most `2 log2(n + 1)`.

use core::cmp::Ordering;
use core::ops::ControlFlow;

use crate::cap::Cap;
use crate::types;

/// A table entry's identity (its index; the kernel maps it to a CTE).
pub type Id = u32;
/// No entry.
pub const NIL: Id = u32::MAX;

/// Tree links stored in each capability table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Links {
    pub left: Id,
    pub right: Id,
    pub level: u8,
    /// Highest end address in this subtree.
    pub max_end: u64,
}

impl Links {
    pub const EMPTY: Links = Links { left: NIL, right: NIL, level: 0, max_end: 0 };
}

impl Default for Links {
    fn default() -> Self {
        Links::EMPTY
    }
}

/// Where entries live.
pub trait Store {
    fn cap(&self, id: Id) -> &Cap;
    fn links(&self, id: Id) -> &Links;
    fn links_mut(&mut self, id: Id) -> &mut Links;
}

/// The database: a root and a count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mdb {
    root: Id,
    len: usize,
}

impl Default for Mdb {
    fn default() -> Self {
        Self::new()
    }
}

fn order(s: &impl Store, a: Id, b: Id) -> Ordering {
    s.cap(a).order_cmp(s.cap(b)).then(a.cmp(&b))
}

/// The entry an insertion or removal looks for, with its base, size and
/// end read once: most levels of the search then compare registers only.
#[derive(Clone, Copy)]
struct Probe {
    id: Id,
    base: u64,
    size: u64,
    end: u64,
}

impl Probe {
    fn of(s: &impl Store, id: Id) -> Probe {
        let c = s.cap(id);
        Probe { id, base: c.base, size: c.size, end: c.end() }
    }

    /// [`order`] of the probed entry against `t`.
    #[inline]
    fn cmp(self, s: &impl Store, t: Id) -> Ordering {
        let c = s.cap(t);
        if self.base != c.base {
            self.base.cmp(&c.base)
        } else if self.size != c.size {
            c.size.cmp(&self.size)
        } else if self.id == t {
            Ordering::Equal
        } else {
            order(s, self.id, t)
        }
    }
}

fn level(s: &impl Store, t: Id) -> u8 {
    if t == NIL { 0 } else { s.links(t).level }
}

fn max_end(s: &impl Store, t: Id) -> u64 {
    if t == NIL { 0 } else { s.links(t).max_end }
}

fn update(s: &mut impl Store, t: Id) {
    if t == NIL {
        return;
    }
    let l = *s.links(t);
    let m = s.cap(t).end().max(max_end(s, l.left)).max(max_end(s, l.right));
    s.links_mut(t).max_end = m;
}

/// Right rotation when a left child has the same level. A rotation keeps
/// the set of entries below the subtree's root, so only the two rotated
/// nodes' `max_end` are recomputed: callers keep `t`'s up to date before.
fn skew(s: &mut impl Store, t: Id) -> Id {
    if t == NIL {
        return t;
    }
    let l = s.links(t).left;
    if l != NIL && level(s, l) == level(s, t) {
        let lr = s.links(l).right;
        s.links_mut(t).left = lr;
        s.links_mut(l).right = t;
        update(s, t);
        update(s, l);
        return l;
    }
    t
}

/// Left rotation and promotion when two right links share a level.
fn split(s: &mut impl Store, t: Id) -> Id {
    if t == NIL {
        return t;
    }
    let r = s.links(t).right;
    if r != NIL && s.links(r).right != NIL && level(s, s.links(r).right) == level(s, t) {
        let rl = s.links(r).left;
        s.links_mut(t).right = rl;
        s.links_mut(r).left = t;
        s.links_mut(r).level += 1;
        update(s, t);
        update(s, r);
        return r;
    }
    t
}

fn insert_at(s: &mut impl Store, t: Id, p: Probe) -> Id {
    if t == NIL {
        *s.links_mut(p.id) = Links { left: NIL, right: NIL, level: 1, max_end: p.end };
        return p.id;
    }
    if p.cmp(s, t) == Ordering::Less {
        let l = insert_at(s, s.links(t).left, p);
        s.links_mut(t).left = l;
    } else {
        let r = insert_at(s, s.links(t).right, p);
        s.links_mut(t).right = r;
    }
    // The subtree gained one entry: its highest end can only grow to it.
    let m = &mut s.links_mut(t).max_end;
    *m = (*m).max(p.end);
    let t = skew(s, t);
    split(s, t)
}

/// Andersson's rebalancing of `t` after its subtree lost an entry; `t`'s
/// children are balanced and their `max_end` current. Returns the root.
fn rebalance(s: &mut impl Store, t: Id) -> Id {
    let Links { left, right, level: lv, .. } = *s.links(t);
    let should = level(s, left).min(level(s, right)) + 1;
    if should < lv {
        s.links_mut(t).level = should;
        if should < level(s, right) {
            s.links_mut(right).level = should;
        }
    }
    update(s, t);
    // From here only rotations: each keeps its subtree's entries, and so
    // the `max_end` of every node it does not move.
    let t = skew(s, t);
    let r = skew(s, s.links(t).right);
    s.links_mut(t).right = r;
    if r != NIL {
        let rr = skew(s, s.links(r).right);
        s.links_mut(r).right = rr;
    }
    let t = split(s, t);
    let r = split(s, s.links(t).right);
    s.links_mut(t).right = r;
    t
}

/// [`rebalance`] of `t` after a removal in its left (`right` false) or
/// right subtree, which was at level `was` before, of an entry that ended
/// at `gone_end`. Most removals leave that subtree as high as it was, and
/// then Andersson's steps have little to do: `t` keeps its level, the
/// other subtree was not touched, and a balanced subtree needs no skew or
/// split at its own root. What can remain is a split of `t`, if its right
/// child is level with it and that child's new right spine now is too;
/// and `t`'s `max_end`, if the entry gone could have been the maximum.
fn rebalance_side(s: &mut impl Store, t: Id, right: bool, was: u8, gone_end: u64) -> Id {
    let l = *s.links(t);
    if level(s, if right { l.right } else { l.left }) != was {
        return rebalance(s, t);
    }
    if gone_end >= l.max_end {
        update(s, t);
    }
    if right && was == l.level { split(s, t) } else { t }
}

/// Takes entry `t` out of its subtree; returns the subtree's new root. The
/// in-order neighbour takes `t`'s place: the entries are the nodes, so
/// they are relinked rather than their keys swapped.
fn unlink(s: &mut impl Store, t: Id) -> Id {
    let Links { left, right, level, .. } = *s.links(t);
    *s.links_mut(t) = Links::EMPTY;
    if left == NIL && right == NIL {
        return NIL;
    }
    let (sub, new_left, new_right) = if left == NIL {
        let (succ, rest) = remove_min(s, right);
        (succ, NIL, rest)
    } else {
        let (pred, rest) = remove_max(s, left);
        (pred, rest, right)
    };
    *s.links_mut(sub) = Links { left: new_left, right: new_right, level, max_end: 0 };
    rebalance(s, sub)
}

/// Removes the first entry of subtree `t`: returns it and the new root.
/// (The path a search for that entry takes, without comparing.)
fn remove_min(s: &mut impl Store, t: Id) -> (Id, Id) {
    let l = s.links(t).left;
    if l == NIL {
        return (t, unlink(s, t));
    }
    let was = level(s, l);
    let (min, l) = remove_min(s, l);
    s.links_mut(t).left = l;
    (min, rebalance_side(s, t, false, was, u64::MAX))
}

/// Removes the last entry of subtree `t`: returns it and the new root.
fn remove_max(s: &mut impl Store, t: Id) -> (Id, Id) {
    let r = s.links(t).right;
    if r == NIL {
        return (t, unlink(s, t));
    }
    let was = level(s, r);
    let (max, r) = remove_max(s, r);
    s.links_mut(t).right = r;
    (max, rebalance_side(s, t, true, was, u64::MAX))
}

fn remove_at(s: &mut impl Store, t: Id, p: Probe) -> Id {
    if t == NIL {
        return NIL;
    }
    let Links { left, right, .. } = *s.links(t);
    match p.cmp(s, t) {
        Ordering::Less => {
            let was = level(s, left);
            let l = remove_at(s, left, p);
            s.links_mut(t).left = l;
            rebalance_side(s, t, false, was, p.end)
        }
        Ordering::Greater => {
            let was = level(s, right);
            let r = remove_at(s, right, p);
            s.links_mut(t).right = r;
            rebalance_side(s, t, true, was, p.end)
        }
        Ordering::Equal => unlink(s, t),
    }
}

fn min_of(s: &impl Store, mut t: Id) -> Id {
    while s.links(t).left != NIL {
        t = s.links(t).left;
    }
    t
}

fn max_of(s: &impl Store, mut t: Id) -> Id {
    while s.links(t).right != NIL {
        t = s.links(t).right;
    }
    t
}

impl Mdb {
    pub const fn new() -> Self {
        Mdb { root: NIL, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds entry `id` (its capability already in the store).
    pub fn insert(&mut self, s: &mut impl Store, id: Id) {
        self.root = insert_at(s, self.root, Probe::of(s, id));
        self.len += 1;
    }

    /// Removes entry `id`, which must be in the tree.
    pub fn remove(&mut self, s: &mut impl Store, id: Id) {
        self.root = remove_at(s, self.root, Probe::of(s, id));
        self.len -= 1;
    }

    /// Calls `f` on every entry whose memory overlaps `[start, end)`, in
    /// order, until it breaks.
    pub fn overlapping(
        &self,
        s: &impl Store,
        start: u64,
        end: u64,
        f: &mut impl FnMut(Id) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        self.walk_range(s, start, end, false, f)
    }

    /// The interval walk behind the range queries: prunes subtrees that end
    /// before `start` (the augmented maximum) and stops at the first entry
    /// starting at or after `end`. With `points`, zero-sized entries at
    /// `start` count as inside (endpoints and other memoryless capabilities
    /// derived from the object at `start`).
    fn walk_range(
        &self,
        s: &impl Store,
        start: u64,
        end: u64,
        points: bool,
        f: &mut impl FnMut(Id) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        fn go(
            s: &impl Store,
            t: Id,
            range: (u64, u64, bool),
            f: &mut impl FnMut(Id) -> ControlFlow<()>,
        ) -> ControlFlow<()> {
            let (start, end, points) = range;
            if t == NIL || max_end(s, t) < start || (!points && max_end(s, t) == start) {
                return ControlFlow::Continue(());
            }
            let Links { left, right, .. } = *s.links(t);
            go(s, left, range, f)?;
            let c = s.cap(t);
            if c.base >= end {
                return ControlFlow::Continue(()); // everything to the right starts later
            }
            if c.end() > start || (points && c.size == 0 && c.base == start) {
                f(t)?;
            }
            go(s, right, range, f)
        }
        go(s, self.root, (start, end, points), f)
    }

    /// Calls `f` on every entry whose order key equals that of `cap`
    /// (its copies, and `cap`'s own entry if present).
    pub fn with_key(&self, s: &impl Store, cap: &Cap, f: &mut impl FnMut(Id) -> ControlFlow<()>) -> ControlFlow<()> {
        fn go(s: &impl Store, t: Id, cap: &Cap, f: &mut impl FnMut(Id) -> ControlFlow<()>) -> ControlFlow<()> {
            if t == NIL {
                return ControlFlow::Continue(());
            }
            let Links { left, right, .. } = *s.links(t);
            let k = s.cap(t).order_cmp(cap);
            if k.is_ge() {
                go(s, left, cap, f)?;
            }
            if k.is_eq() {
                f(t)?;
            }
            if k.is_le() {
                go(s, right, cap, f)?;
            }
            ControlFlow::Continue(())
        }
        go(s, self.root, cap, f)
    }

    /// Whether another entry holds a copy of entry `id`'s capability.
    /// Copies share an order key and the tree orders equal keys by id, so
    /// they sit next to each other: it is enough to look at `id`'s two
    /// neighbours, found with one search from the root.
    pub fn has_copies(&self, s: &impl Store, id: Id) -> bool {
        let p = Probe::of(s, id);
        let (mut before, mut after) = (NIL, NIL);
        let mut t = self.root;
        while t != NIL {
            let Links { left, right, .. } = *s.links(t);
            match p.cmp(s, t) {
                Ordering::Less => (after, t) = (t, left),
                Ordering::Greater => (before, t) = (t, right),
                Ordering::Equal => {
                    if left != NIL {
                        before = max_of(s, left);
                    }
                    if right != NIL {
                        after = min_of(s, right);
                    }
                    break;
                }
            }
        }
        let cap = s.cap(id);
        let copy = |o: Id| o != NIL && s.cap(o).order_cmp(cap).is_eq();
        copy(before) || copy(after)
    }

    /// Calls `f` on every descendant of `cap` in the tree.
    ///
    /// A descendant lies inside `cap`, so it starts in `[cap.base, end)`:
    /// the walk goes straight to the first entry at `cap.base` and on in
    /// order until one starts at `end`. (An interval walk would also
    /// climb into every subtree that holds an ancestor reaching `cap`.)
    pub fn descendants(&self, s: &impl Store, cap: &Cap, f: &mut impl FnMut(Id) -> ControlFlow<()>) -> ControlFlow<()> {
        let end = if cap.size == 0 { cap.base + 1 } else { cap.end() };
        self.walk_bases(s, cap.base, end, &mut |o| {
            if cap.is_ancestor_of(s.cap(o)) { f(o) } else { ControlFlow::Continue(()) }
        })
    }

    /// Calls `f` on every entry whose base lies in `[start, end)`, in
    /// order, until it breaks. The tree is ordered by base first, so this
    /// is a search for `start` and a walk on from there.
    fn walk_bases(
        &self,
        s: &impl Store,
        start: u64,
        end: u64,
        f: &mut impl FnMut(Id) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        /// `Break(true)`: `f` broke; `Break(false)`: an entry at `end` was
        /// reached, so every later one is past it too.
        fn go(
            s: &impl Store,
            t: Id,
            range: (u64, u64),
            f: &mut impl FnMut(Id) -> ControlFlow<()>,
        ) -> ControlFlow<bool> {
            let mut t = t;
            while t != NIL {
                let Links { left, right, .. } = *s.links(t);
                let base = s.cap(t).base;
                // Below `start`, so is everything to the left.
                if base >= range.0 {
                    if left != NIL {
                        go(s, left, range, f)?;
                    }
                    if base >= range.1 {
                        return ControlFlow::Break(false);
                    }
                    if f(t).is_break() {
                        return ControlFlow::Break(true);
                    }
                }
                t = right;
            }
            ControlFlow::Continue(())
        }
        match go(s, self.root, (start, end), f) {
            ControlFlow::Break(true) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }

    /// Calls `f` on every ancestor of `cap` in the tree.
    pub fn ancestors(&self, s: &impl Store, cap: &Cap, f: &mut impl FnMut(Id) -> ControlFlow<()>) -> ControlFlow<()> {
        let end = if cap.size == 0 { cap.base + 1 } else { cap.end() };
        self.walk_range(s, cap.base, end, true, &mut |o| {
            if s.cap(o).is_ancestor_of(cap) { f(o) } else { ControlFlow::Continue(()) }
        })
    }

    pub fn has_descendants(&self, s: &impl Store, cap: &Cap) -> bool {
        self.descendants(s, cap, &mut |_| ControlFlow::Break(())).is_break()
    }

    pub fn has_ancestors(&self, s: &impl Store, cap: &Cap) -> bool {
        self.ancestors(s, cap, &mut |_| ControlFlow::Break(())).is_break()
    }

    /// The no-overlap rule for a retype of `src` into `[start, end)`: true
    /// if a descendant that types memory already lies there.
    pub fn retype_conflict(&self, s: &impl Store, src: &Cap, start: u64, end: u64) -> bool {
        self.overlapping(s, start, end, &mut |o| {
            let c = s.cap(o);
            if types::types_memory(c.objtype) && src.is_ancestor_of(c) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .is_break()
    }

    /// Whether anything but the entries `src_id` (holding `src`) and
    /// `except` reaches `[start, end)` of `src`'s memory: a descendant that
    /// types memory there, or another copy of `src`. A memory manager asks
    /// this, on its own copy of the RAM it hands out, before deleting a
    /// capability it is given back: if nothing else reaches the memory, it
    /// is free once that capability is gone. Copies count because the
    /// manager may have handed out a whole region as a copy.
    pub fn covered_except(
        &self,
        s: &impl Store,
        src: &Cap,
        src_id: Id,
        start: u64,
        end: u64,
        except: Option<Id>,
    ) -> bool {
        self.overlapping(s, start, end, &mut |o| {
            let c = s.cap(o);
            let other = o != src_id && Some(o) != except;
            if other && ((types::types_memory(c.objtype) && src.is_ancestor_of(c)) || c.is_copy(src)) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .is_break()
    }

    /// Checks the tree's invariants: order, AA levels, augmentation, count.
    /// For tests and for the kernel's debug invocation.
    pub fn check(&self, s: &impl Store) -> Result<(), &'static str> {
        fn go(s: &impl Store, t: Id, lo: Option<Id>, hi: Option<Id>, n: &mut usize) -> Result<(), &'static str> {
            if t == NIL {
                return Ok(());
            }
            *n += 1;
            let l = *s.links(t);
            if lo.is_some_and(|lo| order(s, lo, t) != Ordering::Less)
                || hi.is_some_and(|hi| order(s, t, hi) != Ordering::Less)
            {
                return Err("entries out of order");
            }
            if l.level == 0 {
                return Err("a node at level 0");
            }
            if l.left == NIL && l.right == NIL && l.level != 1 {
                return Err("a leaf above level 1");
            }
            if level(s, l.left) + 1 != l.level {
                return Err("a left child not one level down");
            }
            let rl = level(s, l.right);
            if rl != l.level && rl + 1 != l.level {
                return Err("a right child more than one level down");
            }
            if l.right != NIL && level(s, s.links(l.right).right) >= l.level {
                return Err("two right links on one level");
            }
            if l.level > 1 && (l.left == NIL || l.right == NIL) {
                return Err("an inner node without two children");
            }
            let want = s.cap(t).end().max(max_end(s, l.left)).max(max_end(s, l.right));
            if l.max_end != want {
                return Err("a stale max_end");
            }
            go(s, l.left, lo, Some(t), n)?;
            go(s, l.right, Some(t), hi, n)
        }
        let mut n = 0;
        go(s, self.root, None, None, &mut n)?;
        if n != self.len { Err("count differs from the entries reachable") } else { Ok(()) }
    }

    /// Checks the capability invariant over every entry: capabilities that
    /// type memory overlap only when one is a copy or an ancestor of the
    /// other. O(n log n + overlaps). For tests and the kernel's debug
    /// invocation.
    pub fn check_types(&self, s: &impl Store) -> Result<(), &'static str> {
        fn go(m: &Mdb, s: &impl Store, t: Id) -> Result<(), &'static str> {
            if t == NIL {
                return Ok(());
            }
            let Links { left, right, .. } = *s.links(t);
            go(m, s, left)?;
            let c = *s.cap(t);
            if types::types_memory(c.objtype) {
                let bad = m.overlapping(s, c.base, c.end(), &mut |o| {
                    let x = s.cap(o);
                    if o != t
                        && types::types_memory(x.objtype)
                        && !(x.is_copy(&c) || x.is_ancestor_of(&c) || c.is_ancestor_of(x))
                    {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                if bad.is_break() {
                    return Err("typed memory overlaps an unrelated capability");
                }
            }
            go(m, s, right)
        }
        go(self, s, self.root)
    }

    /// Checks that every entry has a home: it lies in the memory of a CNode
    /// the database holds, or `kernel_held` says the kernel keeps it
    /// outside any CNode. An entry is named by its address: `id * CTE_SIZE`.
    /// An entry without a home sits in memory nothing accounts for, which
    /// the next retype of that memory would overwrite.
    pub fn check_homes(&self, s: &impl Store, kernel_held: &impl Fn(Id) -> bool) -> Result<(), &'static str> {
        fn go(m: &Mdb, s: &impl Store, t: Id, kernel_held: &impl Fn(Id) -> bool) -> Result<(), &'static str> {
            if t == NIL {
                return Ok(());
            }
            let Links { left, right, .. } = *s.links(t);
            go(m, s, left, kernel_held)?;
            let pa = u64::from(t) * types::CTE_SIZE;
            let housed = kernel_held(t)
                || m.overlapping(s, pa, pa + types::CTE_SIZE, &mut |o| {
                    if matches!(s.cap(o).objtype, crate::ObjType::L1CNode | crate::ObjType::L2CNode) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .is_break();
            if !housed {
                return Err("an entry lies outside every CNode");
            }
            go(m, s, right, kernel_held)
        }
        go(self, s, self.root, kernel_held)
    }

    /// Height of the tree (for tests and measurements).
    pub fn height(&self, s: &impl Store) -> u32 {
        fn go(s: &impl Store, t: Id) -> u32 {
            if t == NIL { 0 } else { 1 + go(s, s.links(t).left).max(go(s, s.links(t).right)) }
        }
        go(s, self.root)
    }
}

#[cfg(test)]
mod tests;
