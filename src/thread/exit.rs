//! How threads end: returning, `threadexits`, `threadexitsall`, being
//! killed, or panicking; and the panic hook that names the thread.

use std::any::Any;
use std::panic;
use std::sync::Once;

use super::threads;

/// The panic payload that unwinds a thread's stack on purpose. It never
/// reaches the panic hook: it is raised with `resume_unwind`.
pub(crate) enum Unwind {
    Exits(String),
    Killed,
}

/// How a thread's coroutine ended.
pub(crate) enum Exit {
    Status(String),
    Killed,
    Panic(String),
}

pub(crate) fn classify(payload: Box<dyn Any + Send>) -> Exit {
    let payload = match payload.downcast::<Unwind>() {
        Ok(u) => {
            return match *u {
                Unwind::Exits(s) => Exit::Status(s),
                Unwind::Killed => Exit::Killed,
            };
        }
        Err(p) => p,
    };
    let msg = payload_message(&*payload);
    // A payload's destructor may itself panic; that must not escape the
    // coroutine.
    let _ = panic::catch_unwind(panic::AssertUnwindSafe(move || drop(payload)));
    Exit::Panic(msg)
}

/// Runs `f`, code of `prog` that runs on a proc's OS thread outside any
/// thread (starting a proc's first thread, dropping a proc's data). A panic
/// in it is a panic of the program, as one in a thread is; it must not
/// unwind the proc's OS thread, which would then never count itself out of
/// the program, and `run` would wait for it for ever.
pub(crate) fn or_end_program(prog: &super::program::Program, f: impl FnOnce()) {
    if let Err(payload) = panic::catch_unwind(panic::AssertUnwindSafe(f)) {
        if let Exit::Panic(msg) = classify(payload) {
            prog.exit_all(&format!("panic: {msg}"));
        }
    }
}

pub(crate) fn payload_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// Ends the calling thread with `status`. Its stack is unwound, so
/// destructors run. The status becomes the program's if this is the last
/// thread to exit.
///
/// ```
/// let r = thread9::run(|| {
///     struct Noisy;
///     impl Drop for Noisy { fn drop(&mut self) { println!("dropped") } }
///     let _n = Noisy;
///     thread9::threadexits("bye");
/// });
/// assert_eq!(r, Err("bye".to_string()));
/// ```
pub fn threadexits(status: &str) -> ! {
    threads::current("threadexits");
    panic::resume_unwind(Box::new(Unwind::Exits(status.to_string())))
}

/// Ends every thread of every proc of the program; `status` becomes the
/// program's final status. Each thread ends at its next blocking point
/// (threads blocked now end at once), unwinding its stack.
///
/// ```
/// let r = thread9::run(|| {
///     let c: thread9::Chan<i32> = thread9::Chan::new(0);
///     thread9::proccreate(move || { let _ = c.recv(); }, 0); // blocked forever
///     thread9::threadexitsall("done");
/// });
/// assert_eq!(r, Err("done".to_string()));
/// ```
pub fn threadexitsall(status: &str) -> ! {
    let t = threads::current("threadexitsall");
    t.proc().program.exit_all(status);
    panic::resume_unwind(Box::new(Unwind::Killed))
}

/// Installs (once) a panic hook that says which thread panicked, then
/// defers to the hook that was there.
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let t = threads::current_ptr();
            if !t.is_null() {
                // SAFETY: the current thread is alive while it panics.
                let t = unsafe { &*t };
                let name = t
                    .info
                    .try_lock()
                    .map(|i| i.name.clone())
                    .unwrap_or_default();
                let pid = t.proc().tid.load(std::sync::atomic::Ordering::Relaxed);
                eprintln!(
                    "thread9: panic in thread {} ({}) of proc {}",
                    t.id, name, pid
                );
            }
            prev(info)
        }));
    });
}
