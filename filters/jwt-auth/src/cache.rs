//! The verified-token cache: a bounded map from a token (and the provider that verified it)
//! to its claims, so a token seen again skips parsing and signature checks.
//!
//! Entries are found by a keyed hash of the token's length and last [`TAIL`] bytes (its
//! signature's, which no two valid tokens share), and a hit compares the whole token, so
//! only the very bytes that verified ever hit. The key was a SHA-256 of the token, then a
//! SipHash of all of it: on a cached RS256 token (about 700 bytes) the SHA-256 was 48,000
//! of the request's 79,000 instructions of Wasm fuel and the SipHash 5,100 of 24,400, and
//! neither bought anything the comparison does not give. Tokens that share a key (forged
//! ones may) only miss and, once one verifies, replace each other.
//!
//! An entry never outlives the token's `exp`. A hit still goes through the time checks and
//! the authorization rules; only the signature, issuer and audience checks (which cannot
//! change for the same bytes and keys) are skipped. The cache is per worker and emptied
//! whenever a provider's keys change, so a key removed from a JWKS stops verifying at once.

use crate::claims::{Claims, Times};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::rc::Rc;

/// A token whose signature, issuer and audience were verified.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    /// Its claims.
    pub claims: Claims,
    /// Its time claims.
    pub times: Times,
    /// Its payload segment, base64url as received.
    pub payload_segment: String,
}

/// What the failed-signature set ([`crate::failed`]) knows a token by: the SipHash of all
/// of it under keys drawn at random once per worker (std's `RandomState`, also the cache's
/// keys), so no client can aim a token at another's id. Computed only on a cache miss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenId(u64);

thread_local! {
    static KEYS: RandomState = RandomState::new();
}

/// The [`TokenId`] of a token's text.
pub fn token_id(token: &str) -> TokenId {
    TokenId(KEYS.with(|keys| keys.hash_one(token)))
}

/// How many bytes from the token's end its cache key hashes.
pub const TAIL: usize = 32;

/// Where the cache files `token`: a keyed hash of its length and last [`TAIL`] bytes.
fn slot(token: &str) -> u64 {
    let bytes = token.as_bytes();
    let tail = bytes
        .get(bytes.len().saturating_sub(TAIL)..)
        .unwrap_or_default();
    KEYS.with(|keys| keys.hash_one((bytes.len(), tail)))
}

type Key = (u64, usize);

/// Whether two byte strings are equal, compared eight bytes at a time. Written by hand
/// because `==` on slices compiles to a byte-at-a-time `memcmp` in Wasm: on a cached RS256
/// token (about 700 bytes) that comparison was 7,000 of the request's fuel, this one is
/// well under 1,000 (`tests/tests/cost.rs`).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    a_words.remainder() == b_words.remainder()
        && a_words.zip(b_words).all(|(x, y)| {
            <[u8; 8]>::try_from(x).ok().map(u64::from_ne_bytes)
                == <[u8; 8]>::try_from(y).ok().map(u64::from_ne_bytes)
        })
}

#[derive(Debug)]
struct Entry {
    /// The token, compared on every hit.
    token: Box<str>,
    verified: Rc<Verified>,
    /// Seconds since the epoch after which the entry is dead.
    expires_at: i64,
    /// Insertion number, to tell a live queue slot from a stale one.
    seq: u64,
}

/// The cache.
#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<Key, Entry>,
    /// Keys in insertion order, for eviction; may hold stale slots of removed entries.
    order: VecDeque<(Key, u64)>,
    next_seq: u64,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; 0 disables it.
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            ..TokenCache::default()
        }
    }

    /// The live entry for `token` as verified by `provider` at `now` (seconds).
    pub fn get(&mut self, token: &str, provider: usize, now: u64) -> Option<Rc<Verified>> {
        if self.capacity == 0 {
            return None;
        }
        let key = (slot(token), provider);
        let entry = self.entries.get(&key)?;
        if !same_bytes(entry.token.as_bytes(), token.as_bytes()) {
            // Another token with the same key: a miss (verifying this one replaces it).
            return None;
        }
        if i64::try_from(now).unwrap_or(i64::MAX) >= entry.expires_at {
            self.entries.remove(&key);
            return None;
        }
        Some(Rc::clone(&entry.verified))
    }

    /// Remembers `verified` until its `exp` (tokens without `exp` are not cached: nothing
    /// bounds how long they would stay).
    pub fn insert(&mut self, token: &str, provider: usize, verified: Rc<Verified>, now: u64) {
        let Some(expires_at) = verified.times.exp else {
            return;
        };
        if self.capacity == 0 || i64::try_from(now).unwrap_or(i64::MAX) >= expires_at {
            return;
        }
        let key = (slot(token), provider);
        while self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            let Some((old, seq)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&old);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(
            key,
            Entry {
                token: token.into(),
                verified,
                expires_at,
                seq,
            },
        );
        self.order.push_back((key, seq));
        // Entries removed on expiry leave stale slots behind; drop them before they pile up.
        if self.order.len() > self.capacity.saturating_mul(2) {
            let entries = &self.entries;
            self.order
                .retain(|(k, s)| entries.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    /// Forgets every entry (the keys changed).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(exp: Option<i64>) -> Rc<Verified> {
        Rc::new(Verified {
            claims: Claims::new(),
            times: Times {
                exp,
                nbf: None,
                iat: None,
            },
            payload_segment: String::new(),
        })
    }

    #[test]
    fn remembers_a_token_per_provider() {
        let mut cache = TokenCache::new(4);
        cache.insert("t", 0, verified(Some(100)), 10);
        assert!(cache.get("t", 0, 10).is_some());
        assert!(cache.get("t", 1, 10).is_none());
        assert!(cache.get("u", 0, 10).is_none());
    }

    #[test]
    fn bytes_compare_equal_only_when_equal() {
        let text = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
        for len in 0..text.len() {
            let a = &text.as_bytes()[..len];
            assert!(same_bytes(a, a));
            for at in 0..len {
                let mut b = a.to_vec();
                b[at] ^= 1;
                assert!(!same_bytes(a, &b), "{len} {at}");
            }
            assert!(!same_bytes(a, &text.as_bytes()[..len + 1]));
        }
    }

    #[test]
    fn only_the_very_token_that_verified_hits_even_under_the_same_key() {
        let mut cache = TokenCache::new(4);
        let signature = "s".repeat(TAIL);
        let (good, forged) = (format!("a.b.{signature}"), format!("a.X.{signature}"));
        assert_eq!(
            slot(&good),
            slot(&forged),
            "same length, same tail: one key"
        );
        cache.insert(&good, 0, verified(Some(100)), 10);
        assert!(cache.get(&good, 0, 10).is_some());
        // A forged token under the same key is a miss, not the cached claims.
        assert!(cache.get(&forged, 0, 10).is_none());
        assert!(cache.get(&good, 0, 10).is_some(), "and the entry stays");
        // Tokens of another length or tail are filed apart.
        assert_ne!(slot(&good), slot(&format!("a.b.{signature}t")));
        assert_ne!(
            slot(&good),
            slot(&format!("a.b.{signature}").replace(".s", ".t"))
        );
    }

    #[test]
    fn token_ids_are_stable_within_a_worker_and_tell_tokens_apart() {
        assert_eq!(token_id("a.b.c"), token_id("a.b.c"));
        assert_ne!(token_id("a.b.c"), token_id("a.X.c"));
    }

    #[test]
    fn an_entry_never_outlives_the_token_exp() {
        let mut cache = TokenCache::new(4);
        cache.insert("t", 0, verified(Some(100)), 10);
        assert!(cache.get("t", 0, 99).is_some());
        assert!(cache.get("t", 0, 100).is_none());
        assert!(cache.is_empty());
        cache.insert("late", 0, verified(Some(100)), 100);
        cache.insert("no-exp", 0, verified(None), 10);
        assert!(cache.is_empty());
    }

    #[test]
    fn evicts_the_oldest_when_full() {
        let mut cache = TokenCache::new(2);
        cache.insert("a", 0, verified(Some(100)), 0);
        cache.insert("b", 0, verified(Some(100)), 0);
        cache.insert("c", 0, verified(Some(100)), 0);
        assert_eq!(cache.len(), 2);
        assert!(cache.get("a", 0, 0).is_none());
        assert!(cache.get("b", 0, 0).is_some());
        assert!(cache.get("c", 0, 0).is_some());
    }

    #[test]
    fn stays_bounded_under_churn() {
        let mut cache = TokenCache::new(8);
        for i in 0..10_000u64 {
            let token = i.to_string();
            cache.insert(&token, 0, verified(Some(i as i64 + 2)), i);
            cache.get(&token, 0, i + 5);
        }
        assert!(cache.len() <= 8);
        assert!(cache.order.len() <= 16);
    }

    #[test]
    fn capacity_zero_disables_it() {
        let mut cache = TokenCache::new(0);
        cache.insert("a", 0, verified(Some(100)), 0);
        assert!(cache.get("a", 0, 0).is_none());
    }

    #[test]
    fn clear_forgets_everything() {
        let mut cache = TokenCache::new(2);
        cache.insert("a", 0, verified(Some(100)), 0);
        cache.clear();
        assert!(cache.get("a", 0, 0).is_none());
    }
}
