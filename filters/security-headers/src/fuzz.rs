//! Fuzz tests of what security-headers parses: the request's path, scheme and
//! `x-forwarded-proto`, the header policies in its configuration (CSP, HSTS,
//! Permissions-Policy), and the configuration itself. Each property: no panic, a bounded
//! time, and no configured value that could split a response header.

use crate::config::Config;
use crate::request::RequestFacts;
use crate::{csp, hsts, permissions_policy};
use meshward_shared::fuzzing::{config as cases, json_like, text_soup, within};
use meshward_shared::matching::RequestView;
use meshward_shared::pairs::Pair;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

// Each case's heap is counted: `within` bounds it.
meshward_shared::count_allocations!();

const BOUND: Duration = Duration::from_secs(2);

fn config_seed() -> Value {
    let header = json!({"mode": "overwrite", "value": "nosniff"});
    json!({
        "headers": {
            "strict_transport_security": {"mode": "keep_upstream", "value": "max-age=31536000; includeSubDomains", "https_only": true},
            "content_security_policy": {"mode": "overwrite", "value": "default-src 'self'; img-src https:", "report_only": true, "html_only": true},
            "x_content_type_options": header,
            "x_frame_options": {"mode": "off"},
            "referrer_policy": {"value": "no-referrer"},
            "permissions_policy": {"value": "camera=(), geolocation=(self \"https://a.test\")"},
            "cross_origin_opener_policy": {"value": "same-origin"}
        },
        "remove_headers": {"include_defaults": true, "names": ["x-internal"], "except": ["server"]},
        "trust_x_forwarded_proto": true,
        "overrides": [
            {"match": {"path": {"prefix": "/docs/"}}, "headers": {"content_security_policy": {"mode": "off"}}},
            {"match": {"path": {"exact": "/embed"}}, "headers": {"x_frame_options": {"mode": "overwrite", "value": "SAMEORIGIN"}}}
        ]
    })
}

const POLICY_TOKENS: &[&str] = &[
    ";",
    ",",
    " ",
    "=",
    "(",
    ")",
    "\"",
    "'self'",
    "'none'",
    "*",
    "https:",
    "max-age=",
    "0",
    "31536000",
    "includeSubDomains",
    "preload",
    "default-src",
    "camera",
    "\r",
    "\n",
    "\0",
    "\u{e9}",
];

proptest! {
    #![proptest_config(cases(512, 1))]

    /// Policies written in the configuration are checked without panicking, and what
    /// passes could not split or truncate the header it is sent in.
    #[test]
    fn header_policies_are_checked_without_panicking(text in text_soup(POLICY_TOKENS, 16)) {
        for (what, check) in [
            ("csp", csp::check as fn(&str) -> Result<String, String>),
            ("hsts", hsts::check),
            ("permissions_policy", permissions_policy::check),
        ] {
            if let Ok(value) = within(BOUND, what, || check(&text))? {
                prop_assert!(!value.contains(['\r', '\n', '\0']), "{}: {:?}", what, value);
            }
        }
    }

    /// Hostile paths, schemes and `x-forwarded-proto` select a policy that exists.
    #[test]
    fn hostile_requests_select_a_configured_policy(
        target in proptest::option::of(text_soup(&["/", "docs", "embed", "/docs/", "..", "%2e", "?", "#", "//", "\u{ff}"], 10)),
        scheme in proptest::option::of(text_soup(&["https", "HTTP", "http", " ", ",", "\u{e9}"], 3)),
        forwarded in proptest::option::of(text_soup(&["https", "http", ",", " ", "HTTPS", "wss"], 5)),
    ) {
        let config = Config::parse(config_seed().to_string().as_bytes()).unwrap();
        let request: Option<Vec<Pair>> =
            target.map(|t| vec![(":path".to_string(), t.into_bytes())]);
        let facts = within(BOUND, "RequestFacts::learn", || {
            let view = request.as_ref().map(|r| r as &dyn RequestView);
            RequestFacts::learn(&config, view, scheme.as_deref(), forwarded.as_deref())
        })?;
        if let Some(i) = facts.override_index {
            prop_assert!(i < config.overrides.len());
        }
        let _ = facts.policy(&config);
    }
}

proptest! {
    #![proptest_config(cases(64, 8))]

    /// The configuration, as random documents shaped like a full one: parsed or refused
    /// with a message, never a panic.
    #[test]
    fn configs_shaped_like_a_real_one_parse_or_name_a_problem(doc in json_like(config_seed(), 5)) {
        let bytes = doc.to_string().into_bytes();
        if let Err(error) = within(BOUND, "Config::parse", || Config::parse(&bytes))? {
            prop_assert!(!error.to_string().is_empty());
        }
    }
}

#[test]
fn the_configuration_fuzz_starts_from_a_configuration_that_parses() {
    Config::parse(config_seed().to_string().as_bytes()).unwrap();
}
