//! Procs: OS threads that hold threads.
//!
//! A proc is split in two. [`ProcShared`] is what other procs need: the
//! inbox they ready its threads into, the state word it sleeps on, and the
//! list of its threads for dumps and interrupts. [`ProcLocal`] is what only
//! the proc's own OS thread touches: its run queue, its thread count, its
//! stack cache. The scheduler loop in [`super::sched`] ties them together.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::{Arc, OnceLock};

use super::program::Program;
use super::stack::{self, StackRef};
use super::threads::{self, Thread, ThreadId};
use crate::util::bias::{Biased, BiasedGuard, NO_PROC};
use crate::util::futex;

/// Proc states, the futex word a sleeping proc waits on.
pub(crate) const RUNNING: u32 = 0;
pub(crate) const SLEEPING: u32 = 1;
/// Held asleep by the deadlock detector while it inspects the program.
pub(crate) const FROZEN: u32 = 2;
/// Asleep in `poll` on its threads' descriptors and its `waker` (see
/// `super::fdwait`): woken by a write to the waker, not by the futex.
pub(crate) const POLLING: u32 = 3;

/// A thread record pointer that may sit in another proc's list.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct ThreadRef(pub(crate) *const Thread);
// SAFETY: records are Sync (see Thread); the list only names them.
unsafe impl Send for ThreadRef {}

impl ThreadRef {
    pub(crate) fn get(&self) -> &Thread {
        // SAFETY: a record stays in its proc's list until it is freed, and
        // readers hold the list's lock.
        unsafe { &*self.0 }
    }
}

pub(crate) struct ProcShared {
    /// Unique in the process, never 0: names the proc in biased locks.
    pub(crate) id: u64,
    pub(crate) program: Arc<Program>,
    /// The OS thread id, set when the proc starts.
    pub(crate) tid: AtomicI32,
    pub(crate) state: AtomicU32,
    /// Threads readied by other procs (a Treiber stack, drained whole).
    inbox: AtomicPtr<Thread>,
    /// Set when a thread of this proc was killed but could not be woken at
    /// once (it was running, or about to block); the scheduler then wakes
    /// it once it has parked. See [`ProcShared::attend`].
    attention: AtomicBool,
    /// Every live thread of the proc, for dumps, kills and exits. Written
    /// by the proc itself (biased to it), read now and then by others.
    pub(crate) threads: Biased<Vec<ThreadRef>>,
    /// The record of the thread running now (an address, never
    /// dereferenced: a dump compares it), 0 when the scheduler is. Not the
    /// id, which would cost a read of the record's cold end per switch.
    pub(crate) running: AtomicUsize,
    /// The eventfd a POLLING proc also polls; made before its first poll.
    pub(crate) waker: OnceLock<OwnedFd>,
}

impl ProcShared {
    pub(crate) fn new(program: Arc<Program>) -> Arc<ProcShared> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(ProcShared {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            program,
            tid: AtomicI32::new(0),
            state: AtomicU32::new(RUNNING),
            inbox: AtomicPtr::new(ptr::null_mut()),
            attention: AtomicBool::new(false),
            threads: Biased::new(Vec::new()),
            running: AtomicUsize::new(0),
            waker: OnceLock::new(),
        })
    }

    /// The thread list, locked by someone other than this proc.
    pub(crate) fn threads(&self) -> BiasedGuard<'_, Vec<ThreadRef>> {
        self.threads.lock_as(NO_PROC)
    }

    /// Adds a thread record to this proc's list; `by` is the calling proc's
    /// id.
    #[inline]
    pub(crate) fn adopt(&self, t: *const Thread, by: u64) {
        let mut l = self.threads.lock_as(by);
        // SAFETY: the caller owns the fresh record.
        unsafe { (*t).list_idx.store(l.len(), Ordering::Relaxed) };
        l.push(ThreadRef(t));
    }

    /// Removes a thread record; called by this proc only.
    fn disown(&self, t: &Thread) {
        let mut l = self.threads.lock_as(self.id);
        let i = t.list_idx.load(Ordering::Relaxed);
        debug_assert!(ptr::eq(l[i].0, t));
        l.swap_remove(i);
        if let Some(moved) = l.get(i) {
            moved.get().list_idx.store(i, Ordering::Relaxed);
        }
    }

    /// True when nothing was handed to this proc from outside: no readied
    /// thread, no request for attention.
    pub(crate) fn inbox_is_empty(&self) -> bool {
        self.inbox.load(Ordering::SeqCst).is_null() && !self.attention.load(Ordering::SeqCst)
    }

    /// Asks the proc to look at its threads: the interrupts other procs
    /// requested (see [`Thread::request_interrupt`]) and its killed threads
    /// (see [`Thread::kill`]).
    ///
    /// Only a thread's own proc ends its waits on behalf of others: it does
    /// so from its scheduler, which runs only while none of its threads
    /// does, so a waiting thread has parked and the object it waits on is
    /// alive for the proc to enter (see `crate::thread::wait`). A killed
    /// thread may also have passed its last kill check just before the kill
    /// and would then block for good, so the scheduler ends the wait of
    /// every killed thread that has one. The flag is ordered against the
    /// proc's sleep like the inbox is, so a request cannot be missed.
    pub(crate) fn attend(&self) {
        self.attention.store(true, Ordering::SeqCst);
        self.kick();
    }

    fn inbox_push(&self, t: *const Thread) {
        let t = t as *mut Thread;
        let mut head = self.inbox.load(Ordering::Relaxed);
        loop {
            // SAFETY: the caller is the one agent readying `t`, so no one
            // else writes its link.
            unsafe { (*t).inbox_next.store(head, Ordering::Relaxed) };
            match self
                .inbox
                .compare_exchange_weak(head, t, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Takes every thread in the inbox, oldest first.
    fn inbox_take(&self) -> *const Thread {
        let mut p = self.inbox.swap(ptr::null_mut(), Ordering::Acquire);
        let mut rev: *mut Thread = ptr::null_mut();
        while !p.is_null() {
            // SAFETY: threads in the inbox are alive and ours to run.
            unsafe {
                let next = (*p).inbox_next.load(Ordering::Relaxed);
                (*p).inbox_next.store(rev, Ordering::Relaxed);
                rev = p;
                p = next;
            }
        }
        rev
    }

    /// Wakes the proc if it sleeps; waits out a deadlock check that holds
    /// it frozen (the check then sees the inbox and gives up).
    pub(crate) fn kick(&self) {
        loop {
            match self.state.load(Ordering::SeqCst) {
                s @ (SLEEPING | POLLING) => {
                    if self
                        .state
                        .compare_exchange(s, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        self.program.wake_one();
                        if s == SLEEPING {
                            futex::wake(&self.state, 1);
                        } else if let Some(w) = self.waker.get() {
                            // (Made before the state first became POLLING.)
                            super::fdwait::signal(w.as_raw_fd());
                        }
                        return;
                    }
                }
                FROZEN => std::thread::yield_now(),
                _ => return,
            }
        }
    }
}

/// Readies `t` from outside its proc.
///
/// # Safety
/// As for [`threads::ready`].
pub(crate) unsafe fn ready_remote(t: *const Thread) {
    // SAFETY: `t` is parked and alive, so its proc is; the extra count keeps
    // the proc alive after the push, when `t` may run, exit, and let its
    // proc end before we kick it.
    let p = unsafe {
        let p = (*t).proc;
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    };
    p.inbox_push(t);
    p.kick();
}

pub(crate) struct ProcLocal {
    pub(crate) shared: Arc<ProcShared>,
    runq_head: Cell<*const Thread>,
    runq_tail: Cell<*const Thread>,
    pub(crate) nthreads: Cell<usize>,
    pub(crate) stacks: RefCell<stack::Cache>,
    /// Status of the last thread of this proc to exit.
    pub(crate) last_status: RefCell<Option<String>>,
    /// Records of exited threads, kept for new ones: creating and ending a
    /// thread then costs no allocation.
    spare: RefCell<Vec<*mut Thread>>,
    /// Moving average of how long this proc's idle periods last, in ns
    /// (see `sched::poll`).
    pub(crate) idle_avg_ns: Cell<u64>,
    /// `procdata` slots.
    pub(crate) data: super::data::Slots,
    /// Descriptors its threads wait on (`threadfdwait`).
    pub(crate) fdwaits: super::fdwait::FdWaits,
    /// The thread ids this proc has reserved and not yet given out: the
    /// next one, and the end of the block.
    ids: Cell<(u64, u64)>,
}

/// Spare thread records a proc keeps.
const SPARE_THREADS: usize = 256;

/// Thread ids a proc reserves at a time. Taking each id from the program's
/// counter cost an atomic read-modify-write per `threadcreate`, a tenth of
/// its time; in blocks, ids stay unique and increase within a proc, and a
/// program of one proc still numbers its threads 1, 2, 3, ...
const ID_BLOCK: u64 = 32;

impl Drop for ProcLocal {
    fn drop(&mut self) {
        for t in std::mem::take(self.spare.get_mut()) {
            // SAFETY: spare records are owned by this proc alone.
            unsafe { self.free_record(t) };
        }
    }
}

thread_local! {
    static LOCAL: Cell<*const ProcLocal> = const { Cell::new(ptr::null()) };
}

/// The calling OS thread's proc, if it is one.
#[inline(always)]
pub(crate) fn local() -> Option<&'static ProcLocal> {
    let p = LOCAL.with(|l| l.get());
    // SAFETY: LOCAL is set only while the ProcLocal lives on the proc's
    // scheduler frame, which encloses every thread and call on this OS
    // thread; callers never keep the reference past their own call.
    unsafe { p.as_ref() }
}

impl ProcLocal {
    pub(crate) fn new(shared: Arc<ProcShared>) -> ProcLocal {
        ProcLocal {
            shared,
            runq_head: Cell::new(ptr::null()),
            runq_tail: Cell::new(ptr::null()),
            nthreads: Cell::new(0),
            stacks: RefCell::new(stack::Cache::default()),
            last_status: RefCell::new(None),
            spare: RefCell::new(Vec::new()),
            idle_avg_ns: Cell::new(0),
            data: Default::default(),
            fdwaits: Default::default(),
            ids: Cell::new((0, 0)),
        }
    }

    /// A new thread id, from this proc's block.
    fn new_tid(&self) -> u64 {
        let (mut next, mut end) = self.ids.get();
        if next == end {
            next = self.shared.program.take_tids(ID_BLOCK);
            end = next + ID_BLOCK;
        }
        self.ids.set((next + 1, end));
        next
    }

    /// Makes this the calling OS thread's proc for the duration of `f`.
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        self.shared
            .tid
            .store(crate::util::gettid(), Ordering::Relaxed);
        LOCAL.with(|l| l.set(self));
        struct Leave;
        impl Drop for Leave {
            fn drop(&mut self) {
                LOCAL.with(|l| l.set(ptr::null()));
            }
        }
        let _leave = Leave;
        f()
    }

    #[inline(always)]
    pub(crate) fn push_ready(&self, t: *const Thread) {
        // SAFETY: run-queue links belong to this proc's OS thread, which is
        // the caller.
        unsafe { (*t).next.set(ptr::null()) };
        let tail = self.runq_tail.get();
        if tail.is_null() {
            self.runq_head.set(t);
        } else {
            // SAFETY: as above; `tail` is a live thread of this proc.
            unsafe { (*tail).next.set(t) };
        }
        self.runq_tail.set(t);
    }

    /// The next thread to run: threads readied by other procs join the tail
    /// of the queue first, so that they wait their turn like everyone else.
    #[inline(always)]
    pub(crate) fn pop_ready(&self) -> Option<*const Thread> {
        if !self.shared.inbox.load(Ordering::Relaxed).is_null() {
            self.drain_inbox();
        }
        if self.shared.attention.load(Ordering::Relaxed) {
            self.attend_threads();
        }
        let h = self.runq_head.get();
        if h.is_null() {
            return None;
        }
        // SAFETY: `h` is a live thread of this proc.
        let n = unsafe { (*h).next.get() };
        self.runq_head.set(n);
        if n.is_null() {
            self.runq_tail.set(ptr::null());
        }
        Some(h)
    }

    /// Carries out what other procs asked of this one's threads: the
    /// interrupts they requested, and the end of every killed thread's wait
    /// (it dies on waking). Runs in the scheduler, so no thread of this
    /// proc runs and every waiting one has parked.
    #[cold]
    fn attend_threads(&self) {
        if !self.shared.attention.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut todo = Vec::new();
        for r in self.shared.threads.lock_as(self.shared.id).iter() {
            let t = r.get();
            let asked = t.take_interrupt_request();
            if t.is_killed() {
                todo.push((r.0, None));
            } else if asked.is_some() {
                todo.push((r.0, asked));
            }
        }
        // Outside the list lock: an interrupt enters the lock of the
        // object waited on.
        for (t, which) in todo {
            // SAFETY: the scheduler runs on this proc's OS thread while none
            // of its threads does; the records stay alive until this proc
            // reaps them, which it is not doing now.
            unsafe { (*t).interrupt_now(which) };
        }
    }

    #[cold]
    pub(crate) fn drain_inbox(&self) {
        let mut p = self.shared.inbox_take();
        while !p.is_null() {
            // SAFETY: taken from our inbox: alive and ours.
            let next = unsafe { (*p).inbox_next.load(Ordering::Relaxed) };
            self.push_ready(p);
            p = next;
        }
    }

    /// Creates a thread in this proc; the caller runs on this proc's OS
    /// thread.
    pub(crate) fn spawn<F: FnOnce() + 'static>(
        &self,
        f: F,
        stacksize: usize,
        name: &str,
    ) -> ThreadId {
        let prog = &self.shared.program;
        let id = self.new_tid();
        let grp = {
            let cur = threads::current_ptr();
            // SAFETY: the current thread is alive.
            if cur.is_null() {
                0
            } else {
                unsafe { (*cur).grp.load(Ordering::Relaxed) }
            }
        };
        let t = match self.spare.borrow_mut().pop() {
            Some(t) => {
                // SAFETY: spare records were reaped by this proc and are
                // owned by it alone.
                unsafe { Thread::reuse(t, id, grp, name) };
                t as *const Thread
            }
            None => Thread::alloc(id, &self.shared, grp, name),
        };
        self.shared.adopt(t, self.shared.id);
        if prog.exiting() {
            // SAFETY: we own the fresh record; it dies before it first runs.
            unsafe { (*t).mark_killed() };
        }
        self.launch(t, f, stacksize);
        id
    }

    /// Gives an adopted record its stack and coroutine and queues it. A
    /// reused record keeps its stack if it has the right size.
    pub(crate) fn launch<F: FnOnce() + 'static>(&self, t: *const Thread, f: F, stacksize: usize) {
        let size = stack::usable_size(stacksize);
        // SAFETY: the record is ours and not yet running; its old coroutine
        // (if any) was dropped at reap, so nothing uses its stack.
        unsafe {
            let slot = &mut *(*t).stack.get();
            if slot.as_ref().is_none_or(|s| s.size() != size) {
                let mut cache = self.stacks.borrow_mut();
                if let Some(old) = slot.take() {
                    cache.put(old);
                }
                *slot = Some(cache.get(size));
            }
            let stack = slot.as_ref().expect("just set");
            (*t).local.store(
                self as *const ProcLocal as *mut ProcLocal,
                Ordering::Relaxed,
            );
            (*t).guard.set(stack.guard());
            (*t).stack_hint.set(stack.hint());
            // The record keeps the stack until the coroutine is dropped.
            *(*t).co.get() = Some(threads::Co::with_stack(
                StackRef::new(stack),
                threads::trampoline(f),
            ));
        }
        self.nthreads.set(self.nthreads.get() + 1);
        self.push_ready(t);
    }

    /// Frees a reaped record, returning its stack to the cache.
    ///
    /// # Safety
    /// `t` was reaped by this proc (its coroutine is gone) and is owned by
    /// the caller.
    unsafe fn free_record(&self, t: *mut Thread) {
        // SAFETY: per the contract.
        let b = unsafe { Box::from_raw(t) };
        debug_assert!(unsafe { (*b.co.get()).is_none() });
        if let Some(s) = unsafe { (*b.stack.get()).take() } {
            self.stacks.borrow_mut().put(s);
        }
    }

    /// Frees an exited thread and records how it ended.
    // Always inlined into its one caller, the scheduler loop: left to
    // itself the compiler flips between inlining it and not as unrelated
    // code changes, and the call costs `spawn` about 30 instructions.
    #[inline(always)]
    pub(crate) fn reap(&self, t: *const Thread, exit: super::exit::Exit) {
        // SAFETY: the thread has returned from its coroutine, so nothing
        // runs on its stack; once out of the list no other proc can find it,
        // and it is in no wait queue (it left them before returning).
        unsafe {
            self.shared.disown(&*t);
            *(*t).co.get() = None;
            let mut spare = self.spare.borrow_mut();
            if spare.len() < SPARE_THREADS {
                spare.push(t as *mut Thread);
            } else {
                self.free_record(t as *mut Thread);
            }
        }
        self.nthreads.set(self.nthreads.get() - 1);
        match exit {
            super::exit::Exit::Status(s) => *self.last_status.borrow_mut() = Some(s),
            super::exit::Exit::Killed => {}
            super::exit::Exit::Panic(msg) => self.shared.program.exit_all(&format!("panic: {msg}")),
        }
    }
}

/// Creates a proc (a new OS thread) whose one thread runs `f`, and returns
/// that thread's id.
///
/// `f` must be `Send`: it runs in parallel with the caller, so the compiler
/// holds you to Plan 9's rule that procs share only what is safe to share.
///
/// The OS thread is named `thread9 proc <id>` (what `ps -L` and debuggers
/// show, cut to the kernel's 15 bytes). `stacksize` is the stack of the
/// thread running `f`, as for [`threadcreate`](crate::threadcreate); the
/// proc's scheduler has a stack of its own.
///
/// ```
/// thread9::run(|| {
///     let c = thread9::Chan::new(0);
///     let d = c.clone();
///     thread9::proccreate(move || d.send(6 * 7).unwrap(), 0);
///     assert_eq!(c.recv(), Ok(42));
/// }).unwrap();
/// ```
pub fn proccreate<F: FnOnce() + Send + 'static>(f: F, stacksize: usize) -> ThreadId {
    let Some(l) = local() else {
        threads::outside("proccreate");
    };
    let prog = l.shared.program.clone();
    let id = l.new_tid();
    let grp = threads::current_ptr();
    // SAFETY: the current thread is alive.
    let grp = if grp.is_null() {
        0
    } else {
        unsafe { (*grp).grp.load(Ordering::Relaxed) }
    };
    let shared = ProcShared::new(prog.clone());
    let t = ThreadRef(Thread::alloc(id, &shared, grp, ""));
    shared.adopt(t.0, NO_PROC);
    prog.add_proc(shared.clone());
    if prog.exiting() {
        t.get().kill();
    }
    let proc = shared.clone();
    let spawned = super::osthread::spawn(
        format!("thread9 proc {id}"),
        super::sched::PROC_OS_STACK,
        Box::new(move || {
            let t = t;
            let local = ProcLocal::new(proc);
            local.enter(|| {
                // A thread that cannot have its stack (a size refused, or
                // memory the kernel will not give) ends the program; the
                // proc, left with nothing to run, then ends too.
                let prog = &local.shared.program;
                super::exit::or_end_program(prog, || local.launch(t.0, f, stacksize));
                super::sched::run_proc(&local);
            });
        }),
    );
    match spawned {
        Ok(h) => prog.keep_handle(h),
        Err(e) => {
            // The proc will never run: count it out, or the program would
            // wait for it forever after this panic. Its thread's record
            // stays allocated, since a dump may be reading it.
            prog.remove_proc(&shared);
            panic!(
                "thread9: proccreate: cannot start an OS thread: {e} (check `ulimit -u` \
                 and /proc/sys/kernel/threads-max)"
            )
        }
    }
    id
}
