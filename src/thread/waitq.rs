//! The parts every blocking object (channel, lock, rendez) is made of: a
//! spin lock with the facts deadlock detection needs, and intrusive queues
//! of the entries blocked parties keep (in their waiter, or on their
//! stacks).

use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use super::threads;
use super::wait::{Me, Waiter};
use crate::util::bias::{BiasedLock, Entered};

/// One blocked operation: a waiter, where its value lives, and which entry
/// of its alt this is. Lives in the blocked party's waiter (a lone send,
/// receive or lock) or on its stack (an alt's entries); linked into a
/// queue only while its owner waits, and touched only under the queue's
/// lock. A queued entry is never moved or copied.
#[repr(C)]
pub(crate) struct Entry {
    /// 32 bits, so that the entry fits in 40 bytes beside its waiter.
    /// First, beside `linked`, so that the two small fields share an
    /// aligned word. Laid out after the pointers, they were zeroed with
    /// one eight-byte store straddling `next`, which a partner's read of
    /// `index` soon after cannot be served from while it is still in the
    /// store buffer. Measured in rotated runs: qlock_thread 44 -> 40 ns.
    index: u32,
    linked: bool,
    pub(crate) waiter: *const Waiter,
    /// `*mut Option<T>` for channels: the value to send, or where the
    /// received value goes.
    pub(crate) slot: *mut (),
    prev: *mut Entry,
    next: *mut Entry,
}

impl Entry {
    pub(crate) const EMPTY: Entry = Entry {
        waiter: ptr::null(),
        slot: ptr::null_mut(),
        prev: ptr::null_mut(),
        next: ptr::null_mut(),
        index: 0,
        linked: false,
    };

    #[inline(always)]
    pub(crate) fn index(&self) -> usize {
        self.index as usize
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

    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Writes a fresh entry at `e` (for `waiter`, with `slot`, as entry
    /// `index` of its wait) and appends it, each field stored once: every
    /// wait queues this way, and writing the entry first and linking it
    /// after stored the links twice (and `linked` false, then true), a
    /// tenth of a lone send's stores.
    ///
    /// `index` must fit in 32 bits (an alt of four billion entries would
    /// not fit in memory anyway).
    ///
    /// # Safety
    /// Lock held; `e` is not linked anywhere and stays put until removed.
    #[inline(always)]
    pub(crate) unsafe fn push(
        &mut self,
        e: *mut Entry,
        waiter: *const Waiter,
        slot: *mut (),
        index: usize,
    ) -> *mut Entry {
        debug_assert!(index <= u32::MAX as usize);
        // SAFETY: per the contract, `e` is ours to write and every linked
        // entry is valid.
        unsafe {
            e.write(Entry {
                index: index as u32,
                linked: true,
                waiter,
                slot,
                prev: self.tail,
                next: ptr::null_mut(),
            });
            if self.tail.is_null() {
                self.head = e;
            } else {
                (*self.tail).next = e;
            }
            self.tail = e;
        }
        e
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
                let e = self.pop_front();
                if (*(*e).waiter).claim(code((*e).index())) {
                    return Some(e);
                }
            }
        }
        None
    }

    /// Unlinks the head, which `remove` would do with checks that cannot
    /// fail for it (it is linked, and first).
    ///
    /// # Safety
    /// Lock held; the queue is not empty.
    #[inline(always)]
    unsafe fn pop_front(&mut self) -> *mut Entry {
        // SAFETY: per the contract, the head and its successor are valid.
        unsafe {
            let e = self.head;
            let n = (*e).next;
            self.head = n;
            if n.is_null() {
                self.tail = ptr::null_mut();
            } else {
                (*n).prev = ptr::null_mut();
            }
            (*e).linked = false;
            e
        }
    }

    /// The oldest entry whose owner still waits; stale entries before it
    /// (owners already interrupted) are unlinked on the way.
    ///
    /// # Safety
    /// Lock held.
    pub(crate) unsafe fn first_live(&mut self) -> Option<*mut Entry> {
        // SAFETY: lock held, so linked entries are valid.
        unsafe {
            while !self.head.is_null() {
                let e = self.head;
                if (*(*e).waiter).is_waiting() {
                    return Some(e);
                }
                self.remove(e);
            }
        }
        None
    }

    /// Claims the linked entry `e` with `code` and unlinks it. False if its
    /// owner was claimed elsewhere meanwhile (the entry is unlinked then
    /// too).
    ///
    /// # Safety
    /// Lock held; `e` is linked into this queue.
    pub(crate) unsafe fn claim(&mut self, e: *mut Entry, code: usize) -> bool {
        // SAFETY: per the contract.
        unsafe {
            self.remove(e);
            (*(*e).waiter).claim(code)
        }
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

/// How an object was entered; give it back to [`Header::leave`].
#[must_use]
#[derive(Clone, Copy)]
pub(crate) struct Held {
    entered: Entered,
    /// This entry was an outsider's first touch: the caller must mark the
    /// threads blocked on the object (see [`mark_blocked_shared`]).
    pub(crate) shared_now: bool,
}

/// The lock and bookkeeping at the head of every blocking object: a
/// proc-biased lock (see [`crate::util::bias`]) that is never re-biased once
/// another proc has used the object, and the facts deadlock detection needs.
pub(crate) struct Header {
    lock: BiasedLock,
    /// The program that created the object; 0 for none.
    owner: u64,
    /// Touched by an OS thread outside the owning program (or created
    /// outside any): someone deadlock detection cannot see may act on it.
    shared: AtomicBool,
    pub(crate) named: AtomicBool,
}

impl Header {
    pub(crate) fn new() -> Header {
        let owner = threads::current_program_id();
        Header {
            lock: BiasedLock::new(false),
            owner,
            shared: AtomicBool::new(owner == 0),
            named: AtomicBool::new(false),
        }
    }

    /// A header for an object that a thread outside the program (one the
    /// library itself runs, say) will act on: deadlock detection must
    /// never count on it staying still.
    pub(crate) fn new_external() -> Header {
        let h = Header::new();
        h.shared.store(true, Ordering::Relaxed);
        h
    }

    #[inline]
    pub(crate) fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Relaxed)
    }

    /// Enters the object's critical section.
    #[inline(always)]
    pub(crate) fn enter(&self, me: Me) -> Held {
        let entered = self.lock.enter(me.proc());
        // The biased proc touched the object before it became biased, so
        // only a locked entry can be an outsider's first.
        let shared_now = !entered.biased && self.first_touch(me.program());
        Held {
            entered,
            shared_now,
        }
    }

    /// Enters the object's critical section on behalf of proc `proc` of
    /// program `program`, from that proc's scheduler (which has no
    /// current thread). Such an entry is never an outsider's first touch,
    /// which [`Held::shared_now`] would otherwise ask the caller to handle.
    pub(crate) fn enter_as(&self, proc: u64, program: u64) -> Held {
        let entered = self.lock.enter(proc);
        let first = !entered.biased && self.first_touch(program);
        debug_assert!(!first, "a proc of the owning program is no outsider");
        Held {
            entered,
            shared_now: false,
        }
    }

    #[inline(never)]
    fn first_touch(&self, program: u64) -> bool {
        let first = program != self.owner && !self.shared.load(Ordering::Relaxed);
        if first {
            self.shared.store(true, Ordering::Relaxed);
        }
        first
    }

    /// Leaves the critical section entered with `h`.
    #[inline(always)]
    pub(crate) fn leave(&self, h: Held) {
        self.lock.leave(h.entered);
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
