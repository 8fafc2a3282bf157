//! Small building blocks the runtime is made of: a spin lock for the very
//! short critical sections of channels and run queues, the futex calls procs
//! sleep on, and a per-OS-thread random number generator for `alt`.

pub(crate) mod bias;
pub(crate) mod futex;
pub(crate) mod membarrier;
pub(crate) mod rng;
pub(crate) mod spin;

/// The kernel's id for the calling OS thread (what `ps -L` shows as LWP).
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}
