//! The jwt-auth filter in a real Envoy: with `envoy-config/jwt-auth.yaml` and its keys
//! served by a local JWKS server, tokens signed by PyJWT are accepted and their claims reach
//! the upstream, 401 and 403 carry their challenges, forged claim headers are removed, a
//! rotated key is found by one refetch, and Envoy's `verify_signature` checks RS/ES
//! signatures; and the test corpus gets the same verdicts from the filter as from Envoy's
//! native `jwt_authn` configured alike. Needs `make build` (out/jwt-auth.wasm) and
//! `make setup` (Envoy and PyJWT in .venv).

use meshward_jwt_auth::fixtures::{self, AUDIENCE, ISSUER};
use meshward_jwt_auth::token::Algorithm;
use meshward_tests::config::UPSTREAM_PORT;
use meshward_tests::{http1, repo_root, Envoy, EnvoyConfig, Reply, Request, Response, Upstream};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

const CONFIG: &str = "jwt-auth.yaml";
/// The JWKS cluster's port in the config file.
const JWKS_PORT: u16 = 8081;
const JWKS_PATH: &str = "/.well-known/jwks.json";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Claims the example config accepts, with an hour to live.
fn claims(scope: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-7",
        "tenant": "acme",
        "scope": scope,
        "iat": now(),
        "exp": now() + 3600,
    })
}

/// Tokens signed by PyJWT, one per spec (`{"alg", "claims", "headers"}`).
/// Tokens signed by PyJWT. It blocks the thread for as long as Python takes, so the tests
/// that call it with Envoy running use a multi-threaded runtime: on one thread, the JWKS
/// server would not answer Envoy's fetch until Python was done, and under load that outlasts
/// the fetch's 2 s timeout.
fn pyjwt(specs: &Value) -> Vec<String> {
    let python = repo_root().join(".venv/bin/python");
    let script = repo_root().join("tests/tools/pyjwt_sign.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(specs.to_string())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (make setup installs it): {e}",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "PyJWT failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn bearer(path: &str, token: &str) -> Request {
    Request::get(path).with_header("authorization", &format!("Bearer {token}"))
}

/// A JWKS server answering with `jwks`.
async fn jwks_server(jwks: &Value) -> Upstream {
    let server = Upstream::start().await.unwrap();
    server.reply_with(
        Reply::status(200)
            .with_header("content-type", "application/json")
            .with_body(jwks.to_string()),
    );
    server
}

/// Envoy with the example config, its upstream and JWKS server.
async fn envoy(upstream: &Upstream, jwks: &Upstream) -> Envoy {
    let config = EnvoyConfig::load(CONFIG)
        .unwrap()
        .upstream(UPSTREAM_PORT, upstream.port())
        .upstream(JWKS_PORT, jwks.port());
    Envoy::start(config).await.unwrap()
}

async fn stat(envoy: &Envoy, name: &str) -> f64 {
    envoy.stats().await.unwrap().get(name, &[]).unwrap_or(0.0)
}

fn body_error(response: &Response) -> String {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    body["error"].as_str().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_by_pyjwt_are_accepted_and_their_claims_reach_the_upstream() {
    let upstream = Upstream::start().await.unwrap();
    let jwks = jwks_server(&fixtures::public_jwks()).await;
    let envoy = envoy(&upstream, &jwks).await;
    let algs = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ];
    let specs: Vec<Value> = algs
        .iter()
        .map(|alg| json!({ "alg": alg, "claims": claims("read write") }))
        .collect();
    let tokens = pyjwt(&json!(specs));
    for (alg, token) in algs.iter().zip(&tokens) {
        let response = envoy
            .send(bearer("/api/items", token).with_header("x-jwt-sub", "forged"))
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{alg}: {}", response.text());
        let received = upstream.received().pop().unwrap();
        assert_eq!(received.header_all("x-jwt-sub"), vec!["user-7"], "{alg}");
        assert_eq!(received.header("x-jwt-tenant"), Some("acme"), "{alg}");
        assert_eq!(received.header("x-jwt-scope"), Some("read write"), "{alg}");
        assert_eq!(
            received.header("authorization"),
            None,
            "{alg}: the token is stripped"
        );
    }
    // Envoy 1.40 offers verify_signature: RS256/384/512 and ES256/384 ran in BoringSSL.
    assert_eq!(stat(&envoy, "meshward_jwt_auth_signature_host").await, 5.0);
    assert_eq!(stat(&envoy, "meshward_jwt_auth_signature_wasm").await, 4.0);
    assert_eq!(
        stat(&envoy, "meshward_jwt_auth_allowed").await,
        algs.len() as f64
    );
    // One fetch for the whole proxy, whichever of its workers and main thread came first.
    let fetches = jwks.received();
    assert_eq!(fetches.len(), 1, "{fetches:?}");
    assert_eq!(fetches[0].path, JWKS_PATH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_their_challenges_and_open_paths_stay_open() {
    let upstream = Upstream::start().await.unwrap();
    let jwks = jwks_server(&fixtures::public_jwks()).await;
    let envoy = envoy(&upstream, &jwks).await;
    let mut expired = claims("read");
    expired["exp"] = json!(now() - 600);
    let tokens = pyjwt(&json!([
        { "alg": "ES256", "claims": claims("read") },
        { "alg": "ES256", "claims": expired },
        { "alg": "ES256", "claims": claims("read admin") },
    ]));
    let (reader, expired, admin) = (&tokens[0], &tokens[1], &tokens[2]);

    let missing = envoy.get("/api/items").await.unwrap();
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"meshward-demo\"")
    );
    assert_eq!(body_error(&missing), "jwt_missing");

    let stale = envoy.send(bearer("/api/items", expired)).await.unwrap();
    assert_eq!(stale.status, 401);
    assert_eq!(
        stale.header("www-authenticate"),
        Some("Bearer realm=\"meshward-demo\", error=\"invalid_token\", error_description=\"the token has expired\"")
    );
    assert!(!stale.text().contains(expired.as_str()));

    let forbidden = envoy.send(bearer("/admin/users", reader)).await.unwrap();
    assert_eq!(forbidden.status, 403);
    assert_eq!(
        forbidden.header("www-authenticate"),
        Some("Bearer realm=\"meshward-demo\", error=\"insufficient_scope\", error_description=\"the token lacks the scopes admin\", scope=\"admin\"")
    );
    assert_eq!(
        envoy
            .send(bearer("/admin/users", admin))
            .await
            .unwrap()
            .status,
        200
    );

    // Path tricks cannot reach /admin/ without the scope: Envoy normalises first.
    for sneaky in ["/public/../admin/users", "//admin/users", "/%61dmin/users"] {
        let response = envoy.send(bearer(sneaky, reader)).await.unwrap();
        assert!(
            response.status == 403 || response.status >= 300 && response.status < 400,
            "{sneaky}: {}",
            response.status
        );
    }

    assert_eq!(envoy.get("/health").await.unwrap().status, 200);
    assert_eq!(envoy.get("/public/page").await.unwrap().status, 200);
    assert_eq!(
        envoy
            .send(bearer("/public/page", expired))
            .await
            .unwrap()
            .status,
        401
    );
    let preflight = Request::new("OPTIONS", "/api/items")
        .with_header("origin", "https://app.test")
        .with_header("access-control-request-method", "POST");
    assert_eq!(envoy.send(preflight).await.unwrap().status, 200);

    // The config's stats tag makes the denials one metric with a `reason` label.
    let stats = envoy.stats().await.unwrap();
    let denied = |reason: &str| stats.get("meshward_jwt_auth_denied", &[("reason", reason)]);
    assert_eq!(denied("missing"), Some(1.0));
    assert_eq!(denied("expired"), Some(2.0));
    assert!(denied("insufficient_claims") >= Some(1.0));
    assert_eq!(denied("wrong_audience"), Some(0.0));
    assert_eq!(stats.get("meshward_jwt_auth_denied_expired", &[]), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_in_key_is_found_by_one_refetch() {
    let upstream = Upstream::start().await.unwrap();
    let only_rsa =
        json!({ "keys": [fixtures::rsa_jwk(&fixtures::rsa_private_key(), fixtures::RSA_KID)] });
    let jwks = jwks_server(&only_rsa).await;
    let envoy = envoy(&upstream, &jwks).await;
    let tokens = pyjwt(&json!([
        { "alg": "RS256", "claims": claims("read"), "headers": { "kid": fixtures::RSA_KID } },
        { "alg": "ES256", "claims": claims("read"), "headers": { "kid": fixtures::P256_KID } },
    ]));
    assert_eq!(
        envoy.send(bearer("/api", &tokens[0])).await.unwrap().status,
        200
    );
    jwks.reply_with(Reply::status(200).with_body(fixtures::public_jwks().to_string()));
    let response = envoy.send(bearer("/api", &tokens[1])).await.unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(jwks.received().len(), 2);
    assert_eq!(stat(&envoy, "meshward_jwt_auth_jwks_fetch_ok").await, 2.0);
}

/// A listener on `port` with one HTTP filter before the router, routing everything to the
/// `upstream` cluster.
fn listener(name: &str, port: u16, filter: Value) -> Value {
    json!({
        "name": name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } },
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"],
                    "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "upstream" } }] }] },
                "http_filters": [filter, {
                    "name": "envoy.filters.http.router",
                    "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
                }],
            },
        }]}],
    })
}

/// The jwt-auth Wasm filter with `config`.
fn wasm_filter(config: &Value) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "jwt-auth", "root_id": "jwt-auth",
                "configuration": { "@type": "type.googleapis.com/google.protobuf.StringValue", "value": config.to_string() },
                "vm_config": { "vm_id": "meshward-jwt-auth", "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": "out/jwt-auth.wasm" } } },
                "failure_policy": "FAIL_CLOSED",
            },
        },
    })
}

/// A bootstrap with `listeners` and the `upstream` cluster.
fn bootstrap(listeners: Vec<Value>) -> EnvoyConfig {
    let bootstrap = json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 9901 } } },
        "static_resources": {
            "listeners": listeners,
            "clusters": [{
                "name": "upstream", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": { "cluster_name": "upstream", "endpoints": [{ "lb_endpoints": [{ "endpoint": {
                    "address": { "socket_address": { "address": "127.0.0.1", "port_value": UPSTREAM_PORT } } } }] }] },
            }],
        },
    });
    EnvoyConfig::from_yaml(&bootstrap.to_string()).unwrap()
}

/// A config with two listeners in front of the same upstream: 10000 through the filter,
/// 10001 through Envoy's native jwt_authn, both given the fixture keys, issuer, audience,
/// 60 s of clock skew and a required `exp`.
fn differential_config() -> EnvoyConfig {
    let jwks = fixtures::jwks().to_string();
    let filter_config = json!({
        "providers": [{ "name": "idp", "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": fixtures::jwks() }],
        "cache": { "max_entries": 0 },
    });
    let native = json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": { "idp": {
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "local_jwks": { "inline_string": jwks },
                "require_expiration": true,
                "clock_skew_seconds": 60,
            }},
            "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "idp" } }],
        },
    });
    bootstrap(vec![
        listener("meshward", 10000, wasm_filter(&filter_config)),
        listener("native", 10001, native),
    ])
}

/// Where the filter and native jwt_authn knowingly differ, and how (in corpus order).
const KNOWN_DIFFERENCES: &[(&str, u16)] = &[
    // jwt_authn does not look at iat; the filter refuses a token issued in the future.
    ("issued in the future", 200),
    // Both refuse; jwt_authn answers 403, the filter 401 invalid_token (RFC 6750 §3.1: a
    // token for another audience is not valid here, it is not a lack of scope).
    ("wrong audience", 403),
    // jwt_authn has no token size limit (only Envoy's 60 KiB header limit).
    ("oversized", 200),
];

#[tokio::test]
async fn the_corpus_gets_the_same_verdicts_as_native_jwt_authn() {
    let upstream = Upstream::start().await.unwrap();
    let config = differential_config().upstream(UPSTREAM_PORT, upstream.port());
    let envoy = Envoy::start(config).await.unwrap();
    let (ours, native) = (
        envoy.listener_addr(10000).unwrap(),
        envoy.listener_addr(10001).unwrap(),
    );
    let mut differences = Vec::new();
    for case in fixtures::corpus(now()) {
        let request = bearer("/api", &case.token);
        let a = http1::send(ours, &request).await.unwrap().status;
        let b = http1::send(native, &request).await.unwrap().status;
        let expected = if case.reason.is_some() { 401 } else { 200 };
        assert_eq!(a, expected, "{}: the filter answered {a}", case.name);
        if a != b {
            differences.push((case.name, b));
        }
    }
    assert_eq!(
        differences, KNOWN_DIFFERENCES,
        "statuses that differ from jwt_authn's"
    );
}

/// Where a token can be put in [`with_tokens`]: the first provider's bearer header, query
/// parameter and cookie, and the second provider's header.
const PLACES: [&str; 4] = [
    "bearer header",
    "query parameter",
    "cookie",
    "second provider's header",
];

/// `/api/items?page=2` with each token at its place (an index into [`PLACES`]).
fn with_tokens(tokens: &[(usize, &str)]) -> Request {
    let mut path = "/api/items?page=2".to_string();
    for (place, token) in tokens {
        if *place == 1 {
            path.push_str(&format!("&access_token={token}"));
        }
    }
    let mut request = Request::get(&path);
    for (place, token) in tokens {
        request = match *place {
            0 => request.with_header("authorization", &format!("Bearer {token}")),
            2 => request.with_header("cookie", &format!("theme=dark; jwt={token}")),
            3 => request.with_header("x-second-token", token),
            _ => request,
        };
    }
    request
}

/// Two providers with the fixture keys inline: the first reads a bearer header, the
/// `access_token` query parameter and the `jwt` cookie, the second `x-second-token`;
/// the rule's mode is `mode`.
fn two_providers(mode: &str) -> Value {
    let provider = |name: &str, from: Value| {
        json!({ "name": name, "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": fixtures::jwks(),
                "from": from, "claims_to_headers": [{ "claim": "sub", "header": "x-jwt-sub" }] })
    };
    json!({
        "providers": [
            provider("first", json!([{ "header": "authorization", "prefix": "Bearer " }, { "query": "access_token" }, { "cookie": "jwt" }])),
            provider("second", json!([{ "header": "x-second-token" }])),
        ],
        "rules": [{ "mode": mode }],
    })
}

#[tokio::test]
async fn a_forged_token_anywhere_beside_a_valid_one_is_refused_and_valid_ones_are_taken_out() {
    let upstream = Upstream::start().await.unwrap();
    let config = bootstrap(vec![
        listener("any", 10000, wasm_filter(&two_providers("any"))),
        listener("all", 10001, wasm_filter(&two_providers("all"))),
    ])
    .upstream(UPSTREAM_PORT, upstream.port());
    let envoy = Envoy::start(config).await.unwrap();
    let (any, all) = (
        envoy.listener_addr(10000).unwrap(),
        envoy.listener_addr(10001).unwrap(),
    );
    let good = fixtures::token(Algorithm::ES256, now());
    let bad = fixtures::sign(
        Algorithm::RS256,
        &fixtures::Signer::Rsa(fixtures::other_rsa_private_key()),
        &fixtures::header(Algorithm::RS256),
        &fixtures::claims(now()),
    );
    for (good_at, g) in PLACES.iter().enumerate() {
        for (bad_at, b) in PLACES.iter().enumerate() {
            if good_at == bad_at {
                continue;
            }
            let request = with_tokens(&[(good_at, &good), (bad_at, &bad)]);
            let response = http1::send(any, &request).await.unwrap();
            assert_eq!(
                response.status, 401,
                "any: valid in the {g}, forged in the {b}"
            );
            assert_eq!(body_error(&response), "jwt_bad_signature", "{g} / {b}");
        }
    }
    // In `all` mode: both providers' tokens valid, and a forged one beside them.
    let both = [(0, good.as_str()), (3, good.as_str())];
    for place in [1, 2] {
        let request = with_tokens(&[both[0], both[1], (place, &bad)]);
        let response = http1::send(all, &request).await.unwrap();
        assert_eq!(response.status, 401, "all: forged in the {}", PLACES[place]);
    }
    assert!(
        upstream.received().is_empty(),
        "no forged request went through"
    );
    assert_eq!(
        http1::send(all, &with_tokens(&both)).await.unwrap().status,
        200
    );

    // Valid everywhere: every location is taken out before the upstream.
    let everywhere: Vec<(usize, &str)> = (0..PLACES.len()).map(|at| (at, good.as_str())).collect();
    let response = http1::send(any, &with_tokens(&everywhere)).await.unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let received = upstream.received().pop().unwrap();
    assert_eq!(received.path, "/api/items?page=2");
    assert_eq!(received.header("authorization"), None);
    assert_eq!(received.header("x-second-token"), None);
    assert_eq!(received.header("cookie"), Some("theme=dark"));
    assert_eq!(received.header_all("x-jwt-sub"), vec!["user-1"]);
}

/// The demo token `envoy-config/meshward.yaml` documents for `make run`.
fn demo_token() -> String {
    let text = std::fs::read_to_string(repo_root().join("envoy-config/meshward.yaml")).unwrap();
    let line = text
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("#   TOKEN="))
        .expect("meshward.yaml documents a demo token");
    line.trim().to_owned()
}

#[tokio::test]
async fn the_demo_token_of_make_run_works_under_jwt_only() {
    let upstream = Upstream::start().await.unwrap();
    let config = EnvoyConfig::load("meshward.yaml")
        .unwrap()
        .upstream(UPSTREAM_PORT, upstream.port());
    let envoy = Envoy::start(config).await.unwrap();
    let token = demo_token();
    assert_eq!(envoy.get("/jwt/items").await.unwrap().status, 401);
    let response = envoy.send(bearer("/jwt/items", &token)).await.unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let received = upstream.received().pop().unwrap();
    assert_eq!(received.header("x-jwt-sub"), Some("demo-user"));
    let admin = envoy.send(bearer("/jwt/admin", &token)).await.unwrap();
    assert_eq!(admin.status, 403);
    // Elsewhere no token is needed, and forged claim headers still go.
    let other = envoy
        .send(Request::get("/hello").with_header("x-jwt-sub", "forged"))
        .await
        .unwrap();
    assert_eq!(other.status, 200);
    assert_eq!(upstream.received().pop().unwrap().header("x-jwt-sub"), None);
    // The demo config tags jwt-auth's denials by reason and rate-limit's stats by rule.
    let stats = envoy.stats().await.unwrap();
    let denied = |reason: &str| stats.get("meshward_jwt_auth_denied", &[("reason", reason)]);
    assert_eq!(denied("missing"), Some(1.0));
    assert_eq!(denied("insufficient_claims"), Some(1.0));
    // The two requests jwt-auth let through (its refusals end before rate-limit).
    assert_eq!(
        stats.get("meshward_rate_limit_allowed", &[("rule", "per_client")]),
        Some(2.0)
    );
}
