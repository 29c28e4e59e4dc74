//! The __NAME__ filter in a real Envoy: its example config `envoy-config/__NAME__.yaml`
//! answers as the README says, and a repeated required header, which a client sends on
//! the wire, is refused before it reaches the upstream. Needs `make build`
//! (out/__NAME__.wasm) and Envoy (`make setup`).

use meshward_tests::config::{LOCAL_REPLY_PREFIX, UPSTREAM_PORT};
use meshward_tests::{Envoy, EnvoyConfig, Reply, Request, Upstream, WasmFilter};
use serde_json::json;

#[tokio::test]
async fn the_example_config_tags_responses_outside_the_skipped_paths() {
    let upstream = Upstream::start().await.unwrap();
    upstream.reply_with(Reply::new(200).with_body("hi"));
    let config = EnvoyConfig::load("__NAME__.yaml")
        .unwrap()
        .upstream(UPSTREAM_PORT, upstream.port());
    let envoy = Envoy::builder(config).concurrency(2).start().await.unwrap();

    let tagged = envoy.send(Request::get("/app")).await.unwrap();
    let skipped = envoy.send(Request::get("/healthz")).await.unwrap();

    assert_eq!(tagged.status(), 200);
    assert_eq!(tagged.body_text(), "hi");
    assert_eq!(tagged.header_value("x-meshward-__NAME__"), Some("seen"));
    assert_eq!(skipped.header_value("x-meshward-__NAME__"), None);
    envoy
        .wait_for_stat("meshward___SNAKE___responses_tagged", &[], 1.0)
        .await
        .unwrap();
    envoy
        .wait_for_stat("meshward___SNAKE___responses_skipped", &[], 1.0)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_repeated_required_header_never_reaches_the_upstream() {
    let upstream = Upstream::start().await.unwrap();
    let filter = WasmFilter::new("__NAME__", json!({"required_header": "x-tenant"}));
    let config = EnvoyConfig::with_filters(&[filter]).upstream(UPSTREAM_PORT, upstream.port());
    let envoy = Envoy::start(config).await.unwrap();

    let once = envoy
        .send(Request::get("/app").with_header("x-tenant", "acme"))
        .await
        .unwrap();
    let repeated = envoy
        .send(
            Request::get("/app")
                .with_header("x-tenant", "acme")
                .with_header("x-tenant", "evil"),
        )
        .await
        .unwrap();
    let local = envoy
        .send(Request::get(LOCAL_REPLY_PREFIX).with_header("x-tenant", "acme"))
        .await
        .unwrap();

    assert_eq!(once.status(), 200);
    assert_eq!(repeated.status(), 400);
    assert!(repeated.body_text().contains("appears 2 times"), "{repeated:?}");
    // Envoy's own reply is tagged too.
    assert_eq!(local.status(), 404);
    assert_eq!(local.header_value("x-meshward-__NAME__"), Some("seen"));
    let received = upstream.received();
    assert_eq!(received.len(), 1, "only the single-valued request goes upstream");
    assert_eq!(received[0].header_all("x-tenant"), ["acme"]);
    envoy
        .wait_for_stat("meshward___SNAKE___requests_refused", &[], 1.0)
        .await
        .unwrap();
}
