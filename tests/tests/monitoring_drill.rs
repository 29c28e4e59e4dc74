//! The alerts and the dashboard against the real thing: a real Prometheus (Debian's, on a
//! free loopback port, scraping every second and evaluating every second) scrapes a real
//! Envoy running every meshward filter (`envoy-config/meshward.yaml`, with its stats tags).
//! The drill fails a region, fails the upstream behind a circuit breaker, points a global
//! rate-limit rule at a Rate Limit Service that refuses connections and a jwt-auth provider
//! at an identity provider that does too, and sends requests without tokens; Prometheus'
//! API then shows the matching alerts firing (the rules as shipped, `for:` cut to 1 s),
//! and every query of every dashboard panel returns series. Needs `make setup` (Debian's
//! `prometheus`) and `make build`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use meshward_tests::monitoring::{dashboard, dashboard_queries, rules_with_for};
use meshward_tests::prometheus::Prometheus;
use meshward_tests::{Envoy, EnvoyConfig, Reply, Request, Upstream};
use serde_json::{json, Value};

/// `envoy-config/meshward.yaml`'s port for every cluster: here the healthy regions.
const REGIONS: u16 = 8080;
/// The `upstream` cluster moved here, to a server that answers 500.
const FAILING: u16 = 8090;
/// The eu-west-1 region moved here: nothing listens, so it fails and fails over.
const DEAD_REGION: u16 = 8091;
/// The Rate Limit Service of the global rule: nothing listens.
const DEAD_RLS: u16 = 8092;
/// The identity provider of a second jwt-auth provider: nothing listens.
const DEAD_IDP: u16 = 8093;

/// How long the drill may take to see every alert it causes fire.
const ALERTS_WITHIN: Duration = Duration::from_secs(90);

/// The alerts the drill causes, and the label each must carry.
const CAUSED: [(&str, &str, &str); 6] = [
    ("MeshwardRegionUnhealthy", "region", "eu-west-1"),
    ("MeshwardCircuitBreakerOpen", "cluster", "upstream"),
    ("MeshwardRateLimitServiceErrors", "rule", "quota"),
    ("MeshwardJwksFetchFailing", "job", "envoy"),
    ("MeshwardJwksStale", "job", "envoy"),
    ("MeshwardJwtDenialsSpike", "reason", "missing"),
];

/// Alerts nothing in the drill should fire: a dead Rate Limit Service is not a local
/// bucket failure, so neither failed_open nor failed_closed counts it.
const QUIET: [&str; 8] = [
    "MeshwardAllRegionsUnhealthy",
    "MeshwardRateLimitFailingOpen",
    "MeshwardRateLimitFailingClosed",
    "MeshwardSharedStateErrors",
    "MeshwardWasmVmReloaded",
    "MeshwardWasmVmReloadFailing",
    "MeshwardWasmModuleFetchFailing",
    "MeshwardFilterConfigRejected",
];

fn port_of(cluster: &mut Value) -> &mut Value {
    &mut cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"]["port_value"]
}

/// The Wasm config of the filter named `name` in the listener's chain.
fn filter_config<'a>(config: &'a mut Value, name: &str) -> &'a mut Value {
    let filters = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_array_mut()
        .unwrap();
    let filter = filters
        .iter_mut()
        .find(|f| f["typed_config"]["config"]["name"] == name)
        .unwrap_or_else(|| panic!("meshward.yaml has no {name}"));
    &mut filter["typed_config"]["config"]["configuration"]["value"]
}

/// `meshward.yaml` with the failures the drill needs.
fn drill_config(regions: &Upstream, failing: &Upstream) -> EnvoyConfig {
    let mut config = EnvoyConfig::load("meshward.yaml")
        .unwrap()
        .upstream(REGIONS, regions.port())
        .upstream(FAILING, failing.port());
    let value = config.value_mut();
    let clusters = value["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap();
    for cluster in clusters.iter_mut() {
        match cluster["name"].as_str() {
            Some("upstream") => *port_of(cluster) = json!(FAILING),
            Some("region-eu-west-1") => *port_of(cluster) = json!(DEAD_REGION),
            _ => {}
        }
    }
    clusters.push(json!({
        "name": "idp",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "idp",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": DEAD_IDP},
            }}}]}],
        },
    }));
    clusters.push(json!({
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
                "socket_address": {"address": "127.0.0.1", "port_value": DEAD_RLS},
            }}}]}],
        },
    }));

    // The per-client limit well above the drill's traffic, and a global rule under
    // /quota/ whose service is down: failure_mode allow lets its requests through.
    *filter_config(value, "rate-limit") = json!(json!({"rules": [
        {"name": "per_client", "key": ["client_address"],
         "limit": {"capacity": 1000, "refill": 500, "per": "1s"}},
        {"name": "quota", "match": {"path": {"prefix": "/quota/"}},
         "key": [{"header": "x-user"}],
         "global": {"cluster": "rate_limit_service", "domain": "meshward", "failure_mode": "allow"}},
    ]})
    .to_string());
    // A second identity provider whose keys are fetched from a dead cluster, retried every
    // second: the fetches fail and no key set ever arrives.
    let jwt_auth = filter_config(value, "jwt-auth");
    let mut jwt_config: Value = serde_json::from_str(jwt_auth.as_str().unwrap()).unwrap();
    jwt_config["providers"].as_array_mut().unwrap().push(json!({
        "name": "idp",
        "issuer": "https://idp.meshward.test",
        "audiences": ["api.meshward.test"],
        "remote_jwks": {"cluster": "idp", "uri": "http://idp.meshward.test/jwks.json",
                        "timeout": "1s", "retry_interval": "1s"},
    }));
    *jwt_auth = json!(jwt_config.to_string());
    // A failed region stays unhealthy for 30 s before probing, longer than the drill
    // needs to see its alert.
    let region_router = filter_config(value, "region-router");
    let mut regions_config: Value = serde_json::from_str(region_router.as_str().unwrap()).unwrap();
    regions_config["health"] = json!({"cool_down": "30s"});
    *region_router = json!(regions_config.to_string());
    config
}

/// The filters a config runs: the names of its Wasm filters' plugins.
fn running_filters(config: &EnvoyConfig) -> BTreeSet<String> {
    config.value()["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["typed_config"]["config"]["name"].as_str())
        .map(str::to_owned)
        .collect()
}

/// The folders of `filters/` that `running` lacks. Only a filter that is not in the chain
/// meshward.yaml runs may be missing from it: the chain (which bundles them) or one
/// `make new-filter` made.
fn not_run_filters(running: &BTreeSet<String>) -> BTreeSet<String> {
    std::fs::read_dir(meshward_tests::repo_root().join("filters"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !running.contains(name))
        .collect()
}

#[test]
fn the_drill_runs_every_shipped_filter() {
    let running = running_filters(&EnvoyConfig::load("meshward.yaml").unwrap());
    for shipped in [
        "security-headers",
        "jwt-auth",
        "rate-limit",
        "circuit-metrics",
        "region-router",
    ] {
        assert!(
            running.contains(shipped),
            "meshward.yaml does not run {shipped}: {running:?}"
        );
    }
}

/// One round of traffic: region requests over many sessions, requests to the failing
/// upstream, requests under the global rule, and requests without the token jwt-auth
/// requires.
async fn round(envoy: &Envoy, round: usize) {
    let mut requests = Vec::new();
    for session in 0..8 {
        requests.push(
            Request::get("/regions/items")
                .with_header("x-session-id", &format!("s{round}-{session}")),
        );
    }
    for _ in 0..4 {
        requests.push(Request::get("/"));
    }
    for _ in 0..2 {
        requests.push(Request::get("/quota/items").with_header("x-user", "dan"));
    }
    // A quarter of the requests without the token jwt-auth wants: denials spike.
    for _ in 0..5 {
        requests.push(Request::get("/jwt/items"));
    }
    for request in requests {
        envoy.send(request).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_fires_the_alert_of_each_failure_the_drill_causes() {
    let regions = Upstream::start().await.unwrap();
    let failing = Upstream::start().await.unwrap();
    failing.reply_with(Reply::status(500));
    let envoy = Envoy::start(drill_config(&regions, &failing))
        .await
        .unwrap();
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_with_for(rules_dir.path(), "1s").unwrap();
    let prometheus = Prometheus::start(&[envoy.admin_addr()], &[rules])
        .await
        .unwrap();

    // Traffic until every caused alert has fired at least once (a region probes again
    // after its cool-down, so they need not all fire at the same moment).
    let started = Instant::now();
    let mut fired: BTreeSet<String> = BTreeSet::new();
    let mut seen_alerts: Vec<Value> = Vec::new();
    let mut rounds = 0;
    while started.elapsed() < ALERTS_WITHIN {
        round(&envoy, rounds).await;
        rounds += 1;
        for alert in prometheus.alerts().await.unwrap() {
            if alert["state"] == "firing" {
                fired.insert(alert["labels"]["alertname"].as_str().unwrap().to_owned());
                seen_alerts.push(alert);
            }
        }
        if CAUSED.iter().all(|(name, _, _)| fired.contains(*name)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        prometheus.targets_up().await.unwrap(),
        "Prometheus could not scrape Envoy:\n{}",
        prometheus.log()
    );
    for (name, label, value) in CAUSED {
        assert!(
            seen_alerts
                .iter()
                .any(|a| a["labels"]["alertname"] == name && a["labels"][label] == value),
            "{name} with {label}={value} did not fire within {ALERTS_WITHIN:?} ({rounds} rounds); \
             fired: {fired:?}\nPrometheus:\n{}",
            prometheus.log()
        );
    }
    let quiet_fired: Vec<&str> = QUIET
        .into_iter()
        .filter(|name| fired.contains(*name))
        .collect();
    assert!(
        quiet_fired.is_empty(),
        "fired without cause: {quiet_fired:?}"
    );

    // Every panel of the dashboard has something to show after the drill, but those of a
    // filter meshward.yaml does not run (one `make new-filter` just made).
    let running = running_filters(&EnvoyConfig::load("meshward.yaml").unwrap());
    let not_run = not_run_filters(&running);
    let mut empty = Vec::new();
    for query in dashboard_queries(&dashboard().unwrap()) {
        if not_run.contains(&query.row) {
            continue;
        }
        let series = prometheus.query(&query.expr).await.unwrap();
        if series.is_empty() {
            empty.push(format!("{}: {}", query.panel, query.expr));
        }
    }
    assert!(
        empty.is_empty(),
        "panels with no series:\n{}",
        empty.join("\n")
    );
}
