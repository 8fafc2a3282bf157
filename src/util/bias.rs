//! Proc-biased locks.
//!
//! Most objects are used by the threads of one proc only, and for them even
//! an uncontended atomic exchange per operation is most of the cost. So
//! after [`BIAS_AFTER`] consecutive entries by one proc, a [`BiasedLock`]
//! is biased to it: that proc enters by setting `busy` with a plain store
//! and re-checking `bias`, ordered only by a compiler fence. Anyone else
//! takes the spin lock and, if the lock is biased, revokes the bias: it
//! clears `bias`, runs [`membarrier::fence`] (which makes the biased proc's
//! `busy` store visible, or makes that proc's re-check see the cleared bias
//! and fall back to the lock), and waits for `busy` to drop.
//!
//! A revocation costs a system call, so a lock revoked once is never biased
//! again unless it was made with `rebias`: channels shared between procs
//! thus pay one revocation, once, and those that alternate between procs
//! from the start are never biased at all; a proc's own thread list, read by
//! other procs only for dumps and kills, goes back to its owner.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, compiler_fence};

use super::membarrier;
use super::spin::SpinLock;

/// Consecutive locked entries by one proc after which the lock is biased
/// to that proc.
const BIAS_AFTER: u32 = 8;

/// A caller that must never be biased to: a plain OS thread, or a proc
/// that only looks at another proc's data.
pub(crate) const NO_PROC: u64 = u64::MAX;

/// How a lock was entered; give it back to [`BiasedLock::leave`]. It is the
/// only sure record of that: the biased proc sets `busy` before it checks
/// that it is still biased, so `busy` can be set for a moment while another
/// proc holds the lock.
#[must_use]
#[derive(Clone, Copy)]
pub(crate) struct Entered {
    pub(crate) biased: bool,
}

struct Track {
    last: u64,
    run: u32,
    revoked: bool,
}

pub(crate) struct BiasedLock {
    lock: SpinLock,
    /// Id of the proc that may enter without the lock; 0 for none.
    bias: AtomicU64,
    /// Set while the biased proc is inside.
    busy: AtomicBool,
    /// Who entered last and how often in a row; only under `lock`.
    track: UnsafeCell<Track>,
    rebias: bool,
}

// SAFETY: `track` is only touched with `lock` held; all else is atomic.
unsafe impl Sync for BiasedLock {}
// SAFETY: as above.
unsafe impl Send for BiasedLock {}

impl BiasedLock {
    pub(crate) const fn new(rebias: bool) -> BiasedLock {
        BiasedLock {
            lock: SpinLock::new(),
            bias: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            track: UnsafeCell::new(Track {
                last: 0,
                run: 0,
                revoked: false,
            }),
            rebias,
        }
    }

    /// Enters the critical section as proc `proc` (a proc id, or
    /// [`NO_PROC`]).
    #[inline(always)]
    pub(crate) fn enter(&self, proc: u64) -> Entered {
        let b = self.bias.load(Ordering::Relaxed);
        if b == proc {
            self.busy.store(true, Ordering::Relaxed);
            compiler_fence(Ordering::SeqCst);
            if self.bias.load(Ordering::Relaxed) == b {
                return Entered { biased: true };
            }
            self.busy.store(false, Ordering::Release);
        }
        self.enter_locked(proc)
    }

    #[inline(never)]
    fn enter_locked(&self, proc: u64) -> Entered {
        self.lock.lock();
        // SAFETY: the lock is held.
        let tr = unsafe { &mut *self.track.get() };
        let b = self.bias.load(Ordering::Relaxed);
        if b != 0 {
            if b != proc {
                self.revoke(tr);
            }
        } else if (!tr.revoked || self.rebias) && proc != NO_PROC {
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
        Entered { biased: false }
    }

    #[cold]
    fn revoke(&self, tr: &mut Track) {
        self.bias.store(0, Ordering::Relaxed);
        tr.revoked = true;
        tr.run = 0;
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

    /// Leaves the critical section entered with `e`.
    #[inline(always)]
    pub(crate) fn leave(&self, e: Entered) {
        if e.biased {
            self.busy.store(false, Ordering::Release);
        } else {
            // SAFETY: an unbiased Entered comes from enter_locked, which
            // took the lock.
            unsafe { self.lock.unlock() }
        }
    }
}

/// Data guarded by a [`BiasedLock`] that re-biases to its owner.
pub(crate) struct Biased<T> {
    lock: BiasedLock,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reached through a guard, which exists only inside
// the lock's critical section.
unsafe impl<T: Send> Sync for Biased<T> {}
// SAFETY: moving the lock moves the data with it.
unsafe impl<T: Send> Send for Biased<T> {}

impl<T> Biased<T> {
    pub(crate) const fn new(v: T) -> Biased<T> {
        Biased {
            lock: BiasedLock::new(true),
            data: UnsafeCell::new(v),
        }
    }

    /// Locks as proc `proc` (the owner passes its id; others [`NO_PROC`]).
    #[inline(always)]
    pub(crate) fn lock_as(&self, proc: u64) -> BiasedGuard<'_, T> {
        let e = self.lock.enter(proc);
        BiasedGuard { b: self, e }
    }
}

pub(crate) struct BiasedGuard<'a, T> {
    b: &'a Biased<T>,
    e: Entered,
}

impl<T> Deref for BiasedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only inside the critical section.
        unsafe { &*self.b.data.get() }
    }
}

impl<T> DerefMut for BiasedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and `&mut self` makes the reference unique.
        unsafe { &mut *self.b.data.get() }
    }
}

impl<T> Drop for BiasedGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.b.lock.leave(self.e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Counter {
        lock: BiasedLock,
        n: UnsafeCell<u64>,
    }
    // SAFETY: `n` is only touched inside the lock's critical section.
    unsafe impl Sync for Counter {}

    fn bump(c: &Counter, proc: u64) {
        let e = c.lock.enter(proc);
        // SAFETY: inside the critical section.
        unsafe { *c.n.get() += 1 };
        c.lock.leave(e);
    }

    #[test]
    fn a_biased_lock_stays_exclusive_through_revocation() {
        if !membarrier::wait_registered() {
            return; // no biasing on this kernel: nothing to revoke
        }
        let c = Arc::new(Counter {
            lock: BiasedLock::new(false),
            n: UnsafeCell::new(0),
        });
        for _ in 0..BIAS_AFTER + 1 {
            bump(&c, 1);
        }
        assert_eq!(c.lock.bias.load(Ordering::Relaxed), 1, "biased to proc 1");
        const N: u64 = 200_000;
        let other = {
            let c = c.clone();
            std::thread::spawn(move || (0..N).for_each(|_| bump(&c, 2)))
        };
        (0..N).for_each(|_| bump(&c, 1));
        other.join().unwrap();
        assert_eq!(c.lock.bias.load(Ordering::Relaxed), 0, "revoked for good");
        // SAFETY: both parties are done.
        assert_eq!(unsafe { *c.n.get() }, N * 2 + u64::from(BIAS_AFTER) + 1);
    }

    #[test]
    fn a_locked_entry_is_left_by_its_token_whatever_busy_says() {
        // The biased proc sets `busy` before it re-checks `bias`, so after
        // a revocation it can set `busy` for a moment while someone else
        // holds the lock. Inferring "entered biased" from `busy` then
        // leaves the lock held for ever (an alt once did that).
        if !membarrier::wait_registered() {
            return; // no biasing on this kernel
        }
        let c = Counter {
            lock: BiasedLock::new(false),
            n: UnsafeCell::new(0),
        };
        for _ in 0..BIAS_AFTER + 1 {
            bump(&c, 1);
        }
        assert_eq!(c.lock.bias.load(Ordering::Relaxed), 1, "biased to proc 1");
        let e = c.lock.enter(2); // revokes, takes the lock
        assert!(!e.biased);
        c.lock.busy.store(true, Ordering::Relaxed); // proc 1, between its load and re-check
        c.lock.leave(e);
        assert!(c.lock.lock.try_lock(), "the lock was given back");
        // SAFETY: taken just above.
        unsafe { c.lock.lock.unlock() };
        c.lock.busy.store(false, Ordering::Release); // proc 1's re-check fails
        bump(&c, 1);
        bump(&c, 2);
    }
}
