//! The stream lifecycle Envoy drives: callbacks in order, pauses, configuration windows,
//! foreign functions and effective contexts.

mod common;

use common::{ok_upstream, probe, probe_request};
use meshward_harness::{LogLevel, Phase, Request, Response, Status, StreamState, Upstream};

fn lifecycle_line(host: &meshward_harness::Host) -> String {
    host.log_messages(LogLevel::Info)
        .into_iter()
        .find(|m| m.starts_with("lifecycle"))
        .unwrap()
}

#[test]
fn a_stream_ends_with_log_then_done_then_delete() {
    let host = probe().build().unwrap();
    host.send(
        probe_request("lifecycle"),
        Upstream::reply(Response::new(204)),
    );
    assert_eq!(
        lifecycle_line(&host),
        "lifecycle: create,request_headers,response_headers,log,done,delete"
    );
}

#[test]
fn bodies_and_trailers_get_their_own_callbacks() {
    let host = probe().build().unwrap();
    host.send(
        Request::post("/")
            .header("x-probe", "lifecycle")
            .body("b")
            .trailer("t", "1"),
        Upstream::reply(Response::new(200).body("r").trailer("grpc-status", "0")),
    );
    assert_eq!(
        lifecycle_line(&host),
        "lifecycle: create,request_headers,request_body,request_trailers,\
         response_headers,response_body,response_trailers,log,done,delete"
    );
}

#[test]
fn a_paused_stream_waits_and_an_abandoned_one_times_out_like_envoy() {
    let host = probe().build().unwrap();
    let stream = host.worker(0).start(probe_request("pause"));
    assert_eq!(stream.state(), StreamState::Paused(Phase::RequestHeaders));
    let out = stream.finish();
    assert_eq!(out.response.status(), 408);
    assert_eq!(out.details, "stream_idle_timeout");
    assert!(out.upstream_request.is_none());
}

#[test]
fn configuration_is_readable_only_in_its_own_callback() {
    let host = probe()
        .log_level(LogLevel::Debug)
        .vm_config("vm-settings")
        .config("tick_ms=0")
        .build()
        .unwrap();
    let logs = host
        .logs()
        .into_iter()
        .map(|e| e.message)
        .collect::<Vec<_>>();
    assert!(logs.contains(&"vm config: vm-settings".to_string()));
    assert!(logs.contains(&"plugin config: tick_ms=0".to_string()));
    assert!(logs.contains(&"vm config during configure: 1".to_string()));
    let out = host.send(probe_request("config-in-stream"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-config"),
        Some("err:1")
    );
}

#[test]
fn foreign_functions_are_called_by_name() {
    let host = probe()
        .foreign_function("reverse", |args| Ok(args.iter().rev().copied().collect()))
        .build()
        .unwrap();
    let out = host.send(probe_request("foreign:reverse=abc"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-foreign"),
        Some("ok:cba")
    );
    host.foreign_function("refuse", |_| Err(Status::BadArgument));
    let out = host.send(probe_request("foreign:refuse=x"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-foreign"),
        Some("err:2")
    );
    let out = host.send(probe_request("foreign:missing=x"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-foreign"),
        Some("err:1")
    );
}

#[test]
fn an_unknown_effective_context_is_a_bad_argument() {
    let host = probe().build().unwrap();
    let out = host.send(probe_request("effective-bad"), ok_upstream());
    assert_eq!(
        out.upstream_request.unwrap().header_value("x-effective"),
        Some("2")
    );
}
