//! Inferno's logfile: a circular log served by file2chan. Writes append to
//! it (the oldest bytes drop off once it is full); each client open reads
//! from its own position, starting at the oldest byte kept, and a read with
//! nothing new is held until a write brings something.
//!
//! usage: logfile [-size bytes] [srvname [filename]]
//!   posts srvname (default "logfile") with one file, filename (default
//!   "log"), and serves it until interrupted. `9p read logfile/log` then
//!   prints the log and waits for more, like `tail -f`.

use std::collections::{HashMap, VecDeque};

use thread9::srv::{Fid, FileIO, Rread, Srv};
use thread9::{alt, threadmain};

struct Log {
    buf: VecDeque<u8>,
    size: usize,
    /// Bytes ever written: the position just past the newest byte.
    total: u64,
    /// Each open's next position.
    pos: HashMap<Fid, u64>,
    /// Reads waiting for something to be written.
    held: Vec<(Fid, usize, Rread)>,
}

impl Log {
    /// The oldest position still in the buffer.
    fn start(&self) -> u64 {
        self.total - self.buf.len() as u64
    }

    /// Up to `count` bytes for `fid`, advancing it; `None` if there is
    /// nothing new.
    fn take(&mut self, fid: Fid, count: usize) -> Option<Vec<u8>> {
        let start = self.start();
        let p = self.pos.entry(fid).or_insert(start);
        // A reader that fell behind by more than the buffer loses the rest.
        *p = (*p).max(start);
        if *p == self.total {
            return None;
        }
        let from = (*p - start) as usize;
        let n = count.min(self.buf.len() - from);
        let data: Vec<u8> = self.buf.range(from..from + n).copied().collect();
        *p += n as u64;
        Some(data)
    }

    fn append(&mut self, data: &[u8]) {
        self.buf.extend(data);
        self.total += data.len() as u64;
        let excess = self.buf.len().saturating_sub(self.size);
        self.buf.drain(..excess);
        // Answer the held reads that can now be answered.
        for (fid, count, rc) in std::mem::take(&mut self.held) {
            match self.take(fid, count) {
                Some(d) => {
                    let _ = rc.send(Ok(d));
                }
                None => self.held.push((fid, count, rc)),
            }
        }
    }
}

fn logfile(f: FileIO, size: usize) {
    let mut log = Log {
        buf: VecDeque::new(),
        size,
        total: 0,
        pos: HashMap::new(),
        held: Vec::new(),
    };
    loop {
        alt! {
            recv(f.read) -> r => match r {
                Ok((_, count, fid, Some(rc))) => match log.take(fid, count) {
                    Some(d) => {
                        let _ = rc.send(Ok(d));
                    }
                    None => log.held.push((fid, count, rc)),
                },
                // That open is closed: forget it.
                Ok((_, _, fid, None)) => {
                    log.pos.remove(&fid);
                    log.held.retain(|h| h.0 != fid);
                }
                Err(_) => return,
            },
            recv(f.write) -> w => match w {
                Ok((_, data, _, Some(wc))) => {
                    log.append(&data);
                    let _ = wc.send(Ok(data.len()));
                }
                Ok((_, _, _, None)) => {}
                Err(_) => return,
            },
        }
    }
}

fn main() {
    threadmain(|args| {
        let mut args = &args[1..];
        let mut size = 8192;
        if args.first().is_some_and(|a| a == "-size") {
            size = match args.get(1).and_then(|s| s.parse().ok()) {
                Some(n) if n > 0 => n,
                _ => {
                    eprintln!("usage: logfile [-size bytes] [srvname [filename]]");
                    thread9::threadexitsall("usage");
                }
            };
            args = &args[2..];
        }
        let name = args.first().cloned().unwrap_or_else(|| "logfile".into());
        let file = args.get(1).cloned().unwrap_or_else(|| "log".into());
        let srv = Srv::new();
        let f = srv.file2chan(&file).unwrap_or_else(|e| {
            eprintln!("logfile: file2chan {file}: {e}");
            thread9::threadexitsall("file2chan");
        });
        let path = srv.post(&name).unwrap_or_else(|e| {
            eprintln!("logfile: {e}");
            thread9::threadexitsall("post");
        });
        println!(
            "logfile: serving {file} ({size} bytes) at {}",
            path.display()
        );
        println!("try:  9p read {name}/{file} &  echo hello | 9p write {name}/{file}");
        logfile(f, size);
        drop(srv);
    });
}
