//! The milestone APIs as traits (book ch. 3.16 and later chapters' "How we
//! test"): what the grading suites call, so one suite grades any
//! implementation. Each trait mirrors the book's C signatures in Rust
//! idiom: a `Result` instead of an `errval_t`, an owned capability reference
//! instead of an out-parameter.
//!
//! This crate only declares; milestone crates implement, `grading` tests.

#![no_std]

use core::fmt::{Debug, Display};

pub use kpi::invocation::CapRef;

/// Virtual addresses the grading suites map at with `map_fixed_attr`: from
/// 512 GiB (level-0 entry 1) up to 1 TiB. Implementations keep their own
/// mappings out of this range.
pub const GRADING_VADDR: core::ops::Range<u64> = (1 << 39)..(2 << 39);

/// The physical memory manager (`mm_*`, book ch. 3.10, 3.16): RAM
/// capabilities in, RAM capabilities of any size and alignment out.
pub trait MemoryManager {
    type Error: Debug + Display;

    /// Hands the manager a RAM capability to manage (`mm_add`).
    fn add(&mut self, ram: CapRef) -> Result<(), Self::Error>;

    /// A RAM capability of at least `size` bytes (rounded up to whole base
    /// pages) whose base is a multiple of `align`, a power of two
    /// (`mm_alloc_aligned`).
    fn alloc_aligned(&mut self, size: u64, align: u64) -> Result<CapRef, Self::Error>;

    /// `alloc_aligned` at base-page alignment (`mm_alloc`).
    fn alloc(&mut self, size: u64) -> Result<CapRef, Self::Error> {
        self.alloc_aligned(size, kpi::BASE_PAGE_SIZE as u64)
    }

    /// Returns memory: a capability `alloc` produced, or a piece of one
    /// retyped from it (a partial free). The capability is deleted
    /// (`mm_free`).
    fn free(&mut self, ram: CapRef) -> Result<(), Self::Error>;

    /// Bytes free, and bytes managed in all.
    fn free_bytes(&self) -> u64;
    fn total_bytes(&self) -> u64;

    /// Bytes the implementation took from itself for its own bookkeeping
    /// (slab memory, CNodes for slots, page tables). They count as
    /// allocated in `free_bytes`; a grader adds them back to see that
    /// every byte a client returned is free again.
    fn overhead_bytes(&self) -> u64;
}

bitflags::bitflags! {
    /// How a mapping may be used (book: `VREGION_FLAGS_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct MapFlags: u32 {
        const READ = 1;
        const WRITE = 2;
        const EXECUTE = 4;
        /// Use 2 MiB block mappings where the address, the frame and the
        /// remaining length allow (superpages, book ch. 3.15).
        const LARGE = 1 << 8;
        const READ_WRITE = Self::READ.bits() | Self::WRITE.bits();
    }
}

/// Page-table mapping (`paging_*`, book ch. 3.14).
pub trait Paging {
    type Error: Debug + Display;

    /// Maps `bytes` of `frame` (from its start) at `vaddr`
    /// (`paging_map_fixed_attr`). Fails, changing nothing, if any page of
    /// the range is already mapped.
    fn map_fixed_attr(&mut self, vaddr: u64, frame: CapRef, bytes: u64, flags: MapFlags) -> Result<(), Self::Error>;
}

/// Free capability slots (`slot_alloc`, book ch. 3.10).
pub trait SlotAllocator {
    type Error: Debug + Display;

    /// An empty slot, refilling from new CNodes as needed.
    fn slot_alloc(&mut self) -> Result<CapRef, Self::Error>;

    /// Gives back an empty slot.
    fn slot_free(&mut self, slot: CapRef) -> Result<(), Self::Error>;
}

/// Counters the graders read to see the allocators refill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Objects the memory manager's slab holds, used or free.
    pub mm_slab_capacity: u64,
    /// Times a slab was refilled from a newly mapped frame.
    pub slab_refills: u64,
    /// Free slots, and CNodes the slot allocator added since start-up.
    pub slots_free: u64,
    pub slot_refills: u64,
    /// Page tables (VNodes) the paging code has made.
    pub page_tables: u64,
}

/// Everything M1 provides, for the suite's later tests.
pub trait M1: MemoryManager + Paging + SlotAllocator {
    fn stats(&self) -> AllocStats;
}

/// Address-space allocation (`paging_alloc`, `paging_map_frame_attr`,
/// `paging_unmap`, book ch. 4.6-4.7): the implementation picks the
/// addresses, and tracks every mapping, fixed ones included.
pub trait VSpace {
    type Error: Debug + Display;

    /// A free, `align`-aligned range of at least `bytes` (rounded up to
    /// whole pages), reserved but not mapped (`paging_alloc`).
    fn paging_alloc(&mut self, bytes: u64, align: u64) -> Result<u64, Self::Error>;

    /// Maps the first `bytes` of `frame` at a free address and returns it
    /// (`paging_map_frame_attr`). The frame may span many page tables.
    fn map_frame_attr(&mut self, frame: CapRef, bytes: u64, flags: MapFlags) -> Result<u64, Self::Error>;

    /// Removes the mappings of `[vaddr, vaddr + bytes)`, a range a map
    /// call returned or was given, and frees the addresses.
    fn unmap(&mut self, vaddr: u64, bytes: u64) -> Result<(), Self::Error>;
}

/// A process: its index in the process table and a generation, so an old
/// identifier never names a newer process.
pub type Pid = u32;

/// What became of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcState {
    /// Runnable or waiting.
    Running,
    /// It exited (or was ended by a fault); its memory is reclaimed by
    /// [`Spawner::reap`].
    Exited,
}

/// A process, as [`Spawner::for_each`] shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcInfo<'a> {
    pub pid: Pid,
    pub name: &'a str,
    pub state: ProcState,
}

/// Spawning programs from boot modules and managing them (book ch.
/// 4.8-4.20).
pub trait Spawner {
    type Error: Debug + Display;

    /// Starts the boot module `name` with its command line from
    /// `menu.lst` (`spawn_load_by_name`).
    fn spawn_load_by_name(&mut self, name: &str) -> Result<Pid, Self::Error>;

    /// Starts a boot module with the arguments of `cmdline`, split as a
    /// shell would (quotes, backslash escapes); its first word names the
    /// module and becomes `argv[0]`.
    fn spawn_load_cmdline(&mut self, cmdline: &str) -> Result<Pid, Self::Error>;

    /// Maps `bytes` of `frame` into the process's address space at an
    /// address free there, and returns that address. The process learns
    /// of it through the paging state its parent shares with it.
    fn map_frame_in(&mut self, pid: Pid, frame: CapRef, bytes: u64, flags: MapFlags) -> Result<u64, Self::Error>;

    fn state(&mut self, pid: Pid) -> Result<ProcState, Self::Error>;

    /// Stops the process (`DispatcherCmd_Stop`) and gives all its memory
    /// back; `pid` names nothing afterwards.
    fn stop(&mut self, pid: Pid) -> Result<(), Self::Error>;

    /// Reclaims every process that exited; returns how many.
    fn reap(&mut self) -> Result<usize, Self::Error>;

    /// Shows every process in the table, in table order.
    fn for_each(&mut self, f: &mut dyn FnMut(ProcInfo<'_>));

    /// For graders: makes the `steps`-th internal step of the next spawn
    /// fail (0 disarms), so that a spawn stopped at every step in turn can
    /// be seen to give back everything. Returns whether the implementation
    /// supports it.
    fn inject_spawn_failure(&mut self, steps: u32) -> bool {
        let _ = steps;
        false
    }
}

/// Everything M2 provides to its suite: spawn, the parent's address space,
/// and the memory manager underneath (to see that nothing leaks).
pub trait M2: Spawner + VSpace + MemoryManager + SlotAllocator {}

/// A process's name as [`AosRpc::process_get_name`] returns it: the
/// dispatcher's name, at most [`ProcName::MAX`] bytes of UTF-8 (what a
/// dispatcher's name field holds).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ProcName {
    bytes: [u8; ProcName::MAX],
    len: u8,
}

impl ProcName {
    pub const MAX: usize = kpi::dispatcher::NAME_LEN;

    /// `s` cut to [`ProcName::MAX`] bytes at a character boundary.
    pub fn new(s: &str) -> ProcName {
        let n = s.floor_char_boundary(Self::MAX);
        let mut bytes = [0; Self::MAX];
        bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
        ProcName { bytes, len: n as u8 }
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("?")
    }
}

impl Debug for ProcName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        Debug::fmt(self.as_str(), f)
    }
}

/// The RPC interface of book ch. 5.10 (Listing 5.1), client side. Each
/// call sends a request and waits for its reply. The book's four
/// channels are values of this trait ([`RpcChannels`]); an
/// implementation may use one connection for all of them.
///
/// Calls take `&self`: a channel is shared by the threads of a domain,
/// and an implementation serialises calls on it.
pub trait AosRpc {
    type Error: Debug + Display;

    /// `aos_rpc_send_number`.
    fn send_number(&self, val: u64) -> Result<(), Self::Error>;

    /// `aos_rpc_send_string`: a string of any length, empty included.
    fn send_string(&self, s: &str) -> Result<(), Self::Error>;

    /// `aos_rpc_get_ram_cap`: a RAM capability of at least `bytes` at a
    /// multiple of `align` (a power of two; 0 means a base page), in a
    /// slot of the caller's, and its size.
    fn get_ram_cap(&self, bytes: u64, align: u64) -> Result<(CapRef, u64), Self::Error>;

    /// `aos_rpc_serial_putchar`.
    fn serial_putchar(&self, c: u8) -> Result<(), Self::Error>;

    /// `aos_rpc_serial_getchar`: waits for a character from the console.
    fn serial_getchar(&self) -> Result<u8, Self::Error>;

    /// `aos_rpc_process_spawn`: starts the program `cmdline` names (its
    /// first word) with its arguments on core `core`.
    fn process_spawn(&self, cmdline: &str, core: u32) -> Result<Pid, Self::Error>;

    /// `aos_rpc_process_get_name`.
    fn process_get_name(&self, pid: Pid) -> Result<ProcName, Self::Error>;

    /// `aos_rpc_process_get_all_pids`: fills `pids` with the live
    /// processes' PIDs and returns how many there are (more than fit,
    /// if `pids` is short).
    fn process_get_all_pids(&self, pids: &mut [Pid]) -> Result<usize, Self::Error>;
}

/// The book's `aos_rpc_get_{init,memory,serial,process}_channel`.
pub struct RpcChannels<'a, R: AosRpc> {
    pub init: &'a R,
    pub memory: &'a R,
    pub serial: &'a R,
    pub process: &'a R,
}
