//! The relay of ioproc(2): two threads of one proc, each with its own
//! ioproc, copy between two descriptors in both directions and count the
//! bytes they move in one shared counter. The counter is an
//! `Rc<Cell<usize>>`, with no lock: both threads live in one proc and run
//! one at a time, and the compiler knows it (an `Rc` cannot be given to
//! `proccreate`).
//!
//! usage: relay dialstring
//!   relays standard input to the connection and the connection to
//!   standard output (e.g. `relay tcp!localhost!9999`), then prints the
//!   total bytes moved on standard error.

use std::cell::Cell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use thread9::{Chan, Ioproc, threadcreate, threadmain};

/// Copies `from` to `to` until end of file, adding to `tot`; then, if
/// `to` is a socket, shuts down its sending side so the peer sees the end.
fn relay_thread(
    from: BorrowedFd<'static>,
    to: BorrowedFd<'static>,
    tot: Rc<Cell<usize>>,
    done: Chan<()>,
) {
    let io = Ioproc::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match io.read(from, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                eprintln!("relay: read: {e}");
                break;
            }
        };
        match io.write(to, &buf[..n]) {
            Ok(m) if m == n => tot.set(tot.get() + n),
            Ok(m) => panic!("relay: short write: {m} of {n}"),
            Err(e) => {
                eprintln!("relay: write: {e}");
                break;
            }
        }
    }
    // SAFETY: shutdown(2) on a descriptor that stays open for the program;
    // on a non-socket it fails with ENOTSOCK, which we ignore.
    unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) };
    done.send(()).unwrap();
}

fn main() {
    threadmain(|args| {
        let [_, addr] = args.as_slice() else {
            eprintln!("usage: relay dialstring");
            std::process::exit(2);
        };
        let conn: OwnedFd = match Ioproc::new().dial(addr) {
            Ok(fd) => fd,
            Err(e) => {
                eprintln!("relay: {e}");
                std::process::exit(1);
            }
        };
        // The connection lives as long as the program.
        let conn: &'static OwnedFd = Box::leak(Box::new(conn));
        let stdin = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .expect("stdin");
        let stdout = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .expect("stdout");
        let (stdin, stdout): (&'static OwnedFd, &'static OwnedFd) =
            (Box::leak(Box::new(stdin)), Box::leak(Box::new(stdout)));

        let tot = Rc::new(Cell::new(0));
        let done = Chan::new(0);
        let (t, d) = (tot.clone(), done.clone());
        threadcreate(move || relay_thread(stdin.as_fd(), conn.as_fd(), t, d), 0);
        let (t, d) = (tot.clone(), done.clone());
        threadcreate(move || relay_thread(conn.as_fd(), stdout.as_fd(), t, d), 0);
        done.recv().unwrap();
        done.recv().unwrap();
        eprintln!("relay: {} bytes", tot.get());
    })
}
