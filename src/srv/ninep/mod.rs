//! A 9P2000 client: mount a file server, then open, read, write, stat and
//! list its files, from thread9 threads or plain OS threads.
//!
//! 9P is Plan 9's file protocol: a client sends T-messages (walk to a
//! file, open it, read, write, clunk) over one byte stream and the server
//! answers each with an R-message carrying the same tag. Every file
//! service in Plan 9 speaks it, and so do thread9's `Srv` (file2chan) and
//! plan9port's servers; this module is the client side, in the spirit of
//! plan9port's lib9pclient.
//!
//! # Mounting
//!
//! [`Client::mount`] connects to a server and starts a session. Its
//! argument is either a *posted name*, such as `ramfile`, meaning the Unix
//! socket of that name in the namespace directory ([`super::namespace`]:
//! `$NAMESPACE`, else `/tmp/ns.$USER.$DISPLAY`, where `Srv::post` and
//! plan9port's `post9pservice` put them), or a dial string:
//! `unix!/path/to/socket`, `tcp!host!port` or `net!host!port`.
//! [`Client::mount_fd`] takes a socket that is already connected. Mounting
//! sends `Tversion`, offering messages of up to 8 MiB and taking the
//! server's answer as the session's [`msize`](Client::msize), then
//! `Tattach`es as `$USER` to the server's root.
//!
//! Paths are then walked from that root: `/`-separated, with empty parts
//! and `.` ignored, so `"dir/file"`, `"/dir/file"` and `"dir//./file"`
//! name the same file. [`Client::open`] gives a [`File`]; clunking it
//! (explicitly or by dropping it) tells the server it is closed.
//!
//! ```
//! use thread9::ninep::Client;
//! use thread9::srv::fcall::OREAD;
//!
//! # thread9::run(|| {
//! # let srv = thread9::Srv::new();
//! # let data = srv.file2chan("data").unwrap();
//! # thread9::threadcreate(move || loop {
//! #     if let (off, _, _, Some(rc)) = data.read.recv().unwrap() {
//! #         let _ = rc.send(Ok(b"hello, world\n"[(off as usize).min(13)..].to_vec()));
//! #     }
//! # }, 0);
//! # let name = format!("ramfile-{}", std::process::id());
//! # srv.post(&name).unwrap();
//! // A server posted as `name` (ramfile-<pid>) serves one file, "data",
//! // which reads as "hello, world\n".
//! let fs = Client::mount(&name).unwrap(); // the socket $NAMESPACE/ramfile-<pid>
//! let f = fs.open("data", OREAD).unwrap();
//! let mut text = Vec::new();
//! let mut buf = vec![0; 8192];
//! loop {
//!     let n = f.read(&mut buf).unwrap(); // 0 at end of file
//!     if n == 0 {
//!         break;
//!     }
//!     text.extend_from_slice(&buf[..n]);
//! }
//! assert_eq!(text, b"hello, world\n");
//! let names: Vec<String> = fs.read_dir("/").unwrap().into_iter().map(|d| d.name).collect();
//! assert_eq!(names, ["data"]);
//! # drop(srv); // removes the posted socket
//! # thread9::threadexitsall(""); // the file's thread serves forever
//! # }).unwrap();
//! ```
//!
//! # Threads
//!
//! A [`Client`] is one connection, and a cheap handle to it: clone it, send
//! it to other procs, use it from plain OS threads. Any number of threads
//! may have requests outstanding at once; each request gets its own tag,
//! and the server may answer them in any order.
//!
//! Each connection has two OS threads of its own, outside any thread9
//! program: a writer, which puts requests on the socket in the order they
//! were made, and a reader, which takes replies off it and hands each to
//! the request that owns its tag. A request therefore never blocks its
//! proc: a thread9 thread waits for its reply on a channel, so the other
//! threads of its proc run meanwhile. A plain OS thread simply blocks, and
//! if no one else is reading the socket it reads it itself while it
//! waits, routing whatever replies come, so that its own reaches it
//! without a hand-off between threads; the reader thread takes over when
//! it leaves.
//! While a request is outstanding the server may still answer it, so a
//! thread waiting for one is never reported as deadlocked.
//!
//! [`threadint`](crate::threadint) on a thread waiting for a reply sends
//! the server a `Tflush` for its request, waits for the server to confirm,
//! and fails the call with [`ErrorKind::Interrupted`]; a reply that was
//! already on its way is discarded (9P's rule: after `Rflush`, the tag is
//! free and the request is over). [`threadkill`](crate::threadkill) flushes
//! the request the same way but does not wait. Note that std's
//! `read_to_end`, `read_exact` and `write_all` retry on `Interrupted`; call
//! [`File::read`] and [`File::write`] directly when an interrupt should end
//! the loop.
//!
//! When the connection breaks (the server hangs up, or sends something
//! that is not a 9P reply to an outstanding request), every outstanding
//! request fails and so does every later one, with an
//! [`ErrorKind::BrokenPipe`] error whose message starts with
//! `connection closed`. An error the server sends (`Rerror`) comes back
//! as an [`io::Error`] whose `to_string()` is exactly the server's error
//! string.

mod replies;

use std::collections::HashMap;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::fcall::{
    Dir, Fcall, IOHDRSZ, MAXWELEM, Msg, NOFID, NOTAG, OREAD, Qid, VERSION9P, decode_dirs,
};
use super::wire::size_send_buffer;
use crate::channel::{Chan, RecvError};
use crate::ioproc::dial::{self, Target};
use crate::ioproc::interrupted;
use replies::{Bad, Replies};

/// The message size offered in `Tversion`: as large as any server takes.
const MSIZE_OFFER: u32 = 8 * 1024 * 1024 + IOHDRSZ;

/// The fid attached to the server's root.
const ROOT_FID: u32 = 0;

/// A connection to a 9P2000 file server: Plan 9's mount, for one program.
///
/// Cloning gives another handle to the same connection (`Send + Sync`);
/// the connection closes when the last handle and the last [`File`] opened
/// through it are gone. See the [module documentation](self) for how
/// requests from many threads share it.
///
/// ```
/// use thread9::ninep::Client;
/// use thread9::srv::fcall::IOHDRSZ;
///
/// # thread9::run(|| {
/// # let srv = thread9::Srv::new();
/// # let _profile = srv.file2chan("profile").unwrap();
/// # srv.announce("tcp!127.0.0.1!0").unwrap();
/// # let addr = srv.addrs()[0].clone();
/// // `addr` is a server's dial string, tcp!127.0.0.1!<port>.
/// let fs = Client::mount(&addr).unwrap();
/// let d = fs.stat("profile").unwrap();
/// assert_eq!(d.name, "profile");
/// assert_eq!(d.length, 0); // a file2chan file has no length of its own
/// assert!(fs.msize() > IOHDRSZ); // room for data in every message
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Client {
    conn: Arc<Conn>,
}

/// An open file on a 9P server (a fid opened with `Topen`).
///
/// `Send + Sync`: threads may share it. Its offset is shared too, like a
/// Unix open file description's: [`read`](File::read) and
/// [`write`](File::write) start at the current offset and advance it by
/// what they transferred, while [`pread`](File::pread) and
/// [`pwrite`](File::pwrite) name their own offset and leave it alone. As
/// in Plan 9, two reads that overlap in time may both start at the same
/// offset; use `pread` with offsets of your own when that matters.
///
/// Dropping a `File` clunks it without waiting for the server's answer;
/// [`clunk`](File::clunk) waits and reports the server's error.
///
/// ```
/// use std::io::{BufRead, BufReader};
/// use thread9::srv::fcall::OREAD;
///
/// # use thread9::srv::{Srv, ninep::Client};
/// # thread9::run(|| {
/// # let srv = Srv::new();
/// # let log = srv.file2chan("log").unwrap();
/// # thread9::threadcreate(move || loop {
/// #     if let (off, _, _, Some(rc)) = log.read.recv().unwrap() {
/// #         let _ = rc.send(Ok(b"started\nstopped\n"[(off as usize).min(16)..].to_vec()));
/// #     }
/// # }, 0);
/// # srv.announce("tcp!127.0.0.1!0").unwrap();
/// # let fs = Client::mount(&srv.addrs()[0]).unwrap();
/// // "log" reads as "started\nstopped\n". A File is a std::io::Read.
/// let lines = BufReader::new(fs.open("log", OREAD).unwrap()).lines();
/// let lines: Vec<String> = lines.collect::<Result<_, _>>().unwrap();
/// assert_eq!(lines, ["started", "stopped"]);
/// # thread9::threadexitsall("");
/// # }).unwrap();
/// ```
pub struct File {
    conn: Arc<Conn>,
    /// [`NOFID`] once clunked.
    fid: u32,
    qid: Qid,
    iounit: u32,
    offset: AtomicU64,
}

/// What the handles share: the session and its fixed parameters.
struct Conn {
    shared: Arc<Shared>,
    msize: u32,
    root: Qid,
}

/// What the handles share with the reader and writer threads.
struct Shared {
    table: Mutex<Table>,
    /// Encoded requests for the writer, in order. Unbounded so that
    /// queueing never waits: each caller has at most a request and its
    /// flush outstanding, so the queue stays short.
    out: Chan<Vec<u8>>,
    /// The socket, for callers to write to directly.
    sock: OwnedFd,
    /// True while the writer has requests to write (queued or under way):
    /// then later ones must queue behind them. Held only around queueing
    /// and a non-blocking send, never across a wait.
    backlog: Mutex<bool>,
    /// The largest message the reader accepts.
    msize: AtomicU32,
    /// Who reads replies off the socket (see [`Reading`]).
    reading: Mutex<Reading>,
    /// Wakes the reader thread when there is reading to do.
    wake_reader: Condvar,
}

/// The socket's incoming side, and who is reading it.
///
/// Whoever takes `replies` reads the socket and routes every reply it
/// finds to its request, until it puts `replies` back. A caller on a
/// plain OS thread takes it while it waits for its own reply, if no one
/// else is reading: its reply then reaches it without a hand-off from
/// another thread (a futex sleep and wake per request saved, the most
/// expensive step of a small read). The reader thread reads whenever
/// requests are outstanding and no such caller is; callers in programs
/// never read themselves (a blocking read would stall their proc).
struct Reading {
    /// `None` while someone is reading.
    replies: Option<Replies>,
    /// The reader thread is waiting on `wake_reader`.
    idle: bool,
    /// The connection is being closed: read to the end.
    closing: bool,
}

/// Tags and fids in use, and whether the connection still works.
struct Table {
    slots: HashMap<u16, Slot>,
    next_tag: u16,
    next_fid: u32,
    free_fids: Vec<u32>,
    /// Why the connection is unusable, once it is.
    dead: Option<String>,
}

/// What to do with the reply to a tag.
enum Slot {
    /// A caller waits for it on this channel (capacity 1, so the reader
    /// never blocks).
    Wait(Chan<Msg>),
    /// Its caller gave up and sent a `Tflush`: the reply, if any, is
    /// dropped, and the tag stays taken until the flush is answered, so
    /// that the flush cannot hit a later request that reuses it.
    Flushed,
    /// A `Tflush` of tag `old`; its answer frees both tags and is passed
    /// on to `done` if someone still waits for it.
    Flush { old: u16, done: Option<Chan<Msg>> },
    /// A request no one waits for (a clunk from `Drop`): the answer frees
    /// the tag, and `fid` too.
    Forget { fid: Option<u32> },
}

/// How [`Shared::abandon`] left a request.
enum Abandon {
    /// Its reply had already arrived (or the connection had died).
    Answered,
    /// A `Tflush` with this tag is on its way.
    Flushing(u16),
    /// No tag was free for a `Tflush`: the request's tag stays taken.
    Leaked,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while holding the lock; tolerate it anyway.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reading(&self) -> MutexGuard<'_, Reading> {
        // As for `lock`.
        self.reading.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The error for a request on a dead connection.
    fn dead(&self) -> io::Error {
        let why = self.lock().dead.clone();
        io::Error::new(
            ErrorKind::BrokenPipe,
            why.unwrap_or_else(|| "connection closed".into()),
        )
    }

    /// Marks the connection dead: fails every outstanding request and
    /// stops the writer. The first reason given sticks.
    fn fail(&self, why: String) {
        let mut t = self.lock();
        if t.dead.is_none() {
            t.dead = Some(why);
        }
        for (_, slot) in t.slots.drain() {
            match slot {
                Slot::Wait(c) | Slot::Flush { done: Some(c), .. } => {
                    c.close();
                }
                _ => {}
            }
        }
        drop(t);
        self.out.close();
        self.kick();
    }

    /// Wakes the reader thread if it waits while there may be reading to
    /// do. The state it checks changed before this call; taking the lock
    /// orders the change before its next check.
    fn kick(&self) {
        let idle = self.reading().idle;
        if idle {
            self.wake_reader.notify_one();
        }
    }

    /// Reads one reply and routes it; the reason the connection is over if
    /// that fails.
    fn read_one(&self, replies: &mut Replies) -> Result<(), String> {
        match replies.next(self.msize.load(Ordering::Relaxed)) {
            Ok(Some(f)) => self.dispatch(f),
            Ok(None) => Err("connection closed".into()),
            Err(Bad::Message(e)) => Err(format!(
                "connection closed: bad message from the server: {e}"
            )),
            Err(Bad::Io(e)) => Err(format!("connection closed: {e}")),
        }
    }

    /// Reads replies until `chan` has the caller's, if no one else is
    /// reading; `None` if someone is (they will route it to `chan`).
    fn lead(&self, chan: &Chan<Msg>) -> Option<io::Result<Msg>> {
        let mut replies = self.reading().replies.take()?;
        let failed = loop {
            // The reply may have come before we took over.
            if !chan.is_empty() {
                break None;
            }
            if let Err(why) = self.read_one(&mut replies) {
                break Some(why);
            }
        };
        self.reading().replies = Some(replies);
        match failed {
            Some(why) => self.fail(why),
            // Others' replies may still be due: the reader thread takes
            // over if so. Only then: waking it for nothing would cost a
            // futex wake and a context switch per request. (A request
            // started later kicks it itself, or its caller leads.)
            None => {
                if !self.lock().slots.is_empty() {
                    self.kick();
                }
            }
        }
        Some(chan.nbrecv().map_err(|_| self.dead()))
    }

    fn alloc_fid(&self) -> u32 {
        let mut t = self.lock();
        if let Some(fid) = t.free_fids.pop() {
            return fid;
        }
        let fid = t.next_fid;
        // Four billion fids outstanding would exhaust memory first.
        t.next_fid = match fid + 1 {
            NOFID => ROOT_FID + 1,
            n => n,
        };
        fid
    }

    fn free_fid(&self, fid: u32) {
        self.lock().free_fids.push(fid);
    }

    /// Queues `msg` with a fresh tag (or `tag`, for `Tversion`) whose reply
    /// is handled as `slot` says. Gives the tag.
    fn start(&self, msg: &Msg, slot: Slot, tag: Option<u16>) -> io::Result<u16> {
        let mut frame = Vec::new();
        Fcall {
            tag: 0,
            msg: msg.clone(),
        }
        .try_encode(&mut frame)?;
        let msize = self.msize.load(Ordering::Relaxed);
        if frame.len() > msize as usize {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} of {} bytes exceeds the session's message size {msize}",
                    msg.name(),
                    frame.len()
                ),
            ));
        }
        let mut t = self.lock();
        if let Some(why) = &t.dead {
            return Err(io::Error::new(ErrorKind::BrokenPipe, why.clone()));
        }
        let tag = match tag {
            Some(tag) => tag,
            None => alloc_tag(&mut t).ok_or_else(|| {
                io::Error::new(
                    ErrorKind::ResourceBusy,
                    "too many 9P requests outstanding on one connection",
                )
            })?,
        };
        t.slots.insert(tag, slot);
        drop(t);
        frame[5..7].copy_from_slice(&tag.to_le_bytes());
        if self.post(frame).is_err() {
            // Only `fail` closes the queue while handles exist.
            self.fail("connection closed".into());
            return Err(self.dead());
        }
        Ok(tag)
    }

    /// Puts a request on the wire. The common case costs one system call
    /// and no hand-off: a non-blocking send straight to the socket. What
    /// the socket will not take now goes to the writer thread, and so does
    /// everything after it until the writer has caught up. Fails once the
    /// connection is closed.
    fn post(&self, frame: Vec<u8>) -> Result<(), ()> {
        let mut backlog = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        if self.out.is_closed() {
            return Err(());
        }
        let rest = if *backlog {
            frame
        } else {
            match send_now(self.sock.as_fd(), &frame) {
                Ok(n) if n == frame.len() => return Ok(()),
                Ok(n) => frame[n..].to_vec(),
                // The writer meets the error too, and reports it.
                Err(_) => frame,
            }
        };
        *backlog = true;
        self.out.nbsend(rest).map_err(|_| ())
    }

    /// Sends `msg` and waits for its reply, which may be `Rerror`.
    fn rpc(&self, msg: Msg) -> io::Result<Msg> {
        self.rpc_tagged(msg, None)
    }

    fn rpc_tagged(&self, msg: Msg, tag: Option<u16>) -> io::Result<Msg> {
        let chan = reply_chan();
        let tag = self.start(&msg, Slot::Wait(chan.clone()), tag)?;
        if crate::thread::threads::current_program_id() == 0 {
            if let Some(r) = self.lead(&chan) {
                return r;
            }
        } else {
            self.kick();
        }
        let mut waiting = Waiting {
            shared: self,
            tag,
            armed: true,
        };
        let r = chan.recv();
        waiting.armed = false;
        match r {
            Ok(reply) => Ok(reply),
            Err(RecvError::Closed) => Err(self.dead()),
            Err(RecvError::Interrupted) => self.interrupted(tag, chan),
        }
    }

    /// The caller waiting for `tag`'s reply on `chan` was interrupted:
    /// flush the request and wait until the server confirms.
    fn interrupted(&self, tag: u16, chan: Chan<Msg>) -> io::Result<Msg> {
        let done = reply_chan();
        match self.abandon(tag, Some(done.clone())) {
            // The reply beat the interrupt: the request is over, and its
            // result is the caller's.
            Abandon::Answered => match chan.nbrecv() {
                Ok(reply) => Ok(reply),
                Err(_) => Err(self.dead()),
            },
            Abandon::Leaked => Err(interrupted()),
            Abandon::Flushing(ftag) => {
                let mut waiting = FlushWait {
                    shared: self,
                    ftag,
                    armed: true,
                };
                match done.recv() {
                    Ok(_) => {
                        waiting.armed = false;
                    }
                    Err(RecvError::Closed) => waiting.armed = false,
                    // Interrupted again: `waiting` stops waiting for the
                    // flush; the reader still frees the tags.
                    Err(RecvError::Interrupted) => {}
                }
                Err(interrupted())
            }
        }
    }

    /// Gives up on the request `tag` if its reply has not come: sends a
    /// `Tflush` whose answer goes to `done`. Never blocks.
    fn abandon(&self, tag: u16, done: Option<Chan<Msg>>) -> Abandon {
        let mut t = self.lock();
        if !matches!(t.slots.get(&tag), Some(Slot::Wait(_))) {
            return Abandon::Answered;
        }
        t.slots.insert(tag, Slot::Flushed);
        let Some(ftag) = alloc_tag(&mut t) else {
            return Abandon::Leaked;
        };
        t.slots.insert(ftag, Slot::Flush { old: tag, done });
        drop(t);
        let mut frame = Vec::new();
        Fcall {
            tag: ftag,
            msg: Msg::Tflush { oldtag: tag },
        }
        .encode(&mut frame);
        if self.post(frame).is_err() {
            self.fail("connection closed".into());
        }
        self.kick();
        Abandon::Flushing(ftag)
    }

    /// Clunks `fid` without waiting; the fid is reused once the server has
    /// answered.
    fn forget(&self, fid: u32) {
        let slot = Slot::Forget { fid: Some(fid) };
        // On a dead connection every fid is gone anyway.
        if self.start(&Msg::Tclunk { fid }, slot, None).is_ok() {
            self.kick();
        }
    }

    /// Routes a reply from the server. An error ends the connection.
    fn dispatch(&self, f: Fcall) -> Result<(), String> {
        if f.msg.is_request() {
            return Err(format!(
                "connection closed: the server sent a request, {}",
                f.msg.name()
            ));
        }
        let mut t = self.lock();
        match t.slots.remove(&f.tag) {
            None => {
                return Err(format!(
                    "connection closed: the server sent {} with tag {}, which no request has",
                    f.msg.name(),
                    f.tag
                ));
            }
            Some(Slot::Wait(c)) => {
                // The slot's channel is empty with room for one: this
                // cannot block, and cannot fail but for a closed channel,
                // whose owner no longer wants the reply.
                let _ = c.nbsend(f.msg);
            }
            Some(Slot::Flushed) => {
                t.slots.insert(f.tag, Slot::Flushed);
            }
            Some(Slot::Flush { old, done }) => {
                t.slots.remove(&old);
                if let Some(c) = done {
                    let _ = c.nbsend(f.msg);
                }
            }
            Some(Slot::Forget { fid }) => {
                if let Some(fid) = fid {
                    t.free_fids.push(fid);
                }
            }
        }
        Ok(())
    }
}

/// A free tag other than `NOTAG`, if any.
fn alloc_tag(t: &mut Table) -> Option<u16> {
    for _ in 0..NOTAG {
        let tag = t.next_tag;
        t.next_tag = if tag + 1 == NOTAG { 0 } else { tag + 1 };
        if !t.slots.contains_key(&tag) {
            return Some(tag);
        }
    }
    None
}

/// Flushes a request whose waiter unwinds (a `threadkill`) before its
/// reply came.
struct Waiting<'a> {
    shared: &'a Shared,
    tag: u16,
    armed: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.abandon(self.tag, None);
        }
    }
}

/// Stops waiting for a flush's answer when its waiter gives up.
struct FlushWait<'a> {
    shared: &'a Shared,
    ftag: u16,
    armed: bool,
}

impl Drop for FlushWait<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Some(Slot::Flush { done, .. }) = self.shared.lock().slots.get_mut(&self.ftag) {
                *done = None;
            }
        }
    }
}

/// The server's error, or a complaint that `got` is not a `want`.
fn unexpected(want: &str, got: Msg) -> io::Error {
    match got {
        Msg::Rerror { ename } => io::Error::other(ename),
        other => io::Error::new(
            ErrorKind::InvalidData,
            format!("9P: expected {want}, got {}", other.name()),
        ),
    }
}

/// A reply channel. The reader thread, outside any program, sends on it
/// only when the reply comes; made with `new_shared` so that deadlock detection
/// knows a thread waiting on it may yet be woken.
fn reply_chan<T>() -> Chan<T> {
    Chan::new_shared(1)
}

/// Runs `f` on an OS thread of its own when called in a program, so that
/// a slow connect blocks only the calling thread.
fn off_proc<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    if crate::thread::threads::current_program_id() == 0 {
        return f();
    }
    let c: Chan<io::Result<T>> = reply_chan();
    let tx = c.clone();
    std::thread::Builder::new()
        .name("thread9 9p dial".into())
        .spawn(move || {
            // Closed afterwards so that a panic in `f` cannot leave the
            // caller waiting.
            let _ = tx.nbsend(f());
            tx.close();
        })?;
    match c.recv() {
        Ok(r) => r,
        Err(RecvError::Interrupted) => Err(interrupted()),
        Err(RecvError::Closed) => Err(io::Error::other("mount: the dialing thread failed")),
    }
}

/// Connects to a posted name or a dial string.
fn dial(addr: &str) -> io::Result<OwnedFd> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("mount {addr}: {e}"));
    if !addr.contains('!') {
        let path = super::namespace().join(addr);
        return UnixStream::connect(&path).map(OwnedFd::from).map_err(|e| {
            io::Error::new(e.kind(), format!("mount {addr} ({}): {e}", path.display()))
        });
    }
    match dial::parse(addr)? {
        Target::Unix(path) => UnixStream::connect(path)
            .map(OwnedFd::from)
            .map_err(context),
        Target::Tcp(addrs) => {
            let s = TcpStream::connect(&addrs[..]).map_err(context)?;
            // Requests are small and each waits for its answer: do not let
            // Nagle hold them back.
            s.set_nodelay(true)?;
            Ok(s.into())
        }
        Target::Udp(_) => Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("mount {addr}: 9P needs a stream; use tcp or unix"),
        )),
    }
}

/// Fails unless `fd` is a stream socket.
fn check_stream_socket(fd: BorrowedFd<'_>) -> io::Result<()> {
    let why = match dial::sockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) {
        Ok(libc::SOCK_STREAM) => return Ok(()),
        Ok(_) => "not a stream socket".to_string(),
        Err(e) => e.to_string(),
    };
    Err(io::Error::new(
        ErrorKind::InvalidInput,
        format!("mount_fd: {why}"),
    ))
}

/// Writes all of `buf` to socket `fd`.
fn send_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // MSG_NOSIGNAL: a hung-up server is an error here, not a SIGPIPE
        // note for the whole program.
        // SAFETY: `fd` is open for the call and `buf` is valid for reads
        // of `buf.len()` bytes.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// One non-blocking send of `buf`; how much of it the socket took (0 if
/// none: it is full).
fn send_now(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `fd` is open for the call and `buf` is valid for reads
        // of `buf.len()` bytes.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            ErrorKind::Interrupted => {}
            ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(e),
        }
    }
}

/// The writer thread: puts queued requests on the socket, then shuts it
/// down, which also ends the reader.
fn writer(shared: Arc<Shared>, sock: OwnedFd) {
    while let Ok(frame) = shared.out.recv() {
        if let Err(e) = send_all(sock.as_fd(), &frame) {
            shared.fail(format!("connection closed: {e}"));
            break;
        }
        // Caught up: callers may send directly again.
        let mut backlog = shared.backlog.lock().unwrap_or_else(|e| e.into_inner());
        if shared.out.is_empty() {
            *backlog = false;
        }
    }
    // SAFETY: `sock` is open; shutdown takes no pointers.
    unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR) };
}

/// The reader thread: reads replies whenever some are due and no caller
/// is reading, until the connection ends.
fn reader(shared: Arc<Shared>) {
    loop {
        let mut r = shared.reading();
        let mut replies = loop {
            let t = shared.lock();
            if t.dead.is_some() {
                return;
            }
            let due = !t.slots.is_empty();
            drop(t);
            if r.replies.is_some() && (r.closing || due) {
                break r.replies.take().unwrap();
            }
            r.idle = true;
            r = shared
                .wake_reader
                .wait(r)
                .unwrap_or_else(|e| e.into_inner());
            r.idle = false;
        };
        drop(r);
        let result = shared.read_one(&mut replies);
        shared.reading().replies = Some(replies);
        if let Err(why) = result {
            shared.fail(why);
            return;
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The writer sends what is queued (clunks from dropped files),
        // then shuts the socket down; the server clunks the rest. The
        // reader reads to the end of the stream, and ends.
        self.shared.out.close();
        self.shared.reading().closing = true;
        self.shared.kick();
    }
}

impl Conn {
    /// Walks from the root along `path` to a new fid.
    fn walk(&self, path: &str) -> io::Result<u32> {
        let names: Vec<&str> = path
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        let fid = self.shared.alloc_fid();
        let mut from = ROOT_FID;
        let mut done = 0;
        loop {
            let step = &names[done..names.len().min(done + MAXWELEM)];
            let msg = Msg::Twalk {
                fid: from,
                newfid: fid,
                wnames: step.iter().map(|s| s.to_string()).collect(),
            };
            let err = match self.shared.rpc(msg) {
                Ok(Msg::Rwalk { wqids }) if wqids.len() == step.len() => {
                    done += step.len();
                    from = fid;
                    if done == names.len() {
                        return Ok(fid);
                    }
                    continue;
                }
                Ok(Msg::Rwalk { wqids }) if wqids.len() < step.len() => {
                    let name = step[wqids.len()];
                    WalkErr::Definite(io::Error::new(
                        ErrorKind::NotFound,
                        format!("'{name}' file does not exist"),
                    ))
                }
                Ok(Msg::Rerror { ename }) => WalkErr::Definite(io::Error::other(ename)),
                Ok(other) => WalkErr::Unsure(unexpected("Rwalk", other)),
                Err(e) => WalkErr::Unsure(e),
            };
            // A walk that failed leaves newfid as it was: unused on the
            // first step, at the last step's end on later ones. A walk
            // whose answer we did not see (interrupted) may have made it.
            match err {
                WalkErr::Definite(e) if from != fid => {
                    self.shared.free_fid(fid);
                    return Err(e);
                }
                WalkErr::Definite(e) | WalkErr::Unsure(e) => {
                    self.shared.forget(fid);
                    return Err(e);
                }
            }
        }
    }

    /// The most data one read or write of a file with `iounit` moves.
    fn chunk(&self, iounit: u32) -> usize {
        let max = self.msize - IOHDRSZ;
        (if iounit == 0 || iounit > max {
            max
        } else {
            iounit
        }) as usize
    }
}

/// How a walk failed.
enum WalkErr {
    /// The server answered: the new fid is as it was.
    Definite(io::Error),
    /// We do not know what the server did.
    Unsure(io::Error),
}

impl Client {
    /// Mounts the 9P2000 server at `addr`: a posted name (anything without
    /// `!`, meaning the Unix socket of that name in
    /// [`namespace()`](super::namespace)) or a dial string
    /// (`unix!/path`, `tcp!host!port`, `net!host!port`; host and service
    /// names are resolved). Connects, negotiates the message size and
    /// attaches to the server's root as `$USER`.
    ///
    /// Called from a thread9 thread, the connect runs on a helper OS
    /// thread, so only the calling thread waits for it (and
    /// [`threadint`](crate::threadint) ends the wait with
    /// [`ErrorKind::Interrupted`]).
    ///
    /// ```
    /// use thread9::srv::{Srv, ninep::Client};
    ///
    /// thread9::run(|| {
    ///     let srv = Srv::new();
    ///     let _f = srv.file2chan("status").unwrap();
    ///     // The pid keeps the name apart from other runs of this example.
    ///     let name = format!("ramfile-{}", std::process::id());
    ///     let posted = srv.post(&name).unwrap(); // $NAMESPACE/ramfile-<pid>
    ///     srv.announce("tcp!127.0.0.1!0").unwrap();
    ///     let tcp = srv.addrs()[1].clone(); // tcp!127.0.0.1!<port>
    ///     // Three ways to the same directory.
    ///     for addr in [name, format!("unix!{}", posted.display()), tcp] {
    ///         let fs = Client::mount(&addr).unwrap();
    ///         assert_eq!(fs.read_dir("/").unwrap()[0].name, "status");
    ///     }
    ///     drop(srv); // stops serving and removes the posted socket
    ///     assert!(!posted.exists());
    /// }).unwrap();
    /// ```
    pub fn mount(addr: &str) -> io::Result<Client> {
        let a = addr.to_string();
        let fd = off_proc(move || dial(&a))?;
        Client::mount_fd(fd)
    }

    /// Mounts the 9P2000 server at the other end of `fd`, a connected
    /// stream socket ([`UnixStream`], [`TcpStream`], or its descriptor):
    /// negotiates the message size and attaches to the server's root as
    /// `$USER`. The client owns the socket from here on.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use thread9::srv::{Srv, ninep::Client};
    ///
    /// thread9::run(|| {
    ///     let srv = Srv::new();
    ///     let _f = srv.file2chan("status").unwrap();
    ///     let path = srv.post(&format!("mount-fd-{}", std::process::id())).unwrap();
    ///     // A socket connected by other means than a dial string.
    ///     let s = UnixStream::connect(&path).unwrap();
    ///     let fs = Client::mount_fd(s).unwrap();
    ///     assert_eq!(fs.read_dir("/").unwrap()[0].name, "status");
    /// }).unwrap();
    /// ```
    pub fn mount_fd(fd: impl Into<OwnedFd>) -> io::Result<Client> {
        let fd: OwnedFd = fd.into();
        check_stream_socket(fd.as_fd())?;
        let rd = fd.try_clone()?;
        let direct = fd.try_clone()?;
        let shared = Arc::new(Shared {
            reading: Mutex::new(Reading {
                replies: Some(Replies::new(rd)),
                idle: false,
                closing: false,
            }),
            wake_reader: Condvar::new(),
            sock: direct,
            backlog: Mutex::new(false),
            table: Mutex::new(Table {
                slots: HashMap::new(),
                next_tag: 0,
                next_fid: ROOT_FID + 1,
                free_fids: Vec::new(),
                dead: None,
            }),
            out: Chan::new(usize::MAX),
            msize: AtomicU32::new(MSIZE_OFFER),
        });
        // From here on, dropping `conn` stops the writer, which ends the
        // reader: an error below leaves no threads behind.
        let mut conn = Conn {
            shared: shared.clone(),
            msize: MSIZE_OFFER,
            root: Qid::default(),
        };
        let s = shared.clone();
        std::thread::Builder::new()
            .name("thread9 9p writer".into())
            .spawn(move || writer(s, fd))?;
        let s = shared.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("thread9 9p reader".into())
            .spawn(move || reader(s))
        {
            shared.fail("connection closed: no reader thread".into());
            return Err(e);
        }

        let tversion = Msg::Tversion {
            msize: MSIZE_OFFER,
            version: VERSION9P.into(),
        };
        let msize = match shared.rpc_tagged(tversion, Some(NOTAG))? {
            Msg::Rversion { msize, version } => {
                if version != VERSION9P {
                    return Err(io::Error::new(
                        ErrorKind::Unsupported,
                        format!("9P: the server speaks {version:?}, not {VERSION9P}"),
                    ));
                }
                if msize > MSIZE_OFFER || msize <= IOHDRSZ {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!("9P: the server's msize {msize} is out of range"),
                    ));
                }
                msize
            }
            other => return Err(unexpected("Rversion", other)),
        };
        shared.msize.store(msize, Ordering::Relaxed);
        conn.msize = msize;
        // Room for a whole Twrite of the largest size, so that a big write
        // usually leaves in one send, without the writer thread.
        size_send_buffer(shared.sock.as_fd(), msize);

        let tattach = Msg::Tattach {
            fid: ROOT_FID,
            afid: NOFID,
            uname: super::ns::user(),
            aname: String::new(),
        };
        conn.root = match shared.rpc(tattach)? {
            Msg::Rattach { qid } => qid,
            other => return Err(unexpected("Rattach", other)),
        };
        Ok(Client {
            conn: Arc::new(conn),
        })
    }

    /// The session's message size: the most bytes one 9P message may hold,
    /// as the server agreed in `Rversion`. Reads and writes move at most
    /// `msize - IOHDRSZ` bytes per message.
    ///
    /// ```
    /// use thread9::srv::{Srv, fcall::IOHDRSZ, ninep::Client};
    ///
    /// thread9::run(|| {
    ///     let srv = Srv::new();
    ///     srv.announce("tcp!127.0.0.1!0").unwrap();
    ///     let c = Client::mount(&srv.addrs()[0]).unwrap();
    ///     // The client offers 8 MiB; thread9's server settles for 1 MiB of data.
    ///     assert_eq!(c.msize(), (1 << 20) + IOHDRSZ);
    /// }).unwrap();
    /// ```
    pub fn msize(&self) -> u32 {
        self.conn.msize
    }

    /// The qid of the server's root, from `Rattach`.
    ///
    /// ```
    /// use thread9::srv::{Srv, fcall::QTDIR, ninep::Client};
    ///
    /// thread9::run(|| {
    ///     let srv = Srv::new();
    ///     srv.announce("tcp!127.0.0.1!0").unwrap();
    ///     let c = Client::mount(&srv.addrs()[0]).unwrap();
    ///     assert_eq!(c.root_qid().typ, QTDIR);
    ///     assert_eq!(c.root_qid(), c.stat("/").unwrap().qid);
    /// }).unwrap();
    /// ```
    pub fn root_qid(&self) -> Qid {
        self.conn.root
    }

    /// Opens the file at `path` (from the server's root) with `mode`:
    /// [`OREAD`], [`OWRITE`](super::fcall::OWRITE),
    /// [`ORDWR`](super::fcall::ORDWR) or
    /// [`OEXEC`](super::fcall::OEXEC), possibly with
    /// [`OTRUNC`](super::fcall::OTRUNC) or
    /// [`ORCLOSE`](super::fcall::ORCLOSE).
    ///
    /// A missing file fails with the server's error, or with
    /// [`ErrorKind::NotFound`] `'<name>' file does not exist` when the
    /// server stops the walk part way.
    ///
    /// ```
    /// use thread9::srv::fcall::{OREAD, ORDWR};
    ///
    /// # use thread9::srv::{Srv, ninep::Client};
    /// # thread9::run(|| {
    /// # let srv = Srv::new();
    /// # let data = srv.file2chan("data").unwrap();
    /// # thread9::threadcreate(move || {
    /// #     let mut saved = Vec::new();
    /// #     loop {
    /// #         thread9::alt! {
    /// #             recv(data.write) -> w => if let (_, d, _, Some(wc)) = w.unwrap() {
    /// #                 let _ = wc.send(Ok(d.len()));
    /// #                 saved = d;
    /// #             },
    /// #             recv(data.read) -> r => if let (off, _, _, Some(rc)) = r.unwrap() {
    /// #                 let _ = rc.send(Ok(saved[(off as usize).min(saved.len())..].to_vec()));
    /// #             },
    /// #         }
    /// #     }
    /// # }, 0);
    /// # srv.announce("tcp!127.0.0.1!0").unwrap();
    /// # let fs = Client::mount(&srv.addrs()[0]).unwrap();
    /// // "data" reads back what was last written to it.
    /// let f = fs.open("/data", ORDWR).unwrap();
    /// f.write(b"hello").unwrap();
    /// let mut buf = [0; 5];
    /// assert_eq!(f.pread(&mut buf, 0).unwrap(), 5);
    /// assert_eq!(&buf, b"hello");
    /// let e = fs.open("nonesuch", OREAD).unwrap_err();
    /// assert_eq!(e.to_string(), "file does not exist"); // the server's error
    /// # thread9::threadexitsall("");
    /// # }).unwrap();
    /// ```
    pub fn open(&self, path: &str, mode: u8) -> io::Result<File> {
        let fid = self.conn.walk(path)?;
        match self.conn.shared.rpc(Msg::Topen { fid, mode }) {
            Ok(Msg::Ropen { qid, iounit }) => Ok(File {
                conn: self.conn.clone(),
                fid,
                qid,
                iounit,
                offset: AtomicU64::new(0),
            }),
            Ok(other) => {
                self.conn.shared.forget(fid);
                Err(unexpected("Ropen", other))
            }
            Err(e) => {
                self.conn.shared.forget(fid);
                Err(e)
            }
        }
    }

    /// The directory entry of the file at `path`, without opening it.
    ///
    /// ```
    /// use thread9::srv::fcall::DMDIR;
    ///
    /// # use thread9::srv::{Srv, ninep::Client};
    /// # thread9::run(|| {
    /// # let srv = Srv::new();
    /// # let _log = srv.file2chan("log").unwrap();
    /// # srv.announce("tcp!127.0.0.1!0").unwrap();
    /// # let fs = Client::mount(&srv.addrs()[0]).unwrap();
    /// let d = fs.stat("/").unwrap();
    /// assert!(d.mode & DMDIR != 0);
    /// // No thread serves "log": stat does not open it, so no request waits.
    /// assert_eq!(fs.stat("log").unwrap().mode & DMDIR, 0);
    /// # }).unwrap();
    /// ```
    pub fn stat(&self, path: &str) -> io::Result<Dir> {
        let fid = self.conn.walk(path)?;
        let r = self.conn.shared.rpc(Msg::Tstat { fid });
        self.conn.shared.forget(fid);
        match r? {
            Msg::Rstat { stat } => Ok(stat),
            other => Err(unexpected("Rstat", other)),
        }
    }

    /// The entries of the directory at `path`: opens it, reads it to the
    /// end and clunks it.
    ///
    /// ```
    /// # use thread9::srv::{Srv, ninep::Client};
    /// # thread9::run(|| {
    /// # let srv = Srv::new();
    /// # let (_log, _ctl) = (srv.file2chan("log").unwrap(), srv.file2chan("ctl").unwrap());
    /// # srv.announce("tcp!127.0.0.1!0").unwrap();
    /// # let fs = Client::mount(&srv.addrs()[0]).unwrap();
    /// // The server has two files, "log" and then "ctl".
    /// let dirs = fs.read_dir("/").unwrap();
    /// for d in &dirs {
    ///     println!("{d}"); // Plan 9's dirfmt: name, owners, qid, mode, times, ...
    /// }
    /// let names: Vec<&str> = dirs.iter().map(|d| d.name.as_str()).collect();
    /// assert_eq!(names, ["log", "ctl"]);
    /// # }).unwrap();
    /// ```
    pub fn read_dir(&self, path: &str) -> io::Result<Vec<Dir>> {
        let f = self.open(path, OREAD)?;
        let dirs = f.read_dir()?;
        f.clunk()?;
        Ok(dirs)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("msize", &self.conn.msize)
            .field("root", &self.conn.root)
            .finish_non_exhaustive()
    }
}

impl File {
    /// Reads at the file's offset into `buf` and advances the offset by
    /// what came: one `Tread` of at most `buf.len()` bytes, and at most
    /// [`iounit`](File::iounit) (or `msize - IOHDRSZ`). Returns the number
    /// of bytes read; 0 means end of file (or an empty `buf`, which sends
    /// nothing). A short read is not an error: a server answers with what
    /// it has.
    ///
    /// ```
    /// # use thread9::srv::{Srv, fcall::*, ninep::Client};
    /// # thread9::run(|| {
    /// # let srv = Srv::new();
    /// # let greeting = srv.file2chan("greeting").unwrap();
    /// # thread9::threadcreate(move || loop {
    /// #     if let (off, _, _, Some(rc)) = greeting.read.recv().unwrap() {
    /// #         let _ = rc.send(Ok(b"hello, world"[(off as usize).min(12)..].to_vec()));
    /// #     }
    /// # }, 0);
    /// # srv.announce("tcp!127.0.0.1!0").unwrap();
    /// # let c = Client::mount(&srv.addrs()[0]).unwrap();
    /// // "greeting" reads as "hello, world".
    /// let f = c.open("greeting", OREAD).unwrap();
    /// let mut buf = [0; 100];
    /// let n = f.read(&mut buf).unwrap();
    /// assert_eq!(&buf[..n], b"hello, world"); // all there was: a short read
    /// assert_eq!(f.offset(), n as u64);
    /// assert_eq!(f.read(&mut buf).unwrap(), 0); // end of file
    /// # thread9::threadexitsall("");
    /// # }).unwrap();
    /// ```
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.pread(buf, self.offset.load(Ordering::Relaxed))?;
        self.offset.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    /// Reads at `offset` into `buf`, as [`read`](File::read) does but
    /// leaving the file's offset alone.
    ///
    /// ```
    /// use thread9::srv::{Srv, fcall::OREAD, ninep::Client};
    ///
    /// thread9::run(|| {
    ///     let srv = Srv::new();
    ///     let greeting = srv.file2chan("greeting").unwrap();
    ///     // The server's read handler answers from the offset asked for.
    ///     thread9::threadcreate(move || loop {
    ///         if let (off, _, _, Some(rc)) = greeting.read.recv().unwrap() {
    ///             let _ = rc.send(Ok(b"hello, world"[(off as usize).min(12)..].to_vec()));
    ///         }
    ///     }, 0);
    ///     # srv.announce("tcp!127.0.0.1!0").unwrap();
    ///     # let c = Client::mount(&srv.addrs()[0]).unwrap();
    ///     let f = c.open("greeting", OREAD).unwrap();
    ///     let mut buf = [0; 5];
    ///     assert_eq!(f.pread(&mut buf, 7).unwrap(), 5);
    ///     assert_eq!(&buf, b"world");
    ///     assert_eq!(f.offset(), 0);
    ///     thread9::threadexitsall("");
    /// }).unwrap();
    /// ```
    pub fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let data = self.read_at(buf.len(), offset)?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    /// One `Tread` of at most `count` bytes (cut to the chunk size).
    fn read_at(&self, count: usize, offset: u64) -> io::Result<Vec<u8>> {
        let count = count.min(self.conn.chunk(self.iounit)) as u32;
        let msg = Msg::Tread {
            fid: self.fid,
            offset,
            count,
        };
        match self.conn.shared.rpc(msg)? {
            Msg::Rread { data } if data.len() <= count as usize => Ok(data),
            Msg::Rread { data } => Err(io::Error::new(
                ErrorKind::InvalidData,
                format!(
                    "9P: the server sent {} bytes for a read of {count}",
                    data.len()
                ),
            )),
            other => Err(unexpected("Rread", other)),
        }
    }

    /// Writes all of `buf` at the file's offset, in messages of at most
    /// [`iounit`](File::iounit) (or `msize - IOHDRSZ`) bytes, advancing
    /// the offset after each. Returns the bytes written: less than
    /// `buf.len()` only if the server wrote less than it was sent, or if a
    /// later message failed after some data was written. An empty `buf`
    /// sends one empty `Twrite` (a message in itself to some servers, such
    /// as file2chan's).
    ///
    /// ```
    /// use thread9::srv::{Srv, fcall::OWRITE, ninep::Client};
    ///
    /// thread9::run(|| {
    ///     let srv = Srv::new();
    ///     let data = srv.file2chan("data").unwrap();
    ///     let writes = thread9::Chan::new(2);
    ///     let w = writes.clone();
    ///     thread9::threadcreate(move || loop {
    ///         if let (off, bytes, _, Some(wc)) = data.write.recv().unwrap() {
    ///             let _ = wc.send(Ok(bytes.len()));
    ///             w.send((off, bytes)).unwrap();
    ///         }
    ///     }, 0);
    ///     # srv.announce("tcp!127.0.0.1!0").unwrap();
    ///     # let c = Client::mount(&srv.addrs()[0]).unwrap();
    ///     let f = c.open("data", OWRITE).unwrap();
    ///     assert_eq!(f.write(b"hello, ").unwrap(), 7);
    ///     assert_eq!(f.write(b"world").unwrap(), 5);
    ///     // What the server was told: the second write lands after the first.
    ///     assert_eq!(writes.recv().unwrap(), (0, b"hello, ".to_vec()));
    ///     assert_eq!(writes.recv().unwrap(), (7, b"world".to_vec()));
    ///     thread9::threadexitsall("");
    /// }).unwrap();
    /// ```
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.write_from(buf, None)
    }

    /// Writes all of `buf` at `offset`, as [`write`](File::write) does but
    /// leaving the file's offset alone.
    ///
    /// ```
    /// use thread9::srv::{Srv, fcall::OWRITE, ninep::Client};
    ///
    /// thread9::run(|| {
    ///     let srv = Srv::new();
    ///     let log = srv.file2chan("log").unwrap();
    ///     let offsets = thread9::Chan::new(1);
    ///     let o = offsets.clone();
    ///     thread9::threadcreate(move || loop {
    ///         if let (off, data, _, Some(wc)) = log.write.recv().unwrap() {
    ///             o.send(off).unwrap();
    ///             let _ = wc.send(Ok(data.len()));
    ///         }
    ///     }, 0);
    ///     # srv.announce("tcp!127.0.0.1!0").unwrap();
    ///     # let c = Client::mount(&srv.addrs()[0]).unwrap();
    ///     let f = c.open("log", OWRITE).unwrap();
    ///     assert_eq!(f.pwrite(b"x", 10).unwrap(), 1);
    ///     assert_eq!(offsets.recv().unwrap(), 10); // where the server was told
    ///     assert_eq!(f.offset(), 0);
    ///     thread9::threadexitsall("");
    /// }).unwrap();
    /// ```
    pub fn pwrite(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.write_from(buf, Some(offset))
    }

    fn write_from(&self, buf: &[u8], mut at: Option<u64>) -> io::Result<usize> {
        let chunk = self.conn.chunk(self.iounit);
        let mut done = 0;
        loop {
            let part = &buf[done..buf.len().min(done + chunk)];
            let offset = at.unwrap_or_else(|| self.offset.load(Ordering::Relaxed));
            let msg = Msg::Twrite {
                fid: self.fid,
                offset,
                data: part.to_vec(),
            };
            let n = match self.conn.shared.rpc(msg) {
                Ok(Msg::Rwrite { count }) if count as usize <= part.len() => count as usize,
                Ok(Msg::Rwrite { count }) => {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!("9P: the server wrote {count} bytes of {}", part.len()),
                    ));
                }
                Ok(other) if done == 0 => return Err(unexpected("Rwrite", other)),
                Err(e) if done == 0 => return Err(e),
                // The data written so far counts; the error will recur.
                _ => return Ok(done),
            };
            match &mut at {
                Some(at) => *at += n as u64,
                None => {
                    self.offset.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            done += n;
            if n < part.len() || done == buf.len() {
                return Ok(done);
            }
        }
    }

    /// The file's directory entry (`Tstat`).
    ///
    /// ```
    /// # use thread9::srv::{Srv, fcall::*, ninep::Client};
    /// # thread9::run(|| {
    /// # let srv = Srv::new();
    /// # let greeting = srv.file2chan("greeting").unwrap();
    /// # thread9::threadcreate(move || loop {
    /// #     if let (off, _, _, Some(rc)) = greeting.read.recv().unwrap() {
    /// #         let _ = rc.send(Ok(b"hello, world"[(off as usize).min(12)..].to_vec()));
    /// #     }
    /// # }, 0);
    /// # srv.announce("tcp!127.0.0.1!0").unwrap();
    /// # let c = Client::mount(&srv.addrs()[0]).unwrap();
    /// let f = c.open("greeting", OREAD).unwrap();
    /// let d = f.stat().unwrap();
    /// assert_eq!(d.name, "greeting");
    /// assert_eq!(d.qid, f.qid());
    /// # thread9::threadexitsall("");
    /// # }).unwrap();
    /// ```
    pub fn stat(&self) -> io::Result<Dir> {
        match self.conn.shared.rpc(Msg::Tstat { fid: self.fid })? {
            Msg::Rstat { stat } => Ok(stat),
            other => Err(unexpected("Rstat", other)),
        }
    }

    /// The entries of this directory from the file's offset to the end
    /// (all of them, on a fresh `File`), read in as few messages as the
    /// server allows. The offset ends at the end of the directory.
    ///
    /// ```
    /// use thread9::srv::fcall::OREAD;
    ///
    /// # use thread9::srv::{Srv, ninep::Client};
    /// # thread9::run(|| {
    /// # let srv = Srv::new();
    /// # let (_log, _ctl) = (srv.file2chan("log").unwrap(), srv.file2chan("ctl").unwrap());
    /// # srv.announce("tcp!127.0.0.1!0").unwrap();
    /// # let fs = Client::mount(&srv.addrs()[0]).unwrap();
    /// // The server has two files, "log" and then "ctl".
    /// let dir = fs.open("/", OREAD).unwrap();
    /// let names: Vec<String> = dir.read_dir().unwrap().into_iter().map(|d| d.name).collect();
    /// assert_eq!(names, ["log", "ctl"]);
    /// assert!(dir.read_dir().unwrap().is_empty()); // the offset is at the end
    /// dir.set_offset(0);
    /// assert_eq!(dir.read_dir().unwrap().len(), 2);
    /// # }).unwrap();
    /// ```
    pub fn read_dir(&self) -> io::Result<Vec<Dir>> {
        let mut dirs = Vec::new();
        let chunk = self.conn.chunk(self.iounit);
        loop {
            let offset = self.offset.load(Ordering::Relaxed);
            let data = self.read_at(chunk, offset)?;
            if data.is_empty() {
                return Ok(dirs);
            }
            dirs.extend(decode_dirs(&data)?);
            self.offset.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
    }

    /// The file's qid, from `Ropen`.
    ///
    /// ```
    /// # use thread9::srv::{Srv, fcall::*, ninep::Client};
    /// # thread9::run(|| {
    /// # let srv = Srv::new();
    /// # let greeting = srv.file2chan("greeting").unwrap();
    /// # thread9::threadcreate(move || loop {
    /// #     if let (off, _, _, Some(rc)) = greeting.read.recv().unwrap() {
    /// #         let _ = rc.send(Ok(b"hello, world"[(off as usize).min(12)..].to_vec()));
    /// #     }
    /// # }, 0);
    /// # srv.announce("tcp!127.0.0.1!0").unwrap();
    /// # let c = Client::mount(&srv.addrs()[0]).unwrap();
    /// let f = c.open("greeting", OREAD).unwrap();
    /// assert_eq!(f.qid().typ, QTFILE); // a plain file, not a directory
    /// assert_eq!(f.qid(), c.stat("greeting").unwrap().qid);
    /// # thread9::threadexitsall("");
    /// # }).unwrap();
    /// ```
    pub fn qid(&self) -> Qid {
        self.qid
    }

    /// The server's `iounit` for this file, from `Ropen`: the most bytes
    /// one read or write moves atomically, or 0 for "no promise" (then
    /// `msize - IOHDRSZ` is used).
    ///
    /// ```
    /// # use thread9::srv::{Srv, fcall::*, ninep::Client};
    /// # thread9::run(|| {
    /// # let srv = Srv::new();
    /// # let greeting = srv.file2chan("greeting").unwrap();
    /// # thread9::threadcreate(move || loop {
    /// #     if let (off, _, _, Some(rc)) = greeting.read.recv().unwrap() {
    /// #         let _ = rc.send(Ok(b"hello, world"[(off as usize).min(12)..].to_vec()));
    /// #     }
    /// # }, 0);
    /// # srv.announce("tcp!127.0.0.1!0").unwrap();
    /// # let c = Client::mount(&srv.addrs()[0]).unwrap();
    /// let f = c.open("greeting", OREAD).unwrap();
    /// // thread9's server promises whole messages' worth.
    /// assert_eq!(f.iounit(), c.msize() - IOHDRSZ);
    /// # thread9::threadexitsall("");
    /// # }).unwrap();
    /// ```
    pub fn iounit(&self) -> u32 {
        self.iounit
    }

    /// The file's offset: where the next [`read`](File::read) or
    /// [`write`](File::write) starts.
    ///
    /// ```
    /// # use thread9::srv::{Srv, fcall::*, ninep::Client};
    /// # thread9::run(|| {
    /// # let srv = Srv::new();
    /// # let greeting = srv.file2chan("greeting").unwrap();
    /// # thread9::threadcreate(move || loop {
    /// #     if let (off, _, _, Some(rc)) = greeting.read.recv().unwrap() {
    /// #         let _ = rc.send(Ok(b"hello, world"[(off as usize).min(12)..].to_vec()));
    /// #     }
    /// # }, 0);
    /// # srv.announce("tcp!127.0.0.1!0").unwrap();
    /// # let c = Client::mount(&srv.addrs()[0]).unwrap();
    /// // "greeting" reads as "hello, world".
    /// let f = c.open("greeting", OREAD).unwrap();
    /// assert_eq!(f.offset(), 0);
    /// let n = f.read(&mut [0; 5]).unwrap();
    /// assert_eq!(f.offset(), n as u64);
    /// # thread9::threadexitsall("");
    /// # }).unwrap();
    /// ```
    pub fn offset(&self) -> u64 {
        self.offset.load(Ordering::Relaxed)
    }

    /// Moves the file's offset (Plan 9's `seek` from the start). On a
    /// directory, only 0 (back to the start) is meaningful to 9P.
    ///
    /// ```
    /// # use thread9::srv::{Srv, fcall::*, ninep::Client};
    /// # thread9::run(|| {
    /// # let srv = Srv::new();
    /// # let greeting = srv.file2chan("greeting").unwrap();
    /// # thread9::threadcreate(move || loop {
    /// #     if let (off, _, _, Some(rc)) = greeting.read.recv().unwrap() {
    /// #         let _ = rc.send(Ok(b"hello, world"[(off as usize).min(12)..].to_vec()));
    /// #     }
    /// # }, 0);
    /// # srv.announce("tcp!127.0.0.1!0").unwrap();
    /// # let c = Client::mount(&srv.addrs()[0]).unwrap();
    /// // "greeting" reads as "hello, world".
    /// let f = c.open("greeting", OREAD).unwrap();
    /// f.set_offset(7);
    /// let mut buf = [0; 5];
    /// assert_eq!(f.read(&mut buf).unwrap(), 5);
    /// assert_eq!(&buf, b"world");
    /// assert_eq!(f.offset(), 12);
    /// # thread9::threadexitsall("");
    /// # }).unwrap();
    /// ```
    pub fn set_offset(&self, offset: u64) {
        self.offset.store(offset, Ordering::Relaxed);
    }

    /// Clunks the file, waiting for the server's answer, and reports the
    /// server's error if it has one (the fid is gone either way).
    ///
    /// ```
    /// use thread9::srv::{Srv, fcall::OWRITE, ninep::Client};
    ///
    /// thread9::run(|| {
    ///     let srv = Srv::new();
    ///     let ctl = srv.file2chan("ctl").unwrap();
    ///     let seen = thread9::Chan::new(2);
    ///     let s = seen.clone();
    ///     thread9::threadcreate(move || loop {
    ///         match ctl.write.recv().unwrap() {
    ///             (_, cmd, _, Some(wc)) => {
    ///                 let _ = wc.send(Ok(cmd.len()));
    ///                 s.send(String::from_utf8(cmd).unwrap()).unwrap();
    ///             }
    ///             // No reply channel: a client closed the file.
    ///             (_, _, _, None) => s.send("close".to_string()).unwrap(),
    ///         }
    ///     }, 0);
    ///     # srv.announce("tcp!127.0.0.1!0").unwrap();
    ///     # let c = Client::mount(&srv.addrs()[0]).unwrap();
    ///     let f = c.open("ctl", OWRITE).unwrap();
    ///     f.write(b"halt").unwrap();
    ///     f.clunk().unwrap(); // the server has seen the close, and said so
    ///     assert_eq!(seen.recv().unwrap(), "halt");
    ///     assert_eq!(seen.recv().unwrap(), "close"); // passed on to the file's thread
    ///     thread9::threadexitsall("");
    /// }).unwrap();
    /// ```
    pub fn clunk(mut self) -> io::Result<()> {
        let fid = std::mem::replace(&mut self.fid, NOFID);
        match self.conn.shared.rpc(Msg::Tclunk { fid }) {
            Ok(Msg::Rclunk) => {
                self.conn.shared.free_fid(fid);
                Ok(())
            }
            Ok(Msg::Rerror { ename }) => {
                // A clunk that fails still clunks.
                self.conn.shared.free_fid(fid);
                Err(io::Error::other(ename))
            }
            Ok(other) => {
                self.conn.shared.forget(fid);
                Err(unexpected("Rclunk", other))
            }
            Err(e) => {
                // Interrupted, perhaps after the server clunked it: clunk
                // again, and reuse the fid once that is answered.
                self.conn.shared.forget(fid);
                Err(e)
            }
        }
    }
}

impl Drop for File {
    fn drop(&mut self) {
        if self.fid != NOFID {
            self.conn.shared.forget(self.fid);
        }
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("fid", &self.fid)
            .field("qid", &self.qid)
            .field("iounit", &self.iounit)
            .field("offset", &self.offset())
            .finish_non_exhaustive()
    }
}

impl Read for &File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        File::read(self, buf)
    }
}

impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        File::read(self, buf)
    }
}

impl Write for &File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        File::write(self, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        File::write(self, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            slots: HashMap::new(),
            next_tag: 0,
            next_fid: 1,
            free_fids: Vec::new(),
            dead: None,
        }
    }

    #[test]
    fn tags_skip_notag_and_those_in_use() {
        let mut t = table();
        t.slots.insert(0, Slot::Flushed);
        t.slots.insert(2, Slot::Flushed);
        assert_eq!(alloc_tag(&mut t), Some(1));
        assert_eq!(alloc_tag(&mut t), Some(3));
        t.next_tag = NOTAG - 1;
        assert_eq!(alloc_tag(&mut t), Some(NOTAG - 1));
        assert_eq!(alloc_tag(&mut t), Some(1), "wraps past NOTAG, skips 0");
        for tag in 0..NOTAG {
            t.slots.insert(tag, Slot::Flushed);
        }
        assert_eq!(alloc_tag(&mut t), None);
    }

    #[test]
    fn errors_read_as_the_server_wrote_them() {
        let e = unexpected(
            "Rread",
            Msg::Rerror {
                ename: "permission denied".into(),
            },
        );
        assert_eq!(e.to_string(), "permission denied");
        assert_eq!(e.kind(), ErrorKind::Other);
        let e = unexpected("Rread", Msg::Rclunk);
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "9P: expected Rread, got Rclunk");
    }

    #[test]
    fn mount_fd_wants_a_stream_socket() {
        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let e = Client::mount_fd(a).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "mount_fd: not a stream socket");
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = Client::mount_fd(f).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn udp_is_no_transport() {
        let e = Client::mount("udp!127.0.0.1!564").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("9P needs a stream"), "{e}");
    }
}
