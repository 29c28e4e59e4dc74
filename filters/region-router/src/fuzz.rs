//! Fuzz tests of what region-router parses: the client's preference, latency and cookie
//! headers, the health records other workers leave in shared data, and the configuration.
//! Each property: no panic, a bounded time, and the decision always names a configured
//! region.

use crate::config::Config;
use crate::decide::{decide, Inputs};
use crate::health::{RegionHealth, State};
use crate::request::{self, MAX_PREFERENCES};
use crate::sticky;
use meshward_shared::fuzzing::{config as cases, json_like, soup, within};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

// Each case's heap is counted: `within` bounds it.
meshward_shared::count_allocations!();

const BOUND: Duration = Duration::from_secs(2);

const TOKENS: &[&str] = &[
    ",",
    ", ",
    ";",
    "; ",
    "=",
    " ",
    "\t",
    "eu-west-1",
    "EU-WEST-1",
    "us-east-1",
    "ap-south-1",
    "mars-1",
    "session",
    "sid",
    "true",
    "1",
    "yes",
    "on",
    "\u{ff}",
    "\0",
    "\"",
];

fn config_seed() -> Value {
    json!({
        "regions": [
            {"name": "eu-west-1", "cluster": "region-eu-west-1", "latency": "2ms", "allow_preference": true},
            {"name": "us-east-1", "cluster": "region-us-east-1", "latency": "80ms"},
            {"name": "ap-south-1", "cluster": "region-ap-south-1", "latency": "120ms", "allow_preference": false}
        ],
        "local_region": "eu-west-1",
        "split": {"weights": {"eu-west-1": 70, "us-east-1": 20, "ap-south-1": 10}},
        "preference_header": "x-region-preference",
        "latency_header": "x-latency-sensitive",
        "route_header": "x-meshward-cluster",
        "route_header_value": "cluster",
        "decision_header": "x-meshward-region-decision",
        "sticky": {"cookie": "session"},
        "health": {"window": "10s", "min_requests": 10, "failure_threshold_percent": 50,
                   "cool_down": "5s", "probe_percent": 5, "probe_successes": 3}
    })
}

fn config() -> Config {
    Config::parse(config_seed().to_string().as_bytes(), None).unwrap()
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Healthy),
        Just(State::Probing),
        Just(State::Unhealthy)
    ]
}

proptest! {
    #![proptest_config(cases(512, 1))]

    /// Hostile preference, latency and cookie headers: parsed without panicking, within
    /// their bounds, and whatever they say the decision names a configured region.
    #[test]
    fn hostile_request_headers_lead_to_a_configured_region(
        preference in soup(TOKENS, 40),
        flag in soup(TOKENS, 4),
        cookies in proptest::collection::vec(soup(TOKENS, 12), 0..4),
        health in proptest::collection::vec(state(), 0..5),
    ) {
        let config = config();
        let parsed = within(BOUND, "parse_preference", || request::parse_preference(&config, &preference))?;
        prop_assert!(parsed.len() <= MAX_PREFERENCES);
        prop_assert!(parsed.iter().flatten().all(|&i| i < config.regions.len()));
        let latency_sensitive = request::parse_flag(&flag);
        let cookie_refs: Vec<&[u8]> = cookies.iter().map(Vec::as_slice).collect();
        let key = request::cookie_value(&cookie_refs, "session").unwrap_or_default();
        if !key.is_empty() {
            prop_assert!(cookies.iter().any(|c| c.windows(key.len()).any(|w| w == key)));
        }
        let inputs = Inputs { preference: parsed, latency_sensitive, key_hash: sticky::hash_key(key) };
        let decision = within(BOUND, "decide", || decide(&config, &health, &inputs))?;
        prop_assert!(decision.region < config.regions.len());
    }

    /// A cookie reads back as the client set it, from any of several headers.
    #[test]
    fn session_cookies_are_read_back(value in "[A-Za-z0-9._-]{1,24}", others in proptest::collection::vec("[a-r]{1,4}=[a-z]{0,4}", 0..3)) {
        let mut headers: Vec<Vec<u8>> = others.iter().map(|c| c.clone().into_bytes()).collect();
        headers.push(format!("theme=dark; session={value}").into_bytes());
        let refs: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(request::cookie_value(&refs, "session"), Some(value.as_bytes()));
    }

    /// A health record from shared data is written by other workers (or left by an older
    /// version): any bytes read as a record or as nothing, and a record read once reads
    /// the same after it is written back.
    #[test]
    fn health_records_from_any_bytes_read_back_the_same(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..96),
            (any::<bool>(), any::<u64>(), any::<u16>(), any::<u64>(), proptest::collection::vec(any::<u32>(), 0..40), any::<u8>())
                .prop_map(|(unhealthy, changed, probes, base, recent, count)| {
                    let mut out = vec![1, u8::from(unhealthy)];
                    out.extend_from_slice(&changed.to_le_bytes());
                    out.extend_from_slice(&probes.to_le_bytes());
                    out.extend_from_slice(&base.to_le_bytes());
                    out.push(count);
                    for entry in recent {
                        out.extend_from_slice(&entry.to_le_bytes());
                    }
                    out
                }),
        ],
        now in any::<u64>(),
    ) {
        let config = config();
        let now = Duration::from_millis(now);
        let _state = within(BOUND, "state_of_encoded", || RegionHealth::state_of_encoded(&bytes, &config.health, now))?;
        if let Some(record) = within(BOUND, "RegionHealth::decode", || RegionHealth::decode(&bytes))? {
            let again = record.encode();
            prop_assert!(again.len() <= bytes.len());
            prop_assert_eq!(RegionHealth::decode(&again), Some(record.clone()));
            let _ = record.state(&config.health, now);
            let _ = record.recent_failures(&config.health, now);
        }
    }
}

proptest! {
    #![proptest_config(cases(64, 8))]

    /// The configuration, as random documents shaped like a full one: parsed or refused
    /// with a message, never a panic, with or without the node's region.
    #[test]
    fn configs_shaped_like_a_real_one_parse_or_name_a_problem(
        doc in json_like(config_seed(), 5),
        node in proptest::option::of(prop_oneof![Just("eu-west-1".to_string()), "[a-z0-9-]{0,10}"]),
    ) {
        let bytes = doc.to_string().into_bytes();
        match within(BOUND, "Config::parse", || Config::parse(&bytes, node.as_deref()))? {
            Ok(config) => {
                let inputs = Inputs { preference: vec![Some(0), None], latency_sensitive: true, key_hash: 7 };
                prop_assert!(decide(&config, &[], &inputs).region < config.regions.len());
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }
}

#[test]
fn the_configuration_fuzz_starts_from_a_configuration_that_parses() {
    config();
}
