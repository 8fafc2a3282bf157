//! Ioprocs: blocking calls in a slave proc, and interrupts that work.

mod common;

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thread9::{Chan, Ioproc, proccreate, run, threadcreate, threadexitsall, threadyield};

fn pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = std::io::pipe().unwrap();
    (r.into(), w.into())
}

fn interrupted(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Interrupted
}

#[test]
fn ioproc_handles_are_cheap_shareable_values() {
    fn check<T: Clone + Send + Sync>() {}
    check::<Ioproc>();
    assert!(std::mem::size_of::<Ioproc>() <= 8);
}

#[test]
fn typed_calls_do_their_system_calls() {
    run(|| {
        let io = Ioproc::new();
        let dir = std::env::temp_dir().join(format!("thread9-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, b"plan 9 from bell labs").unwrap();
        let fd = io.open(&path, 0).unwrap(); // OREAD
        let mut buf = [0u8; 6];
        assert_eq!(io.read(&fd, &mut buf).unwrap(), 6);
        assert_eq!(&buf, b"plan 9");
        let mut rest = [0u8; 64];
        assert_eq!(
            io.readn(&fd, &mut rest).unwrap(),
            15,
            "readn stops at end of file"
        );
        assert_eq!(io.read(&fd, &mut rest).unwrap(), 0);
        io.close(fd).unwrap();
        let fd = io.open(&path, 1 | 0x10).unwrap(); // OWRITE|OTRUNC
        assert_eq!(io.write(&fd, b"new").unwrap(), 3);
        io.close(fd).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let e = io.open(&dir.join("missing"), 0).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        let t = Instant::now();
        io.sleep(30).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(30));
        io.flush().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    })
    .unwrap();
}

#[test]
fn other_threads_of_the_proc_run_during_a_call() {
    run(|| {
        let io = Ioproc::new();
        let ticks = Rc::new(Cell::new(0u32));
        let (t, stop) = (ticks.clone(), Rc::new(Cell::new(false)));
        let s = stop.clone();
        threadcreate(
            move || {
                while !s.get() {
                    t.set(t.get() + 1);
                    threadyield();
                }
            },
            0,
        );
        io.sleep(100).unwrap();
        stop.set(true);
        assert!(
            ticks.get() > 10,
            "the other thread ran only {} times",
            ticks.get()
        );
    })
    .unwrap();
}

#[test]
fn calls_queue_and_run_one_at_a_time_in_order() {
    run(|| {
        let io = Ioproc::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let done = Chan::new(0);
        for k in 0..5 {
            let (io, log, done) = (io.clone(), log.clone(), done.clone());
            threadcreate(
                move || {
                    io.call(|| {
                        log.lock().unwrap().push(format!("start {k}"));
                        std::thread::sleep(Duration::from_millis(10));
                        log.lock().unwrap().push(format!("end {k}"));
                    });
                    done.send(()).unwrap();
                },
                0,
            );
        }
        for _ in 0..5 {
            done.recv().unwrap();
        }
        let expect: Vec<String> = (0..5)
            .flat_map(|k| [format!("start {k}"), format!("end {k}")])
            .collect();
        assert_eq!(*log.lock().unwrap(), expect);
    })
    .unwrap();
}

#[test]
fn call_borrows_the_callers_stack_and_passes_panics_back() {
    run(|| {
        let io = Ioproc::new();
        let mut buf = vec![0u8; 1024];
        let n = io.call(|| {
            buf[..5].copy_from_slice(b"hello");
            5
        });
        assert_eq!(&buf[..n], b"hello");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            io.call(|| -> u32 { panic!("inside the ioproc") })
        }));
        let msg = r.unwrap_err();
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"inside the ioproc"));
        // The ioproc survived.
        assert_eq!(io.call(|| 6 * 7), 42);
    })
    .unwrap();
}

/// Interrupts `io` from a plain OS thread after `ms` milliseconds.
fn interrupt_later(io: &Ioproc, ms: u64) -> std::thread::JoinHandle<()> {
    let io = io.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        io.interrupt();
    })
}

/// Bytes waiting in the pipe whose read end is `fd`.
fn pipe_holds(fd: std::os::fd::RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through a valid pointer.
    assert_eq!(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) }, 0);
    n as usize
}

/// Interrupts `io` from another OS thread once `ready()` holds (checked
/// every 200 µs, for up to a minute): a call interrupted before it begins
/// fails without running, so a test of what an interrupt does to a call in
/// progress must wait until the call shows that it is in progress.
fn interrupt_when(
    io: &Ioproc,
    ready: impl Fn() -> bool + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let io = io.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready() {
            assert!(Instant::now() < deadline, "the call never got going");
            std::thread::sleep(Duration::from_micros(200));
        }
        io.interrupt();
    })
}

#[test]
fn interrupt_ends_a_blocked_pipe_read() {
    run(|| {
        let io = Ioproc::new();
        let (r, _w) = pipe();
        let t = interrupt_later(&io, 100);
        let start = Instant::now();
        let e = io.read(&r, &mut [0u8; 16]).unwrap_err();
        assert!(interrupted(&e), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
        // The interrupt was consumed: the next call works.
        let (r2, w2) = pipe();
        Ioproc::new().write(&w2, b"x").unwrap();
        assert_eq!(io.read(&r2, &mut [0u8; 1]).unwrap(), 1);
    })
    .unwrap();
}

#[test]
fn interrupt_ends_a_write_larger_than_the_pipe_has_room_for() {
    // POLLOUT only says the pipe has some room; a write of more than that
    // blocks inside write(2), where the interrupt must still reach it. It
    // ends with the count that went in, and every counted byte is there.
    let (r, w) = pipe();
    let rfd = r.as_raw_fd();
    let wrote = Arc::new(Mutex::new(0));
    let w2 = wrote.clone();
    run(move || {
        let io = Ioproc::new();
        let big = vec![7u8; 4 << 20]; // far more than a pipe holds
        // Once bytes are in the pipe, the write is under way.
        let t = interrupt_when(&io, move || pipe_holds(rfd) > 0);
        let start = Instant::now();
        let n = io.write(&w, &big).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(n > 0 && n < big.len(), "wrote {n} of {}", big.len());
        t.join().unwrap();
        // The interrupt ended that call and is used up.
        io.sleep(1).unwrap();
        *w2.lock().unwrap() = n;
    })
    .unwrap();
    let n = *wrote.lock().unwrap();
    let mut got = Vec::new();
    std::fs::File::from(r).read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), n, "the count is what the pipe received");
    assert!(got.iter().all(|&b| b == 7));
}

#[test]
fn interrupt_ends_a_long_sleep() {
    run(|| {
        let io = Ioproc::new();
        let t = interrupt_later(&io, 50);
        let start = Instant::now();
        let e = io.sleep(60_000).unwrap_err();
        assert!(interrupted(&e), "{e}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "slept {:?}",
            start.elapsed()
        );
        t.join().unwrap();
    })
    .unwrap();
}

/// A listener whose accept queue is full: a further connect to it hangs
/// (Linux drops the connection request). Returns None if it cannot be
/// made to hang on this machine.
fn hanging_listener() -> Option<(TcpListener, Vec<TcpStream>)> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    // SAFETY: the descriptor is owned by `l`; listen(2) again only changes
    // the backlog.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let mut fill = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fill.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Some((l, fill)),
            Err(e) => panic!("{e}"),
        }
    }
    None
}

#[test]
fn interrupt_ends_a_hanging_dial() {
    let Some((l, _fill)) = hanging_listener() else {
        eprintln!("note: connects never hang on this machine; nothing to interrupt");
        return;
    };
    let port = l.local_addr().unwrap().port();
    run(move || {
        let io = Ioproc::new();
        let t = interrupt_later(&io, 100);
        let start = Instant::now();
        let e = io.dial(&format!("tcp!127.0.0.1!{port}")).unwrap_err();
        assert!(interrupted(&e), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
    })
    .unwrap();
}

#[test]
fn a_pending_interrupt_fails_the_next_call_and_flush_clears_it() {
    run(|| {
        let io = Ioproc::new();
        let (r, w) = pipe();
        io.interrupt(); // no call running: it stays pending
        let e = io.write(&w, b"lost?").unwrap_err();
        assert!(interrupted(&e), "{e}");
        // The write did not run: nothing is in the pipe.
        let mut buf = [0u8; 8];
        Ioproc::new().write(&w, b"!").unwrap();
        assert_eq!(
            io.read(&r, &mut buf).unwrap(),
            1,
            "only the later byte is there"
        );
        // flush clears a pending interrupt.
        io.interrupt();
        io.flush().unwrap();
        assert_eq!(io.write(&w, b"ok").unwrap(), 2);
        assert_eq!(io.read(&r, &mut buf).unwrap(), 2);
    })
    .unwrap();
}

#[test]
fn interrupts_racing_with_calls_are_never_lost() {
    // Each round, a read that nobody will satisfy races with an interrupt
    // sent at a random moment, possibly before the call begins: the call
    // must end Interrupted every time (a lost interrupt hangs the round).
    run(|| {
        let io = Ioproc::new();
        let (r, _w) = pipe();
        let mut seed = 0x2545f4914f6cdd1du64;
        for round in 0..100 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let delay = Duration::from_micros(seed % 2000);
            let io2 = io.clone();
            let t = std::thread::spawn(move || {
                std::thread::sleep(delay);
                io2.interrupt();
            });
            let e = io.read(&r, &mut [0u8; 4]).unwrap_err();
            assert!(interrupted(&e), "round {round}: {e}");
            t.join().unwrap();
        }
        // Nothing is left over.
        io.flush().unwrap();
        let (r2, w2) = pipe();
        io.write(&w2, b"z").unwrap();
        assert_eq!(io.read(&r2, &mut [0u8; 1]).unwrap(), 1);
    })
    .unwrap();
}

#[test]
fn readn_does_not_retry_after_an_interrupt() {
    run(|| {
        let io = Ioproc::new();
        let (r, w) = pipe();
        Ioproc::new().write(&w, b"abc").unwrap();
        // Once the pipe is empty again, the readn has its 3 bytes and
        // waits for more.
        let rfd = r.as_raw_fd();
        let t = interrupt_when(&io, move || pipe_holds(rfd) == 0);
        let mut buf = [0u8; 10];
        assert_eq!(
            io.readn(&r, &mut buf).unwrap(),
            3,
            "the bytes before the interrupt"
        );
        assert_eq!(&buf[..3], b"abc");
        t.join().unwrap();
        // Until full, across several writes.
        let (io2, w2) = (io.clone(), w);
        proccreate(
            move || {
                for chunk in [&b"01234"[..], b"56789"] {
                    io2.sleep(10).unwrap();
                    Ioproc::new().write(&w2, chunk).unwrap();
                }
            },
            0,
        );
        let mut buf = [0u8; 10];
        assert_eq!(Ioproc::new().readn(&r, &mut buf).unwrap(), 10);
        assert_eq!(&buf, b"0123456789");
    })
    .unwrap();
}

#[test]
fn dial_connects_to_tcp_and_unix_and_refuses_bad_strings() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
    });
    let dir = std::env::temp_dir().join(format!("thread9-dial-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("s");
    let ul = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let uecho = std::thread::spawn(move || {
        let (mut s, _) = ul.accept().unwrap();
        s.write_all(b"unix").unwrap();
    });
    let sock2 = sock.clone();
    run(move || {
        let io = Ioproc::new();
        let fd = io.dial(&format!("tcp!127.0.0.1!{port}")).unwrap();
        io.write(&fd, b"ping").unwrap();
        let mut b = [0u8; 4];
        assert_eq!(io.readn(&fd, &mut b).unwrap(), 4);
        assert_eq!(&b, b"ping");
        let fd = io.dial(&format!("unix!{}", sock2.display())).unwrap();
        let mut b = [0u8; 4];
        assert_eq!(io.readn(&fd, &mut b).unwrap(), 4);
        assert_eq!(&b, b"unix");
        for (bad, what) in [
            ("", "empty"),
            ("tcp!localhost", "missing port"),
            ("ftp!host!21", "unknown network"),
            ("tcp!host!99999", "out of range"),
            ("tcp!host!nosuchservice", "unknown service"),
            ("unix!", "path"),
        ] {
            let e = io.dial(bad).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{bad}: {e}");
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("{bad:?}")) && msg.contains(what),
                "{bad}: {msg}"
            );
        }
        let e = io.dial("net!nosuch.invalid!9fs").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    })
    .unwrap();
    echo.join().unwrap();
    uecho.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_caller_waits_for_its_call_to_finish() {
    // threadexitsall kills a thread blocked in a call that borrows its
    // stack: the call is interrupted, and the thread unwinds only after the
    // call has returned.
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let start = Instant::now();
    // The write end outlives the program, so the read can only end by the
    // interrupt (not by end of file when thread 1 unwinds).
    let (r, w) = pipe();
    let r = run(move || {
        let io = Ioproc::new();
        let started = Chan::new(0);
        let (s, log) = (started.clone(), l2.clone());
        threadcreate(
            move || {
                struct Unwound(Arc<Mutex<Vec<&'static str>>>);
                impl Drop for Unwound {
                    fn drop(&mut self) {
                        self.0.lock().unwrap().push("caller unwound");
                    }
                }
                let _g = Unwound(log.clone());
                let mut buf = [0u8; 8];
                s.send(()).unwrap();
                io.call(|| {
                    // A blocking std read; the interrupt makes it fail.
                    // SAFETY: a read into a live local buffer.
                    let n =
                        unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                    log.lock().unwrap().push(if n < 0 {
                        "call interrupted"
                    } else {
                        "call read"
                    });
                });
                unreachable!("killed during the call");
            },
            0,
        );
        started.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50)); // let the call block
        threadexitsall("stop");
    });
    assert_eq!(r, Err("stop".to_string()));
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(*log.lock().unwrap(), ["call interrupted", "caller unwound"]);
    drop(w);
}

#[test]
fn interrupts_do_not_disturb_other_threads() {
    // A plain OS thread blocked in a read is not interrupted by ioproc
    // interrupts: the signal goes to the ioproc's OS thread alone.
    let (r, w) = pipe();
    let reader = std::thread::spawn(move || {
        let mut f = std::fs::File::from(r);
        let mut b = [0u8; 1];
        f.read(&mut b).map(|_| b[0])
    });
    run(move || {
        let io = Ioproc::new();
        let (pr, _pw) = pipe();
        for _ in 0..20 {
            let t = interrupt_later(&io, 2);
            let _ = io.read(&pr, &mut [0u8; 1]);
            t.join().unwrap();
        }
        io.write(&w, b"!").unwrap();
    })
    .unwrap();
    assert_eq!(reader.join().unwrap().unwrap(), b'!');
}

#[test]
#[ignore = "a scenario run in a child process by the user's signal handler test"]
fn scenario_user_handler() {
    if !common::is_child("scenario_user_handler") {
        return;
    }
    static HITS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    extern "C" fn count(_: libc::c_int) {
        HITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    // The program owns the highest real-time signal before any ioproc.
    // SAFETY: installing an async-signal-safe handler with valid pointers.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = count as *const () as usize;
        libc::sigemptyset(&mut act.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGRTMAX(), &act, std::ptr::null_mut()),
            0
        );
    }
    run(|| {
        let io = Ioproc::new();
        let t = interrupt_later(&io, 50);
        let e = io.sleep(60_000).unwrap_err();
        assert!(interrupted(&e));
        t.join().unwrap();
    })
    .unwrap();
    // SAFETY: raising a signal we handle.
    unsafe { libc::raise(libc::SIGRTMAX()) };
    println!("hits {}", HITS.load(std::sync::atomic::Ordering::SeqCst));
}

#[test]
fn the_programs_own_signal_handlers_are_left_alone() {
    let o = common::child("scenario_user_handler");
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(
        common::reported(&o, "hits "),
        ["1"],
        "only the program's own raise reached its handler"
    );
}

#[test]
fn calls_work_from_plain_os_threads() {
    // The reply channel is made outside the program: a plain OS thread
    // will use it, so deadlock detection must not count it out.
    let c = Chan::new(0);
    let d = c.clone();
    run(move || {
        let io = Ioproc::new();
        let outsider = std::thread::spawn(move || {
            io.sleep(1).unwrap();
            let (r, w) = pipe();
            io.write(&w, b"os").unwrap();
            let mut b = [0u8; 2];
            io.readn(&r, &mut b).unwrap();
            d.send(io.call(|| b)).unwrap();
        });
        assert_eq!(c.recv().unwrap(), *b"os");
        outsider.join().unwrap();
    })
    .unwrap();
}

#[test]
fn dropping_the_last_handle_ends_the_ioproc() {
    // If the ioproc outlived its handles, its proc would keep the program
    // alive (and then be reported as a deadlock).
    assert_eq!(
        run(|| {
            let io = Ioproc::new();
            io.sleep(1).unwrap();
        }),
        Ok(())
    );
}

#[test]
fn relay_example_moves_data_intact() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        std::io::copy(&mut s, &mut w).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut exe = std::env::current_exe().unwrap();
    exe.pop();
    exe.pop();
    exe.push("examples/relay");
    let data: Vec<u8> = (0..3 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let mut child = std::process::Command::new(exe)
        .arg(format!("tcp!127.0.0.1!{port}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let d2 = data.clone();
    let feeder = std::thread::spawn(move || stdin.write_all(&d2).unwrap());
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    echo.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == data,
        "relayed data differs ({} bytes back)",
        out.stdout.len()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("relay: {} bytes", 2 * data.len())
    );
}

#[test]
fn a_caller_shows_in_dumps_as_in_an_ioproc_call() {
    run(|| {
        let io = Ioproc::new();
        let io2 = io.clone();
        threadcreate(
            move || {
                thread9::threadsetname("sleeper");
                io2.sleep(60_000).unwrap_err();
            },
            0,
        );
        // Wait (a bounded while) until the ioproc has taken the call.
        let deadline = Instant::now() + Duration::from_secs(5);
        let in_call = |d: &str| {
            d.lines()
                .any(|l| l.contains("(sleeper): ioproc call (ioproc "))
        };
        let mut dump = thread9::threaddump();
        while !in_call(&dump) {
            assert!(Instant::now() < deadline, "{dump}");
            threadyield();
            std::thread::sleep(Duration::from_millis(1));
            dump = thread9::threaddump();
        }
        assert!(
            dump.contains("(ioproc): "),
            "the ioproc's own thread is listed: {dump}"
        );
        io.interrupt();
    })
    .unwrap();
}

#[test]
fn a_group_interrupt_does_not_end_an_idle_ioproc() {
    // The ioproc's thread is in its creator's group; `threadintgrp` on
    // that group interrupts waits, and the ioproc's wait for requests is
    // not one that should end.
    run(|| {
        let io = Ioproc::new();
        io.sleep(1).unwrap();
        // Wait until its thread waits for the next request, or the
        // interrupt would find nothing to interrupt.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut dump = thread9::threaddump();
        while !dump.contains("(ioproc): recv on ioproc ") {
            assert!(Instant::now() < deadline, "{dump}");
            std::thread::sleep(Duration::from_micros(200));
            dump = thread9::threaddump();
        }
        thread9::threadintgrp(0);
        // The interrupt reaches the ioproc's proc asynchronously; a request
        // sent at once could win the race and be received before it. Give
        // it time to land (a late landing only makes the test weaker, never
        // makes it fail).
        std::thread::sleep(Duration::from_millis(100));
        io.sleep(1).unwrap();
        assert_eq!(io.call(|| 42), 42);
    })
    .unwrap();
}

#[test]
fn open_takes_plan9_modes_unix_flags_and_a_mix() {
    run(|| {
        let io = Ioproc::new();
        let dir = common::TempDir::new("open");
        let path = dir.0.join("made");
        // Unix flags: O_CREAT (Plan 9's ORCLOSE bit) creates.
        let fd = io.open(&path, libc::O_WRONLY | libc::O_CREAT).unwrap();
        assert_eq!(io.write(&fd, b"first").unwrap(), 5);
        io.close(fd).unwrap();
        // Plan 9's OWRITE|OTRUNC with Unix's O_APPEND.
        let fd = io.open(&path, 1 | 0x10 | libc::O_APPEND).unwrap();
        assert_eq!(io.write(&fd, b"x").unwrap(), 1);
        assert_eq!(io.write(&fd, b"y").unwrap(), 1);
        io.close(fd).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"xy");
        // O_EXCL on an existing file is refused by the kernel, not by us.
        let e = io
            .open(&path, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        // OEXEC opens for reading.
        let fd = io.open(&path, 3).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(io.read(&fd, &mut buf).unwrap(), 2);
        io.close(fd).unwrap();
    })
    .unwrap();
}
