//! Deadlock detection and thread dumps: a program whose threads are all
//! blocked, with nothing left that could wake them, ends with status
//! "deadlock" and a dump; anything that could still act prevents a report.

mod common;

use std::time::Duration;

use thread9::{
    Alt, Chan, proccreate, run, threadcreate, threadsetname, threadsetstate, threadyield,
};

#[test]
fn a_lone_blocked_thread_is_a_deadlock() {
    let r = run(|| {
        let c: Chan<i32> = Chan::new(0);
        let _ = c.send(1);
    });
    assert_eq!(r, Err("deadlock".to_string()));
}

#[test]
fn procs_waiting_on_each_other_deadlock() {
    let r = run(|| {
        let (a, b) = (Chan::<i32>::new(0), Chan::<i32>::new(0));
        let (a2, b2) = (a.clone(), b.clone());
        proccreate(
            move || {
                let _ = a2.recv();
                let _ = b2.send(1);
            },
            0,
        );
        let (a3, b3) = (a.clone(), b.clone());
        proccreate(
            move || {
                let _ = b3.recv();
                let _ = a3.send(1);
            },
            0,
        );
        // Thread 1 ends; the two procs wait on each other forever.
    });
    assert_eq!(r, Err("deadlock".to_string()));
}

#[test]
fn an_alt_of_nops_and_dead_ends_deadlocks() {
    let r = run(|| {
        let c = Chan::<i32>::new(0);
        let mut x = None;
        let mut alt = Alt::new();
        alt.nop().recv(&c, &mut x);
        let _ = alt.alt();
    });
    assert_eq!(r, Err("deadlock".to_string()));
}

#[test]
#[ignore = "a scenario run in a child process by the deadlock report test"]
fn scenario_deadlock() {
    if !common::is_child("scenario_deadlock") {
        return;
    }
    let r = run(|| {
        let orders = Chan::<i32>::new(0);
        orders.set_name("orders");
        let replies = Chan::<i32>::new(0);
        replies.set_name("replies");
        let (o, p) = (orders.clone(), replies.clone());
        threadcreate(
            move || {
                threadsetname("clerk");
                threadsetstate("waiting for orders");
                let _ = o.recv();
            },
            0,
        );
        proccreate(
            move || {
                threadsetname("courier");
                let _ = p.send(7);
            },
            0,
        );
        threadsetname("boss");
        let never = Chan::<()>::new(0);
        never.set_name("never");
        let _ = never.recv();
    });
    println!("status {}", r.unwrap_err());
}

#[test]
fn a_deadlock_prints_the_thread_dump() {
    let o = common::child("scenario_deadlock");
    assert_eq!(common::reported(&o, "status "), ["deadlock"]);
    let err = common::stderr(&o);
    assert!(
        err.contains("thread9: deadlock: every thread is blocked"),
        "{err}"
    );
    assert!(err.contains("thread 1 (boss): recv on never"), "{err}");
    assert!(
        err.contains("thread 2 (clerk) [waiting for orders]: recv on orders"),
        "{err}"
    );
    assert!(err.contains("thread 3 (courier): send on replies"), "{err}");
    assert!(
        err.matches("proc ").count() >= 2,
        "both procs listed: {err}"
    );
}

#[test]
fn no_report_while_an_outside_thread_may_still_act() {
    // The channel was touched by a plain OS thread, which sends later.
    let c: Chan<i32> = Chan::new(0);
    let d = c.clone();
    let outsider = std::thread::spawn(move || {
        assert_eq!(d.len(), 0);
        std::thread::sleep(Duration::from_millis(200));
        d.send(5).unwrap();
    });
    let r = run(move || assert_eq!(c.recv(), Ok(5)));
    outsider.join().unwrap();
    assert_eq!(r, Ok(()));
}

/// Runs a program whose thread 1 receives on the channel `make` gives it,
/// which a plain OS thread holds but sends on only 200 ms later.
fn recv_from_a_late_os_thread(make: impl FnOnce() -> Chan<i32> + Send + 'static) {
    let r = run(move || {
        let c = make();
        let d = c.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            d.send(6).unwrap();
        });
        assert_eq!(c.recv(), Ok(6));
    });
    assert_eq!(r, Ok(()));
}

#[test]
fn no_report_on_a_channel_made_outside_the_program() {
    // Handed to a plain thread that has not touched it yet: the channel
    // was made outside the program, so it may.
    let c: Chan<i32> = Chan::new(0);
    recv_from_a_late_os_thread(move || c);
}

#[test]
fn no_report_while_a_proc_computes() {
    let r = run(|| {
        let c = Chan::new(0);
        let d = c.clone();
        proccreate(
            move || {
                // Busy for a while without blocking in the scheduler.
                let t = std::time::Instant::now();
                let mut x = 0u64;
                while t.elapsed() < Duration::from_millis(300) {
                    x = x.wrapping_add(std::hint::black_box(1));
                }
                d.send(x > 0).unwrap();
            },
            0,
        );
        assert_eq!(c.recv(), Ok(true));
    });
    assert_eq!(r, Ok(()));
}

#[test]
fn no_report_while_a_proc_is_in_a_system_call() {
    let r = run(|| {
        let c = Chan::new(0);
        let d = c.clone();
        proccreate(
            move || {
                std::thread::sleep(Duration::from_millis(300));
                d.send("woke").unwrap();
            },
            0,
        );
        assert_eq!(c.recv(), Ok("woke"));
    });
    assert_eq!(r, Ok(()));
}

#[test]
fn no_report_while_other_threads_of_the_proc_run() {
    let r = run(|| {
        let c = Chan::new(0);
        let d = c.clone();
        threadcreate(
            move || {
                for _ in 0..1000 {
                    threadyield();
                }
                d.send(1).unwrap();
            },
            0,
        );
        assert_eq!(c.recv(), Ok(1));
    });
    assert_eq!(r, Ok(()));
}

#[test]
fn deadlock_detection_survives_many_sleep_wake_cycles() {
    // Many procs going to sleep and waking: no false report along the way,
    // and the real deadlock at the end is found.
    let r = run(|| {
        let c = Chan::new(0);
        for _ in 0..8 {
            let c = c.clone();
            proccreate(
                move || {
                    for i in 0..2000u32 {
                        c.send(i).unwrap();
                    }
                },
                0,
            );
        }
        for _ in 0..8 * 2000 {
            c.recv().unwrap();
        }
        let _ = c.recv(); // nobody is left to send
    });
    assert_eq!(r, Err("deadlock".to_string()));
}

#[test]
fn dump_outside_a_program_lists_running_programs() {
    let (tx, rx) = std::sync::mpsc::channel();
    let c: Chan<()> = Chan::new(0);
    let d = c.clone();
    let h = std::thread::spawn(move || {
        run(move || {
            threadsetname("dumped");
            tx.send(()).unwrap();
            let _ = d.recv();
        })
    });
    rx.recv().unwrap();
    // Wait until the thread is blocked (the dump says so).
    let mut dump = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        dump = thread9::threaddump();
        if dump.contains("(dumped): recv on") {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        dump.contains("program ") && dump.contains("thread 1 (dumped): recv on"),
        "{dump}"
    );
    c.send(()).unwrap();
    assert_eq!(h.join().unwrap(), Ok(()));
}

#[test]
fn a_channel_made_for_an_os_thread_is_no_deadlock_before_it_is_touched() {
    // Made in the program, but with `new_shared`: the program waits for
    // the OS thread.
    recv_from_a_late_os_thread(|| Chan::new_shared(0));
}
