//! Raw LMP (book ch. 5.3): sending on an endpoint capability, and reading
//! the receive ring the kernel fills in this dispatcher's frame. Layout and
//! registers in `kpi::lmp`. Channels, marshalling and waitset integration
//! are built on top of this (M3).
//!
//! Owns only the send registers and the receiver's `head` index; the kernel
//! owns `tail` and the slots it has not yet handed over.

use kpi::ErrorCode;
use kpi::invocation::CapRef;
pub use kpi::lmp::{LMP_WORDS, SEND_CAP, SEND_DEFAULT, SEND_SYNC, SEND_YIELD};
use kpi::lmp::{SlotHeader, ring_slots, send_word, slot_offset};

/// An LMP endpoint capability: the sending side of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint(pub CapRef);

impl Endpoint {
    /// Sends `words` (at most [`LMP_WORDS`]); `flags` may hold
    /// [`SEND_YIELD`] and [`SEND_SYNC`] ([`SEND_DEFAULT`]: both).
    /// `LmpBufferFull` is transient: nothing was sent.
    #[inline]
    pub fn send(self, words: &[u64], flags: u64) -> Result<(), ErrorCode> {
        self.send_raw(words, flags & !SEND_CAP, 0)
    }

    /// Sends `words` and a copy of `cap` into the receiver's receive slot.
    /// If the receiver has no empty slot set (`LmpNoRecvSlot`), nothing is
    /// sent and `cap` stays where it is.
    pub fn send_cap(self, words: &[u64], cap: CapRef, flags: u64) -> Result<(), ErrorCode> {
        self.send_raw(words, flags | SEND_CAP, cap.to_raw())
    }

    #[inline]
    fn send_raw(self, words: &[u64], flags: u64, cap: u64) -> Result<(), ErrorCode> {
        if words.len() > LMP_WORDS {
            return Err(ErrorCode::TooLong);
        }
        let mut w = [0u64; LMP_WORDS];
        w[..words.len()].copy_from_slice(words);
        let cmd = send_word(words.len(), flags);
        #[cfg(target_os = "none")]
        {
            let x0: u64;
            // SAFETY: `svc #0` enters the kernel, which for Invoke changes
            // only x0-x3 and writes only the receiver's frame and CSpace.
            unsafe {
                core::arch::asm!(
                    "svc #0",
                    inout("x0") kpi::syscall::Syscall::Invoke as u64 => x0,
                    inout("x1") self.0.to_raw() => _,
                    inout("x2") cmd => _,
                    inout("x3") cap => _,
                    in("x4") w[0], in("x5") w[1], in("x6") w[2], in("x7") w[3],
                    in("x8") w[4], in("x9") w[5], in("x10") w[6], in("x11") w[7],
                    in("x12") w[8], in("x13") w[9], in("x14") w[10], in("x15") w[11],
                    in("x16") w[12], in("x17") w[13],
                    options(nostack)
                );
            }
            match x0 {
                0 => Ok(()),
                e => Err(crate::syscall::error(e)),
            }
        }
        #[cfg(not(target_os = "none"))]
        {
            let _ = (cmd, cap, w);
            Err(ErrorCode::InvalidSyscall)
        }
    }
}

/// A received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Message {
    pub words: [u64; LMP_WORDS],
    pub len: usize,
    /// A capability came with it, into the receive slot that was set.
    pub cap: bool,
}

impl Message {
    pub fn words(&self) -> &[u64] {
        &self.words[..self.len]
    }
}

/// A receive ring in this dispatcher's frame: what an endpoint minted
/// with (`offset`, `size`) delivers into.
pub struct Ring {
    base: *mut u64,
    slots: u64,
}

impl Ring {
    /// The ring at `frame_va + offset`, `size` bytes.
    ///
    /// # Safety
    /// That range must be mapped read-write for as long as the ring is
    /// used, and hold only this ring.
    pub unsafe fn new(frame_va: u64, offset: u64, size: u64) -> Ring {
        Ring { base: (frame_va + offset) as *mut u64, slots: ring_slots(size) }
    }

    #[inline]
    fn word(&self, i: u64) -> *mut u64 {
        self.base.wrapping_add(i as usize)
    }

    /// Messages waiting.
    #[inline]
    pub fn pending(&self) -> u64 {
        // SAFETY: `new`'s contract: the ring's words are mapped.
        let (head, tail) = unsafe { (self.word(0).read_volatile(), self.word(1).read_volatile()) };
        tail.wrapping_sub(head)
    }

    /// Takes the oldest message, if any.
    #[inline]
    pub fn recv(&mut self) -> Option<Message> {
        let mut m = Message::default();
        self.recv_into(&mut m).then_some(m)
    }

    /// Takes the oldest message into `m` (only its first `m.len` words are
    /// written); `false` if there is none. The form for hot loops: a
    /// `Message` is 128 bytes, and moving one costs a `memcpy`.
    #[inline]
    pub fn recv_into(&mut self, m: &mut Message) -> bool {
        // SAFETY: `new`'s contract: the ring's words are mapped.
        let (head, tail) = unsafe { (self.word(0).read_volatile(), self.word(1).read_volatile()) };
        if tail == head || self.slots == 0 {
            return false;
        }
        // The slot's contents are read after `tail` said it is complete.
        core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
        let first = slot_offset(head, self.slots) / 8;
        // SAFETY: a slot inside the ring.
        let h = SlotHeader::from_raw(unsafe { self.word(first).read_volatile() });
        m.len = usize::from(h.words).min(LMP_WORDS);
        m.cap = h.cap;
        for (i, w) in m.words[..m.len].iter_mut().enumerate() {
            // SAFETY: as above.
            *w = unsafe { self.word(first + 1 + i as u64).read_volatile() };
        }
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
        // SAFETY: as above; the receiver owns `head`.
        unsafe { self.word(0).write_volatile(head.wrapping_add(1)) };
        true
    }

    /// Waits for a message and takes it into `m`: clear `haswork`, look,
    /// and `Wait` only if there was nothing, so no wake-up is lost. Only
    /// for code that owns `haswork`: no ring is bound to a waitset
    /// (`waitset::rt`, whose poll clears it), or upcalls are disabled.
    /// Inlined: benchmarks measure the round trip in place.
    #[inline]
    pub fn recv_blocking_into(&mut self, m: &mut Message) {
        loop {
            crate::dispatcher::clear_haswork();
            if self.recv_into(m) {
                return;
            }
            let _ = crate::dispatcher::wait();
        }
    }

    /// [`Ring::recv_blocking_into`], returning the message.
    pub fn recv_blocking(&mut self) -> Message {
        let mut m = Message::default();
        self.recv_blocking_into(&mut m);
        m
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> u64 {
        self.slots
    }
}
