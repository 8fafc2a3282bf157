//! Ioprocs: blocking calls in a slave proc.
//!
//! A blocking system call blocks the OS thread making it, and with it every
//! thread of that proc. An [`Ioproc`] is a proc of its own that makes such
//! calls on your behalf: the calling thread waits on a channel, and the
//! other threads of its proc run meanwhile. This is Plan 9's ioproc(2):
//!
//! ```
//! use thread9::{Ioproc, threadcreate, Chan};
//! use std::os::fd::OwnedFd;
//!
//! thread9::run(|| {
//!     let (r, w) = std::io::pipe().unwrap();
//!     let (r, w): (OwnedFd, OwnedFd) = (r.into(), w.into());
//!     let io = Ioproc::new();
//!     let done = Chan::new(0);
//!     let d = done.clone();
//!     // This thread blocks in read, in the ioproc...
//!     threadcreate(move || {
//!         let mut buf = [0u8; 5];
//!         let n = io.read(&r, &mut buf).unwrap();
//!         d.send(buf[..n].to_vec()).unwrap();
//!     }, 0);
//!     // ...while this one, in the same proc, goes on and writes.
//!     thread9::threadyield();
//!     Ioproc::new().write(&w, b"hello").unwrap();
//!     assert_eq!(done.recv().unwrap(), b"hello");
//! }).unwrap();
//! ```
//!
//! An ioproc runs one call at a time; calls from several threads queue and
//! run in order. [`Ioproc::interrupt`] interrupts the call in progress (its
//! system call returns at once and the call fails with
//! [`ErrorKind::Interrupted`](std::io::ErrorKind::Interrupted)), or, with no
//! call running, fails the next one; [`Ioproc::flush`] clears a pending
//! interrupt. The mechanism is in `intr`: a signal aimed at the ioproc's OS
//! thread alone, and waits made only in `ppoll` so that no interrupt is
//! lost between checking for one and entering the system call.
//!
//! Files: this one (the handle and the call protocol), `intr` (signals),
//! `ops` (the interruptible system calls), `dial` (Plan 9 dial strings).

pub(crate) mod dial;
mod intr;
mod ops;

use std::any::Any;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::channel::{Chan, RecvError, SendError};
use crate::thread::procs::proccreate;
use crate::thread::threads::threadsetname;
use crate::thread::wait::{Block, Me};
use intr::IoState;
pub(crate) use intr::interrupted;

/// Stack of an ioproc's thread: user closures run on it, and name
/// resolution alone can use a good part of a megabyte.
const IOPROC_STACK: usize = 1 << 20;

/// A handle to an ioproc (Plan 9's `Ioproc*`): cheap to clone and to send
/// to other procs. The ioproc ends when the last handle is dropped.
///
/// Create it inside a program ([`run`](crate::run) or
/// [`threadmain`](crate::threadmain)): it is a proc of that program.
///
/// ```
/// use std::thread;
///
/// thread9::run(|| {
///     let io = thread9::Ioproc::new();
///     let other = io.clone();
///     // A clone names the same ioproc, so its calls run on the same OS thread.
///     let here = io.call(|| thread::current().id());
///     assert_eq!(other.call(|| thread::current().id()), here);
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct Ioproc {
    sh: Arc<Shared>,
}

struct Shared {
    st: Arc<IoState>,
    req: Chan<Req>,
    done: Chan<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // No caller is left (each holds a handle), so nothing is running
        // for us; the interrupt is for good measure. Closing the request
        // channel ends the ioproc's loop.
        self.st.interrupt();
        self.req.close();
    }
}

/// A call handed to the ioproc: a function and the caller's slot it works
/// on, with their types erased.
struct Req {
    run: unsafe fn(*mut (), &Arc<IoState>),
    slot: *mut (),
}

// SAFETY: the slot belongs to a caller blocked until the call is over (see
// `Ioproc::exec`), and what it holds is Send (the closure and its result
// are required to be), so using it from the ioproc's OS thread is sound.
unsafe impl Send for Req {}

struct Slot<F, R> {
    f: Option<F>,
    out: Option<Result<R, Box<dyn Any + Send>>>,
}

/// # Safety
/// `slot` points to a live `Slot<F, R>` that no one else touches until
/// this returns.
unsafe fn run_slot<F: FnOnce(&Arc<IoState>) -> R, R>(slot: *mut (), st: &Arc<IoState>) {
    // SAFETY: per the contract.
    let slot = unsafe { &mut *slot.cast::<Slot<F, R>>() };
    let f = slot.f.take().expect("thread9: an ioproc call runs once");
    // A panic in the call goes back to the caller; the ioproc survives.
    slot.out = Some(panic::catch_unwind(AssertUnwindSafe(|| f(st))));
}

/// The ioproc's one thread.
fn serve(st: Arc<IoState>, req: Chan<Req>, done: Chan<()>) {
    threadsetname("ioproc");
    st.start();
    struct Stop(Arc<IoState>, Chan<Req>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.stop();
            // Later callers get an error instead of waiting forever.
            self.1.close();
        }
    }
    let _stop = Stop(st.clone(), req.clone());
    loop {
        let r = match req.recv() {
            Ok(r) => r,
            // A group interrupt (`threadintgrp` on the group this thread
            // inherited from its creator) is aimed at waits, and this is
            // not one that should end: only closing the requests ends the
            // ioproc. (A kill still does, at this receive, as 9front's.)
            Err(RecvError::Interrupted) => continue,
            Err(RecvError::Closed) => break,
        };
        // SAFETY: the caller handed over its slot and waits on `done`.
        unsafe { (r.run)(r.slot, &st) };
        // The caller waits for this even when killed; so must we: keep
        // offering it (a kill of this thread only ends the wait early).
        while let Err(SendError::Interrupted(())) = done.send_undying(()) {}
    }
}

enum ExecError {
    /// The caller was interrupted before the ioproc took the call.
    Interrupted,
    /// The ioproc has ended.
    Gone,
}

static NEXT: AtomicU64 = AtomicU64::new(1);

impl Ioproc {
    /// Starts an ioproc: a new proc of the calling program (Plan 9's
    /// `ioproc()`).
    ///
    /// ```
    /// thread9::run(|| {
    ///     let io = thread9::Ioproc::new();
    ///     // Its calls run on an OS thread of their own, not the caller's.
    ///     let there = io.call(|| std::thread::current().id());
    ///     assert_ne!(there, std::thread::current().id());
    /// }).unwrap();
    /// ```
    pub fn new() -> Ioproc {
        intr::signal();
        let st = Arc::new(IoState::default());
        let (req, done) = (Chan::new(0), Chan::new(0));
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        req.set_name(&format!("ioproc {n} requests"));
        done.set_name(&format!("ioproc {n}"));
        let (s, r, d) = (st.clone(), req.clone(), done.clone());
        proccreate(move || serve(s, r, d), IOPROC_STACK);
        Ioproc {
            sh: Arc::new(Shared { st, req, done }),
        }
    }

    /// Runs `f` in the ioproc and waits for it. `typed`: a call that can
    /// report interruption (the typed operations); they give up if the
    /// caller is interrupted before the ioproc takes the call.
    fn exec<R: Send, F: FnOnce(&Arc<IoState>) -> R + Send>(
        &self,
        f: F,
        typed: bool,
    ) -> Result<R, ExecError> {
        let mut slot: Slot<F, R> = Slot {
            f: Some(f),
            out: None,
        };
        let mut req = Req {
            run: run_slot::<F, R>,
            slot: (&raw mut slot).cast(),
        };
        let me = Me::get();
        // Hand the call over. Until the ioproc has taken it, nothing of
        // ours is in its hands, so a killed caller may unwind right here
        // (the ordinary, dying send does that).
        let mut interrupt_after = false;
        loop {
            match self.sh.req.send(req) {
                Ok(()) => break,
                Err(SendError::Closed(_)) => return Err(ExecError::Gone),
                Err(SendError::Interrupted(r)) => {
                    if typed || me.thread().is_some_and(|t| t.is_killed()) {
                        // (Killed and already unwinding: a destructor made
                        // this call. Give up on it.)
                        return Err(ExecError::Interrupted);
                    }
                    // `call` cannot fail: the interrupt goes to the call.
                    interrupt_after = true;
                    req = r;
                }
            }
        }
        if interrupt_after {
            self.sh.st.interrupt();
        }
        // SAFETY (of handing `slot` over): from here on the ioproc may use
        // `slot`, which lives in this frame, until it sends on `done`; so
        // this function must not return or unwind before that. It cannot:
        // the loop below ends only on that send, its waits are
        // `recv_undying` (a kill ends a wait with Interrupted instead of
        // unwinding), an interrupt or kill is passed on to the ioproc and
        // the wait resumed, and nothing in the loop can panic. The call's
        // result is read only after the loop.
        loop {
            // A kill may have come while we were not waiting (its wake-up
            // then went elsewhere): pass it on before every wait.
            if me.thread().is_some_and(|t| t.is_killed()) {
                self.sh.st.interrupt();
            }
            match self.sh.done.recv_undying(Block::IoCall) {
                Ok(()) => break,
                Err(RecvError::Interrupted) => self.sh.st.interrupt(),
                Err(RecvError::Closed) => unreachable!("thread9: the done channel is never closed"),
            }
        }
        let out = slot
            .out
            .take()
            .expect("thread9: a finished ioproc call has a result");
        match out {
            Ok(r) => {
                // Killed while waiting: die now that the call is over.
                me.kill_point();
                Ok(r)
            }
            Err(payload) => panic::resume_unwind(payload),
        }
    }

    /// A typed operation: fails with Interrupted without running if an
    /// interrupt is pending. An interrupt that comes while it runs is used
    /// up when it returns, whether or not it stopped the call (it may come
    /// too late to: a read that already has its data returns it), so that
    /// it cannot fail the next call too.
    fn io<R: Send>(&self, f: impl FnOnce(&Arc<IoState>) -> io::Result<R> + Send) -> io::Result<R> {
        let r = self.exec(
            move |st| {
                if st.take_pending() {
                    return Err(interrupted());
                }
                let r = f(st);
                st.take_pending();
                r
            },
            true,
        );
        match r {
            Ok(r) => r,
            Err(ExecError::Interrupted) => Err(interrupted()),
            Err(ExecError::Gone) => Err(gone()),
        }
    }

    /// Runs `f` in the ioproc and returns its result (Plan 9's `iocall`).
    /// `f` may borrow from the caller's stack: the caller cannot leave
    /// before `f` has returned, even when it is interrupted or killed while
    /// it waits (it then interrupts the call and keeps waiting). A panic in
    /// `f` is raised again in the caller; the ioproc survives it.
    ///
    /// `f` runs with the interrupt signal unblocked: an interrupt pending
    /// when it starts, or sent while it runs, makes its blocking system
    /// calls fail with EINTR (again every millisecond, until `f` returns),
    /// and is consumed when `f` returns.
    ///
    /// ```
    /// thread9::run(|| {
    ///     let io = thread9::Ioproc::new();
    ///     let text = String::from("borrowed");
    ///     let n = io.call(|| text.len()); // borrows `text` from this stack
    ///     assert_eq!(n, 8);
    /// }).unwrap();
    /// ```
    ///
    /// # Panics
    /// If the ioproc has ended: its program is exiting, or its thread was
    /// killed (`threadkillgrp` on the group it inherited from its creator).
    pub fn call<R: Send, F: FnOnce() -> R + Send>(&self, f: F) -> R {
        match self.exec(move |st| st.unmasked(f), false) {
            Ok(r) => r,
            Err(ExecError::Gone) => {
                panic!(
                    "thread9: Ioproc::call on an ioproc that has ended (its thread was killed, or its program is exiting)"
                )
            }
            Err(ExecError::Interrupted) => {
                unreachable!("thread9: an untyped call is never abandoned")
            }
        }
    }

    /// Opens `path` (Plan 9's `ioopen`). `omode` is a Plan 9 mode (OREAD 0,
    /// OWRITE 1, ORDWR 2, OEXEC 3, plus OTRUNC 0x10), Unix `O_*` flags, or
    /// a mix: the access mode and 0x10 are read as Plan 9's, every other
    /// bit as a Unix flag. Plan 9's ORCLOSE has the value of `O_CREAT`, and
    /// means `O_CREAT` here (Unix has no remove-on-close); a file it
    /// creates gets mode 0666 less the umask.
    ///
    /// ```
    /// use thread9::srv::fcall::{OTRUNC, OWRITE};
    /// let path = std::env::temp_dir().join(format!("thread9-open-doc-{}", std::process::id()));
    /// std::fs::write(&path, b"old contents").unwrap();
    /// let p = path.clone();
    /// thread9::run(move || {
    ///     let io = thread9::Ioproc::new();
    ///     let fd = io.open(&p, i32::from(OWRITE | OTRUNC)).unwrap();
    ///     io.write(&fd, b"new").unwrap();
    ///     io.close(fd).unwrap();
    /// }).unwrap();
    /// assert_eq!(std::fs::read(&path).unwrap(), b"new");
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn open(&self, path: &Path, omode: i32) -> io::Result<OwnedFd> {
        self.io(|st| ops::open(st, path, omode))
    }

    /// Closes `fd` (Plan 9's `ioclose`).
    ///
    /// ```
    /// use std::io::Read;
    /// use std::os::unix::net::UnixStream;
    ///
    /// thread9::run(|| {
    ///     let (a, mut b) = UnixStream::pair().unwrap();
    ///     thread9::Ioproc::new().close(a.into()).unwrap();
    ///     // The peer sees end of file: `a` is really gone.
    ///     assert_eq!(b.read(&mut [0u8; 1]).unwrap(), 0);
    /// }).unwrap();
    /// ```
    pub fn close(&self, fd: OwnedFd) -> io::Result<()> {
        self.io(move |_| ops::close(fd))
    }

    /// Reads once into `buf` (Plan 9's `ioread`); 0 means end of file.
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    ///
    /// thread9::run(|| {
    ///     let (mut a, b) = UnixStream::pair().unwrap();
    ///     a.write_all(b"hello").unwrap();
    ///     let io = thread9::Ioproc::new();
    ///     let mut buf = [0u8; 16];
    ///     let n = io.read(&b, &mut buf).unwrap();
    ///     assert_eq!(&buf[..n], b"hello");
    ///     drop(a);
    ///     assert_eq!(io.read(&b, &mut buf).unwrap(), 0);
    /// }).unwrap();
    /// ```
    pub fn read(&self, fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
        let fd = fd.as_fd().as_raw_fd();
        self.io(|st| ops::read(st, fd, buf))
    }

    /// Reads until `buf` is full, end of file, or an error (Plan 9's
    /// `ioreadn`); an error after some bytes (an interrupt included) ends
    /// it with those bytes, and is not retried.
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    ///
    /// thread9::run(|| {
    ///     let (mut a, b) = UnixStream::pair().unwrap();
    ///     a.write_all(b"hello world").unwrap();
    ///     drop(a);
    ///     let io = thread9::Ioproc::new();
    ///     let mut buf = [0u8; 5];
    ///     assert_eq!(io.readn(&b, &mut buf).unwrap(), 5);
    ///     assert_eq!(&buf, b"hello");
    ///     // Fewer bytes than asked for: end of file came first.
    ///     let mut rest = [0u8; 16];
    ///     assert_eq!(io.readn(&b, &mut rest).unwrap(), 6);
    ///     assert_eq!(&rest[..6], b" world");
    /// }).unwrap();
    /// ```
    pub fn readn(&self, fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
        let fd = fd.as_fd().as_raw_fd();
        self.io(|st| ops::readn(st, fd, buf))
    }

    /// Writes all of `buf` (Plan 9's `iowrite`), returning its length; an
    /// error after some bytes ends it with the count written.
    ///
    /// ```
    /// use std::io::Read;
    /// use std::os::unix::net::UnixStream;
    ///
    /// thread9::run(|| {
    ///     let (a, mut b) = UnixStream::pair().unwrap();
    ///     let io = thread9::Ioproc::new();
    ///     assert_eq!(io.write(&a, b"hello").unwrap(), 5);
    ///     let mut buf = [0u8; 5];
    ///     b.read_exact(&mut buf).unwrap();
    ///     assert_eq!(&buf, b"hello");
    /// }).unwrap();
    /// ```
    pub fn write(&self, fd: impl AsFd, buf: &[u8]) -> io::Result<usize> {
        let fd = fd.as_fd().as_raw_fd();
        self.io(|st| ops::write(st, fd, buf))
    }

    /// Connects to a Plan 9 dial string (Plan 9's `iodial`):
    /// `tcp!host!port`, `tcp!host!service`, `udp!host!port`,
    /// `net!host!port` (tcp), `unix!/path`.
    ///
    /// ```
    /// use std::io::Read;
    /// use std::net::TcpListener;
    ///
    /// thread9::run(|| {
    ///     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let port = listener.local_addr().unwrap().port();
    ///     let io = thread9::Ioproc::new();
    ///     let fd = io.dial(&format!("tcp!127.0.0.1!{port}")).unwrap();
    ///     // The connection is already queued on the listener, so this does not block.
    ///     let (mut conn, _) = listener.accept().unwrap();
    ///     io.write(&fd, b"ping").unwrap();
    ///     let mut buf = [0u8; 4];
    ///     conn.read_exact(&mut buf).unwrap();
    ///     assert_eq!(&buf, b"ping");
    /// }).unwrap();
    /// ```
    pub fn dial(&self, addr: &str) -> io::Result<OwnedFd> {
        self.io(|st| {
            let t = dial::parse(addr)?;
            dial::connect(st, &t)
        })
    }

    /// Accepts a connection on a listening socket (what Plan 9 does with
    /// `listen` and `accept` on a network directory). Interruptible like
    /// every other operation. Give it a non-blocking listener if several
    /// threads or processes accept on the same socket: a blocking one could
    /// lose a race for a connection and then block past an interrupt.
    ///
    /// ```
    /// use std::os::unix::net::{UnixListener, UnixStream};
    /// use std::io::{Read, Write};
    ///
    /// let path = std::env::temp_dir().join(format!("thread9-accept-doc-{}", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let listener = UnixListener::bind(&path).unwrap();
    /// let p = path.clone();
    /// let client = std::thread::spawn(move || {
    ///     let mut s = UnixStream::connect(p).unwrap();
    ///     s.write_all(b"hi").unwrap();
    /// });
    /// thread9::run(move || {
    ///     let io = thread9::Ioproc::new();
    ///     let conn = io.accept(&listener).unwrap();
    ///     let mut buf = [0u8; 2];
    ///     assert_eq!(io.readn(&conn, &mut buf).unwrap(), 2);
    ///     assert_eq!(&buf, b"hi");
    /// }).unwrap();
    /// client.join().unwrap();
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn accept(&self, listener: impl AsFd) -> io::Result<OwnedFd> {
        let fd = listener.as_fd().as_raw_fd();
        self.io(|st| ops::accept(st, fd))
    }

    /// Sleeps `ms` milliseconds in the ioproc (9front's `iosleep`);
    /// interruptible, so a thread can serve as a timer that another stops.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// thread9::run(|| {
    ///     let io = thread9::Ioproc::new();
    ///     let t = Instant::now();
    ///     io.sleep(20).unwrap();
    ///     assert!(t.elapsed() >= Duration::from_millis(20));
    /// }).unwrap();
    /// ```
    pub fn sleep(&self, ms: u64) -> io::Result<()> {
        self.io(|st| ops::sleep(st, ms))
    }

    /// Waits for the call in progress to end and clears a pending interrupt
    /// (9front's `ioflush`).
    ///
    /// ```
    /// thread9::run(|| {
    ///     let io = thread9::Ioproc::new();
    ///     io.interrupt(); // no call running: it would fail the next one
    ///     io.flush().unwrap();
    ///     assert!(io.sleep(1).is_ok());
    /// }).unwrap();
    /// ```
    pub fn flush(&self) -> io::Result<()> {
        match self.exec(|st| st.clear(), true) {
            Ok(()) => Ok(()),
            Err(ExecError::Interrupted) => Err(interrupted()),
            Err(ExecError::Gone) => Err(gone()),
        }
    }

    /// Interrupts the call in progress, or with none, the next call
    /// (9front's `iointerrupt`). Never blocks.
    ///
    /// ```
    /// use std::io::ErrorKind;
    /// use std::os::unix::net::UnixStream;
    /// use thread9::{Chan, Ioproc, threadcreate};
    ///
    /// thread9::run(|| {
    ///     let (a, _b) = UnixStream::pair().unwrap(); // `_b` never writes
    ///     let io = Ioproc::new();
    ///     let done = Chan::new(0);
    ///     let (io2, d) = (io.clone(), done.clone());
    ///     threadcreate(move || {
    ///         let r = io2.read(&a, &mut [0u8; 1]);
    ///         d.send(r.map_err(|e| e.kind())).unwrap();
    ///     }, 0);
    ///     thread9::threadyield();
    ///     // Whether the read has started or not, it fails: an early interrupt stays pending.
    ///     io.interrupt();
    ///     assert_eq!(done.recv().unwrap(), Err(ErrorKind::Interrupted));
    ///     // The interrupt is used up: the next call runs.
    ///     assert!(io.sleep(1).is_ok());
    /// }).unwrap();
    /// ```
    pub fn interrupt(&self) {
        self.sh.st.interrupt();
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "thread9: the ioproc has ended (its thread was killed, or its program is exiting)",
    )
}

impl Default for Ioproc {
    fn default() -> Ioproc {
        Ioproc::new()
    }
}

impl fmt::Debug for Ioproc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ioproc")
            .field("name", &self.sh.done.name())
            .field("tid", &self.sh.st.tid.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupt_during_a_call_that_succeeds_is_used_up_by_it() {
        // 9front clears a pending interrupt when the call returns. Here the
        // interrupt comes while the call runs (from inside it, so that it
        // cannot come before or after) and the call succeeds anyway.
        crate::run(|| {
            let io = Ioproc::new();
            let r = io.io(|st| {
                st.interrupt();
                Ok(5)
            });
            assert_eq!(r.unwrap(), 5);
            io.sleep(1)
                .expect("the interrupt went with the call it came during");
        })
        .unwrap();
    }
}
