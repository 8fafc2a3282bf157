//! QLock, RWLock and Rendez: they block only the calling thread, work
//! across procs, serve waiters in order, and release on drop.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use thread9::{
    Chan, QLock, RWLock, Rendez, proccreate, run, threadcreate, threadkill, threadyield,
};

#[test]
fn a_waiting_thread_does_not_stall_its_proc() {
    run(|| {
        let lock = Rc::new(QLock::new(0));
        let ticks = Rc::new(Cell::new(0));
        let (l, t) = (lock.clone(), ticks.clone());
        // The holder keeps the lock across many switches.
        let g = lock.lock();
        threadcreate(
            move || {
                *l.lock() += 1; // waits here...
            },
            0,
        );
        threadcreate(
            move || {
                for _ in 0..10 {
                    t.set(t.get() + 1); // ...while this one runs on
                    threadyield();
                }
            },
            0,
        );
        for _ in 0..20 {
            threadyield();
        }
        assert_eq!(ticks.get(), 10);
        assert_eq!(*g, 0);
        drop(g);
        threadyield();
        assert_eq!(*lock.lock(), 1);
    })
    .unwrap();
}

#[test]
fn waiters_are_served_in_arrival_order() {
    run(|| {
        let lock = Rc::new(QLock::new(Vec::new()));
        let g = lock.lock();
        for k in 0..5 {
            let l = lock.clone();
            threadcreate(move || l.lock().push(k), 0);
            threadyield(); // k is now queued
        }
        drop(g);
        for _ in 0..6 {
            threadyield();
        }
        assert_eq!(*lock.lock(), [0, 1, 2, 3, 4]);
        assert!(lock.try_lock().is_some());
    })
    .unwrap();
}

#[test]
fn an_invariant_holds_under_contention_across_procs() {
    // Each critical section moves a unit from `a` to `b` in two steps,
    // switching in between; anyone who saw a + b != N would see a torn
    // state.
    const N: i64 = 1000;
    run(|| {
        let lock = Arc::new(QLock::new((N, 0i64, 0u64)));
        let done = Chan::new(0);
        for _ in 0..4 {
            let (l, d) = (lock.clone(), done.clone());
            proccreate(
                move || {
                    let inner = Chan::new(0);
                    for _ in 0..2 {
                        let (l, inner) = (l.clone(), inner.clone());
                        threadcreate(
                            move || {
                                for _ in 0..300 {
                                    let mut g = l.lock();
                                    assert_eq!(g.0 + g.1, N, "torn state seen");
                                    g.0 -= 1;
                                    threadyield();
                                    g.1 += 1;
                                    g.2 += 1;
                                    if g.0 == 0 {
                                        (g.0, g.1) = (g.1, 0);
                                    }
                                }
                                inner.send(()).unwrap();
                            },
                            0,
                        );
                    }
                    inner.recv().unwrap();
                    inner.recv().unwrap();
                    d.send(()).unwrap();
                },
                0,
            );
        }
        for _ in 0..4 {
            done.recv().unwrap();
        }
        let g = lock.lock();
        assert_eq!(g.0 + g.1, N);
        assert_eq!(g.2, 4 * 2 * 300, "every critical section ran once");
    })
    .unwrap();
}

#[test]
fn try_lock_and_get_mut() {
    run(|| {
        let mut lock = QLock::new(5);
        *lock.get_mut() += 1;
        let g = lock.try_lock().unwrap();
        assert!(lock.try_lock().is_none());
        assert_eq!(*g, 6);
        drop(g);
        assert_eq!(lock.into_inner(), 6);
    })
    .unwrap();
}

#[test]
fn guards_release_while_unwinding() {
    run(|| {
        let lock = Rc::new(QLock::new(0));
        let l = lock.clone();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _g = l.lock();
            panic!("inside the critical section");
        }));
        assert!(r.is_err());
        assert!(
            lock.try_lock().is_some(),
            "the guard released the lock as the panic unwound"
        );
        // A killed thread's guard is released too.
        let l = lock.clone();
        let c: Chan<()> = Chan::new(0);
        let d = c.clone();
        let id = threadcreate(
            move || {
                let _g = l.lock();
                let _ = d.recv();
            },
            0,
        );
        threadyield();
        assert!(lock.try_lock().is_none());
        threadkill(id);
        threadyield();
        assert!(
            lock.try_lock().is_some(),
            "the killed holder's guard released the lock"
        );
    })
    .unwrap();
}

#[test]
fn rwlock_readers_share_and_writers_exclude() {
    run(|| {
        let rw = Arc::new(RWLock::new(0));
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let done = Chan::new(0);
        for k in 0..6 {
            let (rw, inside, max, done) = (rw.clone(), inside.clone(), max.clone(), done.clone());
            let f = move || {
                for _ in 0..100 {
                    if k < 4 {
                        let g = rw.rlock();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n, Ordering::SeqCst);
                        threadyield();
                        assert!(*g >= 0);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    } else {
                        let mut g = rw.wlock();
                        assert_eq!(inside.load(Ordering::SeqCst), 0, "a writer is alone");
                        *g += 1;
                        threadyield();
                    }
                }
                done.send(()).unwrap();
            };
            if k % 2 == 0 {
                threadcreate(f, 0);
            } else {
                proccreate(f, 0);
            }
        }
        for _ in 0..6 {
            done.recv().unwrap();
        }
        assert_eq!(*rw.rlock(), 200);
        assert!(
            max.load(Ordering::SeqCst) >= 2,
            "readers held the lock together"
        );
    })
    .unwrap();
}

#[test]
fn a_writer_is_not_starved_by_readers() {
    run(|| {
        let rw = Rc::new(RWLock::new(false));
        let stop = Rc::new(Cell::new(false));
        // Readers overlapping without pause: the lock is never free of them
        // unless arrivals queue behind a waiting writer.
        for _ in 0..3 {
            let (rw, stop) = (rw.clone(), stop.clone());
            threadcreate(
                move || {
                    while !stop.get() {
                        let _g = rw.rlock();
                        threadyield();
                    }
                },
                0,
            );
        }
        threadyield();
        let (rw2, stop2) = (rw.clone(), stop.clone());
        threadcreate(
            move || {
                *rw2.wlock() = true;
                stop2.set(true);
            },
            0,
        );
        for _ in 0..1000 {
            if stop.get() {
                break;
            }
            threadyield();
        }
        assert!(stop.get(), "the writer got in");
        assert!(*rw.rlock());
        // The readers see `stop` and leave; then the lock is free.
        for _ in 0..10 {
            threadyield();
        }
        assert!(rw.try_wlock().is_some());
    })
    .unwrap();
}

/// Waits (a bounded while) until `n` threads sleep on a rendez.
fn wait_sleepers(n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if thread9::threaddump().matches("rendez sleep").count() == n {
            return;
        }
        threadyield();
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("{n} threads never slept: {}", thread9::threaddump());
}

#[test]
fn rendez_wakes_the_oldest_sleeper_first() {
    run(|| {
        let shared = Rc::new((QLock::new(0), Rendez::new()));
        assert!(!shared.1.wakeup(), "no sleeper to wake");
        let order = Chan::new(3);
        for k in 0..3 {
            let (s, o) = (shared.clone(), order.clone());
            threadcreate(
                move || {
                    let mut g = s.0.lock();
                    while *g == 0 {
                        g = s.1.sleep(g); // the lock is free while we sleep
                    }
                    *g -= 1;
                    o.send(k).unwrap();
                },
                0,
            );
            threadyield(); // k sleeps before k + 1 starts
        }
        wait_sleepers(3);
        for _ in 0..3 {
            *shared.0.lock() += 1;
            assert!(shared.1.wakeup());
        }
        let got: Vec<i32> = (0..3).map(|_| order.recv().unwrap()).collect();
        assert_eq!(got, [0, 1, 2]);
    })
    .unwrap();
}

#[test]
fn rendez_wakeupall_wakes_sleepers_of_other_procs() {
    run(|| {
        let shared = Arc::new((QLock::new(false), Rendez::new()));
        let done = Chan::new(0);
        for _ in 0..3 {
            let (s, d) = (shared.clone(), done.clone());
            proccreate(
                move || {
                    let mut g = s.0.lock();
                    while !*g {
                        g = s.1.sleep(g);
                    }
                    drop(g);
                    d.send(()).unwrap();
                },
                0,
            );
        }
        wait_sleepers(3);
        *shared.0.lock() = true;
        assert_eq!(shared.1.wakeupall(), 3);
        for _ in 0..3 {
            done.recv().unwrap();
        }
        assert_eq!(shared.1.wakeupall(), 0);
    })
    .unwrap();
}
