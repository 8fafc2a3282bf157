//! The srv against a 9P client nobody here wrote: python-9p (module
//! `py9p`, built on plan9port's wire codec), installed from PyPI into a
//! venv under target/ the first time these tests run.
//!
//! Where it cannot be installed these tests fail, saying why; set
//! `THREAD9_SKIP_INTEROP=1` to skip them instead (they then print that
//! they did not run).
//!
//! The Python side is tests/py/client.py; here the test plays each file's
//! server and checks both what the client printed and the requests the
//! file received.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use thread9::srv::{FileIO, Srv};
use thread9::{Chan, alt};

const PY9P: &str = "python-9p==0.1.0";

/// The venv's python, installing python-9p on first use.
fn python() -> Option<PathBuf> {
    static PY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PY.get_or_init(install) {
        Ok(p) => Some(p.clone()),
        Err(why) if std::env::var_os("THREAD9_SKIP_INTEROP").is_some_and(|v| v == "1") => {
            eprintln!(
                "\n*** INTEROP TEST NOT RUN: python-9p is unavailable ({why}); \
                 THREAD9_SKIP_INTEROP=1 said to skip ***\n"
            );
            None
        }
        Err(why) => panic!(
            "python-9p interop set-up failed: {why}\n\
             These tests need python3 with venv and pip, and PyPI. \
             Set THREAD9_SKIP_INTEROP=1 to skip them on a machine without."
        ),
    }
}

fn install() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py9p-venv");
    // Several test processes (cargo nextest runs one per test) may get
    // here at once: one installs, the others wait for it.
    let lock = File::create(venv.with_extension("lock")).map_err(|e| format!("lock file: {e}"))?;
    // SAFETY: flock on a descriptor we hold open; released when it closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("flock: {}", std::io::Error::last_os_error()));
    }
    let py = venv.join("bin/python3");
    let has_py9p = |py: &Path| {
        Command::new(py)
            .args(["-c", "import py9p"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has_py9p(&py) {
        return Ok(py);
    }
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        PY9P,
    ]))?;
    if !has_py9p(&py) {
        return Err(format!("{PY9P} installed but `import py9p` fails"));
    }
    Ok(py)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// A python-9p session running scenario `name` against `sock`, in the
/// background.
struct Script {
    child: std::process::Child,
    name: String,
}

impl Script {
    fn start(py: &Path, name: &str, sock: &Path) -> Script {
        let child = Command::new(py)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/client.py"))
            .arg(name)
            .arg(sock)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python");
        Script {
            child,
            name: name.into(),
        }
    }

    /// Waits (a minute at most: a hang is a failure) and gives the lines
    /// it printed, which must end with "done".
    fn finish(mut self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("python scenario {} hung", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let (mut out, mut err) = (String::new(), String::new());
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(
            status.success(),
            "python scenario {} failed:\n{out}\n{err}",
            self.name
        );
        let mut lines: Vec<String> = out.lines().map(String::from).collect();
        assert_eq!(lines.pop().as_deref(), Some("done"), "{out}\n{err}");
        lines
    }
}

struct Served {
    srv: Srv,
    sock: PathBuf,
    _dir: common::TempDir,
}

fn served() -> Served {
    let dir = common::TempDir::new("interop");
    let sock = dir.0.join("srv");
    let srv = Srv::new();
    srv.announce(&format!("unix!{}", sock.display())).unwrap();
    Served {
        srv,
        sock,
        _dir: dir,
    }
}

fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let o = Command::new("id").arg("-un").output().unwrap();
            String::from_utf8(o.stdout).unwrap().trim().to_owned()
        })
}

/// Serves `file` from an OS thread until `stop`, recording each request
/// (fids renamed A, B, ... in order of appearance) and answering reads
/// with `text` from the offset and writes in full.
fn record(
    file: FileIO,
    text: &'static [u8],
    stop: Chan<()>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut log = Vec::new();
        let mut names: HashMap<u64, char> = HashMap::new();
        let mut name = |fid: u64| {
            let n = names.len();
            *names.entry(fid).or_insert((b'A' + n as u8) as char)
        };
        loop {
            alt! {
                recv(file.read) -> r => {
                    let (off, count, fid, rc) = r.unwrap();
                    log.push(format!("read {off} {count} {} {}", name(fid), rc.is_some()));
                    if let Some(rc) = rc {
                        let off = (off as usize).min(text.len());
                        rc.send(Ok(text[off..].to_vec())).unwrap();
                    }
                },
                recv(file.write) -> w => {
                    let (off, data, fid, wc) = w.unwrap();
                    log.push(format!("write {off} {:?} {} {}", String::from_utf8_lossy(&data), name(fid), wc.is_some()));
                    if let Some(wc) = wc {
                        wc.send(Ok(data.len())).unwrap();
                    }
                },
                recv(stop) -> _ => return log,
            }
        }
    })
}

#[test]
fn open_read_write_clunk_stat() {
    let Some(py) = python() else { return };
    let s = served();
    let file = s.srv.file2chan("data").unwrap();
    let stop = Chan::new(0);
    let server = record(file, b"hello world", stop.clone());
    let lines = Script::start(&py, "sequence", &s.sock).finish();
    stop.send(()).unwrap();
    let u = user();
    assert_eq!(
        lines,
        [
            "version 1048600 9P2000".to_string(),
            "open 0 1 1048576".into(),
            "read hello world".into(),
            "read hell".into(),
            "write 3".into(),
            "read <eof>".into(),
            format!("root / 0o20000000770 {u}"),
            format!("stat data 0o660 {u} {u} 0 1"),
        ]
    );
    // Each channel's requests come in order; across the two channels only
    // a fid's close is ordered (its nil read is taken before its nil write
    // is offered): B's first read may be taken before A's nil write, as
    // with Inferno's buffered request channels.
    let log = server.join().unwrap();
    let on = |kind: &str| -> Vec<&str> {
        log.iter()
            .map(String::as_str)
            .filter(|l| l.starts_with(kind))
            .collect()
    };
    assert_eq!(
        on("read "),
        [
            "read 0 100 A true",
            "read 0 4 A true",
            "read 0 0 A false",
            "read 11 100 B true",
            "read 0 0 B false",
        ],
        "{log:?}"
    );
    assert_eq!(
        on("write "),
        [
            "write 5 \"abc\" A true",
            "write 0 \"\" A false",
            "write 0 \"\" B false",
        ],
        "{log:?}"
    );
    let at = |l: &str| log.iter().position(|x| x == l).unwrap();
    for fid in ["A", "B"] {
        assert!(
            at(&format!("read 0 0 {fid} false")) < at(&format!("write 0 \"\" {fid} false")),
            "{fid}'s nil read comes before its nil write: {log:?}"
        );
    }
    // A's data write came before its close.
    assert!(
        at("write 5 \"abc\" A true") < at("read 0 0 A false"),
        "{log:?}"
    );
}

#[test]
fn directory_read_in_chunks() {
    let Some(py) = python() else { return };
    let s = served();
    let names: Vec<String> = (0..7).map(|i| format!("f{i}")).collect();
    let _files: Vec<FileIO> = names.iter().map(|n| s.srv.file2chan(n).unwrap()).collect();
    let lines = Script::start(&py, "directory", &s.sock).finish();
    let entry = 49 + 2 + 3 * user().len();
    let per_read = 150 / entry;
    assert!(per_read >= 1, "user name too long for this test");
    assert_eq!(
        lines,
        [
            format!("reads {}", names.len().div_ceil(per_read)),
            format!("names {}", names.join(" ")),
        ]
    );
}

#[test]
fn errors_reach_the_client() {
    let Some(py) = python() else { return };
    let s = served();
    let file = s.srv.file2chan("f").unwrap();
    let server = std::thread::spawn(move || {
        // One read and one write, refused with the server's own words.
        let (_, _, _, rc) = file.read.recv().unwrap();
        rc.unwrap().send(Err("no such luck".into())).unwrap();
        let (_, _, _, wc) = file.write.recv().unwrap();
        wc.unwrap().send(Err("read-only file".into())).unwrap();
        file
    });
    let lines = Script::start(&py, "errors", &s.sock).finish();
    let _file = server.join().unwrap();
    assert_eq!(
        lines,
        [
            "unopened fid not open",
            "read no such luck",
            "write read-only file",
            "missing file does not exist",
            "create permission denied",
            "remove permission denied",
            "removed fid unknown fid",
            "wstat permission denied",
            "walk open cannot walk an open fid",
            "fid in use fid in use",
        ]
    );
}

#[test]
fn held_read_holds_up_nothing() {
    let Some(py) = python() else { return };
    let s = served();
    let slow = s.srv.file2chan("slow").unwrap();
    let fast = s.srv.file2chan("fast").unwrap();
    let script = Script::start(&py, "held", &s.sock);
    let (_, _, _, held) = slow.read.recv().unwrap();
    // While that read is held: two reads on the other file, from the same
    // client and another, then the other's write.
    for n in 1..=2 {
        let (_, _, _, rc) = fast.read.recv().unwrap();
        rc.unwrap()
            .send(Ok(format!("fast-{n}").into_bytes()))
            .unwrap();
    }
    let (_, data, _, wc) = fast.write.recv().unwrap();
    assert_eq!(data, b"go");
    wc.unwrap().send(Ok(2)).unwrap();
    held.unwrap().send(Ok(b"at last".to_vec())).unwrap();
    assert_eq!(
        script.finish(),
        ["fast fast-1", "other fast-2", "slow at last"]
    );
}

#[test]
fn dropped_fileio_hangs_up() {
    let Some(py) = python() else { return };
    let s = served();
    let file = s.srv.file2chan("f").unwrap();
    let script = Script::start(&py, "hungup", &s.sock);
    let (_, _, _, rc) = file.read.recv().unwrap();
    drop(file);
    assert_eq!(
        script.finish(),
        [
            "pending i/o on hungup channel",
            "later i/o on hungup channel",
            "walk file does not exist",
            "listing 0",
        ]
    );
    // The late reply goes nowhere, quietly.
    let _ = rc.unwrap().send(Ok(b"late".to_vec()));
}

#[test]
fn flush_abandons_a_held_read() {
    let Some(py) = python() else { return };
    let s = served();
    let slow = s.srv.file2chan("slow").unwrap();
    let gate = s.srv.file2chan("gate").unwrap();
    let script = Script::start(&py, "flush", &s.sock);
    let (_, _, _, held) = slow.read.recv().unwrap();
    let (_, _, _, rc) = gate.read.recv().unwrap();
    rc.unwrap().send(Ok(b"open".to_vec())).unwrap();
    // The client flushes the held read, then writes to the gate.
    let (_, data, _, wc) = gate.write.recv().unwrap();
    assert_eq!(data, b"late");
    wc.unwrap().send(Ok(4)).unwrap();
    held.unwrap()
        .send(Ok(b"too late".to_vec()))
        .expect("a reply to a flushed read is taken quietly");
    assert_eq!(
        script.finish(),
        ["gate open", "flushed Rflush", "stat slow", "held closed"]
    );
}

#[test]
fn crowd_of_clients_with_held_reads() {
    let Some(py) = python() else { return };
    let s = served();
    let file = s.srv.file2chan("f").unwrap();
    let script = Script::start(&py, "crowd", &s.sock);
    // All 24 reads are held at once before any is answered.
    let mut held: Vec<(u64, thread9::Rread)> = (0..24)
        .map(|_| {
            let (off, _, _, rc) = file.read.recv().unwrap();
            (off, rc.unwrap())
        })
        .collect();
    held.sort_by_key(|h| std::cmp::Reverse(h.0));
    for (off, rc) in held {
        rc.send(Ok(format!("answer {off}").into_bytes())).unwrap();
    }
    assert_eq!(script.finish(), ["crowd ok"]);
}

#[test]
fn malformed_input_gets_errors_and_hurts_no_one_else() {
    let Some(py) = python() else { return };
    let s = served();
    let file = s.srv.file2chan("f").unwrap();
    let server = std::thread::spawn(move || {
        let (_, data, _, wc) = file.write.recv().unwrap();
        wc.unwrap().send(Ok(data.len())).unwrap();
        (data, file)
    });
    let lines = Script::start(&py, "malformed", &s.sock).finish();
    assert_eq!(
        lines,
        [
            "short walk 5 malformed message: Twalk: nwname 4 at byte 15 runs past the end (0 bytes left)",
            "unknown type 6 malformed message: unknown message type 99",
            "reply 7 unexpected Rclunk from a client",
            "unknown fid 8 unknown fid",
            "session /",
            "broken frame closed",
            "bystander 12",
        ]
    );
    assert_eq!(server.join().unwrap().0, b"still served");
}

#[test]
fn posted_example_replaces_a_stale_socket() {
    use std::os::unix::fs::PermissionsExt;
    let Some(py) = python() else { return };
    // A socket left by a server that died: nothing listens on it.
    let e = common::example::example_with("ramfile", &[], |ns| {
        std::fs::create_dir(ns).unwrap();
        std::fs::set_permissions(ns, std::fs::Permissions::from_mode(0o700)).unwrap();
        drop(std::os::unix::net::UnixListener::bind(ns.join("ramfile")).unwrap());
    });
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&e.ns), mode(&e.sock)), (0o700, 0o600));
    assert_eq!(
        Script::start(&py, "ramfile", &e.sock).finish(),
        [
            "write 12",
            "read hello, world",
            "at 7 world",
            "write 3",
            "read bye",
            "at 3 <eof>",
        ]
    );
}
