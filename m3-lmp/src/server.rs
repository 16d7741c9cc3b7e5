//! Init's side of every channel (book ch. 5.10-5.14): the spawn hook that
//! makes a child's channel, the event loop, and the services behind it:
//! numbers and strings, the memory server, the terminal, and processes.
//!
//! Owns, per process-table index, the client record (its endpoint copy,
//! half-assembled request, terminal line, memory chunks and quota), the
//! receive rings of init's frame, init's receive slot, and the
//! housekeeping timer. It changes processes only through `m2_spawn`'s
//! `System`, and memory only through its manager.
//!
//! Events: every client ring is an event source of the default waitset
//! whose closure only marks the ring ready; [`Server::serve`] runs the
//! waitset and then handles the marked rings with the system in hand. The
//! housekeeping timer (the virtual timer, routed to ring 0) wakes init
//! every [`TICK_MS`] ms to notice processes that ended without a `bye` and
//! to poll the console for waiting `getchar` calls.

use core::sync::atomic::{AtomicU64, Ordering};

use aos::cap::{self, CapRef, Dest, ObjType};
use aos::dispatcher::Dispatcher;
use aos::kpi::cspace::*;
use aos::lmp::{Endpoint, Message};
use aos::waitset::Closure;
use aos::waitset::rt::{LmpRecv, default_waitset};
use api::{MapFlags, MemoryManager, Pid, ProcState, SlotAllocator, Spawner, VSpace};
use m2_spawn::System;
use m2_spawn::spawn::{ChildCaps, PROCS_MAX};

use crate::chan::{
    self, CHILD_INBOX_RING, CHILD_INIT_RING, INIT_EVENT_RING, Patience, RING_SIZE, init_ring_for, ring_offset,
};
use crate::proto::{self, Assembly, Done, INLINE_MAX, Kind, Refusal};

/// Bytes of RAM the memory server sets aside for a client at a time.
pub const CHUNK: u64 = 1 << 20;
/// What a client may hold, in chunk bytes, unless init says otherwise.
pub const DEFAULT_QUOTA: u64 = 32 << 20;
/// Chunks one client holds at most.
const CHUNKS_MAX: usize = 40;
/// Longest terminal line init holds for a client before writing it.
pub const LINE_MAX: usize = 256;
/// The housekeeping period.
pub const TICK_MS: u64 = 20;
/// Rights of the endpoints made for channels.
const EP_RIGHTS: u8 = 0x1f;
/// The virtual timer's interrupt (a PPI, the same on every board).
const VTIMER_INTID: u32 = 27;
/// Yields a reply may wait for a client's full ring.
const REPLY_PATIENCE: u32 = 64;

/// A piece of RAM set aside for one client.
#[derive(Clone, Copy)]
struct Chunk {
    cap: CapRef,
    base: u64,
    size: u64,
    /// Bytes handed out from its start.
    next: u64,
}

struct Client {
    pid: Option<Pid>,
    /// Init's endpoint to the client's reply ring.
    ep: Option<Endpoint>,
    line: heapless::Vec<u8, LINE_MAX>,
    chunks: heapless::Vec<Chunk, CHUNKS_MAX>,
    used: u64,
    quota: u64,
    /// A `getchar` waiting for a character: its call number.
    getchar: Option<u16>,
}

impl Client {
    const EMPTY: Client = Client {
        pid: None,
        ep: None,
        line: heapless::Vec::new(),
        chunks: heapless::Vec::new(),
        used: 0,
        quota: DEFAULT_QUOTA,
        getchar: None,
    };
}

/// Each ring's half-assembled request, by table index: beside the client
/// records, so a handler can read a body while it changes the server.
static ASSEMBLY: [spin::Mutex<Assembly<INLINE_MAX>>; PROCS_MAX] =
    [const { spin::Mutex::new(Assembly::new()) }; PROCS_MAX];
/// Where a body that came in a frame is copied to.
static FRAME_BODY: spin::Mutex<[u8; proto::BODY_MAX]> = spin::Mutex::new([0; proto::BODY_MAX]);

/// The rings' event sources, by table index, and init's own events.
static RECV: [LmpRecv; PROCS_MAX] = [const { LmpRecv::new() }; PROCS_MAX];
static EVENTS: LmpRecv = LmpRecv::new();
/// Rings marked ready by their closures: bit `i` for index `i`, bit 63 for
/// the event ring.
static READY: AtomicU64 = AtomicU64::new(0);
const EVENT_BIT: u32 = 63;
const _: () = assert!(PROCS_MAX < EVENT_BIT as usize);

fn mark(bit: usize) {
    READY.fetch_or(1 << bit, Ordering::Relaxed);
}

fn own(slot: usize) -> CapRef {
    CapRef::slot(ROOTCN_SLOT_TASKCN as u32, slot as u8)
}

/// The spawn hook (`m2_spawn::spawn::SpawnHook`): both ends of a child's
/// channel to init, made before it runs. The child's `TASKCN_SLOT_INITEP`
/// gets init's endpoint with the child's ring in init's frame (so the
/// ring names the sender); init keeps the child's endpoint with its reply
/// ring.
pub fn spawn_hook(mem: &mut m1_memory::Memory, c: &ChildCaps) -> Result<Option<CapRef>, m2_spawn::Error> {
    let kernel = |doing| move |code| m2_spawn::Error::Kernel { code, doing };
    let ring = (ring_offset(init_ring_for(c.index)) as u32, RING_SIZE as u32);
    cap::mint(own(TASKCN_SLOT_SELFEP), Dest::l2(c.taskcn, TASKCN_SLOT_INITEP as u32), EP_RIGHTS, Some(ring))
        .map_err(kernel("giving the child init's endpoint"))?;
    let keep = mem.slot_alloc()?;
    let theirs = CapRef::slot(c.taskcn, TASKCN_SLOT_SELFEP as u8);
    let ring = (ring_offset(CHILD_INIT_RING) as u32, RING_SIZE as u32);
    if let Err(code) = cap::mint(theirs, Dest::at(keep), EP_RIGHTS, Some(ring)) {
        let _ = mem.slot_free(keep);
        return Err(kernel("keeping the child's endpoint")(code));
    }
    Ok(Some(keep))
}

/// What happened to a request, for the log and the grading hooks.
type Outcome = Result<(), Refusal>;

/// The server: clients by table index, the console, and init's receive
/// slot.
pub struct Server {
    clients: [Client; PROCS_MAX],
    /// The slot armed for the next capability a client sends.
    recv_slot: Option<CapRef>,
    console: Option<platform::console::Console>,
    tick: u64,
    /// The timer interrupt's route to ring 0.
    timer_route: Option<CapRef>,
    /// Processes that ended, and how many of those sent `bye`.
    pub ended: u64,
    pub byes: u64,
}

impl Server {
    pub const fn new() -> Server {
        Server {
            clients: [const { Client::EMPTY }; PROCS_MAX],
            recv_slot: None,
            console: None,
            tick: 0,
            timer_route: None,
            ended: 0,
            byes: 0,
        }
    }

    /// Installs the spawn hook, maps the console and starts the
    /// housekeeping timer. The thread runtime must be running.
    pub fn start(&mut self, sys: &mut System) -> Result<(), &'static str> {
        sys.set_spawn_hook(spawn_hook);
        self.console = console(sys);
        // The timer's messages arrive in ring 0 through an endpoint to it.
        let ep = sys.slot_alloc().map_err(|_| "no slot for the timer's endpoint")?;
        let ring = (ring_offset(INIT_EVENT_RING) as u32, RING_SIZE as u32);
        cap::mint(own(TASKCN_SLOT_SELFEP), Dest::at(ep), EP_RIGHTS, Some(ring))
            .map_err(|_| "minting the timer's endpoint")?;
        let route = sys.slot_alloc().map_err(|_| "no slot for the timer's route")?;
        aos::irq::connect(own(TASKCN_SLOT_IRQ), VTIMER_INTID, ep, Dest::at(route)).map_err(|_| "routing the timer")?;
        // SAFETY: ring 0 of init's frame is the event ring, read only here.
        let ring = unsafe { chan::own_ring(INIT_EVENT_RING) };
        EVENTS.bind(ring, default_waitset()).map_err(|_| "binding the event ring")?;
        EVENTS.register(Closure::new(mark, EVENT_BIT as usize)).map_err(|_| "registering the event ring")?;
        self.tick = aos::time::frequency() * TICK_MS / 1000;
        aos::time::virtual_timer::arm(self.tick);
        self.timer_route = Some(route);
        self.arm_recv_slot(sys);
        Ok(())
    }

    fn arm_recv_slot(&mut self, sys: &mut System) {
        if self.recv_slot.is_none()
            && let Ok(s) = sys.slot_alloc()
        {
            if Dispatcher(own(TASKCN_SLOT_DISPATCHER)).set_recv_slot(Some(s)).is_ok() {
                self.recv_slot = Some(s);
            } else {
                let _ = sys.slot_free(s);
            }
        }
    }

    /// Makes process `pid` a client: its ring becomes an event source.
    pub fn add(&mut self, sys: &System, pid: Pid) -> Result<(), &'static str> {
        let i = m2_spawn::proc::index_of(pid);
        let ep = sys.kept(pid).ok().flatten().ok_or("the process has no channel")?;
        let c = &mut self.clients[i];
        *c = Client { pid: Some(pid), ep: Some(Endpoint(ep)), ..Client::EMPTY };
        // Half a request of a process that died is not this one's. (Reset
        // here, not in `remove`: a `bye` runs `remove` with this locked.)
        ASSEMBLY[i].lock().reset();
        // SAFETY: ring `init_ring_for(i)` belongs to table index `i` and is
        // read only through RECV[i]. It is empty: `remove` emptied it after
        // the last process there could no longer send. (Emptying it here
        // would lose requests: the process may already have run.)
        let ring = unsafe { chan::own_ring(init_ring_for(i)) };
        RECV[i].bind(ring, default_waitset()).map_err(|_| "binding the client's ring")?;
        RECV[i].register(Closure::new(mark, i)).map_err(|_| "registering the client's ring")?;
        Ok(())
    }

    /// Live clients.
    pub fn clients(&self) -> usize {
        self.clients.iter().filter(|c| c.pid.is_some()).count()
    }

    /// Ends client `i`: its ring stops being watched, its terminal line is
    /// written, the process is stopped and reclaimed, and its chunks go back.
    fn remove(&mut self, sys: &mut System, i: usize) {
        let Some(pid) = self.clients[i].pid else { return };
        self.flush_line(i);
        if let Err(e) = sys.stop(pid) {
            aos::println!("init: reclaiming process {pid:#x}: {e}");
        }
        // Its endpoint to the ring went with it: what is left in the ring
        // is its, and goes now, so the next process there starts clean.
        if let Ok(mut ring) = RECV[i].unbind() {
            while ring.recv().is_some() {}
        }
        let c = &mut self.clients[i];
        for ch in c.chunks.iter() {
            let _ = cap::revoke(ch.cap);
            let _ = sys.free(ch.cap);
        }
        *c = Client::EMPTY;
        self.ended += 1;
    }

    /// Runs the event loop until `done` says so (checked after every
    /// round of events).
    pub fn serve(&mut self, sys: &mut System, mut done: impl FnMut(&mut Server, &mut System) -> bool) {
        while !done(self, sys) {
            if let Err(e) = default_waitset().event_dispatch() {
                aos::println!("init: waiting for events: {e}");
                return;
            }
            let ready = READY.swap(0, Ordering::Relaxed);
            for i in 0..PROCS_MAX {
                if ready & (1 << i) != 0 {
                    self.drain(sys, i);
                }
            }
            if ready & (1 << EVENT_BIT) != 0 {
                self.housekeeping(sys);
            }
        }
    }

    /// Handles every message in client `i`'s ring, then listens again.
    fn drain(&mut self, sys: &mut System, i: usize) {
        while self.clients[i].pid.is_some() {
            match RECV[i].recv() {
                Ok(Some(m)) => self.message(sys, i, &m),
                _ => break,
            }
        }
        if self.clients[i].pid.is_some() {
            let _ = RECV[i].register(Closure::new(mark, i));
        }
    }

    fn housekeeping(&mut self, sys: &mut System) {
        while let Ok(Some(_)) = EVENTS.recv() {}
        if let Some(route) = self.timer_route {
            let _ = aos::irq::IrqDest(route).ack();
        }
        for i in 0..PROCS_MAX {
            if let Some(pid) = self.clients[i].pid
                && sys.state(pid).is_ok_and(|s| s == ProcState::Exited)
            {
                self.remove(sys, i);
            }
        }
        self.serve_getchar();
        aos::time::virtual_timer::arm(self.tick);
        let _ = EVENTS.register(Closure::new(mark, EVENT_BIT as usize));
    }

    /// One message from client `i`.
    fn message(&mut self, sys: &mut System, i: usize, m: &Message) {
        // A capability that came is in the armed slot: take it, arm another.
        let cap = if m.cap { self.recv_slot.take() } else { None };
        if m.cap {
            self.arm_recv_slot(sys);
        }
        let mut asm = ASSEMBLY[i].lock();
        let r = match asm.push(m.words()) {
            Ok(None) => Ok(None),
            Ok(Some(done)) => self.request(sys, i, done, cap, asm.body()).map(Some),
            Err(_) => {
                let call = proto::Header::from_word(m.words().first().copied().unwrap_or(0)).0;
                Err((Kind::from_raw(call.kind).unwrap_or(Kind::Ping), call.call, Refusal::Malformed))
            }
        };
        drop(asm);
        if let Some(c) = cap {
            // Whatever a request did with it, init's copy goes.
            let _ = cap::delete(c);
            let _ = sys.slot_free(c);
        }
        if let Err((kind, call, why)) = r {
            self.reply_error(i, kind, call, why);
        }
    }

    /// A complete request, whose body is `inline` unless it came in a
    /// frame; `Err` carries the refusal to send.
    fn request(
        &mut self,
        sys: &mut System,
        i: usize,
        d: Done,
        cap: Option<CapRef>,
        inline: &[u8],
    ) -> Result<(), (Kind, u16, Refusal)> {
        let refuse = |why| (d.kind, d.call, why);
        if d.error {
            return Err(refuse(Refusal::Malformed));
        }
        match d.frame {
            // A body in a frame: copied out while it is mapped read-only.
            // The client can still write its frame, so init never works on
            // it in place.
            Some(len) => {
                let frame = cap.ok_or(refuse(Refusal::Malformed))?;
                let va = map_body(sys, frame, len).map_err(refuse)?;
                let mut buf = FRAME_BODY.lock();
                for (k, piece) in buf[..len].chunks_mut(8).enumerate() {
                    // SAFETY: `map_body` mapped `len` bytes (whole pages,
                    // so every word here) read-only at `va`, page-aligned;
                    // volatile, as another domain may write them meanwhile.
                    let w = unsafe { (va as *const u64).add(k).read_volatile() };
                    piece.copy_from_slice(&w.to_le_bytes()[..piece.len()]);
                }
                let _ = sys.unmap(va, len as u64);
                self.handle(sys, i, d, &buf[..len]).map_err(refuse)
            }
            None => self.handle(sys, i, d, inline).map_err(refuse),
        }
    }

    fn handle(&mut self, sys: &mut System, i: usize, d: Done, body: &[u8]) -> Outcome {
        let call = d.call;
        match d.kind {
            Kind::Ping => self.reply(i, Kind::Ping, call, &[], None),
            Kind::Number => {
                let v = proto::u64_at(body, 0).filter(|_| body.len() == 8).ok_or(Refusal::Malformed)?;
                grading::m3::rpc_handle_number(v);
                self.reply(i, d.kind, call, &[], None)
            }
            Kind::String => {
                let s = core::str::from_utf8(body).map_err(|_| Refusal::BadRequest)?;
                grading::m3::rpc_handler_string(s);
                self.reply(i, d.kind, call, &[], None)
            }
            Kind::RamCap => {
                let (bytes, align) = match (proto::u64_at(body, 0), proto::u64_at(body, 1)) {
                    (Some(b), Some(a)) if body.len() == 16 => (b, a),
                    _ => return Err(Refusal::Malformed),
                };
                grading::m3::rpc_handler_ram_cap(bytes, align);
                let (piece, got) = self.ram_for(sys, i, bytes, align)?;
                let r = self.reply(i, d.kind, call, &got.to_le_bytes(), Some(piece));
                let _ = cap::delete(piece);
                let _ = sys.slot_free(piece);
                r
            }
            Kind::PutChar => {
                let &[c] = body else { return Err(Refusal::Malformed) };
                grading::m3::rpc_handler_serial_putchar(c);
                self.terminal(i, &[c]);
                self.reply(i, d.kind, call, &[], None)
            }
            Kind::Print => {
                self.terminal(i, body);
                self.reply(i, d.kind, call, &[], None)
            }
            Kind::GetChar => {
                grading::m3::rpc_handler_serial_getchar();
                if self.clients[i].getchar.is_some() {
                    return Err(Refusal::Busy);
                }
                self.clients[i].getchar = Some(call);
                self.serve_getchar();
                Ok(())
            }
            Kind::Spawn => {
                let core = proto::u32_at(body, 0).ok_or(Refusal::Malformed)?;
                let cmdline = core::str::from_utf8(&body[4..]).map_err(|_| Refusal::BadRequest)?;
                grading::m3::rpc_handler_process_spawn(cmdline, core);
                if core != 0 {
                    return Err(Refusal::NoSuchCore);
                }
                let pid = sys.spawn_load_cmdline(cmdline).map_err(|e| {
                    aos::println!("init: spawning {cmdline:?}: {e}");
                    Refusal::SpawnFailed
                })?;
                if let Err(e) = self.add(sys, pid) {
                    aos::println!("init: serving {cmdline:?}: {e}");
                    let _ = sys.stop(pid);
                    return Err(Refusal::SpawnFailed);
                }
                self.reply(i, d.kind, call, &pid.to_le_bytes(), None)
            }
            Kind::GetName => {
                let pid = proto::u32_at(body, 0).filter(|_| body.len() == 4).ok_or(Refusal::Malformed)?;
                grading::m3::rpc_handler_process_get_name(pid);
                let name = sys.name(pid).map_err(|_| Refusal::NoSuchProcess)?;
                let mut buf = [0u8; api::ProcName::MAX];
                let n = name.len().min(buf.len());
                buf[..n].copy_from_slice(&name.as_bytes()[..n]);
                self.reply(i, d.kind, call, &buf[..n], None)
            }
            Kind::GetAllPids => {
                grading::m3::rpc_handler_process_get_all_pids();
                let mut buf = [0u8; 4 * PROCS_MAX];
                let mut n = 0;
                sys.for_each(&mut |p| {
                    buf[4 * n..4 * n + 4].copy_from_slice(&p.pid.to_le_bytes());
                    n += 1;
                });
                self.reply(i, d.kind, call, &buf[..4 * n], None)
            }
            Kind::Connect => {
                let pid = proto::u32_at(body, 0).filter(|_| body.len() == 4).ok_or(Refusal::Malformed)?;
                let theirs = sys.kept(pid).ok().flatten().ok_or(Refusal::NoSuchProcess)?;
                let slot = sys.slot_alloc().map_err(|_| Refusal::OutOfMemory)?;
                let ring = (ring_offset(CHILD_INBOX_RING) as u32, RING_SIZE as u32);
                if cap::mint(theirs, Dest::at(slot), EP_RIGHTS, Some(ring)).is_err() {
                    let _ = sys.slot_free(slot);
                    return Err(Refusal::NoSuchProcess);
                }
                let r = self.reply(i, d.kind, call, &[], Some(slot));
                let _ = cap::delete(slot);
                let _ = sys.slot_free(slot);
                r
            }
            Kind::Bye => {
                self.byes += 1;
                self.remove(sys, i);
                Ok(())
            }
        }
    }

    /// Sends a reply. A client that does not take it (it died, or stopped
    /// reading) costs one failed send, nothing else.
    fn reply(&mut self, i: usize, kind: Kind, call: u16, body: &[u8], cap: Option<CapRef>) -> Outcome {
        let Some(ep) = self.clients[i].ep else { return Ok(()) };
        let n = body.len().div_ceil(proto::FRAG_BYTES).max(1);
        for (k, w) in proto::fragments(kind, call, 0, body).enumerate() {
            let c = if k == 0 { cap } else { None };
            if chan::send(ep, &w, c, k + 1 == n, Patience::Yields(REPLY_PATIENCE)).is_err() {
                break;
            }
        }
        Ok(())
    }

    fn reply_error(&mut self, i: usize, kind: Kind, call: u16, why: Refusal) {
        let Some(ep) = self.clients[i].ep else { return };
        for w in proto::fragments(kind, call, proto::ERROR, &(why as u64).to_le_bytes()) {
            let _ = chan::send(ep, &w, None, true, Patience::Yields(REPLY_PATIENCE));
        }
    }

    /// Terminal output of client `i`: complete lines are written at once,
    /// whole; the rest waits for its newline (or a full line buffer).
    fn terminal(&mut self, i: usize, bytes: &[u8]) {
        for &b in bytes {
            if self.clients[i].line.push(b).is_err() {
                self.flush_line(i);
                let _ = self.clients[i].line.push(b);
            }
            if b == b'\n' {
                self.flush_line(i);
            }
        }
    }

    fn flush_line(&mut self, i: usize) {
        let line = &mut self.clients[i].line;
        if !line.is_empty() {
            // One `Print` call: the kernel writes it without interruption.
            let _ = aos::syscall::print_raw(line.as_ptr() as u64, line.len() as u64);
            line.clear();
        }
    }

    /// Answers waiting `getchar` calls from the console, oldest client
    /// first, one character each.
    fn serve_getchar(&mut self) {
        for i in 0..PROCS_MAX {
            let Some(call) = self.clients[i].getchar else { continue };
            let Some(c) = self.console.as_ref().and_then(|c| c.getc()) else { return };
            self.clients[i].getchar = None;
            let _ = self.reply(i, Kind::GetChar, call, &[c], None);
        }
    }

    /// RAM for client `i` (policy in the module comment and the report):
    /// a piece of one of its chunks, in a new slot of init's.
    fn ram_for(&mut self, sys: &mut System, i: usize, bytes: u64, align: u64) -> Result<(CapRef, u64), Refusal> {
        const PAGE: u64 = 4096;
        let align = if align == 0 { PAGE } else { align };
        if bytes == 0 || !align.is_power_of_two() {
            return Err(Refusal::BadRequest);
        }
        let c = &mut self.clients[i];
        let bytes = bytes.checked_next_multiple_of(PAGE).ok_or(Refusal::QuotaExceeded)?;
        if bytes > c.quota {
            return Err(Refusal::QuotaExceeded);
        }
        let fits = |ch: &Chunk| {
            let start = (ch.base + ch.next).checked_next_multiple_of(align)? - ch.base;
            (start + bytes <= ch.size).then_some(start)
        };
        let (k, start) = match c.chunks.iter().enumerate().find_map(|(k, ch)| fits(ch).map(|s| (k, s))) {
            Some(found) => found,
            None => {
                let size = bytes.max(CHUNK);
                if c.used + size > c.quota {
                    return Err(Refusal::QuotaExceeded);
                }
                if c.chunks.is_full() {
                    return Err(Refusal::Busy);
                }
                let ram = sys.alloc_aligned(size, align.max(PAGE)).map_err(|_| Refusal::OutOfMemory)?;
                let base = cap::identify(ram).map(|id| id.base).map_err(|_| Refusal::OutOfMemory)?;
                let c = &mut self.clients[i];
                c.used += size;
                let _ = c.chunks.push(Chunk { cap: ram, base, size, next: 0 });
                (c.chunks.len() - 1, 0)
            }
        };
        let slot = sys.slot_alloc().map_err(|_| Refusal::OutOfMemory)?;
        let ch = &mut self.clients[i].chunks[k];
        // A piece that is the whole chunk is a copy (a retype to the same
        // size is not allowed); revoking the chunk takes copies too.
        let made = if start == 0 && bytes == ch.size {
            cap::copy(ch.cap, Dest::at(slot))
        } else {
            cap::retype(ch.cap, Dest::at(slot), ObjType::Ram, start, bytes, 1).map(drop)
        };
        if made.is_err() {
            let _ = sys.slot_free(slot);
            return Err(Refusal::OutOfMemory);
        }
        ch.next = start + bytes;
        Ok((slot, bytes))
    }

    /// Sets client `pid`'s memory quota (bytes of chunks).
    pub fn set_quota(&mut self, pid: Pid, bytes: u64) -> bool {
        match self.clients.get_mut(m2_spawn::proc::index_of(pid)) {
            Some(c) if c.pid == Some(pid) => {
                c.quota = bytes;
                true
            }
            _ => false,
        }
    }
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

/// Maps a body of `len` bytes that came in `frame`, read-only.
fn map_body(sys: &mut System, frame: CapRef, len: usize) -> Result<u64, Refusal> {
    let id = cap::identify(frame).map_err(|_| Refusal::Malformed)?;
    if id.objtype != Some(ObjType::Frame) || (len as u64) > id.size || len == 0 {
        return Err(Refusal::Malformed);
    }
    sys.map_frame_attr(frame, len as u64, MapFlags::READ).map_err(|_| Refusal::OutOfMemory)
}

/// The console UART, mapped: which board's it is follows from where its
/// registers are.
fn console(sys: &mut System) -> Option<platform::console::Console> {
    let dev = own(TASKCN_SLOT_DEV);
    let id = cap::identify(dev).ok()?;
    let board = platform::ALL.iter().find(|b| b.console.regs.base & !0xfff == id.base)?;
    let va = sys.map_frame_attr(dev, id.size, MapFlags::READ_WRITE).ok()?;
    // SAFETY: the console's registers were just mapped at `va` (plus the
    // offset in their page), and only this console reads them: the kernel
    // only writes the transmit register, which reading leaves alone.
    Some(unsafe {
        platform::console::Console::new(board.console.kind, (va + (board.console.regs.base & 0xfff)) as usize)
    })
}
