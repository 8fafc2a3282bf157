//! The srv device and its 9P2000 server, driven message by message by a
//! raw 9P client written here: exact requests and replies, the tuples the
//! file's server sees, and every bad-input rule.
//!
//! In these tests the `Srv` is made outside any program (so it runs as a
//! program of its own) and the test's OS thread plays the file's server,
//! receiving on the `FileIO` channels itself.

mod common;

use common::TempDir;

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use thread9::srv::fcall::{
    DMDIR, Dir, Fcall, Msg, NOFID, NOTAG, OEXEC, ORCLOSE, ORDWR, OREAD, OTRUNC, OWRITE, QTDIR,
    QTFILE, Qid, decode_dirs, read_frame,
};
use thread9::srv::{FileIO, Srv};
use thread9::{Chan, RecvError, TryRecvError};

/// A served srv directory.
struct Fixture {
    srv: Srv,
    sock: PathBuf,
    _tmp: TempDir,
}

fn fixture() -> Fixture {
    let tmp = TempDir::new("srv");
    let sock = tmp.0.join("srv");
    let srv = Srv::new();
    srv.announce(&format!("unix!{}", sock.display())).unwrap();
    Fixture {
        srv,
        sock,
        _tmp: tmp,
    }
}

/// A 9P client that sends exactly what it is told.
struct Raw {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

const MSIZE: u32 = 8192;

impl Raw {
    fn connect(f: &Fixture) -> Raw {
        Raw::connect_path(&f.sock)
    }

    fn connect_path(p: &std::path::Path) -> Raw {
        let s = UnixStream::connect(p).unwrap();
        // A hang is a failure, not a stuck test run.
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Raw {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    /// Connected, versioned and attached as fid 0.
    fn session(f: &Fixture) -> Raw {
        Raw::session_path(&f.sock)
    }

    fn session_path(p: &std::path::Path) -> Raw {
        let mut c = Raw::connect_path(p);
        assert_eq!(
            c.rpc(
                NOTAG,
                Msg::Tversion {
                    msize: MSIZE,
                    version: "9P2000".into()
                }
            ),
            Msg::Rversion {
                msize: MSIZE,
                version: "9P2000".into()
            }
        );
        assert_eq!(c.rpc(1, attach(0)), Msg::Rattach { qid: root_qid() });
        c
    }

    fn send(&mut self, tag: u16, msg: Msg) {
        let mut b = Vec::new();
        Fcall { tag, msg }.encode(&mut b);
        self.w.write_all(&b).unwrap();
    }

    fn send_raw(&mut self, b: &[u8]) {
        self.w.write_all(b).unwrap();
    }

    fn recv(&mut self) -> Fcall {
        let frame = read_frame(&mut self.r, 1 << 24)
            .expect("read a reply")
            .expect("a reply, not the end of the connection");
        Fcall::decode(&frame).unwrap()
    }

    /// True if the server closed the connection (and sent nothing more).
    fn closed(&mut self) -> bool {
        matches!(read_frame(&mut self.r, 1 << 24), Ok(None) | Err(_))
    }

    fn rpc(&mut self, tag: u16, msg: Msg) -> Msg {
        self.send(tag, msg);
        let r = self.recv();
        assert_eq!(r.tag, tag, "reply {r}");
        r.msg
    }

    fn walk(&mut self, fid: u32, newfid: u32, names: &[&str]) -> Msg {
        let wnames = names.iter().map(|s| s.to_string()).collect();
        self.rpc(
            2,
            Msg::Twalk {
                fid,
                newfid,
                wnames,
            },
        )
    }

    /// Walks fid 0 to `name` as `fid` and opens it.
    fn open(&mut self, fid: u32, name: &str, mode: u8) -> Msg {
        let w = self.walk(0, fid, &[name]);
        assert!(
            matches!(w, Msg::Rwalk { ref wqids } if wqids.len() == 1),
            "{w:?}"
        );
        self.rpc(3, Msg::Topen { fid, mode })
    }
}

fn tread(fid: u32, offset: u64, count: u32) -> Msg {
    Msg::Tread { fid, offset, count }
}

fn attach(fid: u32) -> Msg {
    Msg::Tattach {
        fid,
        afid: NOFID,
        uname: "glenda".into(),
        aname: String::new(),
    }
}

fn root_qid() -> Qid {
    Qid {
        typ: QTDIR,
        version: 0,
        path: 0,
    }
}

fn err(s: &str) -> Msg {
    Msg::Rerror { ename: s.into() }
}

fn rread(d: &[u8]) -> Msg {
    Msg::Rread { data: d.to_vec() }
}

type Req = (u64, usize, u64, Option<thread9::Rread>);
type WReq = (u64, Vec<u8>, u64, Option<thread9::Rwrite>);

/// The next read request, which must be a real one (with a reply channel).
fn next_read(f: &FileIO) -> (u64, usize, u64, thread9::Rread) {
    let (o, n, fid, rc) = f.read.recv().unwrap();
    (o, n, fid, rc.expect("a read request, not a close"))
}

fn next_write(f: &FileIO) -> (u64, Vec<u8>, u64, thread9::Rwrite) {
    let (o, d, fid, wc) = f.write.recv().unwrap();
    (o, d, fid, wc.expect("a write request, not a close"))
}

/// Asserts that the server was told `fid` was closed: read then write.
fn expect_close(f: &FileIO, fid: u64) {
    let r: Req = f.read.recv().unwrap();
    assert!(
        matches!(r, (0, 0, x, None) if x == fid),
        "read close {:?}",
        (r.0, r.1, r.2, r.3.is_some())
    );
    let w: WReq = f.write.recv().unwrap();
    assert!(
        matches!(w, (0, ref d, x, None) if d.is_empty() && x == fid),
        "write close"
    );
}

#[test]
fn file2chan_name_rules() {
    let srv = Srv::new();
    for bad in ["", ".", "..", "a/b", "/", "tab\there", &"x".repeat(64)] {
        let e = srv.file2chan(bad).unwrap_err();
        assert_eq!(e.to_string(), "file name syntax", "{bad:?}");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }
    let long = srv.file2chan(&"x".repeat(63)).unwrap();
    let a = srv.file2chan("a").unwrap();
    let e = srv.file2chan("a").unwrap_err();
    assert_eq!(e.to_string(), "file exists");
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(srv.files(), ["x".repeat(63), "a".into()]);
    assert_eq!(a.name(), "a");
    // The name is free again once the file is gone, and the new file is
    // a different one.
    drop(a);
    assert_eq!(srv.files(), ["x".repeat(63)]);
    let _a2 = srv.file2chan("a").unwrap();
    drop(long);
    assert_eq!(srv.files(), ["a"]);
}

#[test]
fn version_negotiation() {
    let f = fixture();
    let mut c = Raw::connect(&f);
    // Before Tversion, nothing else is served.
    assert_eq!(c.rpc(1, attach(0)), err("Tattach before Tversion"));
    // The server's limit is a megabyte of data (plus the 24-byte I/O
    // header); less is taken as offered.
    assert_eq!(
        c.rpc(
            NOTAG,
            Msg::Tversion {
                msize: 64 << 20,
                version: "9P2000".into()
            }
        ),
        Msg::Rversion {
            msize: (1 << 20) + 24,
            version: "9P2000".into()
        }
    );
    assert_eq!(
        c.rpc(
            NOTAG,
            Msg::Tversion {
                msize: 1000,
                version: "9P2000.L".into()
            }
        ),
        Msg::Rversion {
            msize: 1000,
            version: "9P2000".into()
        }
    );
    assert_eq!(
        c.rpc(
            NOTAG,
            Msg::Tversion {
                msize: 8192,
                version: "9P1999".into()
            }
        ),
        Msg::Rversion {
            msize: 8192,
            version: "unknown".into()
        }
    );
    // An unknown version leaves no session.
    assert_eq!(c.rpc(1, attach(0)), err("Tattach before Tversion"));
    assert_eq!(
        c.rpc(
            NOTAG,
            Msg::Tversion {
                msize: 100,
                version: "9P2000".into()
            }
        ),
        err("message size 100 too small (at least 256)")
    );
    assert_eq!(
        c.rpc(
            NOTAG,
            Msg::Tversion {
                msize: 8192,
                version: "9P2000".into()
            }
        ),
        Msg::Rversion {
            msize: 8192,
            version: "9P2000".into()
        }
    );
    assert_eq!(c.rpc(1, attach(0)), Msg::Rattach { qid: root_qid() });
    assert_eq!(
        c.rpc(
            1,
            Msg::Tauth {
                afid: 5,
                uname: "glenda".into(),
                aname: String::new()
            }
        ),
        err("authentication not required")
    );
    assert_eq!(
        c.rpc(
            1,
            Msg::Tattach {
                fid: 1,
                afid: 5,
                uname: "glenda".into(),
                aname: String::new()
            }
        ),
        err("authentication not required")
    );
    assert_eq!(c.rpc(1, attach(0)), err("fid in use"));
}

#[test]
fn walks() {
    let f = fixture();
    let a = f.srv.file2chan("a").unwrap();
    let aq = Qid {
        typ: QTFILE,
        version: 0,
        path: 1,
    };
    let mut c = Raw::session(&f);
    // Several names at once, ".." at the root staying there.
    assert_eq!(
        c.walk(0, 1, &["..", "a"]),
        Msg::Rwalk {
            wqids: vec![root_qid(), aq]
        }
    );
    // A clone.
    assert_eq!(c.walk(0, 2, &[]), Msg::Rwalk { wqids: vec![] });
    same_stat(
        &c.rpc(4, Msg::Tstat { fid: 2 }),
        &stat_of(&c_user(), "/", root_qid(), DMDIR | 0o770),
    );
    // A partial walk: the qids that worked, and newfid not made.
    assert_eq!(c.walk(0, 3, &["a", "b"]), Msg::Rwalk { wqids: vec![aq] });
    assert_eq!(c.rpc(4, Msg::Tstat { fid: 3 }), err("unknown fid"));
    // The first name failing is an error.
    assert_eq!(c.walk(0, 3, &["nope", "a"]), err("file does not exist"));
    assert_eq!(c.walk(1, 3, &["x"]), err("walk in non-directory"));
    // Fids in use, unknown fids.
    assert_eq!(c.walk(0, 1, &["a"]), err("fid in use"));
    assert_eq!(c.walk(9, 3, &["a"]), err("unknown fid"));
    // Walking a fid onto itself moves it.
    assert_eq!(c.walk(2, 2, &["a"]), Msg::Rwalk { wqids: vec![aq] });
    same_stat(
        &c.rpc(4, Msg::Tstat { fid: 2 }),
        &stat_of(&c_user(), "a", aq, 0o660),
    );
    // An open fid cannot be walked.
    assert!(
        matches!(c.rpc(5, Msg::Topen { fid: 1, mode: OREAD }), Msg::Ropen { qid, iounit: 8168 } if qid == aq)
    );
    assert_eq!(c.walk(1, 3, &[]), err("cannot walk an open fid"));
    assert_eq!(c.rpc(6, Msg::Tclunk { fid: 1 }), Msg::Rclunk);
    expect_close(&a, 1);
}

fn c_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            String::from_utf8(
                std::process::Command::new("id")
                    .arg("-un")
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap()
            .trim()
            .to_owned()
        })
}

fn stat_of(user: &str, name: &str, qid: Qid, mode: u32) -> Dir {
    Dir {
        typ: 0,
        dev: 0,
        qid,
        mode,
        atime: 0,
        mtime: 0,
        length: 0,
        name: name.into(),
        uid: user.into(),
        gid: user.into(),
        muid: user.into(),
    }
}

/// Compares a stat, ignoring the times (which must be recent).
fn same_stat(got: &Msg, want: &Dir) {
    let Msg::Rstat { stat } = got else {
        panic!("not an Rstat: {got:?}")
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    assert!(
        stat.mtime <= now && stat.mtime + 600 > now,
        "mtime {}",
        stat.mtime
    );
    assert_eq!(stat.atime, stat.mtime);
    let mut s = stat.clone();
    s.atime = 0;
    s.mtime = 0;
    assert_eq!(&s, want);
}

#[test]
fn open_read_write_clunk_sequence() {
    let f = fixture();
    let file = f.srv.file2chan("data").unwrap();
    let mut c = Raw::session(&f);
    let q = Qid {
        typ: QTFILE,
        version: 0,
        path: 1,
    };
    assert_eq!(
        c.open(1, "data", ORDWR),
        Msg::Ropen {
            qid: q,
            iounit: MSIZE - 24
        }
    );

    c.send(10, tread(1, 0, 100));
    let (off, count, fid, rc) = next_read(&file);
    assert_eq!((off, count), (0, 100));
    rc.send(Ok(b"hello".to_vec())).unwrap();
    assert_eq!(
        c.recv(),
        Fcall {
            tag: 10,
            msg: rread(b"hello")
        }
    );
    // A second reply to an answered request fails instead of vanishing.
    assert!(rc.send(Ok(b"again".to_vec())).is_err());

    c.send(
        11,
        Msg::Twrite {
            fid: 1,
            offset: 5,
            data: b"abc".to_vec(),
        },
    );
    let (off, data, wfid, wc) = next_write(&file);
    assert_eq!((off, &data[..], wfid), (5, &b"abc"[..], fid));
    wc.send(Ok(3)).unwrap();
    assert_eq!(
        c.recv(),
        Fcall {
            tag: 11,
            msg: Msg::Rwrite { count: 3 }
        }
    );

    // A second open of the same file has another fid.
    assert!(matches!(c.open(2, "data", OREAD), Msg::Ropen { .. }));
    c.send(12, tread(2, 7, 10));
    let (off, count, fid2, rc) = next_read(&file);
    assert_eq!((off, count), (7, 10));
    assert_ne!(fid2, fid);
    rc.send(Ok(Vec::new())).unwrap();
    assert_eq!(
        c.recv(),
        Fcall {
            tag: 12,
            msg: rread(b"")
        }
    );

    // Clunks: read-nil then write-nil, for the right fid, in order.
    assert_eq!(c.rpc(13, Msg::Tclunk { fid: 2 }), Msg::Rclunk);
    expect_close(&file, fid2);
    assert_eq!(c.rpc(14, Msg::Tclunk { fid: 1 }), Msg::Rclunk);
    expect_close(&file, fid);
    assert_eq!(c.rpc(15, Msg::Tclunk { fid: 1 }), err("unknown fid"));
    // A fid walked to the file but never opened: no close to report.
    assert_eq!(c.walk(0, 3, &["data"]), Msg::Rwalk { wqids: vec![q] });
    assert_eq!(c.rpc(16, Msg::Tclunk { fid: 3 }), Msg::Rclunk);
    assert_eq!(file.read.nbrecv().map(|_| ()), Err(TryRecvError::Empty));
}

#[test]
fn replies_cut_to_count_and_errors_passed_on() {
    let f = fixture();
    let file = f.srv.file2chan("f").unwrap();
    let mut c = Raw::session(&f);
    c.open(1, "f", ORDWR);
    c.send(10, tread(1, 0, 4));
    let (_, count, _, rc) = next_read(&file);
    assert_eq!(count, 4);
    rc.send(Ok(b"0123456789".to_vec())).unwrap();
    assert_eq!(c.recv().msg, rread(b"0123"));
    // A count beyond the iounit is cut to it.
    c.send(10, tread(1, 0, 1 << 20));
    let (_, count, _, rc) = next_read(&file);
    assert_eq!(count, (MSIZE - 24) as usize);
    rc.send(Err("no data for you".into())).unwrap();
    assert_eq!(c.recv().msg, err("no data for you"));
    // A write reply claiming more than was written counts as all of it.
    c.send(
        11,
        Msg::Twrite {
            fid: 1,
            offset: 9,
            data: b"xy".to_vec(),
        },
    );
    let (off, _, _, wc) = next_write(&file);
    assert_eq!(off, 9);
    wc.send(Ok(100)).unwrap();
    assert_eq!(c.recv().msg, Msg::Rwrite { count: 2 });
    c.send(
        11,
        Msg::Twrite {
            fid: 1,
            offset: 0,
            data: b"z".to_vec(),
        },
    );
    let (_, _, _, wc) = next_write(&file);
    wc.send(Err("disk full".into())).unwrap();
    assert_eq!(c.recv().msg, err("disk full"));
}

#[test]
fn io_on_wrong_fids() {
    let f = fixture();
    let _file = f.srv.file2chan("f").unwrap();
    let mut c = Raw::session(&f);
    assert_eq!(
        c.walk(0, 1, &["f"]),
        Msg::Rwalk {
            wqids: vec![Qid {
                typ: QTFILE,
                version: 0,
                path: 1
            }]
        }
    );
    assert_eq!(c.rpc(5, tread(1, 0, 10)), err("fid not open"));
    assert_eq!(
        c.rpc(
            5,
            Msg::Twrite {
                fid: 1,
                offset: 0,
                data: vec![1]
            }
        ),
        err("fid not open")
    );
    assert_eq!(c.rpc(5, tread(77, 0, 10)), err("unknown fid"));
    assert_eq!(
        c.rpc(
            5,
            Msg::Topen {
                fid: 77,
                mode: OREAD
            }
        ),
        err("unknown fid")
    );
    assert!(matches!(
        c.rpc(
            5,
            Msg::Topen {
                fid: 1,
                mode: OREAD
            }
        ),
        Msg::Ropen { .. }
    ));
    assert_eq!(
        c.rpc(
            5,
            Msg::Topen {
                fid: 1,
                mode: OREAD
            }
        ),
        err("fid already open")
    );
    assert_eq!(
        c.rpc(
            5,
            Msg::Twrite {
                fid: 1,
                offset: 0,
                data: vec![1]
            }
        ),
        err("file not open for writing")
    );
    assert_eq!(
        c.walk(0, 2, &["f"]),
        Msg::Rwalk {
            wqids: vec![Qid {
                typ: QTFILE,
                version: 0,
                path: 1
            }]
        }
    );
    assert!(matches!(
        c.rpc(
            5,
            Msg::Topen {
                fid: 2,
                mode: OWRITE | OTRUNC
            }
        ),
        Msg::Ropen { .. }
    ));
    assert_eq!(c.rpc(5, tread(2, 0, 1)), err("file not open for reading"));
    // Modes the files do not allow.
    assert_eq!(c.walk(0, 3, &["f"]).clone(), c_walk_ok());
    assert_eq!(
        c.rpc(
            5,
            Msg::Topen {
                fid: 3,
                mode: OEXEC
            }
        ),
        err("permission denied")
    );
    assert_eq!(
        c.rpc(
            5,
            Msg::Topen {
                fid: 3,
                mode: OREAD | ORCLOSE
            }
        ),
        err("permission denied")
    );
    assert_eq!(
        c.rpc(5, Msg::Topen { fid: 3, mode: 0x80 }),
        err("bad open mode 0x80")
    );
    // The directory opens for reading only.
    assert_eq!(c.walk(0, 4, &[]), Msg::Rwalk { wqids: vec![] });
    assert_eq!(
        c.rpc(
            5,
            Msg::Topen {
                fid: 4,
                mode: OWRITE
            }
        ),
        err("is a directory")
    );
    assert_eq!(
        c.rpc(
            5,
            Msg::Topen {
                fid: 4,
                mode: OREAD | OTRUNC
            }
        ),
        err("is a directory")
    );
    assert!(
        matches!(c.rpc(5, Msg::Topen { fid: 4, mode: OREAD }), Msg::Ropen { qid, .. } if qid == root_qid())
    );
    assert_eq!(
        c.rpc(
            5,
            Msg::Twrite {
                fid: 4,
                offset: 0,
                data: vec![1]
            }
        ),
        err("file not open for writing")
    );
}

fn c_walk_ok() -> Msg {
    Msg::Rwalk {
        wqids: vec![Qid {
            typ: QTFILE,
            version: 0,
            path: 1,
        }],
    }
}

#[test]
fn create_remove_wstat_refused() {
    let f = fixture();
    let file = f.srv.file2chan("f").unwrap();
    let mut c = Raw::session(&f);
    assert_eq!(
        c.rpc(
            5,
            Msg::Tcreate {
                fid: 0,
                name: "new".into(),
                perm: 0o666,
                mode: ORDWR
            }
        ),
        err("permission denied")
    );
    assert_eq!(f.srv.files(), ["f"]);
    let mut st = Dir::null();
    st.mode = 0o777;
    assert_eq!(
        c.rpc(5, Msg::Twstat { fid: 0, stat: st }),
        err("permission denied")
    );
    // The all-"don't touch" wstat only asks for a sync, and succeeds.
    assert_eq!(
        c.rpc(
            5,
            Msg::Twstat {
                fid: 0,
                stat: Dir::null()
            }
        ),
        Msg::Rwstat
    );
    assert_eq!(
        c.rpc(
            5,
            Msg::Twstat {
                fid: 9,
                stat: Dir::null()
            }
        ),
        err("unknown fid")
    );
    // Tremove fails but clunks the fid, and the server hears of the close.
    c.open(1, "f", OREAD);
    c.send(6, tread(1, 0, 1));
    let (_, _, fid, rc) = next_read(&file);
    rc.send(Ok(Vec::new())).unwrap();
    assert_eq!(c.recv().msg, rread(b""));
    assert_eq!(c.rpc(5, Msg::Tremove { fid: 1 }), err("permission denied"));
    expect_close(&file, fid);
    assert_eq!(c.rpc(5, Msg::Tstat { fid: 1 }), err("unknown fid"));
    assert_eq!(f.srv.files(), ["f"]);
}

#[test]
fn stats_and_directory_reads_in_chunks() {
    let f = fixture();
    let names: Vec<String> = (0..12).map(|i| format!("file{i:02}")).collect();
    let files: Vec<FileIO> = names.iter().map(|n| f.srv.file2chan(n).unwrap()).collect();
    let mut c = Raw::session(&f);
    let user = c_user();
    same_stat(
        &c.rpc(5, Msg::Tstat { fid: 0 }),
        &stat_of(&user, "/", root_qid(), DMDIR | 0o770),
    );
    c.walk(0, 1, &["file03"]);
    same_stat(
        &c.rpc(5, Msg::Tstat { fid: 1 }),
        &stat_of(
            &user,
            "file03",
            Qid {
                typ: QTFILE,
                version: 0,
                path: 4,
            },
            0o660,
        ),
    );
    assert_eq!(c.walk(0, 2, &[]), Msg::Rwalk { wqids: vec![] });
    assert!(matches!(
        c.rpc(
            5,
            Msg::Topen {
                fid: 2,
                mode: OREAD
            }
        ),
        Msg::Ropen { .. }
    ));
    // Each entry is 49 fixed bytes plus its strings; ask for a little
    // more than two at a time.
    let entry = 49 + 6 + 3 * user.len();
    let count = (2 * entry + entry / 2) as u32;
    let mut offset = 0u64;
    let mut got = Vec::new();
    let mut reads = 0;
    loop {
        let Msg::Rread { data } = c.rpc(6, tread(2, offset, count)) else {
            panic!()
        };
        if data.is_empty() {
            break;
        }
        assert_eq!(data.len(), 2 * entry, "whole entries, as many as fit");
        offset += data.len() as u64;
        got.extend(decode_dirs(&data).unwrap());
        reads += 1;
    }
    assert_eq!(reads, 6);
    let listed: Vec<&str> = got.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(listed, names);
    for (i, d) in got.iter().enumerate() {
        assert_eq!(
            d.qid,
            Qid {
                typ: QTFILE,
                version: 0,
                path: i as u64 + 1
            }
        );
        assert_eq!((d.mode, &d.uid, &d.gid), (0o660, &user, &user));
    }
    // Too small for one entry; an offset that is not where we were.
    assert_eq!(
        c.rpc(6, tread(2, 0, 20)),
        err(&format!(
            "directory read of 20 bytes is too short for the next entry ({entry} bytes)"
        ))
    );
    assert_eq!(
        c.rpc(6, tread(2, 7, count)),
        err("bad offset 7 in directory read")
    );
    // Offset 0 starts again, and sees the directory as it is now.
    drop(files);
    assert_eq!(c.rpc(6, tread(2, 0, count)), rread(b""));
}

#[test]
fn dropping_fileio_hangs_up() {
    let f = fixture();
    let file = f.srv.file2chan("f").unwrap();
    let other = f.srv.file2chan("g").unwrap();
    let mut c = Raw::session(&f);
    c.open(1, "f", ORDWR);
    c.send(10, tread(1, 0, 10));
    c.send(
        11,
        Msg::Twrite {
            fid: 1,
            offset: 0,
            data: b"w".to_vec(),
        },
    );
    // Both are with the server when it goes.
    let (_, _, _, rc) = next_read(&file);
    let (_, _, _, wc) = next_write(&file);
    let read = file.read.clone();
    drop(file);
    let mut replies = vec![c.recv(), c.recv()];
    replies.sort_by_key(|r| r.tag);
    assert_eq!(
        replies,
        [
            Fcall {
                tag: 10,
                msg: err("i/o on hungup channel")
            },
            Fcall {
                tag: 11,
                msg: err("i/o on hungup channel")
            },
        ]
    );
    // A late reply is dropped quietly; the channels are closed.
    let _ = rc.send(Ok(b"late".to_vec()));
    let _ = wc.send(Ok(1));
    assert_eq!(read.recv().map(|r| r.0), Err(RecvError::Closed));
    // Later requests through the open file fail the same way.
    assert_eq!(c.rpc(12, tread(1, 0, 10)), err("i/o on hungup channel"));
    assert_eq!(
        c.rpc(12, Msg::Tstat { fid: 1 }),
        err("i/o on hungup channel")
    );
    // The file is gone from the directory; the other one is not.
    assert_eq!(c.walk(0, 2, &["f"]), err("file does not exist"));
    assert_eq!(f.srv.files(), ["g"]);
    drop(other);
}

#[test]
fn held_reads_hold_up_nothing_else() {
    let f = fixture();
    let slow = f.srv.file2chan("slow").unwrap();
    let fast = f.srv.file2chan("fast").unwrap();
    let mut a = Raw::session(&f);
    let mut b = Raw::session(&f);
    a.open(1, "slow", OREAD);
    a.open(2, "fast", OREAD);
    b.open(1, "fast", OREAD);
    // Five held reads on one fid.
    for tag in 100..105 {
        a.send(tag, tread(1, u64::from(tag), 10));
    }
    let held: Vec<_> = (0..5).map(|_| next_read(&slow)).collect();
    // Meanwhile the other fid and the other client are served.
    for (c, tag) in [(&mut a, 7), (&mut b, 8)] {
        c.send(tag, tread(if tag == 7 { 2 } else { 1 }, 0, 10));
        let (_, _, _, rc) = next_read(&fast);
        rc.send(Ok(vec![tag as u8])).unwrap();
        assert_eq!(
            c.recv(),
            Fcall {
                tag,
                msg: rread(&[tag as u8])
            }
        );
    }
    // The held ones, answered in reverse: each reply finds its tag.
    for (off, _, _, rc) in held.into_iter().rev() {
        rc.send(Ok(off.to_string().into_bytes())).unwrap();
        let r = a.recv();
        assert_eq!(r.msg, rread(off.to_string().as_bytes()));
        assert_eq!(u64::from(r.tag), off);
    }
}

#[test]
fn replies_to_a_client_that_stops_reading_wait_for_it_whole() {
    const N: u16 = 800;
    const COUNT: u32 = MSIZE - 24;
    let _w = common::watchdog(
        "replies_to_a_client_that_stops_reading_wait_for_it_whole",
        120,
    );
    let f = fixture();
    let file = f.srv.file2chan("f").unwrap();
    let mut a = Raw::session(&f);
    let mut b = Raw::session(&f);
    a.open(1, "f", OREAD);
    b.open(1, "f", OREAD);
    let data = |off: u64| vec![(off % 251) as u8; COUNT as usize];
    // Far more replies than the socket holds (6.5 MB against the 2 MiB a
    // connection's send buffer gets at most), none read yet: the connection
    // has to wait for room, and must not lose or garble any.
    for tag in 1..=N {
        a.send(tag, tread(1, u64::from(tag) * u64::from(COUNT), COUNT));
    }
    for _ in 1..=N {
        let (off, n, _, rc) = next_read(&file);
        assert_eq!(n, COUNT as usize);
        rc.send(Ok(data(off))).unwrap();
    }
    // Time for the connection's writer to find the socket full.
    std::thread::sleep(Duration::from_millis(100));
    // Another client is served meanwhile.
    b.send(9, tread(1, 0, 3));
    let (_, _, _, rc) = next_read(&file);
    rc.send(Ok(b"abc".to_vec())).unwrap();
    assert_eq!(
        b.recv(),
        Fcall {
            tag: 9,
            msg: rread(b"abc")
        }
    );
    let mut seen = vec![false; usize::from(N) + 1];
    for _ in 1..=N {
        let r = a.recv();
        assert!(!seen[usize::from(r.tag)], "tag {} answered twice", r.tag);
        seen[usize::from(r.tag)] = true;
        assert_eq!(r.msg, rread(&data(u64::from(r.tag) * u64::from(COUNT))));
    }
}

#[test]
fn flush() {
    let f = fixture();
    let file = f.srv.file2chan("f").unwrap();
    let mut c = Raw::session(&f);
    c.open(1, "f", ORDWR);
    // A held read, flushed: Rflush and no Rread, then or ever.
    c.send(10, tread(1, 0, 10));
    let (_, _, _, rc) = next_read(&file);
    assert_eq!(c.rpc(11, Msg::Tflush { oldtag: 10 }), Msg::Rflush);
    rc.send(Ok(b"late".to_vec()))
        .expect("a reply to a flushed request is accepted quietly");
    assert!(matches!(
        c.rpc(12, Msg::Tstat { fid: 1 }),
        Msg::Rstat { .. }
    ));
    // The tag is free again at once.
    c.send(10, tread(1, 1, 10));
    let (off, _, _, rc) = next_read(&file);
    assert_eq!(off, 1);
    rc.send(Ok(b"now".to_vec())).unwrap();
    assert_eq!(
        c.recv(),
        Fcall {
            tag: 10,
            msg: rread(b"now")
        }
    );
    // A flush of something already answered, or never asked: Rflush.
    assert_eq!(c.rpc(13, Msg::Tflush { oldtag: 10 }), Msg::Rflush);
    assert_eq!(c.rpc(13, Msg::Tflush { oldtag: 999 }), Msg::Rflush);
    // A write waiting to be taken by the server (not yet received), then
    // flushed: the server never sees it.
    c.send(
        20,
        Msg::Twrite {
            fid: 1,
            offset: 0,
            data: b"x".to_vec(),
        },
    );
    assert_eq!(c.rpc(21, Msg::Tflush { oldtag: 20 }), Msg::Rflush);
    // Two flushes of one request: both answered, in order.
    c.send(30, tread(1, 3, 10));
    c.send(31, Msg::Tflush { oldtag: 30 });
    c.send(32, Msg::Tflush { oldtag: 30 });
    assert_eq!(
        c.recv(),
        Fcall {
            tag: 31,
            msg: Msg::Rflush
        }
    );
    assert_eq!(
        c.recv(),
        Fcall {
            tag: 32,
            msg: Msg::Rflush
        }
    );
    // What the server sees: the flushed write may have reached the
    // channel's buffer (it is buffered), but the read after it is there.
    let mut seen = Vec::new();
    while let Ok((o, _, _, Some(_))) = file.read.nbrecv() {
        seen.push(o);
    }
    assert!(seen.iter().all(|&o| o == 3), "{seen:?}");
}

#[test]
fn reply_then_flush_comes_in_order() {
    // The reply is on its way when the flush arrives: the client gets the
    // reply first, then the Rflush.
    let f = fixture();
    let file = f.srv.file2chan("f").unwrap();
    let mut c = Raw::session(&f);
    c.open(1, "f", OREAD);
    for round in 0..50u16 {
        c.send(10, tread(1, 0, 10));
        let (_, _, _, rc) = next_read(&file);
        rc.send(Ok(vec![round as u8])).unwrap();
        c.send(11, Msg::Tflush { oldtag: 10 });
        let first = c.recv();
        if first.tag == 10 {
            assert_eq!(first.msg, rread(&[round as u8]));
            assert_eq!(
                c.recv(),
                Fcall {
                    tag: 11,
                    msg: Msg::Rflush
                }
            );
        } else {
            // Flushed before the reply was taken: then no reply at all.
            assert_eq!(
                first,
                Fcall {
                    tag: 11,
                    msg: Msg::Rflush
                }
            );
        }
    }
    assert!(matches!(
        c.rpc(12, Msg::Tstat { fid: 1 }),
        Msg::Rstat { .. }
    ));
}

#[test]
fn tversion_abandons_the_session() {
    let f = fixture();
    let file = f.srv.file2chan("f").unwrap();
    let mut c = Raw::session(&f);
    c.open(1, "f", OREAD);
    c.send(10, tread(1, 0, 10));
    let (_, _, fid, rc) = next_read(&file);
    assert_eq!(
        c.rpc(
            NOTAG,
            Msg::Tversion {
                msize: MSIZE,
                version: "9P2000".into()
            }
        ),
        Msg::Rversion {
            msize: MSIZE,
            version: "9P2000".into()
        }
    );
    // The open fid was clunked, and the held read is not answered.
    expect_close(&file, fid);
    rc.send(Ok(b"late".to_vec())).unwrap();
    assert_eq!(c.rpc(1, Msg::Tstat { fid: 1 }), err("unknown fid"));
    assert_eq!(c.rpc(1, attach(0)), Msg::Rattach { qid: root_qid() });
}

#[test]
fn malformed_messages_get_errors() {
    let f = fixture();
    let mut c = Raw::session(&f);
    // An unknown type in a whole frame: an error, and the session goes on.
    c.send_raw(&[7, 0, 0, 0, 99, 5, 0]);
    assert_eq!(
        c.recv(),
        Fcall {
            tag: 5,
            msg: err("malformed message: unknown message type 99")
        }
    );
    // A Tclunk with a byte too many.
    c.send_raw(&[12, 0, 0, 0, 120, 6, 0, 0, 0, 0, 0, 0]);
    let r = c.recv();
    assert_eq!(r.tag, 6);
    assert!(
        matches!(&r.msg, Msg::Rerror { ename } if ename.starts_with("malformed message: Tclunk")),
        "{r}"
    );
    // A reply sent to the server.
    assert_eq!(
        c.rpc(7, Msg::Rclunk),
        err("unexpected Rclunk from a client")
    );
    // A tag in use by a held request.
    let file = f.srv.file2chan("f").unwrap();
    c.open(1, "f", OREAD);
    c.send(8, tread(1, 0, 1));
    let (_, _, _, rc) = next_read(&file);
    assert_eq!(c.rpc(8, Msg::Tstat { fid: 1 }), err("tag in use"));
    rc.send(Ok(b"k".to_vec())).unwrap();
    assert_eq!(
        c.recv(),
        Fcall {
            tag: 8,
            msg: rread(b"k")
        }
    );
    assert_eq!(c.rpc(9, Msg::Tclunk { fid: 0 }), Msg::Rclunk);
}

#[test]
fn broken_frames_close_the_connection_only() {
    let f = fixture();
    let _file = f.srv.file2chan("f").unwrap();
    let mut good = Raw::session(&f);
    let cases: Vec<Vec<u8>> = vec![
        // Size below the 7-byte minimum.
        vec![6, 0, 0, 0, 100, 0, 0],
        // Bigger than the negotiated msize.
        (MSIZE + 1).to_le_bytes().to_vec(),
        // Cut off: the stream ends inside a message.
        vec![20, 0, 0, 0, 100, 0xff, 0xff, 0, 0],
    ];
    for bytes in cases {
        let mut c = Raw::session(&f);
        c.send_raw(&bytes);
        c.w.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(c.closed(), "{bytes:?}");
        // The other client goes on.
        assert!(matches!(
            good.rpc(3, Msg::Tstat { fid: 0 }),
            Msg::Rstat { .. }
        ));
    }
    // Without shutting our side: an oversized frame alone ends it.
    let mut c = Raw::session(&f);
    c.send_raw(&u32::MAX.to_le_bytes());
    assert!(c.closed());
}

/// The server reads ahead in chunks and cuts messages out of them: a
/// stream of a megabyte write among hundreds of small messages, sent in
/// pieces of every size with pauses between some, must come out as the
/// same messages, byte for byte, answered in order.
#[test]
fn messages_survive_any_cutting_of_the_stream() {
    let f = fixture();
    let file = f.srv.file2chan("f").unwrap();
    let mut c = Raw::connect(&f);
    let msize = (1 << 20) + 24;
    assert_eq!(
        c.rpc(
            NOTAG,
            Msg::Tversion {
                msize,
                version: "9P2000".into()
            }
        ),
        Msg::Rversion {
            msize,
            version: "9P2000".into()
        }
    );
    assert_eq!(c.rpc(1, attach(0)), Msg::Rattach { qid: root_qid() });
    assert!(matches!(c.open(1, "f", OWRITE), Msg::Ropen { .. }));

    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut stream = Vec::new();
    let stat = |tag: u16, out: &mut Vec<u8>| {
        Fcall {
            tag,
            msg: Msg::Tstat { fid: 0 },
        }
        .encode(out)
    };
    for tag in 100..250 {
        stat(tag, &mut stream);
    }
    Fcall {
        tag: 20,
        msg: Msg::Twrite {
            fid: 1,
            offset: 0,
            data: data.clone(),
        },
    }
    .encode(&mut stream);
    for tag in 250..400 {
        stat(tag, &mut stream);
    }

    let want = data.clone();
    let server = std::thread::spawn(move || {
        let (off, got, _, wc) = next_write(&file);
        assert_eq!(off, 0);
        assert!(got == want, "the write's data came through changed");
        wc.send(Ok(got.len())).unwrap();
        file
    });
    // Pieces of 1 byte up to 100 KiB, a pause now and then so that the
    // server sees them in separate reads.
    let mut w = c.w.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let (mut at, mut x) = (0usize, 0x2545_f491_4f6c_dd1du64);
        while at < stream.len() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = match x % 4 {
                0 => 1 + (x >> 8) as usize % 16,
                1 => 1 + (x >> 8) as usize % 4096,
                _ => 1 + (x >> 8) as usize % (100 << 10),
            }
            .min(stream.len() - at);
            w.write_all(&stream[at..at + n]).unwrap();
            at += n;
            if x % 8 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let mut stats = Vec::new();
    let mut wrote = None;
    while stats.len() < 300 || wrote.is_none() {
        let r = c.recv();
        match r.msg {
            Msg::Rstat { .. } => stats.push(r.tag),
            Msg::Rwrite { count } => {
                assert_eq!(r.tag, 20);
                wrote = Some(count);
            }
            m => panic!("unexpected reply {m:?}"),
        }
    }
    sender.join().unwrap();
    let _file = server.join().unwrap();
    assert_eq!(wrote, Some(1 << 20));
    assert_eq!(stats, (100..400).collect::<Vec<u16>>(), "answered in order");
}

#[test]
fn hostile_input_leaves_the_server_serving() {
    // Mutated and random frames on many connections; after each burst a
    // well-behaved client still gets answers. Bounded in time.
    let f = fixture();
    let file = f.srv.file2chan("f").unwrap();
    let mut good = Raw::session(&f);
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut seeds = Vec::new();
    for m in [
        Msg::Tversion {
            msize: 8192,
            version: "9P2000".into(),
        },
        attach(0),
        Msg::Twalk {
            fid: 0,
            newfid: 1,
            wnames: vec!["f".into()],
        },
        Msg::Topen {
            fid: 1,
            mode: ORDWR,
        },
        tread(1, 0, 10),
        Msg::Twrite {
            fid: 1,
            offset: 0,
            data: b"abc".to_vec(),
        },
        Msg::Tstat { fid: 0 },
        Msg::Tflush { oldtag: 3 },
        Msg::Tclunk { fid: 1 },
    ] {
        let mut b = Vec::new();
        Fcall { tag: 3, msg: m }.encode(&mut b);
        seeds.push(b);
    }
    let start = std::time::Instant::now();
    let mut conns = 0;
    while conns < 200 && start.elapsed() < Duration::from_secs(3) {
        conns += 1;
        let mut c = Raw::connect(&f);
        // A valid session start, so the mutations reach the later states.
        for s in &seeds[..2] {
            c.send_raw(s);
        }
        for _ in 0..20 {
            let mut b = seeds[(next() % seeds.len() as u64) as usize].clone();
            for _ in 0..(next() % 4) {
                let i = (next() % b.len() as u64) as usize;
                b[i] = next() as u8;
            }
            if next() % 8 == 0 {
                b.truncate((next() % b.len() as u64) as usize);
            }
            if c.w.write_all(&b).is_err() {
                break;
            }
        }
        drop(c);
        // Answer whatever reached the file, so nothing piles up.
        while let Ok((_, _, _, Some(rc))) = file.read.nbrecv() {
            let _ = rc.send(Ok(b"r".to_vec()));
        }
        while let Ok((_, _, _, Some(wc))) = file.write.nbrecv() {
            let _ = wc.send(Ok(1));
        }
        assert!(matches!(
            good.rpc(4, Msg::Tstat { fid: 0 }),
            Msg::Rstat { .. }
        ));
    }
    assert!(conns >= 10, "only {conns} connections in the time allowed");
}

#[test]
fn many_clients_with_held_reads() {
    let f = fixture();
    let file = f.srv.file2chan("f").unwrap();
    const N: usize = 40;
    let mut clients: Vec<Raw> = (0..N).map(|_| Raw::session(&f)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.open(1, "f", OREAD);
        c.send(i as u16, tread(1, i as u64, 64));
    }
    // All N are held at once.
    let mut held: Vec<_> = (0..N).map(|_| next_read(&file)).collect();
    held.sort_by_key(|h| h.0);
    let fids: std::collections::HashSet<u64> = held.iter().map(|h| h.2).collect();
    assert_eq!(fids.len(), N, "every open has its own fid");
    // Answered in an order unrelated to arrival.
    for k in (0..N).map(|k| (k * 7) % N) {
        let (off, _, _, rc) = &held[k];
        rc.send(Ok(format!("reply {off}").into_bytes())).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(
            c.recv(),
            Fcall {
                tag: i as u16,
                msg: rread(format!("reply {i}").as_bytes())
            }
        );
    }
}

#[test]
fn dropping_the_srv_stops_serving() {
    let f = fixture();
    let file = f.srv.file2chan("f").unwrap();
    let mut c = Raw::session(&f);
    c.open(1, "f", OREAD);
    let Fixture { srv, sock, _tmp } = f;
    let addrs = srv.addrs();
    assert_eq!(addrs, [format!("unix!{}", sock.display())]);
    let copy = srv.clone();
    drop(srv);
    // A clone keeps it served.
    assert!(matches!(c.rpc(2, Msg::Tstat { fid: 1 }), Msg::Rstat { .. }));
    drop(copy);
    // The connection ends, the socket is gone, and the server hears the
    // open file closed.
    assert!(c.closed());
    expect_close(&file, 1);
    assert!(!sock.exists());
    // The file itself lives on with its FileIO.
    assert_eq!(file.name(), "f");
}

#[test]
fn served_over_tcp() {
    let srv = Srv::new();
    let file = srv.file2chan("f").unwrap();
    srv.announce("tcp!127.0.0.1!0").unwrap();
    let addr = srv.addrs().pop().unwrap();
    let port: u16 = addr.rsplit('!').next().unwrap().parse().unwrap();
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut rpc = |tag: u16, msg: Msg| {
        let mut b = Vec::new();
        Fcall { tag, msg }.encode(&mut b);
        w.write_all(&b).unwrap();
        Fcall::decode(&read_frame(&mut r, 1 << 20).unwrap().unwrap()).unwrap()
    };
    assert!(matches!(
        rpc(
            NOTAG,
            Msg::Tversion {
                msize: 8192,
                version: "9P2000".into()
            }
        )
        .msg,
        Msg::Rversion { .. }
    ));
    assert!(matches!(rpc(1, attach(0)).msg, Msg::Rattach { .. }));
    assert!(matches!(
        rpc(
            1,
            Msg::Twalk {
                fid: 0,
                newfid: 1,
                wnames: vec!["f".into()]
            }
        )
        .msg,
        Msg::Rwalk { .. }
    ));
    assert!(matches!(
        rpc(
            1,
            Msg::Topen {
                fid: 1,
                mode: OWRITE
            }
        )
        .msg,
        Msg::Ropen { .. }
    ));
    let t = std::thread::spawn(move || {
        let (off, data, _, wc) = next_write(&file);
        wc.send(Ok(data.len())).unwrap();
        (off, data)
    });
    assert_eq!(
        rpc(
            2,
            Msg::Twrite {
                fid: 1,
                offset: 3,
                data: b"tcp".to_vec()
            }
        )
        .msg,
        Msg::Rwrite { count: 3 }
    );
    assert_eq!(t.join().unwrap(), (3, b"tcp".to_vec()));
    // Bad addresses.
    for (a, e) in [
        (
            "udp!127.0.0.1!0",
            "announce \"udp!127.0.0.1!0\": expected tcp!host!port or unix!/path",
        ),
        (
            "tcp!127.0.0.1",
            "announce \"tcp!127.0.0.1\": expected tcp!host!port or unix!/path",
        ),
    ] {
        assert_eq!(srv.announce(a).unwrap_err().to_string(), e);
    }
    assert!(srv.announce("tcp!127.0.0.1!notaport").is_err());
}

#[test]
fn server_threads_show_in_dumps() {
    // The server's threads live in the program that made the Srv, in the
    // srv group, named for what they do.
    let out: Chan<String> = Chan::new(1);
    let o = out.clone();
    thread9::run(move || {
        let tmp = TempDir::new("srv");
        let srv = Srv::new();
        let file = srv.file2chan("f").unwrap();
        let sock = tmp.0.join("s");
        srv.announce(&format!("unix!{}", sock.display())).unwrap();
        let done = Chan::new(0);
        let d = done.clone();
        let s2 = sock.clone();
        std::thread::spawn(move || {
            let mut c = Raw::session_path(&s2);
            c.open(1, "f", OREAD);
            c.send(4, tread(1, 0, 1));
            let r = c.recv();
            d.send(r.msg).unwrap();
        });
        let (_, _, _, rc) = next_read(&file);
        let dump = thread9::threaddump();
        rc.send(Ok(b"x".to_vec())).unwrap();
        assert_eq!(done.recv().unwrap(), rread(b"x"));
        o.send(dump).unwrap();
        drop(srv);
        thread9::threadexitsall("");
    })
    .unwrap();
    let dump = out.recv().unwrap();
    for want in [
        "9p listen unix!",
        "9p conn unix!",
        "9p writer",
        "9p read f tag 4",
    ] {
        assert!(dump.contains(want), "{want:?} not in dump:\n{dump}");
    }
}

#[test]
fn a_thread_serving_a_file_keeps_it() {
    // A move closure that touches only `f.read` still owns all of `f`, so
    // the file lives as long as the thread that serves it.
    let srv = Srv::new();
    let f = srv.file2chan("kept").unwrap();
    let t = std::thread::spawn(move || f.read.recv().map(|r| r.0));
    assert_eq!(srv.files(), ["kept"]);
    drop(srv);
    drop(t); // detached; it ends with the test process
}

#[test]
fn client_gone_abandons_its_requests() {
    let f = fixture();
    let file = f.srv.file2chan("f").unwrap();
    let mut c = Raw::session(&f);
    c.open(1, "f", ORDWR);
    c.send(10, tread(1, 0, 10));
    let (_, _, fid, rc) = next_read(&file);
    drop(c);
    // The server hears the open file closed, and its late reply is taken
    // quietly.
    expect_close(&file, fid);
    rc.send(Ok(b"late".to_vec())).unwrap();
    // Others are unaffected.
    let mut d = Raw::session(&f);
    assert!(matches!(d.rpc(1, Msg::Tstat { fid: 0 }), Msg::Rstat { .. }));
}

#[test]
fn announce_on_every_interface() {
    let srv = Srv::new();
    srv.announce("tcp!*!0").unwrap();
    let addr = srv.addrs().pop().unwrap();
    let port: u16 = addr.rsplit('!').next().unwrap().parse().unwrap();
    assert_ne!(port, 0);
    // Reachable on the loopback address.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut b = Vec::new();
    Fcall {
        tag: NOTAG,
        msg: Msg::Tversion {
            msize: 8192,
            version: "9P2000".into(),
        },
    }
    .encode(&mut b);
    s.write_all(&b).unwrap();
    let r = Fcall::decode(&read_frame(&mut s, 8192).unwrap().unwrap()).unwrap();
    assert_eq!(
        r.msg,
        Msg::Rversion {
            msize: 8192,
            version: "9P2000".into()
        }
    );
}

// Through thread9's own client, thread9::ninep.

use thread9::ninep::Client;

fn mount(f: &Fixture) -> Client {
    Client::mount(&format!("unix!{}", f.sock.display())).unwrap()
}

/// Serves `f` from an OS thread as an in-memory file (reads honour the
/// offset, writes land at theirs), until the FileIO's channels close.
fn ram(f: FileIO) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut data = Vec::new();
        loop {
            thread9::alt! {
                recv(f.read) -> r => match r {
                    Ok((off, count, _, Some(rc))) => {
                        let s = (off as usize).min(data.len());
                        let e = (s + count).min(data.len());
                        let _ = rc.send(Ok(data[s..e].to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
                recv(f.write) -> w => match w {
                    Ok((off, d, _, Some(wc))) => {
                        let off = off as usize;
                        if data.len() < off + d.len() {
                            data.resize(off + d.len(), 0);
                        }
                        data[off..off + d.len()].copy_from_slice(&d);
                        let _ = wc.send(Ok(d.len()));
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
            }
        }
    })
}

#[test]
fn client_reads_writes_and_lists() {
    use std::io::{Read, Write as _};
    let f = fixture();
    let _ram = ram(f.srv.file2chan("ram").unwrap());
    let _other = f.srv.file2chan("other").unwrap();
    let c = mount(&f);
    assert_eq!(c.msize(), (1 << 20) + 24);
    let file = c.open("ram", ORDWR).unwrap();
    assert_eq!(file.iounit(), 1 << 20);
    (&file).write_all(b"hello, world").unwrap();
    let mut buf = [0u8; 5];
    assert_eq!(file.pread(&mut buf, 7).unwrap(), 5);
    assert_eq!(&buf, b"world");
    file.set_offset(0);
    let mut all = String::new();
    (&file).read_to_string(&mut all).unwrap();
    assert_eq!(all, "hello, world");
    let names = common::names(c.read_dir("/").unwrap());
    assert_eq!(names, ["ram", "other"]);
    let st = c.stat("ram").unwrap();
    assert_eq!((st.mode, st.qid.typ, st.uid), (0o660, QTFILE, c_user()));
    assert_eq!(c.stat("/").unwrap().mode, DMDIR | 0o770);
    assert_eq!(
        c.open("nope", OREAD).unwrap_err().to_string(),
        "file does not exist"
    );
    let ro = c.open("ram", OREAD).unwrap();
    assert_eq!(
        ro.write(b"x").unwrap_err().to_string(),
        "file not open for writing"
    );
    assert_eq!(
        c.open("/", OWRITE).unwrap_err().to_string(),
        "is a directory"
    );
    file.clunk().unwrap();
}

#[test]
fn client_streams_large_reads_intact() {
    // Reads as large as the msize allows go out partly by the writer's
    // ioproc; every byte must arrive, in order.
    let f = fixture();
    let file = f.srv.file2chan("big").unwrap();
    const TOTAL: u64 = 24 << 20;
    let server = std::thread::spawn(move || {
        // Until the client closes the file.
        while let Ok((off, count, _, Some(rc))) = file.read.recv() {
            let end = (off + count as u64).min(TOTAL);
            let data: Vec<u8> = (off..end).map(|i| (i % 251) as u8).collect();
            let _ = rc.send(Ok(data));
        }
    });
    let c = mount(&f);
    let big = c.open("big", OREAD).unwrap();
    let mut buf = vec![0u8; c.msize() as usize];
    let mut off = 0u64;
    loop {
        let n = big.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(n, (1 << 20).min((TOTAL - off) as usize));
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(
                *b,
                ((off + k as u64) % 251) as u8,
                "byte {}",
                off + k as u64
            );
        }
        off += n as u64;
    }
    assert_eq!(off, TOTAL);
    drop(big);
    drop(f);
    server.join().unwrap();
}

#[test]
fn client_threads_share_a_connection() {
    // Twenty thread9 threads of one proc, each with a read held by the
    // server; answered in reverse, each gets its own reply.
    let f = fixture();
    let file = f.srv.file2chan("f").unwrap();
    let c = mount(&f);
    let server = std::thread::spawn(move || {
        let mut held: Vec<(u64, thread9::Rread)> = (0..20)
            .map(|_| {
                let (o, _, _, rc) = next_read(&file);
                (o, rc)
            })
            .collect();
        held.sort_by_key(|h| std::cmp::Reverse(h.0));
        for (o, rc) in held {
            rc.send(Ok(o.to_string().into_bytes())).unwrap();
        }
        file
    });
    thread9::run(move || {
        let file = c.open("f", OREAD).unwrap();
        let file = std::rc::Rc::new(file);
        let results: Chan<(u64, String)> = Chan::new(20);
        for i in 0..20u64 {
            let (f, r) = (file.clone(), results.clone());
            thread9::threadcreate(
                move || {
                    let mut b = [0u8; 8];
                    let n = f.pread(&mut b, i).unwrap();
                    r.send((i, String::from_utf8_lossy(&b[..n]).into_owned()))
                        .unwrap();
                },
                0,
            );
        }
        for _ in 0..20 {
            let (i, s) = results.recv().unwrap();
            assert_eq!(s, i.to_string());
        }
    })
    .unwrap();
    drop(server.join().unwrap());
}

#[test]
fn interrupted_client_read_is_flushed() {
    let f = fixture();
    let file = f.srv.file2chan("f").unwrap();
    let c = mount(&f);
    let held: Chan<()> = Chan::new(1);
    let tx = held.clone();
    let server = std::thread::spawn(move || {
        let (_, _, _, rc) = next_read(&file);
        tx.send(()).unwrap();
        // Answered only after the flush; the reply is dropped quietly.
        let (off, _, _, rc2) = next_read(&file);
        rc.send(Ok(b"too late".to_vec())).unwrap();
        rc2.send(Ok(format!("second {off}").into_bytes())).unwrap();
        file
    });
    thread9::run(move || {
        let file = std::rc::Rc::new(c.open("f", OREAD).unwrap());
        let f2 = file.clone();
        let out: Chan<std::io::ErrorKind> = Chan::new(1);
        let o = out.clone();
        let reader = thread9::threadcreate(
            move || {
                let mut b = [0u8; 16];
                o.send(f2.pread(&mut b, 0).unwrap_err().kind()).unwrap();
            },
            0,
        );
        // Wait until the server holds the read.
        held.recv().unwrap();
        thread9::threadint(reader);
        assert_eq!(out.recv().unwrap(), std::io::ErrorKind::Interrupted);
        // The connection goes on, and the next read gets its own reply.
        let mut b = [0u8; 16];
        let n = file.pread(&mut b, 9).unwrap();
        assert_eq!(&b[..n], b"second 9");
    })
    .unwrap();
    drop(server.join().unwrap());
}

#[test]
fn a_thread_waiting_on_a_slow_server_is_not_deadlocked() {
    // The only thread of the program waits for a reply that comes 300 ms
    // later: the program must not be declared deadlocked meanwhile.
    let f = fixture();
    let file = f.srv.file2chan("slow").unwrap();
    let server = std::thread::spawn(move || {
        let (_, _, _, rc) = next_read(&file);
        std::thread::sleep(Duration::from_millis(300));
        rc.send(Ok(b"worth the wait".to_vec())).unwrap();
        file
    });
    let c = mount(&f);
    thread9::run(move || {
        let mut b = [0u8; 32];
        let n = c.open("slow", OREAD).unwrap().read(&mut b).unwrap();
        assert_eq!(&b[..n], b"worth the wait");
    })
    .expect("no deadlock");
    drop(server.join().unwrap());
}

#[test]
fn dropping_the_srv_ends_its_procs() {
    // In a program, the server's procs are the program's: `run` returns
    // only once they have all ended, so it returning proves they did.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = thread9::run(|| {
            let tmp = TempDir::new("srv");
            let srv = Srv::new();
            let file = srv.file2chan("f").unwrap();
            srv.announce(&format!("unix!{}", tmp.0.join("s").display()))
                .unwrap();
            srv.announce("tcp!127.0.0.1!0").unwrap();
            // A client connected, with a file open and a read held.
            let mut c = Raw::session_path(&tmp.0.join("s"));
            c.open(1, "f", OREAD);
            c.send(4, tread(1, 0, 1));
            let (_, _, fid, _rc) = next_read(&file);
            drop(srv);
            assert!(c.closed());
            expect_close(&file, fid);
        });
        tx.send(r).unwrap();
    });
    let r = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the program ends once its Srv is dropped");
    assert_eq!(r, Ok(()));
}
