//! Sends init malformed messages on its channel, one of each kind the
//! protocol refuses, and checks that each is answered with a refusal and
//! that the channel works afterwards (the M3 suite's hostile client).

#![cfg_attr(target_os = "none", no_std, no_main)]

use aos::cap::CapRef;
use api::AosRpc;
use m3_lmp::proto::{ERROR, FIRST, FRAME, Header, Kind, LAST, Refusal};
use m3_lmp::rpc;

m3_lmp::main!(run);

fn header(kind: u8, flags: u8, len: u8) -> u64 {
    Header { kind, flags, call: 0x4242, len }.to_word()
}

/// Whether `m` refuses as malformed.
fn refused(m: &aos::lmp::Message) -> bool {
    let (h, _) = Header::from_word(m.words[0]);
    h.flags & ERROR != 0 && m.len >= 2 && m.words[1] == Refusal::Malformed as u64
}

fn run(_: &aos::Args) -> i32 {
    let r = rpc::init_channel();
    let (num, whole) = (Kind::Number as u8, FIRST | LAST);
    let Ok((ram, _)) = r.get_ram_cap(4096, 0) else { return 1 };
    let Ok((frame, _)) = m3_lmp::mem::frame_alloc(4096) else { return 1 };
    let cases: [(&str, &[u64], Option<CapRef>); 11] = [
        ("an unknown kind", &[header(200, whole, 8), 1], None),
        ("reserved header bits", &[header(num, whole, 8) | 1 << 50, 1], None),
        ("a length past a fragment", &[header(num, whole, 105), 1], None),
        ("a length past the words sent", &[header(Kind::String as u8, whole, 50), 1, 2], None),
        ("a fragment with no first", &[header(Kind::String as u8, LAST, 8), 1], None),
        ("an error flag from a client", &[header(num, whole | ERROR, 8), 1], None),
        ("a number of three bytes", &[header(num, whole, 3), 1], None),
        ("a message with no words", &[], None),
        ("a frame body without a frame", &[header(Kind::String as u8, whole | FRAME, 0), 64], None),
        ("a frame body in RAM", &[header(Kind::String as u8, whole | FRAME, 0), 64], Some(ram)),
        ("a frame body longer than its frame", &[header(Kind::String as u8, whole | FRAME, 0), 8192], Some(frame)),
    ];
    let mut good = 0;
    for (what, words, cap) in cases {
        match r.raw_exchange(words, cap) {
            Ok(m) if refused(&m) => good += 1,
            other => aos::println!("garbage: {what}: not refused as malformed: {other:?}"),
        }
    }
    let after = r.send_number(7).is_ok() && r.ping().is_ok();
    aos::println!(
        "garbage: {good} of {} malformed messages refused; the channel works after them: {after}",
        cases.len()
    );
    if good == cases.len() && after { 0 } else { 1 }
}
