//! The thread record, the thread-local "current thread", and
//! `threadcreate` and friends.
//!
//! A thread is a corosensei coroutine on a stack from [`super::stack`],
//! resumed only by its proc's scheduler on its proc's OS thread. Its record
//! is shared with other procs (they interrupt it, ready it, list it), so the
//! fields they read are atomics; the rest belongs to the owning proc alone.

use std::cell::{Cell, UnsafeCell};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use corosensei::{Coroutine, Yielder};

use super::exit::{self, Exit, Unwind};
use super::procs::{self, ProcLocal, ProcShared};
use super::stack::{Stack, StackRef};
use super::wait::{Block, Waiter};
use crate::util::spin::Spin;

/// A thread's id: 1 for a program's first thread, never reused within a
/// program. Ids increase in the order a proc creates threads (with
/// `threadcreate` or `proccreate`), so a program of one proc numbers them
/// 1, 2, 3, ... Procs reserve ids in blocks, so threads made by different
/// procs are not numbered in the order they were made (Go numbers its
/// goroutines the same way, for the same reason: no shared counter to
/// update on every creation).
///
/// ```
/// thread9::run(|| {
///     assert_eq!(thread9::threadid(), 1);
///     let id = thread9::threadcreate(|| assert_eq!(thread9::threadid(), 2), 0);
///     assert_eq!(id, 2);
/// }).unwrap();
/// ```
pub type ThreadId = u64;

pub(crate) type Co = Coroutine<(), (), Exit, StackRef>;

pub(crate) struct Info {
    pub(crate) name: String,
    pub(crate) state: String,
}

/// The record is laid out by hand: a hop through a sieve of thousands of
/// threads runs a thread whose record has long left the L1 cache, and every
/// line of it the hop touches is a miss. So what the thread itself reads
/// to switch in and out shares the first line, and everything a partner
/// touches to complete its wait and ready it (the waiter's state, entry
/// and mailbox, the run-queue link, the proc, the block state) the next
/// two; the rest (touched on creation, exit, kill and dumps) comes after.
/// Under cachegrind, with a 512 KiB last level, the 2,000-thread sieve's
/// data misses per hop fell 17.1 -> 14.8 (L1) and 5.9 -> 4.9 (last level)
/// when the partner's lines went from three to two and the write of what a
/// thread blocks on left the fourth. On this machine's L3 those misses are
/// cheap enough that wall-clock moved within the host's noise (a ring of
/// 2,000 threads: 74.9 -> 73.2 ns per hop, medians of 6 pinned pairs).
#[repr(C, align(64))]
pub(crate) struct Thread {
    // Line 0: switching in and out.
    /// The coroutine runs on `stack`, which stays with the record when the
    /// coroutine ends (the record and its stack are reused together). The
    /// coroutine is always dropped before the stack is taken away.
    pub(crate) co: UnsafeCell<Option<Co>>,
    yielder: Cell<*const Yielder<(), ()>>,
    /// An address in the top page of the thread's stack, for the
    /// scheduler to prefetch while the thread before it runs.
    pub(crate) stack_hint: Cell<usize>,
    /// The proc's unique id, for proc-biased locks.
    pub(crate) proc_id: u64,
    // Lines 1 and 2: blocking, and being woken (the waiter holds the queue
    // entry and the value of a lone channel operation).
    pub(crate) waiter: Waiter,
    // Owned by the proc's OS thread:
    /// Link in the proc's run queue.
    pub(crate) next: Cell<*const Thread>,
    /// The proc's local half, set before the thread first runs: a waker on
    /// the same proc queues the thread there without a thread-local lookup.
    pub(crate) local: AtomicPtr<ProcLocal>,
    blocked: AtomicU8,
    killed: AtomicBool,
    blocked_shared: AtomicBool,
    // Cold.
    /// The descriptor of a `Block::Fd` wait, for dumps. (A channel wait's
    /// channel is its waiter's object, which the wait writes anyway.)
    blocked_fd: AtomicUsize,
    pub(crate) id: u64,
    /// The proc this thread belongs to; alive as long as the thread is.
    pub(crate) proc: *const ProcShared,
    pub(crate) program_id: u64,
    /// A wait (see [`Waiter::current_wait`]) another proc asked this
    /// thread's proc to interrupt; 0 for none.
    intr_req: AtomicUsize,
    pub(crate) grp: AtomicU64,
    pub(crate) info: Spin<Info>,
    /// Index in the proc's thread list; changed only under that list's lock.
    pub(crate) list_idx: AtomicUsize,
    /// Link in the proc's inbox of threads readied by other procs.
    pub(crate) inbox_next: AtomicPtr<Thread>,
    pub(crate) stack: UnsafeCell<Option<Stack>>,
    /// The stack's guard range, read by the overflow handler.
    pub(crate) guard: Cell<(usize, usize)>,
    /// `threaddata` slots.
    pub(crate) data: super::data::Slots,
}

// The layout the comment on `Thread` promises.
const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(Thread, proc_id) + 8 <= 64);
    assert!(offset_of!(Thread, waiter) == 64);
    let entry = offset_of!(Thread, waiter) + offset_of!(Waiter, entry);
    assert!(entry >= 64 && entry + size_of::<super::waitq::Entry>() <= 128);
    assert!(offset_of!(Thread, waiter) + offset_of!(Waiter, mail) >= 128);
    assert!(offset_of!(Thread, blocked_shared) < 192);
};

// SAFETY: fields other threads touch are atomics or behind `info`'s lock;
// the Cell/UnsafeCell fields are touched only on the owning proc's OS
// thread (the scheduler and the thread itself), which never run at once.
unsafe impl Sync for Thread {}
// SAFETY: as above; a record is handed to a new proc before it runs.
unsafe impl Send for Thread {}

impl Thread {
    /// Allocates a record. The caller owns it until it is adopted by a proc.
    pub(crate) fn alloc(id: u64, proc: &ProcShared, grp: u64, name: &str) -> *const Thread {
        let b = Box::new(Thread {
            id,
            waiter: Waiter::new(ptr::null()),
            proc,
            proc_id: proc.id,
            program_id: proc.program.id,
            killed: AtomicBool::new(false),
            intr_req: AtomicUsize::new(0),
            grp: AtomicU64::new(grp),
            blocked: AtomicU8::new(0),
            blocked_fd: AtomicUsize::new(0),
            stack_hint: Cell::new(0),
            blocked_shared: AtomicBool::new(false),
            info: Spin::new(Info {
                name: name.to_string(),
                state: String::new(),
            }),
            list_idx: AtomicUsize::new(0),
            inbox_next: AtomicPtr::new(ptr::null_mut()),
            local: AtomicPtr::new(ptr::null_mut()),
            next: Cell::new(ptr::null()),
            co: UnsafeCell::new(None),
            stack: UnsafeCell::new(None),
            yielder: Cell::new(ptr::null()),
            guard: Cell::new((0, 0)),
            data: Default::default(),
        });
        let p = Box::into_raw(b);
        // SAFETY: `p` is a fresh, exclusively owned allocation; the waiter
        // must name its own thread, which only exists once boxed.
        unsafe { ptr::addr_of_mut!((*p).waiter).write(Waiter::new(p)) };
        p
    }

    /// Makes a retired record of the same proc a fresh one.
    ///
    /// # Safety
    /// `t` is a record of `proc` that was reaped (it is in no list, queue or
    /// coroutine) and is owned by the caller.
    #[inline]
    pub(crate) unsafe fn reuse(t: *mut Thread, id: u64, grp: u64, name: &str) {
        // SAFETY: per the contract nobody else can reach the record.
        let t = unsafe { &mut *t };
        t.id = id;
        *t.killed.get_mut() = false;
        *t.intr_req.get_mut() = 0;
        *t.grp.get_mut() = grp;
        *t.blocked.get_mut() = 0;
        *t.blocked_fd.get_mut() = 0;
        *t.blocked_shared.get_mut() = false;
        let info = t.info.get_mut();
        // Most threads are unnamed: then no call to compare the names.
        let same = info.name.is_empty() && name.is_empty() || info.name == name;
        if !same {
            info.name.clear();
            info.name.push_str(name);
        }
        info.state.clear();
        debug_assert!(t.co.get_mut().is_none());
    }

    #[inline]
    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    /// A blocking point of this, the running thread: if it was killed it
    /// ends here. Returns true when it was killed but is already unwinding
    /// (a destructor is blocking): the operation must then fail as
    /// interrupted instead.
    #[inline(always)]
    pub(crate) fn kill_point(&self) -> bool {
        self.is_killed() && die_or_report()
    }

    /// Marks the thread to die at its next blocking point; its proc wakes
    /// it if it is blocked now or blocks before it sees the mark (see
    /// [`ProcShared::attend`]).
    pub(crate) fn kill(&self) {
        self.mark_killed();
        self.proc().attend();
    }

    /// Asks this thread's proc (from another proc) to interrupt the wait
    /// the thread is in now; false if it is not waiting. The caller then
    /// calls [`ProcShared::attend`].
    pub(crate) fn request_interrupt(&self) -> bool {
        match self.waiter.current_wait() {
            Some(w) => {
                self.intr_req.store(w, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// The interrupt asked of this thread's proc, if any, now taken.
    pub(crate) fn take_interrupt_request(&self) -> Option<usize> {
        match self.intr_req.swap(0, Ordering::SeqCst) {
            0 => None,
            w => Some(w),
        }
    }

    /// Ends the thread's wait: the one named `which`, or any if None.
    /// Returns whether it did; the thread is then readied.
    ///
    /// # Safety
    /// Called on the OS thread of this thread's proc, while this thread is
    /// not running.
    pub(crate) unsafe fn interrupt_now(&self, which: Option<usize>) -> bool {
        // SAFETY: per the contract.
        let won = unsafe { self.waiter.interrupt(which, self.proc_id, self.program_id) };
        if won {
            // SAFETY: we won the claim; the thread is parked in this proc.
            unsafe { ready(self) };
        }
        won
    }

    pub(crate) fn grp(&self) -> u64 {
        self.grp.load(Ordering::Relaxed)
    }

    pub(crate) fn set_grp(&self, g: u64) -> u64 {
        self.grp.swap(g, Ordering::Relaxed)
    }

    pub(crate) fn mark_killed(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }

    #[inline]
    pub(crate) fn set_blocked(&self, what: Block, shared: bool) {
        self.blocked.store(what as u8, Ordering::Relaxed);
        self.blocked_shared.store(shared, Ordering::Relaxed);
    }

    /// [`Thread::set_blocked`] for a wait on descriptor `fd`.
    pub(crate) fn set_blocked_fd(&self, fd: i32) {
        self.blocked_fd.store(fd as usize, Ordering::Relaxed);
        self.set_blocked(Block::Fd, true);
    }

    /// What the thread is blocked in, and on what: the channel (its
    /// header's address, the channel's identity for names) for a channel
    /// operation, the descriptor for a `Block::Fd` wait, 0 otherwise. Read by other procs for dumps: a snapshot, possibly torn
    /// between the two.
    pub(crate) fn blocked(&self) -> (Block, usize) {
        let what = Block::from_u8(self.blocked.load(Ordering::Relaxed));
        let obj = match what {
            Block::Recv | Block::Send | Block::IoCall => self.waiter.object(),
            Block::Fd => self.blocked_fd.load(Ordering::Relaxed),
            _ => 0,
        };
        (what, obj)
    }

    pub(crate) fn blocked_shared(&self) -> bool {
        self.blocked_shared.load(Ordering::Relaxed)
    }

    pub(crate) fn proc(&self) -> &ProcShared {
        // SAFETY: a proc outlives its threads.
        unsafe { &*self.proc }
    }

    pub(crate) fn name(&self) -> String {
        self.info.lock().name.clone()
    }
}

thread_local! {
    static CURRENT: Cell<*const Thread> = const { Cell::new(ptr::null()) };
}

#[inline(always)]
pub(crate) fn current_ptr() -> *const Thread {
    CURRENT.with(|c| c.get())
}

#[inline]
pub(crate) fn set_current(t: *const Thread) {
    CURRENT.with(|c| c.set(t));
}

/// The running thread, or a panic naming the way into a program.
#[track_caller]
pub(crate) fn current(what: &str) -> &'static Thread {
    let t = current_ptr();
    if t.is_null() {
        outside(what);
    }
    // SAFETY: the record outlives every call the thread makes; 'static is
    // an over-statement callers never rely on beyond their own call.
    unsafe { &*t }
}

#[cold]
#[track_caller]
pub(crate) fn outside(what: &str) -> ! {
    panic!(
        "thread9: {what} called outside a thread9 program; start one with \
         thread9::run(|| ...) or thread9::threadmain(|args| ...)"
    )
}

/// The program id of the calling party: its thread's, its proc's (in the
/// scheduler), or 0 for a plain OS thread.
pub(crate) fn current_program_id() -> u64 {
    let t = current_ptr();
    if !t.is_null() {
        // SAFETY: the current thread is alive.
        return unsafe { (*t).program_id };
    }
    procs::local().map_or(0, |l| l.shared.program.id)
}

/// Parks the running thread until someone readies it.
///
/// # Safety
/// `t` is the running thread, and something will ready it (a claim won on
/// its waiter, or its own push onto the run queue).
#[inline(always)]
pub(crate) unsafe fn suspend(t: &Thread) {
    // SAFETY: the yielder was stored by the trampoline and lives on this
    // thread's stack, which is the one running.
    unsafe { (*t.yielder.get()).suspend(()) }
}

/// Makes a parked thread runnable: on the local run queue when it belongs
/// to the calling proc, else on its proc's inbox.
///
/// # Safety
/// `t` is parked, alive, and in no queue; the caller is the one agent
/// allowed to ready it.
pub(crate) unsafe fn ready(t: *const Thread) {
    // SAFETY: per the contract.
    unsafe {
        (*t).blocked.store(Block::None as u8, Ordering::Relaxed);
        match procs::local() {
            Some(l) if ptr::eq(std::sync::Arc::as_ptr(&l.shared), (*t).proc) => l.push_ready(t),
            _ => procs::ready_remote(t),
        }
    }
}

/// [`ready`] for a waker that knows it is the running thread `me`: the
/// common case, a partner in the same proc, needs no thread-local lookup.
///
/// # Safety
/// As for [`ready`]; `me` is the running thread.
#[inline(always)]
pub(crate) unsafe fn ready_from(t: *const Thread, me: &Thread) {
    // SAFETY: per the contract; `local` was set before either thread ran,
    // and equal locals mean `t` belongs to the proc running `me`, whose
    // run queue only this OS thread touches.
    unsafe {
        let l = (*t).local.load(Ordering::Relaxed);
        if l == me.local.load(Ordering::Relaxed) {
            (*t).blocked.store(Block::None as u8, Ordering::Relaxed);
            (*l).push_ready(t);
        } else {
            ready(t);
        }
    }
}

/// A killed thread reached a blocking point: unwind it, unless it is
/// unwinding already, in which case the operation must report
/// interruption (a second panic would abort the process).
#[cold]
pub(crate) fn die_or_report() -> bool {
    if std::thread::panicking() {
        return true;
    }
    panic::resume_unwind(Box::new(Unwind::Killed))
}

/// Records that an outsider may now wake the thread owning `w` (if `w`
/// belongs to a thread rather than a plain OS thread).
///
/// # Safety
/// `w` is linked into a queue whose lock the caller holds, so its owner is
/// blocked and alive.
pub(crate) unsafe fn mark_blocked_shared(w: *const Waiter) {
    // SAFETY: per the contract.
    unsafe {
        if let Some(t) = (*w).thread_ptr().as_ref() {
            t.blocked_shared.store(true, Ordering::Relaxed);
        }
    }
}

/// The body of every thread's coroutine.
pub(crate) fn trampoline<F: FnOnce() + 'static>(
    f: F,
) -> impl FnOnce(&Yielder<(), ()>, ()) -> Exit + 'static {
    move |y: &Yielder<(), ()>, ()| {
        // SAFETY: coroutines are resumed in one place only, the
        // scheduler's `run_thread`, which first makes their thread the
        // current one; a coroutine dropped before it ran never gets here.
        debug_assert!(!current_ptr().is_null());
        let t = unsafe { &*current_ptr() };
        t.yielder.set(y);
        if t.is_killed() {
            return Exit::Killed;
        }
        let exit = match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => Exit::Status(String::new()),
            Err(payload) => exit::classify(payload),
        };
        // Thread data goes in the thread itself: its destructors may block.
        let data = t.data.take();
        if data.capacity() == 0 {
            // Most threads never had any: skip even the call that would
            // drop the empty list (a ninth of `spawn`'s instructions).
            std::mem::forget(data);
            return exit;
        }
        match panic::catch_unwind(AssertUnwindSafe(move || drop(data))) {
            Ok(()) => exit,
            Err(payload) => match exit::classify(payload) {
                Exit::Panic(m) => Exit::Panic(m),
                _ => exit,
            },
        }
    }
}

/// Creates a thread in the calling proc and returns its id.
///
/// The new thread is appended to the proc's run queue; the caller keeps
/// running until it blocks or yields (`threadcreate` does not switch).
/// `stacksize` is rounded up to whole pages and to at least 32 KiB; 0 means
/// the default (256 KiB). The closure need not be `Send`: threads of one
/// proc never run in parallel, so they may share `Rc<RefCell<_>>`.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// thread9::run(|| {
///     let n = Rc::new(Cell::new(0));
///     let m = n.clone();
///     let c = thread9::Chan::new(0);
///     let d = c.clone();
///     thread9::threadcreate(move || { m.set(m.get() + 1); d.send(()).unwrap(); }, 0);
///     assert_eq!(n.get(), 0); // not run yet: threadcreate does not switch
///     c.recv().unwrap();
///     assert_eq!(n.get(), 1);
/// }).unwrap();
/// ```
pub fn threadcreate<F: FnOnce() + 'static>(f: F, stacksize: usize) -> ThreadId {
    let Some(l) = procs::local() else {
        outside("threadcreate");
    };
    l.spawn(f, stacksize, "")
}

/// The calling thread's id.
///
/// ```
/// thread9::run(|| assert_eq!(thread9::threadid(), 1)).unwrap();
/// ```
pub fn threadid() -> ThreadId {
    current("threadid").id
}

/// Names the calling thread; the name appears in [`threaddump`](crate::threaddump)
/// and in panic and stack-overflow reports.
///
/// ```
/// thread9::run(|| {
///     thread9::threadsetname("worker");
///     assert_eq!(thread9::threadgetname(), "worker");
/// }).unwrap();
/// ```
pub fn threadsetname(name: &str) {
    let t = current("threadsetname");
    let mut i = t.info.lock();
    i.name.clear();
    i.name.push_str(name);
}

/// The calling thread's name (`threadmain` for a program's first thread,
/// empty for others until set).
///
/// ```
/// thread9::run(|| {
///     assert_eq!(thread9::threadgetname(), "threadmain");
///     thread9::threadcreate(|| assert_eq!(thread9::threadgetname(), ""), 0);
/// }).unwrap();
/// ```
pub fn threadgetname() -> String {
    current("threadgetname").name()
}

/// Sets a free-form state string shown beside the thread in dumps.
///
/// ```
/// thread9::run(|| {
///     thread9::threadsetstate("warming up");
///     assert!(thread9::threaddump().contains("warming up"));
/// }).unwrap();
/// ```
pub fn threadsetstate(state: &str) {
    let t = current("threadsetstate");
    let mut i = t.info.lock();
    i.state.clear();
    i.state.push_str(state);
}
