//! The primes example (Plan 9's tprimes) against a sieve computed here, in
//! every mode: threads, procs, buffered channels.

use std::path::PathBuf;
use std::process::Command;

/// Every prime <= max, and the first prime above it.
fn expected(max: u64) -> String {
    let mut out = String::new();
    let mut n = 2u64;
    loop {
        if (2..n)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
        {
            out.push_str(&format!("{n}\n"));
            if n > max {
                return out;
            }
        }
        n += 1;
    }
}

fn example() -> PathBuf {
    // The test binary lives in target/<profile>/deps; examples beside it.
    let mut p = std::env::current_exe().unwrap();
    p.pop();
    p.pop();
    p.push("examples/primes");
    assert!(p.exists(), "build the examples first ({})", p.display());
    p
}

fn primes(args: &[&str]) -> String {
    let o = Command::new(example()).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "primes {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn reference_counts() {
    assert_eq!(expected(30).lines().count(), 11);
    assert_eq!(expected(1000).lines().count(), 169);
    assert_eq!(expected(10000).lines().last(), Some("10007"));
}

#[test]
fn threads() {
    for max in ["30", "1000"] {
        assert_eq!(primes(&[max]), expected(max.parse().unwrap()));
    }
    assert_eq!(primes(&[]), expected(10000), "max defaults to 10000");
}

#[test]
fn procs() {
    assert_eq!(primes(&["-p", "1000"]), expected(1000));
    // About 1,230 procs on two cores.
    assert_eq!(primes(&["-p", "10000"]), expected(10000));
}

#[test]
fn buffered() {
    assert_eq!(primes(&["-b", "10", "10000"]), expected(10000));
    assert_eq!(primes(&["-p", "-b", "3", "1000"]), expected(1000));
    assert_eq!(primes(&["-b5", "30"]), expected(30));
}

#[test]
fn bad_arguments_are_refused() {
    for args in [&["-x"][..], &["-b"], &["-b", "many"], &["ten"], &["1", "2"]] {
        let o = Command::new(example()).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("usage: primes"),
            "{args:?}"
        );
    }
}
