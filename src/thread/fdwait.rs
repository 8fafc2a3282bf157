//! Waiting for a file descriptor inside the proc: plan9port's
//! `threadfdwait`.
//!
//! A thread that must wait until a descriptor is readable or writable
//! registers it with its proc and parks, like any other blocked thread. The
//! proc's scheduler looks at the registered descriptors whenever it has
//! nothing to run: while it polls its inbox for work it also polls them
//! (without blocking), and when it would sleep it sleeps in `poll` on them
//! together with an eventfd that other procs write to when they ready one
//! of its threads, instead of on its futex word. So a thread serving a
//! socket waits for its client in its own proc: no other OS thread, and no
//! hand-off between OS threads, stands between the client and the thread.
//! (An [`Ioproc`](crate::Ioproc) is still the tool for calls that block
//! for other reasons: opening files, reading disks, waiting for children.)
//!
//! A busy proc, whose run queue never empties, still polls its descriptors
//! every [`BUSY_POLL`] thread switches, so a waiting thread is not starved.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::procs;
use super::threads::{self, Thread};
use super::wait::{Outcome, done};
use crate::ioproc::interrupted;
use crate::util::read_fd;

/// A busy proc polls its descriptors once per this many thread switches.
pub(crate) const BUSY_POLL: u32 = 61;

/// How a descriptor wait ends, as the entry index of its outcome: the
/// descriptor is ready, or poll found it not open (POLLNVAL).
const READY: usize = 0;
const NOT_OPEN: usize = 1;

/// One registered wait.
struct Entry {
    fd: RawFd,
    events: libc::c_short,
    thread: *const Thread,
}

/// The descriptors a proc's threads wait on. Touched only by the proc's
/// own OS thread.
#[derive(Default)]
pub(crate) struct FdWaits {
    entries: RefCell<Vec<Entry>>,
    /// `entries.len()`, for the scheduler's hot loop.
    len: Cell<usize>,
    /// Scratch for `poll`'s array, kept to save an allocation per poll.
    pfds: RefCell<Vec<libc::pollfd>>,
    /// Thread switches since the last poll of a busy proc.
    pub(crate) ticks: Cell<u32>,
}

impl FdWaits {
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len.get() == 0
    }

    fn add(&self, e: Entry) {
        let mut es = self.entries.borrow_mut();
        es.push(e);
        self.len.set(es.len());
    }

    fn remove(&self, t: *const Thread) {
        let mut es = self.entries.borrow_mut();
        if let Some(i) = es.iter().position(|e| std::ptr::eq(e.thread, t)) {
            es.swap_remove(i);
        }
        self.len.set(es.len());
    }

    /// Polls the registered descriptors without blocking, if there are
    /// any; true if that readied a thread.
    #[inline]
    pub(crate) fn poll_now(&self) -> bool {
        !self.is_empty() && self.poll(0, None).0 > 0
    }

    /// Polls the registered descriptors (and `waker`, if given) for up to
    /// `timeout_ms` (-1: until one is ready), and readies the thread of
    /// every wait that is over. Returns how many it readied and whether
    /// `waker` fired. Runs in the scheduler, on the proc's OS thread.
    pub(crate) fn poll(&self, timeout_ms: i32, waker: Option<BorrowedFd<'_>>) -> (usize, bool) {
        self.ticks.set(0);
        let mut pfds = self.pfds.borrow_mut();
        pfds.clear();
        pfds.extend(self.entries.borrow().iter().map(|e| libc::pollfd {
            fd: e.fd,
            events: e.events,
            revents: 0,
        }));
        if let Some(w) = waker {
            pfds.push(libc::pollfd {
                fd: w.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: `pfds` is a valid array of its length.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
        if n <= 0 {
            // Nothing ready, or a signal (EINTR): the caller looks again.
            return (0, false);
        }
        let woken = match waker {
            Some(w) if pfds.last().is_some_and(|p| p.revents != 0) => {
                drain(w);
                true
            }
            _ => false,
        };
        let mut readied = 0;
        // Entries and the head of `pfds` correspond one to one: nothing
        // registers or unregisters while the scheduler runs this.
        let mut k = 0;
        let mut es = self.entries.borrow_mut();
        es.retain(|e| {
            let revents = pfds[k].revents;
            let fired = revents != 0;
            k += 1;
            if fired {
                let how = if revents & libc::POLLNVAL != 0 {
                    NOT_OPEN
                } else {
                    READY
                };
                // SAFETY: a registered thread is parked in its fd wait (it
                // unregisters before it returns), so it is alive; the claim
                // is made on the proc's own OS thread, as the only other
                // claim of such a wait, an interrupt, is.
                unsafe {
                    if (*e.thread).waiter.claim(done(how)) {
                        threads::ready(e.thread);
                        readied += 1;
                    }
                }
            }
            // Ready, or already interrupted: either way that wait is over.
            !fired
        });
        self.len.set(es.len());
        (readied, woken)
    }
}

/// Empties an eventfd. It is non-blocking, so this returns at once
/// whether or not it was signalled (EAGAIN then, which is no error here).
fn drain(fd: BorrowedFd<'_>) {
    let _ = read_fd(fd, &mut [0; 8]);
}

/// A proc's eventfd: other procs write it to wake the proc from `poll`.
pub(crate) fn new_waker() -> OwnedFd {
    // SAFETY: plain system call; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(
        fd >= 0,
        "thread9: eventfd for a proc's fd waits failed: {} (raise the open file limit, ulimit -n)",
        io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Signals a proc's eventfd.
pub(crate) fn signal(fd: RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from `one`. It can only fail if the counter
    // would overflow, which a signalled eventfd nobody drained yet cannot
    // reach at one per kick.
    unsafe { libc::write(fd, (&raw const one).cast(), 8) };
}

/// Blocks the calling thread until `fd` is ready for reading (`rw` is
/// `'r'`) or writing (`'w'`), while the other threads of its proc run:
/// plan9port's `threadfdwait`. Make the descriptor non-blocking and call
/// this when a read or write says it would block; then try again. An error
/// or hang-up on the descriptor counts as ready (the call that follows
/// reports it).
///
/// Fails with `EBADF` if `fd` is not open, and with
/// [`ErrorKind::Interrupted`](io::ErrorKind::Interrupted) if the thread is
/// interrupted ([`threadint`](crate::threadint)) while it waits. From a
/// plain OS thread outside any program it simply blocks in `poll`. Panics
/// if `rw` is neither `'r'` nor `'w'`.
///
/// ```
/// use std::io::{Read, Write};
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// use thread9::{threadcreate, threadfdwait, Chan};
///
/// thread9::run(|| {
///     let (mut a, mut b) = UnixStream::pair().unwrap();
///     b.set_nonblocking(true).unwrap();
///     let got = Chan::new(0);
///     let g = got.clone();
///     threadcreate(move || {
///         let mut buf = [0u8; 5];
///         loop {
///             match b.read(&mut buf) {
///                 Ok(n) => break g.send(buf[..n].to_vec()).unwrap(),
///                 Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
///                     threadfdwait(b.as_fd(), 'r').unwrap()
///                 }
///                 Err(e) => panic!("{e}"),
///             }
///         }
///     }, 0);
///     // The reader waits in the proc's scheduler, not in read(2): this
///     // thread runs on, and its write wakes the reader.
///     a.write_all(b"hello").unwrap();
///     assert_eq!(got.recv().unwrap(), b"hello");
/// }).unwrap();
/// ```
pub fn threadfdwait(fd: BorrowedFd<'_>, rw: char) -> io::Result<()> {
    let events = match rw {
        'r' => libc::POLLIN,
        'w' => libc::POLLOUT,
        _ => panic!("thread9: threadfdwait: rw must be 'r' or 'w', not {rw:?}"),
    };
    let fd = fd.as_raw_fd();
    // SAFETY: the running thread outlives this call.
    let Some(t) = (unsafe { threads::current_ptr().as_ref() }) else {
        return poll_os(fd, events);
    };
    if t.kill_point() {
        return Err(interrupted());
    }
    let local = procs::local().expect("a running thread has a proc");
    t.waiter.prepare_unqueued();
    t.set_blocked_fd(fd);
    local.fdwaits.add(Entry {
        fd,
        events,
        thread: t,
    });
    match t.waiter.park() {
        Outcome::Done(NOT_OPEN) => Err(io::Error::from_raw_os_error(libc::EBADF)),
        Outcome::Done(_) => Ok(()),
        _ => {
            local.fdwaits.remove(t);
            t.kill_point();
            Err(interrupted())
        }
    }
}

/// [`threadfdwait`] for a plain OS thread: it may simply block.
fn poll_os(fd: RawFd, events: libc::c_short) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, -1) } >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    if p.revents & libc::POLLNVAL != 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    Ok(())
}
