//! A per-OS-thread generator (wyrand: a Weyl sequence mixed by one
//! 128-bit multiply): `alt` needs a cheap, unbiased choice among ready
//! entries, not cryptographic randomness. A draw is a handful of
//! instructions, which matters on the path of every alt that has a choice.

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
            // Unseeded (or, once in 2^64 draws, back at zero: reseeding
            // then does no harm).
            x = seed();
        }
        x = x.wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        let r = (t >> 64) as u64 ^ t as u64;
        // Lemire's multiply-shift: the bias is below n / 2^64.
        ((u128::from(r) * n as u128) >> 64) as usize
    })
}

#[cfg(test)]
mod tests {
    use super::below;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut seen = [0u32; 7];
        for _ in 0..70_000 {
            seen[below(7)] += 1;
        }
        // Each count is 10,000 give or take ~93 (one deviation); 15% off
        // is over 16 deviations.
        for c in seen {
            assert!((8_500..11_500).contains(&c), "{seen:?}");
        }
        assert_eq!(below(1), 0);
    }
}
