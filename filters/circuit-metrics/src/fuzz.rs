//! Fuzz tests of what circuit-metrics decodes: the request facts Envoy reports (status,
//! flags, attempts, duration, as the property decoding yields them), the breaker records
//! other workers leave in shared data, status patterns and the configuration. The bytes of
//! the properties themselves are fuzzed through the Wasm module in
//! `tests/tests/fuzz_filters.rs`. Each property: no panic, a bounded time, and a record
//! read back is the record written.

use crate::breaker::Breaker;
use crate::config;
use crate::outcome::{classify, Facts, Flagged, StatusPattern};
use crate::record;
use crate::window::Call;
use meshward_shared::fuzzing::{config as cases, json_like, text_soup, within};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

// Each case's heap is counted: `within` bounds it.
meshward_shared::count_allocations!();

const BOUND: Duration = Duration::from_secs(2);

fn config_seed() -> Value {
    json!({
        "enforce": true,
        "failure_statuses": ["5xx", "429", "4xx"],
        "labels": {"clusters": {"allow": ["upstream", "payments"], "max": 16},
                   "routes": {"allow": ["all"], "max": 8}},
        "breakers": [{
            "cluster": "upstream", "per_route": true, "name": "up", "enforce": false, "mode": "auto",
            "failure_rate_threshold": 50.0, "slow_call_rate_threshold": 80.0, "slow_call_duration": "1s",
            "minimum_number_of_calls": 20, "sliding_window": {"time": "30s"},
            "wait_duration_in_open": "5s", "permitted_calls_in_half_open": 3, "max_wait_in_half_open": "10s"
        }, {
            "cluster": "payments", "mode": "metrics_only", "sliding_window": {"count": 50}
        }]
    })
}

fn facts() -> impl Strategy<Value = Facts> {
    (
        proptest::option::of(any::<u16>()),
        any::<u64>(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<u64>().prop_map(Duration::from_nanos)),
    )
        .prop_map(|(status, flags, attempts, from_upstream, duration)| Facts {
            status,
            flags,
            attempts,
            from_upstream,
            duration,
        })
}

proptest! {
    #![proptest_config(cases(512, 1))]

    /// Any facts Envoy could report classify without panicking, and retries are attempts
    /// less one.
    #[test]
    fn any_request_facts_classify(facts in facts()) {
        let patterns: Vec<StatusPattern> = ["5xx", "429"].iter().filter_map(|p| StatusPattern::parse(p)).collect();
        let outcome = within(BOUND, "classify", || classify(&facts, &patterns))?;
        prop_assert_eq!(outcome.retries, facts.attempts.map_or(0, |a| a.saturating_sub(1)));
        let _ = Flagged::from_bits(facts.flags);
    }

    /// Status patterns from the configuration: `Nxx` or a status; what parses matches
    /// what its text says.
    #[test]
    fn status_patterns_match_what_they_say(
        text in text_soup(&["5", "4", "0", "9", "x", "X", "xx", " ", "-", "1000", "\u{e9}"], 5),
        status in 0u16..1000,
    ) {
        if let Some(pattern) = StatusPattern::parse(&text) {
            let text = text.trim().to_ascii_lowercase();
            let expected = match text.strip_suffix("xx") {
                Some(class) => class.parse::<u16>().ok().is_some_and(|c| status / 100 == c),
                None => text.parse::<u16>().ok() == Some(status),
            };
            prop_assert_eq!(pattern.matches(status), expected, "{:?} on {}", text, status);
        }
    }

    /// A breaker record is written by another worker: a damaged one is refused or read as
    /// exactly the bytes it was, never a panic.
    #[test]
    fn breaker_records_read_back_exactly(
        calls in proptest::collection::vec((any::<bool>(), any::<bool>(), 0u64..120), 0..40),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
        which in 0usize..2,
    ) {
        let config = config::parse(config_seed().to_string().as_bytes()).unwrap();
        let breaker_config = &config.breakers[which];
        let settings = &breaker_config.settings;
        let print = breaker_config.fingerprint;
        let start = Duration::from_secs(1_700_000_000);
        let mut breaker = Breaker::new(settings, start);
        for (failed, slow, at) in &calls {
            breaker.record(settings, start + Duration::from_secs(*at), None, Call { failed: *failed, slow: *slow });
        }
        let bytes = record::encode(&breaker, print);
        prop_assert_eq!(record::decode(&bytes, settings, print), Some(breaker.clone()));

        let mut damaged = bytes.clone();
        for (at, byte) in flips {
            let i = at.index(damaged.len());
            damaged[i] = byte;
        }
        damaged.truncate(cut.index(damaged.len() + 1).max(damaged.len().saturating_sub(4)));
        if let Some(read) = within(BOUND, "record::decode", || record::decode(&damaged, settings, print))? {
            prop_assert_eq!(record::encode(&read, print), damaged.clone());
        }
        let _ = record::peek(&damaged, print);
    }

    /// Random bytes in place of a record are refused or read back exactly.
    #[test]
    fn random_records_are_refused_or_read_exactly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let config = config::parse(config_seed().to_string().as_bytes()).unwrap();
        for breaker in &config.breakers {
            if let Some(read) = record::decode(&bytes, &breaker.settings, breaker.fingerprint) {
                prop_assert_eq!(record::encode(&read, breaker.fingerprint), bytes.clone());
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(64, 8))]

    /// The configuration, as random documents shaped like a full one: parsed or refused
    /// with a message, never a panic.
    #[test]
    fn configs_shaped_like_a_real_one_parse_or_name_a_problem(doc in json_like(config_seed(), 5)) {
        let bytes = doc.to_string().into_bytes();
        if let Err(error) = within(BOUND, "config::parse", || config::parse(&bytes))? {
            prop_assert!(!error.to_string().is_empty());
        }
    }
}

#[test]
fn the_configuration_fuzz_starts_from_a_configuration_that_parses() {
    config::parse(config_seed().to_string().as_bytes()).unwrap();
}
