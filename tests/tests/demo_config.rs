//! The configs `make run` and the benchmarks start do what their comments promise: the
//! default config puts security-headers on upstream and local replies, and the no-op
//! fixture config passes traffic untouched.

use meshward_tests::config::UPSTREAM_PORT;
use meshward_tests::{Envoy, EnvoyConfig, Reply, Request, Upstream};

/// An upstream that announces itself, as the echo server `make run` starts does.
async fn chatty_upstream() -> Upstream {
    let upstream = Upstream::start().await.unwrap();
    upstream.reply_with(
        Reply::ok()
            .with_header("server", "meshward-echo")
            .with_header("x-powered-by", "meshward-echo"),
    );
    upstream
}

async fn start(file: &str, upstream: &Upstream) -> Envoy {
    let config = EnvoyConfig::load(file)
        .unwrap()
        .upstream(UPSTREAM_PORT, upstream.port());
    Envoy::start(config).await.unwrap()
}

#[tokio::test]
async fn the_default_config_secures_upstream_and_local_replies() {
    let upstream = chatty_upstream().await;
    let envoy = start("meshward.yaml", &upstream).await;

    let proxied = envoy.get("/").await.unwrap();
    let local = envoy.get("/local-reply").await.unwrap();

    assert_eq!((proxied.status, local.status), (200, 404));
    for response in [&proxied, &local] {
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "{response:?}"
        );
        assert_eq!(response.header("server"), None, "{response:?}");
        assert_eq!(response.header("x-powered-by"), None, "{response:?}");
    }
    assert_eq!(upstream.received().len(), 1);
}

#[tokio::test]
async fn the_noop_config_passes_requests_and_responses_untouched() {
    let upstream = chatty_upstream().await;
    let envoy = start("noop.yaml", &upstream).await;

    let response = envoy
        .send(
            Request::post("/p")
                .with_body("body")
                .with_header("x-k", "v"),
        )
        .await
        .unwrap();

    assert_eq!(response.status, 200);
    assert_eq!(response.header("server"), Some("meshward-echo"));
    assert_eq!(response.header("x-powered-by"), Some("meshward-echo"));
    assert_eq!(response.header("x-content-type-options"), None);
    let received = upstream.received();
    assert_eq!(received[0].header("x-k"), Some("v"));
    assert_eq!(received[0].body, b"body");
}
