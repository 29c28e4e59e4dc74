//! Fuzz tests of the built filters in the harness, where their parsers meet the bytes a
//! host really hands them: forged tokens against jwt-auth (no edit of a valid token ever
//! passes), random property encodings against circuit-metrics (Envoy's attributes as bytes
//! of any length), and hostile request headers against every filter. The VM must stay
//! alive and the client see only the statuses the filter's rules allow.
//! Needs `make build` (out/*.wasm).

use meshward_harness::{wasm_path, Host, PropertyValue, Request, Response, Upstream};
use meshward_jwt_auth::fixtures::{self, AUDIENCE, ISSUER, NOW};
use meshward_jwt_auth::token::Algorithm;
use meshward_shared::fuzzing::{config as cases, soup};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

// Each case's heap is counted: `within` bounds it.
meshward_shared::count_allocations!();

fn ok() -> Upstream {
    Upstream::reply(Response::new(200).body("ok"))
}

fn jwt_config() -> Value {
    json!({"providers": [{
        "name": "idp",
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "jwks": fixtures::jwks(),
        "from": [{"header": "authorization", "prefix": "Bearer "}, {"query": "jwt"}, {"cookie": "jwt"}],
        "claims_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}],
    }]})
}

fn jwt_host() -> Host {
    Host::builder(wasm_path("jwt-auth"))
        .config_json(&jwt_config().to_string())
        .start_time(UNIX_EPOCH + Duration::from_secs(NOW))
        .build()
        .unwrap()
}

/// One valid token per algorithm, signed once for the whole run.
fn valid_tokens() -> &'static [String] {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        Algorithm::ALL
            .iter()
            .map(|&alg| fixtures::token(alg, NOW))
            .collect()
    })
}

const TOKEN_CHARS: &[&str] = &[
    "A", "B", "Q", "g", "w", "z", "0", "9", "-", "_", ".", "=", "+", "/", " ", "%41",
];

/// An edit of a token: a character replaced, removed or inserted, a segment swapped with
/// another token's, or the header re-encoded with another algorithm.
#[derive(Clone, Debug)]
enum Forgery {
    Replace(Index, &'static str),
    Remove(Index),
    Insert(Index, &'static str),
    Segment(usize, Index),
    Alg(&'static str),
}

fn forgery() -> impl Strategy<Value = Forgery> {
    prop_oneof![
        4 => (any::<Index>(), select(TOKEN_CHARS)).prop_map(|(i, c)| Forgery::Replace(i, c)),
        2 => any::<Index>().prop_map(Forgery::Remove),
        2 => (any::<Index>(), select(TOKEN_CHARS)).prop_map(|(i, c)| Forgery::Insert(i, c)),
        2 => (0usize..3, any::<Index>()).prop_map(|(s, t)| Forgery::Segment(s, t)),
        1 => select(&["none", "HS256", "RS256", "ES256", "PS512", "EdDSA", "HS512"][..]).prop_map(Forgery::Alg),
    ]
}

fn forge(token: &str, forgery: &Forgery) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    match forgery {
        Forgery::Replace(at, with) => {
            let i = at.index(chars.len());
            chars.splice(i..=i, with.chars());
        }
        Forgery::Remove(at) => {
            chars.remove(at.index(chars.len()));
        }
        Forgery::Insert(at, what) => {
            let i = at.index(chars.len() + 1);
            chars.splice(i..i, what.chars());
        }
        Forgery::Segment(segment, other) => {
            let tokens = valid_tokens();
            let donor = &tokens[other.index(tokens.len())];
            let mut parts: Vec<&str> = token.split('.').collect();
            if let Some(part) = donor.split('.').nth(*segment) {
                parts[*segment] = part;
            }
            return parts.join(".");
        }
        Forgery::Alg(alg) => {
            let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
            let header = json!({"alg": alg, "kid": fixtures::RSA_KID, "typ": "JWT"});
            parts[0] = meshward_jwt_auth::base64url::encode(header.to_string().as_bytes());
            return parts.join(".");
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(cases(32, 20))]

    /// No edit of a valid token passes, whichever source carries it, and the request never
    /// reaches the upstream; the untouched token still passes after.
    #[test]
    fn forged_tokens_never_pass(which in 0usize..8, edits in proptest::collection::vec(forgery(), 1..3), source in 0u8..3) {
        let tokens = valid_tokens();
        let valid = &tokens[which % tokens.len()];
        let forged = edits.iter().fold(valid.clone(), |t, e| forge(&t, e));
        prop_assume!(&forged != valid);
        let host = jwt_host();
        let carry = |token: &str| match source {
            0 => Request::get("/api").header("authorization", &format!("Bearer {token}")),
            1 => Request::get(&format!("/api?jwt={token}")),
            _ => Request::get("/api").header("cookie", &format!("a=b; jwt={token}")),
        };
        let out = host.send(carry(&forged), ok());
        prop_assert_eq!(out.response.status(), 401, "{}", forged);
        prop_assert!(out.upstream_request.is_none());
        prop_assert!(host.vm_alive(0));
        let out = host.send(carry(valid), ok());
        prop_assert_eq!(out.response.status(), 200);
    }

    /// Envoy's attributes reach circuit-metrics as bytes; whatever their length and value,
    /// the request is answered as the upstream answered it and the VM lives.
    #[test]
    fn any_property_encoding_is_read_without_crashing(
        values in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..12).prop_map(PropertyValue::Bytes),
                any::<i64>().prop_map(PropertyValue::Int),
                any::<bool>().prop_map(PropertyValue::Bool),
                any::<u64>().prop_map(|n| PropertyValue::Duration(Duration::from_nanos(n))),
            ],
            7,
        ),
        attempts_header in soup(&["1", "3", " ", "-1", "99999999999", "x", "\u{ff}"], 3),
        status in prop_oneof![Just(200u16), Just(503), 100u16..600],
    ) {
        let config = json!({"breakers": [{"cluster": "backend", "minimum_number_of_calls": 2, "sliding_window": {"count": 4}}]});
        let host = Host::builder(wasm_path("circuit-metrics")).config_json(&config.to_string()).build().unwrap();
        let paths = [
            "response.code", "response.flags", "request.duration", "upstream.request_attempt_count",
            "response.code_details", "xds.cluster_name", "xds.route_name",
        ];
        for _ in 0..3 {
            let mut request = Request::get("/x");
            for (path, value) in paths.iter().zip(&values) {
                request = request.property(path, value.clone());
            }
            let upstream = Upstream::reply(Response::new(status).header_bytes("x-envoy-attempt-count", &attempts_header));
            let out = host.send(request, upstream);
            prop_assert_eq!(out.response.status(), status);
        }
        prop_assert!(host.vm_alive(0));
    }
}

const HOSTILE: &[&str] = &[
    ",",
    ";",
    "=",
    " ",
    "%",
    "%zz",
    "\u{ff}",
    "\u{80}",
    "Bearer ",
    "eyJ",
    ".",
    "1.2.3.4",
    "::1",
    "eu-west-1",
    "true",
    "sid",
    "jwt",
    "\"",
    "\t",
    "x",
];

/// Each filter with a configuration that reads the headers below, and the statuses its
/// rules may answer.
fn filters() -> Vec<(&'static str, Value, &'static [u16])> {
    vec![
        (
            "security-headers",
            json!({"trust_x_forwarded_proto": true}),
            &[200],
        ),
        ("jwt-auth", jwt_config(), &[401]),
        (
            "rate-limit",
            json!({"rules": [{"name": "keys", "key": [{"x_forwarded_for": {"trusted_hops": 1}}, {"cookie": "sid"}, {"query": "user"}, {"header": "x-api-key"}],
                              "limit": {"capacity": 1000, "per": "1s"}}]}),
            &[200, 429],
        ),
        (
            "region-router",
            json!({"regions": [{"name": "eu-west-1", "cluster": "a"}, {"name": "us-east-1", "cluster": "b"}],
                   "local_region": "eu-west-1", "sticky": {"cookie": "sid"}}),
            &[200],
        ),
    ]
}

proptest! {
    #![proptest_config(cases(32, 20))]

    /// Hostile header bytes (not UTF-8, separators, many duplicates) in every header the
    /// filters read: the VM lives and the client sees an expected status.
    #[test]
    fn hostile_headers_crash_no_filter(
        values in proptest::collection::vec(soup(HOSTILE, 10), 1..12),
        path in soup(&["/", "?", "&", "user=", "jwt=", "%", "%2", "\u{ff}", "#", "a"], 8),
    ) {
        let names = ["authorization", "cookie", "x-forwarded-for", "x-forwarded-proto", "x-region-preference",
                     "x-latency-sensitive", "x-api-key", "x-jwt-sub", "cookie", "x-forwarded-for", "host", "x-request-id"];
        let path = format!("/{}", String::from_utf8_lossy(&path).replace(['\r', '\n', ' '], ""));
        for (name, config, allowed) in filters() {
            let host = Host::builder(wasm_path(name)).config_json(&config.to_string()).build().unwrap();
            let mut request = Request::get(&path);
            for (value, header) in values.iter().zip(names.iter().cycle()) {
                request = request.header_bytes(header, value);
            }
            let out = host.send(request, ok());
            prop_assert!(host.vm_alive(0), "{name} died");
            prop_assert!(allowed.contains(&out.response.status()), "{name}: {}", out.response.status());
        }
    }
}
