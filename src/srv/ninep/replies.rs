//! The client's incoming stream, cut into replies.
//!
//! Replies are read through one buffer, so a burst of small ones costs one
//! system call, not two per message. A reply too big for the buffer is
//! read straight into memory of its own; an `Rread`'s data lands directly
//! in the `Vec` the caller receives, so a large read is copied once by the
//! kernel and not again here.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::srv::fcall::{Fcall, Msg, RREAD};
use crate::srv::frames::{Frames, Next, eof};
use crate::util::{read_fd, read_uninit};

/// An `Rread`'s header: `size[4] type[1] tag[2] count[4]`.
const RREAD_HEAD: usize = 11;

/// The socket's incoming side.
pub(super) struct Replies {
    sock: OwnedFd,
    frames: Frames,
}

/// Why [`Replies::next`] stopped: the stream failed, or the server sent
/// something that is not 9P.
pub(super) enum Bad {
    Io(io::Error),
    Message(String),
}

impl From<io::Error> for Bad {
    fn from(e: io::Error) -> Bad {
        Bad::Io(e)
    }
}

impl Replies {
    pub(super) fn new(sock: OwnedFd) -> Replies {
        Replies {
            sock,
            frames: Frames::new("reply"),
        }
    }

    /// The next reply, of at most `max` bytes; `None` at a clean end of
    /// stream. After an error the stream is out of step.
    pub(super) fn next(&mut self, max: u32) -> Result<Option<Fcall>, Bad> {
        let sock = &self.sock;
        let next = self
            .frames
            .next(max, RREAD_HEAD, |buf| read_fd(sock.as_fd(), buf))?;
        let (head, size) = match next {
            None => return Ok(None),
            Some(Next::Whole(frame)) => return decode(frame).map(Some),
            Some(Next::Big { head, size }) => (head, size),
        };
        let count = u32::from_le_bytes(head[7..11].try_into().unwrap()) as usize;
        if head[4] == RREAD && RREAD_HEAD + count == size {
            let tag = u16::from_le_bytes([head[5], head[6]]);
            let mut data = Vec::with_capacity(count);
            data.extend_from_slice(&head[RREAD_HEAD..]);
            self.fill(&mut data, count, RREAD_HEAD, size)?;
            return Ok(Some(Fcall {
                tag,
                msg: Msg::Rread { data },
            }));
        }
        // Anything else this big is rare (a huge stat): read it whole.
        let mut frame = Vec::with_capacity(size);
        frame.extend_from_slice(head);
        self.fill(&mut frame, size, 0, size)?;
        decode(&frame).map(Some)
    }

    /// Reads until `v` holds `want` bytes (`want <= v.capacity()`),
    /// straight into its spare capacity, so the bytes are never zeroed or
    /// copied first. `v` holds a reply of `size` bytes from byte `skip` on
    /// (for messages).
    fn fill(&self, v: &mut Vec<u8>, want: usize, skip: usize, size: usize) -> io::Result<()> {
        assert!(want <= v.capacity());
        while v.len() < want {
            let len = v.len();
            let spare = &mut v.spare_capacity_mut()[..want - len];
            let n = read_uninit(self.sock.as_fd(), spare)?;
            if n == 0 {
                return Err(eof("reply", skip + v.len(), Some(size)));
            }
            // SAFETY: read initialized the first `n` bytes of the spare
            // capacity (n <= spare.len(), so within capacity).
            unsafe { v.set_len(len + n) };
        }
        Ok(())
    }
}

fn decode(frame: &[u8]) -> Result<Fcall, Bad> {
    Fcall::decode(frame).map_err(|e| Bad::Message(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srv::fcall::{Dir, Qid};
    use crate::srv::frames::BUFFER;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn enc(tag: u16, msg: Msg) -> Vec<u8> {
        let mut b = Vec::new();
        Fcall { tag, msg }.encode(&mut b);
        b
    }

    /// A reader over a socket that is fed `bytes` by a thread in pieces
    /// of `piece` bytes, then closed.
    fn feed(bytes: Vec<u8>, piece: usize) -> (Replies, std::thread::JoinHandle<()>) {
        let (a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            for p in bytes.chunks(piece) {
                if b.write_all(p).is_err() {
                    return;
                }
            }
        });
        (Replies::new(a.into()), t)
    }

    fn message(r: Result<Option<Fcall>, Bad>) -> String {
        match r {
            Err(Bad::Message(m)) => m,
            Err(Bad::Io(e)) => panic!("want a bad message, got {e}"),
            Ok(f) => panic!("want a bad message, got {f:?}"),
        }
    }

    fn io_error(r: Result<Option<Fcall>, Bad>) -> io::Error {
        match r {
            Err(Bad::Io(e)) => e,
            Err(Bad::Message(m)) => panic!("want an i/o error, got {m}"),
            Ok(f) => panic!("want an i/o error, got {f:?}"),
        }
    }

    #[test]
    fn small_and_big_replies_in_any_pieces() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        // A stat just big enough that its Rstat outgrows the buffer.
        let stat = Dir {
            name: "n".repeat(32_740),
            uid: "u".repeat(32_740),
            qid: Qid::default(),
            ..Dir::default()
        };
        assert!(enc(5, Msg::Rstat { stat: stat.clone() }).len() > BUFFER);
        let msgs = vec![
            (1, Msg::Rclunk),
            (
                2,
                Msg::Rread {
                    data: b"short".to_vec(),
                },
            ),
            (3, Msg::Rread { data: big }),
            (4, Msg::Rerror { ename: "no".into() }),
            (5, Msg::Rstat { stat }),
            (6, Msg::Rread { data: Vec::new() }),
        ];
        let bytes: Vec<u8> = msgs.iter().flat_map(|(t, m)| enc(*t, m.clone())).collect();
        for piece in [1, 7, 11, 4096, 65536, 1 << 20] {
            let (mut r, t) = feed(bytes.clone(), piece);
            for (tag, msg) in &msgs {
                let f = r
                    .next(1 << 20)
                    .unwrap_or_else(|_| panic!("piece {piece}"))
                    .unwrap();
                assert_eq!((f.tag, &f.msg), (*tag, msg), "piece {piece}");
            }
            assert!(matches!(r.next(1 << 20), Ok(None)));
            t.join().unwrap();
        }
    }

    #[test]
    fn end_of_stream_inside_a_big_read_is_an_error() {
        let mut bytes = enc(
            9,
            Msg::Rread {
                data: vec![1; 200_000],
            },
        );
        bytes.truncate(150_000);
        let (mut r, t) = feed(bytes, 4096);
        let e = io_error(r.next(1 << 20));
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            e.to_string(),
            "end of stream inside a reply (150000 of 200011 bytes of it read)"
        );
        t.join().unwrap();
    }

    #[test]
    fn end_of_stream_inside_a_small_reply_is_an_error() {
        let mut bytes = enc(
            9,
            Msg::Rerror {
                ename: "gone".into(),
            },
        );
        bytes.pop();
        let (mut r, t) = feed(bytes, 3);
        let e = io_error(r.next(8192));
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        t.join().unwrap();
    }

    #[test]
    fn oversized_and_inconsistent_replies_are_refused() {
        let (mut r, t) = feed(
            enc(
                1,
                Msg::Rread {
                    data: vec![0; 9000],
                },
            ),
            9000,
        );
        let e = io_error(r.next(8192));
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        t.join().unwrap();

        // An Rread whose count disagrees with its size: decoded whole, and
        // refused by the decoder.
        let mut bytes = enc(
            1,
            Msg::Rread {
                data: vec![0; 100_000],
            },
        );
        bytes[7..11].copy_from_slice(&99_999u32.to_le_bytes());
        let (mut r, t) = feed(bytes, 65536);
        assert!(!message(r.next(1 << 20)).is_empty());
        t.join().unwrap();
    }
}
