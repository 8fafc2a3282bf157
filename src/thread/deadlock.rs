//! Deadlock detection.
//!
//! A program is deadlocked when every thread of every proc is blocked and
//! nothing can wake any of them. The last proc to fall asleep (the one that
//! brings the program's count of awake procs to zero) checks: it freezes
//! every proc (a sleeping proc's state goes SLEEPING -> FROZEN, which a
//! would-be waker waits out), confirms that no inbox holds a readied thread,
//! and that no blocked thread waits on an object an outsider could act on
//! (one created outside the program or ever touched by an OS thread that is
//! not one of its procs), and that no external event (a child process, a
//! timer) is pending. Then the state cannot change: it prints the thread
//! dump and ends the program with status `deadlock`. A proc blocked in a
//! system call never sleeps in its scheduler, so it keeps the program
//! counted awake: no false report while an ioproc call is in flight. A
//! proc asleep in `poll` on its threads' descriptors (POLLING, see
//! `fdwait`) cannot be frozen, so no report while a thread waits on one.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::dump;
use super::procs::{FROZEN, ProcShared, RUNNING, SLEEPING};
use super::program::Program;
use crate::util::futex;

/// Checks `prog` for deadlock and, if it is deadlocked, reports it and
/// starts ending it. Returns whether it did.
pub(crate) fn check(prog: &Program) -> bool {
    let _one_at_a_time = prog.check_lock.lock().unwrap_or_else(|e| e.into_inner());
    if prog.exiting() {
        return false;
    }
    let procs = prog.procs();
    let mut frozen: Vec<&Arc<ProcShared>> = Vec::with_capacity(procs.len());
    let stuck = 'verdict: {
        for p in &procs {
            if p.state
                .compare_exchange(SLEEPING, FROZEN, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                break 'verdict false;
            }
            frozen.push(p);
        }
        if procs.iter().any(|p| !p.inbox_is_empty()) {
            break 'verdict false;
        }
        if prog.external.load(Ordering::SeqCst) > 0 {
            break 'verdict false;
        }
        for p in &procs {
            if p.threads().iter().any(|t| t.get().blocked_shared()) {
                break 'verdict false;
            }
        }
        !procs.is_empty()
    };
    if !stuck {
        for p in frozen {
            p.state.store(SLEEPING, Ordering::SeqCst);
            if !p.inbox_is_empty() {
                p.kick();
            }
        }
        return false;
    }
    let report = dump::format(&procs);
    eprint!(
        "thread9: deadlock: every thread is blocked and nothing can wake them\n{report}\
         (a channel that a plain OS thread will use, but has not touched yet, must be made \
         with Chan::new_shared)\n"
    );
    for p in frozen {
        p.state.store(RUNNING, Ordering::SeqCst);
        prog.wake_one();
        futex::wake(&p.state, 1);
    }
    prog.exit_all("deadlock");
    true
}
