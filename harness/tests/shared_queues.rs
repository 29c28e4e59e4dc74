//! Shared queues as Envoy keeps them: keyed by VM id and name, a token per queue, and
//! `proxy_on_queue_ready` on the root context that registered it after each enqueue.

mod common;

use common::{ok_upstream, probe, probe_request};
use meshward_harness::{LogLevel, SharedData};

fn reported(out: &meshward_harness::Outcome, name: &str) -> Option<String> {
    out.upstream_request
        .as_ref()
        .and_then(|r| r.header_value(name))
        .map(str::to_string)
}

#[test]
fn an_enqueue_wakes_the_registering_root_context_which_dequeues_in_order() {
    let host = probe()
        .vm_id("q-vm")
        .config("queue=jobs;queue_drain")
        .build()
        .unwrap();
    let out = host.send(
        probe_request("queue-enqueue:jobs=one,queue-enqueue:jobs=two"),
        ok_upstream(),
    );
    assert_eq!(reported(&out, "x-queue-enqueue").as_deref(), Some("0"));
    let infos = host.log_messages(LogLevel::Info);
    assert!(
        infos.iter().any(|m| m.ends_with(": one,two")),
        "the first wake-up drains both items: {infos:?}"
    );
    assert!(infos.iter().any(|m| m.starts_with("queue ready 1")));
    assert_eq!(host.counter("probe_queue_ready"), Some(2));
}

#[test]
fn a_stream_registers_for_its_root_and_dequeues_until_empty() {
    let host = probe().build().unwrap();
    let out = host.send(
        probe_request(
            "queue-register:q,queue-enqueue:q=a,queue-dequeue:q,queue-dequeue:q,queue-resolve:=q",
        ),
        ok_upstream(),
    );
    let upstream = out.upstream_request.unwrap();
    assert_eq!(upstream.header_value("x-queue-token"), Some("ok:1"));
    // Ok, then Empty (7).
    assert_eq!(
        upstream.headers().get_all("x-queue-dequeue"),
        vec!["ok:a", "err:7"]
    );
    assert_eq!(upstream.header_value("x-queue-resolve"), Some("ok:1"));
    assert_eq!(host.counter("probe_queue_ready"), Some(1));
}

#[test]
fn unknown_queues_and_tokens_are_not_found() {
    let host = probe().build().unwrap();
    let out = host.send(
        probe_request(
            "queue-resolve:=nope,queue-enqueue:nope=x,queue-token-enqueue:99,queue-token-dequeue:99",
        ),
        ok_upstream(),
    );
    let upstream = out.upstream_request.unwrap();
    assert_eq!(upstream.header_value("x-queue-resolve"), Some("err:1"));
    assert_eq!(
        upstream.headers().get_all("x-queue-enqueue"),
        vec!["1", "1"]
    );
    assert_eq!(upstream.header_value("x-queue-dequeue"), Some("err:1"));
}

#[test]
fn a_queue_is_found_by_vm_id_across_hosts_and_wakes_the_host_that_registered_it() {
    let registry = SharedData::new();
    let consumer = probe()
        .vm_id("consumer")
        .config("queue=events;queue_drain")
        .shared_data(&registry)
        .build()
        .unwrap();
    let producer = probe()
        .vm_id("producer")
        .shared_data(&registry)
        .build()
        .unwrap();
    let out = producer.send(
        probe_request("queue-resolve:consumer=events,queue-resolve:=events"),
        ok_upstream(),
    );
    let resolved = out.upstream_request.unwrap();
    let resolved = resolved.headers().get_all("x-queue-resolve");
    assert!(resolved[0].starts_with("ok:"), "{resolved:?}");
    assert_eq!(
        resolved[1], "err:1",
        "the producer's own VM id has no such queue"
    );
    let token = &resolved[0][3..];
    producer.send(
        probe_request(&format!("queue-token-enqueue:{token}")),
        ok_upstream(),
    );
    assert_eq!(
        consumer.counter("probe_queue_ready"),
        None,
        "not yet delivered"
    );
    consumer.deliver_queue_ready();
    assert_eq!(consumer.counter("probe_queue_ready"), Some(1));
    assert!(consumer
        .log_messages(LogLevel::Info)
        .iter()
        .any(|m| m.ends_with(": x")));
}

#[test]
fn the_last_worker_to_register_a_queue_is_the_one_woken() {
    let host = probe().workers(2).build().unwrap();
    host.worker(0)
        .send(probe_request("queue-register:shared"), ok_upstream());
    host.worker(1)
        .send(probe_request("queue-register:shared"), ok_upstream());
    host.clear_logs();
    host.worker(0)
        .send(probe_request("queue-enqueue:shared=x"), ok_upstream());
    let woken: Vec<usize> = host
        .logs()
        .iter()
        .filter(|e| e.message.starts_with("queue ready"))
        .map(|e| e.worker)
        .collect();
    assert_eq!(woken, vec![1]);
}
