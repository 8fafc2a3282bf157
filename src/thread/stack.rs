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
//! A thread parked in a channel operation touches only the top few hundred
//! bytes of its stack, and a chain of threads (the prime sieve) touches
//! those of every stack in turn, so where stack tops fall in the caches
//! decides how many of them the caches hold. Caches pick a set from the
//! address bits just above the 64-byte line, up to bit 15 for this
//! machine's L2; TLBs from the low bits of the page number. Two things
//! spread the tops over every set:
//! - Every slot spans an odd number of pages (the guard grows by a page
//!   when it would be even): an even stride such as the 12 pages of a
//!   32 KiB stack leaves most page colours unused, while an odd stride
//!   cycles through all of them. Measured: `primes_thread_2000` 308 ms ->
//!   244 ms.
//! - Within its top page, each stack begins at a different line (its
//!   "colour", see [`colour`]); otherwise every top would use the same
//!   few lines of each page, a tenth of L1 and L2. A page more of address
//!   space above each stack makes room for the colour without taking from
//!   the size asked for. Simulated with cachegrind, with this machine's
//!   L2 (512 KiB, 8 ways) as the last level, the sieve's misses there fell
//!   from seven per hop to four.

use std::collections::VecDeque;
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
/// Free stacks a size class keeps resident, at the least; beyond what
/// [`keep_resident`] allows, freed stacks give their pages back to the
/// kernel (lazily: see [`release_pages`]) and keep only their address range.
const KEEP_RESIDENT: usize = 1024;
/// Bytes of free stacks a class of small stacks may keep resident: more
/// than [`KEEP_RESIDENT`] of them when they are small.
const KEEP_RESIDENT_BYTES: usize = 64 << 20;
/// Free stacks a proc keeps for itself before handing them to the pool.
const PROC_CACHE: usize = 128;
/// Room above every stack for its colour: a page, so that the colour never
/// takes from the size asked for.
const COLOUR_ROOM: usize = PAGE;
/// Lines a stack's start may move down its top page: 48 of the 64, so that
/// a parked thread's few hundred bytes still fit in the one page.
const COLOURS: usize = 48;

/// The usable size of a stack for a `threadcreate` request.
#[inline]
pub(crate) fn usable_size(request: usize) -> usize {
    let want = if request == 0 { DEFAULT_STACK } else { request };
    // Far beyond any machine's memory, and far enough below usize::MAX
    // that rounding and adding the guard and colour cannot wrap around
    // (which would make a huge request a tiny stack).
    assert!(
        want <= MAX_STACK,
        "thread9: a stack of {want} bytes was asked for; the most a thread can have is {MAX_STACK} (1 TiB)"
    );
    want.max(MIN_STACK).next_multiple_of(PAGE)
}

/// The largest stack size [`usable_size`] accepts.
const MAX_STACK: usize = 1 << 40;

/// A stack: `[bottom, limit)` is the guard, `[limit, top)` the usable
/// part, of which the coroutine starts at `base` (the top less its
/// colour). Owned by exactly one thread or free list at a time.
pub(crate) struct Stack {
    bottom: usize,
    limit: usize,
    base: usize,
    top: usize,
}

impl Stack {
    /// The size asked for, which is the size of its class.
    pub(crate) fn size(&self) -> usize {
        self.top - COLOUR_ROOM - self.limit
    }

    /// The line just below where the coroutine starts, which every switch
    /// into it touches.
    pub(crate) fn hint(&self) -> usize {
        self.base - 64
    }

    /// The guard's address range, for the fault handler.
    pub(crate) fn guard(&self) -> (usize, usize) {
        (self.bottom, self.limit)
    }

    /// The usable range below the start, `[low, high)`, for code that
    /// runs on the stack without a coroutine (a proc's OS thread).
    pub(crate) fn span(&self) -> (usize, usize) {
        (self.limit, self.base)
    }
}

/// How far below its slot's top the `n`th stack of a class begins, in
/// bytes: a whole number of lines below [`COLOURS`].
///
/// Consecutive slots already differ in page colour, which repeats every 16
/// slots (the stride is an odd number of pages), so the line must vary
/// with the slot's place in that cycle and with the cycle too: `n = 16q +
/// r` begins at line `19q + 13r` (mod 48). For a fixed `r`, `q` then runs
/// through all 48 lines before repeating (19 is prime to 48), so 768
/// consecutive stacks begin in 768 different sets of a 1024-set cache, and
/// neighbours in a chain are 13 lines apart, more than a parked thread
/// spans, so they never share L1 sets.
fn colour(n: usize) -> usize {
    (n / 16 * 19 + n % 16 * 13) % COLOURS * 64
}

/// The guard below a stack of `size` bytes: at least [`GUARD`], and a page
/// more when that makes the slot an odd number of pages (see the module
/// doc).
fn guard_for(size: usize) -> usize {
    if ((size + COLOUR_ROOM + GUARD) / PAGE).is_multiple_of(2) {
        GUARD + PAGE
    } else {
        GUARD
    }
}

/// A coroutine's view of a [`Stack`] owned by its thread record: the stack
/// stays with the record when the coroutine ends, ready for the record's
/// next thread. It holds copies of the bounds rather than a pointer to the
/// `Stack`, because every resume asks for the base: a pointer would cost a
/// read of the record's cold end on every switch.
pub(crate) struct StackRef {
    base: usize,
    bottom: usize,
}

impl StackRef {
    /// # Safety
    /// `s` must outlive every coroutine made with the result, and must not
    /// be handed to another coroutine meanwhile.
    pub(crate) unsafe fn new(s: &Stack) -> StackRef {
        StackRef {
            base: s.base,
            bottom: s.bottom,
        }
    }
}

// SAFETY: `base` is a whole number of 64-byte lines below a page boundary
// (so aligned to STACK_ALIGNMENT), the range below it down to the guard is
// mapped read/write, the guard makes an overflow fault instead of touching
// other memory, and the usable size below `base` is at least MIN_STACK (the
// colour comes out of COLOUR_ROOM), far above corosensei's MIN_STACK_SIZE;
// per `StackRef::new` the memory outlives the coroutine and is used by it
// alone.
unsafe impl corosensei::stack::Stack for StackRef {
    #[inline]
    fn base(&self) -> corosensei::stack::StackPointer {
        corosensei::stack::StackPointer::new(self.base).expect("stack base is not null")
    }

    #[inline]
    fn limit(&self) -> corosensei::stack::StackPointer {
        corosensei::stack::StackPointer::new(self.bottom).expect("stack bottom is not null")
    }
}

struct Class {
    size: usize,
    /// Free stacks: those that kept their pages at the back, where `take`
    /// looks first, and those that gave them back at the front.
    free: VecDeque<Stack>,
    /// Next unused slot of the current slab, and the slab's end.
    next: usize,
    /// Slots carved so far, for their colours.
    carved: usize,
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
    fn new(size: usize) -> Class {
        Class {
            size,
            free: VecDeque::new(),
            next: 0,
            carved: 0,
            end: 0,
        }
    }

    fn carve(&mut self) -> Stack {
        let guard = guard_for(self.size);
        let slot = self.size + COLOUR_ROOM + guard;
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
        let top = bottom + slot;
        let base = top - colour(self.carved);
        self.carved += 1;
        Stack {
            bottom,
            limit: bottom + guard,
            base,
            top,
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

/// Lets the kernel take a free stack's pages. `MADV_FREE` rather than
/// `MADV_DONTNEED`: the kernel takes the pages only when it runs short of
/// memory, and until then a thread that gets the stack again reuses them
/// without a page fault; they still count in the process's RSS meanwhile.
/// A program that keeps starting thousands of threads (the sieve benchmark
/// runs five of 2,000) otherwise faulted every page back in: measured, 2,000
/// threads created, parked and ended again took 12-16 ms with
/// `MADV_DONTNEED`, 8-11 ms this way, the creation alone 3 ms -> 0.9 ms.
/// Kernels before 4.5 refuse `MADV_FREE`; they get `MADV_DONTNEED`.
fn release_pages(s: &Stack) {
    let (addr, len) = (s.limit as *mut libc::c_void, s.top - s.limit);
    // SAFETY: the stack is free: no thread runs on it, so its contents may
    // be discarded. The range excludes the guard, which stays in place.
    unsafe {
        if libc::madvise(addr, len, libc::MADV_FREE) != 0 {
            libc::madvise(addr, len, libc::MADV_DONTNEED);
        }
    }
}

fn pool() -> std::sync::MutexGuard<'static, Vec<Class>> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

fn class(pool: &mut Vec<Class>, size: usize) -> &mut Class {
    let i = match pool.iter().position(|c| c.size == size) {
        Some(i) => i,
        None => {
            pool.push(Class::new(size));
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
        take(size)
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

/// A stack of `size` bytes (a [`usable_size`]) from the shared pool: a
/// freed one when there is one, else a new slot.
pub(crate) fn take(size: usize) -> Stack {
    let mut pool = pool();
    let c = class(&mut pool, size);
    match c.free.pop_back() {
        Some(s) => s,
        None => c.carve(),
    }
}

/// Returns a stack nothing runs on any more to the shared pool.
pub(crate) fn give(s: Stack) {
    give_back(s.size(), vec![s]);
}

/// How many free stacks of `size` bytes keep their pages. A count alone
/// treated a 32 KiB stack like a 1 MiB one: a program that keeps ending
/// and starting 2,000 small threads (the sieve benchmark does, five times)
/// paid an `madvise` for each of the last thousand every time, and a TLB
/// shootdown on the other core with it; measured, ending 2,000 parked
/// threads took 4.0-6.7 us -> 3.5-4.1 us a thread (5 alternating runs of
/// 20 programs each, the new figure lower every time). The worst case
/// stays what it was for the default size: 1,024 stacks of 256 KiB, all
/// touched, hold 256 MiB.
fn keep_resident(size: usize) -> usize {
    KEEP_RESIDENT.max(KEEP_RESIDENT_BYTES / size)
}

fn give_back(size: usize, stacks: Vec<Stack>) {
    let mut pool = pool();
    let c = class(&mut pool, size);
    let keep = keep_resident(size);
    for s in stacks {
        // A released stack goes behind the resident ones, so that a thread
        // gets one whose pages are still there while any is left: pages
        // the kernel has taken cost a fault each to get back.
        if c.free.len() >= keep {
            release_pages(&s);
            c.free.push_front(s);
        } else {
            c.free.push_back(s);
        }
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
            assert_eq!((size + COLOUR_ROOM + guard) / PAGE % 2, 1, "size {size}");
        }
    }

    #[test]
    fn carved_stacks_keep_their_size_and_guard() {
        let mut c = Class::new(MIN_STACK);
        let (a, b) = (c.carve(), c.carve());
        for s in [&a, &b] {
            assert_eq!(s.size(), MIN_STACK);
            // 32 KiB + the colour page + 4 guard pages is odd already.
            assert_eq!(s.guard().1 - s.guard().0, GUARD);
            assert_eq!(s.guard().1, s.limit);
            assert!(s.base - s.limit >= MIN_STACK);
            assert!(s.top - s.base < COLOUR_ROOM);
            assert_eq!(s.base % 64, 0);
        }
        // Consecutive slots: the stride is the odd slot, so their tops
        // differ in the low bit of the page number.
        assert_eq!(b.bottom - a.bottom, MIN_STACK + COLOUR_ROOM + GUARD);
        assert_ne!(a.top / PAGE % 2, b.top / PAGE % 2);
    }

    #[test]
    fn consecutive_stacks_begin_in_different_cache_sets() {
        // Sets of a 1024-set cache of 64-byte lines (this machine's L2):
        // address bits 6 to 15.
        let set = |a: usize| a / 64 % 1024;
        for size in [MIN_STACK, DEFAULT_STACK, 100 * PAGE] {
            let mut c = Class::new(size);
            let stacks: Vec<Stack> = (0..768).map(|_| c.carve()).collect();
            let mut sets: Vec<usize> = stacks.iter().map(|s| set(s.base)).collect();
            sets.sort_unstable();
            sets.dedup();
            assert_eq!(sets.len(), 768, "size {size}");
            // Neighbours are far apart in L1 (64 sets): a parked thread's
            // few hundred bytes of one never share a set with the next's.
            for w in stacks.windows(2) {
                let d = (w[0].base / 64).abs_diff(w[1].base / 64) % 64;
                assert!(d.min(64 - d) >= 10, "size {size}: {d}");
            }
        }
    }

    #[test]
    fn small_freed_stacks_keep_their_pages_in_greater_numbers() {
        // A 2,000-thread sieve of 32 KiB stacks gives none of them back.
        assert_eq!(keep_resident(MIN_STACK), 2048);
        assert_eq!(keep_resident(DEFAULT_STACK), KEEP_RESIDENT);
        assert_eq!(keep_resident(8 << 20), KEEP_RESIDENT);
        for pages in MIN_STACK / PAGE..=DEFAULT_STACK / PAGE {
            let size = pages * PAGE;
            let bytes = keep_resident(size) * size;
            assert!(bytes <= (KEEP_RESIDENT * size).max(KEEP_RESIDENT_BYTES));
            assert!(keep_resident(size) >= KEEP_RESIDENT);
        }
    }

    #[test]
    fn stacks_that_kept_their_pages_are_taken_before_released_ones() {
        // A size no other test asks for: the class is this test's alone.
        let size = MIN_STACK + 5 * PAGE;
        let keep = keep_resident(size);
        let stacks: Vec<Stack> = (0..keep + 2).map(|_| take(size)).collect();
        let resident: Vec<usize> = stacks[..keep].iter().map(|s| s.base).collect();
        let released: Vec<usize> = stacks[keep..].iter().map(|s| s.base).collect();
        give_back(size, stacks);
        let again: Vec<Stack> = (0..keep + 2).map(|_| take(size)).collect();
        let bases: Vec<usize> = again.iter().map(|s| s.base).collect();
        // The resident last in, first out; then the released, oldest first.
        let want: Vec<usize> = resident.iter().rev().chain(&released).copied().collect();
        assert_eq!(bases, want);
        give_back(size, again);
    }

    #[test]
    fn a_released_stack_stays_mapped_and_writable() {
        let mut c = Class::new(MIN_STACK);
        let s = c.carve();
        let words = (s.base - s.limit) / 8;
        let at = |i: usize| (s.limit + i * 8) as *mut u64;
        for i in 0..words {
            // SAFETY: [limit, base) is this stack's usable part, ours alone.
            unsafe { at(i).write(i as u64 | 1) };
        }
        release_pages(&s);
        // Whatever a released page reads as (old contents or zeros), it
        // stays mapped and writable, and a write sticks.
        for i in 0..words {
            // SAFETY: as above.
            unsafe {
                let old = at(i).read();
                assert!(old == 0 || old == i as u64 | 1, "word {i}: {old:#x}");
                at(i).write(!(i as u64));
            }
        }
        for i in 0..words {
            // SAFETY: as above.
            assert_eq!(unsafe { at(i).read() }, !(i as u64));
        }
    }
}
