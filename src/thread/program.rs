//! A program: the procs and threads started by one `run` (or
//! `threadmain`), with its own thread ids, exit status and deadlock
//! detection. Several programs may run in one process at once (each test
//! of a test binary may be one); they share nothing but the stack pool.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::osthread::OsThread;
use super::procs::{self, ProcLocal, ProcShared};
use super::{deadlock, exit, fault, sched};
use crate::util::futex;

/// A note handler (see `threadnotify`).
pub(crate) type NoteHandler = fn(&str) -> bool;

pub(crate) struct Program {
    pub(crate) id: u64,
    next_tid: AtomicU64,
    procs: Mutex<Vec<Arc<ProcShared>>>,
    /// Procs not asleep in their scheduler (running a thread, spinning, or
    /// blocked in a system call). Zero means deadlock is possible.
    pub(crate) awake: AtomicUsize,
    /// Procs not yet ended; `run` sleeps on this word.
    live: AtomicU32,
    exiting: AtomicBool,
    /// Set by threadexitsall, a panic or a deadlock; the first one wins.
    exit_status: Mutex<Option<String>>,
    /// Status of the last thread to exit.
    last_status: Mutex<Option<String>>,
    handles: Mutex<Vec<OsThread>>,
    /// Things that may wake a thread from outside any proc (a child
    /// process being waited for, a timer); while any exist there is no
    /// deadlock.
    pub(crate) external: AtomicUsize,
    pub(crate) check_lock: Mutex<()>,
    /// Note handlers installed with `threadnotify` (see `notes`).
    pub(crate) notes: Mutex<Vec<NoteHandler>>,
    /// The channel `threadwaitchan` made, once it has been asked for (see
    /// `exec`).
    pub(crate) waitchan: Mutex<Option<crate::channel::Chan<super::exec::Waitmsg>>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static PROGRAMS: Mutex<Vec<Weak<Program>>> = Mutex::new(Vec::new());
/// Procs of all programs that are not asleep in their scheduler.
static AWAKE_PROCS: AtomicUsize = AtomicUsize::new(0);

/// How many procs in the process are awake (running, polling, or in a
/// system call) rather than asleep in their scheduler.
pub(crate) fn awake_procs() -> usize {
    AWAKE_PROCS.load(Ordering::Relaxed)
}
static NEXT_PROGRAM: AtomicU64 = AtomicU64::new(1);

/// The program of the calling thread; panics (naming `what`) outside one.
#[track_caller]
pub(crate) fn current(what: &str) -> Arc<Program> {
    super::threads::current(what).proc().program.clone()
}

/// Every program running in this process.
pub(crate) fn all_programs() -> Vec<Arc<Program>> {
    lock(&PROGRAMS).iter().filter_map(Weak::upgrade).collect()
}

impl Program {
    fn new() -> Arc<Program> {
        let p = Arc::new(Program {
            id: NEXT_PROGRAM.fetch_add(1, Ordering::Relaxed),
            next_tid: AtomicU64::new(1),
            procs: Mutex::new(Vec::new()),
            awake: AtomicUsize::new(0),
            live: AtomicU32::new(0),
            exiting: AtomicBool::new(false),
            exit_status: Mutex::new(None),
            last_status: Mutex::new(None),
            handles: Mutex::new(Vec::new()),
            external: AtomicUsize::new(0),
            check_lock: Mutex::new(()),
            notes: Mutex::new(Vec::new()),
            waitchan: Mutex::new(None),
        });
        let mut all = lock(&PROGRAMS);
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&p));
        p
    }

    /// Reserves `n` consecutive thread ids; returns the first.
    pub(crate) fn take_tids(&self, n: u64) -> u64 {
        self.next_tid.fetch_add(n, Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn exiting(&self) -> bool {
        self.exiting.load(Ordering::SeqCst)
    }

    pub(crate) fn procs(&self) -> Vec<Arc<ProcShared>> {
        lock(&self.procs).clone()
    }

    /// Counts a new proc in, before its OS thread starts, so that it is
    /// awake from the start as far as deadlock detection is concerned.
    /// Counts a proc as awake again (it was asleep).
    pub(crate) fn wake_one(&self) {
        AWAKE_PROCS.fetch_add(1, Ordering::Relaxed);
        self.awake.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a proc as asleep (or gone); true if it was the last awake
    /// one of this program.
    pub(crate) fn sleep_one(&self) -> bool {
        AWAKE_PROCS.fetch_sub(1, Ordering::Relaxed);
        self.awake.fetch_sub(1, Ordering::SeqCst) == 1
    }

    pub(crate) fn add_proc(&self, p: Arc<ProcShared>) {
        self.wake_one();
        self.live.fetch_add(1, Ordering::SeqCst);
        lock(&self.procs).push(p);
    }

    /// Counts an ended proc out; wakes `run` after the last one, or checks
    /// for deadlock if the others are all asleep.
    pub(crate) fn remove_proc(&self, p: &ProcShared) {
        lock(&self.procs).retain(|q| !std::ptr::eq(&**q, p));
        let last_awake = self.sleep_one();
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            futex::wake(&self.live, i32::MAX);
        } else if last_awake {
            deadlock::check(self);
        }
    }

    /// Keeps a proc's OS thread for joining, and joins those that have
    /// ended meanwhile, so that their stacks serve the next procs.
    pub(crate) fn keep_handle(&self, h: OsThread) {
        let mut ended = Vec::new();
        {
            let mut hs = lock(&self.handles);
            let mut i = 0;
            while i < hs.len() {
                if hs[i].is_finished() {
                    ended.push(hs.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            hs.push(h);
        }
        // Outside the lock: a join waits for the thread's thread-local
        // destructors, which may take their time.
        for h in ended {
            h.join();
        }
    }

    pub(crate) fn set_last_status(&self, s: String) {
        *lock(&self.last_status) = Some(s);
    }

    /// Ends every thread of the program with `status` (unless an earlier
    /// status was set): each is marked killed, and those blocked now are
    /// woken to die.
    pub(crate) fn exit_all(&self, status: &str) {
        {
            let mut s = lock(&self.exit_status);
            if s.is_none() {
                *s = Some(status.to_string());
            }
        }
        self.exiting.store(true, Ordering::SeqCst);
        for p in self.procs() {
            for r in p.threads().iter() {
                r.get().mark_killed();
            }
            // Each proc ends the waits of its own threads (see
            // `crate::thread::wait`).
            p.attend();
        }
    }

    fn wait_ended(&self) {
        loop {
            let n = self.live.load(Ordering::SeqCst);
            if n == 0 {
                break;
            }
            futex::wait(&self.live, n);
        }
        for h in std::mem::take(&mut *lock(&self.handles)) {
            h.join();
        }
    }

    fn final_status(&self) -> Result<(), String> {
        let s = lock(&self.exit_status)
            .take()
            .or_else(|| lock(&self.last_status).take())
            .unwrap_or_default();
        if s.is_empty() { Ok(()) } else { Err(s) }
    }
}

/// Runs `f` as the first thread (id 1) of a new program on the calling OS
/// thread, which becomes the program's first proc; returns when every
/// thread of every proc has exited.
///
/// The result is the program's final status: the argument of
/// [`threadexitsall`](crate::threadexitsall), else that of the last thread
/// to exit (`Ok(())` when empty). A panic in any thread ends the program
/// with `Err("panic: <message>")`; a deadlock with `Err("deadlock")`.
/// Returning from `f` ends only thread 1: the program goes on while other
/// threads live. Several `run`s may go on at once in one process.
///
/// ```
/// let r = thread9::run(|| {
///     let c = thread9::Chan::new(0);
///     let d = c.clone();
///     thread9::threadcreate(move || d.send("hello").unwrap(), 0);
///     assert_eq!(c.recv(), Ok("hello"));
/// });
/// assert_eq!(r, Ok(()));
/// ```
pub fn run<F: FnOnce() + 'static>(f: F) -> Result<(), String> {
    if procs::local().is_some() {
        panic!(
            "thread9::run called from inside a thread9 program: a proc cannot host a \
             second program; start another proc with proccreate instead"
        );
    }
    // Before the notes thread exists: registering is cheap only while the
    // process has one OS thread.
    crate::util::membarrier::prepare();
    exit::install_panic_hook();
    fault::install();
    super::notes::install();
    let prog = Program::new();
    let shared = ProcShared::new(prog.clone());
    prog.add_proc(shared.clone());
    let local = ProcLocal::new(shared);
    local.enter(|| {
        local.spawn(f, 0, "threadmain");
        sched::run_proc(&local);
    });
    drop(local);
    prog.wait_ended();
    prog.final_status()
}

/// Plan 9's `threadmain`: runs `f(args)` as a program's first thread (see
/// [`run`]), then exits the process: status 0 if the program's final
/// status is empty, else the status is printed on stderr and the exit code
/// is 1.
///
/// ```
/// thread9::threadmain(|args| {
///     // The process's arguments, its path first.
///     assert_eq!(args, std::env::args().collect::<Vec<_>>());
///     println!("{} arguments", args.len());
/// }) // exits 0 here: the final status is empty
/// ```
pub fn threadmain<F: FnOnce(Vec<String>) + 'static>(f: F) -> ! {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| "thread9".into());
    let r = run(move || f(args));
    use std::io::Write;
    let _ = std::io::stdout().flush();
    match r {
        Ok(()) => std::process::exit(0),
        Err(s) => {
            eprintln!("{argv0}: {s}");
            std::process::exit(1)
        }
    }
}
