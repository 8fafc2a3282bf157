//! Small building blocks the runtime is made of: a spin lock for the very
//! short critical sections of channels and run queues, the futex calls procs
//! sleep on, and a per-OS-thread random number generator for `alt`.

pub(crate) mod bias;
pub(crate) mod futex;
pub(crate) mod membarrier;
pub(crate) mod rng;
pub(crate) mod spin;

/// One `read(2)` of `fd` into `buf`, retried when a signal interrupts it.
pub(crate) fn read_fd(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: initialized bytes are valid `MaybeUninit<u8>`s, and
    // `read_uninit` only ever stores initialized bytes through the slice,
    // so `buf` stays initialized.
    let buf = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
    read_uninit(fd, buf)
}

/// [`read_fd`] into memory that need not be initialized yet (a `Vec`'s
/// spare capacity): the first `n` bytes are initialized when it returns
/// `Ok(n)`.
pub(crate) fn read_uninit(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut [std::mem::MaybeUninit<u8>],
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: `fd` is open for the call and `buf` is valid for writes
        // of `buf.len()` bytes; read(2) only writes, never reads, them.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The kernel's id for the calling OS thread (what `ps -L` shows as LWP).
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// Asks the CPU to bring the line at `addr` into the cache, and its page
/// into the TLB, ahead of use. Any address will do: a prefetch never
/// faults, and is ignored where it cannot be honoured.
#[inline(always)]
pub(crate) fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 only hints the cache; it reads nothing the
    // program can observe and cannot fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}
