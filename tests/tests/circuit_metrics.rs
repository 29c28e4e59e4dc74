//! The circuit-metrics filter in the harness: what it counts per cluster and route, a
//! breaker whose state every worker shares (opening, failing fast, probing, closing),
//! METRICS_ONLY and dry runs that never act, bounded label cardinality, and the
//! configurations it refuses. Needs `make build` (out/circuit-metrics.wasm).
//!
//! The harness derives Envoy's `xds.cluster_name`, `xds.route_name`,
//! `upstream.request_attempt_count` (1 once the upstream was reached) and
//! `request.duration` (in `proxy_on_log`) from its simulated route and upstream; requests
//! here still set them as properties where a test needs other values (another route,
//! retries, a slow call), as Envoy 1.40 would report them.

use meshward_harness::{
    wasm_path, HarnessError, Host, LogLevel, MetricKind, Outcome, Request, Response, StreamState,
    Upstream,
};
use serde_json::{json, Value};
use std::time::Duration;

// Fixtures.

const CLUSTER: &str = "backend";
const ROUTE: &str = "api";

/// A breaker on `backend` that judges the last 4 calls, opens at 50 % failures, waits
/// 10 s and then lets 2 probes through; `extra` adds or overrides fields.
fn breaker(extra: Value) -> Value {
    let mut breaker = json!({
        "cluster": CLUSTER,
        "minimum_number_of_calls": 4,
        "sliding_window": {"count": 4},
        "wait_duration_in_open": "10s",
        "permitted_calls_in_half_open": 2,
    });
    if let (Some(base), Some(extra)) = (breaker.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    breaker
}

fn host_with(config: &Value, workers: usize) -> Host {
    Host::builder(wasm_path("circuit-metrics"))
        .config_json(&config.to_string())
        .workers(workers)
        .build()
        .unwrap_or_else(|e| panic!("the filter refused {config}: {e}"))
}

/// A request Envoy routed by `route` to `cluster`, sent upstream once.
fn request_to(cluster: &str, route: &str) -> Request {
    Request::get("/orders")
        .property("xds.cluster_name", cluster)
        .property("xds.route_name", route)
        .property("upstream.request_attempt_count", 1i64)
}

fn request() -> Request {
    request_to(CLUSTER, ROUTE)
}

fn ok() -> Upstream {
    Upstream::reply(Response::new(200).body("ok"))
}

fn failing() -> Upstream {
    Upstream::reply(Response::new(503).body("down"))
}

/// The stat name the filter defines: labels in the `<tag>=.=<value>;.;` form.
fn stat(labels: &[(&str, &str)], name: &str) -> String {
    let tags: String = labels
        .iter()
        .map(|(tag, value)| format!("{tag}=.={value};.;"))
        .collect();
    format!("meshward_circuit_metrics.{tags}{name}")
}

fn counter(host: &Host, labels: &[(&str, &str)], name: &str) -> u64 {
    let full = stat(labels, name);
    host.counter(&full)
        .unwrap_or_else(|| panic!("no counter {full}"))
}

fn gauge(host: &Host, labels: &[(&str, &str)], name: &str) -> u64 {
    let full = stat(labels, name);
    host.gauge(&full)
        .unwrap_or_else(|| panic!("no gauge {full}"))
}

const ROUTE_LABELS: &[(&str, &str)] = &[("cluster", CLUSTER), ("route", ROUTE)];
const BREAKER_LABELS: &[(&str, &str)] = &[("cluster", CLUSTER)];

fn transitions(host: &Host, to: &str) -> u64 {
    counter(
        host,
        &[("cluster", CLUSTER), ("to_state", to)],
        "breaker_transitions",
    )
}

/// Four upstream failures, spread over the workers: enough to open [`breaker`].
fn open_it(host: &Host) {
    for i in 0..4 {
        let out = host
            .worker(i % host.worker_count())
            .send(request(), failing());
        assert_eq!(out.response.status(), 503);
        assert!(out.upstream_request.is_some(), "failure {i} went upstream");
    }
}

fn refused_by_the_filter(out: &Outcome) -> bool {
    out.upstream_request.is_none()
        && out.response.status() == 503
        && out
            .response
            .header_value("x-meshward-circuit-open")
            .is_some()
}

/// Why the filter refused this configuration: its error log lines.
fn refusal(config: &Value) -> String {
    match Host::builder(wasm_path("circuit-metrics"))
        .config_json(&config.to_string())
        .build()
    {
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

// What it counts.

#[test]
fn counts_requests_responses_retries_and_attempts_per_cluster_and_route() {
    let host = host_with(&json!({}), 1);
    let retried = request().property("upstream.request_attempt_count", 3i64);
    host.send(retried, ok());
    host.send(request(), ok());
    host.send(request(), failing());

    assert_eq!(counter(&host, ROUTE_LABELS, "requests"), 3);
    assert_eq!(counter(&host, ROUTE_LABELS, "retries"), 2);
    let by_class = |class| {
        counter(
            &host,
            &[
                ("cluster", CLUSTER),
                ("route", ROUTE),
                ("code_class", class),
            ],
            "responses",
        )
    };
    assert_eq!(
        (by_class("2xx"), by_class("5xx"), by_class("4xx")),
        (2, 1, 0)
    );
    assert_eq!(
        host.histogram(&stat(ROUTE_LABELS, "attempts")),
        Some(vec![3, 1, 1])
    );
    assert_eq!(
        host.histogram(&stat(ROUTE_LABELS, "duration_ms"))
            .map(|samples| samples.len()),
        Some(3)
    );
}

#[test]
fn counts_each_upstream_failure_envoy_flags() {
    let host = host_with(&json!({}), 1);
    host.send(request(), Upstream::timeout());
    host.send(request(), Upstream::reset());
    host.send(request(), Upstream::no_healthy_upstream());
    host.send(
        request().property("upstream.request_attempt_count", 3i64),
        Upstream::local_reply(
            503,
            "",
            "upstream_reset_before_response_started",
            0x8000 | 0x20,
        ),
    );

    for (name, expected) in [
        ("timeouts", 1),
        ("upstream_resets", 1),
        ("no_healthy_upstream", 1),
        ("retries_exhausted", 1),
        ("connection_failures", 1),
        ("overflows", 0),
        ("other_flags", 0),
    ] {
        assert_eq!(counter(&host, ROUTE_LABELS, name), expected, "{name}");
    }
    assert_eq!(counter(&host, ROUTE_LABELS, "retries"), 2);
}

#[test]
fn a_request_with_no_cluster_or_route_is_labelled_none() {
    let host = host_with(&json!({}), 1);
    host.send(Request::get("/nowhere"), Upstream::no_route());
    let labels = [("cluster", "none"), ("route", "none")];
    assert_eq!(counter(&host, &labels, "requests"), 1);
    assert_eq!(
        counter(&host, &labels, "other_flags"),
        1,
        "NR is another flag"
    );
}

// The breaker, shared by every worker.

#[test]
fn failures_on_some_workers_open_the_breaker_for_all() {
    let host = host_with(
        &json!({"enforce": true, "breakers": [breaker(json!({}))]}),
        3,
    );
    open_it(&host);

    let out = host.worker(2).send(request(), ok());

    assert!(refused_by_the_filter(&out), "{:?}", out.response);
    assert_eq!(
        out.response.header_value("x-meshward-circuit-open"),
        Some(CLUSTER)
    );
    assert_eq!(out.response.header_value("retry-after"), Some("10"));
    assert_eq!(
        out.response.header_value("content-type"),
        Some("application/json")
    );
    let body: Value = serde_json::from_slice(out.response.body_bytes()).unwrap();
    assert_eq!(body["error"], "circuit_open");
    assert_eq!(out.details, "meshward_circuit_open");
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_state"), 1);
    assert_eq!(transitions(&host, "open"), 1);
    assert_eq!(counter(&host, BREAKER_LABELS, "not_permitted"), 1);
    // The refusal is a request and a 5xx the client saw.
    assert_eq!(counter(&host, ROUTE_LABELS, "requests"), 5);
}

#[test]
fn half_open_lets_exactly_the_permitted_probes_through_across_workers_then_closes() {
    let host = host_with(
        &json!({"enforce": true, "breakers": [breaker(json!({}))]}),
        3,
    );
    open_it(&host);
    host.advance(Duration::from_secs(10));

    let first = host.worker(0).start(request());
    let second = host.worker(1).start(request());
    let third = host.worker(2).send(request(), ok());
    let fourth = host.worker(0).send(request(), ok());

    assert_eq!(first.state(), StreamState::AwaitingUpstream);
    assert_eq!(second.state(), StreamState::AwaitingUpstream);
    assert!(refused_by_the_filter(&third));
    assert!(refused_by_the_filter(&fourth));
    assert_eq!(third.response.header_value("retry-after"), None);
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_state"), 2);

    first.respond(ok());
    second.respond(ok());
    assert_eq!(first.finish().response.status(), 200);
    assert_eq!(second.finish().response.status(), 200);

    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_state"), 0);
    assert_eq!(
        (
            transitions(&host, "open"),
            transitions(&host, "half_open"),
            transitions(&host, "closed")
        ),
        (1, 1, 1)
    );
    for worker in 0..3 {
        assert_eq!(
            host.worker(worker).send(request(), ok()).response.status(),
            200
        );
    }
}

#[test]
fn the_gauges_show_the_shared_state_whichever_worker_set_them_last() {
    let host = host_with(
        &json!({"enforce": true, "breakers": [breaker(json!({}))]}),
        2,
    );
    host.worker(1).send(request(), failing()); // worker 1 shows 1 call
    for _ in 0..3 {
        host.worker(0).send(request(), failing()); // 2, 3 calls, then open: 0
    }
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_calls"), 0);
    host.advance(Duration::from_secs(10));

    // Worker 1's first probe finishes: 1 call again, the value worker 1 showed before.
    host.worker(1).send(request(), ok());

    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_state"), 2);
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_calls"), 1);
}

#[test]
fn a_failed_probe_opens_the_breaker_again_for_a_new_wait() {
    let host = host_with(
        &json!({"enforce": true, "breakers": [breaker(json!({}))]}),
        2,
    );
    open_it(&host);
    host.advance(Duration::from_secs(10));

    host.worker(0).send(request(), ok());
    host.worker(1).send(request(), failing());

    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_state"), 1);
    assert_eq!(transitions(&host, "open"), 2);
    let out = host.worker(0).send(request(), ok());
    assert!(refused_by_the_filter(&out));
    assert_eq!(out.response.header_value("retry-after"), Some("10"));
}

#[test]
fn a_probe_the_client_abandons_gives_its_place_to_another() {
    let config =
        json!({"enforce": true, "breakers": [breaker(json!({"permitted_calls_in_half_open": 1}))]});
    let host = host_with(&config, 1);
    open_it(&host);
    host.advance(Duration::from_secs(10));

    // The probe never gets an answer: the stream times out, which says nothing about the
    // upstream.
    let abandoned = host.worker(0).start(request());
    assert!(refused_by_the_filter(&host.send(request(), ok())));
    abandoned.finish();

    let probe = host.send(request(), ok());
    assert_eq!(probe.response.status(), 200);
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_state"), 0);
}

#[test]
fn a_time_window_forgets_old_failures() {
    let config =
        json!({"enforce": true, "breakers": [breaker(json!({"sliding_window": {"time": "10s"}}))]});
    let host = host_with(&config, 2);
    for i in 0..3 {
        host.worker(i % 2).send(request(), failing());
    }
    host.advance(Duration::from_secs(11));
    // Three failures 11 s ago are out of the window: one more failure is 1 call, not 4.
    host.send(request(), failing());
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_state"), 0);
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_calls"), 1);
    for _ in 0..3 {
        host.send(request(), failing());
    }
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_state"), 1);
}

#[test]
fn slow_calls_open_the_breaker_at_their_threshold() {
    let config = json!({"enforce": true, "breakers": [breaker(json!({
        "slow_call_duration": "1s", "slow_call_rate_threshold": 75
    }))]});
    let host = host_with(&config, 1);
    let slow = || request().property("request.duration", Duration::from_millis(1500));
    let fast = || request().property("request.duration", Duration::from_millis(20));
    for req in [slow(), fast(), slow()] {
        assert_eq!(host.send(req, ok()).response.status(), 200);
    }
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_slow_call_rate"), 66);
    host.send(slow(), ok());
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_state"), 1);
    assert!(refused_by_the_filter(&host.send(fast(), ok())));
}

#[test]
fn replies_that_never_reached_the_upstream_do_not_count_for_the_breaker() {
    let config =
        json!({"enforce": true, "breakers": [breaker(json!({"failure_rate_threshold": 100}))]});
    let host = host_with(&config, 1);
    host.send(request(), failing());
    // Another filter's 401s say nothing about the upstream. Had they counted as
    // successes, the window would hold them, and the failures after them would not make
    // the 100 % it opens at.
    for _ in 0..10 {
        let not_sent = request().property("upstream.request_attempt_count", 0i64);
        let refused_by_auth =
            Upstream::local_reply(401, "unauthorized", "jwt_authn_access_denied", 0);
        assert_eq!(host.send(not_sent, refused_by_auth).response.status(), 401);
    }
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_calls"), 1);
    for _ in 0..3 {
        host.send(request(), failing());
    }
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_state"), 1);
}

#[test]
fn a_breaker_per_route_opens_for_its_route_only() {
    let config = json!({"enforce": true, "breakers": [breaker(json!({"per_route": true}))]});
    let host = host_with(&config, 2);
    open_it(&host);

    let same_route = host.send(request(), ok());
    let other_route = host.send(request_to(CLUSTER, "search"), ok());

    assert!(refused_by_the_filter(&same_route));
    assert_eq!(
        same_route.response.header_value("x-meshward-circuit-open"),
        Some("backend/api")
    );
    assert_eq!(other_route.response.status(), 200);
    assert_eq!(gauge(&host, ROUTE_LABELS, "breaker_state"), 1);
}

#[test]
fn the_wildcard_breaker_covers_clusters_no_entry_names() {
    let config = json!({"enforce": true, "breakers": [
        breaker(json!({"cluster": "*", "name": "shared-services"})),
        breaker(json!({"cluster": "payments", "mode": "metrics_only"}))
    ]});
    let host = host_with(&config, 1);
    for _ in 0..4 {
        host.send(request_to("payments", ROUTE), failing());
        host.send(request_to("search", ROUTE), failing());
    }
    assert_eq!(
        host.send(request_to("payments", ROUTE), ok())
            .response
            .status(),
        200
    );
    let out = host.send(request_to("search", ROUTE), ok());
    assert_eq!(
        out.response.header_value("x-meshward-circuit-open"),
        Some("shared-services")
    );
}

// Never acting unless told to.

#[test]
fn metrics_only_measures_but_never_acts() {
    let config = json!({"enforce": true, "breakers": [breaker(json!({"mode": "metrics_only"}))]});
    let host = host_with(&config, 2);
    for i in 0..10 {
        let out = host.worker(i % 2).send(request(), failing());
        assert!(out.upstream_request.is_some());
        assert_eq!(out.response.header_value("x-meshward-circuit-open"), None);
    }
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_state"), 3);
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_failure_rate"), 100);
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_calls"), 4);
    assert_eq!(transitions(&host, "open"), 0);
    assert_eq!(counter(&host, BREAKER_LABELS, "not_permitted"), 0);
}

#[test]
fn without_enforcement_the_breaker_runs_as_a_dry_run() {
    let host = host_with(&json!({"breakers": [breaker(json!({}))]}), 2);
    open_it(&host);

    let outs: Vec<Outcome> = (0..3).map(|_| host.send(request(), ok())).collect();

    for out in &outs {
        assert_eq!(out.response.status(), 200);
        assert!(out.upstream_request.is_some());
        assert_eq!(out.response.header_value("x-meshward-circuit-open"), None);
    }
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_state"), 1);
    assert_eq!(counter(&host, BREAKER_LABELS, "not_permitted_dry_run"), 3);
    assert_eq!(counter(&host, BREAKER_LABELS, "not_permitted"), 0);
    // The dry run goes on: after the wait it probes and closes on the successes.
    host.advance(Duration::from_secs(10));
    host.send(request(), ok());
    host.send(request(), ok());
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_state"), 0);
}

#[test]
fn enforcement_can_be_rolled_out_one_breaker_at_a_time() {
    let config = json!({"breakers": [
        breaker(json!({"enforce": true})),
        breaker(json!({"cluster": "search"}))
    ]});
    let host = host_with(&config, 1);
    open_it(&host);
    for _ in 0..4 {
        host.send(request_to("search", ROUTE), failing());
    }
    assert!(refused_by_the_filter(&host.send(request(), ok())));
    assert_eq!(
        host.send(request_to("search", ROUTE), ok())
            .response
            .status(),
        200
    );
}

#[test]
fn forced_open_refuses_everything_when_enforcing() {
    let config = json!({"enforce": true, "breakers": [breaker(json!({"mode": "forced_open"}))]});
    let host = host_with(&config, 1);
    let out = host.send(request(), ok());
    assert!(refused_by_the_filter(&out));
    assert_eq!(out.response.header_value("retry-after"), None);
    assert_eq!(gauge(&host, BREAKER_LABELS, "breaker_state"), 4);
}

// Bounded cardinality.

/// The `cluster` label values of the `requests` counters, with their counts.
fn requests_by_cluster(host: &Host) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = host
        .metrics()
        .into_iter()
        .filter(|(kind, name, _)| *kind == MetricKind::Counter && name.ends_with(";.;requests"))
        .filter_map(|(_, name, value)| {
            let cluster = name
                .split("cluster=.=")
                .nth(1)?
                .split(";.;")
                .next()?
                .to_string();
            match value {
                meshward_harness::MetricValue::Counter(n) => Some((cluster, n)),
                _ => None,
            }
        })
        .collect();
    found.sort();
    found
}

#[test]
fn cluster_labels_are_capped_for_the_whole_proxy_not_per_worker() {
    let host = host_with(&json!({"labels": {"clusters": {"max": 2}}}), 3);
    let clusters = ["c0", "c1", "c2", "c3", "c4", "c5"];
    // Every cluster is seen by every worker, the first two first.
    for worker in 0..3 {
        for (i, cluster) in clusters.iter().enumerate() {
            host.worker((worker + i) % 3)
                .send(request_to(cluster, ROUTE), ok());
        }
    }
    assert_eq!(
        requests_by_cluster(&host),
        vec![("c0".into(), 3), ("c1".into(), 3), ("other".into(), 12)]
    );
}

#[test]
fn an_allow_list_labels_only_the_names_it_lists() {
    let config = json!({"labels": {"clusters": {"allow": ["payments"]}, "routes": {"allow": ["checkout"], "max": 1}}});
    let host = host_with(&config, 1);
    host.send(request_to("payments", "checkout"), ok());
    host.send(request_to("search", "query"), ok());
    host.send(request_to("search", "suggest"), ok());
    assert_eq!(
        counter(
            &host,
            &[("cluster", "payments"), ("route", "checkout")],
            "requests"
        ),
        1
    );
    assert_eq!(
        counter(
            &host,
            &[("cluster", "other"), ("route", "query")],
            "requests"
        ),
        1
    );
    assert_eq!(
        counter(
            &host,
            &[("cluster", "other"), ("route", "other")],
            "requests"
        ),
        1
    );
}

#[test]
fn label_values_cannot_break_the_stat_name() {
    let host = host_with(&json!({}), 1);
    host.send(
        request_to("outbound|8080||a.b.svc.cluster.local", "x=1;.;y"),
        ok(),
    );
    assert_eq!(
        counter(
            &host,
            &[
                ("cluster", "outbound|8080||a.b.svc.cluster.local"),
                ("route", "x_1_._y")
            ],
            "requests"
        ),
        1
    );
}

// Configurations.

#[test]
fn refuses_rates_outside_0_to_100() {
    for rate in [0, 101, -3] {
        let log = refusal(&json!({"breakers": [breaker(json!({"failure_rate_threshold": rate}))]}));
        assert!(
            log.contains(
                "breakers[0].failure_rate_threshold: expected a percentage above 0 and at most 100"
            ),
            "{log}"
        );
    }
    let log = refusal(&json!({"breakers": [breaker(json!({"slow_call_rate_threshold": 120}))]}));
    assert!(
        log.contains("breakers[0].slow_call_rate_threshold"),
        "{log}"
    );
}

#[test]
fn refuses_a_zero_window() {
    let log = refusal(&json!({"breakers": [breaker(json!({"sliding_window": {"count": 0}}))]}));
    assert!(log.contains("breakers[0].sliding_window.count"), "{log}");
    let log = refusal(&json!({"breakers": [breaker(json!({"sliding_window": {"time": "0s"}}))]}));
    assert!(log.contains("breakers[0].sliding_window.time"), "{log}");
}

#[test]
fn refuses_unknown_fields_by_name() {
    let log = refusal(&json!({"breakers": [breaker(json!({"window": {"count": 5}}))]}));
    assert!(
        log.contains("breakers[0].window: unknown field `window`"),
        "{log}"
    );
    let log = refusal(&json!({"enforcing": true}));
    assert!(log.contains("unknown field `enforcing`"), "{log}");
}

#[test]
fn the_istio_example_plugin_config_is_accepted() {
    let path = meshward_tests::repo_root().join("k8s/base/circuit-metrics.yaml");
    let manifest: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let config = manifest["spec"]["pluginConfig"].clone();
    assert!(config.is_object());
    let host = host_with(&config, 1);
    assert_eq!(host.send(request(), ok()).response.status(), 200);
}
