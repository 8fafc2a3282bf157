//! Procs and threads.
//!
//! A *proc* is an OS thread. A *thread* is a stackful coroutine that lives
//! in one proc and runs only when the other threads of that proc are
//! blocked: scheduling within a proc is cooperative and FIFO, so threads of
//! a proc may share `Rc<RefCell<_>>` without locks. Procs run in parallel
//! and share only `Send` data (typically channel ends).
//!
//! One file per concern, after 9front's libthread: `program` (run,
//! threadmain, exit status), `procs` (proccreate), `threads`
//! (threadcreate, ids, names), `sched` (the scheduler loop), `stack`
//! (stacks and guards), `fault` (overflow reports), `exit`, `wait`
//! (the blocking protocol), `waitq`, `dump` and `deadlock`.

pub(crate) mod deadlock;
pub(crate) mod dump;
pub(crate) mod exit;
pub(crate) mod fault;
pub(crate) mod procs;
pub(crate) mod program;
pub(crate) mod sched;
pub(crate) mod stack;
pub(crate) mod threads;
pub(crate) mod wait;
pub(crate) mod waitq;

pub use dump::threaddump;
pub use exit::{threadexits, threadexitsall};
pub use procs::proccreate;
pub use program::{run, threadmain};
pub use sched::threadyield;
pub use threads::{ThreadId, threadcreate, threadgetname, threadid, threadsetname, threadsetstate};
