//! Channel names for dumps. Kept apart from the channels so that a dump
//! taken while other procs run never reads a channel that is being freed:
//! it looks the address up here, and a channel removes its name before its
//! memory goes.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard};

static NAMES: LazyLock<Mutex<HashMap<usize, String>>> = LazyLock::new(Default::default);

fn names() -> MutexGuard<'static, HashMap<usize, String>> {
    NAMES.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn set(addr: usize, name: &str) {
    names().insert(addr, name.to_string());
}

pub(crate) fn get(addr: usize) -> Option<String> {
    names().get(&addr).cloned()
}

pub(crate) fn remove(addr: usize) {
    names().remove(&addr);
}

/// How a dump shows the channel at `addr`.
pub(crate) fn describe(addr: usize) -> String {
    get(addr).unwrap_or_else(|| format!("chan {addr:#x}"))
}
