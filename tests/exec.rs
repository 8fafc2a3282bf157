//! threadspawn, procexec, threadwaitchan and Waitmsg: what each child's
//! end looks like, who hears of it (its own program, its own procexec
//! thread, never anyone else), that none is lost, and that children being
//! waited for keep deadlock detection quiet.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use thread9::{
    Chan, TryRecvError, Waitmsg, procexec, run, threadcreate, threadexitsall, threadint,
    threadkill, threadspawn, threadwaitchan, threadyield,
};

/// Runs `f` on a thread of its own and fails the test if it takes longer
/// than `secs` (a hang must fail, not stall the suite).
fn bounded<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("still running after {secs}s"))
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

/// Makes a command (a `Command` is not `Send`, so tests pass a maker).
type MakeCmd = fn() -> Command;

/// Runs `cmd` with threadspawn in a fresh program and returns its message.
fn spawn_one(cmd: MakeCmd) -> (u32, Waitmsg) {
    bounded(30, move || {
        let out = std::rc::Rc::new(std::cell::RefCell::new(None));
        let o = out.clone();
        run(move || {
            let wc = threadwaitchan();
            let pid = threadspawn(cmd()).unwrap();
            *o.borrow_mut() = Some((pid, wc.recv().unwrap()));
        })
        .unwrap();
        out.take().unwrap()
    })
}

#[test]
fn exit_statuses() {
    let cases: [(MakeCmd, &str); 4] = [
        (|| Command::new("true"), ""),
        (|| Command::new("false"), "1"),
        (|| sh("exit 3"), "3"),
        (|| sh("exit 255"), "255"),
    ];
    for (cmd, want) in cases {
        let (pid, w) = spawn_one(cmd);
        assert_eq!(w.pid, pid);
        assert_eq!(w.msg, want);
        assert_eq!(w.success(), want.is_empty());
    }
}

#[test]
fn killed_by_signal() {
    let (_, w) = spawn_one(|| sh("kill -9 $$"));
    assert_eq!(w.msg, "signal: sys: kill");
    let (_, w) = spawn_one(|| sh("kill -INT $$"));
    assert_eq!(w.msg, "signal: interrupt");
    let (_, w) = spawn_one(|| sh("kill -TERM $$"));
    assert_eq!(w.msg, "signal: kill");
}

#[test]
fn missing_program() {
    bounded(30, || {
        run(|| {
            let e = threadspawn(Command::new("/no/such/program/thread9")).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
            let e = threadspawn(Command::new("no-such-program-thread9")).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound);

            let cpid = Chan::new(1);
            let e = procexec(Some(&cpid), "no-such-program-thread9", &["x", "y"]);
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
            assert_eq!(cpid.recv(), Ok(-1));
            // Without a channel the error still comes back.
            let e = procexec(None, "/no/such/program/thread9", &[]);
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
            // Nothing was started, so nothing is reported.
            assert_eq!(threadwaitchan().nbrecv(), Err(TryRecvError::Empty));
        })
    })
    .unwrap();
}

#[test]
fn times() {
    // Real time covers the child's whole life.
    let t = Instant::now();
    let (pid, w) = spawn_one(|| {
        let mut c = Command::new("sleep");
        c.arg("0.2");
        c
    });
    assert_eq!(w.pid, pid);
    assert!(w.time[2] >= 200, "real {} ms for sleep 0.2", w.time[2]);
    assert!(
        u128::from(w.time[2]) <= t.elapsed().as_millis(),
        "real {} ms is longer than the test",
        w.time[2]
    );
    assert!(w.time[0] + w.time[1] < 150, "sleep uses little CPU: {w:?}");

    // A busy child: its CPU time is the kernel's count of the work done,
    // whatever the load, and a single-threaded child cannot use more CPU
    // than wall time.
    let (_, w) = spawn_one(|| sh("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"));
    let [user, sys, real] = w.time;
    assert_eq!(w.msg, "");
    assert!(user + sys >= 20, "busy child used CPU: {w:?}");
    assert!(user + sys <= real + 20, "CPU within wall time: {w:?}");
}

#[test]
fn waitchan_asked_after_spawning() {
    bounded(30, || {
        run(|| {
            let mut c = Command::new("sleep");
            c.arg("0.3");
            let pid = threadspawn(c).unwrap();
            let wc = threadwaitchan();
            assert!(wc.same(&threadwaitchan()), "one channel per program");
            let w = wc.recv().unwrap();
            assert_eq!((w.pid, w.msg.as_str()), (pid, ""));
        })
    })
    .unwrap();
}

/// Starts `n` children of `sh -c 'sleep ...; exit k'` and collects their
/// messages, checking each pid arrives once with its own status.
fn collect_own(n: usize, sleepy: bool) {
    let wc = threadwaitchan();
    let mut want = HashMap::new();
    for k in 0..n {
        let code = k % 256;
        let script = if sleepy {
            format!("sleep 0.0{}; exit {code}", k % 10)
        } else {
            format!("exit {code}")
        };
        let pid = threadspawn(sh(&script)).unwrap();
        let msg = if code == 0 {
            String::new()
        } else {
            code.to_string()
        };
        assert!(want.insert(pid, msg).is_none(), "pid {pid} twice");
    }
    for _ in 0..n {
        let w = wc.recv().unwrap();
        let msg = want
            .remove(&w.pid)
            .unwrap_or_else(|| panic!("a message not for this program, or twice: {w:?}"));
        assert_eq!(w.msg, msg, "pid {}", w.pid);
    }
    assert!(want.is_empty());
}

#[test]
fn many_children_at_once() {
    bounded(60, || run(|| collect_own(100, false))).unwrap();
}

#[test]
fn programs_get_only_their_own_children() {
    let ts: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(|| bounded(60, || run(|| collect_own(20, true)))))
        .collect();
    for t in ts {
        t.join().unwrap().unwrap();
    }
}

#[test]
fn procexec_runs_and_exits_with_the_childs_status() {
    let dir = std::env::temp_dir().join(format!("thread9-exec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flag = dir.join("go");
    let _ = std::fs::remove_file(&flag);
    let script = format!(
        "while [ ! -e '{}' ]; do sleep 0.01; done; exit 3",
        flag.display()
    );
    let flag2 = flag.clone();
    let r = bounded(30, move || {
        run(move || {
            let cpid = Chan::new(0);
            let c = cpid.clone();
            threadcreate(
                move || {
                    let e = procexec(Some(&c), "sh", &["sh", "-c", &script]);
                    panic!("procexec returned: {e}");
                },
                0,
            );
            let pid = cpid.recv().unwrap();
            assert!(pid > 0);
            // The procexec thread waits, but only it: its proc still runs
            // the others (this one and a partner).
            let ping = Chan::new(0);
            let p = ping.clone();
            threadcreate(
                move || {
                    for i in 0..100 {
                        p.send(i).unwrap();
                    }
                },
                0,
            );
            for i in 0..100 {
                assert_eq!(ping.recv(), Ok(i));
            }
            // SAFETY: kill with signal 0 only checks that the process
            // exists; it is our unreaped child, so the pid is its own.
            assert_eq!(unsafe { libc::kill(pid as i32, 0) }, 0, "child still there");
            std::fs::write(&flag2, "").unwrap();
            // Thread 1 ends here; the procexec thread ends last.
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(r, Err("3".to_string()));
}

#[test]
fn procexec_argv() {
    // args[0] is argv[0]; the rest are the arguments.
    let r = bounded(30, || {
        run(|| {
            // sh -c takes its $0 from the argument after the script; its
            // own argv[0] shows in /proc.
            let script = r#"tr '\0' ' ' < /proc/$$/cmdline | grep -q '^mysh -c ' &&
                [ "$0" = zero ] && [ "$1" = a ] && exit 7"#;
            procexec(None, "sh", &["mysh", "-c", script, "zero", "a"]);
        })
    });
    assert_eq!(r, Err("7".to_string()));
    let r = bounded(30, || {
        run(|| {
            procexec(None, "true", &[]);
        })
    });
    assert_eq!(r, Ok(()));
}

/// Each of several concurrent programs has one procexec thread; each
/// program's status must be its own child's.
#[test]
fn concurrent_procexec_across_programs() {
    let ts: Vec<_> = (1..=8)
        .map(|k| {
            std::thread::spawn(move || {
                let r = bounded(60, move || {
                    run(move || {
                        let script = format!("sleep 0.{}; exit {k}", 8 - k);
                        procexec(None, "sh", &["sh", "-c", &script]);
                    })
                });
                (k, r)
            })
        })
        .collect();
    for t in ts {
        let (k, r) = t.join().unwrap();
        assert_eq!(r, Err(k.to_string()));
    }
}

/// Many procexec threads in one program (in two procs), each with its own
/// cpid: every copy on the wait channel pairs the pid with that child's
/// own status, and each pid comes once.
#[test]
fn concurrent_procexec_in_one_program() {
    bounded(60, || {
        run(|| {
            let wc = threadwaitchan();
            let mut want = HashMap::new();
            let mut cpids = Vec::new();
            for k in 1..=16u32 {
                let cpid = Chan::new(1);
                let c = cpid.clone();
                let body = move || {
                    let script = format!("sleep 0.0{}; exit {k}", k % 7);
                    procexec(Some(&c), "sh", &["sh", "-c", &script]);
                };
                if k % 2 == 0 {
                    thread9::proccreate(body, 0);
                } else {
                    threadcreate(body, 0);
                }
                cpids.push((k, cpid));
            }
            for (k, c) in cpids {
                let pid = c.recv().unwrap();
                assert!(pid > 0);
                want.insert(pid as u32, k.to_string());
            }
            for _ in 0..16 {
                let w = wc.recv().unwrap();
                assert_eq!(want.remove(&w.pid), Some(w.msg.clone()), "{w:?}");
            }
            // The procexec threads may still be exiting with their
            // statuses; this one is the program's.
            threadexitsall("");
        })
    })
    .unwrap();
}

#[test]
fn procexec_thread_killed_hands_message_to_waitchan() {
    bounded(30, || {
        run(|| {
            let wc = threadwaitchan();
            let cpid = Chan::new(1);
            let c = cpid.clone();
            let id = threadcreate(
                move || {
                    procexec(Some(&c), "sh", &["sh", "-c", "sleep 0.2; exit 9"]);
                },
                0,
            );
            let pid = cpid.recv().unwrap() as u32;
            threadyield();
            threadkill(id);
            let w = wc.recv().unwrap();
            assert_eq!((w.pid, w.msg.as_str()), (pid, "9"));
            assert_eq!(wc.nbrecv(), Err(TryRecvError::Empty));
        })
    })
    .unwrap();
}

#[test]
fn procexec_rides_out_threadint() {
    let r = bounded(30, || {
        run(|| {
            let cpid = Chan::new(1);
            let c = cpid.clone();
            let id = threadcreate(
                move || {
                    procexec(Some(&c), "sh", &["sh", "-c", "sleep 0.2; exit 6"]);
                },
                0,
            );
            assert!(cpid.recv().unwrap() > 0);
            for _ in 0..3 {
                threadyield();
                threadint(id);
            }
            // The procexec thread still waits for its child, and ends last.
        })
    });
    assert_eq!(r, Err("6".to_string()));
}

#[test]
fn std_children_are_left_alone() {
    bounded(60, || {
        run(|| {
            let wc = threadwaitchan();
            let n = 20;
            let mut mine = HashSet::new();
            for i in 0..n {
                mine.insert(threadspawn(Command::new("true")).unwrap());
                // A child of the user's own, waited for the std way while
                // the reaper is busy with ours.
                let st = sh(&format!("exit {}", i % 5 + 1)).status().unwrap();
                assert_eq!(st.code(), Some(i % 5 + 1));
                let out = Command::new("echo").arg("hi").output().unwrap();
                assert_eq!(out.stdout, b"hi\n");
            }
            for _ in 0..n {
                assert!(mine.remove(&wc.recv().unwrap().pid));
            }
        })
    })
    .unwrap();
    // And from a plain thread outside any program, while one runs.
    let t =
        std::thread::spawn(|| (0..20).all(|_| Command::new("true").status().unwrap().success()));
    bounded(60, || {
        run(|| {
            let wc = threadwaitchan();
            for _ in 0..20 {
                threadspawn(Command::new("true")).unwrap();
            }
            for _ in 0..20 {
                assert_eq!(wc.recv().unwrap().msg, "");
            }
        })
    })
    .unwrap();
    assert!(t.join().unwrap());
}

#[test]
fn no_deadlock_report_while_a_child_runs() {
    bounded(30, || {
        run(|| {
            let wc = threadwaitchan();
            let mut c = Command::new("sleep");
            c.arg("0.3");
            let pid = threadspawn(c).unwrap();
            // The only thread blocks; only the child's end can wake it.
            assert_eq!(wc.recv().unwrap().pid, pid);
        })
    })
    .unwrap();
    // The same with procexec as the only thread.
    bounded(30, || {
        run(|| {
            procexec(None, "sleep", &["sleep", "0.3"]);
        })
    })
    .unwrap();
}

#[test]
fn deadlock_reported_once_the_child_is_gone() {
    // Nothing asked for the child's end, and the only thread waits on a
    // channel no one else has: once the child is gone the program is
    // stuck, and must say so instead of hanging.
    let r = bounded(30, || {
        run(|| {
            let mut c = Command::new("sleep");
            c.arg("0.2");
            threadspawn(c).unwrap();
            let never: Chan<()> = Chan::new(0);
            let _ = never.recv();
        })
    });
    assert_eq!(r, Err("deadlock".to_string()));
}

fn example() -> PathBuf {
    // The test binary lives in target/<profile>/deps; examples beside it.
    let mut p = std::env::current_exe().unwrap();
    p.pop();
    p.pop();
    p.push("examples/spawn");
    assert!(p.exists(), "build the examples first ({})", p.display());
    p
}

#[test]
fn spawn_example_runs_both_at_once() {
    // Each copy of the command waits (up to a minute) until the other has
    // started: run one after the other, the first would give up with
    // status 3. No clock decides, so a loaded machine cannot fail it.
    let dir = std::env::temp_dir().join(format!("thread9-spawn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let wait_for_both = "touch \"$D/$$\"; n=0; \
        until [ \"$(ls \"$D\" | wc -l)\" -ge 2 ]; do \
        n=$((n+1)); [ $n -gt 6000 ] && exit 3; sleep 0.01; done";
    let o = Command::new(example())
        .args(["sh", "-c", wait_for_both])
        .env("D", &dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        o.status.success(),
        "spawn: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for l in lines {
        assert!(l.starts_with("pid ") && l.ends_with(" ''"), "{l}");
    }

    let o = Command::new(example())
        .args(["sh", "-c", "exit 2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stdout).matches("'2'").count(), 2);
}
