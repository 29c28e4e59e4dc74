//! The rate-limit filter in a real Envoy: with four workers under concurrent load it lets
//! through no more than the bucket allows; refusals carry `Retry-After` and the RateLimit
//! headers; keys from `x-forwarded-for` and from a header; shadow mode; the metrics in
//! `/stats/prometheus`. Needs `make setup` and `make build` (out/rate-limit.wasm).

use std::time::{Duration, Instant};

use meshward_tests::{Envoy, EnvoyConfig, Request, Response, Upstream, WasmFilter};
use serde_json::json;

const UPSTREAM: u16 = 8080;

/// Envoy with `envoy-config/rate-limit.yaml` (one rule of each kind, see the file).
async fn example(upstream: &Upstream) -> Envoy {
    let config = EnvoyConfig::load("rate-limit.yaml")
        .unwrap()
        .upstream(UPSTREAM, upstream.port());
    Envoy::builder(config).concurrency(4).start().await.unwrap()
}

async fn send(envoy: &Envoy, request: Request) -> Response {
    envoy.send(request).await.unwrap()
}

fn from_client(path: &str, address: &str) -> Request {
    Request::get(path).with_header("x-forwarded-for", address)
}

/// The value of a stat of the example's rules, with the rule as a tag (its `stats_tags`).
async fn rule_stat(envoy: &Envoy, stat: &str, rule: &str) -> Option<f64> {
    let name = format!("meshward_rate_limit_{stat}");
    envoy.stats().await.unwrap().get(&name, &[("rule", rule)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_under_concurrent_load_let_through_no_more_than_the_bound() {
    let upstream = Upstream::start().await.unwrap();
    let filter = WasmFilter::new(
        "rate-limit",
        json!({"rules": [{"name": "burst", "limit": {"capacity": 30, "refill": 20, "per": "1s"}}]}),
    );
    let config = EnvoyConfig::with_filters(&[filter]).upstream(UPSTREAM, upstream.port());
    let envoy = Envoy::builder(config).concurrency(4).start().await.unwrap();
    let addr = envoy.addr();

    // 32 clients, each sending one request per connection as fast as it can, for 2 s: far
    // more than the 30 + 20/s the bucket allows.
    let started = Instant::now();
    let load = Duration::from_secs(2);
    let clients: Vec<_> = (0..32)
        .map(|_| {
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while started.elapsed() < load {
                    let response = meshward_tests::http1::send(addr, &Request::get("/"))
                        .await
                        .unwrap();
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
    let elapsed = started.elapsed().as_secs_f64();

    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(ok + limited, statuses.len(), "only 200s and 429s");
    // Every admitted request read Envoy's clock between our start and our end.
    let bound = 30.0 + 20.0 * elapsed;
    assert!(
        (ok as f64) <= bound,
        "{ok} let through in {elapsed:.2} s, bound {bound:.1}"
    );
    assert!(ok >= 30, "only {ok} let through: not even the burst");
    assert!(
        limited > ok,
        "the load did not exceed the limit: {statuses:?}"
    );

    // The counters agree with what the clients saw, and nothing fell back.
    let stats = envoy.stats().await.unwrap();
    let stat = |name: &str| stats.get(&format!("meshward_rate_limit_{name}"), &[("rule", "burst")]);
    assert_eq!(stat("allowed"), Some(ok as f64));
    assert_eq!(stat("limited"), Some(limited as f64));
    assert_eq!(stat("failed_open"), Some(0.0));
    // More than one worker served the load, or the test proves nothing about sharing.
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

#[tokio::test]
async fn a_refusal_says_when_to_retry_in_every_header_form() {
    let upstream = Upstream::start().await.unwrap();
    let envoy = example(&upstream).await;

    // per_client: 5 a minute. The first answers carry what is left.
    let first = send(&envoy, from_client("/api/orders", "203.0.113.7")).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("ratelimit-policy"),
        Some("\"per_client\";q=5;w=60")
    );
    assert_eq!(first.header("ratelimit"), Some("\"per_client\";r=4;t=12"));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("4"));
    for _ in 0..4 {
        assert_eq!(
            send(&envoy, from_client("/api/orders", "203.0.113.7"))
                .await
                .status,
            200
        );
    }

    let refused = send(&envoy, from_client("/api/orders", "203.0.113.7")).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(body["error"], "rate_limited");
    // One token every 12 s, and the first was taken moments ago.
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "retry-after {retry}");
    assert_eq!(
        refused.header("ratelimit"),
        Some(format!("\"per_client\";r=0;t={retry}").as_str())
    );
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"per_client\";q=5;w=60")
    );
    assert_eq!(refused.header("x-ratelimit-limit"), Some("5"));
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        refused.header("x-ratelimit-reset"),
        Some(retry.to_string().as_str())
    );
    assert_eq!(
        upstream.received().len(),
        5,
        "the refused request never reached the upstream"
    );
}

#[tokio::test]
async fn keys_come_from_x_forwarded_for_and_from_a_header() {
    let upstream = Upstream::start().await.unwrap();
    let envoy = example(&upstream).await;

    // per_client: each client address its own 5, whatever the client writes at the left.
    for _ in 0..5 {
        assert_eq!(
            send(&envoy, from_client("/api/x", "198.51.100.1"))
                .await
                .status,
            200
        );
    }
    let spoofed = from_client("/api/x", "10.9.9.9, 198.51.100.1");
    assert_eq!(send(&envoy, spoofed).await.status, 429);
    assert_eq!(
        send(&envoy, from_client("/api/x", "198.51.100.2"))
            .await
            .status,
        200
    );

    // per_key: 3 a minute per x-api-key; requests without one share a bucket.
    let with_key = |key: &str| Request::get("/keyed/x").with_header("x-api-key", key);
    let mut a = Vec::new();
    for _ in 0..4 {
        a.push(send(&envoy, with_key("key-a")).await.status);
    }
    assert_eq!(a, [200, 200, 200, 429]);
    assert_eq!(send(&envoy, with_key("key-b")).await.status, 200);
    let mut anonymous = Vec::new();
    for _ in 0..4 {
        anonymous.push(send(&envoy, Request::get("/keyed/x")).await.status);
    }
    assert_eq!(anonymous, [200, 200, 200, 429]);

    assert_eq!(rule_stat(&envoy, "limited", "per_client").await, Some(1.0));
    assert_eq!(rule_stat(&envoy, "limited", "per_key").await, Some(2.0));
    assert_eq!(rule_stat(&envoy, "allowed", "per_key").await, Some(7.0));
}

#[tokio::test]
async fn shadow_mode_lets_everything_through_and_marks_and_counts_what_it_would_refuse() {
    let upstream = Upstream::start().await.unwrap();
    let envoy = example(&upstream).await;

    // shadow: 2 a minute would be allowed.
    for _ in 0..5 {
        assert_eq!(envoy.get("/shadow/page").await.unwrap().status, 200);
    }
    let marks: Vec<Option<String>> = upstream
        .received()
        .iter()
        .map(|r| r.header("x-meshward-rate-limit-shadow").map(str::to_string))
        .collect();
    let shadow = Some("shadow".to_string());
    assert_eq!(marks, [None, None, shadow.clone(), shadow.clone(), shadow]);
    assert_eq!(
        rule_stat(&envoy, "shadow_limited", "shadow").await,
        Some(3.0)
    );
    assert_eq!(rule_stat(&envoy, "limited", "shadow").await, Some(0.0));
    assert!(
        envoy
            .log()
            .contains("rule shadow would limit GET /shadow/page"),
        "no shadow log line"
    );
}

#[tokio::test]
async fn every_stat_of_every_rule_is_in_prometheus_with_the_rule_as_a_tag() {
    let upstream = Upstream::start().await.unwrap();
    let envoy = example(&upstream).await;
    assert_eq!(envoy.get("/limited/").await.unwrap().status, 200);
    for rule in ["limited", "per_client", "per_key", "shadow"] {
        for stat in [
            "allowed",
            "limited",
            "shadow_limited",
            "failed_open",
            "failed_closed",
            "contention_fallbacks",
            "reclaimed",
            "overflowed",
        ] {
            assert!(
                rule_stat(&envoy, stat, rule).await.is_some(),
                "no meshward_rate_limit_{stat}{{rule=\"{rule}\"}}"
            );
        }
    }
    assert_eq!(rule_stat(&envoy, "allowed", "limited").await, Some(1.0));
}
