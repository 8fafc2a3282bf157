//! Inferno's srv device: files whose reads and writes arrive as requests
//! on channels, served over 9P2000.
//!
//! A [`Srv`] is a directory. [`Srv::file2chan`] makes a file in it and
//! gives you its [`FileIO`]: two channels on which every client read and
//! write of the file arrives, each with a channel for your reply. Serve
//! them from a thread, as you would any other channels: hold a read until
//! you have something to say, answer writes with an error, keep state per
//! client open (each has its own [`Fid`]). [`Srv::post`] then puts the
//! directory on a Unix socket in the namespace directory, where plan9port's
//! `9p` and this crate's own client, [`ninep`], find it by name;
//! [`Srv::announce`] puts it on TCP for other machines.
//!
//! ```
//! use thread9::srv::{Srv, ninep::Client};
//! use thread9::threadcreate;
//!
//! thread9::run(|| {
//!     let srv = Srv::new();
//!     let upper = srv.file2chan("upper").unwrap();
//!     // The file's server: a write is remembered, upper-cased, for the
//!     // next read of the same open.
//!     threadcreate(move || {
//!         let mut saved = std::collections::HashMap::new();
//!         loop {
//!             thread9::alt! {
//!                 recv(upper.write) -> w => match w.unwrap() {
//!                     (_, data, fid, Some(wc)) => {
//!                         let n = data.len();
//!                         saved.insert(fid, data.to_ascii_uppercase());
//!                         let _ = wc.send(Ok(n));
//!                     }
//!                     (_, _, fid, None) => { saved.remove(&fid); } // closed
//!                 },
//!                 recv(upper.read) -> r => if let (_, count, fid, Some(rc)) = r.unwrap() {
//!                     let mut d = saved.remove(&fid).unwrap_or_default();
//!                     d.truncate(count);
//!                     let _ = rc.send(Ok(d));
//!                 },
//!             }
//!         }
//!     }, 0);
//!     srv.announce("tcp!127.0.0.1!0").unwrap();
//!     let c = Client::mount(&srv.addrs()[0]).unwrap();
//!     let mut f = c.open("upper", thread9::srv::fcall::ORDWR).unwrap();
//!     f.write(b"shout").unwrap();
//!     let mut buf = [0u8; 16];
//!     let n = f.pread(&mut buf, 0).unwrap();
//!     assert_eq!(&buf[..n], b"SHOUT");
//!     thread9::threadexitsall("");
//! }).unwrap();
//! ```
//!
//! The server agrees to messages of up to 1 MiB of data (msize 1 MiB + 24),
//! so a read request's `count` is never more than that; a client offering
//! less gets what it offered.
//!
//! Files: `device` (the `Srv` handle, posting and listening), `file2chan`
//! (`FileIO`), `tree` (the directory), `conn` (a 9P connection and its
//! messages), `request` (the threads that wait on a `FileIO`), `frames`
//! (cutting messages out of a stream, for server and client), `wire`
//! (reading and writing messages), `ns` (the namespace directory),
//! [`fcall`] (the 9P2000 codec) and [`ninep`] (the client).

mod conn;
mod device;
pub mod fcall;
mod file2chan;
mod frames;
pub mod ninep;
mod ns;
mod request;
mod tree;
mod wire;

pub use device::{SRV_GROUP, Srv};
pub use file2chan::{Fid, FileIO, ReadReq, Rread, Rwrite, WriteReq};
pub use ns::namespace;
