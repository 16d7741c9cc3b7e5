//! Channels over LMP (book ch. 5.10.1): where the receive rings lie in the
//! dispatcher frames, sending a protocol message with its retries, and
//! waiting for one through a waitset.
//!
//! Owns the ring layout of every M3 frame and the send loop. It does not
//! interpret messages (`proto`) and keeps no per-channel state: the client
//! (`rpc`) and the server (`server`) hold their ends.

use aos::cap::CapRef;
use aos::kpi::ErrorCode;
use aos::kpi::vspace::{CHILD_DISPFRAME_SIZE, INIT_DISPFRAME_SIZE};
use aos::lmp::{Endpoint, Message, SEND_DEFAULT};
use aos::waitset::rt::{LmpRecv, Waitset};
use aos::waitset::{Closure, WaitsetError};

use crate::proto::Wire;

/// Bytes of each ring: the header and 15 message slots.
pub const RING_SIZE: u64 = 2048;
/// The first ring, after the frame's shared part.
pub const RING_BASE: u64 = 2048;
const _: () = assert!(aos::kpi::dispatcher::SHARED_SIZE as u64 <= RING_BASE);

/// Offset of ring `i` in a dispatcher frame.
pub const fn ring_offset(i: usize) -> u64 {
    RING_BASE + i as u64 * RING_SIZE
}

/// Init's ring for its own events (the housekeeping timer).
pub const INIT_EVENT_RING: usize = 0;
/// Init's ring for the process at table index `index`.
pub const fn init_ring_for(index: usize) -> usize {
    1 + index
}
/// A child's ring for init's replies.
pub const CHILD_INIT_RING: usize = 0;
/// A child's inbox: messages from other domains, which init connects to
/// it on request.
pub const CHILD_INBOX_RING: usize = 1;

const _: () = assert!(ring_offset(init_ring_for(m2_spawn::spawn::PROCS_MAX - 1) + 1) <= INIT_DISPFRAME_SIZE);
const _: () = assert!(ring_offset(CHILD_INBOX_RING + 1) <= CHILD_DISPFRAME_SIZE);

/// The ring at index `i` of this dispatcher's frame.
///
/// # Safety
/// Nothing else may receive from that ring.
pub unsafe fn own_ring(i: usize) -> aos::lmp::Ring {
    // SAFETY: the frame is mapped read-write at DISPFRAME_VADDR for the
    // domain's life, and it is large enough for ring `i` (asserted above
    // for the indices this crate uses); the caller owns the ring.
    unsafe { aos::lmp::Ring::new(aos::kpi::vspace::DISPFRAME_VADDR, ring_offset(i), RING_SIZE) }
}

/// How long a sender keeps trying while the peer's ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patience {
    /// Until it goes through: a client waiting for its server.
    Forever,
    /// This many yields: a server must not hang on a client that stopped
    /// reading.
    Yields(u32),
}

/// Sends one message, with `cap` if given. A full ring, or a receiver
/// whose capability slot is taken, is transient: the sender yields (so the
/// receiver can run and drain it) and tries again. `last` marks the last
/// message of a body: it hands the core to the receiver at once.
pub fn send(ep: Endpoint, w: &Wire, cap: Option<CapRef>, last: bool, patience: Patience) -> Result<(), ErrorCode> {
    let flags = if last { SEND_DEFAULT } else { 0 };
    let mut tries = 0u32;
    loop {
        let r = match cap {
            Some(c) => ep.send_cap(w.words(), c, flags),
            None => ep.send(w.words(), flags),
        };
        match r {
            Err(ErrorCode::LmpBufferFull | ErrorCode::LmpNoRecvSlot) => {
                if let Patience::Yields(n) = patience
                    && tries >= n
                {
                    return r;
                }
                tries += 1;
                let _ = aos::syscall::yield_now();
            }
            r => return r,
        }
    }
}

fn wake(_: usize) {}

/// Takes the next message from `recv`, blocking the thread in `ws`, the
/// waitset `recv` is bound in, until one arrives (`event_dispatch`): the
/// core goes to others meanwhile. A waitset per receiving thread: a thread
/// woken for another's ring would leave that thread asleep.
pub fn wait_message(recv: &'static LmpRecv, ws: &'static Waitset) -> Result<Message, WaitsetError> {
    loop {
        if let Some(m) = recv.recv()? {
            return Ok(m);
        }
        match recv.register(Closure::new(wake, 0)) {
            Ok(()) | Err(WaitsetError::AlreadyRegistered) => {}
            Err(e) => return Err(e),
        }
        ws.event_dispatch()?;
    }
}
