//! `cargo bench --bench csp`: thread9's figures, one line each:
//! `bench <name> <value> <unit>`. Pass names to run only those.
//!
//! Each timing is the median of several runs. Memory figures are taken in
//! a fresh child process, so that stacks cached by earlier runs cannot make
//! them look better than a new program would see.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::os::fd::{AsRawFd, OwnedFd};

use thread9::{
    Alt, Chan, Ioproc, QLock, proccreate, run, threadcreate, threadexitsall, threadyield,
};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn report(name: &str, value: f64, unit: &str) {
    if value >= 100.0 {
        println!("bench {name} {value:.0} {unit}");
    } else {
        println!("bench {name} {value:.2} {unit}");
    }
}

/// Runs `f` (which returns its own measured duration for `n` operations)
/// `runs` times and reports the median per operation in `unit`.
fn timed(name: &str, runs: usize, n: u64, unit: &str, scale: f64, f: impl Fn(u64) -> Duration) {
    let v: Vec<f64> = (0..runs)
        .map(|_| f(n).as_secs_f64() * scale / n as f64)
        .collect();
    report(name, median(v), unit);
}

/// Runs `f` as the first thread of a program of its own and gives what
/// it returns.
fn in_program<T: Copy + 'static>(f: impl FnOnce() -> T + 'static) -> T {
    let out = Rc::new(Cell::new(None));
    let o = out.clone();
    run(move || o.set(Some(f()))).unwrap();
    out.get().expect("the program's first thread returned")
}

fn pingpong_thread(n: u64) -> Duration {
    in_program(move || {
        let (a, b) = (Chan::<u64>::new(0), Chan::<u64>::new(0));
        let (a2, b2) = (a.clone(), b.clone());
        threadcreate(
            move || {
                while let Ok(v) = a2.recv() {
                    b2.send(v).unwrap();
                }
            },
            0,
        );
        let t = Instant::now();
        let mut sum = 0;
        for i in 0..n {
            a.send(i).unwrap();
            sum += b.recv().unwrap();
        }
        let result = t.elapsed();
        a.close();
        assert_eq!(sum, n * n.saturating_sub(1) / 2, "every value came back");
        result
    })
}

/// Diagnostic: a send and a receive that never block (one thread, a
/// buffered channel): the cost of the channel work alone.
fn chan_nonblocking(n: u64) -> Duration {
    in_program(move || {
        let c = Chan::<u64>::new(1);
        let t = Instant::now();
        for i in 0..n {
            c.send(i).unwrap();
            std::hint::black_box(c.recv().unwrap());
        }
        t.elapsed()
    })
}

fn yield_pingpong(n: u64) -> Duration {
    in_program(move || {
        threadcreate(
            move || {
                for _ in 0..n {
                    threadyield();
                }
            },
            0,
        );
        let t = Instant::now();
        for _ in 0..n {
            threadyield();
        }
        t.elapsed()
    })
}

fn alt_pingpong(n: u64) -> Duration {
    in_program(move || {
        let (a, b, quiet) = (
            Chan::<u64>::new(0),
            Chan::<u64>::new(0),
            Chan::<u64>::new(0),
        );
        let (a2, b2, q2) = (a.clone(), b.clone(), quiet.clone());
        threadcreate(
            move || {
                loop {
                    let (mut x, mut y) = (None, None);
                    let mut alt = Alt::new();
                    alt.recv(&a2, &mut x).recv(&q2, &mut y);
                    if alt.alt() != Ok(0) {
                        break;
                    }
                    drop(alt);
                    b2.send(x.unwrap()).unwrap();
                }
            },
            0,
        );
        let t = Instant::now();
        let mut sum = 0;
        for i in 0..n {
            a.send(i).unwrap();
            let (mut x, mut y) = (None, None);
            let mut alt = Alt::new();
            alt.recv(&b, &mut x).recv(&quiet, &mut y);
            assert_eq!(alt.alt(), Ok(0));
            drop(alt);
            sum += x.unwrap();
        }
        let result = t.elapsed();
        a.close();
        assert_eq!(sum, n * n.saturating_sub(1) / 2, "every value came back");
        result
    })
}

fn pingpong_proc(n: u64) -> Duration {
    in_program(move || {
        let (a, b) = (Chan::<u64>::new(0), Chan::<u64>::new(0));
        let (a2, b2) = (a.clone(), b.clone());
        proccreate(
            move || {
                while let Ok(v) = a2.recv() {
                    b2.send(v).unwrap();
                }
            },
            0,
        );
        // Let the proc start before timing.
        a.send(0).unwrap();
        b.recv().unwrap();
        let t = Instant::now();
        let mut sum = 0;
        for i in 0..n {
            a.send(i).unwrap();
            sum += b.recv().unwrap();
        }
        let result = t.elapsed();
        a.close();
        assert_eq!(sum, n * n.saturating_sub(1) / 2, "every value came back");
        result
    })
}

fn spawn(n: u64) -> Duration {
    in_program(move || {
        let done = Rc::new(Cell::new(0u64));
        // Warm the proc's stack cache, as a long-running program has it.
        for _ in 0..64 {
            threadcreate(|| {}, 0);
        }
        threadyield();
        let t = Instant::now();
        let mut left = n;
        while left > 0 {
            let k = left.min(64);
            for _ in 0..k {
                let d = done.clone();
                threadcreate(move || d.set(d.get() + 1), 0);
            }
            threadyield();
            left -= k;
        }
        let result = t.elapsed();
        assert_eq!(done.get(), n);
        result
    })
}

/// The tprimes sieve, counting instead of printing. Stops at the `count`th
/// prime or at the first prime above `max`, whichever comes first, and
/// checks that prime against a plain sieve: a fast wrong answer must not
/// pass for a figure.
fn sieve(procs: bool, nbuf: usize, count: u64, max: u64) -> Duration {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    fn filter(procs: bool, nbuf: usize, count: u64, max: u64, seen: u64, input: Chan<u64>) {
        let p = input.recv().unwrap();
        if seen + 1 >= count || p > max {
            LAST.store(p, Ordering::Relaxed);
            threadexitsall("");
        }
        let next = Chan::new(nbuf);
        let n = next.clone();
        let f = move || filter(procs, nbuf, count, max, seen + 1, n);
        if procs {
            proccreate(f, 32 << 10);
        } else {
            threadcreate(f, 32 << 10);
        }
        loop {
            let i = input.recv().unwrap();
            if !i.is_multiple_of(p) {
                next.send(i).unwrap();
            }
        }
    }
    let t = Instant::now();
    run(move || {
        let c = Chan::new(nbuf);
        let d = c.clone();
        threadcreate(move || filter(procs, nbuf, count, max, 0, d), 32 << 10);
        for i in 2.. {
            c.send(i).unwrap();
        }
    })
    .unwrap();
    let took = t.elapsed();
    assert_eq!(LAST.load(Ordering::Relaxed), last_prime(count, max));
    took
}

/// The prime [`sieve`] must stop at, found by trial division.
fn last_prime(count: u64, max: u64) -> u64 {
    let mut primes: Vec<u64> = Vec::new();
    let mut n = 2;
    loop {
        if primes
            .iter()
            .take_while(|&&p| p * p <= n)
            .all(|&p| n % p != 0)
        {
            primes.push(n);
            if primes.len() as u64 >= count || n > max {
                return n;
            }
        }
        n += 1;
    }
}

/// Diagnostic: what the kernel charges to hand a core from one OS thread
/// to another. Two OS threads pinned to one core take turns through a
/// futex; the time per hand-off (a wake, a sleep and a context switch).
/// A hop between procs that finds its partner asleep costs at least this,
/// so it is the floor under `primes_proc_10000`'s time per hop.
fn os_switch(n: u64) -> Duration {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
        // SAFETY: a futex call on a live word; a null timeout waits
        // without one, and FUTEX_WAKE ignores it.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                op | libc::FUTEX_PRIVATE_FLAG,
                val,
                std::ptr::null::<libc::timespec>(),
            );
        }
    }
    fn pin_to(cpu: usize) {
        // SAFETY: a zeroed cpu_set_t is the empty set; the call reads the
        // set we pass and affects only the calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
        }
    }
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() }.max(0) as usize;
    let turn = Arc::new(AtomicU32::new(0));
    let rounds = n as u32 / 2;
    // Both sides on threads of their own: the bench's thread stays free.
    let side = |first: bool| {
        let turn = turn.clone();
        std::thread::spawn(move || {
            pin_to(cpu);
            let t = Instant::now();
            for i in 0..rounds {
                let (mine, next) = if first {
                    (2 * i, 2 * i + 1)
                } else {
                    (2 * i + 1, 2 * i + 2)
                };
                loop {
                    let now = turn.load(Ordering::Acquire);
                    if now == mine {
                        break;
                    }
                    futex(&turn, libc::FUTEX_WAIT, now);
                }
                turn.store(next, Ordering::Release);
                futex(&turn, libc::FUTEX_WAKE, 1);
            }
            t.elapsed()
        })
    };
    let (a, b) = (side(true), side(false));
    b.join().unwrap();
    a.join().unwrap()
}

/// Two threads of one proc taking turns on a QLock: each holds it across a
/// yield, so the other is always waiting when it is released and every
/// acquisition is a hand-off. Reports the time per hand-off.
fn qlock_thread(n: u64) -> Duration {
    in_program(move || {
        let lock = Rc::new(QLock::new(0u64));
        let (l2, done) = (lock.clone(), Chan::new(1));
        let d = done.clone();
        threadcreate(
            move || {
                for _ in 0..n {
                    let mut g = l2.lock();
                    *g += 1;
                    threadyield();
                }
                d.send(()).unwrap();
            },
            0,
        );
        let t = Instant::now();
        for _ in 0..n {
            let mut g = lock.lock();
            *g += 1;
            threadyield();
        }
        done.recv().unwrap();
        let result = t.elapsed() / 2;
        assert_eq!(*lock.lock(), 2 * n);
        result
    })
}

fn iocall(n: u64) -> Duration {
    in_program(move || {
        let io = Ioproc::new();
        for _ in 0..1000 {
            io.call(|| ());
        }
        let t = Instant::now();
        for _ in 0..n {
            io.call(|| ());
        }
        t.elapsed()
    })
}

const RELAY_CHUNK: usize = 1 << 20;

/// A pipe with a buffer of one chunk.
fn relay_pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = std::io::pipe().unwrap();
    let (r, w): (OwnedFd, OwnedFd) = (r.into(), w.into());
    // SAFETY: fcntl on a descriptor we own; failure leaves the default size.
    unsafe {
        libc::fcntl(
            w.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            RELAY_CHUNK as libc::c_int,
        )
    };
    (r, w)
}

/// `total` bytes through a pipe by ioproc write and read, a chunk at a time,
/// exactly as `plain_relay` does it with plain calls: the ratio of the two
/// is what the ioproc costs. Returns GB/s.
fn ioproc_relay(total: usize) -> f64 {
    in_program(move || {
        let (r, w) = relay_pipe();
        let io = Ioproc::new();
        let wbuf = vec![7u8; RELAY_CHUNK];
        let mut rbuf = vec![0u8; RELAY_CHUNK];
        let t = Instant::now();
        let mut moved = 0;
        while moved < total {
            let n = io.write(&w, &wbuf).unwrap();
            let mut left = n;
            while left > 0 {
                left -= io.read(&r, &mut rbuf[..left]).unwrap();
            }
            moved += n;
        }
        total as f64 / t.elapsed().as_secs_f64() / 1e9
    })
}

/// `total` bytes through a pipe: a writer thread and a reader thread of one
/// proc, each with its own ioproc (the relay of ioproc(2)), running in
/// parallel. Returns GB/s. (Slower than one core doing both: the data
/// crosses between the cores' caches.)
fn ioproc_relay_parallel(total: usize) -> f64 {
    in_program(move || {
        let (r, w) = relay_pipe();
        let done = Chan::new(0);
        let d = done.clone();
        let t = Instant::now();
        threadcreate(
            move || {
                let io = Ioproc::new();
                let buf = vec![7u8; RELAY_CHUNK];
                let mut sent = 0;
                while sent < total {
                    sent += io.write(&w, &buf).unwrap();
                }
                drop(w);
                d.send(()).unwrap();
            },
            0,
        );
        let io = Ioproc::new();
        let mut buf = vec![0u8; RELAY_CHUNK];
        let mut got = 0;
        loop {
            match io.read(&r, &mut buf).unwrap() {
                0 => break,
                n => got += n,
            }
        }
        done.recv().unwrap();
        assert_eq!(got, total);
        total as f64 / t.elapsed().as_secs_f64() / 1e9
    })
}

/// The same bytes through a pipe with plain read and write in one thread,
/// a chunk at a time. Returns GB/s.
fn plain_relay(total: usize) -> f64 {
    let (r, w) = relay_pipe();
    let wbuf = vec![7u8; RELAY_CHUNK];
    let mut rbuf = vec![0u8; RELAY_CHUNK];
    let t = Instant::now();
    let mut moved = 0;
    while moved < total {
        // SAFETY: plain read/write with valid buffers on descriptors we own.
        let n = unsafe { libc::write(w.as_raw_fd(), wbuf.as_ptr().cast(), RELAY_CHUNK) };
        assert!(n > 0);
        let mut left = n as usize;
        while left > 0 {
            let m = unsafe { libc::read(r.as_raw_fd(), rbuf.as_mut_ptr().cast(), left) };
            assert!(m > 0);
            left -= m as usize;
        }
        moved += n as usize;
    }
    total as f64 / t.elapsed().as_secs_f64() / 1e9
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// In a child process: a million threads blocked in recv at once, then all
/// released. Prints the RSS per thread.
fn idle_child(n: u64) {
    let result = in_program(move || {
        let c = Chan::<u64>::new(0);
        let alive = Rc::new(Cell::new(0u64));
        let before = rss_bytes();
        for _ in 0..n {
            let c = c.clone();
            let alive = alive.clone();
            threadcreate(
                move || {
                    alive.set(alive.get() + 1);
                    let _ = c.recv();
                    alive.set(alive.get() - 1);
                },
                0,
            );
        }
        threadyield(); // every new thread runs once and blocks in recv
        assert_eq!(alive.get(), n, "all threads alive and blocked at once");
        let after = rss_bytes();
        let result = (after - before) as f64 / n as f64;
        c.close();
        threadyield();
        assert_eq!(alive.get(), 0);
        result
    });
    println!("{result}");
}

fn idle_threads(n: u64) -> f64 {
    child_figure(&["--idle-child", &n.to_string()])
}

/// Runs this bench binary again with `args` (one of its child modes) and
/// gives the one number the child prints.
fn child_figure(args: &[&str]) -> f64 {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run the child {args:?}: {e}"));
    assert!(
        out.status.success(),
        "child {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Diagnostic: the wall time of a process's first program, which starts
/// the library's OS threads and biases a channel (so it includes the
/// one-time membarrier registration), in a fresh child process; us.
fn first_run() -> f64 {
    child_figure(&["--first-run-child"])
}

fn first_run_child() {
    let t = Instant::now();
    run(|| {
        let c = Chan::new(0);
        let d = c.clone();
        threadcreate(move || (0..100).for_each(|i| d.send(i).unwrap()), 0);
        for i in 0..100 {
            assert_eq!(c.recv(), Ok(i));
        }
    })
    .unwrap();
    println!("{}", t.elapsed().as_secs_f64() * 1e6);
}

/// One run of `spawn_wait`: `n` rounds of threadspawn(`true`) and
/// receiving its Waitmsg, and as many of std's `Command::status()` on
/// `true`, in one program; microseconds per round, (ours, std).
fn spawn_wait(n: u32) -> (f64, f64) {
    in_program(move || {
        let wc = thread9::threadwaitchan();
        let spawned = || {
            let pid = thread9::threadspawn(std::process::Command::new("true")).unwrap();
            assert_eq!(wc.recv().unwrap().pid, pid);
        };
        let std_status = || {
            let st = std::process::Command::new("true").status().unwrap();
            assert!(st.success());
        };
        // Warm the reaper, the page cache and the allocator.
        for _ in 0..5 {
            spawned();
            std_status();
        }
        // Interleaved, so that both see the same changes of machine load.
        let (mut ours, mut std) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..n {
            let t = Instant::now();
            spawned();
            ours += t.elapsed();
            let t = Instant::now();
            std_status();
            std += t.elapsed();
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
        (us(ours), us(std))
    })
}

/// A served srv directory with one file, "f", answered at once by a
/// thread of a program of its own: reads get `count` bytes of a fixed
/// buffer (`reply(count)`), cut to what is left of `size` bytes.
struct NinepServer {
    srv: thread9::Srv,
    sock: std::path::PathBuf,
}

impl NinepServer {
    fn start(size: u64) -> NinepServer {
        let dir = std::env::temp_dir().join(format!("thread9-bench-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let sock = dir.join(format!(
            "srv{}",
            NEXT_SOCK.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&sock);
        let srv = thread9::Srv::new();
        let file = srv.file2chan("f").unwrap();
        srv.announce(&format!("unix!{}", sock.display())).unwrap();
        // The file's server: a proc of its own program, replying at once.
        let server = std::thread::Builder::new().name("bench file server".into());
        server
            .spawn(move || {
                let _ = run(move || {
                    let data = vec![7u8; 4 << 20];
                    while let Ok((off, count, _, rc)) = file.read.recv() {
                        let Some(rc) = rc else { continue };
                        let n = (count as u64).min(size.saturating_sub(off)) as usize;
                        let _ = rc.send(Ok(data[..n.min(data.len())].to_vec()));
                    }
                });
            })
            .unwrap();
        NinepServer { srv, sock }
    }

    fn client(&self) -> thread9::ninep::Client {
        thread9::ninep::Client::mount(&format!("unix!{}", self.sock.display())).unwrap()
    }
}

static NEXT_SOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `n` reads of 24 bytes through thread9's 9P client, from a plain OS
/// thread; us per read.
fn ninep_read(server: &NinepServer, n: u64) -> f64 {
    let c = server.client();
    let f = c.open("f", thread9::srv::fcall::OREAD).unwrap();
    let mut buf = [0u8; 24];
    for _ in 0..1000 {
        f.pread(&mut buf, 0).unwrap();
    }
    let t = Instant::now();
    for _ in 0..n {
        assert_eq!(f.pread(&mut buf, 0).unwrap(), 24);
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// `n` reads of 24 bytes by a bare 9P client (blocking socket calls from
/// one OS thread): the server's share of `ninep_read`. us per read.
fn ninep_read_raw(server: &NinepServer, n: u64) -> f64 {
    use std::io::{Read, Write};
    use thread9::srv::fcall::{Fcall, Msg, NOFID, NOTAG};
    let mut s = std::os::unix::net::UnixStream::connect(&server.sock).unwrap();
    let rpc = |s: &mut std::os::unix::net::UnixStream, tag: u16, msg: Msg| {
        let mut b = Vec::new();
        Fcall { tag, msg }.encode(&mut b);
        s.write_all(&b).unwrap();
        let mut h = [0u8; 4];
        s.read_exact(&mut h).unwrap();
        let mut rest = vec![0u8; u32::from_le_bytes(h) as usize - 4];
        s.read_exact(&mut rest).unwrap();
    };
    rpc(
        &mut s,
        NOTAG,
        Msg::Tversion {
            msize: 8192,
            version: "9P2000".into(),
        },
    );
    rpc(
        &mut s,
        1,
        Msg::Tattach {
            fid: 0,
            afid: NOFID,
            uname: "u".into(),
            aname: String::new(),
        },
    );
    rpc(
        &mut s,
        1,
        Msg::Twalk {
            fid: 0,
            newfid: 1,
            wnames: vec!["f".into()],
        },
    );
    rpc(&mut s, 1, Msg::Topen { fid: 1, mode: 0 });
    let mut req = Vec::new();
    Fcall {
        tag: 1,
        msg: Msg::Tread {
            fid: 1,
            offset: 0,
            count: 24,
        },
    }
    .encode(&mut req);
    let mut reply = [0u8; 11 + 24];
    let mut once = |s: &mut std::os::unix::net::UnixStream| {
        s.write_all(&req).unwrap();
        s.read_exact(&mut reply).unwrap();
    };
    for _ in 0..1000 {
        once(&mut s);
    }
    let t = Instant::now();
    for _ in 0..n {
        once(&mut s);
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// `n` round trips of 24 bytes over a Unix socket pair between two OS
/// threads, one echoing; us per round trip.
fn socket_echo(n: u64) -> f64 {
    use std::io::{Read, Write};
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 24];
        while b.read_exact(&mut buf).is_ok() {
            b.write_all(&buf).unwrap();
        }
    });
    let mut buf = [0u8; 24];
    for _ in 0..1000 {
        a.write_all(&buf).unwrap();
        a.read_exact(&mut buf).unwrap();
    }
    let t = Instant::now();
    for _ in 0..n {
        a.write_all(&buf).unwrap();
        a.read_exact(&mut buf).unwrap();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    drop(a);
    echo.join().unwrap();
    us
}

/// Reads `total` bytes from the server's file in the largest reads the
/// session allows; MB/s.
fn ninep_stream(server: &NinepServer, total: u64) -> f64 {
    let c = server.client();
    let f = c.open("f", thread9::srv::fcall::OREAD).unwrap();
    let mut buf = vec![0u8; f.iounit() as usize];
    let t = Instant::now();
    let mut got = 0u64;
    loop {
        match f.read(&mut buf).unwrap() {
            0 => break,
            n => got += n as u64,
        }
    }
    assert_eq!(got, total);
    total as f64 / t.elapsed().as_secs_f64() / 1e6
}

/// The same bytes through a Unix socket pair, written by one OS thread in
/// chunks of `chunk` and read by another; MB/s.
fn socket_stream(total: u64, chunk: usize, sndbuf: Option<usize>) -> f64 {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    if let Some(size) = sndbuf {
        let size = size as libc::c_int;
        // SAFETY: setsockopt on an open socket with a pointer to an int
        // and its size.
        let r = unsafe {
            libc::setsockopt(
                a.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
    }
    let t = Instant::now();
    let writer = std::thread::Builder::new().name("bench socket writer".into());
    let writer = writer
        .spawn(move || {
            let buf = vec![7u8; chunk];
            let mut sent = 0u64;
            while sent < total {
                let n = chunk.min((total - sent) as usize);
                a.write_all(&buf[..n]).unwrap();
                sent += n as u64;
            }
        })
        .unwrap();
    let mut buf = vec![0u8; chunk];
    let mut got = 0u64;
    while got < total {
        match b.read(&mut buf).unwrap() {
            0 => break,
            n => got += n as u64,
        }
    }
    writer.join().unwrap();
    assert_eq!(got, total);
    total as f64 / t.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--idle-child") {
        idle_child(args[1].parse().unwrap());
        return;
    }
    if args.first().map(String::as_str) == Some("--first-run-child") {
        first_run_child();
        return;
    }
    let only: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let want = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o));

    if want("pingpong_thread") {
        timed("pingpong_thread", 7, 2_000_000, "ns", 1e9, pingpong_thread);
    }
    if want("chan_nonblocking") {
        timed(
            "chan_nonblocking",
            7,
            5_000_000,
            "ns",
            1e9,
            chan_nonblocking,
        );
    }
    if want("yield_pingpong") {
        timed("yield_pingpong", 7, 2_000_000, "ns", 1e9, yield_pingpong);
    }
    if want("alt_pingpong") {
        timed("alt_pingpong", 7, 1_000_000, "ns", 1e9, alt_pingpong);
    }
    if want("pingpong_proc") {
        timed("pingpong_proc", 7, 200_000, "ns", 1e9, pingpong_proc);
    }
    if want("spawn") {
        timed("spawn", 7, 1_000_000, "ns", 1e9, spawn);
    }
    if want("sieve_scaling") {
        // Diagnostic: ns per hop as the number of threads grows.
        for (count, hops) in [
            (250u64, 34_051f64),
            (500, 132_046.0),
            (1000, 517_383.0),
            (2000, 2_042_625.0),
        ] {
            let t = median(
                (0..5)
                    .map(|_| sieve(false, 0, count, u64::MAX).as_secs_f64())
                    .collect(),
            );
            report(&format!("sieve_hop_{count}"), t * 1e9 / hops, "ns");
        }
    }
    if want("primes_thread_2000") {
        timed("primes_thread_2000", 5, 1, "ms", 1e3, |_| {
            sieve(false, 0, 2000, u64::MAX)
        });
    }
    if want("primes_proc_10000") {
        timed("primes_proc_10000", 3, 1, "ms", 1e3, |_| {
            sieve(true, 0, u64::MAX, 10000)
        });
    }
    if want("first_run") {
        report(
            "first_run",
            median((0..7).map(|_| first_run()).collect()),
            "us",
        );
    }
    if want("os_switch") {
        timed("os_switch", 7, 100_000, "ns", 1e9, os_switch);
    }
    if want("qlock_thread") {
        timed("qlock_thread", 7, 1_000_000, "ns", 1e9, qlock_thread);
    }
    if want("iocall") {
        timed("iocall", 7, 100_000, "ns", 1e9, iocall);
    }
    if want("ioproc_relay") {
        let total = 1 << 30;
        let io = median((0..3).map(|_| ioproc_relay(total)).collect());
        let plain = median((0..3).map(|_| plain_relay(total)).collect());
        report("ioproc_relay", io, "GB/s");
        report("ioproc_relay_plain", plain, "GB/s");
        report("ioproc_relay_ratio", io / plain, "x");
        let par = median((0..3).map(|_| ioproc_relay_parallel(total)).collect());
        report("ioproc_relay_parallel", par, "GB/s");
    }
    if want("idle_threads_1m") {
        report("idle_threads_1m", idle_threads(1_000_000), "bytes/thread");
    }
    if want("9p_read") {
        let server = NinepServer::start(u64::MAX);
        // Alternated, so that both figures of a pair saw the same load.
        let runs: Vec<(f64, f64)> = (0..7)
            .map(|_| (ninep_read(&server, 20_000), socket_echo(20_000)))
            .collect();
        // Diagnostic: the server alone, with a bare blocking client.
        let raw = median((0..5).map(|_| ninep_read_raw(&server, 20_000)).collect());
        report("9p_read_bare_client", raw, "us");
        report("9p_read", median(runs.iter().map(|r| r.0).collect()), "us");
        report(
            "9p_read_echo",
            median(runs.iter().map(|r| r.1).collect()),
            "us",
        );
        report(
            "9p_read_ratio",
            median(runs.iter().map(|r| r.0 / r.1).collect()),
            "x",
        );
        drop(server.srv);
    }
    if want("9p_stream") {
        const TOTAL: u64 = 256 << 20;
        let server = NinepServer::start(TOTAL);
        let chunk = (server.client().msize() - 24) as usize;
        // The plain socket as it comes, and (a diagnostic) with the send
        // buffer the server gives its connections: a message's worth.
        let runs: Vec<(f64, f64, f64)> = (0..5)
            .map(|_| {
                (
                    ninep_stream(&server, TOTAL),
                    socket_stream(TOTAL, chunk, None),
                    socket_stream(TOTAL, chunk, Some(chunk + 24)),
                )
            })
            .collect();
        report(
            "9p_stream",
            median(runs.iter().map(|r| r.0).collect()),
            "MB/s",
        );
        report(
            "9p_stream_socket",
            median(runs.iter().map(|r| r.1).collect()),
            "MB/s",
        );
        report(
            "9p_stream_ratio",
            median(runs.iter().map(|r| r.0 / r.1).collect()),
            "x",
        );
        report(
            "9p_stream_socket_sndbuf",
            median(runs.iter().map(|r| r.2).collect()),
            "MB/s",
        );
        report(
            "9p_stream_ratio_sndbuf",
            median(runs.iter().map(|r| r.0 / r.2).collect()),
            "x",
        );
        drop(server.srv);
    }
    if want("spawn_wait") {
        let runs: Vec<(f64, f64)> = (0..7).map(|_| spawn_wait(100)).collect();
        let ours = median(runs.iter().map(|r| r.0).collect());
        let std = median(runs.iter().map(|r| r.1).collect());
        // Per run: both figures of a run saw the same machine load.
        let ratio = median(runs.iter().map(|r| r.0 / r.1).collect());
        report("spawn_wait", ours, "us");
        report("spawn_wait_std", std, "us");
        report("spawn_wait_ratio", ratio, "x");
    }
}
