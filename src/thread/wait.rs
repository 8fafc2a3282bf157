//! How a thread (or a plain OS thread) blocks and is woken.
//!
//! Every blocking operation follows one protocol. The blocked party owns a
//! [`Waiter`] whose `state` is `WAITING` while it sleeps. Whoever wants to
//! complete or cancel the operation (a partner on a channel, `close`, an
//! interrupt) must first win a compare-and-swap from `WAITING` to an
//! outcome code; only the winner may touch the blocked party's slots, and
//! it wakes the party last. A woken party is therefore woken exactly once,
//! by the one agent that completed it, and never spuriously; losers simply
//! look for another partner. Slots and queue entries live on the blocked
//! party's stack and stay valid because it cannot run until it is woken.

use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use super::threads::{self, Thread};
use crate::util::futex;

const IDLE: usize = 0;
const WAITING: usize = 1;
const INTERRUPTED: usize = 2;

/// Outcome code: entry `i` was completed by a partner.
#[inline]
pub(crate) fn done(i: usize) -> usize {
    4 + 2 * i
}

/// Outcome code: entry `i`'s channel was closed.
#[inline]
pub(crate) fn closed(i: usize) -> usize {
    5 + 2 * i
}

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done(usize),
    Closed(usize),
    Interrupted,
}

fn decode(code: usize) -> Outcome {
    match code {
        INTERRUPTED => Outcome::Interrupted,
        c if c >= 4 && c % 2 == 0 => Outcome::Done((c - 4) / 2),
        c if c >= 5 => Outcome::Closed((c - 5) / 2),
        c => unreachable!("thread9: woken with state {c}"),
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
            _ => Block::None,
        }
    }
}

/// The wait state of a thread or of a plain OS thread.
pub(crate) struct Waiter {
    state: AtomicUsize,
    /// The thread to ready, or null for a plain OS thread, which sleeps on
    /// `os_woken` instead.
    thread: *const Thread,
    os_woken: AtomicU32,
}

// SAFETY: `thread` is only dereferenced by a waker that has won the claim,
// while the thread is parked and so still alive; everything else is atomic.
unsafe impl Sync for Waiter {}
// SAFETY: as above; the pointer is an identity, not an owner.
unsafe impl Send for Waiter {}

impl Waiter {
    pub(crate) const fn new(thread: *const Thread) -> Waiter {
        Waiter {
            state: AtomicUsize::new(IDLE),
            thread,
            os_woken: AtomicU32::new(0),
        }
    }

    /// The thread this waiter belongs to; null for a plain OS thread.
    pub(crate) fn thread_ptr(&self) -> *const Thread {
        self.thread
    }

    /// Marks the start of a wait. Must precede publishing any entry that
    /// points at this waiter.
    #[inline]
    pub(crate) fn prepare(&self) {
        if self.thread.is_null() {
            self.os_woken.store(0, Ordering::Relaxed);
        }
        self.state.store(WAITING, Ordering::Relaxed);
    }

    /// Tries to become the one agent that ends this wait, with outcome
    /// `code`. On success the caller must finish its transfer and then call
    /// [`Waiter::wake`].
    #[inline]
    pub(crate) fn claim(&self, code: usize) -> bool {
        self.state
            .compare_exchange(WAITING, code, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Interrupts the wait if there is one; true if this call ended it. The
    /// caller must then [`Waiter::wake`] it.
    #[inline]
    pub(crate) fn claim_interrupt(&self) -> bool {
        self.claim(INTERRUPTED)
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

    /// Sleeps until a claimant wakes this waiter; returns the outcome and
    /// leaves the waiter idle.
    pub(crate) fn park(&self) -> Outcome {
        if self.thread.is_null() {
            while self.os_woken.load(Ordering::Acquire) == 0 {
                futex::wait(&self.os_woken, 0);
            }
        } else {
            // SAFETY: a non-null `thread` is the calling thread itself.
            unsafe { threads::suspend(&*self.thread) };
        }
        let code = self.state.load(Ordering::Acquire);
        self.state.store(IDLE, Ordering::Relaxed);
        decode(code)
    }
}

thread_local! {
    /// The waiter of a plain OS thread that uses channels outside any
    /// program. Never dropped while its thread blocks (it cannot exit then).
    static OS_WAITER: Waiter = const { Waiter::new(ptr::null()) };
}

/// The calling party: a thread of some program, or a plain OS thread.
#[derive(Clone, Copy)]
pub(crate) struct Me {
    pub(crate) waiter: *const Waiter,
    pub(crate) thread: *const Thread,
    pub(crate) program: u64,
}

impl Me {
    #[inline]
    pub(crate) fn get() -> Me {
        let t = threads::current_ptr();
        if !t.is_null() {
            // SAFETY: the current thread is alive while it runs.
            let tr = unsafe { &*t };
            Me {
                waiter: &tr.waiter,
                thread: t,
                program: tr.program_id,
            }
        } else {
            Me {
                waiter: OS_WAITER.with(|w| w as *const Waiter),
                thread: ptr::null(),
                program: 0,
            }
        }
    }

    #[inline]
    pub(crate) fn waiter(&self) -> &Waiter {
        // SAFETY: either the current thread's own waiter or this OS thread's
        // thread-local one; both outlive the call that obtained `self`.
        unsafe { &*self.waiter }
    }

    #[inline]
    pub(crate) fn thread(&self) -> Option<&Thread> {
        // SAFETY: the current thread outlives any call it makes.
        unsafe { self.thread.as_ref() }
    }

    /// A blocking point: a killed thread ends here. Returns true when the
    /// thread was killed but is already unwinding (a destructor is using a
    /// channel): the operation must then fail as interrupted instead.
    #[inline]
    pub(crate) fn kill_point(&self) -> bool {
        match self.thread() {
            Some(t) if t.is_killed() => threads::die_or_report(),
            _ => false,
        }
    }

    /// Records what the thread is about to block on; call with the object's
    /// lock held, before publishing the wait.
    #[inline]
    pub(crate) fn set_blocked(&self, what: Block, obj: usize, shared: bool) {
        if let Some(t) = self.thread() {
            t.set_blocked(what, obj, shared);
        }
    }
}
