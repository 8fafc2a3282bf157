//! `Alt`: wait for the first of several channel operations.
//!
//! An alt locks all its channels at once, in address order (so that two
//! alts over the same channels cannot deadlock each other), scans its
//! entries in a random order and performs the first ready one. If none is
//! ready it queues an entry on every channel and sleeps, still holding all
//! the locks until every entry is queued: so no partner can ever see this
//! thread half-registered, and the first partner to claim it (see
//! [`crate::thread::wait`]) is the only one. Woken, it takes its remaining
//! entries off the other channels before returning, leaving no trace there.

use std::marker::PhantomData;
use std::ptr;

use super::chan::{Chan, Inner};
use super::error::AltError;
use crate::thread::wait::{Block, Me, Outcome, Waiter};
use crate::thread::waitq::{Entry, Header, Held};
use crate::util::rng;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Send,
    Recv,
}

/// What an alt needs of a channel, with its element type erased.
pub(crate) trait Port {
    fn header(&self) -> &Header;
    fn addr(&self) -> usize;
    /// # Safety
    /// Lock held.
    unsafe fn mark_shared(&self);
    /// # Safety
    /// `slot` points to an `Option<T>` of this channel's `T`.
    unsafe fn reset_slot(&self, slot: *mut ());
    /// # Safety
    /// As for `reset_slot`.
    unsafe fn slot_full(&self, slot: *mut ()) -> bool;
    /// Performs the operation now if it is ready.
    ///
    /// # Safety
    /// Lock held; `slot` as above, empty for a receive.
    unsafe fn try_op(&self, send: bool, slot: *mut ()) -> Ready;
    /// # Safety
    /// Lock held; `e` stays put until dequeued.
    unsafe fn enqueue(&self, send: bool, e: *mut Entry);
    /// # Safety
    /// Lock held; `e` was enqueued here.
    unsafe fn dequeue(&self, send: bool, e: *mut Entry);
}

pub(crate) enum Ready {
    No,
    Done(Option<*const Waiter>),
    Closed,
}

impl<T> Port for Inner<T> {
    fn header(&self) -> &Header {
        &self.hdr
    }

    fn addr(&self) -> usize {
        Inner::addr(self)
    }

    unsafe fn mark_shared(&self) {
        // SAFETY: lock held per the contract.
        unsafe { self.state().mark_shared() }
    }

    unsafe fn reset_slot(&self, slot: *mut ()) {
        // SAFETY: per the contract.
        unsafe { *slot.cast::<Option<T>>() = None }
    }

    unsafe fn slot_full(&self, slot: *mut ()) -> bool {
        // SAFETY: per the contract.
        unsafe { (*slot.cast::<Option<T>>()).is_some() }
    }

    unsafe fn try_op(&self, send: bool, slot: *mut ()) -> Ready {
        // SAFETY: lock held and slot typed per the contract.
        unsafe {
            let st = self.state();
            let slot = slot.cast::<Option<T>>();
            if send {
                if st.closed {
                    return Ready::Closed;
                }
                let v = (*slot)
                    .take()
                    .expect("thread9: alt send slot holds a value");
                match st.try_send(self.cap(), v) {
                    Ok(w) => Ready::Done(w),
                    Err(v) => {
                        ptr::write(slot, Some(v));
                        Ready::No
                    }
                }
            } else {
                match st.try_recv(self.cap()) {
                    Some((v, w)) => {
                        ptr::write(slot, Some(v));
                        Ready::Done(w)
                    }
                    None if st.closed => Ready::Closed,
                    None => Ready::No,
                }
            }
        }
    }

    unsafe fn enqueue(&self, send: bool, e: *mut Entry) {
        // SAFETY: per the contract.
        unsafe { self.state().enqueue(send, e) }
    }

    unsafe fn dequeue(&self, send: bool, e: *mut Entry) {
        // SAFETY: per the contract.
        unsafe { self.state().dequeue(send, e) }
    }
}

#[derive(Clone, Copy)]
struct AltEntry<'a> {
    port: Option<&'a dyn Port>,
    slot: *mut (),
    op: Op,
}

const NOP: AltEntry<'static> = AltEntry {
    port: None,
    slot: ptr::null_mut(),
    op: Op::Recv,
};

/// A short vector that lives on the stack up to `N` elements: most alts
/// have two or three entries, and an allocation would cost as much as the
/// whole operation.
struct Small<T: Copy, const N: usize> {
    a: [T; N],
    n: usize,
    v: Vec<T>,
}

impl<T: Copy, const N: usize> Small<T, N> {
    fn new(fill: T) -> Self {
        Small {
            a: [fill; N],
            n: 0,
            v: Vec::new(),
        }
    }

    fn push(&mut self, x: T) {
        if self.n < N && self.v.is_empty() {
            self.a[self.n] = x;
        } else {
            if self.v.is_empty() {
                self.v.extend_from_slice(&self.a[..self.n]);
            }
            self.v.push(x);
        }
        self.n += 1;
    }

    fn as_slice(&self) -> &[T] {
        if self.v.is_empty() {
            &self.a[..self.n]
        } else {
            &self.v
        }
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        if self.v.is_empty() {
            &mut self.a[..self.n]
        } else {
            &mut self.v
        }
    }
}

/// Plan 9's `alt`: a set of send and receive entries, of which the first
/// ready one is performed.
///
/// Entries are numbered in the order they are added; [`alt`](Alt::alt)
/// returns the index of the one it performed. When several are ready it
/// picks one uniformly at random. A receive entry stores its value in its
/// slot (the slots of receive entries are emptied when the alt starts); a
/// send entry takes its value out of its slot only if it is the one
/// performed. An entry whose channel is closed is ready and reports
/// [`AltError::Closed`].
///
/// ```
/// use thread9::{Alt, Chan};
/// thread9::run(|| {
///     let (a, b) = (Chan::<i32>::new(0), Chan::<&str>::new(1));
///     b.send("hi").unwrap();
///     let (mut x, mut y) = (None, None);
///     let mut alt = Alt::new();
///     alt.recv(&a, &mut x).recv(&b, &mut y);
///     assert_eq!(alt.alt(), Ok(1));
///     drop(alt);
///     assert_eq!(y, Some("hi"));
/// }).unwrap();
/// ```
pub struct Alt<'a> {
    entries: Small<AltEntry<'a>, 4>,
    _slots: PhantomData<&'a mut ()>,
}

impl Default for Alt<'_> {
    fn default() -> Self {
        Alt::new()
    }
}

impl<'a> Alt<'a> {
    /// An alt with no entries.
    pub fn new() -> Alt<'a> {
        Alt {
            entries: Small::new(NOP),
            _slots: PhantomData,
        }
    }

    /// Adds an entry receiving from `c` into `slot`.
    pub fn recv<T>(&mut self, c: &'a Chan<T>, slot: &'a mut Option<T>) -> &mut Alt<'a> {
        self.entries.push(AltEntry {
            port: Some(&*c.inner),
            slot: (slot as *mut Option<T>).cast(),
            op: Op::Recv,
        });
        self
    }

    /// Adds an entry sending the value in `slot` (which must hold one) on
    /// `c`.
    pub fn send<T>(&mut self, c: &'a Chan<T>, slot: &'a mut Option<T>) -> &mut Alt<'a> {
        self.entries.push(AltEntry {
            port: Some(&*c.inner),
            slot: (slot as *mut Option<T>).cast(),
            op: Op::Send,
        });
        self
    }

    /// Adds an entry that is never ready (Plan 9's `CHANNOP`), keeping the
    /// numbering of the others.
    pub fn nop(&mut self) -> &mut Alt<'a> {
        self.entries.push(NOP);
        self
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.n
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.n == 0
    }

    /// Performs one ready entry, waiting until one is ready; returns its
    /// index. With no entries but nops, waits until interrupted.
    // Inlined so that the context switch lands in the caller's frame (see
    // `Waiter::park`); the work before and after it is out of line and
    // reports through a packed status word rather than an enum in memory.
    #[inline(always)]
    pub fn alt(&mut self) -> Result<usize, AltError> {
        let mut w = AltWait::new();
        let st = self.start(true, &mut w);
        if st != PARK {
            return unpack(st);
        }
        let out = w.waiter().park();
        self.finish(&mut w, out)
    }

    /// Performs one ready entry if there is one, else returns
    /// `Err(AltError::WouldBlock)` at once (Plan 9's `CHANNOBLK`).
    pub fn nbalt(&mut self) -> Result<usize, AltError> {
        let mut w = AltWait::new();
        unpack(self.start(false, &mut w))
    }

    /// Performs a ready entry, or fails, or (blocking) queues an entry on
    /// every channel and returns PARK.
    fn start(&mut self, block: bool, w: &mut AltWait) -> u64 {
        let me = Me::get();
        if block && me.kill_point() {
            return pack(Err(AltError::Interrupted));
        }
        let es = self.entries.as_slice();
        let live = &mut w.live;
        for (i, e) in es.iter().enumerate() {
            let Some(p) = e.port else { continue };
            // SAFETY: the slot was given with this channel's element type.
            unsafe {
                match e.op {
                    Op::Recv => p.reset_slot(e.slot),
                    Op::Send => {
                        if !p.slot_full(e.slot) {
                            panic!("thread9: alt entry {i} sends from an empty slot");
                        }
                    }
                }
            }
            live.push(i);
        }
        if live.n == 0 {
            if !block {
                return pack(Err(AltError::WouldBlock));
            }
            w.waiter = me.waiter_ptr();
            me.waiter().prepare();
            me.set_blocked(Block::Alt, 0, false);
            return PARK;
        }
        let port = |i: usize| es[i].port.expect("live entries have a channel");

        // Enter every channel once, in address order.
        let mut order = Small::<usize, 4>::new(0);
        for &i in live.as_slice() {
            order.push(i);
        }
        order
            .as_mut_slice()
            .sort_unstable_by_key(|&i| port(i).addr());
        let locks = Locks::enter(order.as_slice().iter().map(|&i| port(i)), me);

        // Scan in random order; perform the first ready entry.
        let mut perm = Small::<usize, 4>::new(0);
        for &i in live.as_slice() {
            perm.push(i);
        }
        let p = perm.as_mut_slice();
        for k in (1..p.len()).rev() {
            p.swap(k, rng::below(k + 1));
        }
        for &i in perm.as_slice() {
            let e = es[i];
            // SAFETY: all entered; slots typed, receive slots emptied.
            match unsafe { port(i).try_op(e.op == Op::Send, e.slot) } {
                Ready::No => {}
                Ready::Done(w) => {
                    locks.leave();
                    if let Some(w) = w {
                        // SAFETY: claimed inside the critical section.
                        unsafe { Waiter::wake_from(w, &me) };
                    }
                    return pack(Ok(i));
                }
                Ready::Closed => {
                    locks.leave();
                    return pack(Err(AltError::Closed(i)));
                }
            }
        }
        if !block {
            locks.leave();
            return pack(Err(AltError::WouldBlock));
        }

        // Queue on every channel; the caller parks.
        for &i in live.as_slice() {
            w.waits.push(Entry::new(me.waiter_ptr(), es[i].slot, i));
        }
        let wp = w.waits.as_mut_slice().as_mut_ptr();
        w.waiter = me.waiter_ptr();
        me.waiter().prepare();
        let mut shared = false;
        for (k, &i) in live.as_slice().iter().enumerate() {
            // SAFETY: entered; `w` lives in the caller's frame and its
            // entries are not moved until `finish` has dequeued them all.
            unsafe { port(i).enqueue(es[i].op == Op::Send, wp.add(k)) };
            shared |= port(i).header().is_shared();
        }
        me.set_blocked(Block::Alt, 0, shared);
        locks.leave();
        PARK
    }

    /// Takes the entries that were not chosen off their channels.
    fn finish(&mut self, w: &mut AltWait, out: Outcome) -> Result<usize, AltError> {
        let me = Me::get();
        let es = self.entries.as_slice();
        let won = match out {
            Outcome::Done(i) => Some(i),
            _ => None,
        };
        let wp = w.waits.as_mut_slice().as_mut_ptr();
        for (k, &i) in w.live.as_slice().iter().enumerate() {
            if Some(i) == won {
                continue; // the partner took this one off its queue
            }
            let p = es[i].port.expect("live entries have a channel");
            let h = p.header().enter(me);
            // SAFETY: entered; the entry was queued on this channel.
            unsafe { p.dequeue(es[i].op == Op::Send, wp.add(k)) };
            p.header().leave(h);
        }
        match out {
            Outcome::Done(i) => Ok(i),
            Outcome::Closed(i) => Err(AltError::Closed(i)),
            Outcome::Interrupted => {
                me.kill_point();
                Err(AltError::Interrupted)
            }
        }
    }
}

/// An alt's wait state, in the frame of the (inlined) `alt` call.
struct AltWait {
    live: Small<usize, 4>,
    waits: Small<Entry, 4>,
    waiter: *const Waiter,
}

impl AltWait {
    #[inline(always)]
    fn new() -> AltWait {
        AltWait {
            live: Small::new(0),
            waits: Small::new(Entry::EMPTY),
            waiter: ptr::null(),
        }
    }

    #[inline(always)]
    fn waiter(&self) -> &Waiter {
        // SAFETY: set by `start` before it returns PARK.
        unsafe { &*self.waiter }
    }
}

/// `start`'s "park now" status; any other value is a packed result.
const PARK: u64 = u64::MAX;

fn pack(r: Result<usize, AltError>) -> u64 {
    match r {
        Ok(i) => (i as u64) << 2,
        Err(AltError::Closed(i)) => (i as u64) << 2 | 1,
        Err(AltError::Interrupted) => 2,
        Err(AltError::WouldBlock) => 3,
    }
}

#[inline(always)]
fn unpack(v: u64) -> Result<usize, AltError> {
    match v & 3 {
        0 => Ok((v >> 2) as usize),
        1 => Err(AltError::Closed((v >> 2) as usize)),
        2 => Err(AltError::Interrupted),
        _ => Err(AltError::WouldBlock),
    }
}

/// The channels of an alt, entered in address order, each once (an alt
/// may name a channel twice), with how each was entered.
struct Locks<'a> {
    held: Small<(Option<&'a dyn Port>, Option<Held>), 4>,
}

impl<'a> Locks<'a> {
    fn enter(ports: impl Iterator<Item = &'a dyn Port>, me: Me) -> Locks<'a> {
        let mut held = Small::new((None, None));
        let mut last = 0;
        for p in ports {
            if p.addr() != last {
                let h = p.header().enter(me);
                if h.shared_now {
                    // SAFETY: just entered.
                    unsafe { p.mark_shared() };
                }
                held.push((Some(p), Some(h)));
                last = p.addr();
            }
        }
        Locks { held }
    }

    fn leave(self) {
        for &(p, h) in self.held.as_slice() {
            if let (Some(p), Some(h)) = (p, h) {
                p.header().leave(h);
            }
        }
    }
}
