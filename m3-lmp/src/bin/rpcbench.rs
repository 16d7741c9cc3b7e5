//! The M3 benchmark (`cargo xtask bench m3`), a spawned client of init:
//! - a null RPC to init through the whole channel layer, against a raw
//!   LMP round trip with `echo` in the same run;
//! - `get_ram_cap` of a page and of 1 MiB;
//! - `send_string` at several sizes, as fragments and in a frame, which
//!   is where the frame threshold comes from (report/m3-lmp.md).
//!
//! Prints `bench:` samples; under icount ticks are instructions.

#![cfg_attr(target_os = "none", no_std, no_main)]

m3_lmp::main!(run);

const SAMPLES: usize = 12;

fn run(_: &aos::Args) -> i32 {
    use aos::time::measure;
    use api::AosRpc;
    use m3_lmp::proto::Kind;
    use m3_lmp::rpc::{self, Via};

    aos::println!("bench: counter-frequency {} Hz", aos::time::frequency());
    let r = rpc::init_channel();
    let mut ok = true;
    for _ in 0..SAMPLES {
        ok &= measure("rpc-null-round-trip", 100, || (0..100).all(|_| r.ping().is_ok()));
    }
    ok &= raw_lmp();
    for _ in 0..SAMPLES {
        ok &= measure("get-ram-cap-4k", 50, || (0..50).all(|_| r.get_ram_cap(4096, 0).is_ok()));
    }
    for _ in 0..6 {
        ok &= measure("get-ram-cap-1m", 2, || (0..2).all(|_| r.get_ram_cap(1 << 20, 0).is_ok()));
    }
    static BODY: [u8; 1024] = [b's'; 1024];
    for (len, frag, frame) in [
        (104, "send-string-104-fragments", "send-string-104-frame"),
        (312, "send-string-312-fragments", "send-string-312-frame"),
        (416, "send-string-416-fragments", "send-string-416-frame"),
        (1024, "send-string-1k-fragments", "send-string-1k-frame"),
    ] {
        for _ in 0..8 {
            ok &= measure(frag, 10, || {
                (0..10).all(|_| r.call_via(Kind::String, &BODY[..len], None, Via::Fragments).is_ok())
            });
            ok &= measure(frame, 10, || {
                (0..10).all(|_| r.call_via(Kind::String, &BODY[..len], None, Via::Frame).is_ok())
            });
        }
    }
    if ok { 0 } else { 1 }
}

/// Raw LMP round trips with `echo`: init connects the two, and `echo`
/// gets an endpoint back to a ring of this domain's frame.
fn raw_lmp() -> bool {
    use aos::cap::{self, CapRef, Dest, ObjType};
    use aos::dispatcher;
    use aos::kpi::cspace::{ROOTCN_SLOT_TASKCN, TASKCN_SLOT_DISPATCHER};
    use aos::lmp::{Message, SEND_DEFAULT};
    use api::AosRpc;
    use m3_lmp::chan::{RING_SIZE, own_ring, ring_offset};
    use m3_lmp::{mem, rpc};

    /// A ring of this domain's frame no runtime part uses.
    const BENCH_RING: usize = 2;
    let r = rpc::init_channel();
    let Ok(pid) = r.process_spawn("echo", 0) else { return false };
    let Ok(to_echo) = r.connect(pid) else { return false };
    let (Ok(raw), Ok(back)) = (mem::slot_alloc(), mem::slot_alloc()) else { return false };
    let own = CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_DISPATCHER as u8);
    if cap::retype(own, Dest::at(raw), ObjType::EndPointLmp, 0, 0, 1).is_err()
        || cap::mint(raw, Dest::at(back), 0x1f, Some((ring_offset(BENCH_RING) as u32, RING_SIZE as u32))).is_err()
    {
        return false;
    }
    // SAFETY: ring BENCH_RING is received only here.
    let mut ring = unsafe { own_ring(BENCH_RING) };
    let mut m = Message::default();
    // Echo may not have armed its receive slot yet: that is transient.
    while let Err(aos::kpi::ErrorCode::LmpNoRecvSlot | aos::kpi::ErrorCode::LmpBufferFull) =
        to_echo.send_cap(&[1], back, SEND_DEFAULT)
    {
        let _ = aos::syscall::yield_now();
    }
    // Upcalls off: nothing of the thread or waitset runtime runs between.
    dispatcher::disable();
    ring.recv_blocking_into(&mut m);
    let mut ok = true;
    let mut samples = [0u64; SAMPLES];
    for s in samples.iter_mut() {
        let t0 = aos::time::counter();
        for _ in 0..100 {
            ok &= to_echo.send(&[], SEND_DEFAULT).is_ok();
            ring.recv_blocking_into(&mut m);
        }
        *s = aos::time::counter() - t0;
    }
    let _ = to_echo.send(&[u64::MAX], SEND_DEFAULT);
    dispatcher::enable();
    for s in samples {
        aos::println!("bench: lmp-raw-round-trip {s} 100");
    }
    ok
}
