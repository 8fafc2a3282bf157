//! Procs and threads.
//!
//! A *proc* is an OS thread. A *thread* is a stackful coroutine that lives
//! in one proc and runs only when the other threads of that proc are
//! blocked: scheduling within a proc is cooperative and FIFO, so threads of
//! a proc may share `Rc<RefCell<_>>` without locks. Procs run in parallel
//! and share only `Send` data (typically channel ends).
//!
//! ```
//! use std::{cell::RefCell, rc::Rc};
//! use thread9::{Chan, proccreate, threadcreate, threadyield};
//! thread9::run(|| {
//!     // Threads of one proc take turns: no lock around the log.
//!     let log = Rc::new(RefCell::new(Vec::new()));
//!     for name in ["a", "b"] {
//!         let log = log.clone();
//!         threadcreate(move || for i in 0..2 { log.borrow_mut().push(format!("{name}{i}")); threadyield() }, 0);
//!     }
//!     threadyield(); // creating a thread does not run it; yielding does
//!     while log.borrow().len() < 4 { threadyield() }
//!     assert_eq!(*log.borrow(), ["a0", "b0", "a1", "b1"]);
//!     // A proc runs in parallel; it gets only what is `Send`.
//!     let c = Chan::new(0);
//!     let d = c.clone();
//!     proccreate(move || d.send(thread9::threadid()).unwrap(), 0);
//!     assert_ne!(c.recv().unwrap(), thread9::threadid());
//! }).unwrap();
//! ```
//!
//! One file per concern, after 9front's libthread: `program` (run,
//! threadmain, exit status), `procs` (proccreate), `osthread`
//! (the OS threads procs run on), `threads`
//! (threadcreate, ids, names), `sched` (the scheduler loop), `stack`
//! (stacks and guards), `fault` (overflow reports), `exit`, `fdwait`
//! (threads waiting on file descriptors), `wait`
//! (the blocking protocol), `waitq`, `dump` and `deadlock`.

pub(crate) mod data;
pub(crate) mod deadlock;
pub(crate) mod dump;
pub(crate) mod exec;
pub(crate) mod exit;
pub(crate) mod fault;
pub(crate) mod fdwait;
pub(crate) mod kill;
pub(crate) mod notes;
pub(crate) mod osthread;
pub(crate) mod procs;
pub(crate) mod program;
pub(crate) mod qlock;
pub(crate) mod rendez;
pub(crate) mod rwlock;
pub(crate) mod sched;
pub(crate) mod stack;
pub(crate) mod threads;
pub(crate) mod wait;
pub(crate) mod waitq;

pub use data::{procdata, threaddata};
pub use dump::threaddump;
pub use exec::{Waitmsg, procexec, threadspawn, threadwaitchan};
pub use exit::{threadexits, threadexitsall};
pub use fdwait::threadfdwait;
pub use kill::{
    threadgetgrp, threadint, threadintgrp, threadkill, threadkillgrp, threadpid, threadsetgrp,
};
pub use notes::threadnotify;
pub use procs::proccreate;
pub use program::{run, threadmain};
pub use qlock::{Interrupted, QLock, QLockGuard};
pub use rendez::Rendez;
pub use rwlock::{RLockGuard, RWLock, WLockGuard};
pub use sched::threadyield;
pub use threads::{ThreadId, threadcreate, threadgetname, threadid, threadsetname, threadsetstate};
