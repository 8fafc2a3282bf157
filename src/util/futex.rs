//! The two futex operations procs and plain OS threads sleep and wake with.

use std::sync::atomic::AtomicU32;

/// Sleeps while `*word == expected`. Returns on a wake, a signal, or a
/// spurious wake-up: callers re-check their condition in a loop.
pub(crate) fn wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT only reads the word, which `word` keeps alive for
    // the duration of the call; a null timeout means "no timeout".
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes up to `n` sleepers on `word`.
///
/// Takes a raw pointer because a waker may race with the sleeper's return:
/// once the sleeper has seen its condition it may free the word. The kernel
/// treats the address only as a key (an address no longer mapped gives
/// EFAULT, a reused one a spurious wake-up that every sleeper tolerates), so
/// no memory is read through it.
pub(crate) fn wake(word: *const AtomicU32, n: i32) {
    // SAFETY: see above: FUTEX_WAKE never dereferences the address in user
    // space and its failure modes are harmless.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word as *const u32,
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
        );
    }
}
