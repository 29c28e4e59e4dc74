//! Shared data: one store per VM id, shared by every worker and by hosts given the same
//! registry, with Envoy's CAS rules.

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

#[test]
fn hosts_with_the_same_vm_id_share_a_registry_and_other_vm_ids_do_not() {
    let registry = meshward_harness::SharedData::new();
    let build = |vm_id: &str| probe().vm_id(vm_id).shared_data(&registry).build().unwrap();
    let (a, b, other) = (build("shared"), build("shared"), build("other"));
    let incr = |host: &meshward_harness::Host| {
        host.send(probe_request("shared-incr:n"), ok_upstream())
            .upstream_request
            .unwrap()
            .header_value("x-shared-value")
            .map(str::to_string)
    };
    assert_eq!(incr(&a).as_deref(), Some("1"));
    assert_eq!(incr(&b).as_deref(), Some("2"));
    assert_eq!(incr(&other).as_deref(), Some("1"));
    assert_eq!(registry.get("shared", "n").unwrap().0, b"2".to_vec());
    assert_eq!(registry.get("other", "n").unwrap().0, b"1".to_vec());
    assert_eq!(registry.get("", "n"), None);
}

#[test]
fn hosts_built_without_a_registry_share_nothing_even_with_the_same_vm_id() {
    let a = probe().vm_id("same").build().unwrap();
    let b = probe().vm_id("same").build().unwrap();
    a.set_shared_data("k", "v");
    assert_eq!(b.shared_data("k"), None);
}
