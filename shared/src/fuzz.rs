//! Fuzz tests of what the common crate parses: header maps from host buffers (hostile
//! bytes), configuration JSON, durations and header names from configurations.

use crate::config::{check_header_name, check_header_value, parse_json, ConfigDuration};
use crate::fuzzing::{config, json_like, soup, text_soup, within};
use crate::pairs::{self, Pair};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

// Each case's heap is counted: `within` bounds it.
crate::count_allocations!();

const BOUND: Duration = Duration::from_secs(2);

/// A configuration of the shapes filters use: nested structs, lists, durations, options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Doc {
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Rule {
    name: String,
    per: ConfigDuration,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum Mode {
    On,
    Off,
}

fn map_entry() -> impl Strategy<Value = Pair> {
    ("\\PC{0,12}", proptest::collection::vec(any::<u8>(), 0..24))
}

proptest! {
    #![proptest_config(config(512, 1))]

    /// The host's map buffer is untrusted: any bytes decode to a map or `None`, and what
    /// decodes re-encodes to the bytes it was read from (up to where the map ended).
    #[test]
    fn header_maps_from_any_bytes_decode_to_what_they_encode(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            proptest::collection::vec(map_entry(), 0..6).prop_flat_map(|pairs| {
                let encoded = pairs::encode(&pairs);
                let len = encoded.len();
                (Just(encoded), proptest::collection::vec((0..len.max(1), any::<u8>()), 0..3))
                    .prop_map(|(mut bytes, flips)| {
                        for (at, byte) in flips {
                            if let Some(b) = bytes.get_mut(at) {
                                *b = byte;
                            }
                        }
                        bytes
                    })
            }),
        ]
    ) {
        let decoded = within(BOUND, "pairs::decode", || pairs::decode(&bytes))?;
        if let Some(decoded) = decoded {
            let again = pairs::encode(&decoded);
            if !decoded.is_empty() || !bytes.is_empty() {
                prop_assert!(bytes.starts_with(&again), "{again:?} is not a prefix of {bytes:?}");
            }
            let payload: usize = decoded.iter().map(|(k, v)| k.len() + v.len()).sum();
            prop_assert!(payload <= bytes.len());
        }
    }

    /// Every map a filter writes reads back exactly: names, duplicates, order, value bytes.
    #[test]
    fn header_maps_round_trip(pairs in proptest::collection::vec(map_entry(), 0..8)) {
        prop_assert_eq!(pairs::decode(&pairs::encode(&pairs)), Some(pairs));
    }

    /// A count that promises more entries than the buffer can hold is refused before any
    /// allocation is made for it.
    #[test]
    fn a_lying_count_is_refused(count in 1u32.., tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = count.to_le_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        prop_assume!(count as usize > bytes.len() / 10);
        prop_assert_eq!(pairs::decode(&bytes), None);
    }
}

proptest! {
    #![proptest_config(config(256, 1))]

    /// Durations from a configuration: any text parses or is refused with a message, and
    /// what parses is at most ten years.
    #[test]
    fn any_duration_text_parses_or_is_refused(
        text in text_soup(&["1", "0", "9", ".", "5", "ms", "s", "m", "h", "us", "µs", "ns", " ", "e", "-", "+", "1e400"], 10)
    ) {
        match within(BOUND, "ConfigDuration::parse", || ConfigDuration::parse(&text))? {
            Ok(ConfigDuration(d)) => prop_assert!(d <= Duration::from_nanos(320_000_000_000_000_000)),
            Err(message) => prop_assert!(message.contains("expected a duration"), "{message}"),
        }
    }

    /// A duration written as a whole number and a unit reads as that many units.
    #[test]
    fn whole_durations_read_as_written(n in 0u64..100_000, unit in 0usize..5) {
        let (suffix, nanos) = [("ns", 1u64), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000)][unit];
        let parsed = ConfigDuration::parse(&format!("{n}{suffix}")).map(|d| d.0);
        prop_assert_eq!(parsed, Ok(Duration::from_nanos(n * nanos)));
    }

    /// Header names and values from a configuration are checked without panicking, and
    /// what passes could not split a header on the wire.
    #[test]
    fn header_names_and_values_are_checked(
        text in text_soup(&["a", "Z", "-", "_", ":", " ", "\r", "\n", "\0", "é", "x-api-key"], 8)
    ) {
        if check_header_name("h", &text).is_ok() {
            prop_assert!(!text.is_empty());
            prop_assert!(text.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()));
        }
        if check_header_value("h", &text).is_ok() {
            prop_assert!(!text.contains(['\r', '\n', '\0']));
        }
    }

    /// Configuration parsing of random documents shaped like a real one: no panic, and an
    /// error always says something.
    #[test]
    fn configs_shaped_like_a_real_one_parse_or_name_a_problem(
        doc in json_like(json!({
            "rules": [{"name": "a", "per": "1s", "limit": 10, "tags": ["x", "y"]}],
            "mode": "on",
            "header": "x-a"
        }), 4),
        raw in soup(&["{", "}", "[", "]", "\"", ":", ",", "rules", "per", "1s", "null", " "], 12),
    ) {
        for bytes in [doc.to_string().into_bytes(), raw] {
            if let Err(error) = within(BOUND, "parse_json", || parse_json::<Doc>(&bytes))? {
                prop_assert!(!error.message.is_empty());
                prop_assert!(!error.to_string().is_empty());
            }
        }
    }

    /// Cookies, query strings and x-forwarded-for from a client are hostile: any bytes
    /// parse without panicking, every value found lies inside what was sent, and a cookie
    /// or parameter the request sets once reads back as set.
    #[test]
    fn request_parts_from_any_bytes_parse_to_values_inside_them(
        cookie in soup(&["a=", "jwt=", "session=", ";", " ", "\"", "=", "\t"], 12),
        query in soup(&["a=", "jwt=", "&", "%", "%4", "%41", "%zz", "#", "+", "="], 12),
        forwarded in soup(&["1.2.3.4", ",", " ", "::1", "[", "]"], 8),
        hops in 0u32..6,
        value in "[A-Za-z0-9._-]{1,16}",
    ) {
        let found = within(BOUND, "http::cookies", || {
            crate::http::cookies([cookie.as_slice()]).collect::<Vec<_>>()
        })?;
        for c in &found {
            prop_assert!(contains(&cookie, c.pair));
            prop_assert!(c.pair.len() >= c.name.len() + c.value.len());
        }
        let decoded = within(BOUND, "http::query_param", || crate::http::query_param(&query, "jwt"))?;
        if let Some(v) = decoded.first() {
            prop_assert!(v.len() <= query.len());
        }
        let entry = within(BOUND, "http::forwarded_for", || crate::http::forwarded_for(&[forwarded.as_slice()], hops))?;
        if let Some(entry) = entry {
            prop_assert!(contains(&forwarded, entry));
        }
        // Set once among hostile neighbours, a cookie and a parameter read back.
        let with_cookie = [&cookie[..], format!("; session={value}").as_bytes()].concat();
        let session = crate::http::cookie([with_cookie.as_slice()], "session");
        if !names(&cookie, b';').any(|n| n.trim_ascii() == b"session") {
            prop_assert_eq!(session, crate::http::Lookup::One(value.as_bytes()));
        }
        let with_param = [&query[..], format!("&k={value}").as_bytes()].concat();
        // (A name with `%` may decode to `k`; a bare `k` is a parameter too.)
        if !query.contains(&b'#') && !names(&query, b'&').any(|n| n == b"k" || n.contains(&b'%')) {
            prop_assert_eq!(
                crate::http::query_param(&with_param, "k"),
                crate::http::Lookup::One(value.clone().into_bytes())
            );
        }
    }
}

proptest! {
    #![proptest_config(config(256, 4))]

    /// Rule matches, as random documents shaped like a full one, load or name a problem;
    /// a loaded one decides any hostile request without panicking, and an exact host and
    /// path read back from a request built to carry them, whatever else it carries.
    #[test]
    fn request_matches_load_or_refuse_and_decide_hostile_requests(
        doc in json_like(json!({
            "hosts": ["api.example.com", "*.internal", "::1"],
            "path": {"regex": "/users/[0-9]+"},
            "methods": ["GET"],
            "headers": [{"name": "x-tenant", "prefix": "b"}, {"name": "x-debug", "present": false}]
        }), 4),
        authority in soup(&["api.example.com", "A", ":", "443", "[", "]", "::1", ".", "internal", "x"], 6),
        target in soup(&["/users/", "1", "?", "#", "/", "%2f", "..", "x"], 8),
        tenant in proptest::option::of(soup(&["b", "blue", ",", " "], 3)),
        host in "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}",
        path in "(/[A-Za-z0-9._~-]{0,6}){1,4}",
    ) {
        let loaded = within(BOUND, "RequestMatch", || {
            parse_json::<crate::matching::RequestMatch>(doc.to_string().as_bytes())
        })?;
        let mut request: Vec<Pair> = vec![
            (":authority".into(), authority),
            (":path".into(), target),
            (":method".into(), b"GET".to_vec()),
        ];
        if let Some(tenant) = tenant {
            request.push(("x-tenant".into(), tenant.clone()));
            request.push(("x-tenant".into(), tenant));
        }
        match loaded {
            Ok(matcher) => {
                within(BOUND, "RequestMatch::matches", || matcher.matches(request.as_slice()))?;
            }
            Err(error) => prop_assert!(!error.message.is_empty()),
        }
        let exact = parse_json::<crate::matching::RequestMatch>(
            json!({"hosts": [host.clone()], "path": {"exact": path.clone()}}).to_string().as_bytes(),
        );
        let Ok(exact) = exact else {
            return Err(TestCaseError::fail(format!("{host} {path}: refused")));
        };
        let sent = |authority: String, target: String| -> Vec<Pair> {
            vec![
                (":authority".into(), authority.into_bytes()),
                (":path".into(), target.into_bytes()),
                ("x-noise".into(), request.iter().flat_map(|(_, v)| v.clone()).collect()),
            ]
        };
        let upper = host.to_ascii_uppercase();
        let selected = exact.matches(sent(format!("{upper}:8080"), format!("{path}?q=1")).as_slice());
        let other_host = exact.matches(sent(format!("x{host}"), path.clone()).as_slice());
        let longer_path = exact.matches(sent(host, format!("{path}/x")).as_slice());
        prop_assert!(selected && !other_host && !longer_path);
    }
}

/// The raw names of `sep`-separated `name=value` items (the whole item where it has no `=`).
fn names(list: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    list.split(move |&b| b == sep)
        .map(|item| item.split(|&b| b == b'=').next().unwrap_or(item))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn an_empty_map_decodes_from_a_zero_count() {
    assert_eq!(pairs::decode(&[0, 0, 0, 0]), Some(Vec::new()));
}

#[test]
fn within_fails_a_case_that_grows_the_heap_beyond_its_bound() {
    let small = within(BOUND, "a small buffer", || vec![1u8; 1 << 20].len());
    assert_eq!(small.ok(), Some(1 << 20));
    let large = within(BOUND, "a large buffer", || {
        let buffer = vec![1u8; (crate::fuzzing::MEMORY_BOUND as usize) + 1];
        buffer.len()
    });
    let message = format!("{:?}", large.unwrap_err());
    assert!(
        message.contains("a large buffer grew the heap by"),
        "{message}"
    );
    // Only the peak counts: freed as it goes, the same total passes.
    let churn = within(BOUND, "churn", || {
        (0..128).map(|_| vec![1u8; 1 << 20].len()).sum::<usize>()
    });
    assert!(churn.is_ok());
}
