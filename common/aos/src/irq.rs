//! Interrupts delivered to this domain (book ch. 9.1): a device interrupt
//! routed to one of its LMP endpoints. Each arrives as a one-word message
//! (the INTID) and stays masked until [`IrqDest::ack`].

use kpi::ErrorCode;
use kpi::invocation::{CapRef, Command, Dest};

use crate::cap;

/// The capability for one routed interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqDest(pub CapRef);

/// Routes interrupt `intid` to `endpoint` (minted with a buffer); the new
/// IrqDest goes to `dest`, a slot of an L2 CNode. `table` is the IRQ table
/// capability.
pub fn connect(table: CapRef, intid: u32, endpoint: CapRef, dest: Dest) -> Result<IrqDest, ErrorCode> {
    let slot = u8::try_from(dest.slot).map_err(|_| ErrorCode::BadCapAddr)?;
    if dest.cnode.level != 1 {
        return Err(ErrorCode::BadCapAddr);
    }
    cap::invoke(table, Command::IrqConnect, [u64::from(intid), endpoint.to_raw(), dest.to_raw(), 0, 0])?;
    Ok(IrqDest(CapRef::slot(dest.cnode.l1_index(), slot)))
}

impl IrqDest {
    /// The interrupt was handled: unmask it.
    pub fn ack(self) -> Result<(), ErrorCode> {
        cap::invoke(self.0, Command::IrqAck, [0; 5]).map(drop)
    }
}
