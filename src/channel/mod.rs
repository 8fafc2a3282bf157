//! Channels and alt.
//!
//! A [`Chan`] carries values of one type between threads: of one proc, of
//! different procs, or plain OS threads outside any program. Unbuffered,
//! each send waits for a receive (a rendezvous); buffered, sends wait only
//! when the buffer is full. [`Alt`] and the [`alt!`](crate::alt) macro wait
//! for the first of several sends and receives.
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
