//! tprimes, Plan 9's prime sieve: a counter thread feeds 2, 3, 4, ... into
//! a chain of filters; each filter prints its first number (a prime),
//! starts the next filter, and passes on the numbers its prime does not
//! divide. The program ends at the first prime above `max`.
//!
//! usage: primes [-p] [-b nbuf] [max]
//!   -p       make each filter a proc (an OS thread) instead of a thread
//!   -b nbuf  buffer each channel with nbuf values (default unbuffered)
//!   max      print the primes up to max, and the next one (default 10000)

use std::io::Write;

use thread9::{Chan, proccreate, threadcreate, threadexitsall};

#[derive(Clone, Copy)]
struct Opts {
    procs: bool,
    nbuf: usize,
    max: u64,
}

fn usage(msg: &str) -> ! {
    eprintln!("primes: {msg}\nusage: primes [-p] [-b nbuf] [max]");
    std::process::exit(2)
}

fn parse(args: &[String]) -> Opts {
    let mut o = Opts {
        procs: false,
        nbuf: 0,
        max: 10000,
    };
    let mut it = args.iter().skip(1);
    let mut rest = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-p" => o.procs = true,
            "-b" => {
                let n = it.next().unwrap_or_else(|| usage("-b needs a buffer size"));
                o.nbuf = n
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("bad buffer size {n:?}")));
            }
            s if s.starts_with("-b") => {
                o.nbuf = s[2..]
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("bad buffer size {:?}", &s[2..])));
            }
            s if s.starts_with('-') && s.len() > 1 => usage(&format!("unknown flag {s}")),
            s => rest.push(s.to_string()),
        }
    }
    match rest.as_slice() {
        [] => {}
        [m] => {
            o.max = m
                .parse()
                .unwrap_or_else(|_| usage(&format!("bad max {m:?}")))
        }
        _ => usage("too many arguments"),
    }
    o
}

fn start(o: Opts, c: Chan<u64>) {
    if o.procs {
        proccreate(move || filter(o, c), 32 << 10);
    } else {
        threadcreate(move || filter(o, c), 32 << 10);
    }
}

fn filter(o: Opts, input: Chan<u64>) {
    let p = input.recv().expect("the counter never closes its channel");
    let mut out = std::io::stdout().lock();
    writeln!(out, "{p}").expect("write to stdout");
    drop(out);
    if p > o.max {
        threadexitsall("");
    }
    let next = Chan::new(o.nbuf);
    start(o, next.clone());
    loop {
        let i = input.recv().expect("the counter never closes its channel");
        if !i.is_multiple_of(p) {
            next.send(i)
                .expect("the next filter never closes its channel");
        }
    }
}

fn main() {
    thread9::threadmain(|args| {
        let o = parse(&args);
        let c = Chan::new(o.nbuf);
        start(o, c.clone());
        for i in 2.. {
            c.send(i)
                .expect("the first filter never closes its channel");
        }
    })
}
