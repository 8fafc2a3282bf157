//! Running programs: [`threadspawn`], [`procexec`] and the wait messages
//! they produce ([`Waitmsg`], [`threadwaitchan`]).
//!
//! # How a child's end reaches a thread
//!
//! Plan 9 tells a program about its children through `wait`; libthread
//! turns that into a channel, `threadwaitchan()`, on which each child's
//! [`Waitmsg`] arrives, so that a thread can `alt` on its children's ends
//! together with everything else it waits for. thread9 does the same:
//!
//! ```
//! use std::process::Command;
//!
//! thread9::run(|| {
//!     let wc = thread9::threadwaitchan(); // ask first: earlier ends are not kept
//!     let a = thread9::threadspawn(Command::new("true")).unwrap();
//!     let b = thread9::threadspawn(Command::new("false")).unwrap();
//!     let mut ends = [wc.recv().unwrap(), wc.recv().unwrap()];
//!     ends.sort_by_key(|w| w.pid != a); // they end in any order
//!     assert_eq!((ends[0].pid, ends[0].msg.as_str()), (a, ""));
//!     assert_eq!((ends[1].pid, ends[1].msg.as_str()), (b, "1"));
//! })
//! .unwrap();
//! ```
//!
//! # Whose children, and who reaps them
//!
//! A process may hold several programs (every test of a test binary may be
//! one) and children the user started with `std::process` and waits for
//! himself. So thread9 never waits for "any child" (`waitpid(-1)`): it
//! reaps exactly the children it started, by pid, and sends each message
//! to the program that started the child, never to another.
//!
//! The reaping is done by one OS thread per process, `thread9 reaper`,
//! started by the first spawn. It sleeps in `epoll_wait` on a *pidfd* for
//! each child (a file descriptor that becomes readable when the child
//! ends; a child that ended before its pidfd was opened is still a zombie,
//! so opening one cannot miss the end), then reaps the child with
//! `wait4(pid, WNOHANG)`, which also gives its CPU times. The spawning
//! thread registers the pidfd with epoll itself, so starting a child costs
//! the reaper no wake-up; and it first tries `wait4(pid, WNOHANG)`
//! itself, since a short child has often ended by the time `spawn`
//! returns, which spares the reaper and the waiting thread's proc a
//! wake-up each. On kernels without `pidfd_open` (before 5.3), or
//! when the descriptor cannot be had, a small thread waits for that one
//! child with a blocking `wait4(pid)` instead.
//!
//! The reaper must never block or lose a message, whatever the program's
//! threads are doing, so the wait channel is unbounded (its buffer grows
//! as needed) and the reaper only ever `nbsend`s on it.
//!
//! # Deadlock detection
//!
//! A thread blocked on the wait channel is waiting for something that no
//! thread of its program can cause: a child's end. So each running child
//! counts as an outside event in its program (`Program::external`), from
//! spawn until its message has been delivered, and the program is not
//! reported as deadlocked meanwhile. When the last child's message has
//! been delivered (or discarded) and every proc of the program sleeps, the
//! reaper runs the deadlock check itself: nothing else would, and the
//! program must not hang silently.
//!
//! Once the reaper has sent on a wait channel, deadlock detection counts
//! that channel as one an outsider may act on (see the crate's deadlock
//! rules), so a thread that waits on it for a child that was never started
//! is not reported. That is the safe direction: a false report is worse
//! than none.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use super::program::{self, Program, lock};
use super::{deadlock, exit, threads};
use crate::channel::{Chan, RecvError, SendError};

/// How a child program ended: Plan 9's `Waitmsg`.
///
/// - `pid`: the child's process id, as [`threadspawn`] returned it.
/// - `time`: user CPU, system CPU and real (wall-clock) time of the child,
///   in milliseconds. The CPU times are the kernel's (`wait4`'s rusage);
///   the real time is measured from the spawn to the moment thread9 saw the
///   child end (plan9port reports user + sys instead).
/// - `msg`: empty when the child exited with status 0; otherwise the exit
///   status as a number (`"3"`), or, for a child killed by a signal,
///   `"signal: "` and the signal's Plan 9 note name, as plan9port writes
///   it (`"signal: sys: kill"` for `SIGKILL`, `"signal: interrupt"` for
///   `SIGINT`), followed by `" (core dumped)"` if it dumped core.
///
/// Its `Display` form is Plan 9's wait string: `pid user sys real 'msg'`,
/// the message quoted as `rc` would need it.
///
/// ```
/// thread9::run(|| {
///     let wc = thread9::threadwaitchan();
///     let mut cmd = std::process::Command::new("sh");
///     cmd.args(["-c", "exit 3"]);
///     let pid = thread9::threadspawn(cmd).unwrap();
///     let w = wc.recv().unwrap();
///     assert_eq!(w.pid, pid);
///     assert_eq!(w.msg, "3");
///     assert!(!w.success());
///     assert!(w.to_string().starts_with(&format!("{pid} ")));
/// })
/// .unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Waitmsg {
    /// The child's process id.
    pub pid: u32,
    /// User CPU, system CPU and real time, in milliseconds.
    pub time: [u64; 3],
    /// `""` for success, else the exit status or the signal.
    pub msg: String,
}

impl Waitmsg {
    /// True when the child exited with status 0 (`msg` is empty).
    ///
    /// ```
    /// thread9::run(|| {
    ///     let wc = thread9::threadwaitchan();
    ///     thread9::threadspawn(std::process::Command::new("true")).unwrap();
    ///     assert!(wc.recv().unwrap().success());
    ///     let killed = thread9::Waitmsg { msg: "signal: sys: kill".into(), ..Default::default() };
    ///     assert!(!killed.success());
    /// }).unwrap();
    /// ```
    pub fn success(&self) -> bool {
        self.msg.is_empty()
    }
}

impl fmt::Display for Waitmsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [u, s, r] = self.time;
        write!(f, "{} {u} {s} {r} ", self.pid)?;
        // Plan 9's %q: quote when empty or when rc would split or misread it.
        let plain = !self.msg.is_empty()
            && !self
                .msg
                .chars()
                .any(|c| c.is_whitespace() || "'`^#;&|()<>{}=$".contains(c));
        if plain {
            f.write_str(&self.msg)
        } else {
            write!(f, "'{}'", self.msg.replace('\'', "''"))
        }
    }
}

/// The calling program's wait channel (Plan 9's `threadwaitchan`): the
/// [`Waitmsg`] of every child it starts with [`threadspawn`] or
/// [`procexec`] arrives on it, in the order the children end.
///
/// The channel is made on the program's first call, and later calls
/// return the same channel. Only children that end after that first call
/// are reported: until then a program that never asks is spared an ever
/// growing queue, and their messages are discarded. The channel is
/// unbounded (its [`capacity`](Chan::capacity) is `usize::MAX`), so a
/// message is never lost or held up however many children end at once
/// and however late the program reads. Several threads may receive from
/// it; each message goes to one of them. Use [`procexec`]'s own wait if a
/// thread must get one particular child's end.
///
/// Panics when called outside a thread9 program.
///
/// ```
/// thread9::run(|| {
///     let wc = thread9::threadwaitchan();
///     assert!(wc.same(&thread9::threadwaitchan()));
///     let pid = thread9::threadspawn(std::process::Command::new("true")).unwrap();
///     let w = wc.recv().unwrap();
///     assert_eq!((w.pid, w.msg.as_str()), (pid, ""));
/// })
/// .unwrap();
/// ```
pub fn threadwaitchan() -> Chan<Waitmsg> {
    let prog = program::current("threadwaitchan");
    lock(&prog.waitchan)
        .get_or_insert_with(|| {
            let c = Chan::new(usize::MAX);
            c.set_name("threadwaitchan");
            c
        })
        .clone()
}

/// Starts the program `cmd` describes and returns its pid, without
/// waiting for it (plan9port's `threadspawn`). The calling thread goes on;
/// the child's [`Waitmsg`] arrives on [`threadwaitchan`] when it ends, if
/// the program has asked for that channel by then.
///
/// `cmd` is a plain [`std::process::Command`]: set its arguments,
/// environment, directory and descriptors as usual. Its `Child` handle is
/// dropped, so `Stdio::piped()` ends are closed at once: to talk to the
/// child, hand it descriptors of your own (`Stdio::from`). thread9 reaps
/// the child; do not wait for it yourself. Children you start with
/// `std::process` and wait for yourself are never touched.
///
/// A program that cannot be started (not found, not executable, ...) is
/// the error `Command::spawn` reports, and nothing arrives on the wait
/// channel. While any child started this way runs, its program is not
/// reported as deadlocked: the child's end may still wake a thread.
///
/// Panics when called outside a thread9 program.
///
/// ```
/// use std::process::Command;
///
/// thread9::run(|| {
///     let wc = thread9::threadwaitchan();
///     let mut sleeper = Command::new("sleep");
///     sleeper.arg("0.1");
///     let pid = thread9::threadspawn(sleeper).unwrap();
///     let w = wc.recv().unwrap(); // thread 1 waits; its proc's other threads would run
///     assert_eq!(w.pid, pid);
///     assert!(w.time[2] >= 100, "real time covers the sleep");
///
///     let e = thread9::threadspawn(Command::new("/no/such/program")).unwrap_err();
///     assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
/// })
/// .unwrap();
/// ```
pub fn threadspawn(cmd: Command) -> io::Result<u32> {
    let prog = program::current("threadspawn");
    start(&prog, cmd, None)
}

/// Runs `prog` with `args` as its argument vector, then ends the calling
/// thread when the program ends (Plan 9's `procexec`). Returns only when
/// the program cannot be started.
///
/// As in Plan 9, `args[0]` is the new program's `argv[0]` and the
/// arguments proper follow (an empty `args` gives `prog` as `argv[0]`);
/// `prog` is looked up in `PATH` when it has no `/`. The child's pid is
/// sent on `cpid` (if given), or -1 if it could not be started, in which
/// case the error is returned. Otherwise the thread waits for the child,
/// sends a copy of its [`Waitmsg`] on [`threadwaitchan`] (if the program
/// has asked for that channel), and exits with the child's `msg` as its
/// status ([`threadexits`](crate::threadexits)): `""` for success, `"3"`,
/// `"signal: sys: kill"`, ...
///
/// Unlike Plan 9, the proc is not replaced by the new program (a Unix
/// process cannot exec in one of its threads alone): only the calling
/// thread waits, and the other threads of its proc keep running
/// meanwhile. Each `procexec` waits for its own child alone, so several
/// may run at once, in any procs.
///
/// Panics when called outside a thread9 program.
///
/// ```
/// thread9::run(|| {
///     let waits = thread9::threadwaitchan();
///     let cpid = thread9::Chan::new(1);
///     let c = cpid.clone();
///     thread9::threadcreate(
///         move || {
///             let e = thread9::procexec(Some(&c), "sh", &["sh", "-c", "exit 3"]);
///             panic!("only a failure returns: {e}");
///         },
///         0,
///     );
///     let pid = cpid.recv().unwrap();
///     assert!(pid > 0);
///     // The child's Waitmsg reaches the wait channel too; the procexec
///     // thread ends with the same status, "3".
///     let w = waits.recv().unwrap();
///     assert_eq!((i64::from(w.pid), w.msg.as_str()), (pid, "3"));
/// })
/// .ok(); // the program's status is that of whichever thread ends last
///
/// thread9::run(|| {
///     let cpid = thread9::Chan::new(1);
///     let e = thread9::procexec(Some(&cpid), "/no/such/program", &["x"]);
///     assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
///     assert_eq!(cpid.recv(), Ok(-1));
/// })
/// .unwrap();
/// ```
pub fn procexec(cpid: Option<&Chan<i64>>, prog: &str, args: &[&str]) -> io::Error {
    let program = program::current("procexec");
    let mut cmd = Command::new(prog);
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    // Room for the one message, so that the reaper's nbsend cannot fail
    // while this thread is on its way to receive it.
    let mine = Chan::new(1);
    let pid = match start(&program, cmd, Some(mine.clone())) {
        Ok(pid) => pid,
        Err(e) => {
            if let Some(c) = cpid {
                let _ = send_steadily(c, -1);
            }
            return e;
        }
    };
    mine.set_name(&format!("procexec pid {pid}"));
    let mut waiting = Waiting {
        chan: mine,
        prog: Arc::downgrade(&program),
        got: false,
    };
    drop(program);
    if let Some(c) = cpid
        && send_steadily(c, i64::from(pid)).is_err()
    {
        return killed_waiting();
    }
    let m = loop {
        match waiting.chan.recv() {
            Ok(m) => break m,
            Err(RecvError::Interrupted) if !threads::current("procexec").is_killed() => {
                // threadint ends a blocking operation, but procexec
                // returns only when nothing was started: once the child
                // runs, the thread ends with its status, so keep waiting.
            }
            Err(_) => return killed_waiting(),
        }
    };
    waiting.got = true;
    if let Some(p) = waiting.prog.upgrade() {
        post(&p, m.clone());
    }
    drop(waiting);
    exit::threadexits(&m.msg)
}

/// Sends on a channel the user gave, riding out `threadint` (the value
/// must arrive); fails only when the thread is being killed. A closed
/// channel just has no one to tell.
fn send_steadily(c: &Chan<i64>, v: i64) -> Result<(), ()> {
    loop {
        match c.send(v) {
            Err(SendError::Interrupted(_)) => {
                if threads::current("procexec").is_killed() {
                    return Err(());
                }
            }
            _ => return Ok(()),
        }
    }
}

/// procexec's answer when its thread is killed while a destructor runs
/// (a killed thread normally unwinds at the blocking point instead).
fn killed_waiting() -> io::Error {
    io::Error::new(
        io::ErrorKind::Interrupted,
        "procexec: the thread was killed while waiting for its child",
    )
}

/// A procexec thread's wait for its child. If the thread leaves without
/// the message (killed, or a panic), the message goes to the program's
/// wait channel instead, whichever side gets there first: closing the
/// private channel makes the reaper's later send fail (the reaper then
/// posts the message itself), and a message already in it is drained here.
struct Waiting {
    chan: Chan<Waitmsg>,
    prog: Weak<Program>,
    got: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.got {
            return;
        }
        self.chan.close();
        if let (Ok(m), Some(p)) = (self.chan.nbrecv(), self.prog.upgrade()) {
            post(&p, m);
        }
    }
}

/// Spawns `cmd` for `prog` and has the reaper watch it; its message goes
/// to `exec` if given (falling back to the wait channel), else to the wait
/// channel.
fn start(prog: &Arc<Program>, mut cmd: Command, exec: Option<Chan<Waitmsg>>) -> io::Result<u32> {
    let t0 = Instant::now();
    let child = cmd.spawn()?;
    let pid = child.id();
    // Dropping a std Child neither waits for nor kills the process: it is
    // the reaper's from here on.
    drop(child);
    // Counted before the reaper can know of the child, so that its end
    // cannot uncount what was never counted.
    prog.external.fetch_add(1, Ordering::SeqCst);
    let w = Watch {
        pid: pid as libc::pid_t,
        start: t0,
        prog: Arc::downgrade(prog),
        exec,
    };
    // A short child has often ended by now (spawn returns only once the
    // exec has happened, and the child may run meanwhile): reaping it here
    // spares the reaper and the waiting proc a wake-up each. Until the child is registered, no one else
    // waits for it, so this cannot race the reaper.
    match wait4(w.pid, libc::WNOHANG) {
        Ok(Some((status, ru))) => {
            finish(w, describe(status), ru_times(&ru));
            return Ok(pid);
        }
        Ok(None) => {}
        Err(e) => {
            finish(w, lost(&e), [0, 0]);
            return Ok(pid);
        }
    }
    if let Err(e) = watch(w) {
        // No one could ever report this child, and its program would count
        // it as running for good: do not leave it running unseen. We are
        // running, so the program cannot be waiting on the count now.
        // SAFETY: kill and wait4 on our own unreaped child, whose pid is
        // therefore still its own.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        let _ = wait4(pid as libc::pid_t, 0);
        prog.external.fetch_sub(1, Ordering::SeqCst);
        return Err(e);
    }
    Ok(pid)
}

/// A child being watched: who gets its message.
struct Watch {
    pid: libc::pid_t,
    start: Instant,
    /// Weak: a program that has ended wants no messages and must not be
    /// kept alive by its children.
    prog: Weak<Program>,
    /// procexec's private channel.
    exec: Option<Chan<Waitmsg>>,
}

/// Hands `w` to the reaper, or to a thread of its own.
fn watch(w: Watch) -> io::Result<()> {
    let w = match (pidfd_open(w.pid), reaper()) {
        (Ok(fd), Some(r)) => match r.add(fd, w) {
            Ok(()) => return Ok(()),
            Err(w) => w,
        },
        _ => w,
    };
    wait_in_thread(w)
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new
    // descriptor (close-on-exec) or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is new and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The fallback: a thread blocked in `wait4` for one child.
fn wait_in_thread(w: Watch) -> io::Result<()> {
    std::thread::Builder::new()
        .name(format!("thread9 wait {}", w.pid))
        .stack_size(64 << 10)
        .spawn(move || match wait4(w.pid, 0) {
            Ok(Some((status, ru))) => finish(w, describe(status), ru_times(&ru)),
            Ok(None) => unreachable!("a blocking wait4 returned no child"),
            Err(e) => finish(w, lost(&e), [0, 0]),
        })
        .map(drop)
}

/// Waits for child `pid` (`flags`: 0 or `WNOHANG`); `None` when it is
/// still running.
fn wait4(pid: libc::pid_t, flags: i32) -> io::Result<Option<(i32, libc::rusage)>> {
    loop {
        let mut status = 0;
        let mut ru = MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: both pointers are to live locals of the right types.
        let r = unsafe { libc::wait4(pid, &mut status, flags, ru.as_mut_ptr()) };
        if r == pid {
            // SAFETY: zeroed is a valid rusage, and wait4 filled it.
            return Ok(Some((status, unsafe { ru.assume_init() })));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The message for a child that could not be waited for: someone else
/// reaped it (a `waitpid(-1)` elsewhere, or `SIGCHLD` ignored).
fn lost(e: &io::Error) -> String {
    format!("wait4: {e}")
}

/// The process-wide reaper: an epoll set of children's pidfds, each
/// keyed by a token that is never reused (a pid may be, as soon as it is
/// reaped).
struct Reaper {
    epfd: OwnedFd,
    children: Mutex<HashMap<u64, (OwnedFd, Watch)>>,
    next: AtomicU64,
}

/// The reaper, started on first use; `None` if it could not be (the
/// children then get threads of their own).
fn reaper() -> Option<&'static Reaper> {
    static REAPER: OnceLock<Option<Reaper>> = OnceLock::new();
    REAPER
        .get_or_init(|| {
            // SAFETY: epoll_create1 takes flags and returns a new
            // descriptor or -1.
            let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if fd < 0 {
                return None;
            }
            // SAFETY: the descriptor is new and nobody else owns it.
            let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
            Some(Reaper {
                epfd,
                children: Mutex::new(HashMap::new()),
                next: AtomicU64::new(1),
            })
        })
        .as_ref()
        .filter(|r| r.ensure_running())
}

impl Reaper {
    /// Starts the reaper's thread once; false if it cannot be started.
    fn ensure_running(&'static self) -> bool {
        static STARTED: OnceLock<bool> = OnceLock::new();
        *STARTED.get_or_init(|| {
            std::thread::Builder::new()
                .name("thread9 reaper".into())
                .stack_size(128 << 10)
                .spawn(move || self.serve())
                .is_ok()
        })
    }

    /// Watches `fd`, the pidfd of `w`'s child; gives `w` back if epoll
    /// will not take it.
    fn add(&self, fd: OwnedFd, w: Watch) -> Result<(), Watch> {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let raw = fd.as_raw_fd();
        // In the table before epoll can report it.
        lock(&self.children).insert(token, (fd, w));
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open (the table owns `raw` and
        // only the reaper removes it, after an event that this call has
        // not produced yet); `ev` is a live local.
        let r =
            unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, raw, &mut ev) };
        if r < 0 {
            let (_, w) = lock(&self.children)
                .remove(&token)
                .expect("a child epoll never reported is still in the table");
            return Err(w);
        }
        Ok(())
    }

    fn serve(&self) -> ! {
        const NEV: usize = 64;
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; NEV];
        loop {
            // SAFETY: `evs` has room for NEV events.
            let n = unsafe {
                libc::epoll_wait(self.epfd.as_raw_fd(), evs.as_mut_ptr(), NEV as i32, -1)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    // Not expected with a valid set; do not spin on it.
                    eprintln!("thread9: reaper: epoll_wait: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                continue;
            }
            for ev in &evs[..n as usize] {
                self.reap(ev.u64);
            }
        }
    }

    /// Reaps the child of `token`, whose pidfd is readable.
    fn reap(&self, token: u64) {
        let Some(pid) = lock(&self.children).get(&token).map(|(_, w)| w.pid) else {
            return;
        };
        let (result, times) = match wait4(pid, libc::WNOHANG) {
            Ok(Some((status, ru))) => (describe(status), ru_times(&ru)),
            Ok(None) => {
                // Readable yet not waitable: the kernel is between the two.
                // The event is level-triggered and will come again.
                std::thread::yield_now();
                return;
            }
            Err(e) => (lost(&e), [0, 0]),
        };
        let (fd, w) = lock(&self.children)
            .remove(&token)
            .expect("only the reaper removes a reported child");
        // Explicitly, not by closing: a fork elsewhere may hold a copy of
        // the pidfd until it execs, keeping the registration alive.
        // SAFETY: both descriptors are open; a null event is allowed for
        // EPOLL_CTL_DEL.
        unsafe {
            libc::epoll_ctl(
                self.epfd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            )
        };
        drop(fd);
        finish(w, result, times);
    }
}

/// Delivers the end of `w`'s child, then uncounts it.
fn finish(w: Watch, msg: String, [user, sys]: [u64; 2]) {
    let real = w.start.elapsed().as_millis() as u64;
    let m = Waitmsg {
        pid: w.pid as u32,
        time: [user, sys, real],
        msg,
    };
    let Some(prog) = w.prog.upgrade() else {
        return;
    };
    let left = match &w.exec {
        Some(c) => c.nbsend(m).err().map(|e| e.into_inner()),
        None => Some(m),
    };
    if let Some(m) = left {
        post(&prog, m);
    }
    drop(w);
    // After the delivery, so that a thread it woke is seen before the
    // count drops. The last proc to fall asleep checks for deadlock while
    // the count is up and lets it go; if every proc sleeps now, no one
    // else would check again. (SeqCst on both sides: either that proc sees
    // the count gone, or we see it asleep.)
    if prog.external.fetch_sub(1, Ordering::SeqCst) == 1 && prog.awake.load(Ordering::SeqCst) == 0 {
        deadlock::check(&prog);
    }
}

/// Puts `m` on the program's wait channel, if it has asked for one.
fn post(prog: &Program, m: Waitmsg) {
    let c = lock(&prog.waitchan).clone();
    if let Some(c) = c {
        // Unbounded, so only a channel the user closed refuses; then no
        // one wants the message.
        let _ = c.nbsend(m);
    }
}

/// User and system time in milliseconds, rounded as plan9port does.
fn ru_times(ru: &libc::rusage) -> [u64; 2] {
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + (t.tv_usec as u64 + 500) / 1000;
    [ms(ru.ru_utime), ms(ru.ru_stime)]
}

/// A wait status as plan9port's `await` writes it.
fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => String::new(),
            n => n.to_string(),
        }
    } else if libc::WIFSIGNALED(status) {
        let core = if libc::WCOREDUMP(status) {
            " (core dumped)"
        } else {
            ""
        };
        format!("signal: {}{core}", signal_name(libc::WTERMSIG(status)))
    } else {
        // wait4 without WUNTRACED reports only ends; keep the raw status
        // rather than inventing a meaning.
        format!("status {status:#x}")
    }
}

/// plan9port's note name for a signal (lib9/await.c).
fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "hangup",
        libc::SIGINT => "interrupt",
        libc::SIGQUIT => "quit",
        libc::SIGILL => "sys: illegal instruction",
        libc::SIGTRAP => "sys: breakpoint",
        libc::SIGABRT => "sys: abort",
        libc::SIGFPE => "sys: fp: trap",
        libc::SIGKILL => "sys: kill",
        libc::SIGBUS => "sys: bus error",
        libc::SIGSEGV => "sys: segmentation violation",
        libc::SIGALRM => "alarm",
        libc::SIGTERM => "kill",
        libc::SIGURG => "sys: urgent condition on socket",
        libc::SIGSTOP => "sys: stop",
        libc::SIGTSTP => "sys: tstp",
        libc::SIGCONT => "sys: cont",
        libc::SIGCHLD => "sys: child",
        libc::SIGTTIN => "sys: ttin",
        libc::SIGTTOU => "sys: ttou",
        libc::SIGIO => "sys: i/o possible on fd",
        libc::SIGXCPU => "sys: cpu time limit exceeded",
        libc::SIGXFSZ => "sys: file size limit exceeded",
        libc::SIGVTALRM => "sys: virtual time alarm",
        libc::SIGPROF => "sys: profiling timer alarm",
        libc::SIGWINCH => "sys: window size change",
        libc::SIGUSR1 => "sys: usr1",
        libc::SIGUSR2 => "sys: usr2",
        libc::SIGPIPE => "sys: write on closed pipe",
        n => return format!("sys: signal {n}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(describe(0), "");
        assert_eq!(describe(3 << 8), "3");
        assert_eq!(describe(libc::SIGKILL), "signal: sys: kill");
        assert_eq!(
            describe(libc::SIGSEGV | 0x80),
            "signal: sys: segmentation violation (core dumped)"
        );
        assert_eq!(signal_name(libc::SIGTERM), "kill");
        assert_eq!(
            signal_name(libc::SIGRTMIN() + 1),
            format!("sys: signal {}", libc::SIGRTMIN() + 1)
        );
    }

    #[test]
    fn display() {
        let mut w = Waitmsg {
            pid: 7,
            time: [1, 2, 3],
            msg: String::new(),
        };
        assert_eq!(w.to_string(), "7 1 2 3 ''");
        w.msg = "3".into();
        assert_eq!(w.to_string(), "7 1 2 3 3");
        w.msg = "signal: sys: kill".into();
        assert_eq!(w.to_string(), "7 1 2 3 'signal: sys: kill'");
        w.msg = "it's".into();
        assert_eq!(w.to_string(), "7 1 2 3 'it''s'");
    }

    /// The fallback for kernels without pidfd_open, which the machine
    /// running the tests probably is not.
    #[test]
    fn thread_per_child() {
        let r = crate::run(|| {
            let prog = program::current("test");
            let wc = threadwaitchan();
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "exit 4"]);
            let child = cmd.spawn().unwrap();
            let pid = child.id();
            drop(child);
            prog.external.fetch_add(1, Ordering::SeqCst);
            wait_in_thread(Watch {
                pid: pid as libc::pid_t,
                start: Instant::now(),
                prog: Arc::downgrade(&prog),
                exec: None,
            })
            .unwrap();
            let w = wc.recv().unwrap();
            assert_eq!((w.pid, w.msg.as_str()), (pid, "4"));
            // The waiting thread lets go of the program just after the
            // delivery (see `finish`): it must, soon.
            let deadline = Instant::now() + std::time::Duration::from_secs(30);
            while prog.external.load(Ordering::SeqCst) != 0 {
                assert!(Instant::now() < deadline, "the wait thread never let go");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        assert_eq!(r, Ok(()));
    }
}
