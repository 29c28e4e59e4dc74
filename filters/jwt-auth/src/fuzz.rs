//! Fuzz tests of every parser that sees a client's bytes or the configuration: base64url,
//! the token splitter with its JOSE header and claims, the token sources (header, query,
//! cookie), JWKS documents, the DER encodings handed to the host, and the configuration.
//! Each property: no panic, a bounded time, and where an oracle exists (`serde_json`, the
//! `rsa` and `p256` crates, a round trip) the same answer.

use crate::base64url;
use crate::claims;
use crate::config;
use crate::der;
use crate::fixtures;
use crate::jwks::{self, Limits, Strictness};
use crate::sources::{self, TokenSource};
use crate::token::{self, Algorithm, TokenError};
use meshward_shared::fuzzing::{config as cases, json_like, soup, text_soup, within};
use meshward_shared::pairs::Pair;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

// Each case's heap is counted: `within` bounds it.
meshward_shared::count_allocations!();

const BOUND: Duration = Duration::from_secs(2);

const BASE64_TOKENS: &[&str] = &[
    "A", "Q", "w", "g", "-", "_", "=", "+", "/", ".", " ", "AAAA", "eyJ", "\u{e9}",
];

fn claims_seed() -> Value {
    json!({
        "iss": fixtures::ISSUER,
        "aud": [fixtures::AUDIENCE, "other"],
        "sub": "user-1",
        "exp": fixtures::NOW + 60,
        "nbf": fixtures::NOW - 60,
        "iat": fixtures::NOW - 60,
        "groups": ["staff", "dev"],
        "nested": {"role": {"name": "admin"}},
        "scope": "read write"
    })
}

fn header_seed() -> Value {
    json!({"alg": "RS256", "kid": fixtures::RSA_KID, "typ": "JWT"})
}

/// A compact token: segments from random JSON shaped like a real header and claims, a
/// random signature, and sometimes raw soup in place of a segment.
fn token_text() -> impl Strategy<Value = String> {
    let segment = |seed: Value| {
        prop_oneof![
            4 => json_like(seed, 3).prop_map(|v| base64url::encode(v.to_string().as_bytes())),
            1 => text_soup(BASE64_TOKENS, 12),
        ]
    };
    (
        segment(header_seed()),
        segment(claims_seed()),
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(|s| base64url::encode(&s)),
        prop_oneof![Just("."), Just(""), Just(".."), Just(".x")],
    )
        .prop_map(|(h, p, s, extra)| format!("{h}.{p}.{s}{extra}"))
}

fn header_pair(name: &'static str) -> impl Strategy<Value = Pair> {
    soup(
        &[
            "Bearer ", "bearer", "Basic ", " ", "a.b.c", "eyJ", "=", ";", ",", "\"", "jwt",
            "\u{ff}", "\0",
        ],
        8,
    )
    .prop_map(move |v| (name.to_string(), v))
}

fn request_headers() -> impl Strategy<Value = Vec<Pair>> {
    proptest::collection::vec(
        prop_oneof![
            header_pair("authorization"),
            header_pair("cookie"),
            header_pair("x-token"),
            header_pair("x-other"),
        ],
        0..6,
    )
}

fn query_path() -> impl Strategy<Value = String> {
    text_soup(
        &[
            "/", "?", "&", "=", "#", "%", "%2", "%3D", "%26", "%zz", "+", "jwt", "token", "a.b.c",
            "\u{e9}",
        ],
        14,
    )
}

fn all_sources() -> Vec<TokenSource> {
    vec![
        TokenSource::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        },
        TokenSource::Header {
            name: "x-token".into(),
            prefix: String::new(),
        },
        TokenSource::Query("jwt".into()),
        TokenSource::Query("token".into()),
        TokenSource::Cookie("jwt".into()),
    ]
}

/// Every byte percent-encoded, as a client may write a query value.
fn percent_encode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

proptest! {
    #![proptest_config(cases(512, 1))]

    /// Decoding is strict: what decodes has exactly one spelling, the one `encode` writes.
    #[test]
    fn base64url_decodes_only_its_one_spelling(input in soup(BASE64_TOKENS, 24)) {
        if let Some(bytes) = within(BOUND, "base64url::decode", || base64url::decode(&input))? {
            prop_assert_eq!(base64url::encode(&bytes).into_bytes(), input.clone());
            prop_assert!(bytes.len() <= input.len() * 3 / 4 + 1);
        }
        if let Some(bytes) = base64url::decode_padded(&input) {
            let unpadded: Vec<u8> = input.iter().copied().take_while(|&b| b != b'=').collect();
            prop_assert_eq!(base64url::encode(&bytes).into_bytes(), unpadded);
        }
    }

    /// Any bytes survive the round trip.
    #[test]
    fn base64url_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let text = base64url::encode(&bytes);
        prop_assert_eq!(base64url::decode(text.as_bytes()), Some(bytes.clone()));
        let padding = "=".repeat((4 - text.len() % 4) % 4);
        prop_assert_eq!(base64url::decode_padded(format!("{text}{padding}").as_bytes()), Some(bytes));
    }

    /// The token splitter and the JOSE header and claims parsing: no panic, and a token
    /// that parses carries exactly what `serde_json` reads from its segments.
    #[test]
    fn tokens_parse_as_serde_json_reads_them(raw in token_text(), max in prop_oneof![Just(8192usize), 0usize..200]) {
        let parsed = within(BOUND, "token::parse", || token::parse(&raw, max))?;
        match parsed {
            Ok(token) => {
                let parts: Vec<&str> = raw.split('.').collect();
                prop_assert_eq!(parts.len(), 3);
                let header: Value = serde_json::from_slice(&base64url::decode(parts[0].as_bytes()).unwrap()).unwrap();
                let claims: Value = serde_json::from_slice(&base64url::decode(parts[1].as_bytes()).unwrap()).unwrap();
                prop_assert_eq!(Some(token.header.alg), header["alg"].as_str().and_then(Algorithm::from_name));
                prop_assert_eq!(token.header.kid.as_deref(), header["kid"].as_str());
                prop_assert_eq!(&Value::Object(token.claims.clone()), &claims);
                prop_assert_eq!(token.signing_input.to_vec(), format!("{}.{}", parts[0], parts[1]).into_bytes());
                prop_assert_eq!(base64url::decode(parts[2].as_bytes()), Some(token.signature.clone()));
                prop_assert!(raw.len() <= max);
            }
            Err(TokenError::TooLarge) => prop_assert!(raw.len() > max),
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    /// Claims of any shape: the time claims, issuer and audience checks, claim lookups
    /// and the header value of a claim never panic.
    #[test]
    fn claims_of_any_shape_are_checked_without_panicking(
        claims in json_like(claims_seed(), 4),
        path in proptest::collection::vec("[a-z]{0,6}|nested|role|name|groups", 0..4),
    ) {
        let Value::Object(claims) = claims else { return Ok(()) };
        within(BOUND, "claims", || {
            let _times = claims::times(&claims);
            let _issuer = claims::check_issuer(&claims, Some(fixtures::ISSUER));
            let _audience = claims::check_audience(&claims, &[fixtures::AUDIENCE.to_string()]);
            if let Some(value) = claims::lookup(&claims, &path) {
                if let Some(text) = claims::header_value(value) {
                    assert!(!text.contains(['\r', '\n', '\0']), "{text:?}");
                }
            }
        })?;
    }

    /// Token sources read hostile headers and paths without panicking; what they find is
    /// a non-empty token from one of the sources.
    #[test]
    fn token_sources_read_hostile_requests(headers in request_headers(), path in query_path()) {
        let sources = all_sources();
        let found = within(BOUND, "sources::extract_all", || sources::extract_all(&sources, &sources::lend(&headers), &path))?;
        if let Ok(found) = found {
            prop_assert!(found.len() <= sources.len());
            for found in found {
                prop_assert!(!found.token.is_empty());
                prop_assert!(found.source < sources.len());
            }
        }
        let stripped = sources::without_query_params(&path, &["jwt"]);
        prop_assert!(stripped.len() <= path.len());
    }

    /// A token taken out of the query is gone: the request forwarded upstream carries no
    /// `jwt` parameter the filter would read.
    #[test]
    fn a_removed_query_token_cannot_be_read_again(path in query_path()) {
        let stripped = sources::without_query_params(&path, &["jwt"]);
        let source = [TokenSource::Query("jwt".into())];
        prop_assert_eq!(sources::extract_all(&source, &[], &stripped), Ok(vec![]), "{:?} -> {:?}", path, stripped);
    }

    /// A token taken out of the cookies is gone, and the other cookies stay.
    #[test]
    fn a_removed_cookie_token_cannot_be_read_again(headers in request_headers()) {
        let cookie = sources::without_cookies(&sources::lend(&headers), &["jwt"]);
        let rewritten: Vec<Pair> = cookie.into_iter().map(|c| ("cookie".to_string(), c)).collect();
        let source = [TokenSource::Cookie("jwt".into())];
        prop_assert_eq!(sources::extract_all(&source, &sources::lend(&rewritten), "/"), Ok(vec![]));
    }

    /// A percent-encoded query token reads back as the client wrote it.
    #[test]
    fn query_tokens_are_percent_decoded(token in "[A-Za-z0-9._~-]{1,40}|\\PC{1,12}", other in "[a-z]{1,4}=[a-z0-9]{0,4}") {
        let path = format!("/p?{other}&jwt={}", percent_encode(&token));
        prop_assume!(!other.starts_with("jwt="));
        let found = sources::extract_all(&[TokenSource::Query("jwt".into())], &[], &path);
        prop_assert_eq!(found.map(|f| f.into_iter().map(|f| f.token.into_owned()).collect::<Vec<_>>()), Ok(vec![token]));
    }

    /// A cookie token reads back as written, among other cookies in any header.
    #[test]
    fn cookie_tokens_are_read_back(token in "[A-Za-z0-9._-]{1,40}", before in "[a-z]{1,4}=[a-z0-9]{0,4}", split in any::<bool>()) {
        prop_assume!(!before.starts_with("jwt="));
        let headers: Vec<Pair> = if split {
            vec![("cookie".into(), before.clone().into_bytes()), ("cookie".into(), format!("jwt={token}").into_bytes())]
        } else {
            vec![("cookie".into(), format!("{before}; jwt={token}").into_bytes())]
        };
        let found = sources::extract_all(&[TokenSource::Cookie("jwt".into())], &sources::lend(&headers), "/");
        prop_assert_eq!(found.map(|f| f.into_iter().map(|f| f.token.into_owned()).collect::<Vec<_>>()), Ok(vec![token]));
    }
}

proptest! {
    #![proptest_config(cases(64, 8))]

    /// Key sets from an identity provider or the configuration: no panic, the limits hold,
    /// and strict parsing accepts a subset of what lenient parsing does.
    #[test]
    fn key_sets_of_any_shape_parse_within_their_limits(
        doc in json_like(fixtures::public_jwks(), 4),
        raw in soup(&["{", "}", "[", "]", "\"keys\"", ":", ",", "\"kty\"", "\"RSA\"", "\"n\"", "\"AQAB\"", "\"EC\""], 16),
        max_keys in 1usize..8,
    ) {
        let limits = Limits { max_bytes: 64 * 1024, max_keys };
        let bytes = doc.to_string().into_bytes();
        let strict = within(BOUND, "jwks::parse", || jwks::parse(&bytes, limits, Strictness::Strict))?;
        let lenient = within(BOUND, "jwks::parse", || jwks::parse(&bytes, limits, Strictness::SkipUnusable))?;
        let remote = within(BOUND, "jwks::parse", || jwks::parse(&bytes, limits, Strictness::Remote))?;
        if let Ok(strict) = &strict {
            prop_assert!(strict.set.keys.len() <= max_keys);
            prop_assert_eq!(strict.skipped, 0);
            let lenient = lenient.as_ref().map_err(|e| TestCaseError::fail(format!("lenient refused what strict took: {e}")))?;
            prop_assert_eq!(lenient.set.keys.len(), strict.set.keys.len());
        }
        if let Ok(remote) = &remote {
            prop_assert!(remote.set.keys.iter().all(|k| !matches!(k.material, jwks::KeyMaterial::Hmac(_))));
        }
        if let Err(error) = &strict {
            prop_assert!(!error.to_string().is_empty());
        }
        let _raw = within(BOUND, "jwks::parse", || jwks::parse(&raw, limits, Strictness::SkipUnusable))?;
    }

    /// The jwt-auth configuration, as random documents shaped like a full one: parsed or
    /// refused with a message, never a panic.
    #[test]
    fn configs_shaped_like_a_real_one_parse_or_name_a_problem(doc in json_like(config_seed(), 5)) {
        let bytes = doc.to_string().into_bytes();
        if let Err(error) = within(BOUND, "config::parse", || config::parse(&bytes))? {
            prop_assert!(!error.to_string().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(cases(64, 1))]

    /// The key the host is given is the DER the `rsa` crate writes for the same modulus
    /// and exponent, leading zeros and all.
    #[test]
    fn rsa_keys_are_the_der_the_rsa_crate_writes(
        n in proptest::collection::vec(any::<u8>(), 1..300),
        e in proptest::collection::vec(any::<u8>(), 1..5),
    ) {
        use rsa::pkcs8::EncodePublicKey;
        let n_big = rsa::BigUint::from_bytes_be(&n);
        let e_big = rsa::BigUint::from_bytes_be(&e);
        prop_assume!(n_big != rsa::BigUint::default() && e_big != rsa::BigUint::default());
        let theirs = rsa::RsaPublicKey::new_unchecked(n_big, e_big).to_public_key_der().unwrap();
        prop_assert_eq!(der::rsa_spki(&n, &e), theirs.as_bytes().to_vec());
    }

    /// JOSE's raw `r || s` becomes the DER signature the `p256` crate reads back to the
    /// same `r` and `s`; other lengths are refused or encoded without panicking.
    #[test]
    fn ecdsa_signatures_are_the_der_the_p256_crate_reads(raw in proptest::collection::vec(any::<u8>(), 64..=64), odd in proptest::collection::vec(any::<u8>(), 0..140)) {
        let ours = der::ecdsa_signature(&raw).unwrap();
        if let Ok(signature) = p256::ecdsa::Signature::from_der(&ours) {
            prop_assert_eq!(signature.to_bytes().to_vec(), raw);
        }
        if let Some(encoded) = der::ecdsa_signature(&odd) {
            prop_assert!(encoded.len() <= odd.len() + 12);
        } else {
            prop_assert!(odd.is_empty() || odd.len() % 2 == 1);
        }
    }
}

/// A configuration with every field set, for the configuration fuzz.
fn config_seed() -> Value {
    json!({
        "providers": [{
            "name": "idp",
            "issuer": fixtures::ISSUER,
            "audiences": [fixtures::AUDIENCE],
            "jwks": fixtures::public_jwks(),
            "from": [{"header": "authorization", "prefix": "Bearer "}, {"query": "jwt"}, {"cookie": "jwt"}],
            "forward": false,
            "claims_to_headers": [{"claim": "sub", "header": "x-jwt-sub"}, {"claim": ["nested", "role"], "header": "x-jwt-role"}],
            "payload_header": "x-jwt-payload",
            "clock_skew": "30s",
            "require_exp": true,
            "max_lifetime": "1h"
        }, {
            "name": "remote",
            "issuer": "https://remote.test",
            "remote_jwks": {
                "cluster": "idp", "uri": "https://idp.test/jwks", "timeout": "1s",
                "cache_duration": "10m", "min_refetch_interval": "5s", "retry_interval": "1s",
                "max_bytes": 65536, "max_keys": 16
            }
        }],
        "rules": [{
            "match": {"hosts": ["api.test"], "path": {"prefix": "/api"}, "methods": ["GET"]},
            "providers": ["idp", "remote"],
            "mode": "any",
            "token": "required",
            "claims": [{"claim": "groups", "contains": "staff"}, {"claim": "scope", "scopes": ["read"]},
                       {"claim": "sub", "provider": "idp", "one_of": ["a", "b"]}, {"claim": "iss", "equals": "x"}]
        }, {"match": {"path": {"exact": "/health"}}, "token": "ignored"}],
        "realm": "meshward",
        "max_token_bytes": 8192,
        "cache": {"max_entries": 64},
        "host_crypto": true
    })
}

#[test]
fn the_configuration_fuzz_starts_from_a_configuration_that_parses() {
    config::parse(config_seed().to_string().as_bytes()).unwrap();
}
