//! # thread9: Plan 9's libthread for Rust
//!
//! Programs are made of *procs* (OS threads) holding cooperative *threads*
//! (stackful coroutines) that talk over typed *channels*. Threads of a proc
//! run one at a time and switch only where they block, so they share plain
//! `Rc<RefCell<_>>` state; procs run in parallel and share only what is
//! `Send`.
//!
//! ## CSP in one example: the prime sieve
//!
//! Doug McIlroy's sieve, as in Plan 9's `tprimes`: a counter feeds 2, 3, 4,
//! ... into a chain of filters. Each filter receives its first number, which
//! is prime, prints it, starts the next filter, and passes on every later
//! number that its prime does not divide.
//!
//! ```
//! use thread9::{threadcreate, threadexitsall, Chan};
//!
//! fn filter(input: Chan<u64>, out: std::rc::Rc<std::cell::RefCell<Vec<u64>>>) {
//!     let p = input.recv().unwrap();
//!     out.borrow_mut().push(p);
//!     if p > 30 {
//!         threadexitsall(""); // everyone stops; run returns Ok
//!     }
//!     let next = Chan::new(0);
//!     let n = next.clone();
//!     threadcreate(move || filter(n, out), 0);
//!     loop {
//!         let i = input.recv().unwrap();
//!         if !i.is_multiple_of(p) {
//!             next.send(i).unwrap();
//!         }
//!     }
//! }
//!
//! let primes = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
//! let seen = primes.clone();
//! thread9::run(move || {
//!     let c = Chan::new(0);
//!     let d = c.clone();
//!     threadcreate(move || filter(d, seen), 0);
//!     for i in 2.. {
//!         c.send(i).unwrap();
//!     }
//! })
//! .unwrap();
//! assert_eq!(*primes.borrow(), [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31]);
//! ```
//!
//! Swap `threadcreate` for [`proccreate`] and each filter gets its own OS
//! thread; the compiler then insists that what the filters share is `Send`
//! (the `Rc` above would have to become an `Arc<Mutex<_>>`, or better, a
//! channel).
//!
//! ## Where things are
//!
//! - [`run`], [`threadmain`]: start a program.
//! - [`threadcreate`], [`proccreate`], [`threadexits`], [`threadexitsall`],
//!   [`threadyield`], [`threadid`] and friends: threads and procs.
//! - [`Chan`], [`Alt`], [`alt!`], [`chanprint!`]: channels.
//! - [`QLock`], [`RWLock`], [`Rendez`]: locks that block only the thread.
//! - [`Ioproc`]: blocking system calls in a proc of their own.
//! - [`Srv`], [`FileIO`] ([`srv`]): Inferno's file2chan, files served over
//!   9P2000; [`ninep`]: a 9P client.
//! - [`threaddump`]: what every thread is doing. A program whose threads
//!   are all blocked with nothing left to wake them ends with status
//!   `deadlock` and a dump on stderr, instead of hanging.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "thread9 runs on Linux: it relies on futexes, madvise(MADV_GUARD_INSTALL) and gettid"
);

pub mod channel;
pub mod ioproc;
pub mod srv;
pub mod thread;
mod util;

pub use channel::{Alt, AltError, Chan, RecvError, SendError, TryRecvError, TrySendError};
pub use ioproc::Ioproc;
pub use srv::{Fid, FileIO, Rread, Rwrite, Srv, ninep};
pub use thread::{
    Interrupted, QLock, QLockGuard, RLockGuard, RWLock, Rendez, ThreadId, WLockGuard, Waitmsg,
    proccreate, procdata, procexec, run, threadcreate, threaddata, threaddump, threadexits,
    threadexitsall, threadfdwait, threadgetgrp, threadgetname, threadid, threadint, threadintgrp,
    threadkill, threadkillgrp, threadmain, threadnotify, threadpid, threadsetgrp, threadsetname,
    threadsetstate, threadspawn, threadwaitchan, threadyield,
};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
