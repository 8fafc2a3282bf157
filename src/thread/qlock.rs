//! `QLock`: a lock that blocks only the calling thread.
//!
//! A `std::sync::Mutex` held across a blocking point stalls the whole proc
//! (or deadlocks it, when the holder's partner runs in the same proc).
//! A `QLock` makes a waiting thread park like a channel operation does, so
//! the proc's other threads run meanwhile; it works across procs too.
//!
//! Unlocking hands the lock straight to the oldest waiter (no barging), so
//! waiters are served in arrival order and none starves. `lock` waits until
//! it has the lock; `lock_interruptible` also ends on `threadint`.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};

use super::wait::{Block, Me, Outcome, Waiter, done};
use super::waitq::{Entry, Header, WaitQueue};

/// The error of an interruptible wait (a lock, a rendez sleep) ended by
/// [`threadint`](crate::threadint).
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// use thread9::{Interrupted, QLock, threadcreate, threadint, threadyield};
/// thread9::run(|| {
///     let l = Rc::new(QLock::new(()));
///     let _held = l.lock();
///     let (l2, out) = (l.clone(), Rc::new(Cell::new(None)));
///     let o = out.clone();
///     let id = threadcreate(move || o.set(l2.lock_interruptible().err()), 0);
///     threadyield(); // it queues for the lock
///     threadint(id);
///     threadyield();
///     assert_eq!(out.get(), Some(Interrupted));
///     assert_eq!(Interrupted.to_string(), "interrupted");
/// }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Plan 9's `QLock`, owning the data it guards.
///
/// ```
/// use std::sync::Arc;
/// use thread9::{QLock, Chan, proccreate, threadcreate, threadyield};
/// thread9::run(|| {
///     let count = Arc::new(QLock::new(0));
///     let done = Chan::new(0);
///     for _ in 0..4 {
///         let (c, d) = (count.clone(), done.clone());
///         proccreate(move || {
///             for _ in 0..100 {
///                 let mut g = c.lock();
///                 *g += 1;
///                 threadyield(); // holding it across a switch is fine
///             }
///             d.send(()).unwrap();
///         }, 0);
///     }
///     for _ in 0..4 { done.recv().unwrap(); }
///     assert_eq!(*count.lock(), 400);
/// }).unwrap();
/// ```
pub struct QLock<T: ?Sized> {
    hdr: Header,
    st: UnsafeCell<QState>,
    data: UnsafeCell<T>,
}

struct QState {
    locked: bool,
    q: WaitQueue,
}

// SAFETY: the state is only touched inside the header's critical section,
// and the data only by the one holder of the lock; T moves between OS
// threads with the lock, hence `T: Send`.
unsafe impl<T: ?Sized + Send> Send for QLock<T> {}
// SAFETY: as above; shared access to T is only ever by its single holder.
unsafe impl<T: ?Sized + Send> Sync for QLock<T> {}

/// Held while a [`QLock`] is locked; unlocks when dropped (also while
/// unwinding).
///
/// ```
/// use std::rc::Rc;
/// use thread9::{Chan, QLock, threadcreate, threadkill, threadyield};
/// thread9::run(|| {
///     let (l, c) = (Rc::new(QLock::new(0)), Chan::<()>::new(0));
///     let (l2, c2) = (l.clone(), c.clone());
///     let id = threadcreate(move || { let _g = l2.lock(); let _ = c2.recv(); }, 0);
///     threadyield(); // it takes the lock, then blocks in recv
///     assert!(l.try_lock().is_none());
///     threadkill(id);
///     threadyield(); // its stack unwinds, dropping the guard
///     *l.try_lock().unwrap() += 1;
/// }).unwrap();
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct QLockGuard<'a, T: ?Sized> {
    lock: &'a QLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing a guard only shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for QLockGuard<'_, T> {}

const GOT: u8 = 0;
const PARK: u8 = 1;
const GAVE_UP: u8 = 2;

impl<T> QLock<T> {
    /// An unlocked lock around `v`.
    ///
    /// ```
    /// thread9::run(|| {
    ///     let l = thread9::QLock::new(5);
    ///     assert_eq!(*l.try_lock().unwrap(), 5); // starts unlocked
    /// }).unwrap();
    /// ```
    pub fn new(v: T) -> QLock<T> {
        QLock {
            hdr: Header::new(),
            st: UnsafeCell::new(QState {
                locked: false,
                q: WaitQueue::new(),
            }),
            data: UnsafeCell::new(v),
        }
    }

    /// The data, giving up the lock.
    ///
    /// ```
    /// thread9::run(|| {
    ///     let l = thread9::QLock::new(Vec::new());
    ///     l.lock().push(1);
    ///     assert_eq!(l.into_inner(), [1]);
    /// }).unwrap();
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: Default> Default for QLock<T> {
    fn default() -> QLock<T> {
        QLock::new(T::default())
    }
}

impl<T: ?Sized> QLock<T> {
    /// Locks, waiting (only this thread) until the lock is free (Plan 9's
    /// `qlock`). A `threadint` does not end the wait; a kill does.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use thread9::{QLock, threadcreate, threadint, threadyield};
    /// thread9::run(|| {
    ///     let l = Rc::new(QLock::new(Vec::new()));
    ///     let mut g = l.lock();
    ///     let l2 = l.clone();
    ///     let id = threadcreate(move || l2.lock().push("waiter"), 0);
    ///     threadyield(); // it queues for the lock
    ///     threadint(id); // and goes on waiting
    ///     threadyield();
    ///     g.push("holder");
    ///     drop(g); // hands the lock to the waiter
    ///     assert_eq!(*l.lock(), ["holder", "waiter"]);
    /// }).unwrap();
    /// ```
    #[inline(always)]
    pub fn lock(&self) -> QLockGuard<'_, T> {
        loop {
            if let Ok(g) = self.acquire(false) {
                return g;
            }
        }
    }

    /// Locks, or fails with [`Interrupted`] if the thread is interrupted
    /// while it waits.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use thread9::{QLock, threadcreate, threadint, threadyield};
    /// thread9::run(|| {
    ///     let (l, log) = (Rc::new(QLock::new(())), Rc::new(RefCell::new(Vec::new())));
    ///     let g = l.lock();
    ///     let mut ids = Vec::new();
    ///     for _ in 0..2 {
    ///         let (l, log) = (l.clone(), log.clone());
    ///         ids.push(threadcreate(move || {
    ///             let got = l.lock_interruptible().is_ok();
    ///             log.borrow_mut().push(got);
    ///         }, 0));
    ///     }
    ///     threadyield(); // both queue for the lock
    ///     threadint(ids[0]);
    ///     drop(g); // the first waiter gave up: the second gets it
    ///     threadyield();
    ///     assert_eq!(*log.borrow(), [false, true]);
    /// }).unwrap();
    /// ```
    #[inline(always)]
    pub fn lock_interruptible(&self) -> Result<QLockGuard<'_, T>, Interrupted> {
        self.acquire(true)
    }

    /// Locks only if the lock is free now (Plan 9's `canqlock`).
    ///
    /// ```
    /// thread9::run(|| {
    ///     let l = thread9::QLock::new(0);
    ///     let g = l.try_lock().unwrap();
    ///     assert!(l.try_lock().is_none()); // held: fails at once, never waits
    ///     drop(g);
    ///     assert!(l.try_lock().is_some());
    /// }).unwrap();
    /// ```
    pub fn try_lock(&self) -> Option<QLockGuard<'_, T>> {
        let me = Me::get();
        let h = self.hdr.enter(me);
        // SAFETY: inside the critical section.
        let st = unsafe { &mut *self.st.get() };
        let got = !st.locked;
        st.locked = true;
        self.hdr.leave(h);
        got.then(|| self.guard())
    }

    /// The data, through exclusive access: no locking needed.
    ///
    /// ```
    /// thread9::run(|| {
    ///     let mut l = thread9::QLock::new(1);
    ///     *l.get_mut() += 1; // `&mut` proves nobody holds the lock
    ///     assert_eq!(*l.lock(), 2);
    /// }).unwrap();
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    fn guard(&self) -> QLockGuard<'_, T> {
        QLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    // Inlined so that the switch lands in the caller's frame (see
    // `Waiter::park`); `lock_start` and `unlock` too, as in `Chan::send`
    // (qlock_thread: 48.5 ns out of line, 38.8 inlined).
    #[inline(always)]
    fn acquire(&self, interruptible: bool) -> Result<QLockGuard<'_, T>, Interrupted> {
        let mut e = MaybeUninit::uninit();
        match self.lock_start(&mut e, interruptible) {
            GOT => Ok(self.guard()),
            GAVE_UP => Err(Interrupted),
            _ => {
                // SAFETY: PARK means `e` was written and queued.
                let w = unsafe { &*(*e.as_ptr()).waiter };
                match w.park() {
                    // The unlocker handed the lock over.
                    Outcome::Done(_) => Ok(self.guard()),
                    _ => {
                        self.lock_cancel(e.as_mut_ptr());
                        Err(Interrupted)
                    }
                }
            }
        }
    }

    /// Takes the lock if free, else queues `e` (PARK).
    #[inline(always)]
    fn lock_start(&self, e: &mut MaybeUninit<Entry>, interruptible: bool) -> u8 {
        let me = Me::get();
        // A killed thread dies here; one already unwinding still gets the
        // lock it asks for (its destructors may need it), unless it may
        // give up.
        if me.kill_point() && interruptible {
            return GAVE_UP;
        }
        let h = self.hdr.enter(me);
        // SAFETY: inside the critical section.
        let st = unsafe { &mut *self.st.get() };
        if !st.locked {
            st.locked = true;
            self.hdr.leave(h);
            return GOT;
        }
        me.waiter().prepare(&self.hdr);
        // SAFETY: inside the critical section; `e` lives in the caller's
        // frame until it is unlinked (by the unlocker or `lock_cancel`).
        unsafe {
            st.q.push(e.as_mut_ptr(), me.waiter_ptr(), std::ptr::null_mut(), 0)
        };
        me.set_blocked(Block::QLock, self.hdr.is_shared());
        self.hdr.leave(h);
        PARK
    }

    /// After an interrupted wait: leave the queue, then die if killed.
    #[cold]
    fn lock_cancel(&self, e: *mut Entry) {
        let me = Me::get();
        let h = self.hdr.enter(me);
        // SAFETY: inside the critical section; `e` was queued here. The
        // wait was claimed as interrupted, so the lock was not handed to
        // us, and while the lock is held a queue is all it needs.
        unsafe { (*self.st.get()).q.remove(e) };
        self.hdr.leave(h);
        me.kill_point();
    }

    /// Releases the lock: to the oldest waiter if there is one.
    #[inline(always)]
    pub(crate) fn unlock(&self) {
        let me = Me::get();
        let h = self.hdr.enter(me);
        // SAFETY: inside the critical section.
        let st = unsafe { &mut *self.st.get() };
        // SAFETY: inside the critical section.
        match unsafe { st.q.claim_first(done) } {
            Some(e) => {
                self.hdr.leave(h);
                // SAFETY: claimed inside the critical section; the lock
                // stays locked: it now belongs to the woken thread.
                unsafe { Waiter::wake_from((*e).waiter, &me) };
            }
            None => {
                st.locked = false;
                self.hdr.leave(h);
            }
        }
    }
}

impl<'a, T: ?Sized> QLockGuard<'a, T> {
    /// The lock this guard holds (for `Rendez::sleep`).
    pub(crate) fn into_lock(self) -> &'a QLock<T> {
        let l = self.lock;
        std::mem::forget(self);
        l
    }
}

impl<T: ?Sized> Deref for QLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while its thread holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for QLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and `&mut self` makes this reference unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for QLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for QLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_lock() {
            Some(g) => f.debug_struct("QLock").field("data", &&*g).finish(),
            None => f.debug_struct("QLock").field("data", &"<locked>").finish(),
        }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for QLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
