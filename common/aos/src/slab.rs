//! A slab allocator (book ch. 3.10): fixed-size objects of one type in
//! memory handed to it in chunks, named by small indices instead of
//! pointers so the structures built on it (the memory manager's trees, the
//! paging state) need no `unsafe`.
//!
//! It owns the chunks it was given and their free list. It never asks for
//! memory itself: whoever owns it checks [`Slab::free_count`] before an
//! operation and calls [`Slab::grow`] while enough objects remain for the
//! refill's own needs. That ordering is what keeps refills from recursing
//! (ch. 3.14).

use core::mem::MaybeUninit;

/// Most chunks one slab holds.
pub const CHUNKS_MAX: usize = 256;
/// Index bits for the object within its chunk.
const OFFSET_BITS: u32 = 22;

/// A slot: an object or a link in the free list.
pub enum Entry<T> {
    Free(u32),
    Used(T),
}

/// The end of the free list.
const NONE: u32 = u32::MAX;

/// An object's name in its slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Idx(u32);

impl Idx {
    /// The index as a number, for packing into tables of `u32`.
    pub const fn to_raw(self) -> u32 {
        self.0
    }

    /// An index from [`Idx::to_raw`]; using any other value panics on access.
    pub const fn from_raw(raw: u32) -> Idx {
        Idx(raw)
    }

    fn new(chunk: usize, offset: usize) -> Idx {
        Idx((chunk as u32) << OFFSET_BITS | offset as u32)
    }
    fn chunk(self) -> usize {
        (self.0 >> OFFSET_BITS) as usize
    }
    fn offset(self) -> usize {
        (self.0 & ((1 << OFFSET_BITS) - 1)) as usize
    }
}

/// Why [`Slab::grow`] refused a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrowError {
    /// The slab already holds [`CHUNKS_MAX`] chunks.
    TooManyChunks,
    /// The chunk holds no object, or more than an index can name.
    BadChunk,
}

pub struct Slab<T: 'static> {
    chunks: [Option<&'static mut [Entry<T>]>; CHUNKS_MAX],
    nchunks: usize,
    free_head: u32,
    free: usize,
    capacity: usize,
}

impl<T> Slab<T> {
    pub const fn new() -> Self {
        Slab { chunks: [const { None }; CHUNKS_MAX], nchunks: 0, free_head: NONE, free: 0, capacity: 0 }
    }

    /// Objects that can be allocated before the next [`Slab::grow`].
    pub fn free_count(&self) -> usize {
        self.free
    }

    /// Objects the slab's chunks hold, used or free.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether [`Slab::grow`] would take another chunk.
    pub fn has_room(&self) -> bool {
        self.nchunks < CHUNKS_MAX
    }

    /// Objects in use.
    pub fn used(&self) -> usize {
        self.capacity - self.free
    }

    /// Forgets every chunk and object, in place (a slab is too large to
    /// replace by a new one on a small stack). The chunks' memory is the
    /// caller's again; nothing in it is dropped.
    pub fn clear(&mut self) {
        for c in &mut self.chunks[..self.nchunks] {
            *c = None;
        }
        self.nchunks = 0;
        self.free_head = NONE;
        self.free = 0;
        self.capacity = 0;
    }

    /// Adds a chunk of memory; every slot in it becomes free.
    pub fn grow(&mut self, mem: &'static mut [MaybeUninit<Entry<T>>]) -> Result<(), GrowError> {
        if self.nchunks == CHUNKS_MAX {
            return Err(GrowError::TooManyChunks);
        }
        let n = mem.len();
        if n == 0 || n >= 1 << OFFSET_BITS {
            return Err(GrowError::BadChunk);
        }
        let chunk = self.nchunks;
        // Link the new slots in front of the free list, lowest first.
        for (i, slot) in mem.iter_mut().enumerate() {
            let next = if i + 1 < n { Idx::new(chunk, i + 1).0 } else { self.free_head };
            slot.write(Entry::Free(next));
        }
        // SAFETY: every element of `mem` was initialised just above, and
        // `MaybeUninit<E>` has the layout of `E`; the slice is `'static`
        // and exclusively ours.
        let entries = unsafe { &mut *(mem as *mut [MaybeUninit<Entry<T>>] as *mut [Entry<T>]) };
        self.chunks[chunk] = Some(entries);
        self.nchunks += 1;
        self.free_head = Idx::new(chunk, 0).0;
        self.free += n;
        self.capacity += n;
        Ok(())
    }

    fn entry(&self, i: Idx) -> &Entry<T> {
        &self.chunks[i.chunk()].as_ref().expect("index of a chunk this slab holds")[i.offset()]
    }

    fn entry_mut(&mut self, i: Idx) -> &mut Entry<T> {
        &mut self.chunks[i.chunk()].as_mut().expect("index of a chunk this slab holds")[i.offset()]
    }

    /// Stores `value`; gives it back if the slab is full.
    pub fn alloc(&mut self, value: T) -> Result<Idx, T> {
        if self.free_head == NONE {
            return Err(value);
        }
        let i = Idx(self.free_head);
        let e = self.entry_mut(i);
        let Entry::Free(next) = *e else { unreachable!("free list holds only free entries") };
        *e = Entry::Used(value);
        self.free_head = next;
        self.free -= 1;
        Ok(i)
    }

    /// Frees an object and returns it.
    ///
    /// # Panics
    /// If `i` is not allocated: a bug in the owner.
    pub fn free(&mut self, i: Idx) -> T {
        let head = self.free_head;
        let Entry::Used(v) = core::mem::replace(self.entry_mut(i), Entry::Free(head)) else {
            panic!("slab: freeing {i:?}, which is not allocated");
        };
        self.free_head = i.0;
        self.free += 1;
        v
    }

    pub fn get(&self, i: Idx) -> &T {
        match self.entry(i) {
            Entry::Used(v) => v,
            Entry::Free(_) => panic!("slab: {i:?} is not allocated"),
        }
    }

    pub fn get_mut(&mut self, i: Idx) -> &mut T {
        match self.entry_mut(i) {
            Entry::Used(v) => v,
            Entry::Free(_) => panic!("slab: {i:?} is not allocated"),
        }
    }
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// How many objects of type `T` a slab chunk of `bytes` holds.
pub const fn entries_in<T>(bytes: usize) -> usize {
    bytes / core::mem::size_of::<Entry<T>>()
}

/// Views `bytes` of memory as slab slots for `T` (aligned inside it).
pub fn carve<T>(mem: &'static mut [MaybeUninit<u8>]) -> &'static mut [MaybeUninit<Entry<T>>] {
    // SAFETY: any bit pattern is a valid `MaybeUninit`, and `align_to_mut`
    // only hands out properly aligned, in-bounds elements.
    let (_, mid, _) = unsafe { mem.align_to_mut::<MaybeUninit<Entry<T>>>() };
    mid
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    fn chunk<T>(n: usize) -> &'static mut [MaybeUninit<Entry<T>>] {
        Box::leak((0..n).map(|_| MaybeUninit::uninit()).collect::<Vec<_>>().into_boxed_slice())
    }

    #[test]
    fn allocates_until_full_then_grows() {
        let mut s: Slab<u64> = Slab::new();
        assert_eq!(s.alloc(1), Err(1), "empty slab");
        s.grow(chunk(3)).unwrap();
        let ids: Vec<_> = (0..3).map(|v| s.alloc(v * 10).unwrap()).collect();
        assert_eq!(s.alloc(99), Err(99));
        assert_eq!((s.free_count(), s.used(), s.capacity()), (0, 3, 3));
        s.grow(chunk(2)).unwrap();
        let more = s.alloc(7).unwrap();
        assert_eq!(*s.get(more), 7);
        for (v, i) in ids.iter().enumerate() {
            assert_eq!(*s.get(*i), v as u64 * 10);
        }
        *s.get_mut(ids[1]) = 11;
        assert_eq!(s.free(ids[1]), 11);
        assert_eq!(s.free_count(), 2);
        // A freed slot is reused.
        assert_eq!(s.alloc(5).unwrap(), ids[1]);
    }

    #[test]
    fn a_cleared_slab_is_empty_and_grows_again() {
        let mut s: Slab<u64> = Slab::new();
        for _ in 0..CHUNKS_MAX {
            s.grow(chunk(1)).unwrap();
        }
        s.alloc(3).unwrap();
        assert!(!s.has_room());
        s.clear();
        assert_eq!((s.free_count(), s.used(), s.capacity(), s.has_room()), (0, 0, 0, true));
        assert_eq!(s.alloc(4), Err(4), "no chunk left");
        s.grow(chunk(2)).unwrap();
        let i = s.alloc(5).unwrap();
        assert_eq!((*s.get(i), s.capacity()), (5, 2));
    }

    #[test]
    fn refuses_bad_chunks() {
        let mut s: Slab<u8> = Slab::new();
        assert_eq!(s.grow(chunk(0)), Err(GrowError::BadChunk));
        for _ in 0..CHUNKS_MAX {
            s.grow(chunk(1)).unwrap();
        }
        assert_eq!(s.grow(chunk(1)), Err(GrowError::TooManyChunks));
        assert_eq!(s.free_count(), CHUNKS_MAX);
    }

    #[test]
    #[should_panic(expected = "not allocated")]
    fn double_free_is_caught() {
        let mut s: Slab<u8> = Slab::new();
        s.grow(chunk(2)).unwrap();
        let i = s.alloc(1).unwrap();
        s.free(i);
        s.free(i);
    }

    #[test]
    fn carve_aligns_raw_bytes() {
        let bytes: &'static mut [MaybeUninit<u8>] =
            Box::leak((0..4096 + 7).map(|_| MaybeUninit::uninit()).collect::<Vec<_>>().into_boxed_slice());
        let slots = carve::<u64>(&mut bytes[3..]);
        assert!(slots.len() >= entries_in::<u64>(4096) - 1);
        assert_eq!(slots.as_ptr() as usize % core::mem::align_of::<Entry<u64>>(), 0);
        let mut s: Slab<u64> = Slab::new();
        let n = slots.len();
        s.grow(slots).unwrap();
        assert_eq!(s.free_count(), n);
    }
}
