//! A per-OS-thread xorshift generator: `alt` needs a cheap, unbiased choice
//! among ready entries, not cryptographic randomness.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static STATE: Cell<u64> = const { Cell::new(0) };
}

static SEED: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);

#[cold]
fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let s = SEED.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ t;
    splitmix(s) | 1
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniformly distributed number in `0..n` (`n > 0`).
#[inline]
pub(crate) fn below(n: usize) -> usize {
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            x = seed();
        }
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        // Lemire's multiply-shift: unbiased enough for n far below 2^32.
        (((r >> 32) * n as u64) >> 32) as usize
    })
}
