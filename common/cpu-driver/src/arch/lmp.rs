//! LMP send (book ch. 5.3): the kernel half of a message between two
//! dispatchers on this core. Registers and ring layout in `kpi::lmp`.
//!
//! Owns the order of the checks, which is what makes a refused send change
//! nothing: every check (endpoint, buffer, room, receive slot) comes before
//! the first write, so a failed send leaves the message with the sender, the
//! capability in its slot and the receiver's ring as it was. It writes only
//! the receiver's ring, `haswork` and receive slot. The kernel's own
//! messages (interrupts) take the same path without a sender.

use caps::{Cap, Extra, ObjType};
use kpi::ErrorCode;
use kpi::invocation::{CapRef, DispatcherState};
use kpi::lmp::{
    HEADER_BYTES, LMP_WORDS, SEND_CAP, SEND_SYNC, SEND_YIELD, SlotHeader, ring_slots, slot_offset, split_send_word,
};

use super::core::this_core;
use super::cspace;
use super::dispatch::{Dcb, Frame, HELD_FRAME, HELD_ROOT};
use super::{invoke, mm};

/// Sends `from`'s message: `a` = x1..x7, `regs` = x4.. (the words).
pub fn send(from: Dcb, a: &[u64; 7], regs: &[u64]) -> Result<(), ErrorCode> {
    let (_, words, flags) = split_send_word(a[1]);
    if words > LMP_WORDS as u64 || flags & !(SEND_YIELD | SEND_CAP | SEND_SYNC) != 0 {
        return Err(ErrorCode::InvalidArgument);
    }
    let ep = invoke::lookup_cap(from, CapRef::from_raw(a[0]).ok_or(ErrorCode::BadCapAddr)?)?;
    let slot = Slot::find(ep)?;
    let cap_sent = flags & SEND_CAP != 0;
    if cap_sent {
        transfer_cap(from, slot.to, a[2])?;
    }
    let to = slot.to;
    slot.fill(SlotHeader { words: words as u8, cap: cap_sent }, &regs[..words as usize]);
    if flags & SEND_YIELD != 0 {
        let core = this_core();
        if flags & SEND_SYNC != 0 {
            // Directed: the receiver first, the sender right behind it.
            core.yield_to(from, to);
        } else {
            core.runq.rotate();
        }
    }
    Ok(())
}

/// A message from the kernel itself (an interrupt) to endpoint `ep`.
pub fn deliver(ep: &Cap, words: &[u64]) -> Result<(), ErrorCode> {
    Slot::find(ep)?.fill(SlotHeader { words: words.len() as u8, cap: false }, words);
    Ok(())
}

/// A free slot of the ring an endpoint names: every check a delivery
/// needs, done before anything is written.
struct Slot {
    to: Dcb,
    frame: Frame,
    ring: u64,
    tail: u64,
    /// Physical address of the slot.
    at: u64,
}

impl Slot {
    #[inline(always)]
    fn find(ep: &Cap) -> Result<Slot, ErrorCode> {
        if ep.objtype != ObjType::EndPointLmp {
            return Err(ErrorCode::WrongCapType);
        }
        let Extra::Endpoint { offset, size } = ep.extra else { return Err(ErrorCode::LmpBadBuffer) };
        let to = Dcb(ep.base);
        if matches!(to.state(), DispatcherState::New | DispatcherState::Ended) {
            return Err(ErrorCode::DispatcherState);
        }
        let (offset, size) = (u64::from(offset), u64::from(size));
        let slots = ring_slots(size);
        let frame = to.frame();
        let ring = match frame.region(to.held(HELD_FRAME).size, offset, size) {
            Some(pa) if offset.is_multiple_of(HEADER_BYTES) && slots > 0 => pa,
            _ => return Err(ErrorCode::LmpBadBuffer),
        };
        let head = read(ring);
        let tail = read(ring + 8);
        if tail.wrapping_sub(head) >= slots {
            return Err(ErrorCode::LmpBufferFull);
        }
        Ok(Slot { to, frame, ring, tail, at: ring + slot_offset(tail, slots) })
    }

    /// Writes the message, publishes it, and wakes the receiver.
    #[inline(always)]
    fn fill(self, header: SlotHeader, words: &[u64]) {
        write(self.at, header.to_raw());
        for (i, &w) in words.iter().enumerate() {
            write(self.at + 8 + 8 * i as u64, w);
        }
        // The slot is complete before the receiver can see it counted.
        // SAFETY: a barrier only.
        unsafe { core::arch::asm!("dmb ishst", options(nostack)) };
        write(self.ring + 8, self.tail.wrapping_add(1));
        self.frame.set_haswork();
        if self.to.state() == DispatcherState::Waiting {
            this_core().enqueue(self.to);
        }
    }
}

/// Copies the capability `raw` names in `from`'s CSpace into `to`'s receive
/// slot, which must be set and empty; the slot is used up.
fn transfer_cap(from: Dcb, to: Dcb, raw: u64) -> Result<(), ErrorCode> {
    let cap = invoke::lookup_cap(from, CapRef::from_raw(raw).ok_or(ErrorCode::BadCapAddr)?)?;
    let copy = caps::retype::copy(cap).map_err(|_| ErrorCode::WrongCapType)?;
    let recv = CapRef::from_raw(to.recv_slot()).ok_or(ErrorCode::LmpNoRecvSlot)?;
    let dst = cspace::lookup(to.held(HELD_ROOT), recv).map_err(|_| ErrorCode::LmpNoRecvSlot)?;
    // SAFETY: `lookup` returned a slot of the receiver's CSpace.
    if unsafe { cspace::cte_at(dst) }.cap.objtype != ObjType::Null {
        return Err(ErrorCode::LmpNoRecvSlot);
    }
    // SAFETY: as above; the slot is empty.
    unsafe { cspace::put(&mut this_core().mdb.borrow_mut(), dst, cspace::Cte::new(copy)) };
    to.set_recv_slot(0);
    Ok(())
}

fn read(pa: u64) -> u64 {
    // SAFETY: `pa` lies in the receiver's frame (checked by `region`), which
    // the receiver's DCB keeps alive; any value is a valid u64.
    unsafe { core::ptr::read_volatile(mm::phys(pa) as *const u64) }
}

fn write(pa: u64, v: u64) {
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile(mm::phys(pa) as *mut u64, v) }
}
