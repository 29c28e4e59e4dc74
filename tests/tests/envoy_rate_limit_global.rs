//! The rate-limit filter's global mode in real Envoys against a real Rate Limit Service:
//! limitador counting in a redis-server on 127.0.0.1 (tests/rls, started by the rig's
//! [`Rls`]). Two Envoys share one quota; a local bucket in front sends the service only what
//! it allows; stopping the service and freezing it past the timeout give each rule's failure
//! mode; every case shows in `/stats/prometheus`; `envoy-config/rate-limit-global.yaml` works
//! against it as written, but for its timeouts. Needs `make setup` (redis-server),
//! `make build` (out/rate-limit.wasm) and scripts/build-rls.sh (run on demand).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshward_tests::rls::{self, Rls};
use meshward_tests::{Envoy, EnvoyConfig, Request, Response, Upstream, WasmFilter};
use serde_json::{json, Value};

const UPSTREAM: u16 = 8080;
/// The port of the config's `rate_limit_service` cluster, as in
/// `envoy-config/rate-limit-global.yaml`.
const RLS: u16 = 8081;

/// A rule named `name` for requests under `/<name>/`, keyed by `x-user`, counted by the
/// service in domain `meshward`; `global` is merged into its `global` object and `extra`
/// into the rule.
fn rule(name: &str, global: Value, extra: Value) -> Value {
    let mut rule = json!({
        "name": name,
        "match": {"path": {"prefix": format!("/{name}/")}},
        "key": [{"header": "x-user"}],
        "global": {"cluster": "rate_limit_service", "domain": "meshward"},
    });
    for (k, v) in global.as_object().unwrap() {
        rule["global"][k] = v.clone();
    }
    for (k, v) in extra.as_object().unwrap() {
        rule[k] = v.clone();
    }
    rule
}

/// The rate-limit filter with `rules` in front of `upstream`, with the RLS cluster (HTTP/2,
/// as in the example config) pointed at `rls`.
fn config(rules: &[Value], upstream: &Upstream, rls: &Rls) -> EnvoyConfig {
    let filter = WasmFilter::new("rate-limit", json!({ "rules": rules }));
    let mut config = EnvoyConfig::with_filters(&[filter])
        .upstream(UPSTREAM, upstream.port())
        .upstream(RLS, rls.port());
    config.value_mut()["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "name": "rate_limit_service",
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                },
            },
            "load_assignment": {
                "cluster_name": "rate_limit_service",
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": RLS},
                }}}]}],
            },
        }));
    config
}

fn as_user(path: &str, user: &str) -> Request {
    Request::get(path).with_header("x-user", user)
}

async fn send(addr: SocketAddr, request: Request) -> Response {
    meshward_tests::http1::send(addr, &request).await.unwrap()
}

/// `meshward_rate_limit_<stat>{rule="<rule>"}` of `envoy`, 0 when not there yet.
async fn stat(envoy: &Envoy, rule: &str, stat: &str) -> f64 {
    let name = format!("meshward_rate_limit_{stat}");
    envoy
        .stats()
        .await
        .unwrap()
        .get(&name, &[("rule", rule)])
        .unwrap_or(0.0)
}

/// Every global counter of `rule`, by name, for a failure message.
async fn global_stats(envoy: &Envoy, rule: &str) -> Vec<(&'static str, f64)> {
    let mut found = Vec::new();
    for name in [
        "global_ok",
        "global_over_limit",
        "global_failed_timeout",
        "global_failed_unreachable",
        "global_failed_error",
        "global_failed_unknown_cluster",
        "global_failed_bad_reply",
    ] {
        found.push((name, stat(envoy, rule, name).await));
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_envoys_share_one_quota_through_the_service_and_other_keys_are_unaffected() {
    let upstream = Upstream::start().await.unwrap();
    let mut rls = Rls::start(rls::limit("meshward", "per_user", 10, 60, &["x-user"]))
        .await
        .unwrap();
    // A generous timeout: this test is about the count, not about a slow machine.
    let rules = [rule("per_user", json!({"timeout": "5s"}), json!({}))];
    let envoys = [
        Envoy::start(config(&rules, &upstream, &rls)).await.unwrap(),
        Envoy::start(config(&rules, &upstream, &rls)).await.unwrap(),
    ];

    // 30 requests for alice at once, alternating between the two Envoys (two workers each).
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let addr = envoys[i % 2].addr();
            tokio::spawn(async move { (i % 2, send(addr, as_user("/per_user/x", "alice")).await) })
        })
        .collect();
    let mut passed = [0, 0];
    let mut refused = [0, 0];
    for task in tasks {
        let (envoy, response) = task.await.unwrap();
        match response.status {
            200 => passed[envoy] += 1,
            429 => {
                refused[envoy] += 1;
                let retry_after: u64 = response
                    .header("retry-after")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("429 without a Retry-After: {response:?}"));
                assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
                assert!(
                    response.text().contains("rate_limited"),
                    "{}",
                    response.text()
                );
                // limitador's own headers, passed on from response_headers_to_add.
                assert_eq!(response.header("x-ratelimit-remaining"), Some("0"));
            }
            other => panic!("unexpected status {other}: {response:?}"),
        }
    }
    // Each Envoy alone would have let through 10: together, exactly 10 passed.
    assert_eq!(
        passed[0] + passed[1],
        10,
        "passed {passed:?}, refused {refused:?}"
    );
    assert_eq!(refused[0] + refused[1], 20);

    // Another key has its own count, on either Envoy.
    for envoy in &envoys {
        let response = send(envoy.addr(), as_user("/per_user/x", "bob")).await;
        assert_eq!(response.status, 200, "{response:?}");
    }
    assert_eq!(upstream.received().len(), 12);

    // The metrics of both Envoys add up to what the clients saw and the service answered.
    let mut ok = 0.0;
    let mut over_limit = 0.0;
    let mut failed = 0.0;
    for envoy in &envoys {
        ok += stat(envoy, "per_user", "global_ok").await;
        over_limit += stat(envoy, "per_user", "global_over_limit").await;
        for kind in [
            "timeout",
            "unreachable",
            "error",
            "unknown_cluster",
            "bad_reply",
        ] {
            failed += stat(envoy, "per_user", &format!("global_failed_{kind}")).await;
        }
    }
    assert_eq!((ok, over_limit, failed), (12.0, 20.0, 0.0));
    let tally = rls.tally().await.unwrap();
    assert_eq!((tally.calls, tally.ok, tally.over_limit), (32, 12, 20));
    // Every call's latency is recorded (histograms reach the admin at the stats flush).
    for (envoy, calls) in envoys
        .iter()
        .zip([passed[0] + refused[0] + 1, passed[1] + refused[1] + 1])
    {
        envoy
            .wait_for_stat(
                "meshward_rate_limit_global_latency_ms_count",
                &[("rule", "per_user")],
                f64::from(calls),
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_local_bucket_in_front_sends_the_service_only_what_it_allows() {
    let upstream = Upstream::start().await.unwrap();
    let mut rls = Rls::start(rls::limit("meshward", "per_user", 3, 60, &["x-user"]))
        .await
        .unwrap();
    let rules = [rule(
        "per_user",
        json!({"timeout": "5s"}),
        json!({"limit": {"capacity": 5, "per": "1m"}}),
    )];
    let envoy = Envoy::start(config(&rules, &upstream, &rls)).await.unwrap();

    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            send(envoy.addr(), as_user("/per_user/x", "carol"))
                .await
                .status,
        );
    }
    // The service allows 3 of the 5 the local bucket lets through; the bucket refuses 7.
    assert_eq!(
        statuses,
        [200, 200, 200, 429, 429, 429, 429, 429, 429, 429, 429, 429]
    );
    let tally = rls.tally().await.unwrap();
    assert_eq!((tally.calls, tally.ok, tally.over_limit), (5, 3, 2));
    assert_eq!(stat(&envoy, "per_user", "global_ok").await, 3.0);
    assert_eq!(stat(&envoy, "per_user", "global_over_limit").await, 2.0);
    assert_eq!(stat(&envoy, "per_user", "limited").await, 9.0);
}

/// Two rules counted by the service, alike but for the failure mode: `open` allows, `closed`
/// denies. 100 a minute each, so only failures refuse.
async fn open_and_closed(upstream: &Upstream, rls: &Rls, timeout: &str) -> Envoy {
    let rules = [
        rule(
            "open",
            json!({"timeout": timeout, "failure_mode": "allow"}),
            json!({}),
        ),
        rule(
            "closed",
            json!({"timeout": timeout, "failure_mode": "deny"}),
            json!({}),
        ),
    ];
    Envoy::start(config(&rules, upstream, rls)).await.unwrap()
}

fn failure_limits() -> String {
    rls::limit("meshward", "open", 100, 60, &["x-user"])
        + &rls::limit("meshward", "closed", 100, 60, &["x-user"])
}

#[tokio::test]
async fn stopping_the_service_gives_each_rules_failure_mode_counted_as_unreachable() {
    let upstream = Upstream::start().await.unwrap();
    let mut rls = Rls::start(failure_limits()).await.unwrap();
    let envoy = open_and_closed(&upstream, &rls, "2s").await;
    for path in ["/open/x", "/closed/x"] {
        let response = send(envoy.addr(), as_user(path, "dan")).await;
        assert_eq!(
            response.status, 200,
            "{path} with the service up: {response:?}"
        );
    }

    rls.stop();
    let started = Instant::now();
    let open = send(envoy.addr(), as_user("/open/x", "dan")).await;
    let closed = send(envoy.addr(), as_user("/closed/x", "dan")).await;
    assert_eq!(open.status, 200, "allow lets it through: {open:?}");
    assert_eq!(closed.status, 429, "deny refuses it: {closed:?}");
    assert!(
        closed.text().contains("rate_limit_unavailable"),
        "{}",
        closed.text()
    );
    assert_eq!(closed.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a refused connection should not wait for the timeout: {:?}",
        started.elapsed()
    );
    for rule in ["open", "closed"] {
        let found = global_stats(&envoy, rule).await;
        assert_eq!(
            stat(&envoy, rule, "global_ok").await,
            1.0,
            "{rule}: {found:?}"
        );
        assert_eq!(
            stat(&envoy, rule, "global_failed_unreachable").await,
            1.0,
            "{rule}: {found:?}"
        );
        assert_eq!(
            stat(&envoy, rule, "global_failed_timeout").await,
            0.0,
            "{rule}: {found:?}"
        );
    }
    assert_eq!(upstream.received().len(), 3);
}

#[tokio::test]
async fn freezing_the_service_past_the_timeout_gives_each_rules_failure_mode_counted_as_timeout() {
    let upstream = Upstream::start().await.unwrap();
    let rls = Rls::start(failure_limits()).await.unwrap();
    let envoy = open_and_closed(&upstream, &rls, "300ms").await;
    for path in ["/open/x", "/closed/x"] {
        let response = send(envoy.addr(), as_user(path, "eve")).await;
        assert_eq!(
            response.status, 200,
            "{path} with the service up: {response:?}"
        );
    }
    let ok_before = [
        stat(&envoy, "open", "global_ok").await,
        stat(&envoy, "closed", "global_ok").await,
    ];

    rls.freeze().unwrap();
    let started = Instant::now();
    let open = send(envoy.addr(), as_user("/open/x", "eve")).await;
    let waited = started.elapsed();
    let closed = send(envoy.addr(), as_user("/closed/x", "eve")).await;
    rls.thaw().unwrap();
    assert_eq!(open.status, 200, "allow lets it through: {open:?}");
    assert!(
        waited >= Duration::from_millis(290),
        "answered after {waited:?}"
    );
    assert_eq!(closed.status, 429, "deny refuses it: {closed:?}");
    assert!(
        closed.text().contains("rate_limit_unavailable"),
        "{}",
        closed.text()
    );
    for rule in ["open", "closed"] {
        let found = global_stats(&envoy, rule).await;
        assert_eq!(
            stat(&envoy, rule, "global_failed_timeout").await,
            1.0,
            "{rule}: {found:?}"
        );
        assert_eq!(
            stat(&envoy, rule, "global_failed_unreachable").await,
            0.0,
            "{rule}: {found:?}"
        );
    }

    // Thawed, the service answers again.
    for (i, (path, rule)) in [("/open/x", "open"), ("/closed/x", "closed")]
        .into_iter()
        .enumerate()
    {
        let response = send(envoy.addr(), as_user(path, "eve")).await;
        assert_eq!(response.status, 200, "{path} after the thaw: {response:?}");
        assert_eq!(stat(&envoy, rule, "global_ok").await, ok_before[i] + 1.0);
    }
}

#[tokio::test]
async fn the_example_config_limits_per_user_and_per_client_address_through_the_service() {
    let upstream = Upstream::start().await.unwrap();
    let rls = Rls::start(
        rls::limit("meshward", "per_user", 3, 60, &["x-user"])
            + &rls::limit("meshward", "login", 2, 60, &["remote_address"]),
    )
    .await
    .unwrap();
    let mut config = EnvoyConfig::load("rate-limit-global.yaml")
        .unwrap()
        .upstream(UPSTREAM, upstream.port())
        .upstream(RLS, rls.port());
    // The example's 20 ms suits a service next door, not a test machine busy compiling: a
    // slow answer would be a failure, and this test is about the answers.
    let plugin = config
        .value_mut()
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters/0/typed_config/config/configuration/value")
        .unwrap();
    let text = plugin.as_str().unwrap().replace(
        "\"domain\": \"meshward\"",
        "\"domain\": \"meshward\", \"timeout\": \"5s\"",
    );
    let text = text.replace("\"timeout\": \"20ms\",", "");
    assert_eq!(text.matches("\"timeout\": \"5s\"").count(), 2, "{text}");
    *plugin = Value::String(text);
    let envoy = Envoy::start(config).await.unwrap();

    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            send(envoy.addr(), as_user("/api/items", "alice"))
                .await
                .status,
        );
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429],
        "per_user: 3 a minute for alice"
    );
    assert_eq!(
        send(envoy.addr(), as_user("/api/items", "bob"))
            .await
            .status,
        200
    );

    let from = |address: &str| Request::get("/login").with_header("x-forwarded-for", address);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send(envoy.addr(), from("203.0.113.7")).await.status);
    }
    assert_eq!(
        statuses,
        [200, 200, 429],
        "login: 2 a minute per client address"
    );
    assert_eq!(send(envoy.addr(), from("203.0.113.8")).await.status, 200);
    let stats = envoy.stats().await.unwrap();
    let rule_stat = |stat: &str, rule: &str| {
        stats.get(&format!("meshward_rate_limit_{stat}"), &[("rule", rule)])
    };
    assert_eq!(rule_stat("global_ok", "per_user"), Some(4.0));
    assert_eq!(rule_stat("global_over_limit", "per_user"), Some(1.0));
    assert_eq!(rule_stat("global_ok", "login"), Some(3.0));
    assert_eq!(rule_stat("global_over_limit", "login"), Some(1.0));
}
