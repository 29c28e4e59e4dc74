//! The region-router filter in a real Envoy, with `envoy-config/region-router.yaml`: three
//! local servers stand in for eu-west-1 (local), us-east-1 and ap-south-1. Preferences and
//! latency-sensitive requests reach the right server, a client's own routing header is
//! ignored, the split follows the weights, and when a region's server stops mid-load its
//! traffic moves away after a bounded number of failures and comes back once it returns.
//! Needs `make build` (out/region-router.wasm) and Envoy (`make setup`).

use std::collections::BTreeMap;
use std::time::Duration;

use meshward_tests::config::UPSTREAM_PORT;
use meshward_tests::load::{Failover, Load, Sample};
use meshward_tests::{Envoy, EnvoyConfig, Reply, Request, Upstream};

const CONFIG: &str = "region-router.yaml";
const DECISION: &str = "x-meshward-region-decision";
/// The config's `health.min_requests`.
const MIN_REQUESTS: usize = 20;

/// The three regions' servers, each naming itself in `x-served-by`.
struct Regions {
    eu: Upstream,
    us: Upstream,
    ap: Upstream,
}

impl Regions {
    async fn start() -> Regions {
        let named = |name: &str| Reply::ok().with_header("x-served-by", name);
        let eu = Upstream::start().await.unwrap();
        eu.reply_with(named("eu"));
        let us = Upstream::start().await.unwrap();
        us.reply_with(named("us"));
        let ap = Upstream::start().await.unwrap();
        ap.reply_with(named("ap"));
        Regions { eu, us, ap }
    }

    /// Envoy with the config, its three clusters pointed at the servers.
    async fn envoy(&self) -> Envoy {
        let config = EnvoyConfig::load(CONFIG)
            .unwrap()
            .upstream(UPSTREAM_PORT, self.eu.port())
            .upstream(UPSTREAM_PORT + 1, self.us.port())
            .upstream(UPSTREAM_PORT + 2, self.ap.port());
        Envoy::start(config).await.unwrap()
    }
}

fn served_by(response: &meshward_tests::Response) -> &str {
    response.header("x-served-by").unwrap_or("nobody")
}

#[tokio::test]
async fn preferences_and_latency_sensitive_requests_reach_the_right_region() {
    let regions = Regions::start().await;
    let envoy = regions.envoy().await;

    let asked = envoy
        .send(Request::get("/").with_header("x-region-preference", "us-east-1"))
        .await
        .unwrap();
    assert_eq!(asked.status, 200);
    assert_eq!(served_by(&asked), "us");
    assert_eq!(
        asked.header(DECISION),
        Some("region=us-east-1; reason=preference")
    );

    let fallback = envoy
        .send(Request::get("/").with_header("x-region-preference", "mars-1, ap-south-1"))
        .await
        .unwrap();
    assert_eq!(served_by(&fallback), "ap");

    let urgent = envoy
        .send(
            Request::get("/")
                .with_header("x-region-preference", "ap-south-1")
                .with_header("x-latency-sensitive", "true"),
        )
        .await
        .unwrap();
    assert_eq!(served_by(&urgent), "eu");
    assert_eq!(
        urgent.header(DECISION),
        Some("region=eu-west-1; reason=latency")
    );

    envoy
        .wait_for_stat(
            "meshward_region_router_decisions",
            &[("region", "us-east-1"), ("reason", "preference")],
            1.0,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_routing_header_sent_by_the_client_is_ignored() {
    let regions = Regions::start().await;
    let envoy = regions.envoy().await;
    let spoofed = envoy
        .send(
            Request::get("/")
                .with_header("x-region-preference", "us-east-1")
                .with_header("x-meshward-cluster", "region-ap-south-1"),
        )
        .await
        .unwrap();
    assert_eq!(served_by(&spoofed), "us");
    let seen = regions.us.received();
    assert_eq!(
        seen.last().unwrap().header_all("x-meshward-cluster"),
        vec!["region-us-east-1"]
    );
    assert!(regions.ap.received().is_empty());
    envoy
        .wait_for_stat("meshward_region_router_route_header_stripped", &[], 1.0)
        .await
        .unwrap();
}

#[tokio::test]
async fn sessions_stick_and_the_split_is_close_to_the_weights() {
    let regions = Regions::start().await;
    let envoy = regions.envoy().await;
    let n = 400u32;
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let session = format!("user-{i}");
        let request = || Request::get("/").with_header("x-session-id", &session);
        let first = envoy.send(request()).await.unwrap();
        let again = envoy.send(request()).await.unwrap();
        assert_eq!(served_by(&first), served_by(&again), "{session} moved");
        *counts.entry(served_by(&first).to_owned()).or_insert(0u32) += 1;
    }
    // 70 / 15 / 15, within 5 standard deviations of a binomial share.
    for (region, p) in [("eu", 0.70), ("us", 0.15), ("ap", 0.15)] {
        let share = f64::from(counts.get(region).copied().unwrap_or(0)) / f64::from(n);
        let sd = (p * (1.0 - p) / f64::from(n)).sqrt();
        assert!(
            (share - p).abs() < 5.0 * sd,
            "{region}: {share:.3} of sessions, expected {p} ({counts:?})"
        );
    }
}

/// A request of the load: a new session each, so the split spreads them by the weights.
fn load_request(n: u64) -> Request {
    Request::get("/").with_header("x-session-id", &format!("load-{n}"))
}

/// Served by eu-west-1 as its share of the split: traffic is back.
fn back_in_eu(sample: &Sample) -> bool {
    sample.label.as_deref() == Some("region=eu-west-1; reason=split")
}

#[tokio::test]
async fn when_a_region_stops_mid_load_traffic_moves_away_and_comes_back() {
    let mut regions = Regions::start().await;
    let envoy = regions.envoy().await;
    let clients = 6;
    let load = Load::start(envoy.addr(), clients, DECISION, load_request);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped_at = load.elapsed();
    regions.eu.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted_at = load.elapsed();
    regions.eu.restart().await.unwrap();
    // Probing starts 5 s (the cool-down) after the region was marked; 5 good probes
    // restore it.
    envoy
        .wait_for_stat(
            "meshward_region_router_restored",
            &[("region", "eu-west-1")],
            1.0,
        )
        .await
        .unwrap_or_else(|e| panic!("eu-west-1 was not restored: {e}"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let samples = load.stop().await;

    let drill = Failover::measure(&samples, stopped_at, restarted_at, back_in_eu);
    eprintln!(
        "failover drill: {} requests, {} failed ({} in flight at the stop), \
         traffic moved {:?} after the stop, back {:?} after the restart",
        drill.requests,
        drill.failed,
        drill.in_flight_at_stop,
        drill.time_to_failover,
        drill.time_to_recover
    );
    assert!(drill.failed > 0, "eu-west-1 never failed: was it stopped?");
    assert!(
        drill.failed <= MIN_REQUESTS + clients,
        "{} requests failed; at most min_requests ({MIN_REQUESTS}) plus those in flight \
         ({clients} clients) should",
        drill.failed
    );
    assert_eq!(drill.failed_outside, 0, "failures outside the outage");
    // Between the failover and the restart every request succeeded elsewhere.
    let moved_at = stopped_at + drill.time_to_failover;
    assert!(samples
        .iter()
        .filter(|s| s.started > moved_at && s.finished < restarted_at)
        .all(|s| s.succeeded() && !s.label.as_deref().unwrap_or("").contains("eu-west-1")));
    // The region came back: it serves its share of the split again.
    assert!(
        drill.time_to_recover.is_some(),
        "eu-west-1 took no split traffic after it was restored"
    );

    let stats = envoy.stats().await.unwrap();
    let eu = [("region", "eu-west-1")];
    assert_eq!(
        stats.get("meshward_region_router_failovers", &eu),
        Some(1.0)
    );
    assert_eq!(stats.get("meshward_region_router_restored", &eu), Some(1.0));
    assert_eq!(stats.get("meshward_region_router_state", &eu), Some(0.0));
    assert!(
        stats
            .get(
                "meshward_region_router_decisions",
                &[("region", "us-east-1"), ("reason", "failover")]
            )
            .unwrap_or(0.0)
            > 0.0
    );
    // Failover goes to the nearest healthy region (us-east-1, 80 ms), never ap-south-1.
    assert_eq!(
        stats
            .get(
                "meshward_region_router_decisions",
                &[("region", "ap-south-1"), ("reason", "failover")]
            )
            .unwrap_or(0.0),
        0.0
    );
}

#[tokio::test]
async fn the_default_config_routes_by_region_under_regions_only() {
    // In meshward.yaml every region is the one server on port 8080.
    let server = Upstream::start().await.unwrap();
    let config = EnvoyConfig::load("meshward.yaml")
        .unwrap()
        .upstream(UPSTREAM_PORT, server.port());
    let envoy = Envoy::start(config).await.unwrap();
    let prefer_us = |path: &str| Request::get(path).with_header("x-region-preference", "us-east-1");

    let routed = envoy.send(prefer_us("/regions/orders")).await.unwrap();
    assert_eq!(routed.status, 200);
    assert_eq!(
        routed.header(DECISION),
        Some("region=us-east-1; reason=preference")
    );
    let other = envoy.send(prefer_us("/orders")).await.unwrap();
    assert_eq!(other.status, 200);
    assert_eq!(other.header(DECISION), None);

    let received = server.received();
    assert_eq!(
        received[0].header("x-meshward-cluster"),
        Some("region-us-east-1")
    );
    assert_eq!(received[1].header("x-meshward-cluster"), None);
}
