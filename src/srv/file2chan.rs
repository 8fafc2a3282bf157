//! `FileIO`: the server's end of a channel-backed file (Inferno's
//! `sys->file2chan`).

use std::fmt;
use std::sync::Arc;

use super::tree::{Entry, Tree};
use crate::channel::Chan;

/// Identifies one client open of a file: every request made through that
/// open carries it, and no other open has the same one (Inferno's `fid`;
/// not the 9P fid, which is the client's own number).
pub type Fid = u64;

/// The reply channel of a read request: send the data (at most `count`
/// bytes reach the client; empty means end of file) or an error string,
/// which becomes the client's error. It is buffered, so the reply never
/// blocks.
pub type Rread = Chan<Result<Vec<u8>, String>>;

/// The reply channel of a write request: send how many bytes were written
/// (more than were offered counts as all of them) or an error string.
pub type Rwrite = Chan<Result<usize, String>>;

/// A read request: `(offset, count, fid, rc)`.
pub type ReadReq = (u64, usize, Fid, Option<Rread>);
/// A write request: `(offset, data, fid, wc)`.
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
