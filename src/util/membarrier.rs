//! The asymmetric fence behind proc-biased locks.
//!
//! `membarrier(PRIVATE_EXPEDITED)` makes every CPU running a thread of this
//! process execute a full memory barrier. A fast path that orders its
//! accesses with only a compiler fence is then safe against a slow path
//! that calls this between its own store and load: either the fast path's
//! store is visible to the slow path, or the fast path's later load sees
//! the slow path's store.

use std::sync::OnceLock;

const CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// Whether the process is registered for expedited barriers (asked once).
pub(crate) fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        // SAFETY: registration takes no pointers and only affects this
        // process's later membarrier calls.
        unsafe { libc::syscall(libc::SYS_membarrier, CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 }
    })
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
