//! Fuzz tests of what rate-limit parses: the key parts it reads from a client's request
//! (`x-forwarded-for`, cookies, the query with percent-decoding, the host), the Rate Limit
//! Service's protobuf answers, and the configuration. Each property: no panic, a bounded
//! time, and where an oracle exists (the standard library's address parser, a round trip)
//! the same answer.

use crate::config;
use crate::global::{self, Answer};
use crate::keys::{self, KeyPart};
use crate::request::HeaderList;
use crate::rls::{Code, CurrentLimit, DescriptorStatus, RateLimitRequest, RateLimitResponse};
use meshward_shared::fuzzing::{config as cases, json_like, soup, within};
use meshward_shared::GrpcEvent;
use proptest::prelude::*;
use serde_json::json;
use std::net::IpAddr;
use std::time::Duration;

// Each case's heap is counted: `within` bounds it.
meshward_shared::count_allocations!();

const BOUND: Duration = Duration::from_secs(2);

const HEADER_TOKENS: &[&str] = &[
    ",",
    ", ",
    ";",
    "; ",
    "=",
    " ",
    "%",
    "%2",
    "%41",
    "%zz",
    "%%",
    "+",
    "[",
    "]",
    ":",
    "::",
    "::ffff:",
    "1.2.3.4",
    "10.0.0.1:80",
    "[::1]:443",
    "2001:db8::1",
    "unknown",
    "sid",
    "user",
    "\u{ff}",
    "\0",
    "?",
    "&",
    "#",
];

fn hostile(name: &'static str) -> impl Strategy<Value = (String, Vec<u8>)> {
    soup(HEADER_TOKENS, 12).prop_map(move |v| (name.to_string(), v))
}

fn hostile_request() -> impl Strategy<Value = HeaderList> {
    (
        proptest::collection::vec(
            prop_oneof![
                hostile("x-forwarded-for"),
                hostile("cookie"),
                hostile(":path"),
                hostile(":authority"),
                hostile(":method"),
                hostile("x-api-key"),
            ],
            0..8,
        ),
        proptest::option::of(
            soup(HEADER_TOKENS, 4).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ),
    )
        .prop_map(|(headers, source_address)| HeaderList {
            headers,
            source_address,
        })
}

fn every_part() -> Vec<KeyPart> {
    vec![
        KeyPart::ClientAddress,
        KeyPart::ForwardedFor { trusted_hops: 1 },
        KeyPart::ForwardedFor { trusted_hops: 2 },
        KeyPart::ForwardedFor {
            trusted_hops: u32::MAX,
        },
        KeyPart::Header("x-api-key".into()),
        KeyPart::Path,
        KeyPart::Method,
        KeyPart::Query("user".into()),
        KeyPart::Cookie("sid".into()),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    (0u64..=i64::MAX as u64, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n))
}

fn header_value() -> impl Strategy<Value = (String, Vec<u8>)> {
    ("\\PC{0,8}", "\\PC{0,8}").prop_map(|(k, v)| (k, v.into_bytes()))
}

fn response() -> impl Strategy<Value = RateLimitResponse> {
    let code = prop_oneof![
        Just(Code::Unknown),
        Just(Code::Ok),
        Just(Code::OverLimit),
        (3u64..).prop_map(Code::Other)
    ];
    let limit =
        (any::<u32>(), any::<u64>(), "\\PC{0,8}").prop_map(|(requests_per_unit, unit, name)| {
            CurrentLimit {
                requests_per_unit,
                unit,
                name,
            }
        });
    let status = (
        code.clone(),
        proptest::option::of(limit),
        any::<u32>(),
        proptest::option::of(duration()),
    )
        .prop_map(
            |(code, current_limit, limit_remaining, duration_until_reset)| DescriptorStatus {
                code,
                current_limit,
                limit_remaining,
                duration_until_reset,
            },
        );
    (
        code,
        proptest::collection::vec(status, 0..4),
        proptest::collection::vec(header_value(), 0..3),
        proptest::collection::vec(header_value(), 0..3),
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(
            |(
                overall_code,
                statuses,
                response_headers_to_add,
                request_headers_to_add,
                raw_body,
            )| {
                RateLimitResponse {
                    overall_code,
                    statuses,
                    response_headers_to_add,
                    request_headers_to_add,
                    raw_body,
                }
            },
        )
}

/// A message from the service, damaged: bytes flipped, cut short or extended.
fn damaged_reply() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..128),
        (
            response(),
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            any::<prop::sample::Index>()
        )
            .prop_map(|(r, flips, cut)| {
                let mut bytes = r.encode();
                for (at, byte) in flips {
                    if !bytes.is_empty() {
                        let i = at.index(bytes.len());
                        bytes[i] = byte;
                    }
                }
                let keep = cut.index(bytes.len() + 1);
                bytes.truncate(keep);
                bytes
            }),
        // Deeply nested groups and lengths past the end.
        (1usize..100).prop_map(|depth| [vec![0x0b; depth], vec![0x0c; depth]].concat()),
        any::<u64>().prop_map(|len| {
            let mut bytes = vec![0x12];
            let mut n = len;
            while n >= 0x80 {
                bytes.push((n & 0x7f) as u8 | 0x80);
                n >>= 7;
            }
            bytes.push(n as u8);
            bytes
        }),
    ]
}

proptest! {
    #![proptest_config(cases(512, 1))]

    /// Every key part reads a hostile request without panicking, and the key stays within
    /// the size of what the request carried.
    #[test]
    fn keys_are_built_from_hostile_requests(request in hostile_request()) {
        let parts = every_part();
        let key = within(BOUND, "keys::build", || keys::build(&parts, &request))?;
        let carried: usize = request.headers.iter().map(|(_, v)| v.len()).sum::<usize>()
            + request.source_address.as_ref().map_or(0, String::len);
        prop_assert!(key.bytes.len() <= parts.len() * (5 + carried + 40));
    }

    /// The `x-forwarded-for` part reads the `trusted_hops`-th address from the right, as
    /// the standard library parses it, across any number of headers; anything else falls
    /// back to the peer.
    #[test]
    fn forwarded_for_reads_the_trusted_hop_from_the_right(
        addresses in proptest::collection::vec(ip(), 0..6),
        split in any::<prop::sample::Index>(),
        hops in 1u32..8,
        ports in any::<bool>(),
    ) {
        let texts: Vec<String> = addresses
            .iter()
            .map(|ip| match (ports, ip) {
                (true, IpAddr::V4(v4)) => format!("{v4}:8080"),
                (true, IpAddr::V6(v6)) => format!("[{v6}]:8080"),
                (false, ip) => ip.to_string(),
            })
            .collect();
        let at = split.index(texts.len() + 1);
        let mut headers = Vec::new();
        for group in [&texts[..at], &texts[at..]] {
            if !group.is_empty() {
                headers.push(("x-forwarded-for".to_string(), group.join(" , ").into_bytes()));
            }
        }
        let request = HeaderList { headers, source_address: Some("192.0.2.9:5555".into()) };
        let expected = addresses
            .len()
            .checked_sub(hops as usize)
            .and_then(|i| addresses.get(i))
            .map_or_else(|| "192.0.2.9".to_string(), |ip| ip.to_canonical().to_string());
        let got = keys::part_value(&KeyPart::ForwardedFor { trusted_hops: hops }, &request);
        prop_assert_eq!(got, Some(expected.into_bytes()));
    }

    /// A query value percent-encoded byte by byte reads back as the bytes the client meant.
    #[test]
    fn query_values_are_percent_decoded(value in proptest::collection::vec(any::<u8>(), 0..32), raw in "[a-z0-9]{0,6}") {
        let encoded: String = value.iter().map(|b| format!("%{b:02x}")).collect();
        let path = format!("/x?a=1&user={encoded}&user={raw}");
        let request = HeaderList { headers: vec![(":path".into(), path.into_bytes())], source_address: None };
        // The first value that is not empty (meshward_shared::http's rule).
        let want = if !value.is_empty() { Some(value) } else { Some(raw.into_bytes()).filter(|r| !r.is_empty()) };
        prop_assert_eq!(keys::part_value(&KeyPart::Query("user".into()), &request), want);
    }

    /// A cookie's value reads back from any of several `cookie` headers.
    #[test]
    fn cookie_values_are_read_back(value in "[A-Za-z0-9._-]{0,24}", others in proptest::collection::vec("[a-r]{1,4}=[a-z]{0,4}", 0..3)) {
        let mut headers: Vec<(String, Vec<u8>)> = others.iter().map(|c| ("cookie".to_string(), c.clone().into_bytes())).collect();
        headers.push(("cookie".into(), format!("theme=dark; sid={value}").into_bytes()));
        let request = HeaderList { headers, source_address: None };
        // An empty value is no cookie (meshward_shared::http's rule).
        let want = Some(value.into_bytes()).filter(|v| !v.is_empty());
        prop_assert_eq!(keys::part_value(&KeyPart::Cookie("sid".into()), &request), want);
    }

    /// Whatever the service (or something posing as it) sends: an answer, no panic, and
    /// no header that could split a response.
    #[test]
    fn any_service_reply_is_answered_without_panicking(bytes in damaged_reply()) {
        let answer = within(BOUND, "global::answer", || {
            global::answer(&GrpcEvent::Message(bytes.clone()), Some(Duration::ZERO), Duration::from_millis(20))
        })?;
        let headers = match &answer {
            Answer::Ok { request_headers, response_headers } => [request_headers.as_slice(), response_headers].concat(),
            Answer::OverLimit { response_headers, .. } => response_headers.clone(),
            Answer::Failed(_) => Vec::new(),
        };
        for (name, value) in headers {
            prop_assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()));
            prop_assert!(!value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
        }
        let _ = RateLimitResponse::decode(&bytes);
        let _ = RateLimitRequest::decode(&bytes);
    }

    /// The codec round-trips every response a service can send.
    #[test]
    fn responses_round_trip(response in response()) {
        prop_assert_eq!(RateLimitResponse::decode(&response.encode()), Ok(response));
    }

    /// And every request the filter sends.
    #[test]
    fn requests_round_trip(
        domain in "\\PC{0,12}",
        descriptors in proptest::collection::vec(proptest::collection::vec(("\\PC{0,6}", "\\PC{0,6}"), 0..3), 0..3),
        hits_addend in any::<u32>(),
    ) {
        let request = RateLimitRequest { domain, descriptors, hits_addend };
        prop_assert_eq!(RateLimitRequest::decode(&request.encode()), Ok(request));
    }
}

/// A configuration with every field set, for the configuration fuzz.
fn config_seed() -> serde_json::Value {
    json!({
        "rules": [{
            "name": "per_client",
            "match": {"hosts": ["api.test", "*.example.com"], "path": {"prefix": "/api"}, "methods": ["GET", "POST"]},
            "key": ["client_address", {"x_forwarded_for": {"trusted_hops": 1}}, {"header": "x-api-key"},
                    "path", "method", {"query": "user"}, {"cookie": "sid"}],
            "limit": {"capacity": 10, "refill": 5, "per": "1s"},
            "buckets": 1024,
            "missing_key": "skip",
            "mode": "shadow",
            "shadow_header": "x-rate-limit-shadow"
        }, {
            "name": "global",
            "match": {"path": {"regex": "^/v[0-9]+/.*$"}},
            "global": {"cluster": "rls", "domain": "edge", "timeout": "20ms", "hits_addend": 1, "failure_mode": "deny"}
        }, {
            "name": "exact",
            "match": {"path": {"exact": "/login"}},
            "limit": {"capacity": 3, "per": "1m"}
        }],
        "status": 429,
        "failure_mode": "deny",
        "cas_attempts": 8,
        "response_headers": {"ietf": true, "x_ratelimit": true, "on_allowed": true}
    })
}

proptest! {
    #![proptest_config(cases(64, 8))]

    /// The configuration, as random documents shaped like a full one (path regexes
    /// included): parsed or refused with a message, never a panic.
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
