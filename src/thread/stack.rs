//! Thread stacks: carved out of large slabs, each with a guard region at
//! its low end, and reused when their thread exits.
//!
//! A stack costs no kernel mapping of its own. One `mmap` per slab holds
//! hundreds of stacks; guards are installed with `MADV_GUARD_INSTALL`
//! (Linux 6.13), which marks pages inaccessible without splitting the
//! mapping, so a million threads need a few thousand mappings rather than
//! the two million that `mmap` + `mprotect` per stack would (the kernel caps
//! a process at `vm.max_map_count`, 65530 by default). Where the kernel
//! refuses the advice, guards fall back to `mprotect`, and the mapping limit
//! applies again; running into it is reported with the limit to raise.
//!
//! Slabs are reserved with `MAP_NORESERVE` and `MADV_NOHUGEPAGE`: a stack
//! only costs the pages its thread touches, and a touched page must not
//! become a 2 MiB transparent huge page.
//!
//! Every slot spans an odd number of pages (the guard grows by a page when
//! it would be even). A thread parked in a channel operation touches only
//! the top few hundred bytes of its stack, so a chain of threads (the prime
//! sieve) walks one page per thread at the slot stride. TLBs and caches
//! pick a set from the low bits of the page number; an even stride such as
//! the 12 pages of a 32 KiB stack leaves most sets unused and the tops of
//! a thousand stacks evict one another, while an odd stride cycles through
//! every set. Measured: `primes_thread_2000` 308 ms -> 244 ms.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

pub(crate) const PAGE: usize = 4096;
/// Bytes of guard below each stack. One page is enough for Rust code (it
/// probes every page of a large frame); four also catch C code called
/// through FFI whose frames are up to 16 KiB and unprobed.
pub(crate) const GUARD: usize = 4 * PAGE;
/// Plan 9 code asks for 8192; formatting and panics in Rust need more.
pub(crate) const MIN_STACK: usize = 32 << 10;
pub(crate) const DEFAULT_STACK: usize = 256 << 10;
/// Bytes reserved per slab (address space only, until touched).
const SLAB: usize = 256 << 20;
/// Free stacks a size class keeps resident; beyond this, freed stacks give
/// their pages back to the kernel and keep only their address range.
const KEEP_RESIDENT: usize = 1024;
/// Free stacks a proc keeps for itself before handing them to the pool.
const PROC_CACHE: usize = 128;

/// The usable size of a stack for a `threadcreate` request.
#[inline]
pub(crate) fn usable_size(request: usize) -> usize {
    let want = if request == 0 { DEFAULT_STACK } else { request };
    want.max(MIN_STACK).next_multiple_of(PAGE)
}

/// A stack: `[bottom, limit)` is the guard, `[limit, top)` the usable
/// part. Owned by exactly one thread or free list at a time.
pub(crate) struct Stack {
    bottom: usize,
    limit: usize,
    top: usize,
}

impl Stack {
    pub(crate) fn size(&self) -> usize {
        self.top - self.limit
    }

    /// The guard's address range, for the fault handler.
    pub(crate) fn guard(&self) -> (usize, usize) {
        (self.bottom, self.limit)
    }
}

/// The guard below a stack of `size` bytes: at least [`GUARD`], and a page
/// more when that makes the slot an odd number of pages (see the module
/// doc).
fn guard_for(size: usize) -> usize {
    if ((size + GUARD) / PAGE).is_multiple_of(2) {
        GUARD + PAGE
    } else {
        GUARD
    }
}

// SAFETY: `top` is page aligned (so aligned to STACK_ALIGNMENT), the range
// below it down to `limit` is mapped read/write and used by no one
// else while this Stack exists, the guard makes an overflow fault instead of
// touching other memory, and the usable size is at least MIN_STACK, far above
// corosensei's MIN_STACK_SIZE.
unsafe impl corosensei::stack::Stack for Stack {
    fn base(&self) -> corosensei::stack::StackPointer {
        corosensei::stack::StackPointer::new(self.top).expect("stack top is not null")
    }

    fn limit(&self) -> corosensei::stack::StackPointer {
        corosensei::stack::StackPointer::new(self.bottom).expect("stack bottom is not null")
    }
}

/// A coroutine's view of a [`Stack`] owned by its thread record: the stack
/// stays with the record when the coroutine ends, ready for the record's
/// next thread.
pub(crate) struct StackRef(*const Stack);

impl StackRef {
    /// # Safety
    /// `s` must outlive every coroutine made with the result, and must not
    /// be moved or handed to another coroutine meanwhile.
    pub(crate) unsafe fn new(s: &Stack) -> StackRef {
        StackRef(s)
    }
}

// SAFETY: delegates to a Stack whose contract holds (see above), and per
// `StackRef::new` that stack outlives the coroutine and is used by it alone.
unsafe impl corosensei::stack::Stack for StackRef {
    fn base(&self) -> corosensei::stack::StackPointer {
        // SAFETY: the stack outlives this reference (see `new`).
        unsafe { corosensei::stack::Stack::base(&*self.0) }
    }

    fn limit(&self) -> corosensei::stack::StackPointer {
        // SAFETY: as above.
        unsafe { corosensei::stack::Stack::limit(&*self.0) }
    }
}

struct Class {
    size: usize,
    free: Vec<Stack>,
    /// Next unused slot of the current slab, and the slab's end.
    next: usize,
    end: usize,
}

static POOL: Mutex<Vec<Class>> = Mutex::new(Vec::new());

const GUARD_UNKNOWN: u8 = 0;
const GUARD_MADVISE: u8 = 1;
const GUARD_MPROTECT: u8 = 2;
static GUARD_MODE: AtomicU8 = AtomicU8::new(GUARD_UNKNOWN);

fn guard_mode() -> u8 {
    match GUARD_MODE.load(Ordering::Relaxed) {
        GUARD_UNKNOWN => {
            // A testing knob: force the fallback to prove it works.
            let m = if std::env::var_os("THREAD9_GUARD").is_some_and(|v| v == "mprotect") {
                GUARD_MPROTECT
            } else {
                GUARD_MADVISE
            };
            GUARD_MODE.store(m, Ordering::Relaxed);
            m
        }
        m => m,
    }
}

const MADV_GUARD_INSTALL: libc::c_int = 102;

fn sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/vm/{name}"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn address_space_limit() -> String {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rl) };
    if r != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        format!("{} KiB", rl.rlim_cur / 1024)
    }
}

#[cold]
fn no_stack(size: usize, what: &str, err: io::Error) -> ! {
    panic!(
        "thread9: cannot allocate a {} KiB thread stack: {what} failed: {err}. \
         The kernel refused more stack memory: check the mapping limit \
         (vm.max_map_count = {}; each stack costs two mappings when guard pages \
         fall back to mprotect), the address-space limit (ulimit -v: {}) and \
         overcommit (vm.overcommit_memory = {}); raise the limit that is reached \
         or create threads with smaller stacks",
        size / 1024,
        sysctl("max_map_count"),
        address_space_limit(),
        sysctl("overcommit_memory"),
    )
}

impl Class {
    fn carve(&mut self) -> Stack {
        let guard = guard_for(self.size);
        let slot = self.size + guard;
        if self.next == self.end {
            let bytes = (SLAB / slot).max(1) * slot;
            // SAFETY: an anonymous private mapping at an address of the
            // kernel's choosing affects no existing memory.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    bytes,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                no_stack(self.size, "mmap", io::Error::last_os_error());
            }
            // SAFETY: advice on a mapping we own; failure only means huge
            // pages stay possible, which costs memory, not correctness.
            unsafe { libc::madvise(p, bytes, libc::MADV_NOHUGEPAGE) };
            self.next = p as usize;
            self.end = p as usize + bytes;
        }
        let bottom = self.next;
        self.next += slot;
        install_guard(bottom, guard, self.size);
        Stack {
            bottom,
            limit: bottom + guard,
            top: bottom + slot,
        }
    }
}

fn install_guard(bottom: usize, guard: usize, size: usize) {
    if guard_mode() == GUARD_MADVISE {
        // SAFETY: the range is the low end of a slot in a slab we mapped and
        // gave to no one yet.
        let r = unsafe { libc::madvise(bottom as *mut libc::c_void, guard, MADV_GUARD_INSTALL) };
        if r == 0 {
            return;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) {
            no_stack(size, "madvise(MADV_GUARD_INSTALL)", err);
        }
        // An older kernel: mprotect from now on.
        GUARD_MODE.store(GUARD_MPROTECT, Ordering::Relaxed);
    }
    // SAFETY: as above; PROT_NONE on our own unused pages.
    let r = unsafe { libc::mprotect(bottom as *mut libc::c_void, guard, libc::PROT_NONE) };
    if r != 0 {
        no_stack(size, "mprotect (guard page)", io::Error::last_os_error());
    }
}

fn release_pages(s: &Stack) {
    // SAFETY: the stack is free: no thread runs on it, so its contents may
    // be discarded. The range excludes the guard, which stays in place.
    unsafe {
        libc::madvise(s.limit as *mut libc::c_void, s.size(), libc::MADV_DONTNEED);
    }
}

fn pool() -> std::sync::MutexGuard<'static, Vec<Class>> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

fn class(pool: &mut Vec<Class>, size: usize) -> &mut Class {
    let i = match pool.iter().position(|c| c.size == size) {
        Some(i) => i,
        None => {
            pool.push(Class {
                size,
                free: Vec::new(),
                next: 0,
                end: 0,
            });
            pool.len() - 1
        }
    };
    &mut pool[i]
}

/// A proc's own free stacks, so that creating and ending threads in a busy
/// proc takes no lock.
#[derive(Default)]
pub(crate) struct Cache {
    classes: Vec<(usize, Vec<Stack>)>,
}

impl Cache {
    pub(crate) fn get(&mut self, size: usize) -> Stack {
        if let Some((_, v)) = self.classes.iter_mut().find(|(s, _)| *s == size) {
            if let Some(s) = v.pop() {
                return s;
            }
        }
        let mut pool = pool();
        let c = class(&mut pool, size);
        match c.free.pop() {
            Some(s) => s,
            None => c.carve(),
        }
    }

    pub(crate) fn put(&mut self, s: Stack) {
        let size = s.size();
        let i = match self.classes.iter().position(|(sz, _)| *sz == size) {
            Some(i) => i,
            None => {
                self.classes.push((size, Vec::new()));
                self.classes.len() - 1
            }
        };
        let v = &mut self.classes[i].1;
        v.push(s);
        if v.len() > PROC_CACHE {
            let spill: Vec<Stack> = v.drain(..PROC_CACHE / 2).collect();
            give_back(size, spill);
        }
    }
}

fn give_back(size: usize, stacks: Vec<Stack>) {
    let mut pool = pool();
    let c = class(&mut pool, size);
    for s in stacks {
        if c.free.len() >= KEEP_RESIDENT {
            release_pages(&s);
        }
        c.free.push(s);
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        for (size, v) in self.classes.drain(..) {
            give_back(size, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_an_odd_number_of_pages_with_at_least_the_guard() {
        for pages in MIN_STACK / PAGE..=DEFAULT_STACK / PAGE + 3 {
            let size = pages * PAGE;
            let guard = guard_for(size);
            assert!(guard == GUARD || guard == GUARD + PAGE, "size {size}");
            assert_eq!((size + guard) / PAGE % 2, 1, "size {size}");
        }
    }

    #[test]
    fn carved_stacks_keep_their_size_and_guard() {
        let mut c = Class {
            size: MIN_STACK,
            free: Vec::new(),
            next: 0,
            end: 0,
        };
        let (a, b) = (c.carve(), c.carve());
        for s in [&a, &b] {
            assert_eq!(s.size(), MIN_STACK);
            assert_eq!(s.guard().1 - s.guard().0, GUARD + PAGE);
            assert_eq!(s.guard().1, s.limit);
        }
        // Consecutive slots: the stride is the odd slot, so their tops
        // differ in the low bit of the page number.
        assert_eq!(b.bottom - a.bottom, MIN_STACK + GUARD + PAGE);
        assert_ne!(a.top / PAGE % 2, b.top / PAGE % 2);
    }
}
