//! Applies the rules to one request: which rules match, what each one's bucket says, and
//! whether the request is refused. Reaches shared data only through a [`Store`], so it is
//! tested on an in-memory store with Envoy's rules.

use crate::bucket::Take;
use crate::config::{Config, FailureMode, MissingKey, Mode, Rule};
use crate::keys;
use crate::request::Request;
use crate::table::{self, Fingerprint, Placement, SOLE};
use meshward_shared::shared_data::{Store, UpdateError};
use std::time::Duration;

/// What one rule said about the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The rule's bucket had a token.
    Allowed {
        /// Whole tokens left.
        remaining: u64,
        /// Time until the bucket holds one more token.
        next_token_in: Duration,
    },
    /// An enforced rule's bucket was empty: the request is refused.
    Limited {
        /// Time until a token is available.
        retry_after: Duration,
    },
    /// A shadow rule's bucket was empty: the request goes on, marked and counted.
    ShadowLimited {
        /// Time until a token is available.
        retry_after: Duration,
    },
    /// The bucket could not be reached; the failure mode decides.
    Failed(Failure),
}

/// Why a bucket could not be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The proxy did not tell the time.
    NoClock,
    /// Shared data failed, or the compare-and-swap attempts ran out.
    Store(UpdateError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NoClock => write!(f, "the proxy did not give the current time"),
            Failure::Store(e) => write!(f, "{e}"),
        }
    }
}

/// One matching rule's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleResult {
    /// The rule's index in the configuration.
    pub rule: usize,
    /// What it said.
    pub outcome: Outcome,
    /// The key took the slot of another key whose bucket had refilled.
    pub reclaimed: bool,
    /// The key's set had no room; the rule's shared overflow bucket answered.
    pub overflowed: bool,
}

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An enforced rule's bucket was empty.
    Limited {
        /// The rule's index.
        rule: usize,
        /// Time until a token is available.
        retry_after: Duration,
    },
    /// An enforced rule's bucket could not be reached and `failure_mode` is `deny`.
    Unavailable {
        /// The rule's index.
        rule: usize,
    },
}

/// Every matching rule's answer, in order, and the refusal if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The answers of the rules that applied, up to and including the refusing one.
    pub results: Vec<RuleResult>,
    /// Set when the request is refused; rules after the refusing one were not checked.
    pub refusal: Option<Refusal>,
}

/// Whether `rule` refuses a request when its bucket cannot be reached: only an enforced rule
/// under `failure_mode: deny`. A shadow rule never refuses, whatever the failure mode: it is
/// there to try a limit out, so it counts the failure and lets the request through.
pub fn fails_closed(config: &Config, rule: &Rule) -> bool {
    config.failure_mode == FailureMode::Deny && rule.mode == Mode::Enforce
}

/// Checks `request` against every rule in order, stopping at the first refusal.
/// `clock` reads the proxy's clock in nanoseconds since the epoch (`None` if it is
/// unknown); it is called once, when the first rule applies.
pub fn check<S: Store>(
    config: &Config,
    request: &dyn Request,
    clock: impl FnOnce() -> Option<u64>,
    store: &mut S,
) -> Verdict {
    let mut verdict = Verdict::default();
    let mut clock = Some(clock);
    let mut read: Option<Option<u64>> = None;
    for (index, rule) in config.rules.iter().enumerate() {
        // A rule only the rate limit service counts is the `global` module's.
        let Some(local) = &rule.local else {
            continue;
        };
        if !rule.applies_to(request) {
            continue;
        }
        let fingerprint = if rule.key.is_empty() {
            SOLE
        } else {
            let key = keys::build(&rule.key, request);
            if key.incomplete && rule.missing_key == MissingKey::Skip {
                continue;
            }
            Fingerprint::of(&key.bytes)
        };
        let now = *read.get_or_insert_with(|| clock.take().and_then(|read_clock| read_clock()));
        let counted = match now {
            None => Err(Failure::NoClock),
            Some(now) => table::count(
                store,
                &local.table,
                fingerprint,
                &local.limit,
                now,
                config.cas_attempts,
            )
            .map_err(Failure::Store),
        };
        let (outcome, reclaimed, overflowed) = match counted {
            Err(failure) => (Outcome::Failed(failure), false, false),
            Ok(c) => {
                let outcome = match (c.take, rule.mode) {
                    (
                        Take::Allowed {
                            remaining,
                            next_token_in,
                            ..
                        },
                        _,
                    ) => Outcome::Allowed {
                        remaining,
                        next_token_in,
                    },
                    (Take::Limited { retry_after }, Mode::Enforce) => {
                        Outcome::Limited { retry_after }
                    }
                    (Take::Limited { retry_after }, Mode::Shadow) => {
                        Outcome::ShadowLimited { retry_after }
                    }
                };
                (outcome, c.placement == Placement::Reclaimed, c.overflowed)
            }
        };
        verdict.results.push(RuleResult {
            rule: index,
            outcome,
            reclaimed,
            overflowed,
        });
        verdict.refusal = match outcome {
            Outcome::Limited { retry_after } => Some(Refusal::Limited {
                rule: index,
                retry_after,
            }),
            Outcome::Failed(_) if fails_closed(config, rule) => {
                Some(Refusal::Unavailable { rule: index })
            }
            _ => None,
        };
        if verdict.refusal.is_some() {
            break;
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::request::tests::request;
    use crate::request::HeaderList;
    use meshward_shared::host::{HostResult, SharedValue, Status};
    use meshward_shared::shared_data::MemoryStore;

    const SECOND: u64 = 1_000_000_000;

    fn config(json: &str) -> Config {
        parse(json.as_bytes()).unwrap()
    }

    fn get(path: &str, headers: &[(&str, &str)]) -> HeaderList {
        let mut all = vec![
            (":method", "GET"),
            (":path", path),
            (":authority", "example.com"),
        ];
        all.extend_from_slice(headers);
        request(&all, Some("10.0.0.1:4000"))
    }

    fn allowed_count(
        c: &Config,
        store: &mut MemoryStore,
        r: &HeaderList,
        n: usize,
        now: u64,
    ) -> usize {
        (0..n)
            .filter(|_| check(c, r, || Some(now), store).refusal.is_none())
            .count()
    }

    #[test]
    fn requests_no_rule_matches_are_not_counted() {
        let c = config(
            r#"{"rules":[{"name":"login","match":{"path":{"exact":"/login"}},
                "limit":{"capacity":1,"per":"1m"}}]}"#,
        );
        let mut store = MemoryStore::default();
        let v = check(&c, &get("/other", &[]), || Some(0), &mut store);
        assert_eq!(v, Verdict::default());
        assert!(store.is_empty());
    }

    #[test]
    fn keys_from_a_header_get_separate_buckets() {
        let c = config(
            r#"{"rules":[{"name":"per_user","key":[{"header":"x-user"}],
                "limit":{"capacity":2,"per":"1m"}}]}"#,
        );
        let mut store = MemoryStore::default();
        let alice = get("/", &[("x-user", "alice")]);
        let bob = get("/", &[("x-user", "bob")]);
        assert_eq!(allowed_count(&c, &mut store, &alice, 5, 0), 2);
        assert_eq!(allowed_count(&c, &mut store, &bob, 5, 0), 2);
    }

    #[test]
    fn requests_without_the_key_share_a_bucket_or_skip_the_rule() {
        let share = config(
            r#"{"rules":[{"name":"k","key":[{"header":"x-api-key"}],
                "limit":{"capacity":1,"per":"1m"}}]}"#,
        );
        let mut store = MemoryStore::default();
        assert_eq!(allowed_count(&share, &mut store, &get("/", &[]), 3, 0), 1);
        let skip = config(
            r#"{"rules":[{"name":"k","key":[{"header":"x-api-key"}],"missing_key":"skip",
                "limit":{"capacity":1,"per":"1m"}}]}"#,
        );
        let mut store = MemoryStore::default();
        assert_eq!(allowed_count(&skip, &mut store, &get("/", &[]), 3, 0), 3);
    }

    #[test]
    fn the_first_enforced_rule_out_of_tokens_refuses_and_later_rules_are_not_counted() {
        let c = config(
            r#"{"rules":[
                {"name":"first","limit":{"capacity":1,"per":"1m"}},
                {"name":"second","limit":{"capacity":5,"per":"1m"}}]}"#,
        );
        let mut store = MemoryStore::default();
        let r = get("/", &[]);
        assert_eq!(check(&c, &r, || Some(0), &mut store).results.len(), 2);
        let v = check(&c, &r, || Some(0), &mut store);
        assert_eq!(
            v.refusal,
            Some(Refusal::Limited {
                rule: 0,
                retry_after: Duration::from_secs(60)
            })
        );
        assert_eq!(v.results.len(), 1);
    }

    #[test]
    fn a_shadow_rule_lets_requests_through_and_reports_them() {
        let c =
            config(r#"{"rules":[{"name":"s","mode":"shadow","limit":{"capacity":1,"per":"1m"}}]}"#);
        let mut store = MemoryStore::default();
        let r = get("/", &[]);
        check(&c, &r, || Some(0), &mut store);
        let v = check(&c, &r, || Some(0), &mut store);
        assert_eq!(v.refusal, None);
        assert!(matches!(
            v.results[0].outcome,
            Outcome::ShadowLimited { .. }
        ));
    }

    /// A store whose every call fails, or whose writes always lose the CAS.
    struct Broken(Status);
    impl Store for Broken {
        fn get(&mut self, _: &str) -> HostResult<Option<SharedValue>> {
            if self.0 == Status::CasMismatch {
                return Ok(Some(SharedValue {
                    bytes: vec![],
                    cas: 1,
                }));
            }
            Err(self.0)
        }
        fn set(&mut self, _: &str, _: &[u8], _: u32) -> HostResult<()> {
            Err(self.0)
        }
    }

    #[test]
    fn an_unreachable_bucket_follows_the_failure_mode() {
        let open = config(&crate::config::tests::with_rule(""));
        let closed = config(
            r#"{"rules":[{"name":"api","limit":{"capacity":10,"per":"1s"}}],"failure_mode":"deny"}"#,
        );
        let r = get("/", &[]);
        for status in [Status::InternalFailure, Status::CasMismatch] {
            let v = check(&open, &r, || Some(0), &mut Broken(status));
            assert_eq!(v.refusal, None);
            assert!(matches!(v.results[0].outcome, Outcome::Failed(_)));
            let v = check(&closed, &r, || Some(0), &mut Broken(status));
            assert_eq!(v.refusal, Some(Refusal::Unavailable { rule: 0 }));
        }
        let v = check(&closed, &r, || None, &mut MemoryStore::default());
        assert_eq!(v.results[0].outcome, Outcome::Failed(Failure::NoClock));
    }

    #[test]
    fn a_shadow_rule_whose_bucket_is_unreachable_lets_the_request_through_under_deny() {
        let c = config(
            r#"{"rules":[
                {"name":"trial","mode":"shadow","limit":{"capacity":10,"per":"1s"}},
                {"name":"api","limit":{"capacity":10,"per":"1s"}}],
                "failure_mode":"deny"}"#,
        );
        let r = get("/", &[]);
        for status in [Status::InternalFailure, Status::CasMismatch] {
            let v = check(&c, &r, || Some(0), &mut Broken(status));
            assert!(matches!(v.results[0].outcome, Outcome::Failed(_)));
            // The shadow rule let it through; the enforced rule after it refused.
            assert_eq!(v.results.len(), 2);
            assert_eq!(v.refusal, Some(Refusal::Unavailable { rule: 1 }));
        }
        let shadow_only = config(
            r#"{"rules":[{"name":"trial","mode":"shadow","limit":{"capacity":10,"per":"1s"}}],
                "failure_mode":"deny"}"#,
        );
        let v = check(&shadow_only, &r, || None, &mut MemoryStore::default());
        assert_eq!(v.results[0].outcome, Outcome::Failed(Failure::NoClock));
        assert_eq!(v.refusal, None);
        assert!(!fails_closed(&shadow_only, &shadow_only.rules[0]));
    }

    #[test]
    fn contention_is_reported_after_the_configured_attempts() {
        let c = config(
            r#"{"rules":[{"name":"api","limit":{"capacity":10,"per":"1s"}}],"cas_attempts":3}"#,
        );
        let v = check(
            &c,
            &get("/", &[]),
            || Some(0),
            &mut Broken(Status::CasMismatch),
        );
        assert_eq!(
            v.results[0].outcome,
            Outcome::Failed(Failure::Store(UpdateError::Contention { attempts: 3 }))
        );
    }

    #[test]
    fn workers_interleaving_on_one_bucket_never_exceed_capacity_plus_refill() {
        // Four workers share one store. A request reads the entry, may be preempted while
        // others read and write, then decides on what it read (with the time it read the
        // clock at) and writes with CAS, re-reading on a lost race. The schedule is random;
        // the entry starts absent, so the first requests also race to create it.
        use meshward_shared::shared_data::{self, Decision};
        let c =
            config(r#"{"rules":[{"name":"api","limit":{"capacity":20,"refill":5,"per":"1s"}}]}"#);
        let local = c.rules[0].local.as_ref().unwrap();
        let entry = local.table.entry_for(SOLE);
        for seed in 1..=20u64 {
            let mut rng = seed;
            let mut next = move || {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                rng >> 33
            };
            let mut store = MemoryStore::default();
            // Per worker: the clock it read and the snapshot it is deciding on.
            let mut pending: Vec<Option<(u64, Option<SharedValue>)>> = vec![None; 4];
            let (mut clock, mut admitted, mut limited) = (0u64, 0u64, 0u64);
            let end = 10 * SECOND;
            while clock <= end {
                let w = usize::try_from(next() % 4).unwrap();
                match pending[w].take() {
                    None => {
                        clock += next() % (SECOND / 500);
                        pending[w] = Some((clock, store.get(&entry).unwrap()));
                    }
                    Some((now, read)) => {
                        let (bytes, cas) = match &read {
                            Some(v) => (Some(v.bytes.as_slice()), v.cas),
                            None => (None, 0),
                        };
                        match table::decide(bytes, SOLE, 1, &local.limit, now) {
                            Decision::Keep(_) => limited += 1,
                            Decision::Write(new, _) => {
                                let mut creating =
                                    shared_data::CreateOnce::new(&mut store, table::ANCHOR);
                                match creating.set(&entry, &new, cas) {
                                    Ok(()) => admitted += 1,
                                    Err(Status::CasMismatch) => {
                                        pending[w] = Some((now, store.get(&entry).unwrap()))
                                    }
                                    Err(other) => panic!("{other:?}"),
                                }
                            }
                        }
                    }
                }
            }
            assert!(admitted <= 20 + 50, "seed {seed}: {admitted} admitted");
            // Demand far exceeds the limit, so the bucket is kept busy: nearly all of the
            // allowance is used.
            assert!(admitted >= 20 + 45, "seed {seed}: only {admitted} admitted");
            assert!(limited > 1000, "seed {seed}: {limited}");
        }
    }

    #[test]
    fn many_distinct_keys_keep_memory_bounded_and_overflow_is_reported() {
        let c = config(
            r#"{"rules":[{"name":"ip","key":["client_address"],"buckets":16,
                "limit":{"capacity":1,"per":"1h"}}]}"#,
        );
        let mut store = MemoryStore::default();
        let mut overflowed = 0;
        for n in 0..2000u32 {
            let [a, b, ..] = n.to_le_bytes();
            let r = request(&[(":path", "/")], Some(&format!("10.1.{a}.{b}:1")));
            let v = check(&c, &r, || Some(u64::from(n)), &mut store);
            overflowed += usize::from(v.results[0].overflowed);
        }
        assert!(overflowed >= 2000 - 16, "{overflowed}");
        // Two sets of 8, the overflow bucket, the anchor.
        assert_eq!(store.values().count(), 4);
    }
}
