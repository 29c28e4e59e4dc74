//! Recently failed signatures: a small per-worker set of the ids of tokens (with the
//! provider) whose signature did not verify, kept a short while, so a forged token sent
//! again costs a hash, not an RSA or ECDSA verification.
//!
//! An id is a keyed 64-bit hash ([`TokenId`]); two tokens share one only by chance (odds
//! about 2^-64 per pair, and the keys are secret to the worker), and such a match can only
//! refuse a token, never let one through.
//!
//! Only a failed signature is remembered: whether the same bytes verify with the same keys
//! cannot change. The set is emptied whenever a provider's keys change (a token without
//! `kid` that failed may verify with a key added since), and is bounded in size and age,
//! so a flood of distinct forgeries only pushes out older entries.

use crate::cache::{token_id, TokenId};
use std::collections::VecDeque;

/// How many failed tokens each worker remembers.
pub const CAPACITY: usize = 256;
/// How long a failed token is remembered, in seconds.
pub const TTL_SECS: u64 = 30;

type Key = (TokenId, usize);

/// The set, oldest first.
#[derive(Debug, Default)]
pub struct FailedSignatures {
    entries: VecDeque<(Key, u64)>,
}

impl FailedSignatures {
    /// Whether `token` failed verification for `provider` less than [`TTL_SECS`] before
    /// `now` (seconds).
    pub fn contains(&mut self, token: &str, provider: usize, now: u64) -> bool {
        self.contains_id(token_id(token), provider, now)
    }

    /// [`FailedSignatures::contains`] for a token whose id is known.
    pub fn contains_id(&mut self, id: TokenId, provider: usize, now: u64) -> bool {
        self.expire(now);
        let key = (id, provider);
        self.entries.iter().any(|(k, _)| *k == key)
    }

    /// Remembers that `token` failed verification for `provider` at `now`.
    pub fn insert(&mut self, token: &str, provider: usize, now: u64) {
        self.insert_id(token_id(token), provider, now);
    }

    /// [`FailedSignatures::insert`] for a token whose id is known.
    pub fn insert_id(&mut self, id: TokenId, provider: usize, now: u64) {
        self.expire(now);
        let key = (id, provider);
        if self.entries.iter().any(|(k, _)| *k == key) {
            return;
        }
        if self.entries.len() >= CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back((key, now.saturating_add(TTL_SECS)));
    }

    /// Forgets every entry (the keys changed).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn expire(&mut self, now: u64) {
        while self.entries.front().is_some_and(|(_, until)| *until <= now) {
            self.entries.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_failed_token_per_provider_for_a_short_while() {
        let mut failed = FailedSignatures::default();
        failed.insert("forged", 0, 100);
        assert!(failed.contains("forged", 0, 100));
        assert!(failed.contains("forged", 0, 100 + TTL_SECS - 1));
        assert!(!failed.contains("forged", 1, 100));
        assert!(!failed.contains("other", 0, 100));
        assert!(!failed.contains("forged", 0, 100 + TTL_SECS));
        assert!(failed.is_empty());
    }

    #[test]
    fn stays_bounded_under_a_flood_of_distinct_forgeries() {
        let mut failed = FailedSignatures::default();
        for i in 0..10 * CAPACITY {
            failed.insert(&i.to_string(), 0, 5);
        }
        assert_eq!(failed.len(), CAPACITY);
        assert!(!failed.contains("0", 0, 5));
        assert!(failed.contains(&(10 * CAPACITY - 1).to_string(), 0, 5));
        failed.insert(&(10 * CAPACITY - 1).to_string(), 0, 5);
        assert_eq!(failed.len(), CAPACITY);
    }

    #[test]
    fn clear_forgets_everything() {
        let mut failed = FailedSignatures::default();
        failed.insert("forged", 0, 1);
        failed.clear();
        assert!(!failed.contains("forged", 0, 1));
    }
}
