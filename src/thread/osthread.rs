//! The OS threads procs run on, started on stacks from the thread stack
//! pool and kept there for the next proc.
//!
//! `std::thread::spawn` maps a stack for every thread and, when the thread
//! ends, gives its pages back (`madvise`) and unmaps it and the signal
//! stack std gave it. Changing the mappings of a process while its other
//! threads run makes the kernel interrupt every core they run on to flush
//! its TLB; a program with a thousand procs (the sieve with a proc per
//! filter) paid that several thousand times, at start and again when they
//! all ended together. A proc's OS thread instead runs on a stack from
//! [`super::stack`]'s pool, with its guard, which goes back to the pool
//! once the thread has been joined: nothing is mapped or unmapped after the
//! first time. Its alternate signal stack is kept the same way (see
//! [`super::fault`]). Measured with 1,230 procs each started, parked and
//! ended, in alternated runs: starting them took 66-78 ms and ending them
//! 82-122 ms with `std::thread`, now 33-47 ms and 27-42 ms.
//!
//! The thread is not std's, so std's panic message calls it `<unnamed>`
//! (with its OS thread id); thread9's own line before it names the thread
//! and proc, and the kernel knows the thread as `thread9 proc <id>`.

use std::cell::Cell;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::stack::{self, Stack};

thread_local! {
    /// The guard below the stack of the calling OS thread, when it is a
    /// proc's (for the fault handler).
    static GUARD: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Whether `addr` is in the guard below the calling OS thread's stack,
/// that is, whether a fault there is the scheduler's stack overflowing.
/// Async-signal-safe: a read of a constant-initialised thread local.
pub(crate) fn in_guard(addr: usize) -> bool {
    let (lo, hi) = GUARD.with(|g| g.get());
    addr >= lo && addr < hi
}

/// A started OS thread, to be joined before its stack is used again.
pub(crate) struct OsThread {
    thread: libc::pthread_t,
    /// `None` once joined.
    stack: Option<Stack>,
    done: Arc<AtomicBool>,
}

/// What the new thread needs, handed over through `pthread_create`.
struct Start {
    name: String,
    guard: (usize, usize),
    f: Box<dyn FnOnce() + Send>,
    done: Arc<AtomicBool>,
}

/// Starts `f` on a new OS thread named `name` (as much of it as the kernel
/// keeps, 15 bytes) with a stack of at least `size` bytes for `f`, beside
/// the thread's static thread-local storage, and a guard below.
pub(crate) fn spawn(
    name: String,
    size: usize,
    f: Box<dyn FnOnce() + Send>,
) -> io::Result<OsThread> {
    let stack = stack::take(stack::usable_size(size.saturating_add(static_tls())));
    let (low, high) = stack.span();
    let done = Arc::new(AtomicBool::new(false));
    let start = Box::into_raw(Box::new(Start {
        name,
        guard: stack.guard(),
        f,
        done: done.clone(),
    }));
    // SAFETY: `attr` is initialised before use and destroyed after; the
    // stack range is mapped read/write, 64-byte aligned at both ends, used
    // by no one else (we own `stack`, and keep it until the thread has been
    // joined), and has a guard below it. `start` is a valid pointer whose
    // ownership passes to the new thread if and only if pthread_create
    // succeeds.
    let (r, thread) = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstack(&mut attr, low as *mut libc::c_void, high - low);
        let mut thread: libc::pthread_t = 0;
        let r = libc::pthread_create(&mut thread, &attr, run, start.cast());
        libc::pthread_attr_destroy(&mut attr);
        (r, thread)
    };
    if r != 0 {
        // SAFETY: the thread was not created, so `start` is still ours.
        drop(unsafe { Box::from_raw(start) });
        stack::give(stack);
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(OsThread {
        thread,
        stack: Some(stack),
        done,
    })
}

/// Bytes of static thread-local storage: the C library carves every
/// thread's block of it (the `PT_TLS` segments of the objects loaded at
/// start, each aligned) out of the top of the stack it is given, so a
/// stack we provide must hold that on top of what the thread itself needs.
/// std adds the same to the stacks it maps.
fn static_tls() -> usize {
    static TLS: OnceLock<usize> = OnceLock::new();
    *TLS.get_or_init(|| {
        extern "C" fn add(
            info: *mut libc::dl_phdr_info,
            _size: usize,
            total: *mut libc::c_void,
        ) -> libc::c_int {
            // SAFETY: the loader passes a valid `info` whose `dlpi_phdr`
            // has `dlpi_phnum` entries, and `total` is the `usize` below.
            unsafe {
                let info = &*info;
                let total = &mut *total.cast::<usize>();
                for i in 0..info.dlpi_phnum as usize {
                    let ph = &*info.dlpi_phdr.add(i);
                    if ph.p_type == libc::PT_TLS {
                        let align = (ph.p_align as usize).max(1);
                        *total = (*total + ph.p_memsz as usize).next_multiple_of(align);
                    }
                }
            }
            0
        }
        let mut total = 0usize;
        // SAFETY: `add` matches the callback type and only reads what the
        // loader hands it; `total` outlives the call.
        unsafe { libc::dl_iterate_phdr(Some(add), (&mut total as *mut usize).cast()) };
        total
    })
}

extern "C" fn run(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `arg` is the `Start` that `spawn` leaked for this thread
    // alone.
    let start = unsafe { Box::from_raw(arg.cast::<Start>()) };
    let Start {
        name,
        guard,
        f,
        done,
    } = *start;
    set_name(&name);
    GUARD.with(|g| g.set(guard));
    // A panic here is a bug in the scheduler: the panic hook has reported
    // it, and unwinding out of this function would abort the process.
    let _ = panic::catch_unwind(AssertUnwindSafe(f));
    GUARD.with(|g| g.set((0, 0)));
    done.store(true, Ordering::Release);
    ptr::null_mut()
}

fn set_name(name: &str) {
    let mut b = [0u8; 16];
    let n = name.len().min(15);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: `b` is NUL-terminated within the kernel's 16 bytes; naming
    // the calling thread has no other effect.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), b.as_ptr().cast()) };
}

impl OsThread {
    /// Whether the thread's function has returned: a join then waits at
    /// most for the thread's last steps (its thread-local destructors).
    pub(crate) fn is_finished(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Waits for the thread to end, then gives its stack back to the pool.
    pub(crate) fn join(mut self) {
        // SAFETY: the thread was created joinable and is joined only here
        // (`join` consumes the handle, whose drop then does nothing).
        let r = unsafe { libc::pthread_join(self.thread, ptr::null_mut()) };
        let stack = self.stack.take().expect("joined once");
        // Failure cannot happen for a live joinable thread; if it did, the
        // thread might still run on the stack, which then stays out of
        // the pool for good (a `Stack` dropped is address space kept).
        if r == 0 {
            stack::give(stack);
        }
    }
}

impl Drop for OsThread {
    /// An unjoined thread may still be running on its stack: it is let go,
    /// and its stack with it (address space only; never reused).
    fn drop(&mut self) {
        if self.stack.is_some() {
            // SAFETY: the thread was created joinable and not joined.
            unsafe { libc::pthread_detach(self.thread) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// Runs a thread that reports where its stack is and what it is called;
    /// `size` is one no other test asks for, so that the pool's free list
    /// of that size is the test's alone.
    fn spawn_reporting(name: &str, size: usize) -> (OsThread, usize, String) {
        let (tx, rx) = mpsc::channel();
        let h = spawn(
            name.to_string(),
            size,
            Box::new(move || {
                let local = 0u64;
                let at = std::hint::black_box(&local) as *const u64 as usize;
                assert!(!in_guard(at), "a live frame is not in the guard");
                let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
                tx.send((at, comm.trim_end().to_string())).unwrap();
            }),
        )
        .unwrap();
        let (at, comm) = rx.recv().expect("the thread reports");
        (h, at, comm)
    }

    #[test]
    fn runs_on_its_pool_stack_under_its_name() {
        let (h, at, comm) = spawn_reporting("thread9 proc 123456", 44 << 10);
        let (low, high) = h.stack.as_ref().unwrap().span();
        assert!(
            at >= low && at < high,
            "{at:#x} not in [{low:#x}, {high:#x})"
        );
        // The kernel keeps 15 bytes of a name.
        assert_eq!(comm, "thread9 proc 12");
        h.join();
    }

    #[test]
    fn a_joined_threads_stack_serves_the_next_thread() {
        let size = 52 << 10;
        let (h, _, _) = spawn_reporting("first", size);
        let span = h.stack.as_ref().unwrap().span();
        h.join();
        let (h, at, comm) = spawn_reporting("second", size);
        assert_eq!(h.stack.as_ref().unwrap().span(), span);
        assert!(at >= span.0 && at < span.1);
        assert_eq!(comm, "second");
        h.join();
    }

    #[test]
    fn finished_once_its_function_has_returned() {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let h = spawn(
            "waits".to_string(),
            44 << 10,
            Box::new(move || go_rx.recv().unwrap()),
        )
        .unwrap();
        assert!(!h.is_finished(), "still waiting for its go");
        go_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !h.is_finished() {
            assert!(Instant::now() < deadline, "never finished");
            std::thread::sleep(Duration::from_millis(1));
        }
        h.join();
    }
}
