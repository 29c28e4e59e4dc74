//! The region-router filter in the harness: where requests go and why, what the routing
//! header looks like to the upstream, how a failing region is marked, probed and restored
//! with several workers sharing its health, the metrics, and which configurations it
//! refuses. Needs `make build` (out/region-router.wasm).
//!
//! The harness has no route table: each test reads the routing header the filter set and
//! answers as that region would, a down region the way Envoy answers for a refused
//! connection (503, response flag UF).

use meshward_harness::{
    wasm_path, HarnessError, Host, LogLevel, Outcome, Request, Response, Upstream, Worker,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

// Fixtures.

const ROUTE: &str = "x-meshward-cluster";
const DECISION: &str = "x-meshward-region-decision";
const EU: &str = "eu-west-1";
const US: &str = "us-east-1";
const AP: &str = "ap-south-1";
/// Envoy's `UpstreamConnectionFailure` response flag (bit 5).
const UF: u64 = 1 << 5;

/// Three regions, eu-west-1 local; health judged over 10 outcomes, 5 s cool-down, half of
/// a probing region's keys probe it, 3 good probes restore it.
fn config() -> Value {
    json!({
        "regions": [
            {"name": EU, "cluster": "eu", "latency": "2ms"},
            {"name": US, "cluster": "us", "latency": "80ms"},
            {"name": AP, "cluster": "ap", "latency": "120ms"}
        ],
        "local_region": EU,
        "sticky": {"header": "x-session-id"},
        "decision_header": DECISION,
        "health": {
            "window": "10s",
            "min_requests": 10,
            "failure_threshold_percent": 50,
            "cool_down": "5s",
            "probe_percent": 50,
            "probe_successes": 3
        }
    })
}

fn cluster_of(region: &str) -> &'static str {
    match region {
        EU => "eu",
        US => "us",
        AP => "ap",
        _ => panic!("no region {region}"),
    }
}

fn decisions(region: &str, reason: &str) -> String {
    format!("meshward_region_router.region=.={region};.;reason=.={reason};.;decisions")
}

fn region_stat(region: &str, stat: &str) -> String {
    format!("meshward_region_router.region=.={region};.;{stat}")
}

fn host_with(config: Value, workers: usize) -> Host {
    Host::builder(wasm_path("region-router"))
        .workers(workers)
        .config_json(&config.to_string())
        .build()
        .unwrap_or_else(|e| panic!("the filter refused {config}: {e}"))
}

fn host() -> Host {
    host_with(config(), 1)
}

/// Which regions are down; the rest answer 200 naming their cluster.
#[derive(Clone, Debug, Default)]
struct Regions {
    down: Vec<&'static str>,
}

impl Regions {
    fn up() -> Self {
        Regions::default()
    }
    fn with_down(down: &[&'static str]) -> Self {
        Regions {
            down: down.iter().map(|r| cluster_of(r)).collect(),
        }
    }
    /// What Envoy hands back for a request routed to `cluster`.
    fn answer(&self, cluster: Option<&str>) -> Upstream {
        match cluster {
            Some(c) if self.down.contains(&c) => Upstream::local_reply(
                503,
                "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure",
                "upstream_reset_before_response_started{remote_connection_failure}",
                UF,
            ),
            Some(c) => Upstream::reply(Response::new(200).header("x-served-by", c)),
            None => Upstream::no_route(),
        }
    }
}

/// Sends `request` through `worker`; the region the filter chose answers as `regions` says.
fn send(worker: &Worker<'_>, request: Request, regions: &Regions) -> Outcome {
    let stream = worker.start(request);
    let cluster = stream
        .request()
        .and_then(|r| r.header_value(ROUTE).map(str::to_owned));
    stream.respond(regions.answer(cluster.as_deref()));
    stream.finish()
}

/// The cluster the upstream saw in the routing header.
fn routed_to(outcome: &Outcome) -> String {
    outcome
        .upstream_request
        .as_ref()
        .and_then(|r| r.header_value(ROUTE))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            outcome
                .response
                .header_value(DECISION)
                .unwrap_or("nowhere")
                .to_owned()
        })
}

fn decision(outcome: &Outcome) -> &str {
    outcome.response.header_value(DECISION).unwrap_or("")
}

fn prefer(region: &str) -> Request {
    Request::get("/").header("x-region-preference", region)
}

/// Why the filter refused this configuration: its error log lines.
fn refusal(config: &Value) -> String {
    refusal_with(Host::builder(wasm_path("region-router")), config)
}

fn refusal_with(builder: meshward_harness::HostBuilder, config: &Value) -> String {
    match builder.config_json(&config.to_string()).build() {
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

/// Makes `region` fail outright until it is marked unhealthy, sending through the workers
/// in turn; returns how many requests failed.
fn fail_until_marked(host: &Host, region: &'static str) -> u32 {
    let down = Regions::with_down(&[region]);
    for failed in 0..100 {
        let worker = host.worker(failed % host.worker_count());
        let outcome = send(&worker, prefer(region), &down);
        if decision(&outcome) != format!("region={region}; reason=preference") {
            return u32::try_from(failed).unwrap();
        }
        assert_eq!(outcome.response.status(), 503);
    }
    panic!("{region} was never marked unhealthy");
}

// Routing.

#[test]
fn a_stated_preference_is_honoured() {
    let host = host();
    let out = send(&host.worker(0), prefer(US), &Regions::up());
    assert_eq!(routed_to(&out), "us");
    assert_eq!(out.response.header_value("x-served-by"), Some("us"));
    assert_eq!(decision(&out), "region=us-east-1; reason=preference");
    assert_eq!(host.counter(&decisions(US, "preference")), Some(1));
}

#[test]
fn an_unknown_or_closed_preference_falls_to_the_next_in_the_list() {
    let mut closed = config();
    closed["regions"][2]["allow_preference"] = json!(false);
    let host = host_with(closed, 1);
    let out = send(
        &host.worker(0),
        prefer("mars-1, AP-SOUTH-1 , us-east-1"),
        &Regions::up(),
    );
    assert_eq!(routed_to(&out), "us");
    assert_eq!(
        decision(&out),
        "region=us-east-1; reason=preference_fallback"
    );
    assert_eq!(
        host.counter("meshward_region_router.preference_ignored"),
        Some(1)
    );
}

#[test]
fn latency_sensitive_requests_go_to_the_nearest_region_whatever_they_prefer() {
    let host = host();
    let request = prefer(AP).header("x-latency-sensitive", "true");
    let out = send(&host.worker(0), request, &Regions::up());
    assert_eq!(routed_to(&out), "eu");
    assert_eq!(decision(&out), "region=eu-west-1; reason=latency");
}

#[test]
fn a_routing_header_sent_by_the_client_is_replaced() {
    let host = host();
    let request = prefer(US)
        .header(ROUTE, "admin-cluster")
        .header(ROUTE, "eu");
    let out = send(&host.worker(0), request, &Regions::up());
    let upstream = out.upstream_request.as_ref().unwrap();
    assert_eq!(upstream.headers().get_all(ROUTE), vec!["us"]);
    assert_eq!(
        host.counter("meshward_region_router.route_header_stripped"),
        Some(1)
    );
}

#[test]
fn the_route_is_refreshed_after_the_header_is_set() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let host = Host::builder(wasm_path("region-router"))
        .config_json(&config().to_string())
        .foreign_function("clear_route_cache", move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        })
        .build()
        .unwrap();
    for _ in 0..3 {
        send(&host.worker(0), prefer(US), &Regions::up());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Without the function (older proxies), requests are still routed.
    let out = send(&self::host().worker(0), prefer(US), &Regions::up());
    assert_eq!(routed_to(&out), "us");
}

#[test]
fn a_session_stays_in_one_region_on_every_worker() {
    let host = host_with(config(), 3);
    for session in ["alice", "bob", "carol", "dave"] {
        let mut seen = Vec::new();
        for i in 0..9 {
            let request = Request::get("/").header("x-session-id", session);
            seen.push(routed_to(&send(
                &host.worker(i % 3),
                request,
                &Regions::up(),
            )));
        }
        seen.dedup();
        assert_eq!(seen.len(), 1, "{session} moved: {seen:?}");
    }
}

#[test]
fn without_a_session_key_requests_split_by_the_weights() {
    let host = host();
    let n = 1000;
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let out = send(&host.worker(0), Request::get("/"), &Regions::up());
        *counts.entry(routed_to(&out)).or_insert(0u32) += 1;
    }
    // 70 / 15 / 15 by x-request-id; 5 standard deviations of a binomial share.
    for (cluster, p) in [("eu", 0.70), ("us", 0.15), ("ap", 0.15)] {
        let share = f64::from(counts[cluster]) / f64::from(n);
        let sd = (p * (1.0 - p) / f64::from(n)).sqrt();
        assert!(
            (share - p).abs() < 5.0 * sd,
            "{cluster}: {share} ({counts:?})"
        );
    }
    assert_eq!(
        host.counter(&decisions(EU, "split")),
        Some(u64::from(counts["eu"]))
    );
}

#[test]
fn the_local_region_can_come_from_the_node_locality() {
    // No latencies: the local region is the only one known to be near.
    let mut without = config();
    without.as_object_mut().unwrap().remove("local_region");
    for region in without["regions"].as_array_mut().unwrap() {
        region.as_object_mut().unwrap().remove("latency");
    }
    let from_node = |path: &str| {
        Host::builder(wasm_path("region-router"))
            .config_json(&without.to_string())
            .property(path, US)
            .build()
            .unwrap()
    };
    for path in ["xds.node.locality.region", "node.locality.region"] {
        let host = from_node(path);
        let out = send(
            &host.worker(0),
            Request::get("/").header("x-latency-sensitive", "1"),
            &Regions::up(),
        );
        // us-east-1 is local, so the nearest.
        assert_eq!(routed_to(&out), "us", "locality from {path}");
    }
}

#[test]
fn the_route_header_can_carry_the_region_name() {
    let mut by_region = config();
    by_region["route_header"] = json!("x-region");
    by_region["route_header_value"] = json!("region");
    let host = host_with(by_region, 1);
    let out = host.send(prefer(AP), Upstream::reply(Response::new(200)));
    let upstream = out.upstream_request.unwrap();
    assert_eq!(upstream.header_value("x-region"), Some(AP));
    assert_eq!(upstream.header_value(ROUTE), None);
}

// Passive health, shared by every worker.

#[test]
fn a_failing_region_is_marked_after_min_requests_and_every_worker_moves_away() {
    let host = host_with(config(), 3);
    // A healthy history first: it must not slow the failover down.
    for i in 0..30 {
        send(&host.worker(i % 3), prefer(US), &Regions::up());
    }
    let failed = fail_until_marked(&host, US);
    // 5 failures among the last 10 outcomes reach the 50 % threshold.
    assert_eq!(failed, 5);
    for w in 0..3 {
        let out = send(&host.worker(w), prefer(US), &Regions::with_down(&[US]));
        // Nothing else in the list: the split decides, among the healthy regions.
        assert_eq!(out.response.status(), 200, "worker {w}");
        assert_ne!(routed_to(&out), "us", "worker {w}");
        assert!(
            decision(&out).ends_with("reason=split") || decision(&out).ends_with("reason=failover"),
            "{}",
            decision(&out)
        );
    }
    assert_eq!(host.counter(&region_stat(US, "failovers")), Some(1));
    assert_eq!(host.counter(&region_stat(US, "failures")), Some(5));
    assert_eq!(host.gauge(&region_stat(US, "state")), Some(2));
    assert!(host
        .log_messages(LogLevel::Warn)
        .iter()
        .any(|m| m.contains("region us-east-1 is unhealthy")));
}

#[test]
fn a_region_with_no_history_is_marked_after_min_requests_failures() {
    let host = host_with(config(), 2);
    assert_eq!(fail_until_marked(&host, US), 10);
}

/// A host running the region router as VM id `router` on `registry`: several such hosts
/// are workers of one Envoy, one of them configuring later than the others.
fn worker_on(registry: &meshward_harness::SharedData) -> Host {
    Host::builder(wasm_path("region-router"))
        .vm_id("router")
        .shared_data(registry)
        .config_json(&config().to_string())
        .build()
        .unwrap()
}

#[test]
fn a_worker_configuring_late_keeps_the_outcomes_other_workers_recorded() {
    let registry = meshward_harness::SharedData::new();
    let early = worker_on(&registry);
    let down = Regions::with_down(&[US]);
    // 9 failures: one short of marking a region with no history (min_requests 10).
    for _ in 0..9 {
        let outcome = send(&early.worker(0), prefer(US), &down);
        assert_eq!(decision(&outcome), "region=us-east-1; reason=preference");
    }
    let late = worker_on(&registry);
    // The late worker's configure found the record and kept it: one more failure marks it.
    assert_eq!(fail_until_marked(&late, US), 1);
    let outcome = send(&early.worker(0), prefer(US), &down);
    assert_ne!(
        routed_to(&outcome),
        "us",
        "the early worker sees the mark too"
    );
}

#[test]
fn a_region_marked_unhealthy_stays_marked_for_a_worker_configuring_late() {
    let registry = meshward_harness::SharedData::new();
    let early = worker_on(&registry);
    assert_eq!(fail_until_marked(&early, US), 10);
    let late = worker_on(&registry);
    let outcome = send(&late.worker(0), prefer(US), &Regions::with_down(&[US]));
    assert_eq!(outcome.response.status(), 200);
    assert_ne!(routed_to(&outcome), "us");
    assert_eq!(late.gauge(&region_stat(US, "state")), Some(2));
}

#[test]
fn split_traffic_of_a_failed_region_fails_over_and_other_sessions_stay() {
    let host = host_with(config(), 2);
    let sessions: Vec<String> = (0..60).map(|i| format!("user-{i}")).collect();
    let request = |s: &str| Request::get("/").header("x-session-id", s);
    let before: Vec<String> = sessions
        .iter()
        .map(|s| routed_to(&send(&host.worker(0), request(s), &Regions::up())))
        .collect();
    fail_until_marked(&host, AP);
    let down = Regions::with_down(&[AP]);
    for (session, was) in sessions.iter().zip(&before) {
        let out = send(&host.worker(1), request(session), &down);
        assert_eq!(out.response.status(), 200, "{session}");
        if was == "ap" {
            // To the nearest healthy region (eu-west-1, 2 ms), not spread by weight.
            assert_eq!(routed_to(&out), "eu", "{session}");
            assert!(decision(&out).ends_with("reason=failover"), "{session}");
        } else {
            assert_eq!(&routed_to(&out), was, "{session} moved");
        }
    }
}

#[test]
fn after_the_cool_down_probes_succeed_and_the_region_is_restored() {
    let host = host_with(config(), 2);
    fail_until_marked(&host, US);
    // Cooling down: no request goes there, even asked for.
    host.advance(Duration::from_millis(4900));
    let out = send(&host.worker(0), prefer(US), &Regions::up());
    assert_ne!(routed_to(&out), "us");
    assert_eq!(host.gauge(&region_stat(US, "state")), Some(2));

    // Probing: the region is back; half of the sessions probe it.
    host.advance(Duration::from_millis(1100));
    assert_eq!(
        host.gauge(&region_stat(US, "state")),
        Some(1),
        "gauge after a tick"
    );
    let mut probes = 0;
    let mut others = 0;
    for i in 0..40 {
        let request = prefer(US).header("x-session-id", &format!("s{i}"));
        let out = send(&host.worker(i % 2), request, &Regions::up());
        match decision(&out) {
            "region=us-east-1; reason=probe" => probes += 1,
            "region=us-east-1; reason=preference" => break,
            _ => others += 1,
        }
    }
    assert_eq!(probes, 3, "3 good probes restore it");
    assert!(
        others > 0,
        "sessions outside the probe share stay away while probing"
    );
    assert_eq!(host.counter(&region_stat(US, "restored")), Some(1));
    assert_eq!(host.gauge(&region_stat(US, "state")), Some(0));
    let out = send(&host.worker(1), prefer(US), &Regions::up());
    assert_eq!(decision(&out), "region=us-east-1; reason=preference");
}

#[test]
fn a_failed_probe_starts_another_cool_down() {
    let host = host_with(config(), 2);
    fail_until_marked(&host, US);
    host.advance(Duration::from_secs(6));
    let down = Regions::with_down(&[US]);
    let probe = (0..)
        .map(|i| prefer(US).header("x-session-id", &format!("p{i}")))
        .map(|request| send(&host.worker(0), request, &down))
        .find(|out| decision(out) == "region=us-east-1; reason=probe")
        .unwrap();
    assert_eq!(probe.response.status(), 503);
    assert_eq!(host.counter(&region_stat(US, "failovers")), Some(2));
    assert_eq!(host.gauge(&region_stat(US, "state")), Some(2));
    for i in 0..20 {
        let request = prefer(US).header("x-session-id", &format!("p{i}"));
        assert_ne!(routed_to(&send(&host.worker(1), request, &down)), "us");
    }
}

#[test]
fn a_failure_in_flight_when_the_region_was_marked_does_not_cut_its_probing_short() {
    let host = host_with(config(), 2);
    // A slow request goes to us-east-1 and is still in flight...
    let slow = host.worker(1).start(prefer(US));
    // ...when the region is marked, it cools down and starts probing.
    fail_until_marked(&host, US);
    host.advance(Duration::from_secs(6));
    // The slow request fails now: it was decided before the region was marked.
    slow.respond(Regions::with_down(&[US]).answer(Some("us")));
    slow.finish();
    assert_eq!(host.counter(&region_stat(US, "failovers")), Some(1));
    assert_eq!(host.gauge(&region_stat(US, "state")), Some(1));
}

#[test]
fn replies_made_on_the_proxy_are_not_failures_of_the_region() {
    let host = host();
    for _ in 0..30 {
        let out = host.send(
            prefer(US),
            Upstream::local_reply(429, "slow down", "meshward_too_many_requests", 0),
        );
        assert_eq!(out.response.status(), 429);
    }
    let out = send(&host.worker(0), prefer(US), &Regions::up());
    assert_eq!(decision(&out), "region=us-east-1; reason=preference");
    assert_eq!(host.counter(&region_stat(US, "failures")), Some(0));
}

#[test]
fn upstream_5xx_and_timeouts_count_as_failures() {
    let host = host();
    for i in 0..10 {
        let upstream = if i % 2 == 0 {
            Upstream::reply(Response::new(500))
        } else {
            Upstream::timeout()
        };
        host.send(prefer(US), upstream);
    }
    assert_eq!(host.counter(&region_stat(US, "failures")), Some(10));
    assert_eq!(host.gauge(&region_stat(US, "state")), Some(2));
}

#[test]
fn when_every_region_is_down_requests_still_go_where_the_policy_says() {
    let host = host();
    for region in [EU, US, AP] {
        fail_until_marked(&host, region);
    }
    let out = send(
        &host.worker(0),
        prefer(AP),
        &Regions::with_down(&[EU, US, AP]),
    );
    assert_eq!(decision(&out), "region=ap-south-1; reason=all_unhealthy");
    assert_eq!(out.response.status(), 503);
}

#[test]
fn a_garbled_health_record_counts_as_healthy_and_is_rewritten() {
    let host = host();
    host.set_shared_data("meshward.region_router.v1.us-east-1.us", b"\x07garbage");
    let out = send(&host.worker(0), prefer(US), &Regions::up());
    assert_eq!(decision(&out), "region=us-east-1; reason=preference");
    let (bytes, _) = host
        .shared_data("meshward.region_router.v1.us-east-1.us")
        .unwrap();
    assert_eq!(bytes.first(), Some(&1), "rewritten in the current format");
    assert!(host.vm_alive(0));
}

// Refused configurations.

#[test]
fn refuses_configurations_it_cannot_honour_naming_the_field() {
    let with = |field: &str, value: Value| {
        let mut c = config();
        c[field] = value;
        c
    };
    let mut duplicate = config();
    duplicate["regions"][2]["name"] = json!(EU);
    let cases = [
        (
            with("split", json!({"weights": {EU: 60, US: 30, AP: 20}})),
            "split.weights: weights add up to 110, expected 100",
        ),
        (
            with("local_region", json!("mars-1")),
            "local_region: \"mars-1\" is not one of the regions",
        ),
        (
            duplicate,
            "regions[2].name: \"eu-west-1\" is already regions[0]",
        ),
        (
            with("regoins", json!([])),
            "regoins: unknown field `regoins`",
        ),
        (
            with("health", json!({"min_requests": 0})),
            "health.min_requests: expected 1 to 64, got 0",
        ),
    ];
    for (config, expected) in cases {
        let logs = refusal(&config);
        assert!(logs.contains(expected), "expected {expected:?} in:\n{logs}");
    }
}

#[test]
fn refuses_a_node_locality_that_is_not_a_configured_region() {
    let mut without = config();
    without.as_object_mut().unwrap().remove("local_region");
    let builder =
        Host::builder(wasm_path("region-router")).property("xds.node.locality.region", "mars-1");
    let logs = refusal_with(builder, &without);
    assert!(
        logs.contains("local_region: not set, and the proxy's locality region \"mars-1\""),
        "{logs}"
    );
    let logs = refusal(&without);
    assert!(
        logs.contains("local_region: not set, and the proxy's node has no locality region"),
        "{logs}"
    );
}

// The Istio example.

/// The documents of `k8s/base/region-router.yaml`, by kind.
fn istio_example() -> Vec<Value> {
    let path = meshward_tests::repo_root().join("k8s/base/region-router.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    text.split("\n---\n")
        .map(|document| serde_yaml_ng::from_str(document).unwrap())
        .collect()
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn the_istio_example_is_accepted_and_its_routes_cover_every_region() {
    let documents = istio_example();
    let plugin = of_kind(&documents, "WasmPlugin")[0];
    let config = plugin["spec"]["pluginConfig"].clone();
    // The gateway's node locality names the local region.
    let host = Host::builder(wasm_path("region-router"))
        .config_json(&config.to_string())
        .property("xds.node.locality.region", EU)
        .build()
        .unwrap();
    let out = host.send(
        prefer(US).header("cookie", "session=abc"),
        Upstream::reply(Response::new(200)),
    );
    let routed = out.upstream_request.unwrap();
    assert_eq!(routed.header_value("x-meshward-region"), Some(US));

    // Every region has a VirtualService route on its name, to the host its cluster names.
    let service = of_kind(&documents, "VirtualService")[0];
    let routes = service["spec"]["http"].as_array().unwrap();
    for region in config["regions"].as_array().unwrap() {
        let name = region["name"].as_str().unwrap();
        let cluster = region["cluster"].as_str().unwrap();
        let route = routes
            .iter()
            .find(|r| r["match"][0]["headers"]["x-meshward-region"]["exact"] == name)
            .unwrap_or_else(|| panic!("no route for {name}"));
        let host = route["route"][0]["destination"]["host"].as_str().unwrap();
        assert!(
            cluster.ends_with(&format!("||{host}")),
            "{name}: {cluster} vs {host}"
        );
        for kind in ["ServiceEntry", "DestinationRule"] {
            assert!(
                of_kind(&documents, kind)
                    .iter()
                    .any(|d| { d["spec"]["host"] == host || d["spec"]["hosts"][0] == host }),
                "no {kind} for {host}"
            );
        }
    }
}
