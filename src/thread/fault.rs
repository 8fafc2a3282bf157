//! Stack overflow reports.
//!
//! Every thread stack has a guard region below it (see [`super::stack`]).
//! Touching it raises SIGSEGV; our handler runs on an alternate signal
//! stack (the faulting stack is exhausted), checks whether the address is
//! in the guard of the thread running on this OS thread, and if so prints
//! which thread overflowed and aborts. A proc's own stack (its scheduler's,
//! see [`super::osthread`]) has a guard too, reported the same way. Any
//! other fault is passed to the handler that was installed before ours, or
//! gets the default action.

use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, Once};

use super::threads;

static OLD: AtomicPtr<libc::sigaction> = AtomicPtr::new(ptr::null_mut());

/// Installs the SIGSEGV handler, once per process.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction with a zeroed struct plus the fields we set is a
        // valid request; the handler only reads state that is initialised
        // before the call (OLD is stored first) and is async-signal-safe.
        unsafe {
            let mut new: libc::sigaction = MaybeUninit::zeroed().assume_init();
            let mut old: libc::sigaction = MaybeUninit::zeroed().assume_init();
            libc::sigaction(libc::SIGSEGV, ptr::null(), &mut old);
            OLD.store(Box::into_raw(Box::new(old)), Ordering::Release);
            new.sa_sigaction = handler as *const () as usize;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut new.sa_mask);
            libc::sigaction(libc::SIGSEGV, &new, ptr::null_mut());
        }
    });
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let t = threads::current_ptr();
    // SAFETY: the current thread's record outlives its run; `guard` is
    // written before the thread first runs, never after.
    if let Some(t) = unsafe { t.as_ref() } {
        let (lo, hi) = t.guard.get();
        if addr >= lo && addr < hi {
            report(t);
            // SAFETY: abort is async-signal-safe.
            unsafe { libc::abort() };
        }
    }
    if super::osthread::in_guard(addr) {
        report_scheduler();
        // SAFETY: abort is async-signal-safe.
        unsafe { libc::abort() };
    }
    // SAFETY: OLD was stored before this handler was installed.
    unsafe { chain(sig, info, ctx) }
}

unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: OLD is set before the handler is installed and never freed.
    let old = unsafe { &*OLD.load(Ordering::Acquire) };
    if old.sa_sigaction == libc::SIG_DFL || old.sa_sigaction == libc::SIG_IGN {
        // Restore the default action and return: the faulting instruction
        // runs again and the kernel takes the default action.
        // SAFETY: a zeroed sigaction with SIG_DFL is a valid request.
        unsafe {
            let mut dfl: libc::sigaction = MaybeUninit::zeroed().assume_init();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGSEGV, &dfl, ptr::null_mut());
        }
        return;
    }
    // SAFETY: the previous handler was installed for this signal with
    // these flags, so calling it with the kernel's arguments is what the
    // kernel itself would have done.
    unsafe {
        if old.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(old.sa_sigaction);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(old.sa_sigaction);
            f(sig);
        }
    }
}

/// Formats without allocating: we are in a signal handler.
struct Buf {
    b: [u8; 256],
    n: usize,
}

impl Buf {
    fn put(&mut self, s: &[u8]) {
        for &c in s {
            if self.n < self.b.len() {
                self.b[self.n] = c;
                self.n += 1;
            }
        }
    }

    fn num(&mut self, mut v: u64) {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.put(&d[i..]);
    }
}

fn report(t: &threads::Thread) {
    let mut b = Buf { b: [0; 256], n: 0 };
    b.put(b"thread9: stack overflow in thread ");
    b.num(t.id);
    b.put(b" (");
    // The overflowing thread may hold its own info lock; never wait for it.
    match t.info.try_lock() {
        Some(i) => b.put(&i.name.as_bytes()[..i.name.len().min(64)]),
        None => b.put(b"?"),
    }
    b.put(b") of proc ");
    b.num(t.proc().tid.load(Ordering::Relaxed) as u64);
    b.put(b"\n");
    // SAFETY: write(2) is async-signal-safe; the buffer is valid for `n`.
    unsafe { libc::write(2, b.b.as_ptr().cast(), b.n) };
}

/// A proc's own stack ran out: the scheduler's, on which the proc's data
/// and thread-local values are dropped when it ends.
fn report_scheduler() {
    let mut b = Buf { b: [0; 256], n: 0 };
    b.put(b"thread9: stack overflow in proc ");
    b.num(crate::util::gettid() as u64);
    b.put(b", outside its threads\n");
    // SAFETY: write(2) is async-signal-safe; the buffer is valid for `n`.
    unsafe { libc::write(2, b.b.as_ptr().cast(), b.n) };
}

/// An alternate signal stack this module installed for a proc's OS thread,
/// removed when the proc ends and kept for the next proc.
pub(crate) struct AltStack {
    base: usize,
}

const ALT_SIZE: usize = 64 << 10;
/// A guard page below the stack, then the stack.
const ALT_LEN: usize = super::stack::PAGE + ALT_SIZE;
/// Spare alternate stacks kept for later procs. Unmapping one while other
/// procs run makes the kernel interrupt every core they run on to flush its
/// TLB, and a thousand procs ending at once (the sieve with a proc per
/// filter) paid that a thousand times; kept, a stack costs address space
/// and the few pages a signal handler touched.
const SPARE_ALTSTACKS: usize = 1024;

static SPARE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn spare() -> std::sync::MutexGuard<'static, Vec<usize>> {
    SPARE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A mapping for an alternate stack: a spare one, else a new one with a
/// guard page at its low end.
fn alt_mapping() -> Option<usize> {
    if let Some(base) = spare().pop() {
        return Some(base);
    }
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing affects no existing memory; the guard is its own first page.
    unsafe {
        let base = libc::mmap(
            ptr::null_mut(),
            ALT_LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if base == libc::MAP_FAILED {
            return None;
        }
        libc::mprotect(base, super::stack::PAGE, libc::PROT_NONE);
        Some(base as usize)
    }
}

/// Makes sure the calling OS thread has an alternate signal stack (std
/// gives its own threads one; a proc's OS thread and a thread started
/// elsewhere lack it).
pub(crate) fn ensure_altstack() -> Option<AltStack> {
    // SAFETY: querying and setting the calling thread's signal stack; the
    // stack is a private mapping of ours that no other thread uses, and it
    // outlives its installation (AltStack's drop uninstalls it before
    // anyone else may take it).
    unsafe {
        let mut cur: libc::stack_t = MaybeUninit::zeroed().assume_init();
        libc::sigaltstack(ptr::null(), &mut cur);
        if cur.ss_flags & libc::SS_DISABLE == 0 {
            return None;
        }
        let base = alt_mapping()?;
        let st = libc::stack_t {
            ss_sp: (base + super::stack::PAGE) as *mut libc::c_void,
            ss_flags: 0,
            ss_size: ALT_SIZE,
        };
        libc::sigaltstack(&st, ptr::null_mut());
        Some(AltStack { base })
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: we are on the OS thread that installed it and not in a
        // handler; once disabled, nothing runs on it, so it may go to
        // another thread or back to the kernel.
        unsafe {
            let off = libc::stack_t {
                ss_sp: ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            libc::sigaltstack(&off, ptr::null_mut());
            let mut spare = spare();
            if spare.len() < SPARE_ALTSTACKS {
                spare.push(self.base);
            } else {
                drop(spare);
                libc::munmap(self.base as *mut libc::c_void, ALT_LEN);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current_altstack() -> libc::stack_t {
        // SAFETY: a query of the calling thread's signal stack.
        unsafe {
            let mut cur: libc::stack_t = MaybeUninit::zeroed().assume_init();
            libc::sigaltstack(ptr::null(), &mut cur);
            cur
        }
    }

    fn mapped(addr: usize) -> bool {
        let mut v = 0u8;
        // SAFETY: mincore only reports on the page; it fails with ENOMEM
        // when nothing is mapped there.
        unsafe { libc::mincore(addr as *mut libc::c_void, 1, &mut v) == 0 }
    }

    #[test]
    fn an_altstack_is_installed_then_kept_mapped_for_the_next_proc() {
        std::thread::spawn(|| {
            // std gave this thread a signal stack of its own: take it down,
            // as a thread started by other means would lack one.
            let off = libc::stack_t {
                ss_sp: ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: no handler runs on this thread now.
            unsafe { libc::sigaltstack(&off, ptr::null_mut()) };
            let alt = ensure_altstack().expect("a thread without one gets one");
            let cur = current_altstack();
            assert_eq!(cur.ss_flags & libc::SS_DISABLE, 0);
            assert_eq!(cur.ss_sp as usize, alt.base + super::super::stack::PAGE);
            assert_eq!(cur.ss_size, ALT_SIZE);
            assert!(ensure_altstack().is_none(), "one is enough");
            let base = alt.base;
            drop(alt);
            assert_ne!(current_altstack().ss_flags & libc::SS_DISABLE, 0);
            assert!(
                mapped(base + super::super::stack::PAGE),
                "kept, not unmapped"
            );
        })
        .join()
        .unwrap();
    }
}
