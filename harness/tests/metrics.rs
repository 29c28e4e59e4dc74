//! Metrics: Envoy's rules for ids and kinds, one store across workers, read by name.

mod common;

use common::{ok_upstream, probe, probe_request};
use meshward_harness::{MetricKind, MetricValue};

#[test]
fn counters_add_up_across_workers() {
    let host = probe().workers(2).build().unwrap();
    host.worker(0)
        .send(probe_request("count:requests_total"), ok_upstream());
    host.worker(1)
        .send(probe_request("count:requests_total"), ok_upstream());
    assert_eq!(host.counter("requests_total"), Some(2));
    assert_eq!(host.counter("wasmcustom.requests_total"), Some(2));
    assert_eq!(host.counter("never_defined"), None);
}

#[test]
fn gauges_go_up_and_down_and_histograms_keep_samples() {
    let host = probe().build().unwrap();
    host.send(
        probe_request("gauge:inflight=5,histogram:latency_ms=12"),
        ok_upstream(),
    );
    host.send(
        probe_request("gauge:inflight=-2,histogram:latency_ms=30"),
        ok_upstream(),
    );
    assert_eq!(host.gauge("inflight"), Some(3));
    assert_eq!(host.histogram("latency_ms"), Some(vec![12, 30]));
    assert!(host.metrics().contains(&(
        MetricKind::Gauge,
        "inflight".to_string(),
        MetricValue::Gauge(3)
    )));
}

#[test]
fn the_host_enforces_envoys_metric_rules() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("metric-rules"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-metric-rules"),
        // Envoy gives each definition a new id, even for the same name.
        Some("same_id=false,zero=2,negative=2,histogram_get=2,unknown_record=1,bad_kind=2")
    );
}
