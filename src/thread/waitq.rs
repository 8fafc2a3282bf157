//! The parts every blocking object (channel, lock, rendez) is made of: a
//! spin lock with the facts deadlock detection needs, and intrusive queues
//! of the entries blocked parties keep on their own stacks.

use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, compiler_fence};

use super::threads;
use super::wait::{FOREIGN_PROC, Me, Waiter};
use crate::util::membarrier;
use crate::util::spin::SpinLock;

/// One blocked operation: a waiter, where its value lives, and which entry
/// of its alt this is. Lives on the blocked party's stack; linked into a
/// queue only while its owner waits, and touched only under the queue's
/// lock.
/// Copyable only so that arrays of unqueued entries can be built; a queued
/// entry is never moved or copied.
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) waiter: *const Waiter,
    /// `*mut Option<T>` for channels: the value to send, or where the
    /// received value goes.
    pub(crate) slot: *mut (),
    pub(crate) index: usize,
    prev: *mut Entry,
    next: *mut Entry,
    linked: bool,
}

impl Entry {
    pub(crate) const EMPTY: Entry = Entry {
        waiter: ptr::null(),
        slot: ptr::null_mut(),
        index: 0,
        prev: ptr::null_mut(),
        next: ptr::null_mut(),
        linked: false,
    };

    pub(crate) fn new(waiter: *const Waiter, slot: *mut (), index: usize) -> Entry {
        Entry {
            waiter,
            slot,
            index,
            ..Entry::EMPTY
        }
    }
}

/// A FIFO of blocked entries.
pub(crate) struct WaitQueue {
    head: *mut Entry,
    tail: *mut Entry,
}

impl WaitQueue {
    pub(crate) const fn new() -> WaitQueue {
        WaitQueue {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
        }
    }

    /// # Safety
    /// Lock held; `e` is unlinked and stays put until removed.
    #[inline]
    pub(crate) unsafe fn push(&mut self, e: *mut Entry) {
        // SAFETY: per the contract, `e` and every linked entry are valid.
        unsafe {
            (*e).prev = self.tail;
            (*e).next = ptr::null_mut();
            (*e).linked = true;
            if self.tail.is_null() {
                self.head = e;
            } else {
                (*self.tail).next = e;
            }
            self.tail = e;
        }
    }

    /// Unlinks `e` if it is still linked (a partner or `close` may have
    /// unlinked it already).
    ///
    /// # Safety
    /// Lock held; `e` is valid and, if linked, linked into this queue.
    #[inline]
    pub(crate) unsafe fn remove(&mut self, e: *mut Entry) {
        // SAFETY: per the contract.
        unsafe {
            if !(*e).linked {
                return;
            }
            let (p, n) = ((*e).prev, (*e).next);
            if p.is_null() {
                self.head = n;
            } else {
                (*p).next = n;
            }
            if n.is_null() {
                self.tail = p;
            } else {
                (*n).prev = p;
            }
            (*e).linked = false;
        }
    }

    /// Claims the oldest entry whose owner is still waiting, with outcome
    /// `code(entry.index)`, and unlinks it. Entries whose owners were
    /// already claimed through another channel (or interrupted) are
    /// unlinked on the way: their owners will find them gone.
    ///
    /// # Safety
    /// Lock held.
    #[inline]
    pub(crate) unsafe fn claim_first(&mut self, code: fn(usize) -> usize) -> Option<*mut Entry> {
        // SAFETY: lock held, so linked entries are valid; a claimed entry's
        // owner stays parked until woken.
        unsafe {
            while !self.head.is_null() {
                let e = self.head;
                self.remove(e);
                if (*(*e).waiter).claim(code((*e).index)) {
                    return Some(e);
                }
            }
        }
        None
    }

    /// # Safety
    /// Lock held.
    pub(crate) unsafe fn for_each(&self, mut f: impl FnMut(&Entry)) {
        let mut e = self.head;
        while !e.is_null() {
            // SAFETY: lock held, so linked entries are valid.
            unsafe {
                f(&*e);
                e = (*e).next;
            }
        }
    }
}

/// Consecutive locked entries by one proc after which an object is biased
/// to that proc.
const BIAS_AFTER: u32 = 8;

/// How an object was entered; give it back to [`Header::leave`].
#[must_use]
#[derive(Clone, Copy)]
pub(crate) struct Held {
    biased: bool,
    /// This entry was an outsider's first touch: the caller must mark the
    /// threads blocked on the object (see [`mark_blocked_shared`]).
    pub(crate) shared_now: bool,
}

struct Track {
    last: u64,
    run: u32,
    revoked: bool,
}

/// The lock and bookkeeping at the head of every blocking object.
///
/// The lock is *proc-biased*. Most objects are used by the threads of one
/// proc only, and for them even an uncontended atomic exchange per
/// operation is most of the cost. So after [`BIAS_AFTER`] consecutive
/// entries by one proc, the object is biased to it: that proc enters by
/// setting `busy` with a plain store and re-checking `bias`, ordered only by
/// a compiler fence. Anyone else takes the spin lock, and if the object is
/// biased, revokes the bias for good: it clears `bias`, runs
/// [`membarrier::fence`] (which makes the biased proc's `busy` store visible,
/// or makes that proc's re-check see the cleared bias and fall back to the
/// lock), and waits for `busy` to drop. Objects shared between procs thus
/// pay one revocation, once, and objects that alternate between procs from
/// the start are never biased at all.
pub(crate) struct Header {
    lock: SpinLock,
    /// Id of the proc that may enter without the lock; 0 for none.
    bias: AtomicU64,
    /// Set while the biased proc is inside.
    busy: AtomicBool,
    /// Who entered last and how often in a row; only under `lock`.
    track: UnsafeCell<Track>,
    /// The program that created the object; 0 for none.
    owner: u64,
    /// Touched by an OS thread outside the owning program (or created
    /// outside any): someone deadlock detection cannot see may act on it.
    shared: AtomicBool,
    pub(crate) named: AtomicBool,
}

// SAFETY: `track` is only touched with `lock` held; all else is atomic.
unsafe impl Sync for Header {}
// SAFETY: as above.
unsafe impl Send for Header {}

impl Header {
    pub(crate) fn new() -> Header {
        let owner = threads::current_program_id();
        Header {
            lock: SpinLock::new(),
            bias: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            track: UnsafeCell::new(Track {
                last: 0,
                run: 0,
                revoked: false,
            }),
            owner,
            shared: AtomicBool::new(owner == 0),
            named: AtomicBool::new(false),
        }
    }

    #[inline]
    pub(crate) fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Relaxed)
    }

    /// Enters the object's critical section.
    #[inline(always)]
    pub(crate) fn enter(&self, me: Me) -> Held {
        let b = self.bias.load(Ordering::Relaxed);
        if b == me.proc() {
            self.busy.store(true, Ordering::Relaxed);
            compiler_fence(Ordering::SeqCst);
            if self.bias.load(Ordering::Relaxed) == b {
                return Held {
                    biased: true,
                    shared_now: false,
                };
            }
            self.busy.store(false, Ordering::Release);
        }
        self.enter_locked(me)
    }

    #[inline(never)]
    fn enter_locked(&self, me: Me) -> Held {
        let (proc, program) = (me.proc(), me.program());
        self.lock.lock();
        // SAFETY: the lock is held.
        let tr = unsafe { &mut *self.track.get() };
        let b = self.bias.load(Ordering::Relaxed);
        if b != 0 {
            if b != proc {
                self.revoke(tr);
            }
        } else if !tr.revoked && proc != FOREIGN_PROC {
            if tr.last == proc {
                tr.run += 1;
                if tr.run >= BIAS_AFTER && membarrier::available() {
                    self.bias.store(proc, Ordering::Relaxed);
                }
            } else {
                tr.last = proc;
                tr.run = 1;
            }
        }
        let shared_now = program != self.owner && !self.shared.load(Ordering::Relaxed);
        if shared_now {
            self.shared.store(true, Ordering::Relaxed);
        }
        Held {
            biased: false,
            shared_now,
        }
    }

    #[cold]
    fn revoke(&self, tr: &mut Track) {
        self.bias.store(0, Ordering::Relaxed);
        tr.revoked = true;
        membarrier::fence();
        let mut spins = 0u32;
        while self.busy.load(Ordering::Acquire) {
            spins += 1;
            if spins < 100 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Leaves the critical section entered with `h`.
    #[inline(always)]
    pub(crate) fn leave(&self, h: Held) {
        if h.biased {
            self.busy.store(false, Ordering::Release);
        } else {
            // SAFETY: an unbiased Held comes from enter_locked, which took
            // the lock.
            unsafe { self.lock.unlock() }
        }
    }
}

/// Tells every thread blocked in `q` that an outsider may wake it now.
///
/// # Safety
/// The lock of the object owning `q` is held.
pub(crate) unsafe fn mark_blocked_shared(q: &WaitQueue) {
    // SAFETY: lock held per the contract; linked entries' waiters are alive.
    unsafe {
        q.for_each(|e| threads::mark_blocked_shared(e.waiter));
    }
}
