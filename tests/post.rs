//! Posting a srv in the namespace directory: where it goes, its modes,
//! stale and live sockets. Each scenario runs in a child process, because
//! the namespace comes from the environment.

mod common;

use std::io::{BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use common::{child_env, is_child, stderr, stdout};
use thread9::srv::fcall::{Fcall, Msg, NOTAG, read_frame};
use thread9::srv::{Srv, namespace};

/// A Tversion round trip: proves a 9P server answers at `path`.
fn speaks_9p(path: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(path) else {
        return false;
    };
    let mut b = Vec::new();
    Fcall {
        tag: NOTAG,
        msg: Msg::Tversion {
            msize: 8192,
            version: "9P2000".into(),
        },
    }
    .encode(&mut b);
    s.write_all(&b).unwrap();
    let mut r = BufReader::new(s);
    let reply = read_frame(&mut r, 8192).unwrap().unwrap();
    matches!(Fcall::decode(&reply).unwrap().msg, Msg::Rversion { .. })
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn tmp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("thread9-post-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn check(name: &str, env: &[(&str, &str)], unset: &[&str]) {
    let o = child_env(name, env, unset);
    assert!(
        o.status.success(),
        "{name} failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(stdout(&o).contains("scenario done"), "{name} did not run");
}

#[test]
fn post_in_namespace() {
    let dir = tmp("ns");
    let ns = dir.join("ns");
    std::fs::create_dir(&dir).unwrap();
    check(
        "scenario_post_in_namespace",
        &[("NAMESPACE", ns.to_str().unwrap())],
        &[],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "scenario: run by post_in_namespace"]
fn scenario_post_in_namespace() {
    if !is_child("scenario_post_in_namespace") {
        return;
    }
    let ns = namespace();
    assert_eq!(ns.to_str(), std::env::var("NAMESPACE").ok().as_deref());
    assert!(!ns.exists());

    // The directory is made mode 0700, the socket 0600.
    let srv = Srv::new();
    let path = srv.post("svc").unwrap();
    assert_eq!(path, ns.join("svc"));
    assert_eq!(mode(&ns), 0o700);
    assert!(std::fs::metadata(&path).unwrap().file_type().is_socket());
    assert_eq!(mode(&path), 0o600);
    assert!(speaks_9p(&path));
    assert_eq!(srv.addrs(), [format!("unix!{}", path.display())]);

    // A live server's name is taken.
    let other = Srv::new();
    let e = other.post("svc").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        e.to_string().contains("a live server is posted there"),
        "{e}"
    );
    assert!(speaks_9p(&path), "the live one is untouched");

    // Bad names.
    for bad in ["", "a/b", "..", "."] {
        assert_eq!(other.post(bad).unwrap_err().to_string(), "file name syntax");
    }

    // Dropping the server removes its socket.
    drop(srv);
    assert!(!path.exists());
    let p2 = other.post("svc").unwrap();
    assert!(speaks_9p(&p2));
    drop(other);
    assert!(!p2.exists());

    // A stale socket (its server died without removing it) is replaced.
    let stale = ns.join("stale");
    drop(UnixListener::bind(&stale).unwrap());
    assert!(stale.exists() && !speaks_9p(&stale));
    let srv = Srv::new();
    assert_eq!(srv.post("stale").unwrap(), stale);
    assert!(speaks_9p(&stale));

    // Something that is not a socket is never removed.
    std::fs::write(ns.join("plain"), b"keep me").unwrap();
    let e = srv.post("plain").unwrap_err();
    assert!(e.to_string().contains("exists and is not a socket"), "{e}");
    assert_eq!(std::fs::read(ns.join("plain")).unwrap(), b"keep me");

    // One Srv may be posted under several names and announced too.
    srv.post("second").unwrap();
    assert_eq!(srv.addrs().len(), 2);
    drop(srv);
    assert!(!stale.exists() && !ns.join("second").exists());

    // A namespace directory others may write to is refused.
    std::fs::set_permissions(&ns, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = Srv::new().post("x").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
    std::fs::set_permissions(&ns, std::fs::Permissions::from_mode(0o700)).unwrap();
    println!("scenario done");
}

#[test]
fn default_namespace() {
    let user = format!("thread9test{}", std::process::id());
    check(
        "scenario_default_namespace",
        &[("USER", &user), ("DISPLAY", ":5.0"), ("WANT_DISPLAY", ":5")],
        &["NAMESPACE"],
    );
    // No DISPLAY at all counts as :0.
    check(
        "scenario_default_namespace",
        &[("USER", &user), ("WANT_DISPLAY", ":0")],
        &["NAMESPACE", "DISPLAY"],
    );
    for d in [":5", ":0"] {
        let _ = std::fs::remove_dir_all(format!("/tmp/ns.{user}.{d}"));
    }
}

#[test]
#[ignore = "scenario: run by default_namespace"]
fn scenario_default_namespace() {
    if !is_child("scenario_default_namespace") {
        return;
    }
    let user = std::env::var("USER").unwrap();
    // plan9port's rule: /tmp/ns.$USER.$DISPLAY, a trailing ".0" dropped.
    let display = std::env::var("WANT_DISPLAY").unwrap();
    let want = PathBuf::from(format!("/tmp/ns.{user}.{display}"));
    assert_eq!(namespace(), want);
    let srv = Srv::new();
    assert_eq!(srv.post("svc").unwrap(), want.join("svc"));
    assert_eq!(mode(&want), 0o700);
    assert!(speaks_9p(&want.join("svc")));
    drop(srv);
    std::fs::remove_dir(&want).unwrap();
    println!("scenario done");
}
