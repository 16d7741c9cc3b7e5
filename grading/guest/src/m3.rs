//! The M3 grading hooks (book ch. 5.10) and the in-guest suite.
//!
//! Hooks: init's server calls one for each request it serves. When init
//! runs for grading (`grading` on its command line, see [`enable`]) each
//! prints what the server received, and the host runner compares that with
//! what the clients said they sent. They never change what the server does.
//!
//! Suite: [`run`] is the M3 suite, run by a spawned domain (`m3test`)
//! against the RPC API (`api::AosRpc`) only. Its groups print `m3: ok
//! GROUP/NAME` lines and verdicts like the other suites; what only the
//! console shows (the server's hooks, the helpers' reports, whole lines)
//! the runner checks.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use api::{AosRpc, Pid, RpcChannels};

use crate::Checks;

static ON: AtomicBool = AtomicBool::new(false);

/// Makes the hooks print (init calls this when grading).
pub fn enable() {
    ON.store(true, Ordering::Relaxed);
}

fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// FNV-1a, 64 bits: a string's fingerprint in the log, so a 64 KiB string
/// is checked without printing it. The runner computes the same.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

pub fn rpc_handle_number(val: u64) {
    if on() {
        aos::println!("grading: number {val:#x}");
    }
}

pub fn rpc_handler_string(s: &str) {
    if on() {
        aos::println!("grading: string of {} bytes, fnv {:#018x}", s.len(), fnv1a(s.as_bytes()));
    }
}

pub fn rpc_handler_serial_getchar() {
    if on() {
        aos::println!("grading: getchar");
    }
}

/// Not printed: a line per character would split the lines being tested.
pub fn rpc_handler_serial_putchar(_c: u8) {}

pub fn rpc_handler_ram_cap(bytes: u64, align: u64) {
    if on() && bytes >= 1 << 20 {
        // Small requests are many (every page table); the large ones tell.
        aos::println!("grading: ram_cap {bytes:#x} at {align:#x}");
    }
}

pub fn rpc_handler_process_spawn(cmdline: &str, core: u32) {
    if on() {
        aos::println!("grading: spawn {cmdline:?} on core {core}");
    }
}

/// Counted, not printed: clients poll with these. See [`report_counts`].
pub fn rpc_handler_process_get_name(_pid: u32) {
    GET_NAME.fetch_add(1, Ordering::Relaxed);
}

pub fn rpc_handler_process_get_all_pids() {
    GET_ALL_PIDS.fetch_add(1, Ordering::Relaxed);
}

static GET_NAME: AtomicU64 = AtomicU64::new(0);
static GET_ALL_PIDS: AtomicU64 = AtomicU64::new(0);

/// Prints how many of the counted requests the server served.
pub fn report_counts() {
    if on() {
        let (n, p) = (GET_NAME.load(Ordering::Relaxed), GET_ALL_PIDS.load(Ordering::Relaxed));
        aos::println!("grading: served {n} get_name and {p} get_all_pids");
    }
}

/// Memeaters the `many` group runs at once.
pub const MEMEATERS: usize = 16;
/// Chatters of the `terminal` group and the lines each prints.
pub const CHATTERS: usize = 6;
pub const CHATTER_LINES: usize = 40;
/// The lengths `send_string` is tried with: empty, one fragment and its
/// edges, the frame threshold and its edge, several pages, 64 KiB.
pub const STRING_LENGTHS: [usize; 9] = [0, 1, 104, 105, 1000, 2048, 2049, 12295, 65536];
/// Numbers `send_number` is tried with.
pub const NUMBERS: [u64; 4] = [0, 1, 0x1234_5678_9abc_def0, u64::MAX];

/// Byte `i` of the test string of length `len` (the runner computes the
/// same to check the server's fingerprint).
pub fn string_byte(len: usize, i: usize) -> u8 {
    b'a' + ((i * 7 + len) % 26) as u8
}

/// The groups, in the order they run.
pub const GROUPS: [&str; 8] = ["rpc", "ram", "process", "terminal", "dies", "quota", "many", "getchar"];

/// Runs the suite: the groups named in `only` (all if empty), as process
/// `me`, with `scratch` (at least 64 KiB) for building strings.
pub fn run<R: AosRpc>(ch: &RpcChannels<'_, R>, me: Pid, scratch: &mut [u8], only: &[&str]) {
    for g in GROUPS {
        if !only.is_empty() && !only.contains(&g) {
            continue;
        }
        let mut c = Checks::named("m3", g);
        match g {
            "rpc" => rpc(&mut c, ch, scratch),
            "ram" => ram(&mut c, ch),
            "process" => process(&mut c, ch, me),
            "terminal" => terminal(&mut c, ch),
            "dies" => dies(&mut c, ch),
            "quota" => quota(&mut c, ch),
            "many" => many(&mut c, ch),
            _ => getchar(&mut c, ch),
        }
        c.verdict();
    }
}

/// Yields until none of `pids` is a live process any more (or `seconds`
/// passed); whether they all went.
pub fn wait_gone<R: AosRpc>(ch: &RpcChannels<'_, R>, pids: &[Pid], seconds: u64) -> bool {
    let mut live = [0; 64];
    poll_until(seconds, || match ch.process.process_get_all_pids(&mut live) {
        Ok(n) => !live[..n.min(live.len())].iter().any(|p| pids.contains(p)),
        Err(_) => false,
    })
}

/// [`crate::yield_until`] that asks `done` at most every 5 ms of counter
/// time: a `done` that makes a call should not flood the server.
pub fn poll_until(seconds: u64, mut done: impl FnMut() -> bool) -> bool {
    let interval = aos::time::frequency() / 200;
    let mut next = 0;
    crate::yield_until(seconds, || {
        let now = aos::time::counter();
        if now < next {
            return false;
        }
        next = now + interval;
        done()
    })
}

fn rpc<R: AosRpc>(c: &mut Checks, ch: &RpcChannels<'_, R>, scratch: &mut [u8]) {
    for n in NUMBERS {
        let r = ch.init.send_number(n);
        c.ok("send_number", r.is_ok(), format_args!("{n:#x}: {r:?}"));
        aos::println!("m3: sent number {n:#x}");
    }
    for len in STRING_LENGTHS {
        let Some(buf) = scratch.get_mut(..len) else {
            c.ok("scratch holds the string", false, format_args!("{len} bytes"));
            continue;
        };
        for (i, b) in buf.iter_mut().enumerate() {
            *b = string_byte(len, i);
        }
        let s = core::str::from_utf8(buf).unwrap_or("");
        let r = ch.init.send_string(s);
        c.ok("send_string", r.is_ok(), format_args!("{len} bytes: {r:?}"));
        aos::println!("m3: sent string of {len} bytes, fnv {:#018x}", fnv1a(s.as_bytes()));
    }
    // Not UTF-8 cannot be sent through the API (a &str); a multi-byte
    // string across fragment edges can.
    let unit = "ü€😀".as_bytes();
    for (i, b) in scratch[..20 * unit.len()].iter_mut().enumerate() {
        *b = unit[i % unit.len()];
    }
    let multi = core::str::from_utf8(&scratch[..20 * unit.len()]).unwrap_or("");
    let r = ch.init.send_string(multi);
    c.ok("send_string of multi-byte characters", r.is_ok(), format_args!("{r:?}"));
    aos::println!("m3: sent string of {} bytes, fnv {:#018x}", multi.len(), fnv1a(multi.as_bytes()));
    let line = b"m3: this line went out one putchar at a time\n";
    let all = line.iter().all(|&b| ch.serial.serial_putchar(b).is_ok());
    c.ok("serial_putchar of a whole line", all, format_args!("a putchar failed"));
}

fn identify(cap: api::CapRef) -> Option<(u64, u64)> {
    aos::cap::identify(cap).ok().filter(|i| i.objtype == Some(aos::cap::ObjType::Ram)).map(|i| (i.base, i.size))
}

fn ram<R: AosRpc>(c: &mut Checks, ch: &RpcChannels<'_, R>) {
    let m = ch.memory;
    for (bytes, align, why) in [(0, 0, "zero bytes"), (4096, 3, "an alignment of 3"), (1 << 40, 0, "1 TiB")] {
        let r = m.get_ram_cap(bytes, align);
        c.ok("a request that cannot be met is refused", r.is_err(), format_args!("{why}: {r:?}"));
        if let Err(e) = r {
            aos::println!("m3: ram of {why} refused: {e}");
        }
    }
    let r = m.get_ram_cap(4096, 0);
    let got = r.as_ref().ok().and_then(|&(cap, n)| identify(cap).map(|(_, size)| (n, size)));
    c.is("one page, reported and real", got, Some((4096, 4096)));
    let r = m.get_ram_cap(5000, 4096);
    let got = r.as_ref().ok().and_then(|&(cap, n)| identify(cap).map(|(_, size)| (n, size)));
    c.is("5000 bytes round up to two pages", got, Some((8192, 8192)));
    let r = m.get_ram_cap(2 << 20, 2 << 20);
    let got = r.as_ref().ok().and_then(|&(cap, _)| identify(cap));
    c.ok(
        "2 MiB at 2 MiB alignment",
        got.is_some_and(|(base, size)| base % (2 << 20) == 0 && size == 2 << 20),
        format_args!("{r:?} -> {got:?}"),
    );
    // More capabilities than one CNode has slots: receiving never runs the
    // client out of slots, and every piece is disjoint from the others.
    let mut ranges = [(0u64, 0u64); 300];
    let mut n = 0;
    for r in ranges.iter_mut() {
        match m.get_ram_cap(4096, 0).ok().and_then(|(cap, _)| identify(cap)) {
            Some(got) => {
                *r = got;
                n += 1;
            }
            None => break,
        }
    }
    c.is("300 pages in a row, each received into a slot", n, ranges.len());
    ranges[..n].sort_unstable();
    let overlap = ranges[..n].windows(2).any(|w| w[0].0 + w[0].1 > w[1].0);
    c.ok("the 300 pages are disjoint", !overlap, format_args!("two of them overlap"));
}

fn own_name<R: AosRpc>(ch: &RpcChannels<'_, R>, pid: Pid) -> Option<api::ProcName> {
    ch.process.process_get_name(pid).ok()
}

fn process<R: AosRpc>(c: &mut Checks, ch: &RpcChannels<'_, R>, me: Pid) {
    let p = ch.process;
    c.is("its own name", own_name(ch, me).map(|n| n == api::ProcName::new("m3test")), Some(true));
    let mut pids = [0; 64];
    let n = p.process_get_all_pids(&mut pids).unwrap_or(0);
    c.ok("its own PID is listed", pids[..n].contains(&me), format_args!("{:?}", &pids[..n]));
    let r = p.process_get_name(me ^ 0x1_0000);
    c.ok("a PID of a gone generation has no name", r.is_err(), format_args!("{r:?}"));
    let r = p.process_get_name(0xffff);
    c.ok("a PID past the table has no name", r.is_err(), format_args!("{r:?}"));
    let r = p.process_spawn("hello spawned by m3test", 0);
    c.ok("spawn hello from a child", r.is_ok(), format_args!("{r:?}"));
    if let Ok(pid) = r {
        c.is("the child's name", own_name(ch, pid).map(|n| n == api::ProcName::new("hello")), Some(true));
        let n = p.process_get_all_pids(&mut pids).unwrap_or(0);
        c.ok(
            "and it is listed",
            pids[..n].contains(&pid) || !wait_gone(ch, &[pid], 0),
            format_args!("{:?}", &pids[..n]),
        );
        c.ok("it ends and is gone", wait_gone(ch, &[pid], 30), format_args!("{pid:#x} still listed"));
    }
    for (cmdline, core, why) in [("nosuchprogram", 0, "no such program"), ("", 0, "empty"), ("hello", 1, "core 1")] {
        let r = p.process_spawn(cmdline, core);
        c.ok("a spawn that cannot be done is refused", r.is_err(), format_args!("{why}: {r:?}"));
        if let Err(e) = r {
            aos::println!("m3: spawn of {why} refused: {e}");
        }
    }
}

/// Spawns `cmdline`s and waits for all to end.
fn spawn_all<R: AosRpc>(
    c: &mut Checks,
    ch: &RpcChannels<'_, R>,
    what: &str,
    cmdlines: &mut dyn Iterator<Item = heapless::String<64>>,
    seconds: u64,
) {
    let mut pids = heapless::Vec::<Pid, 32>::new();
    let mut failed = 0;
    for cmd in cmdlines {
        match ch.process.process_spawn(&cmd, 0) {
            Ok(pid) => {
                let _ = pids.push(pid);
            }
            Err(e) => {
                failed += 1;
                aos::println!("m3: spawning {cmd}: {e}");
            }
        }
    }
    c.ok("every helper spawned", failed == 0, format_args!("{failed} {what} spawns failed"));
    let gone = wait_gone(ch, &pids, seconds);
    c.ok("every helper ended", gone, format_args!("{what} still running after {seconds} s"));
}

fn cmd(args: core::fmt::Arguments<'_>) -> heapless::String<64> {
    let mut s = heapless::String::new();
    let _ = core::fmt::Write::write_fmt(&mut s, args);
    s
}

fn terminal<R: AosRpc>(c: &mut Checks, ch: &RpcChannels<'_, R>) {
    spawn_all(c, ch, "chatter", &mut (0..CHATTERS).map(|k| cmd(format_args!("chatter {k} {CHATTER_LINES}"))), 120);
}

fn dies<R: AosRpc>(c: &mut Checks, ch: &RpcChannels<'_, R>) {
    let r = ch.process.process_spawn("crasher", 0);
    c.ok("spawn a client that dies in the middle of a call", r.is_ok(), format_args!("{r:?}"));
    let Ok(pid) = r else { return };
    // Calls go on while it sends half a string and faults.
    let mut ok = 0;
    for k in 0..200u64 {
        ok += u32::from(ch.init.send_number(0xd1e5_0000 + k).is_ok());
    }
    c.is("200 calls of another client all answered", ok, 200);
    c.ok("the dead client is noticed and reclaimed", wait_gone(ch, &[pid], 10), format_args!("{pid:#x} still listed"));
    let r = ch.process.process_spawn("garbage", 0);
    c.ok("spawn a client that sends malformed messages", r.is_ok(), format_args!("{r:?}"));
    if let Ok(pid) = r {
        c.ok("and it ends", wait_gone(ch, &[pid], 30), format_args!("{pid:#x} still listed"));
    }
    let r = ch.process.process_spawn("hello after the crash", 0);
    c.ok("a new process gets going after it", r.is_ok(), format_args!("{r:?}"));
    if let Ok(pid) = r {
        c.ok("and ends", wait_gone(ch, &[pid], 30), format_args!("{pid:#x} still listed"));
    }
}

fn quota<R: AosRpc>(c: &mut Checks, ch: &RpcChannels<'_, R>) {
    for round in 0..2 {
        let r = ch.process.process_spawn("hog", 0);
        c.ok("spawn a hog", r.is_ok(), format_args!("round {round}: {r:?}"));
        let Ok(pid) = r else { return };
        // The hog holds its quota for a while: others still get memory.
        crate::yield_until(1, || false);
        let r = ch.memory.get_ram_cap(64 << 10, 0);
        c.ok("memory for others while a hog holds its quota", r.is_ok(), format_args!("{r:?}"));
        c.ok("the hog ends", wait_gone(ch, &[pid], 30), format_args!("{pid:#x} still listed"));
    }
}

fn many<R: AosRpc>(c: &mut Checks, ch: &RpcChannels<'_, R>) {
    spawn_all(c, ch, "memeater", &mut (0..MEMEATERS).map(|k| cmd(format_args!("memeater {k} {MEMEATERS}"))), 300);
}

fn getchar<R: AosRpc>(c: &mut Checks, ch: &RpcChannels<'_, R>) {
    aos::println!("m3: type a character");
    let r = ch.serial.serial_getchar();
    c.ok("serial_getchar", r.is_ok(), format_args!("{r:?}"));
    if let Ok(ch) = r {
        aos::println!("m3: got character {ch:#04x}");
    }
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
