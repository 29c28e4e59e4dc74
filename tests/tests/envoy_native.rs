//! The native build (Envoy dynamic modules, `out/<name>.so`) in a real Envoy with two
//! workers: a module loads and configures in `envoy --mode validate` and in a running Envoy
//! (so a drift in the ABI's signatures fails here), a client, the upstream and the metrics
//! see the same from it as from the Wasm build, a configuration it refuses names the field,
//! and a panic in a hook is answered 500 while Envoy keeps serving. Needs `make build`
//! (the `.wasm` and `.so` files) and Envoy (`make setup`).

use meshward_tests::config::UPSTREAM_PORT;
use meshward_tests::envoy::validate;
use meshward_tests::parity::{self, Forwarded, Seen};
use meshward_tests::{Backend, Envoy, EnvoyConfig, Reply, Request, RigError, Upstream, WasmFilter};
use serde_json::{json, Value};

/// The http_filters of a config file.
fn http_filters(config: &EnvoyConfig) -> Value {
    config
        .value()
        .pointer(
            "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
        )
        .cloned()
        .unwrap()
}

#[test]
fn the_native_security_headers_example_is_the_wasm_one_on_the_native_backend() {
    let wasm = EnvoyConfig::load("security-headers.yaml").unwrap();
    let native = EnvoyConfig::load("native-security-headers.yaml").unwrap();
    assert_eq!(
        http_filters(&native),
        http_filters(&wasm.clone().on(Backend::Native)),
        "envoy-config/native-security-headers.yaml should differ from security-headers.yaml \
         only in loading the filter as a dynamic module"
    );
    let rest = |mut config: EnvoyConfig| {
        let filters = config
            .value_mut()
            .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
            .and_then(Value::as_object_mut)
            .unwrap();
        filters.remove("http_filters");
        config.value().clone()
    };
    assert_eq!(
        rest(native),
        rest(wasm),
        "listeners, routes and clusters are the same"
    );
}

/// The requests of the parity run: an ordinary one, each kind of reply Envoy makes itself,
/// paths the per-path override must see normalised, and hostile headers.
fn scenarios() -> Vec<Request> {
    vec![
        Request::get("/"),
        Request::get("/docs/intro"),
        Request::get("/docs/../account"),
        Request::get("//docs//guide"),
        Request::get("/generated/"),
        Request::get("/internal/reports"),
        Request::get("/").with_header("host", "unknown.example"),
        Request::get("/")
            .with_header("x-forwarded-proto", "http")
            .with_header("x-forwarded-proto", "https"),
        Request::get("/").with_raw_header("x-hostile", b"caf\xe9 \xff"),
        Request::get("/").with_header("x-long", &"a".repeat(4 * 1024)),
        Request::get("/docs/%2e%2e/admin?x=%00"),
        Request::post("/", "body"),
    ]
}

/// What one backend did with the scenarios: each response, each request the upstream got,
/// and the filter's metrics.
#[derive(Debug)]
struct Run {
    responses: Vec<Seen>,
    forwarded: Vec<Forwarded>,
    metrics: Vec<String>,
}

async fn run(config: EnvoyConfig, rounds: usize) -> Run {
    let upstream = Upstream::start().await.unwrap();
    upstream.reply_with(
        Reply::status(200)
            .with_header("content-type", "text/html")
            .with_header("server", "Apache/2.4.58 (Ubuntu)")
            .with_header("x-powered-by", "PHP/8.3.1")
            .with_header("content-security-policy", "default-src *")
            .with_body("<!doctype html><p>hello</p>"),
    );
    let envoy = Envoy::start(config.upstream(UPSTREAM_PORT, upstream.port()))
        .await
        .unwrap();
    let mut responses = Vec::new();
    // Each request on a connection of its own: over the rounds both workers serve some.
    for _ in 0..rounds {
        for request in scenarios() {
            responses.push(parity::seen(&envoy.send(request).await.unwrap()));
        }
    }
    let stats = envoy.stats().await.unwrap();
    Run {
        responses,
        forwarded: upstream.received().iter().map(parity::forwarded).collect(),
        metrics: parity::metrics(&stats, "meshward_"),
    }
}

#[tokio::test]
async fn security_headers_answers_the_same_on_both_backends() {
    let wasm = run(EnvoyConfig::load("security-headers.yaml").unwrap(), 3).await;
    let native = run(
        EnvoyConfig::load("native-security-headers.yaml").unwrap(),
        3,
    )
    .await;

    for (i, (w, n)) in wasm.responses.iter().zip(&native.responses).enumerate() {
        assert_eq!(w, n, "response {i} (Wasm, then native)");
    }
    assert_eq!(wasm.responses.len(), native.responses.len());
    assert_eq!(
        wasm.forwarded, native.forwarded,
        "what the upstream received"
    );
    // The native module's own counter of caught panics is the one metric Wasm lacks.
    let native_metrics: Vec<String> = native
        .metrics
        .into_iter()
        .filter(|m| !m.starts_with("meshward_native_panics"))
        .collect();
    assert_eq!(wasm.metrics, native_metrics);

    // And what they agree on is the filter at work, not two filters doing nothing.
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
        native_metrics.contains(&"meshward_security_headers_responses_decorated{} 36".to_owned()),
        "{native_metrics:?}"
    );
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
