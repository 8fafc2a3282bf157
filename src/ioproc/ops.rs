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

pub(crate) fn read(st: &IoState, fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        ready(st, fd, libc::POLLIN)?;
        // SAFETY: `buf` is valid for writes of its length.
        match cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue, // a non-blocking fd raced
            r => return r,
        }
    }
}

/// Reads until `buf` is full, end of file, or an error. An error (an
/// interrupt included) after some bytes ends the read with those bytes, as
/// Plan 9's readn does; it is not retried.
pub(crate) fn readn(st: &IoState, fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
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

/// Writes all of `buf` (a pipe or socket may take it in parts). An error
/// after some bytes ends the write with that count.
pub(crate) fn write(st: &IoState, fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = ready(st, fd, libc::POLLOUT).and_then(|()| {
            // SAFETY: the range is within `buf`.
            cvt(unsafe { libc::write(fd, buf[n..].as_ptr().cast(), buf.len() - n) })
        });
        match r {
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if n == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(n)
}

/// Accepts a connection on listening socket `fd`. The new descriptor is
/// close-on-exec and blocking, like any freshly accepted socket.
pub(crate) fn accept(st: &IoState, fd: RawFd) -> io::Result<OwnedFd> {
    loop {
        ready(st, fd, libc::POLLIN)?;
        // SAFETY: null address arguments ask for no peer address; the
        // flags are valid for accept4.
        let r = unsafe {
            libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if r >= 0 {
            // SAFETY: a fresh descriptor we own.
            return Ok(unsafe { OwnedFd::from_raw_fd(r) });
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // Another acceptor took it, or the peer gave up before we got
            // to it (Linux reports that as ECONNABORTED): wait again.
            Some(libc::EAGAIN | libc::ECONNABORTED | libc::EINTR) => {}
            _ => return Err(e),
        }
    }
}

pub(crate) fn sleep(st: &IoState, ms: u64) -> io::Result<()> {
    st.wait(&mut [], Some(Duration::from_millis(ms)))
        .map(|_| ())
}

/// Plan 9 open modes: OREAD 0, OWRITE 1, ORDWR 2, OEXEC 3, with OTRUNC
/// 0x10 and ORCLOSE 0x40 (remove on close is not supported on Unix and is
/// refused); anything else is passed on as Unix open flags, so callers may
/// also use `libc::O_*` values directly.
fn open_flags(omode: i32) -> io::Result<libc::c_int> {
    const OTRUNC: i32 = 0x10;
    const ORCLOSE: i32 = 0x40;
    if omode & !(3 | OTRUNC | ORCLOSE) != 0 {
        return Ok(omode | libc::O_CLOEXEC);
    }
    if omode & ORCLOSE != 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "ORCLOSE is not supported on Unix",
        ));
    }
    let acc = match omode & 3 {
        0 | 3 => libc::O_RDONLY,
        1 => libc::O_WRONLY,
        _ => libc::O_RDWR,
    };
    let trunc = if omode & OTRUNC != 0 {
        libc::O_TRUNC
    } else {
        0
    };
    Ok(acc | trunc | libc::O_CLOEXEC)
}

/// Opens `path`. Opening can block (a FIFO waits for its other end) but
/// cannot wait in `ppoll`, so it runs with the signal unblocked.
pub(crate) fn open(st: &Arc<IoState>, path: &Path, omode: i32) -> io::Result<OwnedFd> {
    let flags = open_flags(omode)?;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("file name {path:?} contains a NUL byte"),
        )
    })?;
    st.unmasked(|| {
        loop {
            // SAFETY: `c` is a NUL-terminated string; the mode argument is
            // read only with O_CREAT, which Plan 9 modes never set.
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
