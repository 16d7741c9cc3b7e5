//! A client that dies in the middle of a call: it sends the first
//! fragments of a long string to init and then faults. The server must
//! drop the half-assembled request and reclaim the process, and its other
//! clients must not notice.

#![cfg_attr(target_os = "none", no_std, no_main)]

m3_lmp::main!(run);

fn run(_: &aos::Args) -> i32 {
    use aos::kpi::cspace::{ROOTCN_SLOT_TASKCN, TASKCN_SLOT_INITEP};
    use m3_lmp::proto::{self, Kind};

    let ep = aos::lmp::Endpoint(aos::cap::CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_INITEP as u8));
    let body = [b'x'; 1000];
    let sent =
        proto::fragments(Kind::String, 0x7777, 0, &body).take(3).filter(|w| ep.send(w.words(), 0).is_ok()).count();
    aos::println!("crasher: sent {sent} of the fragments of a 1000-byte string; now faulting");
    // SAFETY: none needed for memory safety: nothing is mapped at 0x100
    // (below USER_MIN), so this write faults on purpose and ends the domain.
    unsafe { core::ptr::without_provenance_mut::<u64>(0x100).write_volatile(1) };
    2
}
