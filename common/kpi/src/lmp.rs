//! Lightweight message passing (LMP, book ch. 5.3): the send registers and
//! the receive ring the kernel writes into the receiver's dispatcher frame.
//!
//! Send: `Invoke` with `x1` = the endpoint, `x2` = [`send_word`] (command,
//! word count, flags), `x3` = the capability to send (if [`SEND_CAP`]),
//! `x4`..`x17` = up to [`LMP_WORDS`] message words.
//!
//! The ring sits in the receiver's frame at the endpoint's buffer (offset
//! and size set by mint): a [`RingHeader`], then fixed-size slots of
//! [`SLOT_WORDS`] words. The kernel writes a slot and then advances `tail`;
//! the receiver reads slots from `head` and advances it. A slot's first word
//! is its [`SlotHeader`].

use crate::invocation::Command;

/// Message words one send carries: x4–x17, the argument registers the
/// kernel saves on every entry anyway.
pub const LMP_WORDS: usize = 14;

/// Words of one ring slot: the header, the message, one spare.
pub const SLOT_WORDS: usize = 16;
pub const SLOT_BYTES: u64 = SLOT_WORDS as u64 * 8;

// A slot holds the header and every word.
const _: () = assert!(SLOT_WORDS > LMP_WORDS);

/// Bytes before the first slot; a buffer's offset is a multiple of this.
pub const HEADER_BYTES: u64 = 64;

/// Send flag: after the send, the sender gives up the rest of its time
/// slice (Barrelfish's `LMP_FLAG_YIELD`); with [`SEND_SYNC`] it goes to the
/// receiver, otherwise to whoever is next in turn.
pub const SEND_YIELD: u64 = 1;
/// Send flag: `x3` names a capability to send with the message.
pub const SEND_CAP: u64 = 2;
/// Send flag, with [`SEND_YIELD`]: a directed yield — the receiver, if it
/// can run, runs at once (`LMP_FLAG_SYNC`). Alone it changes nothing.
pub const SEND_SYNC: u64 = 4;
/// What Barrelfish's channels send with by default.
pub const SEND_DEFAULT: u64 = SEND_YIELD | SEND_SYNC;

/// `x2` of a send.
pub const fn send_word(words: usize, flags: u64) -> u64 {
    Command::LmpSend as u64 | (words as u64) << 8 | flags << 16
}

/// Splits `x2` of an invocation into (command, words, flags).
pub const fn split_send_word(x2: u64) -> (u64, u64, u64) {
    (x2 & 0xff, (x2 >> 8) & 0xff, x2 >> 16)
}

/// The ring's control words, at the buffer's start.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingHeader {
    /// Next slot the receiver reads (it writes this).
    pub head: u64,
    /// Next slot the kernel writes (the receiver only reads this).
    pub tail: u64,
}

/// Where message number `n` (a running count: `head` or `tail`) lies in a
/// ring of `slots` slots, in bytes from the ring's start. `slots` > 0.
#[inline(always)]
pub const fn slot_offset(n: u64, slots: u64) -> u64 {
    HEADER_BYTES + (n % slots) * SLOT_BYTES
}

/// How many slots a buffer of `size` bytes holds.
pub const fn ring_slots(size: u64) -> u64 {
    if size < HEADER_BYTES { 0 } else { (size - HEADER_BYTES) / SLOT_BYTES }
}

/// The first word of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotHeader {
    /// Message words that follow.
    pub words: u8,
    /// A capability came with the message and is in the receive slot that
    /// was set.
    pub cap: bool,
}

impl SlotHeader {
    pub const fn to_raw(self) -> u64 {
        self.words as u64 | (self.cap as u64) << 8
    }

    pub const fn from_raw(raw: u64) -> SlotHeader {
        SlotHeader { words: raw as u8, cap: raw & (1 << 8) != 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn send_word_round_trips() {
        let w = send_word(14, SEND_YIELD | SEND_CAP);
        assert_eq!(split_send_word(w), (Command::LmpSend as u64, 14, SEND_YIELD | SEND_CAP));
    }

    #[test]
    fn ring_layout() {
        assert!(size_of::<RingHeader>() as u64 <= HEADER_BYTES);
        assert_eq!(ring_slots(HEADER_BYTES + 3 * SLOT_BYTES + 5), 3);
        assert_eq!(ring_slots(10), 0);
        assert_eq!(slot_offset(0, 3), HEADER_BYTES);
        assert_eq!(slot_offset(4, 3), HEADER_BYTES + SLOT_BYTES, "counts wrap around the slots");
        let h = SlotHeader { words: 14, cap: true };
        assert_eq!(SlotHeader::from_raw(h.to_raw()), h);
    }
}
