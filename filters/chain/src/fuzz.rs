//! Fuzz test of the chain's own configuration (`{"filters": [{"name", "config"}, ...]}`):
//! random documents shaped like a real one, with every member, configure or are refused
//! with a message, never a panic, within a bounded time. (Each member's configuration is
//! fuzzed in its own crate; this covers the wrapper and how it hands each part on.)

use crate::MEMBERS;
use meshward_shared::chain::ChainRoot;
use meshward_shared::config::ConfigError;
use meshward_shared::fuzzing::{config as cases, json_like, within};
use meshward_shared::RootFilter;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

// Each case's heap is counted: `within` bounds it.
meshward_shared::count_allocations!();

const BOUND: Duration = Duration::from_secs(2);

/// A chain of every member, each with a small configuration of its own.
fn config_seed() -> Value {
    json!({"filters": [
        {"name": "security-headers", "config": {}},
        {"name": "jwt-auth", "config": {
            "providers": [{"name": "demo", "issuer": "https://issuer.example.com",
                "audiences": ["api.example.com"],
                "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "ec-p256",
                    "x": "AhfmF_C2RDkoJ4-WmZ5pojpPLBUr321s32bluAKC1O0",
                    "y": "GUp968uXcS0t2jyoWqh2Wlb0X8dYWZZS8ol8ZTBuV5Q"}]},
                "claims_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}]}],
            "rules": [{"match": {"path": {"prefix": "/api/"}}}]}},
        {"name": "rate-limit", "config": {"rules": [{"name": "per_client",
            "key": ["client_address"], "limit": {"capacity": 100, "refill": 50, "per": "1s"}}]}},
        {"name": "circuit-metrics", "config": {"breakers": [{"cluster": "upstream",
            "minimum_number_of_calls": 20, "sliding_window": {"time": "30s"}}]}},
        {"name": "region-router", "config": {"local_region": "eu-west-1", "regions": [
            {"name": "eu-west-1", "cluster": "eu"}, {"name": "us-east-1", "cluster": "us"}]}},
    ]})
}

fn configure(doc: &Value) -> Result<(), ConfigError> {
    ChainRoot::new(MEMBERS).configure(doc.to_string().as_bytes())
}

proptest! {
    #![proptest_config(cases(32, 16))]

    #[test]
    fn chain_configs_shaped_like_a_real_one_configure_or_name_a_problem(doc in json_like(config_seed(), 6)) {
        if let Err(error) = within(BOUND, "ChainRoot::configure", || configure(&doc))? {
            prop_assert!(!error.message.is_empty());
        }
    }
}

#[test]
fn the_configuration_fuzz_starts_from_a_configuration_that_configures() {
    configure(&config_seed()).unwrap();
}

#[test]
fn a_refusal_names_the_member_and_the_field() {
    let mut doc = config_seed();
    doc["filters"][2]["config"]["rules"][0]["limit"]["per"] = json!("fast");
    let error = configure(&doc).unwrap_err();
    assert_eq!(
        error.path, "filters[2].config.rules[0].limit.per",
        "{error}"
    );
}
