//! Channels and alt.
//!
//! A [`Chan`] carries values of one type between threads: of one proc, of
//! different procs, or plain OS threads outside any program. Unbuffered,
//! each send waits for a receive (a rendezvous); buffered, sends wait only
//! when the buffer is full. [`Alt`] and the [`alt!`](crate::alt) macro wait
//! for the first of several sends and receives.
//!
//! A closed channel ends the conversation without losing anything: its
//! buffer still drains, and a send that fails hands its value back. Here
//! two producers, one a thread and one a proc, feed a consumer that alts
//! over both until both have closed:
//!
//! ```
//! use thread9::{Alt, AltError, Chan, proccreate, threadcreate};
//! thread9::run(|| {
//!     let (evens, odds) = (Chan::new(0), Chan::new(4));
//!     let (e, o) = (evens.clone(), odds.clone());
//!     threadcreate(move || { for i in [0, 2, 4] { e.send(i).unwrap() } e.close(); }, 0);
//!     proccreate(move || { for i in [1, 3] { o.send(i).unwrap() } o.close(); }, 0);
//!     let (mut got, mut open) = (Vec::new(), [true, true]);
//!     while open != [false, false] {
//!         let (mut x, mut y) = (None, None);
//!         let mut alt = Alt::new();
//!         // A closed channel is always ready, so alt over the open ones only.
//!         if open[0] { alt.recv(&evens, &mut x); } else { alt.nop(); }
//!         if open[1] { alt.recv(&odds, &mut y); } else { alt.nop(); }
//!         match alt.alt() {
//!             Ok(_) => { drop(alt); got.extend(x.or(y)) }
//!             Err(AltError::Closed(i)) => open[i] = false,
//!             Err(e) => panic!("{e}"),
//!         }
//!     }
//!     got.sort();
//!     assert_eq!(got, [0, 1, 2, 3, 4]);
//! }).unwrap();
//! ```
//!
//! The files: `chan` (the channel and its operations), `alt` (the alt
//! builder and the type-erased view of a channel it needs), `error`,
//! `names` (names for dumps) and `macros`.

pub(crate) mod alt;
pub(crate) mod chan;
pub(crate) mod error;
mod macros;
pub(crate) mod names;

pub use alt::Alt;
pub use chan::Chan;
pub use error::{AltError, RecvError, SendError, TryRecvError, TrySendError};

pub(crate) use names::describe;
