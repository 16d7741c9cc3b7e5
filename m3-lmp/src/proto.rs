//! The wire protocol of the RPC layer (report: m3-lmp.md, "The protocol"),
//! as pure logic: framing a message body into LMP messages and putting the
//! pieces together again. No endpoint, ring or capability is touched here;
//! `chan` moves the words.
//!
//! One LMP message is one *frame* of the protocol: word 0 is a [`Header`],
//! words 1..=13 carry up to [`FRAG_BYTES`] bytes of body. A body longer than
//! that is sent as fragments, `FIRST` on the first and `LAST` on the last
//! (a short body is one message with both). A body longer than
//! [`FRAME_THRESHOLD`] travels in a frame capability instead: one message
//! flagged `FRAME` with the body's length in word 1.

/// Payload words after the header.
pub const PAYLOAD_WORDS: usize = aos::lmp::LMP_WORDS - 1;
/// Body bytes one message carries.
pub const FRAG_BYTES: usize = PAYLOAD_WORDS * 8;
/// Bodies longer than this travel in a frame: three fragments. Measured
/// (report/m3-lmp.md): a fragment beyond the first costs about 3 600
/// instructions, a body in the (reused) transfer frame about 15 000 plus a
/// few per byte; at four fragments the frame is cheaper.
pub const FRAME_THRESHOLD: usize = 3 * FRAG_BYTES;
/// The longest body a server assembles from fragments. Above
/// [`FRAME_THRESHOLD`] clients send frames; the room above it lets the
/// benchmarks measure fragments past the threshold.
pub const INLINE_MAX: usize = 2048;
const _: () = assert!(FRAME_THRESHOLD <= INLINE_MAX);
/// The longest body a frame may carry: a frame a receiver maps has at
/// most this many bytes.
pub const BODY_MAX: usize = 1 << 20;

/// What a message asks for (requests) or answers (replies carry the
/// request's kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Empty body both ways: the null RPC of the benchmarks.
    Ping = 1,
    Number = 2,
    String = 3,
    RamCap = 4,
    PutChar = 5,
    GetChar = 6,
    /// Terminal output: whole lines.
    Print = 7,
    Spawn = 8,
    GetName = 9,
    GetAllPids = 10,
    /// The process is exiting: no reply.
    Bye = 11,
    /// An endpoint to another process's inbox ring, in the reply's
    /// capability.
    Connect = 12,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Ping,
        Kind::Number,
        Kind::String,
        Kind::RamCap,
        Kind::PutChar,
        Kind::GetChar,
        Kind::Print,
        Kind::Spawn,
        Kind::GetName,
        Kind::GetAllPids,
        Kind::Bye,
        Kind::Connect,
    ];

    pub fn from_raw(raw: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == raw)
    }
}

/// Header flags.
pub const FIRST: u8 = 1;
pub const LAST: u8 = 2;
/// A reply that refuses: the body is a [`Refusal`] code.
pub const ERROR: u8 = 4;
/// The body is in the message's frame capability; word 1 is its length.
pub const FRAME: u8 = 8;
const FLAGS: u8 = FIRST | LAST | ERROR | FRAME;

/// Word 0 of every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub flags: u8,
    /// Matches a reply to its request.
    pub call: u16,
    /// Body bytes in this message.
    pub len: u8,
}

impl Header {
    pub const fn to_word(self) -> u64 {
        self.kind as u64 | (self.flags as u64) << 8 | (self.call as u64) << 16 | (self.len as u64) << 32
    }

    /// Any word decodes; [`Assembly::push`] judges the result.
    pub const fn from_word(w: u64) -> (Header, bool) {
        let h = Header { kind: w as u8, flags: (w >> 8) as u8, call: (w >> 16) as u16, len: (w >> 32) as u8 };
        // Bits 40-63 are reserved: a header using them is malformed.
        (h, w >> 40 == 0)
    }
}

/// Why a server refused a request: the body of an `ERROR` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Refusal {
    /// The messages did not follow the protocol.
    Malformed = 1,
    /// A kind this server does not serve.
    Unsupported = 2,
    /// The request's arguments are not acceptable (zero bytes, an
    /// alignment that is not a power of two, a bad command line).
    BadRequest = 3,
    /// The caller's memory quota does not have room for this.
    QuotaExceeded = 4,
    OutOfMemory = 5,
    NoSuchProcess = 6,
    /// Spawn failed (no such program, a malformed one, a full table).
    SpawnFailed = 7,
    /// No such core.
    NoSuchCore = 8,
    /// Too many records or requests outstanding.
    Busy = 9,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Refusal::Malformed,
        Refusal::Unsupported,
        Refusal::BadRequest,
        Refusal::QuotaExceeded,
        Refusal::OutOfMemory,
        Refusal::NoSuchProcess,
        Refusal::SpawnFailed,
        Refusal::NoSuchCore,
        Refusal::Busy,
    ];

    pub fn from_raw(raw: u64) -> Option<Refusal> {
        Refusal::ALL.into_iter().find(|r| *r as u64 == raw)
    }
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Refusal::Malformed => "the request broke the protocol",
            Refusal::Unsupported => "the server does not serve that request",
            Refusal::BadRequest => "the request's arguments are not acceptable",
            Refusal::QuotaExceeded => "the memory quota is used up",
            Refusal::OutOfMemory => "out of memory",
            Refusal::NoSuchProcess => "no such process",
            Refusal::SpawnFailed => "the program could not be spawned",
            Refusal::NoSuchCore => "no such core",
            Refusal::Busy => "the server has no room for this request now",
        })
    }
}

/// Why messages could not be put together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoError {
    /// Reserved header bits set, an unknown flag, or a kind outside
    /// [`Kind`].
    BadHeader,
    /// A length longer than the message's words, or than a fragment holds.
    BadLength,
    /// A fragment without `FIRST` before it, or a `FIRST` in the middle of
    /// a body, or one with another call number or kind.
    OutOfOrder,
    /// The body is longer than the receiver takes.
    TooLong,
}

impl core::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ProtoError::BadHeader => "a message with a malformed header",
            ProtoError::BadLength => "a message whose length does not fit its words",
            ProtoError::OutOfOrder => "fragments out of order",
            ProtoError::TooLong => "a body longer than the receiver takes",
        })
    }
}

/// One message to send: its words (header first) and how many are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wire {
    pub words: [u64; aos::lmp::LMP_WORDS],
    pub len: usize,
}

impl Wire {
    /// A message of the given words, as they are (at most 14 are kept).
    pub fn from_words(words: &[u64]) -> Wire {
        let mut w = Wire { words: [0; aos::lmp::LMP_WORDS], len: words.len().min(aos::lmp::LMP_WORDS) };
        w.words[..w.len].copy_from_slice(&words[..w.len]);
        w
    }

    pub fn words(&self) -> &[u64] {
        &self.words[..self.len]
    }
}

/// The messages carrying `body` inline (`flags` may add `ERROR`): at
/// least one, even for an empty body.
pub fn fragments(kind: Kind, call: u16, flags: u8, body: &[u8]) -> impl Iterator<Item = Wire> + '_ {
    let n = body.len().div_ceil(FRAG_BYTES).max(1);
    (0..n).map(move |i| {
        let piece = &body[(i * FRAG_BYTES).min(body.len())..((i + 1) * FRAG_BYTES).min(body.len())];
        let mut f = flags & ERROR;
        if i == 0 {
            f |= FIRST;
        }
        if i + 1 == n {
            f |= LAST;
        }
        let mut words = [0u64; aos::lmp::LMP_WORDS];
        words[0] = Header { kind: kind as u8, flags: f, call, len: piece.len() as u8 }.to_word();
        for (w, chunk) in words[1..].iter_mut().zip(piece.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        Wire { words, len: 1 + piece.len().div_ceil(8) }
    })
}

/// The one message announcing a body of `len` bytes in a frame.
pub fn frame_message(kind: Kind, call: u16, len: usize) -> Wire {
    let mut words = [0u64; aos::lmp::LMP_WORDS];
    words[0] = Header { kind: kind as u8, flags: FIRST | LAST | FRAME, call, len: 0 }.to_word();
    words[1] = len as u64;
    Wire { words, len: 2 }
}

/// What a completed [`Assembly`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    pub kind: Kind,
    pub call: u16,
    pub error: bool,
    /// The body is in a frame of this many bytes (the capability that came
    /// with the message); otherwise it is [`Assembly::body`].
    pub frame: Option<usize>,
}

/// Puts fragments together into a body of at most `N` bytes.
pub struct Assembly<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// The body being assembled: its kind, call and error flag.
    open: Option<(Kind, u16, bool)>,
}

impl<const N: usize> Assembly<N> {
    pub const fn new() -> Self {
        Assembly { buf: [0; N], len: 0, open: None }
    }

    /// Drops a half-assembled body (its sender is gone).
    pub fn reset(&mut self) {
        self.len = 0;
        self.open = None;
    }

    /// Whether a body is half assembled.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The body of the last completed message.
    pub fn body(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Takes one message; `Some` when a body is complete. An error drops
    /// what was being assembled, so the next `FIRST` starts afresh.
    pub fn push(&mut self, words: &[u64]) -> Result<Option<Done>, ProtoError> {
        let r = self.push_inner(words);
        if r.is_err() {
            self.reset();
        }
        r
    }

    fn push_inner(&mut self, words: &[u64]) -> Result<Option<Done>, ProtoError> {
        let (&w0, payload) = words.split_first().ok_or(ProtoError::BadHeader)?;
        let (h, clean) = Header::from_word(w0);
        let kind = Kind::from_raw(h.kind).ok_or(ProtoError::BadHeader)?;
        if !clean || h.flags & !FLAGS != 0 {
            return Err(ProtoError::BadHeader);
        }
        let error = h.flags & ERROR != 0;
        if h.flags & FRAME != 0 {
            if h.flags & (FIRST | LAST) != FIRST | LAST || self.open.is_some() || error {
                return Err(ProtoError::OutOfOrder);
            }
            let len = *payload.first().ok_or(ProtoError::BadLength)?;
            if len as usize > BODY_MAX || h.len != 0 {
                return Err(ProtoError::TooLong);
            }
            self.len = 0;
            return Ok(Some(Done { kind, call: h.call, error, frame: Some(len as usize) }));
        }
        let n = usize::from(h.len);
        if n > FRAG_BYTES || n.div_ceil(8) > payload.len() {
            return Err(ProtoError::BadLength);
        }
        match (h.flags & FIRST != 0, self.open) {
            (true, None) => {
                self.open = Some((kind, h.call, error));
                self.len = 0;
            }
            (false, Some(open)) if open == (kind, h.call, error) => {}
            _ => return Err(ProtoError::OutOfOrder),
        }
        // Not the last: a full fragment. Anything shorter is a sender bug.
        if h.flags & LAST == 0 && n != FRAG_BYTES {
            return Err(ProtoError::BadLength);
        }
        if self.len + n > N {
            return Err(ProtoError::TooLong);
        }
        for (i, w) in payload[..n.div_ceil(8)].iter().enumerate() {
            let b = w.to_le_bytes();
            let take = (n - i * 8).min(8);
            self.buf[self.len + i * 8..self.len + i * 8 + take].copy_from_slice(&b[..take]);
        }
        self.len += n;
        if h.flags & LAST == 0 {
            return Ok(None);
        }
        self.open = None;
        Ok(Some(Done { kind, call: h.call, error, frame: None }))
    }
}

impl<const N: usize> Default for Assembly<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Little-endian words in a body.
pub fn u64_at(body: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(body.get(i * 8..i * 8 + 8)?.try_into().ok()?))
}

pub fn u32_at(body: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(body.get(i * 4..i * 4 + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn send_all<const N: usize>(a: &mut Assembly<N>, kind: Kind, call: u16, body: &[u8]) -> Result<Done, ProtoError> {
        let wires: Vec<Wire> = fragments(kind, call, 0, body).collect();
        let (last, init) = wires.split_last().unwrap();
        for w in init {
            assert_eq!(a.push(w.words())?, None, "only the last completes");
        }
        Ok(a.push(last.words())?.expect("the last completes"))
    }

    #[test]
    fn empty_and_boundary_bodies_round_trip() {
        let mut a = Assembly::<4096>::new();
        for len in [0, 1, 7, 8, 9, FRAG_BYTES - 1, FRAG_BYTES, FRAG_BYTES + 1, 3 * FRAG_BYTES, 4096] {
            let body: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let n = fragments(Kind::String, 9, 0, &body).count();
            assert_eq!(n, len.div_ceil(FRAG_BYTES).max(1), "{len} bytes");
            let d = send_all(&mut a, Kind::String, 9, &body).unwrap();
            assert_eq!((d.kind, d.call, d.error, d.frame), (Kind::String, 9, false, None));
            assert_eq!(a.body(), &body[..], "{len} bytes");
        }
    }

    #[test]
    fn a_body_too_long_for_the_receiver_is_refused_and_forgotten() {
        let mut a = Assembly::<200>::new();
        let body = [5u8; 300];
        assert_eq!(send_all(&mut a, Kind::Print, 1, &body), Err(ProtoError::TooLong));
        assert!(!a.is_open());
        assert_eq!(send_all(&mut a, Kind::Print, 2, b"after").unwrap().call, 2);
        assert_eq!(a.body(), b"after");
    }

    #[test]
    fn malformed_messages_are_refused() {
        let mut a = Assembly::<4096>::new();
        let ok = fragments(Kind::Number, 1, 0, &[1; 8]).next().unwrap();
        let with = |f: fn(&mut Wire)| {
            let mut w = ok;
            f(&mut w);
            w
        };
        let cases: [(Wire, ProtoError); 6] = [
            (with(|w| w.words[0] |= 1 << 50), ProtoError::BadHeader),
            (with(|w| w.words[0] = (w.words[0] & !0xff) | 200), ProtoError::BadHeader),
            (with(|w| w.words[0] |= 0x80 << 8), ProtoError::BadHeader),
            (with(|w| w.words[0] = (w.words[0] & !(0xff << 32)) | (105 << 32)), ProtoError::BadLength),
            (with(|w| w.len = 1), ProtoError::BadLength),
            (with(|w| w.words[0] &= !(u64::from(FIRST) << 8)), ProtoError::OutOfOrder),
        ];
        for (w, want) in cases {
            assert_eq!(a.push(w.words()), Err(want), "{:#x}", w.words[0]);
        }
        assert_eq!(a.push(&[]), Err(ProtoError::BadHeader));
        assert!(a.push(ok.words()).unwrap().is_some(), "a good message after bad ones");
    }

    #[test]
    fn a_first_fragment_in_the_middle_of_a_body_is_out_of_order() {
        let mut a = Assembly::<4096>::new();
        let body = [1u8; 3 * FRAG_BYTES];
        let mut f = fragments(Kind::String, 4, 0, &body);
        assert_eq!(a.push(f.next().unwrap().words()), Ok(None));
        let other = fragments(Kind::String, 5, 0, b"x").next().unwrap();
        assert_eq!(a.push(other.words()), Err(ProtoError::OutOfOrder));
        assert_eq!(a.push(f.next().unwrap().words()), Err(ProtoError::OutOfOrder), "the rest is dropped");
    }

    #[test]
    fn frame_messages_carry_only_a_length() {
        let mut a = Assembly::<16>::new();
        let w = frame_message(Kind::String, 3, 65536);
        assert_eq!(a.push(w.words()), Ok(Some(Done { kind: Kind::String, call: 3, error: false, frame: Some(65536) })));
        let huge = frame_message(Kind::String, 3, BODY_MAX + 1);
        assert_eq!(a.push(huge.words()), Err(ProtoError::TooLong));
    }

    #[test]
    fn error_replies_keep_their_flag() {
        let mut a = Assembly::<64>::new();
        let w: Vec<Wire> = fragments(Kind::RamCap, 7, ERROR, &(Refusal::QuotaExceeded as u64).to_le_bytes()).collect();
        let d = a.push(w[0].words()).unwrap().unwrap();
        assert!(d.error);
        assert_eq!(u64_at(a.body(), 0).and_then(Refusal::from_raw), Some(Refusal::QuotaExceeded));
    }

    proptest! {
        #[test]
        fn any_body_round_trips(body in proptest::collection::vec(any::<u8>(), 0..1500), call: u16, k in 0usize..12) {
            let mut a = Assembly::<1500>::new();
            let d = send_all(&mut a, Kind::ALL[k], call, &body).unwrap();
            prop_assert_eq!((d.kind, d.call), (Kind::ALL[k], call));
            prop_assert_eq!(a.body(), &body[..]);
        }

        #[test]
        fn any_words_are_refused_or_accepted_without_panic(words in proptest::collection::vec(any::<u64>(), 0..15)) {
            let mut a = Assembly::<256>::new();
            let _ = a.push(&words);
            prop_assert!(a.body().len() <= 256);
        }
    }
}
