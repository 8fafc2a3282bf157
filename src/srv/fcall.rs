//! 9P2000 messages: the wire codec shared by 9P servers and clients.
//!
//! This is the Rust counterpart of Plan 9's `fcall.h`. An [`Fcall`] is one
//! message, a tag and a [`Msg`]; [`Fcall::encode`] appends its wire form to a
//! buffer, [`read_frame`] reads one whole message from a byte stream and
//! [`Fcall::decode`] parses it. Directory entries are [`Dir`]s; a directory
//! read returns them packed whole, and [`decode_dirs`] unpacks them.
//!
//! Decoding is strict: a frame decodes only if it is exactly the encoding of
//! the value it yields, so decoding and encoding again gives back the same
//! bytes. Every length and count is checked against the bytes that remain
//! before anything is allocated, so a hostile peer can make decoding fail but
//! cannot make it panic or allocate more than it sent.
//!
//! ```
//! use thread9::srv::fcall::{read_frame, Fcall, Msg, NOTAG, VERSION9P};
//!
//! let tx = Fcall { tag: NOTAG, msg: Msg::Tversion { msize: 8192, version: VERSION9P.into() } };
//! let mut wire = Vec::new();
//! tx.encode(&mut wire);
//!
//! let mut conn = &wire[..]; // any std::io::Read
//! let frame = read_frame(&mut conn, 8192)?.expect("one message");
//! assert_eq!(Fcall::decode(&frame)?, tx);
//! assert!(read_frame(&mut conn, 8192)?.is_none()); // clean EOF
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io::{self, Read};

/// The protocol version this codec speaks, as offered in `Tversion`.
pub const VERSION9P: &str = "9P2000";
/// The tag of `Tversion`, which is sent before tags are in use.
pub const NOTAG: u16 = 0xFFFF;
/// "No fid": the `afid` of a `Tattach` made without authentication.
pub const NOFID: u32 = 0xFFFF_FFFF;
/// Most names in a `Twalk`, and so most qids in an `Rwalk`.
pub const MAXWELEM: usize = 16;
/// Room for the header of a `Twrite` or `Rread`: an `iounit` of
/// `msize - IOHDRSZ` lets the data and its header fit in one message.
pub const IOHDRSZ: u32 = 24;
/// Bytes in a qid on the wire.
pub const QIDSZ: usize = 13;
/// Bytes in a stat whose four strings are empty, its own size\[2\] included.
pub const STATFIXLEN: usize = 49;

/// Bytes in the smallest message: size\[4\] type\[1\] tag\[2\].
const HEADERSZ: u32 = 7;

/// Message type of [`Msg::Tversion`].
pub const TVERSION: u8 = 100;
/// Message type of [`Msg::Rversion`].
pub const RVERSION: u8 = 101;
/// Message type of [`Msg::Tauth`].
pub const TAUTH: u8 = 102;
/// Message type of [`Msg::Rauth`].
pub const RAUTH: u8 = 103;
/// Message type of [`Msg::Tattach`].
pub const TATTACH: u8 = 104;
/// Message type of [`Msg::Rattach`].
pub const RATTACH: u8 = 105;
/// Reserved: 9P2000 has no `Terror`, and a message of this type is rejected.
pub const TERROR: u8 = 106;
/// Message type of [`Msg::Rerror`].
pub const RERROR: u8 = 107;
/// Message type of [`Msg::Tflush`].
pub const TFLUSH: u8 = 108;
/// Message type of [`Msg::Rflush`].
pub const RFLUSH: u8 = 109;
/// Message type of [`Msg::Twalk`].
pub const TWALK: u8 = 110;
/// Message type of [`Msg::Rwalk`].
pub const RWALK: u8 = 111;
/// Message type of [`Msg::Topen`].
pub const TOPEN: u8 = 112;
/// Message type of [`Msg::Ropen`].
pub const ROPEN: u8 = 113;
/// Message type of [`Msg::Tcreate`].
pub const TCREATE: u8 = 114;
/// Message type of [`Msg::Rcreate`].
pub const RCREATE: u8 = 115;
/// Message type of [`Msg::Tread`].
pub const TREAD: u8 = 116;
/// Message type of [`Msg::Rread`].
pub const RREAD: u8 = 117;
/// Message type of [`Msg::Twrite`].
pub const TWRITE: u8 = 118;
/// Message type of [`Msg::Rwrite`].
pub const RWRITE: u8 = 119;
/// Message type of [`Msg::Tclunk`].
pub const TCLUNK: u8 = 120;
/// Message type of [`Msg::Rclunk`].
pub const RCLUNK: u8 = 121;
/// Message type of [`Msg::Tremove`].
pub const TREMOVE: u8 = 122;
/// Message type of [`Msg::Rremove`].
pub const RREMOVE: u8 = 123;
/// Message type of [`Msg::Tstat`].
pub const TSTAT: u8 = 124;
/// Message type of [`Msg::Rstat`].
pub const RSTAT: u8 = 125;
/// Message type of [`Msg::Twstat`].
pub const TWSTAT: u8 = 126;
/// Message type of [`Msg::Rwstat`].
pub const RWSTAT: u8 = 127;

/// Qid type: a directory.
pub const QTDIR: u8 = 0x80;
/// Qid type: an append-only file.
pub const QTAPPEND: u8 = 0x40;
/// Qid type: an exclusive-use file.
pub const QTEXCL: u8 = 0x20;
/// Qid type: a mounted channel.
pub const QTMOUNT: u8 = 0x10;
/// Qid type: an authentication file.
pub const QTAUTH: u8 = 0x08;
/// Qid type: a temporary file, not backed up.
pub const QTTMP: u8 = 0x04;
/// Qid type: a plain file.
pub const QTFILE: u8 = 0x00;

/// Mode bit: a directory.
pub const DMDIR: u32 = 0x8000_0000;
/// Mode bit: append only.
pub const DMAPPEND: u32 = 0x4000_0000;
/// Mode bit: exclusive use.
pub const DMEXCL: u32 = 0x2000_0000;
/// Mode bit: a mounted channel.
pub const DMMOUNT: u32 = 0x1000_0000;
/// Mode bit: an authentication file.
pub const DMAUTH: u32 = 0x0800_0000;
/// Mode bit: a temporary file.
pub const DMTMP: u32 = 0x0400_0000;
/// Permission bit: read (shift left by 6 for owner, 3 for group).
pub const DMREAD: u32 = 0o4;
/// Permission bit: write.
pub const DMWRITE: u32 = 0o2;
/// Permission bit: execute, or search for a directory.
pub const DMEXEC: u32 = 0o1;

/// Open mode: read.
pub const OREAD: u8 = 0;
/// Open mode: write.
pub const OWRITE: u8 = 1;
/// Open mode: read and write.
pub const ORDWR: u8 = 2;
/// Open mode: execute (read, checked for execute permission).
pub const OEXEC: u8 = 3;
/// Open flag: truncate the file.
pub const OTRUNC: u8 = 0x10;
/// Open flag: remove the file when the fid is clunked.
pub const ORCLOSE: u8 = 0x40;

/// What is wrong with a message that cannot be decoded or encoded.
///
/// `msg` names the message type (such as `"Twalk"`), or `"message"` before
/// the type is known, `"dir"` for a stat outside a message and `"qid"` for a
/// lone qid. `offset` is a byte offset into the input: the frame for a
/// message, the data for [`decode_dirs`] and [`Dir::decode`].
///
/// ```
/// use thread9::srv::fcall::{Fcall, FcallError};
///
/// // Rclunk (121) with tag 1 and one byte too many.
/// let err = Fcall::decode(&[8, 0, 0, 0, 121, 1, 0, 0]).unwrap_err();
/// assert!(matches!(err, FcallError::TrailingBytes { extra: 1, .. }));
/// assert_eq!(err.to_string(), "Rclunk: 1 trailing bytes after the last field (byte 7)");
/// let io: std::io::Error = err.into();
/// assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FcallError {
    /// A fixed-size field does not fit in the bytes that are left.
    Truncated {
        /// The message (or structure) being decoded.
        msg: &'static str,
        /// The field that does not fit.
        field: &'static str,
        /// Where the field starts.
        offset: usize,
        /// Bytes the field needs.
        need: usize,
        /// Bytes left.
        left: usize,
    },
    /// A message's size field does not match the length of its frame.
    SizeMismatch {
        /// The size field.
        size: u32,
        /// The frame's length.
        len: usize,
    },
    /// A size field below 7, too small for size\[4\] type\[1\] tag\[2\].
    TooSmall {
        /// The size field.
        size: u32,
    },
    /// A message larger than the reader accepts, or than 9P can express.
    TooLarge {
        /// The message's size.
        size: u64,
        /// The largest size allowed.
        max: u32,
    },
    /// Bytes left over after the last field.
    TrailingBytes {
        /// The message (or structure) being decoded.
        msg: &'static str,
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        extra: usize,
    },
    /// A message type that 9P2000 does not have, 106 (`Terror`) included.
    BadType {
        /// The type byte.
        typ: u8,
    },
    /// A string that is not UTF-8.
    BadUtf8 {
        /// The message (or structure) being decoded.
        msg: &'static str,
        /// The string's field.
        field: &'static str,
        /// Where the string (its length) starts.
        offset: usize,
    },
    /// More walk names or qids than [`MAXWELEM`].
    TooManyElems {
        /// The message being decoded or encoded.
        msg: &'static str,
        /// `"nwname"` or `"nwqid"`.
        field: &'static str,
        /// The count.
        n: usize,
    },
    /// In `Rstat` or `Twstat`, a stat whose own size is not its outer size
    /// minus the 2 bytes of the inner size itself.
    StatSize {
        /// The message being decoded.
        msg: &'static str,
        /// The outer size, n of stat\[n\].
        outer: u16,
        /// The stat's own size.
        inner: u16,
    },
    /// A count or length that claims more bytes than are left.
    Overrun {
        /// The message (or structure) being decoded.
        msg: &'static str,
        /// The count's field.
        field: &'static str,
        /// Where the count starts.
        offset: usize,
        /// The count, in bytes.
        count: u64,
        /// Bytes left after the count.
        left: usize,
    },
    /// A string, data or stat too long for its length field (encoding only).
    TooLong {
        /// The message (or structure) being encoded.
        msg: &'static str,
        /// The field that is too long.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The longest its length field can express.
        max: usize,
    },
}

impl fmt::Display for FcallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FcallError::Truncated {
                msg,
                field,
                offset,
                need,
                left,
            } => write!(
                f,
                "{msg}: truncated at {field} (byte {offset}): needs {need} bytes, {left} left"
            ),
            FcallError::SizeMismatch { size, len } => {
                write!(f, "size field says {size} bytes but the frame holds {len}")
            }
            FcallError::TooSmall { size } => write!(
                f,
                "message size {size} is below the minimum {HEADERSZ} (size[4] type[1] tag[2])"
            ),
            FcallError::TooLarge { size, max } => {
                write!(f, "message size {size} exceeds the maximum {max}")
            }
            FcallError::TrailingBytes { msg, offset, extra } => write!(
                f,
                "{msg}: {extra} trailing bytes after the last field (byte {offset})"
            ),
            FcallError::BadType { typ: TERROR } => {
                write!(f, "message type {TERROR} (Terror) does not exist in 9P2000")
            }
            FcallError::BadType { typ } => write!(f, "unknown message type {typ}"),
            FcallError::BadUtf8 { msg, field, offset } => {
                write!(f, "{msg}: {field} at byte {offset} is not UTF-8")
            }
            FcallError::TooManyElems { msg, field, n } => {
                write!(f, "{msg}: {field} is {n}, more than MAXWELEM ({MAXWELEM})")
            }
            FcallError::StatSize { msg, outer, inner } => write!(
                f,
                "{msg}: stat size {inner} disagrees with its outer size {outer} (should be {outer} - 2)"
            ),
            FcallError::Overrun {
                msg,
                field,
                offset,
                count,
                left,
            } => write!(
                f,
                "{msg}: {field} {count} at byte {offset} runs past the end ({left} bytes left)"
            ),
            FcallError::TooLong {
                msg,
                field,
                len,
                max,
            } => {
                write!(f, "{msg}: {field} is {len} bytes, more than {max}")
            }
        }
    }
}

impl std::error::Error for FcallError {}

impl From<FcallError> for io::Error {
    fn from(e: FcallError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// A qid: the server's unique identity for a file.
///
/// ```
/// use thread9::srv::fcall::{Qid, QTDIR};
///
/// let q = Qid { typ: QTDIR, version: 0, path: 1 };
/// let mut buf = Vec::new();
/// q.encode(&mut buf);
/// assert_eq!(buf.len(), 13);
/// assert_eq!(Qid::decode(&buf).unwrap(), q);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Qid {
    /// Type bits: [`QTDIR`], [`QTAPPEND`], ... ([`QTFILE`] for none).
    pub typ: u8,
    /// Version, bumped by the server each time the file changes.
    pub version: u32,
    /// Unique among all files of the server.
    pub path: u64,
}

impl Qid {
    /// Appends the qid's 13 bytes to `out`.
    ///
    /// ```
    /// use thread9::srv::fcall::{Qid, QTDIR};
    ///
    /// let mut out = vec![0xff]; // appended to, not replaced
    /// Qid { typ: QTDIR, version: 1, path: 2 }.encode(&mut out);
    /// // type[1] version[4] path[8], little-endian
    /// assert_eq!(out, [0xff, 0x80, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    /// ```
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.typ);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.path.to_le_bytes());
    }

    /// Decodes a qid from exactly [`QIDSZ`] bytes.
    ///
    /// ```
    /// use thread9::srv::fcall::{Qid, QTFILE};
    ///
    /// let wire = [0, 3, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0];
    /// assert_eq!(Qid::decode(&wire).unwrap(), Qid { typ: QTFILE, version: 3, path: 9 });
    /// assert!(Qid::decode(&wire[..12]).is_err()); // too short
    /// assert!(Qid::decode(&[wire, [0; 13]].concat()).is_err()); // too long
    /// ```
    pub fn decode(buf: &[u8]) -> Result<Qid, FcallError> {
        let mut r = Reader::new(buf, "qid");
        let q = r.qid("qid")?;
        r.finish()?;
        Ok(q)
    }
}

/// A directory entry: what `Tstat` returns, `Twstat` changes and reading a
/// directory yields.
///
/// ```
/// use thread9::srv::fcall::{decode_dirs, Dir, Qid, DMDIR, QTDIR};
///
/// let d = Dir {
///     qid: Qid { typ: QTDIR, version: 0, path: 1 },
///     mode: DMDIR | 0o755,
///     name: "lib".into(),
///     uid: "glenda".into(),
///     gid: "glenda".into(),
///     ..Dir::default()
/// };
/// let f = Dir { name: "profile".into(), mode: 0o644, ..d.clone() };
/// let mut data = Vec::new(); // what a read of the directory returns
/// d.encode(&mut data);
/// f.encode(&mut data);
/// assert_eq!(data.len(), d.encoded_size() + f.encoded_size());
/// assert_eq!(decode_dirs(&data).unwrap(), [d, f]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Dir {
    /// For kernel use: the device type.
    pub typ: u16,
    /// For kernel use: the device instance.
    pub dev: u32,
    /// The file's qid.
    pub qid: Qid,
    /// Permissions in the low 9 bits, and [`DMDIR`], [`DMAPPEND`], ...
    pub mode: u32,
    /// Last access time, seconds since the epoch.
    pub atime: u32,
    /// Last modification time, seconds since the epoch.
    pub mtime: u32,
    /// Length in bytes (0 for a directory).
    pub length: u64,
    /// Last element of the file's path.
    pub name: String,
    /// Owner.
    pub uid: String,
    /// Group.
    pub gid: String,
    /// Last user to modify the file.
    pub muid: String,
}

impl Dir {
    /// Plan 9's `nulldir`: in a `Twstat`, all-ones numbers and empty strings
    /// mean "leave this unchanged", so start from this and set what changes.
    ///
    /// ```
    /// use thread9::srv::fcall::Dir;
    ///
    /// let rename = Dir { name: "new".into(), ..Dir::null() };
    /// assert_eq!(rename.length, u64::MAX);
    /// ```
    pub fn null() -> Dir {
        Dir {
            typ: !0,
            dev: !0,
            qid: Qid {
                typ: !0,
                version: !0,
                path: !0,
            },
            mode: !0,
            atime: !0,
            mtime: !0,
            length: !0,
            name: String::new(),
            uid: String::new(),
            gid: String::new(),
            muid: String::new(),
        }
    }

    /// Bytes of the encoded stat, its leading size\[2\] included: a server
    /// packing a directory read checks that whole entries fit.
    ///
    /// ```
    /// use thread9::srv::fcall::{Dir, STATFIXLEN};
    ///
    /// let d = Dir { name: "profile".into(), uid: "glenda".into(), ..Dir::default() };
    /// assert_eq!(d.encoded_size(), STATFIXLEN + 7 + 6);
    /// let mut out = Vec::new();
    /// d.encode(&mut out);
    /// assert_eq!(out.len(), d.encoded_size());
    /// ```
    pub fn encoded_size(&self) -> usize {
        STATFIXLEN + self.name.len() + self.uid.len() + self.gid.len() + self.muid.len()
    }

    /// Appends the stat (with its leading size\[2\]) to `out`.
    ///
    /// # Panics
    ///
    /// If the stat is too long for its size field (more than 65535 bytes
    /// after it); [`Dir::try_encode`] reports that instead.
    ///
    /// ```
    /// use thread9::srv::fcall::Dir;
    ///
    /// let d = Dir { name: "lib".into(), ..Dir::default() };
    /// let mut out = Vec::new();
    /// d.encode(&mut out);
    /// // The size field counts the bytes after itself.
    /// assert_eq!(u16::from_le_bytes([out[0], out[1]]) as usize, out.len() - 2);
    /// assert_eq!(Dir::decode(&out).unwrap(), d);
    /// ```
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Err(e) = self.try_encode(out) {
            panic!("cannot encode 9P stat: {e}");
        }
    }

    /// Like [`Dir::encode`], but reports a stat too long to encode, leaving
    /// `out` as it was.
    ///
    /// ```
    /// use thread9::srv::fcall::Dir;
    ///
    /// let mut out = vec![1, 2, 3];
    /// let huge = Dir { name: "x".repeat(70_000), ..Dir::default() };
    /// assert!(huge.try_encode(&mut out).is_err());
    /// assert_eq!(out, [1, 2, 3]);
    /// Dir::default().try_encode(&mut out).unwrap();
    /// assert_eq!(out.len(), 3 + Dir::default().encoded_size());
    /// ```
    pub fn try_encode(&self, out: &mut Vec<u8>) -> Result<(), FcallError> {
        let start = out.len();
        let r = self.put(out, "dir");
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// Decodes exactly one stat, which must fill `buf`.
    ///
    /// ```
    /// use thread9::srv::fcall::Dir;
    ///
    /// let d = Dir { name: "profile".into(), length: 120, ..Dir::default() };
    /// let mut buf = Vec::new();
    /// d.encode(&mut buf);
    /// assert_eq!(Dir::decode(&buf).unwrap(), d);
    /// buf.push(0); // a byte past the stat
    /// assert!(Dir::decode(&buf).is_err());
    /// ```
    pub fn decode(buf: &[u8]) -> Result<Dir, FcallError> {
        let mut r = Reader::new(buf, "dir");
        let d = r.stat()?;
        r.finish()?;
        Ok(d)
    }

    fn put(&self, out: &mut Vec<u8>, msg: &'static str) -> Result<(), FcallError> {
        let inner = self.encoded_size() - 2;
        let size = u16::try_from(inner).map_err(|_| FcallError::TooLong {
            msg,
            field: "stat",
            len: inner,
            max: u16::MAX.into(),
        })?;
        p16(out, size);
        p16(out, self.typ);
        p32(out, self.dev);
        self.qid.encode(out);
        p32(out, self.mode);
        p32(out, self.atime);
        p32(out, self.mtime);
        p64(out, self.length);
        pstr(out, &self.name, msg, "name")?;
        pstr(out, &self.uid, msg, "uid")?;
        pstr(out, &self.gid, msg, "gid")?;
        pstr(out, &self.muid, msg, "muid")
    }
}

/// Decodes the data of a directory read: whole stats, one after another.
/// Empty data (end of directory) gives no entries; a partial entry is an error.
///
/// ```
/// use thread9::srv::fcall::{Dir, decode_dirs};
///
/// let (a, b) = (Dir { name: "a".into(), ..Dir::default() }, Dir { name: "b".into(), ..Dir::default() });
/// let mut data = Vec::new();
/// a.encode(&mut data);
/// b.encode(&mut data);
/// assert_eq!(decode_dirs(&data).unwrap(), [a, b]);
/// assert!(decode_dirs(&[]).unwrap().is_empty());
/// assert!(decode_dirs(&data[..data.len() - 1]).is_err());
/// ```
pub fn decode_dirs(data: &[u8]) -> Result<Vec<Dir>, FcallError> {
    let mut r = Reader::new(data, "dir");
    let mut dirs = Vec::new();
    while r.left() > 0 {
        dirs.push(r.stat()?);
    }
    Ok(dirs)
}

/// The body of a 9P2000 message; the field names follow intro(5).
///
/// ```
/// use thread9::srv::fcall::{Msg, TWALK};
///
/// let m = Msg::Twalk { fid: 0, newfid: 1, wnames: vec!["usr".into(), "glenda".into()] };
/// assert_eq!(m.kind(), TWALK);
/// assert_eq!(m.name(), "Twalk");
/// assert!(m.is_request());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Starts a session, proposing a message size and a protocol version.
    Tversion {
        /// Largest message the client will send or accept.
        msize: u32,
        /// Protocol version, normally [`VERSION9P`].
        version: String,
    },
    /// Accepts a session: `msize` at most the client's, and the version
    /// agreed on (`"unknown"` if none).
    Rversion {
        /// Largest message either side may send.
        msize: u32,
        /// The agreed version.
        version: String,
    },
    /// Asks for an authentication file on `afid`.
    Tauth {
        /// New fid for the authentication file.
        afid: u32,
        /// User name.
        uname: String,
        /// Tree to be attached.
        aname: String,
    },
    /// Gives the authentication file's qid.
    Rauth {
        /// Qid of the authentication file.
        aqid: Qid,
    },
    /// Attaches `fid` to the root of tree `aname`.
    Tattach {
        /// New fid for the root.
        fid: u32,
        /// Authenticated fid, or [`NOFID`].
        afid: u32,
        /// User name.
        uname: String,
        /// Tree to attach.
        aname: String,
    },
    /// Gives the root's qid.
    Rattach {
        /// Qid of the root.
        qid: Qid,
    },
    /// The request failed.
    Rerror {
        /// Error string.
        ename: String,
    },
    /// Aborts the request tagged `oldtag`.
    Tflush {
        /// Tag of the request to abort.
        oldtag: u16,
    },
    /// The flushed request has been answered or abandoned.
    Rflush,
    /// Walks `fid` through `wnames` and, if all succeed, sets `newfid` to
    /// the result (`newfid` may equal `fid`).
    Twalk {
        /// Starting point.
        fid: u32,
        /// Fid for the result.
        newfid: u32,
        /// Path elements, at most [`MAXWELEM`].
        wnames: Vec<String>,
    },
    /// Qids of the elements walked; fewer than asked means the walk
    /// stopped at an error.
    Rwalk {
        /// One qid per element walked, at most [`MAXWELEM`].
        wqids: Vec<Qid>,
    },
    /// Opens `fid`.
    Topen {
        /// Fid to open.
        fid: u32,
        /// [`OREAD`], [`OWRITE`], [`ORDWR`] or [`OEXEC`], with [`OTRUNC`]
        /// and [`ORCLOSE`].
        mode: u8,
    },
    /// The file is open.
    Ropen {
        /// Qid of the file.
        qid: Qid,
        /// Largest read or write guaranteed atomic, or 0 for unknown.
        iounit: u32,
    },
    /// Creates `name` in directory `fid` and opens it, moving `fid` to it.
    Tcreate {
        /// Directory, then the new file.
        fid: u32,
        /// Name of the new file.
        name: String,
        /// Permissions and [`DMDIR`] etc.
        perm: u32,
        /// Open mode, as in [`Msg::Topen`].
        mode: u8,
    },
    /// The file is created and open.
    Rcreate {
        /// Qid of the new file.
        qid: Qid,
        /// As in [`Msg::Ropen`].
        iounit: u32,
    },
    /// Reads up to `count` bytes at `offset`.
    Tread {
        /// Open fid.
        fid: u32,
        /// Byte offset (for a directory, the end of the previous read).
        offset: u64,
        /// Most bytes wanted.
        count: u32,
    },
    /// The bytes read; empty at end of file.
    Rread {
        /// The data; its length is the wire's count.
        data: Vec<u8>,
    },
    /// Writes `data` at `offset`.
    Twrite {
        /// Open fid.
        fid: u32,
        /// Byte offset.
        offset: u64,
        /// The data; its length is the wire's count.
        data: Vec<u8>,
    },
    /// Bytes written.
    Rwrite {
        /// How many bytes were written.
        count: u32,
    },
    /// Forgets `fid`.
    Tclunk {
        /// Fid to forget.
        fid: u32,
    },
    /// The fid is forgotten.
    Rclunk,
    /// Removes the file and forgets `fid`, even if the removal fails.
    Tremove {
        /// Fid of the file.
        fid: u32,
    },
    /// The file is removed.
    Rremove,
    /// Asks for the file's directory entry.
    Tstat {
        /// Fid of the file.
        fid: u32,
    },
    /// The file's directory entry.
    Rstat {
        /// The entry.
        stat: Dir,
    },
    /// Changes the file's directory entry; [`Dir::null`] fields stay as
    /// they are.
    Twstat {
        /// Fid of the file.
        fid: u32,
        /// The new entry.
        stat: Dir,
    },
    /// The entry is changed.
    Rwstat,
}

/// Message names by type, from [`TVERSION`].
const NAMES: [&str; 28] = [
    "Tversion", "Rversion", "Tauth", "Rauth", "Tattach", "Rattach", "Terror", "Rerror", "Tflush",
    "Rflush", "Twalk", "Rwalk", "Topen", "Ropen", "Tcreate", "Rcreate", "Tread", "Rread", "Twrite",
    "Rwrite", "Tclunk", "Rclunk", "Tremove", "Rremove", "Tstat", "Rstat", "Twstat", "Rwstat",
];

impl Msg {
    /// The message's type number, such as [`TWALK`].
    ///
    /// ```
    /// use thread9::srv::fcall::{Fcall, Msg, RREAD, TREAD};
    ///
    /// let m = Msg::Tread { fid: 1, offset: 0, count: 512 };
    /// assert_eq!(m.kind(), TREAD);
    /// assert_eq!(Msg::Rread { data: vec![] }.kind(), RREAD);
    /// // The type byte on the wire, after size[4].
    /// let mut wire = Vec::new();
    /// Fcall { tag: 3, msg: m }.encode(&mut wire);
    /// assert_eq!(wire[4], TREAD);
    /// ```
    pub fn kind(&self) -> u8 {
        match self {
            Msg::Tversion { .. } => TVERSION,
            Msg::Rversion { .. } => RVERSION,
            Msg::Tauth { .. } => TAUTH,
            Msg::Rauth { .. } => RAUTH,
            Msg::Tattach { .. } => TATTACH,
            Msg::Rattach { .. } => RATTACH,
            Msg::Rerror { .. } => RERROR,
            Msg::Tflush { .. } => TFLUSH,
            Msg::Rflush => RFLUSH,
            Msg::Twalk { .. } => TWALK,
            Msg::Rwalk { .. } => RWALK,
            Msg::Topen { .. } => TOPEN,
            Msg::Ropen { .. } => ROPEN,
            Msg::Tcreate { .. } => TCREATE,
            Msg::Rcreate { .. } => RCREATE,
            Msg::Tread { .. } => TREAD,
            Msg::Rread { .. } => RREAD,
            Msg::Twrite { .. } => TWRITE,
            Msg::Rwrite { .. } => RWRITE,
            Msg::Tclunk { .. } => TCLUNK,
            Msg::Rclunk => RCLUNK,
            Msg::Tremove { .. } => TREMOVE,
            Msg::Rremove => RREMOVE,
            Msg::Tstat { .. } => TSTAT,
            Msg::Rstat { .. } => RSTAT,
            Msg::Twstat { .. } => TWSTAT,
            Msg::Rwstat => RWSTAT,
        }
    }

    /// The message's name, such as `"Twalk"`.
    ///
    /// ```
    /// use thread9::srv::fcall::Msg;
    ///
    /// assert_eq!(Msg::Tread { fid: 1, offset: 0, count: 512 }.name(), "Tread");
    /// assert_eq!(Msg::Rclunk.name(), "Rclunk");
    /// ```
    pub fn name(&self) -> &'static str {
        NAMES[usize::from(self.kind() - TVERSION)]
    }

    /// Whether this is a T-message (client to server); R-messages answer them.
    ///
    /// ```
    /// use thread9::srv::fcall::Msg;
    ///
    /// assert!(Msg::Tread { fid: 1, offset: 0, count: 512 }.is_request());
    /// assert!(!Msg::Rread { data: b"hi".to_vec() }.is_request());
    /// assert!(!Msg::Rerror { ename: "no".into() }.is_request());
    /// ```
    pub fn is_request(&self) -> bool {
        self.kind().is_multiple_of(2)
    }
}

/// One 9P message: a tag, chosen by the client to match replies to
/// requests, and the message proper.
///
/// ```
/// use thread9::srv::fcall::{Fcall, Msg};
///
/// let rx = Fcall { tag: 1, msg: Msg::Rerror { ename: "no".into() } };
/// let mut buf = Vec::new();
/// rx.encode(&mut buf);
/// assert_eq!(buf, [11, 0, 0, 0, 107, 1, 0, 2, 0, b'n', b'o']);
/// assert_eq!(Fcall::decode(&buf).unwrap(), rx);
/// assert_eq!(rx.to_string(), r#"Rerror tag 1 ename "no""#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fcall {
    /// Matches a reply to its request; [`NOTAG`] for `Tversion`.
    pub tag: u16,
    /// The message.
    pub msg: Msg,
}

impl Fcall {
    /// Appends the whole message, size field included, to `out`.
    ///
    /// # Panics
    ///
    /// If the message cannot be expressed in 9P2000: a string longer than
    /// 65535 bytes, more than [`MAXWELEM`] walk names or qids, a stat longer
    /// than 65535 bytes, or a message longer than 4 GiB - 1.
    /// [`Fcall::try_encode`] reports these instead.
    ///
    /// ```
    /// use thread9::srv::fcall::{Fcall, Msg};
    ///
    /// let tx = Fcall { tag: 7, msg: Msg::Tclunk { fid: 3 } };
    /// let mut wire = Vec::new();
    /// tx.encode(&mut wire);
    /// // size[4] type[1] tag[2] fid[4], the size counting itself
    /// assert_eq!(wire, [11, 0, 0, 0, 120, 7, 0, 3, 0, 0, 0]);
    /// assert_eq!(Fcall::decode(&wire).unwrap(), tx);
    /// ```
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Err(e) = self.try_encode(out) {
            panic!("cannot encode 9P message: {e}");
        }
    }

    /// Like [`Fcall::encode`], but reports a message that cannot be
    /// encoded, leaving `out` as it was.
    ///
    /// ```
    /// use thread9::srv::fcall::{Fcall, MAXWELEM, Msg};
    ///
    /// let wnames = vec!["d".to_string(); MAXWELEM + 1]; // one name too many
    /// let tx = Fcall { tag: 1, msg: Msg::Twalk { fid: 0, newfid: 1, wnames } };
    /// let mut out = vec![9];
    /// assert!(tx.try_encode(&mut out).is_err());
    /// assert_eq!(out, [9]);
    /// ```
    pub fn try_encode(&self, out: &mut Vec<u8>) -> Result<(), FcallError> {
        let start = out.len();
        let r = self.put(out, start);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    fn put(&self, out: &mut Vec<u8>, start: usize) -> Result<(), FcallError> {
        let name = self.msg.name();
        p32(out, 0); // the size, filled in at the end
        out.push(self.msg.kind());
        p16(out, self.tag);
        match &self.msg {
            Msg::Tversion { msize, version } | Msg::Rversion { msize, version } => {
                p32(out, *msize);
                pstr(out, version, name, "version")?;
            }
            Msg::Tauth { afid, uname, aname } => {
                p32(out, *afid);
                pstr(out, uname, name, "uname")?;
                pstr(out, aname, name, "aname")?;
            }
            Msg::Rauth { aqid: qid } | Msg::Rattach { qid } => qid.encode(out),
            Msg::Tattach {
                fid,
                afid,
                uname,
                aname,
            } => {
                p32(out, *fid);
                p32(out, *afid);
                pstr(out, uname, name, "uname")?;
                pstr(out, aname, name, "aname")?;
            }
            Msg::Rerror { ename } => pstr(out, ename, name, "ename")?,
            Msg::Tflush { oldtag } => p16(out, *oldtag),
            Msg::Rflush | Msg::Rclunk | Msg::Rremove | Msg::Rwstat => {}
            Msg::Twalk {
                fid,
                newfid,
                wnames,
            } => {
                p32(out, *fid);
                p32(out, *newfid);
                p16(out, walk_count(wnames.len(), name, "nwname")?);
                for w in wnames {
                    pstr(out, w, name, "wname")?;
                }
            }
            Msg::Rwalk { wqids } => {
                p16(out, walk_count(wqids.len(), name, "nwqid")?);
                for q in wqids {
                    q.encode(out);
                }
            }
            Msg::Topen { fid, mode } => {
                p32(out, *fid);
                out.push(*mode);
            }
            Msg::Ropen { qid, iounit } | Msg::Rcreate { qid, iounit } => {
                qid.encode(out);
                p32(out, *iounit);
            }
            Msg::Tcreate {
                fid,
                name: file,
                perm,
                mode,
            } => {
                p32(out, *fid);
                pstr(out, file, name, "name")?;
                p32(out, *perm);
                out.push(*mode);
            }
            Msg::Tread { fid, offset, count } => {
                p32(out, *fid);
                p64(out, *offset);
                p32(out, *count);
            }
            Msg::Rread { data } => pdata(out, data, name)?,
            Msg::Twrite { fid, offset, data } => {
                p32(out, *fid);
                p64(out, *offset);
                pdata(out, data, name)?;
            }
            Msg::Rwrite { count } => p32(out, *count),
            Msg::Tclunk { fid } | Msg::Tremove { fid } | Msg::Tstat { fid } => p32(out, *fid),
            Msg::Rstat { stat } => pstat_n(out, stat, name)?,
            Msg::Twstat { fid, stat } => {
                p32(out, *fid);
                pstat_n(out, stat, name)?;
            }
        }
        let len = out.len() - start;
        let size = u32::try_from(len).map_err(|_| FcallError::TooLarge {
            size: len as u64,
            max: u32::MAX,
        })?;
        out[start..start + 4].copy_from_slice(&size.to_le_bytes());
        Ok(())
    }

    /// Decodes one whole message, size field included, as [`read_frame`]
    /// returns it. The frame must be exactly one valid message.
    ///
    /// ```
    /// use thread9::srv::fcall::{Fcall, Msg};
    ///
    /// let rx = Fcall { tag: 2, msg: Msg::Rread { data: b"hello".to_vec() } };
    /// let mut frame = Vec::new();
    /// rx.encode(&mut frame);
    /// assert_eq!(Fcall::decode(&frame).unwrap(), rx);
    /// // One byte short of what its size field says: not a message.
    /// assert!(Fcall::decode(&frame[..frame.len() - 1]).is_err());
    /// ```
    pub fn decode(frame: &[u8]) -> Result<Fcall, FcallError> {
        let mut r = Reader::new(frame, "message");
        let size = r.u32("size")?;
        if u64::from(size) != frame.len() as u64 {
            return Err(FcallError::SizeMismatch {
                size,
                len: frame.len(),
            });
        }
        if size < HEADERSZ {
            return Err(FcallError::TooSmall { size });
        }
        let typ = r.u8("type")?;
        r.msg = match typ {
            TERROR => None,
            TVERSION..=RWSTAT => Some(NAMES[usize::from(typ - TVERSION)]),
            _ => None,
        }
        .ok_or(FcallError::BadType { typ })?;
        let tag = r.u16("tag")?;
        // Struct fields are evaluated in the order written, which is wire order.
        let msg = match typ {
            TVERSION => Msg::Tversion {
                msize: r.u32("msize")?,
                version: r.string("version")?,
            },
            RVERSION => Msg::Rversion {
                msize: r.u32("msize")?,
                version: r.string("version")?,
            },
            TAUTH => Msg::Tauth {
                afid: r.u32("afid")?,
                uname: r.string("uname")?,
                aname: r.string("aname")?,
            },
            RAUTH => Msg::Rauth {
                aqid: r.qid("aqid")?,
            },
            TATTACH => Msg::Tattach {
                fid: r.u32("fid")?,
                afid: r.u32("afid")?,
                uname: r.string("uname")?,
                aname: r.string("aname")?,
            },
            RATTACH => Msg::Rattach { qid: r.qid("qid")? },
            RERROR => Msg::Rerror {
                ename: r.string("ename")?,
            },
            TFLUSH => Msg::Tflush {
                oldtag: r.u16("oldtag")?,
            },
            RFLUSH => Msg::Rflush,
            TWALK => {
                let fid = r.u32("fid")?;
                let newfid = r.u32("newfid")?;
                let n = r.walk_count("nwname", 2)?;
                let wnames = (0..n)
                    .map(|_| r.string("wname"))
                    .collect::<Result<_, _>>()?;
                Msg::Twalk {
                    fid,
                    newfid,
                    wnames,
                }
            }
            RWALK => {
                let n = r.walk_count("nwqid", QIDSZ)?;
                let wqids = (0..n).map(|_| r.qid("wqid")).collect::<Result<_, _>>()?;
                Msg::Rwalk { wqids }
            }
            TOPEN => Msg::Topen {
                fid: r.u32("fid")?,
                mode: r.u8("mode")?,
            },
            ROPEN => Msg::Ropen {
                qid: r.qid("qid")?,
                iounit: r.u32("iounit")?,
            },
            TCREATE => Msg::Tcreate {
                fid: r.u32("fid")?,
                name: r.string("name")?,
                perm: r.u32("perm")?,
                mode: r.u8("mode")?,
            },
            RCREATE => Msg::Rcreate {
                qid: r.qid("qid")?,
                iounit: r.u32("iounit")?,
            },
            TREAD => Msg::Tread {
                fid: r.u32("fid")?,
                offset: r.u64("offset")?,
                count: r.u32("count")?,
            },
            RREAD => Msg::Rread { data: r.data()? },
            TWRITE => Msg::Twrite {
                fid: r.u32("fid")?,
                offset: r.u64("offset")?,
                data: r.data()?,
            },
            RWRITE => Msg::Rwrite {
                count: r.u32("count")?,
            },
            TCLUNK => Msg::Tclunk { fid: r.u32("fid")? },
            RCLUNK => Msg::Rclunk,
            TREMOVE => Msg::Tremove { fid: r.u32("fid")? },
            RREMOVE => Msg::Rremove,
            TSTAT => Msg::Tstat { fid: r.u32("fid")? },
            RSTAT => Msg::Rstat { stat: r.stat_n()? },
            TWSTAT => Msg::Twstat {
                fid: r.u32("fid")?,
                stat: r.stat_n()?,
            },
            _ => Msg::Rwstat, // RWSTAT: the only type left after the name check
        };
        r.finish()?;
        Ok(Fcall { tag, msg })
    }
}

/// Checks a message's size\[4\] field, read from the first 4 bytes of a
/// message, against the smallest message and against `max`, the largest the
/// reader accepts (usually the negotiated `msize`); gives the size.
///
/// ```
/// use thread9::srv::fcall::{frame_size, FcallError};
///
/// assert_eq!(frame_size(19u32.to_le_bytes(), 8192), Ok(19));
/// assert!(matches!(frame_size(9000u32.to_le_bytes(), 8192), Err(FcallError::TooLarge { .. })));
/// assert!(matches!(frame_size(6u32.to_le_bytes(), 8192), Err(FcallError::TooSmall { size: 6 })));
/// ```
pub fn frame_size(header: [u8; 4], max: u32) -> Result<u32, FcallError> {
    let size = u32::from_le_bytes(header);
    if size < HEADERSZ {
        Err(FcallError::TooSmall { size })
    } else if size > max {
        Err(FcallError::TooLarge {
            size: size.into(),
            max,
        })
    } else {
        Ok(size)
    }
}

/// A peer claiming a huge message gets buffer space only as its bytes
/// arrive: the buffer starts this big and at most doubles per step.
const READ_CHUNK: usize = 64 * 1024;

/// Reads exactly one message, size field included, ready for
/// [`Fcall::decode`].
///
/// Gives `None` on end of file before the first byte. End of file inside a
/// message is an [`io::ErrorKind::UnexpectedEof`] error, and a size field
/// below 7 or above `max` (usually the negotiated `msize`) an
/// [`io::ErrorKind::InvalidData`] one; after an error the stream is out of
/// step and should be closed. Interrupted reads are retried. The size field
/// and the rest are read separately, so wrap an unbuffered stream in a
/// [`std::io::BufReader`] to make one system call per message.
///
/// ```
/// use thread9::srv::fcall::read_frame;
///
/// let mut two = &[7u8, 0, 0, 0, 109, 1, 0, 7, 0, 0, 0, 121, 2, 0][..]; // Rflush, Rclunk
/// assert_eq!(read_frame(&mut two, 8192)?.unwrap()[4], 109);
/// assert_eq!(read_frame(&mut two, 8192)?.unwrap()[4], 121);
/// assert!(read_frame(&mut two, 8192)?.is_none());
///
/// let mut cut = &[20u8, 0, 0, 0, 100][..];
/// let err = read_frame(&mut cut, 8192).unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn read_frame<R: Read + ?Sized>(r: &mut R, max: u32) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    match fill(r, &mut header)? {
        0 => return Ok(None),
        4 => {}
        got => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("EOF inside a 9P message's size field: got {got} of 4 bytes"),
            ));
        }
    }
    let size = frame_size(header, max)? as usize;
    let mut frame = Vec::with_capacity(size.min(READ_CHUNK));
    frame.extend_from_slice(&header);
    while frame.len() < size {
        let start = frame.len();
        frame.resize(size.min((2 * start).max(READ_CHUNK)), 0);
        let got = fill(r, &mut frame[start..])?;
        if start + got < frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "EOF inside a 9P message: got {} of {size} bytes",
                    start + got
                ),
            ));
        }
    }
    Ok(Some(frame))
}

/// Reads until `buf` is full or the stream ends; gives the bytes read.
fn fill<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A cursor over `buf[..end]`; `msg` and the field names label errors.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    msg: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], msg: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
            msg,
        }
    }

    fn left(&self) -> usize {
        self.end - self.pos
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FcallError> {
        let left = self.left();
        if N > left {
            return Err(FcallError::Truncated {
                msg: self.msg,
                field,
                offset: self.pos,
                need: N,
                left,
            });
        }
        let mut a = [0; N];
        a.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, FcallError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, FcallError> {
        self.array(field).map(u16::from_le_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, FcallError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, FcallError> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// The `count` bytes after a count field that started at `at`; checked
    /// before anything is allocated for them.
    fn counted(
        &mut self,
        count: u64,
        at: usize,
        field: &'static str,
    ) -> Result<&'a [u8], FcallError> {
        let left = self.left();
        if count > left as u64 {
            return Err(FcallError::Overrun {
                msg: self.msg,
                field,
                offset: at,
                count,
                left,
            });
        }
        let b = &self.buf[self.pos..self.pos + count as usize];
        self.pos += count as usize;
        Ok(b)
    }

    fn string(&mut self, field: &'static str) -> Result<String, FcallError> {
        let at = self.pos;
        let n = self.u16(field)?;
        let b = self.counted(n.into(), at, field)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(FcallError::BadUtf8 {
                msg: self.msg,
                field,
                offset: at,
            }),
        }
    }

    fn data(&mut self) -> Result<Vec<u8>, FcallError> {
        let at = self.pos;
        let n = self.u32("count")?;
        Ok(self.counted(n.into(), at, "count")?.to_vec())
    }

    fn qid(&mut self, field: &'static str) -> Result<Qid, FcallError> {
        Ok(Qid {
            typ: self.u8(field)?,
            version: self.u32(field)?,
            path: self.u64(field)?,
        })
    }

    /// A walk's element count, at most MAXWELEM elements of at least
    /// `min_each` bytes each.
    fn walk_count(&mut self, field: &'static str, min_each: usize) -> Result<usize, FcallError> {
        let at = self.pos;
        let n = usize::from(self.u16(field)?);
        if n > MAXWELEM {
            return Err(FcallError::TooManyElems {
                msg: self.msg,
                field,
                n,
            });
        }
        let left = self.left();
        if n * min_each > left {
            return Err(FcallError::Overrun {
                msg: self.msg,
                field,
                offset: at,
                count: (n * min_each) as u64,
                left,
            });
        }
        Ok(n)
    }

    /// A reader for the next `n` bytes, which this one skips.
    fn sub(&mut self, n: u16, at: usize, field: &'static str) -> Result<Reader<'a>, FcallError> {
        let start = self.pos;
        self.counted(n.into(), at, field)?;
        Ok(Reader {
            buf: self.buf,
            pos: start,
            end: self.pos,
            msg: self.msg,
        })
    }

    /// A stat, which must end exactly where its own size says.
    fn stat(&mut self) -> Result<Dir, FcallError> {
        let at = self.pos;
        let size = self.u16("stat size")?;
        let mut s = self.sub(size, at, "stat size")?;
        let d = Dir {
            typ: s.u16("type")?,
            dev: s.u32("dev")?,
            qid: s.qid("qid")?,
            mode: s.u32("mode")?,
            atime: s.u32("atime")?,
            mtime: s.u32("mtime")?,
            length: s.u64("length")?,
            name: s.string("name")?,
            uid: s.string("uid")?,
            gid: s.string("gid")?,
            muid: s.string("muid")?,
        };
        s.finish()?;
        Ok(d)
    }

    /// The stat\[n\] of Rstat and Twstat: n bytes holding one stat, whose
    /// own size must then be n - 2.
    fn stat_n(&mut self) -> Result<Dir, FcallError> {
        let at = self.pos;
        let outer = self.u16("stat[n]")?;
        let mut s = self.sub(outer, at, "stat[n]")?;
        let inner = s.u16("stat size")?;
        if usize::from(inner) + 2 != usize::from(outer) {
            return Err(FcallError::StatSize {
                msg: self.msg,
                outer,
                inner,
            });
        }
        s.pos -= 2;
        s.stat()
    }

    fn finish(&self) -> Result<(), FcallError> {
        if self.pos == self.end {
            Ok(())
        } else {
            Err(FcallError::TrailingBytes {
                msg: self.msg,
                offset: self.pos,
                extra: self.left(),
            })
        }
    }
}

fn p16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn p32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn p64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn pstr(
    out: &mut Vec<u8>,
    s: &str,
    msg: &'static str,
    field: &'static str,
) -> Result<(), FcallError> {
    let n = u16::try_from(s.len()).map_err(|_| FcallError::TooLong {
        msg,
        field,
        len: s.len(),
        max: u16::MAX.into(),
    })?;
    p16(out, n);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn pdata(out: &mut Vec<u8>, data: &[u8], msg: &'static str) -> Result<(), FcallError> {
    let n = u32::try_from(data.len()).map_err(|_| FcallError::TooLong {
        msg,
        field: "data",
        len: data.len(),
        max: u32::MAX as usize,
    })?;
    p32(out, n);
    out.extend_from_slice(data);
    Ok(())
}

/// The stat\[n\] of Rstat and Twstat: the outer size, then the stat.
fn pstat_n(out: &mut Vec<u8>, d: &Dir, msg: &'static str) -> Result<(), FcallError> {
    let len = d.encoded_size();
    let n = u16::try_from(len).map_err(|_| FcallError::TooLong {
        msg,
        field: "stat",
        len,
        max: u16::MAX.into(),
    })?;
    p16(out, n);
    d.put(out, msg)
}

fn walk_count(n: usize, msg: &'static str, field: &'static str) -> Result<u16, FcallError> {
    if n > MAXWELEM {
        return Err(FcallError::TooManyElems { msg, field, n });
    }
    Ok(n as u16)
}

impl fmt::Display for Qid {
    /// Plan 9's form: `(path version type)`, path in hex and the type as
    /// letters (`d` directory, `a` append, `l` exclusive, `A` auth).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:016x} {} ", self.path, self.version)?;
        for (bit, c) in [(QTDIR, 'd'), (QTAPPEND, 'a'), (QTEXCL, 'l'), (QTAUTH, 'A')] {
            if self.typ & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        write!(f, ")")
    }
}

impl fmt::Display for Dir {
    /// Plan 9's `dirfmt` form, for traces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {:?} {:?} {:?} q {} m {:#o} at {} mt {} l {} t {} d {}",
            self.name,
            self.uid,
            self.gid,
            self.muid,
            self.qid,
            self.mode,
            self.atime,
            self.mtime,
            self.length,
            self.typ,
            self.dev
        )
    }
}

/// Shows up to 32 bytes of data, escaped, for traces.
fn preview(f: &mut fmt::Formatter<'_>, data: &[u8]) -> fmt::Result {
    let more = if data.len() > 32 { "..." } else { "" };
    write!(
        f,
        " count {} '{}'{more}",
        data.len(),
        data[..data.len().min(32)].escape_ascii()
    )
}

impl fmt::Display for Fcall {
    /// Plan 9's `fcallfmt` form, one line per message, for traces such as
    /// `Twalk tag 1 fid 0 newfid 1 nwname 1 0:"lib"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} tag {}", self.msg.name(), self.tag)?;
        match &self.msg {
            Msg::Tversion { msize, version } | Msg::Rversion { msize, version } => {
                write!(f, " msize {msize} version {version:?}")
            }
            Msg::Tauth { afid, uname, aname } => {
                write!(f, " afid {afid} uname {uname:?} aname {aname:?}")
            }
            Msg::Rauth { aqid: qid } | Msg::Rattach { qid } => write!(f, " qid {qid}"),
            Msg::Tattach {
                fid,
                afid,
                uname,
                aname,
            } => {
                write!(f, " fid {fid} afid {afid} uname {uname:?} aname {aname:?}")
            }
            Msg::Rerror { ename } => write!(f, " ename {ename:?}"),
            Msg::Tflush { oldtag } => write!(f, " oldtag {oldtag}"),
            Msg::Rflush | Msg::Rclunk | Msg::Rremove | Msg::Rwstat => Ok(()),
            Msg::Twalk {
                fid,
                newfid,
                wnames,
            } => {
                write!(f, " fid {fid} newfid {newfid} nwname {}", wnames.len())?;
                wnames
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, w)| write!(f, " {i}:{w:?}"))
            }
            Msg::Rwalk { wqids } => {
                write!(f, " nwqid {}", wqids.len())?;
                wqids
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, q)| write!(f, " {i}:{q}"))
            }
            Msg::Topen { fid, mode } => write!(f, " fid {fid} mode {mode}"),
            Msg::Ropen { qid, iounit } | Msg::Rcreate { qid, iounit } => {
                write!(f, " qid {qid} iounit {iounit}")
            }
            Msg::Tcreate {
                fid,
                name,
                perm,
                mode,
            } => {
                write!(f, " fid {fid} name {name:?} perm {perm:#o} mode {mode}")
            }
            Msg::Tread { fid, offset, count } => {
                write!(f, " fid {fid} offset {offset} count {count}")
            }
            Msg::Rread { data } => preview(f, data),
            Msg::Twrite { fid, offset, data } => {
                write!(f, " fid {fid} offset {offset}")?;
                preview(f, data)
            }
            Msg::Rwrite { count } => write!(f, " count {count}"),
            Msg::Tclunk { fid } | Msg::Tremove { fid } | Msg::Tstat { fid } => {
                write!(f, " fid {fid}")
            }
            Msg::Rstat { stat } => write!(f, " stat {stat}"),
            Msg::Twstat { fid, stat } => write!(f, " fid {fid} stat {stat}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn dir(name: &str) -> Dir {
        Dir {
            typ: u16::from(b'M'),
            dev: 7,
            qid: Qid {
                typ: QTFILE,
                version: 3,
                path: 0x1122_3344_5566_7788,
            },
            mode: 0o644,
            atime: 1_700_000_000,
            mtime: 1_700_000_001,
            length: 12345,
            name: name.into(),
            uid: "glenda".into(),
            gid: "sys".into(),
            muid: String::new(),
        }
    }

    /// At least one message of every kind, with edge values.
    fn samples() -> Vec<Fcall> {
        let q = Qid {
            typ: QTDIR,
            version: 1,
            path: 42,
        };
        let q2 = Qid {
            typ: QTAPPEND | QTEXCL,
            version: u32::MAX,
            path: u64::MAX,
        };
        let s = |x: &str| x.to_string();
        let msgs = vec![
            Msg::Tversion {
                msize: 8192,
                version: s(VERSION9P),
            },
            Msg::Rversion {
                msize: 8192,
                version: s(VERSION9P),
            },
            Msg::Tauth {
                afid: 5,
                uname: s("glenda"),
                aname: s(""),
            },
            Msg::Rauth {
                aqid: Qid {
                    typ: QTAUTH,
                    version: 0,
                    path: 9,
                },
            },
            Msg::Tattach {
                fid: 0,
                afid: NOFID,
                uname: s("glenda"),
                aname: s("main"),
            },
            Msg::Rattach { qid: q },
            Msg::Rerror {
                ename: s("file does not exist"),
            },
            Msg::Tflush { oldtag: 3 },
            Msg::Rflush,
            Msg::Twalk {
                fid: 0,
                newfid: 1,
                wnames: vec![s("usr"), s("glenda"), s("ünïcødé")],
            },
            Msg::Twalk {
                fid: 1,
                newfid: 1,
                wnames: vec![],
            },
            Msg::Twalk {
                fid: 2,
                newfid: 3,
                wnames: (0..MAXWELEM).map(|i| i.to_string()).collect(),
            },
            Msg::Rwalk { wqids: vec![q, q2] },
            Msg::Rwalk { wqids: vec![] },
            Msg::Rwalk {
                wqids: vec![q; MAXWELEM],
            },
            Msg::Topen {
                fid: 1,
                mode: OREAD | OTRUNC,
            },
            Msg::Ropen {
                qid: q,
                iounit: 8192 - IOHDRSZ,
            },
            Msg::Tcreate {
                fid: 1,
                name: s("new"),
                perm: DMDIR | 0o775,
                mode: ORDWR | ORCLOSE,
            },
            Msg::Rcreate { qid: q2, iounit: 0 },
            Msg::Tread {
                fid: 1,
                offset: u64::MAX - 1,
                count: 8168,
            },
            Msg::Rread {
                data: b"hello, world".to_vec(),
            },
            Msg::Rread { data: vec![] },
            Msg::Twrite {
                fid: 1,
                offset: 9,
                data: (0..=255).collect(),
            },
            Msg::Rwrite { count: 256 },
            Msg::Tclunk { fid: 1 },
            Msg::Rclunk,
            Msg::Tremove { fid: 2 },
            Msg::Rremove,
            Msg::Tstat { fid: 3 },
            Msg::Rstat {
                stat: dir("profile"),
            },
            Msg::Twstat {
                fid: 3,
                stat: Dir::null(),
            },
            Msg::Twstat {
                fid: 3,
                stat: Dir {
                    name: s("renamed"),
                    ..Dir::null()
                },
            },
            Msg::Rwstat,
        ];
        msgs.into_iter()
            .enumerate()
            .map(|(i, msg)| Fcall { tag: i as u16, msg })
            .collect()
    }

    fn enc(f: &Fcall) -> Vec<u8> {
        let mut out = Vec::new();
        f.encode(&mut out);
        out
    }

    fn dec_err(frame: &[u8]) -> FcallError {
        let e = Fcall::decode(frame).unwrap_err();
        assert!(!e.to_string().is_empty());
        e
    }

    /// Sets a frame's size field to its length.
    fn fix_size(mut frame: Vec<u8>) -> Vec<u8> {
        let n = frame.len() as u32;
        frame[..4].copy_from_slice(&n.to_le_bytes());
        frame
    }

    #[test]
    fn round_trip_every_message() {
        let mut kinds = std::collections::BTreeSet::new();
        for f in samples() {
            let mut out = vec![0xAA]; // encode appends
            f.encode(&mut out);
            let frame = &out[1..];
            assert_eq!(
                u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize,
                frame.len()
            );
            assert_eq!(frame[4], f.msg.kind());
            assert_eq!(f.msg.is_request(), f.msg.name().starts_with('T'));
            assert_eq!(Fcall::decode(frame).unwrap(), f, "{f}");
            kinds.insert(f.msg.kind());
        }
        let all: std::collections::BTreeSet<u8> =
            (TVERSION..=RWSTAT).filter(|&t| t != TERROR).collect();
        assert_eq!(kinds, all);
    }

    #[test]
    fn tversion_bytes() {
        let f = Fcall {
            tag: NOTAG,
            msg: Msg::Tversion {
                msize: 8192,
                version: VERSION9P.into(),
            },
        };
        let want = [
            0x13, 0, 0, 0, 0x64, 0xff, 0xff, 0x00, 0x20, 0, 0, 0x06, 0, 0x39, 0x50, 0x32, 0x30,
            0x30, 0x30,
        ];
        assert_eq!(enc(&f), want);
        assert_eq!(Fcall::decode(&want).unwrap(), f);
    }

    #[test]
    fn rerror_bytes() {
        let f = Fcall {
            tag: 1,
            msg: Msg::Rerror { ename: "no".into() },
        };
        let want = [0x0b, 0, 0, 0, 0x6b, 1, 0, 2, 0, b'n', b'o'];
        assert_eq!(enc(&f), want);
        assert_eq!(Fcall::decode(&want).unwrap(), f);
    }

    #[test]
    fn twalk_bytes() {
        let f = Fcall {
            tag: 3,
            msg: Msg::Twalk {
                fid: 1,
                newfid: 2,
                wnames: vec!["a".into(), "bc".into()],
            },
        };
        let want = [
            0x18, 0, 0, 0, 0x6e, 3, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 1, 0, b'a', 2, 0, b'b', b'c',
        ];
        assert_eq!(enc(&f), want);
        assert_eq!(Fcall::decode(&want).unwrap(), f);
    }

    #[test]
    fn rstat_bytes() {
        let d = Dir {
            typ: 1,
            dev: 2,
            qid: Qid {
                typ: QTDIR,
                version: 3,
                path: 4,
            },
            mode: DMDIR | 0o755,
            atime: 5,
            mtime: 6,
            length: 0,
            name: "d".into(),
            uid: "u".into(),
            gid: "g".into(),
            muid: "m".into(),
        };
        assert_eq!(d.encoded_size(), 53);
        let f = Fcall {
            tag: 10,
            msg: Msg::Rstat { stat: d.clone() },
        };
        #[rustfmt::skip]
        let want = [
            0x3e, 0, 0, 0, 0x7d, 10, 0,
            53, 0,                          // stat[n]
            51, 0,                          // the stat's own size
            1, 0, 2, 0, 0, 0,               // type, dev
            0x80, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0,
            0xed, 0x01, 0, 0x80, 5, 0, 0, 0, 6, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0,
            1, 0, b'd', 1, 0, b'u', 1, 0, b'g', 1, 0, b'm',
        ];
        assert_eq!(enc(&f), want);
        assert_eq!(Fcall::decode(&want).unwrap(), f);
        // A lone stat is the same bytes without the outer size.
        let mut lone = Vec::new();
        d.encode(&mut lone);
        assert_eq!(lone, want[9..]);
        assert_eq!(Dir::decode(&lone).unwrap(), d);
    }

    #[test]
    fn short_frames() {
        assert!(matches!(
            dec_err(&[]),
            FcallError::Truncated {
                field: "size",
                left: 0,
                ..
            }
        ));
        assert!(matches!(
            dec_err(&[3, 0, 0]),
            FcallError::Truncated { field: "size", .. }
        ));
        assert_eq!(dec_err(&[4, 0, 0, 0]), FcallError::TooSmall { size: 4 });
        assert_eq!(
            dec_err(&[6, 0, 0, 0, 109, 0]),
            FcallError::TooSmall { size: 6 }
        );
        // Tclunk whose fid is cut short.
        let e = dec_err(&[9, 0, 0, 0, TCLUNK, 1, 0, 1, 0]);
        assert_eq!(
            e,
            FcallError::Truncated {
                msg: "Tclunk",
                field: "fid",
                offset: 7,
                need: 4,
                left: 2
            }
        );
        assert_eq!(
            e.to_string(),
            "Tclunk: truncated at fid (byte 7): needs 4 bytes, 2 left"
        );
        // Every strict prefix of every sample, size fixed up, fails cleanly.
        for f in samples() {
            let frame = enc(&f);
            for n in 4..frame.len() {
                assert!(
                    Fcall::decode(&fix_size(frame[..n].to_vec())).is_err(),
                    "{f} cut at {n}"
                );
            }
        }
    }

    #[test]
    fn size_mismatch() {
        let mut frame = enc(&samples()[0]);
        frame.pop();
        let e = dec_err(&frame);
        assert_eq!(e, FcallError::SizeMismatch { size: 19, len: 18 });
        assert_eq!(
            e.to_string(),
            "size field says 19 bytes but the frame holds 18"
        );
        frame.extend([0, 0]);
        assert_eq!(
            dec_err(&frame),
            FcallError::SizeMismatch { size: 19, len: 20 }
        );
    }

    #[test]
    fn trailing_bytes() {
        let e = dec_err(&[8, 0, 0, 0, RCLUNK, 1, 0, 0]);
        assert_eq!(
            e,
            FcallError::TrailingBytes {
                msg: "Rclunk",
                offset: 7,
                extra: 1
            }
        );
        for f in samples() {
            let mut frame = enc(&f);
            frame.extend([1, 2, 3]);
            let e = dec_err(&fix_size(frame));
            assert!(
                matches!(e, FcallError::TrailingBytes { extra: 3, .. }),
                "{f}: {e}"
            );
        }
    }

    #[test]
    fn bad_types() {
        for typ in [0, 99, TERROR, 128, 255] {
            let e = dec_err(&[7, 0, 0, 0, typ, 0, 0]);
            assert_eq!(e, FcallError::BadType { typ });
        }
        assert_eq!(
            dec_err(&[7, 0, 0, 0, TERROR, 0, 0]).to_string(),
            "message type 106 (Terror) does not exist in 9P2000"
        );
    }

    #[test]
    fn bad_utf8() {
        let e = dec_err(&[11, 0, 0, 0, RERROR, 1, 0, 2, 0, 0xff, 0xfe]);
        assert_eq!(
            e,
            FcallError::BadUtf8 {
                msg: "Rerror",
                field: "ename",
                offset: 7
            }
        );
        let mut frame = enc(&Fcall {
            tag: 0,
            msg: Msg::Rstat { stat: dir("x") },
        });
        let at = frame.len() - 16; // name's byte: then uid[8] gid[5] muid[2]
        assert_eq!(frame[at], b'x');
        frame[at] = 0x80;
        assert!(matches!(
            dec_err(&frame),
            FcallError::BadUtf8 {
                msg: "Rstat",
                field: "name",
                ..
            }
        ));
    }

    #[test]
    fn too_many_walk_elements() {
        let names: Vec<String> = (0..=MAXWELEM).map(|i| i.to_string()).collect();
        let mut frame = enc(&Fcall {
            tag: 0,
            msg: Msg::Twalk {
                fid: 0,
                newfid: 1,
                wnames: names[..16].to_vec(),
            },
        });
        frame[15] = 17;
        frame.extend([2, 0, b'1', b'6']);
        let e = dec_err(&fix_size(frame));
        assert_eq!(
            e,
            FcallError::TooManyElems {
                msg: "Twalk",
                field: "nwname",
                n: 17
            }
        );
        assert_eq!(
            e.to_string(),
            "Twalk: nwname is 17, more than MAXWELEM (16)"
        );

        let mut frame = enc(&Fcall {
            tag: 0,
            msg: Msg::Rwalk {
                wqids: vec![Qid::default(); 16],
            },
        });
        frame[7] = 17;
        frame.extend([0; QIDSZ]);
        let e = dec_err(&fix_size(frame));
        assert_eq!(
            e,
            FcallError::TooManyElems {
                msg: "Rwalk",
                field: "nwqid",
                n: 17
            }
        );

        // Encoding refuses too, and leaves the buffer as it was.
        let f = Fcall {
            tag: 0,
            msg: Msg::Twalk {
                fid: 0,
                newfid: 1,
                wnames: names,
            },
        };
        let mut out = vec![1, 2];
        let e = f.try_encode(&mut out).unwrap_err();
        assert!(matches!(e, FcallError::TooManyElems { n: 17, .. }));
        assert_eq!(out, [1, 2]);
        let f = Fcall {
            tag: 0,
            msg: Msg::Rwalk {
                wqids: vec![Qid::default(); 17],
            },
        };
        assert!(matches!(
            f.try_encode(&mut out),
            Err(FcallError::TooManyElems { field: "nwqid", .. })
        ));
    }

    #[test]
    #[should_panic(
        expected = "cannot encode 9P message: Rerror: ename is 70000 bytes, more than 65535"
    )]
    fn encode_panics_on_long_string() {
        Fcall {
            tag: 0,
            msg: Msg::Rerror {
                ename: "x".repeat(70000),
            },
        }
        .encode(&mut Vec::new());
    }

    #[test]
    fn try_encode_long_fields() {
        let mut out = vec![9];
        let long = "x".repeat(65536);
        let f = Fcall {
            tag: 0,
            msg: Msg::Tattach {
                fid: 0,
                afid: NOFID,
                uname: "u".into(),
                aname: long.clone(),
            },
        };
        assert!(matches!(
            f.try_encode(&mut out),
            Err(FcallError::TooLong {
                field: "aname",
                len: 65536,
                ..
            })
        ));
        // Each string fits but the stat does not.
        let big = Dir {
            name: "n".repeat(40000),
            uid: "u".repeat(40000),
            ..Dir::default()
        };
        let f = Fcall {
            tag: 0,
            msg: Msg::Rstat { stat: big.clone() },
        };
        assert!(matches!(
            f.try_encode(&mut out),
            Err(FcallError::TooLong { field: "stat", .. })
        ));
        assert!(matches!(
            big.try_encode(&mut out),
            Err(FcallError::TooLong {
                msg: "dir",
                field: "stat",
                ..
            })
        ));
        assert_eq!(out, [9]);
        // The largest strings do fit.
        let f = Fcall {
            tag: 0,
            msg: Msg::Rerror {
                ename: long[1..].to_string(),
            },
        };
        let frame = enc(&f);
        assert_eq!(frame.len(), 7 + 2 + 65535);
        assert_eq!(Fcall::decode(&frame).unwrap(), f);
    }

    #[test]
    fn stat_size_disagrees() {
        let mut frame = enc(&Fcall {
            tag: 0,
            msg: Msg::Rstat { stat: dir("x") },
        });
        let outer = u16::from_le_bytes([frame[7], frame[8]]);
        frame[9] -= 1;
        let e = dec_err(&frame);
        assert_eq!(
            e,
            FcallError::StatSize {
                msg: "Rstat",
                outer,
                inner: outer - 3
            }
        );
        assert!(e.to_string().contains("disagrees with its outer size"));
        frame[9] += 2;
        assert!(matches!(dec_err(&frame), FcallError::StatSize { .. }));

        // Both sizes agree but the fields end early: trailing bytes in the stat.
        let mut frame = enc(&Fcall {
            tag: 0,
            msg: Msg::Twstat {
                fid: 1,
                stat: dir("x"),
            },
        });
        frame[11] += 1;
        frame[13] += 1;
        frame.push(0);
        assert!(matches!(
            dec_err(&fix_size(frame)),
            FcallError::TrailingBytes {
                msg: "Twstat",
                extra: 1,
                ..
            }
        ));

        // An outer size of 0 or 1 leaves no room for the inner one.
        let frame = fix_size(vec![0, 0, 0, 0, RSTAT, 0, 0, 1, 0, 0]);
        assert!(matches!(
            dec_err(&frame),
            FcallError::Truncated {
                field: "stat size",
                ..
            }
        ));
    }

    #[test]
    fn counts_past_the_end() {
        // Rread claiming 4 GiB - 1 with 3 bytes present: an error, not an allocation.
        let frame = fix_size(vec![
            0, 0, 0, 0, RREAD, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3,
        ]);
        let e = dec_err(&frame);
        assert_eq!(
            e,
            FcallError::Overrun {
                msg: "Rread",
                field: "count",
                offset: 7,
                count: u32::MAX.into(),
                left: 3
            }
        );
        assert_eq!(
            e.to_string(),
            "Rread: count 4294967295 at byte 7 runs past the end (3 bytes left)"
        );
        // Twrite one byte short.
        let mut frame = enc(&Fcall {
            tag: 0,
            msg: Msg::Twrite {
                fid: 0,
                offset: 0,
                data: vec![7; 10],
            },
        });
        frame.pop();
        assert!(matches!(
            dec_err(&fix_size(frame)),
            FcallError::Overrun {
                field: "count",
                count: 10,
                left: 9,
                ..
            }
        ));
        // A string length past the end.
        let frame = fix_size(vec![0, 0, 0, 0, RERROR, 0, 0, 5, 0, b'a']);
        assert!(matches!(
            dec_err(&frame),
            FcallError::Overrun {
                field: "ename",
                count: 5,
                left: 1,
                ..
            }
        ));
        // Rwalk claiming more qids than there is room for.
        let frame = fix_size(vec![
            0, 0, 0, 0, RWALK, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        assert!(matches!(
            dec_err(&frame),
            FcallError::Overrun {
                field: "nwqid",
                count: 26,
                left: 13,
                ..
            }
        ));
        // stat[n] past the end.
        let mut frame = enc(&Fcall {
            tag: 0,
            msg: Msg::Rstat { stat: dir("x") },
        });
        frame[7] += 1;
        assert!(matches!(
            dec_err(&frame),
            FcallError::Overrun {
                field: "stat[n]",
                ..
            }
        ));
    }

    #[test]
    fn frame_size_limits() {
        assert_eq!(frame_size(7u32.to_le_bytes(), 8192), Ok(7));
        assert_eq!(frame_size(8192u32.to_le_bytes(), 8192), Ok(8192));
        assert_eq!(
            frame_size(8193u32.to_le_bytes(), 8192),
            Err(FcallError::TooLarge {
                size: 8193,
                max: 8192
            })
        );
        assert_eq!(
            frame_size([0; 4], 8192),
            Err(FcallError::TooSmall { size: 0 })
        );
        let e = frame_size([0xff; 4], 8192).unwrap_err();
        assert_eq!(
            e.to_string(),
            "message size 4294967295 exceeds the maximum 8192"
        );
    }

    /// Yields at most one byte per read, and an interruption before each.
    struct Trickle<'a>(&'a [u8], bool);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = self.0.len().min(buf.len()).min(1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn read_frames() {
        let frames: Vec<Vec<u8>> = samples().iter().map(enc).collect();
        let stream = frames.concat();
        let mut r = &stream[..];
        for f in &frames {
            assert_eq!(read_frame(&mut r, 8192).unwrap().as_ref(), Some(f));
        }
        assert!(read_frame(&mut r, 8192).unwrap().is_none());

        let mut t = Trickle(&stream, false);
        for f in &frames {
            assert_eq!(read_frame(&mut t, 8192).unwrap().as_ref(), Some(f));
        }
        assert!(read_frame(&mut t, 8192).unwrap().is_none());

        // A message bigger than one read chunk.
        let big = enc(&Fcall {
            tag: 1,
            msg: Msg::Rread {
                data: vec![5; 3 * READ_CHUNK + 17],
            },
        });
        assert_eq!(
            read_frame(&mut &big[..], u32::MAX).unwrap(),
            Some(big.clone())
        );
        let e = read_frame(&mut &big[..big.len() - 1], u32::MAX).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            e.to_string(),
            format!(
                "EOF inside a 9P message: got {} of {} bytes",
                big.len() - 1,
                big.len()
            )
        );
    }

    #[test]
    fn read_frame_errors() {
        let e = read_frame(&mut &[19u8, 0][..], 8192).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            e.to_string(),
            "EOF inside a 9P message's size field: got 2 of 4 bytes"
        );
        let e = read_frame(&mut &[19u8, 0, 0, 0, 100, 0xff][..], 8192).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(e.to_string(), "EOF inside a 9P message: got 6 of 19 bytes");
        let e = read_frame(&mut &[6u8, 0, 0, 0, 109, 0][..], 8192).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("below the minimum 7"));
        // A peer claiming 4 GiB gets an error from its 4 bytes, before any allocation.
        let e = read_frame(&mut &[0xffu8, 0xff, 0xff, 0xff][..], 8192 + IOHDRSZ).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            e.to_string(),
            "message size 4294967295 exceeds the maximum 8216"
        );
        let inner = e.get_ref().and_then(|e| e.downcast_ref::<FcallError>());
        assert!(matches!(inner, Some(FcallError::TooLarge { .. })));
    }

    #[test]
    fn directory_data() {
        let dirs: Vec<Dir> = ["a", "bb", "", "ünï"]
            .iter()
            .map(|n| dir(n))
            .chain([Dir::null()])
            .collect();
        let mut data = Vec::new();
        for d in &dirs {
            let before = data.len();
            d.encode(&mut data);
            assert_eq!(data.len() - before, d.encoded_size());
        }
        assert_eq!(decode_dirs(&data).unwrap(), dirs);
        assert_eq!(decode_dirs(&[]).unwrap(), []);

        // A last entry cut anywhere is an error.
        let last = data.len() - dirs[4].encoded_size();
        for n in last + 1..data.len() {
            let e = decode_dirs(&data[..n]).unwrap_err();
            assert!(
                matches!(e, FcallError::Truncated { .. } | FcallError::Overrun { .. }),
                "{e}"
            );
        }
        let e = decode_dirs(&data[..data.len() - 1]).unwrap_err();
        assert_eq!(
            e,
            FcallError::Overrun {
                msg: "dir",
                field: "stat size",
                offset: last,
                count: 47,
                left: 46
            }
        );
        assert_eq!(
            decode_dirs(&data[..last + 1]).unwrap_err().to_string(),
            format!("dir: truncated at stat size (byte {last}): needs 2 bytes, 1 left")
        );

        // A stat whose size field is too big swallows the next entry's start.
        let mut bad = data.clone();
        bad[0] += 1;
        assert!(decode_dirs(&bad).is_err());
        // Dir::decode wants exactly one entry.
        assert_eq!(
            Dir::decode(&data[..dirs[0].encoded_size()]).unwrap(),
            dirs[0]
        );
        assert!(matches!(
            Dir::decode(&data),
            Err(FcallError::TrailingBytes { msg: "dir", .. })
        ));
    }

    #[test]
    fn qid_decode() {
        let q = Qid {
            typ: QTDIR,
            version: 2,
            path: 3,
        };
        let mut b = Vec::new();
        q.encode(&mut b);
        assert_eq!(b, [0x80, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Qid::decode(&b), Ok(q));
        assert!(matches!(
            Qid::decode(&b[..12]),
            Err(FcallError::Truncated { msg: "qid", .. })
        ));
        b.push(0);
        assert!(matches!(
            Qid::decode(&b),
            Err(FcallError::TrailingBytes {
                msg: "qid",
                extra: 1,
                ..
            })
        ));
    }

    #[test]
    fn display() {
        let s: Vec<String> = samples().iter().map(|f| f.to_string()).collect();
        assert_eq!(s[0], r#"Tversion tag 0 msize 8192 version "9P2000""#);
        assert_eq!(
            s[9],
            r#"Twalk tag 9 fid 0 newfid 1 nwname 3 0:"usr" 1:"glenda" 2:"ünïcødé""#
        );
        assert_eq!(
            s[12],
            "Rwalk tag 12 nwqid 2 0:(000000000000002a 1 d) 1:(ffffffffffffffff 4294967295 al)"
        );
        assert_eq!(s[20], r#"Rread tag 20 count 12 'hello, world'"#);
        assert!(s[22].starts_with(r"Twrite tag 22 fid 1 offset 9 count 256 '\x00\x01"));
        assert!(s[22].ends_with("..."));
        assert!(s[29].starts_with(
            r#"Rstat tag 29 stat "profile" "glenda" "sys" "" q (1122334455667788 3 ) m 0o644"#
        ));
    }

    /// xorshift64*: small, fast and good enough to drive a fuzzer.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// Random bytes of a random length; half the time with a size field
    /// that matches, and then usually a real message type.
    fn random_input(rng: &mut Rng) -> Vec<u8> {
        let len = if rng.below(8) == 0 {
            rng.below(512)
        } else {
            rng.below(48)
        };
        let mut b = rng.bytes(len);
        if len >= 5 && rng.below(2) == 0 {
            b = fix_size(b);
            if rng.below(4) != 0 {
                b[4] = TVERSION + rng.below(28) as u8;
            }
        }
        b
    }

    /// A valid message damaged in one to four ways.
    fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
        let mut b = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(b.len() + 1);
            match rng.below(6) {
                0 if at < b.len() => b[at] ^= 1 << rng.below(8),
                1 => b.truncate(at),
                2 => {
                    let n = 1 + rng.below(8);
                    let ins = rng.bytes(n);
                    b.splice(at..at, ins);
                }
                3 => {
                    let end = (at + 1 + rng.below(8)).min(b.len());
                    b.drain(at.min(end)..end);
                }
                4 | 5 if at + 2 <= b.len() => {
                    // Length fields are what a strict decoder must distrust.
                    let old = u16::from_le_bytes([b[at], b[at + 1]]);
                    let v = match rng.below(5) {
                        0 => 0,
                        1 => u16::MAX,
                        2 => old.wrapping_add(1),
                        3 => old.wrapping_sub(1),
                        _ => rng.below(64) as u16,
                    };
                    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
                    if rng.below(4) == 0 && at + 4 <= b.len() {
                        let wide = if rng.below(2) == 0 { u16::MAX } else { 0 };
                        b[at + 2..at + 4].copy_from_slice(&wide.to_le_bytes());
                    }
                }
                _ => {}
            }
        }
        if b.len() >= 4 && rng.below(2) == 0 {
            b = fix_size(b);
        }
        b
    }

    /// Whatever `input` is, decoding does not panic, and what decodes is
    /// exactly the encoding of what it decodes to. Gives whether it decoded.
    fn check(input: &[u8]) -> bool {
        let ok = match Fcall::decode(input) {
            Ok(f) => {
                let again = enc(&f);
                assert_eq!(again, input, "{f}");
                assert_eq!(Fcall::decode(&again).as_ref(), Ok(&f));
                let _ = f.to_string();
                true
            }
            Err(e) => {
                let _ = e.to_string();
                false
            }
        };
        match read_frame(&mut &input[..], 8192) {
            Ok(Some(frame)) => assert_eq!(frame, input[..frame.len()]),
            Ok(None) => assert!(input.is_empty()),
            Err(e) => assert!(matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
            )),
        }
        // The same bytes as directory data.
        let body = &input[input.len().min(7)..];
        if let Ok(dirs) = decode_dirs(body) {
            let mut again = Vec::new();
            for d in &dirs {
                d.encode(&mut again);
                let _ = d.to_string();
            }
            assert_eq!(again, body);
        }
        ok
    }

    #[test]
    fn fuzz() {
        const ITERS: u64 = 2_000_000;
        const LIMIT: Duration = Duration::from_millis(1500);
        let seeds: Vec<Vec<u8>> = samples().iter().map(enc).collect();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let start = Instant::now();
        let (mut iters, mut decoded) = (0u64, 0u64);
        while iters < ITERS && (iters % 1024 != 0 || start.elapsed() < LIMIT) {
            let input = if rng.below(2) == 0 {
                random_input(&mut rng)
            } else {
                mutate(&mut rng, &seeds)
            };
            decoded += u64::from(check(&input));
            iters += 1;
        }
        eprintln!(
            "fuzz: {iters} inputs, {decoded} decoded, in {:?}",
            start.elapsed()
        );
        assert!(decoded > 0);
    }
}
