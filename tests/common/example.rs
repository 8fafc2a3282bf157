//! Running one of the crate's examples as the program it is, posted in a
//! namespace directory of its own.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// A running example, killed when dropped.
pub struct Example {
    pub child: Child,
    /// Its namespace directory (`$NAMESPACE`), removed when dropped.
    pub ns: PathBuf,
    /// The socket it posted, as its first line of output says.
    pub sock: PathBuf,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.ns);
    }
}

/// Where cargo put example `name`'s program.
pub fn binary(name: &str) -> PathBuf {
    // target/<profile>/deps/<test>-* -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

/// Starts example `name` with `args` and `$NAMESPACE` set to a fresh
/// directory (made by the example's `post`), once it has posted.
pub fn example(name: &str, args: &[&str]) -> Example {
    example_with(name, args, |_| {})
}

/// As [`example`], calling `setup` with the namespace directory's path
/// (which does not exist yet) before the example starts.
pub fn example_with(name: &str, args: &[&str], setup: impl FnOnce(&Path)) -> Example {
    static N: AtomicU64 = AtomicU64::new(0);
    let bin = binary(name);
    assert!(
        bin.exists(),
        "{} not built (cargo test builds examples)",
        bin.display()
    );
    let ns = std::env::temp_dir().join(format!(
        "thread9-ex-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&ns);
    setup(&ns);
    let mut child = Command::new(&bin)
        .args(args)
        .env("NAMESPACE", &ns)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The first line says where it serves; by then the socket is there.
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let sock = PathBuf::from(line.trim().rsplit(" at ").next().unwrap());
    assert_eq!(sock.parent(), Some(ns.as_path()), "{line}");
    Example { child, ns, sock }
}
