//! `Chan<T>`: a typed channel, buffered or not, usable from threads of any
//! proc and from plain OS threads.
//!
//! A channel is a lock, a FIFO buffer and two queues of blocked parties.
//! A blocked party keeps its value (or the place its value goes) in a slot
//! on its own stack; the partner that completes it moves the value straight
//! between slots under the channel lock, then wakes it (see
//! [`crate::thread::wait`]). No value is copied through the channel when a
//! receiver is already waiting, and none is ever dropped on the floor: a
//! send that fails returns its value in the error.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::error::{RecvError, SendError, TryRecvError, TrySendError};
use super::names;
use crate::thread::wait::{Block, Me, Outcome, Waiter, closed, done, fits_mail};
use crate::thread::waitq::{Entry, Header, Held, WaitQueue, mark_blocked_shared};

/// A channel: Plan 9's `Channel`, typed. Cloning gives another handle to
/// the same channel. `Send + Sync` when `T: Send`, so a channel of `Rc`s
/// stays within its proc.
///
/// ```
/// thread9::run(|| {
///     let c = thread9::Chan::new(2); // buffered: two sends need no receiver
///     c.send(1).unwrap();
///     c.send(2).unwrap();
///     assert_eq!(c.len(), 2);
///     c.close();
///     assert_eq!(c.recv(), Ok(1)); // a closed channel drains its buffer
///     assert_eq!(c.recv(), Ok(2));
///     assert_eq!(c.recv(), Err(thread9::RecvError::Closed));
///     assert_eq!(c.send(3), Err(thread9::SendError::Closed(3))); // nothing lost
/// }).unwrap();
/// ```
pub struct Chan<T> {
    pub(crate) inner: Arc<Inner<T>>,
}

/// `repr(C)`, like [`State`], so that the wait queues sit at the same
/// distance from the header whatever `T` is (see [`Waits::of`]).
#[repr(C)]
pub(crate) struct Inner<T> {
    pub(crate) hdr: Header,
    cap: usize,
    st: UnsafeCell<State<T>>,
}

#[repr(C)]
pub(crate) struct State<T> {
    pub(crate) w: Waits,
    buf: VecDeque<T>,
}

/// Where a channel's wait queues are, from its header.
const WAITS_OFFSET: usize = std::mem::offset_of!(Inner<()>, st);

// `Waits::of` relies on the offset not depending on the element type: the
// fields before `st` do not, and `State<T>` is 8-aligned for every `T`
// (its `VecDeque<T>` is a pointer and three words).
const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(Inner<[u8; 3]>, st) == WAITS_OFFSET);
    assert!(offset_of!(Inner<u128>, st) == WAITS_OFFSET);
    assert!(offset_of!(Inner<String>, st) == WAITS_OFFSET);
    assert!(offset_of!(State<u128>, w) == 0);
    assert!(offset_of!(Inner<u128>, hdr) == 0);
};

/// The part of a channel's state that does not depend on its element
/// type: an alt queues and dequeues on any channel through it, and
/// claims the partner of an unbuffered channel's operation, without a
/// virtual call.
pub(crate) struct Waits {
    pub(crate) closed: bool,
    sendq: WaitQueue,
    recvq: WaitQueue,
}

impl Waits {
    /// The wait queues of the channel whose header is `hdr`, a pointer
    /// made from the whole `Inner<T>` (not from a reference to its field).
    #[inline(always)]
    pub(crate) fn of(hdr: *const Header) -> *mut Waits {
        // `hdr` is the first field of an `Inner<T>`, and `w` the first of
        // its state (both `repr(C)`), at an offset that does not depend on
        // `T` (checked above). UnsafeCell<State<T>> has State<T>'s layout.
        hdr.cast::<u8>()
            .wrapping_add(WAITS_OFFSET)
            .cast::<Waits>()
            .cast_mut()
    }

    /// The queue of blocked senders, or of blocked receivers.
    #[inline(always)]
    fn queue(&mut self, send: bool) -> &mut WaitQueue {
        if send {
            &mut self.sendq
        } else {
            &mut self.recvq
        }
    }

    /// Queues a fresh entry at `e` (see [`WaitQueue::push`]).
    ///
    /// # Safety
    /// Lock held; `e` is not linked anywhere and stays put until dequeued.
    #[inline(always)]
    pub(crate) unsafe fn enqueue(
        &mut self,
        send: bool,
        e: *mut Entry,
        waiter: *const Waiter,
        slot: *mut (),
        index: usize,
    ) {
        // SAFETY: per the contract.
        unsafe { self.queue(send).push(e, waiter, slot, index) };
    }

    /// # Safety
    /// Lock held; `e` was enqueued here (it may have been unlinked since).
    #[inline(always)]
    pub(crate) unsafe fn dequeue(&mut self, send: bool, e: *mut Entry) {
        // SAFETY: per the contract.
        unsafe { self.queue(send).remove(e) }
    }

    /// Whether a send (or a receive) on an unbuffered channel might be
    /// done now: the channel is closed, or a partner is queued (who may
    /// have been claimed elsewhere meanwhile). False means it cannot be.
    /// Lock held.
    #[inline(always)]
    pub(crate) fn unbuffered_may_be_ready(&self, send: bool) -> bool {
        let q = if send { &self.recvq } else { &self.sendq };
        self.closed || !q.is_empty()
    }

    /// Claims the oldest queued partner of a send (or of a receive) that
    /// still waits, taking it off the queue.
    ///
    /// # Safety
    /// Lock held.
    #[inline(always)]
    pub(crate) unsafe fn claim_partner(&mut self, send: bool) -> Option<*mut Entry> {
        let q = if send {
            &mut self.recvq
        } else {
            &mut self.sendq
        };
        // SAFETY: lock held per the contract.
        unsafe { q.claim_first(done) }
    }

    fn mark_shared(&self) {
        // SAFETY: lock held.
        unsafe {
            mark_blocked_shared(&self.sendq);
            mark_blocked_shared(&self.recvq);
        }
    }

    /// Enters the channel whose header is `hdr`, noting an outsider's
    /// first touch: the one way in for [`Inner::lock`] and for an alt,
    /// which holds only headers.
    ///
    /// # Safety
    /// `hdr` points to the header of a live `Inner<T>`, derived from the
    /// whole record (see [`Waits::of`]).
    #[inline(always)]
    pub(crate) unsafe fn enter(hdr: *const Header, me: Me) -> Held {
        // SAFETY: per the contract; marking needs the lock, just taken.
        unsafe {
            let h = (*hdr).enter(me);
            if h.shared_now {
                (*Waits::of(hdr)).mark_shared();
            }
            h
        }
    }
}

// SAFETY: the state is only touched with the header's lock held; values of
// T move between OS threads, hence `T: Send`.
unsafe impl<T: Send> Send for Inner<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Inner<T> {}

pub(crate) struct Locked<'a, T> {
    inner: &'a Inner<T>,
    held: Held,
}

impl<T> Deref for Locked<'_, T> {
    type Target = State<T>;
    fn deref(&self) -> &State<T> {
        // SAFETY: a Locked exists only while the lock is held.
        unsafe { &*self.inner.st.get() }
    }
}

impl<T> DerefMut for Locked<'_, T> {
    fn deref_mut(&mut self) -> &mut State<T> {
        // SAFETY: as above, and `&mut self` makes this reference unique.
        unsafe { &mut *self.inner.st.get() }
    }
}

impl<T> Drop for Locked<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.inner.hdr.leave(self.held);
    }
}

/// What `send_start` and `recv_start` report.
const DONE: u8 = 0;
const PARK: u8 = 1;
const CLOSED: u8 = 2;
const INTERRUPTED: u8 = 3;

/// One send or receive: its value, and once it must wait, its waiter. A
/// waiting operation queues the waiter's own entry (see
/// [`Waiter::entry`]), and moves its value into the waiter's mailbox when
/// it fits (see [`Waiter::mail`]), so that the partner never touches this
/// thread's stack; a larger value waits here, in the frame of the
/// (inlined) operation, which stays put while the operation waits.
pub(crate) struct Pending<T> {
    slot: Option<T>,
    /// Set by `arm`, only when the operation must wait.
    w: *const Waiter,
}

impl<T> Pending<T> {
    #[inline(always)]
    fn new() -> Pending<T> {
        Pending {
            slot: None,
            w: ptr::null(),
        }
    }

    /// Fills in the waiter's entry (and a send's mailbox, or slot, with
    /// `sent`: the value of a send, None for a receive), starts the wait
    /// and records it (`what`) for dumps. The value comes straight from the
    /// caller's registers: staging it in the slot first would cost a store
    /// and a reload per send.
    ///
    /// # Safety
    /// `q` is the queues of the channel whose header is `hdr`, locked.
    /// `self` stays put until the operation ends, which is only after the
    /// entry is unlinked (by a partner, by close, or by the failure path).
    #[inline(always)]
    unsafe fn arm(&mut self, me: &Me, hdr: &Header, q: &mut Waits, sent: Option<T>, what: Block) {
        let send = sent.is_some();
        let w = me.waiter();
        let slot = if fits_mail::<T>() {
            let m = w.mail::<T>();
            if send {
                // SAFETY: the mailbox is free (its owner, the caller, is in
                // no wait), and `fits_mail` promised it is large and aligned
                // enough; `park` moves the value out again unless a
                // receiver took it.
                unsafe { m.write(sent) };
            }
            // A receive's mailbox stays uninitialised until a sender writes
            // its value: only a completed receive reads it.
            m
        } else {
            if send {
                self.slot = sent;
            }
            &raw mut self.slot
        };
        // SAFETY: the entry is free like the mailbox, and ours to write;
        // the lock is held per the contract.
        unsafe { q.queue(send).push(w.entry(), w, slot.cast(), 0) };
        w.prepare(hdr);
        me.set_blocked(what, hdr.is_shared());
        self.w = w;
    }

    /// Waits for the armed operation to end, and brings the value back
    /// from the mailbox if it is there: the one a completed receive got, or
    /// the one a send that no receiver took still holds.
    #[inline(always)]
    fn park(&mut self, send: bool) -> Outcome {
        // SAFETY: set by `arm` to the caller's own waiter.
        let w = unsafe { &*self.w };
        let out = w.park();
        if fits_mail::<T>() && matches!(out, Outcome::Done(_)) != send {
            // SAFETY: for a receive, the sender that completed the wait
            // wrote its value there before waking us; for a send, `arm`
            // moved the value in and a wait no receiver completed leaves it
            // untouched. Nobody touches the mailbox after waking us. (A
            // receiver that took a sent value left None, which needs no
            // drop.)
            self.slot = unsafe { w.mail::<T>().read() };
        }
        out
    }

    fn entry(&mut self) -> *mut Entry {
        // SAFETY: called only after `arm`, which set a live waiter.
        unsafe { (*self.w).entry() }
    }

    /// The value in the slot.
    #[inline(always)]
    fn take(&mut self) -> T {
        self.slot
            .take()
            .expect("thread9: the slot of a finished wait holds its value")
    }
}

/// Wakes the partner a completed operation claimed, after the lock is gone.
#[inline(always)]
fn wake(w: Option<*const Waiter>, me: &Me) {
    if let Some(w) = w {
        // SAFETY: `w` was claimed under the channel lock by this operation
        // and not woken yet.
        unsafe { Waiter::wake_from(w, me) }
    }
}

/// Takes the value out of a blocked sender's slot.
///
/// # Safety
/// `e` is a claimed send entry whose slot is an `Option<T>`.
#[inline]
unsafe fn take_sent<T>(e: *mut Entry) -> T {
    // SAFETY: per the contract.
    unsafe { (*(*e).slot.cast::<Option<T>>()).take() }
        .expect("thread9: a blocked sender holds a value")
}

impl<T> State<T> {
    /// Delivers `v` now, to a waiting receiver or into the buffer; gives it
    /// back if that would block. Returns the receiver to wake.
    #[inline(always)]
    pub(crate) fn try_send(&mut self, cap: usize, v: T) -> Result<Option<*const Waiter>, T> {
        // Receivers wait only while the buffer is empty.
        if cap == 0 || self.buf.is_empty() {
            // SAFETY: we hold the lock (we have &mut State through Locked
            // or an alt's lock set); a claimed receiver is parked and its
            // slot is an empty Option<T>.
            unsafe {
                if let Some(e) = self.w.claim_partner(true) {
                    ptr::write((*e).slot.cast::<Option<T>>(), Some(v));
                    return Ok(Some((*e).waiter));
                }
            }
        }
        if self.buf.len() < cap {
            self.buf.push_back(v);
            return Ok(None);
        }
        Err(v)
    }

    /// What [`Waits::unbuffered_may_be_ready`] tells, for any channel:
    /// false means a send (or a receive) cannot be done now. Senders queue
    /// only on a full buffer and receivers only on an empty one, so with a
    /// buffer the buffer alone decides.
    pub(crate) fn may_be_ready(&self, cap: usize, send: bool) -> bool {
        if cap == 0 {
            return self.w.unbuffered_may_be_ready(send);
        }
        self.w.closed
            || if send {
                self.buf.len() < cap
            } else {
                !self.buf.is_empty()
            }
    }

    /// Takes a value now, from the buffer or a waiting sender. A sender
    /// blocked on a full buffer moves its value into the freed place.
    #[inline(always)]
    pub(crate) fn try_recv(&mut self, cap: usize) -> Option<(T, Option<*const Waiter>)> {
        // SAFETY: lock held; a claimed sender is parked with a full slot.
        unsafe {
            if cap != 0 {
                if let Some(v) = self.buf.pop_front() {
                    if let Some(e) = self.w.claim_partner(false) {
                        self.buf.push_back(take_sent::<T>(e));
                        return Some((v, Some((*e).waiter)));
                    }
                    return Some((v, None));
                }
            }
            if let Some(e) = self.w.claim_partner(false) {
                return Some((take_sent::<T>(e), Some((*e).waiter)));
            }
        }
        None
    }
}

impl<T> Inner<T> {
    /// The channel's identity for names and dumps: its header's address,
    /// which is also what a wait on it records (see `Waiter::object`).
    #[inline]
    pub(crate) fn addr(&self) -> usize {
        ptr::from_ref(&self.hdr) as usize
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Enters the channel's critical section, noting an outsider's first
    /// touch.
    #[inline(always)]
    pub(crate) fn lock(&self, me: &Me) -> Locked<'_, T> {
        // SAFETY: `self` is alive, and the pointer is to the whole record.
        let held = unsafe { Waits::enter(ptr::from_ref(self).cast(), *me) };
        Locked { inner: self, held }
    }

    /// The state, for a caller that holds the lock by other means (alt).
    ///
    /// # Safety
    /// The lock is held and no other reference to the state is live.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn state(&self) -> &mut State<T> {
        // SAFETY: per the contract.
        unsafe { &mut *self.st.get() }
    }
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        if self.hdr.named.load(Ordering::Relaxed) {
            names::remove(self.addr());
        }
    }
}

impl<T> Chan<T> {
    /// Creates a channel with room for `nel` buffered values (Plan 9's
    /// `chancreate`); 0 makes it unbuffered, so that each send waits for a
    /// receive and vice versa.
    ///
    /// ```
    /// let c: thread9::Chan<u8> = thread9::Chan::new(3);
    /// assert_eq!(c.capacity(), 3);
    /// assert!(c.is_empty());
    /// ```
    pub fn new(nel: usize) -> Chan<T> {
        Chan::with_header(nel, Header::new())
    }

    /// A channel, like [`Chan::new`], that a plain OS thread (one that is
    /// no proc of the program: a `std::thread`, say) will use. Deadlock
    /// detection counts a thread blocked on it as one that may yet be
    /// woken, even before the OS thread has touched the channel; a channel
    /// made with `new` counts as shared only from that first touch, so a
    /// program whose threads all block on it before then is reported
    /// deadlocked (nothing it knows of could wake them).
    ///
    /// ```
    /// use std::time::Duration;
    /// thread9::run(|| {
    ///     let c = thread9::Chan::new_shared(0);
    ///     let d = c.clone();
    ///     std::thread::spawn(move || {
    ///         std::thread::sleep(Duration::from_millis(50)); // touches `d` only later
    ///         d.send("from outside").unwrap();
    ///     });
    ///     assert_eq!(c.recv(), Ok("from outside")); // not reported as a deadlock
    /// }).unwrap();
    /// ```
    pub fn new_shared(nel: usize) -> Chan<T> {
        Chan::with_header(nel, Header::new_external())
    }

    fn with_header(nel: usize, hdr: Header) -> Chan<T> {
        Chan {
            inner: Arc::new(Inner {
                hdr,
                cap: nel,
                st: UnsafeCell::new(State {
                    w: Waits {
                        closed: false,
                        sendq: WaitQueue::new(),
                        recvq: WaitQueue::new(),
                    },
                    buf: VecDeque::new(),
                }),
            }),
        }
    }

    /// Sends `v`, blocking the calling thread (only it: the other threads
    /// of its proc run meanwhile) until a receiver takes it or the buffer
    /// has room. Fails with the value when the channel is or gets closed,
    /// or when the thread is interrupted.
    ///
    /// ```
    /// thread9::run(|| {
    ///     let c = thread9::Chan::new(0);
    ///     let d = c.clone();
    ///     thread9::threadcreate(move || assert_eq!(d.recv(), Ok("ping")), 0);
    ///     c.send("ping").unwrap();
    /// }).unwrap();
    /// ```
    // Inlined so that the context switch lands in the caller's frame (see
    // `Waiter::park`). `send_start` is inlined too: out of line, saving and
    // restoring registers around its call was a fifth of the instructions
    // of a pingpong round trip (596 became 474 under callgrind; 70 ns
    // became 50). It still reports through `p` and a one-byte status, not
    // the result enum, which would cost a store-forwarding stall per call.
    #[inline(always)]
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        let mut p = Pending::new();
        match self.send_start(&mut p, v, true) {
            DONE => Ok(()),
            PARK => match p.park(true) {
                Outcome::Done(_) => Ok(()),
                out => self.send_failed(&mut p, out, true),
            },
            CLOSED => Err(SendError::Closed(p.take())),
            _ => Err(SendError::Interrupted(p.take())),
        }
    }

    /// Sends `v` now if possible (DONE), or fails (CLOSED, INTERRUPTED,
    /// value left in `p`); otherwise queues `p`, holding `v` (PARK).
    #[inline(always)]
    fn send_start(&self, p: &mut Pending<T>, v: T, dies: bool) -> u8 {
        let me = Me::get();
        if dies && me.kill_point() {
            p.slot = Some(v);
            return INTERRUPTED;
        }
        let inner = &*self.inner;
        let mut g = inner.lock(&me);
        if g.w.closed {
            p.slot = Some(v);
            return CLOSED;
        }
        match g.try_send(inner.cap, v) {
            Ok(w) => {
                drop(g);
                wake(w, &me);
                DONE
            }
            Err(v) => {
                // SAFETY: `g` holds the lock; `p` lives in the caller's
                // frame until the operation ends, which is only after the
                // entry is unlinked (by a partner, by close, or by
                // `send_failed`).
                unsafe { p.arm(&me, &inner.hdr, &mut g.w, Some(v), Block::Send) };
                PARK
            }
        }
    }

    #[cold]
    fn send_failed(
        &self,
        p: &mut Pending<T>,
        out: Outcome,
        dies: bool,
    ) -> Result<(), SendError<T>> {
        if out == Outcome::Interrupted {
            let me = Me::get();
            let mut g = self.inner.lock(&me);
            // SAFETY: lock held; the entry was queued on this channel.
            unsafe { g.w.dequeue(true, p.entry()) };
            drop(g);
            let v = p.take();
            if dies {
                me.kill_point();
            }
            Err(SendError::Interrupted(v))
        } else {
            Err(SendError::Closed(p.take()))
        }
    }

    /// Receives a value, blocking the calling thread until there is one.
    /// Fails when the channel is closed and drained, or when the thread is
    /// interrupted.
    ///
    /// ```
    /// thread9::run(|| {
    ///     let c = thread9::Chan::new(0);
    ///     let d = c.clone();
    ///     thread9::threadcreate(move || d.send(7).unwrap(), 0);
    ///     // Blocks until the thread above runs and sends.
    ///     assert_eq!(c.recv(), Ok(7));
    ///     c.close();
    ///     assert_eq!(c.recv(), Err(thread9::RecvError::Closed));
    /// }).unwrap();
    /// ```
    #[inline(always)]
    pub fn recv(&self) -> Result<T, RecvError> {
        let mut p = Pending::new();
        match self.recv_start(&mut p, true, Block::Recv) {
            DONE => Ok(p.take()),
            PARK => match p.park(false) {
                Outcome::Done(_) => Ok(p.take()),
                out => self.recv_failed(&mut p, out, true),
            },
            CLOSED => Err(RecvError::Closed),
            _ => Err(RecvError::Interrupted),
        }
    }

    /// Receives into `p` now if possible (DONE), or fails; otherwise
    /// queues `p` (PARK).
    #[inline(always)]
    fn recv_start(&self, p: &mut Pending<T>, dies: bool, what: Block) -> u8 {
        let me = Me::get();
        if dies && me.kill_point() {
            return INTERRUPTED;
        }
        let inner = &*self.inner;
        let mut g = inner.lock(&me);
        if let Some((v, w)) = g.try_recv(inner.cap) {
            drop(g);
            p.slot = Some(v);
            wake(w, &me);
            return DONE;
        }
        if g.w.closed {
            return CLOSED;
        }
        // SAFETY: as in `send_start`.
        unsafe { p.arm(&me, &inner.hdr, &mut g.w, None, what) };
        PARK
    }

    #[cold]
    fn recv_failed(&self, p: &mut Pending<T>, out: Outcome, dies: bool) -> Result<T, RecvError> {
        if out == Outcome::Interrupted {
            let me = Me::get();
            let mut g = self.inner.lock(&me);
            // SAFETY: lock held; the entry was queued on this channel.
            unsafe { g.w.dequeue(false, p.entry()) };
            drop(g);
            if dies {
                me.kill_point();
            }
            Err(RecvError::Interrupted)
        } else {
            Err(RecvError::Closed)
        }
    }

    /// `send` for the library's own handshakes that a kill must not cut
    /// short (an ioproc call in flight): a killed thread is not unwound
    /// here; the wait ends with `Interrupted` and the caller decides.
    pub(crate) fn send_undying(&self, v: T) -> Result<(), SendError<T>> {
        let mut p = Pending::new();
        match self.send_start(&mut p, v, false) {
            DONE => Ok(()),
            PARK => match p.park(true) {
                Outcome::Done(_) => Ok(()),
                out => self.send_failed(&mut p, out, false),
            },
            CLOSED => Err(SendError::Closed(p.take())),
            _ => Err(SendError::Interrupted(p.take())),
        }
    }

    /// `recv` counterpart of [`Chan::send_undying`]; dumps show the
    /// waiting thread as blocked in `what`.
    pub(crate) fn recv_undying(&self, what: Block) -> Result<T, RecvError> {
        let mut p = Pending::new();
        match self.recv_start(&mut p, false, what) {
            DONE => Ok(p.take()),
            PARK => match p.park(false) {
                Outcome::Done(_) => Ok(p.take()),
                out => self.recv_failed(&mut p, out, false),
            },
            CLOSED => Err(RecvError::Closed),
            _ => Err(RecvError::Interrupted),
        }
    }

    /// Sends `v` only if that needs no waiting: a receiver is blocked, or
    /// the buffer has room. Never blocks.
    ///
    /// ```
    /// use thread9::{Chan, TrySendError};
    /// let c = Chan::new(1);
    /// assert_eq!(c.nbsend('a'), Ok(()));
    /// // Full, and no receiver waits: the value comes back.
    /// assert_eq!(c.nbsend('b'), Err(TrySendError::Full('b')));
    /// c.close();
    /// assert_eq!(c.nbsend('c'), Err(TrySendError::Closed('c')));
    /// ```
    pub fn nbsend(&self, v: T) -> Result<(), TrySendError<T>> {
        let me = Me::get();
        let mut g = self.inner.lock(&me);
        if g.w.closed {
            return Err(TrySendError::Closed(v));
        }
        match g.try_send(self.inner.cap, v) {
            Ok(w) => {
                drop(g);
                wake(w, &me);
                Ok(())
            }
            Err(v) => Err(TrySendError::Full(v)),
        }
    }

    /// Receives a value only if one is there now. Never blocks.
    ///
    /// ```
    /// use thread9::{Chan, TryRecvError};
    /// let c = Chan::new(1);
    /// assert_eq!(c.nbrecv(), Err(TryRecvError::Empty));
    /// c.nbsend(5).unwrap();
    /// c.close();
    /// assert_eq!(c.nbrecv(), Ok(5)); // the buffer drains after close
    /// assert_eq!(c.nbrecv(), Err(TryRecvError::Closed));
    /// ```
    pub fn nbrecv(&self) -> Result<T, TryRecvError> {
        let me = Me::get();
        let mut g = self.inner.lock(&me);
        if let Some((v, w)) = g.try_recv(self.inner.cap) {
            drop(g);
            wake(w, &me);
            return Ok(v);
        }
        Err(if g.w.closed {
            TryRecvError::Closed
        } else {
            TryRecvError::Empty
        })
    }

    /// Closes the channel (Plan 9's `chanclose`): later sends fail,
    /// receives drain the buffer then fail, and every thread blocked on the
    /// channel is released with `Closed` (a blocked sender gets its value
    /// back). Returns true the first time.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// thread9::run(|| {
    ///     let c = thread9::Chan::<String>::new(0);
    ///     let got = Rc::new(RefCell::new(None));
    ///     let (d, g) = (c.clone(), got.clone());
    ///     thread9::threadcreate(move || *g.borrow_mut() = Some(d.send("kept".into())), 0);
    ///     thread9::threadyield(); // the sender blocks: nobody receives
    ///     assert!(c.close());
    ///     assert!(!c.close());
    ///     thread9::threadyield(); // released, with its value
    ///     assert_eq!(*got.borrow(), Some(Err(thread9::SendError::Closed("kept".into()))));
    /// }).unwrap();
    /// ```
    pub fn close(&self) -> bool {
        let me = Me::get();
        let mut g = self.inner.lock(&me);
        if g.w.closed {
            return false;
        }
        g.w.closed = true;
        let mut woken = Vec::new();
        // SAFETY: lock held; claimed entries' owners stay parked until the
        // wakes below.
        unsafe {
            while let Some(e) = g.w.sendq.claim_first(closed) {
                woken.push((*e).waiter);
            }
            while let Some(e) = g.w.recvq.claim_first(closed) {
                woken.push((*e).waiter);
            }
        }
        drop(g);
        for w in woken {
            wake(Some(w), &me);
        }
        true
    }

    /// Whether [`close`](Chan::close) was called.
    ///
    /// ```
    /// let c = thread9::Chan::<()>::new(0);
    /// assert!(!c.is_closed());
    /// c.clone().close(); // closes the channel, not the handle
    /// assert!(c.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.lock(&Me::get()).w.closed
    }

    /// Values in the buffer now.
    ///
    /// ```
    /// let c = thread9::Chan::new(4);
    /// c.nbsend(1).unwrap();
    /// c.nbsend(2).unwrap();
    /// assert_eq!(c.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.inner.lock(&Me::get()).buf.len()
    }

    /// True when no value is buffered.
    ///
    /// ```
    /// let c = thread9::Chan::new(1);
    /// assert!(c.is_empty());
    /// c.nbsend("x").unwrap();
    /// assert!(!c.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer's size: `nel` given to [`Chan::new`].
    ///
    /// ```
    /// assert_eq!(thread9::Chan::<i32>::new(0).capacity(), 0);
    /// assert_eq!(thread9::Chan::<i32>::new(8).capacity(), 8);
    /// ```
    pub fn capacity(&self) -> usize {
        self.inner.cap
    }

    /// Names the channel (Plan 9's `chansetname`); dumps then show threads
    /// blocked on it as `recv on <name>`.
    ///
    /// ```
    /// let c = thread9::Chan::<u32>::new(0);
    /// c.set_name("requests");
    /// assert_eq!(c.clone().name().as_deref(), Some("requests"));
    /// ```
    pub fn set_name(&self, name: &str) {
        names::set(self.inner.addr(), name);
        self.inner.hdr.named.store(true, Ordering::Relaxed);
    }

    /// The channel's name, if it has one.
    ///
    /// ```
    /// let c = thread9::Chan::<u32>::new(0);
    /// assert_eq!(c.name(), None);
    /// c.set_name("replies");
    /// assert_eq!(c.name().as_deref(), Some("replies"));
    /// ```
    pub fn name(&self) -> Option<String> {
        names::get(self.inner.addr())
    }

    /// Whether two handles refer to the same channel.
    ///
    /// ```
    /// let c = thread9::Chan::<u8>::new(0);
    /// assert!(c.same(&c.clone()));
    /// assert!(!c.same(&thread9::Chan::new(0)));
    /// ```
    pub fn same(&self, other: &Chan<T>) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl<T> Clone for Chan<T> {
    fn clone(&self) -> Chan<T> {
        Chan {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for Chan<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chan")
            .field("name", &self.name())
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("closed", &self.is_closed())
            .finish()
    }
}
