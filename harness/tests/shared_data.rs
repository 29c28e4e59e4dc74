//! Shared data: one store per VM id, shared by every worker, with Envoy's CAS rules.

mod common;

use common::{ok_upstream, probe, probe_request};

#[test]
fn workers_share_one_store() {
    let host = probe().workers(2).build().unwrap();
    let value = |worker: usize| {
        let out = host
            .worker(worker)
            .send(probe_request("shared-incr:hits"), ok_upstream());
        out.upstream_request
            .unwrap()
            .header_value("x-shared-value")
            .map(str::to_string)
    };
    assert_eq!(value(0).as_deref(), Some("1"));
    assert_eq!(value(1).as_deref(), Some("2"));
    assert_eq!(value(0).as_deref(), Some("3"));
    assert_eq!(host.shared_data("hits").unwrap().0, b"3".to_vec());
}

#[test]
fn a_stale_cas_is_refused_with_cas_mismatch() {
    let host = probe().build().unwrap();
    host.set_shared_data("k", "v");
    let out = host.send(probe_request("shared-stale:k"), ok_upstream());
    assert_eq!(
        out.upstream_request
            .unwrap()
            .header_value("x-shared-status"),
        Some("8")
    );
    assert_eq!(host.shared_data("k").unwrap().0, b"v".to_vec());
}

#[test]
fn a_missing_key_is_set_whatever_the_cas() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("shared-stale:fresh"), ok_upstream());
    assert_eq!(
        out.upstream_request
            .unwrap()
            .header_value("x-shared-status"),
        Some("0")
    );
    let (value, cas) = host.shared_data("fresh").unwrap();
    assert_eq!(value, b"stale".to_vec());
    assert_ne!(cas, 0);
}
