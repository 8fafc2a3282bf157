//! A connection's byte stream: frames in and replies out without ever
//! blocking the connection's proc.
//!
//! Input: [`Input`] reads the non-blocking socket from the connection's
//! thread, waiting for it with [`threadfdwait`] (so the proc itself sleeps
//! on the socket), and cuts whole messages out of what it read in one
//! buffer ([`Frames`]): a client that sends many requests at once costs
//! one read, not one per message.
//!
//! Output: [`Out::send`] first tries to write the reply at once with a
//! non-blocking `sendmsg` (one system call, no hand-off: the common case).
//! What the socket will not take now is queued for the writer thread, which
//! finishes it as the client makes room (waiting with [`threadfdwait`]);
//! while anything is queued, later replies queue behind it, so replies
//! never interleave on the wire.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use super::fcall::{Fcall, FcallError, Msg, RREAD};
use super::frames::{Frames, Next, eof};
use crate::channel::Chan;
use crate::thread::threadfdwait;
use crate::util::read_fd;

/// Incoming bytes not yet cut into messages.
pub(crate) struct Input {
    frames: Frames,
    fd: Arc<OwnedFd>,
}

/// Reads what `fd` (non-blocking) has into `buf`, waiting in the proc
/// (`threadfdwait`) while it has nothing; 0 at the end of the stream.
fn fill(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match read_fd(fd.as_fd(), buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => threadfdwait(fd.as_fd(), 'r')?,
            r => return r,
        }
    }
}

impl Input {
    /// Reads `fd`, which must be non-blocking, from the calling thread.
    /// While the client has sent nothing the thread waits in its proc's
    /// scheduler, which sleeps in `poll` on the socket when nothing else is
    /// to do: the client's message wakes this proc itself, with no other
    /// OS thread (an ioproc) to wake first and hand it over.
    pub(crate) fn new(fd: Arc<OwnedFd>) -> Input {
        Input {
            frames: Frames::new("message"),
            fd,
        }
    }

    /// The next whole message, at most `max` bytes, borrowed from the
    /// buffer when it fits there; `None` at a clean end of stream. An error
    /// leaves the stream out of step: close it.
    pub(crate) fn next(&mut self, max: u32) -> io::Result<Option<Cow<'_, [u8]>>> {
        let (frames, fd) = (&mut self.frames, &*self.fd);
        match frames.next(max, 4, |buf| fill(fd, buf))? {
            None => Ok(None),
            Some(Next::Whole(frame)) => Ok(Some(Cow::Borrowed(frame))),
            // Bigger than the buffer: gather the rest of it straight into
            // its own allocation (already checked against the msize).
            Some(Next::Big { head, size }) => {
                let mut have = head.len();
                let mut frame = vec![0; size];
                frame[..have].copy_from_slice(head);
                while have < size {
                    match fill(fd, &mut frame[have..])? {
                        0 => return Err(eof("message", have, Some(size))),
                        n => have += n,
                    }
                }
                Ok(Some(Cow::Owned(frame)))
            }
        }
    }
}

/// An encoded reply, written as `head` then `body` (an Rread's data goes
/// out from its own buffer, uncopied).
struct Frame {
    head: Vec<u8>,
    body: Vec<u8>,
    /// Bytes already written.
    done: usize,
}

impl Frame {
    fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

/// Encodes `fc`; an Rread as its 11-byte header and the data apart.
fn encode(fc: Fcall) -> Result<Frame, FcallError> {
    match fc.msg {
        Msg::Rread { data } => {
            let count = u32::try_from(data.len()).map_err(|_| FcallError::TooLong {
                msg: "Rread",
                field: "data",
                len: data.len(),
                max: u32::MAX as usize,
            })?;
            let mut head = Vec::with_capacity(11);
            head.extend_from_slice(&(11 + count).to_le_bytes());
            head.push(RREAD);
            head.extend_from_slice(&fc.tag.to_le_bytes());
            head.extend_from_slice(&count.to_le_bytes());
            Ok(Frame {
                head,
                body: data,
                done: 0,
            })
        }
        msg => {
            let mut head = Vec::new();
            Fcall { tag: fc.tag, msg }.try_encode(&mut head)?;
            Ok(Frame {
                head,
                body: Vec::new(),
                done: 0,
            })
        }
    }
}

/// The reply side of a connection. Used only by the threads of the
/// connection's proc, which never run at the same time: hence `Cell`s.
pub(crate) struct Out {
    fd: Arc<OwnedFd>,
    queue: RefCell<VecDeque<Frame>>,
    /// The writer is writing a frame it has taken off the queue.
    busy: Cell<bool>,
    /// Wakes the writer (capacity 1: one pending kick is enough).
    kick: Chan<()>,
    broken: Cell<bool>,
}

impl Out {
    pub(crate) fn new(fd: Arc<OwnedFd>) -> Out {
        let kick = Chan::new(1);
        kick.set_name("9P replies");
        Out {
            fd,
            queue: RefCell::new(VecDeque::new()),
            busy: Cell::new(false),
            kick,
            broken: Cell::new(false),
        }
    }

    /// Sends a reply, never blocking. After the connection breaks, replies
    /// are dropped: no one is left to read them.
    pub(crate) fn send(&self, fc: Fcall) {
        if self.broken.get() {
            return;
        }
        let tag = fc.tag;
        let mut f = match encode(fc) {
            Ok(f) => f,
            // Only a server's error string longer than 64 KiB gets here:
            // the client still gets an answer.
            Err(e) => encode(Fcall {
                tag,
                msg: Msg::Rerror {
                    ename: format!("reply cannot be sent: {e}"),
                },
            })
            .expect("a short Rerror encodes"),
        };
        if !self.busy.get() && self.queue.borrow().is_empty() {
            match send_now(&self.fd, &f) {
                Ok(n) if n == f.len() => return,
                Ok(n) => f.done = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return self.fail(),
            }
            self.queue.borrow_mut().push_back(f);
            let _ = self.kick.nbsend(());
        } else {
            self.queue.borrow_mut().push_back(f);
            if !self.busy.get() {
                let _ = self.kick.nbsend(());
            }
        }
    }

    /// The writer thread: finishes queued frames, waiting in the proc
    /// while the socket is full, until [`Out::close`].
    pub(crate) fn writer(&self) {
        while self.kick.recv().is_ok() {
            loop {
                let Some(mut f) = self.queue.borrow_mut().pop_front() else {
                    break;
                };
                self.busy.set(true);
                let r = write_rest(&self.fd, &mut f);
                self.busy.set(false);
                if r.is_err() {
                    self.fail();
                    return;
                }
            }
        }
    }

    /// The peer cannot take replies any more: drop them, and shut the
    /// socket down so that the reader sees the end too.
    fn fail(&self) {
        self.broken.set(true);
        self.queue.borrow_mut().clear();
        shutdown(&self.fd);
    }

    /// Ends the writer once it has written what is queued.
    pub(crate) fn close(&self) {
        self.kick.close();
    }
}

/// One non-blocking `sendmsg` of what is left of `f`.
fn send_now(fd: &OwnedFd, f: &Frame) -> io::Result<usize> {
    let (head, body) = rest(f);
    let mut iov = [
        libc::iovec {
            iov_base: head.as_ptr() as *mut libc::c_void,
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        },
    ];
    // SAFETY: zeroed is a valid msghdr (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = if body.is_empty() { 1 } else { 2 };
    loop {
        // SAFETY: the iovecs point into `f`'s live buffers, which sendmsg
        // only reads; MSG_DONTWAIT keeps it from blocking the proc and
        // MSG_NOSIGNAL from raising SIGPIPE on a closed peer.
        let r = unsafe {
            libc::sendmsg(
                fd.as_raw_fd(),
                &msg,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if r >= 0 {
            return Ok(r as usize + f.done);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The unwritten parts of `f`'s head and body.
fn rest(f: &Frame) -> (&[u8], &[u8]) {
    if f.done < f.head.len() {
        (&f.head[f.done..], &f.body)
    } else {
        (&[], &f.body[f.done - f.head.len()..])
    }
}

/// Writes what is left of `f`, waiting for room on the socket
/// ([`threadfdwait`]) whenever it is full.
fn write_rest(fd: &OwnedFd, f: &mut Frame) -> io::Result<()> {
    while f.done < f.len() {
        match send_now(fd, f) {
            Ok(n) => f.done = n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => threadfdwait(fd.as_fd(), 'w')?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes `fd` non-blocking, so that no call on it can block outside an
/// interruptible wait.
pub(crate) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with valid arguments.
    let r = unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK)
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Shuts both directions of a socket: a reader blocked on it sees the end
/// of the stream, a writer an error, and the peer the connection's end.
pub(crate) fn shutdown(fd: &OwnedFd) {
    // SAFETY: shutdown on a descriptor we hold open; errors (not a socket,
    // already shut) leave nothing to undo.
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
}

/// Asks for a send buffer of `size` bytes on socket `fd`, so that a message
/// of that size usually goes in one send. The kernel caps it (Linux:
/// `net.core.wmem_max`); a smaller buffer only costs speed, so failure is
/// ignored.
pub(crate) fn size_send_buffer(fd: BorrowedFd<'_>, size: u32) {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on an open descriptor, with a pointer to an int
    // and its size; it only reads them.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
