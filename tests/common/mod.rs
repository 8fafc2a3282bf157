//! Running a scenario in a child process: for behaviour that ends or
//! aborts the process, or that must be observed from outside (stderr,
//! exit status, resource use).
//!
//! A scenario is an `#[ignore]`d test that does nothing unless the
//! environment says it is the child; `child(name)` re-runs the test binary
//! on just that test.

#![allow(dead_code)]

pub mod example;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

const VAR: &str = "THREAD9_TEST_CHILD";

/// True in the child process running scenario `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var(VAR).is_ok_and(|v| v == name)
}

/// Runs scenario `name` (a test in the calling test binary) in a child
/// process and returns what it did.
pub fn child(name: &str) -> Output {
    child_with(name, &[])
}

pub fn child_with(name: &str, env: &[(&str, &str)]) -> Output {
    child_env(name, env, &[])
}

/// Runs scenario `name` with `env` set and the variables in `unset` removed.
pub fn child_env(name: &str, env: &[(&str, &str)], unset: &[&str]) -> Output {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--nocapture",
        "--ignored",
        "--test-threads=1",
    ])
    .env(VAR, name);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in unset {
        cmd.env_remove(k);
    }
    cmd.output().expect("run the child test process")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The signal that killed the child, if one did.
pub fn signal(o: &Output) -> Option<i32> {
    o.status.signal()
}

/// What the child printed after `prefix` on each line that has it (the
/// test harness may print its own words earlier on the same line).
pub fn reported(o: &Output, prefix: &str) -> Vec<String> {
    stdout(o)
        .lines()
        .filter_map(|l| {
            l.find(prefix)
                .map(|i| l[i + prefix.len()..].trim().to_string())
        })
        .collect()
}

/// Counts its drops on the shared counter: proves a value was dropped
/// (unwound, not leaked).
pub struct Count(pub std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Count {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Aborts the test process, saying why, unless dropped within `secs`: for
/// tests whose failure mode is a hang (two agents both believing they own
/// a wait), so that a bug fails the run instead of stalling it.
pub struct Watchdog(std::sync::mpsc::Sender<()>);

pub fn watchdog(what: &'static str, secs: u64) -> Watchdog {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            rx.recv_timeout(std::time::Duration::from_secs(secs))
        {
            eprintln!("{what}: still running after {secs} s: hung");
            std::process::abort();
        }
    });
    Watchdog(tx)
}

/// The names of directory entries, in order.
pub fn names(dirs: Vec<thread9::srv::fcall::Dir>) -> Vec<String> {
    dirs.into_iter().map(|d| d.name).collect()
}

/// A fresh directory of its own (for sockets, say), removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "thread9-{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
