//! One 9P connection: a proc whose first thread reads messages and answers
//! all but reads and writes of files at once, a writer thread (see
//! `wire`), and a thread per file read or write waiting on its `FileIO`
//! (see `request`). Everything here runs in that one proc, so the state is
//! plain `Cell`s and `RefCell`s, and no borrow is held across a blocking
//! call.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;

use super::device::Shared;
use super::fcall::{
    Dir, Fcall, IOHDRSZ, MAXWELEM, Msg, NOFID, OEXEC, ORCLOSE, OTRUNC, OWRITE, Qid, TVERSION,
    VERSION9P,
};
use super::file2chan::Fid;
use super::request;
use super::tree::{Entry, Tree};
use super::wire::{Input, Out, set_nonblocking, shutdown, size_send_buffer};
use crate::thread::{ThreadId, threadcreate, threadint, threadsetname};

/// The largest message size the server agrees to: a megabyte of data per
/// read or write. Larger messages measured slower here, not faster: past
/// a few megabytes the buffers of one round trip (the server's reply, the
/// socket's, the client's) no longer fit in the cache together, and every
/// copy goes to memory. It also bounds what one tag can make the server
/// hold.
pub(crate) const MAX_MSIZE: u32 = (1 << 20) + IOHDRSZ;
/// Below this a session could not carry a directory entry.
pub(crate) const MIN_MSIZE: u32 = 256;

/// Stack of the threads serving one file request.
const REQUEST_STACK: usize = 64 * 1024;

pub(crate) const E_HUNGUP: &str = "i/o on hungup channel";
const E_PERM: &str = "permission denied";
const E_UNKNOWN_FID: &str = "unknown fid";
const E_FID_IN_USE: &str = "fid in use";
const E_NOT_EXIST: &str = "file does not exist";

/// What a client fid points at.
#[derive(Clone)]
enum Node {
    Root,
    File(Arc<Entry>),
}

struct FidState {
    node: Node,
    open: Option<Open>,
}

struct Open {
    mode: u8,
    /// The Inferno fid of this open.
    id: Fid,
    /// A directory read in progress.
    dir: Option<DirRead>,
}

/// The directory as it was when the client began reading it at offset 0:
/// entries already encoded, handed out whole.
struct DirRead {
    entries: Vec<Vec<u8>>,
    next: usize,
    offset: u64,
}

/// A file read or write waiting for its server.
pub(crate) struct Pending {
    /// Distinguishes this request from a later one reusing its tag.
    pub(crate) id: u64,
    thread: ThreadId,
    /// Flushed, or the session ended: it must not be answered, unless its
    /// answer is already on its way (then the Rflushes follow it).
    pub(crate) cancelled: bool,
    /// Tags of the Tflushes waiting for it to finish.
    flushes: Vec<u16>,
}

pub(crate) struct Conn {
    pub(crate) tree: Arc<Tree>,
    pub(crate) out: Out,
    fids: RefCell<HashMap<u32, FidState>>,
    pub(crate) pending: RefCell<HashMap<u16, Pending>>,
    msize: Cell<u32>,
    versioned: Cell<bool>,
    next_req: Cell<u64>,
}

/// Serves one client until it goes, the connection breaks, or the `Srv`
/// is dropped. Runs as the first thread of the connection's own proc.
pub(crate) fn serve(shared: Arc<Shared>, fd: OwnedFd, peer: String) {
    threadsetname(&format!("9p conn {peer}"));
    crate::thread::threadsetgrp(super::device::SRV_GROUP);
    // Non-blocking: the proc's threads read and write it, and wait for it
    // with threadfdwait, an interruptible wait that lets the proc's other
    // threads run. (fcntl cannot fail on a descriptor we hold open.)
    let _ = set_nonblocking(&fd);
    // Room for a whole reply of the largest size: an Rread then usually
    // leaves in one non-blocking sendmsg at once instead of being finished
    // piecemeal by the writer thread (a wait for room per socket buffer's
    // worth).
    size_send_buffer(fd.as_fd(), MAX_MSIZE);
    let fd = Arc::new(fd);
    let Some(key) = shared.add_conn(&fd) else {
        // The Srv was dropped while this connection was being set up.
        shutdown(&fd);
        return;
    };
    let conn = Rc::new(Conn {
        tree: shared.tree.clone(),
        out: Out::new(fd.clone()),
        fids: RefCell::new(HashMap::new()),
        pending: RefCell::new(HashMap::new()),
        msize: Cell::new(MAX_MSIZE),
        versioned: Cell::new(false),
        next_req: Cell::new(1),
    });
    let w = conn.clone();
    threadcreate(
        move || {
            threadsetname("9p writer");
            w.out.writer();
        },
        0,
    );
    let mut input = Input::new(fd.clone());
    // Until the client goes, or sends something that is not a 9P stream:
    // either way the connection is over.
    while let Ok(Some(frame)) = input.next(conn.msize.get()) {
        conn.handle(&frame);
    }
    drop(input);
    shared.remove_conn(key);
    shutdown(&fd);
    conn.end_session();
    conn.out.close();
}

fn rerror(ename: impl Into<String>) -> Msg {
    Msg::Rerror {
        ename: ename.into(),
    }
}

impl Conn {
    /// Answers one message, or starts the thread that will.
    fn handle(self: &Rc<Self>, frame: &[u8]) {
        let tag = u16::from_le_bytes([frame[5], frame[6]]);
        let fc = match Fcall::decode(frame) {
            Ok(fc) => fc,
            Err(e) => {
                // The frame was whole, so the stream is still in step: the
                // client gets an error for this message and may go on.
                return self.reply(tag, rerror(format!("malformed message: {e}")));
            }
        };
        if !fc.msg.is_request() {
            return self.reply(
                tag,
                rerror(format!("unexpected {} from a client", fc.msg.name())),
            );
        }
        if !self.versioned.get() && fc.msg.kind() != TVERSION {
            return self.reply(tag, rerror(format!("{} before Tversion", fc.msg.name())));
        }
        if self.pending.borrow().contains_key(&tag) {
            return self.reply(tag, rerror("tag in use"));
        }
        let r = match fc.msg {
            Msg::Tversion { msize, version } => self.version(msize, &version),
            Msg::Tauth { .. } => rerror("authentication not required"),
            Msg::Tattach { fid, afid, .. } => self.attach(fid, afid),
            Msg::Tflush { oldtag } => match self.flush(tag, oldtag) {
                Some(r) => r,
                None => return,
            },
            Msg::Twalk {
                fid,
                newfid,
                wnames,
            } => self.walk(fid, newfid, &wnames),
            Msg::Topen { fid, mode } => self.open(fid, mode),
            Msg::Tcreate { fid, .. } => self.refuse(fid),
            Msg::Tread { fid, offset, count } => match self.read(tag, fid, offset, count) {
                Some(r) => r,
                None => return,
            },
            Msg::Twrite { fid, offset, data } => match self.write(tag, fid, offset, data) {
                Some(r) => r,
                None => return,
            },
            Msg::Tclunk { fid } => match self.clunk(fid) {
                Ok(()) => Msg::Rclunk,
                Err(e) => rerror(e),
            },
            Msg::Tremove { fid } => match self.clunk(fid) {
                // Tremove clunks the fid even though the removal fails.
                Ok(()) => rerror(E_PERM),
                Err(e) => rerror(e),
            },
            Msg::Tstat { fid } => self.stat(fid),
            Msg::Twstat { fid, stat } => self.wstat(fid, &stat),
            _ => unreachable!("every T-message is handled"),
        };
        self.reply(tag, r);
    }

    pub(crate) fn reply(&self, tag: u16, msg: Msg) {
        self.out.send(Fcall { tag, msg });
    }

    fn iounit(&self) -> u32 {
        self.msize.get() - IOHDRSZ
    }

    /// Tversion: a new session. Whatever the old one had in progress is
    /// abandoned and its fids clunked, as the protocol requires.
    fn version(&self, msize: u32, version: &str) -> Msg {
        self.end_session();
        if msize < MIN_MSIZE {
            self.versioned.set(false);
            return rerror(format!(
                "message size {msize} too small (at least {MIN_MSIZE})"
            ));
        }
        // "9P2000" and its dialects ("9P2000.u", "9P2000.L") get plain
        // 9P2000; anything else is answered "unknown", as the spec asks.
        if !version.starts_with(VERSION9P) {
            self.versioned.set(false);
            return Msg::Rversion {
                msize: msize.min(MAX_MSIZE),
                version: "unknown".into(),
            };
        }
        self.msize.set(msize.min(MAX_MSIZE));
        self.versioned.set(true);
        Msg::Rversion {
            msize: self.msize.get(),
            version: VERSION9P.into(),
        }
    }

    /// Abandons every pending request (no replies) and clunks every fid.
    fn end_session(&self) {
        let pending: Vec<(u16, ThreadId)> = self
            .pending
            .borrow_mut()
            .drain()
            .map(|(tag, p)| (tag, p.thread))
            .collect();
        for (_, t) in pending {
            threadint(t);
        }
        let fids: Vec<FidState> = self.fids.borrow_mut().drain().map(|(_, f)| f).collect();
        for f in fids {
            self.closed(f);
        }
    }

    fn attach(&self, fid: u32, afid: u32) -> Msg {
        if afid != NOFID {
            return rerror("authentication not required");
        }
        if fid == NOFID {
            return rerror("attach to NOFID");
        }
        let mut fids = self.fids.borrow_mut();
        if fids.contains_key(&fid) {
            return rerror(E_FID_IN_USE);
        }
        fids.insert(
            fid,
            FidState {
                node: Node::Root,
                open: None,
            },
        );
        Msg::Rattach {
            qid: Tree::root_qid(),
        }
    }

    fn walk(&self, fid: u32, newfid: u32, wnames: &[String]) -> Msg {
        let mut fids = self.fids.borrow_mut();
        let Some(f) = fids.get(&fid) else {
            return rerror(E_UNKNOWN_FID);
        };
        if f.open.is_some() {
            return rerror("cannot walk an open fid");
        }
        if newfid != fid && (fids.contains_key(&newfid) || newfid == NOFID) {
            return rerror(E_FID_IN_USE);
        }
        debug_assert!(wnames.len() <= MAXWELEM);
        let mut node = f.node.clone();
        let mut wqids = Vec::with_capacity(wnames.len());
        for name in wnames {
            let next = match &node {
                Node::Root if name == ".." => Node::Root,
                Node::Root => match self.tree.lookup(name) {
                    Some(e) => Node::File(e),
                    None => break,
                },
                Node::File(_) => break,
            };
            wqids.push(qid(&next));
            node = next;
        }
        if wqids.len() < wnames.len() {
            if wqids.is_empty() {
                return rerror(match &node {
                    Node::Root => E_NOT_EXIST,
                    Node::File(_) => "walk in non-directory",
                });
            }
            // A partial walk: the qids so far, and newfid untouched.
            return Msg::Rwalk { wqids };
        }
        fids.insert(newfid, FidState { node, open: None });
        Msg::Rwalk { wqids }
    }

    fn open(&self, fid: u32, mode: u8) -> Msg {
        let mut fids = self.fids.borrow_mut();
        let Some(f) = fids.get_mut(&fid) else {
            return rerror(E_UNKNOWN_FID);
        };
        if f.open.is_some() {
            return rerror("fid already open");
        }
        if mode & !(3 | OTRUNC | ORCLOSE) != 0 {
            return rerror(format!("bad open mode {mode:#x}"));
        }
        let q = qid(&f.node);
        match &f.node {
            Node::Root => {
                if mode & 3 != 0 && mode & 3 != OEXEC || mode & (OTRUNC | ORCLOSE) != 0 {
                    return rerror("is a directory");
                }
            }
            Node::File(e) => {
                if e.is_gone() {
                    return rerror(E_HUNGUP);
                }
                // No execute bit, and no removing (so no ORCLOSE).
                if mode & 3 == OEXEC || mode & ORCLOSE != 0 {
                    return rerror(E_PERM);
                }
            }
        }
        f.open = Some(Open {
            mode: mode & 3,
            id: self.tree.new_fid(),
            dir: None,
        });
        Msg::Ropen {
            qid: q,
            iounit: self.iounit(),
        }
    }

    /// Tcreate: the srv directory makes files only through file2chan.
    fn refuse(&self, fid: u32) -> Msg {
        if self.fids.borrow().contains_key(&fid) {
            rerror(E_PERM)
        } else {
            rerror(E_UNKNOWN_FID)
        }
    }

    /// Checks that `fid` is open for `want` (OREAD or OWRITE) and gives its
    /// node and open id.
    fn opened(&self, fid: u32, want: u8) -> Result<(Node, Fid), &'static str> {
        let fids = self.fids.borrow();
        let f = fids.get(&fid).ok_or(E_UNKNOWN_FID)?;
        let o = f.open.as_ref().ok_or("fid not open")?;
        let ok = match want {
            OWRITE => o.mode == OWRITE || o.mode == 2,
            _ => o.mode != OWRITE,
        };
        if !ok {
            return Err(if want == OWRITE {
                "file not open for writing"
            } else {
                "file not open for reading"
            });
        }
        Ok((f.node.clone(), o.id))
    }

    /// Hands request `tag` on file `e` to a thread of its own, `run`
    /// (given the connection, the request's id and `e`), which waits for the
    /// file's server and replies; `None` then. A file whose server has
    /// gone is answered at once.
    fn spawn_request(
        self: &Rc<Self>,
        tag: u16,
        e: Arc<Entry>,
        run: impl FnOnce(Rc<Conn>, u64, Arc<Entry>) + 'static,
    ) -> Option<Msg> {
        if e.is_gone() {
            return Some(rerror(E_HUNGUP));
        }
        let c = self.clone();
        let req = self.new_request();
        let t = threadcreate(move || run(c, req, e), REQUEST_STACK);
        self.hold(tag, req, t);
        None
    }

    /// Tread: a directory read is answered here; a file read goes to the
    /// file's server in a thread of its own, and is answered by that.
    fn read(self: &Rc<Self>, tag: u16, fid: u32, offset: u64, count: u32) -> Option<Msg> {
        let (node, id) = match self.opened(fid, 0) {
            Ok(x) => x,
            Err(e) => return Some(rerror(e)),
        };
        let count = count.min(self.iounit());
        match node {
            Node::Root => Some(self.read_dir(fid, offset, count)),
            Node::File(e) => self.spawn_request(tag, e, move |c, req, e| {
                request::read(c, tag, req, e, (offset, count as usize, id))
            }),
        }
    }

    fn write(self: &Rc<Self>, tag: u16, fid: u32, offset: u64, data: Vec<u8>) -> Option<Msg> {
        let (node, id) = match self.opened(fid, OWRITE) {
            Ok(x) => x,
            Err(e) => return Some(rerror(e)),
        };
        match node {
            Node::Root => Some(rerror("is a directory")),
            Node::File(e) => self.spawn_request(tag, e, move |c, req, e| {
                request::write(c, tag, req, e, (offset, data, id))
            }),
        }
    }

    fn new_request(&self) -> u64 {
        let id = self.next_req.get();
        self.next_req.set(id + 1);
        id
    }

    fn hold(&self, tag: u16, id: u64, thread: ThreadId) {
        self.pending.borrow_mut().insert(
            tag,
            Pending {
                id,
                thread,
                cancelled: false,
                flushes: Vec::new(),
            },
        );
    }

    /// Whether request `id` (tagged `tag`) should stop waiting.
    pub(crate) fn cancelled(&self, tag: u16, id: u64) -> bool {
        self.pending
            .borrow()
            .get(&tag)
            .is_none_or(|p| p.id != id || p.cancelled)
    }

    /// Request `id` is over: send its reply, if it has one and is still
    /// wanted, then the Rflushes that waited for it.
    pub(crate) fn finish(&self, tag: u16, id: u64, reply: Option<Msg>) {
        let p = {
            let mut pending = self.pending.borrow_mut();
            match pending.get(&tag) {
                Some(p) if p.id == id => pending.remove(&tag).unwrap(),
                // Abandoned by a new session or the connection's end.
                _ => return,
            }
        };
        if let Some(r) = reply {
            self.reply(tag, r);
        }
        for f in p.flushes {
            self.reply(f, Msg::Rflush);
        }
    }

    /// Tflush: a request still waiting is abandoned, and the Rflush sent
    /// once its thread has let go of it (after its reply, if that was
    /// already on its way). Anything else is flushed already.
    fn flush(&self, tag: u16, oldtag: u16) -> Option<Msg> {
        let mut pending = self.pending.borrow_mut();
        let Some(p) = pending.get_mut(&oldtag) else {
            return Some(Msg::Rflush);
        };
        p.cancelled = true;
        p.flushes.push(tag);
        let t = p.thread;
        drop(pending);
        threadint(t);
        None
    }

    fn clunk(&self, fid: u32) -> Result<(), &'static str> {
        let f = self.fids.borrow_mut().remove(&fid).ok_or(E_UNKNOWN_FID)?;
        self.closed(f);
        Ok(())
    }

    /// A fid is gone: if it was an open file, tell the file's server.
    fn closed(&self, f: FidState) {
        if let (Node::File(e), Some(o)) = (f.node, f.open) {
            if !e.is_gone() {
                threadcreate(move || request::close(e, o.id), REQUEST_STACK);
            }
        }
    }

    fn stat(&self, fid: u32) -> Msg {
        let fids = self.fids.borrow();
        let Some(f) = fids.get(&fid) else {
            return rerror(E_UNKNOWN_FID);
        };
        match &f.node {
            Node::Root => Msg::Rstat {
                stat: self.tree.root_stat(),
            },
            Node::File(e) if e.is_gone() => rerror(E_HUNGUP),
            Node::File(e) => Msg::Rstat {
                stat: self.tree.stat(e),
            },
        }
    }

    /// Twstat: refused, except the all-"don't touch" one, which asks only
    /// that the file be synced to stable storage and so succeeds.
    fn wstat(&self, fid: u32, stat: &Dir) -> Msg {
        if !self.fids.borrow().contains_key(&fid) {
            return rerror(E_UNKNOWN_FID);
        }
        if *stat == Dir::null() {
            Msg::Rwstat
        } else {
            rerror(E_PERM)
        }
    }

    /// Reads the directory: whole entries only, as many as fit in `count`.
    /// Offset 0 starts again from a fresh listing; any other offset must
    /// be where the previous read ended.
    fn read_dir(&self, fid: u32, offset: u64, count: u32) -> Msg {
        let mut fids = self.fids.borrow_mut();
        let o = fids
            .get_mut(&fid)
            .and_then(|f| f.open.as_mut())
            .expect("read_dir on an open fid");
        if offset == 0 {
            let mut entries = Vec::new();
            for e in self.tree.list() {
                let mut b = Vec::new();
                self.tree.stat(&e).encode(&mut b);
                entries.push(b);
            }
            o.dir = Some(DirRead {
                entries,
                next: 0,
                offset: 0,
            });
        }
        let Some(d) = o.dir.as_mut().filter(|d| d.offset == offset) else {
            return rerror(format!("bad offset {offset} in directory read"));
        };
        let mut data = Vec::new();
        while let Some(e) = d.entries.get(d.next) {
            if data.len() + e.len() > count as usize {
                break;
            }
            data.extend_from_slice(e);
            d.next += 1;
        }
        if data.is_empty() && d.next < d.entries.len() {
            return rerror(format!(
                "directory read of {count} bytes is too short for the next entry ({} bytes)",
                d.entries[d.next].len()
            ));
        }
        d.offset += data.len() as u64;
        Msg::Rread { data }
    }
}

fn qid(n: &Node) -> Qid {
    match n {
        Node::Root => Tree::root_qid(),
        Node::File(e) => e.qid(),
    }
}
