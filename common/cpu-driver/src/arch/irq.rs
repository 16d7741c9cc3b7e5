//! Interrupts to user space (book ch. 9.1): a device interrupt routed to an
//! LMP endpoint. `IrqConnect` on the IRQ table makes a route and an IrqDest
//! capability; each interrupt then arrives as a one-word message (its
//! INTID) and stays masked at the GIC until the handler invokes `IrqAck`
//! on its IrqDest. Deleting the last IrqDest copy removes the route.
//!
//! Owns this core's route table: a bounded table in the kernel image, like
//! Barrelfish's, each route holding a kernel-held copy of its endpoint. If
//! the endpoint's dispatcher goes, that copy goes with it (it is one of the
//! dispatcher's descendants) and the interrupt stays masked.

use core::cell::Cell;

use caps::mdb::Mdb;
use caps::{Cap, Extra, ObjType};
use cpu_driver::KERNEL_BASE;
use kpi::ErrorCode;
use platform::gic::{self, FIRST_PPI, Gic};

use super::cspace::{self, Cte, Ctes, StaticCte};
use super::lmp;

/// Routes one core can hold.
pub const ROUTES: usize = 16;

pub struct Route {
    /// 0: free (INTID 0 is an SGI, never routed).
    intid: Cell<u32>,
    /// Taken but not yet delivered (the receiver's ring was full): retried
    /// at each timer tick, so no interrupt is lost.
    pending: Cell<bool>,
    ep: StaticCte,
}

/// This core's interrupt routes.
pub struct Routes([Route; ROUTES]);

impl Routes {
    pub const fn new() -> Self {
        Routes([const { Route { intid: Cell::new(0), pending: Cell::new(false), ep: StaticCte::empty() } }; ROUTES])
    }

    /// Whether any interrupt is routed to an endpoint that still exists
    /// (something may yet wake a waiter). A route whose endpoint went with
    /// its dispatcher can deliver nothing.
    pub fn any(&self) -> bool {
        self.0.iter().any(|r| {
            // SAFETY: the route's CTE; read only, one event at a time.
            r.intid.get() != 0 && unsafe { cspace::cte_at(r.ep.pa()) }.cap.objtype != ObjType::Null
        })
    }

    fn find(&self, intid: u32) -> Option<&Route> {
        self.0.iter().find(|r| r.intid.get() == intid)
    }
}

fn gic() -> Gic {
    // SAFETY: the kernel maps the GIC at KERNEL_BASE + pa for its lifetime.
    unsafe { Gic::new(KERNEL_BASE) }
}

/// Routes `intid` to a copy of endpoint `ep`; returns the IrqDest
/// capability to give the caller.
pub fn connect(routes: &Routes, mdb: &mut Mdb, intid: u32, ep: &Cap) -> Result<Cap, ErrorCode> {
    if !(FIRST_PPI..gic().intid_limit()).contains(&intid) || intid == gic::TIMER_INTID {
        return Err(ErrorCode::InvalidArgument);
    }
    if ep.objtype != ObjType::EndPointLmp {
        return Err(ErrorCode::WrongCapType);
    }
    // Unminted endpoints carry an empty buffer.
    if !matches!(ep.extra, Extra::Endpoint { size, .. } if kpi::lmp::ring_slots(u64::from(size)) > 0) {
        return Err(ErrorCode::LmpBadBuffer);
    }
    if routes.find(intid).is_some() {
        return Err(ErrorCode::SlotInUse);
    }
    let route = routes.find(0).ok_or(ErrorCode::OutOfMemory)?;
    let copy = caps::retype::copy(ep).map_err(|_| ErrorCode::WrongCapType)?;
    gic().set_enabled(intid, true).map_err(|_| ErrorCode::InvalidArgument)?;
    let pa = route.ep.pa();
    // SAFETY: the route's CTE, free (routes are emptied when freed).
    unsafe { cspace::put(mdb, pa, Cte::held(copy)) };
    route.intid.set(intid);
    route.pending.set(false);
    Ok(Cap { extra: Extra::IrqVector(intid), ..Cap::new(ObjType::IrqDest, 0, 0) })
}

/// Unmasks a routed interrupt after its handler ran.
pub fn ack(routes: &Routes, dest: &Cap) -> Result<(), ErrorCode> {
    let Extra::IrqVector(intid) = dest.extra else { return Err(ErrorCode::WrongCapType) };
    routes.find(intid).ok_or(ErrorCode::InvalidArgument)?;
    gic().set_enabled(intid, true).map_err(|_| ErrorCode::InvalidArgument)
}

/// The last copy of an IrqDest is going: the route goes too.
pub fn disconnect(routes: &Routes, mdb: &mut Mdb, dest: &Cap) {
    let Extra::IrqVector(intid) = dest.extra else { return };
    let Some(route) = routes.find(intid) else { return };
    let _ = gic().set_enabled(intid, false);
    let pa = route.ep.pa();
    // SAFETY: the route's CTE.
    if unsafe { cspace::cte_at(pa) }.cap.objtype != ObjType::Null {
        mdb.remove(&mut Ctes, cspace::id_of(pa));
        // SAFETY: as above, just removed from the database.
        unsafe { cspace::clear(pa) };
    }
    route.intid.set(0);
}

/// An interrupt the kernel does not handle itself: masked, and sent to its
/// route's endpoint. `false` if it has no route.
pub fn deliver(routes: &Routes, intid: u32) -> bool {
    let _ = gic().set_enabled(intid, false);
    let Some(route) = routes.find(intid) else { return false };
    route.pending.set(!send(route, intid));
    true
}

/// Delivers interrupts that found their receiver's ring full.
pub fn retry_pending(routes: &Routes) {
    for r in routes.0.iter().filter(|r| r.pending.get()) {
        r.pending.set(!send(r, r.intid.get()));
    }
}

/// Sends the interrupt message; `false` if it must be tried again. An
/// endpoint that is gone (its dispatcher deleted) or broken drops it: the
/// interrupt stays masked.
fn send(route: &Route, intid: u32) -> bool {
    // SAFETY: the route's CTE; read only, the kernel runs one event at a time.
    let ep = &unsafe { cspace::cte_at(route.ep.pa()) }.cap;
    match lmp::deliver(ep, &[u64::from(intid)]) {
        Ok(()) => true,
        Err(ErrorCode::LmpBufferFull) => false,
        Err(e) => {
            log::warn!("interrupt {intid} dropped ({e}); it stays masked");
            true
        }
    }
}
