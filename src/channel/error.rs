//! The errors of channel operations. A value that was not delivered always
//! comes back inside the error.

use std::fmt;

/// Why [`Chan::send`](crate::Chan::send) failed; holds the value.
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use thread9::SendError;
/// thread9::run(|| {
///     let c = thread9::Chan::new(0);
///     let got = Rc::new(RefCell::new(None));
///     let (d, g) = (c.clone(), got.clone());
///     let id = thread9::threadcreate(move || *g.borrow_mut() = Some(d.send(vec![1, 2])), 0);
///     thread9::threadyield(); // it blocks: nobody receives
///     thread9::threadint(id);
///     thread9::threadyield();
///     assert_eq!(*got.borrow(), Some(Err(SendError::Interrupted(vec![1, 2]))));
///     c.close();
///     assert_eq!(c.send(vec![3]), Err(SendError::Closed(vec![3])));
/// }).unwrap();
/// ```
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendError<T> {
    /// The channel is closed.
    Closed(T),
    /// The sending thread was interrupted (`threadint`).
    Interrupted(T),
}

/// Why [`Chan::recv`](crate::Chan::recv) failed.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// use thread9::RecvError;
/// thread9::run(|| {
///     let c = thread9::Chan::<u8>::new(0);
///     let got = Rc::new(Cell::new(None));
///     let (d, g) = (c.clone(), got.clone());
///     let id = thread9::threadcreate(move || g.set(Some(d.recv())), 0);
///     thread9::threadyield(); // it blocks: nobody sends
///     thread9::threadint(id);
///     thread9::threadyield();
///     assert_eq!(got.get(), Some(Err(RecvError::Interrupted)));
///     c.close();
///     assert_eq!(c.recv(), Err(RecvError::Closed));
/// }).unwrap();
/// ```
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RecvError {
    /// The channel is closed and its buffer empty.
    Closed,
    /// The receiving thread was interrupted.
    Interrupted,
}

/// Why [`Chan::nbsend`](crate::Chan::nbsend) failed; holds the value.
///
/// ```
/// use thread9::TrySendError;
/// let c = thread9::Chan::new(0);
/// assert_eq!(c.nbsend(1), Err(TrySendError::Full(1))); // no receiver waits
/// c.close();
/// assert_eq!(c.nbsend(2), Err(TrySendError::Closed(2)));
/// ```
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// No receiver is waiting and the buffer (if any) is full.
    Full(T),
    /// The channel is closed.
    Closed(T),
}

/// Why [`Chan::nbrecv`](crate::Chan::nbrecv) failed.
///
/// ```
/// use thread9::TryRecvError;
/// let c = thread9::Chan::<()>::new(0);
/// assert_eq!(c.nbrecv(), Err(TryRecvError::Empty));
/// c.close();
/// assert_eq!(c.nbrecv(), Err(TryRecvError::Closed));
/// ```
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum TryRecvError {
    /// No sender is waiting and the buffer (if any) is empty.
    Empty,
    /// The channel is closed and its buffer empty.
    Closed,
}

/// Why [`Alt::alt`](crate::Alt::alt) or [`Alt::nbalt`](crate::Alt::nbalt)
/// performed no operation.
///
/// ```
/// use thread9::{Alt, AltError, Chan};
/// let (open, shut) = (Chan::<u8>::new(0), Chan::new(0));
/// shut.close();
/// let (mut x, mut v) = (None, Some(1u8));
/// let mut alt = Alt::new();
/// alt.recv(&open, &mut x);
/// assert_eq!(alt.nbalt(), Err(AltError::WouldBlock));
/// alt.send(&shut, &mut v);
/// // A closed channel's entry is ready: the alt reports it, and the
/// // value stays in its slot.
/// assert_eq!(alt.nbalt(), Err(AltError::Closed(1)));
/// drop(alt);
/// assert_eq!(v, Some(1));
/// ```
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum AltError {
    /// Entry `i` was chosen and its channel is closed. A send entry keeps
    /// its value in its slot.
    Closed(usize),
    /// The thread was interrupted while it waited.
    Interrupted,
    /// `nbalt`: no entry was ready.
    WouldBlock,
}

impl<T> SendError<T> {
    /// The value that was not sent.
    ///
    /// ```
    /// let c = thread9::Chan::new(0);
    /// c.close();
    /// assert_eq!(c.send("back").unwrap_err().into_inner(), "back");
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            SendError::Closed(v) | SendError::Interrupted(v) => v,
        }
    }
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    ///
    /// ```
    /// let c = thread9::Chan::new(0);
    /// assert_eq!(c.nbsend(String::from("back")).unwrap_err().into_inner(), "back");
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Closed(v) => v,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(_) => f.write_str("Closed(..)"),
            SendError::Interrupted(_) => f.write_str("Interrupted(..)"),
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Closed(_) => "send on a closed channel",
            SendError::Interrupted(_) => "send interrupted",
        })
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvError::Closed => "receive on a closed channel",
            RecvError::Interrupted => "receive interrupted",
        })
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrySendError::Full(_) => "send would block",
            TrySendError::Closed(_) => "send on a closed channel",
        })
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryRecvError::Empty => "receive would block",
            TryRecvError::Closed => "receive on a closed channel",
        })
    }
}

impl fmt::Display for AltError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AltError::Closed(i) => write!(f, "alt entry {i}: channel closed"),
            AltError::Interrupted => f.write_str("alt interrupted"),
            AltError::WouldBlock => f.write_str("alt would block"),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}
impl std::error::Error for RecvError {}
impl<T> std::error::Error for TrySendError<T> {}
impl std::error::Error for TryRecvError {}
impl std::error::Error for AltError {}

impl From<RecvError> for std::io::Error {
    fn from(e: RecvError) -> std::io::Error {
        let kind = match e {
            RecvError::Closed => std::io::ErrorKind::BrokenPipe,
            RecvError::Interrupted => std::io::ErrorKind::Interrupted,
        };
        std::io::Error::new(kind, e)
    }
}
