//! Notes: Unix signals delivered to programs as Plan 9 notes.
//!
//! On Plan 9 a *note* is a short string the system (or another process)
//! posts to a process when something happens outside its normal flow: the
//! user typed the interrupt key (`interrupt`), the line hung up
//! (`hangup`), an alarm went off (`alarm`). A program may install note
//! handlers; each is called with the note's text and returns true if it
//! dealt with it. A note that no handler accepts kills the program, and
//! the note becomes its exit status. libthread's `threadnotify(f, 1)`
//! installs `f`, `threadnotify(f, 0)` removes it.
//!
//! Unix has signals instead. Like plan9port, thread9 turns these signals
//! into notes with plan9port's names (from its `lib9/await.c`):
//!
//! | signal    | note                          |
//! |-----------|-------------------------------|
//! | `SIGHUP`  | `hangup`                      |
//! | `SIGINT`  | `interrupt`                   |
//! | `SIGALRM` | `alarm`                       |
//! | `SIGTERM` | `kill`                        |
//! | `SIGUSR1` | `sys: usr1`                   |
//! | `SIGUSR2` | `sys: usr2`                   |
//! | `SIGPIPE` | `sys: write on closed pipe`   |
//!
//! `SIGQUIT` (`^\` at a terminal) is not a note: it prints
//! [`threaddump`](crate::threaddump) of every program on stderr, and the
//! programs go on, like acid's `stacks` on a Plan 9 process.
//!
//! # How a signal becomes a note
//!
//! Every [`run`](crate::run) calls [`install`], which takes each of the
//! signals above whose disposition is still the default (`SIG_DFL`):
//! signals the process has set up itself (a handler of its own, or
//! `SIG_IGN`) are left alone. Our signal handler only sets a bit in a mask
//! of pending signals and wakes the "thread9 notes" OS thread: a signal
//! handler interrupts arbitrary code (perhaps code holding the allocator's
//! lock) and may do little more. The handlers are installed with
//! `SA_RESTART`, so a system call that a signal interrupts in some
//! unrelated part of the program restarts instead of failing with `EINTR`.
//!
//! The notes thread then does the real work, outside signal context. For
//! each pending signal, for each program running in the process (signals
//! belong to the process, so every program gets the note), it calls the
//! program's handlers in the order they were installed until one returns
//! true; if none does, it ends the program with the note as its status:
//! `run` returns `Err("interrupt")`, `threadmain` prints it and exits 1.
//!
//! So handlers run on the notes thread, not on one of the program's procs:
//! they may use anything a plain OS thread may (send on a channel, lock a
//! mutex, even call [`threadnotify`], which then applies to the program
//! being notified), but cannot call functions that need a calling thread
//! (`threadexits`, `threadid`, ...). They should be quick and must not block
//! for long: one thread delivers every note to every program, so a handler
//! that waits holds up all later notes. To hand a note to a thread, send it
//! on a buffered channel (or use `nbsend`).
//!
//! While a program has a handler installed, it is never reported as
//! deadlocked: a note may arrive at any time and the handler may wake a
//! thread. A program that waits only for a note therefore just waits.
//!
//! When no program is running, thread9 steps aside: the signal gets its
//! default action (the disposition is reset to `SIG_DFL` and the signal is
//! sent again to the process), so `^C` between two `run`s ends the process
//! as it would without thread9.
//!
//! # `SIGPIPE`
//!
//! The Rust runtime sets `SIGPIPE` to `SIG_IGN` before `main`, so in an
//! ordinary Rust binary thread9 leaves it ignored: a write to a pipe or
//! socket whose reader has gone fails with `EPIPE`
//! ([`ErrorKind::BrokenPipe`](std::io::ErrorKind::BrokenPipe)) and there is
//! no note. A program that wants Plan 9's behaviour resets it before `run`
//! (`libc::signal(libc::SIGPIPE, libc::SIG_DFL)`); the write still fails
//! with `EPIPE`, and the note `sys: write on closed pipe` follows, ending
//! the program unless a handler accepts it.
//!
//! # Differences from Plan 9
//!
//! - Handlers are per program, not per proc, and run on the notes thread
//!   rather than interrupting one of the program's threads.
//! - Only the signals in the table become notes; faults (`SIGSEGV`, ...)
//!   keep their Unix behaviour (see [`super::fault`]).
//! - Two identical signals that arrive before the notes thread has seen the
//!   first are one note, as Unix merges pending signals.
//! - A note that ends a program ends its threads the way
//!   [`threadexitsall`](crate::threadexitsall) does: at their next blocking
//!   point. A system call a proc is blocked in is not cut short (the
//!   handlers use `SA_RESTART`), so a thread stuck in a plain `read` of the
//!   terminal ends only when the read returns. Blocking I/O belongs in an
//!   [`Ioproc`](crate::Ioproc), whose calls a dying caller interrupts.
//!   A program that gets another note it does not accept while it is
//!   still ending (a thread computing, or in such a call) cannot be ended
//!   that way; the process then gets the signal's default action, so a
//!   second `^C` stops it as it would stop any Unix program.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once};

use super::exit::{self, Exit};
use super::program::{self, Program, lock};
use super::{deadlock, dump};
use crate::util::futex;

/// The signals that become notes, with plan9port's names for them.
const NOTES: [(libc::c_int, &str); 7] = [
    (libc::SIGHUP, "hangup"),
    (libc::SIGINT, "interrupt"),
    (libc::SIGUSR1, "sys: usr1"),
    (libc::SIGUSR2, "sys: usr2"),
    (libc::SIGPIPE, "sys: write on closed pipe"),
    (libc::SIGALRM, "alarm"),
    (libc::SIGTERM, "kill"),
];

/// Every signal we take, in the order pending ones are handled: by number,
/// so that `SIGQUIT` (3) comes before the notes sent after it.
const SIGNALS: [libc::c_int; 8] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGTERM,
];

/// One bit per signal number (all of ours are below 32).
const fn bit(sig: libc::c_int) -> u32 {
    1 << sig
}

/// Signals caught but not yet handled by the notes thread, which sleeps on
/// this word while it is zero.
static PENDING: AtomicU32 = AtomicU32::new(0);
/// Signals whose disposition is our handler, so that `install` need not
/// ask the kernel again about them.
static INSTALLED: AtomicU32 = AtomicU32::new(0);
/// Serialises changes of disposition, so two `run`s starting at once do not
/// interleave their look-and-set.
static DISPOSITIONS: Mutex<()> = Mutex::new(());

thread_local! {
    /// On the notes thread, while a program's handlers run: that program,
    /// so that a handler's `threadnotify` applies to it.
    static DELIVERING: RefCell<Option<Arc<Program>>> = const { RefCell::new(None) };
}

/// Takes every note signal whose disposition is still `SIG_DFL`, and starts
/// the notes thread the first time. Called by every `run`; after the first
/// call it costs one `sigaction` query per signal we do not hold (typically
/// `SIGPIPE`, which Rust ignores).
pub(crate) fn install() {
    let all = SIGNALS.iter().fold(0, |m, &s| m | bit(s));
    if INSTALLED.load(Ordering::Acquire) & all == all {
        return;
    }
    start_notes_thread();
    let _one_at_a_time = lock(&DISPOSITIONS);
    for sig in SIGNALS {
        if INSTALLED.load(Ordering::Relaxed) & bit(sig) != 0 {
            continue;
        }
        // SAFETY: sigaction with a null new action only reads the current
        // disposition into `old`, a valid zeroed struct.
        let old = unsafe {
            let mut old: libc::sigaction = MaybeUninit::zeroed().assume_init();
            libc::sigaction(sig, ptr::null(), &mut old);
            old
        };
        if old.sa_sigaction != libc::SIG_DFL {
            continue;
        }
        // SAFETY: a zeroed sigaction plus the fields set here is a valid
        // request; the handler is async-signal-safe (see `on_signal`) and
        // everything it touches is static, so it may run from now on.
        unsafe {
            let mut new: libc::sigaction = MaybeUninit::zeroed().assume_init();
            new.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            new.sa_flags = libc::SA_RESTART | libc::SA_ONSTACK;
            libc::sigemptyset(&mut new.sa_mask);
            libc::sigaction(sig, &new, ptr::null_mut());
        }
        INSTALLED.fetch_or(bit(sig), Ordering::Release);
    }
}

/// The signal handler: records the signal and wakes the notes thread.
///
/// It touches only a static atomic word (lock-free on every Linux target)
/// and makes one raw `futex` system call, both async-signal-safe; it
/// allocates nothing, takes no lock, and leaves `errno` as it found it.
extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: errno is the interrupted thread's own; we restore it below so
    // the interrupted code never sees our system call's errno.
    let errno = unsafe { *libc::__errno_location() };
    PENDING.fetch_or(bit(sig), Ordering::Release);
    futex::wake(&PENDING, 1);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

fn start_notes_thread() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::thread::Builder::new()
            .name("thread9 notes".into())
            .spawn(notes_thread)
            .expect("thread9: cannot start the notes thread");
    });
}

fn notes_thread() {
    // This thread is ours, not the program's: leave every signal to the
    // program's threads, so that a signal re-sent for its default action
    // (or waited for with sigwait) goes where it would without us, and our
    // futex sleep is never cut short.
    // SAFETY: sigfillset initialises the set; changing the calling
    // thread's own mask is always allowed.
    unsafe {
        let mut all: libc::sigset_t = MaybeUninit::zeroed().assume_init();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, ptr::null_mut());
    }
    loop {
        let pending = PENDING.swap(0, Ordering::Acquire);
        if pending == 0 {
            futex::wait(&PENDING, 0);
            continue;
        }
        for sig in SIGNALS {
            if pending & bit(sig) != 0 {
                handle(sig);
            }
        }
    }
}

/// Handles one caught signal on the notes thread.
fn handle(sig: libc::c_int) {
    let running: Vec<Arc<Program>> = program::all_programs()
        .into_iter()
        .filter(|p| !p.procs().is_empty())
        .collect();
    if running.is_empty() {
        default_action(sig);
        return;
    }
    if sig == libc::SIGQUIT {
        eprint!("thread9: quit\n{}", dump::threaddump());
        return;
    }
    let Some(&(_, note)) = NOTES.iter().find(|(s, _)| *s == sig) else {
        return;
    };
    // A program that is already ending (an earlier note, say) and gets
    // another note it does not accept has not reached a blocking point
    // since: a thread computing, or stuck in a system call. Its threads
    // cannot be ended, so the process is, by the signal's default action:
    // a second ^C stops any program.
    let mut stuck = false;
    for prog in &running {
        let ending = prog.exiting();
        if !notify(prog, note) && ending {
            stuck = true;
        }
    }
    if stuck {
        default_action(sig);
    }
}

/// Offers `note` to `prog`'s handlers; ends the program if none accepts.
/// Returns whether one did.
fn notify(prog: &Arc<Program>, note: &str) -> bool {
    // A handler is an outsider that may wake a thread (or remove the last
    // handler, dropping the count `threadnotify` holds): keep the program
    // from being judged deadlocked until the handlers are done.
    prog.external.fetch_add(1, Ordering::SeqCst);
    // A copy, so that a handler may call threadnotify.
    let handlers = lock(&prog.notes).clone();
    DELIVERING.with(|d| *d.borrow_mut() = Some(prog.clone()));
    let mut verdict = Err(note.to_string());
    for f in handlers {
        match panic::catch_unwind(AssertUnwindSafe(|| f(note))) {
            Ok(true) => {
                verdict = Ok(());
                break;
            }
            Ok(false) => {}
            Err(payload) => {
                // As a panic in one of its threads would.
                verdict = Err(match exit::classify(payload) {
                    Exit::Panic(msg) => format!("panic: {msg}"),
                    _ => "panic".to_string(),
                });
                break;
            }
        }
    }
    DELIVERING.with(|d| *d.borrow_mut() = None);
    let accepted = verdict.is_ok();
    if let Err(status) = verdict {
        prog.exit_all(&status);
    }
    // If every proc fell asleep while the handlers ran, the last one to do
    // so found us counted and did not check; check for it now. (SeqCst on
    // both sides: either it sees our decrement or we see it asleep.)
    prog.external.fetch_sub(1, Ordering::SeqCst);
    if prog.awake.load(Ordering::SeqCst) == 0 {
        deadlock::check(prog);
    }
    accepted
}

/// No program runs: give `sig` the effect it would have without thread9.
/// Every signal we take terminates the process by default, so this
/// normally does not return.
fn default_action(sig: libc::c_int) {
    let _one_at_a_time = lock(&DISPOSITIONS);
    // SAFETY: querying and setting a disposition with valid (zeroed, then
    // filled) structs; we reset only our own handler, never one the
    // process installed since. kill to our own pid is always allowed.
    unsafe {
        let mut cur: libc::sigaction = MaybeUninit::zeroed().assume_init();
        libc::sigaction(sig, ptr::null(), &mut cur);
        if cur.sa_sigaction == on_signal as extern "C" fn(libc::c_int) as usize {
            let mut dfl: libc::sigaction = MaybeUninit::zeroed().assume_init();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut dfl.sa_mask);
            libc::sigaction(sig, &dfl, ptr::null_mut());
            INSTALLED.fetch_and(!bit(sig), Ordering::Release);
        }
        // To the process, not this thread, which blocks every signal.
        libc::kill(libc::getpid(), sig);
    }
}

/// Installs (`install` true) or removes (`install` false) the note handler
/// `f` for the calling program. Plan 9's `threadnotify(f, 1)` and
/// `threadnotify(f, 0)`.
///
/// When a note arrives, the program's handlers are called in the order
/// they were installed with the note's text until one returns true; a note
/// no handler accepts ends the program with the note as its status. Notes
/// are Unix signals with plan9port's names:
///
/// | signal    | note                          |
/// |-----------|-------------------------------|
/// | `SIGHUP`  | `hangup`                      |
/// | `SIGINT`  | `interrupt`                   |
/// | `SIGALRM` | `alarm`                       |
/// | `SIGTERM` | `kill`                        |
/// | `SIGUSR1` | `sys: usr1`                   |
/// | `SIGUSR2` | `sys: usr2`                   |
/// | `SIGPIPE` | `sys: write on closed pipe`   |
///
/// `SIGPIPE` is a note only if the process has reset it to `SIG_DFL`
/// before [`run`](crate::run): Rust ignores it, so writes to a closed pipe
/// just fail with `BrokenPipe`. `SIGQUIT` prints [`threaddump`](crate::threaddump)
/// on stderr and the program goes on. Signals belong to the process: every
/// program running in it gets the note. A signal the process has given its
/// own handler, or ignores, is left alone.
///
/// Handlers run outside signal context, on a thread9 OS thread that is not
/// one of the program's procs, one note at a time: they may send on a
/// channel (prefer a buffered one, or `nbsend`: a handler that blocks holds
/// up every later note) or call `threadnotify` (for the program being
/// notified), but not functions that need a calling thread. While a
/// program has a handler installed it is never reported as deadlocked,
/// since a note may still come and wake a thread.
///
/// Installing returns true (installing a handler already there changes
/// nothing). Removing returns whether `f` was installed. Panics outside a
/// program (and outside a handler).
///
/// ```
/// fn on_note(note: &str) -> bool {
///     // Accept interrupts; any other note ends the program.
///     note == "interrupt"
/// }
///
/// thread9::run(|| {
///     assert!(thread9::threadnotify(on_note, true));
///     // From here on, ^C (SIGINT) calls on_note instead of ending the
///     // program.
///     assert!(thread9::threadnotify(on_note, false));
///     assert!(!thread9::threadnotify(on_note, false)); // not there any more
/// })
/// .unwrap();
/// ```
///
/// Waiting for a note: the handler hands it to a thread over a channel.
///
/// ```
/// use std::sync::Mutex;
/// use thread9::Chan;
///
/// static NOTES: Mutex<Option<Chan<String>>> = Mutex::new(None);
///
/// fn forward(note: &str) -> bool {
///     match NOTES.lock().unwrap().as_ref() {
///         Some(c) => c.nbsend(note.to_string()).is_ok(),
///         None => false,
///     }
/// }
///
/// let c = Chan::new(4);
/// *NOTES.lock().unwrap() = Some(c.clone());
/// thread9::threadmain(move |_| {
///     assert!(thread9::threadnotify(forward, true));
///     // As `kill -USR1 <pid>` from a shell would. (Not SIGHUP: `nohup`
///     // ignores it, and thread9 leaves ignored signals alone.)
///     // SAFETY: raise has no memory-safety preconditions, and thread9 has
///     // taken SIGUSR1 (its disposition was the default), so it becomes a
///     // note instead of ending the process.
///     unsafe { libc::raise(libc::SIGUSR1) };
///     let note = c.recv().unwrap();
///     assert_eq!(note, "sys: usr1");
///     println!("got {note}; cleaning up");
/// })
/// ```
#[track_caller]
pub fn threadnotify(f: fn(&str) -> bool, install: bool) -> bool {
    let prog = DELIVERING
        .with(|d| d.borrow().clone())
        .unwrap_or_else(|| program::current("threadnotify"));
    let mut list = lock(&prog.notes);
    // Function pointers are compared by address, as Plan 9 compares them.
    let at = list.iter().position(|&g| std::ptr::fn_addr_eq(g, f));
    if install {
        if at.is_none() {
            if list.is_empty() {
                // A handler is an outsider that may wake a thread.
                prog.external.fetch_add(1, Ordering::SeqCst);
            }
            list.push(f);
        }
        true
    } else {
        let Some(i) = at else {
            return false;
        };
        list.remove(i);
        if list.is_empty() {
            // The caller is one of the program's threads (so the program
            // is awake and its procs will check for deadlock when they
            // sleep) or a handler (and `notify` checks after it).
            prog.external.fetch_sub(1, Ordering::SeqCst);
        }
        true
    }
}
