//! threadfdwait: threads waiting on descriptors inside their proc.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use thread9::{Chan, proccreate, run, threadcreate, threadexitsall, threadfdwait, threadint};

/// Reads what `s` has, waiting in the proc while it has nothing; 0 at end
/// of stream.
fn read_waiting(s: &mut UnixStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => threadfdwait(s.as_fd(), 'r')?,
            r => return r,
        }
    }
}

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

#[test]
fn many_threads_of_one_proc_wait_on_their_own_sockets() {
    const N: usize = 100;
    let _w = common::watchdog("many_threads_of_one_proc_wait_on_their_own_sockets", 60);
    run(|| {
        let got = Chan::<(usize, Vec<u8>)>::new(N);
        let mut writers = Vec::new();
        for i in 0..N {
            let (a, mut b) = pair();
            writers.push(a);
            let got = got.clone();
            threadcreate(
                move || {
                    let mut buf = [0u8; 64];
                    let mut all = Vec::new();
                    loop {
                        let n = read_waiting(&mut b, &mut buf).unwrap();
                        if n == 0 {
                            break;
                        }
                        all.extend_from_slice(&buf[..n]);
                    }
                    got.send((i, all)).unwrap();
                },
                0,
            );
        }
        // From another OS thread, in an order unlike the threads', in
        // several pieces, with pauses that let the proc fall asleep.
        std::thread::spawn(move || {
            for round in 0..3 {
                for k in 0..N {
                    let i = (k * 37 + round) % N;
                    writers[i]
                        .write_all(format!("{i}:{round};").as_bytes())
                        .unwrap();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(writers);
        });
        let mut seen = vec![None; N];
        for _ in 0..N {
            let (i, data) = got.recv().unwrap();
            seen[i] = Some(String::from_utf8(data).unwrap());
        }
        for (i, s) in seen.into_iter().enumerate() {
            assert_eq!(s.unwrap(), format!("{i}:0;{i}:1;{i}:2;"));
        }
    })
    .unwrap();
}

#[test]
fn a_proc_asleep_on_descriptors_is_woken_by_another_proc() {
    let _w = common::watchdog("a_proc_asleep_on_descriptors_is_woken_by_another_proc", 60);
    run(|| {
        let (keep, mut b) = pair();
        let c = Chan::<u32>::new(0);
        let done = Chan::<u32>::new(0);
        let (c2, d2) = (c.clone(), done.clone());
        proccreate(
            move || {
                // A thread that waits on a socket nobody writes, so that
                // the proc sleeps in poll rather than on its futex.
                let t = threadcreate(
                    move || {
                        let mut buf = [0u8; 1];
                        let r = read_waiting(&mut b, &mut buf);
                        assert_eq!(r.unwrap_err().kind(), ErrorKind::Interrupted);
                    },
                    0,
                );
                let mut sum = 0;
                while let Ok(v) = c2.recv() {
                    sum += v;
                }
                threadint(t);
                d2.send(sum).unwrap();
            },
            0,
        );
        for v in 1..=200 {
            if v % 20 == 0 {
                // Long enough for the other proc to stop polling and sleep.
                std::thread::sleep(Duration::from_millis(5));
            }
            c.send(v).unwrap();
        }
        c.close();
        assert_eq!(done.recv().unwrap(), 200 * 201 / 2);
        drop(keep);
    })
    .unwrap();
}

#[test]
fn an_interrupted_wait_leaves_nothing_behind() {
    run(|| {
        let (mut a, mut b) = pair();
        let out = Chan::<String>::new(4);
        let o = out.clone();
        let t = threadcreate(
            move || {
                let mut buf = [0u8; 8];
                let e = read_waiting(&mut b, &mut buf).unwrap_err();
                o.send(format!("{:?}", e.kind())).unwrap();
                // The same thread waits again: the first wait is gone, so
                // only this one is readied.
                let n = read_waiting(&mut b, &mut buf).unwrap();
                o.send(String::from_utf8(buf[..n].to_vec()).unwrap())
                    .unwrap();
            },
            0,
        );
        thread9::threadyield();
        threadint(t);
        assert_eq!(out.recv().unwrap(), "Interrupted");
        a.write_all(b"later").unwrap();
        assert_eq!(out.recv().unwrap(), "later");
    })
    .unwrap();
}

#[test]
fn a_busy_proc_still_serves_its_descriptors() {
    let _w = common::watchdog("a_busy_proc_still_serves_its_descriptors", 60);
    run(|| {
        let (mut a, mut b) = pair();
        let stop = std::rc::Rc::new(std::cell::Cell::new(false));
        // Two threads that keep each other ready for ever: the run queue
        // never empties, so the scheduler never idles.
        for _ in 0..2 {
            let stop = stop.clone();
            threadcreate(
                move || {
                    while !stop.get() {
                        thread9::threadyield();
                    }
                },
                0,
            );
        }
        std::thread::spawn(move || a.write_all(b"x").unwrap());
        let mut buf = [0u8; 1];
        assert_eq!(read_waiting(&mut b, &mut buf).unwrap(), 1);
        stop.set(true);
    })
    .unwrap();
}

#[test]
fn a_wait_on_a_descriptor_is_not_a_deadlock() {
    let status = run(|| {
        let (mut a, mut b) = pair();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            a.write_all(b"!").unwrap();
        });
        let mut buf = [0u8; 1];
        read_waiting(&mut b, &mut buf).unwrap();
        threadexitsall(std::str::from_utf8(&buf).unwrap());
    });
    assert_eq!(status, Err("!".to_string()));
}

#[test]
fn threadexitsall_ends_threads_waiting_on_descriptors_in_other_procs() {
    let _w = common::watchdog(
        "threadexitsall_ends_threads_waiting_on_descriptors_in_other_procs",
        60,
    );
    let (_a, b) = pair();
    let status = run(move || {
        let started = Chan::<()>::new(0);
        let s = started.clone();
        proccreate(
            move || {
                s.send(()).unwrap();
                let mut b = b;
                let mut buf = [0u8; 1];
                let _ = read_waiting(&mut b, &mut buf);
                unreachable!("the wait ends only by the exit");
            },
            0,
        );
        started.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        threadexitsall("bye");
    });
    assert_eq!(status, Err("bye".to_string()));
}

#[test]
fn bad_descriptors_and_plain_os_threads() {
    run(|| {
        // SAFETY: a number above any open file limit here names no open
        // descriptor; the borrow is only passed to poll.
        let bad = unsafe { BorrowedFd::borrow_raw(1 << 30) };
        let e = threadfdwait(bad, 'r').unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    })
    .unwrap();
    // Outside any program the call simply blocks in poll.
    let (mut a, b) = pair();
    a.write_all(b"ok").unwrap();
    threadfdwait(b.as_fd(), 'r').unwrap();
    threadfdwait(b.as_fd(), 'w').unwrap();
    assert!(b.as_raw_fd() >= 0);
}

#[test]
#[should_panic(expected = "rw must be 'r' or 'w'")]
fn rw_other_than_r_or_w_panics() {
    let (_a, b) = pair();
    let _ = threadfdwait(b.as_fd(), 'x');
}

#[test]
fn a_thread_waiting_on_a_descriptor_shows_in_dumps() {
    run(|| {
        let (mut a, mut b) = pair();
        let fd = b.as_raw_fd();
        threadcreate(
            move || {
                thread9::threadsetname("waiter");
                let mut buf = [0u8; 1];
                read_waiting(&mut b, &mut buf).unwrap();
            },
            0,
        );
        thread9::threadyield();
        let dump = thread9::threaddump();
        let line = dump
            .lines()
            .find(|l| l.contains("waiter"))
            .unwrap_or_else(|| panic!("no waiter in dump:\n{dump}"));
        assert!(line.contains(&format!("fd wait ({fd})")), "{line}");
        a.write_all(b"x").unwrap();
    })
    .unwrap();
}
