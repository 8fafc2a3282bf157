//! The file2chan examples, run as the programs they are and reached with
//! thread9's 9P client, as a user would with plan9port's `9p`.

mod common;

use common::example::{Example, example};
use std::process::Command;
use thread9::ninep::{Client, File};
use thread9::srv::fcall::{ORDWR, OREAD, OWRITE};

fn mount(e: &Example) -> Client {
    Client::mount(&format!("unix!{}", e.sock.display())).unwrap()
}

fn read_at(f: &File, off: u64) -> String {
    let mut buf = [0u8; 256];
    let n = f.pread(&mut buf, off).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn ramfile() {
    let e = example("ramfile", &[]);
    assert!(e.sock.ends_with("ramfile"));
    let c = mount(&e);
    let names = common::names(c.read_dir("/").unwrap());
    assert_eq!(names, ["data"]);
    let f = c.open("data", ORDWR).unwrap();
    assert_eq!(read_at(&f, 0), "");
    f.pwrite(b"hello world", 0).unwrap();
    assert_eq!(read_at(&f, 0), "hello world");
    assert_eq!(read_at(&f, 6), "world");
    assert_eq!(read_at(&f, 100), "");
    // A write at 0 truncates; elsewhere it overwrites or extends.
    f.pwrite(b"bye", 0).unwrap();
    assert_eq!(read_at(&f, 0), "bye");
    f.pwrite(b" now", 3).unwrap();
    assert_eq!(read_at(&f, 0), "bye now");
    // Another client sees the same file.
    let g = mount(&e).open("data", OREAD).unwrap();
    assert_eq!(read_at(&g, 4), "now");
}

#[test]
fn logfile() {
    let e = example("logfile", &["-size", "16", "log9", "events"]);
    assert!(e.sock.ends_with("log9"));
    let c = mount(&e);
    let w = c.open("events", OWRITE).unwrap();
    let a = c.open("events", OREAD).unwrap();
    w.write(b"one\n").unwrap();
    assert_eq!(read_at(&a, 0), "one\n");
    // Nothing new: the read is held until a write comes.
    let held = std::thread::spawn(move || {
        let s = read_at(&a, 0);
        (a, s)
    });
    w.write(b"two\n").unwrap();
    let (a, s) = held.join().unwrap();
    assert_eq!(s, "two\n");
    // A later open starts at the oldest byte kept.
    let b = c.open("events", OREAD).unwrap();
    assert_eq!(read_at(&b, 0), "one\ntwo\n");
    // Past the 16-byte size the oldest bytes drop off; a reader that fell
    // behind resumes at the oldest kept.
    w.write(b"abcdefghijklmnopqrst").unwrap();
    assert_eq!(read_at(&a, 0), "efghijklmnopqrst");
    let fresh = c.open("events", OREAD).unwrap();
    assert_eq!(read_at(&fresh, 0), "efghijklmnopqrst");
    // Each open has its own position: b is still where it was.
    assert_eq!(read_at(&b, 0), "efghijklmnopqrst");
}

#[test]
fn logfile_usage() {
    let o = Command::new(common::example::binary("logfile"))
        .args(["-size", "x"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("usage: logfile [-size bytes] [srvname [filename]]")
    );
}
