//! `threaddump`: what every proc and thread of a program is doing.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::procs::{self, ProcShared};
use super::program;
use super::threads;
use super::wait::Block;

/// Lists every proc and thread of the calling program: per thread its id,
/// name, the state set by [`threadsetstate`](crate::threadsetstate), and
/// what it is doing (`Running`, `Ready`, `recv on <chan>`, `send on
/// <chan>`, `alt`, ...). Called outside any program, it lists every program
/// in the process.
///
/// ```
/// thread9::run(|| {
///     let c: thread9::Chan<i32> = thread9::Chan::new(0);
///     c.set_name("requests");
///     let d = c.clone();
///     thread9::threadcreate(move || { thread9::threadsetname("server"); let _ = d.recv(); }, 0);
///     thread9::threadyield();
///     let dump = thread9::threaddump();
///     assert!(dump.contains("thread 1 (threadmain): Running"));
///     assert!(dump.contains("thread 2 (server): recv on requests"));
///     c.send(0).unwrap();
/// }).unwrap();
/// ```
pub fn threaddump() -> String {
    let t = threads::current_ptr();
    let prog = if t.is_null() {
        procs::local().map(|l| l.shared.program.clone())
    } else {
        // SAFETY: the current thread is alive.
        Some(unsafe { (*t).proc().program.clone() })
    };
    match prog {
        Some(p) => format(&p.procs()),
        None => {
            let mut s = String::new();
            for p in program::all_programs() {
                let _ = writeln!(s, "program {}:", p.id);
                s.push_str(&format(&p.procs()));
            }
            s
        }
    }
}

pub(crate) fn format(procs: &[Arc<ProcShared>]) -> String {
    let mut s = String::new();
    for p in procs {
        let running = p.running.load(Ordering::Relaxed);
        let mut lines: Vec<(u64, String)> = Vec::new();
        for r in p.threads().iter() {
            let t = r.get();
            let (name, state) = {
                let i = t.info.lock();
                (i.name.clone(), i.state.clone())
            };
            let (what, obj) = t.blocked();
            let doing = if std::ptr::from_ref(t) as usize == running {
                "Running".to_string()
            } else {
                match what {
                    Block::None => "Ready".to_string(),
                    Block::Recv => format!("recv on {}", crate::channel::describe(obj)),
                    Block::Send => format!("send on {}", crate::channel::describe(obj)),
                    Block::Alt => "alt".to_string(),
                    Block::QLock => "qlock".to_string(),
                    Block::RLock => "rlock".to_string(),
                    Block::WLock => "wlock".to_string(),
                    Block::Rendez => "rendez sleep".to_string(),
                    Block::IoCall => format!("ioproc call ({})", crate::channel::describe(obj)),
                    Block::Wait => "waiting".to_string(),
                    Block::Fd => format!("fd wait ({obj})"),
                }
            };
            let mut line = format!("\tthread {} ({})", t.id, name);
            if !state.is_empty() {
                let _ = write!(line, " [{state}]");
            }
            let _ = write!(line, ": {doing}");
            lines.push((t.id, line));
        }
        lines.sort_by_key(|l| l.0);
        match p.tid.load(Ordering::Relaxed) {
            0 => s.push_str("proc (starting):\n"),
            tid => {
                let _ = writeln!(s, "proc {tid}:");
            }
        }
        for (_, l) in lines {
            s.push_str(&l);
            s.push('\n');
        }
    }
    s
}
