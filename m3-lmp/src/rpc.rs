//! The RPC client (book ch. 5.10.4, Listing 5.1): `api::AosRpc` over the
//! channel spawn gave this domain to init.
//!
//! Owns the client end: init's endpoint (TASKCN_SLOT_INITEP), the ring
//! init replies into, the call counter and the reply assembly. One call is
//! outstanding at a time: a call holds the channel's mutex from request to
//! reply, so the threads of a domain take turns. The four channels of the
//! book are this one channel (init serves all four services).

use aos::cap::CapRef;
use aos::dispatcher::Dispatcher;
use aos::kpi::ErrorCode;
use aos::kpi::cspace::{ROOTCN_SLOT_TASKCN, TASKCN_SLOT_DISPATCHER, TASKCN_SLOT_INITEP};
use aos::lmp::Endpoint;
use aos::waitset::WaitsetError;
use aos::waitset::rt::{LmpRecv, default_waitset};
use api::{MapFlags, Pid, ProcName};

use crate::chan::{self, CHILD_INIT_RING, Patience};
use crate::mem::{self, MemError};
use crate::proto::{self, Assembly, FRAME_THRESHOLD, Kind, ProtoError, Refusal};

/// Longest reply body a client takes (a PID list of a full table).
pub const REPLY_MAX: usize = 256;

/// Why a call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcError {
    /// The channel is not set up ([`init`] was not called, or failed).
    NotConnected,
    /// Sending was refused by the kernel (the peer is gone, ...).
    Send(ErrorCode),
    Wait(WaitsetError),
    /// The server answered with a refusal.
    Refused(Refusal),
    /// A reply that broke the protocol.
    Protocol(ProtoError),
    /// A reply of the wrong shape for its request.
    BadReply,
    /// Getting a frame for a long string failed.
    Memory,
    /// A call made from inside a call on the same thread.
    Busy,
}

impl core::fmt::Display for RpcError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RpcError::NotConnected => f.write_str("no channel to init"),
            RpcError::Send(e) => write!(f, "sending: {e}"),
            RpcError::Wait(e) => write!(f, "waiting for the reply: {e}"),
            RpcError::Refused(r) => write!(f, "refused: {r}"),
            RpcError::Protocol(e) => write!(f, "reply: {e}"),
            RpcError::BadReply => f.write_str("a reply of the wrong shape"),
            RpcError::Memory => f.write_str("no memory for the message"),
            RpcError::Busy => f.write_str("a call from inside a call"),
        }
    }
}

/// How a request's body travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Fragments up to [`FRAME_THRESHOLD`] bytes, a frame above.
    Auto,
    /// Fragments (at most [`proto::INLINE_MAX`] bytes: what the server takes).
    Fragments,
    Frame,
}

/// A reply: its body (inline replies only) and whether a capability came.
pub struct Reply {
    pub body: [u8; REPLY_MAX],
    pub len: usize,
    pub cap: bool,
}

impl Reply {
    pub fn body(&self) -> &[u8] {
        &self.body[..self.len]
    }
}

struct State {
    ep: Endpoint,
    call: u16,
    asm: Assembly<REPLY_MAX>,
}

/// A channel to init.
pub struct Rpc {
    state: aos::thread::Mutex<Option<State>>,
    recv: &'static LmpRecv,
}

static INIT_RECV: LmpRecv = LmpRecv::new();
static INIT: Rpc = Rpc { state: aos::thread::Mutex::new(None), recv: &INIT_RECV };

/// Connects the init channel: init's endpoint from the well-known slot,
/// the reply ring bound in the default waitset. Once, at start-up.
pub fn init() -> Result<(), RpcError> {
    // SAFETY: ring CHILD_INIT_RING is the init channel's, received only
    // through `INIT.recv`.
    let ring = unsafe { chan::own_ring(CHILD_INIT_RING) };
    INIT.recv.bind(ring, default_waitset()).map_err(RpcError::Wait)?;
    let ep = Endpoint(aos::cap::CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_INITEP as u8));
    *INIT.state.lock().map_err(|_| RpcError::Busy)? = Some(State { ep, call: 0, asm: Assembly::new() });
    Ok(())
}

/// `aos_rpc_get_init_channel`.
pub fn init_channel() -> &'static Rpc {
    &INIT
}

/// `aos_rpc_get_memory_channel`: init serves memory.
pub fn memory_channel() -> &'static Rpc {
    &INIT
}

/// `aos_rpc_get_serial_channel`: init serves the terminal.
pub fn serial_channel() -> &'static Rpc {
    &INIT
}

/// `aos_rpc_get_process_channel`: init serves processes.
pub fn process_channel() -> &'static Rpc {
    &INIT
}

/// The book's four channels.
pub fn channels() -> api::RpcChannels<'static, Rpc> {
    api::RpcChannels { init: &INIT, memory: &INIT, serial: &INIT, process: &INIT }
}

fn own_dispatcher() -> Dispatcher {
    Dispatcher(CapRef::slot(ROOTCN_SLOT_TASKCN as u32, TASKCN_SLOT_DISPATCHER as u8))
}

impl Rpc {
    /// One call: sends `body` as a `kind` request (inline, or in a frame
    /// above the threshold) and waits for the reply. A capability in the
    /// reply lands in `recv_slot`.
    pub fn call(&self, kind: Kind, body: &[u8], recv_slot: Option<CapRef>) -> Result<Reply, RpcError> {
        self.call_via(kind, body, recv_slot, Via::Auto)
    }

    /// [`Rpc::call`] with the body sent as `via` says (the benchmarks
    /// compare the two ways at each size).
    pub fn call_via(&self, kind: Kind, body: &[u8], recv_slot: Option<CapRef>, via: Via) -> Result<Reply, RpcError> {
        let framed = match via {
            Via::Auto => body.len() > FRAME_THRESHOLD,
            Via::Fragments => false,
            Via::Frame => true,
        };
        if (!framed && body.len() > proto::INLINE_MAX) || (framed && body.is_empty()) {
            return Err(RpcError::Refused(Refusal::BadRequest));
        }
        if !framed {
            return self.call_locked(kind, body, None, recv_slot);
        }
        // The transfer frame is taken before the channel: growing it gets
        // memory, which may call through the channel itself.
        let mut t = TRANSFER.lock().map_err(|_| RpcError::Busy)?;
        let frame = t.fill(body)?;
        self.call_locked(kind, body, Some(frame), recv_slot)
    }

    fn call_locked(
        &self,
        kind: Kind,
        body: &[u8],
        frame: Option<CapRef>,
        recv_slot: Option<CapRef>,
    ) -> Result<Reply, RpcError> {
        let mut g = self.state.lock().map_err(|_| RpcError::Busy)?;
        let st = g.as_mut().ok_or(RpcError::NotConnected)?;
        st.call = st.call.wrapping_add(1);
        let call = st.call;
        if let Some(slot) = recv_slot {
            own_dispatcher().set_recv_slot(Some(slot)).map_err(RpcError::Send)?;
        }
        let sent = match frame {
            Some(f) => {
                chan::send(st.ep, &proto::frame_message(kind, call, body.len()), Some(f), true, Patience::Forever)
            }
            None => {
                let n = body.len().div_ceil(proto::FRAG_BYTES).max(1);
                proto::fragments(kind, call, 0, body)
                    .enumerate()
                    .try_for_each(|(i, w)| chan::send(st.ep, &w, None, i + 1 == n, Patience::Forever))
            }
        };
        let r = sent.map_err(RpcError::Send).and_then(|()| self.await_reply(st, kind, call));
        if recv_slot.is_some() && !r.as_ref().is_ok_and(|rep| rep.cap) {
            let _ = own_dispatcher().set_recv_slot(None);
        }
        r
    }

    /// For conformance tests: sends `words` exactly as given (with `cap`,
    /// if any) and returns the next message init sends back, whatever it
    /// is.
    pub fn raw_exchange(&self, words: &[u64], cap: Option<CapRef>) -> Result<aos::lmp::Message, RpcError> {
        let g = self.state.lock().map_err(|_| RpcError::Busy)?;
        let st = g.as_ref().ok_or(RpcError::NotConnected)?;
        chan::send(st.ep, &proto::Wire::from_words(words), cap, true, Patience::Forever).map_err(RpcError::Send)?;
        chan::wait_message(self.recv, default_waitset()).map_err(RpcError::Wait)
    }

    /// Sends a one-way message (`bye`): no reply comes.
    pub fn notify(&self, kind: Kind, body: &[u8]) -> Result<(), RpcError> {
        let mut g = self.state.lock().map_err(|_| RpcError::Busy)?;
        let st = g.as_mut().ok_or(RpcError::NotConnected)?;
        st.call = st.call.wrapping_add(1);
        let w = proto::fragments(kind, st.call, 0, body).next().ok_or(RpcError::BadReply)?;
        chan::send(st.ep, &w, None, true, Patience::Forever).map_err(RpcError::Send)
    }

    fn await_reply(&self, st: &mut State, kind: Kind, call: u16) -> Result<Reply, RpcError> {
        loop {
            let m = chan::wait_message(self.recv, default_waitset()).map_err(RpcError::Wait)?;
            let done = match st.asm.push(m.words()) {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => return Err(RpcError::Protocol(e)),
            };
            // A reply to an older call (one abandoned on an error) is dropped.
            if done.call != call {
                continue;
            }
            if done.kind != kind || done.frame.is_some() {
                return Err(RpcError::BadReply);
            }
            let body = st.asm.body();
            if done.error {
                let r = proto::u64_at(body, 0).and_then(Refusal::from_raw).ok_or(RpcError::BadReply)?;
                return Err(RpcError::Refused(r));
            }
            let mut reply = Reply { body: [0; REPLY_MAX], len: body.len(), cap: m.cap };
            reply.body[..body.len()].copy_from_slice(body);
            return Ok(reply);
        }
    }

    /// `get_ram_cap` into a slot the caller provides (the memory system's
    /// own refills use this: it holds its allocator while it asks).
    pub fn get_ram_into(&self, bytes: u64, align: u64, slot: CapRef) -> Result<(CapRef, u64), RpcError> {
        let mut body = [0u8; 16];
        body[..8].copy_from_slice(&bytes.to_le_bytes());
        body[8..].copy_from_slice(&align.to_le_bytes());
        let r = self.call(Kind::RamCap, &body, Some(slot))?;
        match (r.cap, proto::u64_at(r.body(), 0)) {
            (true, Some(got)) => Ok((slot, got)),
            _ => Err(RpcError::BadReply),
        }
    }

    /// An endpoint to process `pid`'s inbox, in a new slot: messages sent
    /// on it arrive in that process's [`inbox_recv`]. It stops working
    /// when that process ends.
    pub fn connect(&self, pid: Pid) -> Result<Endpoint, RpcError> {
        in_new_slot(|slot| match self.call(Kind::Connect, &pid.to_le_bytes(), Some(slot))? {
            r if r.cap => Ok(Endpoint(slot)),
            _ => Err(RpcError::BadReply),
        })
    }

    /// The null RPC: an empty request and an empty reply.
    pub fn ping(&self) -> Result<(), RpcError> {
        self.call(Kind::Ping, &[], None).map(drop)
    }

    /// Terminal output: init writes whole lines (see the report).
    pub fn print(&self, s: &[u8]) -> Result<(), RpcError> {
        self.call(Kind::Print, s, None).map(drop)
    }
}

static INBOX: LmpRecv = LmpRecv::new();
static INBOX_WAITSET: aos::waitset::rt::Waitset = aos::waitset::rt::Waitset::new();

/// The next message another domain sent to this one's inbox (see
/// [`Rpc::connect`]), waiting for it. Its words are the sender's: nothing
/// in them is vouched for. One thread receives at a time.
pub fn inbox_recv() -> Result<aos::lmp::Message, RpcError> {
    if INBOX.source().is_err() {
        // SAFETY: the inbox ring is received only through INBOX.
        let ring = unsafe { chan::own_ring(crate::chan::CHILD_INBOX_RING) };
        INBOX.bind(ring, &INBOX_WAITSET).map_err(RpcError::Wait)?;
    }
    chan::wait_message(&INBOX, &INBOX_WAITSET).map_err(RpcError::Wait)
}

/// Sends one message (at most 14 words) to an inbox, waiting while it is
/// full.
pub fn inbox_send(ep: Endpoint, words: &[u64]) -> Result<(), RpcError> {
    chan::send(ep, &proto::Wire::from_words(words), None, true, Patience::Forever).map_err(RpcError::Send)
}

/// The frame long bodies travel in: one per domain, kept mapped and
/// reused, grown (never shrunk) to the longest body sent so far. A new
/// frame per call would cost an allocation and a mapping each time, and
/// its memory would count against the quota until the domain ends.
struct Transfer {
    frame: Option<CapRef>,
    va: u64,
    size: u64,
}

static TRANSFER: aos::thread::Mutex<Transfer> = aos::thread::Mutex::new(Transfer { frame: None, va: 0, size: 0 });

impl Transfer {
    /// Copies `body` into the frame, growing it first if needed; the frame.
    fn fill(&mut self, body: &[u8]) -> Result<CapRef, RpcError> {
        let len = body.len() as u64;
        if self.frame.is_none() || self.size < len {
            if let Some(old) = self.frame.take() {
                let _ = mem::unmap(self.va, self.size);
                let _ = mem::delete(old);
            }
            let size = len.next_power_of_two().max(4096);
            let (frame, _) = mem::frame_alloc(size).map_err(|_| RpcError::Memory)?;
            match mem::map_frame(frame, size, MapFlags::READ_WRITE) {
                Ok(va) => (self.frame, self.va, self.size) = (Some(frame), va, size),
                Err(_) => {
                    let _ = mem::delete(frame);
                    return Err(RpcError::Memory);
                }
            }
        }
        // SAFETY: `size` bytes at `va` map the transfer frame read-write,
        // for this domain's life; this mutex makes this the only writer.
        unsafe { core::slice::from_raw_parts_mut(self.va as *mut u8, body.len()) }.copy_from_slice(body);
        self.frame.ok_or(RpcError::Memory)
    }
}

/// Runs `f` with a new slot of the domain's, which goes back if `f` fails.
fn in_new_slot<T>(f: impl FnOnce(CapRef) -> Result<T, RpcError>) -> Result<T, RpcError> {
    let slot = mem::slot_alloc()?;
    f(slot).inspect_err(|_| {
        let _ = mem::slot_free(slot);
    })
}

impl From<MemError> for RpcError {
    fn from(_: MemError) -> Self {
        RpcError::Memory
    }
}

impl api::AosRpc for Rpc {
    type Error = RpcError;

    fn send_number(&self, val: u64) -> Result<(), RpcError> {
        self.call(Kind::Number, &val.to_le_bytes(), None).map(drop)
    }

    fn send_string(&self, s: &str) -> Result<(), RpcError> {
        self.call(Kind::String, s.as_bytes(), None).map(drop)
    }

    fn get_ram_cap(&self, bytes: u64, align: u64) -> Result<(CapRef, u64), RpcError> {
        in_new_slot(|slot| self.get_ram_into(bytes, align, slot))
    }

    fn serial_putchar(&self, c: u8) -> Result<(), RpcError> {
        self.call(Kind::PutChar, &[c], None).map(drop)
    }

    fn serial_getchar(&self) -> Result<u8, RpcError> {
        let r = self.call(Kind::GetChar, &[], None)?;
        r.body().first().copied().ok_or(RpcError::BadReply)
    }

    fn process_spawn(&self, cmdline: &str, core: u32) -> Result<Pid, RpcError> {
        // The longest command line an arguments page holds, and its core.
        let mut body = [0u8; 4 + aos::kpi::BASE_PAGE_SIZE];
        let n = 4 + cmdline.len();
        if n > body.len() {
            return Err(RpcError::Refused(Refusal::BadRequest));
        }
        body[..4].copy_from_slice(&core.to_le_bytes());
        body[4..n].copy_from_slice(cmdline.as_bytes());
        let r = self.call(Kind::Spawn, &body[..n], None)?;
        proto::u32_at(r.body(), 0).ok_or(RpcError::BadReply)
    }

    fn process_get_name(&self, pid: Pid) -> Result<ProcName, RpcError> {
        let r = self.call(Kind::GetName, &pid.to_le_bytes(), None)?;
        let s = core::str::from_utf8(r.body()).map_err(|_| RpcError::BadReply)?;
        Ok(ProcName::new(s))
    }

    fn process_get_all_pids(&self, pids: &mut [Pid]) -> Result<usize, RpcError> {
        let r = self.call(Kind::GetAllPids, &[], None)?;
        let n = r.len / 4;
        for (i, p) in pids.iter_mut().take(n).enumerate() {
            *p = proto::u32_at(r.body(), i).ok_or(RpcError::BadReply)?;
        }
        Ok(n)
    }
}
