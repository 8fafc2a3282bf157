//! The asymmetric fence behind proc-biased locks.
//!
//! `membarrier(PRIVATE_EXPEDITED)` makes every CPU running a thread of this
//! process execute a full memory barrier. A fast path that orders its
//! accesses with only a compiler fence is then safe against a slow path
//! that calls this between its own store and load: either the fast path's
//! store is visible to the slow path, or the fast path's later load sees
//! the slow path's store.
//!
//! A process must register once before using the fence, and when to do
//! that matters. Registering while the process has a single OS thread
//! costs a few microseconds; once it has several, the kernel waits for an
//! RCU grace period, which took 9 to 25 ms on the machines we measured.
//! So [`prepare`] registers at the start of the first program, before
//! thread9 starts any OS thread of its own. If other threads exist by
//! then (cargo's test harness, say), it registers from a helper thread
//! instead, and locks are simply not biased until that is done: nothing
//! ever waits for the grace period.

use std::sync::atomic::{AtomicU8, Ordering};

const CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

const UNASKED: u8 = 0;
const PENDING: u8 = 1;
const YES: u8 = 2;
const NO: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNASKED);

/// Starts registration if nobody has yet: now if this is the process's
/// only OS thread, else on a helper thread.
pub(crate) fn prepare() {
    if STATE
        .compare_exchange(UNASKED, PENDING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    if os_threads() == Some(1) {
        register();
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("thread9-membarrier".into())
        .stack_size(64 << 10)
        .spawn(register);
    if spawned.is_err() {
        // No thread to spare: pay the wait here rather than never bias.
        register();
    }
}

fn register() {
    // SAFETY: registration takes no pointers and only affects this
    // process's later membarrier calls.
    let ok = unsafe { libc::syscall(libc::SYS_membarrier, CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) };
    STATE.store(if ok == 0 { YES } else { NO }, Ordering::Release);
}

/// The number of OS threads in this process, from `/proc/self/stat`.
fn os_threads() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces;
    // the thread count is field 20, the 18th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(17)?.parse().ok()
}

/// Whether the process is registered for expedited barriers. False while
/// registration is still under way; starts it if nobody has.
#[inline]
pub(crate) fn available() -> bool {
    match STATE.load(Ordering::Acquire) {
        YES => true,
        UNASKED => {
            prepare();
            STATE.load(Ordering::Acquire) == YES
        }
        _ => false,
    }
}

/// A full memory barrier on every CPU running a thread of this process.
/// Only called after [`available`] returned true.
pub(crate) fn fence() {
    // SAFETY: as above; the command takes no pointers.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, CMD_PRIVATE_EXPEDITED, 0, 0) };
    assert_eq!(
        r,
        0,
        "thread9: membarrier failed after registering: {}",
        std::io::Error::last_os_error()
    );
}

/// Starts registration if needed and waits until it has ended; whether
/// it succeeded.
#[cfg(test)]
pub(crate) fn wait_registered() -> bool {
    prepare();
    let t = std::time::Instant::now();
    while STATE.load(Ordering::Acquire) == PENDING {
        assert!(t.elapsed().as_secs() < 60, "registration never ended");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    available()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_threads_of_this_process() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || rx.recv().ok());
        // The harness may start or end threads meanwhile, but ours is there.
        assert!(os_threads().unwrap() >= 2);
        tx.send(()).unwrap();
        h.join().unwrap();
    }

    #[test]
    fn registration_ends_and_the_fence_works() {
        if wait_registered() {
            fence();
        }
    }
}
