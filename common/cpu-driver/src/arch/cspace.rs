//! Capability storage in the kernel: capability table entries (CTEs) in
//! CNode memory, reached through the direct map, the derivation database
//! threaded through them, and CSpace address resolution.
//!
//! A CTE's database identity is its physical address divided by the entry
//! size, so the database needs no table of its own: its memory is the
//! CNodes users retyped (or the kernel made for init at boot).

use caps::mdb::{Id, Links, Store};
use caps::types::CTE_SIZE;
use caps::{Cap, ObjType};
use kpi::ErrorCode;
use kpi::invocation::CapRef;

use super::mm;

/// One capability slot.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Cte {
    pub cap: Cap,
    pub links: Links,
    /// A CTE the kernel keeps outside any CNode: one of a dispatcher
    /// control block's (its CSpace and VSpace roots and frame, as
    /// Barrelfish's DCB keeps them). Users cannot name these, and revoke
    /// does not take them: they live as long as the dispatcher. CNode
    /// slots are always `false` (new CNodes are zeroed).
    pub held: bool,
}

const _: () = assert!(core::mem::size_of::<Cte>() <= CTE_SIZE as usize);

impl Cte {
    pub const EMPTY: Cte = Cte { cap: Cap::new(ObjType::Null, 0, 0), links: Links::EMPTY, held: false };

    /// An entry for a CNode slot, before it enters the database.
    pub const fn new(cap: Cap) -> Cte {
        Cte { cap, links: Links::EMPTY, held: false }
    }

    /// A kernel-held entry, before it enters the database.
    pub const fn held(cap: Cap) -> Cte {
        Cte { cap, links: Links::EMPTY, held: true }
    }
}

/// A held CTE in the kernel image (an interrupt route's endpoint), aligned
/// so its physical address is a database id. Like every CTE it is reached
/// only through [`cte_at`] by id: the database rewrites its links.
#[repr(C, align(128))]
pub struct StaticCte(core::cell::UnsafeCell<Cte>);

impl StaticCte {
    pub const fn empty() -> StaticCte {
        StaticCte(core::cell::UnsafeCell::new(Cte::EMPTY))
    }

    /// Its physical address (the kernel image lies in the direct map).
    pub fn pa(&self) -> u64 {
        self.0.get() as u64 - cpu_driver::KERNEL_BASE
    }
}

/// Whether the CTE `id` is one the kernel keeps outside any CNode.
pub fn is_kernel_held(id: Id) -> bool {
    // SAFETY: `id` is a live entry of the database.
    unsafe { (*cte_ptr(id)).held }
}

/// The database id of the CTE at physical address `pa`.
pub fn id_of(pa: u64) -> Id {
    (pa / CTE_SIZE) as Id
}

fn cte_ptr(id: Id) -> *mut Cte {
    mm::phys(u64::from(id) * CTE_SIZE) as *mut Cte
}

/// The CTE at physical address `pa`.
///
/// # Safety
/// `pa` must be a slot of a CNode object (created by the kernel at boot or
/// by a retype), which lives as long as any capability refers to it, or a
/// held CTE of a live dispatcher; the kernel runs one event at a time, so no other
/// reference is live.
pub unsafe fn cte_at<'a>(pa: u64) -> &'a mut Cte {
    // SAFETY: the caller's contract.
    unsafe { &mut *(mm::phys(pa) as *mut Cte) }
}

/// Puts `entry` into the slot at `pa` and the slot into the database.
///
/// # Safety
/// As for [`cte_at`], and the slot must be empty (not in the database).
pub unsafe fn put(mdb: &mut caps::mdb::Mdb, pa: u64, entry: Cte) {
    // SAFETY: the caller's contract.
    unsafe { *cte_at(pa) = entry };
    mdb.insert(&mut Ctes, id_of(pa));
}

/// Empties the slot at `pa`: what [`Cte::EMPTY`] holds, written in place.
/// Assigning that 88-byte constant is a `memcpy` call (the kernel has no
/// SIMD registers, so only copies of up to 32 bytes are inlined), and
/// every deletion empties a slot.
///
/// # Safety
/// As for [`cte_at`], and the entry must be out of the database.
pub unsafe fn clear(pa: u64) {
    // SAFETY: the caller's contract.
    let cte = unsafe { cte_at(pa) };
    // SAFETY: a `Cap` is plain data, and all-zero bytes are an empty one
    // (see `init_cnode`); zeroing its padding too leaves nothing of the
    // capability that was there.
    unsafe { core::ptr::write_bytes(&raw mut cte.cap, 0, 1) };
    cte.links = Links::EMPTY;
    cte.held = false;
}

/// Fills a new CNode's slots with empty entries.
///
/// # Safety
/// `[pa, pa + size)` must be memory just made into a CNode, owned by the
/// kernel.
pub unsafe fn init_cnode(pa: u64, size: u64) {
    // All-zero is a valid empty entry: type Null (0), no rights, `Extra::None`
    // (tag 0, `repr(C, u8)`), zero addresses; links are set on insertion.
    // SAFETY: the caller owns `[pa, pa + size)`.
    unsafe { mm::zero_phys(pa, size) };
    // SAFETY: as above; the first slot now reads as an entry.
    debug_assert!(unsafe { cte_at(pa) }.cap.objtype == ObjType::Null);
}

/// The kernel's [`Store`]: entries by id through the direct map.
pub struct Ctes;

impl Store for Ctes {
    fn cap(&self, id: Id) -> &Cap {
        // SAFETY: the database only holds ids of CTEs the kernel inserted,
        // each inside a live CNode.
        unsafe { &(*cte_ptr(id)).cap }
    }
    fn links(&self, id: Id) -> &Links {
        // SAFETY: as above.
        unsafe { &(*cte_ptr(id)).links }
    }
    fn links_mut(&mut self, id: Id) -> &mut Links {
        // SAFETY: as above; the kernel runs one event at a time.
        unsafe { &mut (*cte_ptr(id)).links }
    }
}

/// Resolves `r` in the CSpace whose root is the L1 CNode `root`; returns
/// the slot's physical address. Level 1 names an L1 slot; level 2 a slot of
/// the L2 CNode held there.
pub fn lookup(root: &Cap, r: CapRef) -> Result<u64, ErrorCode> {
    if root.objtype != ObjType::L1CNode {
        return Err(ErrorCode::BadCapAddr);
    }
    let l1_slots = root.size / CTE_SIZE;
    let i1 = u64::from(r.l1_index());
    if i1 >= l1_slots {
        return Err(ErrorCode::BadCapAddr);
    }
    let l1_pa = root.base + i1 * CTE_SIZE;
    match r.level {
        1 => Ok(l1_pa),
        2 => {
            // SAFETY: `l1_pa` is a slot of the caller's L1 CNode.
            let l2 = unsafe { cte_at(l1_pa) }.cap;
            if l2.objtype != ObjType::L2CNode {
                return Err(ErrorCode::BadCapAddr);
            }
            Ok(l2.base + u64::from(r.l2_index()) * CTE_SIZE)
        }
        _ => Err(ErrorCode::BadCapAddr),
    }
}
