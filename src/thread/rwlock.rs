//! `RWLock`: many readers or one writer, blocking only the calling thread.
//!
//! Waiters are served in arrival order: a reader that arrives while a
//! writer waits queues behind it, so a stream of readers cannot starve a
//! writer. When the lock frees, the oldest waiter gets it, and if that is a
//! reader, so do the readers right behind it.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};

use super::qlock::Interrupted;
use super::wait::{Block, Me, Outcome, Waiter, done};
use super::waitq::{Header, WaitQueue};

/// Plan 9's `RWLock`, owning the data it guards.
///
/// ```
/// use thread9::RWLock;
/// thread9::run(|| {
///     let l = RWLock::new(vec![1, 2]);
///     {
///         let (a, b) = (l.rlock(), l.rlock()); // readers share
///         assert_eq!(a.len() + b.len(), 4);
///         assert!(l.try_wlock().is_none());
///     }
///     l.wlock().push(3);
///     assert_eq!(*l.rlock(), [1, 2, 3]);
/// }).unwrap();
/// ```
pub struct RWLock<T: ?Sized> {
    hdr: Header,
    st: UnsafeCell<RwState>,
    data: UnsafeCell<T>,
}

struct RwState {
    readers: usize,
    writer: bool,
    /// Entries' `index`: READ or WRITE.
    q: WaitQueue,
}

const READ: usize = 0;
const WRITE: usize = 1;

// SAFETY: the state is only touched inside the header's critical section;
// the data is shared only among readers (hence `T: Sync`) or held by one
// writer, and moves between OS threads with the lock (`T: Send`).
unsafe impl<T: ?Sized + Send> Send for RWLock<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for RWLock<T> {}

/// Held while reading; releases when dropped.
///
/// ```
/// thread9::run(|| {
///     let l = thread9::RWLock::new(1);
///     let r = l.rlock();
///     assert_eq!(*r, 1);
///     assert!(l.try_wlock().is_none()); // a reader holds it
///     drop(r);
///     assert!(l.try_wlock().is_some());
/// }).unwrap();
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RLockGuard<'a, T: ?Sized> {
    lock: &'a RWLock<T>,
    _not_send: PhantomData<*const ()>,
}

/// Held while writing; releases when dropped.
///
/// ```
/// thread9::run(|| {
///     let l = thread9::RWLock::new(1);
///     let mut w = l.wlock();
///     *w += 1;
///     assert!(l.try_rlock().is_none()); // the writer holds it alone
///     drop(w);
///     assert_eq!(*l.try_rlock().unwrap(), 2);
/// }).unwrap();
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct WLockGuard<'a, T: ?Sized> {
    lock: &'a RWLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing a guard only shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RLockGuard<'_, T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Sync> Sync for WLockGuard<'_, T> {}

impl<T> RWLock<T> {
    /// An unlocked lock around `v`.
    ///
    /// ```
    /// thread9::run(|| {
    ///     let l = thread9::RWLock::new(5);
    ///     assert!(l.try_wlock().is_some()); // starts unlocked
    /// }).unwrap();
    /// ```
    pub fn new(v: T) -> RWLock<T> {
        RWLock {
            hdr: Header::new(),
            st: UnsafeCell::new(RwState {
                readers: 0,
                writer: false,
                q: WaitQueue::new(),
            }),
            data: UnsafeCell::new(v),
        }
    }

    /// The data, giving up the lock.
    ///
    /// ```
    /// thread9::run(|| {
    ///     let l = thread9::RWLock::new(Vec::new());
    ///     l.wlock().push(1);
    ///     assert_eq!(l.into_inner(), [1]);
    /// }).unwrap();
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: Default> Default for RWLock<T> {
    fn default() -> RWLock<T> {
        RWLock::new(T::default())
    }
}

impl<T: ?Sized> RWLock<T> {
    /// Locks for reading (Plan 9's `rlock`). A `threadint` does not end the
    /// wait; a kill does.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// use thread9::{RWLock, threadcreate, threadyield};
    /// thread9::run(|| {
    ///     let (l, seen) = (Rc::new(RWLock::new(0)), Rc::new(Cell::new(0)));
    ///     let mut w = l.wlock();
    ///     let (l2, s) = (l.clone(), seen.clone());
    ///     threadcreate(move || s.set(*l2.rlock()), 0);
    ///     threadyield(); // it waits: a writer holds the lock
    ///     *w = 7;
    ///     drop(w);
    ///     threadyield();
    ///     assert_eq!(seen.get(), 7);
    ///     let (a, b) = (l.rlock(), l.rlock()); // readers share
    ///     assert_eq!(*a + *b, 14);
    /// }).unwrap();
    /// ```
    pub fn rlock(&self) -> RLockGuard<'_, T> {
        while self.acquire(READ, false).is_err() {}
        self.rguard()
    }

    /// Locks for writing (Plan 9's `wlock`).
    ///
    /// ```
    /// use std::rc::Rc;
    /// use thread9::{RWLock, threadcreate, threadyield};
    /// thread9::run(|| {
    ///     let l = Rc::new(RWLock::new(Vec::new()));
    ///     let r = l.rlock();
    ///     let l2 = l.clone();
    ///     threadcreate(move || l2.wlock().push("writer"), 0);
    ///     threadyield(); // it waits for the reader to leave
    ///     assert!(l.try_rlock().is_none()); // new readers queue behind it
    ///     drop(r);
    ///     l.wlock().push("main");
    ///     assert_eq!(*l.rlock(), ["writer", "main"]);
    /// }).unwrap();
    /// ```
    pub fn wlock(&self) -> WLockGuard<'_, T> {
        while self.acquire(WRITE, false).is_err() {}
        self.wguard()
    }

    /// `rlock`, or [`Interrupted`] if the thread is interrupted while it
    /// waits.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// use thread9::{Interrupted, RWLock, threadcreate, threadint, threadyield};
    /// thread9::run(|| {
    ///     let (l, out) = (Rc::new(RWLock::new(())), Rc::new(Cell::new(None)));
    ///     let _w = l.wlock();
    ///     let (l2, o) = (l.clone(), out.clone());
    ///     let id = threadcreate(move || o.set(Some(l2.rlock_interruptible().map(drop))), 0);
    ///     threadyield(); // it waits for the writer
    ///     threadint(id);
    ///     threadyield();
    ///     assert_eq!(out.get(), Some(Err(Interrupted)));
    /// }).unwrap();
    /// ```
    pub fn rlock_interruptible(&self) -> Result<RLockGuard<'_, T>, Interrupted> {
        self.acquire(READ, true).map(|()| self.rguard())
    }

    /// `wlock`, or [`Interrupted`] if the thread is interrupted while it
    /// waits.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// use thread9::{Interrupted, RWLock, threadcreate, threadint, threadyield};
    /// thread9::run(|| {
    ///     let (l, out) = (Rc::new(RWLock::new(())), Rc::new(Cell::new(None)));
    ///     let _r = l.rlock();
    ///     let (l2, o) = (l.clone(), out.clone());
    ///     let id = threadcreate(move || o.set(Some(l2.wlock_interruptible().map(drop))), 0);
    ///     threadyield(); // it waits for the reader
    ///     assert!(l.try_rlock().is_none()); // and holds up new readers
    ///     threadint(id);
    ///     threadyield();
    ///     assert_eq!(out.get(), Some(Err(Interrupted)));
    ///     assert!(l.try_rlock().is_some()); // until it gives up
    /// }).unwrap();
    /// ```
    pub fn wlock_interruptible(&self) -> Result<WLockGuard<'_, T>, Interrupted> {
        self.acquire(WRITE, true).map(|()| self.wguard())
    }

    /// Locks for reading only if that needs no waiting (Plan 9's
    /// `canrlock`).
    ///
    /// ```
    /// thread9::run(|| {
    ///     let l = thread9::RWLock::new(0);
    ///     let r = l.try_rlock().unwrap();
    ///     assert!(l.try_rlock().is_some()); // readers share
    ///     drop(r);
    ///     let _w = l.wlock();
    ///     assert!(l.try_rlock().is_none()); // it would have to wait
    /// }).unwrap();
    /// ```
    pub fn try_rlock(&self) -> Option<RLockGuard<'_, T>> {
        self.try_acquire(READ).then(|| self.rguard())
    }

    /// Locks for writing only if the lock is free now (`canwlock`).
    ///
    /// ```
    /// thread9::run(|| {
    ///     let l = thread9::RWLock::new(0);
    ///     let r = l.rlock();
    ///     assert!(l.try_wlock().is_none()); // a reader holds it
    ///     drop(r);
    ///     let w = l.try_wlock().unwrap();
    ///     assert!(l.try_wlock().is_none());
    ///     drop(w);
    /// }).unwrap();
    /// ```
    pub fn try_wlock(&self) -> Option<WLockGuard<'_, T>> {
        self.try_acquire(WRITE).then(|| self.wguard())
    }

    /// The data, through exclusive access: no locking needed.
    ///
    /// ```
    /// thread9::run(|| {
    ///     let mut l = thread9::RWLock::new(1);
    ///     *l.get_mut() += 1; // `&mut` proves nobody holds the lock
    ///     assert_eq!(*l.rlock(), 2);
    /// }).unwrap();
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    fn rguard(&self) -> RLockGuard<'_, T> {
        RLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    fn wguard(&self) -> WLockGuard<'_, T> {
        WLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the lock in `mode` if that needs no waiting. Inside the
    /// critical section.
    fn take(st: &mut RwState, mode: usize) -> bool {
        // SAFETY (of first_live): the caller is inside the critical section.
        let queued = unsafe { st.q.first_live() }.is_some();
        let free = match mode {
            READ => !st.writer && !queued,
            _ => !st.writer && st.readers == 0 && !queued,
        };
        if free {
            if mode == READ {
                st.readers += 1;
            } else {
                st.writer = true;
            }
        }
        free
    }

    fn try_acquire(&self, mode: usize) -> bool {
        let me = Me::get();
        let h = self.hdr.enter(me);
        // SAFETY: inside the critical section.
        let got = Self::take(unsafe { &mut *self.st.get() }, mode);
        self.hdr.leave(h);
        got
    }

    fn acquire(&self, mode: usize, interruptible: bool) -> Result<(), Interrupted> {
        let me = Me::get();
        if me.kill_point() && interruptible {
            return Err(Interrupted);
        }
        let h = self.hdr.enter(me);
        // SAFETY: inside the critical section.
        let st = unsafe { &mut *self.st.get() };
        if Self::take(st, mode) {
            self.hdr.leave(h);
            return Ok(());
        }
        let mut e = MaybeUninit::uninit();
        me.waiter().prepare(&self.hdr);
        // SAFETY: inside the critical section; `e` stays in this frame
        // until unlinked (by a grant, or below).
        let ep = unsafe {
            st.q.push(e.as_mut_ptr(), me.waiter_ptr(), std::ptr::null_mut(), mode)
        };
        let what = if mode == READ {
            Block::RLock
        } else {
            Block::WLock
        };
        me.set_blocked(what, self.hdr.is_shared());
        self.hdr.leave(h);
        match me.waiter().park() {
            // A releaser granted the lock in our mode.
            Outcome::Done(_) => Ok(()),
            _ => {
                let h = self.hdr.enter(me);
                // SAFETY: inside the critical section; `ep` was queued here.
                let woken = unsafe {
                    let st = &mut *self.st.get();
                    st.q.remove(ep);
                    // Our leaving may let the waiters behind us in.
                    Self::grant(st)
                };
                self.hdr.leave(h);
                wake_all(&woken, &me);
                me.kill_point();
                Err(Interrupted)
            }
        }
    }

    /// Lets in the waiters at the head of the queue that the lock's state
    /// now admits: one writer, or a run of readers. Returns them to wake.
    ///
    /// # Safety
    /// Inside the critical section.
    unsafe fn grant(st: &mut RwState) -> Vec<*const Waiter> {
        let mut woken = Vec::new();
        // SAFETY: per the contract; first_live's entries are linked.
        unsafe {
            while let Some(e) = st.q.first_live() {
                let writer = (*e).index() == WRITE;
                if st.writer || (writer && st.readers > 0) {
                    break;
                }
                if !st.q.claim(e, done((*e).index())) {
                    continue; // interrupted just now
                }
                woken.push((*e).waiter);
                if writer {
                    st.writer = true;
                    break;
                }
                st.readers += 1;
            }
        }
        woken
    }

    fn release(&self, writer: bool) {
        let me = Me::get();
        let h = self.hdr.enter(me);
        // SAFETY: inside the critical section.
        let woken = unsafe {
            let st = &mut *self.st.get();
            if writer {
                st.writer = false;
            } else {
                st.readers -= 1;
            }
            Self::grant(st)
        };
        self.hdr.leave(h);
        wake_all(&woken, &me);
    }
}

fn wake_all(woken: &[*const Waiter], me: &Me) {
    for &w in woken {
        // SAFETY: each was claimed inside the critical section by `grant`.
        unsafe { Waiter::wake_from(w, me) };
    }
}

impl<T: ?Sized> Deref for RLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: readers only share the data.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Deref for WLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer holds the lock alone.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for WLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and `&mut self` makes this reference unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release(false);
    }
}

impl<T: ?Sized> Drop for WLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release(true);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RWLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_rlock() {
            Some(g) => f.debug_struct("RWLock").field("data", &&*g).finish(),
            None => f.debug_struct("RWLock").field("data", &"<locked>").finish(),
        }
    }
}
