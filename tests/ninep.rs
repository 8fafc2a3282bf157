//! The 9P2000 client (`thread9::ninep`) against a scripted server.
//!
//! The server below serves one connection from a plain OS thread, out of a
//! small in-memory tree, and reports every request it gets on a thread9
//! channel (made outside any program, so a thread may wait on it without
//! being judged deadlocked). Some of its files behave on purpose like
//! trouble: `slow` never answers a read (until it is flushed), `racy`
//! answers a read only when it is flushed, just before the `Rflush`,
//! `gate` holds reads until a set number are pending and then answers them
//! in reverse order, `hangup` closes the connection, `bogus` answers with
//! a tag no request has.

mod common;

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thread9::ninep::{Client, File};
use thread9::srv::fcall::{
    DMDIR, Dir, Fcall, IOHDRSZ, Msg, NOFID, NOTAG, ORDWR, OREAD, OTRUNC, OWRITE, QTDIR, Qid,
    decode_dirs, read_frame,
};
use thread9::{Chan, proccreate, run, threadcreate, threadint, threadkill};

/// How long any one test may take before it counts as hung.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `f` on a thread of its own and fails if it takes longer than
/// [`LIMIT`], so that a hang is a failure, not a stuck test run.
fn bounded(f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(()) => h.join().unwrap(),
        Err(RecvTimeoutError::Disconnected) => {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(RecvTimeoutError::Timeout) => panic!("the test hung for {LIMIT:?}"),
    }
}

// ---------------------------------------------------------------------
// The scripted server.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Dir,
    Plain,
    ReadOnly,
    Slow,
    Racy,
    Gate,
    Err,
    Short,
    Hangup,
    Bogus,
}

struct Node {
    name: &'static str,
    kind: Kind,
    parent: usize,
    children: Vec<usize>,
    data: Vec<u8>,
    iounit: u32,
}

const ERR_TEXT: &str = "ünïcødé trouble: no such luck";

fn tree() -> Vec<Node> {
    let n = |name, kind, parent, data: &[u8], iounit| Node {
        name,
        kind,
        parent,
        children: Vec::new(),
        data: data.to_vec(),
        iounit,
    };
    let mut t = vec![
        n("/", Kind::Dir, 0, b"", 0),
        n("hello", Kind::ReadOnly, 0, b"hello, world\n", 0),
        n("data", Kind::Plain, 0, b"0123456789", 0),
        n("sub", Kind::Dir, 0, b"", 0),
        n("deep", Kind::Plain, 3, b"deep in the tree\n", 3),
        n("slow", Kind::Slow, 0, b"", 0),
        n("racy", Kind::Racy, 0, b"", 0),
        n("gate", Kind::Gate, 0, b"", 0),
        n("err", Kind::Err, 0, b"", 0),
        n("short", Kind::Short, 0, b"", 0),
        n("hangup", Kind::Hangup, 0, b"", 0),
        n("bogus", Kind::Bogus, 0, b"", 0),
    ];
    for i in 1..t.len() {
        let p = t[i].parent;
        t[p].children.push(i);
    }
    t
}

#[derive(Clone)]
struct Opts {
    msize: u32,
    /// Reads of `gate` are answered once this many are pending.
    gate: usize,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            msize: 8192,
            gate: 1,
        }
    }
}

struct FidState {
    node: usize,
    open: bool,
    /// Directory reads: the next entry.
    dirpos: usize,
}

struct Server {
    nodes: Vec<Node>,
    fids: HashMap<u32, FidState>,
    /// Unanswered reads of `slow` and `racy`, by tag.
    held: HashMap<u16, Kind>,
    /// Unanswered reads of `gate`: tag and offset.
    gate: Vec<(u16, u64)>,
    opts: Opts,
    out: Box<dyn Write + Send>,
    events: Chan<Fcall>,
    /// Client misbehaviour the server noticed (tags or fids misused).
    problems: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn reply(&mut self, tag: u16, msg: Msg) {
        let mut buf = Vec::new();
        Fcall { tag, msg }.encode(&mut buf);
        let _ = self.out.write_all(&buf);
    }

    fn problem(&self, p: String) {
        self.problems.lock().unwrap().push(p);
    }

    fn qid(&self, i: usize) -> Qid {
        Qid {
            typ: if self.nodes[i].kind == Kind::Dir {
                QTDIR
            } else {
                0
            },
            version: 0,
            path: i as u64,
        }
    }

    fn dir(&self, i: usize) -> Dir {
        let n = &self.nodes[i];
        Dir {
            qid: self.qid(i),
            mode: if n.kind == Kind::Dir {
                DMDIR | 0o755
            } else {
                0o644
            },
            length: n.data.len() as u64,
            name: n.name.into(),
            uid: "glenda".into(),
            gid: "glenda".into(),
            ..Dir::default()
        }
    }

    fn fid(&mut self, tag: u16, fid: u32) -> Option<&mut FidState> {
        if !self.fids.contains_key(&fid) {
            self.problem(format!("unknown fid {fid}"));
            self.reply(
                tag,
                Msg::Rerror {
                    ename: "unknown fid".into(),
                },
            );
            return None;
        }
        self.fids.get_mut(&fid)
    }

    /// Answers one request; false to hang up.
    fn handle(&mut self, f: Fcall) -> bool {
        let tag = f.tag;
        if self.held.contains_key(&tag) || self.gate.iter().any(|&(t, _)| t == tag) {
            self.problem(format!("tag {tag} reused while outstanding"));
        }
        let err = |s: &str| Msg::Rerror { ename: s.into() };
        let r = match f.msg {
            Msg::Tversion { msize, .. } => {
                if tag != NOTAG {
                    self.problem(format!("Tversion with tag {tag}"));
                }
                Msg::Rversion {
                    msize: msize.min(self.opts.msize),
                    version: "9P2000".into(),
                }
            }
            Msg::Tattach {
                fid, afid, uname, ..
            } => {
                if afid != NOFID || uname.is_empty() {
                    self.problem(format!("Tattach afid {afid} uname {uname:?}"));
                }
                self.fids.insert(
                    fid,
                    FidState {
                        node: 0,
                        open: false,
                        dirpos: 0,
                    },
                );
                Msg::Rattach { qid: self.qid(0) }
            }
            Msg::Twalk {
                fid,
                newfid,
                wnames,
            } => {
                let Some(st) = self.fid(tag, fid) else {
                    return true;
                };
                let (open, mut at) = (st.open, st.node);
                if open {
                    err("walk of an open fid")
                } else if newfid != fid && self.fids.contains_key(&newfid) {
                    self.problem(format!("newfid {newfid} in use"));
                    err("fid in use")
                } else {
                    let mut wqids = Vec::new();
                    for name in &wnames {
                        let n = &self.nodes[at];
                        let next = if n.kind != Kind::Dir {
                            None
                        } else if name == ".." {
                            Some(n.parent)
                        } else {
                            n.children
                                .iter()
                                .copied()
                                .find(|&c| self.nodes[c].name == name)
                        };
                        match next {
                            Some(c) => {
                                at = c;
                                wqids.push(self.qid(c));
                            }
                            None => break,
                        }
                    }
                    if wqids.is_empty() && !wnames.is_empty() {
                        Msg::Rerror {
                            ename: format!("{}: file does not exist", wnames[0]),
                        }
                    } else {
                        if wqids.len() == wnames.len() {
                            self.fids.insert(
                                newfid,
                                FidState {
                                    node: at,
                                    open: false,
                                    dirpos: 0,
                                },
                            );
                        }
                        Msg::Rwalk { wqids }
                    }
                }
            }
            Msg::Topen { fid, mode } => {
                let Some(st) = self.fid(tag, fid) else {
                    return true;
                };
                let (i, open) = (st.node, st.open);
                let kind = self.nodes[i].kind;
                if open {
                    err("fid already open")
                } else if (kind == Kind::ReadOnly || kind == Kind::Dir) && mode & 3 != OREAD {
                    err("permission denied")
                } else {
                    self.fids.get_mut(&fid).unwrap().open = true;
                    if mode & OTRUNC != 0 {
                        self.nodes[i].data.clear();
                    }
                    Msg::Ropen {
                        qid: self.qid(i),
                        iounit: self.nodes[i].iounit,
                    }
                }
            }
            Msg::Tread { fid, offset, count } => {
                let Some(st) = self.fid(tag, fid) else {
                    return true;
                };
                let (i, open) = (st.node, st.open);
                if !open {
                    err("fid not open")
                } else {
                    match self.nodes[i].kind {
                        Kind::Dir => {
                            let st = self.fids.get_mut(&fid).unwrap();
                            if offset == 0 {
                                st.dirpos = 0;
                            }
                            let pos = st.dirpos;
                            // At most one entry a read: clients must
                            // read directories in several messages.
                            match self.nodes[i].children.get(pos).copied() {
                                None => Msg::Rread { data: Vec::new() },
                                Some(c) => {
                                    let mut data = Vec::new();
                                    self.dir(c).encode(&mut data);
                                    if data.len() > count as usize {
                                        err("directory read count too small")
                                    } else {
                                        self.fids.get_mut(&fid).unwrap().dirpos += 1;
                                        Msg::Rread { data }
                                    }
                                }
                            }
                        }
                        Kind::Plain | Kind::ReadOnly => {
                            let d = &self.nodes[i].data;
                            let from = (offset as usize).min(d.len());
                            let to = (from + count as usize).min(d.len());
                            Msg::Rread {
                                data: d[from..to].to_vec(),
                            }
                        }
                        k @ (Kind::Slow | Kind::Racy) => {
                            self.held.insert(tag, k);
                            return true;
                        }
                        Kind::Gate => {
                            self.gate.push((tag, offset));
                            if self.gate.len() == self.opts.gate {
                                // The last to come is answered first.
                                while let Some((t, off)) = self.gate.pop() {
                                    let mut data = format!("offset {off}").into_bytes();
                                    data.truncate(count as usize);
                                    self.reply(t, Msg::Rread { data });
                                }
                            }
                            return true;
                        }
                        Kind::Err => err(ERR_TEXT),
                        Kind::Hangup => return false,
                        Kind::Bogus => {
                            self.reply(tag.wrapping_add(10000), Msg::Rread { data: vec![1] });
                            return true;
                        }
                        Kind::Short => Msg::Rread { data: Vec::new() },
                    }
                }
            }
            Msg::Twrite { fid, offset, data } => {
                let Some(st) = self.fid(tag, fid) else {
                    return true;
                };
                let i = st.node;
                if !st.open {
                    err("fid not open")
                } else {
                    match self.nodes[i].kind {
                        Kind::Plain => {
                            let d = &mut self.nodes[i].data;
                            let end = offset as usize + data.len();
                            if d.len() < end {
                                d.resize(end, 0);
                            }
                            d[offset as usize..end].copy_from_slice(&data);
                            Msg::Rwrite {
                                count: data.len() as u32,
                            }
                        }
                        Kind::Short => Msg::Rwrite {
                            count: data.len().min(3) as u32,
                        },
                        _ => err("permission denied"),
                    }
                }
            }
            Msg::Tclunk { fid } => {
                if self.fid(tag, fid).is_none() {
                    return true;
                }
                self.fids.remove(&fid);
                Msg::Rclunk
            }
            Msg::Tstat { fid } => {
                let Some(st) = self.fid(tag, fid) else {
                    return true;
                };
                let i = st.node;
                Msg::Rstat { stat: self.dir(i) }
            }
            Msg::Tflush { oldtag } => {
                if self.held.remove(&oldtag) == Some(Kind::Racy) {
                    // The reply overtakes the flush, as 9P allows.
                    self.reply(
                        oldtag,
                        Msg::Rread {
                            data: b"too late".to_vec(),
                        },
                    );
                }
                self.gate.retain(|&(t, _)| t != oldtag);
                Msg::Rflush
            }
            other => Msg::Rerror {
                ename: format!("{} not supported", other.name()),
            },
        };
        self.reply(tag, r);
        true
    }
}

/// Serves one connection until it closes (or `hangup` is read).
fn serve(
    mut rd: Box<dyn Read + Send>,
    out: Box<dyn Write + Send>,
    opts: Opts,
    events: Chan<Fcall>,
    problems: Arc<Mutex<Vec<String>>>,
) {
    let mut s = Server {
        nodes: tree(),
        fids: HashMap::new(),
        held: HashMap::new(),
        gate: Vec::new(),
        opts,
        out,
        events,
        problems,
    };
    while let Ok(Some(frame)) = read_frame(&mut rd, 1 << 24) {
        let f = Fcall::decode(&frame).expect("the client sends valid 9P");
        // Unbounded: never blocks.
        let _ = s.events.send(f.clone());
        if !s.handle(f) {
            return;
        }
    }
}

/// A client mounted on a fresh scripted server over a socket pair.
struct Fs {
    client: Client,
    /// Every request the server got, in order.
    events: Chan<Fcall>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Fs {
    fn new(opts: Opts) -> Fs {
        let (a, b) = UnixStream::pair().unwrap();
        let events = Chan::new(usize::MAX);
        let problems = Arc::new(Mutex::new(Vec::new()));
        spawn_server(
            Box::new(b.try_clone().unwrap()),
            Box::new(b),
            opts,
            events.clone(),
            problems.clone(),
        );
        let client = Client::mount_fd(a).expect("mount over a socket pair");
        Fs {
            client,
            events,
            problems,
        }
    }

    /// Waits for (and returns) the next request the server got for which
    /// `what` holds, skipping others.
    fn wait_for(&self, what: impl Fn(&Msg) -> bool) -> Fcall {
        wait_for(&self.events, what)
    }

    /// Every request the server has got and no one waited for yet.
    fn drain(&self) -> Vec<Fcall> {
        let mut v = Vec::new();
        while let Ok(f) = self.events.nbrecv() {
            v.push(f);
        }
        v
    }

    fn assert_no_problems(&self) {
        assert_eq!(*self.problems.lock().unwrap(), Vec::<String>::new());
    }
}

fn spawn_server(
    rd: Box<dyn Read + Send>,
    out: Box<dyn Write + Send>,
    opts: Opts,
    events: Chan<Fcall>,
    problems: Arc<Mutex<Vec<String>>>,
) {
    std::thread::Builder::new()
        .name("scripted 9p server".into())
        .spawn(move || serve(rd, out, opts, events, problems))
        .unwrap();
}

fn wait_for(events: &Chan<Fcall>, what: impl Fn(&Msg) -> bool) -> Fcall {
    loop {
        let f = events.recv().expect("the server's events");
        if what(&f.msg) {
            return f;
        }
    }
}

/// Whether `m` is a read.
fn is_read(m: &Msg) -> bool {
    matches!(m, Msg::Tread { .. })
}

fn read_all(f: &File) -> Vec<u8> {
    let mut v = Vec::new();
    let mut r = f;
    r.read_to_end(&mut v).unwrap();
    v
}

// ---------------------------------------------------------------------
// Tests.

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    fn check_file<T: Send + Sync>() {}
    check::<Client>();
    check_file::<File>();
}

#[test]
fn mount_negotiates_and_attaches() {
    bounded(|| {
        let fs = Fs::new(Opts::default());
        assert_eq!(fs.client.msize(), 8192);
        assert_eq!(fs.client.root_qid().typ, QTDIR);
        let ev = fs.drain();
        match &ev[0].msg {
            Msg::Tversion { msize, version } => {
                assert_eq!(ev[0].tag, NOTAG);
                assert_eq!(*msize, 8 * 1024 * 1024 + IOHDRSZ);
                assert_eq!(version, "9P2000");
            }
            m => panic!("first message {m:?}"),
        }
        match &ev[1].msg {
            Msg::Tattach {
                fid,
                afid,
                uname,
                aname,
            } => {
                assert_eq!((*fid, *afid, aname.as_str()), (0, NOFID, ""));
                if let Ok(user) = std::env::var("USER") {
                    if !user.is_empty() {
                        assert_eq!(*uname, user);
                    }
                }
            }
            m => panic!("second message {m:?}"),
        }
        fs.assert_no_problems();
    });
}

#[test]
fn read_write_and_offsets() {
    bounded(|| {
        let fs = Fs::new(Opts::default());
        let c = &fs.client;

        let f = c.open("hello", OREAD).unwrap();
        assert_eq!(f.qid().path, 1);
        let mut buf = [0u8; 5];
        assert_eq!(f.read(&mut buf).unwrap(), 5, "a read is cut to the buffer");
        assert_eq!(&buf, b"hello");
        assert_eq!(f.offset(), 5);
        assert_eq!(f.pread(&mut buf, 7).unwrap(), 5);
        assert_eq!(&buf, b"world");
        assert_eq!(f.offset(), 5, "pread leaves the offset alone");
        assert_eq!(read_all(&f), b", world\n");
        assert_eq!(f.read(&mut buf).unwrap(), 0, "end of file");
        assert_eq!(f.pread(&mut buf, 1000).unwrap(), 0);
        f.set_offset(0);
        assert_eq!(read_all(&f), b"hello, world\n");
        f.clunk().unwrap();

        // The file's iounit cuts reads below the buffer's size.
        let deep = c.open("sub/deep", OREAD).unwrap();
        assert_eq!(deep.iounit(), 3);
        let mut big = [0u8; 100];
        assert_eq!(deep.read(&mut big).unwrap(), 3);
        assert_eq!(&big[..3], b"dee");
        let reads: Vec<u32> = fs
            .drain()
            .into_iter()
            .filter_map(|f| match f.msg {
                Msg::Tread { count, .. } => Some(count),
                _ => None,
            })
            .collect();
        assert_eq!(reads.last(), Some(&3));
        let mut r = &deep;
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "p in the tree\n");

        let d = c.open("/data", ORDWR).unwrap();
        assert_eq!(d.write(b"abc").unwrap(), 3);
        assert_eq!(d.offset(), 3);
        assert_eq!(d.pwrite(b"XY", 8).unwrap(), 2);
        assert_eq!(d.offset(), 3, "pwrite leaves the offset alone");
        assert_eq!(d.write(b"d").unwrap(), 1);
        let mut all = [0u8; 64];
        let n = d.pread(&mut all, 0).unwrap();
        assert_eq!(&all[..n], b"abcd4567XY");
        assert_eq!(d.pwrite(b"!", 12).unwrap(), 1);
        let n = d.pread(&mut all, 0).unwrap();
        assert_eq!(&all[..n], b"abcd4567XY\0\0!");
        // std::io::Write on the handle.
        let mut w = &d;
        w.write_all(b"ef").unwrap();
        w.flush().unwrap();
        assert_eq!(d.offset(), 6);
        assert_eq!(d.stat().unwrap().length, 13);
        d.clunk().unwrap();

        // OTRUNC reaches the server.
        let t = c.open("data", OWRITE | OTRUNC).unwrap();
        assert_eq!(c.stat("data").unwrap().length, 0);
        drop(t);
        fs.assert_no_problems();
    });
}

#[test]
fn stat_by_path_and_by_file() {
    bounded(|| {
        let fs = Fs::new(Opts::default());
        let d = fs.client.stat("sub/deep").unwrap();
        assert_eq!(d.name, "deep");
        assert_eq!(d.length, 17);
        assert_eq!(d.qid.path, 4);
        let root = fs.client.stat("/").unwrap();
        assert_eq!(root.name, "/");
        assert!(root.mode & DMDIR != 0);
        assert_eq!(fs.client.stat("./sub//.").unwrap().name, "sub");
        let f = fs.client.open("hello", OREAD).unwrap();
        assert_eq!(f.stat().unwrap().length, 13);
        // The walked fids were clunked, so fids are reused.
        let ev = fs.drain();
        let clunks = ev
            .iter()
            .filter(|f| matches!(f.msg, Msg::Tclunk { .. }))
            .count();
        assert!(clunks >= 3, "{ev:?}");
        fs.assert_no_problems();
    });
}

#[test]
fn directories_read_in_several_messages() {
    bounded(|| {
        let fs = Fs::new(Opts::default());
        let names = common::names(fs.client.read_dir("/").unwrap());
        assert_eq!(
            names,
            [
                "hello", "data", "sub", "slow", "racy", "gate", "err", "short", "hangup", "bogus"
            ]
        );
        // One entry a message, and one empty read for the end.
        let reads = fs.drain().into_iter().filter(|f| is_read(&f.msg)).count();
        assert_eq!(reads, names.len() + 1);

        let sub = fs.client.read_dir("sub").unwrap();
        assert_eq!(sub.len(), 1);
        assert_eq!(sub[0].name, "deep");
        assert_eq!(sub[0].length, 17);

        // By hand, with a buffer that holds one entry.
        let dir = fs.client.open("", OREAD).unwrap();
        assert!(dir.qid().typ & QTDIR != 0);
        let one = fs.client.stat("hello").unwrap().encoded_size();
        let mut buf = vec![0u8; one];
        let n = dir.read(&mut buf).unwrap();
        assert_eq!(decode_dirs(&buf[..n]).unwrap()[0].name, "hello");
        // Too small for the next entry: the server's error.
        let mut tiny = [0u8; 8];
        let e = dir.read(&mut tiny).unwrap_err();
        assert_eq!(e.to_string(), "directory read count too small");
        // The rest, from where the first read ended.
        let rest = common::names(dir.read_dir().unwrap());
        assert_eq!(rest, names[1..]);
        assert!(dir.read_dir().unwrap().is_empty(), "at the end");
        dir.set_offset(0);
        assert_eq!(dir.read_dir().unwrap().len(), names.len());
        fs.assert_no_problems();
    });
}

#[test]
fn writes_go_in_chunks_of_msize() {
    bounded(|| {
        let fs = Fs::new(Opts {
            msize: 64,
            ..Opts::default()
        });
        assert_eq!(fs.client.msize(), 64);
        let chunk = (64 - IOHDRSZ) as usize;
        let d = fs.client.open("data", ORDWR | OTRUNC).unwrap();
        let payload: Vec<u8> = (0..100u8).collect();
        assert_eq!(d.write(&payload).unwrap(), 100);
        assert_eq!(d.offset(), 100);
        let writes: Vec<(u64, usize)> = fs
            .drain()
            .into_iter()
            .filter_map(|f| match f.msg {
                Msg::Twrite { offset, data, .. } => Some((offset, data.len())),
                _ => None,
            })
            .collect();
        assert_eq!(
            writes,
            [
                (0, chunk),
                (chunk as u64, chunk),
                (2 * chunk as u64, 100 - 2 * chunk)
            ]
        );
        assert_eq!(d.pwrite(&payload, 1000).unwrap(), 100);
        // Reads too: at most msize - IOHDRSZ a message.
        let mut buf = vec![0u8; 100];
        assert_eq!(d.pread(&mut buf, 0).unwrap(), chunk);
        assert_eq!(&buf[..chunk], &payload[..chunk]);
        let mut got = Vec::new();
        d.set_offset(0);
        (&d).take(100).read_to_end(&mut got).unwrap();
        assert_eq!(got, payload);

        // A server that writes less than it was sent ends the write.
        let s = fs.client.open("short", OWRITE).unwrap();
        assert_eq!(s.write(b"hello").unwrap(), 3);
        assert_eq!(s.offset(), 3);
        assert_eq!(s.pwrite(&payload, 0).unwrap(), 3);
        // An empty write is still a message.
        fs.drain();
        assert_eq!(s.write(b"").unwrap(), 0);
        let last = fs.wait_for(|m| matches!(m, Msg::Twrite { .. }));
        assert!(matches!(last.msg, Msg::Twrite { ref data, .. } if data.is_empty()));
        fs.assert_no_problems();
    });
}

#[test]
fn server_errors_pass_through() {
    bounded(|| {
        let fs = Fs::new(Opts::default());
        let c = &fs.client;
        let e = c.open("hello", OWRITE).unwrap_err();
        assert_eq!(e.to_string(), "permission denied");
        let e = c
            .open("err", OREAD)
            .unwrap()
            .read(&mut [0; 10])
            .unwrap_err();
        assert_eq!(e.to_string(), ERR_TEXT);
        assert_eq!(e.kind(), ErrorKind::Other);
        // The server refuses the first name: its error.
        let e = c.open("nothere", OREAD).unwrap_err();
        assert_eq!(e.to_string(), "nothere: file does not exist");
        // The server stops part way: the client's.
        let e = c.open("sub/nothere", OREAD).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "'nothere' file does not exist");
        let e = c.stat("sub/deep/x").unwrap_err();
        assert_eq!(e.to_string(), "'x' file does not exist");
        let e = c.read_dir("hello/x").unwrap_err();
        assert_eq!(e.to_string(), "'x' file does not exist");

        // Fids of failed walks and opens are reused, not leaked.
        for _ in 0..50 {
            c.open("sub/nothere", OREAD).unwrap_err();
            c.open("hello", ORDWR).unwrap_err();
        }
        let f = c.open("hello", OREAD).unwrap();
        let newfids: Vec<u32> = fs
            .drain()
            .into_iter()
            .filter_map(|f| match f.msg {
                Msg::Twalk { newfid, .. } => Some(newfid),
                _ => None,
            })
            .collect();
        assert!(newfids.iter().all(|&n| n > 0 && n < 8), "{newfids:?}");
        drop(f);
        fs.assert_no_problems();
    });
}

#[test]
fn long_paths_walk_sixteen_names_at_a_time() {
    bounded(|| {
        let fs = Fs::new(Opts::default());
        let path = format!("{}hello", "sub/../".repeat(10)); // 21 names
        let f = fs.client.open(&path, OREAD).unwrap();
        assert_eq!(read_all(&f), b"hello, world\n");
        let walks: Vec<(u32, u32, usize)> = fs
            .drain()
            .into_iter()
            .filter_map(|f| match f.msg {
                Msg::Twalk {
                    fid,
                    newfid,
                    wnames,
                } => Some((fid, newfid, wnames.len())),
                _ => None,
            })
            .collect();
        let n = walks[0].1;
        assert_eq!(walks, [(0, n, 16), (n, n, 5)]);

        // A failure in the second step: the half-walked fid is clunked.
        let path = format!("{}nothere", "sub/../".repeat(8)); // 17 names
        let e = fs.client.open(&path, OREAD).unwrap_err();
        assert_eq!(e.to_string(), "nothere: file does not exist");
        let walk = fs.wait_for(|m| matches!(m, Msg::Twalk { .. }));
        let Msg::Twalk { newfid, .. } = walk.msg else {
            unreachable!()
        };
        fs.wait_for(|m| matches!(m, Msg::Twalk { .. }));
        let clunk = fs.wait_for(|m| matches!(m, Msg::Tclunk { .. }));
        assert!(matches!(clunk.msg, Msg::Tclunk { fid } if fid == newfid));
        fs.assert_no_problems();
    });
}

#[test]
fn dropping_a_file_clunks_it() {
    bounded(|| {
        let fs = Fs::new(Opts::default());
        let f = fs.client.open("hello", OREAD).unwrap();
        let walk = fs.wait_for(|m| matches!(m, Msg::Twalk { .. }));
        let Msg::Twalk { newfid, .. } = walk.msg else {
            unreachable!()
        };
        drop(f);
        let clunk = fs.wait_for(|m| matches!(m, Msg::Tclunk { .. }));
        assert!(matches!(clunk.msg, Msg::Tclunk { fid } if fid == newfid));
        // The client, dropped last, closes the connection after the
        // clunks queued by dropped files.
        let g = fs.client.open("data", OREAD).unwrap();
        let Msg::Twalk { newfid, .. } = fs.wait_for(|m| matches!(m, Msg::Twalk { .. })).msg else {
            unreachable!()
        };
        let Fs {
            client,
            events,
            problems,
        } = fs;
        drop(client);
        drop(g);
        let clunk = wait_for(&events, |m| matches!(m, Msg::Tclunk { .. }));
        assert!(matches!(clunk.msg, Msg::Tclunk { fid } if fid == newfid));
        assert!(problems.lock().unwrap().is_empty());
    });
}

/// Plain OS threads with reads outstanding at once, answered in reverse.
#[test]
fn os_threads_share_one_connection() {
    bounded(|| {
        const N: usize = 8;
        let fs = Fs::new(Opts {
            gate: N,
            ..Opts::default()
        });
        let f = Arc::new(fs.client.open("gate", OREAD).unwrap());
        let hs: Vec<_> = (0..N)
            .map(|i| {
                let f = f.clone();
                let c = fs.client.clone();
                std::thread::spawn(move || {
                    let off = i as u64 * 100;
                    let mut buf = [0u8; 64];
                    let n = f.pread(&mut buf, off).unwrap();
                    assert_eq!(
                        std::str::from_utf8(&buf[..n]).unwrap(),
                        format!("offset {off}")
                    );
                    // And the connection still serves other files.
                    assert_eq!(
                        read_all(&c.open("hello", OREAD).unwrap()),
                        b"hello, world\n"
                    );
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // The gate's reads (fid 1: the first after the root) were all
        // outstanding at once, so their tags differ.
        let mut tags: Vec<u16> = fs
            .drain()
            .into_iter()
            .filter(|f| matches!(f.msg, Msg::Tread { fid, .. } if fid == 1))
            .map(|f| f.tag)
            .collect();
        assert_eq!(tags.len(), N);
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), N, "{tags:?}");
        fs.assert_no_problems();
    });
}

/// Threads of one proc, and of a second proc, with reads outstanding at
/// once: the gate opens only when all are pending, so each thread's wait
/// must have left its proc free to run the next.
#[test]
fn thread9_threads_share_one_connection() {
    bounded(|| {
        const PER_PROC: usize = 6;
        let fs = Fs::new(Opts {
            gate: 2 * PER_PROC,
            ..Opts::default()
        });
        let client = fs.client.clone();
        let r = run(move || {
            let f = Arc::new(client.open("gate", OREAD).unwrap());
            let results: Chan<(u64, String)> = Chan::new(0);
            let spawn_readers = |base: u64, f: &Arc<File>, results: &Chan<(u64, String)>| {
                for i in 0..PER_PROC as u64 {
                    let f = f.clone();
                    let results = results.clone();
                    threadcreate(
                        move || {
                            let off = base + i * 10;
                            let mut buf = [0u8; 64];
                            let n = f.pread(&mut buf, off).unwrap();
                            let s = String::from_utf8(buf[..n].to_vec()).unwrap();
                            results.send((off, s)).unwrap();
                        },
                        0,
                    );
                }
            };
            spawn_readers(0, &f, &results);
            {
                let (f, results) = (f.clone(), results.clone());
                proccreate(
                    move || {
                        spawn_readers(1000, &f, &results);
                    },
                    0,
                );
            }
            let mut got = Vec::new();
            for _ in 0..2 * PER_PROC {
                let (off, s) = results.recv().unwrap();
                assert_eq!(s, format!("offset {off}"));
                got.push(off);
            }
            got.sort();
            let want: Vec<u64> = (0..PER_PROC as u64)
                .map(|i| i * 10)
                .chain((0..PER_PROC as u64).map(|i| 1000 + i * 10))
                .collect();
            assert_eq!(got, want);
        });
        assert_eq!(r, Ok(()));
        fs.assert_no_problems();
    });
}

/// A plain OS thread waiting for a held read reads the socket itself (it
/// leads), so it must route the replies of a program's threads sharing the
/// connection; once it has its own reply, the reader thread takes over for
/// theirs.
#[test]
fn os_thread_and_program_threads_share_one_connection() {
    bounded(|| {
        let fs = Fs::new(Opts {
            gate: 2,
            ..Opts::default()
        });
        let gate = Arc::new(fs.client.open("gate", OREAD).unwrap());
        let g = gate.clone();
        let os = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let n = g.pread(&mut buf, 7).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        });
        // The OS thread's read is pending (and it is reading the socket).
        fs.wait_for(is_read);
        let client = fs.client.clone();
        let r = run(move || {
            // Answered while the OS thread still waits.
            for _ in 0..3 {
                let h = client.open("hello", OREAD).unwrap();
                assert_eq!(read_all(&h), b"hello, world\n");
            }
            // The second gate read opens the gate for both.
            let mut buf = [0u8; 64];
            let n = gate.pread(&mut buf, 9).unwrap();
            assert_eq!(&buf[..n], b"offset 9");
            // The OS thread may be gone by now: later replies come by
            // the reader thread.
            let h = client.open("hello", OREAD).unwrap();
            assert_eq!(read_all(&h), b"hello, world\n");
            assert_eq!(client.stat("hello").unwrap().length, 13);
        });
        assert_eq!(r, Ok(()));
        assert_eq!(os.join().unwrap(), "offset 7");
        // And an OS thread alone again.
        let h = fs.client.open("hello", OREAD).unwrap();
        assert_eq!(read_all(&h), b"hello, world\n");
        fs.assert_no_problems();
    });
}

/// While one thread waits for a reply, the other threads of its proc run.
#[test]
fn a_waiting_thread_leaves_its_proc_running() {
    bounded(|| {
        let fs = Fs::new(Opts::default());
        let client = fs.client.clone();
        let events = fs.events.clone();
        let r = run(move || {
            let f = client.open("slow", OREAD).unwrap();
            let done = Chan::new(1);
            let d = done.clone();
            let reader = threadcreate(
                move || {
                    let e = f.read(&mut [0; 10]).unwrap_err();
                    d.send(e.kind()).unwrap();
                },
                0,
            );
            // Same proc: this runs only once the reader waits.
            wait_for(&events, is_read);
            let mut ticks = 0;
            for _ in 0..100 {
                thread9::threadyield();
                ticks += 1;
            }
            assert_eq!(ticks, 100);
            let h = client.open("hello", OREAD).unwrap();
            assert_eq!(read_all(&h), b"hello, world\n");
            threadint(reader);
            assert_eq!(done.recv().unwrap(), ErrorKind::Interrupted);
        });
        assert_eq!(r, Ok(()));
        fs.assert_no_problems();
    });
}

#[test]
fn interrupt_flushes_the_request() {
    bounded(|| {
        let fs = Fs::new(Opts::default());
        let client = fs.client.clone();
        let events = fs.events.clone();
        let r = run(move || {
            for name in ["slow", "racy"] {
                // Forget the reads of the round before.
                while events.nbrecv().is_ok() {}
                let f = client.open(name, OREAD).unwrap();
                let done = Chan::new(1);
                let d = done.clone();
                let reader = threadcreate(
                    move || {
                        let e = f.read(&mut [0; 10]).unwrap_err();
                        d.send((e.kind(), e.to_string())).unwrap();
                    },
                    0,
                );
                let read = wait_for(&events, is_read);
                threadint(reader);
                let flush = wait_for(&events, |m| matches!(m, Msg::Tflush { .. }));
                assert!(
                    matches!(flush.msg, Msg::Tflush { oldtag } if oldtag == read.tag),
                    "{name}: {flush:?} flushes {read:?}"
                );
                assert_ne!(flush.tag, read.tag);
                assert_eq!(
                    done.recv().unwrap(),
                    (ErrorKind::Interrupted, "interrupted".to_string()),
                    "{name}"
                );
                // The connection is fine, and the racy read's late answer
                // was dropped quietly.
                let h = client.open("hello", OREAD).unwrap();
                assert_eq!(read_all(&h), b"hello, world\n");
            }
        });
        assert_eq!(r, Ok(()));
        fs.assert_no_problems();
    });
}

#[test]
fn killing_a_waiting_thread_flushes_its_request() {
    bounded(|| {
        let fs = Fs::new(Opts::default());
        let client = fs.client.clone();
        let events = fs.events.clone();
        let unwound = Arc::new(AtomicBool::new(false));
        let u = unwound.clone();
        let r = run(move || {
            struct Mark(Arc<AtomicBool>);
            impl Drop for Mark {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
            let f = client.open("slow", OREAD).unwrap();
            let reader = threadcreate(
                move || {
                    let _m = Mark(u);
                    let _ = f.read(&mut [0; 10]);
                    unreachable!("the read is killed");
                },
                0,
            );
            let read = wait_for(&events, is_read);
            threadkill(reader);
            let flush = wait_for(&events, |m| matches!(m, Msg::Tflush { .. }));
            assert!(matches!(flush.msg, Msg::Tflush { oldtag } if oldtag == read.tag));
            // The killed thread's file was dropped: clunked.
            wait_for(&events, |m| matches!(m, Msg::Tclunk { .. }));
            let h = client.open("hello", OREAD).unwrap();
            assert_eq!(read_all(&h), b"hello, world\n");
        });
        assert_eq!(r, Ok(()));
        assert!(unwound.load(Ordering::SeqCst));
        fs.assert_no_problems();
    });
}

#[test]
fn hangup_fails_outstanding_and_later_requests() {
    bounded(|| {
        let fs = Fs::new(Opts::default());
        let slow = Arc::new(fs.client.open("slow", OREAD).unwrap());
        let s = slow.clone();
        let os_reader = std::thread::spawn(move || s.read(&mut [0; 10]).unwrap_err());
        fs.wait_for(is_read);

        let client = fs.client.clone();
        let events = fs.events.clone();
        let r = run(move || {
            let slow = client.open("slow", OREAD).unwrap();
            let done = Chan::new(1);
            let d = done.clone();
            threadcreate(
                move || {
                    let e = slow.read(&mut [0; 10]).unwrap_err();
                    d.send((e.kind(), e.to_string())).unwrap();
                },
                0,
            );
            wait_for(&events, is_read);
            let e = client
                .open("hangup", OREAD)
                .unwrap()
                .read(&mut [0; 10])
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::BrokenPipe);
            assert_eq!(e.to_string(), "connection closed");
            assert_eq!(
                done.recv().unwrap(),
                (ErrorKind::BrokenPipe, "connection closed".to_string())
            );
        });
        assert_eq!(r, Ok(()));
        let e = os_reader.join().unwrap();
        assert_eq!(e.kind(), ErrorKind::BrokenPipe);
        assert_eq!(e.to_string(), "connection closed");
        // Later requests fail at once.
        let e = fs.client.open("hello", OREAD).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BrokenPipe);
        assert_eq!(e.to_string(), "connection closed");
        assert!(slow.read(&mut [0; 10]).is_err());
        assert!(fs.client.stat("hello").is_err());
    });
}

#[test]
fn a_reply_with_an_unknown_tag_ends_the_connection() {
    bounded(|| {
        let fs = Fs::new(Opts::default());
        let slow = fs.client.open("slow", OREAD).unwrap();
        let waiter = std::thread::spawn(move || slow.read(&mut [0; 10]).unwrap_err());
        fs.wait_for(is_read);
        let e = fs
            .client
            .open("bogus", OREAD)
            .unwrap()
            .read(&mut [0; 10])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BrokenPipe);
        assert!(
            e.to_string()
                .starts_with("connection closed: the server sent Rread with tag "),
            "{e}"
        );
        assert_eq!(waiter.join().unwrap().to_string(), e.to_string());
        assert_eq!(
            fs.client.open("hello", OREAD).unwrap_err().to_string(),
            e.to_string()
        );
    });
}

/// A server that answers `Tversion` with `reply` and then hangs up.
fn version_server(reply: Msg) -> io::Result<Client> {
    let (a, mut b) = UnixStream::pair().unwrap();
    std::thread::spawn(move || {
        let frame = read_frame(&mut b, 1 << 24).unwrap().unwrap();
        let f = Fcall::decode(&frame).unwrap();
        let mut buf = Vec::new();
        Fcall {
            tag: f.tag,
            msg: reply,
        }
        .encode(&mut buf);
        b.write_all(&buf).unwrap();
        // Hold the connection until the client lets go.
        let _ = read_frame(&mut b, 1 << 24);
    });
    Client::mount_fd(a)
}

#[test]
fn version_negotiation_failures() {
    bounded(|| {
        let e = version_server(Msg::Rversion {
            msize: 8192,
            version: "9P2000.u".into(),
        })
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.to_string().contains("9P2000.u"), "{e}");
        let e = version_server(Msg::Rversion {
            msize: u32::MAX,
            version: "9P2000".into(),
        })
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        let e = version_server(Msg::Rerror {
            ename: "go away".into(),
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "go away");
        let e = version_server(Msg::Rclunk).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
    });
}

#[test]
fn mount_over_tcp() {
    bounded(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let events = Chan::new(usize::MAX);
        let problems = Arc::new(Mutex::new(Vec::new()));
        let (ev, pr) = (events.clone(), problems.clone());
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            spawn_server(
                Box::new(s.try_clone().unwrap()),
                Box::new(s),
                Opts::default(),
                ev,
                pr,
            );
        });
        let c = Client::mount(&format!("tcp!127.0.0.1!{port}")).unwrap();
        assert_eq!(
            read_all(&c.open("hello", OREAD).unwrap()),
            b"hello, world\n"
        );
        assert!(problems.lock().unwrap().is_empty());
        let e = Client::mount("unix!/nonexistent/thread9/socket").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("/nonexistent/thread9/socket"), "{e}");
    });
}

#[test]
#[ignore = "a scenario run in a child process by mount_by_posted_name"]
fn scenario_posted_name() {
    if !common::is_child("scenario_posted_name") {
        return;
    }
    let ns = std::env::var("NAMESPACE").unwrap();
    assert_eq!(thread9::srv::namespace(), std::path::PathBuf::from(&ns));
    let path = std::path::Path::new(&ns).join("testfs");
    let l = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let s = s.unwrap();
            spawn_server(
                Box::new(s.try_clone().unwrap()),
                Box::new(s),
                Opts::default(),
                Chan::new(usize::MAX),
                Arc::new(Mutex::new(Vec::new())),
            );
        }
    });
    // A plain OS thread mounts by name.
    let c = Client::mount("testfs").unwrap();
    let hello = read_all(&c.open("hello", OREAD).unwrap());
    println!("posted: {}", String::from_utf8(hello).unwrap().trim());
    // A thread9 thread mounts by dial string while another thread of its
    // proc runs.
    let dial = format!("unix!{}", path.display());
    let r = run(move || {
        let ran = Chan::new(1);
        let r2 = ran.clone();
        threadcreate(move || r2.send(()).unwrap(), 0);
        let c = Client::mount(&dial).unwrap();
        ran.recv().unwrap();
        let names = common::names(c.read_dir("sub").unwrap());
        println!("dialed: {}", names.join(" "));
    });
    assert_eq!(r, Ok(()));
    let e = Client::mount("nothere").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    println!("missing: {e}");

    // Every client is gone: so are their connections' threads.
    assert!(connection_threads() > 0);
    drop(c);
    let mut tries = 0;
    while connection_threads() > 0 {
        tries += 1;
        assert!(tries < 1000, "connection threads outlive their clients");
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("threads: gone");
}

/// Threads of this process named as the client names its threads.
fn connection_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|name| name.starts_with("thread9 9p"))
        .count()
}

#[test]
fn mount_by_posted_name() {
    bounded(mount_by_posted_name_in_a_child);
}

fn mount_by_posted_name_in_a_child() {
    let dir = std::env::temp_dir().join(format!("thread9-ninep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let o = common::child_with(
        "scenario_posted_name",
        &[("NAMESPACE", dir.to_str().unwrap())],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(o.status.success(), "child failed: {}", common::stderr(&o));
    assert_eq!(common::reported(&o, "posted: "), ["hello, world"]);
    assert_eq!(common::reported(&o, "dialed: "), ["deep"]);
    assert_eq!(common::reported(&o, "threads: "), ["gone"]);
    let missing = common::reported(&o, "missing: ");
    assert_eq!(missing.len(), 1);
    assert!(
        missing[0].starts_with("mount nothere (") && missing[0].contains(dir.to_str().unwrap()),
        "{missing:?}"
    );
}

#[test]
fn tags_and_fids_are_reused() {
    bounded(|| {
        let fs = Fs::new(Opts::default());
        let client = fs.client.clone();
        let r = run(move || {
            for _ in 0..200 {
                let f = client.open("hello", OREAD).unwrap();
                assert_eq!(read_all(&f), b"hello, world\n");
                f.clunk().unwrap();
            }
        });
        assert_eq!(r, Ok(()));
        let ev = fs.drain();
        assert!(ev.len() > 800);
        // One request at a time: tags cycle, but fids come back.
        let fids: Vec<u32> = ev
            .iter()
            .filter_map(|f| match f.msg {
                Msg::Twalk { newfid, .. } => Some(newfid),
                _ => None,
            })
            .collect();
        assert!(fids.iter().all(|&f| f == 1), "{fids:?}");
        fs.assert_no_problems();
    });
}
