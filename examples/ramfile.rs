//! Inferno's ramfile: a file kept in memory and served by file2chan.
//! Reads honour the offset; a write at offset 0 truncates the file first,
//! so `echo hi | 9p write ramfile/data` replaces what was there.
//!
//! usage: ramfile [srvname [filename]]
//!   posts srvname (default "ramfile") in the namespace directory with one
//!   file, filename (default "data"), and serves it until interrupted.

use thread9::srv::{FileIO, Srv};
use thread9::{alt, threadmain};

/// Serves one in-memory file until its channels close.
fn ramfile(f: FileIO) {
    let mut data: Vec<u8> = Vec::new();
    loop {
        alt! {
            recv(f.read) -> r => match r {
                Ok((off, count, _fid, Some(rc))) => {
                    let start = usize::try_from(off).unwrap_or(usize::MAX).min(data.len());
                    let end = start.saturating_add(count).min(data.len());
                    // The client may have given up on this read (a flush):
                    // then the reply is dropped, and that is fine.
                    let _ = rc.send(Ok(data[start..end].to_vec()));
                }
                Ok((_, _, _, None)) => {} // a client closed the file
                Err(_) => return,
            },
            recv(f.write) -> w => match w {
                Ok((off, bytes, _fid, Some(wc))) => {
                    let Ok(off) = usize::try_from(off) else {
                        let _ = wc.send(Err("offset too large".into()));
                        continue;
                    };
                    if off == 0 {
                        data.clear();
                    }
                    // Writing past the end leaves a hole of zeros, as a
                    // Plan 9 file does.
                    let end = off + bytes.len();
                    if data.len() < end {
                        data.resize(end, 0);
                    }
                    data[off..end].copy_from_slice(&bytes);
                    let _ = wc.send(Ok(bytes.len()));
                }
                Ok((_, _, _, None)) => {}
                Err(_) => return,
            },
        }
    }
}

fn main() {
    threadmain(|args| {
        let name = args.get(1).cloned().unwrap_or_else(|| "ramfile".into());
        let file = args.get(2).cloned().unwrap_or_else(|| "data".into());
        let srv = Srv::new();
        let f = srv.file2chan(&file).unwrap_or_else(|e| {
            eprintln!("ramfile: file2chan {file}: {e}");
            thread9::threadexitsall("file2chan");
        });
        let path = srv.post(&name).unwrap_or_else(|e| {
            eprintln!("ramfile: {e}");
            thread9::threadexitsall("post");
        });
        println!("ramfile: serving {file} at {}", path.display());
        println!("try:  echo hello | 9p write {name}/{file};  9p read {name}/{file}");
        // The srv is served while this thread holds it.
        ramfile(f);
        drop(srv);
    });
}
