//! Remote JWKS: when to fetch, the proxy-wide lease that keeps one fetch in flight, and
//! the key set every worker shares through Envoy's shared data.
//!
//! Two shared-data records per source (cluster + URI), both small text:
//! - `<base>|lease`: `"<until_ms> <kid_refetch_ms> <fetching>"`. Whoever moves `until_ms`
//!   into the future with a compare-and-swap holds the lease and fetches (`fetching` 1); a
//!   failed fetch leaves `until_ms` in the future for the retry interval (backoff,
//!   `fetching` 0). `kid_refetch_ms` is when the last fetch for an unknown `kid` started:
//!   such fetches are rate-limited proxy-wide.
//! - `<base>|keys`: `"<fetched_at_ms>\n<jwks>"`, the last good key set. A failed fetch
//!   never replaces it: the last good keys stay in use.
//!
//! Each worker keeps its parsed copy and re-reads the record when it sees a newer
//! `fetched_at_ms`. A request that needs keys while a fetch is in flight anywhere in the
//! proxy waits for it ([`Lookup::Wait`]) rather than being refused. Kids still unknown after
//! a fetch are remembered (negative cache) until the next refetch is allowed, so a flood of
//! forged kids costs one lookup each.

use crate::jwks::{self, KeySet, Limits, Strictness};
use meshward_shared::shared_data::{self, Decision, Store, UpdateError};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// How many compare-and-swap attempts a lease change gets before giving up.
const CAS_ATTEMPTS: u32 = 8;
/// The most unknown kids remembered per source; beyond it the oldest memory is dropped.
const MAX_NEGATIVE_KIDS: usize = 256;

/// A remote JWKS and how it is fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSource {
    /// The Envoy cluster the fetch goes through.
    pub cluster: String,
    /// `:authority` of the fetch.
    pub authority: String,
    /// `:path` of the fetch.
    pub path: String,
    /// How long a fetch may take.
    pub timeout: Duration,
    /// How long fetched keys are fresh; a refresh starts at nine tenths of it.
    pub cache_duration: Duration,
    /// The least time between two fetches caused by an unknown `kid`.
    pub min_refetch_interval: Duration,
    /// How long to wait after a failed fetch before the next one.
    pub retry_interval: Duration,
    /// Bounds on the fetched document.
    pub limits: Limits,
    /// The shared-data key prefix; the same source in two configurations shares keys.
    pub shared_key: String,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RemoteSource {
    fn lease_key(&self) -> String {
        format!("{}|lease", self.shared_key)
    }
    fn keys_key(&self) -> String {
        format!("{}|keys", self.shared_key)
    }
}

/// The lease record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Lease {
    until_ms: u64,
    kid_refetch_ms: u64,
    /// Whether `until_ms` bounds a fetch in flight (rather than a backoff).
    fetching: bool,
}

impl Lease {
    fn decode(bytes: Option<&[u8]>) -> Lease {
        let text = bytes
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("");
        let mut numbers = text.split(' ').map(|n| n.parse::<u64>().ok());
        let mut next = || numbers.next().flatten().unwrap_or(0);
        // An unreadable record reads as free: the next writer repairs it.
        Lease {
            until_ms: next(),
            kid_refetch_ms: next(),
            fetching: next() == 1,
        }
    }
    fn encode(self) -> Vec<u8> {
        format!(
            "{} {} {}",
            self.until_ms,
            self.kid_refetch_ms,
            u8::from(self.fetching)
        )
        .into_bytes()
    }
}

/// Why a fetch is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// No keys yet, or they are due for refresh.
    Refresh,
    /// A token names a `kid` the keys do not have.
    UnknownKid,
}

/// The answer to a lease request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The caller holds the lease and must fetch, then call [`Remote::fetched`].
    Acquired,
    /// Someone else is fetching; the lease runs until this time (ms).
    InFlight(u64),
    /// A failed fetch is backing off, or an unknown-kid refetch ran too recently; no fetch
    /// before this time (ms).
    NotBefore(u64),
}

/// Tries to take the lease for `source` at `now_ms`.
pub fn acquire<S: Store>(
    store: &mut S,
    source: &RemoteSource,
    now_ms: u64,
    why: Why,
) -> Result<LeaseOutcome, UpdateError> {
    shared_data::update(store, &source.lease_key(), CAS_ATTEMPTS, |current| {
        let lease = Lease::decode(current);
        if lease.until_ms > now_ms {
            return Decision::Keep(if lease.fetching {
                LeaseOutcome::InFlight(lease.until_ms)
            } else {
                LeaseOutcome::NotBefore(lease.until_ms)
            });
        }
        let mut next = Lease {
            until_ms: now_ms
                .saturating_add(ms(source.timeout))
                .saturating_add(1000),
            fetching: true,
            ..lease
        };
        if why == Why::UnknownKid {
            let allowed_at = lease
                .kid_refetch_ms
                .saturating_add(ms(source.min_refetch_interval));
            if lease.kid_refetch_ms != 0 && now_ms < allowed_at {
                return Decision::Keep(LeaseOutcome::NotBefore(allowed_at));
            }
            next.kid_refetch_ms = now_ms;
        }
        Decision::Write(next.encode(), LeaseOutcome::Acquired)
    })
}

/// Whether a fetch for `source` is in flight at `now_ms`, and until when it may run.
pub fn in_flight<S: Store>(store: &mut S, source: &RemoteSource, now_ms: u64) -> Option<u64> {
    let value = store.get(&source.lease_key()).ok().flatten()?;
    let lease = Lease::decode(Some(&value.bytes));
    (lease.fetching && lease.until_ms > now_ms).then_some(lease.until_ms)
}

/// The shared keys record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeysRecord {
    /// When the keys were fetched (ms since the epoch).
    pub fetched_at_ms: u64,
    /// The JWKS document.
    pub jwks: Vec<u8>,
}

impl KeysRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = format!("{}\n", self.fetched_at_ms).into_bytes();
        out.extend_from_slice(&self.jwks);
        out
    }

    fn decode(bytes: &[u8]) -> Option<KeysRecord> {
        let newline = bytes.iter().position(|&b| b == b'\n')?;
        let (head, rest) = bytes.split_at(newline);
        Some(KeysRecord {
            fetched_at_ms: std::str::from_utf8(head).ok()?.parse().ok()?,
            jwks: rest.get(1..)?.to_vec(),
        })
    }
}

/// What a fetch brought.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchResult {
    /// A key set was published.
    Published {
        /// Keys skipped as unusable.
        skipped: usize,
    },
    /// The fetch failed; the last good keys stay.
    Failed(String),
}

/// One worker's view of one remote source.
#[derive(Debug, Default)]
pub struct Remote {
    keys: Option<(u64, Rc<KeySet>)>,
    negative: HashMap<String, u64>,
}

/// What a request can do with a source's keys.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// Use these keys (they may lack the token's kid: the verifier says so).
    Ready(Rc<KeySet>),
    /// The caller holds the lease: fetch, then call [`Remote::fetched`] and ask again.
    Fetch,
    /// No keys can be had now.
    Unavailable,
    /// A fetch is in flight elsewhere in the proxy: wait for it, until this time (ms) at
    /// most, then ask again.
    Wait(u64),
}

impl Remote {
    /// The keys this worker holds, if any.
    pub fn keys(&self) -> Option<Rc<KeySet>> {
        self.keys.as_ref().map(|(_, k)| Rc::clone(k))
    }

    /// When this worker's keys were fetched.
    pub fn fetched_at_ms(&self) -> Option<u64> {
        self.keys.as_ref().map(|(at, _)| *at)
    }

    /// Re-reads the shared keys record; `true` when this worker's keys changed.
    pub fn sync<S: Store>(&mut self, store: &mut S, source: &RemoteSource) -> bool {
        let Ok(Some(value)) = store.get(&source.keys_key()) else {
            return false;
        };
        let Some(record) = KeysRecord::decode(&value.bytes) else {
            return false;
        };
        if self.fetched_at_ms() == Some(record.fetched_at_ms) {
            return false;
        }
        // The record was validated before it was published; a worker that cannot parse
        // it (a different limit in another configuration) keeps what it has.
        match jwks::parse(&record.jwks, source.limits, Strictness::Remote) {
            Ok(parsed) => {
                self.keys = Some((record.fetched_at_ms, Rc::new(parsed.set)));
                self.negative.clear();
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the keys are due for a refresh at `now_ms` (none yet, or nine tenths of
    /// the cache duration gone).
    pub fn refresh_due(&self, source: &RemoteSource, now_ms: u64) -> bool {
        match self.fetched_at_ms() {
            None => true,
            Some(at) => now_ms >= at.saturating_add(ms(source.cache_duration) / 10 * 9),
        }
    }

    /// Keys for a token naming `kid` (or none) at `now_ms`: the local copy when it has the
    /// kid, else a newer shared copy, else a fetch if the lease allows (and `may_fetch`),
    /// else a wait for a fetch in flight, else what there is.
    pub fn lookup<S: Store>(
        &mut self,
        store: &mut S,
        source: &RemoteSource,
        kid: Option<&str>,
        now_ms: u64,
        may_fetch: bool,
    ) -> Lookup {
        let has = |keys: &KeySet| match kid {
            Some(kid) => keys.keys.iter().any(|k| k.kid.as_deref() == Some(kid)),
            None => true,
        };
        if let Some(keys) = self.keys().filter(|k| has(k)) {
            return Lookup::Ready(keys);
        }
        let kid_key = kid.unwrap_or("");
        if let Some(keys) = self.keys() {
            if self
                .negative
                .get(kid_key)
                .is_some_and(|&until| now_ms < until)
            {
                return Lookup::Ready(keys);
            }
        }
        self.sync(store, source);
        if let Some(keys) = self.keys().filter(|k| has(k)) {
            return Lookup::Ready(keys);
        }
        let outcome = if may_fetch {
            let why = if self.keys.is_some() {
                Why::UnknownKid
            } else {
                Why::Refresh
            };
            acquire(store, source, now_ms, why)
        } else {
            Ok(in_flight(store, source, now_ms)
                .map_or(LeaseOutcome::NotBefore(now_ms), LeaseOutcome::InFlight))
        };
        match outcome {
            Ok(LeaseOutcome::Acquired) => Lookup::Fetch,
            Ok(LeaseOutcome::InFlight(until)) => Lookup::Wait(until),
            Ok(LeaseOutcome::NotBefore(until)) => match self.keys() {
                Some(keys) => {
                    if until > now_ms {
                        self.remember_unknown(kid_key, until);
                    }
                    Lookup::Ready(keys)
                }
                // Without keys, every request looks again: reading an absent record is
                // cheap, and the keys may land any moment.
                None => Lookup::Unavailable,
            },
            // Shared data failing is the host's problem; answer with what there is.
            Err(_) => self.keys().map_or(Lookup::Unavailable, Lookup::Ready),
        }
    }

    fn remember_unknown(&mut self, kid: &str, until_ms: u64) {
        if self.negative.len() >= MAX_NEGATIVE_KIDS && !self.negative.contains_key(kid) {
            self.negative.clear();
        }
        self.negative.insert(kid.to_string(), until_ms);
    }

    /// Completes a fetch this worker made while holding the lease: publishes a good key
    /// set to every worker and releases the lease, or keeps the last good keys and backs
    /// off. `reply` is the HTTP status and body, or `None` when the call failed.
    pub fn fetched<S: Store>(
        &mut self,
        store: &mut S,
        source: &RemoteSource,
        now_ms: u64,
        reply: Option<(u16, &[u8])>,
    ) -> FetchResult {
        let parsed = match reply {
            None => Err("the JWKS fetch failed or timed out".to_string()),
            Some((200, body)) => jwks::parse(body, source.limits, Strictness::Remote)
                .map(|parsed| (parsed, body))
                .map_err(|err| format!("the JWKS is unusable: {err}")),
            Some((status, _)) => Err(format!("the JWKS fetch answered HTTP {status}")),
        };
        let backoff_until = now_ms.saturating_add(ms(source.retry_interval));
        let (parsed, body) = match parsed {
            Ok(found) => found,
            Err(err) => {
                release(store, source, backoff_until);
                return FetchResult::Failed(err);
            }
        };
        let record = KeysRecord {
            fetched_at_ms: now_ms,
            jwks: body.to_vec(),
        };
        // Unconditional: only the lease holder writes this record.
        if let Err(status) = store.set(&source.keys_key(), &record.encode(), 0) {
            release(store, source, backoff_until);
            return FetchResult::Failed(format!("cannot share the fetched keys: {status}"));
        }
        self.keys = Some((now_ms, Rc::new(parsed.set)));
        self.negative.clear();
        release(store, source, 0);
        FetchResult::Published {
            skipped: parsed.skipped,
        }
    }
}

/// Sets the lease's `until_ms` (0 frees it), keeping the unknown-kid time.
fn release<S: Store>(store: &mut S, source: &RemoteSource, until_ms: u64) {
    // A lease that cannot be written back expires by itself after the fetch timeout.
    let _ = shared_data::update(store, &source.lease_key(), CAS_ATTEMPTS, |current| {
        let lease = Lease::decode(current);
        Decision::Write(
            Lease {
                until_ms,
                fetching: false,
                ..lease
            }
            .encode(),
            (),
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use meshward_shared::shared_data::MemoryStore;

    fn source() -> RemoteSource {
        RemoteSource {
            cluster: "jwks".into(),
            authority: "idp.test".into(),
            path: "/jwks.json".into(),
            timeout: Duration::from_secs(2),
            cache_duration: Duration::from_secs(600),
            min_refetch_interval: Duration::from_secs(30),
            retry_interval: Duration::from_secs(10),
            limits: Limits {
                max_bytes: 64 * 1024,
                max_keys: 16,
            },
            shared_key: "meshward-jwt-auth|jwks|test".into(),
        }
    }

    fn body() -> Vec<u8> {
        fixtures::public_jwks().to_string().into_bytes()
    }

    const T0: u64 = 1_000_000;

    #[test]
    fn one_worker_fetches_and_every_worker_gets_the_keys() {
        let (mut store, src) = (MemoryStore::default(), source());
        let (mut a, mut b) = (Remote::default(), Remote::default());
        assert!(matches!(
            a.lookup(&mut store, &src, None, T0, true),
            Lookup::Fetch
        ));
        // Worker b waits for a's fetch instead of starting its own.
        assert!(matches!(
            b.lookup(&mut store, &src, None, T0, true),
            Lookup::Wait(until) if until == T0 + 3_000
        ));
        assert!(matches!(
            b.lookup(&mut store, &src, None, T0, false),
            Lookup::Wait(_)
        ));
        let result = a.fetched(&mut store, &src, T0 + 50, Some((200, &body())));
        assert_eq!(result, FetchResult::Published { skipped: 0 });
        let Lookup::Ready(keys) =
            b.lookup(&mut store, &src, Some(fixtures::RSA_KID), T0 + 60, true)
        else {
            panic!("worker b should read the shared keys");
        };
        assert_eq!(keys.keys.len(), 4);
    }

    #[test]
    fn a_failed_fetch_keeps_the_last_good_keys_and_backs_off() {
        let (mut store, src) = (MemoryStore::default(), source());
        let mut a = Remote::default();
        assert!(matches!(
            a.lookup(&mut store, &src, None, T0, true),
            Lookup::Fetch
        ));
        a.fetched(&mut store, &src, T0, Some((200, &body())));
        let refresh_at = T0 + 540_000;
        assert!(!a.refresh_due(&src, refresh_at - 1));
        assert!(a.refresh_due(&src, refresh_at));
        assert_eq!(
            acquire(&mut store, &src, refresh_at, Why::Refresh),
            Ok(LeaseOutcome::Acquired)
        );
        for reply in [
            None,
            Some((503, &b"down"[..])),
            Some((200, &b"{\"keys\":[]}"[..])),
            Some((200, &b"<html>"[..])),
        ] {
            assert!(matches!(
                a.fetched(&mut store, &src, refresh_at, reply),
                FetchResult::Failed(_)
            ));
        }
        assert_eq!(a.fetched_at_ms(), Some(T0));
        let mut b = Remote::default();
        assert!(
            b.sync(&mut store, &src),
            "the last good keys are still shared"
        );
        assert_eq!(
            acquire(&mut store, &src, refresh_at + 9_999, Why::Refresh),
            Ok(LeaseOutcome::NotBefore(refresh_at + 10_000))
        );
        assert_eq!(
            acquire(&mut store, &src, refresh_at + 10_000, Why::Refresh),
            Ok(LeaseOutcome::Acquired)
        );
    }

    #[test]
    fn an_unknown_kid_triggers_a_rate_limited_refetch() {
        let (mut store, src) = (MemoryStore::default(), source());
        let (mut a, mut b) = (Remote::default(), Remote::default());
        a.lookup(&mut store, &src, None, T0, true);
        a.fetched(&mut store, &src, T0, Some((200, &body())));

        assert!(matches!(
            a.lookup(&mut store, &src, Some("new"), T0 + 1, true),
            Lookup::Fetch
        ));
        a.fetched(&mut store, &src, T0 + 2, Some((200, &body())));
        // Still unknown after the refetch: both workers answer from their keys, no fetch.
        for worker in [&mut a, &mut b] {
            for now in [T0 + 3, T0 + 29_999] {
                assert!(matches!(
                    worker.lookup(&mut store, &src, Some("new"), now, true),
                    Lookup::Ready(_)
                ));
            }
        }
        assert!(matches!(
            b.lookup(&mut store, &src, Some("other"), T0 + 30_001, true),
            Lookup::Fetch
        ));
    }

    #[test]
    fn a_new_kid_published_by_the_idp_is_found_by_the_refetch() {
        let (mut store, src) = (MemoryStore::default(), source());
        let mut a = Remote::default();
        a.lookup(&mut store, &src, None, T0, true);
        let only_rsa = serde_json::json!({ "keys": [fixtures::rsa_jwk(&fixtures::rsa_private_key(), fixtures::RSA_KID)] });
        a.fetched(
            &mut store,
            &src,
            T0,
            Some((200, only_rsa.to_string().as_bytes())),
        );
        assert!(matches!(
            a.lookup(&mut store, &src, Some(fixtures::P256_KID), T0 + 1, true),
            Lookup::Fetch
        ));
        a.fetched(&mut store, &src, T0 + 2, Some((200, &body())));
        assert!(matches!(
            a.lookup(&mut store, &src, Some(fixtures::P256_KID), T0 + 3, true),
            Lookup::Ready(_)
        ));
    }

    #[test]
    fn a_lease_whose_holder_vanished_expires_after_the_timeout() {
        let (mut store, src) = (MemoryStore::default(), source());
        assert_eq!(
            acquire(&mut store, &src, T0, Why::Refresh),
            Ok(LeaseOutcome::Acquired)
        );
        assert_eq!(
            acquire(&mut store, &src, T0 + 2_999, Why::Refresh),
            Ok(LeaseOutcome::InFlight(T0 + 3_000))
        );
        assert_eq!(
            acquire(&mut store, &src, T0 + 3_000, Why::Refresh),
            Ok(LeaseOutcome::Acquired)
        );
    }

    #[test]
    fn a_failed_fetch_ends_the_wait_and_backs_off() {
        let (mut store, src) = (MemoryStore::default(), source());
        let (mut a, mut b) = (Remote::default(), Remote::default());
        a.lookup(&mut store, &src, None, T0, true);
        assert!(matches!(
            b.lookup(&mut store, &src, None, T0, true),
            Lookup::Wait(_)
        ));
        a.fetched(&mut store, &src, T0 + 100, None);
        assert!(matches!(
            b.lookup(&mut store, &src, None, T0 + 101, true),
            Lookup::Unavailable
        ));
        assert_eq!(in_flight(&mut store, &src, T0 + 101), None);
    }

    #[test]
    fn without_leave_to_fetch_a_lookup_never_takes_the_lease() {
        let (mut store, src) = (MemoryStore::default(), source());
        let mut a = Remote::default();
        assert!(matches!(
            a.lookup(&mut store, &src, None, T0, false),
            Lookup::Unavailable
        ));
        assert_eq!(
            acquire(&mut store, &src, T0, Why::Refresh),
            Ok(LeaseOutcome::Acquired)
        );
    }

    #[test]
    fn unreadable_records_read_as_empty() {
        assert_eq!(Lease::decode(Some(b"garbage")), Lease::default());
        let lease = Lease {
            until_ms: 9,
            kid_refetch_ms: 3,
            fetching: true,
        };
        assert_eq!(Lease::decode(Some(&lease.encode())), lease);
        assert_eq!(Lease::decode(None), Lease::default());
        assert_eq!(KeysRecord::decode(b"no newline"), None);
        assert_eq!(KeysRecord::decode(b"x\n{}"), None);
        let record = KeysRecord {
            fetched_at_ms: 5,
            jwks: b"{}".to_vec(),
        };
        assert_eq!(KeysRecord::decode(&record.encode()), Some(record));
    }

    #[test]
    fn the_negative_cache_stays_bounded() {
        let mut remote = Remote::default();
        for i in 0..1000 {
            remote.remember_unknown(&i.to_string(), 5);
        }
        assert!(remote.negative.len() <= MAX_NEGATIVE_KIDS);
    }
}
