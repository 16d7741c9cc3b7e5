//! Milestone 2 (book ch. 4): spawning programs from ELF boot modules.
//! [`vspace`] adds what M1's paging lacked (allocating addresses, mapping
//! at them, unmapping, and another domain's address space); [`spawn`]
//! builds a process's CSpace and VSpace and starts it; [`proc`] is the
//! process table; [`layout`] is the paging-state page a child is given.
//! [`System`] puts them together behind the milestone API (`api::M2`)
//! the grading suite tests.

#![no_std]

pub mod layout;
pub mod proc;
pub mod spawn;
pub mod vspace;

use aos::cap::CapRef;
use aos::kpi::ErrorCode;
use aos::kpi::args::ArgsPage;
use aos::kpi::bootinfo::BootInfo;
use aos::kpi::cspace::ROOTCN_SLOT_MODULECN;
use aos_elf::BadElf;
use api::{MapFlags, Pid, ProcInfo, ProcState};
use m1_memory::Memory;
use m1_memory::mm::RangeError;

use proc::{ProcError, ProcTable};
use spawn::{PROCS_MAX, Process, WINDOW_BASE};
use vspace::OwnVSpace;

/// Why an M2 operation failed. A failed spawn has given back everything
/// it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Memory(m1_memory::Error),
    Range(RangeError),
    /// The module is not a program this system runs.
    Elf(BadElf),
    /// Segment `n` asks for addresses spawn keeps for the stack, the
    /// dispatcher frame, the paging state and the arguments, or for those
    /// above level-0 entry 0, which the child's own allocations use.
    SegmentInLayout(usize),
    Proc(ProcError),
    /// The kernel refused an invocation made while `doing` something.
    Kernel {
        code: ErrorCode,
        doing: &'static str,
    },
    /// No boot module has that name.
    NoSuchModule,
    /// The command line does not split (an open quote, a trailing
    /// backslash) or does not fit the arguments page.
    BadArguments(ErrorCode),
    /// The child's address space has no room for another mapping's `what`.
    ChildFull(&'static str),
    NoBootInfo,
    /// A failure a test asked for (`Spawner::inject_spawn_failure`).
    Injected,
    /// A bug in this crate, not the caller's fault.
    Internal(&'static str),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::Memory(e) => write!(f, "{e}"),
            Error::Range(e) => write!(f, "address space: {e}"),
            Error::Elf(e) => write!(f, "not a loadable program: {e}"),
            Error::SegmentInLayout(n) => write!(
                f,
                "not a loadable program: segment {n} reaches into the addresses spawn keeps for the stack, frames and arguments"
            ),
            Error::Proc(e) => write!(f, "{e}"),
            Error::Kernel { code, doing } => write!(f, "{code}, while {doing}"),
            Error::NoSuchModule => f.write_str("no boot module has that name"),
            Error::BadArguments(ErrorCode::TooLong) => f.write_str("the arguments do not fit the arguments page"),
            Error::BadArguments(_) => f.write_str("the command line has an open quote or a trailing backslash"),
            Error::ChildFull(what) => write!(f, "the child's address space has no room for more {what}"),
            Error::NoBootInfo => f.write_str("spawn needs init's bootinfo"),
            Error::Injected => f.write_str("a failure injected by a test"),
            Error::Internal(what) => write!(f, "internal error: {what}"),
        }
    }
}

impl From<m1_memory::Error> for Error {
    fn from(e: m1_memory::Error) -> Self {
        Error::Memory(e)
    }
}

impl From<RangeError> for Error {
    fn from(e: RangeError) -> Self {
        Error::Range(e)
    }
}

impl From<ProcError> for Error {
    fn from(e: ProcError) -> Self {
        Error::Proc(e)
    }
}

/// Init's spawn system: its address space, its process table and the
/// boot modules, over M1's memory system.
pub struct System {
    own: OwnVSpace,
    procs: ProcTable<Process, PROCS_MAX>,
    bi: Option<&'static BootInfo>,
    hook: Option<spawn::SpawnHook>,
}

/// The system lives in static memory: with a process table of
/// [`PROCS_MAX`] entries it is far larger than init's 64 KiB stack.
static SYSTEM: spin::Mutex<System> =
    spin::Mutex::new(System { own: OwnVSpace::new(), procs: ProcTable::new(), bi: None, hook: None });

/// `AOS_PID=0x...` for `pid`.
fn pid_var(pid: Pid) -> Result<heapless::String<24>, Error> {
    let mut v = heapless::String::new();
    core::fmt::Write::write_fmt(&mut v, format_args!("AOS_PID={pid:#x}")).map_err(|_| Error::Internal("PID text"))?;
    Ok(v)
}

/// A boot module: its MODULECN slot, size, name and command line, all
/// from bootinfo.
#[derive(Clone, Copy)]
struct BootModule {
    slot: u8,
    size: u64,
    name: &'static str,
    cmdline: &'static str,
}

/// Runs `f` with M1's memory system.
fn with<R>(f: impl FnOnce(&mut Memory) -> Result<R, Error>) -> Result<R, Error> {
    m1_memory::with(f)?
}

impl System {
    /// Sets up M1's memory system from bootinfo, then spawn's address
    /// space and root-slot windows on top, and hands out the system. Once
    /// per domain (then `Busy` or M1's `AlreadyInitialised`).
    pub fn init(bi: &'static BootInfo) -> Result<spin::MutexGuard<'static, System>, Error> {
        let mut sys = SYSTEM.try_lock().ok_or(Error::Memory(m1_memory::Error::Busy))?;
        Memory::init(bi)?;
        let own = &mut sys.own;
        with(|mem| {
            mem.leave_root_slots(WINDOW_BASE)?;
            own.init(mem)
        })?;
        sys.bi = Some(bi);
        Ok(sys)
    }

    /// The boot module named `name`.
    fn module(&self, name: &str) -> Result<BootModule, Error> {
        let bi = self.bi.ok_or(Error::NoBootInfo)?;
        let (i, m, name, cmdline) = bi.find_module(name).ok_or(Error::NoSuchModule)?;
        // Never fails: bootinfo holds fewer modules than a u8 counts.
        let slot = u8::try_from(i).map_err(|_| Error::NoSuchModule)?;
        Ok(BootModule { slot, size: m.size, name, cmdline })
    }

    /// Maps `module`, checks it, and builds and starts a process from
    /// it with `args`, to which it adds the environment: `AOS_PID`, the
    /// process's own PID in hex. Init's mapping of the module goes again
    /// either way.
    fn spawn(&mut self, module: BootModule, args: &mut ArgsPage) -> Result<Pid, Error> {
        let BootModule { slot, size, name, .. } = module;
        if size == 0 {
            return Err(Error::Elf(BadElf::TooShort));
        }
        let frame = CapRef::slot(ROOTCN_SLOT_MODULECN as u32, slot);
        let (own, procs, hook) = (&mut self.own, &mut self.procs, self.hook);
        with(|mem| {
            let va = own.map_frame(mem, frame, size, MapFlags::READ)?;
            // SAFETY: the module's `size` bytes were just mapped read-only
            // at `va`; the slice is dropped before the unmap below.
            let image = unsafe { core::slice::from_raw_parts(va as *const u8, size as usize) };
            let r = (|| {
                let prog = aos_elf::parse(image).map_err(Error::Elf)?;
                if let Some(n) = spawn::segment_in_fixed_layout(&prog) {
                    return Err(Error::SegmentInLayout(n));
                }
                let pid = procs.add(|pid, p| p.reset(pid, name))?;
                let p = procs.get_mut(pid)?;
                let built = pid_var(pid)
                    .and_then(|var| args.push_env(var.as_str()).map_err(Error::BadArguments))
                    .and_then(|()| spawn::build(mem, own, p, &prog, image, args, hook));
                match built {
                    Ok(()) => Ok(pid),
                    Err(e) => {
                        // What a failed spawn took goes back; if even that
                        // fails, the entry stays so `stop` can retry.
                        if p.reclaim(mem, own).is_ok() {
                            procs.remove(pid, |_| {})?;
                        }
                        Err(e)
                    }
                }
            })();
            own.unmap(mem, va, size)?;
            r
        })
    }

    fn state_of(p: &Process) -> ProcState {
        match p.dispatcher().map(|d| d.properties()) {
            Some(Ok(props)) if props.state != Some(aos::kpi::invocation::DispatcherState::Ended) => ProcState::Running,
            _ => ProcState::Exited,
        }
    }

    /// Makes every later spawn call `hook` before the child first runs
    /// (a later stage's additions to each child).
    pub fn set_spawn_hook(&mut self, hook: spawn::SpawnHook) {
        self.hook = Some(hook);
    }

    /// What the spawn hook kept for process `pid`.
    pub fn kept(&self, pid: Pid) -> Result<Option<CapRef>, Error> {
        Ok(self.procs.get(pid)?.kept())
    }

    /// The name of process `pid`.
    pub fn name(&self, pid: Pid) -> Result<&str, Error> {
        Ok(self.procs.get(pid)?.name())
    }
}

impl api::Spawner for System {
    type Error = Error;

    fn spawn_load_by_name(&mut self, name: &str) -> Result<Pid, Error> {
        let module = self.module(name)?;
        let mut args = ArgsPage::from_cmdline(module.cmdline, 0).map_err(Error::BadArguments)?;
        self.spawn(module, &mut args)
    }

    fn spawn_load_cmdline(&mut self, cmdline: &str) -> Result<Pid, Error> {
        let mut args = ArgsPage::from_cmdline(cmdline, 0).map_err(Error::BadArguments)?;
        let module = self.module(args.arg(0).ok_or(Error::NoSuchModule)?)?;
        self.spawn(module, &mut args)
    }

    fn map_frame_in(&mut self, pid: Pid, frame: CapRef, bytes: u64, flags: MapFlags) -> Result<u64, Error> {
        let p = self.procs.get_mut(pid)?;
        let vs = p.vspace().ok_or(Error::Proc(ProcError::NoSuchProcess(pid)))?;
        vs.map_frame(frame, bytes, flags)
    }

    fn state(&mut self, pid: Pid) -> Result<ProcState, Error> {
        Ok(Self::state_of(self.procs.get(pid)?))
    }

    fn stop(&mut self, pid: Pid) -> Result<(), Error> {
        let (own, procs) = (&mut self.own, &mut self.procs);
        let p = procs.get_mut(pid)?;
        with(|mem| p.reclaim(mem, own))?;
        procs.remove(pid, |_| {})?;
        Ok(())
    }

    fn reap(&mut self) -> Result<usize, Error> {
        let mut ended = [0; PROCS_MAX];
        let mut n = 0;
        for (pid, p) in self.procs.iter() {
            if Self::state_of(p) == ProcState::Exited {
                ended[n] = pid;
                n += 1;
            }
        }
        for &pid in &ended[..n] {
            api::Spawner::stop(self, pid)?;
        }
        Ok(n)
    }

    fn inject_spawn_failure(&mut self, steps: u32) -> bool {
        spawn::inject_failure(steps);
        true
    }

    fn for_each(&mut self, f: &mut dyn FnMut(ProcInfo<'_>)) {
        for (pid, p) in self.procs.iter() {
            f(ProcInfo { pid, name: p.name(), state: Self::state_of(p) });
        }
    }
}

impl api::VSpace for System {
    type Error = Error;

    fn paging_alloc(&mut self, bytes: u64, align: u64) -> Result<u64, Error> {
        let own = &mut self.own;
        with(|mem| own.alloc(mem, bytes, align))
    }

    fn map_frame_attr(&mut self, frame: CapRef, bytes: u64, flags: MapFlags) -> Result<u64, Error> {
        let own = &mut self.own;
        with(|mem| own.map_frame(mem, frame, bytes, flags))
    }

    fn unmap(&mut self, vaddr: u64, bytes: u64) -> Result<(), Error> {
        let own = &mut self.own;
        with(|mem| own.unmap(mem, vaddr, bytes))
    }
}

impl api::Paging for System {
    type Error = Error;

    /// In spawn's part of the address space the range must be free there
    /// too; elsewhere M1's own check applies.
    fn map_fixed_attr(&mut self, vaddr: u64, frame: CapRef, bytes: u64, flags: MapFlags) -> Result<(), Error> {
        let own = &mut self.own;
        with(|mem| {
            if own.contains(vaddr, bytes) {
                own.map_fixed(mem, vaddr, frame, bytes, flags)
            } else {
                Ok(api::Paging::map_fixed_attr(mem, vaddr, frame, bytes, flags)?)
            }
        })
    }
}

impl api::MemoryManager for System {
    type Error = Error;

    fn add(&mut self, ram: CapRef) -> Result<(), Error> {
        with(|m| Ok(m.add(ram)?))
    }

    fn alloc_aligned(&mut self, size: u64, align: u64) -> Result<CapRef, Error> {
        with(|m| Ok(m.alloc_aligned(size, align)?))
    }

    fn free(&mut self, ram: CapRef) -> Result<(), Error> {
        with(|m| Ok(api::MemoryManager::free(m, ram)?))
    }

    fn free_bytes(&self) -> u64 {
        m1_memory::with(|m| m.free_bytes()).unwrap_or(0)
    }

    fn total_bytes(&self) -> u64 {
        m1_memory::with(|m| m.total_bytes()).unwrap_or(0)
    }

    fn overhead_bytes(&self) -> u64 {
        m1_memory::with(|m| m.overhead_bytes()).unwrap_or(0)
    }
}

impl api::SlotAllocator for System {
    type Error = Error;

    fn slot_alloc(&mut self) -> Result<CapRef, Error> {
        with(|m| Ok(m.slot_alloc()?))
    }

    fn slot_free(&mut self, slot: CapRef) -> Result<(), Error> {
        with(|m| Ok(m.slot_free(slot)?))
    }
}

impl api::M2 for System {}
