//! The jwt-auth filter in the harness: what clients and the upstream see for valid, invalid
//! and missing tokens, claim rules, forged claim headers, duplicate headers, remote key sets
//! (fetch, cache, refresh, unknown-kid refetch, failures keeping the last good keys, one
//! fetch for several workers) and Envoy's `verify_signature` host function.
//! Needs `make build` (out/jwt-auth.wasm).

use meshward_harness::{
    wasm_path, HarnessError, Host, HostBuilder, HttpCallReply, LogLevel, Outcome, Phase, Request,
    Response, Status, StreamState, Upstream,
};
use meshward_jwt_auth::fixtures::{self, Signer, AUDIENCE, ISSUER};
use meshward_jwt_auth::foreign;
use meshward_jwt_auth::token::Algorithm;
use serde_json::{json, Value};
use std::time::{Duration, UNIX_EPOCH};

// Fixtures.

const JWKS_PATH: &str = "/.well-known/jwks.json";

/// A provider with the fixture keys inline, forwarding `sub` and `groups` and the payload.
fn inline_provider() -> Value {
    json!({
        "name": "idp",
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "jwks": fixtures::jwks(),
        "claims_to_headers": [
            { "claim": "sub", "header": "x-jwt-sub" },
            { "claim": "groups", "header": "x-jwt-groups" },
        ],
        "payload_header": "x-jwt-payload",
    })
}

/// A provider whose keys come from the `jwks` cluster.
fn remote_provider() -> Value {
    json!({
        "name": "idp",
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "remote_jwks": {
            "cluster": "jwks",
            "uri": format!("https://idp.test{JWKS_PATH}"),
            "cache_duration": "10m",
            "min_refetch_interval": "30s",
            "retry_interval": "10s",
        },
        "claims_to_headers": [{ "claim": "sub", "header": "x-jwt-sub" }],
    })
}

fn builder(config: &Value) -> HostBuilder {
    Host::builder(wasm_path("jwt-auth")).config_json(&config.to_string())
}

fn host(config: &Value) -> Host {
    builder(config)
        .build()
        .unwrap_or_else(|e| panic!("the filter refused {config}: {e}"))
}

fn inline_host() -> Host {
    host(&json!({ "providers": [inline_provider()] }))
}

/// The harness clock in seconds since the epoch, for token times.
fn now(host: &Host) -> u64 {
    host.now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn get(token: &str) -> Request {
    Request::get("/api/items")
        .header("host", "api.test")
        .header("authorization", &format!("Bearer {token}"))
}

fn ok() -> Upstream {
    Upstream::reply(Response::new(200).body("ok"))
}

fn counter(host: &Host, name: &str) -> u64 {
    host.counter(&format!("meshward_jwt_auth.{name}"))
        .unwrap_or(0)
}

fn denied(host: &Host, reason: &str) -> u64 {
    counter(host, &format!("reason=.={reason};.;denied"))
}

fn challenge(out: &Outcome) -> &str {
    out.response.header_value("www-authenticate").unwrap_or("")
}

/// Answers a pending JWKS call on `worker` with `body` (status 200).
fn answer_jwks(host: &Host, worker: usize, body: &Value) {
    let calls = host.worker(worker).pending_http_calls();
    assert_eq!(
        calls.len(),
        1,
        "expected one JWKS fetch in flight, got {}",
        calls.len()
    );
    let call = &calls[0];
    assert_eq!(call.cluster, "jwks");
    assert_eq!(call.header(":path"), Some(JWKS_PATH));
    assert_eq!(call.header(":authority"), Some("idp.test"));
    assert!(host
        .worker(worker)
        .respond_http_call(call.token, Response::new(200).body(body.to_string())));
}

/// Runs one request that starts a JWKS fetch, answers it with the fixture keys, and
/// returns the outcome.
fn first_request_fetches(host: &Host, worker: usize, request: Request) -> Outcome {
    let stream = host.worker(worker).start(request);
    assert_eq!(stream.state(), StreamState::Paused(Phase::RequestHeaders));
    answer_jwks(host, worker, &fixtures::public_jwks());
    stream.respond(ok());
    stream.finish()
}

/// Why the filter refused this configuration: its error log lines.
fn refusal(config: &Value) -> String {
    match builder(config).build() {
        Ok(_) => panic!("the filter accepted {config}"),
        Err(error @ HarnessError::LoadFailed { .. }) => error
            .logs()
            .iter()
            .filter(|entry| entry.level == LogLevel::Error)
            .map(|entry| entry.message.clone())
            .collect::<Vec<_>>()
            .join("\n"),
        Err(other) => panic!("expected the filter to refuse {config}, got {other}"),
    }
}

// Tokens with inline keys.

#[test]
fn accepts_every_algorithm_and_forwards_the_claims_instead_of_the_token() {
    let host = inline_host();
    for alg in Algorithm::ALL {
        let token = fixtures::token(alg, now(&host));
        let out = host.send(get(&token), ok());
        assert_eq!(
            out.response.status(),
            200,
            "{alg}: {}",
            out.response.body_text()
        );
        let upstream = out.upstream_request.expect("reached the upstream");
        assert_eq!(upstream.header_value("x-jwt-sub"), Some("user-1"));
        assert_eq!(upstream.header_value("x-jwt-groups"), Some("staff,dev"));
        assert_eq!(
            upstream.header_value("x-jwt-payload"),
            token.split('.').nth(1)
        );
        assert_eq!(
            upstream.header_value("authorization"),
            None,
            "{alg}: the token is stripped"
        );
    }
    assert_eq!(counter(&host, "allowed"), Algorithm::ALL.len() as u64);
}

#[test]
fn the_corpus_gets_the_same_verdicts_as_the_pure_core() {
    let host = inline_host();
    for case in fixtures::corpus(now(&host)) {
        let out = host.send(get(&case.token), ok());
        match case.reason {
            None => assert_eq!(
                out.response.status(),
                200,
                "{}: {}",
                case.name,
                out.response.body_text()
            ),
            Some(reason) => {
                assert_eq!(out.response.status(), 401, "{}", case.name);
                let body: Value = serde_json::from_slice(out.response.body_bytes()).unwrap();
                assert_eq!(body["error"], format!("jwt_{reason}"), "{}", case.name);
                assert!(out.upstream_request.is_none(), "{}", case.name);
            }
        }
    }
    assert!(host.vm_alive(0), "no token may trap the VM");
}

#[test]
fn a_missing_token_gets_401_with_a_bare_bearer_challenge() {
    let host = inline_host();
    let out = host.send(Request::get("/").header("host", "api.test"), ok());
    assert_eq!(out.response.status(), 401);
    assert_eq!(challenge(&out), "Bearer realm=\"meshward\"");
    assert_eq!(
        out.response.header_value("content-type"),
        Some("application/json")
    );
    assert_eq!(denied(&host, "missing"), 1);
}

#[test]
fn an_invalid_token_gets_401_invalid_token_and_is_never_echoed() {
    let host = inline_host();
    let expired = fixtures::token(Algorithm::RS256, now(&host) - 7200);
    let out = host.send(get(&expired), ok());
    assert_eq!(out.response.status(), 401);
    assert_eq!(
        challenge(&out),
        "Bearer realm=\"meshward\", error=\"invalid_token\", error_description=\"the token has expired\""
    );
    let everything = format!("{:?} {}", out.response.headers(), out.response.body_text());
    for part in expired.split('.') {
        assert!(!everything.contains(part), "the reply quotes the token");
    }
    assert_eq!(denied(&host, "expired"), 1);
}

#[test]
fn a_valid_token_without_the_required_claims_gets_403_insufficient_scope() {
    let config = json!({
        "providers": [inline_provider()],
        "realm": "api",
        "rules": [
            { "match": { "path": {"prefix": "/admin"} }, "claims": [{ "claim": "scope", "scopes": ["admin"] }] },
            { "match": { "path": {"prefix": "/staff"} }, "claims": [{ "claim": "groups", "contains": "staff" }] },
        ],
    });
    let host = host(&config);
    let token = fixtures::token(Algorithm::ES256, now(&host));
    let bearer = format!("Bearer {token}");
    let admin = host.send(
        Request::get("/admin/users").header("authorization", &bearer),
        ok(),
    );
    assert_eq!(admin.response.status(), 403);
    assert_eq!(
        challenge(&admin),
        "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"the token lacks the scopes admin\", scope=\"admin\""
    );
    let staff = host.send(
        Request::get("/staff").header("authorization", &bearer),
        ok(),
    );
    assert_eq!(staff.response.status(), 200);
    assert_eq!(denied(&host, "insufficient_claims"), 1);
}

#[test]
fn a_token_in_a_custom_header_is_found_only_behind_its_prefix() {
    let mut provider = inline_provider();
    provider["from"] = json!([{ "header": "x-api-token", "prefix": "Token " }]);
    let host = host(&json!({ "providers": [provider] }));
    let token = fixtures::token(Algorithm::RS256, now(&host));
    let request = |value: &str| {
        Request::get("/api/items")
            .header("host", "api.test")
            .header("x-api-token", value)
    };

    let accepted = host.send(request(&format!("Token {token}")), ok());
    assert_eq!(accepted.response.status(), 200);
    let upstream = accepted.upstream_request.unwrap();
    assert_eq!(upstream.header_value("x-jwt-sub"), Some("user-1"));
    // The prefix is matched regardless of ASCII case, as the README says.
    let lower = host.send(request(&format!("token {token}")), ok());
    assert_eq!(lower.response.status(), 200);

    for value in [token.clone(), format!("Bearer {token}")] {
        let refused = host.send(request(&value), ok());
        assert_eq!(refused.response.status(), 401, "{value:.12}...");
        assert!(refused.upstream_request.is_none());
    }
    // The default source is not looked at once `from` names another.
    let bearer = host.send(get(&token), ok());
    assert_eq!(bearer.response.status(), 401);
    assert_eq!(denied(&host, "missing"), 3);
}

#[test]
fn two_authorization_headers_are_refused() {
    let host = inline_host();
    let good = fixtures::token(Algorithm::RS256, now(&host));
    let request = get(&good).header("authorization", "Bearer x.y.z");
    let out = host.send(request, ok());
    assert_eq!(out.response.status(), 401);
    assert_eq!(denied(&host, "malformed"), 1);
}

#[test]
fn forged_claim_headers_never_reach_the_upstream() {
    let config = json!({
        "providers": [inline_provider()],
        "rules": [{ "match": { "path": {"prefix": "/public"} }, "token": "ignored" }],
    });
    let host = host(&config);
    let forged = |request: Request| {
        request
            .header("x-jwt-sub", "admin")
            .header("x-jwt-sub", "root")
            .header("x-jwt-payload", "e30")
            .header("x-jwt-groups", "admins")
    };
    let public = host.send(forged(Request::get("/public/page")), ok());
    let upstream = public.upstream_request.expect("public pages pass");
    assert_eq!(upstream.header_value("x-jwt-sub"), None);
    assert_eq!(upstream.header_value("x-jwt-payload"), None);
    assert_eq!(upstream.header_value("x-jwt-groups"), None);

    let token = fixtures::token(Algorithm::EdDSA, now(&host));
    let private = host.send(forged(get(&token)), ok());
    let upstream = private.upstream_request.expect("a valid token passes");
    assert_eq!(upstream.headers().get_all("x-jwt-sub"), vec!["user-1"]);
    assert_eq!(
        upstream.headers().get_all("x-jwt-groups"),
        vec!["staff,dev"]
    );
}

#[test]
fn a_cors_preflight_passes_without_a_token() {
    let host = inline_host();
    let preflight = Request::new("OPTIONS", "/api/items")
        .header("origin", "https://app.test")
        .header("access-control-request-method", "POST");
    assert_eq!(host.send(preflight, ok()).response.status(), 200);
}

#[test]
fn a_repeated_token_is_served_from_the_cache_at_a_fraction_of_the_cost() {
    let host = inline_host();
    let token = fixtures::token(Algorithm::RS256, now(&host));
    let first = host.send(get(&token), ok());
    let second = host.send(get(&token), ok());
    assert_eq!(
        (first.response.status(), second.response.status()),
        (200, 200)
    );
    assert_eq!(
        (counter(&host, "cache_miss"), counter(&host, "cache_hit")),
        (1, 1)
    );
    let (miss, hit) = (first.cost.fuel(), second.cost.fuel());
    println!("RS256 fuel per request: verified {miss}, cached {hit}");
    assert!(
        hit * 5 < miss,
        "a cache hit ({hit}) should cost far less than a verification ({miss})"
    );
}

#[test]
fn a_cached_token_still_expires_on_time() {
    let host = inline_host();
    let mut claims = fixtures::claims(now(&host));
    claims["exp"] = json!(now(&host) + 100);
    let token = fixtures::token_with(Algorithm::ES256, &claims);
    assert_eq!(host.send(get(&token), ok()).response.status(), 200);
    host.advance(Duration::from_secs(100 + 60));
    let out = host.send(get(&token), ok());
    assert_eq!(out.response.status(), 401);
    assert_eq!(denied(&host, "expired"), 1);
}

// Every token in the request.

/// A token signed by a key no fixture key set holds: it must never verify.
fn forged(now: u64) -> String {
    fixtures::sign(
        Algorithm::RS256,
        &Signer::Rsa(fixtures::other_rsa_private_key()),
        &fixtures::header(Algorithm::RS256),
        &fixtures::claims(now),
    )
}

/// Two providers: the first reads a bearer header, the `access_token` query parameter and
/// the `jwt` cookie; the second reads `x-second-token`. The rule's mode is `mode`.
fn two_providers(mode: &str) -> Value {
    let mut first = inline_provider();
    first["from"] = json!([
        { "header": "authorization", "prefix": "Bearer " },
        { "query": "access_token" },
        { "cookie": "jwt" },
    ]);
    let mut second = inline_provider();
    second["name"] = json!("second");
    second["from"] = json!([{ "header": "x-second-token" }]);
    second["claims_to_headers"] = json!([]);
    second["payload_header"] = Value::Null;
    json!({ "providers": [first, second], "rules": [{ "mode": mode }] })
}

/// Where a token can be put, by index into [`PLACES`].
const PLACES: [&str; 4] = [
    "bearer header",
    "query parameter",
    "cookie",
    "second provider's header",
];
const BEARER: usize = 0;
const QUERY: usize = 1;
const COOKIE: usize = 2;
const SECOND: usize = 3;

/// A request to `/api/items?page=2` with each token at its place.
fn with_tokens(tokens: &[(usize, &str)]) -> Request {
    let mut path = "/api/items?page=2".to_string();
    for (place, token) in tokens {
        if *place == QUERY {
            path.push_str(&format!("&access_token={token}"));
        }
    }
    let mut request = Request::get(&path).header("host", "api.test");
    for (place, token) in tokens {
        request = match *place {
            BEARER => request.header("authorization", &format!("Bearer {token}")),
            COOKIE => request.header("cookie", &format!("theme=dark; jwt={token}")),
            SECOND => request.header("x-second-token", token),
            _ => request,
        };
    }
    request
}

#[test]
fn a_forged_token_beside_a_valid_one_is_refused_in_every_source_combination() {
    let host = host(&two_providers("any"));
    let (good, bad) = (
        fixtures::token(Algorithm::ES256, now(&host)),
        forged(now(&host)),
    );
    let mut refused = 0;
    for (good_at, g) in PLACES.iter().enumerate() {
        for (bad_at, b) in PLACES.iter().enumerate() {
            if good_at == bad_at {
                continue;
            }
            let out = host.send(with_tokens(&[(good_at, &good), (bad_at, &bad)]), ok());
            assert_eq!(
                out.response.status(),
                401,
                "valid in the {g}, forged in the {b}"
            );
            assert!(out.upstream_request.is_none(), "{g} / {b}");
            refused += 1;
        }
    }
    assert_eq!(denied(&host, "bad_signature"), refused);
    // Each valid token alone passes.
    for (at, name) in PLACES.iter().enumerate() {
        let out = host.send(with_tokens(&[(at, &good)]), ok());
        assert_eq!(out.response.status(), 200, "{name}");
    }
}

#[test]
fn in_all_mode_a_forged_token_beside_the_required_ones_is_refused() {
    let host = host(&two_providers("all"));
    let (good, bad) = (
        fixtures::token(Algorithm::ES256, now(&host)),
        forged(now(&host)),
    );
    let both = [(BEARER, good.as_str()), (SECOND, good.as_str())];
    assert_eq!(host.send(with_tokens(&both), ok()).response.status(), 200);
    assert_eq!(
        host.send(with_tokens(&both[..1]), ok()).response.status(),
        401,
        "all mode needs both"
    );
    for (what, tokens) in [
        (
            "a forged query parameter",
            vec![both[0], both[1], (QUERY, &bad)],
        ),
        ("a forged cookie", vec![both[0], both[1], (COOKIE, &bad)]),
        ("a forged second header", vec![both[0], (SECOND, &bad)]),
        ("a forged bearer", vec![(BEARER, &bad), both[1]]),
    ] {
        let out = host.send(with_tokens(&tokens), ok());
        assert_eq!(out.response.status(), 401, "{what}");
        let body: Value = serde_json::from_slice(out.response.body_bytes()).unwrap();
        assert_eq!(body["error"], "jwt_bad_signature", "{what}");
    }
}

#[test]
fn without_forward_every_token_location_is_taken_out() {
    let host = host(&two_providers("any"));
    let good = fixtures::token(Algorithm::EdDSA, now(&host));
    let all: Vec<(usize, &str)> = (0..PLACES.len()).map(|at| (at, good.as_str())).collect();
    let out = host.send(with_tokens(&all).header("x-keep", "1"), ok());
    assert_eq!(out.response.status(), 200, "{}", out.response.body_text());
    let upstream = out.upstream_request.expect("reached the upstream");
    assert_eq!(upstream.header_value("authorization"), None);
    assert_eq!(upstream.header_value("x-second-token"), None);
    assert_eq!(upstream.header_value(":path"), Some("/api/items?page=2"));
    assert_eq!(upstream.header_value("cookie"), Some("theme=dark"));
    assert_eq!(upstream.header_value("x-keep"), Some("1"));
    assert_eq!(upstream.header_value("x-jwt-sub"), Some("user-1"));
    assert_eq!(
        (
            counter(&host, "cache_miss"),
            counter(&host, "signature_wasm")
        ),
        (1, 1),
        "one token in four places is verified once"
    );
}

// Fail closed.

#[test]
fn an_array_claim_whose_element_holds_a_comma_sets_no_header() {
    let host = inline_host();
    let mut claims = fixtures::claims(now(&host));
    claims["groups"] = json!(["staff", "dev,admin"]);
    let out = host.send(get(&fixtures::token_with(Algorithm::ES256, &claims)), ok());
    assert_eq!(out.response.status(), 200);
    let upstream = out.upstream_request.unwrap();
    assert_eq!(upstream.header_value("x-jwt-groups"), None);
    assert_eq!(upstream.header_value("x-jwt-sub"), Some("user-1"));
}

#[test]
fn numeric_dates_out_of_jwt_authns_range_and_repeated_members_are_malformed() {
    let host = inline_host();
    let t = now(&host);
    let cases: Vec<(&str, String)> = vec![
        ("exp 1e30", {
            let mut c = fixtures::claims(t);
            c["exp"] = json!(1e30);
            fixtures::token_with(Algorithm::RS256, &c)
        }),
        ("nbf -1", {
            let mut c = fixtures::claims(t);
            c["nbf"] = json!(-1);
            fixtures::token_with(Algorithm::RS256, &c)
        }),
        ("sub twice", {
            let c = fixtures::claims(t).to_string();
            let doubled = format!("{},\"sub\":\"admin\"}}", c.trim_end_matches('}'));
            fixtures::sign_text(
                Algorithm::RS256,
                &fixtures::signer_for(Algorithm::RS256),
                &fixtures::header(Algorithm::RS256).to_string(),
                &doubled,
            )
        }),
    ];
    for (what, token) in &cases {
        let out = host.send(get(token), ok());
        assert_eq!(out.response.status(), 401, "{what}");
        assert!(out.upstream_request.is_none(), "{what}");
    }
    assert_eq!(denied(&host, "malformed"), cases.len() as u64);
}

#[test]
fn without_a_clock_a_token_is_refused_503_and_counted_never_taken_as_unexpired() {
    let host = inline_host();
    let token = fixtures::token(Algorithm::RS256, now(&host));
    assert_eq!(host.send(get(&token), ok()).response.status(), 200);
    host.set_clock_unreadable(true);
    // The same token (cached as verified) and a fresh one alike.
    let fresh = fixtures::token(Algorithm::ES256, now(&host));
    for token in [&token, &fresh] {
        let out = host.send(get(token), ok());
        assert_eq!(out.response.status(), 503);
        assert!(out.upstream_request.is_none());
        assert!(
            challenge(&out).starts_with("Bearer realm="),
            "{}",
            challenge(&out)
        );
    }
    assert_eq!(denied(&host, "clock_unavailable"), 2);
    // No token: still the usual 401.
    let bare = host.send(Request::get("/api/items").header("host", "api.test"), ok());
    assert_eq!(bare.response.status(), 401);
    host.set_clock_unreadable(false);
    assert_eq!(host.send(get(&fresh), ok()).response.status(), 200);
}

// Bounded work.

#[test]
fn a_replayed_forged_token_costs_a_hash_not_a_verification() {
    let host = inline_host();
    let bad = forged(now(&host));
    let first = host.send(get(&bad), ok());
    let again = host.send(get(&bad), ok());
    assert_eq!(
        (first.response.status(), again.response.status()),
        (401, 401)
    );
    assert_eq!(denied(&host, "bad_signature"), 2);
    assert_eq!(counter(&host, "failed_cache_hit"), 1);
    let (verified, remembered) = (first.cost.fuel(), again.cost.fuel());
    println!("forged RS256 fuel: first {verified}, replayed {remembered}");
    assert!(
        remembered * 5 < verified,
        "a replay ({remembered}) should cost far less than a verification ({verified})"
    );
}

#[test]
fn a_provider_refuses_algorithms_it_does_not_list() {
    let mut provider = inline_provider();
    provider["algorithms"] = json!(["ES256", "EdDSA"]);
    let host = host(&json!({ "providers": [provider] }));
    let t = now(&host);
    assert_eq!(
        host.send(get(&fixtures::token(Algorithm::ES256, t)), ok())
            .response
            .status(),
        200
    );
    let out = host.send(get(&fixtures::token(Algorithm::RS256, t)), ok());
    assert_eq!(out.response.status(), 401);
    assert!(challenge(&out).contains("the token's algorithm is not accepted"));
    assert_eq!(counter(&host, "signature_wasm"), 1);
}

/// Fuel (Wasm instructions) for one PS512 check in Wasm with keys of 2048, 3072 and 8192
/// bits. Fuel is exact where timings on a shared machine are not.
#[test]
fn ps512_cost_by_key_size_and_the_wasm_rsa_cap() {
    let big = fixtures::rsa_8192_private_key();
    let keys =
        |key: &fixtures::rsa::RsaPrivateKey| json!({ "keys": [fixtures::rsa_jwk(key, "k")] });
    let token = |key: &fixtures::rsa::RsaPrivateKey, t: u64| {
        fixtures::sign(
            Algorithm::PS512,
            &Signer::Rsa(key.clone()),
            &json!({ "alg": "PS512", "kid": "k" }),
            &fixtures::claims(t),
        )
    };
    let measure = |key: &fixtures::rsa::RsaPrivateKey, cap: u64| -> (u16, u64) {
        let mut provider = inline_provider();
        provider["jwks"] = keys(key);
        let host = builder(&json!({ "providers": [provider], "max_wasm_rsa_bits": cap }))
            .envoy_foreign_functions()
            .build()
            .unwrap();
        let out = host.send(get(&token(key, now(&host))), ok());
        (out.response.status(), out.cost.fuel())
    };
    let three = fixtures::rsa_test_keys()
        .into_iter()
        .find(|k| fixtures::rsa::traits::PublicKeyParts::size(k) == 384)
        .unwrap();
    let (s2048, f2048) = measure(&fixtures::rsa_private_key(), 4096);
    let (s3072, f3072) = measure(&three, 4096);
    let (s8192, f8192) = measure(&big, 8192);
    let (capped, f_capped) = measure(&big, 4096);
    println!(
        "PS512 fuel per request: 2048-bit {f2048}, 3072-bit {f3072}, 8192-bit {f8192}; \
         8192-bit over the default cap: {f_capped} (refused)"
    );
    assert_eq!((s2048, s3072, s8192), (200, 200, 200));
    assert_eq!(capped, 401);
    assert!(
        f8192 > 10 * f2048,
        "8192-bit RSA costs far more than 2048-bit"
    );
    assert!(f_capped * 10 < f8192, "a refused big key costs no RSA work");
}

// Envoy's verify_signature.

#[test]
fn rs_and_es_signatures_are_checked_by_the_host_when_it_offers_verify_signature() {
    let host = builder(&json!({ "providers": [inline_provider()], "cache": { "max_entries": 0 } }))
        .envoy_foreign_functions()
        .build()
        .unwrap();
    let t = now(&host);
    for alg in [
        Algorithm::RS256,
        Algorithm::RS512,
        Algorithm::ES256,
        Algorithm::ES384,
    ] {
        assert_eq!(
            host.send(get(&fixtures::token(alg, t)), ok())
                .response
                .status(),
            200,
            "{alg}"
        );
    }
    for alg in [Algorithm::PS256, Algorithm::EdDSA, Algorithm::HS256] {
        assert_eq!(
            host.send(get(&fixtures::token(alg, t)), ok())
                .response
                .status(),
            200,
            "{alg}"
        );
    }
    assert_eq!(counter(&host, "signature_host"), 4);
    assert_eq!(counter(&host, "signature_wasm"), 3);
    let forged = fixtures::sign(
        Algorithm::RS256,
        &Signer::Rsa(fixtures::other_rsa_private_key()),
        &fixtures::header(Algorithm::RS256),
        &fixtures::claims(t),
    );
    assert_eq!(host.send(get(&forged), ok()).response.status(), 401);
    assert_eq!(denied(&host, "bad_signature"), 1);
}

#[test]
fn without_verify_signature_every_signature_is_checked_in_wasm() {
    let host = inline_host();
    let token = fixtures::token(Algorithm::RS256, now(&host));
    assert_eq!(host.send(get(&token), ok()).response.status(), 200);
    assert_eq!(counter(&host, "signature_host"), 0);
    assert_eq!(counter(&host, "signature_wasm"), 1);
}

#[test]
fn a_host_that_refuses_the_key_falls_back_to_wasm() {
    let host = builder(&json!({ "providers": [inline_provider()] }))
        .foreign_function(foreign::VERIFY_SIGNATURE, |_| Err(Status::BadArgument))
        .build()
        .unwrap();
    let token = fixtures::token(Algorithm::ES256, now(&host));
    assert_eq!(host.send(get(&token), ok()).response.status(), 200);
    assert_eq!(counter(&host, "signature_wasm"), 1);
}

#[test]
fn host_crypto_can_be_turned_off() {
    let host = builder(&json!({ "providers": [inline_provider()], "host_crypto": false }))
        .envoy_foreign_functions()
        .build()
        .unwrap();
    let token = fixtures::token(Algorithm::RS256, now(&host));
    assert_eq!(host.send(get(&token), ok()).response.status(), 200);
    assert_eq!(counter(&host, "signature_host"), 0);
}

#[test]
fn fuel_per_request_for_the_benchmark_rows() {
    let measure = |alg: Algorithm, with_host: bool, distinct: bool| -> u64 {
        let mut b = builder(&json!({ "providers": [inline_provider()] }));
        if with_host {
            b = b.envoy_foreign_functions();
        }
        let host = b.build().unwrap();
        let t = now(&host);
        let tokens: Vec<String> = (0..5)
            .map(|i| {
                let mut claims = fixtures::claims(t);
                if distinct {
                    claims["jti"] = json!(i);
                }
                fixtures::token_with(alg, &claims)
            })
            .collect();
        host.send(get(&tokens[0]), ok());
        let fuel: u64 = tokens[1..]
            .iter()
            .map(|tk| host.send(get(tk), ok()).cost.fuel())
            .sum();
        fuel / 4
    };
    for alg in [Algorithm::RS256, Algorithm::ES256] {
        let repeated = measure(alg, false, false);
        let distinct_wasm = measure(alg, false, true);
        let distinct_host = measure(alg, true, true);
        println!("{alg}: fuel/request repeated {repeated}, distinct in wasm {distinct_wasm}, distinct with host crypto {distinct_host}");
        assert!(repeated < distinct_wasm);
        assert!(distinct_host < distinct_wasm);
    }
}

// Remote key sets.

#[test]
fn the_first_request_fetches_the_keys_and_later_ones_reuse_them() {
    let host = builder(&json!({ "providers": [remote_provider()] }))
        .cluster("jwks")
        .build()
        .unwrap();
    let token = fixtures::token(Algorithm::RS256, now(&host));
    let out = first_request_fetches(&host, 0, get(&token));
    assert_eq!(out.response.status(), 200, "{}", out.response.body_text());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-jwt-sub"),
        Some("user-1")
    );
    let other = fixtures::token(Algorithm::ES256, now(&host));
    assert_eq!(host.send(get(&other), ok()).response.status(), 200);
    assert!(host.worker(0).pending_http_calls().is_empty());
    assert_eq!(counter(&host, "jwks_fetch_ok"), 1);
}

#[test]
fn the_keys_are_refreshed_before_they_expire() {
    let host = builder(&json!({ "providers": [remote_provider()] }))
        .cluster("jwks")
        .build()
        .unwrap();
    let token = fixtures::token(Algorithm::RS256, now(&host));
    first_request_fetches(&host, 0, get(&token));
    host.advance(Duration::from_secs(8 * 60));
    assert!(
        host.worker(0).pending_http_calls().is_empty(),
        "fresh keys are not refetched"
    );
    host.advance(Duration::from_secs(60) + Duration::from_secs(1));
    let calls = host.worker(0).pending_http_calls();
    assert_eq!(
        calls.len(),
        1,
        "a refresh starts at nine tenths of the cache duration"
    );
    assert!(host.worker(0).respond_http_call(
        calls[0].token,
        Response::new(200).body(fixtures::public_jwks().to_string())
    ));
    assert_eq!(counter(&host, "jwks_fetch_ok"), 2);
}

#[test]
fn a_failed_refresh_keeps_the_last_good_keys() {
    let host = builder(&json!({ "providers": [remote_provider()] }))
        .cluster("jwks")
        .build()
        .unwrap();
    first_request_fetches(
        &host,
        0,
        get(&fixtures::token(Algorithm::RS256, now(&host))),
    );
    host.advance(Duration::from_secs(9 * 60 + 1));
    let call = host.worker(0).pending_http_calls().remove(0);
    host.worker(0)
        .settle_http_call(call.token, HttpCallReply::Reset);
    assert_eq!(counter(&host, "jwks_fetch_failed"), 1);
    host.advance(Duration::from_secs(5));
    let token = fixtures::token(Algorithm::ES256, now(&host));
    assert_eq!(host.send(get(&token), ok()).response.status(), 200);
    // The retry after the 10 s backoff (refresh checks run once a second) fails too, and so
    // do those past the whole cache duration: the last good keys stay in use.
    host.advance(Duration::from_secs(7));
    let again = host.worker(0).pending_http_calls().remove(0);
    host.worker(0)
        .respond_http_call(again.token, Response::new(503));
    host.advance(Duration::from_secs(60));
    for call in host.worker(0).pending_http_calls() {
        host.worker(0)
            .respond_http_call(call.token, Response::new(200).body("<html>not json</html>"));
    }
    let token = fixtures::token(Algorithm::EdDSA, now(&host));
    assert_eq!(host.send(get(&token), ok()).response.status(), 200);
    assert!(counter(&host, "jwks_fetch_failed") >= 3);
}

#[test]
fn an_unknown_kid_triggers_one_rate_limited_refetch() {
    let host = builder(&json!({ "providers": [remote_provider()] }))
        .cluster("jwks")
        .build()
        .unwrap();
    let only_rsa =
        json!({ "keys": [fixtures::rsa_jwk(&fixtures::rsa_private_key(), fixtures::RSA_KID)] });
    let stream = host
        .worker(0)
        .start(get(&fixtures::token(Algorithm::RS256, now(&host))));
    answer_jwks(&host, 0, &only_rsa);
    stream.respond(ok());
    assert_eq!(stream.finish().response.status(), 200);

    // The identity provider rotated in an EC key: the first token naming it refetches.
    let rotated = fixtures::token(Algorithm::ES256, now(&host));
    let stream = host.worker(0).start(get(&rotated));
    answer_jwks(&host, 0, &fixtures::public_jwks());
    stream.respond(ok());
    assert_eq!(stream.finish().response.status(), 200);

    // A kid nobody publishes: refetched at most once per interval, then refused from memory.
    let forged = |n: u32| {
        let header = json!({ "alg": "RS256", "kid": format!("forged-{n}") });
        fixtures::sign(
            Algorithm::RS256,
            &fixtures::signer_for(Algorithm::RS256),
            &header,
            &fixtures::claims(now(&host)),
        )
    };
    host.advance(Duration::from_secs(31));
    let stream = host.worker(0).start(get(&forged(0)));
    answer_jwks(&host, 0, &fixtures::public_jwks());
    assert_eq!(stream.finish().response.status(), 401);
    for n in 1..20 {
        let out = host.send(get(&forged(n)), ok());
        assert_eq!(out.response.status(), 401);
    }
    assert!(host.worker(0).pending_http_calls().is_empty());
    assert_eq!(counter(&host, "jwks_fetch_ok"), 3);
    assert_eq!(denied(&host, "unknown_kid"), 20);
}

#[test]
fn a_failed_first_fetch_refuses_the_request_and_backs_off() {
    let host = builder(&json!({ "providers": [remote_provider()] }))
        .cluster("jwks")
        .build()
        .unwrap();
    let token = fixtures::token(Algorithm::RS256, now(&host));
    let stream = host.worker(0).start(get(&token));
    let call = host.worker(0).pending_http_calls().remove(0);
    host.worker(0)
        .settle_http_call(call.token, HttpCallReply::TimeOut);
    let out = stream.finish();
    assert_eq!(out.response.status(), 401);
    assert!(challenge(&out).contains("the issuer's signing keys are not available"));
    assert_eq!(host.send(get(&token), ok()).response.status(), 401);
    assert!(
        host.worker(0).pending_http_calls().is_empty(),
        "no refetch during the backoff"
    );
    assert_eq!(counter(&host, "jwks_fetch_failed"), 1);
    host.advance(Duration::from_secs(11));
    assert_eq!(
        host.worker(0).pending_http_calls().len(),
        1,
        "the tick retries after the backoff"
    );
}

#[test]
fn several_workers_share_one_fetch() {
    let host = builder(&json!({ "providers": [remote_provider()] }))
        .cluster("jwks")
        .workers(3)
        .build()
        .unwrap();
    let token = fixtures::token(Algorithm::RS256, now(&host));
    let waiting = host.worker(0).start(get(&token));
    assert_eq!(waiting.state(), StreamState::Paused(Phase::RequestHeaders));
    // Every worker ticks while worker 0's fetch is in flight: none starts another.
    host.advance(Duration::from_secs(2));
    let in_flight: usize = (0..3)
        .map(|w| host.worker(w).pending_http_calls().len())
        .sum();
    assert_eq!(in_flight, 1);
    answer_jwks(&host, 0, &fixtures::public_jwks());
    waiting.respond(ok());
    assert_eq!(waiting.finish().response.status(), 200);
    for worker in 1..3 {
        let out = host.worker(worker).send(get(&token), ok());
        assert_eq!(out.response.status(), 200, "worker {worker}");
        assert!(host.worker(worker).pending_http_calls().is_empty());
    }
    host.advance(Duration::from_secs(5));
    let in_flight: usize = (0..3)
        .map(|w| host.worker(w).pending_http_calls().len())
        .sum();
    assert_eq!(in_flight, 0);
    assert_eq!(counter(&host, "jwks_fetch_ok"), 1);
}

#[test]
fn every_worker_uses_the_keys_one_root_fetched() {
    let host = builder(&json!({ "providers": [remote_provider()] }))
        .cluster("jwks")
        .workers(2)
        .build()
        .unwrap();
    host.advance(Duration::from_secs(1));
    let fetcher = (0..2)
        .find(|&w| !host.worker(w).pending_http_calls().is_empty())
        .expect("a root fetched");
    answer_jwks(&host, fetcher, &fixtures::public_jwks());
    let token = fixtures::token(Algorithm::ES384, now(&host));
    for worker in 0..2 {
        assert_eq!(
            host.worker(worker)
                .send(get(&token), ok())
                .response
                .status(),
            200
        );
    }
    assert_eq!(counter(&host, "jwks_fetch_ok"), 1);
}

#[test]
fn a_request_waits_for_a_fetch_in_flight_on_its_worker() {
    let host = builder(&json!({ "providers": [remote_provider()] }))
        .cluster("jwks")
        .build()
        .unwrap();
    let token = fixtures::token(Algorithm::RS256, now(&host));
    let fetching = host.worker(0).start(get(&token));
    let waiting = host.worker(0).start(get(&token));
    assert_eq!(waiting.state(), StreamState::Paused(Phase::RequestHeaders));
    answer_jwks(&host, 0, &fixtures::public_jwks());
    assert_eq!(fetching.state(), StreamState::AwaitingUpstream);
    assert_eq!(
        waiting.state(),
        StreamState::AwaitingUpstream,
        "resumed by the fetch that landed"
    );
    for stream in [fetching, waiting] {
        stream.respond(ok());
        let out = stream.finish();
        assert_eq!(out.response.status(), 200);
        assert_eq!(
            out.upstream_request.unwrap().header_value("x-jwt-sub"),
            Some("user-1")
        );
    }
    assert_eq!(counter(&host, "jwks_fetch_ok"), 1);
}

#[test]
fn a_request_waits_for_a_fetch_in_flight_on_another_worker() {
    let host = builder(&json!({ "providers": [remote_provider()] }))
        .cluster("jwks")
        .workers(2)
        .build()
        .unwrap();
    let token = fixtures::token(Algorithm::ES256, now(&host));
    let fetching = host.worker(0).start(get(&token));
    let waiting = host.worker(1).start(get(&token));
    assert!(host.worker(1).pending_http_calls().is_empty());
    answer_jwks(&host, 0, &fixtures::public_jwks());
    assert_eq!(waiting.state(), StreamState::Paused(Phase::RequestHeaders));
    host.advance(Duration::from_millis(250));
    assert_eq!(
        waiting.state(),
        StreamState::AwaitingUpstream,
        "resumed on its root's tick"
    );
    for stream in [fetching, waiting] {
        stream.respond(ok());
        assert_eq!(stream.finish().response.status(), 200);
    }
}

#[test]
fn a_waiting_request_is_refused_when_the_fetch_fails() {
    let host = builder(&json!({ "providers": [remote_provider()] }))
        .cluster("jwks")
        .workers(2)
        .build()
        .unwrap();
    let token = fixtures::token(Algorithm::RS256, now(&host));
    let fetching = host.worker(0).start(get(&token));
    let same_worker = host.worker(0).start(get(&token));
    let other_worker = host.worker(1).start(get(&token));
    let call = host.worker(0).pending_http_calls().remove(0);
    host.worker(0)
        .settle_http_call(call.token, HttpCallReply::Reset);
    host.advance(Duration::from_millis(250));
    for stream in [fetching, same_worker, other_worker] {
        let out = stream.finish();
        assert_eq!(out.response.status(), 401);
        assert!(challenge(&out).contains("signing keys are not available"));
    }
    assert_eq!(denied(&host, "unknown_kid"), 3);
}

// Configuration.

/// The documents of `k8s/base/jwt-auth.yaml`.
fn istio_example() -> Vec<Value> {
    let path = meshward_tests::repo_root().join("k8s/base/jwt-auth.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    text.split("\n---\n")
        .map(|document| serde_yaml_ng::from_str(document).unwrap())
        .collect()
}

#[test]
fn the_istio_example_fetches_through_the_service_entry_cluster() {
    let documents = istio_example();
    let plugin = documents
        .iter()
        .find(|d| d["kind"] == "WasmPlugin")
        .unwrap();
    assert_eq!(plugin["spec"]["phase"], "AUTHN");
    let entry = documents
        .iter()
        .find(|d| d["kind"] == "ServiceEntry")
        .unwrap();
    let cluster = format!(
        "outbound|443||{}",
        entry["spec"]["hosts"][0].as_str().unwrap()
    );
    let host = builder(&plugin["spec"]["pluginConfig"])
        .cluster(&cluster)
        .build()
        .unwrap();
    let health = host.send(
        Request::get("/health").header("host", "api.example.com"),
        ok(),
    );
    assert_eq!(health.response.status(), 200);
    let anonymous = host.send(
        Request::get("/v1/orders").header("host", "api.example.com"),
        ok(),
    );
    assert_eq!(anonymous.response.status(), 401);
    assert_eq!(challenge(&anonymous), "Bearer realm=\"api.example.com\"");
    let mut claims = fixtures::claims(now(&host));
    claims["iss"] = plugin["spec"]["pluginConfig"]["providers"][0]["issuer"].clone();
    claims["aud"] = json!("api.example.com");
    let token = fixtures::token_with(Algorithm::RS256, &claims);
    let stream = host
        .worker(0)
        .start(get(&token).header("host", "api.example.com"));
    let call = host.worker(0).pending_http_calls().remove(0);
    assert_eq!(call.cluster, cluster);
    assert_eq!(call.header(":authority"), Some("login.example.com"));
    assert_eq!(call.header(":path"), Some("/.well-known/jwks.json"));
    host.worker(0)
        .settle_http_call(call.token, HttpCallReply::Reset);
    assert_eq!(stream.finish().response.status(), 401);
}

#[test]
fn the_readme_example_is_accepted() {
    let readme =
        std::fs::read_to_string(meshward_tests::repo_root().join("filters/jwt-auth/README.md"))
            .unwrap();
    let start = readme.find("```json\n").unwrap() + "```json\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let config: Value = serde_json::from_str(&readme[start..end]).unwrap();
    let host = builder(&config).cluster("idp").build().unwrap();
    let out = host.send(Request::get("/health"), ok());
    assert_eq!(out.response.status(), 200);
}

#[test]
fn refuses_bad_configurations_naming_the_field() {
    let mut bad_key = inline_provider();
    bad_key["jwks"]["keys"][0]["n"] = json!("AQAB");
    let text = refusal(&json!({ "providers": [bad_key] }));
    assert!(
        text.contains("providers[0].jwks.keys[0].n: RSA keys must have 2048 to 8192 bits"),
        "{text}"
    );
    let text =
        refusal(&json!({ "providers": [inline_provider()], "rules": [{ "providers": ["nope"] }] }));
    assert!(
        text.contains("rules[0].providers[0]: unknown provider \"nope\""),
        "{text}"
    );
    let text = refusal(&json!({ "providers": [inline_provider()], "extra": 1 }));
    assert!(text.contains("unknown field `extra`"), "{text}");
}
