//! Channels: buffering, close, non-blocking operations, procs and plain OS
//! threads, and the rule that no value is ever lost.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};

use thread9::{
    Chan, RecvError, SendError, TryRecvError, TrySendError, chanprint, proccreate, run,
    threadcreate, threadyield,
};

#[test]
fn unbuffered_send_waits_for_a_receiver() {
    run(|| {
        let c = Chan::new(0);
        let d = c.clone();
        let log = Rc::new(std::cell::RefCell::new(Vec::new()));
        let l = log.clone();
        threadcreate(
            move || {
                l.borrow_mut().push("receiver starts");
                assert_eq!(d.recv(), Ok(5));
                l.borrow_mut().push("received");
            },
            0,
        );
        log.borrow_mut().push("sending");
        c.send(5).unwrap();
        log.borrow_mut().push("sent");
        // The send returned only after the receiver took the value; the
        // receiver, which completed the exchange, ran on first.
        assert_eq!(
            *log.borrow(),
            ["sending", "receiver starts", "received", "sent"]
        );
    })
    .unwrap();
}

#[test]
fn buffered_channels_are_fifo_and_bounded() {
    run(|| {
        let c = Chan::new(3);
        assert_eq!(c.capacity(), 3);
        for i in 0..3 {
            c.send(i).unwrap();
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.nbsend(9), Err(TrySendError::Full(9)));
        let d = c.clone();
        threadcreate(move || d.send(3).unwrap(), 0); // blocks: buffer full
        threadyield();
        assert_eq!(c.len(), 3);
        // Taking the head moves the blocked sender's value into the buffer.
        assert_eq!(c.recv(), Ok(0));
        assert_eq!(c.len(), 3);
        let got: Vec<i32> = (0..3).map(|_| c.recv().unwrap()).collect();
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(c.nbrecv(), Err(TryRecvError::Empty));
        assert!(c.is_empty());
    })
    .unwrap();
}

#[test]
fn nonblocking_operations_on_unbuffered_channels() {
    run(|| {
        let c = Chan::new(0);
        assert_eq!(c.nbsend(1), Err(TrySendError::Full(1)));
        assert_eq!(c.nbrecv(), Err(TryRecvError::Empty));
        let d = c.clone();
        threadcreate(move || assert_eq!(d.recv(), Ok(2)), 0);
        threadyield(); // the receiver now waits
        assert_eq!(c.nbsend(2), Ok(()));
        let d = c.clone();
        threadcreate(move || d.send(3).unwrap(), 0);
        threadyield(); // the sender now waits
        assert_eq!(c.nbrecv(), Ok(3));
    })
    .unwrap();
}

#[test]
fn close_fails_sends_drains_receives_and_returns_values() {
    run(|| {
        let c = Chan::new(2);
        c.send("a".to_string()).unwrap();
        assert!(!c.is_closed());
        assert!(c.close());
        assert!(!c.close(), "close is true only the first time");
        assert!(c.is_closed());
        assert_eq!(
            c.send("b".to_string()),
            Err(SendError::Closed("b".to_string()))
        );
        assert_eq!(
            c.nbsend("c".to_string()),
            Err(TrySendError::Closed("c".to_string()))
        );
        assert_eq!(c.recv(), Ok("a".to_string()));
        assert_eq!(c.recv(), Err(RecvError::Closed));
        assert_eq!(c.nbrecv(), Err(TryRecvError::Closed));
    })
    .unwrap();
}

#[test]
fn close_releases_blocked_senders_and_receivers() {
    run(|| {
        let results = Rc::new(std::cell::RefCell::new(Vec::new()));
        let s: Chan<i32> = Chan::new(0);
        let r: Chan<i32> = Chan::new(0);
        for i in 0..3 {
            let (s, res) = (s.clone(), results.clone());
            threadcreate(
                move || {
                    let out = format!("{:?}", s.send(i));
                    res.borrow_mut().push(out);
                },
                0,
            );
            let (r, res) = (r.clone(), results.clone());
            threadcreate(
                move || {
                    let out = format!("{:?}", r.recv());
                    res.borrow_mut().push(out);
                },
                0,
            );
        }
        threadyield();
        assert!(results.borrow().is_empty(), "all six are blocked");
        s.close();
        r.close();
        threadyield();
        let mut got = results.borrow().clone();
        got.sort();
        assert_eq!(
            got,
            ["Err(Closed(..))"; 3]
                .into_iter()
                .chain(["Err(Closed)"; 3])
                .collect::<Vec<_>>()
        );
    })
    .unwrap();
    // The values come back to their senders.
    run(|| {
        let s: Chan<i32> = Chan::new(0);
        let back = Rc::new(std::cell::RefCell::new(Vec::new()));
        for i in 0..3 {
            let (s, b) = (s.clone(), back.clone());
            threadcreate(
                move || match s.send(i) {
                    Err(SendError::Closed(v)) => b.borrow_mut().push(v),
                    other => panic!("{other:?}"),
                },
                0,
            );
        }
        threadyield();
        s.close();
        threadyield();
        let mut b = back.borrow().clone();
        b.sort();
        assert_eq!(b, [0, 1, 2]);
    })
    .unwrap();
}

#[test]
fn channels_between_procs() {
    run(|| {
        let c = Chan::new(0);
        let n = 8;
        let per = 2000u64;
        for p in 0..n {
            let c = c.clone();
            proccreate(
                move || {
                    for i in 0..per {
                        c.send(p * per + i).unwrap();
                    }
                },
                0,
            );
        }
        let mut seen = HashSet::new();
        for _ in 0..n * per {
            assert!(seen.insert(c.recv().unwrap()), "no value twice");
        }
        assert_eq!(seen.len() as u64, n * per);
    })
    .unwrap();
}

#[test]
fn channels_work_from_plain_os_threads() {
    // A program thread and an OS thread outside any program.
    let c = Chan::new(0);
    let d = c.clone();
    let outsider = std::thread::spawn(move || {
        for i in 0..100 {
            d.send(i).unwrap();
        }
        let mut got = vec![];
        while let Ok(v) = d.recv() {
            got.push(v);
        }
        got
    });
    run(move || {
        let got: Vec<i32> = (0..100).map(|_| c.recv().unwrap()).collect();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        for i in 0..10 {
            c.send(i * 10).unwrap();
        }
        c.close();
    })
    .unwrap();
    assert_eq!(
        outsider.join().unwrap(),
        (0..10).map(|i| i * 10).collect::<Vec<_>>()
    );

    // Two OS threads, no program at all.
    let c = Chan::new(0);
    let d = c.clone();
    let t = std::thread::spawn(move || (0..1000).map(|_| d.recv().unwrap()).sum::<u64>());
    for i in 0..1000u64 {
        c.send(i).unwrap();
    }
    assert_eq!(t.join().unwrap(), 499500);
}

/// Senders in several procs and plain OS threads push numbered values
/// until the channel is closed under them; every value must end up either
/// received exactly once or back with its sender.
#[test]
fn no_value_is_lost_when_close_races_with_traffic() {
    for nbuf in [0, 1, 16] {
        let c: Chan<u64> = Chan::new(nbuf);
        let returned = Arc::new(Mutex::new(Vec::new()));
        let offered = Arc::new(Mutex::new(0u64));
        let received = Arc::new(Mutex::new(Vec::new()));
        let outsiders: Vec<_> = (0..2u64)
            .map(|k| {
                let (c, ret, off) = (c.clone(), returned.clone(), offered.clone());
                std::thread::spawn(move || {
                    for i in 0.. {
                        let v = (100 + k) << 32 | i;
                        *off.lock().unwrap() += 1;
                        if let Err(SendError::Closed(v)) = c.send(v) {
                            ret.lock().unwrap().push(v);
                            break;
                        }
                    }
                })
            })
            .collect();
        let (c2, ret2, off2, rec2) = (
            c.clone(),
            returned.clone(),
            offered.clone(),
            received.clone(),
        );
        run(move || {
            let c = c2;
            for p in 0..4u64 {
                let (c, ret, off) = (c.clone(), ret2.clone(), off2.clone());
                proccreate(
                    move || {
                        for i in 0.. {
                            let v = p << 32 | i;
                            *off.lock().unwrap() += 1;
                            if let Err(SendError::Closed(v)) = c.send(v) {
                                ret.lock().unwrap().push(v);
                                break;
                            }
                        }
                    },
                    0,
                );
            }
            let mut got = Vec::new();
            for _ in 0..20_000 {
                got.push(c.recv().unwrap());
            }
            c.close();
            // Drain what was buffered before the close.
            while let Ok(v) = c.recv() {
                got.push(v);
            }
            rec2.lock().unwrap().extend(got);
        })
        .unwrap();
        for o in outsiders {
            o.join().unwrap();
        }
        let received = received.lock().unwrap();
        let returned = returned.lock().unwrap();
        let all: HashSet<u64> = received.iter().chain(returned.iter()).copied().collect();
        assert_eq!(
            all.len(),
            received.len() + returned.len(),
            "nothing both received and returned"
        );
        assert_eq!(
            all.len() as u64,
            *offered.lock().unwrap(),
            "every offered value is accounted for"
        );
        assert_eq!(
            returned.len(),
            6,
            "each of the six senders got its last value back"
        );
    }
}

#[test]
fn chanprint_sends_a_formatted_string() {
    run(|| {
        let c = Chan::new(1);
        chanprint!(c, "{}-{:03}", "x", 7).unwrap();
        assert_eq!(c.recv().unwrap(), "x-007");
        c.close();
        assert!(matches!(chanprint!(c, "late"), Err(SendError::Closed(s)) if s == "late"));
    })
    .unwrap();
}

#[test]
fn names_and_identity() {
    let c: Chan<u8> = Chan::new(0);
    assert_eq!(c.name(), None);
    c.set_name("control");
    assert_eq!(c.name().as_deref(), Some("control"));
    assert!(c.same(&c.clone()));
    assert!(!c.same(&Chan::new(0)));
    let dbg = format!("{c:?}");
    assert!(
        dbg.contains("control") && dbg.contains("capacity: 0"),
        "{dbg}"
    );
}

#[test]
fn channels_of_rc_stay_within_a_proc() {
    run(|| {
        let c: Chan<Rc<String>> = Chan::new(0);
        let d = c.clone();
        threadcreate(move || d.send(Rc::new("shared".into())).unwrap(), 0);
        let v = c.recv().unwrap();
        assert_eq!(*v, "shared");
    })
    .unwrap();
}

#[test]
fn errors_print_and_give_values_back() {
    let e = SendError::Closed(vec![1, 2]);
    assert_eq!(e.to_string(), "send on a closed channel");
    assert_eq!(format!("{e:?}"), "Closed(..)");
    assert_eq!(e.into_inner(), vec![1, 2]);
    assert_eq!(TrySendError::Full(3).into_inner(), 3);
    assert_eq!(RecvError::Interrupted.to_string(), "receive interrupted");
    let io: std::io::Error = RecvError::Closed.into();
    assert_eq!(io.kind(), std::io::ErrorKind::BrokenPipe);
}

#[test]
fn a_channel_shared_by_procs_after_heavy_local_use() {
    // A channel used only by one proc becomes biased to it; when another
    // proc starts using it the bias must be revoked without losing values.
    run(|| {
        let c = Chan::new(4);
        for round in 0..50u64 {
            for i in 0..100 {
                c.send(round * 1000 + i).unwrap();
                assert_eq!(c.recv().unwrap(), round * 1000 + i);
            }
            let d = c.clone();
            let done = Chan::new(0);
            let e = done.clone();
            proccreate(
                move || {
                    let mut sum = 0;
                    for _ in 0..100 {
                        sum += d.recv().unwrap();
                    }
                    e.send(sum).unwrap();
                },
                0,
            );
            for i in 0..100 {
                c.send(i).unwrap();
            }
            assert_eq!(done.recv().unwrap(), 4950);
        }
    })
    .unwrap();
}

/// A value that counts its drops, `N` words big: small ones wait in the
/// blocked party's waiter, large ones on its stack; both must arrive
/// intact, come back on failure, and be dropped exactly once.
#[derive(Debug)]
struct Counted<const N: usize> {
    words: [u64; N],
    drops: Arc<AtomicUsize>,
}

impl<const N: usize> Counted<N> {
    /// Value `k`, counted in `made`.
    fn new(k: u64, drops: &Arc<AtomicUsize>, made: &AtomicUsize) -> Counted<N> {
        made.fetch_add(1, SeqCst);
        Counted {
            words: std::array::from_fn(|i| k * 1000 + i as u64),
            drops: drops.clone(),
        }
    }

    fn check(&self, k: u64) {
        assert!(
            self.words
                .iter()
                .enumerate()
                .all(|(i, w)| *w == k * 1000 + i as u64),
            "not value {k}: {:?}",
            self.words
        );
    }
}

impl<const N: usize> Drop for Counted<N> {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

fn every_way_a_value_can_wait<const N: usize>() {
    let drops = Arc::new(AtomicUsize::new(0));
    let made = Arc::new(AtomicUsize::new(0));
    let (d, m) = (drops.clone(), made.clone());
    run(move || {
        let val = |k: u64| Counted::<N>::new(k, &d, &m);
        // A receiver waits first (the sender fills its slot), then a
        // sender waits first (the receiver empties its slot), in one proc
        // and across procs.
        let c: Chan<Counted<N>> = Chan::new(0);
        let done = Chan::new(0);
        let (c2, done2) = (c.clone(), done.clone());
        threadcreate(
            move || {
                for k in 0..4 {
                    c2.recv().unwrap().check(k);
                }
                done2.send(()).unwrap();
            },
            0,
        );
        c.send(val(0)).unwrap();
        threadyield();
        c.send(val(1)).unwrap();
        c.send(val(2)).unwrap();
        c.send(val(3)).unwrap();
        done.recv().unwrap();
        let (c3, done3, d3, m3) = (c.clone(), done.clone(), d.clone(), m.clone());
        proccreate(
            move || {
                c3.recv().unwrap().check(10);
                c3.send(Counted::new(11, &d3, &m3)).unwrap();
                done3.send(()).unwrap();
            },
            0,
        );
        c.send(val(10)).unwrap();
        c.recv().unwrap().check(11);
        done.recv().unwrap();
        // A blocked sender gets its value back when interrupted, and when
        // the channel is closed.
        let back: Chan<(u64, Counted<N>)> = Chan::new(2);
        for k in [20u64, 21] {
            let (c2, back2) = (c.clone(), back.clone());
            let v = val(k);
            let id = threadcreate(
                move || match c2.send(v) {
                    Err(SendError::Interrupted(v)) | Err(SendError::Closed(v)) => {
                        back2.send((k, v)).unwrap()
                    }
                    other => panic!("{other:?}"),
                },
                0,
            );
            threadyield();
            if k == 20 {
                thread9::threadint(id);
            } else {
                c.close();
            }
            let (kk, v) = back.recv().unwrap();
            assert_eq!(kk, k);
            v.check(k);
        }
        // A blocked receiver's slot stays empty when it fails.
        let r: Chan<Counted<N>> = Chan::new(0);
        let r2 = r.clone();
        let out = Chan::new(1);
        let out2 = out.clone();
        threadcreate(move || out2.send(r2.recv().is_err()).unwrap(), 0);
        threadyield();
        r.close();
        assert_eq!(out.recv(), Ok(true));
    })
    .unwrap();
    let made = made.load(SeqCst);
    assert_eq!(made, 8);
    assert_eq!(drops.load(SeqCst), made, "every value dropped exactly once");
}

#[test]
fn values_of_every_size_arrive_intact_and_come_back_on_failure() {
    // Option<Counted<1>> is three words, the most a waiter holds;
    // Counted<2> and Counted<8> wait on the blocked party's stack.
    every_way_a_value_can_wait::<1>();
    every_way_a_value_can_wait::<2>();
    every_way_a_value_can_wait::<8>();
}
