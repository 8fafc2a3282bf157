//! `Rendez`: sleep until woken, with a `QLock` released meanwhile (Plan 9's
//! `rsleep`/`rwakeup`, a condition variable).

use std::fmt;
use std::mem::MaybeUninit;

use super::qlock::{Interrupted, QLock, QLockGuard};
use super::wait::{Block, Me, Outcome, Waiter, done};
use super::waitq::{Header, WaitQueue};
use std::cell::UnsafeCell;

/// A rendezvous point: threads sleep on it holding a [`QLock`] (released
/// while they sleep, retaken before `sleep` returns) until another thread
/// wakes them. Sleepers are woken oldest first.
///
/// As with every condition variable, wake-ups are not a message: re-check
/// the condition in a loop.
///
/// ```
/// use std::sync::Arc;
/// use thread9::{QLock, Rendez, proccreate};
/// thread9::run(|| {
///     let state = Arc::new((QLock::new(false), Rendez::new()));
///     let s = state.clone();
///     proccreate(move || {
///         *s.0.lock() = true;
///         s.1.wakeup();
///     }, 0);
///     let (lock, r) = &*state;
///     let mut ready = lock.lock();
///     while !*ready {
///         ready = r.sleep(ready);
///     }
/// }).unwrap();
/// ```
pub struct Rendez {
    hdr: Header,
    q: UnsafeCell<WaitQueue>,
}

// SAFETY: the queue is only touched inside the header's critical section.
unsafe impl Send for Rendez {}
// SAFETY: as above.
unsafe impl Sync for Rendez {}

impl Default for Rendez {
    fn default() -> Rendez {
        Rendez::new()
    }
}

impl Rendez {
    /// A rendezvous point with no sleepers.
    ///
    /// ```
    /// thread9::run(|| {
    ///     let r = thread9::Rendez::new();
    ///     assert!(!r.wakeup()); // nobody to wake
    ///     assert_eq!(r.wakeupall(), 0);
    /// }).unwrap();
    /// ```
    pub fn new() -> Rendez {
        Rendez {
            hdr: Header::new(),
            q: UnsafeCell::new(WaitQueue::new()),
        }
    }

    /// Releases the lock held by `guard`, sleeps until woken, and returns
    /// with the lock held again (Plan 9's `rsleep`). A `threadint` ends the
    /// sleep early (as a spurious wake-up would); a kill ends the thread.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use thread9::{QLock, Rendez, threadcreate};
    /// thread9::run(|| {
    ///     let s = Rc::new((QLock::new(0), Rendez::new()));
    ///     let s2 = s.clone();
    ///     threadcreate(move || {
    ///         *s2.0.lock() = 1; // free: the sleeper released it
    ///         s2.1.wakeup();
    ///     }, 0);
    ///     let (lock, r) = &*s;
    ///     let mut g = lock.lock();
    ///     while *g == 0 {
    ///         g = r.sleep(g);
    ///     }
    ///     assert!(lock.try_lock().is_none()); // held again on return
    /// }).unwrap();
    /// ```
    pub fn sleep<'a, T: ?Sized>(&self, guard: QLockGuard<'a, T>) -> QLockGuard<'a, T> {
        self.wait(guard).0
    }

    /// `sleep`, also saying whether the sleep ended by an interrupt. The
    /// lock is held again either way.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// use thread9::{Interrupted, QLock, Rendez, threadcreate, threadint, threadyield};
    /// thread9::run(|| {
    ///     let s = Rc::new((QLock::new(()), Rendez::new()));
    ///     let (s2, out) = (s.clone(), Rc::new(Cell::new(None)));
    ///     let o = out.clone();
    ///     let id = threadcreate(move || {
    ///         let (_g, r) = s2.1.sleep_interruptible(s2.0.lock());
    ///         o.set(Some((r, s2.0.try_lock().is_none())));
    ///     }, 0);
    ///     threadyield(); // it sleeps
    ///     threadint(id);
    ///     threadyield();
    ///     assert_eq!(out.get(), Some((Err(Interrupted), true))); // lock held again
    ///     assert!(!s.1.wakeup()); // it is no longer asleep there
    /// }).unwrap();
    /// ```
    pub fn sleep_interruptible<'a, T: ?Sized>(
        &self,
        guard: QLockGuard<'a, T>,
    ) -> (QLockGuard<'a, T>, Result<(), Interrupted>) {
        self.wait(guard)
    }

    fn wait<'a, T: ?Sized>(
        &self,
        guard: QLockGuard<'a, T>,
    ) -> (QLockGuard<'a, T>, Result<(), Interrupted>) {
        let me = Me::get();
        // A killed thread dies here, its guard releasing the lock.
        if me.kill_point() {
            return (guard, Err(Interrupted));
        }
        let lock: &'a QLock<T> = guard.into_lock();
        let mut e = MaybeUninit::uninit();
        let h = self.hdr.enter(me);
        me.waiter().prepare(&self.hdr);
        // SAFETY: inside the critical section; `e` stays in this frame until
        // unlinked (by a wakeup, or below).
        let ep = unsafe {
            (*self.q.get()).push(e.as_mut_ptr(), me.waiter_ptr(), std::ptr::null_mut(), 0)
        };
        me.set_blocked(Block::Rendez, self.hdr.is_shared());
        self.hdr.leave(h);
        // Queued before the lock goes: a wakeup after the release finds us.
        lock.unlock();
        let out = me.waiter().park();
        let r = if let Outcome::Done(_) = out {
            Ok(())
        } else {
            let h = self.hdr.enter(me);
            // SAFETY: inside the critical section; `ep` was queued here.
            unsafe { (*self.q.get()).remove(ep) };
            self.hdr.leave(h);
            Err(Interrupted)
        };
        // (A killed thread unwinds in here, without the lock.)
        (lock.lock(), r)
    }

    /// Wakes the oldest sleeper (Plan 9's `rwakeup`); false if none slept.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use thread9::{QLock, Rendez, threadcreate, threadyield};
    /// thread9::run(|| {
    ///     let s = Rc::new((QLock::new(()), Rendez::new()));
    ///     let log = Rc::new(RefCell::new(Vec::new()));
    ///     for i in 0..2 {
    ///         let (s, log) = (s.clone(), log.clone());
    ///         threadcreate(move || { drop(s.1.sleep(s.0.lock())); log.borrow_mut().push(i) }, 0);
    ///     }
    ///     threadyield(); // both sleep
    ///     assert!(s.1.wakeup());
    ///     threadyield();
    ///     assert_eq!(*log.borrow(), [0]); // the oldest sleeper, alone
    ///     assert!(s.1.wakeup());
    ///     assert!(!s.1.wakeup()); // none left
    /// }).unwrap();
    /// ```
    pub fn wakeup(&self) -> bool {
        self.wake(1) == 1
    }

    /// Wakes every sleeper (`rwakeupall`); returns how many.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// use thread9::{QLock, Rendez, threadcreate, threadyield};
    /// thread9::run(|| {
    ///     let s = Rc::new((QLock::new(()), Rendez::new()));
    ///     let woken = Rc::new(Cell::new(0));
    ///     for _ in 0..3 {
    ///         let (s, woken) = (s.clone(), woken.clone());
    ///         threadcreate(move || { drop(s.1.sleep(s.0.lock())); woken.set(woken.get() + 1) }, 0);
    ///     }
    ///     threadyield(); // all three sleep
    ///     assert_eq!(s.1.wakeupall(), 3);
    ///     threadyield();
    ///     assert_eq!(woken.get(), 3);
    ///     assert_eq!(s.1.wakeupall(), 0);
    /// }).unwrap();
    /// ```
    pub fn wakeupall(&self) -> usize {
        self.wake(usize::MAX)
    }

    fn wake(&self, max: usize) -> usize {
        let me = Me::get();
        let mut woken = Vec::new();
        let h = self.hdr.enter(me);
        // SAFETY: inside the critical section.
        unsafe {
            while woken.len() < max {
                match (*self.q.get()).claim_first(done) {
                    Some(e) => woken.push((*e).waiter),
                    None => break,
                }
            }
        }
        self.hdr.leave(h);
        for &w in &woken {
            // SAFETY: claimed inside the critical section.
            unsafe { Waiter::wake_from(w, &me) };
        }
        woken.len()
    }
}

impl fmt::Debug for Rendez {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendez").finish_non_exhaustive()
    }
}
