//! The raw-LMP peer of the M3 benchmark: takes an endpoint back to its
//! client with the first message in its inbox, then answers every message
//! with an empty one on it, with upcalls disabled so nothing of the thread
//! or waitset runtime runs in between. A message of one word `u64::MAX`
//! ends it.

#![cfg_attr(target_os = "none", no_std, no_main)]

m3_lmp::main!(run);

fn run(_: &aos::Args) -> i32 {
    use aos::cap::CapRef;
    use aos::dispatcher::{self, Dispatcher};
    use aos::kpi::cspace::{ROOTCN_SLOT_TASKCN, TASKCN_SLOT_DISPATCHER};
    use aos::lmp::{Endpoint, Message, SEND_DEFAULT};
    use m3_lmp::chan::{CHILD_INBOX_RING, own_ring};

    let Ok(slot) = m3_lmp::mem::slot_alloc() else { return 1 };
    let own = Dispatcher(CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_DISPATCHER as u8));
    if own.set_recv_slot(Some(slot)).is_err() {
        return 1;
    }
    // SAFETY: the inbox is received only here (never bound by this program).
    let mut ring = unsafe { own_ring(CHILD_INBOX_RING) };
    let mut m = Message::default();
    dispatcher::disable();
    ring.recv_blocking_into(&mut m);
    let back = Endpoint(slot);
    let ok = m.cap;
    if ok {
        loop {
            if back.send(&[], SEND_DEFAULT).is_err() {
                break;
            }
            ring.recv_blocking_into(&mut m);
            if m.len == 1 && m.words[0] == u64::MAX {
                break;
            }
        }
    }
    dispatcher::enable();
    if ok { 0 } else { 1 }
}
