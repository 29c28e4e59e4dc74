//! The circuit-metrics filter in a real Envoy, with `envoy-config/circuit-metrics.yaml`:
//! its retry counts agree with Envoy's own per-cluster counters, its metrics reach
//! `/stats/prometheus` with `cluster` and `route` labels, and an enforcing breaker opens
//! under failures, fails fast, probes, and closes when the upstream recovers. Needs
//! `make build` (out/circuit-metrics.wasm) and Envoy (`make setup`).

use meshward_tests::config::UPSTREAM_PORT;
use meshward_tests::envoy::validate;
use meshward_tests::{Envoy, EnvoyConfig, Reply, RigError, Stats, Upstream, WasmFilter};
use serde_json::{json, Value};
use std::time::Duration;

const CONFIG: &str = "circuit-metrics.yaml";
const RETRY_ROUTE: &[(&str, &str)] = &[("cluster", "upstream"), ("route", "retry")];
const DEFAULT_ROUTE: &[(&str, &str)] = &[("cluster", "upstream"), ("route", "default")];
const BREAKER: &[(&str, &str)] = &[("cluster", "upstream")];
const ENVOY_CLUSTER: &[(&str, &str)] = &[("envoy_cluster_name", "upstream")];

/// The config file, its upstream pointed at `upstream` (or at a closed port), and its
/// plugin configuration replaced by `plugin` if given.
fn config(upstream: Option<&Upstream>, plugin: Option<Value>) -> EnvoyConfig {
    let mut config = EnvoyConfig::load(CONFIG).unwrap();
    if let Some(upstream) = upstream {
        config = config.upstream(UPSTREAM_PORT, upstream.port());
    }
    if let Some(plugin) = plugin {
        let configuration = config
            .value_mut()
            .pointer_mut(
                "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config\
                 /http_filters/0/typed_config/config/configuration/value",
            )
            .expect("the config file has the filter first in the chain");
        *configuration = json!(plugin.to_string());
    }
    config
}

async fn stats(envoy: &Envoy) -> Stats {
    envoy.stats().await.unwrap()
}

fn value(stats: &Stats, name: &str, labels: &[(&str, &str)]) -> f64 {
    stats
        .get(name, labels)
        .unwrap_or_else(|| panic!("no {name}{labels:?} in /stats/prometheus"))
}

/// Waits for the filter's stat to reach `expected`; it is updated when a request's log step
/// runs, which may be a moment after the client has the response.
async fn wait_for(envoy: &Envoy, name: &str, labels: &[(&str, &str)], expected: f64) {
    let result: Result<(), RigError> = envoy.wait_for_stat(name, labels, expected).await;
    result.unwrap_or_else(|e| panic!("{e}\n{}", envoy.log()));
}

#[tokio::test]
async fn retry_counts_equal_envoys_own_per_cluster_counters() {
    let upstream = Upstream::start().await.unwrap();
    // Five requests whose first attempt fails and second succeeds, then three that fail
    // every attempt (1 + 2 retries) and exhaust the retry policy.
    for _ in 0..5 {
        upstream.queue(Reply::status(503));
        upstream.queue(Reply::ok());
    }
    for _ in 0..9 {
        upstream.queue(Reply::status(503));
    }
    let envoy = Envoy::start(config(Some(&upstream), None)).await.unwrap();

    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(envoy.get("/retry/x").await.unwrap().status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 503, 503, 503]);
    assert_eq!(upstream.received().len(), 19);

    wait_for(
        &envoy,
        "meshward_circuit_metrics_requests",
        RETRY_ROUTE,
        8.0,
    )
    .await;
    let stats = stats(&envoy).await;
    let envoy_retries = value(&stats, "envoy_cluster_upstream_rq_retry", ENVOY_CLUSTER);
    let envoy_exhausted = value(
        &stats,
        "envoy_cluster_upstream_rq_retry_limit_exceeded",
        ENVOY_CLUSTER,
    );
    assert_eq!(envoy_retries, 11.0);
    assert_eq!(
        value(&stats, "meshward_circuit_metrics_retries", RETRY_ROUTE),
        envoy_retries
    );
    assert_eq!(envoy_exhausted, 3.0);
    assert_eq!(
        value(
            &stats,
            "meshward_circuit_metrics_retries_exhausted",
            RETRY_ROUTE
        ),
        envoy_exhausted
    );
    let responses = |class| {
        let mut labels = RETRY_ROUTE.to_vec();
        labels.push(("code_class", class));
        value(&stats, "meshward_circuit_metrics_responses", &labels)
    };
    assert_eq!((responses("2xx"), responses("5xx")), (5.0, 3.0));
    // Histograms reach /stats/prometheus when Envoy flushes its stats (every 5 s).
    wait_for(
        &envoy,
        "meshward_circuit_metrics_attempts_count",
        RETRY_ROUTE,
        8.0,
    )
    .await;
    let mut two_attempts = RETRY_ROUTE.to_vec();
    two_attempts.push(("le", "2"));
    wait_for(
        &envoy,
        "meshward_circuit_metrics_attempts_bucket",
        &two_attempts,
        5.0,
    )
    .await;
}

#[tokio::test]
async fn metrics_reach_prometheus_with_cluster_and_route_labels() {
    let upstream = Upstream::start().await.unwrap();
    let envoy = Envoy::start(config(Some(&upstream), None)).await.unwrap();

    envoy.get("/retry/a").await.unwrap();
    envoy.get("/b").await.unwrap();
    wait_for(
        &envoy,
        "meshward_circuit_metrics_requests",
        DEFAULT_ROUTE,
        1.0,
    )
    .await;

    let stats = stats(&envoy).await;
    assert_eq!(
        value(&stats, "meshward_circuit_metrics_requests", RETRY_ROUTE),
        1.0
    );
    assert_eq!(
        value(&stats, "meshward_circuit_metrics_retries", DEFAULT_ROUTE),
        0.0
    );
    assert_eq!(
        value(&stats, "meshward_circuit_metrics_breaker_state", BREAKER),
        0.0
    );
    assert_eq!(
        value(&stats, "meshward_circuit_metrics_breaker_calls", BREAKER),
        2.0
    );
    // Histograms reach /stats/prometheus when Envoy flushes its stats (every 5 s), in the
    // buckets the config sets for attempts.
    let mut one_attempt = DEFAULT_ROUTE.to_vec();
    one_attempt.push(("le", "1"));
    wait_for(
        &envoy,
        "meshward_circuit_metrics_attempts_bucket",
        &one_attempt,
        1.0,
    )
    .await;
    // Every one of the filter's samples has its labels lifted out of the name.
    let ours: Vec<_> = stats
        .samples()
        .iter()
        .filter(|s| s.name.contains("meshward_circuit_metrics"))
        .collect();
    assert!(ours.len() > 20, "{ours:?}");
    for sample in ours {
        assert!(
            sample.name.starts_with("meshward_circuit_metrics_") && !sample.name.contains("=."),
            "{sample:?}"
        );
        let has = |label: &str| sample.labels.iter().any(|(k, _)| k == label);
        let unlabelled = sample.name == "meshward_circuit_metrics_store_failures";
        assert!(unlabelled || has("cluster"), "{sample:?}");
    }
}

#[tokio::test]
async fn istios_extra_stat_tags_lift_the_same_labels() {
    // Istio's bootstrap turns each name in `extraStatTags` into the tag regex
    // `(<tag>=\.=(.*?);\.;)`, unanchored, with Envoy's default tags off. Those alone must
    // give the labels the config file's anchored regexes give.
    let mut config = config(None, None);
    let tags: Vec<Value> = ["cluster", "route", "code_class", "to_state"]
        .iter()
        .map(|tag| json!({"tag_name": tag, "regex": format!("({tag}=\\.=(.*?);\\.;)")}))
        .collect();
    config.value_mut()["stats_config"] = json!({
        "use_all_default_tags": false,
        "stats_tags": tags,
    });
    let envoy = Envoy::start(config).await.unwrap();

    assert_eq!(envoy.get("/retry/x").await.unwrap().status, 503);

    let mut failed = DEFAULT_ROUTE.to_vec();
    failed[1] = ("route", "retry");
    failed.push(("code_class", "5xx"));
    wait_for(&envoy, "meshward_circuit_metrics_responses", &failed, 1.0).await;
    let stats = stats(&envoy).await;
    assert_eq!(
        value(&stats, "meshward_circuit_metrics_retries", RETRY_ROUTE),
        2.0
    );
    let mut to_open = BREAKER.to_vec();
    to_open.push(("to_state", "open"));
    assert_eq!(
        value(
            &stats,
            "meshward_circuit_metrics_breaker_transitions",
            &to_open
        ),
        0.0
    );
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_probes_and_closes_when_the_upstream_recovers() {
    let plugin = json!({
        "enforce": true,
        "breakers": [{
            "cluster": "upstream",
            "minimum_number_of_calls": 4,
            "sliding_window": {"count": 4},
            "wait_duration_in_open": "1s",
            "permitted_calls_in_half_open": 2
        }]
    });
    let upstream = Upstream::start().await.unwrap();
    upstream.reply_with(Reply::status(500));
    let envoy = Envoy::builder(config(Some(&upstream), Some(plugin)))
        .concurrency(2)
        .start()
        .await
        .unwrap();

    // Failures open it.
    for _ in 0..4 {
        assert_eq!(envoy.get("/down").await.unwrap().status, 500);
    }
    wait_for(
        &envoy,
        "meshward_circuit_metrics_breaker_state",
        BREAKER,
        1.0,
    )
    .await;

    // Open: requests fail fast, without reaching the upstream.
    let refused = envoy.get("/down").await.unwrap();
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("x-meshward-circuit-open"), Some("upstream"));
    assert_eq!(refused.header("retry-after"), Some("1"));
    let body: Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(body["error"], "circuit_open");
    assert_eq!(upstream.received().len(), 4);

    // The upstream recovers; after the wait, two probes go through and close it.
    upstream.reply_with(Reply::ok());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(envoy.get("/up").await.unwrap().status, 200);
    wait_for(
        &envoy,
        "meshward_circuit_metrics_breaker_state",
        BREAKER,
        2.0,
    )
    .await;
    wait_for(
        &envoy,
        "meshward_circuit_metrics_breaker_calls",
        BREAKER,
        1.0,
    )
    .await;
    assert_eq!(envoy.get("/up").await.unwrap().status, 200);
    wait_for(
        &envoy,
        "meshward_circuit_metrics_breaker_state",
        BREAKER,
        0.0,
    )
    .await;

    // Closed: traffic flows again.
    for _ in 0..3 {
        assert_eq!(envoy.get("/up").await.unwrap().status, 200);
    }
    assert_eq!(upstream.received().len(), 9);
    let stats = stats(&envoy).await;
    let transitions = |to| {
        let mut labels = BREAKER.to_vec();
        labels.push(("to_state", to));
        value(
            &stats,
            "meshward_circuit_metrics_breaker_transitions",
            &labels,
        )
    };
    assert_eq!(
        (
            transitions("open"),
            transitions("half_open"),
            transitions("closed")
        ),
        (1.0, 1.0, 1.0)
    );
    assert_eq!(
        value(&stats, "meshward_circuit_metrics_not_permitted", BREAKER),
        1.0
    );
}

#[tokio::test]
async fn connection_failures_equal_envoys_connect_failures() {
    // No upstream: the port refuses connections.
    let envoy = Envoy::start(config(None, None)).await.unwrap();

    for _ in 0..3 {
        assert_eq!(envoy.get("/x").await.unwrap().status, 503);
    }

    wait_for(
        &envoy,
        "meshward_circuit_metrics_requests",
        DEFAULT_ROUTE,
        3.0,
    )
    .await;
    let stats = stats(&envoy).await;
    let envoy_failures = value(
        &stats,
        "envoy_cluster_upstream_cx_connect_fail",
        ENVOY_CLUSTER,
    );
    assert_eq!(envoy_failures, 3.0);
    assert_eq!(
        value(
            &stats,
            "meshward_circuit_metrics_connection_failures",
            DEFAULT_ROUTE
        ),
        envoy_failures
    );
    assert_eq!(
        value(
            &stats,
            "meshward_circuit_metrics_breaker_failure_rate",
            BREAKER
        ),
        100.0
    );
}

#[test]
fn envoy_refuses_a_breaker_with_a_rate_over_100() {
    let with = |breaker: Value| {
        EnvoyConfig::with_filters(&[WasmFilter::new(
            "circuit-metrics",
            json!({"breakers": [breaker]}),
        )])
    };
    validate(&with(json!({"cluster": "upstream"}))).expect("a valid breaker is accepted");
    match validate(&with(
        json!({"cluster": "upstream", "failure_rate_threshold": 150}),
    )) {
        Err(RigError::Refused { log, .. }) => assert!(
            log.contains(
                "breakers[0].failure_rate_threshold: expected a percentage above 0 and at most 100"
            ),
            "the refusal should name the field:\n{log}"
        ),
        other => panic!("expected Envoy to refuse the config, got {other:?}"),
    }
}
