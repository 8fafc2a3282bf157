//! Threads and procs: creation, scheduling order, names, exits.

mod common;

use common::Count;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use thread9::{
    Chan, proccreate, run, threadcreate, threaddump, threadexits, threadexitsall, threadgetname,
    threadid, threadsetname, threadsetstate, threadyield,
};

#[test]
fn threadcreate_does_not_switch() {
    run(|| {
        let ran = Rc::new(RefCell::new(false));
        let r = ran.clone();
        threadcreate(move || *r.borrow_mut() = true, 0);
        assert!(!*ran.borrow(), "the new thread has not run yet");
        threadyield();
        assert!(*ran.borrow(), "it ran when the creator yielded");
    })
    .unwrap();
}

#[test]
fn ready_threads_run_in_fifo_order() {
    run(|| {
        let log = Rc::new(RefCell::new(Vec::new()));
        for name in ["a", "b", "c"] {
            let log = log.clone();
            threadcreate(
                move || {
                    for round in 0..3 {
                        log.borrow_mut().push(format!("{name}{round}"));
                        threadyield();
                    }
                },
                0,
            );
        }
        log.borrow_mut().push("main".into());
        while Rc::strong_count(&log) > 1 {
            threadyield();
        }
        assert_eq!(
            *log.borrow(),
            ["main", "a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]
        );
    })
    .unwrap();
}

#[test]
fn a_woken_thread_joins_the_tail_of_the_queue() {
    run(|| {
        let log = Rc::new(RefCell::new(Vec::new()));
        let c = Chan::new(0);
        let (l1, c1) = (log.clone(), c.clone());
        threadcreate(
            move || {
                c1.recv().unwrap();
                l1.borrow_mut().push("receiver");
            },
            0,
        );
        let l2 = log.clone();
        threadcreate(move || l2.borrow_mut().push("bystander"), 0);
        threadyield(); // receiver blocks, bystander runs and exits
        let l3 = log.clone();
        threadcreate(move || l3.borrow_mut().push("newcomer"), 0);
        c.send(()).unwrap(); // readies the receiver behind the newcomer
        threadyield();
        threadyield();
        assert_eq!(*log.borrow(), ["bystander", "newcomer", "receiver"]);
    })
    .unwrap();
}

#[test]
fn threads_of_a_proc_share_rc_state() {
    run(|| {
        let shared = Rc::new(RefCell::new(0u64));
        let done = Chan::new(0);
        for _ in 0..10 {
            let s = shared.clone();
            let d = done.clone();
            threadcreate(
                move || {
                    for _ in 0..100 {
                        *s.borrow_mut() += 1;
                        threadyield();
                    }
                    d.send(()).unwrap();
                },
                0,
            );
        }
        for _ in 0..10 {
            done.recv().unwrap();
        }
        assert_eq!(*shared.borrow(), 1000);
    })
    .unwrap();
}

#[test]
fn ids_increase_and_are_not_reused() {
    run(|| {
        let mut last = threadid();
        for _ in 0..100 {
            let id = threadcreate(|| {}, 0);
            assert!(id > last);
            last = id;
            threadyield();
        }
        let c = Chan::new(0);
        let d = c.clone();
        let pid = proccreate(move || d.send(threadid()).unwrap(), 0);
        assert!(pid > last);
        assert_eq!(c.recv().unwrap(), pid);
    })
    .unwrap();
}

#[test]
fn procs_creating_threads_at_once_never_share_an_id() {
    run(|| {
        // Four procs, each making 300 threads (more than one block of ids)
        // while the others do the same.
        let ids = Chan::new(0);
        for _ in 0..4 {
            let ids = ids.clone();
            proccreate(
                move || {
                    let mine: Vec<u64> = (0..300)
                        .map(|_| {
                            let id = threadcreate(|| {}, 0);
                            threadyield();
                            id
                        })
                        .collect();
                    ids.send((threadid(), mine)).unwrap();
                },
                0,
            );
        }
        let mut all = vec![threadid()];
        for _ in 0..4 {
            let (proc_thread, mine) = ids.recv().unwrap();
            // Within a proc, ids increase in the order of creation.
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
            all.push(proc_thread);
            all.extend(mine);
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "an id was given twice");
        assert_eq!(n, 1 + 4 * 301);
    })
    .unwrap();
}

#[test]
fn names_and_states() {
    run(|| {
        assert_eq!(threadgetname(), "threadmain");
        threadsetname("boss");
        assert_eq!(threadgetname(), "boss");
        let c: Chan<i32> = Chan::new(0);
        c.set_name("orders");
        let d = c.clone();
        threadcreate(
            move || {
                assert_eq!(threadgetname(), "");
                threadsetname("clerk");
                threadsetstate("filing");
                let _ = d.recv();
            },
            0,
        );
        threadyield();
        let dump = threaddump();
        assert!(dump.contains("\tthread 1 (boss): Running\n"), "{dump}");
        assert!(
            dump.contains("\tthread 2 (clerk) [filing]: recv on orders\n"),
            "{dump}"
        );
        assert!(dump.starts_with("proc "), "{dump}");
        c.send(1).unwrap();
    })
    .unwrap();
}

#[test]
fn procs_are_os_threads() {
    run(|| {
        let me = std::thread::current().id();
        let c = Chan::new(0);
        let d = c.clone();
        proccreate(move || d.send(std::thread::current().id()).unwrap(), 0);
        let other = c.recv().unwrap();
        assert_ne!(me, other);
        // Threads created in a proc run on that proc's OS thread.
        let (e, f) = (c.clone(), c.clone());
        proccreate(
            move || {
                let tid = std::thread::current().id();
                threadcreate(move || e.send(std::thread::current().id()).unwrap(), 0);
                f.send(tid).unwrap();
            },
            0,
        );
        let (a, b) = (c.recv().unwrap(), c.recv().unwrap());
        assert_eq!(a, b);
    })
    .unwrap();
}

#[test]
fn a_procs_os_thread_is_named_for_its_first_thread() {
    run(|| {
        let c = Chan::new(0);
        let d = c.clone();
        let id = proccreate(
            move || {
                let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
                d.send(comm.trim_end().to_string()).unwrap();
            },
            0,
        );
        let want = format!("thread9 proc {id}");
        // The kernel keeps 15 bytes of a name.
        assert_eq!(c.recv().unwrap(), want[..want.len().min(15)]);
    })
    .unwrap();
}

/// Makes every later attempt of the calling OS thread to start another
/// fail as if the system were out of threads (`EAGAIN`), with a seccomp
/// filter on `clone3` and `clone`. Other OS threads are not affected.
#[cfg(target_arch = "x86_64")]
fn refuse_new_os_threads() {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let eagain = libc::SECCOMP_RET_ERRNO | libc::EAGAIN as u32;
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let mut prog = [
        // seccomp_data: the call's number at offset 0, the arch at 4.
        stmt(load, 4),
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(load, 0),
        jeq(libc::SYS_clone3 as u32, 2, 0),
        jeq(libc::SYS_clone as u32, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(ret, eagain),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: no_new_privs only restricts this process; the filter program
    // is well formed and outlives the call, which copies it.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let r = libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        );
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    }
}

#[test]
#[ignore = "a scenario run in a child process by a_proc_that_cannot_start_ends_the_program_with_the_reason"]
#[cfg(target_arch = "x86_64")]
fn scenario_no_os_threads() {
    if !common::is_child("scenario_no_os_threads") {
        return;
    }
    // A regression would hang the program, waiting for a proc that never
    // started: fail instead.
    let _w = common::watchdog("a program whose proc could not start", 30);
    let r = run(|| {
        refuse_new_os_threads();
        proccreate(|| {}, 0);
        unreachable!("proccreate returned without a proc");
    });
    println!("status {}", r.unwrap_err());
}

#[test]
#[cfg(target_arch = "x86_64")]
fn a_proc_that_cannot_start_ends_the_program_with_the_reason() {
    let o = common::child("scenario_no_os_threads");
    let err = common::stderr(&o);
    assert!(o.status.success(), "{err}");
    let want = format!(
        "panic: thread9: proccreate: cannot start an OS thread: {} (check `ulimit -u` \
         and /proc/sys/kernel/threads-max)",
        std::io::Error::from_raw_os_error(libc::EAGAIN)
    );
    assert_eq!(common::reported(&o, "status "), [want], "{err}");
}

#[test]
fn threadexits_unwinds_the_stack() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let r = run(move || {
        let d2 = d.clone();
        threadcreate(
            move || {
                let _a = Count(d2.clone());
                fn deeper(d: Arc<AtomicUsize>) {
                    let _b = Count(d);
                    threadexits("from deep down");
                }
                deeper(d2);
            },
            0,
        );
    });
    assert_eq!(r, Err("from deep down".to_string()));
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
}

#[test]
fn threadexitsall_unwinds_every_thread_of_every_proc() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let r = run(move || {
        let c: Chan<i32> = Chan::new(0);
        let started = Chan::new(0);
        for _ in 0..4 {
            let (c, d, s) = (c.clone(), d.clone(), started.clone());
            proccreate(
                move || {
                    for _ in 0..3 {
                        let (c, d, s) = (c.clone(), d.clone(), s.clone());
                        threadcreate(
                            move || {
                                let _g = Count(d);
                                s.send(()).unwrap();
                                let _ = c.recv();
                                unreachable!("nobody sends");
                            },
                            0,
                        );
                    }
                },
                0,
            );
        }
        for _ in 0..12 {
            started.recv().unwrap();
        }
        let _g = Count(d);
        threadexitsall("all done");
    });
    assert_eq!(r, Err("all done".to_string()));
    assert_eq!(dropped.load(Ordering::SeqCst), 13);
}

#[test]
fn a_thread_created_after_threadexitsall_does_not_run() {
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    let r = run(move || {
        struct Late(Arc<AtomicUsize>);
        impl Drop for Late {
            fn drop(&mut self) {
                let r = self.0.clone();
                threadcreate(move || r.store(1, Ordering::SeqCst), 0);
            }
        }
        let _late = Late(r2);
        threadexitsall("x");
    });
    assert_eq!(r, Err("x".to_string()));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
#[ignore = "a scenario run in a child process by idle_procs_do_not_burn_cpu"]
fn scenario_idle() {
    if !common::is_child("scenario_idle") {
        return;
    }
    fn cpu_ms() -> u64 {
        // SAFETY: getrusage writes only into the struct we pass.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
        let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
        ms(u.ru_utime) + ms(u.ru_stime)
    }
    let c: Chan<()> = Chan::new(0);
    let feeder = c.clone();
    let waker = std::thread::spawn(move || {
        feeder.len(); // touch it: an outsider may act on it, so no deadlock report
        std::thread::sleep(std::time::Duration::from_millis(500));
        for _ in 0..9 {
            feeder.send(()).unwrap();
        }
    });
    let before = cpu_ms();
    run(move || {
        for _ in 0..8 {
            let c = c.clone();
            proccreate(move || c.recv().unwrap(), 0);
        }
        c.recv().unwrap();
    })
    .unwrap();
    waker.join().unwrap();
    println!("cpu_ms {}", cpu_ms() - before);
}

#[test]
fn idle_procs_do_not_burn_cpu() {
    let o = common::child("scenario_idle");
    let cpu: u64 = common::reported(&o, "cpu_ms ")[0].parse().unwrap();
    // Nine procs wait half a second; spinning would cost seconds of CPU.
    assert!(cpu < 150, "idle procs used {cpu} ms of CPU in 500 ms");
}
