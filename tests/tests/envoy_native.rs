//! The native build (Envoy dynamic modules, `out/<name>.so`) in a real Envoy with two
//! workers: each example's native twin (`envoy-config/native-<name>.yaml`) is the example on
//! the native backend; for every filter and the chain, a client, the upstreams and the
//! metrics see the same from the native build as from the Wasm build, hostile requests
//! included (a module that loads and answers here has the ABI's signatures right; the
//! native twins also pass `envoy --mode validate` in envoy_configs.rs); rate-limit's local
//! buckets stay exact across workers; a configuration the native build cannot serve is
//! refused naming the field; and a panic in a hook is answered 500 while Envoy keeps
//! serving. Needs `make build` (the `.wasm` and `.so` files) and Envoy (`make setup`).

use meshward_jwt_auth::fixtures::{self, AUDIENCE, ISSUER};
use meshward_tests::config::UPSTREAM_PORT;
use meshward_tests::envoy::validate;
use meshward_tests::parity::{self, Forwarded, Seen};
use meshward_tests::{
    http1, repo_root, Backend, Envoy, EnvoyConfig, Reply, Request, RigError, Upstream, WasmFilter,
};
use serde_json::{json, Value};

/// The examples that have a native twin: `envoy-config/<name>.yaml` and
/// `envoy-config/native-<name>.yaml`.
const EXAMPLES: &[&str] = &[
    "security-headers",
    "rate-limit",
    "jwt-auth",
    "region-router",
    "circuit-metrics",
    "chain",
];

/// `value` with every dynamic module's `filter_config` parsed from its JSON text, so two
/// configs compare by meaning, not by layout; a `local_region` the native twin adds (the
/// one field it needs that Wasm reads from the node) is left out.
fn comparable_config(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(text)) = object.get("value") {
                    if let Ok(Value::Object(mut parsed)) = serde_json::from_str::<Value>(text) {
                        parsed.remove("local_region");
                        object.insert("value".into(), Value::Object(parsed));
                    }
                }
                object.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

#[test]
fn each_native_example_is_its_wasm_example_on_the_native_backend() {
    for name in EXAMPLES {
        let wasm = EnvoyConfig::load(&format!("{name}.yaml")).unwrap();
        let native = EnvoyConfig::load(&format!("native-{name}.yaml")).unwrap();
        assert_eq!(
            comparable_config(native.value().clone()),
            comparable_config(wasm.on(Backend::Native).value().clone()),
            "envoy-config/native-{name}.yaml should differ from {name}.yaml only in loading \
             the meshward filters as dynamic modules"
        );
    }
}

/// The native twin of an example file on `backend`: the file itself for Wasm, its
/// `native-` twin otherwise.
fn example(name: &str, backend: Backend) -> EnvoyConfig {
    match backend {
        Backend::Wasm => EnvoyConfig::load(&format!("{name}.yaml")).unwrap(),
        Backend::Native => EnvoyConfig::load(&format!("native-{name}.yaml")).unwrap(),
    }
}

/// One parity run's setting: the upstreams by config port (each with its reply), the
/// requests in order, and the response headers that depend on the moment (a rate limit's
/// reset time), left out of the comparison.
struct Setting {
    upstreams: Vec<(u16, Reply)>,
    requests: Vec<Request>,
    timing_headers: &'static [&'static str],
    /// Metrics left out of the comparison: those the two builds report differently by
    /// design (which of Envoy's features the filter could use), and those that count per
    /// worker (a cache's hits depend on which worker took each connection).
    backend_metrics: &'static [&'static str],
    /// Request headers the upstreams see differently by design, left out.
    backend_request_headers: &'static [&'static str],
}

/// What one backend did with a setting: each response, each request every upstream got
/// (by port, in order), and the filters' metrics.
#[derive(Debug)]
struct Run {
    responses: Vec<Seen>,
    forwarded: Vec<Forwarded>,
    metrics: Vec<String>,
}

async fn run(config: EnvoyConfig, setting: &Setting) -> Run {
    let mut config = config;
    let mut upstreams = Vec::new();
    for (port, reply) in &setting.upstreams {
        let upstream = Upstream::start().await.unwrap();
        upstream.reply_with(reply.clone());
        config = config.upstream(*port, upstream.port());
        upstreams.push(upstream);
    }
    let envoy = Envoy::start(config).await.unwrap();
    let mut responses = Vec::new();
    // Each request on a connection of its own, so both workers serve some.
    for request in &setting.requests {
        let mut seen = parity::seen(&envoy.send(request.clone()).await.unwrap());
        seen.headers
            .retain(|(k, _)| !setting.timing_headers.contains(&k.as_str()));
        responses.push(seen);
    }
    // A filter may count in its log step, after the response went out.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let stats = envoy.stats().await.unwrap();
    Run {
        responses,
        forwarded: upstreams
            .iter()
            .flat_map(|u| u.received())
            .map(|r| {
                let mut forwarded = parity::forwarded(&r);
                forwarded
                    .headers
                    .retain(|(k, _)| !setting.backend_request_headers.contains(&k.as_str()));
                forwarded
            })
            .collect(),
        metrics: parity::metrics(&stats, "meshward_")
            .into_iter()
            .filter(|m| {
                !m.starts_with("meshward_native_panics")
                    && !setting.backend_metrics.iter().any(|b| m.starts_with(b))
            })
            .collect(),
    }
}

/// Runs `setting` through the example `name` on both backends and asserts a client, the
/// upstreams and an operator see the same; returns the native run for further checks.
async fn same_on_both_backends(name: &str, setting: &Setting) -> Run {
    let wasm = run(example(name, Backend::Wasm), setting).await;
    let native = run(example(name, Backend::Native), setting).await;
    for (i, (w, n)) in wasm.responses.iter().zip(&native.responses).enumerate() {
        assert_eq!(w, n, "{name}: response {i} (Wasm, then native)");
    }
    assert_eq!(wasm.responses.len(), native.responses.len(), "{name}");
    for (i, (w, n)) in wasm.forwarded.iter().zip(&native.forwarded).enumerate() {
        assert_eq!(
            w, n,
            "{name}: request {i} the upstreams received (Wasm, then native)"
        );
    }
    assert_eq!(wasm.forwarded.len(), native.forwarded.len(), "{name}");
    assert_eq!(
        wasm.metrics, native.metrics,
        "{name}: metrics (Wasm, then native)"
    );
    native
}

/// An upstream that names its software, as many do.
fn leaky() -> Reply {
    Reply::status(200)
        .with_header("content-type", "text/html")
        .with_header("server", "Apache/2.4.58 (Ubuntu)")
        .with_header("x-powered-by", "PHP/8.3.1")
        .with_header("content-security-policy", "default-src *")
        .with_body("<!doctype html><p>hello</p>")
}

/// Hostile requests every filter must survive the same way on both builds.
fn hostile(path: &str) -> Vec<Request> {
    vec![
        Request::get(path)
            .with_header("x-forwarded-proto", "http")
            .with_header("x-forwarded-proto", "https"),
        Request::get(path).with_raw_header("x-hostile", b"caf\xe9 \xff"),
        Request::get(path).with_raw_header("authorization", b"Bearer \xff\xfe"),
        Request::get(path).with_header("x-long", &"a".repeat(4 * 1024)),
        Request::get(path)
            .with_header("x-forwarded-for", "203.0.113.9")
            .with_header("x-forwarded-for", "198.51.100.1"),
        Request::get(&format!("{path}%2e%2e/admin?x=%00")),
        Request::post(path).with_body("body"),
    ]
}

#[tokio::test]
async fn security_headers_answers_the_same_on_both_backends() {
    let mut requests = vec![
        Request::get("/"),
        Request::get("/docs/intro"),
        Request::get("/docs/../account"),
        Request::get("//docs//guide"),
        Request::get("/generated/"),
        Request::get("/internal/reports"),
        Request::get("/").with_header("host", "unknown.example"),
    ];
    requests.extend(hostile("/"));
    let setting = Setting {
        upstreams: vec![(UPSTREAM_PORT, leaky())],
        requests: [requests.clone(), requests.clone(), requests].concat(),
        timing_headers: &[],
        backend_metrics: &[],
        backend_request_headers: &[],
    };
    let native = same_on_both_backends("security-headers", &setting).await;

    // What they agree on is the filter at work, not two filters doing nothing.
    let first = &native.responses[0];
    let header = |name: &str| {
        first
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(first.status, 200);
    assert_eq!(header("x-frame-options"), Some("DENY"));
    assert_eq!(header("x-powered-by"), None);
    assert_eq!(header("server"), None);
    assert!(
        native
            .metrics
            .contains(&"meshward_security_headers_responses_decorated{} 42".to_owned()),
        "{:?}",
        native.metrics
    );
}

/// The headers of a rate limit's answer that count down with the clock.
const RATE_LIMIT_TIMING: &[&str] = &[
    "ratelimit",
    "ratelimit-reset",
    "x-ratelimit-reset",
    "retry-after",
];

#[tokio::test]
async fn rate_limit_answers_the_same_on_both_backends() {
    let client = |path: &str| Request::get(path).with_header("x-forwarded-for", "203.0.113.7");
    let keyed = |key: &str| Request::get("/keyed/x").with_header("x-api-key", key);
    let mut requests: Vec<Request> = (0..7).map(|_| client("/api/items")).collect();
    requests.extend((0..4).map(|_| keyed("k1")));
    requests.extend((0..2).map(|_| Request::get("/keyed/x")));
    requests.extend((0..3).map(|_| Request::get("/shadow/x")));
    requests.push(Request::get("/limited/x"));
    requests.extend(hostile("/api/"));
    let setting = Setting {
        upstreams: vec![(UPSTREAM_PORT, Reply::ok())],
        requests,
        timing_headers: RATE_LIMIT_TIMING,
        backend_metrics: &[],
        backend_request_headers: &[],
    };
    let native = same_on_both_backends("rate-limit", &setting).await;
    let statuses: Vec<u16> = native.responses.iter().take(7).map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
}

#[test]
fn a_global_rate_limit_is_refused_by_the_native_build_naming_the_field() {
    let config = json!({"rules": [
        {"name": "local", "limit": {"capacity": 5, "per": "1m"}},
        {"name": "g", "global": {"cluster": "rls", "domain": "meshward"}}
    ]});
    let native =
        EnvoyConfig::with_filters(&[WasmFilter::new("rate-limit", config).on(Backend::Native)]);
    match validate(&native) {
        Err(RigError::Refused { log, .. }) => assert!(
            log.contains("rules[1].global: a Rate Limit Service is called over gRPC"),
            "{log}"
        ),
        other => panic!("expected the native build to refuse a global rule, got {other:?}"),
    }
}

#[tokio::test]
async fn native_local_buckets_are_exact_across_two_workers() {
    let upstream = Upstream::start().await.unwrap();
    let filter = WasmFilter::new(
        "rate-limit",
        json!({"rules": [{"name": "burst", "limit": {"capacity": 25, "per": "1m"}}]}),
    )
    .on(Backend::Native);
    let config = EnvoyConfig::with_filters(&[filter]).upstream(UPSTREAM_PORT, upstream.port());
    let envoy = Envoy::start(config).await.unwrap();
    let addr = envoy.addr();

    // 16 clients at once, 5 requests each: 80 requests for a bucket of 25 that refills one
    // token every 2.4 s. Both workers take tokens from the one process-wide bucket.
    let clients: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..5 {
                    let response = http1::send(addr, &Request::get("/")).await.unwrap();
                    statuses.push(response.status);
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for client in clients {
        statuses.extend(client.await.unwrap());
    }
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(ok + limited, 80, "only 200s and 429s: {statuses:?}");
    // Exactly the bucket (a refill may add one if the burst took over 2.4 s).
    assert!(
        (25..=26).contains(&ok),
        "{ok} let through, the bucket holds 25"
    );

    let stats = envoy.stats().await.unwrap();
    let stat = |name: &str| {
        stats.get(
            &parity::metric_name(Backend::Native, &format!("meshward_rate_limit_{name}")),
            &[("rule", "burst")],
        )
    };
    assert_eq!(stat("allowed"), Some(ok as f64));
    assert_eq!(stat("limited"), Some(limited as f64));
    let busy_workers = stats
        .samples()
        .iter()
        .filter(|s| s.name == "envoy_listener_worker_downstream_cx_total" && s.value > 0.0)
        .count();
    assert!(
        busy_workers >= 2,
        "only {busy_workers} worker(s) served the load"
    );
}

/// Tokens PyJWT signs (`tests/tools/pyjwt_sign.py`), one per spec.
fn pyjwt(specs: &Value) -> Vec<String> {
    let python = repo_root().join(".venv/bin/python");
    let out = std::process::Command::new(&python)
        .arg(repo_root().join("tests/tools/pyjwt_sign.py"))
        .arg(specs.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn jwt_auth_answers_the_same_on_both_backends_with_keys_fetched_over_http() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |aud: &str, scope: &str, exp: u64| {
        json!({"iss": ISSUER, "aud": aud, "sub": "user-7", "tenant": "acme",
               "scope": scope, "iat": now, "exp": exp})
    };
    let specs = json!([
        {"alg": "RS256", "claims": claims(AUDIENCE, "read", now + 3600)},
        {"alg": "ES256", "claims": claims(AUDIENCE, "admin", now + 3600)},
        {"alg": "EdDSA", "claims": claims(AUDIENCE, "read", now + 3600)},
        {"alg": "RS256", "claims": claims("someone-else", "read", now + 3600)},
        {"alg": "ES256", "claims": claims(AUDIENCE, "read", now - 600)},
    ]);
    let tokens = pyjwt(&specs);
    let bearer = |path: &str, token: &str| {
        Request::get(path).with_header("authorization", &format!("Bearer {token}"))
    };
    let mut requests = vec![
        Request::get("/api/items"),
        Request::get("/health"),
        Request::get("/public/x"),
        bearer("/public/x", &tokens[0]),
        bearer("/admin/x", &tokens[0]),
        bearer("/admin/x", &tokens[1]),
        bearer("/api/items", &tokens[2]).with_header("x-jwt-sub", "forged"),
        bearer("/api/items", &tokens[3]),
        bearer("/api/items", &tokens[4]),
        bearer("/api/items", &format!("{}x", tokens[0])),
        bearer("/api/items", "not.a.token"),
        bearer("/api/items", &tokens[0])
            .with_header("authorization", &format!("Bearer {}", tokens[1])),
    ];
    requests.extend(hostile("/api/items"));
    let jwks = Reply::status(200)
        .with_header("content-type", "application/json")
        .with_body(fixtures::public_jwks().to_string());
    let setting = Setting {
        upstreams: vec![(UPSTREAM_PORT, Reply::ok()), (8081, jwks)],
        requests,
        timing_headers: &[],
        // Envoy's verify_signature exists only for Wasm: the native build checks every
        // signature in Rust.
        backend_metrics: &[
            "meshward_jwt_auth_signature_host",
            "meshward_jwt_auth_signature_wasm",
            "meshward_jwt_auth_cache_",
            "meshward_jwt_auth_failed_cache_",
        ],
        // Envoy adds its own x-forwarded-for to a dynamic module's callouts (the JWKS
        // fetch), not to Wasm's; every hostile x-forwarded-for reaches the upstream alike.
        backend_request_headers: &["x-forwarded-for"],
    };
    let native = same_on_both_backends("jwt-auth", &setting).await;
    let statuses: Vec<u16> = native.responses.iter().take(12).map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [401, 200, 200, 200, 403, 200, 200, 401, 401, 401, 401, 401],
        "{:?}",
        native.responses
    );
}

#[tokio::test]
async fn region_router_answers_the_same_on_both_backends() {
    let named = |name: &str| Reply::ok().with_header("x-served-by", name);
    let session = |id: &str| Request::get("/").with_header("x-session-id", id);
    let mut requests = vec![
        session("s-0"),
        session("s-0").with_header("x-region-preference", "us-east-1"),
        session("s-0").with_header("x-region-preference", "ap-south-1"),
        session("s-0").with_header("x-region-preference", "mars-1"),
        session("s-0").with_header("x-latency-sensitive", "true"),
    ];
    requests.extend((0..12).map(|i| session(&format!("session-{i}"))));
    requests.extend((0..3).map(|_| session("session-3")));
    // Without a session the split draws at random (from Envoy's request id): the hostile
    // requests carry one so that both runs draw the same.
    requests.extend(
        hostile("/")
            .into_iter()
            .map(|r| r.with_header("x-session-id", "s-7")),
    );
    let setting = Setting {
        upstreams: vec![
            (UPSTREAM_PORT, named("eu")),
            (UPSTREAM_PORT + 1, named("us")),
            (UPSTREAM_PORT + 2, named("ap")),
        ],
        requests,
        timing_headers: &[],
        backend_metrics: &[],
        backend_request_headers: &[],
    };
    let native = same_on_both_backends("region-router", &setting).await;
    let served: Vec<&str> = native
        .responses
        .iter()
        .take(3)
        .map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == "x-served-by")
                .map_or("nobody", |(_, v)| v.as_str())
        })
        .collect();
    assert_eq!(served[1..], ["us", "ap"]);
}

/// circuit-metrics' setting: an upstream that fails, so the breaker opens (after 10 calls
/// at 50 % failures).
fn failing_upstream() -> Setting {
    let mut requests: Vec<Request> = (0..6).map(|_| Request::get("/")).collect();
    requests.extend(hostile("/"));
    Setting {
        upstreams: vec![(UPSTREAM_PORT, Reply::status(503).with_body("down"))],
        requests,
        timing_headers: &[],
        backend_metrics: &[],
        backend_request_headers: &[],
    }
}

#[tokio::test]
async fn circuit_metrics_breaks_the_same_on_both_backends() {
    let setting = failing_upstream();
    let wasm = run(example("circuit-metrics", Backend::Wasm), &setting).await;
    let native = run(example("circuit-metrics", Backend::Native), &setting).await;
    for (i, (w, n)) in wasm.responses.iter().zip(&native.responses).enumerate() {
        assert_eq!(w, n, "response {i} (Wasm, then native)");
    }
    assert_eq!(wasm.responses.len(), native.responses.len());
    assert_eq!(
        wasm.forwarded, native.forwarded,
        "what the upstream received"
    );
    // The breaker opened, and answered for the upstream from then on.
    let open = |seen: &Seen| {
        seen.headers
            .iter()
            .any(|(k, _)| k == "x-meshward-circuit-open")
    };
    assert!(native.responses.iter().any(open), "{:?}", native.responses);
    assert!(!native.forwarded.is_empty());
}

#[tokio::test]
async fn circuit_metrics_counts_the_same_on_both_backends() {
    let setting = failing_upstream();
    let wasm = run(example("circuit-metrics", Backend::Wasm), &setting).await;
    let native = run(example("circuit-metrics", Backend::Native), &setting).await;
    // Latencies differ between any two runs: their histogram's buckets and sum are left
    // out (the count of samples stays). The attempts' buckets stay: they prove the
    // example's bucket settings match the native build's names too.
    let counters = |run: &Run| -> Vec<String> {
        run.metrics
            .iter()
            .filter(|m| {
                !(m.starts_with("meshward_circuit_metrics_duration_ms")
                    && (m.contains("_bucket{") || m.contains("_sum{")))
            })
            .cloned()
            .collect()
    };
    assert_eq!(counters(&wasm), counters(&native));
}

#[tokio::test]
async fn the_chain_answers_the_same_on_both_backends() {
    let token = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjLXAyNTYiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5tZXNod2FyZC50ZXN0IiwiYXVkIjoiYXBpLm1lc2h3YXJkLnRlc3QiLCJzdWIiOiJkZW1vLXVzZXIiLCJzY29wZSI6InJlYWQiLCJpYXQiOjE3NjM2ODMyMDAsImV4cCI6NDEwMjQ0NDgwMH0.4XMxNiLF8Iq0Y1m7VWLQwD171pbcjjnjcL8xe9eqZfwpbhz8BUQaRVxuGnKQemlFSsvn_a1GWN053Shttr18jw";
    let bearer =
        |path: &str| Request::get(path).with_header("authorization", &format!("Bearer {token}"));
    let mut requests = vec![
        Request::get("/"),
        Request::get("/jwt/items"),
        bearer("/jwt/items"),
        bearer("/jwt/admin"),
        Request::get("/regions/x").with_header("x-region-preference", "us-east-1"),
        Request::get("/regions/x").with_header("x-session-id", "s-1"),
    ];
    requests.extend(hostile("/jwt/items"));
    requests.extend(hostile("/"));
    let setting = Setting {
        // In this example the three regions are the one upstream.
        upstreams: vec![(UPSTREAM_PORT, leaky())],
        requests,
        timing_headers: RATE_LIMIT_TIMING,
        backend_metrics: &[
            "meshward_jwt_auth_signature_host",
            "meshward_jwt_auth_signature_wasm",
            "meshward_jwt_auth_cache_",
            "meshward_jwt_auth_failed_cache_",
        ],
        backend_request_headers: &[],
    };
    let native = same_on_both_backends("chain", &setting).await;
    let statuses: Vec<u16> = native.responses.iter().take(4).map(|r| r.status).collect();
    assert_eq!(statuses, [200, 401, 200, 403]);
}

#[test]
fn a_configuration_the_native_module_refuses_names_the_field() {
    let with = |config| {
        EnvoyConfig::with_filters(
            &[WasmFilter::new("security-headers", config).on(Backend::Native)],
        )
    };
    validate(&with(json!({}))).expect("the default configuration is accepted");
    match validate(&with(json!({"no_such_field": true}))) {
        Err(RigError::Refused { log, .. }) => {
            assert!(
                log.contains("security-headers: configuration refused")
                    && log.contains("no_such_field"),
                "the refusal should name the field:\n{log}"
            )
        }
        other => panic!("expected Envoy to refuse the config, got {other:?}"),
    }
}

#[tokio::test]
async fn a_panic_in_a_native_hook_is_answered_500_and_envoy_keeps_serving() {
    let upstream = Upstream::start().await.unwrap();
    let config =
        EnvoyConfig::with_filters(&[WasmFilter::fixture("panic", json!({})).on(Backend::Native)])
            .upstream(UPSTREAM_PORT, upstream.port());
    let envoy = Envoy::start(config).await.unwrap();

    let in_request = envoy
        .send(Request::get("/request").with_header("x-panic", "request"))
        .await
        .unwrap();
    let in_response = envoy
        .send(Request::get("/response").with_header("x-panic", "response"))
        .await
        .unwrap();

    assert_eq!(in_request.status, 500);
    assert_eq!(in_request.text(), "internal error\n");
    assert_eq!(in_response.status, 500);
    // Fail closed: a request whose filter panicked before the upstream never reaches it.
    let paths: Vec<String> = upstream.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/response"]);
    // Both workers serve on, and the filter still runs on every one of them.
    for _ in 0..8 {
        let after = envoy.get("/").await.unwrap();
        assert_eq!(after.status, 200);
        assert_eq!(after.header("x-fixture-panic"), Some("survived"));
    }
    let panics = parity::metric_name(Backend::Native, "meshward_native_panics");
    envoy.wait_for_stat(&panics, &[], 2.0).await.unwrap();
    let log = envoy.log();
    assert!(
        log.contains(
            "fixture-panic: panic in request_headers, caught: fixture-panic: asked to panic"
        ),
        "{log}"
    );
}

#[test]
fn the_istio_envoy_filter_of_docs_native_md_loads_in_envoy() {
    let doc = std::fs::read_to_string(repo_root().join("docs/native.md")).unwrap();
    let first_line = "# docs/native.md: Istio EnvoyFilter for the native security-headers";
    let start = doc
        .find(first_line)
        .expect("docs/native.md has the EnvoyFilter block");
    let block = &doc[start..];
    let block = &block[..block.find("```").unwrap()];
    let filter: Value = serde_yaml_ng::from_str(block).unwrap();
    assert_eq!(filter["kind"], "EnvoyFilter");
    let patch = &filter["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"], "HTTP_FILTER");
    assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
    // The filter Istio inserts, with the module where `make build` put it.
    let mut value = patch["patch"]["value"].clone();
    let module = value
        .pointer_mut("/typed_config/dynamic_module_config/module/local/filename")
        .unwrap();
    *module = json!(module.as_str().unwrap().replace("/etc/meshward/", "out/"));
    validate(&EnvoyConfig::with_http_filters(vec![value])).unwrap();
}
