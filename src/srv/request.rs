//! The threads that carry a client's file read or write to the file's
//! server and its reply back, and the one that tells the server a client
//! closed the file.
//!
//! Each waits in an alt that also watches the file's `gone` channel, so a
//! server that drops its `FileIO` fails the request (`i/o on hungup
//! channel`) instead of leaving it waiting. A Tflush (or the end of the
//! session) marks the request cancelled and interrupts the thread, which
//! then leaves without a reply; the server's late reply lands in the
//! buffered reply channel and is dropped with it.

use std::rc::Rc;
use std::sync::Arc;

use super::conn::{Conn, E_HUNGUP};
use super::fcall::Msg;
use super::file2chan::{Fid, Rread, Rwrite};
use super::tree::Entry;
use crate::channel::{Alt, AltError, Chan};
use crate::thread::threadsetname;

enum Wait<T> {
    Got(T),
    Hungup,
    Cancelled,
}

/// Sends `v` on `c` unless the file goes first or `cancelled` says the
/// client no longer wants it.
fn offer<T>(c: &Chan<T>, v: T, gone: &Chan<()>, cancelled: &dyn Fn() -> bool) -> Wait<()> {
    let mut slot = Some(v);
    loop {
        if cancelled() {
            return Wait::Cancelled;
        }
        let mut g = None;
        match Alt::new().send(c, &mut slot).recv(gone, &mut g).alt() {
            Ok(0) => return Wait::Got(()),
            Err(AltError::Closed(_)) => return Wait::Hungup,
            // An interrupt that was not a cancel (a group interrupt aimed
            // at someone else's threads, say) is no reason to give up.
            Err(AltError::Interrupted) => continue,
            r => unreachable!("offer: {r:?}"),
        }
    }
}

/// Waits for the reply on `rc`.
fn answer<T>(rc: &Chan<T>, gone: &Chan<()>, cancelled: &dyn Fn() -> bool) -> Wait<T> {
    loop {
        if cancelled() {
            return Wait::Cancelled;
        }
        let (mut v, mut g) = (None, None);
        match Alt::new().recv(rc, &mut v).recv(gone, &mut g).alt() {
            Ok(0) => return Wait::Got(v.expect("alt filled the slot")),
            Err(AltError::Closed(_)) => {
                // The server may have replied just before it went; a reply
                // that made it wins.
                return match rc.nbrecv() {
                    Ok(v) => Wait::Got(v),
                    Err(_) => Wait::Hungup,
                };
            }
            Err(AltError::Interrupted) => continue,
            r => unreachable!("answer: {r:?}"),
        }
    }
}

fn name(what: &str, e: &Entry, tag: u16) {
    threadsetname(&format!("9p {what} {} tag {tag}", e.name));
}

/// A client read: `(offset, count, fid)` of an open file.
pub(crate) fn read(
    conn: Rc<Conn>,
    tag: u16,
    id: u64,
    e: Arc<Entry>,
    (offset, count, fid): (u64, usize, Fid),
) {
    name("read", &e, tag);
    let rc: Rread = Chan::new(1);
    let req = (offset, count, fid, Some(rc.clone()));
    let cancelled = || conn.cancelled(tag, id);
    let reply = carry(&e.read, req, &rc, &e.gone, &cancelled, |mut data| {
        data.truncate(count);
        Msg::Rread { data }
    });
    conn.finish(tag, id, reply);
}

/// A client write: `(offset, data, fid)` of an open file.
pub(crate) fn write(
    conn: Rc<Conn>,
    tag: u16,
    id: u64,
    e: Arc<Entry>,
    (offset, data, fid): (u64, Vec<u8>, Fid),
) {
    name("write", &e, tag);
    let len = data.len();
    let wc: Rwrite = Chan::new(1);
    let req = (offset, data, fid, Some(wc.clone()));
    let cancelled = || conn.cancelled(tag, id);
    let reply = carry(&e.write, req, &wc, &e.gone, &cancelled, |n| Msg::Rwrite {
        // usize ≥ 0 always; more than was offered means all of it.
        count: n.min(len) as u32,
    });
    conn.finish(tag, id, reply);
}

/// Offers `req` on `c` and waits for the server's answer on `reply`
/// (which `req` carries). Gives the client's reply: `ok` of the answer,
/// the server's error, or the hang-up; nothing if the request was
/// cancelled.
fn carry<Q, A>(
    c: &Chan<Q>,
    req: Q,
    reply: &Chan<Result<A, String>>,
    gone: &Chan<()>,
    cancelled: &dyn Fn() -> bool,
    ok: impl FnOnce(A) -> Msg,
) -> Option<Msg> {
    let msg = match offer(c, req, gone, cancelled) {
        Wait::Got(()) => match answer(reply, gone, cancelled) {
            Wait::Got(Ok(a)) => Some(ok(a)),
            Wait::Got(Err(ename)) => Some(Msg::Rerror { ename }),
            Wait::Hungup => Some(hungup()),
            Wait::Cancelled => None,
        },
        Wait::Hungup => Some(hungup()),
        Wait::Cancelled => None,
    };
    if msg.is_some() {
        // Answered: a second reply from the server fails instead of
        // filling the buffer of a channel no one reads.
        reply.close();
    }
    msg
}

/// The client closed open `fid`: `(0, 0, fid, None)` on read, then
/// `(0, [], fid, None)` on write, as Inferno does. Not cancellable: the
/// server must hear of every close (unless it has gone).
pub(crate) fn close(e: Arc<Entry>, fid: Fid) {
    threadsetname(&format!("9p close {} fid {fid}", e.name));
    let never = || false;
    if let Wait::Got(()) = offer(&e.read, (0, 0, fid, None), &e.gone, &never) {
        offer(&e.write, (0, Vec::new(), fid, None), &e.gone, &never);
    }
}

fn hungup() -> Msg {
    Msg::Rerror {
        ename: E_HUNGUP.into(),
    }
}
