//! Interrupting and killing threads, and thread groups.
//!
//! `threadint` ends the wait a thread is blocked in, which then fails with
//! its `Interrupted` error; a thread that is not waiting is unaffected.
//! `threadkill` marks a thread to die at its next blocking point and ends
//! its wait if it has one; the thread then unwinds, running destructors,
//! and takes its entries off every channel it waited on (9front leaves a
//! killed thread's alt entries queued). Both work on threads of any proc of
//! the calling program: a thread is found by id, as Plan 9 does, by looking
//! through the program's procs.

use super::procs::ProcShared;
use super::program;
use super::threads::{self, Thread, ThreadId};
use crate::util::bias::NO_PROC;

/// Interrupts (or kills) the chosen threads of the caller's own proc, at
/// once: they are not running, since the caller is.
fn act_here(p: &ProcShared, me: &Thread, pick: &dyn Fn(&Thread) -> bool, kill: bool) {
    // The proc's own list is biased to it: look at it as the proc.
    let chosen: Vec<*const Thread> = p
        .threads
        .lock_as(me.proc_id)
        .iter()
        .filter(|r| pick(r.get()))
        .map(|r| r.0)
        .collect();
    for t in chosen {
        // SAFETY: records of our proc stay alive while we run (only our
        // scheduler reaps them).
        let t = unsafe { &*t };
        if kill {
            t.mark_killed();
        }
        if !std::ptr::eq(t, me) {
            // SAFETY: on the thread's own proc, and it is not running.
            unsafe { t.interrupt_now(None) };
        }
    }
}

/// Asks another proc to interrupt (or kill) its chosen threads: only a
/// thread's own proc ends its waits (see `crate::thread::wait`).
fn ask(p: &ProcShared, pick: &dyn Fn(&Thread) -> bool, kill: bool) {
    let mut asked = false;
    for r in p.threads.lock_as(NO_PROC).iter() {
        let t = r.get();
        if !pick(t) {
            continue;
        }
        if kill {
            // Waiting or not, its proc ends its wait once it has one.
            t.mark_killed();
            asked = true;
        } else {
            asked |= t.request_interrupt();
        }
    }
    if asked {
        p.attend();
    }
}

fn apply(what: &str, pick: &dyn Fn(&Thread) -> bool, kill: bool) {
    let me = threads::current(what);
    let prog = program::current(what);
    for p in prog.procs() {
        if p.id == me.proc_id {
            act_here(&p, me, pick, kill);
        } else {
            ask(&p, pick, kill);
        }
    }
}

/// Interrupts thread `id` of the calling program if it is blocked: its
/// send, recv, alt, interruptible lock or rendez sleep fails with
/// `Interrupted` (an ioproc call is interrupted in the ioproc and fails with
/// `ErrorKind::Interrupted`). A thread that is not blocked is unaffected.
///
/// A thread of the caller's proc is interrupted before `threadint`
/// returns. One of another proc is interrupted by its own proc, which is
/// asked to and does so as soon as it schedules (as in 9front, where the
/// interrupted thread cleans up when it next runs): a partner that
/// completes the operation first wins, and the operation then succeeds.
/// Either way the interrupt ends only the wait the thread was in when
/// `threadint` was called, never a later one.
///
/// ```
/// use thread9::{Chan, RecvError, threadcreate, threadint, threadyield};
/// thread9::run(|| {
///     let c: Chan<i32> = Chan::new(0);
///     let (d, out) = (c.clone(), Chan::new(1));
///     let o = out.clone();
///     let id = threadcreate(move || o.send(d.recv()).unwrap(), 0);
///     threadyield(); // it blocks in recv
///     threadint(id);
///     assert_eq!(out.recv().unwrap(), Err(RecvError::Interrupted));
/// }).unwrap();
/// ```
pub fn threadint(id: ThreadId) {
    apply("threadint", &|t| t.id == id, false);
}

/// Interrupts every blocked thread of group `grp` (see [`threadint`]).
///
/// ```
/// use thread9::{Chan, RecvError, threadcreate, threadintgrp, threadsetgrp, threadyield};
/// thread9::run(|| {
///     let (c, out) = (Chan::<i32>::new(0), Chan::new(3));
///     for grp in [1, 1, 2] {
///         let (c, out) = (c.clone(), out.clone());
///         threadcreate(move || { threadsetgrp(grp); out.send(c.recv()).unwrap() }, 0);
///     }
///     threadyield(); // all three block in recv
///     threadintgrp(1);
///     c.send(7).unwrap(); // group 2's thread still waits
///     let got: Vec<_> = (0..3).map(|_| out.recv().unwrap()).collect();
///     assert_eq!(got, [Err(RecvError::Interrupted), Err(RecvError::Interrupted), Ok(7)]);
/// }).unwrap();
/// ```
pub fn threadintgrp(grp: u64) {
    apply("threadintgrp", &|t| t.grp() == grp, false);
}

/// Kills thread `id` of the calling program: it ends at its next blocking
/// point (at once if it is blocked), its stack unwinds and destructors run.
/// A thread that never blocks cannot be killed. Killing the last thread of a
/// proc ends the proc.
///
/// ```
/// use thread9::{Chan, threadcreate, threadkill, threadyield};
/// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
/// let dropped = Arc::new(AtomicBool::new(false));
/// let d = dropped.clone();
/// thread9::run(move || {
///     struct Flag(Arc<AtomicBool>);
///     impl Drop for Flag { fn drop(&mut self) { self.0.store(true, Ordering::SeqCst) } }
///     let c: Chan<()> = Chan::new(0);
///     let id = threadcreate(move || { let _f = Flag(d); let _ = c.recv(); }, 0);
///     threadyield();
///     threadkill(id);
/// }).unwrap();
/// assert!(dropped.load(Ordering::SeqCst));
/// ```
pub fn threadkill(id: ThreadId) {
    apply("threadkill", &|t| t.id == id, true);
}

/// Kills every thread of group `grp` (see [`threadkill`]); the caller too,
/// if it is in the group.
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use thread9::{Chan, threadcreate, threadkillgrp, threadsetgrp, threadyield};
/// struct Note(Rc<RefCell<Vec<u64>>>, u64);
/// impl Drop for Note { fn drop(&mut self) { self.0.borrow_mut().push(self.1) } }
/// thread9::run(|| {
///     let (log, c) = (Rc::new(RefCell::new(Vec::new())), Chan::<()>::new(0));
///     for grp in [1, 2, 1] {
///         let (log, c) = (log.clone(), c.clone());
///         threadcreate(move || { threadsetgrp(grp); let _n = Note(log, grp); let _ = c.recv(); }, 0);
///     }
///     threadyield(); // all three block in recv
///     threadkillgrp(1);
///     threadyield(); // the killed ones unwind
///     assert_eq!(*log.borrow(), [1, 1]);
///     c.send(()).unwrap(); // group 2's thread lives on
/// }).unwrap();
/// ```
pub fn threadkillgrp(grp: u64) {
    apply("threadkillgrp", &|t| t.grp() == grp, true);
}

/// The calling thread's group. A program's first thread is in group 0; new
/// threads (and procs) start in their creator's group.
///
/// ```
/// use thread9::{Chan, proccreate, threadgetgrp, threadsetgrp};
/// thread9::run(|| {
///     assert_eq!(threadgetgrp(), 0);
///     threadsetgrp(4);
///     let c = Chan::new(1);
///     let c2 = c.clone();
///     proccreate(move || c2.send(threadgetgrp()).unwrap(), 0);
///     assert_eq!(c.recv().unwrap(), 4); // inherited from its creator
/// }).unwrap();
/// ```
pub fn threadgetgrp() -> u64 {
    threads::current("threadgetgrp").grp()
}

/// Moves the calling thread to group `grp`; returns its old group.
///
/// ```
/// thread9::run(|| {
///     assert_eq!(thread9::threadsetgrp(7), 0);
///     assert_eq!(thread9::threadgetgrp(), 7);
/// }).unwrap();
/// ```
pub fn threadsetgrp(grp: u64) -> u64 {
    threads::current("threadsetgrp").set_grp(grp)
}

/// The OS thread id (as `gettid` gives it, what `ps -L` shows) of the proc
/// holding thread `id`, or None if the program has no such thread. A proc
/// just made by `proccreate` may not have started its OS thread yet; then
/// this waits until it has.
///
/// ```
/// thread9::run(|| {
///     let me = thread9::threadpid(thread9::threadid()).unwrap();
///     assert_eq!(me, unsafe { libc::gettid() });
///     assert_eq!(thread9::threadpid(1_000_000), None);
/// }).unwrap();
/// ```
pub fn threadpid(id: ThreadId) -> Option<i32> {
    let me = threads::current("threadpid");
    let prog = program::current("threadpid");
    for p in prog.procs() {
        let as_proc = if p.id == me.proc_id {
            me.proc_id
        } else {
            NO_PROC
        };
        if p.threads.lock_as(as_proc).iter().any(|r| r.get().id == id) {
            // Set first thing on the proc's OS thread. If that thread
            // could not start, `proccreate` takes the proc out again.
            loop {
                let tid = p.tid.load(std::sync::atomic::Ordering::Acquire);
                if tid != 0 {
                    return Some(tid);
                }
                if !prog.procs().iter().any(|q| std::sync::Arc::ptr_eq(q, &p)) {
                    return None;
                }
                std::thread::yield_now();
            }
        }
    }
    None
}
