//! `FileIO`: the server's end of a channel-backed file (Inferno's
//! `sys->file2chan`).

use std::fmt;
use std::sync::Arc;

use super::tree::{Entry, Tree};
use crate::channel::Chan;

/// Identifies one client open of a file: every request made through that
/// open carries it, and no other open has the same one (Inferno's `fid`;
/// not the 9P fid, which is the client's own number).
///
/// ```
/// use thread9::srv::{Fid, Srv, fcall::OWRITE, ninep::Client};
///
/// thread9::run(|| {
///     let srv = Srv::new();
///     let log = srv.file2chan("log").unwrap();
///     let fids = thread9::Chan::new(3);
///     let seen = fids.clone();
///     thread9::threadcreate(move || loop {
///         if let (_, data, fid, Some(wc)) = log.write.recv().unwrap() {
///             seen.send(fid).unwrap();
///             let _ = wc.send(Ok(data.len()));
///         }
///     }, 0);
///     # srv.announce("tcp!127.0.0.1!0").unwrap();
///     # let c = Client::mount(&srv.addrs()[0]).unwrap();
///     let (a, b) = (c.open("log", OWRITE).unwrap(), c.open("log", OWRITE).unwrap());
///     a.write(b"1").unwrap();
///     a.write(b"2").unwrap();
///     b.write(b"3").unwrap();
///     let got: Vec<Fid> = (0..3).map(|_| fids.recv().unwrap()).collect();
///     assert_eq!(got[0], got[1]); // the same open
///     assert_ne!(got[1], got[2]); // another open of the same file
///     thread9::threadexitsall("");
/// }).unwrap();
/// ```
pub type Fid = u64;

/// The reply channel of a read request: send the data (at most `count`
/// bytes reach the client; empty means end of file) or an error string,
/// which becomes the client's error. It is buffered, so the reply never
/// blocks.
///
/// ```
/// use thread9::srv::{Rread, Srv, fcall::OREAD, ninep::Client};
///
/// thread9::run(|| {
///     let srv = Srv::new();
///     let greeting = srv.file2chan("greeting").unwrap();
///     thread9::threadcreate(move || loop {
///         if let (offset, _, _, Some(rc)) = greeting.read.recv().unwrap() {
///             let rc: Rread = rc;
///             let _ = rc.send(match offset {
///                 0 => Ok(b"hello, world".to_vec()),
///                 _ => Err("no more".into()),
///             });
///         }
///     }, 0);
///     # srv.announce("tcp!127.0.0.1!0").unwrap();
///     # let c = Client::mount(&srv.addrs()[0]).unwrap();
///     let f = c.open("greeting", OREAD).unwrap();
///     let mut buf = [0; 5];
///     assert_eq!(f.read(&mut buf).unwrap(), 5); // the reply, cut to the count
///     assert_eq!(&buf, b"hello");
///     assert_eq!(f.read(&mut buf).unwrap_err().to_string(), "no more");
///     thread9::threadexitsall("");
/// }).unwrap();
/// ```
pub type Rread = Chan<Result<Vec<u8>, String>>;

/// The reply channel of a write request: send how many bytes were written
/// (more than were offered counts as all of them) or an error string.
///
/// ```
/// use thread9::srv::{Rwrite, Srv, fcall::OWRITE, ninep::Client};
///
/// thread9::run(|| {
///     let srv = Srv::new();
///     let ctl = srv.file2chan("ctl").unwrap();
///     thread9::threadcreate(move || loop {
///         if let (_, data, _, Some(wc)) = ctl.write.recv().unwrap() {
///             let wc: Rwrite = wc;
///             let _ = wc.send(match &data[..] {
///                 b"halt" => Err("permission denied".into()),
///                 _ => Ok(usize::MAX), // all of it
///             });
///         }
///     }, 0);
///     # srv.announce("tcp!127.0.0.1!0").unwrap();
///     # let c = Client::mount(&srv.addrs()[0]).unwrap();
///     let f = c.open("ctl", OWRITE).unwrap();
///     assert_eq!(f.write(b"sync").unwrap(), 4);
///     assert_eq!(f.write(b"halt").unwrap_err().to_string(), "permission denied");
///     thread9::threadexitsall("");
/// }).unwrap();
/// ```
pub type Rwrite = Chan<Result<usize, String>>;

/// A read request: `(offset, count, fid, rc)`.
///
/// ```
/// use thread9::srv::{ReadReq, Srv, fcall::OREAD, ninep::Client};
///
/// thread9::run(|| {
///     let srv = Srv::new();
///     let data = srv.file2chan("data").unwrap();
///     let seen = thread9::Chan::new(2);
///     let s = seen.clone();
///     thread9::threadcreate(move || loop {
///         let (offset, count, _fid, rc): ReadReq = data.read.recv().unwrap();
///         s.send((offset, count, rc.is_some())).unwrap();
///         if let Some(rc) = rc {
///             let _ = rc.send(Ok(Vec::new()));
///         }
///     }, 0);
///     # srv.announce("tcp!127.0.0.1!0").unwrap();
///     # let c = Client::mount(&srv.addrs()[0]).unwrap();
///     let f = c.open("data", OREAD).unwrap();
///     f.pread(&mut [0; 3], 7).unwrap();
///     assert_eq!(seen.recv().unwrap(), (7, 3, true));
///     f.clunk().unwrap(); // a close: no reply channel
///     assert_eq!(seen.recv().unwrap(), (0, 0, false));
///     thread9::threadexitsall("");
/// }).unwrap();
/// ```
pub type ReadReq = (u64, usize, Fid, Option<Rread>);
/// A write request: `(offset, data, fid, wc)`.
///
/// ```
/// use thread9::srv::{Srv, WriteReq, fcall::OWRITE, ninep::Client};
///
/// thread9::run(|| {
///     let srv = Srv::new();
///     let data = srv.file2chan("data").unwrap();
///     let seen = thread9::Chan::new(2);
///     let s = seen.clone();
///     thread9::threadcreate(move || loop {
///         let (offset, bytes, _fid, wc): WriteReq = data.write.recv().unwrap();
///         s.send((offset, bytes.clone(), wc.is_some())).unwrap();
///         if let Some(wc) = wc {
///             let _ = wc.send(Ok(bytes.len()));
///         }
///     }, 0);
///     # srv.announce("tcp!127.0.0.1!0").unwrap();
///     # let c = Client::mount(&srv.addrs()[0]).unwrap();
///     let f = c.open("data", OWRITE).unwrap();
///     assert_eq!(f.pwrite(b"abc", 4).unwrap(), 3);
///     assert_eq!(seen.recv().unwrap(), (4, b"abc".to_vec(), true));
///     f.clunk().unwrap(); // a close: no reply channel
///     assert_eq!(seen.recv().unwrap(), (0, Vec::new(), false));
///     thread9::threadexitsall("");
/// }).unwrap();
/// ```
pub type WriteReq = (u64, Vec<u8>, Fid, Option<Rwrite>);

/// Request channels hold this many requests, as Inferno's do.
pub(crate) const REQUEST_BUFFER: usize = 16;

/// The server's side of a file made by [`Srv::file2chan`](super::Srv::file2chan).
///
/// Each client read arrives on `read` as `(offset, count, fid, Some(rc))`
/// and is answered on `rc`; each write arrives on `write` as `(offset,
/// data, fid, Some(wc))` and is answered on `wc`. When a client closes a
/// file it opened, the server is sent `(0, 0, fid, None)` on `read` and
/// then `(0, [], fid, None)` on `write`, so it can forget that open.
///
/// Dropping the `FileIO` removes the file: clients' requests waiting for a
/// reply, and any made later through files they still have open, fail with
/// `i/o on hungup channel`, and `read` and `write` are closed (so a thread
/// receiving on a clone of one of them sees
/// [`RecvError::Closed`](crate::RecvError::Closed)).
///
/// A reply is sent at most once: after the client has it, a second reply
/// on the same channel fails with `Closed`. A reply to a request the client
/// has given up (flushed, or its connection gone) is discarded quietly.
///
/// ```
/// use thread9::srv::{Srv, ninep::Client};
/// use thread9::{proccreate, threadcreate};
///
/// thread9::run(|| {
///     let srv = Srv::new();
///     let f = srv.file2chan("hello").unwrap();
///     threadcreate(move || {
///         // The thread owns `f`: the file lives as long as it serves it.
///         while let Ok((off, _count, _fid, rc)) = f.read.recv() {
///             if let Some(rc) = rc {
///                 let text = b"hello, world\n";
///                 let off = (off as usize).min(text.len());
///                 let _ = rc.send(Ok(text[off..].to_vec()));
///             }
///         }
///     }, 0);
///     let path = srv.post(&format!("hello-doc-{}", std::process::id())).unwrap();
///     let name = path.file_name().unwrap().to_str().unwrap().to_owned();
///     // A client in its own proc: ninep calls block only their thread.
///     let done = thread9::Chan::new(0);
///     let d = done.clone();
///     proccreate(move || {
///         let c = Client::mount(&name).unwrap();
///         let mut text = String::new();
///         std::io::Read::read_to_string(&mut c.open("hello", 0).unwrap(), &mut text).unwrap();
///         d.send(text).unwrap();
///     }, 0);
///     assert_eq!(done.recv().unwrap(), "hello, world\n");
///     drop(srv); // stops serving; the file's thread ends with the program
///     thread9::threadexitsall("");
/// }).unwrap();
/// ```
pub struct FileIO {
    /// Read requests: `(offset, count, fid, rc)`.
    pub read: Chan<ReadReq>,
    /// Write requests: `(offset, data, fid, wc)`.
    pub write: Chan<WriteReq>,
    tree: Arc<Tree>,
    entry: Arc<Entry>,
}

// Being `Drop` matters beyond removing the file: a `move` closure that
// uses only `f.read` then captures all of `f` (not just that field, as
// closures otherwise do since Rust 2021), so the file lives as long as the
// thread serving it instead of vanishing when the closure is made.
impl Drop for FileIO {
    fn drop(&mut self) {
        self.tree.remove(&self.entry);
        self.entry.gone.close();
        self.entry.read.close();
        self.entry.write.close();
    }
}

impl FileIO {
    pub(crate) fn new(tree: &Arc<Tree>, name: &str) -> std::io::Result<FileIO> {
        let read = Chan::new(REQUEST_BUFFER);
        let write = Chan::new(REQUEST_BUFFER);
        let gone = Chan::new(0);
        read.set_name(&format!("{name} reads"));
        write.set_name(&format!("{name} writes"));
        gone.set_name(&format!("{name} gone"));
        let entry = tree.create(name, read.clone(), write.clone(), gone)?;
        Ok(FileIO {
            read,
            write,
            tree: tree.clone(),
            entry,
        })
    }

    /// The file's name in the srv directory.
    ///
    /// ```
    /// let srv = thread9::srv::Srv::new();
    /// let f = srv.file2chan("clock").unwrap();
    /// assert_eq!(f.name(), "clock");
    /// assert_eq!(srv.files(), [f.name()]);
    /// ```
    pub fn name(&self) -> &str {
        &self.entry.name
    }
}

impl fmt::Debug for FileIO {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileIO")
            .field("name", &self.entry.name)
            .field("pending_reads", &self.read.len())
            .field("pending_writes", &self.write.len())
            .finish()
    }
}
