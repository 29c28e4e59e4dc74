//! Stickiness: a stable hash of the session key, weighted rendezvous hashing that keeps a
//! key in one region while matching the weights over many keys, and the probe share.
//!
//! Weighted rendezvous hashing (HRW): each region scores the key as `-ln(u) / weight`, with
//! `u` a uniform number in (0, 1] drawn from the key and the region; the lowest score wins.
//! A region wins with probability `weight / total`, and when a region drops out only the
//! keys it held move, spread over the others by their weights; keys elsewhere stay put.

/// A stable 64-bit hash of `bytes`: FNV-1a, then a finalising mix so nearby keys (session
/// ids that differ in one character) land far apart. The same on every platform and build.
pub fn hash_key(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(hash)
}

/// A region's seed for rendezvous hashing, from its name.
pub fn region_seed(name: &str) -> u64 {
    hash_key(name.as_bytes())
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// A uniform number in (0, 1] from 53 bits of `h`.
fn unit(h: u64) -> f64 {
    ((h >> 11) + 1) as f64 / (1u64 << 53) as f64
}

/// Region `seed`'s rendezvous score for the key: lower wins. A region of weight 0 (or less)
/// never wins.
pub fn score(key_hash: u64, seed: u64, weight: f64) -> f64 {
    if weight <= 0.0 || weight.is_nan() {
        return f64::INFINITY;
    }
    -unit(mix(key_hash ^ seed)).ln() / weight
}

/// Salt so that the probe draw is independent of the region draw.
const PROBE_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// Whether this key is among the `percent` of keys that a recovering region (seed `seed`)
/// takes as probes. Fixed per key and region, so a session probes or not for the whole
/// probing period.
pub fn in_probe_share(key_hash: u64, seed: u64, percent: u8) -> bool {
    mix(key_hash ^ seed ^ PROBE_SALT) % 100 < u64::from(percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The winner among `weights` for key `i`.
    fn winner(weights: &[f64], seeds: &[u64], i: u64) -> usize {
        let key = hash_key(format!("session-{i}").as_bytes());
        let mut best = (f64::INFINITY, 0);
        for (r, (&w, &s)) in weights.iter().zip(seeds).enumerate() {
            let sc = score(key, s, w);
            if sc < best.0 {
                best = (sc, r);
            }
        }
        best.1
    }

    #[test]
    fn the_hash_is_stable_across_builds() {
        // Pinned values: changing the hash moves every session to another region.
        assert_eq!(hash_key(b"abc"), hash_key(b"abc"));
        assert_ne!(hash_key(b"abc"), hash_key(b"abd"));
        assert_eq!(hash_key(b"session-1"), 0xf267_abb3_2d45_0b1f);
    }

    #[test]
    fn units_are_in_the_open_closed_interval() {
        assert!(unit(0) > 0.0);
        assert!(unit(u64::MAX) <= 1.0);
    }

    #[test]
    fn weights_of_zero_never_win() {
        assert_eq!(score(1, 2, 0.0), f64::INFINITY);
        assert_eq!(score(1, 2, f64::NAN), f64::INFINITY);
        assert!(score(1, 2, 1.0).is_finite());
    }

    #[test]
    fn the_split_matches_the_weights_over_many_keys() {
        let weights = [70.0, 20.0, 10.0];
        let seeds = [region_seed("eu"), region_seed("us"), region_seed("ap")];
        let n = 100_000u64;
        let mut counts = [0u64; 3];
        for i in 0..n {
            counts[winner(&weights, &seeds, i)] += 1;
        }
        // Each share is binomial: 5 standard deviations is at most 0.73 points at n = 100000.
        for (r, &w) in weights.iter().enumerate() {
            let p = w / 100.0;
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            let share = counts[r] as f64 / n as f64;
            assert!(
                (share - p).abs() < 5.0 * sd,
                "region {r}: {share:.4} of keys, expected {p} (sd {sd:.4})"
            );
        }
    }

    #[test]
    fn only_the_keys_of_a_removed_region_move() {
        let seeds = [region_seed("eu"), region_seed("us"), region_seed("ap")];
        let all = [70.0, 20.0, 10.0];
        let without_us = [70.0, 0.0, 10.0];
        let mut moved_to = [0u64; 3];
        for i in 0..20_000 {
            let before = winner(&all, &seeds, i);
            let after = winner(&without_us, &seeds, i);
            if before != 1 {
                assert_eq!(before, after, "key {i} moved although its region stayed");
            } else {
                moved_to[after] += 1;
            }
        }
        // The orphaned keys spread by the remaining weights, 7 : 1.
        let share_eu = moved_to[0] as f64 / (moved_to[0] + moved_to[2]) as f64;
        assert!((share_eu - 0.875).abs() < 0.03, "{share_eu}");
    }

    #[test]
    fn the_probe_share_is_close_to_its_percentage() {
        let seed = region_seed("us");
        let n = 50_000u64;
        let probes = (0..n)
            .filter(|i| in_probe_share(hash_key(&i.to_le_bytes()), seed, 10))
            .count() as f64;
        let share = probes / n as f64;
        assert!((share - 0.10).abs() < 0.01, "{share}");
        assert!(!in_probe_share(7, seed, 0));
        assert!(in_probe_share(7, seed, 100));
    }
}
