//! Interrupting the system call an ioproc is blocked in.
//!
//! An ioproc's OS thread keeps one signal (a real-time signal nobody else
//! handles, see [`signal`]) blocked at all times, and waits for I/O only in
//! `ppoll`, which unblocks it atomically for the duration of the wait. An
//! interrupt sets the ioproc's `pending` flag and then sends the signal to
//! that OS thread alone. Whenever the signal arrives — before the wait
//! starts, during it, or between two waits — it is either delivered inside
//! `ppoll`, which then fails with EINTR, or stays pending in the kernel
//! until the next `ppoll`, which then fails at once. Either way the flag
//! says it was ours, so an interrupt cannot be lost in the gap between
//! checking for one and starting the system call.
//!
//! Some calls cannot wait in `ppoll` (opening a FIFO, a user's closure):
//! for those the signal is unblocked instead, and while an interrupt is
//! pending a helper thread re-sends it every millisecond, so that a system
//! call that began just after a signal was handled is still interrupted.

use std::io;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// The interrupt state of one ioproc, shared by its handles and its proc.
#[derive(Default)]
pub(crate) struct IoState {
    /// Kernel id of the ioproc's OS thread; 0 until it starts, and after it
    /// ends.
    pub(crate) tid: AtomicI32,
    /// An interrupt not yet consumed by a call.
    pending: AtomicBool,
    /// The ioproc runs with the signal unblocked (outside `ppoll`).
    unmasked: AtomicBool,
}

/// The signal used to interrupt ioprocs: the highest real-time signal that
/// still has its default disposition when the first ioproc starts (so the
/// program's own handlers are left alone), with a handler that does
/// nothing and is installed without SA_RESTART, so that a blocked system
/// call returns EINTR.
pub(crate) fn signal() -> libc::c_int {
    static SIG: OnceLock<libc::c_int> = OnceLock::new();
    *SIG.get_or_init(|| {
        extern "C" fn nothing(_: libc::c_int) {}
        for sig in (libc::SIGRTMIN() + 2..=libc::SIGRTMAX()).rev() {
            // SAFETY: querying and setting a signal disposition with valid
            // pointers; the handler is async-signal-safe (it does nothing).
            unsafe {
                let mut old: libc::sigaction = MaybeUninit::zeroed().assume_init();
                if libc::sigaction(sig, ptr::null(), &mut old) != 0
                    || old.sa_sigaction != libc::SIG_DFL
                {
                    continue;
                }
                let mut act: libc::sigaction = MaybeUninit::zeroed().assume_init();
                act.sa_sigaction = nothing as *const () as usize;
                act.sa_flags = 0; // no SA_RESTART: interrupted calls fail with EINTR
                libc::sigemptyset(&mut act.sa_mask);
                if libc::sigaction(sig, &act, ptr::null_mut()) == 0 {
                    return sig;
                }
            }
        }
        panic!("thread9: no free real-time signal to interrupt ioprocs with")
    })
}

fn sigset(sig: libc::c_int) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the set we own.
    unsafe {
        let mut set: libc::sigset_t = MaybeUninit::zeroed().assume_init();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        set
    }
}

fn set_blocked(how: libc::c_int) {
    let set = sigset(signal());
    // SAFETY: changes only the calling OS thread's mask, with a valid set.
    unsafe { libc::pthread_sigmask(how, &set, ptr::null_mut()) };
}

/// The calling OS thread's mask without the interrupt signal: the mask
/// `ppoll` waits with.
fn unblocked_mask() -> libc::sigset_t {
    // SAFETY: reads the calling thread's mask into a set we own.
    unsafe {
        let mut cur: libc::sigset_t = MaybeUninit::zeroed().assume_init();
        libc::pthread_sigmask(libc::SIG_BLOCK, ptr::null(), &mut cur);
        libc::sigdelset(&mut cur, signal());
        cur
    }
}

pub(crate) fn interrupted() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "interrupted")
}

impl IoState {
    /// Called by the ioproc's OS thread when it starts.
    pub(crate) fn start(&self) {
        set_blocked(libc::SIG_BLOCK);
        self.tid.store(crate::util::gettid(), Ordering::SeqCst);
    }

    /// Called by the ioproc's OS thread when it ends.
    pub(crate) fn stop(&self) {
        self.tid.store(0, Ordering::SeqCst);
    }

    /// Interrupts the call in progress, or else the next one.
    pub(crate) fn interrupt(self: &Arc<Self>) {
        self.pending.store(true, Ordering::SeqCst);
        self.kick();
        if self.unmasked.load(Ordering::SeqCst) {
            resender::watch(self);
        }
    }

    fn kick(&self) {
        let tid = self.tid.load(Ordering::SeqCst);
        if tid != 0 {
            // SAFETY: tgkill takes plain integers. The thread may have just
            // exited; then the call fails with ESRCH, which is fine.
            unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signal()) };
        }
    }

    /// Consumes a pending interrupt, if there is one. Called on the ioproc's
    /// OS thread; drains the signals sent for it so that they cannot fail a
    /// later wait.
    pub(crate) fn take_pending(&self) -> bool {
        if !self.pending.swap(false, Ordering::SeqCst) {
            return false;
        }
        drain();
        true
    }

    /// Drops any pending interrupt (flush).
    pub(crate) fn clear(&self) {
        self.take_pending();
    }

    /// Waits in `ppoll` for `fds` (or only for `timeout`), with the
    /// interrupt signal unblocked. Returns the number of ready fds (0 on
    /// timeout), or `Interrupted` if an interrupt is (or becomes) pending.
    pub(crate) fn wait(
        &self,
        fds: &mut [libc::pollfd],
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let mask = unblocked_mask();
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if self.take_pending() {
                return Err(interrupted());
            }
            let ts = deadline.map(|d| {
                let left = d.saturating_duration_since(Instant::now());
                libc::timespec {
                    tv_sec: left.as_secs() as libc::time_t,
                    tv_nsec: left.subsec_nanos() as libc::c_long,
                }
            });
            let tsp = ts
                .as_ref()
                .map_or(ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `fds` is a valid array of its length, `tsp` is null or
            // points to a live timespec, `mask` is an initialised set.
            let r = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, tsp, &mask) };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
            // EINTR: ours if the flag is set (checked at the loop top);
            // otherwise another signal, and we wait again.
        }
    }

    /// Runs `f` with the interrupt signal unblocked, for blocking calls
    /// that cannot wait in `ppoll`. Interrupts pending during `f` are
    /// re-sent until it returns; when it does, they are consumed.
    pub(crate) fn unmasked<R>(self: &Arc<Self>, f: impl FnOnce() -> R) -> R {
        struct Consume<'a>(&'a IoState);
        impl Drop for Consume<'_> {
            fn drop(&mut self) {
                self.0.take_pending();
            }
        }
        let _consume = Consume(self);
        self.signalled(f)
    }

    /// Runs `f` with the interrupt signal unblocked, like [`unmasked`], but
    /// leaves an interrupt pending when `f` returns, so that the wait of
    /// the same call that comes next fails at once. For a system call made
    /// after `ppoll` said its descriptor was ready, which can block all the
    /// same: a write larger than the room in a pipe or socket buffer, or a
    /// read whose data another reader took first.
    ///
    /// [`unmasked`]: IoState::unmasked
    pub(crate) fn signalled<R>(self: &Arc<Self>, f: impl FnOnce() -> R) -> R {
        struct Remask<'a>(&'a IoState);
        impl Drop for Remask<'_> {
            fn drop(&mut self) {
                set_blocked(libc::SIG_BLOCK);
                self.0.unmasked.store(false, Ordering::SeqCst);
            }
        }
        // Either `interrupt` sees `unmasked` and starts the resender, or we
        // see its `pending` here (both are SeqCst).
        self.unmasked.store(true, Ordering::SeqCst);
        let _remask = Remask(self);
        if self.pending.load(Ordering::SeqCst) {
            resender::watch(self);
        }
        set_blocked(libc::SIG_UNBLOCK);
        f()
    }
}

/// Discards instances of the interrupt signal pending for this OS thread
/// (real-time signals queue, one per send).
fn drain() {
    let set = sigset(signal());
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid set and timeout; a null info pointer is allowed.
    while unsafe { libc::sigtimedwait(&set, ptr::null_mut(), &zero) } > 0 {}
}

/// Re-sends interrupts to ioprocs that run with the signal unblocked, until
/// the interrupt is consumed: a signal handled just before a blocking call
/// begins would otherwise leave that call blocked.
mod resender {
    use super::*;

    struct Watch {
        list: Mutex<Vec<Weak<IoState>>>,
        more: Condvar,
    }

    fn watch_list() -> &'static Watch {
        static W: OnceLock<Watch> = OnceLock::new();
        W.get_or_init(|| {
            std::thread::Builder::new()
                .name("thread9 interrupter".into())
                .spawn(run)
                .expect("thread9: cannot start the ioproc interrupter thread");
            Watch {
                list: Mutex::new(Vec::new()),
                more: Condvar::new(),
            }
        })
    }

    pub(super) fn watch(s: &Arc<IoState>) {
        let w = watch_list();
        w.list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(s));
        w.more.notify_one();
    }

    fn run() {
        let w = watch_list();
        let mut list = w.list.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            list.retain(|s| {
                s.upgrade().is_some_and(|s| {
                    let live =
                        s.pending.load(Ordering::SeqCst) && s.unmasked.load(Ordering::SeqCst);
                    if live {
                        s.kick();
                    }
                    live
                })
            });
            list = if list.is_empty() {
                w.more.wait(list).unwrap_or_else(|e| e.into_inner())
            } else {
                w.more
                    .wait_timeout(list, Duration::from_millis(1))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            };
        }
    }
}
