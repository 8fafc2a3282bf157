//! Alt and the alt! macro.

use std::collections::HashSet;
use std::rc::Rc;

use thread9::{
    Alt, AltError, Chan, RecvError, SendError, alt, proccreate, run, threadcreate, threadyield,
};

#[test]
fn alt_performs_a_ready_entry_and_numbers_entries_in_order() {
    run(|| {
        let (a, b, c) = (
            Chan::<i32>::new(0),
            Chan::<i32>::new(1),
            Chan::<i32>::new(1),
        );
        c.send(30).unwrap();
        let (mut x, mut y, mut z) = (None, None, None);
        let mut alt = Alt::new();
        alt.recv(&a, &mut x)
            .nop()
            .recv(&b, &mut y)
            .nop()
            .recv(&c, &mut z);
        assert_eq!(alt.len(), 5);
        assert_eq!(alt.alt(), Ok(4), "nops keep their indexes");
        drop(alt);
        assert_eq!((x, y, z), (None, None, Some(30)));
    })
    .unwrap();
}

#[test]
fn nbalt_never_blocks() {
    run(|| {
        let (a, b) = (Chan::<i32>::new(0), Chan::<i32>::new(0));
        let (mut x, mut y) = (None, Some(1));
        let mut alt = Alt::new();
        alt.recv(&a, &mut x).send(&b, &mut y);
        assert_eq!(alt.nbalt(), Err(AltError::WouldBlock));
        drop(alt);
        assert_eq!(y, Some(1), "the send did not happen, the value stays");
        let mut only_nops = Alt::new();
        only_nops.nop().nop();
        assert_eq!(only_nops.nbalt(), Err(AltError::WouldBlock));
        assert_eq!(Alt::new().nbalt(), Err(AltError::WouldBlock));
    })
    .unwrap();
}

#[test]
fn alt_blocks_until_a_partner_comes() {
    run(|| {
        let (a, b) = (Chan::<&str>::new(0), Chan::<&str>::new(0));
        let b2 = b.clone();
        threadcreate(move || b2.send("late").unwrap(), 0);
        let (mut x, mut y) = (None, None);
        let mut alt = Alt::new();
        alt.recv(&a, &mut x).recv(&b, &mut y);
        assert_eq!(alt.alt(), Ok(1));
        drop(alt);
        assert_eq!(y, Some("late"));
        // A blocked send entry, taken by a receiver later.
        let a2 = a.clone();
        threadcreate(move || assert_eq!(a2.recv(), Ok("sent")), 0);
        let (mut s, mut r) = (Some("sent"), None);
        let mut alt = Alt::new();
        alt.send(&a, &mut s).recv(&b, &mut r);
        assert_eq!(alt.alt(), Ok(0));
        drop(alt);
        assert_eq!(s, None, "the sent value left its slot");
    })
    .unwrap();
}

#[test]
fn closed_channels_are_ready_and_report_their_entry() {
    run(|| {
        let (a, b) = (Chan::<i32>::new(0), Chan::<i32>::new(0));
        b.close();
        let (mut x, mut y) = (None, Some(5));
        let mut alt = Alt::new();
        alt.recv(&a, &mut x).send(&b, &mut y);
        assert_eq!(alt.alt(), Err(AltError::Closed(1)));
        drop(alt);
        assert_eq!(y, Some(5), "an unsent value stays in its slot");
        // A channel closed while the alt waits.
        let a2 = a.clone();
        threadcreate(
            move || {
                a2.close();
            },
            0,
        );
        let mut x = None;
        let mut alt = Alt::new();
        alt.nop().recv(&a, &mut x);
        assert_eq!(alt.alt(), Err(AltError::Closed(1)));
        // A closed buffered channel still delivers what it holds.
        let c = Chan::new(1);
        c.send(7).unwrap();
        c.close();
        let mut z = None;
        let mut alt = Alt::new();
        alt.recv(&c, &mut z);
        assert_eq!(alt.alt(), Ok(0));
        assert_eq!(alt.alt(), Err(AltError::Closed(0)));
    })
    .unwrap();
}

#[test]
fn alt_chooses_uniformly_among_ready_entries() {
    run(|| {
        let chans: Vec<Chan<usize>> = (0..3).map(|_| Chan::new(1)).collect();
        let trials = 30_000;
        let mut counts = [0usize; 3];
        for _ in 0..trials {
            for (i, c) in chans.iter().enumerate() {
                if c.is_empty() {
                    c.send(i).unwrap();
                }
            }
            let mut slots = [None, None, None];
            let [s0, s1, s2] = &mut slots;
            let mut alt = Alt::new();
            alt.recv(&chans[0], s0)
                .recv(&chans[1], s1)
                .recv(&chans[2], s2);
            let i = alt.alt().unwrap();
            drop(alt);
            assert_eq!(slots[i], Some(i));
            counts[i] += 1;
        }
        // Each share is 1/3; one standard deviation is ~0.27%. A bound of
        // +-4% is over 14 deviations: it cannot fail by chance, and a
        // biased choice (always the first, or first-of-a-rotation) fails it.
        for c in counts {
            let share = c as f64 / trials as f64;
            assert!((share - 1.0 / 3.0).abs() < 0.04, "shares {counts:?}");
        }

        // Uniform among the ready ones, not merely a uniform first try:
        // with entry 0 never ready, a scheme that tries a random entry
        // first and then the others in order would give entry 1 two thirds
        // of the picks (so would a random rotation), not a half.
        let quiet = Chan::<usize>::new(0);
        let mut counts = [0usize; 3];
        for _ in 0..trials {
            for (i, c) in chans.iter().enumerate().skip(1) {
                if c.is_empty() {
                    c.send(i).unwrap();
                }
            }
            let mut slots = [None, None, None];
            let [s0, s1, s2] = &mut slots;
            let mut alt = Alt::new();
            alt.recv(&quiet, s0).recv(&chans[1], s1).recv(&chans[2], s2);
            let i = alt.alt().unwrap();
            drop(alt);
            assert_eq!(slots[i], Some(i));
            counts[i] += 1;
        }
        assert_eq!(counts[0], 0);
        for c in &counts[1..] {
            let share = *c as f64 / trials as f64;
            assert!((share - 0.5).abs() < 0.04, "shares {counts:?}");
        }

        // Two entries (an alt the runtime handles apart), both ready.
        let mut counts = [0usize; 2];
        for _ in 0..trials {
            for (i, c) in chans.iter().enumerate().take(2) {
                if c.is_empty() {
                    c.send(i).unwrap();
                }
            }
            let (mut x, mut y) = (None, None);
            let mut alt = Alt::new();
            alt.recv(&chans[0], &mut x).recv(&chans[1], &mut y);
            let i = alt.alt().unwrap();
            drop(alt);
            assert_eq!([x, y][i], Some(i));
            counts[i] += 1;
        }
        for c in counts {
            let share = c as f64 / trials as f64;
            assert!((share - 0.5).abs() < 0.04, "shares {counts:?}");
        }
    })
    .unwrap();
}

#[test]
fn a_woken_alt_leaves_no_trace_on_its_other_channels() {
    run(|| {
        let (a, b) = (Chan::<i32>::new(0), Chan::<i32>::new(0));
        let (a2, b2) = (a.clone(), b.clone());
        let got = Rc::new(std::cell::Cell::new(None));
        let g = got.clone();
        threadcreate(
            move || {
                let (mut x, mut y) = (None, None);
                let mut alt = Alt::new();
                alt.recv(&a2, &mut x).recv(&b2, &mut y);
                g.set(Some((alt.alt(), x, y)));
                // Then wait on b alone, so that a stray entry would show.
                let _ = b2.recv();
            },
            0,
        );
        threadyield(); // the alt waits on a and b
        a.send(1).unwrap();
        threadyield();
        assert_eq!(got.get(), Some((Ok(0), Some(1), None)));
        // No receiver is left waiting on a...
        assert_eq!(a.nbsend(2), Err(thread9::TrySendError::Full(2)));
        // ...and b's one receiver is the new recv, which gets the value.
        assert_eq!(b.nbsend(3), Ok(()));
    })
    .unwrap();
}

#[test]
fn an_alt_may_name_a_channel_twice() {
    run(|| {
        let c = Chan::<i32>::new(0);
        let c2 = c.clone();
        threadcreate(move || assert_eq!(c2.recv(), Ok(9)), 0);
        // Send and receive on the same channel: it must not pair with itself.
        let (mut s, mut r) = (Some(9), None);
        let mut alt = Alt::new();
        alt.send(&c, &mut s).recv(&c, &mut r);
        assert_eq!(alt.alt(), Ok(0));
        drop(alt);
        let c3 = c.clone();
        threadcreate(move || c3.send(4).unwrap(), 0);
        let (mut r1, mut r2) = (None, None);
        let mut alt = Alt::new();
        alt.recv(&c, &mut r1).recv(&c, &mut r2);
        let i = alt.alt().unwrap();
        drop(alt);
        assert_eq!(if i == 0 { r1 } else { r2 }, Some(4));
    })
    .unwrap();
}

#[test]
fn an_alt_of_many_entries_waits_on_all_and_leaves_no_trace() {
    run(|| {
        // More entries than an alt keeps inline, named in the reverse of
        // the order the channels were made in, after a nop.
        let chans: Vec<Chan<usize>> = (0..7).map(|_| Chan::new(0)).collect();
        for target in [6, 4, 3, 0] {
            let c = chans[target].clone();
            threadcreate(move || c.send(100 + target).unwrap(), 0);
            let mut slots = vec![None; 7];
            let mut alt = Alt::new();
            alt.nop();
            for (c, s) in chans.iter().zip(slots.iter_mut()).rev() {
                alt.recv(c, s);
            }
            assert_eq!(alt.len(), 8);
            // Entry 1 is channel 6, entry 7 channel 0.
            assert_eq!(alt.alt(), Ok(7 - target));
            drop(alt);
            let mut want = vec![None; 7];
            want[target] = Some(100 + target);
            assert_eq!(slots, want);
            for c in &chans {
                assert_eq!(c.nbsend(0), Err(thread9::TrySendError::Full(0)));
            }
        }
    })
    .unwrap();
}

#[test]
fn alt_across_procs_delivers_every_value_once() {
    run(|| {
        let (a, b) = (Chan::<u64>::new(0), Chan::<u64>::new(0));
        let done = Chan::<u64>::new(0);
        let n = 5000u64;
        for (k, c) in [(0u64, a.clone()), (1, b.clone())] {
            for p in 0..2u64 {
                let c = c.clone();
                proccreate(
                    move || {
                        for i in 0..n {
                            c.send((k * 2 + p) << 32 | i).unwrap();
                        }
                    },
                    0,
                );
            }
        }
        // Two alting forwarders in other procs, plus this thread.
        for _ in 0..2 {
            let (a, b, d) = (a.clone(), b.clone(), done.clone());
            proccreate(
                move || {
                    loop {
                        let (mut x, mut y) = (None, None);
                        let mut alt = Alt::new();
                        alt.recv(&a, &mut x).recv(&b, &mut y);
                        alt.alt().unwrap();
                        drop(alt);
                        d.send(x.or(y).unwrap()).unwrap();
                    }
                },
                0,
            );
        }
        // The alting procs forward what they take; this thread takes the
        // rest directly, until it has seen all 4n values.
        let mut seen = HashSet::new();
        while seen.len() < 4 * n as usize {
            let (mut x, mut y, mut z) = (None, None, None);
            let mut alt = Alt::new();
            alt.recv(&a, &mut x).recv(&b, &mut y).recv(&done, &mut z);
            alt.alt().unwrap();
            drop(alt);
            assert!(seen.insert(x.or(y).or(z).unwrap()), "no value twice");
        }
        // The forwarders wait forever for more: end them.
        thread9::threadexitsall("");
    })
    .unwrap();
}

#[test]
fn alt_sends_across_procs() {
    run(|| {
        let (a, b) = (Chan::<u32>::new(0), Chan::<u32>::new(0));
        let (a2, b2) = (a.clone(), b.clone());
        let total = Chan::new(0);
        let t2 = total.clone();
        proccreate(
            move || {
                let mut sum = 0;
                for _ in 0..2000 {
                    sum += thread9::alt! {
                        recv(a2) -> v => v.unwrap(),
                        recv(b2) -> v => v.unwrap() * 1000,
                    };
                }
                t2.send(sum).unwrap();
            },
            0,
        );
        let mut expect = 0;
        for i in 0..2000 {
            let (mut s, mut t) = (Some(1), Some(1));
            let mut alt = Alt::new();
            alt.send(&a, &mut s).send(&b, &mut t);
            expect += if alt.alt().unwrap() == 0 { 1 } else { 1000 };
            drop(alt);
            assert!(
                s.is_none() ^ t.is_none(),
                "exactly one value left its slot (round {i})"
            );
        }
        assert_eq!(total.recv().unwrap(), expect);
    })
    .unwrap();
}

#[test]
fn the_alt_macro() {
    run(|| {
        let (nums, words) = (Chan::<i32>::new(1), Chan::<String>::new(0));
        nums.send(3).unwrap();
        let r = alt! {
            recv(nums) -> v => v.map(|n| n * 2),
            recv(words) -> _w => unreachable!(),
        };
        assert_eq!(r, Ok(6));

        // default makes it non-blocking; an unsent value is dropped.
        let hit = alt! {
            send(words, "nobody listens".to_string()) -> _r => false,
            default => true,
        };
        assert!(hit);

        // closed channels reach their arms as errors.
        nums.close();
        let r = alt! {
            recv(nums) -> v => v,
        };
        assert_eq!(r, Err(RecvError::Closed));
        words.close();
        let r = alt! {
            send(words, "x".to_string()) -> r => r,
        };
        assert_eq!(r, Err(SendError::Closed("x".to_string())));

        // blocks, then takes whichever arm a partner completes.
        let c = Chan::<u8>::new(0);
        let c2 = c.clone();
        threadcreate(move || c2.send(42).unwrap(), 0);
        let got = alt! {
            recv(c) -> v => { let v = v.unwrap(); v as u32 + 1 }
            send(Chan::<u8>::new(0), 1) -> _r => 0
        };
        assert_eq!(got, 43);
    })
    .unwrap();
}

#[test]
fn slots_follow_the_rules_and_an_empty_send_slot_is_an_error() {
    run(|| {
        let (a, b, c) = (
            Chan::<i32>::new(0),
            Chan::<i32>::new(1),
            Chan::<i32>::new(0),
        );
        b.send(2).unwrap();
        // A receive slot is emptied when its entry is added, whatever it
        // held; a send that is not performed keeps its value.
        let (mut x, mut y, mut s) = (Some(99), Some(98), Some(7));
        let mut alt = Alt::new();
        alt.recv(&a, &mut x).recv(&b, &mut y).send(&c, &mut s);
        assert_eq!(alt.alt(), Ok(1));
        drop(alt);
        assert_eq!((x, y, s), (None, Some(2), Some(7)));
    })
    .unwrap();
    let r = run(|| {
        let (a, c) = (Chan::<i32>::new(1), Chan::<i32>::new(1));
        let (mut x, mut s) = (None, None);
        let mut alt = Alt::new();
        alt.recv(&a, &mut x).send(&c, &mut s);
        let _ = alt.nbalt();
    });
    assert_eq!(
        r,
        Err("panic: thread9: alt entry 1 sends from an empty slot".to_string())
    );
}

#[test]
fn a_reused_alt_empties_the_slot_it_filled_and_refuses_a_spent_send() {
    run(|| {
        let (a, b) = (Chan::<i32>::new(1), Chan::<i32>::new(1));
        let (mut x, mut y) = (Some(99), Some(98));
        let mut alt = Alt::new();
        alt.recv(&a, &mut x).recv(&b, &mut y);
        a.send(1).unwrap();
        assert_eq!(alt.alt(), Ok(0));
        // Entry 0's slot now holds 1; the next call must empty it before it
        // fills entry 1's.
        b.send(2).unwrap();
        assert_eq!(alt.alt(), Ok(1));
        // And again after a wait: a partner fills the slot of a parked alt.
        let a2 = a.clone();
        threadcreate(move || a2.send(3).unwrap(), 0);
        assert_eq!(alt.alt(), Ok(0));
        b.send(4).unwrap();
        assert_eq!(alt.alt(), Ok(1));
        drop(alt);
        assert_eq!((x, y), (None, Some(4)));
    })
    .unwrap();
    // A send entry's value is spent once performed: calling the alt again
    // is the error of an empty send slot.
    let r = run(|| {
        let c = Chan::<i32>::new(1);
        let mut s = Some(5);
        let mut alt = Alt::new();
        alt.send(&c, &mut s);
        assert_eq!(alt.alt(), Ok(0));
        let _ = alt.nbalt();
    });
    assert_eq!(
        r,
        Err("panic: thread9: alt entry 0 sends from an empty slot".to_string())
    );
}
