//! The virtual clock: time only moves when the test advances it, and ticks fire on each
//! worker whose period elapsed.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::{ok_upstream, probe, probe_request};
use meshward_harness::LogLevel;

#[test]
fn ticks_fire_once_per_elapsed_period_on_every_worker() {
    let host = probe().workers(2).config("tick_ms=100").build().unwrap();
    assert_eq!(
        host.worker(1).tick_period(),
        Some(Duration::from_millis(100))
    );
    host.advance(Duration::from_millis(99));
    assert_eq!(host.counter("probe_ticks").unwrap_or(0), 0);
    host.advance(Duration::from_millis(1));
    assert_eq!(host.counter("probe_ticks"), Some(2));
    host.advance(Duration::from_millis(250));
    assert_eq!(host.counter("probe_ticks"), Some(6));
}

#[test]
fn each_tick_sees_its_own_time() {
    let host = probe().config("tick_ms=1000").build().unwrap();
    let start = host.now();
    host.advance(Duration::from_secs(2));
    let start_ns = start.duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let expected: Vec<String> = [1, 2]
        .iter()
        .map(|s| format!("tick at {}", start_ns + s * 1_000_000_000))
        .collect();
    let ticks: Vec<String> = host
        .log_messages(LogLevel::Info)
        .into_iter()
        .filter(|m| m.starts_with("tick"))
        .collect();
    assert_eq!(ticks, expected);
}

#[test]
fn the_filter_reads_virtual_time_from_the_abi_and_from_wasi() {
    let host = probe().build().unwrap();
    host.advance(Duration::from_millis(1500));
    let now = host.now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let out = host.send(probe_request("time"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-time"),
        Some(format!("{now},{now}").as_str())
    );
}

#[test]
fn no_tick_fires_without_a_period() {
    let host = probe().build().unwrap();
    host.advance(Duration::from_secs(60));
    assert_eq!(host.counter("probe_ticks"), None);
}
