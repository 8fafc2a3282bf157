//! How a thread (or a plain OS thread) blocks and is woken.
//!
//! Every blocking operation follows one protocol. The blocked party owns a
//! [`Waiter`] whose `state` says "waiting" while it sleeps. Whoever wants to
//! complete or cancel the operation (a partner on a channel, `close`, an
//! interrupt) must first *claim* it, moving the state from waiting to an
//! outcome code; only the claimant may touch the blocked party's slots, and
//! it wakes the party last. A woken party is therefore woken exactly once,
//! by the one agent that completed it, and never spuriously; losers simply
//! look for another partner. Slots and queue entries stay valid because
//! the blocked party cannot run until it is woken. A lone operation keeps
//! its entry, and its value when small, in the waiter itself (see
//! [`Waiter::entry`]); an alt keeps its entries on its stack.
//!
//! Claims must exclude each other. A wait on one object (a send, a
//! receive, a lock, a rendez) is *exclusive*: every claim of it is made
//! inside that object's critical section, so a plain load and store
//! suffice, and an uncontended channel hand-off costs no atomic
//! read-modify-write. That includes interrupts: they are carried out by
//! the waiting thread's own proc (see [`Waiter::interrupt`]), which enters
//! the object like any partner. Only an alt's wait, queued on several
//! objects whose partners hold different locks, is claimed by
//! compare-and-swap.
//!
//! Each wait has its own "waiting" value (odd, counting the owner's waits),
//! so an interrupt requested for one wait can never end a later one.

use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use super::threads::{self, Thread};
use super::waitq::{Entry, Header};
use crate::util::bias::NO_PROC;
use crate::util::futex;

/// Not waiting. Waiting states are odd; outcome codes even and nonzero.
const IDLE: usize = 0;
const INTERRUPTED: usize = 2;

#[inline(always)]
fn is_waiting_state(s: usize) -> bool {
    s & 1 == 1
}

/// Outcome code: entry `i` was completed by a partner.
#[inline]
pub(crate) fn done(i: usize) -> usize {
    (i + 1) << 2
}

/// Outcome code: entry `i`'s channel was closed.
#[inline]
pub(crate) fn closed(i: usize) -> usize {
    ((i + 1) << 2) | 2
}

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done(usize),
    Closed(usize),
    Interrupted,
}

#[inline(always)]
fn decode(code: usize) -> Outcome {
    debug_assert!(
        code >= 4 && code & 1 == 0 || code == INTERRUPTED,
        "woken with state {code}"
    );
    if code == INTERRUPTED {
        Outcome::Interrupted
    } else if code & 2 == 0 {
        Outcome::Done((code >> 2) - 1)
    } else {
        Outcome::Closed((code >> 2) - 1)
    }
}

/// What a blocked thread waits on, for dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Block {
    None = 0,
    Recv,
    Send,
    Alt,
    QLock,
    RLock,
    WLock,
    Rendez,
    IoCall,
    Wait,
    Fd,
}

impl Block {
    pub(crate) fn from_u8(v: u8) -> Block {
        match v {
            1 => Block::Recv,
            2 => Block::Send,
            3 => Block::Alt,
            4 => Block::QLock,
            5 => Block::RLock,
            6 => Block::WLock,
            7 => Block::Rendez,
            8 => Block::IoCall,
            9 => Block::Wait,
            10 => Block::Fd,
            _ => Block::None,
        }
    }
}

/// `Waiter::lock` of a wait that is claimed by compare-and-swap.
const SHARED: *mut Header = ptr::null_mut();
/// `Waiter::lock` of an exclusive wait on no object (an alt of nops only),
/// which nothing but an interrupt can end.
const NO_OBJECT: *mut Header = ptr::dangling_mut();

/// The wait state of a thread or of a plain OS thread.
///
/// In order, so that what a partner touches to complete a lone operation
/// (the state, the lock, the thread, the entry and the mailbox) is the
/// first 88 bytes: a thread record places them in two cache lines (see
/// [`Thread`]).
#[repr(C)]
pub(crate) struct Waiter {
    state: AtomicUsize,
    /// For an exclusive wait, the header of the object waited on (whose
    /// critical section every claim is made in), or [`NO_OBJECT`];
    /// [`SHARED`] for a wait claimed by compare-and-swap.
    lock: AtomicPtr<Header>,
    /// The thread to ready, or null for a plain OS thread, which sleeps on
    /// `os_woken` instead.
    thread: *const Thread,
    /// The queue entry of a lone operation (see [`Waiter::entry`]).
    pub(super) entry: UnsafeCell<Entry>,
    /// Where the value of a lone channel operation waits when it fits (see
    /// [`Waiter::mail`]).
    pub(super) mail: UnsafeCell<MaybeUninit<[usize; MAIL_WORDS]>>,
    /// Waits begun so far; touched by the owner only.
    waits: Cell<usize>,
    os_woken: AtomicU32,
}

/// Words of a waiter's mailbox: three, so that `Option<T>` fits for any
/// `T` of up to two words and for `String`, `Vec` and `Box<[T]>`.
const MAIL_WORDS: usize = 3;

/// Whether a channel operation on `T` keeps its value in the mailbox.
#[inline(always)]
pub(crate) const fn fits_mail<T>() -> bool {
    size_of::<Option<T>>() <= MAIL_WORDS * size_of::<usize>()
        && align_of::<Option<T>>() <= align_of::<usize>()
}

// SAFETY: `thread` is only dereferenced by a waker that has won the claim,
// while the thread is parked and so still alive; `waits` is touched by the
// owner only; everything else is atomic.
unsafe impl Sync for Waiter {}
// SAFETY: as above; the pointer is an identity, not an owner.
unsafe impl Send for Waiter {}

impl Waiter {
    pub(crate) const fn new(thread: *const Thread) -> Waiter {
        Waiter {
            state: AtomicUsize::new(IDLE),
            lock: AtomicPtr::new(SHARED),
            thread,
            os_woken: AtomicU32::new(0),
            waits: Cell::new(0),
            entry: UnsafeCell::new(Entry::EMPTY),
            mail: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// The queue entry for a wait on one object. A party waits on one
    /// thing at a time, so one entry serves all its lone operations, and
    /// it lives here rather than on the party's stack: a partner that
    /// completes the operation then touches the party's thread record,
    /// which it must touch anyway to ready it, and not a page of its
    /// stack. Of a thousand parked threads' stacks, that page is rarely
    /// in the TLB: in the prime sieve, the second stack page a hop
    /// touched cost a page walk of about 40 ns.
    ///
    /// Its user writes it, queues it and dequeues it while it alone
    /// uses the waiter: between preparing a wait and that wait's end.
    #[inline(always)]
    pub(crate) fn entry(&self) -> *mut Entry {
        self.entry.get()
    }

    /// Room for an `Option<T>` that [`fits_mail`], for the same reason as
    /// [`Waiter::entry`]: a partner reads the value to send, or writes
    /// the one received, here and not on the party's stack. Uninitialised
    /// outside a wait; the owner moves the value in before it queues its
    /// entry and out when it wakes.
    #[inline(always)]
    pub(crate) fn mail<T>(&self) -> *mut Option<T> {
        debug_assert!(fits_mail::<T>());
        self.mail.get().cast()
    }

    /// The object of the owner's latest exclusive wait (its header's
    /// address), for dumps: while the owner waits on a channel, the
    /// channel. Only an address to look up, never to dereference: the
    /// owner may have moved on.
    pub(crate) fn object(&self) -> usize {
        self.lock.load(Ordering::Relaxed) as usize
    }

    /// The thread this waiter belongs to; null for a plain OS thread.
    pub(crate) fn thread_ptr(&self) -> *const Thread {
        self.thread
    }

    /// Marks the start of an exclusive wait on the object whose header is
    /// `lock`: every claim of it will be made inside that object's critical
    /// section. Must precede publishing the entry that points at this
    /// waiter.
    #[inline(always)]
    pub(crate) fn prepare(&self, lock: &Header) {
        self.begin(ptr::from_ref(lock).cast_mut());
    }

    /// Marks the start of a wait with entries on several objects (an alt):
    /// claimants hold different locks, so claims are compare-and-swaps.
    #[inline]
    pub(crate) fn prepare_shared(&self) {
        self.begin(SHARED);
    }

    /// Marks the start of a wait that only an interrupt can end.
    pub(crate) fn prepare_unqueued(&self) {
        self.begin(NO_OBJECT);
    }

    #[inline(always)]
    fn begin(&self, lock: *mut Header) {
        if self.thread.is_null() {
            self.os_woken.store(0, Ordering::Relaxed);
        }
        let n = self.waits.get().wrapping_add(1);
        self.waits.set(n);
        self.lock.store(lock, Ordering::Relaxed);
        self.state.store(n << 1 | 1, Ordering::Relaxed);
    }

    /// Tries to become the one agent that ends this wait, with outcome
    /// `code`. On success the caller must finish its transfer and then call
    /// [`Waiter::wake`].
    ///
    /// The caller is inside the critical section of the object on which it
    /// found this waiter's entry: for an exclusive wait that is the lock
    /// every claim is made under, so the state needs no atomic update.
    #[inline(always)]
    pub(crate) fn claim(&self, code: usize) -> bool {
        let s = self.state.load(Ordering::Relaxed);
        if !is_waiting_state(s) {
            return false;
        }
        if self.lock.load(Ordering::Relaxed) != SHARED {
            self.state.store(code, Ordering::Relaxed);
            return true;
        }
        self.state
            .compare_exchange(s, code, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Whether the owner waits (has not been claimed yet).
    #[inline]
    pub(crate) fn is_waiting(&self) -> bool {
        is_waiting_state(self.state.load(Ordering::Acquire))
    }

    /// The wait the owner is in now, if any: a value that names this wait
    /// and no later one, for [`Waiter::interrupt`].
    pub(crate) fn current_wait(&self) -> Option<usize> {
        let s = self.state.load(Ordering::Acquire);
        is_waiting_state(s).then_some(s)
    }

    /// Interrupts the wait named `which` (see [`Waiter::current_wait`]), or
    /// the current wait if `which` is None; true if this call ended it. The
    /// caller must then [`Waiter::wake`] the owner.
    ///
    /// # Safety
    /// Called on the OS thread of the proc that the owner (a thread, not a
    /// plain OS thread) belongs to, while the owner is not running: then a
    /// waiting owner is parked, and the object it waits on outlives the
    /// wait, since the owner's frame borrows it until the owner runs again.
    pub(crate) unsafe fn interrupt(&self, which: Option<usize>, proc: u64, program: u64) -> bool {
        let s = self.state.load(Ordering::Acquire);
        if !is_waiting_state(s) || which.is_some_and(|w| w != s) {
            return false;
        }
        let lock = self.lock.load(Ordering::Relaxed);
        if lock == SHARED {
            return self
                .state
                .compare_exchange(s, INTERRUPTED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
        }
        if lock == NO_OBJECT {
            // Nothing else can claim such a wait.
            self.state.store(INTERRUPTED, Ordering::Relaxed);
            return true;
        }
        // SAFETY: the owner is parked in wait `s` on this object (it cannot
        // have moved on: it has not run since), so the object is alive.
        let h = unsafe { &*lock };
        let held = h.enter_as(proc, program);
        // A partner on another proc may have claimed the wait meanwhile.
        let won = self.state.load(Ordering::Relaxed) == s;
        if won {
            self.state.store(INTERRUPTED, Ordering::Relaxed);
        }
        h.leave(held);
        won
    }

    /// Wakes the owner of a claimed waiter.
    ///
    /// # Safety
    /// The caller must have won [`Waiter::claim`] for the current wait and
    /// not woken it yet. After this call it must not touch the waiter, its
    /// entries or its slots again.
    #[inline]
    pub(crate) unsafe fn wake(w: *const Waiter) {
        // SAFETY: the claim keeps the owner parked, so the waiter is alive.
        let thread = unsafe { (*w).thread };
        if !thread.is_null() {
            // SAFETY: a parked thread is alive and not in any run queue.
            unsafe { threads::ready(thread) };
        } else {
            // SAFETY: as above, the waiter is alive until the store below;
            // after it the owner may return, so only the address is used.
            unsafe {
                let word = &raw const (*w).os_woken;
                (*word).store(1, Ordering::Release);
                futex::wake(word, 1);
            }
        }
    }

    /// [`Waiter::wake`] by the running party `me`.
    ///
    /// # Safety
    /// As for [`Waiter::wake`].
    #[inline(always)]
    pub(crate) unsafe fn wake_from(w: *const Waiter, me: &Me) {
        // SAFETY: per the contract.
        unsafe {
            let t = (*w).thread;
            match me.thread() {
                Some(m) if !t.is_null() => threads::ready_from(t, m),
                _ => Waiter::wake(w),
            }
        }
    }

    /// Sleeps until a claimant wakes this waiter; returns the outcome and
    /// leaves the waiter idle.
    ///
    /// Inlined into every blocking operation on purpose: each stack frame
    /// between the user's call and the context switch costs a mispredicted
    /// return on every switch (the CPU's return-address predictor cannot
    /// follow a change of stacks), which is worth more than the code size.
    #[inline(always)]
    pub(crate) fn park(&self) -> Outcome {
        if self.thread.is_null() {
            self.park_os();
        } else {
            // SAFETY: a non-null `thread` is the calling thread itself.
            unsafe { threads::suspend(&*self.thread) };
        }
        let code = self.state.load(Ordering::Acquire);
        self.state.store(IDLE, Ordering::Relaxed);
        decode(code)
    }

    #[inline(never)]
    fn park_os(&self) {
        while self.os_woken.load(Ordering::Acquire) == 0 {
            futex::wait(&self.os_woken, 0);
        }
    }
}

thread_local! {
    /// The waiter of a plain OS thread that uses channels outside any
    /// program. Never dropped while its thread blocks (it cannot exit then).
    static OS_WAITER: Waiter = const { Waiter::new(ptr::null()) };
}

/// The calling party: a thread of some program, or (null) a plain OS
/// thread. One pointer, passed by value: hot paths must not spill it.
#[derive(Clone, Copy)]
pub(crate) struct Me {
    thread: *const Thread,
}

impl Me {
    #[inline(always)]
    pub(crate) fn get() -> Me {
        Me {
            thread: threads::current_ptr(),
        }
    }

    #[inline(always)]
    pub(crate) fn thread(&self) -> Option<&Thread> {
        // SAFETY: the current thread outlives any call it makes.
        unsafe { self.thread.as_ref() }
    }

    #[inline(always)]
    pub(crate) fn waiter(&self) -> &Waiter {
        match self.thread() {
            Some(t) => &t.waiter,
            None => os_waiter(),
        }
    }

    #[inline(always)]
    pub(crate) fn waiter_ptr(&self) -> *const Waiter {
        self.waiter()
    }

    /// The caller's proc id, for biased locks.
    #[inline(always)]
    pub(crate) fn proc(&self) -> u64 {
        match self.thread() {
            Some(t) => t.proc_id,
            None => NO_PROC,
        }
    }

    /// The caller's program id; 0 for a plain OS thread.
    #[inline(always)]
    pub(crate) fn program(&self) -> u64 {
        self.thread().map_or(0, |t| t.program_id)
    }

    /// [`Thread::kill_point`] for the caller; a plain OS thread cannot be
    /// killed.
    #[inline(always)]
    pub(crate) fn kill_point(&self) -> bool {
        self.thread().is_some_and(Thread::kill_point)
    }

    /// Records what the thread is about to block on; call inside the
    /// object's critical section, before publishing the wait.
    #[inline(always)]
    pub(crate) fn set_blocked(&self, what: Block, shared: bool) {
        if let Some(t) = self.thread() {
            t.set_blocked(what, shared);
        }
    }
}

#[cold]
fn os_waiter() -> &'static Waiter {
    // SAFETY: the thread-local lives until this OS thread exits, and a
    // blocked OS thread cannot exit; callers use it only while they run.
    OS_WAITER.with(|w| unsafe { &*(w as *const Waiter) })
}
