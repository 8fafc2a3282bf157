//! Notes: Unix signals delivered as Plan 9 notes, `threadnotify`.
//!
//! Signals act on the whole process, so every scenario runs in a child
//! process of its own (see `common`), with a watchdog that ends it if a
//! note never comes.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use thread9::{Chan, proccreate, run, threadcreate, threadnotify, threadsetname};

/// Ends a child process that has waited too long, so no test hangs.
fn watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(10));
        println!("watchdog: the scenario took too long");
        std::process::exit(99);
    });
}

/// Where handlers report the notes they see: a buffered channel made before
/// `run`, so waiting on it is never taken for a deadlock.
static SEEN: Mutex<Option<Chan<String>>> = Mutex::new(None);

fn seen() -> Chan<String> {
    SEEN.lock()
        .unwrap()
        .get_or_insert_with(|| Chan::new(64))
        .clone()
}

fn saw(s: String) {
    println!("{s}");
    seen().nbsend(s).expect("the SEEN channel has room");
}

fn kill(sig: libc::c_int) {
    // SAFETY: kill to our own process; the scenario expects the signal.
    unsafe { libc::kill(libc::getpid(), sig) };
}

/// Sends `sig` to the calling OS thread; its handler has run (so the
/// signal is recorded) when this returns.
fn raise(sig: libc::c_int) {
    // SAFETY: as for `kill`.
    unsafe { libc::raise(sig) };
}

/// Sends `sig` to the process from another OS thread after `ms`.
fn kill_later(sig: libc::c_int, ms: u64) {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        kill(sig);
    });
}

fn accept_usr1(note: &str) -> bool {
    saw(format!("note {note}"));
    note == "sys: usr1"
}

fn accept_all(note: &str) -> bool {
    saw(format!("note {note}"));
    true
}

fn status(r: Result<(), String>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(s) => s,
    }
}

fn check_ok(o: &std::process::Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "child failed; stdout: {} stderr: {}",
        common::stdout(o),
        common::stderr(o)
    );
}

#[test]
#[ignore = "a scenario run in a child process by a handler_accepts_a_note"]
fn scenario_accept() {
    if !common::is_child("scenario_accept") {
        return;
    }
    watchdog();
    let notes = seen();
    let r = run(move || {
        assert!(threadnotify(accept_usr1, true));
        kill(libc::SIGUSR1);
        assert_eq!(notes.recv().unwrap(), "note sys: usr1");
        // The program goes on.
        let c = Chan::new(0);
        let d = c.clone();
        threadcreate(move || d.send(7).unwrap(), 0);
        assert_eq!(c.recv(), Ok(7));
    });
    println!("status {}", status(r));
}

#[test]
fn handler_accepts_a_note() {
    let o = common::child("scenario_accept");
    check_ok(&o);
    assert_eq!(common::reported(&o, "note "), ["sys: usr1"]);
    assert_eq!(common::reported(&o, "status "), ["ok"]);
}

#[test]
#[ignore = "a scenario run in a child process by unhandled_notes_end_the_program"]
fn scenario_unhandled() {
    if !common::is_child("scenario_unhandled") {
        return;
    }
    watchdog();
    let sig: libc::c_int = std::env::var("T9_SIG").unwrap().parse().unwrap();
    // Made outside the program: waiting on it is not a deadlock.
    let never: Chan<()> = Chan::new(0);
    let r = run(move || {
        if sig == libc::SIGALRM {
            // SAFETY: alarm only arms this process's timer.
            unsafe { libc::alarm(1) };
        } else {
            kill(sig);
        }
        let _ = never.recv();
        println!("recv returned");
    });
    println!("status {}", status(r));
}

#[test]
fn unhandled_notes_end_the_program() {
    for (sig, note) in [
        (libc::SIGINT, "interrupt"),
        (libc::SIGTERM, "kill"),
        (libc::SIGHUP, "hangup"),
        (libc::SIGALRM, "alarm"),
        (libc::SIGUSR1, "sys: usr1"),
        (libc::SIGUSR2, "sys: usr2"),
    ] {
        let o = common::child_with("scenario_unhandled", &[("T9_SIG", &sig.to_string())]);
        check_ok(&o);
        assert_eq!(common::reported(&o, "status "), [note], "signal {sig}");
        assert!(!common::stdout(&o).contains("recv returned"));
    }
}

fn first(note: &str) -> bool {
    saw(format!("first {note}"));
    false
}

fn second(note: &str) -> bool {
    saw(format!("second {note}"));
    note == "sys: usr1"
}

#[test]
#[ignore = "a scenario run in a child process by handlers_are_asked_in_order"]
fn scenario_order() {
    if !common::is_child("scenario_order") {
        return;
    }
    watchdog();
    let notes = seen();
    let r = run(move || {
        assert!(threadnotify(first, true));
        assert!(threadnotify(second, true));
        kill(libc::SIGUSR1);
        assert_eq!(notes.recv().unwrap(), "first sys: usr1");
        assert_eq!(notes.recv().unwrap(), "second sys: usr1");
        println!("still running");
        kill(libc::SIGUSR2);
        // Neither accepts: the program ends while we wait here.
        let _ = notes.recv();
        let _ = notes.recv();
        let _ = notes.recv();
        println!("not ended");
    });
    println!("status {}", status(r));
}

#[test]
fn handlers_are_asked_in_order() {
    let o = common::child("scenario_order");
    check_ok(&o);
    assert_eq!(
        common::reported(&o, "first "),
        ["sys: usr1", "sys: usr2"],
        "{}",
        common::stdout(&o)
    );
    assert_eq!(common::reported(&o, "second "), ["sys: usr1", "sys: usr2"]);
    assert!(common::stdout(&o).contains("still running"));
    assert!(!common::stdout(&o).contains("not ended"));
    assert_eq!(common::reported(&o, "status "), ["sys: usr2"]);
}

#[test]
#[ignore = "a scenario run in a child process by removed_handlers_are_not_called"]
fn scenario_remove() {
    if !common::is_child("scenario_remove") {
        return;
    }
    watchdog();
    let notes = seen();
    let r = run(move || {
        assert!(threadnotify(first, true));
        assert!(threadnotify(first, true), "a second install is a no-op");
        assert!(threadnotify(accept_all, true));
        raise(libc::SIGUSR1);
        // `first` is asked once, then `accept_all` takes the note.
        assert_eq!(notes.recv().unwrap(), "first sys: usr1");
        assert_eq!(notes.recv().unwrap(), "note sys: usr1");
        println!("remove1 {}", threadnotify(first, false));
        println!("remove2 {}", threadnotify(first, false));
        println!("remove3 {}", threadnotify(accept_all, false));
        kill(libc::SIGUSR1);
        let _ = notes.recv();
        println!("not ended");
    });
    while let Ok(s) = seen().nbrecv() {
        println!("left over {s}");
    }
    println!("status {}", status(r));
}

#[test]
fn removed_handlers_are_not_called() {
    let o = common::child("scenario_remove");
    check_ok(&o);
    assert_eq!(common::reported(&o, "remove1 "), ["true"]);
    assert_eq!(common::reported(&o, "remove2 "), ["false"]);
    assert_eq!(common::reported(&o, "remove3 "), ["true"]);
    assert!(!common::stdout(&o).contains("not ended"));
    assert!(!common::stdout(&o).contains("left over"));
    assert_eq!(common::reported(&o, "status "), ["sys: usr1"]);
}

#[test]
#[ignore = "a scenario run in a child process by sigquit_prints_the_thread_dump"]
fn scenario_quit() {
    if !common::is_child("scenario_quit") {
        return;
    }
    watchdog();
    let notes = seen();
    let r = run(move || {
        threadsetname("quitmain");
        let c: Chan<i32> = Chan::new(0);
        c.set_name("idle");
        let d = c.clone();
        threadcreate(
            move || {
                threadsetname("quitsleeper");
                let _ = d.recv();
            },
            0,
        );
        let e = c.clone();
        let started = Chan::new(0);
        let s = started.clone();
        proccreate(
            move || {
                threadsetname("quitproc");
                s.send(()).unwrap();
                let _ = e.recv();
            },
            0,
        );
        started.recv().unwrap();
        thread9::threadyield();
        threadnotify(accept_usr1, true);
        // The dump is printed before the note sent after it is handled.
        raise(libc::SIGQUIT);
        raise(libc::SIGUSR1);
        assert_eq!(notes.recv().unwrap(), "note sys: usr1");
        println!("still running");
        c.send(1).unwrap();
        c.send(2).unwrap();
    });
    println!("status {}", status(r));
}

#[test]
fn sigquit_prints_the_thread_dump() {
    let o = common::child("scenario_quit");
    check_ok(&o);
    let err = common::stderr(&o);
    for name in ["quitmain", "quitsleeper", "quitproc", "recv on idle"] {
        assert!(err.contains(name), "dump names {name}: {err}");
    }
    assert!(common::stdout(&o).contains("still running"));
    assert_eq!(common::reported(&o, "status "), ["ok"]);
}

#[test]
#[ignore = "a scenario run in a child process by sigpipe_is_a_note_only_when_reset"]
fn scenario_pipe() {
    if !common::is_child("scenario_pipe") {
        return;
    }
    watchdog();
    let mode = std::env::var("T9_PIPE").unwrap();
    if mode != "ign" {
        // SAFETY: resets a disposition before any program runs; nothing
        // else in this process relies on SIGPIPE being ignored.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let notes = seen();
    let r = run(move || {
        if mode != "dfl" {
            threadnotify(accept_all, true);
        }
        let (reader, mut writer) = std::io::pipe().unwrap();
        drop(reader);
        use std::io::Write;
        let e = writer.write(b"hello").unwrap_err();
        println!("write-error {:?}", e.kind());
        if mode == "ign" {
            // No note came from the write: the first is this one.
            raise(libc::SIGUSR1);
        }
        let note = notes.recv();
        println!("after-recv {}", note.is_ok());
    });
    println!("status {}", status(r));
}

#[test]
fn sigpipe_is_a_note_only_when_reset() {
    // Reset to SIG_DFL, with a handler: the note arrives, the program goes on.
    let o = common::child_with("scenario_pipe", &[("T9_PIPE", "handler")]);
    check_ok(&o);
    assert_eq!(common::reported(&o, "write-error "), ["BrokenPipe"]);
    assert_eq!(common::reported(&o, "note "), ["sys: write on closed pipe"]);
    assert_eq!(common::reported(&o, "status "), ["ok"]);

    // Reset, no handler: the note ends the program.
    let o = common::child_with("scenario_pipe", &[("T9_PIPE", "dfl")]);
    check_ok(&o);
    assert_eq!(common::reported(&o, "write-error "), ["BrokenPipe"]);
    assert!(!common::stdout(&o).contains("after-recv"));
    assert_eq!(
        common::reported(&o, "status "),
        ["sys: write on closed pipe"]
    );

    // Rust's default, SIG_IGN: only the write fails.
    let o = common::child_with("scenario_pipe", &[("T9_PIPE", "ign")]);
    check_ok(&o);
    assert_eq!(common::reported(&o, "write-error "), ["BrokenPipe"]);
    assert_eq!(common::reported(&o, "note "), ["sys: usr1"]);
    assert_eq!(common::reported(&o, "status "), ["ok"]);
}

#[test]
#[ignore = "a scenario run in a child process by every_program_gets_the_note"]
fn scenario_two_programs() {
    if !common::is_child("scenario_two_programs") {
        return;
    }
    watchdog();
    let notes = seen();
    let ready = std::sync::Arc::new(std::sync::Barrier::new(3));
    let r1 = ready.clone();
    let a = std::thread::spawn(move || {
        run(move || {
            threadnotify(accept_usr1, true);
            r1.wait();
            assert_eq!(notes.recv().unwrap(), "note sys: usr1");
        })
    });
    let never: Chan<()> = Chan::new(0);
    let r2 = ready.clone();
    let b = std::thread::spawn(move || {
        run(move || {
            r2.wait();
            let _ = never.recv();
        })
    });
    ready.wait();
    kill(libc::SIGUSR1);
    println!("a {}", status(a.join().unwrap()));
    println!("b {}", status(b.join().unwrap()));
}

#[test]
fn every_program_gets_the_note() {
    let o = common::child("scenario_two_programs");
    check_ok(&o);
    // The one with a handler accepts it and goes on; the other ends.
    assert_eq!(common::reported(&o, "a "), ["ok"]);
    assert_eq!(common::reported(&o, "b "), ["sys: usr1"]);
}

#[test]
#[ignore = "a scenario run in a child process by signals_between_programs_keep_their_default"]
fn scenario_no_program() {
    if !common::is_child("scenario_no_program") {
        return;
    }
    watchdog();
    let r = run(|| {
        threadnotify(accept_all, true);
    });
    println!("status {}", status(r));
    kill(libc::SIGUSR1);
    std::thread::sleep(Duration::from_secs(5));
    println!("survived");
}

#[test]
fn signals_between_programs_keep_their_default() {
    let o = common::child("scenario_no_program");
    assert_eq!(
        common::signal(&o),
        Some(libc::SIGUSR1),
        "stdout: {} stderr: {}",
        common::stdout(&o),
        common::stderr(&o)
    );
    assert_eq!(common::reported(&o, "status "), ["ok"]);
    assert!(!common::stdout(&o).contains("survived"));
}

static FORWARD: Mutex<Option<Chan<String>>> = Mutex::new(None);

fn forward(note: &str) -> bool {
    let c = FORWARD.lock().unwrap().clone().unwrap();
    c.send(note.to_string()).is_ok()
}

#[test]
#[ignore = "a scenario run in a child process by a_handler_keeps_a_waiting_program_alive"]
fn scenario_wait() {
    if !common::is_child("scenario_wait") {
        return;
    }
    watchdog();
    let r = run(|| {
        // Made inside the program and touched by no outsider before the
        // note: only the installed handler keeps this wait from looking
        // like a deadlock.
        let c = Chan::new(0);
        *FORWARD.lock().unwrap() = Some(c.clone());
        threadnotify(forward, true);
        kill_later(libc::SIGUSR1, 200);
        println!("got {}", c.recv().unwrap());
        assert!(threadnotify(forward, false));
    });
    println!("status {}", status(r));
}

#[test]
fn a_handler_keeps_a_waiting_program_alive() {
    let o = common::child("scenario_wait");
    check_ok(&o);
    assert!(
        !common::stderr(&o).contains("deadlock"),
        "{}",
        common::stderr(&o)
    );
    assert_eq!(common::reported(&o, "got "), ["sys: usr1"]);
    assert_eq!(common::reported(&o, "status "), ["ok"]);
}

fn once(note: &str) -> bool {
    // A handler may remove itself: threadnotify applies to the program
    // being notified.
    println!("removed itself {}", threadnotify(once, false));
    println!("once {note}");
    true
}

#[test]
#[ignore = "a scenario run in a child process by deadlock_is_reported_once_handlers_are_gone"]
fn scenario_deadlock_after() {
    if !common::is_child("scenario_deadlock_after") {
        return;
    }
    watchdog();
    let which = std::env::var("T9_HOW").unwrap();
    let r = run(move || {
        threadnotify(once, true);
        if which == "thread" {
            assert!(threadnotify(once, false));
        } else {
            kill_later(libc::SIGUSR1, 200);
        }
        // Nothing will ever send: once no handler is left, a deadlock.
        let c: Chan<i32> = Chan::new(0);
        let _ = c.recv();
    });
    println!("status {}", status(r));
}

#[test]
fn deadlock_is_reported_once_handlers_are_gone() {
    // Removed by the program's own thread before it blocks.
    let o = common::child_with("scenario_deadlock_after", &[("T9_HOW", "thread")]);
    check_ok(&o);
    assert_eq!(common::reported(&o, "status "), ["deadlock"]);

    // Removed by the handler itself while the program sleeps.
    let o = common::child_with("scenario_deadlock_after", &[("T9_HOW", "handler")]);
    check_ok(&o);
    assert_eq!(common::reported(&o, "removed itself "), ["true"]);
    assert_eq!(common::reported(&o, "once "), ["sys: usr1"]);
    assert_eq!(common::reported(&o, "status "), ["deadlock"]);
    assert!(common::stderr(&o).contains("thread9: deadlock"));
}

fn bad(_note: &str) -> bool {
    panic!("bad handler")
}

#[test]
#[ignore = "a scenario run in a child process by a_panicking_handler_ends_the_program"]
fn scenario_panic() {
    if !common::is_child("scenario_panic") {
        return;
    }
    watchdog();
    let never: Chan<()> = Chan::new(0);
    let r = run(move || {
        threadnotify(bad, true);
        kill(libc::SIGUSR1);
        let _ = never.recv();
    });
    println!("status {}", status(r));
    // The notes thread survived the panic: a later program gets notes.
    let notes = seen();
    let r = run(move || {
        threadnotify(accept_usr1, true);
        kill(libc::SIGUSR1);
        notes.recv().unwrap();
    });
    println!("status {}", status(r));
}

#[test]
fn a_panicking_handler_ends_the_program() {
    let o = common::child("scenario_panic");
    check_ok(&o);
    assert_eq!(
        common::reported(&o, "status "),
        ["panic: bad handler", "ok"]
    );
    assert_eq!(common::reported(&o, "note "), ["sys: usr1"]);
}

#[test]
fn threadnotify_outside_a_program_panics() {
    let r = std::panic::catch_unwind(|| threadnotify(accept_all, true));
    let msg = r.unwrap_err();
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("threadnotify"), "{msg}");
}

#[test]
#[ignore = "a scenario run in a child process by a_second_note_stops_a_program_that_cannot_end"]
fn scenario_stuck() {
    if !common::is_child("scenario_stuck") {
        return;
    }
    watchdog();
    let _ = run(|| {
        // Another OS thread sends ^C every 100 ms. The first note marks the
        // program ending, but its only thread computes and never reaches a
        // blocking point; a later one must take the default action.
        std::thread::spawn(|| {
            loop {
                kill(libc::SIGINT);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        println!("computing");
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    });
    println!("run returned");
}

#[test]
fn a_second_note_stops_a_program_that_cannot_end() {
    let o = common::child("scenario_stuck");
    assert_eq!(common::signal(&o), Some(libc::SIGINT), "{o:?}");
    let out = common::stdout(&o);
    assert!(
        out.contains("computing\n") && !out.contains("run returned"),
        "{out}"
    );
}
