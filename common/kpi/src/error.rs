//! Errors: Barrelfish's stacked `errval_t` in Rust. An [`Error`] is the code
//! of what failed first plus the codes callers pushed on the way out
//! ("while doing X"), printed as a chain, outermost last. It is `Copy`, fixed
//! size and needs no allocator, so the kernel and `no_std` domains use it
//! alike. Across the syscall boundary only the first code travels (`x0`).

use core::fmt;

numbered_enum! {
    /// Error codes. `0` is success and never appears in an [`Error`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum ErrorCode: u64 {
        /// Not a syscall number the kernel knows.
        InvalidSyscall = 1,
        /// An argument is out of range.
        InvalidArgument = 2,
        /// A user address is unmapped, not user-accessible, or not readable.
        BadUserAddress = 3,
        /// A length is larger than the call allows.
        TooLong = 4,
        /// An ELF image is malformed or does not fit.
        BadElf = 5,
        /// A boot module was not found.
        ModuleNotFound = 6,
        /// Boot-time memory ran out.
        OutOfMemory = 7,
        /// A virtual address range is already mapped.
        AlreadyMapped = 8,
        /// A virtual or physical address is not aligned as required.
        Misaligned = 9,
        /// The boot image is malformed.
        BadBootImage = 10,
        /// A domain could not be created.
        DomainCreate = 11,
        /// Mapping memory failed.
        Map = 12,
        /// A capability address names no slot (bad level, index out of range,
        /// or a level-1 slot that holds no L2 CNode).
        BadCapAddr = 13,
        /// The slot is empty.
        SlotEmpty = 14,
        /// The destination slot is occupied.
        SlotInUse = 15,
        /// The capability's type does not support this invocation.
        WrongCapType = 16,
        /// A retype that the type rules forbid.
        IllegalRetype = 17,
        /// Memory in the requested range already has a type (no-overlap rule).
        RetypeOverlap = 18,
        /// The capability lacks a right the operation needs.
        NoRights = 19,
        /// Reserved: the kernel no longer refuses a last copy (CNodes,
        /// dispatchers and page tables take what they hold with them, in
        /// bounded steps answered with `Retry`). Kept so numbers stay put.
        LastCopy = 20,
        /// More work remains: repeat the invocation.
        Retry = 21,
        /// Not an invocation command.
        InvalidCommand = 22,
        /// A kernel self-check found a broken invariant (a kernel bug).
        InvariantBroken = 23,
        /// This capability cannot be mapped into that table (book Table 3.1).
        IllegalMapping = 24,
        /// The dispatcher is not in a state that allows this (not set up,
        /// already set up, or the caller itself).
        DispatcherState = 25,
        /// The receiver's LMP buffer has no room: nothing was sent; retry.
        LmpBufferFull = 26,
        /// The receiver has no empty receive slot for the capability sent:
        /// nothing was sent and the capability stays with the sender.
        LmpNoRecvSlot = 27,
        /// The endpoint's buffer does not lie in its dispatcher's frame.
        LmpBadBuffer = 28,
        /// Every address-space identifier of this core is in use.
        OutOfAsids = 29,
    }
}

impl ErrorCode {
    pub fn description(self) -> &'static str {
        match self {
            ErrorCode::InvalidSyscall => "invalid syscall number",
            ErrorCode::InvalidArgument => "invalid argument",
            ErrorCode::BadUserAddress => "bad user address",
            ErrorCode::TooLong => "length too large",
            ErrorCode::BadElf => "malformed ELF image",
            ErrorCode::ModuleNotFound => "boot module not found",
            ErrorCode::OutOfMemory => "out of memory",
            ErrorCode::AlreadyMapped => "address already mapped",
            ErrorCode::Misaligned => "misaligned address",
            ErrorCode::BadBootImage => "malformed boot image",
            ErrorCode::DomainCreate => "creating a domain",
            ErrorCode::Map => "mapping memory",
            ErrorCode::BadCapAddr => "capability address names no slot",
            ErrorCode::SlotEmpty => "capability slot is empty",
            ErrorCode::SlotInUse => "destination slot is occupied",
            ErrorCode::WrongCapType => "wrong capability type for this invocation",
            ErrorCode::IllegalRetype => "retype not allowed",
            ErrorCode::RetypeOverlap => "memory already has a type",
            ErrorCode::NoRights => "capability lacks the rights",
            ErrorCode::LastCopy => "last copy of a CNode or dispatcher",
            ErrorCode::Retry => "more work remains; repeat",
            ErrorCode::InvalidCommand => "invalid invocation command",
            ErrorCode::InvariantBroken => "a kernel invariant is broken",
            ErrorCode::IllegalMapping => "this capability cannot be mapped there",
            ErrorCode::DispatcherState => "dispatcher not in a state that allows this",
            ErrorCode::LmpBufferFull => "receiver's LMP buffer is full; retry",
            ErrorCode::LmpNoRecvSlot => "receiver has no empty slot for the capability",
            ErrorCode::LmpBadBuffer => "endpoint buffer outside the receiver's frame",
            ErrorCode::OutOfAsids => "no address-space identifier free",
        }
    }
}

/// How many codes an [`Error`] keeps; pushes beyond it drop the middle.
pub const CHAIN_MAX: usize = 8;

/// A failure and its context.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Error {
    codes: [Option<ErrorCode>; CHAIN_MAX],
    len: usize,
}

impl Error {
    pub const fn new(code: ErrorCode) -> Self {
        let mut codes = [None; CHAIN_MAX];
        codes[0] = Some(code);
        Error { codes, len: 1 }
    }

    /// Adds what the caller was doing. When full, the last slot is replaced
    /// so the root cause and the outermost context both survive.
    #[must_use]
    pub fn context(mut self, code: ErrorCode) -> Self {
        let at = self.len.min(CHAIN_MAX - 1);
        self.codes[at] = Some(code);
        self.len = (self.len + 1).min(CHAIN_MAX);
        self
    }

    /// The root cause: the code that travels in `x0`.
    pub fn code(&self) -> ErrorCode {
        self.codes[0].expect("an Error always has a root code")
    }

    /// Root cause first, outermost context last.
    pub fn chain(&self) -> impl Iterator<Item = ErrorCode> + '_ {
        self.codes[..self.len].iter().flatten().copied()
    }
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Self {
        Error::new(code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.chain().enumerate() {
            if i > 0 {
                f.write_str(", while ")?;
            }
            f.write_str(c.description())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.chain()).finish()
    }
}

/// `result.context(code)` for `Result`s.
pub trait Context<T> {
    fn context(self, code: ErrorCode) -> Result<T, Error>;
}

impl<T, E: Into<Error>> Context<T> for Result<T, E> {
    fn context(self, code: ErrorCode) -> Result<T, Error> {
        self.map_err(|e| e.into().context(code))
    }
}

/// Encodes a syscall result for `x0`.
pub fn to_raw(r: Result<(), ErrorCode>) -> u64 {
    match r {
        Ok(()) => 0,
        Err(c) => c as u64,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn chains_print_root_cause_first() {
        let e = Error::new(ErrorCode::OutOfMemory).context(ErrorCode::Map).context(ErrorCode::DomainCreate);
        assert_eq!(e.code(), ErrorCode::OutOfMemory);
        assert_eq!(format!("{e}"), "out of memory, while mapping memory, while creating a domain");
    }

    #[test]
    fn full_chains_keep_root_and_outermost() {
        let mut e = Error::new(ErrorCode::BadElf);
        for _ in 0..20 {
            e = e.context(ErrorCode::Map);
        }
        e = e.context(ErrorCode::DomainCreate);
        let chain: std::vec::Vec<_> = e.chain().collect();
        assert_eq!(chain.len(), CHAIN_MAX);
        assert_eq!(chain[0], ErrorCode::BadElf);
        assert_eq!(chain[CHAIN_MAX - 1], ErrorCode::DomainCreate);
    }

    #[test]
    fn result_context_and_raw_codes() {
        let r: Result<(), ErrorCode> = Err(ErrorCode::Misaligned);
        let e = r.context(ErrorCode::Map).unwrap_err();
        assert_eq!(e.chain().count(), 2);
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_raw(c as u64), Some(c));
            assert_ne!(c as u64, 0, "0 means success");
        }
        assert_eq!(ErrorCode::from_raw(0), None);
        assert_eq!(to_raw(Ok(())), 0);
        assert_eq!(to_raw(Err(ErrorCode::TooLong)), 4);
    }
}
