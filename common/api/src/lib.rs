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
