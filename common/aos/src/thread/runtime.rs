//! The thread runtime programs call (book ch. 4.12–4.16): spawn, join,
//! yield, exit, detach, mutexes, condition variables and thread-local words,
//! carried out on this dispatcher by driving the pure [`Scheduler`] and
//! switching stacks (`context`).
//!
//! Owns the domain's one scheduler, every thread's context record and TLS
//! block, the stack pool the program handed over at [`init`], the one place
//! the runtime gives the core back to the kernel (`idle_wait`), and the run
//! upcall's Rust half and stack. Before it idles, and in the run upcall
//! when `haswork` is set, it lets `waitset::rt` poll the LMP rings bound
//! as event sources, which may wake threads. The state lives in two
//! statics, `RUNTIME` and the thread records in `RECORDS`, reached only
//! between [`dispatcher::disable`] and [`dispatcher::enable`] (see `call`)
//! or in the run upcall (disabled by the kernel). It decides nothing the
//! scheduler decides and touches no register itself.
//!
//! Upcalls stay disabled across a switch: a thread disables, asks the
//! scheduler, switches; the thread switched to enables when its own thread
//! call returns (a new thread: in its first Rust frame), or, if it was
//! preempted, the kernel's `Resume` enables them as it jumps back into it.
//! So the decision and the switch that carries it out are one step for any
//! upcall. The flag is the dispatcher frame's `disabled` word.
//!
//! Preemption: [`init`] installs the run upcall (`aos_thread_run_upcall`
//! behind the entry in `context`, on a static stack of its own). The kernel
//! enters it, disabled, when it gives the dispatcher the core back with
//! upcalls enabled: at every timer tick, and after other dispatchers ran.
//! The interrupted thread is the scheduler's running one (its state is
//! consistent: every change to the scheduler happens disabled); it becomes
//! a `Preempted` record and [`Scheduler::run_upcall`] picks the next
//! thread. A thread that is disabled at the tick, inside a thread call, is
//! simply continued by the kernel; it is preempted at a later tick.
//!
//! Memory: there is no heap. The table holds [`MAX_THREADS`] threads; the
//! main thread (the one running `aos_main`, thread 0) keeps the stack the
//! kernel gave it, and every other thread takes a [`Stack`] from the pool
//! given to [`init`]. A stack goes back to the pool when the scheduler frees
//! its thread's slot — at join, or at exit if detached — never earlier.
//! Stacks have no guard page: a thread that overflows its [`STACK_SIZE`]
//! overwrites the stack below it.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::context::{self, Context};
use super::{Blocking, Next, Scheduler, ThreadError, ThreadState, Tid, sync};
use crate::dispatcher;

/// Threads one domain can have at once, the main thread included.
pub const MAX_THREADS: usize = 128;
/// Bytes of each spawned thread's stack.
pub const STACK_SIZE: usize = 16 * 1024;
/// Words of thread-local storage per thread.
pub const TLS_WORDS: usize = 8;

/// One thread's stack.
#[repr(C, align(16))]
pub struct Stack([u8; STACK_SIZE]);

/// A pool of `K` stacks for [`init`], meant to be a `static` of the program
/// (it lands in `.bss`). At most `MAX_THREADS - 1` of them are used.
pub struct Stacks<const K: usize>(UnsafeCell<[Stack; K]>);

// SAFETY: no Rust reference to the stacks is ever made: `init` only takes
// their address, and afterwards each stack is memory of the one thread it
// was given to (the runtime's free list hands it to one thread at a time).
unsafe impl<const K: usize> Sync for Stacks<K> {}

impl<const K: usize> Stacks<K> {
    pub const fn new() -> Self {
        Stacks(UnsafeCell::new([const { Stack([0; STACK_SIZE]) }; K]))
    }
}

impl<const K: usize> Default for Stacks<K> {
    fn default() -> Self {
        Self::new()
    }
}

/// A thread's thread-local storage: what TPIDR_EL0 points at while it runs.
///
/// A fixed array of words rather than `#[thread_local]` statics: those need
/// the compiler's unstable TLS support and an ELF TLS template (`.tdata`,
/// `.tbss`) the loader would copy per thread, and this runtime has neither
/// a loader that does so nor a heap to copy into. A word holds an integer or
/// the address of a per-thread object the thread owns (on its stack or in a
/// static), which is what runtime layers above (waitset, RPC state) need.
/// Atomics so that reading through TPIDR_EL0 needs no `unsafe`; only the
/// owning thread uses its block, so `Relaxed` suffices.
struct TlsBlock([AtomicUsize; TLS_WORDS]);

/// Per slot: what the runtime keeps beside the scheduler's table.
#[derive(Clone, Copy)]
struct Slot {
    /// The live thread in the slot (for scanning states).
    tid: Option<Tid>,
    /// Its stack in the pool (`None` for the main thread).
    stack: Option<u16>,
    #[cfg_attr(not(target_os = "none"), expect(dead_code, reason = "read by aos_thread_start, on the target only"))]
    entry: Option<fn(u64) -> i32>,
    #[cfg_attr(not(target_os = "none"), expect(dead_code, reason = "read by aos_thread_start, on the target only"))]
    arg: u64,
}

impl Slot {
    const FREE: Slot = Slot { tid: None, stack: None, entry: None, arg: 0 };
}

/// What only disabled code touches.
struct State {
    started: bool,
    sched: Scheduler<MAX_THREADS>,
    slots: [Slot; MAX_THREADS],
    /// Address of the first stack of the pool.
    stack_base: usize,
    /// Free stacks of the pool (indices), used as a stack.
    free_stacks: [u16; MAX_THREADS],
    n_free: usize,
}

/// The runtime: two statics, three kinds of cells. `state` and `contexts`
/// are used only with upcalls disabled; `contexts[i]` and `tls[i]` belong
/// to the thread in scheduler slot `i`. The records are a separate static
/// because they start all zero: they land in `.bss` (about 120 KiB the
/// kernel need not copy from the image when it loads a program), while the
/// scheduler's initial free list makes `state` initialised data.
struct Runtime {
    state: UnsafeCell<State>,
}

struct Records {
    contexts: [UnsafeCell<Context>; MAX_THREADS],
    /// Where a thread's registers go when it stops for good (it exited).
    discard: UnsafeCell<Context>,
    tls: [TlsBlock; MAX_THREADS],
}

// SAFETY: one dispatcher runs on one core, and its threads reach `state`,
// `contexts` and `discard` only between `dispatcher::disable` and `enable`,
// which no two of them are in at once (`call` refuses to nest); `tls` holds
// atomics.
unsafe impl Sync for Runtime {}
// SAFETY: as for `Runtime`.
unsafe impl Sync for Records {}

static RUNTIME: Runtime = Runtime {
    state: UnsafeCell::new(State {
        started: false,
        sched: Scheduler::new(),
        slots: [Slot::FREE; MAX_THREADS],
        stack_base: 0,
        free_stacks: [0; MAX_THREADS],
        n_free: 0,
    }),
};

static RECORDS: Records = Records {
    contexts: [const { UnsafeCell::new(Context::EMPTY) }; MAX_THREADS],
    discard: UnsafeCell::new(Context::EMPTY),
    tls: [const { TlsBlock([const { AtomicUsize::new(0) }; TLS_WORDS]) }; MAX_THREADS],
};

/// Bytes of the run upcall's stack.
const UPCALL_STACK_SIZE: usize = 16 * 1024;

/// The run upcall's stack: the kernel sets SP to its top at every upcall.
#[repr(C, align(16))]
struct UpcallStack(UnsafeCell<[u8; UPCALL_STACK_SIZE]>);

// SAFETY: no Rust reference to it is ever made; only its address goes to
// the frame, and only the run upcall runs on it, never twice at once (the
// kernel upcalls only while upcalls are enabled, and the upcall runs
// disabled until it leaves the stack for good).
unsafe impl Sync for UpcallStack {}

static UPCALL_STACK: UpcallStack = UpcallStack(UnsafeCell::new([0; UPCALL_STACK_SIZE]));

/// Run upcalls that switched threads: a preemption count for tests and
/// reports.
static PREEMPTIONS: AtomicU64 = AtomicU64::new(0);

impl State {
    /// Frees what the runtime keeps for slot `i` once the scheduler freed
    /// the slot; its stack returns to the pool.
    fn release(&mut self, i: usize) {
        if let Some(s) = self.slots[i].stack {
            self.free_stacks[self.n_free] = s;
            self.n_free += 1;
        }
        self.slots[i] = Slot::FREE;
    }

    /// Whether some thread waits for something (a wait queue, a join).
    fn any_blocked(&self) -> bool {
        self.slots.iter().filter_map(|s| s.tid).any(|t| self.sched.state(t) == ThreadState::Blocked)
    }
}

/// The context record of `t`, or the discard record for `None`.
fn context_of(t: Option<Tid>) -> *mut Context {
    match t {
        Some(t) => RECORDS.contexts[t.index()].get(),
        None => RECORDS.discard.get(),
    }
}

/// Runs `f` on the runtime state with upcalls disabled, carries out the
/// decision it returns (which returns once the caller runs again), and
/// enables upcalls.
fn call<R>(f: impl FnOnce(&mut State) -> Result<(R, Next), ThreadError>) -> Result<R, ThreadError> {
    if !dispatcher::disable() {
        return Err(ThreadError::Disabled);
    }
    let r = {
        // SAFETY: upcalls were enabled and this call disabled them, so no
        // other reference to the state exists (see `Runtime`); this one
        // ends before any switch.
        let s = unsafe { &mut *RUNTIME.state.get() };
        if s.started { f(s) } else { Err(ThreadError::NotStarted) }
    };
    let r = r.map(|(v, next)| {
        carry_out(next);
        v
    });
    dispatcher::enable();
    r
}

/// [`call`] for the runtime layers beside this module (`waitset::rt`):
/// they see only the scheduler, and their refusals (`E`) change nothing, so
/// the calling thread carries on.
pub(crate) fn call_sched<R, E: From<ThreadError>>(
    f: impl FnOnce(&mut Scheduler<MAX_THREADS>) -> Result<(R, Next), E>,
) -> Result<R, E> {
    call(|s| {
        Ok(match f(&mut s.sched) {
            Ok((v, next)) => (Ok(v), next),
            Err(e) => (Err(e), Next::Continue),
        })
    })?
}

/// Does what the scheduler decided; returns when the calling thread runs
/// again. Upcalls disabled, no reference to the state live.
fn carry_out(next: Next) {
    let (from, to) = match next {
        Next::Continue => return,
        Next::Switch { from, to } => (from, to),
        Next::Idle { from } => (from, idle()),
    };
    // SAFETY: both records belong to live threads (or `from` is the discard
    // record) and nothing references them; upcalls are disabled. `to` was
    // filled by `Context::start` at spawn, or saved when it stopped (by a
    // switch or by the run upcall).
    unsafe { context::switch(context_of(from), context_of(Some(to))) }
}

/// Waits with no thread running until one is runnable, and returns it (the
/// scheduler has made it the running thread). If every thread is blocked
/// for good (a deadlock), this never returns.
fn idle() -> Tid {
    loop {
        {
            // SAFETY: upcalls are disabled (we are in `carry_out`) and the
            // caller's reference ended; this one ends before the wait.
            let s = unsafe { &mut *RUNTIME.state.get() };
            // Messages that came while we waited wake their threads first.
            crate::waitset::rt::poll_disabled(&mut s.sched);
            if let Next::Switch { to, .. } = s.sched.run_upcall() {
                return to;
            }
        }
        idle_wait();
    }
}

/// The one place the runtime gives the core back to the kernel while it
/// has nothing to run; [`idle`] re-checks when it returns.
///
/// Here every thread is blocked and upcalls are disabled, so no thread of
/// this domain can run until something outside it happens: a message on a
/// ring bound as an LMP source (`waitset::rt::LmpRecv`), which [`idle`]'s
/// poll turns into a trigger, or nothing (a deadlock). So wait rather than
/// spin: `Wait` takes the dispatcher off the core until a message sets
/// `haswork`, and if every dispatcher waits the kernel says so and stops
/// instead of burning the core on yields. With `haswork` set already (a
/// message came after the poll, or one for a ring nobody bound), `Wait`
/// would return at once; yield then instead, so other dispatchers run. The
/// flag is never cleared here; only the poll clears it, and only once a
/// source is bound (see `waitset::rt`): before that, a thread may be
/// between clearing it and waiting itself, and clearing it behind its back
/// would lose its wake-up. A message that arrives between the check and
/// the wait makes the wait return at once.
fn idle_wait() {
    if dispatcher::haswork() {
        let _ = crate::syscall::yield_now();
    } else {
        let _ = dispatcher::wait();
    }
}

/// Run upcalls that switched from one thread to another since [`init`].
pub fn preemptions() -> u64 {
    PREEMPTIONS.load(Ordering::Relaxed)
}

/// The run upcall's Rust half, entered from `aos_thread_upcall` on the
/// upcall stack with upcalls disabled: `frame` is the dispatcher's frame,
/// `fp` the interrupted thread's FP/SIMD registers and TPIDR_EL0 as the
/// entry saved them. Never returns: it resumes the interrupted thread or
/// enters another.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
extern "C" fn aos_thread_run_upcall(
    frame: *const kpi::dispatcher::DispatcherShared,
    reason: u64,
    fp: *const context::FpTls,
) -> ! {
    // SAFETY: the kernel filled the enabled save area before entering us and
    // writes it again only at an upcall, which cannot come while we run
    // disabled; the frame is mapped for as long as the dispatcher runs.
    let enabled = unsafe { &raw const (*frame).enabled_save };
    let next = {
        // SAFETY: upcalls are disabled (we are the upcall) and the thread we
        // interrupted was enabled, so it held no reference to the state.
        let s = unsafe { &mut *RUNTIME.state.get() };
        if s.started && reason == kpi::dispatcher::UPCALL_RUN {
            // A message since the last poll: its waiting thread becomes
            // runnable now, not when every thread happens to block.
            if dispatcher::haswork() {
                crate::waitset::rt::poll_disabled(&mut s.sched);
            }
            s.sched.run_upcall()
        } else {
            Next::Continue
        }
    };
    match next {
        Next::Switch { from: Some(from), to } => {
            PREEMPTIONS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: `from`'s record is its own (it was running, so nothing
            // was saved there since it last ran), `enabled` and `fp` are
            // this upcall's; `to` is another live thread's record, filled
            // when it stopped or was spawned. The state reference ended.
            unsafe {
                context::save_preempted(context_of(Some(from)), &*enabled, &*fp);
                context::enter(context_of(Some(to)))
            }
        }
        // One runnable thread (the interrupted one), or no runtime: go on.
        // A thread runs whenever upcalls are enabled, so the scheduler
        // always has one here and never answers Idle or a switch from none.
        _ => {
            debug_assert_eq!(next, Next::Continue, "a run upcall with no thread running");
            // SAFETY: both are this upcall's own state, untouched.
            unsafe { context::resume(fp, enabled) }
        }
    }
}

/// Starts the runtime: the calling thread (the one running `aos_main`)
/// becomes thread 0, and `stacks` the pool other threads' stacks come from.
/// From now on the run upcall preempts threads at every timer tick.
/// Refused on the host ([`ThreadError::Unsupported`]) and when called again.
/// As in C, returning from `aos_main` ends the domain, other threads or not;
/// `thread::exit` in the main thread ends only it.
pub fn init<const K: usize>(stacks: &'static Stacks<K>) -> Result<Tid, ThreadError> {
    if cfg!(not(target_os = "none")) {
        return Err(ThreadError::Unsupported);
    }
    if !dispatcher::disable() {
        return Err(ThreadError::Disabled);
    }
    // SAFETY: as in `call`.
    let s = unsafe { &mut *RUNTIME.state.get() };
    let r = if s.started {
        Err(ThreadError::AlreadyStarted)
    } else {
        s.sched.thread_create(0, 0).inspect(|&t| {
            let i = t.index();
            let tls = &RECORDS.tls[i] as *const TlsBlock as usize;
            // Slot `i` is live: these cannot fail.
            let _ = s.sched.set_context(t, context_of(Some(t)) as usize);
            let _ = s.sched.set_tls(t, tls);
            // The first run upcall runs it: the caller, running already.
            let first = s.sched.run_upcall();
            debug_assert_eq!(first, Next::Switch { from: None, to: t });
            s.slots[i] = Slot { tid: Some(t), ..Slot::FREE };
            context::set_tpidr(tls);
            // Upcalls are disabled: the first comes once `init` enables.
            let stack_top = UPCALL_STACK.0.get() as usize + UPCALL_STACK_SIZE;
            dispatcher::set_run_upcall(context::upcall_entry(), stack_top as u64);
            s.stack_base = stacks.0.get() as usize;
            s.n_free = K.min(MAX_THREADS - 1);
            // Lowest index on top, so stacks are used from the start.
            for (n, f) in s.free_stacks[..s.n_free].iter_mut().enumerate() {
                *f = (s.n_free - 1 - n) as u16;
            }
            s.started = true;
        })
    };
    dispatcher::enable();
    r
}

/// Makes a thread that runs `entry(arg)` and exits with its result; it runs
/// when the caller yields, blocks or exits. Its TLS words start at 0.
pub fn spawn(entry: fn(u64) -> i32, arg: u64) -> Result<Tid, ThreadError> {
    call(|s| {
        if s.n_free == 0 {
            return Err(ThreadError::NoStack);
        }
        let t = s.sched.thread_create(0, 0)?;
        s.n_free -= 1;
        let stack = s.free_stacks[s.n_free];
        let i = t.index();
        for w in &RECORDS.tls[i].0 {
            w.store(0, Ordering::Relaxed);
        }
        let tls = &RECORDS.tls[i] as *const TlsBlock as usize;
        let top = s.stack_base + (stack as usize + 1) * STACK_SIZE;
        // SAFETY: upcalls are disabled and slot `i` was free until now, so
        // no thread runs on, or has saved anything in, this record.
        unsafe { *context_of(Some(t)) = Context::start(top, tls) };
        let _ = s.sched.set_context(t, context_of(Some(t)) as usize);
        let _ = s.sched.set_tls(t, tls);
        s.slots[i] = Slot { tid: Some(t), stack: Some(stack), entry: Some(entry), arg };
        Ok((t, Next::Continue))
    })
}

/// A new thread's first Rust frame, entered from `aos_thread_trampoline`
/// with upcalls still disabled by the thread that switched here.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
extern "C" fn aos_thread_start() -> ! {
    let (entry, arg) = {
        // SAFETY: upcalls are disabled (see above) and the switching thread
        // holds no reference to the state.
        let s = unsafe { &*RUNTIME.state.get() };
        match s.sched.current() {
            Some(t) => (s.slots[t.index()].entry, s.slots[t.index()].arg),
            None => (None, 0),
        }
    };
    dispatcher::enable();
    exit(entry.map_or(-1, |f| f(arg)))
}

/// Ends the calling thread with `code`, which [`join`] returns. When no
/// thread is left that could ever run again, the domain ends with `code`.
/// Without a runtime (before [`init`], or on the host) the domain ends.
pub fn exit(code: i32) -> ! {
    let _ = call(|s| {
        let me = s.sched.current().ok_or(ThreadError::NoCurrent)?;
        let detached = s.sched.is_detached(me);
        let next = s.sched.thread_exit(code)?;
        if detached {
            // Its slot is free already. The stack is still under our feet,
            // but nothing can take it before the switch below leaves it.
            s.release(me.index());
        }
        if matches!(next, Next::Idle { .. }) && !s.any_blocked() {
            crate::syscall::exit(code);
        }
        Ok(((), next))
    });
    crate::syscall::exit(code)
}

/// Waits for `t` to exit and returns its code; its slot and stack are
/// freed, so `t` names no thread afterwards.
pub fn join(t: Tid) -> Result<i32, ThreadError> {
    loop {
        let done = call(|s| match s.sched.thread_join(t)? {
            Blocking::Done(code) => {
                s.release(t.index());
                Ok((Some(code), Next::Continue))
            }
            Blocking::Blocked(next) => Ok((None, next)),
        })?;
        if let Some(code) = done {
            return Ok(code);
        }
    }
}

/// Lets `t` free its slot and stack itself when it exits (at once if it has
/// exited); nobody may join it afterwards.
pub fn detach(t: Tid) -> Result<(), ThreadError> {
    call(|s| {
        let exited = matches!(s.sched.state(t), ThreadState::Exited(_));
        s.sched.thread_detach(t)?;
        if exited {
            s.release(t.index());
        }
        Ok(((), Next::Continue))
    })
}

/// Lets the next runnable thread run; returns at once if there is none (or
/// no runtime).
pub fn yield_now() {
    let _ = call(|s| Ok(((), s.sched.thread_yield()?)));
}

/// The calling thread.
pub fn current() -> Result<Tid, ThreadError> {
    call(|s| Ok((s.sched.current().ok_or(ThreadError::NoCurrent)?, Next::Continue)))
}

/// The calling thread's TLS block, found through TPIDR_EL0. An address that
/// is not a block's (no runtime yet) is refused rather than trusted.
fn tls_block() -> Result<&'static TlsBlock, ThreadError> {
    let base = RECORDS.tls.as_ptr() as usize;
    let off = context::tpidr().wrapping_sub(base);
    let size = size_of::<TlsBlock>();
    if !off.is_multiple_of(size) {
        return Err(ThreadError::NotStarted);
    }
    RECORDS.tls.get(off / size).ok_or(ThreadError::NotStarted)
}

/// The calling thread's thread-local word `i` (< [`TLS_WORDS`]).
pub fn tls_get(i: usize) -> Result<usize, ThreadError> {
    let w = tls_block()?.0.get(i).ok_or(ThreadError::BadTlsIndex)?;
    Ok(w.load(Ordering::Relaxed))
}

/// Sets the calling thread's thread-local word `i` (< [`TLS_WORDS`]).
pub fn tls_set(i: usize, v: usize) -> Result<(), ThreadError> {
    tls_block()?.0.get(i).ok_or(ThreadError::BadTlsIndex)?.store(v, Ordering::Relaxed);
    Ok(())
}

/// A mutex for the threads of this domain, holding the `T` it protects:
/// FIFO hand-off ([`sync::Mutex`]), not recursive. Blocking in
/// [`Mutex::lock`] runs other threads.
pub struct Mutex<T> {
    /// Touched only with upcalls disabled.
    raw: UnsafeCell<sync::Mutex>,
    data: UnsafeCell<T>,
}

// SAFETY: `raw` is used only inside `call` (upcalls disabled, one thread at
// a time); `data` only through a guard, and only the owner has one (guards
// are not `Send`).
unsafe impl<T: Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Self {
        Mutex { raw: UnsafeCell::new(sync::Mutex::new()), data: UnsafeCell::new(value) }
    }

    /// Waits until the calling thread holds the mutex. Refused if it holds
    /// it already.
    pub fn lock(&self) -> Result<MutexGuard<'_, T>, ThreadError> {
        call(|s| {
            // SAFETY: inside `call`, upcalls are disabled, so no other
            // reference to `raw` exists; this one ends before the switch.
            let raw = unsafe { &mut *self.raw.get() };
            Ok(((), raw.lock(&mut s.sched)?))
        })?;
        Ok(MutexGuard { mutex: self, _not_send: PhantomData })
    }

    /// Takes the mutex if nobody holds it.
    pub fn try_lock(&self) -> Result<Option<MutexGuard<'_, T>>, ThreadError> {
        let got = call(|s| {
            // SAFETY: as in `lock`.
            let raw = unsafe { &mut *self.raw.get() };
            Ok((raw.try_lock(&s.sched)?, Next::Continue))
        })?;
        Ok(got.then_some(MutexGuard { mutex: self, _not_send: PhantomData }))
    }

    fn unlock_raw(&self) -> Result<(), ThreadError> {
        call(|s| {
            // SAFETY: as in `lock`.
            let raw = unsafe { &mut *self.raw.get() };
            raw.unlock(&mut s.sched).map(|_| ((), Next::Continue))
        })
    }
}

/// Proof that the calling thread holds a [`Mutex`]; unlocks when dropped.
pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
    /// Owned by the thread that locked: not `Send`.
    _not_send: PhantomData<*const ()>,
}

impl<T> MutexGuard<'_, T> {
    /// Unlocks, handing the mutex to the first waiter; as dropping, but
    /// with the (never expected) error visible.
    pub fn unlock(self) -> Result<(), ThreadError> {
        let m = self.mutex;
        core::mem::forget(self);
        m.unlock_raw()
    }
}

impl<T> core::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard's thread holds the mutex, so no other reference
        // to the data exists.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T> core::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this one unique.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        let _ = self.mutex.unlock_raw();
    }
}

/// A condition variable for [`Mutex`]es of this domain ([`sync::Condvar`]):
/// a woken waiter re-contends for the mutex, so it must recheck its
/// condition.
pub struct Condvar {
    /// Touched only with upcalls disabled.
    raw: UnsafeCell<sync::Condvar>,
}

// SAFETY: `raw` is used only inside `call`.
unsafe impl Sync for Condvar {}

impl Condvar {
    pub const fn new() -> Condvar {
        Condvar { raw: UnsafeCell::new(sync::Condvar::new()) }
    }

    /// Unlocks `guard`'s mutex and waits, as one step, for a signal; then
    /// locks the mutex again. On an error the mutex is unlocked.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> Result<MutexGuard<'a, T>, ThreadError> {
        let mutex = guard.mutex;
        call(|s| {
            // SAFETY: as in `Mutex::lock`, for both cells (distinct objects).
            let (cv, m) = unsafe { (&mut *self.raw.get(), &mut *mutex.raw.get()) };
            Ok(((), cv.wait(m, &mut s.sched)?))
        })?;
        // The wait released the mutex: the old guard must not unlock again.
        core::mem::forget(guard);
        mutex.lock()
    }

    /// Wakes the first waiter, if any.
    pub fn signal(&self) {
        let _ = call(|s| {
            // SAFETY: as in `Mutex::lock`.
            let raw = unsafe { &mut *self.raw.get() };
            Ok((raw.signal(&mut s.sched), Next::Continue))
        });
    }

    /// Wakes every waiter.
    pub fn broadcast(&self) {
        let _ = call(|s| {
            // SAFETY: as in `Mutex::lock`.
            let raw = unsafe { &mut *self.raw.get() };
            Ok((raw.broadcast(&mut s.sched), Next::Continue))
        });
    }
}

impl Default for Condvar {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waitset::{WaitsetError, rt};

    static POOL: Stacks<1> = Stacks::new();

    /// One test, since the disabled flag is one static for the process.
    #[test]
    fn without_a_dispatcher_every_call_is_refused_and_leaves_upcalls_enabled() {
        assert_eq!(init(&POOL), Err(ThreadError::Unsupported));
        assert_eq!(spawn(|a| a as i32, 0), Err(ThreadError::NotStarted));
        assert_eq!(join(Tid::from_raw(0)), Err(ThreadError::NotStarted));
        assert_eq!(detach(Tid::from_raw(0)), Err(ThreadError::NotStarted));
        assert_eq!(current(), Err(ThreadError::NotStarted));
        assert_eq!(tls_get(0), Err(ThreadError::NotStarted));
        assert_eq!(tls_set(0, 1), Err(ThreadError::NotStarted));
        let m = Mutex::new(0u32);
        assert_eq!(m.lock().err(), Some(ThreadError::NotStarted));
        assert_eq!(m.try_lock().err(), Some(ThreadError::NotStarted));
        let cv = Condvar::new();
        cv.signal();
        cv.broadcast();
        yield_now();
        // The waitset runtime goes through the same door.
        let not_started = Some(WaitsetError::Thread(ThreadError::NotStarted));
        let ws = rt::default_waitset();
        assert_eq!(ws.add_source().err(), not_started);
        assert_eq!(ws.event_dispatch().err(), not_started);
        assert_eq!(ws.event_dispatch_non_block().err(), not_started);
        static RX: rt::LmpRecv = rt::LmpRecv::new();
        assert_eq!(RX.recv().err(), not_started);
        assert!(!dispatcher::is_disabled(), "a refused call enables upcalls again");

        // From dispatcher code (upcalls disabled), nothing re-enters.
        assert!(dispatcher::disable());
        assert!(!dispatcher::disable(), "disable says it was disabled already");
        assert_eq!(current(), Err(ThreadError::Disabled));
        assert_eq!(m.lock().err(), Some(ThreadError::Disabled));
        assert_eq!(ws.blocked(), Err(WaitsetError::Thread(ThreadError::Disabled)));
        assert!(dispatcher::is_disabled(), "a refused nested call leaves the flag to its owner");
        dispatcher::enable();
    }
}
