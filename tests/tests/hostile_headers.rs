//! Header values that are not UTF-8 (HTTP/1 obs-text, bytes 0x80-0xFF, which Envoy passes
//! to filters unchanged) in every header each filter reads: the VM stays alive, the client
//! gets the filter's usual answer, and the next request still works. Needs `make build`.

use std::time::UNIX_EPOCH;

use meshward_harness::{wasm_path, Host, Outcome, Request, Response, Upstream};
use meshward_jwt_auth::fixtures::{self, AUDIENCE, ISSUER};
use meshward_jwt_auth::token::Algorithm;
use serde_json::{json, Value};

// Fixtures.

/// Bytes a client may send that are not UTF-8: a Latin-1 `é`, a lone continuation byte, a
/// truncated sequence and 0xFF.
const LATIN1: &[u8] = b"caf\xe9";
const HOSTILE: &[u8] = b"\x80\xc3\xff\xfe";

fn host(filter: &str, config: &Value) -> Host {
    Host::builder(wasm_path(filter))
        .config_json(&config.to_string())
        .workers(2)
        .build()
        .unwrap_or_else(|e| panic!("{filter} refused {config}: {e}"))
}

fn ok() -> Upstream {
    Upstream::reply(Response::new(200).body("ok"))
}

/// The VM of each worker is alive and a plain request (made for the worker's index)
/// still gets a 200 on both.
fn still_serves(host: &Host, request: impl Fn(usize) -> Request) {
    for worker in 0..host.worker_count() {
        assert!(host.vm_alive(worker), "worker {worker}'s VM died");
        let out = host.worker(worker).send(request(worker), ok());
        assert_eq!(out.response.status(), 200, "worker {worker}: {out:?}");
    }
}

fn upstream_header<'a>(out: &'a Outcome, name: &str) -> Option<&'a [u8]> {
    out.upstream_request.as_ref()?.header_value_bytes(name)
}

// security-headers

#[test]
fn security_headers_decorate_a_response_whose_headers_are_not_utf8() {
    let host = host(
        "security-headers",
        &json!({"trust_x_forwarded_proto": true, "headers": {
            "strict_transport_security": {"https_only": true},
            "content_security_policy": {"html_only": true}}}),
    );
    let request = Request::get("/")
        .header_bytes("x-forwarded-proto", HOSTILE)
        .header_bytes("user-agent", LATIN1);
    let upstream = Response::new(200)
        .header_bytes("content-type", HOSTILE)
        .header_bytes("server", LATIN1)
        .header_bytes("x-powered-by", HOSTILE)
        .header_bytes("x-custom", LATIN1);
    let out = host.send(request, Upstream::reply(upstream));
    assert_eq!(out.response.status(), 200);
    assert_eq!(out.response.header_value("x-frame-options"), Some("DENY"));
    assert!(!out.response.headers().contains("server"));
    assert!(!out.response.headers().contains("x-powered-by"));
    // Not https, not html: neither header.
    assert!(!out.response.headers().contains("strict-transport-security"));
    assert!(!out.response.headers().contains("content-security-policy"));
    assert_eq!(out.response.header_value_bytes("x-custom"), Some(LATIN1));
    still_serves(&host, |_| Request::get("/"));
}

// rate-limit

#[test]
fn rate_limit_keys_on_the_exact_bytes_of_a_header_that_is_not_utf8() {
    let host = host(
        "rate-limit",
        &json!({"rules": [{"name": "per_user", "key": [{"header": "x-user"}],
                            "limit": {"capacity": 1, "per": "1h"}}]}),
    );
    let user = |value: &[u8]| Request::get("/").header_bytes("x-user", value);
    let status = |request| host.send(request, ok()).response.status();
    assert_eq!(status(user(b"\xff")), 200);
    // Another invalid byte is another key, though both read as U+FFFD as text.
    assert_eq!(status(user(b"\xfe")), 200);
    assert_eq!(status(user(b"\xff")), 429);
    assert_eq!(status(user(HOSTILE)), 200);
    assert!(host.vm_alive(0));
    still_serves(&host, |worker| {
        Request::get("/").header("x-user", &format!("fresh-user-{worker}"))
    });
}

// jwt-auth

fn jwt_config() -> Value {
    json!({
        "providers": [{
            "name": "idp",
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "jwks": fixtures::jwks(),
            "claims_to_headers": [{ "claim": "sub", "header": "x-jwt-sub" }],
        }],
    })
}

fn valid_token(host: &Host) -> String {
    let now = host.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    fixtures::token(Algorithm::RS256, now)
}

#[test]
fn jwt_auth_answers_401_to_an_authorization_header_that_is_not_utf8() {
    let host = host("jwt-auth", &jwt_config());
    for value in [
        [b"Bearer ".as_slice(), HOSTILE].concat(),
        [b"Bearer ".as_slice(), b"\xff\xfe.\x80\x81.\x90"].concat(),
        HOSTILE.to_vec(),
    ] {
        let out = host.send(
            Request::get("/").header_bytes("authorization", &value),
            ok(),
        );
        assert_eq!(out.response.status(), 401, "{value:?}: {out:?}");
        assert!(out.upstream_request.is_none());
    }
    let token = valid_token(&host);
    still_serves(&host, |_| {
        Request::get("/").header("authorization", &format!("Bearer {token}"))
    });
}

#[test]
fn jwt_auth_removes_forged_claim_headers_that_are_not_utf8() {
    let host = host("jwt-auth", &jwt_config());
    let token = valid_token(&host);
    let out = host.send(
        Request::get("/")
            .header("authorization", &format!("Bearer {token}"))
            .header_bytes("x-jwt-sub", HOSTILE)
            .header_bytes("x-jwt-forged", LATIN1),
        ok(),
    );
    assert_eq!(out.response.status(), 200);
    assert_eq!(upstream_header(&out, "x-jwt-sub"), Some(&b"user-1"[..]));
    still_serves(&host, |_| {
        Request::get("/").header("authorization", &format!("Bearer {token}"))
    });
}

// region-router

fn region_config() -> Value {
    json!({
        "regions": [
            {"name": "eu-west-1", "cluster": "eu", "latency": "2ms"},
            {"name": "us-east-1", "cluster": "us", "latency": "80ms"}
        ],
        "local_region": "eu-west-1",
        "sticky": {"header": "x-session-id"},
        "decision_header": "x-meshward-region-decision",
    })
}

#[test]
fn region_router_routes_requests_whose_preference_and_latency_headers_are_not_utf8() {
    let host = host("region-router", &region_config());
    let out = host.send(
        Request::get("/")
            .header_bytes("x-region-preference", HOSTILE)
            .header_bytes("x-latency-sensitive", LATIN1)
            .header_bytes("x-session-id", HOSTILE),
        ok(),
    );
    assert_eq!(out.response.status(), 200);
    let cluster = upstream_header(&out, "x-meshward-cluster").unwrap();
    assert!(
        cluster == b"eu" || cluster == b"us",
        "routed to a configured cluster: {cluster:?}"
    );
    still_serves(&host, |_| {
        Request::get("/").header("x-region-preference", "us-east-1")
    });
}

// circuit-metrics

#[test]
fn circuit_metrics_counts_responses_whose_headers_are_not_utf8() {
    let host = host(
        "circuit-metrics",
        &json!({"breakers": [{"cluster": "backend", "minimum_number_of_calls": 4,
                               "sliding_window": {"count": 4}}]}),
    );
    let request = |_: usize| {
        Request::get("/orders")
            .property("xds.cluster_name", "backend")
            .property("xds.route_name", "api")
            .property("upstream.request_attempt_count", 1i64)
            .header_bytes("x-envoy-retry-on", HOSTILE)
            .header_bytes("x-envoy-attempt-count", HOSTILE)
    };
    let upstream = Response::new(200)
        .header_bytes("x-envoy-attempt-count", HOSTILE)
        .header_bytes("x-envoy-upstream-service-time", LATIN1);
    let out = host.send(request(0), Upstream::reply(upstream));
    assert_eq!(out.response.status(), 200);
    let counted: u64 = host
        .metrics()
        .iter()
        .filter(|(_, name, _)| name.contains("backend") && name.ends_with("responses"))
        .filter_map(|(_, _, value)| match value {
            meshward_harness::MetricValue::Counter(n) => Some(*n),
            _ => None,
        })
        .sum();
    assert_eq!(counted, 1, "{:?}", host.metrics());
    still_serves(&host, request);
}
