//! The scheduler loop every proc runs on its OS thread.
//!
//! Within a proc, scheduling is cooperative and FIFO: a thread runs until
//! it blocks, yields or exits, then the oldest ready thread runs. A proc
//! with nothing to run spins briefly (a partner on another core often
//! readies something within microseconds, and a futex sleep and wake costs
//! more than that), then sleeps on its state word until another proc readies
//! one of its threads. At most half the cores' worth of procs spin at
//! once, so that a program with a thousand idle procs does not burn the
//! machine. A proc whose threads wait on descriptors (`threadfdwait`)
//! polls them as it spins, and sleeps in `poll` on them instead (see
//! `super::fdwait`).

use std::os::fd::AsFd;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use corosensei::CoroutineResult;

use super::deadlock;
use super::fault;
use super::fdwait;
use super::procs::{self, POLLING, ProcLocal, ProcShared, RUNNING, SLEEPING};
use super::program;
use super::threads::{self, Thread};
use crate::util::futex;

/// Stack of a proc's OS thread: it runs only the scheduler and, rarely, a
/// deadlock report.
pub(crate) const PROC_OS_STACK: usize = 256 << 10;

/// How long an idle proc spins on its inbox when a core is free for it.
const SPIN: Duration = Duration::from_micros(20);
/// How long it polls at least before it sleeps, and at most.
const POLL_MIN: Duration = Duration::from_micros(70);
const POLL_MAX: Duration = Duration::from_micros(1000);

fn cores() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runs the proc until it has no threads left, then retires it.
pub(crate) fn run_proc(local: &ProcLocal) {
    let _alt = fault::ensure_altstack();
    loop {
        match local.pop_ready() {
            Some(t) => {
                busy_poll(local);
                run_thread(local, t)
            }
            None if local.nthreads.get() == 0 => break,
            None => idle(local),
        }
    }
    // The proc's data goes with it, still on its OS thread.
    let data = local.data.take();
    super::exit::or_end_program(&local.shared.program, move || drop(data));
    let prog = &local.shared.program;
    if let Some(s) = local.last_status.borrow_mut().take() {
        prog.set_last_status(s);
    }
    prog.remove_proc(&local.shared);
}

/// Inlined into the loop for the same reason as `Waiter::park`: no frame
/// between the loop and the switch.
#[inline(always)]
fn run_thread(local: &ProcLocal, t: *const Thread) {
    threads::set_current(t);
    // Start fetching the stack of the thread after this one while this one
    // runs. Among a thousand threads, a switch to a stack untouched since
    // its thread last ran pays a page walk and a cache miss, in series
    // with everything after it; begun one thread early, they overlap with
    // that thread's work. Measured: `primes_thread_2000` 209 -> 172 ms.
    // The record of the thread after that is fetched too: its `next` and
    // `stack_hint` are what the next round reads first, so that round's
    // prefetch no longer waits on a miss of its own (a sieve's run queue
    // is rarely shorter than three). Measured in 25 alternated runs of a
    // 2000-thread sieve: median 183 -> 176 ms.
    // SAFETY: `t` is alive (see below), and so are the threads queued
    // after it: a queued thread cannot end.
    unsafe {
        let n = (*t).next.get();
        if !n.is_null() {
            crate::util::prefetch((*n).stack_hint.get());
            let m = (*n).next.get();
            if !m.is_null() {
                // Lines 0 to 2: the ones a switch into it reads.
                for line in 0..3 {
                    crate::util::prefetch(m as usize + line * 64);
                }
            }
        }
    }
    // SAFETY: `t` came off this proc's run queue: it is alive, belongs to
    // this proc, and is not running; its coroutine is set until reaped.
    let r = unsafe {
        local.shared.running.store(t as usize, Ordering::Relaxed);
        (*(*t).co.get())
            .as_mut()
            .expect("ready thread has a coroutine")
            .resume(())
    };
    local.shared.running.store(0, Ordering::Relaxed);
    threads::set_current(std::ptr::null());
    if let CoroutineResult::Return(exit) = r {
        local.reap(t, exit);
    }
}

/// Polls the descriptors of a busy proc now and then, so that a thread
/// waiting on one is not starved by threads that keep each other ready.
#[inline(always)]
fn busy_poll(local: &ProcLocal) {
    let f = &local.fdwaits;
    if !f.is_empty() {
        let n = f.ticks.get() + 1;
        f.ticks.set(n);
        if n >= fdwait::BUSY_POLL {
            f.poll(0, None);
        }
    }
}

/// Waits for a thread of this proc to become ready.
fn idle(local: &ProcLocal) {
    let sh = &*local.shared;
    let start = Instant::now();
    if poll(local, start, local.poll_window()) {
        local.idled(start.elapsed());
        return;
    }
    if !local.fdwaits.is_empty() {
        sleep_polling(local);
        local.idled(start.elapsed());
        return;
    }
    let prog = &sh.program;
    // Publish the sleep before counting ourselves out: when the count of
    // awake procs reaches zero, every proc is already SLEEPING, so the
    // deadlock check can freeze them all.
    sh.state.store(SLEEPING, Ordering::SeqCst);
    let last = prog.sleep_one();
    if !sh.inbox_is_empty() {
        if sh
            .state
            .compare_exchange(SLEEPING, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            prog.wake_one();
        }
    } else if last {
        deadlock::check(prog);
    }
    sleep(sh);
    local.idled(start.elapsed());
}

/// Watches the inbox for a while before sleeping: a futex sleep and wake
/// costs far more than a partner's usual reply time (on a virtual machine,
/// waking a sleeping processor can take a hundred microseconds), and a
/// sleeping proc must be woken by its partner, while an awake one is just
/// handed work. While every awake proc has a core of its own, we spin;
/// otherwise spinning would take the core from a proc with work, so we
/// yield it instead, and a yielding proc runs again as soon as the core is
/// free. So at most as many procs spin at once as there are cores. How
/// long to poll (`window`) adapts to how long this proc's waits last.
///
/// A proc whose threads wait on descriptors polls those too, without
/// blocking, between rounds.
fn poll(local: &ProcLocal, start: Instant, window: Duration) -> bool {
    let sh = &*local.shared;
    let fds = &local.fdwaits;
    if program::awake_procs() <= cores() {
        loop {
            for _ in 0..64 {
                if !sh.inbox_is_empty() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if fds.poll_now() {
                return true;
            }
            if start.elapsed() > SPIN {
                break;
            }
        }
    }
    loop {
        if !sh.inbox_is_empty() {
            return true;
        }
        if fds.poll_now() {
            return true;
        }
        if start.elapsed() > window {
            return false;
        }
        std::thread::yield_now();
    }
}

/// Sleeps in `poll` on the threads' descriptors and the proc's waker until
/// a descriptor is ready or another proc readies a thread (it then writes
/// the waker: see [`ProcShared::kick`]).
///
/// Counted asleep like a sleeping proc, but never reported deadlocked:
/// the deadlock check freezes only SLEEPING procs, and a client on the far
/// side of a descriptor can always end such a wait.
fn sleep_polling(local: &ProcLocal) {
    let sh = &*local.shared;
    let prog = &sh.program;
    let waker = sh.waker.get_or_init(fdwait::new_waker).as_fd();
    sh.state.store(POLLING, Ordering::SeqCst);
    prog.sleep_one();
    if sh.inbox_is_empty() {
        loop {
            let (readied, kicked) = local.fdwaits.poll(-1, Some(waker));
            if readied > 0 || kicked || sh.state.load(Ordering::SeqCst) != POLLING {
                break;
            }
        }
    }
    // Whoever moves the state back to RUNNING counts the proc awake: we,
    // or a kicker that saw POLLING (whose write to the waker may still be
    // on its way; the next poll then returns at once and drains it).
    if sh
        .state
        .compare_exchange(POLLING, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
    {
        prog.wake_one();
    }
}

impl ProcLocal {
    /// How long to poll before sleeping: twice this proc's usual wait when
    /// that is short (so most waits end without a sleep), the minimum when
    /// its waits are long (polling through them would only burn the core).
    fn poll_window(&self) -> Duration {
        let usual = Duration::from_nanos(self.idle_avg_ns.get());
        if usual * 2 <= POLL_MAX {
            (usual * 2).max(POLL_MIN)
        } else {
            POLL_MIN
        }
    }

    /// Records how long a wait lasted (a moving average of the last few).
    fn idled(&self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        let avg = self.idle_avg_ns.get();
        self.idle_avg_ns.set(avg - avg / 8 + ns / 8);
    }
}

fn sleep(sh: &ProcShared) {
    loop {
        let s = sh.state.load(Ordering::Acquire);
        if s == RUNNING {
            return;
        }
        futex::wait(&sh.state, s);
    }
}

/// Lets the other ready threads of this proc run; the caller goes to the
/// tail of the run queue.
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// thread9::run(|| {
///     let log = Rc::new(RefCell::new(Vec::new()));
///     let l = log.clone();
///     thread9::threadcreate(move || l.borrow_mut().push("child"), 0);
///     log.borrow_mut().push("main");
///     thread9::threadyield();
///     log.borrow_mut().push("main again");
///     assert_eq!(*log.borrow(), ["main", "child", "main again"]);
/// }).unwrap();
/// ```
// Inlined so that the switch lands in the caller's frame (see
// `Waiter::park`).
#[inline(always)]
pub fn threadyield() {
    if let Some(t) = yield_start() {
        // SAFETY: `t` is the running thread and has just queued itself.
        unsafe { threads::suspend(t) };
        // Killed while it waited its turn: a yield is a blocking point.
        t.kill_point();
    }
}

/// Queues the running thread at the tail of its run queue, unless it dies
/// here instead (or is unwinding, and must not yield).
fn yield_start() -> Option<&'static Thread> {
    let t = threads::current("threadyield");
    if t.kill_point() {
        return None;
    }
    let l = procs::local().expect("a running thread has a proc");
    l.push_ready(t);
    Some(t)
}
