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
//! Each entry also links to its parent, so an update rebalances from the
//! entry upwards and stops at the first level whose parent would see no
//! change, and an entry's neighbours in the order are found from it.
//!
//! Insertion and removal walk up by parent links. What recursion is left
//! goes no deeper than the tree height, at most `2 log2(n + 1)`: queries,
//! and a removal taking off the neighbour that replaces its entry (a leaf
//! one call down, in a balanced tree).

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
    /// The node this one hangs from (`NIL` at the root): a removal and the
    /// neighbour queries start at the entry rather than search for it.
    /// (It fills what was padding: the links stay 24 bytes.)
    pub parent: Id,
    pub level: u8,
    /// Highest end address in this subtree.
    pub max_end: u64,
}

impl Links {
    pub const EMPTY: Links = Links { left: NIL, right: NIL, parent: NIL, level: 0, max_end: 0 };
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

/// The entry an insertion places, with its base, size and end read once:
/// most levels of the search then compare registers only.
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

fn set_left(s: &mut impl Store, t: Id, c: Id) {
    s.links_mut(t).left = c;
    if c != NIL {
        s.links_mut(c).parent = t;
    }
}

fn set_right(s: &mut impl Store, t: Id, c: Id) {
    s.links_mut(t).right = c;
    if c != NIL {
        s.links_mut(c).parent = t;
    }
}

/// Hangs `new` from `parent` on its right (`right`) or left, in place of
/// the subtree that hung there.
fn replace_child(s: &mut impl Store, parent: Id, right: bool, new: Id) {
    if right { set_right(s, parent, new) } else { set_left(s, parent, new) }
}

/// Right rotation when a left child has the same level. A rotation keeps
/// the set of entries below the subtree's root, so only the two rotated
/// nodes' `max_end` are recomputed. The new root takes `t`'s parent; the
/// caller points that parent at it. (The test is inline and the rotation
/// a call: most calls rotate nothing.)
#[inline(always)]
fn skew(s: &mut impl Store, t: Id) -> Id {
    if t == NIL {
        return t;
    }
    let l = s.links(t).left;
    if l != NIL && s.links(l).level == s.links(t).level { rotate_right(s, t, l) } else { t }
}

#[inline(never)]
fn rotate_right(s: &mut impl Store, t: Id, l: Id) -> Id {
    let parent = s.links(t).parent;
    let lr = s.links(l).right;
    set_left(s, t, lr);
    set_right(s, l, t);
    s.links_mut(l).parent = parent;
    update(s, t);
    update(s, l);
    l
}

/// Left rotation and promotion when two right links share a level.
#[inline(always)]
fn split(s: &mut impl Store, t: Id) -> Id {
    if t == NIL {
        return t;
    }
    let r = s.links(t).right;
    if r != NIL && s.links(r).right != NIL && level(s, s.links(r).right) == s.links(t).level {
        rotate_left(s, t, r)
    } else {
        t
    }
}

#[inline(never)]
fn rotate_left(s: &mut impl Store, t: Id, r: Id) -> Id {
    let parent = s.links(t).parent;
    let rl = s.links(r).left;
    set_right(s, t, rl);
    set_left(s, r, t);
    let rr = s.links_mut(r);
    rr.parent = parent;
    rr.level += 1;
    update(s, t);
    update(s, r);
    r
}

/// Andersson's rebalancing of `t` after its subtree lost an entry; `t`'s
/// children are balanced and their `max_end` current. Returns the root,
/// which hangs from `t`'s parent.
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
    // split(t), its test read inline: no removal seen has needed it.
    let rr = if right && was == l.level { s.links(l.right).right } else { NIL };
    if rr != NIL && level(s, rr) == l.level { split(s, t) } else { t }
}

/// Rebalances after a removal below `t`, on its `right` side (at level
/// `was` before), of an entry that ended at `gone_end`: `t`, then each
/// parent up to `top`. Returns the root of what `top` headed.
///
/// The walk stops early once a node comes out as it went in — same root,
/// level and `max_end` — unless it is a right child level with its parent
/// whose own right child has come level with both, which its parent must
/// split. Above such a node every step would find nothing to do: the
/// parent sees children with the levels and `max_end` they had, so keeps
/// its own, and nothing it looks at needs a rotation.
fn fix_up(s: &mut impl Store, t: Id, right: bool, was: u8, gone_end: u64, top: Id) -> Id {
    let (mut t, mut right, mut was) = (t, right, was);
    loop {
        let before = *s.links(t);
        let parent = before.parent;
        let is_right = parent != NIL && s.links(parent).right == t;
        let new = rebalance_side(s, t, right, was, gone_end);
        if t == top {
            return new;
        }
        replace_child(s, parent, is_right, new);
        let after = *s.links(new);
        let same = new == t && after.level == before.level && after.max_end == before.max_end;
        let split_above = is_right
            && after.level == s.links(parent).level
            && after.right != NIL
            && s.links(after.right).level == after.level;
        if same && !split_above {
            return top;
        }
        (t, right, was) = (parent, is_right, before.level);
    }
}

/// Takes entry `t` out of its subtree; returns the subtree's new root,
/// hanging from `t`'s parent. The in-order neighbour takes `t`'s place:
/// the entries are the nodes, so they are relinked rather than their keys
/// swapped.
fn unlink(s: &mut impl Store, t: Id) -> Id {
    let Links { left, right, parent, level, .. } = *s.links(t);
    *s.links_mut(t) = Links::EMPTY;
    if left == NIL && right == NIL {
        return NIL;
    }
    // The neighbour comes from the side that has one, the left if both.
    let from_right = left == NIL;
    let side = if from_right { right } else { left };
    let was = s.links(side).level;
    let (sub, rest) = take_end(s, side, !from_right);
    let (new_left, new_right) = if from_right { (NIL, rest) } else { (rest, right) };
    *s.links_mut(sub) = Links { left: NIL, right: NIL, parent, level, max_end: 0 };
    set_left(s, sub, new_left);
    set_right(s, sub, new_right);
    // `sub` stands where `t` stood, with one side short of an entry.
    rebalance_side(s, sub, from_right, was, u64::MAX)
}

/// Takes the last (`last`) or first entry out of subtree `t`, whose
/// parent is being unlinked: returns it and the subtree's new root.
fn take_end(s: &mut impl Store, t: Id, last: bool) -> (Id, Id) {
    let end = if last { max_of(s, t) } else { min_of(s, t) };
    if end == t {
        return (end, unlink(s, end));
    }
    let Links { parent, level, .. } = *s.links(end);
    let rest = unlink(s, end);
    replace_child(s, parent, last, rest);
    // The entry does not stay in this subtree: any node's `max_end` may
    // have been its end.
    (end, fix_up(s, parent, last, level, u64::MAX, t))
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

/// Calls `f` on `t` and the entries after it in order, until one starts
/// at or after `end` or `f` breaks.
fn walk_from(s: &impl Store, t: Id, end: u64, f: &mut impl FnMut(Id) -> ControlFlow<()>) -> ControlFlow<()> {
    let mut t = t;
    while t != NIL && s.cap(t).base < end {
        f(t)?;
        t = next(s, t);
    }
    ControlFlow::Continue(())
}

/// The entry before `t` in the order, or `NIL`.
fn prev(s: &impl Store, t: Id) -> Id {
    let l = s.links(t).left;
    if l != NIL {
        return max_of(s, l);
    }
    let (mut t, mut p) = (t, s.links(t).parent);
    while p != NIL && s.links(p).left == t {
        (t, p) = (p, s.links(p).parent);
    }
    p
}

/// The entry after `t` in the order, or `NIL`.
fn next(s: &impl Store, t: Id) -> Id {
    let r = s.links(t).right;
    if r != NIL {
        return min_of(s, r);
    }
    let (mut t, mut p) = (t, s.links(t).parent);
    while p != NIL && s.links(p).right == t {
        (t, p) = (p, s.links(p).parent);
    }
    p
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
        let p = Probe::of(s, id);
        *s.links_mut(id) = Links { level: 1, max_end: p.end, ..Links::EMPTY };
        self.len += 1;
        if self.root == NIL {
            self.root = id;
            return;
        }
        // Down to a leaf. The entry joins every subtree on the way, so
        // their highest ends can only grow to its end.
        let mut t = self.root;
        loop {
            let l = s.links_mut(t);
            l.max_end = l.max_end.max(p.end);
            let right = p.cmp(s, t) != Ordering::Less;
            let c = if right { s.links(t).right } else { s.links(t).left };
            if c == NIL {
                replace_child(s, t, right, id);
                break;
            }
            t = c;
        }
        // Back up with Andersson's skew and split at each node, until one
        // is not rotated (so keeps its level) and its parent needs
        // no split because of it: only a right child level with its parent
        // whose own right child has come level too makes the parent split.
        loop {
            let parent = s.links(t).parent;
            let is_right = parent != NIL && s.links(parent).right == t;
            let skewed = skew(s, t);
            let new = split(s, skewed);
            if parent == NIL {
                self.root = new;
                return;
            }
            // (A skew and a split can bring `t` back on top, a level up.)
            if skewed != t || new != skewed {
                replace_child(s, parent, is_right, new);
            } else {
                let Links { right, level: lv, .. } = *s.links(t);
                if !is_right || lv != s.links(parent).level || level(s, right) != lv {
                    return;
                }
            }
            t = parent;
        }
    }

    /// Removes entry `id`, which must be in the tree: from the entry
    /// itself, rebalancing upwards only as far as something changed.
    pub fn remove(&mut self, s: &mut impl Store, id: Id) {
        let gone_end = s.cap(id).end();
        let Links { parent, level, .. } = *s.links(id);
        let is_right = parent != NIL && s.links(parent).right == id;
        let sub = unlink(s, id);
        self.len -= 1;
        if parent == NIL {
            self.root = sub;
            return;
        }
        replace_child(s, parent, is_right, sub);
        self.root = fix_up(s, parent, is_right, level, gone_end, self.root);
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

    /// Whether another entry holds a copy of entry `id`'s capability; `id`
    /// must be in the tree. Copies share an order key and the tree orders
    /// equal keys by id, so they sit next to each other: it is enough to
    /// look at `id`'s two neighbours.
    pub fn has_copies(&self, s: &impl Store, id: Id) -> bool {
        let cap = s.cap(id);
        let copy = |o: Id| o != NIL && s.cap(o).order_cmp(cap).is_eq();
        copy(prev(s, id)) || copy(next(s, id))
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

    /// [`Mdb::descendants`] of the capability of entry `id`, which must be
    /// in the tree. The walk starts at the first entry at its base, which
    /// is `id` itself or one of the few just before it that share the base
    /// (ancestors or copies): those are stepped back over rather than
    /// searched for from the root, up to a bound, past which the search is
    /// cheaper.
    pub fn descendants_of(&self, s: &impl Store, id: Id, f: &mut impl FnMut(Id) -> ControlFlow<()>) -> ControlFlow<()> {
        const STEPS_BACK: usize = 4;
        let cap = s.cap(id);
        let end = if cap.size == 0 { cap.base + 1 } else { cap.end() };
        let mut first = id;
        for _ in 0..STEPS_BACK {
            let p = prev(s, first);
            if p == NIL || s.cap(p).base < cap.base {
                return walk_from(s, first, end, &mut |o| {
                    if cap.is_ancestor_of(s.cap(o)) { f(o) } else { ControlFlow::Continue(()) }
                });
            }
            first = p;
        }
        self.descendants(s, cap, f)
    }

    /// Calls `f` on every entry whose base lies in `[start, end)`, in
    /// order, until it breaks. The tree is ordered by base first, so this
    /// is a search for the first entry at `start` and a walk on from there.
    fn walk_bases(
        &self,
        s: &impl Store,
        start: u64,
        end: u64,
        f: &mut impl FnMut(Id) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let (mut t, mut first) = (self.root, NIL);
        while t != NIL {
            let Links { left, right, .. } = *s.links(t);
            if s.cap(t).base >= start {
                (first, t) = (t, left);
            } else {
                t = right;
            }
        }
        walk_from(s, first, end, f)
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
            if [l.left, l.right].iter().any(|&c| c != NIL && s.links(c).parent != t) {
                return Err("a child that does not link back to its parent");
            }
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
        if self.root != NIL && s.links(self.root).parent != NIL {
            return Err("a root with a parent");
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
