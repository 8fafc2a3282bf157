//! threadint, threadkill, groups, threadpid, threaddata and procdata.

mod common;

use common::Count;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thread9::{
    Alt, AltError, Chan, Interrupted, Ioproc, QLock, RWLock, RecvError, Rendez, SendError,
    proccreate, procdata, run, threadcreate, threaddata, threadgetgrp, threadid, threadint,
    threadintgrp, threadkill, threadkillgrp, threadpid, threadsetgrp, threadyield,
};

/// Waits (checking every 200 us, for up to a minute) until the thread
/// dump satisfies `ready`; fails with `what` and the dump otherwise. The
/// caller's proc keeps running its other threads meanwhile.
fn await_dump(what: &str, ready: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = thread9::threaddump();
        if ready(&d) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}:\n{d}");
        threadyield();
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Starts `op` in a thread (in this proc, or a new proc), waits until the
/// dump shows it blocked in `waits` (the dump's word for the wait), then
/// interrupts it, and returns what `op` returned (as a string).
///
/// The wait must be the operation's last: an ioproc call first sends its
/// request (a moment blocked in `send`), and an interrupt that arrives
/// after that send completes finds the thread running, which it leaves
/// alone, as it must; the call then runs to its end. Watching for any
/// blocked state made the test fail that way about once in eight runs on
/// a loaded machine.
fn interrupted(
    in_proc: bool,
    waits: &'static str,
    op: impl FnOnce() -> String + Send + 'static,
) -> String {
    let out = Chan::new(1);
    let (o, ready) = (out.clone(), Chan::new(0));
    let r = ready.clone();
    let body = move || {
        r.send(threadid()).unwrap();
        o.send(op()).unwrap();
    };
    if in_proc {
        threadcreate(body, 0);
    } else {
        proccreate(body, 0);
    }
    let id = ready.recv().unwrap();
    // Wait until the thread is blocked where expected (the dump says so),
    // then interrupt. A thread that never gets there is a failure of its
    // own, reported with the dump (interrupting it anyway would only turn
    // it into a confusing one).
    let line = format!("\tthread {id} ");
    let state = format!(": {waits}");
    await_dump(&format!("thread {id} never blocked in {waits}"), |d| {
        d.lines()
            .any(|l| l.starts_with(&line) && l.contains(&state))
    });
    threadint(id);
    out.recv().unwrap()
}

#[test]
fn threadint_ends_every_kind_of_wait_in_this_proc_and_others() {
    for in_proc in [true, false] {
        run(move || {
            let c: Chan<i32> = Chan::new(0);
            let d = c.clone();
            assert_eq!(
                interrupted(in_proc, "recv on", move || format!("{:?}", d.recv())),
                "Err(Interrupted)"
            );
            let d = c.clone();
            assert_eq!(
                interrupted(in_proc, "send on", move || format!("{:?}", d.send(5))),
                "Err(Interrupted(..))"
            );
            let d = c.clone();
            assert_eq!(
                interrupted(in_proc, "alt", move || {
                    let mut x = None;
                    let mut alt = Alt::new();
                    alt.recv(&d, &mut x).nop();
                    format!("{:?}", alt.alt())
                }),
                "Err(Interrupted)"
            );
            assert_eq!(
                interrupted(in_proc, "alt", || format!("{:?}", Alt::new().nop().alt())),
                "Err(Interrupted)",
                "an alt of nothing but nops waits until interrupted"
            );
            let lock = Arc::new(QLock::new(0));
            let held = lock.clone();
            let g = held.lock();
            let l = lock.clone();
            assert_eq!(
                interrupted(in_proc, "qlock", move || format!(
                    "{:?}",
                    l.lock_interruptible().map(|_| ())
                )),
                "Err(Interrupted)"
            );
            drop(g);
            let rw = Arc::new(RWLock::new(0));
            let w = rw.wlock();
            let r = rw.clone();
            assert_eq!(
                interrupted(in_proc, "rlock", move || format!(
                    "{:?}",
                    r.rlock_interruptible().map(|_| ())
                )),
                "Err(Interrupted)"
            );
            let r = rw.clone();
            assert_eq!(
                interrupted(in_proc, "wlock", move || format!(
                    "{:?}",
                    r.wlock_interruptible().map(|_| ())
                )),
                "Err(Interrupted)"
            );
            drop(w);
            let pair = Arc::new((QLock::new(()), Rendez::new()));
            let p = pair.clone();
            assert_eq!(
                interrupted(in_proc, "rendez sleep", move || {
                    let g = p.0.lock();
                    let (_g, r) = p.1.sleep_interruptible(g);
                    format!("{r:?}")
                }),
                "Err(Interrupted)"
            );
            let io = Ioproc::new();
            assert_eq!(
                interrupted(in_proc, "ioproc call", move || format!(
                    "{:?}",
                    io.sleep(60_000).map_err(|e| e.kind())
                )),
                "Err(Interrupted)"
            );
        })
        .unwrap();
    }
}

#[test]
fn threadint_does_not_touch_a_thread_that_is_not_blocked() {
    run(|| {
        let c = Chan::new(0);
        let d = c.clone();
        let id = threadcreate(move || assert_eq!(d.recv(), Ok(7)), 0);
        // The thread is ready (created, not yet run): nothing to interrupt,
        // and nothing kept for its first wait, which it starts now.
        threadint(id);
        threadyield();
        c.send(7).unwrap();
        threadyield();
        // And on a finished thread, or one that never existed: a no-op.
        threadint(id);
        threadint(9999);
        threadkill(9999);
    })
    .unwrap();
}

#[test]
fn threadint_of_a_running_thread_of_another_proc_does_not_reach_its_next_wait() {
    run(|| {
        let go = Arc::new(AtomicBool::new(false));
        let (c, ids, out) = (Chan::new(0), Chan::new(1), Chan::new(1));
        let (g, d, i, o) = (go.clone(), c.clone(), ids.clone(), out.clone());
        proccreate(
            move || {
                i.send(threadid()).unwrap(); // buffered: never waits
                // Running, in no wait, until told to go on.
                while !g.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
                o.send(d.recv()).unwrap();
            },
            0,
        );
        let id = ids.recv().unwrap();
        threadint(id);
        go.store(true, Ordering::SeqCst);
        c.send(7).unwrap();
        assert_eq!(out.recv().unwrap(), Ok(7));
    })
    .unwrap();
}

/// An interrupt and a partner may go for the same wait at once, from
/// different procs: exactly one of them must get it. A sender that is
/// interrupted keeps its value and sends it again, so the receiver must see
/// every value exactly once, in order: a value lost or seen twice means
/// both won.
#[test]
fn interrupts_racing_with_partners_across_procs_lose_and_repeat_nothing() {
    const N: u64 = 10_000;
    let _hang = common::watchdog("interrupts racing with partners", 120);
    run(|| {
        let (c, quiet) = (Chan::<u64>::new(0), Chan::<u64>::new(0));
        let (ids, out) = (Chan::new(2), Chan::new(1));
        let done = Arc::new(AtomicBool::new(false));
        let resent = Arc::new(AtomicUsize::new(0));
        let (d, i, fin, r) = (c.clone(), ids.clone(), done.clone(), resent.clone());
        proccreate(
            move || {
                i.send(threadid()).unwrap();
                let mut v = 1;
                while v <= N {
                    match d.send(v) {
                        Ok(()) => v += 1,
                        Err(SendError::Interrupted(back)) => {
                            assert_eq!(back, v);
                            r.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => panic!("send: {e:?}"),
                    }
                }
                fin.store(true, Ordering::SeqCst);
            },
            0,
        );
        let (d, i, o) = (c.clone(), ids.clone(), out.clone());
        proccreate(
            move || {
                i.send(threadid()).unwrap();
                let (mut next, mut interrupted) = (1, 0u64);
                while next <= N {
                    // Half the receives are alts over two channels, whose
                    // claims are compare-and-swaps; half plain receives,
                    // claimed under the channel's lock.
                    let got = if next % 2 == 0 {
                        let (mut x, mut y) = (None, None);
                        let mut alt = Alt::new();
                        alt.recv(&d, &mut x).recv(&quiet, &mut y);
                        match alt.alt() {
                            Ok(0) => Ok(x.unwrap()),
                            Ok(i) => panic!("entry {i} cannot be ready"),
                            Err(AltError::Interrupted) => Err(()),
                            Err(e) => panic!("alt: {e:?}"),
                        }
                    } else {
                        match d.recv() {
                            Ok(v) => Ok(v),
                            Err(RecvError::Interrupted) => Err(()),
                            Err(e) => panic!("recv: {e:?}"),
                        }
                    };
                    match got {
                        Ok(v) => {
                            assert_eq!(v, next, "a value lost or repeated");
                            next += 1;
                            // Dawdle, so that the sender is mostly blocked
                            // when an interrupt comes for it.
                            let t = std::time::Instant::now();
                            while t.elapsed() < Duration::from_micros(3) {
                                std::hint::spin_loop();
                            }
                        }
                        Err(()) => interrupted += 1,
                    }
                }
                o.send(interrupted).unwrap();
            },
            0,
        );
        let (a, b) = (ids.recv().unwrap(), ids.recv().unwrap());
        let mut sent = 0u64;
        while !done.load(Ordering::SeqCst) {
            threadint(a);
            threadint(b);
            sent += 1;
            std::thread::sleep(Duration::from_micros(20));
        }
        let interrupted = out.recv().unwrap();
        let resent = resent.load(Ordering::SeqCst);
        eprintln!(
            "{sent} rounds of interrupts; {resent} sends and {interrupted} receives interrupted"
        );
    })
    .unwrap();
}

#[test]
fn a_killed_thread_unwinds_and_leaves_nothing_on_its_channels() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    run(move || {
        let (a, b) = (Chan::<i32>::new(0), Chan::<i32>::new(0));
        let (a2, b2) = (a.clone(), b.clone());
        let victim = threadcreate(
            move || {
                let _g = Count(d);
                let (mut x, mut y) = (None, None);
                let mut alt = Alt::new();
                alt.recv(&a2, &mut x).recv(&b2, &mut y);
                let _ = alt.alt();
                unreachable!("killed in the alt");
            },
            0,
        );
        threadyield(); // the victim waits in its alt
        threadkill(victim);
        threadyield(); // it unwinds
        // Nothing waits on a or b any more: a send finds no receiver...
        assert_eq!(a.nbsend(1), Err(thread9::TrySendError::Full(1)));
        assert_eq!(b.nbsend(2), Err(thread9::TrySendError::Full(2)));
        // ...and a real receiver gets the value, not the dead thread.
        let (a3, got) = (a.clone(), Chan::new(1));
        let g = got.clone();
        threadcreate(move || g.send(a3.recv().unwrap()).unwrap(), 0);
        a.send(3).unwrap();
        assert_eq!(got.recv().unwrap(), 3);
    })
    .unwrap();
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the victim's destructors ran"
    );
}

#[test]
fn killing_a_thread_of_another_proc_ends_that_proc() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let r = run(move || {
        let c: Chan<i32> = Chan::new(0);
        let (c2, ready) = (c.clone(), Chan::new(0));
        let r2 = ready.clone();
        let id = proccreate(
            move || {
                let _g = Count(d);
                r2.send(threadid()).unwrap();
                let _ = c2.recv();
            },
            0,
        );
        assert_eq!(ready.recv().unwrap(), id);
        threadkill(id);
        // If the proc lived on, the program would not end.
    });
    assert_eq!(r, Ok(()));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn a_killed_thread_dies_at_its_next_blocking_point() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    run(move || {
        // Killed before it first runs: it never starts.
        let l1 = l.clone();
        let id = threadcreate(move || l1.lock().unwrap().push("never"), 0);
        threadkill(id);
        // Killed while ready, after running: it goes on to its next
        // blocking point and dies there.
        let l2 = l.clone();
        let id = threadcreate(
            move || {
                l2.lock().unwrap().push("ran");
                threadyield(); // killed meanwhile: no return from here
                l2.lock().unwrap().push("after yield");
            },
            0,
        );
        threadyield(); // it runs, yields, and is ready again
        threadkill(id);
        threadyield();
        threadyield();
        l.lock().unwrap().push("main done");
    })
    .unwrap();
    assert_eq!(*log.lock().unwrap(), ["ran", "main done"]);
}

#[test]
fn groups_are_inherited_and_targeted() {
    run(|| {
        assert_eq!(threadgetgrp(), 0);
        let c: Chan<i32> = Chan::new(0);
        let results = Chan::new(16);
        assert_eq!(threadsetgrp(5), 0);
        for k in 0..2 {
            // Created in group 5: inherit it, in this proc and in a new one.
            let (c2, r) = (c.clone(), results.clone());
            let f = move || {
                assert_eq!(threadgetgrp(), 5);
                r.send(format!("g5 {k}: {:?}", c2.recv())).unwrap();
            };
            if k == 0 {
                threadcreate(f, 0);
            } else {
                proccreate(f, 0);
            }
        }
        threadsetgrp(6);
        let (c2, r) = (c.clone(), results.clone());
        proccreate(move || r.send(format!("g6: {:?}", c2.recv())).unwrap(), 0);
        threadsetgrp(0);
        // Let them all block (the dump shows three receives), then
        // interrupt group 5 only: an interrupt that finds a thread not yet
        // blocked would be dropped.
        await_dump("never all blocked", |d| {
            d.matches(": recv on ").count() == 3
        });
        threadintgrp(5);
        let mut got = vec![results.recv().unwrap(), results.recv().unwrap()];
        got.sort();
        assert_eq!(got, ["g5 0: Err(Interrupted)", "g5 1: Err(Interrupted)"]);
        // Group 6 still waits: a value reaches it.
        c.send(1).unwrap();
        assert_eq!(results.recv().unwrap(), "g6: Ok(1)");
    })
    .unwrap();
    // threadkillgrp ends a whole group across procs (and the program, when
    // nothing else is left).
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let r = run(move || {
        let c: Chan<i32> = Chan::new(0);
        threadsetgrp(9);
        let started = Chan::new(0);
        for p in 0..3 {
            let (c, d, s) = (c.clone(), d.clone(), started.clone());
            let f = move || {
                let _g = Count(d);
                s.send(()).unwrap();
                let _ = c.recv();
            };
            if p == 0 {
                threadcreate(f, 0);
            } else {
                proccreate(f, 0);
            }
        }
        threadsetgrp(0);
        for _ in 0..3 {
            started.recv().unwrap();
        }
        threadkillgrp(9);
    });
    assert_eq!(r, Ok(()));
    assert_eq!(dropped.load(Ordering::SeqCst), 3);
}

#[test]
fn threadpid_names_the_procs_os_thread() {
    run(|| {
        let me = threadpid(threadid()).unwrap();
        // SAFETY: gettid has no preconditions.
        assert_eq!(me, unsafe { libc::gettid() });
        let sibling = threadcreate(|| {}, 0);
        assert_eq!(threadpid(sibling), Some(me));
        let (c, d) = (Chan::new(0), Chan::new(0));
        let (c2, d2) = (c.clone(), d.clone());
        let other = proccreate(
            move || {
                // SAFETY: as above.
                c2.send(unsafe { libc::gettid() }).unwrap();
                let _ = d2.recv();
            },
            0,
        );
        // Asked at once, before the proc's OS thread has (likely) started:
        // the thread exists, so its proc's id is the answer all the same.
        let early = threadpid(other);
        let tid = c.recv().unwrap();
        assert_eq!(early, Some(tid));
        assert_eq!(threadpid(other), Some(tid));
        assert_ne!(tid, me);
        assert_eq!(threadpid(123_456), None);
        d.send(()).unwrap();
    })
    .unwrap();
}

#[test]
fn thread_and_proc_data_are_typed_private_and_dropped() {
    struct Mine(Arc<AtomicUsize>, u32);
    impl Drop for Mine {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    run(move || {
        let done = Chan::new(0);
        for k in 0..3u32 {
            let (d, done) = (d.clone(), done.clone());
            threadcreate(
                move || {
                    assert!(
                        threaddata::<Mine, _>(|s| s.is_none()),
                        "a fresh slot per thread"
                    );
                    threaddata::<Mine, _>(|s| *s = Some(Mine(d, k)));
                    threadyield();
                    // Other threads set theirs meanwhile; ours is untouched.
                    assert_eq!(threaddata::<Mine, _>(|s| s.as_ref().unwrap().1), k);
                    // Slots of other types are separate; nesting is fine.
                    threaddata::<u8, _>(|b| {
                        *b = Some(1);
                        threaddata::<u16, _>(|w| *w = Some(2));
                    });
                    done.send(()).unwrap();
                },
                0,
            );
        }
        for _ in 0..3 {
            done.recv().unwrap();
        }
        threadyield();
        // The three threads have ended: their data is gone.
        assert_eq!(d.load(Ordering::SeqCst), 3);
        // procdata: one slot per proc, shared by its threads, dropped with it.
        let got = Chan::new(0);
        let (d2, done2) = (d.clone(), got.clone());
        proccreate(
            move || {
                procdata::<Mine, _>(|s| *s = Some(Mine(d2, 40)));
                let d3 = done2.clone();
                threadcreate(
                    move || {
                        d3.send(procdata::<Mine, _>(|s| s.as_ref().unwrap().1))
                            .unwrap()
                    },
                    0,
                );
            },
            0,
        );
        assert_eq!(got.recv().unwrap(), 40);
        assert!(
            procdata::<Mine, _>(|s| s.is_none()),
            "this proc's slot is its own"
        );
    })
    .unwrap();
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        4,
        "the proc's data went with the proc"
    );
}

#[test]
fn reentering_a_slot_panics_clearly() {
    let r = run(|| {
        threaddata::<u32, _>(|_| threaddata::<u32, _>(|_| ()));
    });
    let s = r.unwrap_err();
    assert!(
        s.contains("threaddata::<u32> called again while it is in use"),
        "{s}"
    );
}

#[test]
fn an_ioproc_call_interrupted_by_threadint_fails_interrupted() {
    run(|| {
        let io = Ioproc::new();
        let (r, _w) = std::io::pipe().unwrap();
        let got = interrupted(true, "ioproc call", move || {
            format!("{:?}", io.read(&r, &mut [0u8; 1]).map_err(|e| e.kind()))
        });
        assert_eq!(got, "Err(Interrupted)");
    })
    .unwrap();
}

#[test]
fn error_values_of_interrupted_waits() {
    assert_eq!(Interrupted.to_string(), "interrupted");
    assert_eq!(RecvError::Interrupted.to_string(), "receive interrupted");
    assert_eq!(
        format!("{:?}", SendError::Interrupted(1)),
        "Interrupted(..)"
    );
    assert_eq!(AltError::Interrupted.to_string(), "alt interrupted");
}

#[test]
fn a_panic_in_a_procs_data_destructor_ends_the_program_with_it() {
    // The destructor runs after the proc's last thread has ended; its
    // panic is the program's, whether the proc is thread 1's or another.
    struct Bad(&'static str);
    impl Drop for Bad {
        fn drop(&mut self) {
            panic!("{} data destructor", self.0);
        }
    }
    let _w = common::watchdog("procdata destructor panic", 60);
    let r = run(|| {
        proccreate(|| procdata::<Bad, _>(|p| *p = Some(Bad("a proc's"))), 0);
    });
    assert_eq!(r, Err("panic: a proc's data destructor".to_string()));
    let r = run(|| procdata::<Bad, _>(|p| *p = Some(Bad("thread 1's proc's"))));
    assert_eq!(
        r,
        Err("panic: thread 1's proc's data destructor".to_string())
    );
}
