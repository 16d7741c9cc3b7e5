//! The database against a brute-force model: after every operation of
//! long random sequences (retype, copy, mint, map, delete, revoke), every
//! query must answer as a scan of all capabilities does, the tree's
//! invariants must hold, and typed memory must never overlap unrelated.

extern crate std;

use std::collections::BTreeSet;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::cap::{Extra, Rights};
use crate::{ObjType, map, retype};

#[derive(Default)]
struct Arena {
    caps: Vec<Cap>,
    links: Vec<Links>,
    live: Vec<bool>,
}

impl Store for Arena {
    fn cap(&self, id: Id) -> &Cap {
        &self.caps[id as usize]
    }
    fn links(&self, id: Id) -> &Links {
        &self.links[id as usize]
    }
    fn links_mut(&mut self, id: Id) -> &mut Links {
        &mut self.links[id as usize]
    }
}

struct World {
    a: Arena,
    mdb: Mdb,
}

impl World {
    fn new() -> Self {
        let mut w = World { a: Arena::default(), mdb: Mdb::new() };
        w.add(Cap::new(ObjType::Ram, 0x4000_0000, 0x40_0000));
        w.add(Cap::new(ObjType::Ram, 0x8000_0000, 0x20_0000));
        w.add(Cap::new(ObjType::DevFrame, 0x0900_0000, 0x1_0000));
        w.add(Cap::new(ObjType::Kernel, 0, 0));
        w
    }

    fn add(&mut self, cap: Cap) -> Id {
        let id = self.a.caps.len() as Id;
        self.a.caps.push(cap);
        self.a.links.push(Links::EMPTY);
        self.a.live.push(true);
        self.mdb.insert(&mut self.a, id);
        id
    }

    fn remove(&mut self, id: Id) {
        self.mdb.remove(&mut self.a, id);
        self.a.live[id as usize] = false;
    }

    fn live(&self) -> Vec<Id> {
        (0..self.a.caps.len() as Id).filter(|&i| self.a.live[i as usize]).collect()
    }

    fn pick(&self, k: usize) -> Option<Id> {
        let live = self.live();
        (!live.is_empty()).then(|| live[k % live.len()])
    }

    fn collect(&self, f: impl Fn(&Mdb, &Arena, &mut dyn FnMut(Id) -> ControlFlow<()>)) -> BTreeSet<Id> {
        let mut out = BTreeSet::new();
        f(&self.mdb, &self.a, &mut |i| {
            out.insert(i);
            ControlFlow::Continue(())
        });
        out
    }

    /// Every query against a scan; the tree's own invariants.
    fn verify(&self) {
        self.mdb.check(&self.a).unwrap();
        self.mdb.check_types(&self.a).unwrap();
        let live = self.live();
        assert_eq!(self.mdb.len(), live.len());
        for &id in &live {
            let c = *self.a.cap(id);
            let want_desc: BTreeSet<Id> = live.iter().copied().filter(|&o| c.is_ancestor_of(self.a.cap(o))).collect();
            let want_anc: BTreeSet<Id> = live.iter().copied().filter(|&o| self.a.cap(o).is_ancestor_of(&c)).collect();
            let want_copy = live.iter().any(|&o| o != id && self.a.cap(o).is_copy(&c));
            let desc = self.collect(|m, a, f| {
                let _ = m.descendants(a, &c, &mut |i| f(i));
            });
            let anc = self.collect(|m, a, f| {
                let _ = m.ancestors(a, &c, &mut |i| f(i));
            });
            assert_eq!(desc, want_desc, "descendants of {c:?}");
            // In database order, which callers rely on (pieces of a frame
            // come before the mappings inside them).
            let mut in_order = Vec::new();
            let _ = self.mdb.descendants(&self.a, &c, &mut |i| {
                in_order.push(i);
                ControlFlow::Continue(())
            });
            let mut want_order: Vec<Id> = want_desc.iter().copied().collect();
            want_order.sort_by(|&x, &y| order(&self.a, x, y));
            assert_eq!(in_order, want_order, "descendants of {c:?} in order");
            in_order.clear();
            let _ = self.mdb.descendants_of(&self.a, id, &mut |i| {
                in_order.push(i);
                ControlFlow::Continue(())
            });
            assert_eq!(in_order, want_order, "descendants of entry {id} in order");
            assert_eq!(anc, want_anc, "ancestors of {c:?}");
            assert_eq!(self.mdb.has_copies(&self.a, id), want_copy, "copies of {c:?}");
            let over = self.collect(|m, a, f| {
                let _ = m.overlapping(a, c.base, c.end(), &mut |i| f(i));
            });
            let want_over: BTreeSet<Id> = live.iter().copied().filter(|&o| self.a.cap(o).overlaps(&c)).collect();
            assert_eq!(over, want_over, "overlapping {c:?}");
        }
        // Typed memory: overlapping typing capabilities are related.
        for (i, &x) in live.iter().enumerate() {
            for &y in &live[i + 1..] {
                let (cx, cy) = (self.a.cap(x), self.a.cap(y));
                if types::types_memory(cx.objtype) && types::types_memory(cy.objtype) && cx.overlaps(cy) {
                    assert!(
                        cx.is_copy(cy) || cx.is_ancestor_of(cy) || cy.is_ancestor_of(cx),
                        "unrelated overlap: {cx:?} and {cy:?}"
                    );
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Retype { src: usize, ty: usize, offset_pages: u64, size_pages: u64, count: u64 },
    Copy { src: usize },
    Mint { src: usize, rights: u8 },
    Map { table: usize, frame: usize, entry: u16 },
    Delete { victim: usize },
    Revoke { victim: usize },
}

const RETYPE_TO: [ObjType; 12] = [
    ObjType::Ram,
    ObjType::Frame,
    ObjType::Frame,
    ObjType::DevFrame,
    ObjType::L1CNode,
    ObjType::L2CNode,
    ObjType::VNodeL1,
    ObjType::VNodeL2,
    ObjType::VNodeL3,
    ObjType::Dispatcher,
    ObjType::EndPointLmp,
    ObjType::KernelControlBlock,
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<usize>(), 0..RETYPE_TO.len(), 0u64..80, 0u64..20, 1u64..4)
            .prop_map(|(src, ty, offset_pages, size_pages, count)| Op::Retype { src, ty, offset_pages, size_pages, count }),
        2 => any::<usize>().prop_map(|src| Op::Copy { src }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(src, rights)| Op::Mint { src, rights }),
        2 => (any::<usize>(), any::<usize>(), 0u16..512).prop_map(|(table, frame, entry)| Op::Map { table, frame, entry }),
        2 => any::<usize>().prop_map(|victim| Op::Delete { victim }),
        1 => any::<usize>().prop_map(|victim| Op::Revoke { victim }),
    ]
}

fn apply(w: &mut World, op: &Op) {
    match *op {
        Op::Retype { src, ty, offset_pages, size_pages, count } => {
            let Some(id) = w.pick(src) else { return };
            let src = *w.a.cap(id);
            let req = retype::Request {
                new_type: RETYPE_TO[ty],
                offset: offset_pages * 4096,
                objsize: size_pages * 4096,
                count,
            };
            let Ok(plan) = retype::check(&src, &req) else { return };
            let (start, end) = plan.range();
            let conflict = w.mdb.retype_conflict(&w.a, &src, start, end);
            let covers = |o: Id| {
                let c = w.a.cap(o);
                types::types_memory(c.objtype) && src.is_ancestor_of(c) && c.base < end && start < c.end()
            };
            let live = w.live();
            let brute = live.iter().any(|&o| covers(o));
            assert_eq!(conflict, brute, "retype conflict for {req:?} from {src:?}");
            // Leaving out the source's own entry and one more: the first
            // that covers, if any. Copies of the source count.
            let reaches =
                |o: Id| covers(o) || w.a.cap(o).is_copy(&src) && w.a.cap(o).base < end && start < w.a.cap(o).end();
            let skip = live.iter().copied().find(|&o| o != id && reaches(o));
            let others = live.iter().any(|&o| o != id && Some(o) != skip && reaches(o));
            let got = w.mdb.covered_except(&w.a, &src, id, start, end, skip);
            assert_eq!(got, others, "covered without {id} and {skip:?} for {req:?} from {src:?}");
            if !conflict {
                for i in 0..plan.count {
                    w.add(plan.nth(&src, i));
                }
            }
        }
        Op::Copy { src } => {
            if let Some(id) = w.pick(src) {
                let c = *w.a.cap(id);
                w.add(c);
            }
        }
        Op::Mint { src, rights } => {
            if let Some(id) = w.pick(src) {
                let c = *w.a.cap(id);
                let buffer = (c.objtype == ObjType::EndPointLmp).then_some((u32::from(rights) * 8, 64));
                if let Ok(m) = retype::mint(&c, Rights::from_bits_truncate(rights), buffer) {
                    w.add(m);
                }
            }
        }
        Op::Map { table, frame, entry } => {
            let (Some(t), Some(f)) = (w.pick(table), w.pick(frame)) else { return };
            let req = map::Request { entry, count: 1, offset: 0, rights: Rights::READ };
            if let Ok(plan) = map::check(w.a.cap(t), w.a.cap(f), &req) {
                w.add(plan.mapping);
            }
        }
        Op::Delete { victim } => {
            if let Some(id) = w.pick(victim) {
                w.remove(id);
            }
        }
        Op::Revoke { victim } => {
            let Some(id) = w.pick(victim) else { return };
            let c = *w.a.cap(id);
            let mut doomed = w.collect(|m, a, f| {
                let _ = m.descendants(a, &c, &mut |i| f(i));
            });
            let _ = w.mdb.with_key(&w.a, &c, &mut |o| {
                if o != id {
                    doomed.insert(o);
                }
                ControlFlow::Continue(())
            });
            for d in doomed {
                w.remove(d);
            }
            assert!(!w.mdb.has_descendants(&w.a, &c), "revoke left a descendant of {c:?}");
            assert!(!w.mdb.has_copies(&w.a, id), "revoke left a copy of {c:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_every_invariant(ops in proptest::collection::vec(op(), 1..60)) {
        let mut w = World::new();
        w.verify();
        for op in &ops {
            apply(&mut w, op);
            w.verify();
        }
    }
}

#[test]
fn stays_balanced_under_sorted_and_reverse_inserts() {
    for reverse in [false, true] {
        let mut w = World { a: Arena::default(), mdb: Mdb::new() };
        let n = 4096u64;
        for i in 0..n {
            let k = if reverse { n - 1 - i } else { i };
            w.add(Cap::new(ObjType::Frame, 0x1000 * k, 0x1000));
        }
        w.mdb.check(&w.a).unwrap();
        // An AA tree's height is at most 2 log2(n + 1).
        assert!(w.mdb.height(&w.a) <= 2 * 13, "height {}", w.mdb.height(&w.a));
        for i in (0..n as Id).step_by(2) {
            w.remove(i);
        }
        w.mdb.check(&w.a).unwrap();
        assert_eq!(w.mdb.len(), n as usize / 2);
        assert!(w.mdb.height(&w.a) <= 2 * 12);
    }
}

#[test]
fn check_homes_finds_entries_outside_every_cnode() {
    // Ids are addresses / CTE_SIZE: a CNode over [0, 64 entries) houses
    // ids 0..64.
    let mut w = World { a: Arena::default(), mdb: Mdb::new() };
    let cn = w.add(Cap::new(ObjType::L2CNode, 0, 64 * types::CTE_SIZE));
    for _ in 1..10 {
        w.add(Cap::new(ObjType::Kernel, 0, 0));
    }
    w.mdb.check_homes(&w.a, &|_| false).unwrap();
    // An entry beyond the CNode is homeless, unless the kernel holds it.
    while w.a.caps.len() < 64 {
        w.add(Cap::new(ObjType::Kernel, 0, 0));
    }
    let outside = w.add(Cap::new(ObjType::Kernel, 0, 0));
    assert!(w.mdb.check_homes(&w.a, &|_| false).is_err());
    w.mdb.check_homes(&w.a, &|id| id == outside).unwrap();
    // Once the CNode goes, everything it held is homeless.
    w.remove(outside);
    w.mdb.check_homes(&w.a, &|_| false).unwrap();
    w.remove(cn);
    assert!(w.mdb.check_homes(&w.a, &|_| false).is_err());
}

#[test]
fn check_types_finds_unrelated_overlap() {
    let mut w = World::new();
    w.mdb.check_types(&w.a).unwrap();
    // Two frames overlapping by half, neither derived from the other.
    w.add(Cap::new(ObjType::Frame, 0x1_0000_0000, 0x2000));
    w.mdb.check_types(&w.a).unwrap();
    w.add(Cap::new(ObjType::Frame, 0x1_0000_1000, 0x2000));
    assert!(w.mdb.check_types(&w.a).is_err());
}

#[test]
fn deleting_the_only_ram_leaves_its_frames() {
    let mut w = World::new();
    let ram = 0;
    let src = *w.a.cap(ram);
    let plan = retype::check(&src, &retype::Request { new_type: ObjType::Frame, offset: 0, objsize: 0x1000, count: 2 })
        .unwrap();
    let f0 = w.add(plan.nth(&src, 0));
    w.add(plan.nth(&src, 1));
    assert!(w.mdb.retype_conflict(&w.a, &src, 0x4000_0000, 0x4000_1000), "memory already typed");
    assert!(!w.mdb.retype_conflict(&w.a, &src, 0x4000_2000, 0x4000_3000));
    assert!(!w.mdb.covered_except(&w.a, &src, ram, 0x4000_0000, 0x4000_1000, Some(f0)), "only f0 is there");
    assert!(w.mdb.covered_except(&w.a, &src, ram, 0x4000_0000, 0x4000_2000, Some(f0)), "the second frame");
    let copy = w.add(src);
    assert!(w.mdb.covered_except(&w.a, &src, ram, 0x4000_0000, 0x4000_1000, Some(f0)), "a copy of the RAM");
    w.remove(copy);
    w.remove(ram);
    w.verify();
    assert!(!w.mdb.has_ancestors(&w.a, &w.a.caps[f0 as usize]));
}

/// Andersson's insertion and deletion as first written here, recursing
/// from the root with full key comparisons, rebalancing every level of
/// the path and recomputing `max_end` after every step, without parent
/// links: the reference the database's must match node for node.
mod reference {
    use super::super::{Id, Links, NIL, Store, level, max_of, min_of, order, update};
    use core::cmp::Ordering;

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

    pub fn insert_at(s: &mut impl Store, t: Id, id: Id) -> Id {
        if t == NIL {
            let end = s.cap(id).end();
            *s.links_mut(id) = Links { left: NIL, right: NIL, parent: NIL, level: 1, max_end: end };
            return id;
        }
        if order(s, id, t) == Ordering::Less {
            let l = insert_at(s, s.links(t).left, id);
            s.links_mut(t).left = l;
        } else {
            let r = insert_at(s, s.links(t).right, id);
            s.links_mut(t).right = r;
        }
        update(s, t);
        let t = skew(s, t);
        split(s, t)
    }

    pub fn remove_at(s: &mut impl Store, t: Id, id: Id) -> Id {
        if t == NIL {
            return NIL;
        }
        let mut t = t;
        match order(s, id, t) {
            Ordering::Less => {
                let l = remove_at(s, s.links(t).left, id);
                s.links_mut(t).left = l;
            }
            Ordering::Greater => {
                let r = remove_at(s, s.links(t).right, id);
                s.links_mut(t).right = r;
            }
            Ordering::Equal => {
                let Links { left, right, level, .. } = *s.links(t);
                *s.links_mut(t) = Links::EMPTY;
                if left == NIL && right == NIL {
                    return NIL;
                }
                let (sub, new_left, new_right) = if left == NIL {
                    let succ = min_of(s, right);
                    (succ, NIL, remove_at(s, right, succ))
                } else {
                    let pred = max_of(s, left);
                    (pred, remove_at(s, left, pred), right)
                };
                *s.links_mut(sub) = Links { left: new_left, right: new_right, parent: NIL, level, max_end: 0 };
                t = sub;
            }
        }
        let (l, r) = (s.links(t).left, s.links(t).right);
        let should = level(s, l).min(level(s, r)) + 1;
        if should < level(s, t) {
            s.links_mut(t).level = should;
            if should < level(s, r) {
                s.links_mut(r).level = should;
            }
        }
        update(s, t);
        t = skew(s, t);
        let r = skew(s, s.links(t).right);
        s.links_mut(t).right = r;
        if r != NIL {
            let rr = skew(s, s.links(r).right);
            s.links_mut(r).right = rr;
            update(s, r);
        }
        update(s, t);
        t = split(s, t);
        let r = split(s, s.links(t).right);
        s.links_mut(t).right = r;
        update(s, t);
        t
    }
}

/// Every entry's links but the parent, which the reference does not keep.
fn shape(a: &Arena) -> Vec<(Id, Id, u8, u64)> {
    a.links.iter().map(|l| (l.left, l.right, l.level, l.max_end)).collect()
}

/// A capability from a small set, so keys collide often (copies, equal
/// bases, equal sizes) and every tie-break is taken.
fn crowded_cap(k: u16) -> Cap {
    let types = [ObjType::Ram, ObjType::Frame, ObjType::L2CNode, ObjType::Dispatcher, ObjType::FrameMapping];
    let k = u64::from(k);
    let extra = if k.is_multiple_of(7) { Extra::Endpoint { offset: (k % 3) as u32, size: 8 } } else { Extra::None };
    Cap { extra, ..Cap::new(types[(k % 5) as usize], 0x1000 * (k % 11), 0x1000 << (k % 3)) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The database's insertion and removal build exactly the tree the
    /// reference does: same root, and every entry with the same children,
    /// level and `max_end` (parent links are checked by `check`).
    #[test]
    fn tuned_updates_build_the_reference_tree(ops in proptest::collection::vec((any::<bool>(), any::<u16>()), 1..400)) {
        let mut fast = World { a: Arena::default(), mdb: Mdb::new() };
        let mut slow = Arena::default();
        let mut slow_root = NIL;
        for (add, k) in ops {
            let live = fast.live();
            if add || live.is_empty() {
                let cap = crowded_cap(k);
                let id = fast.add(cap);
                slow.caps.push(cap);
                slow.links.push(Links::EMPTY);
                slow_root = reference::insert_at(&mut slow, slow_root, id);
            } else {
                let id = live[usize::from(k) % live.len()];
                fast.remove(id);
                slow_root = reference::remove_at(&mut slow, slow_root, id);
            }
            prop_assert_eq!(fast.mdb.root, slow_root);
            prop_assert_eq!(shape(&fast.a), shape(&slow));
            fast.mdb.check(&fast.a).unwrap();
        }
    }
}

/// The same as a long deterministic run: the tree grows to thousands of
/// entries (so deep paths), then shrinks back.
#[test]
fn tuned_updates_build_the_reference_tree_when_deep() {
    let mut fast = World { a: Arena::default(), mdb: Mdb::new() };
    let mut slow = Arena::default();
    let mut slow_root = NIL;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for step in 0..8000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let live = fast.live();
        // Two adds to a removal while growing, the reverse after.
        let add = live.is_empty() || x.is_multiple_of(3) == (step >= 4000);
        if add {
            let cap = crowded_cap((x >> 8) as u16);
            let id = fast.add(cap);
            slow.caps.push(cap);
            slow.links.push(Links::EMPTY);
            slow_root = reference::insert_at(&mut slow, slow_root, id);
        } else {
            let id = live[(x >> 24) as usize % live.len()];
            fast.remove(id);
            slow_root = reference::remove_at(&mut slow, slow_root, id);
        }
        assert_eq!(fast.mdb.root, slow_root, "step {step}");
        assert_eq!(shape(&fast.a), shape(&slow), "step {step}");
    }
    fast.mdb.check(&fast.a).unwrap();
}

/// `descendants_of` steps back over the entries sharing its entry's base,
/// or searches from the root when there are many: the same answer both
/// ways.
#[test]
fn descendants_of_an_entry_behind_many_at_its_base() {
    let mut w = World { a: Arena::default(), mdb: Mdb::new() };
    let ram = Cap::new(ObjType::Ram, 0x4000_0000, 0x10_0000);
    let rams: Vec<Id> = (0..6).map(|_| w.add(ram)).collect();
    let frame = w.add(Cap::new(ObjType::Frame, ram.base, 0x2000));
    let piece = w.add(Cap::new(ObjType::Frame, ram.base + 0x1000, 0x1000));
    let req = map::Request { entry: 0, count: 1, offset: 0x1000, rights: Rights::READ };
    let table = Cap::new(ObjType::VNodeL3, 0x8000_0000, 0x1000);
    let mapping = w.add(map::check(&table, w.a.cap(frame), &req).unwrap().mapping);
    w.verify();
    let of = |w: &World, id: Id| {
        let mut got = Vec::new();
        let _ = w.mdb.descendants_of(&w.a, id, &mut |i| {
            got.push(i);
            ControlFlow::Continue(())
        });
        got
    };
    assert_eq!(of(&w, frame), [piece, mapping], "six entries before it at its base");
    assert_eq!(of(&w, piece), [mapping]);
    for &r in &rams {
        assert_eq!(of(&w, r), [frame, piece, mapping]);
    }
}
