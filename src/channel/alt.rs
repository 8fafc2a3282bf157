//! `Alt`: wait for the first of several channel operations.
//!
//! An alt tries its entries in a random order, each under its own
//! channel's lock, and performs the first ready one: as atomic as a lone
//! send or receive, and cheap in the common case of a partner already
//! waiting. If none was ready it locks all its channels at once, in
//! address order (so that two alts over the same channels cannot deadlock
//! each other), and looks again, since an entry may have become ready
//! after it was tried. If still none is ready it queues an entry on every
//! channel and sleeps, holding all the locks until every entry is queued:
//! so no partner can ever see this thread half-registered, and the first
//! partner to claim it (see [`crate::thread::wait`]) is the only one.
//! Woken, it takes its remaining entries off the other channels before
//! returning, leaving no trace there.
//!
//! An alt of two entries, the commonest kind, enters both channels at once
//! and looks at both before trying either: a random number is needed only
//! when both are ready, and the branch on which one is ready goes the same
//! way from call to call, where trying a random one first mispredicts half
//! the time (measured: 130 -> 95 ns per `alt_pingpong` round trip, for the
//! same instruction count). Doing the same for every alt, through the
//! general code that sorts the entries and collects the ready ones, cost
//! more than it saved (1,090 instructions per round trip against 811).

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr;

use super::chan::{Chan, Inner, Waits};
use super::error::AltError;
use crate::thread::wait::{Block, Me, Outcome, Waiter};
use crate::thread::waitq::{Entry, Header, Held};
use crate::util::rng;

/// What an alt needs of a channel, with its element type erased.
pub(crate) trait Port {
    /// # Safety
    /// `slot` points to an `Option<T>` of this channel's `T`.
    unsafe fn reset_slot(&self, slot: *mut ());
    /// Whether the operation might be done now: false means it cannot be.
    /// (True may still fail: a queued partner may have been claimed
    /// through another of its alt's channels.)
    ///
    /// # Safety
    /// Lock held.
    unsafe fn may_be_ready(&self, send: bool) -> bool;
    /// Performs the operation now if it is ready.
    ///
    /// # Safety
    /// Lock held; `slot` as above, empty for a receive.
    unsafe fn try_op(&self, send: bool, slot: *mut ()) -> Ready;
}

pub(crate) enum Ready {
    No,
    Done(Option<*const Waiter>),
    Closed,
}

impl<T> Port for Inner<T> {
    unsafe fn reset_slot(&self, slot: *mut ()) {
        // SAFETY: per the contract.
        unsafe { *slot.cast::<Option<T>>() = None }
    }

    unsafe fn may_be_ready(&self, send: bool) -> bool {
        // SAFETY: lock held per the contract.
        unsafe { self.state().may_be_ready(self.cap(), send) }
    }

    unsafe fn try_op(&self, send: bool, slot: *mut ()) -> Ready {
        // SAFETY: lock held and slot typed per the contract.
        unsafe {
            let st = self.state();
            let slot = slot.cast::<Option<T>>();
            if send {
                if st.w.closed {
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
                    None if st.w.closed => Ready::Closed,
                    None => Ready::No,
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
struct AltEntry<'a> {
    port: Option<&'a dyn Port>,
    /// The channel's header: its lock, by its address the lock order, and
    /// the way to its wait queues without a virtual call (see
    /// [`Waits::of`]).
    hdr: *const Header,
    slot: *mut (),
    /// Moves the value between two slots of the channel's type (see
    /// [`move_value`]): all an unbuffered channel's operation needs of the
    /// type, so that it is done without a virtual call.
    mover: unsafe fn(*mut (), *mut ()),
    send: bool,
    unbuffered: bool,
}

/// Moves the value in slot `from` (a sender's) into the empty slot `to`
/// (a receiver's).
///
/// # Safety
/// Both point to `Option<T>`s; `to` holds none.
unsafe fn move_value<T>(from: *mut (), to: *mut ()) {
    // SAFETY: per the contract; `to` is empty, so nothing is overwritten
    // that needed dropping.
    unsafe {
        let v = (*from.cast::<Option<T>>())
            .take()
            .expect("thread9: a sender's slot holds a value");
        ptr::write(to.cast::<Option<T>>(), Some(v));
    }
}

impl<'a> AltEntry<'a> {
    #[inline(always)]
    fn new<T>(c: &'a Chan<T>, slot: &'a mut Option<T>, send: bool) -> AltEntry<'a> {
        AltEntry {
            port: Some(&*c.inner),
            // From the whole record, not its `hdr` field: `Waits::of`
            // reaches past the header.
            hdr: ptr::from_ref::<Inner<T>>(&c.inner).cast(),
            slot: (slot as *mut Option<T>).cast(),
            mover: move_value::<T>,
            send,
            unbuffered: c.inner.cap() == 0,
        }
    }

    /// Whether the entry might be done now (see [`Port::may_be_ready`]);
    /// for an unbuffered channel, decided without a virtual call.
    ///
    /// # Safety
    /// The entry's channel is entered.
    #[inline(always)]
    unsafe fn may_be_ready(&self) -> bool {
        // SAFETY: per the contract.
        unsafe {
            if self.unbuffered {
                (*Waits::of(self.hdr)).unbuffered_may_be_ready(self.send)
            } else {
                self.port
                    .expect("live entries have a channel")
                    .may_be_ready(self.send)
            }
        }
    }

    /// Performs the entry if it is ready (see [`Port::try_op`]). On an
    /// unbuffered channel that is a move between this slot and a queued
    /// partner's, done here without a virtual call.
    ///
    /// # Safety
    /// The entry's channel is entered; its slot is typed, empty for a
    /// receive.
    #[inline(always)]
    unsafe fn try_op(&self) -> Ready {
        // SAFETY: per the contract; a claimed partner is parked, its slot
        // full if it sends and empty if it receives (and ours the other
        // way round).
        unsafe {
            if self.unbuffered {
                let w = &mut *Waits::of(self.hdr);
                if w.closed {
                    // Close released every partner: none is queued.
                    return Ready::Closed;
                }
                return match w.claim_partner(self.send) {
                    Some(e) => {
                        let (from, to) = if self.send {
                            (self.slot, (*e).slot)
                        } else {
                            ((*e).slot, self.slot)
                        };
                        (self.mover)(from, to);
                        Ready::Done(Some((*e).waiter))
                    }
                    None => Ready::No,
                };
            }
            self.port
                .expect("live entries have a channel")
                .try_op(self.send, self.slot)
        }
    }
}

/// What trying entry `i` came to (`r`): None if it was not ready. Else
/// `leave` gives up the locks held, then the partner the entry claimed is
/// woken and the entry recorded as performed last; returns `start`'s
/// packed result.
#[inline(always)]
fn settle(r: Ready, i: usize, last: &mut usize, me: &Me, leave: impl FnOnce()) -> Option<u64> {
    match r {
        Ready::No => None,
        Ready::Done(w) => {
            leave();
            if let Some(w) = w {
                // SAFETY: claimed inside the critical section, and not
                // woken yet.
                unsafe { Waiter::wake_from(w, me) };
            }
            *last = i;
            Some(pack(Ok(i)))
        }
        Ready::Closed => {
            leave();
            Some(pack(Err(AltError::Closed(i))))
        }
    }
}

/// Queues an entry of the alt on every channel of `live` (indexes of
/// `es`, in lock order) for the caller, which parks once it has left the
/// locks. Entries all on one channel are claimed under its lock alone;
/// entries on several, by partners holding different locks.
///
/// # Safety
/// Every channel of `live` is entered; `wp` has room for `live.len()`
/// entries that stay put until the alt has taken them off again.
unsafe fn queue(es: &[AltEntry<'_>], live: &[usize], wp: *mut Entry, me: Me) {
    let n = live.len();
    let first = es[live[0]].hdr;
    if es[live[n - 1]].hdr == first {
        // SAFETY: the header lives as long as the channel, which the alt
        // borrows.
        me.waiter().prepare(unsafe { &*first });
    } else {
        me.waiter().prepare_shared();
    }
    let mut shared = false;
    for (k, &i) in live.iter().enumerate() {
        let e = &es[i];
        // SAFETY: entered, and `wp` has room, per the contract.
        unsafe {
            (*Waits::of(e.hdr)).enqueue(e.send, wp.add(k), me.waiter_ptr(), e.slot, i);
            shared |= (*e.hdr).is_shared();
        }
    }
    me.set_blocked(Block::Alt, shared);
}

const NOP: AltEntry<'static> = AltEntry {
    port: None,
    hdr: ptr::null(),
    slot: ptr::null_mut(),
    mover: move_value::<()>,
    send: false,
    unbuffered: false,
};

/// Entries an alt keeps on the stack; more spill to the heap.
const INLINE: usize = 4;

/// Uninitialised room for `n` values of an alt's entries: in the frame for
/// up to [`INLINE`] of them (no allocation for the usual alt), else on the
/// heap.
struct Scratch<T> {
    small: [MaybeUninit<T>; INLINE],
    heap: Vec<MaybeUninit<T>>,
}

impl<T: Copy> Scratch<T> {
    #[inline(always)]
    fn new() -> Scratch<T> {
        Scratch {
            small: [MaybeUninit::uninit(); INLINE],
            heap: Vec::new(),
        }
    }

    /// At least `n` slots.
    #[inline(always)]
    fn take(&mut self, n: usize) -> &mut [MaybeUninit<T>] {
        if n <= INLINE {
            &mut self.small[..]
        } else {
            self.heap.resize(n, MaybeUninit::uninit());
            &mut self.heap[..]
        }
    }
}

/// A growable list of entries that lives on the stack while short.
struct Entries<'a> {
    /// The first `n` (up to INLINE) are written; left uninitialised
    /// otherwise, which saves writing 160 bytes per alt.
    a: [MaybeUninit<AltEntry<'a>>; INLINE],
    n: usize,
    v: Vec<AltEntry<'a>>,
}

impl<'a> Entries<'a> {
    #[inline]
    fn push(&mut self, e: AltEntry<'a>) {
        if self.n < INLINE {
            self.a[self.n].write(e);
        } else {
            if self.n == INLINE {
                // SAFETY: all INLINE were written.
                self.v
                    .extend(self.a.iter().map(|x| unsafe { x.assume_init() }));
            }
            self.v.push(e);
        }
        self.n += 1;
    }

    #[inline(always)]
    fn as_slice(&self) -> &[AltEntry<'a>] {
        if self.n <= INLINE {
            // SAFETY: the first `n` are written (see `push`), and
            // MaybeUninit<T> has T's layout.
            unsafe { std::slice::from_raw_parts(self.a.as_ptr().cast(), self.n) }
        } else {
            &self.v
        }
    }
}

/// Plan 9's `alt`: a set of send and receive entries, of which the first
/// ready one is performed.
///
/// Entries are numbered in the order they are added; [`alt`](Alt::alt)
/// returns the index of the one it performed. When several are ready it
/// picks one uniformly at random. A receive entry stores its value in its
/// slot (emptied when the entry is added, and so empty whenever an alt
/// starts: the slot that received last time is emptied again); a send
/// entry takes its value out of its slot only if it is the one performed.
/// An entry whose channel is closed is ready and reports
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
    entries: Entries<'a>,
    /// The entry the last call performed, if any (else `usize::MAX`): the
    /// only receive slot that can hold a value when a call starts, since
    /// `recv` empties slots as they are added and the alt keeps them
    /// borrowed. So a start empties that one alone, without a virtual call
    /// per entry.
    last: usize,
    /// The first send entry given an empty slot, if any (else
    /// `usize::MAX`): an error the next call reports. The alt keeps the
    /// slots borrowed, so only performing a send (entry `last`) can empty
    /// one later, and a call checks the slots in constant time.
    empty_send: usize,
    /// How many entries are nops.
    nops: usize,
    _slots: PhantomData<&'a mut ()>,
}

impl Default for Alt<'_> {
    fn default() -> Self {
        Alt::new()
    }
}

impl<'a> Alt<'a> {
    /// An alt with no entries.
    ///
    /// ```
    /// let a = thread9::Alt::new();
    /// assert!(a.is_empty());
    /// ```
    #[inline]
    pub fn new() -> Alt<'a> {
        Alt {
            entries: Entries {
                a: [const { MaybeUninit::uninit() }; INLINE],
                n: 0,
                v: Vec::new(),
            },
            last: usize::MAX,
            empty_send: usize::MAX,
            nops: 0,
            _slots: PhantomData,
        }
    }

    /// Adds an entry receiving from `c` into `slot`. The slot is emptied
    /// now, and holds the value after an alt that picked this entry.
    ///
    /// ```
    /// let (a, b) = (thread9::Chan::new(1), thread9::Chan::<u8>::new(1));
    /// a.nbsend(1u8).unwrap();
    /// let (mut x, mut y) = (Some(9), Some(9));
    /// let mut alt = thread9::Alt::new();
    /// alt.recv(&a, &mut x).recv(&b, &mut y);
    /// assert_eq!(alt.nbalt(), Ok(0)); // only `a` has a value
    /// drop(alt);
    /// assert_eq!((x, y), (Some(1), None));
    /// ```
    #[inline]
    pub fn recv<T>(&mut self, c: &'a Chan<T>, slot: &'a mut Option<T>) -> &mut Alt<'a> {
        *slot = None;
        self.entries.push(AltEntry::new(c, slot, false));
        self
    }

    /// Adds an entry sending the value in `slot` (which must hold one) on
    /// `c`. The slot is empty after an alt that picked this entry, and
    /// still holds the value otherwise.
    ///
    /// ```
    /// let (full, room) = (thread9::Chan::new(0), thread9::Chan::new(1));
    /// let (mut v, mut w) = (Some("stays"), Some("goes"));
    /// let mut alt = thread9::Alt::new();
    /// alt.send(&full, &mut v).send(&room, &mut w);
    /// assert_eq!(alt.nbalt(), Ok(1)); // nobody receives on `full`
    /// drop(alt);
    /// assert_eq!((v, w), (Some("stays"), None));
    /// assert_eq!(room.nbrecv(), Ok("goes"));
    /// ```
    #[inline]
    pub fn send<T>(&mut self, c: &'a Chan<T>, slot: &'a mut Option<T>) -> &mut Alt<'a> {
        if slot.is_none() {
            self.empty_send = self.empty_send.min(self.entries.n);
        }
        self.entries.push(AltEntry::new(c, slot, true));
        self
    }

    /// Adds an entry that is never ready (Plan 9's `CHANNOP`), keeping the
    /// numbering of the others.
    ///
    /// ```
    /// let c = thread9::Chan::new(1);
    /// c.nbsend(()).unwrap();
    /// let mut x = None;
    /// let mut alt = thread9::Alt::new();
    /// alt.nop().recv(&c, &mut x);
    /// assert_eq!(alt.nbalt(), Ok(1));
    /// ```
    #[inline]
    pub fn nop(&mut self) -> &mut Alt<'a> {
        self.nops += 1;
        self.entries.push(NOP);
        self
    }

    /// The number of entries, nops included.
    ///
    /// ```
    /// let c = thread9::Chan::<u8>::new(0);
    /// let mut x = None;
    /// let mut alt = thread9::Alt::new();
    /// alt.nop().recv(&c, &mut x);
    /// assert_eq!(alt.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.entries.n
    }

    /// True when there are no entries.
    ///
    /// ```
    /// let mut alt = thread9::Alt::new();
    /// assert!(alt.is_empty());
    /// alt.nop();
    /// assert!(!alt.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.n == 0
    }

    /// Performs one ready entry, waiting until one is ready; returns its
    /// index. With no entries but nops, waits until interrupted.
    ///
    /// ```
    /// thread9::run(|| {
    ///     let (data, quit) = (thread9::Chan::new(0), thread9::Chan::<()>::new(0));
    ///     let d = data.clone();
    ///     thread9::threadcreate(move || d.send(42).unwrap(), 0);
    ///     let (mut v, mut q) = (None, None);
    ///     let mut alt = thread9::Alt::new();
    ///     alt.recv(&data, &mut v).recv(&quit, &mut q);
    ///     // Waits for the thread above; `quit` is never ready.
    ///     assert_eq!(alt.alt(), Ok(0));
    ///     drop(alt);
    ///     assert_eq!(v, Some(42));
    ///     quit.close();
    ///     let mut alt = thread9::Alt::new();
    ///     alt.recv(&data, &mut v).recv(&quit, &mut q);
    ///     assert_eq!(alt.alt(), Err(thread9::AltError::Closed(1)));
    /// }).unwrap();
    /// ```
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
    ///
    /// ```
    /// let c = thread9::Chan::<i32>::new(0);
    /// let mut x = None;
    /// let mut alt = thread9::Alt::new();
    /// alt.recv(&c, &mut x);
    /// assert_eq!(alt.nbalt(), Err(thread9::AltError::WouldBlock));
    /// ```
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
        let last = std::mem::replace(&mut self.last, usize::MAX);
        let mut spent = usize::MAX;
        if let Some(e) = es.get(last) {
            if e.send {
                // Performed last time: its value is gone.
                spent = last;
            } else {
                // The only receive slot that can hold a value: `recv`
                // empties slots as they are added.
                let p = e.port.expect("a performed entry has a channel");
                // SAFETY: the slot was given with this channel's type.
                unsafe { p.reset_slot(e.slot) };
            }
        }
        let bad = spent.min(self.empty_send);
        if bad != usize::MAX {
            panic!("thread9: alt entry {bad} sends from an empty slot");
        }

        let n = es.len() - self.nops;
        if n == 2 && self.nops == 0 {
            return self.start_pair(block, w, me);
        }
        // The live entries, to be tried in a random order drawn as they
        // are tried (a lazy Fisher-Yates shuffle): the first ready one in
        // a uniformly random order is a uniform pick among the ready
        // ones, and an alt whose first pick is ready draws no more. The
        // array is not initialised beyond what is written here.
        let mut order_room = Scratch::new();
        let order = order_room.take(n);
        let o = order.as_mut_ptr();
        if self.nops == 0 {
            for k in 0..n {
                // SAFETY: k < n <= order.len().
                unsafe { (*o.add(k)).write(k) };
            }
        } else {
            let live = es.iter().enumerate().filter(|(_, e)| e.port.is_some());
            for (k, (i, _)) in live.enumerate() {
                // SAFETY: there are n live entries, and n <= order.len().
                unsafe { (*o.add(k)).write(i) };
            }
        }
        if n == 0 {
            if !block {
                return pack(Err(AltError::WouldBlock));
            }
            w.waiter = me.waiter_ptr();
            me.waiter().prepare_unqueued();
            me.set_blocked(Block::Alt, false);
            return PARK;
        }
        // SAFETY (for every `entry` call below): the array (and `live`,
        // made from it) holds indexes of `es`.
        let entry = |i: usize| unsafe { es.get_unchecked(i) };

        // Try each entry under its own channel's lock. An operation done
        // this way is as atomic as a lone send or receive, and when one is
        // ready (the common case: a partner waits) it costs a fraction of
        // entering every channel at once.
        for k in 0..n {
            let j = if n - k > 1 { k + rng::below(n - k) } else { k };
            // SAFETY: k <= j < n, and all n are written; `ptr::swap`
            // allows j == k.
            let i = unsafe {
                ptr::swap(o.add(k), o.add(j));
                (*o.add(k)).assume_init()
            };
            let e = entry(i);
            // SAFETY: the header lives as long as the channel, which the
            // alt borrows; entered around the calls that need the lock.
            unsafe {
                let h = Waits::enter(e.hdr, me);
                let r = e.try_op();
                if let Some(st) = settle(r, i, &mut self.last, &me, || (*e.hdr).leave(h)) {
                    return st;
                }
                (*e.hdr).leave(h);
            }
        }

        // SAFETY: all n written above (and since only permuted);
        // MaybeUninit<usize> has usize's layout.
        let perm = unsafe { std::slice::from_raw_parts(o.cast::<usize>().cast_const(), n) };

        // None was ready. Enter every channel once, in address order
        // (`live` is in that order, so a channel named twice comes up twice
        // in a row), and look again, now with every entry held still: an
        // entry may have become ready after it was tried, and the alt must
        // not wait (or give up, for `nbalt`) while one is.
        w.set_live(es, perm);
        // Where the queue entries go if the alt waits (they must not move
        // while queued); a pointer, taken before `live` borrows `w`.
        let wp = w.entries(n);
        // Borrows only the fields `live` reads, so that the ones written
        // before parking stay free.
        let live = AltWait::live_in(n, &w.live, &w.spill);
        // How each channel was entered (`held[k]` for the first of its
        // entries in `live`), which is how it must be left.
        let mut held_room = Scratch::<Held>::new();
        let held = held_room.take(n);
        let mut last = ptr::null();
        for (k, &i) in live.iter().enumerate() {
            let e = entry(i);
            if e.hdr != last {
                // SAFETY: the header lives as long as the channel, which
                // the alt borrows; left by `leave_all`. k < n <= held.len().
                unsafe { held.get_unchecked_mut(k).write(Waits::enter(e.hdr, me)) };
                last = e.hdr;
            }
        }
        let held = &*held;
        let leave_all = || {
            let mut last = ptr::null();
            for (k, &i) in live.iter().enumerate() {
                let h = entry(i).hdr;
                if h != last {
                    // SAFETY: entered above, which wrote `held[k]`.
                    unsafe { (*h).leave(held.get_unchecked(k).assume_init()) };
                    last = h;
                }
            }
        };
        for &i in perm.iter() {
            // SAFETY: all entered; slots typed, receive slots emptied.
            let r = unsafe { entry(i).try_op() };
            if let Some(st) = settle(r, i, &mut self.last, &me, leave_all) {
                return st;
            }
        }
        if !block {
            leave_all();
            return pack(Err(AltError::WouldBlock));
        }

        w.waiter = me.waiter_ptr();
        // SAFETY: all entered; `wp` has room for n entries, in the caller's
        // frame, not moved until `finish` has dequeued them.
        unsafe { queue(es, live, wp, me) };
        leave_all();
        PARK
    }

    /// [`start`](Alt::start) for an alt of two entries and no nops, the
    /// commonest kind (a value or a quit, say). Both channels are entered
    /// at once and looked at before either is tried: a random number is
    /// drawn only when both are ready, and when one of them usually is
    /// (as for a server's request channel beside its quit channel) the
    /// path taken is the same every time, which the processor predicts.
    /// Trying a random entry first instead cost a mispredicted branch in
    /// every other call (see the module docs).
    #[inline(always)]
    fn start_pair(&mut self, block: bool, w: &mut AltWait, me: Me) -> u64 {
        let es = self.entries.as_slice();
        // SAFETY: the caller saw two entries, neither a nop.
        let (a, b) = unsafe { (es.get_unchecked(0), es.get_unchecked(1)) };
        // Lock order: by address; an alt naming one channel twice enters
        // it once.
        let (lo, hi) = if b.hdr < a.hdr { (1, 0) } else { (0, 1) };
        let (hl, hh) = (es[lo].hdr, es[hi].hdr);
        // SAFETY: the headers live as long as the channels, which the alt
        // borrows; left by `leave`.
        let (held_lo, held_hi) = unsafe {
            let l = Waits::enter(hl, me);
            (l, (hh != hl).then(|| Waits::enter(hh, me)))
        };
        let leave = || {
            // SAFETY: entered above, as `held_lo` and `held_hi` say.
            unsafe {
                (*hl).leave(held_lo);
                if let Some(h) = held_hi {
                    (*hh).leave(h);
                }
            }
        };
        // SAFETY: both entered.
        let (ra, rb) = unsafe { (a.may_be_ready(), b.may_be_ready()) };
        if ra || rb {
            let first = if ra && rb {
                rng::below(2)
            } else {
                usize::from(!ra)
            };
            // SAFETY: entered; slots typed, receive slots emptied.
            let r = unsafe { es[first].try_op() };
            if let Some(st) = settle(r, first, &mut self.last, &me, leave) {
                return st;
            }
            // Not ready after all (its partner was claimed elsewhere).
            if ra && rb {
                let other = 1 - first;
                // SAFETY: as above.
                let r = unsafe { es[other].try_op() };
                if let Some(st) = settle(r, other, &mut self.last, &me, leave) {
                    return st;
                }
            }
        }
        if !block {
            leave();
            return pack(Err(AltError::WouldBlock));
        }
        let wp = w.set_live_pair(lo, hi);
        w.waiter = me.waiter_ptr();
        // SAFETY: both entered; `wp` is the room of the caller's frame, not
        // moved until `finish` has dequeued them.
        unsafe { queue(es, w.live(), wp, me) };
        leave();
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
        let wp = w.entries(w.n);
        for (k, &i) in w.live().iter().enumerate() {
            if Some(i) == won {
                continue; // the partner took this one off its queue
            }
            let e = es[i];
            // SAFETY: the channel outlives the alt; entered around the
            // dequeue of an entry that was queued on it.
            unsafe {
                let h = (*e.hdr).enter(me);
                (*Waits::of(e.hdr)).dequeue(e.send, wp.add(k));
                (*e.hdr).leave(h);
            }
        }
        match out {
            Outcome::Done(i) => {
                self.last = i;
                Ok(i)
            }
            Outcome::Closed(i) => Err(AltError::Closed(i)),
            Outcome::Interrupted => {
                me.kill_point();
                Err(AltError::Interrupted)
            }
        }
    }
}

/// An alt's wait state, in the frame of the (inlined) `alt` call. Only
/// `n`, `spill` and `waiter` are set up front (an alt that does not wait
/// needs nothing else); the rest is written as it is needed.
struct AltWait {
    /// How many entries have a channel, and (when at most INLINE, the
    /// first `n` of `live`) their indexes in lock order.
    n: usize,
    live: [MaybeUninit<usize>; INLINE],
    /// Queue entries, written only when the alt waits.
    waits: [MaybeUninit<Entry>; INLINE],
    /// Room for alts of more than INLINE live entries.
    spill: Option<Box<Spill>>,
    waiter: *const Waiter,
}

#[derive(Default)]
struct Spill {
    live: Vec<usize>,
    waits: Vec<MaybeUninit<Entry>>,
}

impl AltWait {
    #[inline(always)]
    fn new() -> AltWait {
        AltWait {
            n: 0,
            live: [MaybeUninit::uninit(); INLINE],
            waits: [const { MaybeUninit::uninit() }; INLINE],
            spill: None,
            waiter: ptr::null(),
        }
    }

    /// Records the indexes of the live entries (`perm`, in any order) in
    /// the order their channels are locked in: by header address, entries
    /// on one channel in their own order (so that they are queued there in
    /// it).
    fn set_live(&mut self, es: &[AltEntry<'_>], perm: &[usize]) {
        let n = perm.len();
        self.n = n;
        let live = if n <= INLINE {
            for (d, &i) in self.live.iter_mut().zip(perm) {
                d.write(i);
            }
            // SAFETY: the first n were just written; MaybeUninit<usize>
            // has usize's layout.
            unsafe { std::slice::from_raw_parts_mut(self.live.as_mut_ptr().cast::<usize>(), n) }
        } else {
            let s = self.spill.get_or_insert_with(Box::default);
            s.live.clear();
            s.live.extend_from_slice(perm);
            &mut s.live[..]
        };
        // Insertion sort: alts are short.
        let key = |i: usize| (es[i].hdr, i);
        for k in 1..n {
            let x = live[k];
            let mut j = k;
            while j > 0 && key(live[j - 1]) > key(x) {
                live[j] = live[j - 1];
                j -= 1;
            }
            live[j] = x;
        }
    }

    /// [`set_live`](AltWait::set_live) for an alt of two entries, already
    /// in lock order; returns [`entries`](AltWait::entries)' room.
    #[inline(always)]
    fn set_live_pair(&mut self, lo: usize, hi: usize) -> *mut Entry {
        self.n = 2;
        self.live[0].write(lo);
        self.live[1].write(hi);
        self.entries(2)
    }

    fn live(&self) -> &[usize] {
        AltWait::live_in(self.n, &self.live, &self.spill)
    }

    /// [`live`](AltWait::live) from the fields alone, so that the others
    /// can be borrowed meanwhile.
    #[inline(always)]
    fn live_in<'w>(
        n: usize,
        live: &'w [MaybeUninit<usize>; INLINE],
        spill: &'w Option<Box<Spill>>,
    ) -> &'w [usize] {
        if n <= INLINE {
            // SAFETY: `set_live` wrote the first n (`n` is 0 before it
            // runs); MaybeUninit<usize> has usize's layout.
            unsafe { std::slice::from_raw_parts(live.as_ptr().cast::<usize>(), n) }
        } else {
            &spill.as_ref().expect("set_live spilled the list").live
        }
    }

    /// Room for `n` queue entries that stays put until the alt returns.
    fn entries(&mut self, n: usize) -> *mut Entry {
        if n <= INLINE {
            self.waits.as_mut_ptr().cast()
        } else {
            let s = self.spill.get_or_insert_with(Box::default);
            if s.waits.len() < n {
                s.waits.resize_with(n, MaybeUninit::uninit);
            }
            s.waits.as_mut_ptr().cast()
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

/// Inlined for the common case (a performed entry); the errors take a
/// call, which keeps a jump table off the path of every alt.
#[inline(always)]
fn unpack(v: u64) -> Result<usize, AltError> {
    if v & 3 == 0 {
        Ok((v >> 2) as usize)
    } else {
        unpack_error(v)
    }
}

#[inline(never)]
fn unpack_error(v: u64) -> Result<usize, AltError> {
    Err(match v & 3 {
        1 => AltError::Closed((v >> 2) as usize),
        2 => AltError::Interrupted,
        _ => AltError::WouldBlock,
    })
}
