//! The system calls behind the typed ioproc operations, written to be
//! interruptible (see [`super::intr`]): each waits for readiness in
//! `ppoll` and only then makes the call, which no longer blocks.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::intr::{IoState, interrupted};

fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Waits until `fd` is ready for `events` (POLLERR and POLLHUP count as
/// ready: the call that follows reports them).
fn ready(st: &IoState, fd: RawFd, events: libc::c_short) -> io::Result<()> {
    let mut p = [libc::pollfd {
        fd,
        events,
        revents: 0,
    }];
    st.wait(&mut p, None)?;
    if p[0].revents & libc::POLLNVAL != 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    Ok(())
}

/// Makes a system call that `ppoll` said would not block, interruptibly
/// all the same (see [`IoState::signalled`]): a write may be larger than
/// the room `POLLOUT` promised, and another reader of the same pipe or
/// socket may have taken what `POLLIN` saw. An EINTR comes back as `None`:
/// the caller's next wait then fails if the interrupt was ours, and waits
/// again if it was some other signal's.
fn syscall(st: &Arc<IoState>, f: impl FnOnce() -> isize) -> Option<io::Result<usize>> {
    match cvt(st.signalled(f)) {
        Err(e) if e.raw_os_error() == Some(libc::EINTR) => None,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None, // a non-blocking fd raced
        r => Some(r),
    }
}

/// Reads or writes once without blocking (`RWF_NOWAIT`: a pipe or socket
/// then takes or gives only what it can at once), which needs no change
/// of the signal mask; where that cannot be done (a regular file whose
/// data is not cached, a descriptor that does not support it), the plain
/// call, made interruptible by [`syscall`].
fn transfer(
    st: &Arc<IoState>,
    fd: RawFd,
    write: bool,
    ptr: *mut u8,
    len: usize,
) -> Option<io::Result<usize>> {
    let iov = libc::iovec {
        iov_base: ptr.cast(),
        iov_len: len,
    };
    // SAFETY: `iov` describes memory the caller lends us, writable for a
    // read; offset -1 means the descriptor's own position, as read(2) and
    // write(2) use.
    let r = unsafe {
        if write {
            libc::pwritev2(fd, &iov, 1, -1, libc::RWF_NOWAIT)
        } else {
            libc::preadv2(fd, &iov, 1, -1, libc::RWF_NOWAIT)
        }
    };
    match cvt(r) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::EINVAL)
            ) =>
        {
            // SAFETY: as above.
            syscall(st, || unsafe {
                if write {
                    libc::write(fd, ptr.cast_const().cast(), len)
                } else {
                    libc::read(fd, ptr.cast(), len)
                }
            })
        }
        Err(e) if e.raw_os_error() == Some(libc::EINTR) => None,
        r => Some(r),
    }
}

pub(crate) fn read(st: &Arc<IoState>, fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        ready(st, fd, libc::POLLIN)?;
        if let Some(r) = transfer(st, fd, false, buf.as_mut_ptr(), buf.len()) {
            return r;
        }
    }
}

/// Reads until `buf` is full, end of file, or an error. An error (an
/// interrupt included) after some bytes ends the read with those bytes, as
/// Plan 9's readn does; it is not retried.
pub(crate) fn readn(st: &Arc<IoState>, fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match read(st, fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if n == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(n)
}

/// Writes all of `buf` (a pipe or socket may take it in parts). An error,
/// an interrupt included, after some bytes ends the write with that count.
pub(crate) fn write(st: &Arc<IoState>, fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = ready(st, fd, libc::POLLOUT).map(|()| {
            let rest = &buf[n..];
            // (Only read through: `transfer` writes it out.)
            transfer(st, fd, true, rest.as_ptr().cast_mut(), rest.len())
        });
        match r {
            Ok(None) => {}
            Ok(Some(Ok(k))) => n += k,
            Ok(Some(Err(e))) | Err(e) if n == 0 => return Err(e),
            Ok(Some(Err(_))) | Err(_) => break,
        }
    }
    Ok(n)
}

/// Accepts a connection on listening socket `fd`. The new descriptor is
/// close-on-exec and blocking, like any freshly accepted socket.
pub(crate) fn accept(st: &Arc<IoState>, fd: RawFd) -> io::Result<OwnedFd> {
    loop {
        ready(st, fd, libc::POLLIN)?;
        // SAFETY: null address arguments ask for no peer address; the
        // flags are valid for accept4.
        let r = syscall(st, || unsafe {
            libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            ) as isize
        });
        match r {
            // SAFETY: a fresh descriptor we own.
            Some(Ok(fd)) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            // The peer gave up before we got to it (Linux reports that as
            // ECONNABORTED): wait again. (Another acceptor taking it first
            // is EAGAIN on a non-blocking socket, which `syscall` retries.)
            Some(Err(e)) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
}

pub(crate) fn sleep(st: &IoState, ms: u64) -> io::Result<()> {
    st.wait(&mut [], Some(Duration::from_millis(ms)))
        .map(|_| ())
}

/// Open modes: Plan 9's access modes (OREAD 0, OWRITE 1, ORDWR 2, OEXEC 3,
/// which opens for reading) and OTRUNC 0x10 are translated; every other
/// bit is taken as a Unix `O_*` flag, so the two can be mixed and callers
/// may use `libc::O_*` values directly. Plan 9's ORCLOSE (remove on
/// close, which Unix cannot do) has the value of `O_CREAT` and so means
/// `O_CREAT` here.
fn open_flags(omode: i32) -> libc::c_int {
    const OTRUNC: i32 = 0x10;
    // 0x10 is no Linux open flag (O_TRUNC is 0x200), so it can only be
    // Plan 9's; `O_ACCMODE` 3 is no valid Unix access mode, so it can only
    // be OEXEC.
    const _: () = assert!(OTRUNC & (libc::O_ACCMODE | libc::O_CREAT | libc::O_TRUNC) == 0);
    let acc = match omode & libc::O_ACCMODE {
        0 | 3 => libc::O_RDONLY,
        1 => libc::O_WRONLY,
        _ => libc::O_RDWR,
    };
    let trunc = if omode & OTRUNC != 0 {
        libc::O_TRUNC
    } else {
        0
    };
    acc | trunc | omode & !(libc::O_ACCMODE | OTRUNC) | libc::O_CLOEXEC
}

/// Opens `path`. Opening can block (a FIFO waits for its other end) but
/// cannot wait in `ppoll`, so it runs with the signal unblocked.
pub(crate) fn open(st: &Arc<IoState>, path: &Path, omode: i32) -> io::Result<OwnedFd> {
    let flags = open_flags(omode);
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("file name {path:?} contains a NUL byte"),
        )
    })?;
    st.unmasked(|| {
        loop {
            // SAFETY: `c` is a NUL-terminated string; the mode argument
            // (read only with O_CREAT) is the usual one, which the umask
            // narrows.
            let fd = unsafe { libc::open(c.as_ptr(), flags, 0o666 as libc::c_uint) };
            if fd >= 0 {
                // SAFETY: a fresh descriptor we own.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
            if st.take_pending() {
                return Err(interrupted());
            }
        }
    })
}

pub(crate) fn close(fd: OwnedFd) -> io::Result<()> {
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    // SAFETY: we owned the descriptor and give it up here. On Linux the
    // descriptor is released even when close reports an error.
    cvt(unsafe { libc::close(raw) } as isize).map(|_| ())
}
