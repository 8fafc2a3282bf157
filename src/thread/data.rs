//! Per-thread and per-proc data: typed slots (Plan 9's `threaddata` and
//! `procdata`, which give one untyped pointer each).
//!
//! Each thread, and each proc, has one slot per type: `threaddata::<T>`
//! reaches the calling thread's `Option<T>` (empty at first), whatever code
//! asks. Use a type of your own to keep a slot private. Thread slots are
//! dropped when the thread ends, in the thread itself (so their destructors
//! may block); proc slots when the proc ends.
//!
//! Rust's `thread_local!` is per proc in thread9 (one OS thread holds all
//! the threads of a proc), like `procdata`.

use std::any::{Any, TypeId};
use std::cell::{RefCell, UnsafeCell};

use super::procs;
use super::threads;

/// One slot: its type, and its `Option<T>` (boxed so that it stays put
/// while another slot is added).
type Slot = (TypeId, Box<RefCell<dyn Any>>);

/// A set of typed slots.
#[derive(Default)]
pub(crate) struct Slots {
    v: UnsafeCell<Vec<Slot>>,
}

impl Slots {
    /// Runs `f` on this set's `Option<T>`.
    ///
    /// Must be called only by the one OS thread that owns the set.
    fn with<T: 'static, R>(&self, what: &str, f: impl FnOnce(&mut Option<T>) -> R) -> R {
        let id = TypeId::of::<T>();
        let cell: *const RefCell<dyn Any> = {
            // SAFETY: only the owning OS thread gets here (see callers), and
            // this borrow of the list ends before `f` runs.
            let v = unsafe { &mut *self.v.get() };
            match v.iter().find(|(t, _)| *t == id) {
                Some((_, b)) => &**b,
                None => {
                    v.push((id, Box::new(RefCell::new(None::<T>))));
                    &*v.last().expect("just pushed").1
                }
            }
        };
        // SAFETY: the box is never freed while the set lives, which outlasts
        // this call; the list may grow during `f` (boxes do not move).
        let cell = unsafe { &*cell };
        let mut slot = cell.try_borrow_mut().unwrap_or_else(|_| {
            panic!(
                "thread9: {what}::<{}> called again while it is in use",
                std::any::type_name::<T>()
            )
        });
        f(slot
            .downcast_mut::<Option<T>>()
            .expect("slots are keyed by their type"))
    }

    /// Takes every slot out, to be dropped by the caller.
    pub(crate) fn take(&self) -> Vec<Slot> {
        // SAFETY: called by the owning OS thread outside any `with`.
        std::mem::take(unsafe { &mut *self.v.get() })
    }
}

/// Runs `f` with the calling thread's slot of type `T` (Plan 9's
/// `threaddata`).
///
/// ```
/// struct Depth(u32); // a type of our own: a private slot
/// thread9::run(|| {
///     thread9::threaddata::<Depth, _>(|d| *d = Some(Depth(1)));
///     thread9::threadcreate(|| {
///         // Another thread: its own, empty slot.
///         assert!(thread9::threaddata::<Depth, _>(|d| d.is_none()));
///     }, 0);
///     thread9::threadyield();
///     assert_eq!(thread9::threaddata::<Depth, _>(|d| d.as_ref().unwrap().0), 1);
/// }).unwrap();
/// ```
///
/// # Panics
/// Outside a program, or if `f` calls `threaddata::<T>` again for the same
/// `T`.
pub fn threaddata<T: 'static, R>(f: impl FnOnce(&mut Option<T>) -> R) -> R {
    threads::current("threaddata").data.with("threaddata", f)
}

/// Runs `f` with the calling proc's slot of type `T` (Plan 9's
/// `procdata`), shared by the threads of the proc.
///
/// ```
/// thread9::run(|| {
///     thread9::procdata::<Vec<&str>, _>(|v| v.get_or_insert_with(Vec::new).push("first"));
///     thread9::threadcreate(|| {
///         thread9::procdata::<Vec<&str>, _>(|v| v.as_mut().unwrap().push("second"));
///     }, 0);
///     thread9::threadyield();
///     assert_eq!(thread9::procdata::<Vec<&str>, _>(|v| v.clone().unwrap()), ["first", "second"]);
/// }).unwrap();
/// ```
///
/// # Panics
/// Outside a program, or if `f` calls `procdata::<T>` again for the same
/// `T`.
pub fn procdata<T: 'static, R>(f: impl FnOnce(&mut Option<T>) -> R) -> R {
    threads::current("procdata");
    procs::local()
        .expect("a thread runs in a proc")
        .data
        .with("procdata", f)
}
