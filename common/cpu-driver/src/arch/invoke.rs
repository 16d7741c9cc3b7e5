//! Capability invocations (`Syscall::Invoke`): identify, retype, copy,
//! mint, delete and revoke, every argument checked against the caller's
//! CSpace and the rules of `caps`. A refused invocation changes nothing.

use core::cell::RefCell;
use core::ops::ControlFlow;

use caps::mdb::{Id, Mdb, Store};
use caps::types::{self, CTE_SIZE};
use caps::{Cap, CapError, Extra, ObjType, Rights, map, retype};
use cpu_driver::paging::{self, Attributes, Memory, Table};
use kpi::ErrorCode;
use kpi::invocation::{CapRef, Command, Dest};

use kpi::invocation::DispatcherState;

use super::core::this_core;
use super::cspace::{self, Cte, Ctes};
use super::dispatch::{self, Dcb};
use super::{irq, mm};

/// Most entries one `Revoke` deletes; more work returns `Retry`.
pub const REVOKE_BATCH: usize = 64;

fn cap_error(e: CapError) -> ErrorCode {
    match e {
        CapError::IllegalRetype => ErrorCode::IllegalRetype,
        CapError::IllegalMapping => ErrorCode::IllegalMapping,
        CapError::InvalidSize | CapError::EntriesOutOfRange => ErrorCode::InvalidArgument,
        CapError::Misaligned => ErrorCode::Misaligned,
        CapError::Overlap => ErrorCode::RetypeOverlap,
        CapError::Rights => ErrorCode::NoRights,
        CapError::WrongType => ErrorCode::WrongCapType,
    }
}

/// Slots `first .. first + count` of the CNode (L1 or L2) that
/// `dest.cnode` names, all empty; returns the first slot's address.
fn dest_slots(root: &Cap, dest: Option<Dest>, count: u64) -> Result<u64, ErrorCode> {
    let dest = dest.ok_or(ErrorCode::BadCapAddr)?;
    let cnode_pa = cspace::lookup(root, dest.cnode)?;
    // SAFETY: a slot of the caller's CSpace.
    let cnode = unsafe { cspace::cte_at(cnode_pa) }.cap;
    if !matches!(cnode.objtype, ObjType::L1CNode | ObjType::L2CNode) {
        return Err(ErrorCode::BadCapAddr);
    }
    let slots = cnode.size / CTE_SIZE;
    let end = u64::from(dest.slot).checked_add(count).ok_or(ErrorCode::BadCapAddr)?;
    if end > slots {
        return Err(ErrorCode::BadCapAddr);
    }
    let first = cnode.base + u64::from(dest.slot) * CTE_SIZE;
    for i in 0..count {
        // SAFETY: within the destination CNode, bounds checked above.
        if unsafe { cspace::cte_at(first + i * CTE_SIZE) }.cap.objtype != ObjType::Null {
            return Err(ErrorCode::SlotInUse);
        }
    }
    Ok(first)
}

/// Puts `cap` into the empty slot at `pa` and into the database.
fn install(mdb: &mut Mdb, pa: u64, cap: Cap) {
    // SAFETY: `pa` is an empty slot checked by `dest_slots`.
    unsafe { cspace::put(mdb, pa, Cte::new(cap)) };
}

/// Most bytes one executable mapping may cover: the kernel cleans and
/// invalidates the caches over all of it in one event, so its size bounds
/// how long a user keeps the core in the kernel. The largest program image.
const EXEC_MAP_MAX: u64 = kpi::vspace::IMAGE_MAX;

fn is_vnode(ty: ObjType) -> bool {
    matches!(ty, ObjType::VNodeL0 | ObjType::VNodeL1 | ObjType::VNodeL2 | ObjType::VNodeL3)
}

/// The translation table a VNode capability's memory holds.
fn table(pa: u64) -> &'static mut Table {
    // SAFETY: `pa` is the base of a live VNode object (4 KiB, aligned),
    // which only the kernel writes; one event runs at a time.
    unsafe { &mut *(mm::phys(pa) as *mut Table) }
}

/// Page-table attributes for a user mapping with `rights`.
fn user_attrs(src_type: ObjType, rights: Rights) -> Attributes {
    Attributes {
        memory: if src_type == ObjType::DevFrame { Memory::Device } else { Memory::Normal },
        write: rights.contains(Rights::WRITE),
        exec: rights.contains(Rights::EXECUTE),
        user: true,
        global: false,
    }
}

/// Drops stale translations after entries were cleared or changed. With no
/// virtual address at hand (a table does not know where it is mapped), the
/// whole local TLB goes.
fn flush_tlb() {
    // SAFETY: barriers and TLB invalidation only; no memory is written.
    unsafe { core::arch::asm!("dsb ishst", "tlbi vmalle1", "dsb ish", "isb", options(nostack)) };
}

/// Clears the entries a mapping capability records.
fn unmap(m: &Cap) {
    if let Extra::Mapping { table: t, entry, count, .. } = m.extra {
        let entries = table(t);
        for e in &mut entries[usize::from(entry)..usize::from(entry) + usize::from(count)] {
            *e = 0;
        }
        flush_tlb();
    }
}

/// Empties the slot at `pa`, removing its entry from the database; a
/// mapping capability takes its page-table entries with it.
fn remove(mdb: &mut Mdb, pa: u64) {
    // SAFETY: a slot the caller found holding a capability.
    let cap = unsafe { cspace::cte_at(pa) }.cap;
    if types::is_mapping(cap.objtype) {
        unmap(&cap);
    }
    mdb.remove(&mut Ctes, cspace::id_of(pa));
    // SAFETY: a slot the caller found holding a capability, now out of
    // the database.
    unsafe { cspace::clear(pa) };
}

/// Makes new objects usable: CNodes get empty slots, other kernel objects
/// zeroed memory. Frames and RAM are left as they are.
fn init_object(cap: &Cap) {
    match cap.objtype {
        ObjType::L1CNode | ObjType::L2CNode => {
            // SAFETY: memory just retyped into this CNode; no other
            // capability types it, so the kernel owns it.
            unsafe { cspace::init_cnode(cap.base, cap.size) }
        }
        ObjType::VNodeL0
        | ObjType::VNodeL1
        | ObjType::VNodeL2
        | ObjType::VNodeL3
        | ObjType::Dispatcher
        | ObjType::KernelControlBlock => {
            // SAFETY: as above, for this kernel object.
            unsafe { mm::zero_phys(cap.base, cap.size) }
        }
        _ => {}
    }
}

/// Whether a CNode has any capability in it.
fn cnode_has_contents(cap: &Cap) -> bool {
    // SAFETY: `cap` is a live CNode capability: its memory holds CTEs.
    (0..cap.size / CTE_SIZE).any(|i| unsafe { cspace::cte_at(cap.base + i * CTE_SIZE) }.cap.objtype != ObjType::Null)
}

fn is_cnode(ty: ObjType) -> bool {
    matches!(ty, ObjType::L1CNode | ObjType::L2CNode)
}

/// How much one invocation may do: deletions and CNodes visited. Work
/// beyond it returns `Retry`; the caller repeats the invocation.
struct Budget<'a> {
    deletions: usize,
    visits: usize,
    /// Where the previous call of this invocation stopped clearing a CNode,
    /// and where this call stops: kept in per-core state and used in place,
    /// so an invocation that clears no CNode does not copy it.
    cursor: &'a mut Resume,
    /// Whether `cursor` holds the previous call's stop, for this call to
    /// resume at (once).
    resumable: bool,
    /// Whether this call left a stop in `cursor`.
    stopped: bool,
}

impl Budget<'_> {
    /// Records where a clear of `top` stopped, for the call that repeats
    /// this one.
    fn stop(&mut self, top: &Cap, path: Path) {
        self.cursor.top = top.base;
        self.cursor.path = path;
        self.stopped = true;
    }

    fn spent(&self) -> bool {
        self.deletions == 0 || self.visits == 0
    }
}

/// Nested CNodes kept on a clearing path; deeper nesting keeps the deepest.
const PATH_MAX: usize = 64;

/// The slots of the nested CNodes a clear has descended through, each
/// inside the one before, the first inside the top CNode. Only the deepest
/// [`PATH_MAX`] are kept: when those are used up the walk descends from the
/// top again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Path {
    slots: [u64; PATH_MAX],
    len: usize,
    /// The way to an *anchor* that could not be moved (its CNode was full):
    /// the slots of the nested CNodes holding the last copy of the CNode
    /// being cleared, and its own slot. Taken last (see [`clear_cnode`]).
    anchor: [u64; PATH_MAX + 1],
    anchor_len: usize,
}

impl Path {
    const EMPTY: Path = Path { slots: [0; PATH_MAX], len: 0, anchor: [0; PATH_MAX + 1], anchor_len: 0 };

    fn on_anchor_way(&self, slot: u64) -> bool {
        self.anchor[..self.anchor_len].contains(&slot)
    }

    /// Records the anchor at `slot`, reached through the current path.
    fn set_anchor(&mut self, slot: u64) {
        self.anchor[..self.len].copy_from_slice(&self.slots[..self.len]);
        self.anchor[self.len] = slot;
        self.anchor_len = self.len + 1;
    }

    fn push(&mut self, slot: u64) {
        if self.len == PATH_MAX {
            self.slots.copy_within(1.., 0);
            self.len -= 1;
        }
        self.slots[self.len] = slot;
        self.len += 1;
    }

    fn pop(&mut self) -> Option<u64> {
        self.len = self.len.checked_sub(1)?;
        Some(self.slots[self.len])
    }

    fn last(&self) -> Option<u64> {
        self.len.checked_sub(1).map(|i| self.slots[i])
    }
}

/// Entries collected for deletion, at most one batch; `full` records that
/// more were offered than fit.
struct Batch {
    ids: [Id; REVOKE_BATCH],
    n: usize,
    limit: usize,
    full: bool,
}

impl Batch {
    const fn new() -> Self {
        Self::up_to(REVOKE_BATCH)
    }

    /// A batch that takes at most `limit` entries (and never more than one
    /// batch).
    const fn up_to(limit: usize) -> Self {
        let limit = if limit < REVOKE_BATCH { limit } else { REVOKE_BATCH };
        Batch { ids: [0; REVOKE_BATCH], n: 0, limit, full: false }
    }

    /// Adds `id`, or stops a database walk once the batch is full.
    fn push(&mut self, id: Id) -> ControlFlow<()> {
        if self.n == self.limit {
            self.full = true;
            return ControlFlow::Break(());
        }
        self.ids[self.n] = id;
        self.n += 1;
        ControlFlow::Continue(())
    }

    fn ids(&self) -> &[Id] {
        &self.ids[..self.n]
    }
}

/// The first occupied slot of a CNode with the lowest `rank`, scanning
/// from slot `from` (the caller knows the slots below it are empty):
/// slots ranked higher are returned only once nothing ranked lower is
/// left. With it, whether every slot passed over on the way was empty.
fn first_occupied(cnode: &Cap, from: u64, rank: impl Fn(u64, &Cap) -> u8) -> Option<(u64, bool)> {
    let mut best: Option<(u8, u64)> = None;
    let mut pa = from;
    while pa < cnode.base + cnode.size {
        // SAFETY: slots of a live CNode. Read in place: a copy of each
        // slot's capability would cost a `memcpy` call per slot scanned.
        let c = &unsafe { cspace::cte_at(pa) }.cap;
        if c.objtype != ObjType::Null {
            let r = rank(pa, c);
            if r == 0 {
                return Some((pa, best.is_none()));
            }
            if best.is_none_or(|(b, _)| r < b) {
                best = Some((r, pa));
            }
        }
        pa += CTE_SIZE;
    }
    best.map(|(_, pa)| (pa, false))
}

/// The first empty slot of a CNode.
fn first_free(cnode: &Cap) -> Option<u64> {
    (0..cnode.size / CTE_SIZE).map(|i| cnode.base + i * CTE_SIZE).find(|&pa| {
        // SAFETY: slots of a live CNode.
        unsafe { cspace::cte_at(pa) }.cap.objtype == ObjType::Null
    })
}

/// Empties a CNode whose last copy is being deleted, depth first, without
/// recursion: a path of nested CNodes is kept; each step looks at the
/// first entry of the deepest one and deletes it, descends into it (a
/// nested CNode's last copy with contents), or, if that CNode is empty,
/// deletes its last copy and goes back up. `Ok` once `top` is empty;
/// `Retry` when the budget is spent.
///
/// A call that runs out of budget records its path, and the repeated call
/// starts there, so a chain of nested CNodes of depth d takes O(d) steps
/// in all (up to [`PATH_MAX`] levels kept; deeper ones are found again
/// from the top). Between the two calls nothing else ran: the cursor is
/// dropped by any other invocation; and each CNode on the path is checked
/// to still hold a nested CNode's last copy before it is used.
///
/// Throughout, something keeps `top` reachable while it has contents, so a
/// call cut short never strands entries: copies of `top` go last, and the
/// last one found deeper in its tree is first moved into `top` itself.
fn clear_cnode(mdb: &mut Mdb, top: &Cap, budget: &mut Budget<'_>) -> Result<(), ErrorCode> {
    let resumed = budget.resumable && budget.cursor.top == top.base;
    budget.resumable = false;
    let mut path = if resumed { budget.cursor.path } else { Path::EMPTY };
    // A CNode (by base) and a slot of it below which its slots are empty:
    // the last scan of it found them so, and only moving the anchor (below)
    // puts an entry into a CNode being cleared other than where a scan
    // stopped. The next scan of that CNode starts there, so a CNode is
    // scanned once rather than once per entry.
    let mut empty_below: Option<(u64, u64)> = None;
    loop {
        if budget.spent() {
            budget.stop(top, path);
            return Err(ErrorCode::Retry);
        }
        budget.visits -= 1;
        let cur = match path.last() {
            None => top,
            Some(slot) => {
                let c = cap_ref(cspace::id_of(slot));
                if !is_cnode(c.objtype) || mdb.has_copies(&Ctes, cspace::id_of(slot)) {
                    path = Path::EMPTY; // stale: find the way again from the top
                    continue;
                }
                c
            }
        };
        // Copies of `top` go after everything else, the way to an anchor
        // that could not be moved (below) after those.
        let rank = |pa: u64, c: &Cap| {
            if path.on_anchor_way(pa) { 2 } else { u8::from(c.is_copy(top)) }
        };
        let from = match empty_below {
            Some((cnode, slot)) if cnode == cur.base => slot,
            _ => cur.base,
        };
        let found = first_occupied(cur, from, rank);
        empty_below = found.and_then(|(spa, clean)| clean.then_some((cur.base, spa)));
        let Some((spa, _)) = found else {
            match path.pop() {
                None => return Ok(()),
                Some(ps) => {
                    // An emptied nested CNode: its last copy goes now.
                    remove(mdb, ps);
                    budget.deletions -= 1;
                    continue;
                }
            }
        };
        let c = cap_of(cspace::id_of(spa));
        let last = !mdb.has_copies(&Ctes, cspace::id_of(spa));
        if last && c.is_copy(top) && path.len > 0 {
            // The anchor: the last copy of `top`, deeper inside its own
            // tree. Deleting it before the rest of the tree would leave that
            // rest unreachable if the budget ran out; so it moves into `top`
            // itself, where it is kept for last like any copy of `top` and
            // goes when `top` holds nothing else. The CNodes on its way are
            // then ordinary. A move deletes nothing.
            if let Some(free) = first_free(top) {
                empty_below = None;
                mdb.remove(&mut Ctes, cspace::id_of(spa));
                // SAFETY: the slot the anchor was in, now out of the database.
                unsafe { cspace::clear(spa) };
                install(mdb, free, c);
                continue;
            }
            // `top` is full: clear what else it holds first, which frees a
            // slot before the way to the anchor is taken again.
            path.set_anchor(spa);
            path.len = 0;
            continue;
        }
        // `top` inside itself is the very entry being deleted (it is the
        // last copy): it goes like any other, or the descent would loop.
        if is_cnode(c.objtype) && last && !c.is_copy(top) && cnode_has_contents(&c) {
            path.push(spa);
            continue;
        }
        if is_vnode(c.objtype)
            && last
            && let Err(e) = unmap_table(mdb, &c, budget)
        {
            budget.stop(top, path);
            return Err(e);
        }
        if last && caps::types::mapping_type(c.objtype).is_some() {
            if let Err(e) = remove_orphaned_mappings(mdb, cspace::id_of(spa), &c, budget) {
                budget.stop(top, path);
                return Err(e);
            }
            if budget.deletions == 0 {
                budget.stop(top, path);
                return Err(ErrorCode::Retry);
            }
        }
        if last && c.objtype == ObjType::Dispatcher {
            match end_nested_dispatcher(mdb, spa, &c, budget) {
                Ok(true) => continue,
                Ok(false) if budget.deletions > 0 => {}
                Ok(false) | Err(ErrorCode::Retry) => {
                    budget.stop(top, path);
                    return Err(ErrorCode::Retry);
                }
                Err(e) => return Err(e),
            }
        }
        if last && c.objtype == ObjType::IrqDest {
            irq::disconnect(&this_core().irqs, mdb, &c);
        }
        remove(mdb, spa);
        budget.deletions -= 1;
    }
}

/// Deletes the capability at `pa` with everything its deletion implies: a
/// CNode's contents if this is its last copy, a page table's entries with
/// the mapping capabilities that record them, the mappings a frame's or
/// table's last copy justified.
fn delete_slot(mdb: &mut Mdb, pa: u64, budget: &mut Budget<'_>) -> Result<(), ErrorCode> {
    let me = cspace::id_of(pa);
    let cap = cap_of(me);
    let last = !mdb.has_copies(&Ctes, me);
    if is_vnode(cap.objtype) && last {
        unmap_table(mdb, &cap, budget)?;
    }
    if is_cnode(cap.objtype) && last {
        clear_cnode(mdb, &cap, budget)?;
        // SAFETY: the slot being deleted.
        if unsafe { cspace::cte_at(pa) }.cap.objtype == ObjType::Null {
            return Ok(()); // it lay inside the CNode and went with its contents
        }
    }
    if last && caps::types::mapping_type(cap.objtype).is_some() {
        remove_orphaned_mappings(mdb, me, &cap, budget)?;
    }
    if last && cap.objtype == ObjType::Dispatcher {
        teardown_dispatcher(mdb, Dcb(cap.base), &cap, budget)?;
        // SAFETY: the slot being deleted.
        if unsafe { cspace::cte_at(pa) }.cap.objtype == ObjType::Null {
            return Ok(()); // it lay in its own CSpace root and went with it
        }
    }
    if last && cap.objtype == ObjType::IrqDest {
        irq::disconnect(&this_core().irqs, mdb, &cap);
    }
    if budget.deletions == 0 {
        return Err(ErrorCode::Retry);
    }
    remove(mdb, pa);
    budget.deletions -= 1;
    Ok(())
}

/// Before a page table's last copy goes, so do its entries: each with the
/// mapping capability that records it (removing one clears its whole run
/// of entries), or, for the kernel's boot mappings of init, which have
/// none, by itself. Charged to `budget`; `Retry` while entries remain. So a
/// domain cannot pin its giver's memory by keeping entries in a table.
fn unmap_table(mdb: &mut Mdb, t: &Cap, budget: &mut Budget<'_>) -> Result<(), ErrorCode> {
    let mut cleared = false;
    let mut i = 0;
    while let Some(k) = table(t.base)[i..].iter().position(|&d| paging::is_valid(d)) {
        i += k;
        let d = table(t.base)[i];
        if budget.deletions == 0 {
            if cleared {
                flush_tlb();
            }
            return Err(ErrorCode::Retry);
        }
        let at = paging::output_address(d);
        let mut found = None;
        let _ = mdb.overlapping(&Ctes, at, at + 1, &mut |id| {
            let c = cap_of(id);
            match c.extra {
                Extra::Mapping { table: tb, entry, count, .. }
                    if types::is_mapping(c.objtype)
                        && tb == t.base
                        && (usize::from(entry)..usize::from(entry) + usize::from(count)).contains(&i) =>
                {
                    found = Some(id);
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        });
        match found {
            Some(m) => remove(mdb, u64::from(m) * CTE_SIZE),
            None => {
                table(t.base)[i] = 0;
                cleared = true;
            }
        }
        budget.deletions -= 1;
        i += 1;
    }
    if cleared {
        flush_tlb();
    }
    Ok(())
}

/// Before the last copy of something mappable goes (`cap`, in entry
/// `me`), so must every mapping no other surviving capability justifies
/// (a sub-frame may still justify its own). The removals are charged to
/// `budget`; `Retry` while more remain.
///
/// The work is one walk over `cap`'s descendants and at most one over its
/// ancestors, whatever the number of mappings. The in-order walk meets
/// every piece of `cap` before the mappings inside it, so the furthest end
/// of the pieces seen so far says whether one contains the mapping at
/// hand; a mapping no piece contains is still justified if `cap` has an
/// ancestor of the same kind (a larger frame), which then justifies all.
fn remove_orphaned_mappings(mdb: &mut Mdb, me: Id, cap: &Cap, budget: &mut Budget<'_>) -> Result<(), ErrorCode> {
    let db: &Mdb = mdb;
    // Asked only once a mapping needs it: most frames have none. For the
    // same reason the batch (zeroed when made) is made at the first.
    let mut covered = None;
    let mut doomed = None;
    let mut pieces_end = 0;
    let _ = db.descendants_of(&Ctes, me, &mut |m| {
        let mc = Ctes.cap(m);
        // A piece of `cap` (a sub-frame): each mapping type records
        // mappings of exactly one type, so same type is same kind.
        if mc.objtype == cap.objtype {
            pieces_end = pieces_end.max(mc.end());
            return ControlFlow::Continue(());
        }
        if !types::is_mapping(mc.objtype) || mc.end() <= pieces_end {
            return ControlFlow::Continue(());
        }
        let by_ancestor = *covered.get_or_insert_with(|| {
            db.ancestors(&Ctes, cap, &mut |a| {
                if a != me && cap_of(a).objtype == cap.objtype {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .is_break()
        });
        if by_ancestor {
            ControlFlow::Break(())
        } else {
            doomed.get_or_insert_with(|| Batch::up_to(budget.deletions)).push(m)
        }
    });
    let Some(doomed) = doomed else { return Ok(()) };
    if covered == Some(true) {
        return Ok(());
    }
    for &d in doomed.ids() {
        remove(mdb, u64::from(d) * CTE_SIZE);
    }
    budget.deletions -= doomed.ids().len();
    if doomed.full { Err(ErrorCode::Retry) } else { Ok(()) }
}

/// The level of a leaf that covers `entry_size` bytes.
fn table_level_of(entry_size: u64) -> Option<u32> {
    match entry_size {
        0x1000 => Some(3),
        0x20_0000 => Some(2),
        0x4000_0000 => Some(1),
        _ => None,
    }
}

/// The capability of entry `id`, in place (a copy costs a `memcpy`
/// call); not kept across a change to that entry.
fn cap_ref(id: Id) -> &'static Cap {
    // SAFETY: an id from the database: a live slot; the kernel runs one
    // event at a time.
    &unsafe { cspace::cte_at(u64::from(id) * CTE_SIZE) }.cap
}

fn cap_of(id: Id) -> Cap {
    // SAFETY: an id from the database: a live slot.
    unsafe { cspace::cte_at(u64::from(id) * CTE_SIZE) }.cap
}

/// The invocations on a dispatcher (see `Command`).
fn dispatcher_command(mdb: &mut Mdb, caller: Dcb, d: Dcb, cmd: Command, a: &[u64; 7]) -> Result<[u64; 3], ErrorCode> {
    let core = this_core();
    match cmd {
        Command::Setup => {
            let get = |raw: u64, ty: ObjType| {
                let cap = lookup_cap(caller, CapRef::from_raw(raw).ok_or(ErrorCode::BadCapAddr)?)?;
                if cap.objtype == ty { Ok(*cap) } else { Err(ErrorCode::WrongCapType) }
            };
            let args = dispatch::SetupArgs {
                root: get(a[2], ObjType::L1CNode)?,
                vroot: get(a[3], ObjType::VNodeL0)?,
                frame: get(a[4], ObjType::Frame)?,
                frame_va: a[5],
            };
            dispatch::setup(mdb, &core.asids, d, args)?;
            Ok([0; 3])
        }
        Command::MakeRunnable => match d.state() {
            DispatcherState::Stopped => {
                dispatch::first_start(d);
                core.enqueue(d);
                Ok([0; 3])
            }
            DispatcherState::Runnable | DispatcherState::Waiting => Ok([0; 3]),
            DispatcherState::New | DispatcherState::Ended => Err(ErrorCode::DispatcherState),
        },
        Command::Stop => match d.state() {
            DispatcherState::Runnable | DispatcherState::Waiting | DispatcherState::Stopped => {
                core.unqueue(d, DispatcherState::Stopped);
                Ok([0; 3])
            }
            DispatcherState::New | DispatcherState::Ended => Err(ErrorCode::DispatcherState),
        },
        Command::Properties => Ok([d.state() as u64, d.frame_va(), 0]),
        Command::SetRecvSlot => {
            if d.state() == DispatcherState::New {
                return Err(ErrorCode::DispatcherState);
            }
            if a[2] != 0 && CapRef::from_raw(a[2]).is_none() {
                return Err(ErrorCode::BadCapAddr);
            }
            d.set_recv_slot(a[2]);
            Ok([0; 3])
        }
        _ => Err(ErrorCode::InvalidCommand),
    }
}

/// Before the last copy of a dispatcher goes, the dispatcher ends: it
/// leaves the scheduler, its endpoints go (they would name freed memory),
/// and so do the copies its DCB holds. Charged to `budget`; `Retry` while
/// work remains. A dispatcher cannot delete its own last copy.
fn teardown_dispatcher(mdb: &mut Mdb, d: Dcb, cap: &Cap, budget: &mut Budget<'_>) -> Result<(), ErrorCode> {
    end_dispatcher(mdb, d, cap, budget)?;
    for which in [dispatch::HELD_ROOT, dispatch::HELD_VROOT, dispatch::HELD_FRAME] {
        if d.held(which).objtype != ObjType::Null {
            delete_slot(mdb, d.held_pa(which), budget)?;
        }
    }
    dispatch::release_asid(&this_core().asids, d);
    Ok(())
}

/// The first part of a teardown: `d` leaves the scheduler and its endpoints
/// go. Repeatable; refused for the caller itself.
fn end_dispatcher(mdb: &mut Mdb, d: Dcb, cap: &Cap, budget: &mut Budget<'_>) -> Result<(), ErrorCode> {
    let core = this_core();
    if d == core.current() {
        return Err(ErrorCode::DispatcherState);
    }
    if d.state() != DispatcherState::New {
        core.unqueue(d, DispatcherState::Ended);
    }
    let mut endpoints = Batch::up_to(budget.deletions);
    let _ = mdb.descendants(&Ctes, cap, &mut |e| endpoints.push(e));
    for &e in endpoints.ids() {
        remove(mdb, u64::from(e) * CTE_SIZE);
    }
    budget.deletions -= endpoints.ids().len();
    if endpoints.full { Err(ErrorCode::Retry) } else { Ok(()) }
}

/// One step of the teardown of a dispatcher whose last copy, at `spa`, is
/// met while clearing a CNode. No recursion: its held copies may lead to
/// more such dispatchers. Its held VSpace root and frame go like entries
/// of that CNode. A held CSpace root that is a last copy with contents
/// takes the place of the dispatcher's capability, both in one step (so
/// the DCB is never unnamed while it holds entries), and is then cleared
/// as a nested CNode. `Ok(true)` after a step; `Ok(false)` once the DCB
/// holds nothing and its capability may go.
fn end_nested_dispatcher(mdb: &mut Mdb, spa: u64, c: &Cap, budget: &mut Budget<'_>) -> Result<bool, ErrorCode> {
    let d = Dcb(c.base);
    end_dispatcher(mdb, d, c, budget)?;
    for which in [dispatch::HELD_VROOT, dispatch::HELD_FRAME, dispatch::HELD_ROOT] {
        let hpa = d.held_pa(which);
        let h = cap_of(cspace::id_of(hpa));
        if h.objtype == ObjType::Null {
            continue;
        }
        if budget.deletions == 0 {
            return Err(ErrorCode::Retry);
        }
        let last = !mdb.has_copies(&Ctes, cspace::id_of(hpa));
        if is_cnode(h.objtype) && last && cnode_has_contents(&h) {
            dispatch::release_asid(&this_core().asids, d);
            remove(mdb, spa);
            mdb.remove(&mut Ctes, cspace::id_of(hpa));
            // SAFETY: the held CTE, just out of the database.
            unsafe { cspace::clear(hpa) };
            install(mdb, spa, h);
            budget.deletions -= 1;
            return Ok(true);
        }
        // Anything else (a table, a frame, an empty or shared CNode) is a
        // delete that cannot lead back here.
        delete_slot(mdb, hpa, budget)?;
        return Ok(true);
    }
    dispatch::release_asid(&this_core().asids, d);
    Ok(false)
}

/// Where an unfinished delete or revoke stopped clearing a CNode, kept
/// between the calls of one repeated invocation (see [`clear_cnode`]).
pub struct Resume {
    /// Whether a call stopped here and the next may resume.
    valid: bool,
    /// The invocation: caller's root, target, command.
    call: [u64; 3],
    top: u64,
    path: Path,
}

impl Resume {
    pub const EMPTY: Resume = Resume { valid: false, call: [0; 3], top: 0, path: Path::EMPTY };
}

/// The capability `r` names in `d`'s CSpace (not empty), by reference:
/// for fast paths that read a few fields (a copy costs a `memcpy` call).
/// Not kept across a database operation.
pub fn lookup_cap(d: Dcb, r: CapRef) -> Result<&'static Cap, ErrorCode> {
    cap_in(d.held(dispatch::HELD_ROOT), r)
}

/// [`lookup_cap`] in the CSpace under `root`, for callers that hold it.
#[inline]
fn cap_in(root: &Cap, r: CapRef) -> Result<&'static Cap, ErrorCode> {
    let pa = cspace::lookup(root, r)?;
    // SAFETY: `lookup` returned a slot of that CSpace; the kernel runs one
    // event at a time.
    let cap = &unsafe { cspace::cte_at(pa) }.cap;
    if cap.objtype == ObjType::Null { Err(ErrorCode::SlotEmpty) } else { Ok(cap) }
}

/// Runs one invocation for dispatcher `caller`. `a` = x1..x7. Returns the
/// values for x1..x3. `resume` carries a bounded delete's progress to the
/// next call, if that call repeats this one; any other invocation drops it.
pub fn invoke(mdb: &mut Mdb, caller: Dcb, resume: &RefCell<Resume>, a: &[u64; 7]) -> Result<[u64; 3], ErrorCode> {
    let root_id = caller.root_id();
    let call = [u64::from(root_id), a[0], a[1]];
    let mut cursor = resume.borrow_mut();
    let resumable = cursor.valid && cursor.call == call;
    cursor.valid = false;
    let mut budget =
        Budget { deletions: REVOKE_BATCH, visits: REVOKE_BATCH, cursor: &mut cursor, resumable, stopped: false };
    let result = run(mdb, caller, a, &mut budget);
    if result == Err(ErrorCode::Retry) && budget.stopped {
        cursor.valid = true;
        cursor.call = call;
    }
    result
}

fn run(mdb: &mut Mdb, caller: Dcb, a: &[u64; 7], budget: &mut Budget<'_>) -> Result<[u64; 3], ErrorCode> {
    let root_id = caller.root_id();
    // The root and the invoked capability are read in place, as in
    // `lookup_cap` (a copy of each cost a `memcpy` call per invocation):
    // no command writes either slot before its last use of them.
    let root = caller.held(dispatch::HELD_ROOT);
    let target = CapRef::from_raw(a[0]).ok_or(ErrorCode::BadCapAddr)?;
    let cmd = Command::from_raw(a[1]).ok_or(ErrorCode::InvalidCommand)?;
    let pa = cspace::lookup(root, target)?;
    // SAFETY: `lookup` returned a slot of the caller's CSpace.
    let cap = &unsafe { cspace::cte_at(pa) }.cap;
    if cap.objtype == ObjType::Null {
        return Err(ErrorCode::SlotEmpty);
    }
    match cmd {
        Command::Identify => Ok([
            cap.objtype as u64 | u64::from(cap.rights.bits()) << 8 | u64::from(cap.owner) << 16,
            cap.base,
            cap.size,
        ]),
        Command::Retype => {
            let new_type = u8::try_from(a[3]).ok().and_then(ObjType::from_raw).ok_or(ErrorCode::InvalidArgument)?;
            let req = retype::Request { new_type, offset: a[4], objsize: a[5], count: a[6] };
            let plan = retype::check(cap, &req).map_err(cap_error)?;
            let (start, end) = plan.range();
            if types::types_memory(new_type) && mdb.retype_conflict(&Ctes, cap, start, end) {
                return Err(ErrorCode::RetypeOverlap);
            }
            let first = dest_slots(root, Dest::from_raw(a[2]), plan.count)?;
            for i in 0..plan.count {
                let new = plan.nth(cap, i);
                init_object(&new);
                install(mdb, first + i * CTE_SIZE, new);
            }
            Ok([plan.count, 0, 0])
        }
        Command::RetypeCheck => {
            if cap.objtype != ObjType::Ram {
                return Err(ErrorCode::WrongCapType);
            }
            // A retype of that range validates it (a frame: RAM into RAM of
            // the whole size would be refused as a copy).
            let req = retype::Request { new_type: ObjType::Frame, offset: a[3], objsize: a[4], count: 1 };
            let plan = retype::check(cap, &req).map_err(cap_error)?;
            let (start, end) = plan.range();
            let except = match a[2] {
                0 => None,
                raw => {
                    let r = CapRef::from_raw(raw).ok_or(ErrorCode::BadCapAddr)?;
                    let pa = cspace::lookup(root, r)?;
                    // SAFETY: `lookup` returned a slot of the caller's CSpace.
                    if unsafe { cspace::cte_at(pa) }.cap.objtype == ObjType::Null {
                        return Err(ErrorCode::SlotEmpty);
                    }
                    Some(cspace::id_of(pa))
                }
            };
            Ok([u64::from(mdb.covered_except(&Ctes, cap, cspace::id_of(pa), start, end, except)), 0, 0])
        }
        Command::Copy => {
            let copy = retype::copy(cap).map_err(cap_error)?;
            let slot = dest_slots(root, Dest::from_raw(a[2]), 1)?;
            install(mdb, slot, copy);
            Ok([0; 3])
        }
        Command::Mint => {
            let rights = Rights::from_bits(u8::try_from(a[3]).map_err(|_| ErrorCode::InvalidArgument)?)
                .ok_or(ErrorCode::InvalidArgument)?;
            let buffer = match (a[4], a[5]) {
                (_, 0) => None,
                (off, size) => Some((
                    u32::try_from(off).map_err(|_| ErrorCode::InvalidArgument)?,
                    u32::try_from(size).map_err(|_| ErrorCode::InvalidArgument)?,
                )),
            };
            let minted = retype::mint(cap, rights, buffer).map_err(cap_error)?;
            let slot = dest_slots(root, Dest::from_raw(a[2]), 1)?;
            install(mdb, slot, minted);
            Ok([0; 3])
        }
        Command::Delete => {
            delete_slot(mdb, pa, budget)?;
            Ok([0; 3])
        }
        Command::Map => {
            if !is_vnode(cap.objtype) {
                return Err(ErrorCode::WrongCapType);
            }
            // Read in place like `cap` (the mapping goes into another,
            // empty slot).
            let src = cap_in(root, CapRef::from_raw(a[2]).ok_or(ErrorCode::BadCapAddr)?)?;
            let packed = a[3];
            if packed >> 40 != 0 {
                return Err(ErrorCode::InvalidArgument);
            }
            let rights = Rights::from_bits((packed >> 32) as u8).ok_or(ErrorCode::InvalidArgument)?;
            let req = map::Request { entry: packed as u16, count: (packed >> 16) as u16, offset: a[4], rights };
            let plan = map::check(cap, src, &req).map_err(cap_error)?;
            let first = usize::from(req.entry);
            let count = usize::from(req.count);
            let exec_bytes = count as u64 * plan.entry_size;
            if !plan.table && plan.mapping.rights.contains(Rights::EXECUTE) && exec_bytes > EXEC_MAP_MAX {
                return Err(ErrorCode::TooLong);
            }
            if table(cap.base)[first..first + count].iter().any(|&d| paging::is_valid(d)) {
                return Err(ErrorCode::AlreadyMapped);
            }
            let slot = dest_slots(root, Dest::from_raw(a[5]), 1)?;
            let entries = table(cap.base);
            for i in 0..count {
                entries[first + i] = if plan.table {
                    paging::table_descriptor(plan.pa)
                } else {
                    let attrs = user_attrs(src.objtype, plan.mapping.rights);
                    paging::leaf_descriptor(plan.pa + i as u64 * plan.entry_size, attrs, u32::from(plan.level))
                };
            }
            // SAFETY: a barrier only: the walker sees the new entries.
            unsafe { core::arch::asm!("dsb ishst", "isb", options(nostack)) };
            if !plan.table && plan.mapping.rights.contains(Rights::EXECUTE) {
                // Code a parent wrote through another mapping (spawn):
                // EL0 may not clean caches itself (SCTLR_EL1.UCI is 0).
                mm::sync_icache(plan.pa, exec_bytes);
            }
            install(mdb, slot, plan.mapping);
            Ok([0; 3])
        }
        Command::ModifyFlags => {
            if !matches!(cap.objtype, ObjType::FrameMapping | ObjType::DevFrameMapping) {
                return Err(ErrorCode::WrongCapType);
            }
            let rights = u8::try_from(a[2]).ok().and_then(Rights::from_bits).ok_or(ErrorCode::InvalidArgument)?;
            let rights = rights | Rights::READ;
            if !cap.rights.contains(rights) || rights.contains(Rights::WRITE | Rights::EXECUTE) {
                return Err(ErrorCode::NoRights);
            }
            let Extra::Mapping { table: t, entry, count, .. } = cap.extra else {
                return Err(ErrorCode::WrongCapType);
            };
            let src_type = if cap.objtype == ObjType::DevFrameMapping { ObjType::DevFrame } else { ObjType::Frame };
            let level = match table_level_of(cap.size / u64::from(count)) {
                Some(l) => l,
                None => return Err(ErrorCode::InvalidArgument),
            };
            let entries = table(t);
            for i in 0..u64::from(count) {
                let pa = cap.base + i * (cap.size / u64::from(count));
                entries[usize::from(entry) + i as usize] =
                    paging::leaf_descriptor(pa, user_attrs(src_type, rights), level);
            }
            flush_tlb();
            if rights.contains(Rights::EXECUTE) {
                // At most EXEC_MAP_MAX: only a mapping made executable may
                // become so again.
                mm::sync_icache(cap.base, cap.size);
            }
            // SAFETY: the invoked slot.
            unsafe { cspace::cte_at(pa) }.cap.rights = rights;
            Ok([0; 3])
        }
        Command::Revoke => {
            let me = cspace::id_of(pa);
            let mut victims = Batch::new();
            // The kernel's own copies (CSpace roots) are not the user's to
            // revoke; they keep their CNodes, and so their memory, typed.
            let mut collect = |id: Id| {
                if id == me || cspace::is_kernel_held(id) { ControlFlow::Continue(()) } else { victims.push(id) }
            };
            if mdb.with_key(&Ctes, cap, &mut collect).is_continue() {
                let _ = mdb.descendants_of(&Ctes, me, &mut collect);
            }
            let more = victims.full;
            let batch = victims.ids();
            for &v in batch {
                let vpa = u64::from(v) * CTE_SIZE;
                // A victim inside a CNode emptied earlier in this batch is
                // gone already.
                // SAFETY: a slot that held a victim.
                if unsafe { cspace::cte_at(vpa) }.cap.objtype == ObjType::Null {
                    continue;
                }
                delete_slot(mdb, vpa, budget)?;
            }
            if more { Err(ErrorCode::Retry) } else { Ok([batch.len() as u64, 0, 0]) }
        }
        Command::Resize => {
            if cap.objtype != ObjType::L1CNode || !cap.is_copy(root) {
                return Err(ErrorCode::WrongCapType);
            }
            let new_ref = CapRef::from_raw(a[2]).ok_or(ErrorCode::BadCapAddr)?;
            // SAFETY: a slot of the caller's CSpace.
            let new = unsafe { cspace::cte_at(cspace::lookup(root, new_ref)?) }.cap;
            if new.objtype != ObjType::L1CNode
                || new.size < root.size
                || new.base == root.base
                || cnode_has_contents(&new)
            {
                return Err(ErrorCode::InvalidArgument);
            }
            // Move every entry into the same slot of the new root; each
            // changes address, so leaves and re-enters the database.
            for i in 0..root.size / CTE_SIZE {
                let from = root.base + i * CTE_SIZE;
                // SAFETY: slot `i` of the old root, and of the new, larger one.
                let (old, to) = unsafe { (cspace::cte_at(from), new.base + i * CTE_SIZE) };
                if old.cap.objtype == ObjType::Null {
                    continue;
                }
                let moved = old.cap;
                mdb.remove(&mut Ctes, cspace::id_of(from));
                // SAFETY: as above.
                unsafe { cspace::clear(from) };
                install(mdb, to, moved);
            }
            mdb.remove(&mut Ctes, root_id);
            // SAFETY: the domain's kernel-held root entry, just removed.
            unsafe { cspace::put(mdb, u64::from(root_id) * CTE_SIZE, Cte::held(new)) };
            Ok([0; 3])
        }
        Command::Setup | Command::MakeRunnable | Command::Stop | Command::Properties | Command::SetRecvSlot => {
            if cap.objtype != ObjType::Dispatcher {
                return Err(ErrorCode::WrongCapType);
            }
            dispatcher_command(mdb, caller, Dcb(cap.base), cmd, a)
        }
        // Unreachable: `exception::sync` sends every word whose low byte
        // is `LmpSend` to `lmp::send` first. An error, not a panic, should
        // that routing ever change.
        Command::LmpSend => Err(ErrorCode::InvalidArgument),
        Command::IrqConnect => {
            if cap.objtype != ObjType::IrqTable {
                return Err(ErrorCode::WrongCapType);
            }
            let intid = u32::try_from(a[2]).map_err(|_| ErrorCode::InvalidArgument)?;
            let ep = *lookup_cap(caller, CapRef::from_raw(a[3]).ok_or(ErrorCode::BadCapAddr)?)?;
            let slot = dest_slots(root, Dest::from_raw(a[4]), 1)?;
            let dest = irq::connect(&this_core().irqs, mdb, intid, &ep)?;
            install(mdb, slot, dest);
            Ok([0; 3])
        }
        Command::IrqAck => {
            if cap.objtype != ObjType::IrqDest {
                return Err(ErrorCode::WrongCapType);
            }
            irq::ack(&this_core().irqs, cap)?;
            Ok([0; 3])
        }
        Command::DebugCheck => {
            if cap.objtype != ObjType::Kernel {
                return Err(ErrorCode::WrongCapType);
            }
            let checked = mdb
                .check(&Ctes)
                .and_then(|()| mdb.check_types(&Ctes))
                .and_then(|()| mdb.check_homes(&Ctes, &cspace::is_kernel_held));
            if let Err(why) = checked {
                log::error!("capability invariant broken: {why}");
                return Err(ErrorCode::InvariantBroken);
            }
            Ok([mdb.len() as u64, 0, 0])
        }
    }
}
