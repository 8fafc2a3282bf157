//! Stacks: guard pages, overflow reports, the mapping budget, reuse, and
//! the message when stacks run out.

mod common;

use thread9::{Chan, proccreate, procdata, run, threadcreate, threadsetname, threadyield};

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]);
    if depth == u64::MAX {
        return pad[0];
    }
    recurse(depth + 1) + pad[1]
}

#[test]
#[ignore = "a scenario run in a child process by a stack_overflow test"]
fn scenario_overflow() {
    if !common::is_child("scenario_overflow") {
        return;
    }
    println!("pid {}", std::process::id());
    run(|| {
        threadcreate(
            || {
                threadsetname("deep");
                recurse(0);
            },
            0,
        );
    })
    .unwrap();
}

fn check_overflow(env: &[(&str, &str)]) {
    let o = common::child_with("scenario_overflow", env);
    let err = common::stderr(&o);
    let pid = &common::reported(&o, "pid ")[0];
    // The overflowing thread runs in the first proc, whose OS thread is the
    // test thread of the child: its tid is not the pid, so accept any tid
    // but check the full sentence.
    let line = err
        .lines()
        .find(|l| l.starts_with("thread9: stack overflow in thread 2 (deep) of proc "))
        .unwrap_or_else(|| panic!("no overflow report (child pid {pid}): {err}"));
    let tid: i32 = line
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .expect("a proc id ends the line");
    assert!(tid > 0);
    assert_eq!(
        common::signal(&o),
        Some(libc::SIGABRT),
        "the process aborts"
    );
}

#[test]
fn stack_overflow_is_reported_and_aborts() {
    check_overflow(&[]);
}

#[test]
fn stack_overflow_is_reported_with_mprotect_guards() {
    // The fallback for kernels without MADV_GUARD_INSTALL.
    check_overflow(&[("THREAD9_GUARD", "mprotect")]);
}

#[test]
#[ignore = "a scenario run in a child process by other_faults_keep_their_default_behaviour"]
fn scenario_null() {
    if !common::is_child("scenario_null") {
        return;
    }
    run(|| {
        threadcreate(
            || {
                // SAFETY: not safe at all: this faults on purpose.
                let v = unsafe { std::ptr::read_volatile(std::ptr::null::<u64>()) };
                println!("{v}");
            },
            0,
        );
    })
    .unwrap();
}

#[test]
fn other_faults_keep_their_default_behaviour() {
    let o = common::child("scenario_null");
    assert!(
        !common::stderr(&o).contains("stack overflow"),
        "{}",
        common::stderr(&o)
    );
    assert_eq!(common::signal(&o), Some(libc::SIGSEGV));
}

/// Its destructor overflows whatever stack it runs on.
struct Deep;

impl Drop for Deep {
    fn drop(&mut self) {
        recurse(0);
    }
}

#[test]
#[ignore = "a scenario run in a child process by a proc_stack_overflow test"]
fn scenario_proc_overflow() {
    if !common::is_child("scenario_proc_overflow") {
        return;
    }
    run(|| {
        let c = Chan::new(0);
        let d = c.clone();
        proccreate(
            move || {
                // Dropped by the proc when its last thread has gone, on
                // the proc's own stack.
                procdata::<Deep, _>(|p| *p = Some(Deep));
                d.send(thread9::threadpid(thread9::threadid()).unwrap())
                    .unwrap();
                // The overflow must wait for the parent's report of the
                // proc's id, or it can abort the process first.
                d.recv().unwrap();
            },
            0,
        );
        println!("proc {}", c.recv().unwrap());
        c.send(0).unwrap();
        // The overflow aborts the process long before this ends.
        std::thread::sleep(std::time::Duration::from_secs(60));
    })
    .unwrap();
}

#[test]
fn a_procs_own_stack_overflowing_is_reported_and_aborts() {
    let o = common::child("scenario_proc_overflow");
    let proc = &common::reported(&o, "proc ")[0];
    let err = common::stderr(&o);
    assert!(
        err.lines()
            .any(|l| l == format!("thread9: stack overflow in proc {proc}, outside its threads")),
        "{err}"
    );
    assert_eq!(common::signal(&o), Some(libc::SIGABRT), "{err}");
}

thread_local! {
    /// Static thread-local storage larger than a proc's own stack: the C
    /// library puts it at the top of every OS thread's stack.
    static BIG: std::cell::RefCell<[u8; 300 << 10]> = const { std::cell::RefCell::new([0; 300 << 10]) };
}

#[test]
fn procs_start_whatever_the_size_of_thread_local_storage() {
    run(|| {
        let c = Chan::new(0);
        for i in 0..3u8 {
            let c = c.clone();
            proccreate(
                move || {
                    BIG.with_borrow_mut(|b| b[(300 << 10) - 1] = i);
                    c.send(BIG.with_borrow(|b| b[(300 << 10) - 1])).unwrap();
                },
                0,
            );
        }
        let mut got: Vec<u8> = (0..3).map(|_| c.recv().unwrap()).collect();
        got.sort();
        assert_eq!(got, [0, 1, 2]);
    })
    .unwrap();
}

#[test]
fn small_stack_requests_get_the_floor() {
    // Plan 9 code asks for 8192 bytes; the floor is 32 KiB, enough for this.
    run(|| {
        let c = Chan::new(0);
        let d = c.clone();
        threadcreate(
            move || {
                let buf = std::hint::black_box([7u8; 20 * 1024]);
                d.send(buf.iter().map(|&b| b as u64).sum::<u64>()).unwrap();
            },
            8192,
        );
        assert_eq!(c.recv().unwrap(), 7 * 20 * 1024);
    })
    .unwrap();
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

#[test]
#[ignore = "a scenario run in a child process by thread_stacks_do_not_cost_a_mapping_each"]
fn scenario_mappings() {
    if !common::is_child("scenario_mappings") {
        return;
    }
    run(|| {
        let before = mappings();
        let c: Chan<()> = Chan::new(0);
        for _ in 0..30_000 {
            let c = c.clone();
            threadcreate(
                move || {
                    let _ = c.recv();
                },
                0,
            );
        }
        threadyield(); // all of them are alive and blocked now
        // Signed, like the count below: another OS thread (the library's
        // membarrier helper, say) may end meanwhile and take its stack's
        // mapping with it.
        println!("live {}", mappings() as i64 - before as i64);
        c.close();
        threadyield();
        // Recycled stacks need no new slabs.
        let before = mappings();
        for _ in 0..20 {
            for _ in 0..2000 {
                threadcreate(|| {}, 0);
            }
            threadyield();
        }
        println!("recycled {}", mappings() as i64 - before as i64);
    })
    .unwrap();
}

#[test]
fn thread_stacks_do_not_cost_a_mapping_each() {
    let o = common::child("scenario_mappings");
    let live: i64 = common::reported(&o, "live ")[0].parse().unwrap();
    // mmap + mprotect per stack would add 60,000 mappings for 30,000.
    assert!(live < 200, "30,000 threads added {live} mappings");
    let recycled: i64 = common::reported(&o, "recycled ")[0].parse().unwrap();
    assert!(
        recycled <= 0,
        "40,000 recycled threads added {recycled} mappings"
    );
}

#[test]
#[ignore = "a scenario run in a child process by running_out_of_stacks_says_why"]
fn scenario_no_memory() {
    if !common::is_child("scenario_no_memory") {
        return;
    }
    let limit = 3u64 << 30;
    let rl = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: lowering our own address-space limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) }, 0);
    let r = run(|| {
        let c: Chan<()> = Chan::new(0);
        for _ in 0..1000 {
            let c = c.clone();
            threadcreate(
                move || {
                    let _ = c.recv();
                },
                64 << 20,
            );
            threadyield();
        }
    });
    println!("status {}", r.unwrap_err());
}

#[test]
fn running_out_of_stacks_says_why() {
    let o = common::child("scenario_no_memory");
    let status = common::reported(&o, "status ");
    let s = status
        .first()
        .unwrap_or_else(|| panic!("no status: {}", common::stderr(&o)));
    assert!(
        s.starts_with("panic: thread9: cannot allocate a 65536 KiB thread stack"),
        "{s}"
    );
    assert!(
        s.contains("ulimit -v") && s.contains("vm.max_map_count"),
        "{s}"
    );
}

#[test]
fn absurd_stack_sizes_are_refused_with_the_reason() {
    // Rounding usize::MAX up to a page once wrapped to a tiny stack. A
    // proc's thread refused its stack once left `run` waiting for ever.
    let _w = common::watchdog("absurd stack sizes", 60);
    for make in [
        |f: fn()| {
            threadcreate(f, usize::MAX);
        },
        |f: fn()| {
            proccreate(f, usize::MAX);
        },
    ] {
        let r = run(move || make(|| {}));
        let want = "panic: thread9: a stack of 18446744073709551615 bytes was asked for; \
                    the most a thread can have is 1099511627776 (1 TiB)";
        assert_eq!(r, Err(want.to_string()));
    }
    // The largest size allowed is only refused by the machine, if at all.
    let r = run(|| {
        threadcreate(|| {}, 1 << 40);
    });
    assert!(
        r.is_ok()
            || r.as_ref()
                .is_err_and(|e| e.starts_with("panic: thread9: cannot allocate a")),
        "{r:?}"
    );
}
