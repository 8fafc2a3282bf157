//! Programs: `run`, `threadmain`, final statuses, several programs at once.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use thread9::{
    Chan, proccreate, run, threadcreate, threadexits, threadexitsall, threadid, threadyield,
};

#[test]
fn empty_program_is_ok() {
    assert_eq!(run(|| {}), Ok(()));
}

#[test]
fn first_thread_has_id_1_and_is_named_threadmain() {
    run(|| {
        assert_eq!(threadid(), 1);
        assert_eq!(thread9::threadgetname(), "threadmain");
        let id = threadcreate(|| {}, 0);
        assert_eq!(id, 2);
    })
    .unwrap();
}

#[test]
fn threadexitsall_sets_the_status() {
    assert_eq!(run(|| threadexitsall("bye")), Err("bye".to_string()));
    assert_eq!(run(|| threadexitsall("")), Ok(()));
}

#[test]
fn threadexitsall_status_wins_over_later_exits() {
    let r = run(|| {
        threadcreate(|| threadexits("later"), 0);
        threadexitsall("first");
    });
    assert_eq!(r, Err("first".to_string()));
}

#[test]
fn status_of_the_last_thread_to_exit() {
    // Thread 1 exits first (it never blocks), then thread 2 runs.
    let r = run(|| {
        threadcreate(|| threadexits("late"), 0);
    });
    assert_eq!(r, Err("late".to_string()));

    // Thread 2 exits first; thread 1 exits last with an empty status.
    let r = run(|| {
        threadcreate(|| threadexits("early"), 0);
        threadyield();
    });
    assert_eq!(r, Ok(()));
}

#[test]
fn returning_from_thread_1_does_not_end_the_program() {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let r = run(move || {
        threadcreate(
            move || {
                // Runs only after thread 1 has returned.
                threadyield();
                d.store(true, Ordering::SeqCst);
            },
            0,
        );
    });
    assert_eq!(r, Ok(()));
    assert!(
        done.load(Ordering::SeqCst),
        "the second thread ran to completion"
    );
}

#[test]
fn a_panic_ends_the_program_with_its_message() {
    let r = run(|| panic!("boom"));
    assert_eq!(r, Err("panic: boom".to_string()));

    // A panic in another proc ends every thread, blocked ones too.
    let unwound = Arc::new(AtomicU64::new(0));
    let u = unwound.clone();
    let r = run(move || {
        struct Count(Arc<AtomicU64>);
        impl Drop for Count {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let c: Chan<i32> = Chan::new(0);
        for _ in 0..3 {
            let c = c.clone();
            let u = u.clone();
            threadcreate(
                move || {
                    let _g = Count(u);
                    let _ = c.recv();
                },
                0,
            );
        }
        threadyield(); // the three are blocked in recv now
        proccreate(|| panic!("in a proc: {}", 42), 0);
        let _g = Count(u.clone());
        let _ = c.recv();
    });
    assert_eq!(r, Err("panic: in a proc: 42".to_string()));
    assert_eq!(
        unwound.load(Ordering::SeqCst),
        4,
        "every blocked thread unwound"
    );
}

#[test]
#[ignore = "a scenario run in a child process by panic_names_the_thread"]
fn scenario_panic() {
    if !common::is_child("scenario_panic") {
        return;
    }
    let r = run(|| {
        threadcreate(
            || {
                thread9::threadsetname("worker");
                panic!("kaboom");
            },
            0,
        );
    });
    println!("status {}", r.unwrap_err());
}

#[test]
fn panic_names_the_thread() {
    let o = common::child("scenario_panic");
    let err = common::stderr(&o);
    assert!(
        err.contains("thread9: panic in thread 2 (worker) of proc "),
        "stderr names the thread: {err}"
    );
    assert!(err.contains("kaboom"), "stderr has the message: {err}");
    assert_eq!(common::reported(&o, "status "), ["panic: kaboom"]);
}

#[test]
fn deadlock_ends_the_program() {
    let r = run(|| {
        let c: Chan<i32> = Chan::new(0);
        let _ = c.recv();
    });
    assert_eq!(r, Err("deadlock".to_string()));
}

#[test]
fn several_programs_at_once_keep_their_own_ids_and_statuses() {
    let handles: Vec<_> = (0..4)
        .map(|k| {
            std::thread::spawn(move || {
                run(move || {
                    assert_eq!(threadid(), 1);
                    let c = Chan::new(0);
                    let mut ids = vec![];
                    for _ in 0..50 {
                        let c = c.clone();
                        ids.push(threadcreate(move || c.send(threadid()).unwrap(), 0));
                    }
                    assert_eq!(ids, (2..52).collect::<Vec<_>>());
                    let mut got: Vec<u64> = (0..50).map(|_| c.recv().unwrap()).collect();
                    got.sort();
                    assert_eq!(got, ids);
                    // Let the senders finish, so that thread 1 exits last.
                    threadyield();
                    if k == 2 {
                        threadexitsall("two");
                    }
                    threadexits(&format!("prog {k}"));
                })
            })
        })
        .collect();
    let statuses: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        statuses,
        [
            Err("prog 0".to_string()),
            Err("prog 1".to_string()),
            Err("two".to_string()),
            Err("prog 3".to_string())
        ]
    );
}

#[test]
fn calls_outside_a_program_panic_with_directions() {
    let e = std::panic::catch_unwind(|| threadcreate(|| {}, 0)).unwrap_err();
    let msg = e.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("threadcreate") && msg.contains("thread9::run") && msg.contains("threadmain"),
        "{msg}"
    );
    let e = std::panic::catch_unwind(threadid).unwrap_err();
    assert!(e.downcast_ref::<String>().unwrap().contains("thread9::run"));
}

#[test]
fn run_inside_a_program_is_refused() {
    let r = run(|| {
        let _ = run(|| {});
    });
    let s = r.unwrap_err();
    assert!(
        s.starts_with("panic: thread9::run called from inside a thread9 program"),
        "{s}"
    );
}

#[test]
#[ignore = "a scenario run in a child process by threadmain_exits_the_process"]
fn scenario_threadmain() {
    if !common::is_child("scenario_threadmain") {
        return;
    }
    let fail = std::env::var("T9_FAIL").is_ok();
    thread9::threadmain(move |args| {
        assert!(!args.is_empty());
        let n = Rc::new(Cell::new(0));
        let m = n.clone();
        threadcreate(
            move || {
                m.set(m.get() + 1);
                println!("second thread still runs");
                if fail {
                    threadexitsall("it failed");
                }
            },
            0,
        );
        // Returning ends thread 1 only.
    })
}

#[test]
fn threadmain_exits_the_process() {
    let o = common::child("scenario_threadmain");
    assert_eq!(o.status.code(), Some(0), "stderr: {}", common::stderr(&o));
    assert!(common::stdout(&o).contains("second thread still runs"));

    let o = common::child_with("scenario_threadmain", &[("T9_FAIL", "1")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("it failed"),
        "{}",
        common::stderr(&o)
    );
}
