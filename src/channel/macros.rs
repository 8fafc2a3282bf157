//! `alt!` and `chanprint!`.

/// Waits for the first of several channel operations, like
/// crossbeam-channel's `select!`, built on [`Alt`](crate::Alt).
///
/// Arms, in any order and number:
/// - `recv(chan) -> v => body`: `v` is a `Result<T, RecvError>` (`Err` when
///   the channel is closed);
/// - `send(chan, value) -> r => body`: `r` is a `Result<(), SendError<T>>`;
///   `value` is evaluated before waiting and dropped if another arm wins;
/// - `default => body`: makes the alt non-blocking; runs when no other arm
///   is ready;
/// - `interrupted => body`: runs when the thread is interrupted
///   (`threadint`) while waiting. Without it, an
///   interrupt panics: a thread that can be interrupted must say what that
///   means.
///
/// When several arms are ready, one is chosen uniformly at random.
///
/// ```
/// use thread9::{alt, Chan};
/// thread9::run(|| {
///     let (nums, words) = (Chan::new(1), Chan::<String>::new(1));
///     nums.send(7).unwrap();
///     let got = alt! {
///         recv(nums) -> n => format!("number {}", n.unwrap()),
///         recv(words) -> w => format!("word {}", w.unwrap()),
///     };
///     assert_eq!(got, "number 7");
///     let r = alt! {
///         send(words, "full?".to_string()) -> r => r.is_ok(),
///         default => false,
///     };
///     assert!(r); // the buffer had room
/// }).unwrap();
/// ```
#[macro_export]
macro_rules! alt {
    ($($t:tt)*) => {
        $crate::__alt!(@parse [] [
            __alt_0 __alt_1 __alt_2 __alt_3 __alt_4 __alt_5 __alt_6 __alt_7
            __alt_8 __alt_9 __alt_10 __alt_11 __alt_12 __alt_13 __alt_14 __alt_15
            __alt_16 __alt_17 __alt_18 __alt_19 __alt_20 __alt_21 __alt_22 __alt_23
            __alt_24 __alt_25 __alt_26 __alt_27 __alt_28 __alt_29 __alt_30 __alt_31
        ] [] [] $($t)*)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __alt {
    // Parsing: one arm at a time into a normalised list. A block body
    // needs no comma after it; an expression body does, unless it is last.
    (@parse $arms:tt $ids:tt $def:tt $int:tt , $($rest:tt)*) => {
        $crate::__alt!(@parse $arms $ids $def $int $($rest)*)
    };
    (@parse [$($arms:tt)*] [$id:ident $($ids:ident)*] $def:tt $int:tt
        recv($c:expr) -> $p:pat => $body:block $($rest:tt)*) => {
        $crate::__alt!(@parse [$($arms)* (recv $id ($c) ($p) $body)] [$($ids)*] $def $int $($rest)*)
    };
    (@parse [$($arms:tt)*] [$id:ident $($ids:ident)*] $def:tt $int:tt
        recv($c:expr) -> $p:pat => $body:expr $(, $($rest:tt)*)?) => {
        $crate::__alt!(@parse [$($arms)* (recv $id ($c) ($p) { $body })] [$($ids)*] $def $int $($($rest)*)?)
    };
    (@parse [$($arms:tt)*] [$id:ident $($ids:ident)*] $def:tt $int:tt
        send($c:expr, $v:expr) -> $p:pat => $body:block $($rest:tt)*) => {
        $crate::__alt!(@parse [$($arms)* (send $id ($c) ($v) ($p) $body)] [$($ids)*] $def $int $($rest)*)
    };
    (@parse [$($arms:tt)*] [$id:ident $($ids:ident)*] $def:tt $int:tt
        send($c:expr, $v:expr) -> $p:pat => $body:expr $(, $($rest:tt)*)?) => {
        $crate::__alt!(@parse [$($arms)* (send $id ($c) ($v) ($p) { $body })] [$($ids)*] $def $int $($($rest)*)?)
    };
    (@parse $arms:tt $ids:tt [] $int:tt default => $body:block $($rest:tt)*) => {
        $crate::__alt!(@parse $arms $ids [$body] $int $($rest)*)
    };
    (@parse $arms:tt $ids:tt [] $int:tt default => $body:expr $(, $($rest:tt)*)?) => {
        $crate::__alt!(@parse $arms $ids [{ $body }] $int $($($rest)*)?)
    };
    (@parse $arms:tt $ids:tt $def:tt [] interrupted => $body:block $($rest:tt)*) => {
        $crate::__alt!(@parse $arms $ids $def [$body] $($rest)*)
    };
    (@parse $arms:tt $ids:tt $def:tt [] interrupted => $body:expr $(, $($rest:tt)*)?) => {
        $crate::__alt!(@parse $arms $ids $def [{ $body }] $($($rest)*)?)
    };
    (@parse [$($arms:tt)*] $ids:tt $def:tt $int:tt) => {
        $crate::__alt!(@emit [$($arms)*] $def $int)
    };

    (@emit [$($arm:tt)*] $def:tt $int:tt) => {{
        $( $crate::__alt!(@decl $arm); )*
        let __alt_r = {
            let mut __alt = $crate::Alt::new();
            $( $crate::__alt!(@add __alt $arm); )*
            $crate::__alt!(@run __alt $def)
        };
        $crate::__alt!(@dispatch __alt_r [$($arm)*] $def $int)
    }};

    (@decl (recv $id:ident ($c:expr) ($p:pat) $body:tt)) => {
        let mut $id = (&$c, ::core::option::Option::None, 0usize);
    };
    (@decl (send $id:ident ($c:expr) ($v:expr) ($p:pat) $body:tt)) => {
        let mut $id = (&$c, ::core::option::Option::Some($v), 0usize);
    };

    (@add $alt:ident (recv $id:ident $($x:tt)*)) => {
        $id.2 = $alt.len();
        $alt.recv($id.0, &mut $id.1);
    };
    (@add $alt:ident (send $id:ident $($x:tt)*)) => {
        $id.2 = $alt.len();
        $alt.send($id.0, &mut $id.1);
    };

    (@run $alt:ident []) => { $alt.alt() };
    (@run $alt:ident [$body:tt]) => { $alt.nbalt() };

    (@dispatch $r:ident [(recv $id:ident ($c:expr) ($p:pat) $body:tt) $($rest:tt)*] $def:tt $int:tt) => {
        match $r {
            ::core::result::Result::Ok(__i) | ::core::result::Result::Err($crate::AltError::Closed(__i))
                if __i == $id.2 =>
            {
                let $p = match $r {
                    ::core::result::Result::Ok(_) => ::core::result::Result::Ok(
                        $id.1.take().expect("thread9: alt! received value is in its slot"),
                    ),
                    ::core::result::Result::Err(_) => ::core::result::Result::Err($crate::RecvError::Closed),
                };
                $body
            }
            _ => $crate::__alt!(@dispatch $r [$($rest)*] $def $int),
        }
    };
    (@dispatch $r:ident [(send $id:ident ($c:expr) ($v:expr) ($p:pat) $body:tt) $($rest:tt)*] $def:tt $int:tt) => {
        match $r {
            ::core::result::Result::Ok(__i) | ::core::result::Result::Err($crate::AltError::Closed(__i))
                if __i == $id.2 =>
            {
                let $p = match $r {
                    ::core::result::Result::Ok(_) => ::core::result::Result::Ok(()),
                    ::core::result::Result::Err(_) => ::core::result::Result::Err($crate::SendError::Closed(
                        $id.1.take().expect("thread9: alt! unsent value is in its slot"),
                    )),
                };
                $body
            }
            _ => $crate::__alt!(@dispatch $r [$($rest)*] $def $int),
        }
    };
    (@dispatch $r:ident [] $def:tt $int:tt) => {
        match $r {
            ::core::result::Result::Err($crate::AltError::WouldBlock) => $crate::__alt!(@default $def),
            ::core::result::Result::Err($crate::AltError::Interrupted) => $crate::__alt!(@interrupted $int),
            _ => ::core::unreachable!("thread9: alt! chose no arm"),
        }
    };

    (@default []) => { ::core::unreachable!("thread9: a blocking alt! would not block") };
    (@default [$body:tt]) => { $body };
    (@interrupted []) => {
        ::core::panic!("thread9: alt! was interrupted and has no `interrupted` arm")
    };
    (@interrupted [$body:tt]) => { $body };
}

/// Formats its arguments into a `String` and sends it on the channel
/// (Plan 9's `chanprint`); evaluates to the send's result.
///
/// ```
/// thread9::run(|| {
///     let c = thread9::Chan::new(1);
///     thread9::chanprint!(c, "{} + {} = {}", 1, 2, 1 + 2).unwrap();
///     assert_eq!(c.recv().unwrap(), "1 + 2 = 3");
/// }).unwrap();
/// ```
#[macro_export]
macro_rules! chanprint {
    ($c:expr, $($fmt:tt)*) => {
        $c.send(::std::format!($($fmt)*))
    };
}
