//! A test-and-test-and-set spin lock.
//!
//! Channel and run-queue critical sections are a handful of loads and
//! stores, so a lock that costs one atomic exchange to take and one store
//! to release beats a futex mutex. Procs may far outnumber cores, so a
//! waiter that keeps finding the lock taken yields its core: the holder may
//! have been preempted, and spinning would only delay it.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) struct SpinLock {
    locked: AtomicBool,
}

impl SpinLock {
    pub(crate) const fn new() -> SpinLock {
        SpinLock {
            locked: AtomicBool::new(false),
        }
    }

    #[inline]
    pub(crate) fn lock(&self) {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
    }

    #[cold]
    fn lock_slow(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if spins < 100 {
                    std::hint::spin_loop();
                    spins += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        !self.locked.load(Ordering::Relaxed)
            && self
                .locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// # Safety
    /// The caller must hold the lock.
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// Data guarded by a [`SpinLock`], for state that is read rarely from other
/// OS threads (thread names, proc thread lists).
pub(crate) struct Spin<T> {
    lock: SpinLock,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reached through a guard, and a guard exists only
// while the lock is held, so at most one OS thread touches it at a time.
unsafe impl<T: Send> Sync for Spin<T> {}
// SAFETY: moving the lock moves the data with it; no thread can hold a guard
// across the move because the guard borrows the Spin.
unsafe impl<T: Send> Send for Spin<T> {}

impl<T> Spin<T> {
    pub(crate) const fn new(v: T) -> Spin<T> {
        Spin {
            lock: SpinLock::new(),
            data: UnsafeCell::new(v),
        }
    }

    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        self.lock.lock();
        SpinGuard { spin: self }
    }

    /// The data, through exclusive access: no lock needed.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// For the stack-overflow handler, which must not wait for a lock its
    /// own (interrupted) thread may hold.
    pub(crate) fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        self.lock.try_lock().then_some(SpinGuard { spin: self })
    }
}

pub(crate) struct SpinGuard<'a, T> {
    spin: &'a Spin<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held.
        unsafe { &*self.spin.data.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while the lock is held, and `&mut
        // self` makes this the only reference through it.
        unsafe { &mut *self.spin.data.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: a guard is made only after taking the lock.
        unsafe { self.spin.lock.unlock() }
    }
}
