//! Cutting 9P messages out of a byte stream read in large gulps, so that a
//! burst of small messages costs one read, not two per message. Shared by
//! the server's connections and the client's reader; each deals with
//! messages too big for the buffer in its own way.

use std::io;

use super::fcall::frame_size;

/// The buffer: room for many small messages per read.
pub(crate) const BUFFER: usize = 64 * 1024;

/// Incoming bytes not yet cut into messages.
pub(crate) struct Frames {
    /// What the messages are called in errors: "message", "reply".
    what: &'static str,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// What [`Frames::next`] found.
pub(crate) enum Next<'a> {
    /// A whole message, size field included.
    Whole(&'a [u8]),
    /// The first bytes (at least the `head` asked for) of a message of
    /// `size` bytes, more than the buffer holds. The buffer is empty
    /// afterwards: the caller reads the rest of the message itself.
    Big { head: &'a [u8], size: usize },
}

impl Frames {
    pub(crate) fn new(what: &'static str) -> Frames {
        Frames {
            what,
            buf: vec![0; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The next message of at most `max` bytes, reading with `read` (which
    /// fills what it is given from the stream, 0 at its end) as needed;
    /// `None` at a clean end of stream. A message bigger than the buffer
    /// is given as [`Next::Big`] once `head` bytes of it are in. After an
    /// error the stream is out of step: close it.
    pub(crate) fn next(
        &mut self,
        max: u32,
        head: usize,
        mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<Option<Next<'_>>> {
        loop {
            let have = self.end - self.start;
            if have >= 4 {
                let header: [u8; 4] = self.buf[self.start..self.start + 4].try_into().unwrap();
                let size = frame_size(header, max)? as usize;
                if have >= size {
                    let whole = &self.buf[self.start..self.start + size];
                    self.start += size;
                    return Ok(Some(Next::Whole(whole)));
                }
                if size > self.buf.len() && have >= head {
                    let head = &self.buf[self.start..self.end];
                    self.start = 0;
                    self.end = 0;
                    return Ok(Some(Next::Big { head, size }));
                }
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = read(&mut self.buf[self.end..])?;
            if n == 0 {
                if self.end == 0 {
                    return Ok(None);
                }
                return Err(eof(self.what, self.end, None));
            }
            self.end += n;
        }
    }
}

/// End of stream inside a `what` ("message", "reply"), `got` bytes of it
/// (of `size`) read.
pub(crate) fn eof(what: &str, got: usize, size: Option<usize>) -> io::Error {
    let of = size.map(|s| format!(" of {s}")).unwrap_or_default();
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("end of stream inside a {what} ({got}{of} bytes of it read)"),
    )
}
