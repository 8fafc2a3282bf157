//! Plan 9's tspawn: `spawn cmd [args...]` runs the command twice at once
//! and prints how each run ended, one wait message per line:
//!
//! ```text
//! $ cargo run --release --example spawn -- sleep 1
//! pid 4242: user 0ms sys 0ms real 1003ms ''
//! pid 4243: user 0ms sys 0ms real 1003ms ''
//! ```
//!
//! Both children run concurrently, so `spawn sleep 1` takes about one
//! second, not two. The program's one thread waits for both on
//! `threadwaitchan`, the channel each child's end arrives on.

use std::process::Command;

use thread9::{threadexitsall, threadmain, threadspawn, threadwaitchan};

fn main() {
    threadmain(|args| {
        if args.len() < 2 {
            eprintln!("usage: spawn cmd [args...]");
            threadexitsall("usage");
        }
        // Ask for the channel before starting anything: a program is told
        // only of children that end after it asked.
        let wc = threadwaitchan();
        for _ in 0..2 {
            let mut cmd = Command::new(&args[1]);
            cmd.args(&args[2..]);
            if let Err(e) = threadspawn(cmd) {
                eprintln!("spawn: {}: {e}", args[1]);
                threadexitsall("exec failed");
            }
        }
        let mut failed = false;
        for _ in 0..2 {
            let w = wc.recv().expect("the wait channel stays open");
            let [user, sys, real] = w.time;
            println!(
                "pid {}: user {user}ms sys {sys}ms real {real}ms '{}'",
                w.pid, w.msg
            );
            failed |= !w.success();
        }
        if failed {
            threadexitsall("a child failed");
        }
    })
}
