//! The srv directory: one flat directory of channel-backed files, shared by
//! every `Srv` handle, every `FileIO` and every connection serving it.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::fcall::{DMDIR, Dir, QTDIR, QTFILE, Qid};
use super::file2chan::{Fid, ReadReq, WriteReq};
use crate::channel::Chan;
use crate::thread::program::lock;

/// Inferno's limit: a name must be shorter than this many bytes.
pub(crate) const NAME_MAX: usize = 64;

/// Mode of every file, as Inferno's `#s` creates them.
pub(crate) const FILE_MODE: u32 = 0o660;
/// Mode of the directory.
pub(crate) const DIR_MODE: u32 = DMDIR | 0o770;

/// One file: the channels its requests go out on, and `gone`, closed when
/// its `FileIO` is dropped. Requests in flight watch `gone` so that they
/// fail instead of waiting for a server that has left.
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) path: u64,
    pub(crate) mtime: u32,
    pub(crate) read: Chan<ReadReq>,
    pub(crate) write: Chan<WriteReq>,
    pub(crate) gone: Chan<()>,
}

impl Entry {
    pub(crate) fn qid(&self) -> Qid {
        Qid {
            typ: QTFILE,
            version: 0,
            path: self.path,
        }
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.gone.is_closed()
    }
}

/// The directory and the counters that name things in it.
pub(crate) struct Tree {
    files: Mutex<HashMap<String, Arc<Entry>>>,
    /// Qid paths: 0 is the directory, files count up from 1 and are never
    /// reused, so a client cannot mistake a new file for an old one.
    next_path: AtomicU64,
    /// Inferno fids: one per client open, never reused.
    next_fid: AtomicU64,
    pub(crate) user: String,
    pub(crate) ctime: u32,
}

pub(crate) fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// Why Inferno would refuse `name` as a file name.
pub(crate) fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() < NAME_MAX
        && !name.contains('/')
        && !name.chars().any(char::is_control)
}

pub(crate) fn syntax_error() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "file name syntax")
}

impl Tree {
    pub(crate) fn new() -> Tree {
        Tree {
            files: Mutex::new(HashMap::new()),
            next_path: AtomicU64::new(1),
            next_fid: AtomicU64::new(1),
            user: super::ns::user(),
            ctime: now(),
        }
    }

    /// Adds a file named `name` served on `read` and `write`.
    pub(crate) fn create(
        &self,
        name: &str,
        read: Chan<ReadReq>,
        write: Chan<WriteReq>,
        gone: Chan<()>,
    ) -> io::Result<Arc<Entry>> {
        if !name_ok(name) {
            return Err(syntax_error());
        }
        let mut files = lock(&self.files);
        if files.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
        }
        let e = Arc::new(Entry {
            name: name.to_owned(),
            path: self.next_path.fetch_add(1, Ordering::Relaxed),
            mtime: now(),
            read,
            write,
            gone,
        });
        files.insert(name.to_owned(), e.clone());
        Ok(e)
    }

    /// Takes `e` out of the directory (if a newer file has not already
    /// taken its name).
    pub(crate) fn remove(&self, e: &Entry) {
        let mut files = lock(&self.files);
        if files.get(&e.name).is_some_and(|f| f.path == e.path) {
            files.remove(&e.name);
        }
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<Arc<Entry>> {
        lock(&self.files).get(name).cloned()
    }

    /// The files in the order they were made.
    pub(crate) fn list(&self) -> Vec<Arc<Entry>> {
        let mut v: Vec<_> = lock(&self.files).values().cloned().collect();
        v.sort_by_key(|e| e.path);
        v
    }

    pub(crate) fn new_fid(&self) -> Fid {
        self.next_fid.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn root_qid() -> Qid {
        Qid {
            typ: QTDIR,
            version: 0,
            path: 0,
        }
    }

    pub(crate) fn root_stat(&self) -> Dir {
        self.dir("/", Tree::root_qid(), DIR_MODE, self.ctime)
    }

    pub(crate) fn stat(&self, e: &Entry) -> Dir {
        self.dir(&e.name, e.qid(), FILE_MODE, e.mtime)
    }

    fn dir(&self, name: &str, qid: Qid, mode: u32, time: u32) -> Dir {
        Dir {
            typ: 0,
            dev: 0,
            qid,
            mode,
            atime: time,
            mtime: time,
            length: 0,
            name: name.to_owned(),
            uid: self.user.clone(),
            gid: self.user.clone(),
            muid: self.user.clone(),
        }
    }
}
