//! The process table (book ch. 4.20): add, remove, look up and enumerate
//! processes by [`Pid`]. It owns only the bookkeeping; what a process
//! holds is the caller's `T`.
//!
//! A PID is a slot index in its low 16 bits and the slot's generation
//! above, bumped on every remove, so a PID kept after its process went
//! never names the next process in that slot.

use api::Pid;

const INDEX_BITS: u32 = 16;

/// The table slot `pid` names: its low bits, without the generation.
pub fn index_of(pid: Pid) -> usize {
    (pid & ((1 << INDEX_BITS) - 1)) as usize
}

/// Why a table operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcError {
    /// Every slot holds a process.
    Full,
    /// No process has this PID (never had, or it was removed).
    NoSuchProcess(Pid),
}

impl core::fmt::Display for ProcError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProcError::Full => f.write_str("the process table is full"),
            ProcError::NoSuchProcess(pid) => write!(f, "no process {pid}"),
        }
    }
}

/// What a table entry is while no process uses it. Entries are reused in
/// place, never moved: a process's state may be too large for a stack.
pub trait Vacant {
    const VACANT: Self;
}

pub struct ProcTable<T: Vacant, const N: usize> {
    slots: [T; N],
    live: [bool; N],
    generation: [u16; N],
    count: usize,
}

impl<T: Vacant, const N: usize> ProcTable<T, N> {
    const FITS: () = assert!(N > 0 && N <= 1 << INDEX_BITS);

    pub const fn new() -> Self {
        let () = Self::FITS;
        ProcTable { slots: [const { T::VACANT }; N], live: [false; N], generation: [0; N], count: 0 }
    }

    fn pid(&self, i: usize) -> Pid {
        (u32::from(self.generation[i]) << INDEX_BITS) | i as u32
    }

    fn index(&self, pid: Pid) -> Result<usize, ProcError> {
        let i = index_of(pid);
        if i < N && self.live[i] && self.pid(i) == pid { Ok(i) } else { Err(ProcError::NoSuchProcess(pid)) }
    }

    /// Adds a process and returns its PID. `fill` sets the vacant entry
    /// up in place, knowing the PID.
    pub fn add(&mut self, fill: impl FnOnce(Pid, &mut T)) -> Result<Pid, ProcError> {
        let i = self.live.iter().position(|l| !l).ok_or(ProcError::Full)?;
        let pid = self.pid(i);
        fill(pid, &mut self.slots[i]);
        self.live[i] = true;
        self.count += 1;
        Ok(pid)
    }

    /// Removes a process; its entry is vacant again (`empty` is called
    /// on it to make it so).
    pub fn remove(&mut self, pid: Pid, empty: impl FnOnce(&mut T)) -> Result<(), ProcError> {
        let i = self.index(pid)?;
        empty(&mut self.slots[i]);
        self.live[i] = false;
        self.generation[i] = self.generation[i].wrapping_add(1);
        self.count -= 1;
        Ok(())
    }

    pub fn get(&self, pid: Pid) -> Result<&T, ProcError> {
        Ok(&self.slots[self.index(pid)?])
    }

    pub fn get_mut(&mut self, pid: Pid) -> Result<&mut T, ProcError> {
        let i = self.index(pid)?;
        Ok(&mut self.slots[i])
    }

    /// Every process with its PID, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (Pid, &T)> {
        self.slots.iter().enumerate().filter(|&(i, _)| self.live[i]).map(|(i, p)| (self.pid(i), p))
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl<T: Vacant, const N: usize> Default for ProcTable<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    impl Vacant for u64 {
        const VACANT: u64 = 0;
    }

    impl Vacant for &str {
        const VACANT: &'static str = "";
    }

    impl Vacant for u32 {
        const VACANT: u32 = u32::MAX;
    }

    impl Vacant for u8 {
        const VACANT: u8 = 0;
    }

    #[test]
    fn add_lookup_remove_and_enumerate() {
        let mut t: ProcTable<&str, 4> = ProcTable::new();
        let a = t.add(|_, e| *e = "a").unwrap();
        let b = t.add(|_, e| *e = "b").unwrap();
        assert_ne!(a, b);
        assert_eq!(t.get(a), Ok(&"a"));
        assert_eq!(t.iter().map(|(p, n)| (p, *n)).collect::<Vec<_>>(), [(a, "a"), (b, "b")]);
        let mut gone = "";
        assert_eq!(t.remove(a, |e| gone = core::mem::take(e)), Ok(()));
        assert_eq!(gone, "a", "remove shows the entry before it is vacant");
        assert_eq!(t.get(a), Err(ProcError::NoSuchProcess(a)));
        assert_eq!(t.remove(a, |_| {}), Err(ProcError::NoSuchProcess(a)), "removed twice");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_stale_pid_never_names_the_slots_next_process() {
        let mut t: ProcTable<u32, 1> = ProcTable::new();
        let first = t.add(|pid, e| *e = pid).unwrap();
        assert_eq!(t.add(|_, _| {}), Err(ProcError::Full));
        t.remove(first, |_| {}).unwrap();
        let second = t.add(|pid, e| *e = pid).unwrap();
        assert_ne!(first, second, "same slot, new generation");
        assert_eq!(t.get(second), Ok(&second), "make() was given the PID it got");
        assert!(t.get(first).is_err() && t.get_mut(first).is_err());
    }

    #[test]
    fn pids_with_a_slot_past_the_end_are_refused() {
        let t: ProcTable<u8, 2> = ProcTable::new();
        assert_eq!(t.get(7), Err(ProcError::NoSuchProcess(7)));
        assert_eq!(t.get(u32::MAX), Err(ProcError::NoSuchProcess(u32::MAX)));
    }

    proptest! {
        /// Against a map: random adds and removes (of live and of stale
        /// PIDs) agree on every lookup, and PIDs are never reused while
        /// fewer than 2^16 removes hit one slot.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((any::<bool>(), 0usize..16), 1..300)) {
            let mut t: ProcTable<u64, 8> = ProcTable::new();
            let mut model = BTreeMap::new();
            let mut issued = Vec::new();
            for (n, (add, pick)) in ops.into_iter().enumerate() {
                if add {
                    let r = t.add(|_, e| *e = n as u64);
                    if model.len() == 8 {
                        prop_assert_eq!(r, Err(ProcError::Full));
                    } else {
                        let pid = r.unwrap();
                        prop_assert!(!issued.contains(&pid), "pid {} issued twice", pid);
                        issued.push(pid);
                        model.insert(pid, n as u64);
                    }
                } else if !issued.is_empty() {
                    let pid = issued[pick % issued.len()];
                    let mut gone = None;
                    let r = t.remove(pid, |e| gone = Some(*e));
                    prop_assert_eq!(r.is_ok(), gone.is_some());
                    prop_assert_eq!(gone, model.remove(&pid));
                }
                for &pid in &issued {
                    prop_assert_eq!(t.get(pid).ok(), model.get(&pid));
                }
                prop_assert_eq!(t.len(), model.len());
                let listed: Vec<_> = t.iter().map(|(p, v)| (p, *v)).collect();
                let mut want: Vec<_> = model.iter().map(|(p, v)| (*p, *v)).collect();
                let mut got = listed.clone();
                got.sort();
                want.sort();
                prop_assert_eq!(got, want);
            }
        }
    }
}
