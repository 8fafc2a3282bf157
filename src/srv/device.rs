//! `Srv`: the handle to a srv directory, and the listeners that serve it.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::conn;
use super::file2chan::FileIO;
use super::tree::{Tree, name_ok, syntax_error};
use super::wire::{set_nonblocking, shutdown};
use crate::ioproc::Ioproc;
use crate::ioproc::dial::{self, Target};
use crate::thread::procs;
use crate::thread::program::lock;
use crate::thread::{proccreate, threadsetgrp, threadsetname};

/// The thread group of the server's threads, so that a program's
/// `threadintgrp`/`threadkillgrp` of its own groups leaves them alone.
///
/// ```
/// use thread9::srv::{SRV_GROUP, Srv, ninep::Client};
///
/// thread9::run(|| {
///     let srv = Srv::new();
///     let _f = srv.file2chan("status").unwrap();
///     srv.announce("tcp!127.0.0.1!0").unwrap();
///     let c = Client::mount(&srv.addrs()[0]).unwrap();
///     // Killing the group the program's threads start in spares the
///     // server: its listener and connection are in SRV_GROUP.
///     assert_ne!(thread9::threadgetgrp(), SRV_GROUP);
///     thread9::threadsetgrp(1);
///     thread9::threadkillgrp(0);
///     assert_eq!(c.read_dir("/").unwrap()[0].name, "status");
/// }).unwrap();
/// ```
pub const SRV_GROUP: u64 = u64::MAX - 9;

/// Stack of a connection's first thread (it decodes, walks and stats).
const CONN_STACK: usize = 256 * 1024;

/// What the listeners and connections share. It holds no `Srv` handle, so
/// it does not keep the `Srv` alive.
pub(crate) struct Shared {
    pub(crate) tree: Arc<Tree>,
    conns: Mutex<HashMap<u64, Arc<OwnedFd>>>,
    next_conn: AtomicU64,
    stopped: AtomicBool,
}

impl Shared {
    /// Registers a connection so that dropping the `Srv` can end it;
    /// `None` if that has already happened.
    pub(crate) fn add_conn(&self, fd: &Arc<OwnedFd>) -> Option<u64> {
        let mut conns = lock(&self.conns);
        // Checked under the lock that `stop` takes: a connection is either
        // refused here or seen there.
        if self.stopped.load(Ordering::SeqCst) {
            return None;
        }
        let key = self.next_conn.fetch_add(1, Ordering::Relaxed);
        conns.insert(key, fd.clone());
        Some(key)
    }

    pub(crate) fn remove_conn(&self, key: u64) {
        lock(&self.conns).remove(&key);
    }

    fn stop(&self) {
        let conns: Vec<_> = {
            let mut c = lock(&self.conns);
            self.stopped.store(true, Ordering::SeqCst);
            c.drain().map(|(_, fd)| fd).collect()
        };
        for fd in conns {
            shutdown(&fd);
        }
    }
}

/// A socket being listened on.
struct Listening {
    /// Where clients reach it, as a dial string.
    addr: String,
    /// The listener's ioproc, once it has one: stopping interrupts its
    /// accept.
    io: Arc<Mutex<Option<Ioproc>>>,
    /// A posted socket's file, removed when serving stops if it is still
    /// ours (same device and inode).
    file: Option<(PathBuf, u64, u64)>,
}

struct Handle {
    shared: Arc<Shared>,
    listening: Mutex<Vec<Listening>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stop();
        for l in lock(&self.listening).drain(..) {
            // Ends the listener's accept; a listener that has not got that
            // far sees `stopped` (set above) once it has put its ioproc
            // where this looks.
            if let Some(io) = lock(&l.io).take() {
                io.interrupt();
            }
            if let Some((path, dev, ino)) = l.file {
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
                {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
}

/// A srv directory (Inferno's `#s`): a directory of files whose reads and
/// writes arrive as requests on channels ([`Srv::file2chan`]), served to
/// any 9P2000 client ([`Srv::post`], [`Srv::announce`]).
///
/// `Srv` is a handle: clones share the directory. The directory is served
/// while any handle lives; dropping the last one stops serving: posted
/// sockets are removed, connections closed, and the server's procs end.
/// Its files belong to their [`FileIO`]s and may outlive it.
///
/// The server is written with thread9 itself: a proc per listener and per
/// connection (whose threads wait on its socket with
/// [`threadfdwait`](crate::threadfdwait)), and a thread per file request,
/// so a read the file's server holds never holds up anything else. Called
/// inside a program, those procs belong to it (they show in
/// [`threaddump`](crate::threaddump), in the thread group [`SRV_GROUP`]);
/// called outside one, the server runs as a program of its own.
///
/// ```
/// use thread9::srv::Srv;
///
/// let srv = Srv::new();
/// let log = srv.file2chan("log").unwrap();
/// assert_eq!(srv.file2chan("log").unwrap_err().to_string(), "file exists");
/// assert_eq!(srv.file2chan("a/b").unwrap_err().to_string(), "file name syntax");
/// assert_eq!(srv.files(), ["log"]);
/// drop(log);
/// assert!(srv.files().is_empty());
/// ```
#[derive(Clone)]
pub struct Srv {
    h: Arc<Handle>,
}

impl Default for Srv {
    fn default() -> Srv {
        Srv::new()
    }
}

impl fmt::Debug for Srv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Srv")
            .field("files", &self.files())
            .field("addrs", &self.addrs())
            .finish()
    }
}

impl Srv {
    /// An empty srv directory, not yet served.
    ///
    /// ```
    /// let srv = thread9::srv::Srv::new();
    /// assert!(srv.files().is_empty());
    /// assert!(srv.addrs().is_empty());
    /// ```
    pub fn new() -> Srv {
        Srv {
            h: Arc::new(Handle {
                shared: Arc::new(Shared {
                    tree: Arc::new(Tree::new()),
                    conns: Mutex::new(HashMap::new()),
                    next_conn: AtomicU64::new(1),
                    stopped: AtomicBool::new(false),
                }),
                listening: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Makes file `name` in the directory (Inferno's `file2chan`); its
    /// requests arrive on the returned [`FileIO`], and dropping that
    /// removes the file. Fails with `file name syntax` for a name that is
    /// empty, `.` or `..`, contains `/` or a control character, or is 64
    /// bytes or longer, and with `file exists` for a name in use.
    ///
    /// ```
    /// use thread9::srv::{Srv, fcall::OREAD, ninep::Client};
    ///
    /// thread9::run(|| {
    ///     let srv = Srv::new();
    ///     let clock = srv.file2chan("clock").unwrap();
    ///     // Every read of the file is a request to this thread.
    ///     thread9::threadcreate(move || loop {
    ///         if let (_, _, _, Some(rc)) = clock.read.recv().unwrap() {
    ///             let _ = rc.send(Ok(b"noon".to_vec()));
    ///         }
    ///     }, 0);
    ///     srv.announce("tcp!127.0.0.1!0").unwrap();
    ///     let c = Client::mount(&srv.addrs()[0]).unwrap();
    ///     let mut buf = [0; 8];
    ///     let n = c.open("clock", OREAD).unwrap().read(&mut buf).unwrap();
    ///     assert_eq!(&buf[..n], b"noon");
    ///     thread9::threadexitsall(""); // the file's thread serves forever
    /// }).unwrap();
    /// ```
    pub fn file2chan(&self, name: &str) -> io::Result<FileIO> {
        FileIO::new(&self.h.shared.tree, name)
    }

    /// The names of the directory's files, oldest first.
    ///
    /// ```
    /// let srv = thread9::srv::Srv::new();
    /// let b = srv.file2chan("b").unwrap();
    /// let _a = srv.file2chan("a").unwrap();
    /// assert_eq!(srv.files(), ["b", "a"]); // by age, not by name
    /// drop(b); // removes the file
    /// assert_eq!(srv.files(), ["a"]);
    /// ```
    pub fn files(&self) -> Vec<String> {
        self.h
            .shared
            .tree
            .list()
            .iter()
            .map(|e| e.name.clone())
            .collect()
    }

    /// Serves the directory as 9P2000 on a Unix socket named `name` in the
    /// namespace directory ([`namespace`](super::namespace), created mode
    /// 0700 if need be), so that plan9port's `9p read name/file` reaches
    /// it; returns the socket's path. The socket is mode 0600. A socket
    /// left there by a server that has died is replaced; one a live server
    /// answers on is an error (`AddrInUse`).
    ///
    /// ```
    /// use thread9::srv::{Srv, namespace, ninep::Client};
    ///
    /// thread9::run(|| {
    ///     let srv = Srv::new();
    ///     let _f = srv.file2chan("status").unwrap();
    ///     let name = format!("post-doc-{}", std::process::id());
    ///     let path = srv.post(&name).unwrap();
    ///     assert_eq!(path, namespace().join(&name));
    ///     // The posted name alone is enough to mount it.
    ///     let c = Client::mount(&name).unwrap();
    ///     assert_eq!(c.read_dir("/").unwrap()[0].name, "status");
    ///     assert!(srv.post(&name).is_err()); // a live server is there
    ///     drop(srv); // stops serving and removes the socket
    ///     assert!(!path.exists());
    /// }).unwrap();
    /// ```
    pub fn post(&self, name: &str) -> io::Result<PathBuf> {
        if !name_ok(name) {
            return Err(syntax_error());
        }
        let path = super::ns::ensure_namespace()?.join(name);
        self.listen_unix(&path)?;
        Ok(path)
    }

    /// Serves the directory as 9P2000 on a Plan 9 address:
    /// `tcp!host!port` (host `*` for every interface, port 0 for any
    /// free one: see [`Srv::addrs`]), or `unix!/path` for a socket
    /// outside the namespace directory.
    ///
    /// ```
    /// thread9::run(|| {
    ///     let srv = thread9::srv::Srv::new();
    ///     srv.announce("tcp!127.0.0.1!0").unwrap();
    ///     let addr = srv.addrs().pop().unwrap();
    ///     assert!(addr.starts_with("tcp!127.0.0.1!"));
    ///     let c = thread9::ninep::Client::mount(&addr).unwrap();
    ///     assert!(c.read_dir("/").unwrap().is_empty());
    /// }).unwrap();
    /// ```
    pub fn announce(&self, addr: &str) -> io::Result<()> {
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("announce {addr:?}: {what}"),
            )
        };
        let parts: Vec<&str> = addr.split('!').collect();
        match parts.as_slice() {
            ["tcp" | "net", host, port] => {
                let addrs = if *host == "*" {
                    // Every interface: IPv6's wildcard takes IPv4 too,
                    // where the machine has IPv6 at all.
                    let v6 = resolve(addr, &format!("tcp!::!{port}"))?;
                    let v4 = resolve(addr, &format!("tcp!0.0.0.0!{port}"))?;
                    [v6, v4].concat()
                } else {
                    resolve(addr, addr)?
                };
                let l = TcpListener::bind(&addrs[..])
                    .map_err(|e| io::Error::new(e.kind(), format!("announce {addr:?}: {e}")))?;
                let local = l.local_addr()?;
                let dial = match local {
                    SocketAddr::V4(a) => format!("tcp!{}!{}", a.ip(), a.port()),
                    SocketAddr::V6(a) => format!("tcp!{}!{}", a.ip(), a.port()),
                };
                self.serve(OwnedFd::from(l), dial, None)
            }
            ["unix", path] => self.listen_unix(Path::new(path)),
            _ => Err(bad("expected tcp!host!port or unix!/path")),
        }
    }

    /// Every address the directory is served on, as dial strings.
    ///
    /// ```
    /// thread9::run(|| {
    ///     let srv = thread9::srv::Srv::new();
    ///     let sock = std::env::temp_dir().join(format!("addrs-doc-{}", std::process::id()));
    ///     srv.announce(&format!("unix!{}", sock.display())).unwrap();
    ///     srv.announce("tcp!127.0.0.1!0").unwrap();
    ///     let addrs = srv.addrs();
    ///     assert_eq!(addrs[0], format!("unix!{}", sock.display()));
    ///     // Port 0 was a request for any port: the one taken is given.
    ///     assert!(addrs[1].starts_with("tcp!127.0.0.1!") && !addrs[1].ends_with("!0"));
    ///     assert!(thread9::ninep::Client::mount(&addrs[1]).is_ok());
    ///     drop(srv); // removes the socket
    ///     assert!(!sock.exists());
    /// }).unwrap();
    /// ```
    pub fn addrs(&self) -> Vec<String> {
        lock(&self.h.listening)
            .iter()
            .map(|l| l.addr.clone())
            .collect()
    }

    fn listen_unix(&self, path: &Path) -> io::Result<()> {
        let ctx = |e: io::Error| io::Error::new(e.kind(), format!("post {}: {e}", path.display()));
        clear_stale(path).map_err(ctx)?;
        let l = UnixListener::bind(path).map_err(ctx)?;
        // Only the owner may connect; the namespace directory is closed to
        // others too, but a socket elsewhere needs its own guard.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(ctx)?;
        let md = std::fs::symlink_metadata(path).map_err(ctx)?;
        self.serve(
            OwnedFd::from(l),
            format!("unix!{}", path.display()),
            Some((path.to_owned(), md.dev(), md.ino())),
        )
    }

    /// Starts a listener proc accepting on `fd`.
    fn serve(
        &self,
        fd: OwnedFd,
        addr: String,
        file: Option<(PathBuf, u64, u64)>,
    ) -> io::Result<()> {
        set_nonblocking(&fd)?;
        let shared = self.h.shared.clone();
        let io = Arc::new(Mutex::new(None));
        let (lio, laddr) = (io.clone(), addr.clone());
        lock(&self.h.listening).push(Listening { addr, io, file });
        spawn(move || listen(shared, fd, laddr, lio));
        Ok(())
    }
}

/// Resolves a tcp dial string; port 0 (any free port) is allowed here,
/// though not in a dial.
fn resolve(addr: &str, dial: &str) -> io::Result<Vec<SocketAddr>> {
    let (any, dial) = match dial.strip_suffix("!0") {
        Some(rest) => (true, format!("{rest}!1")),
        None => (false, dial.to_owned()),
    };
    match dial::parse(&dial) {
        Ok(Target::Tcp(mut a)) => {
            if any {
                a.iter_mut().for_each(|a| a.set_port(0));
            }
            Ok(a)
        }
        Ok(_) => unreachable!("a tcp dial string"),
        Err(e) => Err(io::Error::new(e.kind(), format!("announce {addr:?}: {e}"))),
    }
}

/// Removes a socket at `path` that no server answers on. Anything else
/// there (a live server, a file that is not a socket) is an error.
fn clear_stale(path: &Path) -> io::Result<()> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !md.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a socket",
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "a live server is posted there",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}

/// Starts `f` as a new proc of the calling program, or, called outside
/// any program, as the first thread of a program of its own.
fn spawn(f: impl FnOnce() + Send + 'static) {
    if procs::local().is_some() {
        proccreate(f, CONN_STACK);
    } else {
        std::thread::Builder::new()
            .name("thread9 srv".into())
            .spawn(move || {
                let _ = crate::run(f);
            })
            .expect("thread9: cannot start a thread for the srv");
    }
}

/// A listener proc: accepts connections and gives each a proc.
fn listen(shared: Arc<Shared>, fd: OwnedFd, addr: String, slot: Arc<Mutex<Option<Ioproc>>>) {
    threadsetname(&format!("9p listen {addr}"));
    threadsetgrp(SRV_GROUP);
    let io = Ioproc::new();
    *lock(&slot) = Some(io.clone());
    let mut n = 0u64;
    while !shared.stopped.load(Ordering::SeqCst) {
        match io.accept(fd.as_fd()) {
            Ok(c) => {
                n += 1;
                let (s, peer) = (shared.clone(), format!("{addr} #{n}"));
                proccreate(move || conn::serve(s, c, peer), CONN_STACK);
            }
            // Out of descriptors, or the like: wait a little for some to
            // be freed, rather than spin or stop serving.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) =>
            {
                let _ = io.sleep(50);
            }
            // Interrupted because the Srv was dropped (the loop's test
            // ends it), or broken: then there is nothing to do but stop.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}
