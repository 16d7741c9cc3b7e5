//! `memeater ID COUNT` (book ch. 5.9): one of COUNT domains running at
//! once that each take memory from the memory server, map it and check
//! every word, and talk to one another: each connects to every other
//! memeater's inbox (through init, which hands out the endpoints) and
//! sends it numbered messages, while a second thread receives and checks
//! what the others send. Prints one line with what it checked.

#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering};

use api::{AosRpc, MapFlags, Pid};
use m3_lmp::{mem, rpc};

m3_lmp::main!(run);

/// Messages each memeater sends each other one.
const PER_PEER: u64 = 8;
/// Memory rounds and the bytes of the first (each takes one more).
const ROUNDS: u64 = 4;
const ROUND_BYTES: u64 = 192 << 10;

/// What the receiving thread expects and found.
static EXPECT: AtomicU64 = AtomicU64::new(0);
static GOOD: AtomicU64 = AtomicU64::new(0);
static BAD: AtomicU64 = AtomicU64::new(0);

/// Word `k` of message `seq` from `from`.
fn word(from: Pid, seq: u64, k: u64) -> u64 {
    (u64::from(from) << 32 | seq << 8 | k).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn receiver(_: u64) -> i32 {
    let mut next = [0u64; 32];
    for _ in 0..EXPECT.load(Ordering::Relaxed) {
        let Ok(m) = rpc::inbox_recv() else { return 1 };
        let (from, seq) = (m.words[0] as Pid, m.words[1]);
        let slot = &mut next[(from & 0x1f) as usize];
        let intact = m.len == aos::lmp::LMP_WORDS && (2..m.len).all(|k| m.words[k] == word(from, seq, k as u64));
        if intact && seq == *slot {
            *slot += 1;
            GOOD.fetch_add(1, Ordering::Relaxed);
        } else {
            BAD.fetch_add(1, Ordering::Relaxed);
        }
    }
    0
}

fn run(args: &aos::Args) -> i32 {
    let id: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    let count: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let Some(me) = m3_lmp::rt::own_pid(args) else { return 1 };
    let p = rpc::process_channel();

    // Memory: frames from the server, mapped, every word written and read.
    let mut checked = 0u64;
    for r in 0..ROUNDS {
        let bytes = ROUND_BYTES * (r + 1);
        let Ok((frame, _)) = mem::frame_alloc(bytes) else {
            aos::println!("memeater {id}: no frame of {bytes} bytes");
            return 1;
        };
        let Ok(va) = mem::map_frame(frame, bytes, MapFlags::READ_WRITE) else {
            aos::println!("memeater {id}: cannot map {bytes} bytes");
            return 1;
        };
        // SAFETY: `bytes` were just mapped read-write at `va`, for this
        // process only.
        let m = unsafe { core::slice::from_raw_parts_mut(va as *mut u64, (bytes / 8) as usize) };
        for (i, w) in m.iter_mut().enumerate() {
            *w = word(me, r, i as u64);
        }
        let _ = aos::syscall::yield_now();
        if m.iter().enumerate().any(|(i, w)| *w != word(me, r, i as u64)) {
            aos::println!("memeater {id}: round {r}: memory changed under it");
            return 1;
        }
        checked += bytes;
        let _ = rpc::init_channel().send_number(id << 32 | r);
    }

    // Peers: wait until all COUNT memeaters run, connect to the others.
    let mut peers = [0 as Pid; 32];
    let mut n = 0;
    let all = grading::m3::poll_until(60, || {
        let mut pids = [0; 32];
        let live = p.process_get_all_pids(&mut pids).unwrap_or(0).min(32);
        n = 0;
        for &pid in &pids[..live] {
            if pid != me && p.process_get_name(pid).is_ok_and(|nm| nm.as_str() == "memeater") {
                peers[n] = pid;
                n += 1;
            }
        }
        n + 1 >= count
    });
    if !all {
        aos::println!("memeater {id}: only {} of {count} memeaters ever ran", n + 1);
        return 1;
    }
    EXPECT.store(n as u64 * PER_PEER, Ordering::Relaxed);
    let Ok(t) = aos::thread::spawn(receiver, 0) else { return 1 };
    let mut sent = 0;
    for &peer in &peers[..n] {
        let Ok(ep) = rpc::init_channel().connect(peer) else {
            aos::println!("memeater {id}: cannot connect to {peer:#x}");
            return 1;
        };
        for seq in 0..PER_PEER {
            let mut w = [0u64; aos::lmp::LMP_WORDS];
            w[0] = u64::from(me);
            w[1] = seq;
            for (k, x) in w.iter_mut().enumerate().skip(2) {
                *x = word(me, seq, k as u64);
            }
            if rpc::inbox_send(ep, &w).is_ok() {
                sent += 1;
            }
        }
    }
    let received = aos::thread::join(t);
    let (good, bad) = (GOOD.load(Ordering::Relaxed), BAD.load(Ordering::Relaxed));
    let ok = received == Ok(0) && bad == 0 && good == n as u64 * PER_PEER && sent == n as u64 * PER_PEER;
    aos::println!(
        "memeater {id}: {checked} bytes checked, {sent} messages sent, {good} received intact from {n} peers, {bad} bad{}",
        if ok { "; all data checked" } else { "" }
    );
    if ok { 0 } else { 1 }
}
